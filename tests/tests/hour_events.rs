//! "Hour Exported" events through the real run path (embedded home, hourly schedule or
//! run service, lease, ledger): on moto's EventBridge, read back through a rule whose
//! target is an SQS queue; webhooks received by a local HTTP server (signature checked
//! with the `hmac` crate); the failure notice on a Slack-style webhook.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use exporter::adapters::aws::context::AwsContext;
use exporter::adapters::aws::eventbridge::EventBridgeSink;
use exporter::adapters::local::memory::{MemoryOp, MemoryStore};
use exporter::adapters::webhook::{HttpWebhooks, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use exporter::control::connection::Connection;
use exporter::control::hour_event::{hour_event_id, Backoff, HourAnnouncer};
use exporter::control::ledger::HourLedger;
use exporter::control::projects::Project;
use exporter::delivery::failure::AfterFailure;
use exporter::delivery::retry::RetryPolicy;
use exporter::export::generate::{generate_hour, generate_merges, HourSpec};
use exporter::export::hour_export::ExportSettings;
use exporter::export::manifest::Manifest;
use exporter::hour::UtcHour;
use exporter::model::clock::Clock;
use exporter::model::destination::Destination;
use exporter::model::hour_event::HourExported;
use exporter::model::hour_request::ExportMode;
use exporter::model::hour_request::HourRequest;
use exporter::ports::{DestinationOpener, HourEventSink, ObjectStore, WebhookPoster};
use exporter::runtime::embedded::EmbeddedHome;
use exporter::runtime::factory::CloudContext;
use hmac::{Hmac, Mac};
use integration_tests::captured_logs::CapturedLogs;
use integration_tests::emulators::{moto_url, unique_name};
use integration_tests::moto::{self, admin_config, bus_to_queue, create_bucket, drain_queue, s3_client, ROLE_TEMPLATE};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROJECT: &str = "187520";
const HOUR: &str = "2020-01-25T00";
const SECRET: &str = "whsec-0123456789abcdef";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hour() -> UtcHour {
    UtcHour::parse(HOUR).unwrap()
}

/// An embedded home on a movable clock, with a lake hour of `events` events.
struct Bed {
    dir: tempfile::TempDir,
    home: EmbeddedHome,
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl Bed {
    async fn new(events: u64) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(Mutex::new(t("2020-01-25T01:20:00Z")));
        let c = now.clone();
        let clock: Clock = Arc::new(move || *c.lock().unwrap());
        // Small parts, so an hour has several.
        let home = EmbeddedHome::open(&dir.path().join("home"), ExportSettings::new(256 * 1024, 6, 1).unwrap(), RetryPolicy::default(), clock).unwrap();
        let spec =
            HourSpec { project_id: PROJECT.into(), hour: hour(), events, events_per_file: 500, duplicate_every: 0, invalid_every: 0, seed: 7, gzip: true };
        generate_hour(home.lake.as_ref(), &spec).await.unwrap();
        generate_merges(home.lake.as_ref(), "42", hour(), 20, 3).await.unwrap();
        home.control.add_project(&Project::new(PROJECT, "42", false).unwrap()).await.unwrap();
        Bed { dir, home, now }
    }

    fn set_now(&self, at: &str) {
        *self.now.lock().unwrap() = t(at);
    }

    /// Publishes through `announcer` (and opens destinations with `destinations`).
    fn rewire(&mut self, announcer: HourAnnouncer, destinations: Option<Arc<dyn DestinationOpener>>) {
        self.home.runs.announcer = announcer;
        if let Some(d) = destinations {
            self.home.runs.destinations = d;
        }
        let runner = Arc::new(self.home.runs.clone());
        self.home.services.runner = runner.clone();
        self.home.services.scheduled = runner.clone();
        self.home.backfill.runner = runner;
    }

    async fn connect(&self, destination: Value, extra: Value) -> Connection {
        let mut doc = json!({"id": "c1", "org_id": "42", "project_id": PROJECT, "created": "2020-01-25T00:05:00Z",
            "destination": destination, "admins": ["admin@example.com"], "creator": "owner@example.com"});
        doc.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let conn = Connection::from_json(&doc.to_string()).unwrap();
        self.home.control.create_connection(conn, t("2020-01-25T00:05:00Z")).await.unwrap();
        self.home.control.get_connection("c1").await.unwrap()
    }

    fn local_dest(&self) -> Value {
        let dest = self.dir.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        json!({"type": "local", "path": dest, "prefix": "exports"})
    }

    fn ledger(&self) -> HourLedger {
        HourLedger::new(self.home.control.store().clone())
    }

    async fn run(&self, conn: &Connection, mode: ExportMode) -> exporter::delivery::failure::HourResult {
        self.home.services.failure.process_hour(self.home.services.runner.as_ref(), conn, &HourRequest::new("c1", hour(), mode, 1)).await.unwrap()
    }

    async fn announcement(&self) -> Value {
        let runs = self.home.control.list_runs("c1").await.unwrap();
        let last = runs.iter().filter(|r| r.announcement.is_some()).max_by_key(|r| r.ended).expect("a run record with an announcement");
        serde_json::to_value(last.announcement.as_ref().unwrap()).unwrap()
    }
}

fn bus_announcer(bus: &str) -> HourAnnouncer {
    let sink = EventBridgeSink::new(aws_sdk_eventbridge::Client::new(&admin_config(&moto_url())), bus);
    HourAnnouncer { bus_backoff: Some(quick()), ..HourAnnouncer::new(Some(Arc::new(sink)), None) }
}

fn quick() -> Backoff {
    Backoff { attempts: 3, first_delay: Duration::from_millis(50), factor: 2 }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// The events of our source the queue received, by hour.
async fn hour_events(queue: &str) -> Vec<Value> {
    let got = drain_queue(&admin_config(&moto_url()), queue).await;
    for e in &got {
        assert_eq!((e["source"].as_str(), e["detail-type"].as_str()), (Some("event-export"), Some("Hour Exported")), "{e}");
    }
    got.into_iter().map(|e| e["detail"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_hour_reaches_a_queue_through_an_eventbridge_rule_with_the_same_id_on_redelivery() {
    let url = moto_url();
    let admin = admin_config(&url);
    let bus = unique_name("hours");
    let queue = bus_to_queue(&admin, &bus).await;
    let bucket = unique_name("dest");
    create_bucket(&admin, &bucket).await;
    let cloud = CloudContext { aws: Some(AwsContext::new(admin.clone(), Some(ROLE_TEMPLATE.into())).unwrap()), ..Default::default() };

    let mut bed = Bed::new(3000).await;
    bed.rewire(bus_announcer(&bus), Some(Arc::new(cloud)));
    let conn = bed.connect(json!({"type": "s3", "bucket": bucket, "prefix": "exports", "region": moto::REGION}), json!({})).await;

    // The hourly schedule fires: hour 00 is owed, exported, announced.
    let response = bed.home.fire_hourly("c1", t("2020-01-25T01:20:00Z")).await.unwrap();
    assert!(response.hours.iter().all(|h| h.succeeded()), "{response:?}");
    let events = hour_events(&queue).await;
    assert_eq!(events.len(), 1, "one event per completed hour: {events:?}");
    let e = &events[0];
    let marker_key = format!("exports/{PROJECT}/{PROJECT}_2020-01-25_0_complete");
    let s3 = s3_client(&admin);
    let marker = s3.get_object().bucket(&bucket).key(&marker_key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    let manifest: Manifest = serde_json::from_slice(&marker).unwrap();
    assert_eq!(e["id"].as_str().unwrap(), hour_event_id("c1", hour(), &manifest), "the id is derived from the hour's manifest");
    assert_eq!(
        (e["connection_id"].as_str(), e["org_id"].as_str(), e["project_id"].as_str(), e["hour"].as_str(), e["mode"].as_str()),
        (Some("c1"), Some("42"), Some(PROJECT), Some(HOUR), Some("recurring"))
    );
    assert_eq!(e["destination"].as_str().unwrap(), format!("s3://{bucket}/exports"));
    assert_eq!((e["format"].as_str(), e["layout"].as_str(), e["marker_key"].as_str()), (Some("json"), Some("amplitude"), Some(marker_key.as_str())));
    let parts = e["parts"].as_array().unwrap();
    assert!(parts.len() >= 2, "several parts: {parts:?}");
    let mut counted = 0;
    for (n, p) in parts.iter().enumerate() {
        let key = p["key"].as_str().unwrap();
        assert_eq!(key, format!("exports/{PROJECT}/{PROJECT}_2020-01-25_0#{n}.json.gz"));
        assert_eq!(p["part"].as_u64(), Some(n as u64));
        let object = s3.get_object().bucket(&bucket).key(key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
        assert_eq!(p["sha256"].as_str().unwrap(), sha256_hex(&object), "{key}: sha256 of the object as stored");
        assert_eq!(p["bytes"].as_u64(), Some(object.len() as u64));
        counted += p["events"].as_u64().unwrap();
    }
    assert_eq!(counted, 3000);
    assert_eq!(e["accounting"]["events"], json!({"read": 3000, "exported": 3000, "filtered": 0, "duplicates": 0, "invalid": 0}));
    let merged = &e["merged_ids"];
    assert_eq!((merged["key"].as_str(), merged["records"].as_u64()), (Some("exports/-42/-42_2020-01-25_0.json.gz"), Some(20)));
    let merged_object =
        s3.get_object().bucket(&bucket).key("exports/-42/-42_2020-01-25_0.json.gz").send().await.unwrap().body.collect().await.unwrap().into_bytes();
    assert_eq!(merged["sha256"].as_str().unwrap(), sha256_hex(&merged_object));
    let first_id = e["id"].as_str().unwrap().to_string();
    let record = bed.announcement().await;
    assert_eq!(record["event_id"].as_str(), Some(first_id.as_str()));
    assert_eq!(record["bus"], json!({"delivered": true, "attempts": 1}));
    assert!(bed.ledger().owed("c1").await.unwrap().is_empty());

    // A redelivered schedule finds nothing owed and announces nothing new.
    bed.home.fire_hourly("c1", t("2020-01-25T01:20:00Z")).await.unwrap();
    assert!(hour_events(&queue).await.is_empty());

    // A replace of the same lake hour writes the same bytes: the event carries the same id.
    assert!(bed.run(&conn, ExportMode::Replace).await.succeeded());
    let again = hour_events(&queue).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0]["id"].as_str(), again[0]["mode"].as_str()), (Some(first_id.as_str()), Some("replace")));

    // A late lake file: a new part, a new manifest, a new id.
    let late =
        HourSpec { project_id: PROJECT.into(), hour: hour(), events: 10, events_per_file: 10, duplicate_every: 0, invalid_every: 0, seed: 99, gzip: false };
    let late_dir = MemoryStore::new("late");
    generate_hour(&late_dir, &late).await.unwrap();
    for meta in late_dir.list("").await.unwrap() {
        bed.home.lake.put(&meta.key.replace(".json", "-late.json"), late_dir.get(&meta.key).await.unwrap()).await.unwrap();
    }
    bed.set_now("2020-01-25T02:20:00Z");
    bed.home.fire_hourly("c1", t("2020-01-25T02:20:00Z")).await.unwrap();
    let by_hour: BTreeMap<String, Value> = hour_events(&queue).await.into_iter().map(|e| (e["hour"].as_str().unwrap().to_string(), e)).collect();
    let grown = &by_hour[HOUR];
    assert_eq!(grown["mode"].as_str(), Some("late"));
    assert_ne!(grown["id"].as_str(), Some(first_id.as_str()), "a changed hour is a new event");
    assert_eq!(grown["parts"].as_array().unwrap().len(), parts.len() + 1);
    assert_eq!(grown["accounting"]["events"]["exported"].as_u64(), Some(3010));
    assert!(by_hour.contains_key("2020-01-25T01"), "the next hour (empty) is announced too: {by_hour:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bus_does_not_fail_the_export_and_the_next_run_publishes_the_event() {
    let admin = admin_config(&moto_url());
    let bus = unique_name("later");
    let mut bed = Bed::new(600).await;
    bed.rewire(bus_announcer(&bus), None);
    let conn = bed.connect(bed.local_dest(), json!({})).await;

    // The bus does not exist (yet): moto refuses PutEvents; the export stands.
    let result = bed.run(&conn, ExportMode::Recurring).await;
    assert!(result.succeeded(), "a bus failure never fails the export: {result:?}");
    let marker = std::fs::read(bed.dir.path().join(format!("dest/exports/{PROJECT}/{PROJECT}_2020-01-25_0_complete"))).unwrap();
    let manifest: Manifest = serde_json::from_slice(&marker).unwrap();
    let record = bed.announcement().await;
    assert_eq!((record["bus"]["delivered"].as_bool(), record["bus"]["attempts"].as_u64()), (Some(false), Some(3)));
    assert!(record["bus"]["error"].as_str().unwrap().contains(&bus), "{record}");
    let owed = bed.ledger().owed("c1").await.unwrap();
    assert_eq!(owed.len(), 1, "the hour stays owed until its event is published");
    assert_eq!(owed[0].event_pending, Some(ExportMode::Recurring));
    assert!(owed[0].last_error.as_deref().unwrap().contains("not published yet"), "{:?}", owed[0]);
    let part = bed.dir.path().join(format!("dest/exports/{PROJECT}/{PROJECT}_2020-01-25_0#0.json.gz"));
    let written = std::fs::metadata(&part).unwrap().modified().unwrap();

    // The bus appears; the next hourly run finds the hour done, writes nothing, publishes.
    let queue = bus_to_queue(&admin, &bus).await;
    bed.home.fire_hourly("c1", t("2020-01-25T01:25:00Z")).await.unwrap();
    let events = hour_events(&queue).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"].as_str().unwrap(), hour_event_id("c1", hour(), &manifest), "the event of the hour as exported");
    assert_eq!(std::fs::metadata(&part).unwrap().modified().unwrap(), written, "not exported again");
    assert!(bed.ledger().owed("c1").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_replace_keeps_the_waiting_event_and_the_next_run_publishes_it() {
    let admin = admin_config(&moto_url());
    let bus = unique_name("refused");
    let mut bed = Bed::new(600).await;
    bed.rewire(bus_announcer(&bus), None);
    let conn = bed.connect(bed.local_dest(), json!({})).await;
    assert!(bed.run(&conn, ExportMode::Recurring).await.succeeded());
    assert_eq!(bed.ledger().owed("c1").await.unwrap()[0].event_pending, Some(ExportMode::Recurring));

    // The lake hour expires; a backfill of it is refused before anything is written.
    for folder in [format!("events/{PROJECT}/2020-01-25/00/"), "merges/42/2020-01-25/00/".to_string()] {
        for file in bed.home.lake.list(&folder).await.unwrap() {
            bed.home.lake.delete(&file.key).await.unwrap();
        }
    }
    let refused = bed.run(&conn, ExportMode::Replace).await;
    assert!(!refused.succeeded(), "an empty lake under a replace is refused: {refused:?}");
    let owed = bed.ledger().owed("c1").await.unwrap();
    assert_eq!(owed.len(), 1);
    assert_eq!(
        (owed[0].mode, owed[0].event_pending),
        (ExportMode::Recurring, Some(ExportMode::Recurring)),
        "the refusal must not turn the waiting event into a replace: {:?}",
        owed[0]
    );

    // The bus appears: the next hourly run publishes the hour as it was exported.
    let queue = bus_to_queue(&admin, &bus).await;
    bed.home.fire_hourly("c1", t("2020-01-25T01:25:00Z")).await.unwrap();
    assert_eq!(hour_events(&queue).await.len(), 1);
    assert!(bed.ledger().owed("c1").await.unwrap().is_empty(), "the hour leaves the ledger once its event is out");
}

/// A bus that never answers on its first use (the run then dies: its future is dropped).
#[derive(Debug)]
struct HangsOnce {
    inner: EventBridgeSink,
    hung: Mutex<bool>,
}

#[async_trait]
impl HourEventSink for HangsOnce {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn publish(&self, event: &HourExported) -> exporter::Result<()> {
        let first = !std::mem::replace(&mut *self.hung.lock().unwrap(), true);
        if first {
            std::future::pending::<()>().await;
        }
        self.inner.publish(event).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_dies_between_marker_and_publish_leaves_the_event_to_the_next_delivery() {
    let admin = admin_config(&moto_url());
    let bus = unique_name("crash");
    let queue = bus_to_queue(&admin, &bus).await;
    let mut bed = Bed::new(600).await;
    let sink = HangsOnce { inner: EventBridgeSink::new(aws_sdk_eventbridge::Client::new(&admin), &bus), hung: Mutex::new(false) };
    bed.rewire(HourAnnouncer::new(Some(Arc::new(sink)), None), None);
    let conn = bed.connect(bed.local_dest(), json!({})).await;

    let died = tokio::time::timeout(Duration::from_secs(3), bed.run(&conn, ExportMode::Recurring)).await;
    assert!(died.is_err(), "the run was stopped while publishing");
    let marker = bed.dir.path().join(format!("dest/exports/{PROJECT}/{PROJECT}_2020-01-25_0_complete"));
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert!(hour_events(&queue).await.is_empty());
    assert_eq!(bed.ledger().owed("c1").await.unwrap().len(), 1, "the dead run never completed the hour");

    // Lambda redelivers after the dead run's lease expired: the marker is found, nothing is
    // rewritten, and the event goes out with the id of the hour as exported.
    bed.set_now("2020-01-25T01:45:00Z");
    let result = bed.run(&conn, ExportMode::Recurring).await;
    assert!(result.succeeded() && result.exported.as_ref().unwrap().skipped, "{result:?}");
    let events = hour_events(&queue).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"].as_str().unwrap(), hour_event_id("c1", hour(), &manifest));
    assert!(bed.ledger().owed("c1").await.unwrap().is_empty());
}

/// What a local receiver got: headers (lower-case) and body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A local HTTP server answering each POST with the next status of `answers` (the last one
/// repeats); `None` accepts the connection and never answers.
async fn receiver(answers: Vec<Option<u16>>) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let answer = answers[n.min(answers.len() - 1)];
            n += 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_len, content_length) = loop {
                    let r = sock.read(&mut chunk).await.unwrap();
                    if r == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..r]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_len + content_length {
                    let r = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..r]);
                }
                let head = String::from_utf8_lossy(&buf[..head_len]).to_string();
                let mut lines = head.lines();
                let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_string();
                let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
                seen.lock().unwrap().push(Received { path, headers, body: buf[head_len..head_len + content_length].to_vec() });
                match answer {
                    Some(status) => {
                        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                        let _ = sock.write_all(reply.as_bytes()).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    (base, got)
}

fn webhooks(timeout: Duration) -> Arc<dyn WebhookPoster> {
    Arc::new(HttpWebhooks::new(timeout, true).unwrap())
}

fn verify(r: &Received) -> Value {
    let ts = &r.headers[TIMESTAMP_HEADER];
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let sig = r.headers[SIGNATURE_HEADER].strip_prefix("sha256=").expect("sha256= prefix");
    mac.verify_slice(&from_hex(sig)).expect("the signature verifies with the connection's secret");
    let age = Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp is the send time: {age}s");
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_gets_the_signed_event_and_a_flaky_one_gets_it_on_the_third_attempt() {
    let logs = CapturedLogs::install();
    let (base, got) = receiver(vec![Some(503), Some(502), Some(200)]).await;
    let mut bed = Bed::new(600).await;
    let folder = bed.home.events.clone();
    bed.rewire(HourAnnouncer { webhook_backoff: Some(quick()), ..HourAnnouncer::new(Some(folder), Some(webhooks(Duration::from_secs(5)))) }, None);
    let conn = bed.connect(bed.local_dest(), json!({"webhook": {"url": format!("{base}/hooks/hours"), "secret": SECRET}})).await;

    let result = bed.run(&conn, ExportMode::Recurring).await;
    assert!(result.succeeded(), "{result:?}");
    let posts = got.lock().unwrap().clone();
    assert_eq!(posts.len(), 3, "503, 502, then delivered");
    let event = verify(&posts[2]);
    assert_eq!(posts[2].path, "/hooks/hours");
    assert_eq!(posts[2].headers["content-type"], "application/json");
    assert_eq!(posts[2].headers[ID_HEADER], event["id"].as_str().unwrap());
    assert_eq!(posts[0].headers[ID_HEADER], posts[2].headers[ID_HEADER], "every attempt carries the same id");
    assert_eq!((event["hour"].as_str(), event["connection_id"].as_str()), (Some(HOUR), Some("c1")));
    // The same event is the embedded bus's file.
    let file: Value =
        serde_json::from_slice(&std::fs::read(bed.home.events.dir().join(format!("c1/{HOUR}_{}.json", event["id"].as_str().unwrap()))).unwrap()).unwrap();
    assert_eq!(file["detail"], event);
    let record = bed.announcement().await;
    assert_eq!(record["webhook"], json!({"delivered": true, "attempts": 3}));

    // A tampered body does not verify.
    let mut forged = posts[2].clone();
    forged.body = forged.body.replace_first(b"\"c1\"", b"\"c2\"");
    assert!(std::panic::catch_unwind(|| verify(&forged)).is_err(), "a changed body must not verify");
    let logged = logs.text();
    assert!(!logged.is_empty() && !logged.contains(SECRET), "the webhook secret is never logged");
}

trait ReplaceFirst {
    fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
}

impl ReplaceFirst for Vec<u8> {
    fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
        let i = self.windows(from.len()).position(|w| w == from).expect("present");
        [&self[..i], to, &self[i + from.len()..]].concat()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_webhook_neither_fails_nor_holds_up_the_export() {
    let (hanging, got) = receiver(vec![None]).await;
    let mut bed = Bed::new(600).await;
    let folder = bed.home.events.clone();
    bed.rewire(HourAnnouncer { webhook_backoff: Some(quick()), ..HourAnnouncer::new(Some(folder), Some(webhooks(Duration::from_secs(1)))) }, None);
    let conn = bed.connect(bed.local_dest(), json!({"webhook": {"url": format!("{hanging}/never"), "secret": SECRET}})).await;

    let started = Instant::now();
    let result = bed.run(&conn, ExportMode::Recurring).await;
    let took = started.elapsed();
    assert!(result.succeeded(), "{result:?}");
    assert!(took < Duration::from_secs(8), "three 1-second attempts and short waits, not a hung run: {took:?}");
    assert_eq!(got.lock().unwrap().len(), 3);
    let record = bed.announcement().await;
    assert_eq!((record["webhook"]["delivered"].as_bool(), record["webhook"]["attempts"].as_u64()), (Some(false), Some(3)));
    assert!(record["bus"]["delivered"].as_bool().unwrap(), "the bus still got it");
    assert!(bed.ledger().owed("c1").await.unwrap().is_empty(), "a webhook failure leaves nothing owed");

    // Nobody listening at all: refused at once, still no failure.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut conn2 = conn.clone();
    conn2.webhook.as_mut().unwrap().url = format!("{closed}/gone");
    let result = bed.run(&conn2, ExportMode::Replace).await;
    assert!(result.succeeded(), "{result:?}");
}

/// Opens every destination as the given store (one that refuses writes).
struct Refusing(Arc<MemoryStore>);

#[async_trait]
impl DestinationOpener for Refusing {
    async fn open(&self, _dest: &Destination, _project_id: &str) -> exporter::Result<Arc<dyn ObjectStore>> {
        Ok(self.0.clone())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_destination_posts_the_slack_text_naming_the_missing_permission_and_never_the_url() {
    let logs = CapturedLogs::install();
    let (base, got) = receiver(vec![Some(200)]).await;
    let secret_path = "/services/T0000/B0000/slack-secret-token-xyz";
    let mut bed = Bed::new(100).await;
    let dest = Arc::new(MemoryStore::new("refusing"));
    dest.refuse(MemoryOp::Put);
    let folder = bed.home.events.clone();
    bed.rewire(HourAnnouncer::new(Some(folder), None), Some(Arc::new(Refusing(dest))));
    bed.home.services.failure.webhooks = Some(webhooks(Duration::from_secs(5)));
    let conn = bed.connect(bed.local_dest(), json!({"failure_webhook": format!("{base}{secret_path}")})).await;

    // The last attempt fails for lack of a permission: one email and one Slack-style post.
    let last = RetryPolicy::default().max_attempts;
    let req = HourRequest::new("c1", hour(), ExportMode::Recurring, last);
    let result = bed.home.services.failure.process_hour(bed.home.services.runner.as_ref(), &conn, &req).await.unwrap();
    assert!(matches!(result.after_failure, Some(AfterFailure::GaveUp { accessibility: true, email: Some(_) })), "{result:?}");
    let posts = got.lock().unwrap().clone();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, secret_path);
    assert!(!posts[0].headers.contains_key(SIGNATURE_HEADER), "Slack webhooks are not signed");
    let body: Value = serde_json::from_slice(&posts[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("is failing") && text.contains("memory:Put") && text.contains("connection `c1`"), "{text}");
    assert_eq!(body.as_object().unwrap().len(), 1, "Slack-compatible: only text");
    assert_eq!(bed.home.outbox.messages().unwrap().len(), 1, "the email went out too");
    let episode = bed.home.services.failure.episode("c1").await.unwrap().unwrap();
    assert_eq!(episode.failure_webhook.as_ref().map(|o| o.delivered), Some(true));
    // A redelivered failure: no second email, no second post.
    bed.home.services.failure.process_hour(bed.home.services.runner.as_ref(), &conn, &req).await.unwrap();
    assert_eq!(got.lock().unwrap().len(), 1);

    // A failure webhook that refuses: the error is kept, without the URL.
    let (refusing, _) = receiver(vec![Some(404)]).await;
    let mut other = conn.clone();
    other.failure_webhook = Some(exporter::model::secret::Secret::new(format!("{refusing}{secret_path}")));
    bed.home.services.failure.on_success(&other, &req).await.unwrap();
    bed.home.services.failure.process_hour(bed.home.services.runner.as_ref(), &other, &req).await.unwrap();
    let episode = bed.home.services.failure.episode("c1").await.unwrap().unwrap();
    let outcome = episode.failure_webhook.unwrap();
    assert!(!outcome.delivered && outcome.error.as_deref().unwrap().contains("HTTP 404"), "{outcome:?}");
    let stored = String::from_utf8(bed.home.control.store().get("failures/c1/episode.json").await.unwrap().to_vec()).unwrap();
    let logged = logs.text();
    for (what, text) in [("error", outcome.error.unwrap()), ("episode", stored), ("logs", logged)] {
        assert!(!text.contains("slack-secret-token-xyz") && !text.contains(&refusing), "the failure webhook URL leaked into {what}: {text}");
    }
}
