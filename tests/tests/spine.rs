//! The spine on the embedded adapters: export rules, determinism, and bad input — each a
//! clear error, with no event lost.

use std::io::{BufRead, Write};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use exporter::adapters::local::memory::{MemoryOp, MemoryStore};
use exporter::adapters::local::store::LocalStore;
use exporter::control::connection::Connection;
use exporter::control::projects::Project;
use exporter::delivery::backfill::BackfillRequest;
use exporter::delivery::retry::RetryPolicy;
use exporter::export::generate::{generate_hour, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets, HourReport};
use exporter::hour::{HourRange, UtcHour};
use exporter::model::clock::system_clock;
use exporter::model::hour_request::ExportMode;
use exporter::ports::ObjectStore;
use exporter::runtime::embedded::EmbeddedHome;
use exporter::ExportError;

const HOUR: &str = "2020-01-25T17";

fn conn_json(extra: &str) -> String {
    format!(
        r#"{{"id":"c1","org_id":"42","project_id":"187520","admins":["admin@example.com"],"creator":"owner@example.com",
            "destination":{{"type":"local","path":"/unused","prefix":"exports"}}{extra}}}"#
    )
}

fn conn(extra: &str) -> Connection {
    Connection::from_json(&conn_json(extra)).unwrap()
}

struct World {
    lake: Arc<MemoryStore>,
    dest: Arc<MemoryStore>,
}

impl World {
    fn new() -> Self {
        World { lake: Arc::new(MemoryStore::new("lake")), dest: Arc::new(MemoryStore::new("dest")) }
    }

    fn targets(&self) -> ExportTargets {
        ExportTargets { lake: self.lake.clone(), events: self.dest.clone(), merged_ids: self.dest.clone() }
    }

    async fn lake_file(&self, name: &str, body: &[u8]) {
        self.lake.put(&format!("events/187520/2020-01-25/17/{name}"), Bytes::copy_from_slice(body)).await.unwrap();
    }

    async fn export(&self, c: &Connection, mode: ExportMode, settings: &ExportSettings) -> Result<HourReport, ExportError> {
        export_hour(&c.export_spec().unwrap(), &self.targets(), UtcHour::parse(HOUR).unwrap(), mode, settings).await
    }

    async fn exported_lines(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for m in self.dest.list("exports/187520/187520_2020-01-25_17#").await.unwrap() {
            let body = self.dest.get(&m.key).await.unwrap();
            for line in std::io::BufReader::new(flate2::read::GzDecoder::new(&body[..])).lines() {
                out.push(serde_json::from_str(&line.unwrap()).unwrap());
            }
        }
        out
    }
}

fn settings(part: u64, threads: usize) -> ExportSettings {
    ExportSettings::new(part, 6, threads).unwrap()
}

fn event(device: &str, insert: &str, event_type: &str) -> String {
    format!(
        r#"{{"event_type":"{event_type}","device_id":"{device}","$insert_id":"{insert}","client_event_time":"2020-01-25 17:01:00","server_received_time":"2020-01-25 17:02:00","client_upload_time":"2020-01-25 17:01:59"}}"#
    )
}

fn gz(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn names_use_hash_and_unpadded_hours_and_empty_hours_get_a_marker() {
    let w = World::new();
    let early = UtcHour::parse("2020-01-05T04").unwrap();
    w.lake.put("events/187520/2020-01-05/04/a.json", Bytes::from(event("d", "i", "x") + "\n")).await.unwrap();
    let c = conn("");
    export_hour(&c.export_spec().unwrap(), &w.targets(), early, ExportMode::Recurring, &settings(1 << 20, 1)).await.unwrap();
    let keys = w.dest.keys();
    assert!(keys.contains(&"exports/187520/187520_2020-01-05_4#0.json.gz".to_string()), "{keys:?}");
    assert!(keys.contains(&"exports/187520/187520_2020-01-05_4_complete".to_string()));
    // an hour with no lake data at all
    let empty = UtcHour::parse("2020-01-05T05").unwrap();
    let report = export_hour(&c.export_spec().unwrap(), &w.targets(), empty, ExportMode::Recurring, &settings(1 << 20, 1)).await.unwrap();
    let m = report.manifest.unwrap();
    assert_eq!(m.events.unwrap().files.len(), 0);
    assert!(w.dest.keys().contains(&"exports/187520/187520_2020-01-05_5_complete".to_string()));
    assert!(!w.dest.keys().iter().any(|k| k.contains("2020-01-05_5#")));
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_are_dropped_and_counted_and_filters_apply() {
    let w = World::new();
    let body = [event("d1", "a", "open"), event("d1", "a", "open"), event("d2", "a", "open"), event("d1", "b", "close"), event("d1", "b", "close")].join("\n");
    w.lake_file("x.json", body.as_bytes()).await;
    let c = conn(r#","filter":{"event_type":{"not_in":["close"]}}"#);
    let m = w.export(&c, ExportMode::Recurring, &settings(1 << 20, 1)).await.unwrap().manifest.unwrap();
    let acc = m.events.unwrap().accounting;
    assert_eq!((acc.read, acc.exported, acc.filtered, acc.duplicates, acc.invalid), (5, 2, 1, 2, 0));
    let lines = w.exported_lines().await;
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["event_type"] == "open"));
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_deterministic_across_runs_and_thread_counts() {
    let w = World::new();
    let spec = HourSpec {
        project_id: "187520".into(),
        hour: UtcHour::parse(HOUR).unwrap(),
        events: 6000,
        events_per_file: 1000,
        duplicate_every: 30,
        invalid_every: 90,
        seed: 3,
        gzip: true,
    };
    generate_hour(w.lake.as_ref(), &spec).await.unwrap();
    let c = conn("");
    let mut snapshots = Vec::new();
    for threads in [1, 4, 1] {
        w.export(&c, ExportMode::Replace, &settings(2 << 20, threads)).await.unwrap();
        let mut snap = Vec::new();
        for k in w.dest.keys() {
            snap.push((k.clone(), w.dest.get(&k).await.unwrap()));
        }
        snapshots.push(snap);
    }
    assert!(snapshots[0].len() >= 3, "expected several parts and a marker");
    assert_eq!(snapshots[0], snapshots[1], "1 vs 4 threads changed the output");
    assert_eq!(snapshots[0], snapshots[2], "a second run changed the output");
}

#[tokio::test(flavor = "multi_thread")]
async fn recurring_skips_and_replace_removes_stale_parts() {
    let w = World::new();
    let spec = HourSpec {
        project_id: "187520".into(),
        hour: UtcHour::parse(HOUR).unwrap(),
        events: 4000,
        events_per_file: 1000,
        duplicate_every: 0,
        invalid_every: 0,
        seed: 9,
        gzip: false,
    };
    generate_hour(w.lake.as_ref(), &spec).await.unwrap();
    let c = conn("");
    let m = w.export(&c, ExportMode::Recurring, &settings(512 * 1024, 2)).await.unwrap().manifest.unwrap();
    let parts = m.events.unwrap().files.len();
    assert!(parts >= 4, "{parts} parts");
    assert!(w.export(&c, ExportMode::Recurring, &settings(512 * 1024, 2)).await.unwrap().skipped);
    let m = w.export(&c, ExportMode::Replace, &settings(64 << 20, 2)).await.unwrap().manifest.unwrap();
    assert_eq!(m.events.unwrap().files.len(), 1);
    let left: Vec<String> = w.dest.keys().into_iter().filter(|k| k.contains('#')).collect();
    assert_eq!(left, vec!["exports/187520/187520_2020-01-25_17#0.json.gz"]);
    assert_eq!(w.exported_lines().await.len(), 4000, "every event exactly once after the replace");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replace_whose_event_files_expired_keeps_the_events_though_merges_remain() {
    let w = World::new();
    let body = [event("d1", "a", "open"), event("d2", "b", "open")].join("\n");
    w.lake_file("x.json", body.as_bytes()).await;
    exporter::export::generate::generate_merges(w.lake.as_ref(), "42", UtcHour::parse(HOUR).unwrap(), 5, 1).await.unwrap();
    let c = conn("");
    w.export(&c, ExportMode::Recurring, &settings(1 << 20, 1)).await.unwrap();
    assert_eq!(w.exported_lines().await.len(), 2);

    // The event files expire; the organisation's merge files of the hour are still there.
    w.lake.delete("events/187520/2020-01-25/17/x.json").await.unwrap();
    let err = w.export(&c, ExportMode::Replace, &settings(1 << 20, 1)).await.unwrap_err().to_string();
    assert!(err.contains("1 event part(s) while the lake has no event files") && err.contains("nothing was deleted"), "{err}");
    assert_eq!(w.exported_lines().await.len(), 2, "the exported events are still there");
    assert!(w.dest.keys().contains(&"exports/187520/187520_2020-01-25_17_complete".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_write_fails_the_hour_and_leaves_no_marker() {
    let w = World::new();
    w.lake_file("x.json", event("d", "i", "e").as_bytes()).await;
    w.dest.refuse(MemoryOp::Put);
    let err = w.export(&conn(""), ExportMode::Recurring, &settings(1 << 20, 1)).await.unwrap_err();
    assert!(err.is_accessibility(), "{err}");
    assert_eq!(err.missing_permission(), Some("memory:Put"));
    assert!(w.dest.keys().is_empty());
}

/// Lake damage: every bad line is reported with its file and line, the good ones exported.
#[tokio::test(flavor = "multi_thread")]
async fn damaged_lake_files_lose_no_good_event() {
    let w = World::new();
    let good = |n: usize| event("dev", &format!("ins-{n}"), "e");
    // 1 malformed JSON, 2 not an object, 3 invalid UTF-8, 4 wrong field type, 5 bad timestamp
    let mut a = Vec::new();
    for line in [good(1), "{\"event_type\": \"x\", ".into(), "[1,2,3]".into(), good(2)] {
        a.extend_from_slice(line.as_bytes());
        a.push(b'\n');
    }
    a.extend_from_slice(b"{\"event_type\":\"\xff\xfe\"}\n");
    a.extend_from_slice(br#"{"event_type":"t","event_properties":"not a dict"}"#);
    a.push(b'\n');
    a.extend_from_slice(br#"{"event_type":"t","client_event_time":"last tuesday"}"#);
    a.extend_from_slice(b"\n\n   \n"); // blank lines are not records
    w.lake_file("a.json", &a).await;
    // 6 empty plain file, 7 empty gzip file
    w.lake_file("b-empty.json", b"").await;
    w.lake_file("c-empty.json.gz", b"").await;
    // 8 truncated gzip: the lines before the cut survive
    let mut body = String::new();
    for n in 10..400 {
        body.push_str(&good(n));
        body.push('\n');
    }
    let z = gz(body.as_bytes());
    w.lake_file("d-truncated.json.gz", &z[..z.len() * 2 / 3]).await;
    // 9 a line over 8 MiB, then a good line in the same file
    let mut huge = vec![b'x'; 9 << 20];
    huge.push(b'\n');
    huge.extend_from_slice(good(1000).as_bytes());
    w.lake_file("e-huge.json", &huge).await;
    // 10 a file that is not gzip although named .gz
    w.lake_file("f-not-gzip.json.gz", b"plain text, not gzip\n").await;
    w.lake_file("g-last.json", good(2000).as_bytes()).await;

    let m = w.export(&conn(""), ExportMode::Recurring, &settings(1 << 20, 2)).await.unwrap().manifest.unwrap();
    let ev = m.events.unwrap();
    assert!(ev.accounting.balances(), "{:?}", ev.accounting);
    let files: Vec<&str> = ev.invalid_records.iter().map(|r| r.file.rsplit('/').next().unwrap()).collect();
    assert_eq!(files.iter().filter(|f| **f == "a.json").count(), 5, "{:?}", ev.invalid_records);
    assert!(files.contains(&"d-truncated.json.gz") && files.contains(&"e-huge.json") && files.contains(&"f-not-gzip.json.gz"));
    let a_lines: Vec<u64> = ev.invalid_records.iter().filter(|r| r.file.ends_with("a.json")).map(|r| r.line).collect();
    assert_eq!(a_lines, vec![2, 3, 5, 6, 7], "line numbers are reported");
    let exported: Vec<String> = w.exported_lines().await.iter().map(|l| l["$insert_id"].as_str().unwrap().to_string()).collect();
    for must in ["ins-1", "ins-2", "ins-10", "ins-1000", "ins-2000"] {
        assert!(exported.contains(&must.to_string()), "{must} lost");
    }
    assert!(exported.len() >= 5 + 100, "most of the truncated file's lines survive: {}", exported.len());
}

/// Bad requests and configurations: each refused with a message that says what and how.
#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_and_configs_are_refused_clearly() {
    let refuse = |doc: String, needle: &str| {
        let err = Connection::from_json(&doc).unwrap_err();
        assert!(err.to_string().contains(needle), "{doc}\n→ {err}");
        assert!(!err.is_retryable());
    };
    // 11 prefix with .., 12 leading slash, 13 portfolio, 14 bad filter, 15 unknown field,
    // 16 bad email, 17 bad bucket name, 18 no credentials for Azure
    refuse(conn_json("").replace("\"prefix\":\"exports\"", "\"prefix\":\"a/../b\""), "'..'");
    refuse(conn_json("").replace("\"prefix\":\"exports\"", "\"prefix\":\"/abs\""), "starts with '/'");
    refuse(conn_json(r#","project_kind":"portfolio""#), "portfolio");
    refuse(conn_json(r#","filter":{"all":[{"field":"country","op":"is"}]}"#), "filter.all[0].op");
    refuse(conn_json(r#","colour":"blue""#), "unknown field");
    refuse(conn_json("").replace("owner@example.com", "not-an-email"), "creator");
    refuse(
        r#"{"id":"c","org_id":"1","project_id":"2","creator":"a@b.co","destination":{"type":"s3","bucket":"Bad_Bucket","region":"us-east-1"}}"#.into(),
        "bucket name",
    );
    refuse(r#"{"id":"c","org_id":"1","project_id":"2","creator":"a@b.co","destination":{"type":"azure","account_url":"https://a.blob.core.windows.net","container":"events"}}"#.into(), "no credentials");
    // 19 bad hours, 20 end before start
    for bad in ["2020-01-25T24", "2020-01-25", "2020-01-25T17:30", "yesterday"] {
        assert!(UtcHour::parse(bad).unwrap_err().to_string().contains("expected a UTC hour"));
    }
    assert!(HourRange::parse("2020-01-26T00", "2020-01-25T00").unwrap_err().to_string().contains("before"));
    let err = BackfillRequest::from_payload(&serde_json::json!({"connection_id":"c1","from":"2020-01-26T00","to":"2020-01-25T00"}))
        .and_then(|r| r.range())
        .unwrap_err();
    assert!(err.to_string().contains("before"), "{err}");
    // 21 hostile object keys never leave the local store's folder
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("root")).unwrap();
    for key in ["../escape", "/etc/passwd", "a//b", "a\\b"] {
        assert!(matches!(store.put(key, Bytes::from_static(b"x")).await, Err(ExportError::InvalidInput { .. })), "{key}");
    }
    assert!(!dir.path().join("escape").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_belong_to_the_first_org_and_unknown_connections_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = EmbeddedHome::open(dir.path(), ExportSettings::new(1 << 20, 6, 1).unwrap(), RetryPolicy::default(), system_clock()).unwrap();
    let dest = dir.path().join("dest");
    let doc = |id: &str, org: &str, prefix: &str| {
        format!(
            r#"{{"id":"{id}","org_id":"{org}","project_id":"{org}","admins":["admin@example.com"],"creator":"a@b.co","destination":{{"type":"local","path":"{}","prefix":"{prefix}"}}}}"#,
            dest.display()
        )
    };
    for org in ["1", "2"] {
        home.control.add_project(&Project::new(org, org, false).unwrap()).await.unwrap();
    }
    home.control.create_connection(Connection::from_json(&doc("first", "1", "p1")).unwrap(), Utc::now()).await.unwrap();
    // same org, another project/prefix in the same bucket: fine
    home.control.create_connection(Connection::from_json(&doc("second", "1", "p2")).unwrap(), Utc::now()).await.unwrap();
    // 22 another organisation: refused, and nothing stored for it
    let err = home.control.create_connection(Connection::from_json(&doc("intruder", "2", "p3")).unwrap(), Utc::now()).await.unwrap_err();
    assert!(matches!(err, ExportError::Conflict { .. }) && err.to_string().contains("another organisation"), "{err}");
    assert!(matches!(home.control.get_connection("intruder").await, Err(ExportError::NotFound { .. })));
    // 23 unknown connection in a payload: clear, not retryable, nothing written
    let err = home.fire_hourly("nope", Utc::now()).await.unwrap_err();
    assert!(err.to_string().contains("no such connection") && !err.is_retryable(), "{err}");
    assert!(home.control.list_runs("nope").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_secrets_are_sealed_in_the_control_store_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let home = EmbeddedHome::open(dir.path(), ExportSettings::new(1 << 20, 6, 1).unwrap(), RetryPolicy::default(), system_clock()).unwrap();
    let secret = "sup3r-s3cret-value-that-must-not-leak";
    let doc = format!(
        r#"{{"id":"az","org_id":"9","project_id":"5","admins":["a@b.co"],"creator":"a@b.co","destination":{{"type":"azure",
            "account_url":"https://acct.blob.core.windows.net","container":"events","tenant_id":"t","client_id":"c","client_secret":"{secret}"}}}}"#
    );
    let conn = Connection::from_json(&doc).unwrap();
    assert!(!format!("{conn:?}").contains(secret), "Debug shows the secret");
    home.control.add_project(&Project::new("5", "9", false).unwrap()).await.unwrap();
    home.control.create_connection(conn, Utc::now()).await.unwrap();
    let stored = std::fs::read_to_string(dir.path().join("control/connections/az.json")).unwrap();
    assert!(!stored.contains(secret), "the stored connection holds the plain secret");
    assert!(stored.contains("local2:"), "sealed with the local key: {stored}");
    let loaded = home.control.get_connection("az").await.unwrap();
    match loaded.destination {
        exporter::model::destination::Destination::Azure { client_secret: Some(s), .. } => assert_eq!(s.expose(), secret),
        other => panic!("unexpected destination {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lake_that_fails_mid_hour_leaves_no_part_and_no_marker() {
    let lake_dir = tempfile::tempdir().unwrap();
    let dest_dir = tempfile::tempdir().unwrap();
    let lake = Arc::new(LocalStore::new(lake_dir.path()).unwrap());
    let dest = Arc::new(LocalStore::new(dest_dir.path()).unwrap());
    let spec = HourSpec {
        project_id: "187520".into(),
        hour: UtcHour::parse(HOUR).unwrap(),
        events: 3000,
        events_per_file: 1000,
        duplicate_every: 0,
        invalid_every: 0,
        seed: 4,
        gzip: false,
    };
    generate_hour(lake.as_ref(), &spec).await.unwrap();
    // The second file vanishes between listing and reading: a storage error, fatal to the hour.
    let files = lake.list("events/187520/").await.unwrap();
    let gone = files[1].key.clone();
    let lake_for_hook = lake.clone();
    let targets = ExportTargets { lake: Arc::new(VanishingLake { inner: lake_for_hook, gone }), events: dest.clone(), merged_ids: dest.clone() };
    let err = export_hour(&conn("").export_spec().unwrap(), &targets, UtcHour::parse(HOUR).unwrap(), ExportMode::Recurring, &settings(64 << 20, 2))
        .await
        .unwrap_err();
    // A missing lake object is our own infrastructure's failure, never the destination's.
    assert!(matches!(&err, ExportError::OurInfrastructure { component, detail } if component == "event lake" && detail.contains("not found")), "{err}");
    assert!(!err.is_accessibility() && err.is_retryable(), "{err}");
    assert!(dest.list("").await.unwrap().is_empty(), "nothing may be visible after a failed hour");
    let uploads = std::fs::read_dir(dest_dir.path().join(".uploads")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(uploads, 0, "the half-written part was not cleaned up");
}

/// A lake whose listing names a file that reading then cannot find.
#[derive(Debug)]
struct VanishingLake {
    inner: Arc<LocalStore>,
    gone: String,
}

#[async_trait::async_trait]
impl ObjectStore for VanishingLake {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(&self, key: &str, body: Bytes) -> exporter::Result<()> {
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> exporter::Result<exporter::ports::CreateOutcome> {
        self.inner.put_if_absent(key, body).await
    }
    async fn upload(&self, key: &str) -> exporter::Result<Box<dyn exporter::ports::StreamingUpload>> {
        self.inner.upload(key).await
    }
    async fn get(&self, key: &str) -> exporter::Result<Bytes> {
        self.inner.get(key).await
    }
    async fn get_stream(&self, key: &str) -> exporter::Result<exporter::ports::ByteStream> {
        if key == self.gone {
            return Err(ExportError::NotFound { what: key.to_string() });
        }
        self.inner.get_stream(key).await
    }
    async fn head(&self, key: &str) -> exporter::Result<Option<exporter::ports::ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> exporter::Result<Vec<exporter::ports::ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> exporter::Result<()> {
        self.inner.delete(key).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_short_of_time_hands_the_hours_it_cannot_start_to_one_time_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2020-01-25T04:20:00Z").unwrap().with_timezone(&Utc);
    let clock: exporter::model::clock::Clock = Arc::new(move || at);
    let home = EmbeddedHome::open(dir.path(), ExportSettings::new(1 << 20, 6, 1).unwrap(), RetryPolicy::default(), clock).unwrap();
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let doc = format!(
        r#"{{"id":"c1","org_id":"1","project_id":"187520","admins":["admin@example.com"],"creator":"a@b.co","created":"2020-01-25T00:05:00Z","destination":{{"type":"local","path":"{}"}}}}"#,
        dest.display()
    );
    home.control.add_project(&Project::new("187520", "1", false).unwrap()).await.unwrap();
    home.control.create_connection(Connection::from_json(&doc).unwrap(), at).await.unwrap();
    // Four owed hours (00..03), and a deadline already too close to start a second one.
    let payload = serde_json::json!({"connection_id": "c1", "scheduled_time": "2020-01-25T04:20:00Z"});
    let r = exporter::delivery::invocation::handle_hourly(&home.services, &payload, Some(at - chrono::Duration::seconds(1))).await.unwrap();
    assert_eq!(r.hours.len(), 4);
    assert!(r.hours[0].succeeded(), "the first hour always starts: {:?}", r.hours[0]);
    for h in &r.hours[1..] {
        assert!(matches!(h.after_failure, Some(exporter::delivery::failure::AfterFailure::HandedOff { .. })), "{h:?}");
    }
    let handed = home.scheduler.retries().await.unwrap();
    assert_eq!(handed.len(), 3, "one one-time schedule per hour not started: {handed:?}");
    assert!(handed.iter().all(|s| s.at == at + chrono::Duration::minutes(1)));
    // The hours stay owed with their next run named, and the schedules export them.
    let ledger = exporter::control::ledger::HourLedger::new(home.control.store().clone());
    assert_eq!(ledger.owed("c1").await.unwrap().len(), 3);
    for (_, response) in home.fire_due_retries(at + chrono::Duration::minutes(1)).await.unwrap() {
        assert!(response.unwrap().hours.iter().all(|h| h.succeeded()));
    }
    assert!(ledger.owed("c1").await.unwrap().is_empty(), "every handed-off hour was exported");
}
