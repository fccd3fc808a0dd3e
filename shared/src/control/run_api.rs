//! What the control layer offers the delivery layer above it: run one hour under its lease
//! ([`HourRunner`]), plan a scheduled run ([`ScheduledRunner`]), read a connection
//! ([`ConnectionSource`]) and keep its failing status ([`FailingStatus`]). The run service
//! and the control store implement them; delivery drives control only through them, so its
//! handlers are tested with fakes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::connection::Connection;
use crate::error::{ExportError, Result};
use crate::hour::HourRange;
use crate::model::hour_request::HourRequest;

/// Exports one hour and records the run (the run machinery of `runs`); `Err` is the
/// export's own error, already recorded in the run record.
#[async_trait]
pub trait HourRunner: Send + Sync {
    async fn run_hour(&self, conn: &Connection, req: &HourRequest) -> Result<HourSummary>;
    /// Refuses a range reaching an hour that may not be exported yet (open or settling).
    fn check_ready(&self, _range: HourRange) -> Result<()> {
        Ok(())
    }
}

/// What a successful run reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourSummary {
    /// The complete marker was already there (recurring mode): nothing was written.
    pub skipped: bool,
    pub events_exported: u64,
    /// Late mode: new parts written for lake files that landed after the marker.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub late_parts: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where the connection's visible status (`exportctl status`) is kept in step with the
/// failing state the failure handler (`crate::delivery::failure`) decides.
#[async_trait]
pub trait FailingStatus: Send + Sync {
    async fn mark_failing(&self, connection_id: &str, since: DateTime<Utc>, last_error: &str, notified: bool) -> Result<()>;
    async fn clear_failing(&self, connection_id: &str) -> Result<()>;
}

/// Reads connections from the control store.
#[async_trait]
pub trait ConnectionSource: Send + Sync {
    /// `Ok(None)` when no connection has this id.
    async fn connection(&self, id: &str) -> Result<Option<Connection>>;
}

/// What an hourly schedule firing at `scheduled_time` is due to export: the owed hours
/// of the hour ledger up to the latest settled hour (registering new ones), and recent
/// hours with late lake files. Each is then run like any other hour.
#[async_trait]
pub trait ScheduledRunner: Send + Sync {
    async fn plan(&self, conn: &Connection, scheduled_time: DateTime<Utc>) -> Result<HourlyPlan>;
    /// After the planned hours ran: refresh the derived status (watermark).
    async fn finish(&self, conn: &Connection) -> Result<()>;
}

/// What a scheduled run takes on: the hours to run now, and the runs found dead.
#[derive(Debug, Default)]
pub struct HourlyPlan {
    pub requests: Vec<HourRequest>,
    pub stopped: Vec<StoppedRun>,
}

/// A run that died on an hour (its lease expired with the hour still exporting): a failed
/// attempt, `request` being the attempt that follows it.
#[derive(Debug)]
pub struct StoppedRun {
    pub request: HourRequest,
    pub error: ExportError,
}
