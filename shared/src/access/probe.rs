//! Access probes: the "test upload" a destination must pass before a connection is
//! activated, and the diagnosis sent after an accessibility failure. Every destination runs
//! the same [`round_trip`] through the storage port (write, read back, list, delete a probe
//! object); each provider adds its own checks around it (S3: the bucket, a multipart upload
//! and the KMS key; Azure: the token or SAS expiry and the container). This module holds
//! the round trip; what it finds is a [`ProbeReport`] (`crate::model::probe_report`).

use crate::error::{ExportError, Result};
use crate::model::probe_report::{ProbeOutcome, ProbeResult, PROBE_DIR};
use crate::ports::{join_key, ObjectStore};
use bytes::Bytes;

/// How a provider names the four round-trip checks: `(check, permission it needs)`.
#[derive(Debug, Clone, Copy)]
pub struct RoundTripChecks {
    pub write: (&'static str, &'static str),
    pub read: (&'static str, &'static str),
    pub list: (&'static str, &'static str),
    pub delete: (&'static str, &'static str),
    /// Whether reading a missing object tells a refusal (403) from a permitted read (404),
    /// so the read check still answers when the write failed. Azure: yes. S3 answers 403
    /// for a missing key to anyone without `s3:ListBucket`, so there the read is skipped.
    pub read_answers_without_object: bool,
}

/// The outcomes of one round trip; `read` is `None` when it was skipped.
#[derive(Debug)]
pub struct RoundTrip {
    /// `store/key` of the probe object, for messages.
    pub location: String,
    pub write: Result<()>,
    pub read: Option<Result<()>>,
    pub list: Result<()>,
    pub delete: Result<()>,
}

/// Writes a probe object under `prefix`, reads it back, lists it and deletes it, through
/// the storage port, exactly as exports use the destination. Every step that can answer
/// runs, so one report names every missing permission. Never fails as a whole.
pub async fn round_trip(store: &dyn ObjectStore, prefix: &str, checks: &RoundTripChecks) -> RoundTrip {
    let prefix = prefix.trim_matches('/');
    let key = join_key(prefix, &format!("{PROBE_DIR}/{}", probe_name()));
    let location = format!("{}/{key}", store.describe().trim_end_matches('/'));
    let body = Bytes::from(format!("event export access probe for {}\n", store.describe()));

    let write = store.put(&key, body.clone()).await;
    let written = write.is_ok();
    let read = if written || checks.read_answers_without_object {
        Some(match store.get(&key).await {
            Ok(b) if b == body => Ok(()),
            Ok(_) => Err(ExportError::Corrupt { what: location.clone(), detail: "the probe object read back differs from what was written".into() }),
            Err(ExportError::NotFound { .. }) if !written => Ok(()),
            Err(e) => Err(e),
        })
    } else {
        None
    };
    let list = match store.list(&join_key(prefix, &format!("{PROBE_DIR}/"))).await {
        Ok(items) if !written || items.iter().any(|m| m.key == key) => Ok(()),
        Ok(_) => Err(ExportError::Internal(format!("the probe object {location} was written but is not listed"))),
        Err(e) => Err(e),
    };
    // Deleting a missing object needs the same permission, so this answers even when the write failed.
    let delete = store.delete(&key).await;
    RoundTrip { location, write, read, list, delete }
}

impl RoundTrip {
    /// Every outcome that ran, in check order.
    pub fn outcomes(&self) -> Vec<&Result<()>> {
        let mut out = vec![&self.write];
        out.extend(self.read.as_ref());
        out.extend([&self.list, &self.delete]);
        out
    }

    /// The report lines, in check order. `failed` names a failure (a provider may name
    /// the permission the error carries rather than the one the check needs).
    pub fn results(self, checks: &RoundTripChecks, failed: impl Fn(&str, &str, &ExportError) -> ProbeResult) -> Vec<ProbeResult> {
        let written = self.write.is_ok();
        let one = |(check, need): (&str, &str), outcome: Result<()>| match outcome {
            Ok(()) => ProbeResult::pass(check, need),
            Err(e) => {
                tracing::warn!(check, error = %e, "access probe failed");
                failed(check, need, &e)
            }
        };
        let mut out = vec![one(checks.write, self.write)];
        out.push(match self.read {
            Some(read) => one(checks.read, read),
            None => ProbeResult::skipped(checks.read.0, checks.read.1, "no probe object to read: the write failed"),
        });
        out.push(one(checks.list, self.list));
        let mut delete = one(checks.delete, self.delete);
        if written {
            if let ProbeOutcome::Fail { detail, .. } = &mut delete.outcome {
                detail.push_str(&format!(" (the probe object {} was left behind; delete it by hand)", self.location));
            }
        }
        out.push(delete);
        out
    }
}

/// `probe-{millis}-{random}`: probes of one destination running at once never collide.
fn probe_name() -> String {
    use rand::Rng;
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("probe-{millis}-{:08x}", rand::thread_rng().gen::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory::{MemoryOp, MemoryStore};
    use crate::model::probe_report::ProbeReport;

    const CHECKS: RoundTripChecks =
        RoundTripChecks { write: ("write", "w"), read: ("read", "r"), list: ("list", "l"), delete: ("delete", "d"), read_answers_without_object: false };

    #[tokio::test]
    async fn a_round_trip_passes_and_leaves_nothing() {
        let store = MemoryStore::new("dest");
        let trip = round_trip(&store, "/exports/", &CHECKS).await;
        assert!(trip.location.contains("exports/_export_probe/probe-"), "{}", trip.location);
        let results = trip.results(&CHECKS, ProbeResult::fail);
        assert!(results.iter().all(ProbeResult::passed), "{results:?}");
        assert_eq!(results.iter().map(|r| r.check.as_str()).collect::<Vec<_>>(), ["write", "read", "list", "delete"]);
        assert!(store.keys().is_empty());
    }

    #[tokio::test]
    async fn every_refusal_is_reported_and_a_left_object_is_named() {
        let store = MemoryStore::new("dest");
        store.refuse(MemoryOp::Delete);
        let results = round_trip(&store, "p", &CHECKS).await.results(&CHECKS, ProbeResult::fail);
        let report = ProbeReport { destination: "d".into(), principal: None, results };
        assert_eq!(report.missing(), ["d"]);
        assert!(report.table().contains("was left behind; delete it by hand"), "{}", report.table());

        let store = MemoryStore::new("dest");
        store.refuse(MemoryOp::Put);
        let results = round_trip(&store, "p", &CHECKS).await.results(&CHECKS, ProbeResult::fail);
        assert!(matches!(results[1].outcome, ProbeOutcome::Skipped { .. }), "no object to read: {results:?}");
        assert!(results[2].passed() && results[3].passed(), "list and delete still answer: {results:?}");
    }
}
