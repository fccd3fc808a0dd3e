//! The pseudonymisation key of a field policy: generated at create when the document
//! brings none, sealed in the control store bound to its connection and `fields.key`,
//! never in a log line (any level), an error or Debug output; copied into another
//! connection's file it does not open. Its own test binary: it installs the global log
//! subscriber. Local cipher and in-memory store: no emulator.

use std::sync::Arc;

use bytes::Bytes;
use exporter::adapters::local::cipher::LocalCipher;
use exporter::adapters::local::memory::MemoryStore;
use exporter::control::connection::Connection;
use exporter::control::projects::Project;
use exporter::control::store::ControlStore;
use exporter::export::generate::{generate_hour, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
use exporter::hour::UtcHour;
use exporter::model::hour_request::ExportMode;
use integration_tests::captured_logs::CapturedLogs;

fn doc(id: &str, org: &str, path: &str, key: Option<&str>) -> String {
    let key = key.map(|k| format!(r#","key":"{k}""#)).unwrap_or_default();
    format!(
        r#"{{"id":"{id}","org_id":"{org}","project_id":"{org}00","admins":["admin@example.com"],"creator":"a@example.com",
            "export":{{"events":true,"merged_ids":false}},"destination":{{"type":"local","path":"{path}"}},
            "fields":{{"drop":["idfa"],"pseudonymise":["user_id","device_id"]{key}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_is_generated_sealed_bound_and_never_shown() {
    let logs = CapturedLogs::install();

    let home = tempfile::tempdir().unwrap();
    let cipher = Arc::new(LocalCipher::open_or_create(home.path().join("secret.key")).unwrap());
    let control = ControlStore::new(Arc::new(MemoryStore::new("control")), cipher);
    for org in ["1", "2"] {
        control.add_project(&Project::new(&format!("{org}00"), org, false).unwrap()).await.unwrap();
    }
    let now = chrono::Utc::now();
    // No key given: create makes one (64 hex characters) and seals it.
    let created = control.create_connection(Connection::from_json(&doc("victim", "1", "/data/victim", None)).unwrap(), now).await.unwrap();
    let key = created.fields.as_ref().unwrap().key.clone().expect("a generated key");
    assert_eq!(key.expose().len(), 64);
    assert!(key.expose().bytes().all(|b| b.is_ascii_hexdigit()));
    let loaded = control.get_connection("victim").await.unwrap();
    assert_eq!(loaded.fields.as_ref().unwrap().key.as_ref().unwrap().expose(), key.expose(), "opens to the same key");
    // A key given is kept; two connections never share a generated one.
    let given = "a-key-the-customer-chose-0123456789abcdef";
    let thief = control.create_connection(Connection::from_json(&doc("thief", "2", "/data/thief", Some(given))).unwrap(), now).await.unwrap();
    assert_eq!(thief.fields.as_ref().unwrap().key.as_ref().unwrap().expose(), given);

    let store = control.store();
    let victim_file = String::from_utf8(store.get("connections/victim.json").await.unwrap().to_vec()).unwrap();
    assert!(!victim_file.contains(key.expose()), "stored sealed: {victim_file}");
    let shown = format!("{created:?} {loaded:?} {:?}", created.export_spec().unwrap());
    assert!(!shown.contains(key.expose()) && !shown.contains(&key.expose()[..16]), "Debug output never holds the key");

    // Export an hour with it (logs at TRACE), then paste the victim's sealed key into the
    // thief's file: it does not open, and the error does not show it.
    let hour = UtcHour::parse("2020-01-25T17").unwrap();
    let lake = Arc::new(MemoryStore::new("lake"));
    let spec = HourSpec { project_id: "100".into(), hour, events: 300, events_per_file: 100, duplicate_every: 0, invalid_every: 0, seed: 1, gzip: true };
    generate_hour(lake.as_ref(), &spec).await.unwrap();
    let dest = Arc::new(MemoryStore::new("dest"));
    let targets = ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
    let report =
        export_hour(&loaded.export_spec().unwrap(), &targets, hour, ExportMode::Recurring, &ExportSettings::new(1 << 20, 1, 1).unwrap()).await.unwrap();
    assert!(report.manifest.unwrap().field_policy.is_some());

    let victim: serde_json::Value = serde_json::from_str(&victim_file).unwrap();
    let mut stolen: serde_json::Value = serde_json::from_slice(&store.get("connections/thief.json").await.unwrap()).unwrap();
    stolen["fields"]["key"] = victim["fields"]["key"].clone();
    store.put("connections/thief.json", Bytes::from(stolen.to_string())).await.unwrap();
    let err = control.get_connection("thief").await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("in the connection and field it was sealed for"), "{text}");
    assert!(!text.contains(key.expose()), "{text}");
    // The failure email a broken connection gets carries the error, never the key.
    let notice = exporter::delivery::notify::FailureNotice {
        connection_id: "thief".into(),
        project_id: "200".into(),
        recipients: thief.recipients(),
        report: exporter::model::probe_report::ProbeReport {
            destination: thief.destination.describe(),
            principal: None,
            results: vec![exporter::model::probe_report::ProbeResult::fail("open the connection", "fields.key", &err)],
        },
        failing_hours: vec![exporter::delivery::notify::FailedHour { hour, attempts: 3, error: err.to_string() }],
        run_missing_permission: None,
        principal: None,
        fixes: Vec::new(),
    };
    let email = exporter::delivery::notify::compose_failure_email(&notice);
    let mail = format!("{} {} {} {} {email:?}", email.to.join(","), email.subject, email.text, email.html);
    assert!(mail.contains("sealed for"), "the email explains the error: {mail}");
    assert!(!mail.contains(key.expose()) && !mail.contains(given), "a key reached the email");
    // Moved to another field of its own connection, it does not open either.
    let mut moved = victim.clone();
    moved["failure_webhook"] = victim["fields"]["key"].clone();
    store.put("connections/victim.json", Bytes::from(moved.to_string())).await.unwrap();
    assert!(control.get_connection("victim").await.is_err());
    // A short key is refused without being quoted.
    let short = Connection::from_json(&doc("c3", "1", "/data/c3", Some("short-secret-value"))).unwrap_err().to_string();
    assert!(short.contains("fields.key") && !short.contains("short-secret-value"), "{short}");

    let logged = logs.text();
    assert!(!logged.is_empty(), "the subscriber captured the run");
    for secret in [key.expose(), given] {
        assert!(!logged.contains(secret), "a key reached the logs");
    }
}
