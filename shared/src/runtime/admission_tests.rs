//! Connection create refuses customers' hosts whose names resolve inside our network
//! (webhook, failure webhook, S3-compatible endpoint): resolved by the prober, never
//! connected to, nothing stored. The resolver is a table (no real DNS), and the emulator
//! setting is given explicitly (off), whatever the environment says.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::adapters::azure::endpoint::EndpointRules;
use crate::adapters::azure::store::AzureOptions;
use crate::adapters::local::cipher::LocalCipher;
use crate::adapters::local::scheduler::LocalScheduler;
use crate::adapters::local::store::LocalStore;
use crate::adapters::outbound_dns::{StaticLookup, INTERNAL_REFUSAL};
use crate::control::connection::Connection;
use crate::control::lifecycle::create_connection;
use crate::control::projects::Project;
use crate::control::store::ControlStore;
use crate::model::destination::Destination;
use crate::model::secret::Secret;
use crate::ports::HourlySchedules;
use crate::runtime::factory::CloudContext;
use crate::runtime::function_env::FactoryProber;

const INSIDE: [&str; 5] = ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2020-01-25T00:05:00Z").unwrap().with_timezone(&Utc)
}

/// Emulators not admitted, local folders served (the webhook cases write to one).
fn cloud() -> CloudContext {
    let cloud = CloudContext { azure: AzureOptions { endpoints: EndpointRules::default(), ..Default::default() }, ..CloudContext::local_only() };
    assert!(!cloud.azure.endpoints.allow_emulators);
    cloud
}

fn prober(answer: &str) -> (FactoryProber, Arc<StaticLookup>) {
    let ip: IpAddr = answer.parse().unwrap();
    let lookup = Arc::new(StaticLookup::new().answer("hooks.example.com", &[ip]).answer("store.example.com", &[ip]));
    (FactoryProber::new(cloud()).with_lookup(lookup.clone()).with_webhook_emulators(false), lookup)
}

#[tokio::test]
async fn names_resolving_inside_are_refused_at_create_with_nothing_stored_and_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlStore::new(
        Arc::new(LocalStore::new(dir.path().join("control")).unwrap()),
        Arc::new(LocalCipher::open_or_create(dir.path().join("secret.key")).unwrap()),
    );
    control.add_project(&Project::new("187520", "42", false).unwrap()).await.unwrap();
    let schedules = LocalScheduler::new(dir.path().join("schedules")).unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let local = json!({"type": "local", "path": dir.path().join("out").display().to_string(), "prefix": "events"});
    let store = serde_json::to_value(Destination::s3_compatible(
        format!("https://store.example.com:{port}"),
        "acme-events",
        "exports",
        "auto",
        true,
        "AKIAEXAMPLE",
        Secret::new("secret-value-123"),
    ))
    .unwrap();
    let hook = format!("https://hooks.example.com:{port}/services/T0/B0/SECRETPATH");
    // (field the refusal names, the connection's destination, webhook, failure webhook)
    let cases = [
        ("webhook.url", local.clone(), Some(json!({"url": hook, "secret": "0123456789abcdef-secret"})), None),
        ("failure_webhook", local.clone(), None, Some(json!(hook))),
        ("destination.endpoint_url", store, None, None),
    ];
    for answer in INSIDE {
        for (i, (field, dest, webhook, failure_webhook)) in cases.iter().enumerate() {
            let id = format!("c{i}");
            let mut doc = json!({
                "id": id, "org_id": "42", "project_id": "187520", "destination": dest,
                "export": {"events": true, "merged_ids": false}, "creator": "owner@example.com"
            });
            if let Some(w) = webhook {
                doc["webhook"] = w.clone();
            }
            if let Some(f) = failure_webhook {
                doc["failure_webhook"] = f.clone();
            }
            let conn = Connection::from_json(&doc.to_string()).expect("valid connection");
            let (prober, lookup) = prober(answer);
            let err = create_connection(&control, &schedules, &prober, conn, now()).await.expect_err(answer);
            let text = err.to_string();
            assert_eq!(err.kind(), "InvalidConfig", "{answer} {field}: {text}");
            assert!(text.contains(field) && text.contains(INTERNAL_REFUSAL), "{answer} {field}: {text}");
            assert!(!text.contains("SECRETPATH") && !text.contains("secret-value-123") && !text.contains(answer), "{answer} {field}: {text}");
            assert_eq!(lookup.lookups(), 1, "{answer} {field}: resolved once");
            assert!(schedules.hourly_state(&id).await.unwrap().is_none(), "{answer} {field}: nothing scheduled");
        }
    }
    assert!(control.list_connections().await.unwrap().is_empty(), "nothing stored");
    assert!(matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "admission connected to the listener");
}

/// The control: the same connection is admitted when the names resolve to public addresses
/// (the webhook case: nothing else is contacted by create).
#[tokio::test]
async fn names_resolving_to_public_addresses_are_admitted() {
    let (prober, _) = prober("93.184.216.34");
    use crate::ports::DestinationProber;
    prober.admit_webhook("webhook.url", "https://hooks.example.com/x").await.expect("admitted");
    prober.admit_webhook("failure_webhook", "https://hooks.example.com/x").await.expect("admitted");
    let dest = Destination::s3_compatible("https://store.example.com", "b", "", "auto", true, "AKIAEXAMPLE", Secret::new("s"));
    prober.admit(&dest).await.expect("admitted");
}
