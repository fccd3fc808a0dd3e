//! EventBridge Scheduler: one-time retry schedules and each connection's hourly schedule,
//! both targeting the hourly-export function through the scheduler's invoke role.

use async_trait::async_trait;
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy as TargetRetryPolicy, ScheduleState, Target};
use aws_sdk_scheduler::Client;

use crate::adapters::aws::service_errors::classify;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::{ExportError, Result};
use crate::model::hour_request::PlannedRetry;
use crate::model::schedule::HOURLY_MINUTE;
use crate::ports::CreateOutcome;
use crate::ports::HourlySchedules;
use crate::ports::RetryScheduler;

/// EventBridge Scheduler's limit on schedule names.
pub const MAX_SCHEDULE_NAME: usize = 64;

/// The placeholder EventBridge Scheduler replaces with the schedule's invocation time.
pub const SCHEDULED_TIME_PLACEHOLDER: &str = "<aws.scheduler.scheduled-time>";

/// `id` made safe for a schedule name and at most `room` characters long. When it has to
/// be shortened (or had characters replaced) a hash of the full id keeps names of
/// different ids apart.
pub fn name_part(id: &str, room: usize) -> String {
    let safe: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect();
    if safe.len() <= room && safe == id {
        return safe;
    }
    let hash = hex::encode(&Sha256::digest(id.as_bytes())[..4]);
    let keep = room.saturating_sub(hash.len() + 1);
    format!("{}-{hash}", &safe[..keep.min(safe.len())])
}

/// Whether `name` is a valid EventBridge Scheduler schedule name.
pub fn is_valid_schedule_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_SCHEDULE_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The one-time schedule of a retry: its id when that is a valid name (every connection
/// id up to 44 characters), else shortened with a hash.
pub fn retry_schedule_name(retry: &PlannedRetry) -> String {
    name_part(&retry.id, MAX_SCHEDULE_NAME)
}

/// `hourly-{connection}`, valid whatever the id's length.
pub fn hourly_schedule_name(connection_id: &str) -> String {
    let prefix = "hourly-";
    format!("{prefix}{}", name_part(connection_id, MAX_SCHEDULE_NAME - prefix.len()))
}

/// `cron(20 * * * ? *)`: every hour at [`HOURLY_MINUTE`] past, UTC.
pub fn hourly_expression() -> String {
    format!("cron({HOURLY_MINUTE} * * * ? *)")
}

/// The input document of a connection's hourly schedule: `{connection_id, scheduled_time}`.
pub fn hourly_input(connection_id: &str) -> String {
    serde_json::json!({ "connection_id": connection_id, "scheduled_time": SCHEDULED_TIME_PLACEHOLDER }).to_string()
}

/// The `at(...)` expression of a one-time schedule (interpreted in UTC).
pub fn at_expression(at: DateTime<Utc>) -> String {
    format!("at({})", at.format("%Y-%m-%dT%H:%M:%S"))
}

/// Where schedules go and what they invoke (from the function's environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Schedule group of one-time retry schedules.
    pub retry_group: String,
    /// Schedule group of the per-connection hourly schedules.
    pub hourly_group: String,
    /// ARN of the hourly-export function.
    pub target_arn: String,
    /// Role EventBridge Scheduler assumes to invoke the function.
    pub role_arn: String,
    /// Queue for invocations the scheduler could not deliver, if any.
    pub dead_letter_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventBridgeScheduler {
    client: Client,
    config: SchedulerConfig,
}

impl EventBridgeScheduler {
    pub fn new(client: Client, config: SchedulerConfig) -> Self {
        EventBridgeScheduler { client, config }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The scheduler's own delivery retries cover only handing the event to Lambda (the
    /// export's retries are ours), so a few within an hour are plenty.
    fn target(&self, input: String) -> Result<Target> {
        let mut t = Target::builder()
            .arn(&self.config.target_arn)
            .role_arn(&self.config.role_arn)
            .input(input)
            .retry_policy(TargetRetryPolicy::builder().maximum_retry_attempts(3).maximum_event_age_in_seconds(3600).build());
        if let Some(dlq) = &self.config.dead_letter_arn {
            t = t.dead_letter_config(aws_sdk_scheduler::types::DeadLetterConfig::builder().arn(dlq).build());
        }
        t.build().map_err(|e| ExportError::Internal(format!("schedule target: {e}")))
    }

    fn no_window() -> Result<FlexibleTimeWindow> {
        FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(|e| ExportError::Internal(format!("flexible time window: {e}")))
    }

    fn hourly_resource(&self, connection_id: &str) -> String {
        format!("schedule {}/{}", self.config.hourly_group, hourly_schedule_name(connection_id))
    }

    async fn update_hourly(&self, connection_id: &str, enabled: bool) -> Result<()> {
        let name = hourly_schedule_name(connection_id);
        self.client
            .update_schedule()
            .name(&name)
            .group_name(&self.config.hourly_group)
            .schedule_expression(hourly_expression())
            .schedule_expression_timezone("UTC")
            .flexible_time_window(Self::no_window()?)
            .target(self.target(hourly_input(connection_id))?)
            .state(state(enabled))
            .description(format!("Hourly event export of connection {connection_id}"))
            .send()
            .await
            .map_err(|e| classify("scheduler:UpdateSchedule", &self.hourly_resource(connection_id), e))?;
        Ok(())
    }
}

fn state(enabled: bool) -> ScheduleState {
    if enabled {
        ScheduleState::Enabled
    } else {
        ScheduleState::Disabled
    }
}

#[async_trait]
impl RetryScheduler for EventBridgeScheduler {
    async fn schedule_retry(&self, retry: &PlannedRetry) -> Result<CreateOutcome> {
        let name = retry_schedule_name(retry);
        debug_assert!(is_valid_schedule_name(&name), "{name}");
        let input = serde_json::to_string(&retry.request).map_err(|e| ExportError::Internal(format!("retry input: {e}")))?;
        let resource = format!("schedule {}/{name}", self.config.retry_group);
        let sent = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.config.retry_group)
            .schedule_expression(at_expression(retry.at))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(Self::no_window()?)
            .target(self.target(input)?)
            .action_after_completion(ActionAfterCompletion::Delete)
            .state(ScheduleState::Enabled)
            .description(format!("Retry of {}", retry.request))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(CreateOutcome::Created),
            // A redelivered failure asks for the same name: the retry is already planned.
            Err(e) if e.code() == Some("ConflictException") => Ok(CreateOutcome::AlreadyExists),
            Err(e) => Err(classify("scheduler:CreateSchedule", &resource, e)),
        }
    }
}

#[async_trait]
impl HourlySchedules for EventBridgeScheduler {
    async fn put_hourly(&self, connection_id: &str, enabled: bool) -> Result<()> {
        let name = hourly_schedule_name(connection_id);
        let sent = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.config.hourly_group)
            .schedule_expression(hourly_expression())
            .schedule_expression_timezone("UTC")
            .flexible_time_window(Self::no_window()?)
            .target(self.target(hourly_input(connection_id))?)
            .state(state(enabled))
            .description(format!("Hourly event export of connection {connection_id}"))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConflictException") => self.update_hourly(connection_id, enabled).await,
            Err(e) => Err(classify("scheduler:CreateSchedule", &self.hourly_resource(connection_id), e)),
        }
    }

    async fn set_hourly_enabled(&self, connection_id: &str, enabled: bool) -> Result<()> {
        if self.hourly_state(connection_id).await?.is_none() {
            return Err(ExportError::NotFound { what: self.hourly_resource(connection_id) });
        }
        // UpdateSchedule replaces the whole definition, so it is restated with the new state.
        self.update_hourly(connection_id, enabled).await
    }

    async fn delete_hourly(&self, connection_id: &str) -> Result<()> {
        let sent = self.client.delete_schedule().name(hourly_schedule_name(connection_id)).group_name(&self.config.hourly_group).send().await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(classify("scheduler:DeleteSchedule", &self.hourly_resource(connection_id), e)),
        }
    }

    async fn hourly_state(&self, connection_id: &str) -> Result<Option<bool>> {
        let got = self.client.get_schedule().name(hourly_schedule_name(connection_id)).group_name(&self.config.hourly_group).send().await;
        match got {
            Ok(s) => Ok(Some(s.state() == Some(&ScheduleState::Enabled))),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(classify("scheduler:GetSchedule", &self.hourly_resource(connection_id), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::retry::retry_id;
    use crate::hour::UtcHour;
    use crate::model::hour_request::ExportMode;
    use crate::model::hour_request::HourRequest;

    fn retry(conn: &str, attempt: u32) -> PlannedRetry {
        let request = HourRequest::new(conn, UtcHour::parse("2020-01-25T17").unwrap(), ExportMode::Recurring, attempt);
        PlannedRetry { id: retry_id(&request), at: request.hour.end(), request }
    }

    #[test]
    fn schedule_names_are_valid_and_distinct_whatever_the_id() {
        assert_eq!(retry_schedule_name(&retry("conn-1", 2)), "conn-1-20200125T17-rec-a2");
        let a = retry_schedule_name(&retry(&"a".repeat(64), 5));
        let b = retry_schedule_name(&retry(&format!("{}b", "a".repeat(63)), 5));
        assert!(is_valid_schedule_name(&a) && is_valid_schedule_name(&b), "{a} {b}");
        assert_ne!(a, b, "shortened names keep a hash of the full id");
        assert_ne!(retry_schedule_name(&retry(&"a".repeat(64), 4)), a);

        assert_eq!(hourly_schedule_name("conn-1"), "hourly-conn-1");
        assert!(is_valid_schedule_name(&hourly_schedule_name(&"x".repeat(64))));
        let input: serde_json::Value = serde_json::from_str(&hourly_input("conn-1")).unwrap();
        assert_eq!(input["scheduled_time"], "<aws.scheduler.scheduled-time>");
        assert_eq!(hourly_expression(), "cron(20 * * * ? *)");
        assert_eq!(at_expression(DateTime::parse_from_rfc3339("2020-01-25T18:10:00.250Z").unwrap().with_timezone(&Utc)), "at(2020-01-25T18:10:00)");
    }
}
