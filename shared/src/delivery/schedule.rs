//! Each enabled connection's hourly schedule: the port `exportctl connections` drives
//! (create, enable, disable, delete) and the input the schedule sends.
//!
//! The schedule fires a few minutes past every hour so the hour just closed has landed in
//! the lake; its input carries `<aws.scheduler.scheduled-time>`, from which the function
//! derives the hour (never from its own clock, so a late or repeated delivery exports the
//! same hour).

use serde::{Deserialize, Serialize};

use crate::delivery::retry::{name_part, MAX_SCHEDULE_NAME};

/// Minutes past the hour at which hourly schedules fire: after the hour just closed has
/// settled (the default settle delay is 16 minutes, for Firehose's 900 s buffer).
pub const HOURLY_MINUTE: u32 = 20;

/// The placeholder EventBridge Scheduler replaces with the schedule's invocation time.
pub const SCHEDULED_TIME_PLACEHOLDER: &str = "<aws.scheduler.scheduled-time>";

/// What an hourly schedule sends: `{connection_id, scheduled_time}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledRequest {
    pub connection_id: String,
    /// RFC 3339 time the schedule fired for (`2020-01-25T18:10:00Z`).
    pub scheduled_time: String,
}

/// The input document of a connection's hourly schedule.
pub fn hourly_input(connection_id: &str) -> String {
    serde_json::json!({ "connection_id": connection_id, "scheduled_time": SCHEDULED_TIME_PLACEHOLDER }).to_string()
}

/// `hourly-{connection}`, valid for EventBridge Scheduler whatever the id's length.
pub fn hourly_schedule_name(connection_id: &str) -> String {
    let prefix = "hourly-";
    format!("{prefix}{}", name_part(connection_id, MAX_SCHEDULE_NAME - prefix.len()))
}

/// `cron(20 * * * ? *)`: every hour at [`HOURLY_MINUTE`] past, UTC.
pub fn hourly_expression() -> String {
    format!("cron({HOURLY_MINUTE} * * * ? *)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::retry::is_valid_schedule_name;

    #[test]
    fn hourly_names_and_inputs() {
        assert_eq!(hourly_schedule_name("conn-1"), "hourly-conn-1");
        assert!(is_valid_schedule_name(&hourly_schedule_name(&"x".repeat(64))));
        let input: serde_json::Value = serde_json::from_str(&hourly_input("conn-1")).unwrap();
        assert_eq!(input["scheduled_time"], "<aws.scheduler.scheduled-time>");
        assert_eq!(hourly_expression(), "cron(20 * * * ? *)");
    }
}
