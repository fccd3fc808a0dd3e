//! CloudWatch Embedded Metric Format: each figure set is one JSON line on the function's
//! standard output, which Lambda sends to CloudWatch Logs, which turns it into metrics. No API
//! call, no permission, no latency on the run.

use std::io::Write;

use crate::model::metrics::MetricSet;
use crate::ports::MetricsSink;

#[derive(Debug, Clone, Copy, Default)]
pub struct EmfLogSink;

impl MetricsSink for EmfLogSink {
    fn publish(&self, set: &MetricSet) {
        // One write per line, so the line is never split among other log lines; a closed
        // stdout loses the figure, never the run.
        let line = format!("{}\n", set.to_emf());
        if let Err(e) = std::io::stdout().lock().write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "metrics line not written");
        }
    }
}
