//! The watchdog on the deployed stack's code path: the control store is an S3 bucket on moto,
//! read through the real S3 adapter. It finds the connection whose exports stopped with no
//! error, counts the unreadable one as broken without stopping, and publishes the stack's
//! figures as an EMF line; over 1,000 generated connections it costs about four requests each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use exporter::adapters::aws::s3::S3Store;
use exporter::adapters::local::cipher::LocalCipher;
use exporter::control::connection::Connection;
use exporter::control::ledger::HourLedger;
use exporter::control::metrics::MetricsOut;
use exporter::control::runs::RunPolicy;
use exporter::control::store::ControlStore;
use exporter::control::watchdog;
use exporter::hour::UtcHour;
use exporter::model::metrics::MetricSet;
use exporter::ports::{ByteStream, CreateOutcome, MetricsSink, ObjectMeta, ObjectStore, StreamingUpload};
use exporter::Result;
use futures::StreamExt;
use integration_tests::emulators::{moto_url, unique_name};
use integration_tests::moto::{self, admin_config, create_bucket};
use serde_json::Value;

/// Counts every request to the store it wraps.
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn ObjectStore>,
    requests: AtomicU64,
}

impl Counted {
    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl ObjectStore for Counted {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.count();
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<CreateOutcome> {
        self.count();
        self.inner.put_if_absent(key, body).await
    }
    async fn upload(&self, key: &str) -> Result<Box<dyn StreamingUpload>> {
        self.count();
        self.inner.upload(key).await
    }
    async fn get(&self, key: &str) -> Result<Bytes> {
        self.count();
        self.inner.get(key).await
    }
    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        self.count();
        self.inner.get_stream(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.count();
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.count();
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.count();
        self.inner.delete(key).await
    }
}

/// Keeps what the watchdog publishes.
#[derive(Debug, Default)]
struct Kept(Mutex<Vec<MetricSet>>);

impl MetricsSink for Kept {
    fn publish(&self, set: &MetricSet) {
        self.0.lock().unwrap().push(set.clone());
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn connection(id: &str, enabled: bool) -> Connection {
    serde_json::from_value(serde_json::json!({"id": id, "org_id": "42", "project_id": "187520", "created": "2020-01-25T00:05:00Z", "enabled": enabled,
        "destination": {"type": "s3", "bucket": "customer-bucket", "prefix": id, "region": "us-east-1"},
        "admins": ["admin@example.com"], "creator": "owner@example.com"}))
    .unwrap()
}

async fn control_on_moto() -> (Arc<Counted>, ControlStore) {
    let cfg = admin_config(&moto_url());
    let bucket = unique_name("watchdog");
    create_bucket(&cfg, &bucket).await;
    let s3: Arc<dyn ObjectStore> = Arc::new(S3Store::new(moto::s3_client(&cfg), &bucket));
    let counted = Arc::new(Counted { inner: s3, requests: AtomicU64::new(0) });
    let dir = tempfile::tempdir().unwrap();
    let cipher = Arc::new(LocalCipher::open_or_create(dir.path().join("secret.key")).unwrap());
    (counted.clone(), ControlStore::new(counted, cipher))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_watchdog_finds_silent_exports_on_s3_and_publishes_the_stack_figures() {
    let (_, control) = control_on_moto().await;
    let ledger = HourLedger::new(control.store().clone());
    let now = t("2020-01-25T09:30:00Z");
    // Healthy: its scheduled runs registered every settled hour and completed them.
    let healthy = connection("healthy", true);
    control.save_connection(&healthy).await.unwrap();
    ledger.register_through("healthy", UtcHour::parse("2020-01-25T00").unwrap(), UtcHour::parse("2020-01-25T08").unwrap(), 24).await.unwrap();
    for owed in ledger.owed("healthy").await.unwrap() {
        ledger.complete("healthy", &exporter::export::manifest::Manifest::empty(&healthy.export_spec().unwrap(), owed.hour)).await.unwrap();
    }
    control.update_status("healthy", |s| s.last_exported_hour = Some(UtcHour::parse("2020-01-25T08").unwrap())).await.unwrap();
    // Silent: its schedule stopped firing after hour 04 was taken; nothing failed.
    let silent = connection("silent", true);
    control.save_connection(&silent).await.unwrap();
    ledger.register_through("silent", UtcHour::parse("2020-01-25T00").unwrap(), UtcHour::parse("2020-01-25T04").unwrap(), 24).await.unwrap();
    for owed in ledger.owed("silent").await.unwrap() {
        ledger.complete("silent", &exporter::export::manifest::Manifest::empty(&silent.export_spec().unwrap(), owed.hour)).await.unwrap();
    }
    control.update_status("silent", |s| s.last_exported_hour = Some(UtcHour::parse("2020-01-25T04").unwrap())).await.unwrap();
    // Disabled on purpose: never late. Unreadable: broken, and the others still read.
    control.save_connection(&connection("paused", false)).await.unwrap();
    control.store().put("connections/garbled.json", Bytes::from_static(b"{\"id\": \"garbled\", tru")).await.unwrap();

    let kept = Arc::new(Kept::default());
    let out = MetricsOut { sink: kept.clone(), stack: "prod-eu".into(), per_connection: false };
    let survey = watchdog::run(&control, &RunPolicy::default(), Some(&out), now).await.unwrap();
    let s = &survey.stack;
    assert_eq!((s.connections, s.connections_enabled), (4, 3), "{s:?}");
    // Hours 05..07 of `silent` are past their deadline at 09:30 (08 is due at 10:00).
    assert_eq!((s.connections_late, s.overdue_hours), (1, 3), "{s:?}");
    // Owed: silent's 05..08 (08 settled at 09:16) and nothing else.
    assert_eq!(s.owed_hours, 4, "{s:?}");
    assert_eq!(s.oldest_owed_age_seconds, (now - t("2020-01-25T06:00:00Z")).num_seconds(), "hour 05 ended at 06:00: {s:?}");
    assert_eq!(s.connections_broken, 1, "the unreadable file: {s:?}");
    let silent_figures = survey.connections.iter().find(|c| c.connection_id == "silent").unwrap();
    assert_eq!(silent_figures.oldest_overdue, Some(UtcHour::parse("2020-01-25T05").unwrap()));

    // What CloudWatch receives: one EMF line with the stack as its only dimension.
    let sets = kept.0.lock().unwrap().clone();
    assert_eq!(sets.len(), 1);
    let line: Value = serde_json::from_str(&sets[0].to_emf()).unwrap();
    assert_eq!(line["_aws"]["Timestamp"], now.timestamp_millis());
    assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["Stack"]]));
    assert_eq!(line["Stack"], "prod-eu");
    assert_eq!((line["OverdueHours"].as_u64(), line["ConnectionsLate"].as_u64(), line["WatchdogRuns"].as_u64()), (Some(3), Some(1), Some(1)));
}

/// The cost the closing note quotes: requests per survey of 1,000 connections (printed), and
/// a bound on them. Time is printed, not asserted: it is a measurement, not a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_survey_of_1000_connections_costs_about_four_requests_each() {
    let (counted, control) = control_on_moto().await;
    let ledger = HourLedger::new(control.store().clone());
    let now = t("2020-01-25T09:30:00Z");
    let latest = RunPolicy::default().latest_ready(now).unwrap();
    // 1,000 healthy connections, the common case: every settled hour registered and done.
    futures::stream::iter(0..1000)
        .map(|i| {
            let (control, ledger) = (control.clone(), ledger.clone());
            async move {
                let conn = connection(&format!("c{i:04}"), true);
                control.save_connection(&conn).await.unwrap();
                ledger.register_through(&conn.id, latest, latest, 24).await.unwrap();
                ledger.complete(&conn.id, &exporter::export::manifest::Manifest::empty(&conn.export_spec().unwrap(), latest)).await.unwrap();
                control.update_status(&conn.id, |s| s.last_exported_hour = Some(latest)).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let before = counted.requests.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    let survey = watchdog::survey(&control, &RunPolicy::default(), now).await.unwrap();
    let elapsed = started.elapsed();
    let requests = counted.requests.load(Ordering::Relaxed) - before;
    eprintln!("watchdog over 1000 connections on moto: {requests} requests, {:.2} s", elapsed.as_secs_f64());
    assert_eq!(survey.stack.connections, 1000);
    assert!(requests <= 4 * 1000 + 10, "four requests per healthy connection, not {requests}");
    assert_eq!((survey.stack.connections_late, survey.stack.owed_hours, survey.stack.connections_broken), (0, 0, 0), "{:?}", survey.stack);
}
