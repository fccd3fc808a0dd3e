//! EventBridge Scheduler: one-time retry schedules and each connection's hourly schedule,
//! both targeting the hourly-export function through the scheduler's invoke role.

use async_trait::async_trait;
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy as TargetRetryPolicy, ScheduleState, Target};
use aws_sdk_scheduler::Client;

use crate::adapters::aws::service_errors::classify;
use crate::delivery::retry::{at_expression, is_valid_schedule_name, PlannedRetry};
use crate::delivery::schedule::{hourly_expression, hourly_input, hourly_schedule_name};
use crate::error::{ExportError, Result};
use crate::ports::CreateOutcome;
use crate::ports::HourlySchedules;
use crate::ports::RetryScheduler;

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
        if !is_valid_schedule_name(&retry.name) {
            return Err(ExportError::Internal(format!("invalid schedule name {:?}", retry.name)));
        }
        let input = serde_json::to_string(&retry.request).map_err(|e| ExportError::Internal(format!("retry input: {e}")))?;
        let resource = format!("schedule {}/{}", self.config.retry_group, retry.name);
        let sent = self
            .client
            .create_schedule()
            .name(&retry.name)
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
