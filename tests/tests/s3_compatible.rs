//! S3-compatible stores (R2, MinIO, GCS, ...) on moto standing in for one: a connection with
//! `endpoint_url`, `force_path_style` and an IAM user's access keys, signed with those keys
//! and nothing of the exporter's own AWS identity (the context has no AWS at all, as in
//! embedded mode). moto's IAM enforcement (the MOTO_AUTH_URL instance) is on while the
//! exporter talks to it, so a wrong secret is really refused and the key only has the
//! prefix-scoped grants.
//!
//! Requests go through a recording TCP relay in front of moto at `http://localhost:PORT`:
//! the relay sees every request line and Host header, which shows path-style addressing
//! (`Host: localhost:PORT`, path `/bucket/key`) is what `force_path_style` gives, and that
//! a refused endpoint gets no request at all. (An IP-address endpoint would not prove it:
//! the SDK addresses an IP endpoint path-style whatever the setting.)

use std::io::Read;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use exporter::access::policy::{s3_compatible_grants, s3_policies};
use exporter::adapters::azure::endpoint::EndpointRules;
use exporter::adapters::azure::store::AzureOptions;
use exporter::adapters::local::cipher::LocalCipher;
use exporter::adapters::local::scheduler::LocalScheduler;
use exporter::adapters::local::store::LocalStore;
use exporter::control::connection::Connection;
use exporter::control::lifecycle::create_connection;
use exporter::control::projects::Project;
use exporter::control::store::ControlStore;
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
use exporter::model::destination::Destination;
use exporter::model::hour_request::ExportMode;
use exporter::model::probe_report::{ProbeOutcome, ProbeReport};
use exporter::model::secret::Secret;
use exporter::ports::{HourlySchedules, ObjectStore};
use exporter::runtime::factory::{open_store, probe_destination, CloudContext};
use exporter::runtime::function_env::FactoryProber;
use exporter::{ExportError, UtcHour};
use integration_tests::emulators::{moto_auth_url, moto_url, unique_name};
use integration_tests::moto::{self, admin_config, create_bucket, create_user, moto_enforceable, AuthArmed};
use integration_tests::relay::recording_relay;
use serde_json::json;

const PROJECT: &str = "187520";
const ORG: &str = "42";
const PREFIX: &str = "exports";

fn compatible_dest(endpoint: &str, bucket: &str, path_style: bool, key_id: &str, secret: &str) -> Destination {
    Destination::s3_compatible(endpoint, bucket, PREFIX, moto::REGION, path_style, key_id, Secret::new(secret))
}

/// No AWS context at all (as in embedded mode), emulator endpoints allowed or not.
fn context(allow_emulators: bool) -> CloudContext {
    let endpoints = if allow_emulators { EndpointRules::emulators() } else { EndpointRules::default() };
    CloudContext { aws: None, azure: AzureOptions { endpoints, ..Default::default() }, local_folders: false }
}

fn connection(id: &str, dest: &Destination) -> Connection {
    let doc = json!({
        "id": id, "org_id": ORG, "project_id": PROJECT, "destination": dest,
        "export": {"events": true, "merged_ids": false},
        "admins": ["admin@example.com"], "creator": "owner@example.com"
    });
    Connection::from_json(&doc.to_string()).expect("valid connection")
}

struct Home {
    dir: tempfile::TempDir,
    control: ControlStore,
    schedules: LocalScheduler,
}

async fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlStore::new(
        Arc::new(LocalStore::new(dir.path().join("control")).unwrap()),
        Arc::new(LocalCipher::open_or_create(dir.path().join("secret.key")).unwrap()),
    );
    control.add_project(&Project::new(PROJECT, ORG, false).unwrap()).await.unwrap();
    let schedules = LocalScheduler::new(dir.path().join("schedules")).unwrap();
    Home { dir, control, schedules }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2020-01-25T00:05:00Z").unwrap().with_timezone(&Utc)
}

/// 50 raw events of project PROJECT in the lake hour 2020-01-25T17.
fn lake() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("events/{PROJECT}/2020-01-25/17"));
    std::fs::create_dir_all(&path).unwrap();
    let mut lines = String::new();
    for i in 0..50 {
        let event = json!({
            "event_type": "click", "device_id": format!("d{i}"), "$insert_id": format!("i{i}"), "user_id": "u",
            "client_event_time": "2020-01-25 17:01:00.000000", "client_upload_time": "2020-01-25 17:01:01.000000",
            "server_received_time": "2020-01-25 17:01:02.000000", "server_upload_time": "2020-01-25 17:01:03.000000"
        });
        lines.push_str(&format!("{event}\n"));
    }
    std::fs::write(path.join("a.json"), lines).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    (dir, store)
}

/// An IAM user allowed exactly the generated grants on `bucket/exports` (moto enforces the
/// identity policy; the bucket and prefix are the same for Amazon S3 and the compatible store).
async fn store_user(admin: &aws_config::SdkConfig, bucket: &str) -> (String, String) {
    let role = format!("arn:aws:iam::{}:role/event-export-project-{PROJECT}", moto::ACCOUNT);
    let policy = moto_enforceable(&s3_policies(&Destination::aws_s3(bucket, PREFIX, moto::REGION, None), &role).unwrap().identity_policy);
    let (_, key_id, secret) = create_user(admin, &unique_name("store-key"), &policy).await;
    (key_id, secret)
}

/// A plain S3 client for the compatible endpoint, path-style, signing with the key.
fn reader(endpoint: &str, key_id: &str, secret: &str) -> aws_sdk_s3::Client {
    let cfg = moto::sdk_config(endpoint, key_id, secret);
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&cfg).force_path_style(true).build())
}

fn assert_names_key_not_secret(text: &str, key_id: &str, endpoint: &str, secret: &str) {
    assert!(text.contains(key_id), "names the access key id: {text}");
    assert!(text.contains(endpoint), "names the endpoint {endpoint}: {text}");
    assert!(!text.contains(secret), "never the secret: {text}");
}

#[tokio::test]
async fn a_compatible_store_is_created_exported_to_and_read_back_path_style() {
    let url = moto_auth_url();
    let _lock = moto::auth_lock().await;
    let admin = admin_config(&url);
    let bucket = unique_name("compat");
    create_bucket(&admin, &bucket).await;
    let (key_id, secret) = store_user(&admin, &bucket).await;
    let (port, log) = recording_relay(&url).await;
    let endpoint = format!("http://localhost:{port}");
    let dest = compatible_dest(&endpoint, &bucket, true, &key_id, &secret);
    let ctx = context(true);
    let home = home().await;
    let prober = FactoryProber::new(ctx.clone());

    let armed = AuthArmed::arm(&url);
    // Created through the lifecycle: admitted, probed with the key, claimed, stored, scheduled.
    let (stored, reports) = create_connection(&home.control, &home.schedules, &prober, connection("compat", &dest), now()).await.expect("created");
    let report: &ProbeReport = &reports[0];
    eprintln!("{}", report.table());
    assert!(report.all_passed(), "{}", report.table());
    assert_eq!(report.principal.as_deref(), Some(format!("access key {key_id} on {endpoint}").as_str()));
    assert_eq!(report.destination, format!("{endpoint}/{bucket}/{PREFIX}"));
    assert!(!report.results.iter().any(|r| r.permission.starts_with("kms:") || r.permission.starts_with("sts:")), "no KMS or role checks: {}", report.table());
    assert_eq!(home.schedules.hourly_state("compat").await.unwrap(), Some(true), "scheduled");

    // Export an hour through the factory, with the stored (sealed, then opened) connection.
    let conn = home.control.get_connection("compat").await.unwrap();
    assert_eq!(conn, stored);
    let (_lake_dir, lake) = lake();
    let store = open_store(&conn.destination, PROJECT, &ctx).await.expect("open the compatible store");
    assert_eq!(store.describe(), format!("{endpoint}/{bucket}"));
    let targets = ExportTargets { lake, events: store.clone(), merged_ids: store };
    let settings = ExportSettings::new(1 << 20, 6, 1).unwrap();
    let hour = UtcHour::parse("2020-01-25T17").unwrap();
    let exported = export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Recurring, &settings).await.expect("export to the compatible store");
    let files = exported.manifest.as_ref().and_then(|m| m.events.as_ref()).map(|e| e.files.len());
    assert_eq!(files, Some(1), "one part");

    // Read back through the endpoint, path-style, with the same key.
    let s3 = reader(&endpoint, &key_id, &secret);
    let listed = s3.list_objects_v2().bucket(&bucket).prefix(format!("{PREFIX}/{PROJECT}/")).send().await.expect("list through the endpoint");
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
    let part = format!("{PREFIX}/{PROJECT}/{PROJECT}_2020-01-25_17#0.json.gz");
    assert_eq!(keys, vec![part.clone(), format!("{PREFIX}/{PROJECT}/{PROJECT}_2020-01-25_17_complete")]);
    let body = s3.get_object().bucket(&bucket).key(&part).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
    assert_eq!(text.lines().count(), 50);
    assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event_type"] == "click"));
    drop(armed);

    // Every request went to the endpoint's host, with the bucket in the path.
    let requests = log.requests();
    assert!(requests.len() >= 10, "probe and export requests were seen: {requests:?}");
    let host = format!("localhost:{port}");
    for (method, path, seen_host) in &requests {
        assert_eq!(seen_host, &host, "{method} {path}: path-style keeps the endpoint's host");
        assert!(path.starts_with(&format!("/{bucket}")), "{method} {path}: the bucket is the first path segment");
    }
    assert!(requests.iter().any(|(m, p, _)| m == "PUT" && p.starts_with(&format!("/{bucket}/{PREFIX}/{PROJECT}/")) && p.contains("json.gz")), "{requests:?}");

    // The control store holds the secret sealed, bound to the connection: not the plain text.
    let raw = std::fs::read_to_string(home.dir.path().join("control/connections/compat.json")).expect("stored connection file");
    assert!(!raw.contains(&secret), "the secret is sealed: {raw}");
    let stored_doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let sealed = stored_doc["destination"]["secret_access_key"].as_str().expect("a sealed secret is stored");
    assert!(!sealed.is_empty() && sealed != secret);
    assert_eq!(stored_doc["destination"]["access_key_id"], key_id.as_str(), "the key id is not a secret");
    assert_eq!(stored_doc["destination"]["endpoint_url"], endpoint.as_str());
    match &conn.destination {
        Destination::S3 { secret_access_key: Some(opened), .. } => assert_eq!(opened.expose(), secret, "opens back to the secret"),
        other => panic!("{other:?}"),
    }
    // Bucket x on this store is not bucket x on Amazon S3: both claims exist side by side.
    let claims: Vec<String> = home.control.store().list("claims/").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert!(claims[0].starts_with("claims/s3-compatible/localhost_") && claims[0].contains(&bucket), "{claims:?}");
}

#[tokio::test]
async fn a_wrong_secret_or_missing_bucket_names_the_key_and_endpoint_never_the_secret() {
    let url = moto_auth_url();
    let _lock = moto::auth_lock().await;
    let admin = admin_config(&url);
    let bucket = unique_name("compat-bad");
    create_bucket(&admin, &bucket).await;
    let (key_id, secret) = store_user(&admin, &bucket).await;
    let wrong = format!("{secret}-but-wrong");
    let endpoint = url.trim_end_matches('/').to_string();
    let ctx = context(true);
    let bad = compatible_dest(&endpoint, &bucket, true, &key_id, &wrong);
    let missing = compatible_dest(&endpoint, &unique_name("compat-none"), true, &key_id, &secret);
    let home = home().await;
    let (_lake_dir, lake) = lake();

    // With enforcement off (moto then accepts any key), so the answer is NoSuchBucket rather
    // than the AccessDenied the key's bucket-scoped grants would get first.
    let missing_report = probe_destination(&missing, PROJECT, &ctx).await;
    let armed = AuthArmed::arm(&url);
    let bad_report = probe_destination(&bad, PROJECT, &ctx).await;
    let created = create_connection(&home.control, &home.schedules, &FactoryProber::new(ctx.clone()), connection("compat-bad", &bad), now()).await;
    let store = open_store(&bad, PROJECT, &ctx).await.expect("opening sends no request");
    let targets = ExportTargets { lake, events: store.clone(), merged_ids: store };
    let settings = ExportSettings::new(1 << 20, 6, 1).unwrap();
    let exported = export_hour(
        &connection("compat-bad", &bad).export_spec().unwrap(),
        &targets,
        UtcHour::parse("2020-01-25T17").unwrap(),
        ExportMode::Recurring,
        &settings,
    )
    .await;
    drop(armed);

    eprintln!("{}\n{}", bad_report.table(), missing_report.table());
    assert_eq!(bad_report.missing(), vec!["valid credentials".to_string()], "{}", bad_report.table());
    assert_names_key_not_secret(&bad_report.table(), &key_id, &endpoint, &wrong);
    assert!(bad_report.table().contains("secret_access_key"), "says which field to fix: {}", bad_report.table());

    assert_eq!(missing_report.missing(), vec!["bucket exists".to_string()], "{}", missing_report.table());
    assert_names_key_not_secret(&missing_report.table(), &key_id, &endpoint, &secret);

    let err = created.expect_err("a wrong secret fails the test upload");
    assert!(!err.to_string().contains(&wrong), "{err}");
    assert!(home.control.list_connections().await.unwrap().is_empty(), "nothing stored");
    assert!(home.control.store().list("claims/").await.unwrap().is_empty(), "nothing claimed");

    match exported {
        Err(e @ ExportError::BadCredentials { .. }) => {
            assert!(e.is_accessibility());
            assert_names_key_not_secret(&e.to_string(), &key_id, &endpoint, &wrong);
            assert!(format!("{e:?}").find(&wrong).is_none(), "not in Debug either");
        }
        other => panic!("an export with a wrong secret must be BadCredentials, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_connection_to_the_endpoint_is_an_accessibility_error_naming_it() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dest = compatible_dest(&endpoint, "acme-events", true, "AKIANOBODYHOME", "s3cr3t-value-here");
    let store = open_store(&dest, PROJECT, &context(true)).await.unwrap();
    let err = store.put("exports/x", bytes::Bytes::from_static(b"x")).await.expect_err("nothing listens");
    assert_eq!(err.kind(), "AccessBlocked", "{err}");
    assert_names_key_not_secret(&err.to_string(), "AKIANOBODYHOME", &endpoint, "s3cr3t-value-here");
    assert!(err.to_string().contains("endpoint_url"), "says what to check: {err}");
}

#[tokio::test]
async fn endpoints_outside_the_rules_are_refused_before_any_request_and_nothing_is_stored() {
    let url = moto_url();
    let (port, log) = recording_relay(&url).await;
    let home = home().await;
    // (endpoint, emulator endpoints allowed, what the refusal says)
    let cases = [
        (format!("http://localhost:{port}"), false, "is not https"),
        (format!("http://127.0.0.1:{port}"), false, "is not https"),
        ("https://169.254.169.254".to_string(), false, "inside the exporter's own network"),
        ("https://127.0.0.1".to_string(), false, "inside the exporter's own network"),
        ("https://[::1]".to_string(), false, "inside the exporter's own network"),
        ("https://s3.us-east-1.amazonaws.com".to_string(), false, "is Amazon S3"),
        // Amazon S3 is refused even where emulators are allowed.
        ("https://s3.amazonaws.com".to_string(), true, "is Amazon S3"),
    ];
    for (i, (endpoint, allow_emulators, says)) in cases.iter().enumerate() {
        let dest = compatible_dest(endpoint, "acme-events", true, "AKIAEXAMPLE", "secret-value-123");
        let id = format!("refused-{i}");
        let prober = FactoryProber::new(context(*allow_emulators));
        let err = create_connection(&home.control, &home.schedules, &prober, connection(&id, &dest), now()).await.expect_err(endpoint);
        let text = err.to_string();
        assert_eq!(err.kind(), "InvalidConfig", "{endpoint}: {text}");
        assert!(text.contains("destination.endpoint_url") && text.contains(says), "{endpoint}: {text}");
        assert!(!text.contains("secret-value-123"), "{text}");
        if *says == "is Amazon S3" {
            assert!(text.contains("project's IAM role"), "{text}");
        }
        assert_eq!(home.schedules.hourly_state(&id).await.unwrap(), None, "{endpoint}: nothing scheduled");
        // Exports are refused the same way, before any request.
        let opened = open_store(&dest, PROJECT, &context(*allow_emulators)).await;
        assert!(matches!(opened, Err(ExportError::InvalidConfig { .. })), "{endpoint}: {opened:?}");
    }
    assert!(home.control.list_connections().await.unwrap().is_empty(), "nothing stored");
    assert!(home.control.store().list("claims/").await.unwrap().is_empty(), "nothing claimed");
    assert!(log.requests().is_empty(), "no request reached the endpoint: {:?}", log.requests());
}

#[tokio::test]
async fn without_force_path_style_the_bucket_is_addressed_as_a_host() {
    // The control for the path-style assertions above: the same endpoint without the
    // setting never sends a path-style request (the bucket goes into the host name, which
    // either does not resolve here or reaches the relay as `bucket.localhost`).
    let url = moto_url();
    let admin = admin_config(&url);
    let bucket = unique_name("vhost");
    create_bucket(&admin, &bucket).await;
    let (port, log) = recording_relay(&url).await;
    let dest = compatible_dest(&format!("http://localhost:{port}"), &bucket, false, "test", "test");
    let report = probe_destination(&dest, PROJECT, &context(true)).await;
    eprintln!("{}", report.table());
    let requests = log.requests();
    if requests.is_empty() {
        // `bucket.localhost` does not resolve on this machine: the request never left.
        assert!(report.table().contains("its host name does not resolve"), "{}", report.table());
        assert!(matches!(&report.results[0].outcome, ProbeOutcome::Fail { cause, .. } if cause == "AccessBlocked"), "{}", report.table());
    }
    for (method, path, host) in requests {
        assert_eq!(host, format!("{bucket}.localhost:{port}"), "{method} {path}: virtual-host style names the bucket in the host");
        assert!(!path.starts_with(&format!("/{bucket}")), "{method} {path}");
    }
}

#[tokio::test]
async fn the_policy_says_iam_policies_do_not_apply_and_what_the_key_needs() {
    let bucket = "acme-events";
    let role = format!("arn:aws:iam::{}:role/event-export-project-{PROJECT}", moto::ACCOUNT);
    let r2 = compatible_dest("https://0123abcd.r2.cloudflarestorage.com", bucket, true, "R2KEYID", "r2-secret-value");
    let text = s3_compatible_grants(&r2).expect("grants for an S3-compatible destination");
    eprintln!("{text}");
    assert!(text.starts_with("IAM policies do not apply"), "{text}");
    assert!(text.contains("R2KEYID") && text.contains("https://0123abcd.r2.cloudflarestorage.com") && text.contains(bucket), "{text}");
    assert!(text.contains("\"Object Read & Write\"") && !text.contains("r2-secret-value"), "{text}");
    for needed in ["PutObject", "GetObject", "ListObjectsV2", "DeleteObject", "under exports/"] {
        assert!(text.contains(needed), "{needed}: {text}");
    }
    let gcs = s3_compatible_grants(&compatible_dest("https://storage.googleapis.com", bucket, true, "GOOG1EKEY", "x-secret")).unwrap();
    assert!(gcs.contains("Storage Object Admin") && gcs.contains("HMAC"), "{gcs}");
    let minio = s3_compatible_grants(&compatible_dest("https://minio.acme.example:9000", bucket, true, "minio-key", "x-secret")).unwrap();
    assert!(minio.contains("mc admin policy attach") && minio.contains("arn:aws:s3:::acme-events/exports/*"), "{minio}");
    // What exportctl policy reaches today: the IAM generator refuses, saying why and what to do.
    let err = s3_policies(&r2, &role).unwrap_err().to_string();
    assert!(err.contains("IAM policies do not apply") && err.contains("Object Read & Write"), "{err}");
    assert_eq!(s3_compatible_grants(&Destination::aws_s3(bucket, PREFIX, moto::REGION, None)), None, "Amazon S3 gets IAM policies");
}
