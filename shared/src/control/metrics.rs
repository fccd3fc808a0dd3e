//! What we measure, named once: the figures of each run (events, invalid, duplicates,
//! filtered, bytes, parts, seconds, freshness, attempt, by outcome) and of the watchdog.
//!
//! **Dimensions and their cost.** Every figure carries `Stack`; run figures add `Outcome`
//! (`exported`, `skipped`, `failed`), a failed run's `FailedRuns` adds `Blame`
//! (`destination`, `internal`, `configuration`), invocation figures add `Function`
//! (`hourly-export`, `watchdog`, `backfill`). That makes 51 CloudWatch metrics per stack (10
//! run metrics by 3 outcomes, 3 blames, 9 watchdog metrics, 3 invocation metrics by 3
//! functions), about $15 a month at $0.30 per metric, whatever the number of connections.
//! `EXPORT_METRICS_PER_CONNECTION=true` adds a `ConnectionId` dimension to the run figures:
//! 30 metrics per connection, so 1,000 connections cost 30,000 metrics (about $5,000 a month:
//! $0.30 each for the first 10,000, $0.10 after). Without it the connection and hour are still
//! in every EMF line as plain properties, which CloudWatch Logs Insights queries at no metric
//! cost.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::control::store::{RunOutcome, RunRecord};
use crate::model::metrics::{MetricSet, Unit};
use crate::ports::MetricsSink;

/// Where figures go, and with which dimensions.
#[derive(Clone, Debug)]
pub struct MetricsOut {
    pub sink: Arc<dyn MetricsSink>,
    /// The `Stack` dimension: the CloudFormation stack (or `embedded`).
    pub stack: String,
    /// Adds `ConnectionId` to run figures (see the module's cost note).
    pub per_connection: bool,
}

impl MetricsOut {
    fn base(&self) -> Vec<(String, String)> {
        vec![("Stack".to_string(), self.stack.clone())]
    }

    /// A set with only the `Stack` dimension (watchdog, invocation figures).
    pub fn stack_set(&self, at: DateTime<Utc>) -> MetricSet {
        MetricSet::new(at, self.base())
    }

    /// A failed run, by whose side the failure is on (`ExportError::blame`).
    pub fn failure_set(&self, record: &RunRecord, blame: &str) -> MetricSet {
        let mut dimensions = self.base();
        dimensions.push(("Blame".into(), blame.into()));
        let mut set = MetricSet::new(record.ended, dimensions);
        set.add("FailedRuns", Unit::Count, 1.0, "hour runs that failed, by whose side the failure is on");
        set.property("connection", record.connection_id.clone()).property("hour", record.hour.to_string());
        set
    }

    /// The figures of one finished run.
    pub fn run_set(&self, record: &RunRecord, bytes_written: u64, parts: u64) -> MetricSet {
        let outcome = match record.outcome {
            RunOutcome::Exported => "exported",
            RunOutcome::Skipped => "skipped",
            RunOutcome::Failed => "failed",
        };
        let mut dimensions = self.base();
        dimensions.push(("Outcome".into(), outcome.into()));
        if self.per_connection {
            dimensions.push(("ConnectionId".into(), record.connection_id.clone()));
        }
        let mut set = MetricSet::new(record.ended, dimensions);
        let seconds = (record.ended - record.started).num_milliseconds() as f64 / 1000.0;
        set.add("Runs", Unit::Count, 1.0, "hour runs finished")
            .add("EventsExported", Unit::Count, record.events.exported as f64, "events written to the destination")
            .add("InvalidRecords", Unit::Count, record.invalid_records as f64, "lake records refused as invalid (listed in the manifest)")
            .add("Duplicates", Unit::Count, record.events.duplicates as f64, "events dropped as duplicates")
            .add("Filtered", Unit::Count, record.events.filtered as f64, "events left out by the connection's filter")
            .add("BytesWritten", Unit::Bytes, bytes_written as f64, "bytes of parts and merged-IDs files written")
            .add("Parts", Unit::Count, parts as f64, "files written")
            .add("RunSeconds", Unit::Seconds, seconds, "time one hour's run took")
            .add("Attempt", Unit::Count, record.attempt as f64, "the attempt number of the run (1 = first)");
        if !record.table_upkeep_failures.is_empty() {
            set.add(
                "TableUpkeepFailures",
                Unit::Count,
                record.table_upkeep_failures.len() as f64,
                "Delta tables whose upkeep (checkpoint, vacuum) failed in the run",
            );
        }
        if let Some(f) = record.freshness_seconds {
            set.add("FreshnessSeconds", Unit::Seconds, f as f64, "seconds from an hour's end to its first complete marker");
        }
        set.property("connection", record.connection_id.clone()).property("hour", record.hour.to_string()).property("mode", record.mode.to_string());
        if let Some(kind) = &record.error_kind {
            set.property("error_kind", kind.clone());
        }
        set
    }
}
