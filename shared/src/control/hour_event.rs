//! "Hour Exported": the event that tells downstream loaders an hour is complete, so they
//! react instead of polling for `_complete`. Its shape is `crate::model::hour_event`; this
//! module builds it and announces it.
//!
//! - The payload is built from the hour's manifest: where the files are, each part with its
//!   key, records, bytes and sha256, the merged-IDs file, and the accounting.
//! - Its `id` is derived from the connection, the hour and the manifest's bytes: every
//!   publication of the same completed hour carries the same id (a redelivery is
//!   recognisable), and an hour whose files changed (late parts, a replace that wrote other
//!   bytes) gets a new one.
//! - [`HourAnnouncer`] publishes it to the stack's bus ([`HourEventSink`], retried briefly)
//!   and POSTs it to the connection's webhook ([`WebhookPoster`], signed, retried, bounded in
//!   time), and reports what happened to each ([`Announcement`]); it never fails. The run
//!   machinery (`control::runs`) publishes after the marker is written and before the hour
//!   leaves the ledger, and keeps the hour owed while the bus has not taken its event.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::control::connection::Connection;
use crate::error::Result;
use crate::export::manifest::Manifest;
use crate::hour::UtcHour;
use crate::model::hour_event::{HourAccounting, HourExported, MergedIdsFile, PartFile};
use crate::model::hour_request::ExportMode;
use crate::ports::{HourEventSink, WebhookPost, WebhookPoster};

/// The event id of a completed hour: sha256 over the connection, the hour and the
/// manifest's bytes (which hold no wall-clock time), as 32 hex digits.
pub fn hour_event_id(connection_id: &str, hour: UtcHour, manifest: &Manifest) -> String {
    let mut h = Sha256::new();
    h.update(b"hour-exported\n");
    h.update(connection_id.as_bytes());
    h.update(b"\n");
    h.update(hour.to_string().as_bytes());
    h.update(b"\n");
    h.update(manifest.to_json());
    hex::encode(&h.finalize()[..16])
}

impl HourExported {
    /// The event of `manifest`, the hour `conn` completed in `mode`.
    pub fn from_manifest(conn: &Connection, manifest: &Manifest, mode: ExportMode) -> Self {
        let hour = manifest.hour;
        let marker_key = conn.complete_markers.then(|| {
            if conn.export.events {
                conn.events_layout().complete_key(hour)
            } else {
                conn.merged_ids_layout().merged_ids_complete_key(hour)
            }
        });
        let parts = manifest
            .events
            .iter()
            .flat_map(|e| e.files.iter())
            .map(|f| PartFile { key: f.key.clone(), part: f.part, events: f.events, bytes: f.bytes, sha256: f.sha256.clone() })
            .collect();
        let merged_ids = manifest.merged_ids.as_ref().and_then(|m| m.files.first()).map(|f| MergedIdsFile {
            destination: conn.merged_ids_destination().describe(),
            key: f.key.clone(),
            records: f.events,
            bytes: f.bytes,
            sha256: f.sha256.clone(),
        });
        HourExported {
            id: hour_event_id(&conn.id, hour, manifest),
            connection_id: conn.id.clone(),
            org_id: conn.org_id.clone(),
            project_id: conn.project_id.clone(),
            hour,
            mode,
            destination: conn.destination.describe(),
            format: conn.format,
            layout: conn.layout,
            marker_key,
            parts,
            parts_omitted: 0,
            merged_ids,
            merged_ids_written_by: manifest.merged_ids_written_by.clone(),
            freshness_seconds: None,
            table_version: manifest.table_version,
            merged_ids_table_version: manifest.merged_ids_table_version,
            accounting: HourAccounting {
                events: manifest.events.as_ref().map(|e| e.accounting.clone()),
                merged_ids: manifest.merged_ids.as_ref().map(|m| m.accounting.clone()),
            },
        }
    }
}

/// Attempts and waits between them for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    /// Wait after the first failed attempt; each later wait is `factor` times longer.
    pub first_delay: Duration,
    pub factor: u32,
}

impl Backoff {
    /// The bus: three attempts within about a second (the SDK's own timeouts bound each).
    pub const BUS: Backoff = Backoff { attempts: 3, first_delay: Duration::from_millis(200), factor: 4 };
    /// Webhooks: three attempts, 1 s and 2 s apart; with the adapter's per-attempt timeout
    /// this bounds a dead receiver's cost to the run.
    pub const WEBHOOK: Backoff = Backoff { attempts: 3, first_delay: Duration::from_secs(1), factor: 2 };

    fn delay_after(&self, attempt: u32) -> Duration {
        self.first_delay * self.factor.saturating_pow(attempt.saturating_sub(1))
    }
}

/// What happened on one channel (bus, webhook, failure webhook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOutcome {
    pub delivered: bool,
    pub attempts: u32,
    /// The last error when not delivered (never a secret or a failure webhook's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs `attempt` until it succeeds, fails for good (not retryable) or runs out of attempts.
pub async fn with_backoff<F, Fut>(backoff: Backoff, mut attempt: F) -> ChannelOutcome
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match attempt().await {
            Ok(()) => return ChannelOutcome { delivered: true, attempts: n, error: None },
            Err(e) if e.is_retryable() && n < backoff.attempts.max(1) => tokio::time::sleep(backoff.delay_after(n)).await,
            Err(e) => return ChannelOutcome { delivered: false, attempts: n, error: Some(e.to_string()) },
        }
    }
}

/// POSTs `post` with retries: a webhook's failure is reported, never raised.
pub async fn post_with_backoff(poster: &dyn WebhookPoster, post: WebhookPost<'_>, backoff: Backoff) -> ChannelOutcome {
    with_backoff(backoff, || poster.post(&post)).await
}

/// What became of one hour's event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub event_id: String,
    /// The stack's bus; `None` when this process has none configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<ChannelOutcome>,
    /// The connection's webhook; `None` when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<ChannelOutcome>,
}

impl Announcement {
    /// Whether the bus took the event (or there is no bus to take it). The webhook does
    /// not count: it is best effort.
    pub fn published(&self) -> bool {
        self.bus.as_ref().is_none_or(|b| b.delivered)
    }
}

/// Publishes "Hour Exported" events: to the bus, then to the connection's webhook.
#[derive(Clone, Default)]
pub struct HourAnnouncer {
    pub bus: Option<Arc<dyn HourEventSink>>,
    pub webhooks: Option<Arc<dyn WebhookPoster>>,
    pub bus_backoff: Option<Backoff>,
    pub webhook_backoff: Option<Backoff>,
}

impl std::fmt::Debug for HourAnnouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HourAnnouncer").field("bus", &self.bus.as_ref().map(|b| b.describe())).field("webhooks", &self.webhooks.is_some()).finish()
    }
}

impl HourAnnouncer {
    pub fn new(bus: Option<Arc<dyn HourEventSink>>, webhooks: Option<Arc<dyn WebhookPoster>>) -> Self {
        HourAnnouncer { bus, webhooks, bus_backoff: None, webhook_backoff: None }
    }

    /// Publishes `event` of `conn`; every failure is in the answer (and logged), none raised.
    pub async fn announce(&self, conn: &Connection, event: &HourExported) -> Announcement {
        let bus = match &self.bus {
            Some(sink) => {
                let outcome = with_backoff(self.bus_backoff.unwrap_or(Backoff::BUS), || sink.publish(event)).await;
                if outcome.delivered {
                    tracing::info!(connection = %conn.id, hour = %event.hour, event_id = %event.id, bus = %sink.describe(), attempts = outcome.attempts, "Hour Exported event published");
                } else {
                    // Ours, not the customer's: the operators' alarm. The hour stays owed, so
                    // the next run publishes it again.
                    tracing::error!(
                        connection = %conn.id, hour = %event.hour, event_id = %event.id, bus = %sink.describe(), attempts = outcome.attempts,
                        operator_alert = true, error = outcome.error.as_deref().unwrap_or(""), "Hour Exported event not published; the hour stays owed until it is"
                    );
                }
                Some(outcome)
            }
            None => None,
        };
        let webhook = match (&conn.webhook, &self.webhooks) {
            (Some(hook), Some(poster)) => {
                let body = event.to_json();
                let label = format!("webhook of connection {}", conn.id);
                let post = WebhookPost { label: &label, url: &hook.url, body: &body, signing_secret: Some(&hook.secret), event_id: Some(&event.id) };
                let outcome = post_with_backoff(poster.as_ref(), post, self.webhook_backoff.unwrap_or(Backoff::WEBHOOK)).await;
                if outcome.delivered {
                    tracing::info!(connection = %conn.id, hour = %event.hour, event_id = %event.id, attempts = outcome.attempts, "Hour Exported webhook delivered");
                } else {
                    tracing::warn!(
                        connection = %conn.id, hour = %event.hour, event_id = %event.id, attempts = outcome.attempts,
                        error = outcome.error.as_deref().unwrap_or(""), "Hour Exported webhook not delivered (best effort; the export stands)"
                    );
                }
                Some(outcome)
            }
            _ => None,
        };
        Announcement { event_id: event.id.clone(), bus, webhook }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExportError;
    use crate::export::manifest::{DataReport, FileEntry};
    use crate::model::accounting::Accounting;
    use async_trait::async_trait;
    use std::borrow::Cow;
    use std::sync::Mutex;

    fn conn() -> Connection {
        Connection::from_json(
            r#"{"id":"c1","org_id":"42","project_id":"187520","destination":{"type":"s3","bucket":"dest","prefix":"exports","region":"us-east-1"},
                "creator":"creator@example.com"}"#,
        )
        .unwrap()
    }

    fn manifest(parts: u32) -> Manifest {
        let c = conn();
        let mut m = Manifest::empty(&c.export_spec().unwrap(), UtcHour::parse("2020-01-25T17").unwrap());
        let files = (0..parts)
            .map(|n| FileEntry {
                key: format!("exports/187520/187520_2020-01-25_17#{n}.json.gz"),
                part: Some(n),
                events: 10,
                bytes: 100,
                uncompressed_bytes: 400,
                sha256: format!("{n:064x}"),
            })
            .collect();
        m.events = Some(DataReport {
            files,
            accounting: Accounting { read: 10 * parts as u64, exported: 10 * parts as u64, ..Default::default() },
            ..Default::default()
        });
        m
    }

    #[test]
    fn the_id_follows_the_files_not_the_run() {
        let c = conn();
        let a = HourExported::from_manifest(&c, &manifest(2), ExportMode::Recurring);
        let again = HourExported::from_manifest(&c, &manifest(2), ExportMode::Replace);
        assert_eq!(a.id, again.id, "same files, same id, whatever the run");
        assert_eq!(a.id.len(), 32);
        let grown = HourExported::from_manifest(&c, &manifest(3), ExportMode::Late);
        assert_ne!(a.id, grown.id, "a new part is a new event");
        let mut other = c.clone();
        other.id = "c2".into();
        assert_ne!(a.id, HourExported::from_manifest(&other, &manifest(2), ExportMode::Recurring).id);
        assert_eq!(a.marker_key.as_deref(), Some("exports/187520/187520_2020-01-25_17_complete"));
        assert_eq!(a.parts.len(), 2);
        assert_eq!(a.parts[1].part, Some(1));
        assert_eq!(a.destination, "s3://dest/exports");
        assert_eq!(a.accounting.events.as_ref().unwrap().exported, 20);
        let json: serde_json::Value = serde_json::from_slice(&a.to_json()).unwrap();
        assert_eq!(json["hour"], "2020-01-25T17");
        assert_eq!(json["mode"], "recurring");
        assert!(json.get("parts_omitted").is_none());
        assert!(json.get("table_version").is_none(), "no Delta table, no version");
        assert!(json.get("merged_ids_table_version").is_none());
        let mut delta = manifest(2);
        delta.table_version = Some(7);
        delta.merged_ids_table_version = Some(3);
        let e = HourExported::from_manifest(&c, &delta, ExportMode::Replace);
        assert_eq!(e.table_version, Some(7), "the event carries the version of the hour's commit");
        assert_eq!(e.merged_ids_table_version, Some(3), "and the merged-IDs table's");
        let json: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!((json["table_version"].as_u64(), json["merged_ids_table_version"].as_u64()), (Some(7), Some(3)));
        assert_ne!(e.id, a.id, "another commit of the hour is another event");
    }

    #[test]
    fn an_event_too_large_for_the_bus_drops_its_part_list_but_keeps_its_id() {
        let e = HourExported::from_manifest(&conn(), &manifest(2000), ExportMode::Recurring);
        assert!(e.to_json().len() > 200_000);
        let slim = e.within(200_000).unwrap();
        assert_eq!((slim.id.as_str(), slim.parts.len(), slim.parts_omitted), (e.id.as_str(), 0, 2000));
        let small = HourExported::from_manifest(&conn(), &manifest(2), ExportMode::Recurring);
        assert!(matches!(small.within(200_000).unwrap(), Cow::Borrowed(_)));
    }

    #[derive(Debug, Default)]
    struct FlakySink {
        failures_left: Mutex<u32>,
        seen: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl HourEventSink for FlakySink {
        fn describe(&self) -> String {
            "test bus".into()
        }
        async fn publish(&self, event: &HourExported) -> Result<()> {
            let mut left = self.failures_left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(ExportError::transient("PutEvents", "503"));
            }
            self.seen.lock().unwrap().push(event.id.clone());
            Ok(())
        }
    }

    fn quick() -> Option<Backoff> {
        Some(Backoff { attempts: 3, first_delay: Duration::from_millis(1), factor: 2 })
    }

    #[tokio::test]
    async fn the_bus_is_retried_briefly_and_a_lasting_failure_is_reported_not_raised() {
        let c = conn();
        let event = HourExported::from_manifest(&c, &manifest(1), ExportMode::Recurring);
        let sink = Arc::new(FlakySink { failures_left: Mutex::new(2), ..Default::default() });
        let announcer = HourAnnouncer { bus_backoff: quick(), ..HourAnnouncer::new(Some(sink.clone()), None) };
        let a = announcer.announce(&c, &event).await;
        assert!(a.published());
        assert_eq!(a.bus, Some(ChannelOutcome { delivered: true, attempts: 3, error: None }));
        assert_eq!(a.webhook, None, "no webhook on the connection");
        assert_eq!(*sink.seen.lock().unwrap(), vec![event.id.clone()]);

        *sink.failures_left.lock().unwrap() = 5;
        let a = announcer.announce(&c, &event).await;
        assert!(!a.published());
        let bus = a.bus.unwrap();
        assert_eq!((bus.delivered, bus.attempts), (false, 3));
        assert!(bus.error.unwrap().contains("503"));

        let none = HourAnnouncer::default().announce(&c, &event).await;
        assert!(none.published(), "no bus configured: nothing to wait for");
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let calls = Mutex::new(0);
        let outcome = with_backoff(Backoff { attempts: 3, first_delay: Duration::from_millis(1), factor: 1 }, || {
            *calls.lock().unwrap() += 1;
            async { Err(ExportError::invalid_config("webhook", "answered HTTP 401", "fix")) }
        })
        .await;
        assert_eq!((outcome.delivered, outcome.attempts, *calls.lock().unwrap()), (false, 1, 1));
    }
}
