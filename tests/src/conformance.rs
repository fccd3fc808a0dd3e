//! The conformance suite every `ObjectStore` must pass (local folder, memory, S3 on moto,
//! Azure on Azurite), in the spirit of object_store's integration module: one named
//! function per behaviour, so a failure names what broke. [`store_conformance`] and
//! [`export_conformance`] run them all, each under its name.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use exporter::adapters::local::cipher::LocalCipher;
use exporter::adapters::local::store::LocalStore;
use exporter::control::connection::Connection;
use exporter::control::projects::Project;
use exporter::control::store::ControlStore;
use exporter::export::generate::{generate_hour, generate_merges, Generated, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
use exporter::export::manifest::Manifest;
use exporter::hour::UtcHour;
use exporter::model::hour_request::ExportMode;
use exporter::ports::{collect_stream, CreateOutcome, ObjectStore};
use exporter::ExportError;
use futures::FutureExt;

/// Runs one check; a failure is reported as `conformance check NAME failed: ...`.
async fn check<T, F: Future<Output = T>>(name: &str, fut: F) -> T {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(value) => value,
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            panic!("conformance check `{name}` failed: {message}")
        }
    }
}

/// Storage-level checks. `big_upload_bytes` should span more than one multipart part or block.
pub async fn store_conformance(store: Arc<dyn ObjectStore>, big_upload_bytes: usize) {
    let s = store.as_ref();
    check("put_get_list_with_hash_in_keys", put_get_list_with_hash_in_keys(s)).await;
    check("list_prefix_ending_in_hash_is_exact", list_prefix_ending_in_hash_is_exact(s)).await;
    check("missing_objects_are_not_found", missing_objects_are_not_found(s)).await;
    check("put_overwrites", put_overwrites(s)).await;
    check("create_only_write_has_one_winner", create_only_write_has_one_winner(s)).await;
    check("streaming_upload_is_invisible_until_finished", streaming_upload_is_invisible_until_finished(s, big_upload_bytes)).await;
    check("aborted_upload_leaves_nothing", aborted_upload_leaves_nothing(s)).await;
    check("delete_is_idempotent", delete_is_idempotent(s)).await;
    check("claims_cover_every_spelling_of_a_destination", claims_cover_every_spelling_of_a_destination(store.clone())).await;
}

/// A control store on this store: one organisation's claim covers every spelling of its
/// folder, container or S3-compatible bucket (dot segments, repeated and trailing slashes,
/// host case, default ports), distinct places never collide (an S3-compatible store's
/// bucket is not the Amazon S3 bucket of that name), and deleting the connection releases
/// the claim.
pub async fn claims_cover_every_spelling_of_a_destination(store: Arc<dyn ObjectStore>) {
    let keys = tempfile::tempdir().expect("temp dir");
    let cipher = Arc::new(LocalCipher::open_or_create(keys.path().join("secret.key")).expect("cipher"));
    let control = ControlStore::new(store, cipher);
    let now = chrono::Utc::now();
    // Each organisation connects its own project (the registry says whose it is).
    for (project, org) in [("101", "1"), ("102", "2")] {
        control.add_project(&Project::new(project, org, false).unwrap()).await.expect("register project");
    }
    let conn = |id: &str, org: &str, destination: serde_json::Value| {
        let doc = serde_json::json!({"id": id, "org_id": org, "project_id": format!("10{org}"), "admins": ["admin@example.com"], "creator": "owner@example.com", "destination": destination});
        Connection::from_json(&doc.to_string()).expect("valid connection")
    };
    let local = |path: &str| serde_json::json!({"type": "local", "path": path});
    let azure = |url: &str| serde_json::json!({"type": "azure", "account_url": url, "container": "events", "sas_token": "sv=2024-01-01&sig=x"});
    let refused = |r: exporter::Result<Connection>, what: &str| match r {
        Err(ExportError::Conflict { what: why }) => assert!(why.contains("another organisation"), "{what}: {why}"),
        other => panic!("{what}: a second organisation's claim must be refused, got {other:?}"),
    };

    control.create_connection(conn("claims-a1", "1", local("/t/dest")), now).await.expect("org 1 claims /t/dest");
    for (i, spelling) in ["/t/./dest", "/t//dest/", "/t/x/../dest"].into_iter().enumerate() {
        refused(control.create_connection(conn(&format!("claims-b{i}"), "2", local(spelling)), now).await, spelling);
    }
    control.create_connection(conn("claims-a2", "1", local("/a/b_c")), now).await.expect("org 1 claims /a/b_c");
    control.create_connection(conn("claims-b3", "2", local("/a_b/c")), now).await.expect("/a_b/c is another folder");

    control.create_connection(conn("claims-a3", "1", azure("http://localhost:10000/devstoreaccount1")), now).await.expect("org 1 claims the container");
    for (i, spelling) in ["http://LOCALHOST:10000/devstoreaccount1/", "http://localhost:10000//devstoreaccount1"].into_iter().enumerate() {
        refused(control.create_connection(conn(&format!("claims-b{}", 4 + i), "2", azure(spelling)), now).await, spelling);
    }
    control.create_connection(conn("claims-b6", "2", azure("http://localhost:10001/devstoreaccount1")), now).await.expect("another port is another place");

    // S3-compatible stores: the endpoint's host (any case, default port or not) and the
    // bucket are the place; bucket `x` there is not bucket `x` on Amazon S3.
    let aws = |bucket: &str| serde_json::json!({"type": "s3", "bucket": bucket, "region": "us-east-1"});
    let compatible = |endpoint: &str, bucket: &str| {
        serde_json::json!({"type": "s3", "bucket": bucket, "region": "auto", "endpoint_url": endpoint, "force_path_style": true,
            "access_key_id": "AKIAEXAMPLE", "secret_access_key": "example-secret"})
    };
    control
        .create_connection(conn("claims-a5", "1", compatible("https://acct.r2.cloudflarestorage.com", "shared-name")), now)
        .await
        .expect("org 1 claims it on R2");
    for (i, spelling) in ["https://ACCT.R2.cloudflarestorage.com/", "https://acct.r2.cloudflarestorage.com:443", "https://acct.r2.cloudflarestorage.com."]
        .into_iter()
        .enumerate()
    {
        refused(control.create_connection(conn(&format!("claims-b{}", 10 + i), "2", compatible(spelling, "shared-name")), now).await, spelling);
    }
    control.create_connection(conn("claims-b13", "2", aws("shared-name")), now).await.expect("the same bucket name on Amazon S3 is another place");
    control
        .create_connection(conn("claims-b14", "2", compatible("https://acct.r2.cloudflarestorage.com:8443", "shared-name")), now)
        .await
        .expect("another port is another place");
    control
        .create_connection(conn("claims-b15", "2", compatible("https://other.r2.cloudflarestorage.com", "shared-name")), now)
        .await
        .expect("another endpoint is another place");
    refused(control.create_connection(conn("claims-a6", "1", aws("shared-name")), now).await, "org 2 owns the Amazon S3 bucket");

    // Same organisation, another spelling: allowed; the claim is released only with the last user.
    control.create_connection(conn("claims-a4", "1", local("/t/dest/")), now).await.expect("same org may share its folder");
    control.delete_connection("claims-a1").await.unwrap();
    refused(control.create_connection(conn("claims-b7", "2", local("/t/dest")), now).await, "still used by claims-a4");
    control.delete_connection("claims-a4").await.unwrap();
    control.create_connection(conn("claims-b7", "2", local("/t//dest")), now).await.expect("released when its last connection goes");
    for c in control.list_connections().await.unwrap() {
        control.delete_connection(&c.id).await.unwrap();
    }
    assert!(control.store().list("claims/").await.unwrap().is_empty(), "deleting every connection releases every claim");
}

/// Keys with `#` round-trip through put, list (exact and sorted), head and get.
pub async fn put_get_list_with_hash_in_keys(store: &dyn ObjectStore) {
    let base = "conformance/hash-keys";
    let hour7 = format!("{base}/187520_2020-01-25_7#0.json.gz");
    let hour17 = format!("{base}/187520_2020-01-25_17#0.json.gz");
    store.put(&hour7, Bytes::from_static(b"part zero")).await.expect("put with # in key");
    store.put(&hour17, Bytes::from_static(b"other hour")).await.expect("put second key");
    let listed: Vec<String> = store.list(&format!("{base}/")).await.expect("list").into_iter().map(|m| m.key).collect();
    assert_eq!(listed, vec![hour17.clone(), hour7.clone()], "list must return keys exactly, sorted by key");
    assert_eq!(&store.get(&hour7).await.expect("get with #")[..], b"part zero");
    assert_eq!(store.head(&hour7).await.unwrap().expect("head finds it").size, 9);
    cleanup(store, base).await;
}

/// A prefix ending in `#` matches that hour's parts only (hour 7, not hour 17).
pub async fn list_prefix_ending_in_hash_is_exact(store: &dyn ObjectStore) {
    let base = "conformance/hash-prefix";
    let hour7 = format!("{base}/187520_2020-01-25_7#0.json.gz");
    store.put(&hour7, Bytes::from_static(b"7")).await.unwrap();
    store.put(&format!("{base}/187520_2020-01-25_17#0.json.gz"), Bytes::from_static(b"17")).await.unwrap();
    let listed: Vec<String> = store.list(&format!("{base}/187520_2020-01-25_7#")).await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(listed, vec![hour7], "a prefix ending in # must not match hour 17");
    cleanup(store, base).await;
}

/// Head of a missing object is `None`; get is `NotFound`.
pub async fn missing_objects_are_not_found(store: &dyn ObjectStore) {
    let missing = "conformance/missing/never-written";
    assert!(store.head(missing).await.unwrap().is_none());
    match store.get(missing).await {
        Err(ExportError::NotFound { .. }) => {}
        other => panic!("get of a missing object must be NotFound, got {other:?}"),
    }
}

/// A put replaces what is at the key.
pub async fn put_overwrites(store: &dyn ObjectStore) {
    let key = "conformance/overwrite/object#0";
    store.put(key, Bytes::from_static(b"first")).await.unwrap();
    store.put(key, Bytes::from_static(b"replaced")).await.unwrap();
    assert_eq!(&store.get(key).await.unwrap()[..], b"replaced");
    cleanup(store, "conformance/overwrite").await;
}

/// The first create-only write wins; a second neither fails nor overwrites.
pub async fn create_only_write_has_one_winner(store: &dyn ObjectStore) {
    let claim = "conformance/claims/bucket";
    assert_eq!(store.put_if_absent(claim, Bytes::from_static(b"org-1")).await.unwrap(), CreateOutcome::Created);
    assert_eq!(store.put_if_absent(claim, Bytes::from_static(b"org-2")).await.unwrap(), CreateOutcome::AlreadyExists);
    assert_eq!(&store.get(claim).await.unwrap()[..], b"org-1", "a losing create-only write must not overwrite");
    cleanup(store, "conformance/claims").await;
}

/// A streaming upload is invisible until finished, then byte-exact (read as a stream).
pub async fn streaming_upload_is_invisible_until_finished(store: &dyn ObjectStore, bytes: usize) {
    let key = "conformance/streaming/big#1.bin";
    let mut upload = store.upload(key).await.expect("start upload");
    let mut expected = Vec::with_capacity(bytes);
    let mut i: u64 = 0;
    while expected.len() < bytes {
        let chunk: Vec<u8> = (0..300_007u64).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        expected.extend_from_slice(&chunk);
        upload.write(Bytes::from(chunk)).await.expect("write chunk");
        i += 1;
    }
    assert!(store.head(key).await.unwrap().is_none(), "an unfinished upload must not be visible");
    upload.finish().await.expect("finish upload");
    let got = collect_stream(store.get_stream(key).await.unwrap()).await.unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "streamed object differs from what was written");
    cleanup(store, "conformance/streaming").await;
}

/// An aborted upload leaves nothing at its key.
pub async fn aborted_upload_leaves_nothing(store: &dyn ObjectStore) {
    let key = "conformance/aborted/part#0.bin";
    let mut upload = store.upload(key).await.unwrap();
    upload.write(Bytes::from_static(b"never visible")).await.unwrap();
    upload.abort().await.unwrap();
    assert!(store.head(key).await.unwrap().is_none(), "an aborted upload must leave nothing");
    assert!(store.list("conformance/aborted/").await.unwrap().is_empty());
}

/// Deleting twice is not an error, and the object is gone.
pub async fn delete_is_idempotent(store: &dyn ObjectStore) {
    let key = "conformance/delete/object#0";
    store.put(key, Bytes::from_static(b"x")).await.unwrap();
    store.delete(key).await.unwrap();
    store.delete(key).await.expect("deleting a missing object is not an error");
    assert!(store.head(key).await.unwrap().is_none());
    assert!(store.list("conformance/delete/").await.unwrap().is_empty());
}

async fn cleanup(store: &dyn ObjectStore, base: &str) {
    for meta in store.list(&format!("{base}/")).await.unwrap() {
        store.delete(&meta.key).await.unwrap();
    }
    assert!(store.list(&format!("{base}/")).await.unwrap().is_empty(), "{base} left objects behind");
}

const PARTS_PREFIX: &str = "conformance-exports/run/187520/187520_2020-01-05_7#";
const MARKER: &str = "conformance-exports/run/187520/187520_2020-01-05_7_complete";

/// One generated lake hour (duplicates, invalid lines, merges) and a connection exporting
/// it to the store under test.
pub struct ExportFixture {
    _lake_dir: tempfile::TempDir,
    pub conn: Connection,
    pub targets: ExportTargets,
    pub hour: UtcHour,
    pub generated: Generated,
    /// Parts of ~300 KiB, so an hour rolls over several.
    pub small_parts: ExportSettings,
}

impl ExportFixture {
    pub async fn new(dest: Arc<dyn ObjectStore>) -> Self {
        let lake_dir = tempfile::tempdir().unwrap();
        let lake: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(lake_dir.path()).unwrap());
        let hour = UtcHour::parse("2020-01-05T07").unwrap();
        let spec =
            HourSpec { project_id: "187520".into(), hour, events: 3000, events_per_file: 700, duplicate_every: 50, invalid_every: 100, seed: 5, gzip: true };
        let generated = generate_hour(lake.as_ref(), &spec).await.unwrap();
        generate_merges(lake.as_ref(), "42", hour, 30, 5).await.unwrap();
        let conn = Connection::from_json(
            r#"{"id":"conformance","org_id":"42","project_id":"187520","admins":["admin@example.com"],"creator":"c@example.com",
                "destination":{"type":"local","path":"/unused","prefix":"conformance-exports/run"}}"#,
        )
        .unwrap();
        let targets = ExportTargets { lake, events: dest.clone(), merged_ids: dest };
        ExportFixture { _lake_dir: lake_dir, conn, targets, hour, generated, small_parts: ExportSettings::new(300 * 1024, 6, 2).unwrap() }
    }

    async fn export(&self, mode: ExportMode, settings: &ExportSettings) -> exporter::export::hour_export::HourReport {
        export_hour(&self.conn.export_spec().unwrap(), &self.targets, self.hour, mode, settings).await.expect("export")
    }

    fn dest(&self) -> &dyn ObjectStore {
        self.targets.events.as_ref()
    }
}

/// Export-level checks on a destination store, in order (each after the ones before).
pub async fn export_conformance(dest: Arc<dyn ObjectStore>) {
    let fx = ExportFixture::new(dest).await;
    let manifest = check("export_writes_parts_marker_and_merged_ids", export_writes_parts_marker_and_merged_ids(&fx)).await;
    check("recurring_run_skips_a_completed_hour", recurring_run_skips_a_completed_hour(&fx)).await;
    check("replace_is_byte_identical", replace_is_byte_identical(&fx, &manifest)).await;
    check("replace_with_bigger_parts_deletes_stale_parts", replace_with_bigger_parts_deletes_stale_parts(&fx)).await;
}

/// The hour is written in several `#n` parts that list back exactly, hold gzip NDJSON with
/// as many lines as the manifest counts, and the marker and merged IDs are written.
pub async fn export_writes_parts_marker_and_merged_ids(fx: &ExportFixture) -> Manifest {
    use std::io::BufRead;
    let manifest = fx.export(ExportMode::Recurring, &fx.small_parts).await.manifest.expect("exported");
    let events = manifest.events.clone().unwrap();
    assert!(events.files.len() >= 3, "small parts must roll over: {} parts", events.files.len());
    assert!(events.accounting.balances());
    assert_eq!(events.accounting.duplicates, fx.generated.duplicates);
    assert_eq!(events.accounting.invalid, fx.generated.invalid);
    assert_eq!(events.accounting.exported, fx.generated.unique_events);
    let listed: Vec<String> = fx.dest().list(PARTS_PREFIX).await.unwrap().into_iter().map(|m| m.key).collect();
    let mut expected: Vec<String> = events.files.iter().map(|f| f.key.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected, "parts with # must list back exactly");
    let mut lines = 0u64;
    for f in &events.files {
        let body = fx.dest().get(&f.key).await.unwrap();
        for line in std::io::BufReader::new(flate2::read::GzDecoder::new(&body[..])).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            assert!(v.is_object());
            lines += 1;
        }
    }
    assert_eq!(lines, events.accounting.exported);
    let marker = fx.dest().get(MARKER).await.expect("marker written");
    assert_eq!(serde_json::from_slice::<Manifest>(&marker).unwrap(), manifest);
    let merged = fx.dest().get("conformance-exports/run/-42/-42_2020-01-05_7.json.gz").await.expect("merged IDs written");
    assert!(!merged.is_empty());
    manifest
}

/// A recurring run reads the marker from the store and skips the hour.
pub async fn recurring_run_skips_a_completed_hour(fx: &ExportFixture) {
    assert!(fx.export(ExportMode::Recurring, &fx.small_parts).await.skipped, "recurring run must skip a completed hour");
}

/// A replace with the same settings writes byte-identical parts and marker.
pub async fn replace_is_byte_identical(fx: &ExportFixture, first: &Manifest) {
    let marker = fx.dest().get(MARKER).await.unwrap();
    let replaced = fx.export(ExportMode::Replace, &fx.small_parts).await.manifest.unwrap();
    assert_eq!(&replaced, first, "re-export must be identical");
    assert_eq!(fx.dest().get(MARKER).await.unwrap(), marker);
}

/// A replace with bigger parts leaves one part and deletes the stale ones.
pub async fn replace_with_bigger_parts_deletes_stale_parts(fx: &ExportFixture) {
    let big = ExportSettings::new(64 << 20, 6, 2).unwrap();
    let one = fx.export(ExportMode::Replace, &big).await.manifest.unwrap();
    assert_eq!(one.events.as_ref().unwrap().files.len(), 1);
    let left: Vec<String> = fx.dest().list(PARTS_PREFIX).await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(left, vec![format!("{PARTS_PREFIX}0.json.gz")], "stale parts must be deleted");
    assert_eq!(one.events.unwrap().accounting.exported, fx.generated.unique_events);
}
