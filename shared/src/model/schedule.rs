//! Each enabled connection's hourly schedule: the port `exportctl connections` drives
//! (create, enable, disable, delete) and the input the schedule sends.
//!
//! The schedule fires a few minutes past every hour so the hour just closed has landed in
//! the lake; its input carries the time it fired for, from which the function derives the
//! hour (never from its own clock, so a late or repeated delivery exports the same hour).
//! How a scheduler names schedules and fills in that time is the adapter's business.

use serde::{Deserialize, Serialize};

/// Minutes past the hour at which hourly schedules fire: after the hour just closed has
/// settled (the default settle delay is 16 minutes, for Firehose's 900 s buffer).
pub const HOURLY_MINUTE: u32 = 20;

/// What an hourly schedule sends: `{connection_id, scheduled_time}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledRequest {
    pub connection_id: String,
    /// RFC 3339 time the schedule fired for (`2020-01-25T18:10:00Z`).
    pub scheduled_time: String,
}
