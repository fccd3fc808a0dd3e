//! What one run of one hour is asked to do: the mode ([`ExportMode`]), the request a retry
//! schedule or a backfill piece carries ([`HourRequest`]), and the one-time schedule that
//! carries it ([`PlannedRetry`]).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hour::UtcHour;

/// How an hour is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExportMode {
    /// Scheduled runs: an hour that already has its complete marker is skipped.
    #[default]
    Recurring,
    /// Backfills: the hour is rewritten whatever is there.
    Replace,
    /// Late data: lake files not in the hour's manifest are exported as new parts.
    Late,
}

impl fmt::Display for ExportMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportMode::Recurring => "recurring",
            ExportMode::Replace => "replace",
            ExportMode::Late => "late",
        })
    }
}

/// One export of one hour: what the hourly-export function receives from a retry schedule,
/// `{connection_id, hour, mode, attempt}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourRequest {
    pub connection_id: String,
    pub hour: UtcHour,
    #[serde(default)]
    pub mode: ExportMode,
    /// 1 for the first run; retries carry 2, 3, ...
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// A replace may proceed over an empty lake hour (the operator said so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty_lake: bool,
}

fn first_attempt() -> u32 {
    1
}

impl HourRequest {
    pub fn new(connection_id: impl Into<String>, hour: UtcHour, mode: ExportMode, attempt: u32) -> Self {
        HourRequest { connection_id: connection_id.into(), hour, mode, attempt, allow_empty_lake: false }
    }

    /// The same hour, one attempt later.
    pub fn next_attempt(&self) -> HourRequest {
        HourRequest { attempt: self.attempt + 1, ..self.clone() }
    }
}

impl fmt::Display for HourRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({}, attempt {})", self.connection_id, self.hour, self.mode, self.attempt)
    }
}

/// A one-time schedule to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRetry {
    /// See `crate::delivery::retry::retry_id`.
    pub id: String,
    pub at: DateTime<Utc>,
    pub request: HourRequest,
}
