//! The time every layer reads, so tests (and embedded mode's `--at`) can move it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A clock, so tests can move time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}
