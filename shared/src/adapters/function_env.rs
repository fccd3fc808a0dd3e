//! The functions' wiring: configuration from the environment the SAM template sets, and
//! the clients and adapters built from it once per process (Lambda cold start).
//!
//! | variable | meaning |
//! |---|---|
//! | `EXPORT_CONTROL_BUCKET` | control store bucket |
//! | `EXPORT_LAKE_BUCKET` | event lake bucket |
//! | `EXPORT_RETRY_GROUP`, `EXPORT_HOURLY_GROUP` | schedule groups |
//! | `EXPORT_SCHEDULER_ROLE_ARN` | role EventBridge Scheduler invokes with |
//! | `EXPORT_TARGET_ARN` | hourly-export function ARN (target of retry schedules) |
//! | `EXPORT_SCHEDULER_DLQ_ARN` | optional queue for undeliverable schedule events |
//! | `EXPORT_SES_SENDER` | verified SES sender of failure emails |
//! | `EXPORT_MAX_ATTEMPTS` | attempts per hour (default 5) |
//! | `EXPORT_RETRY_FIRST_DELAY_SECONDS` | wait before attempt 2 (default 300) |
//! | `BACKFILL_LEAF_HOURS`, `BACKFILL_FAN_OUT`, `BACKFILL_MAX_DEPTH`, `BACKFILL_PARALLEL` | fan-out |
//! | `BACKFILL_FUNCTION` | function the backfill invokes (default: itself, `AWS_LAMBDA_FUNCTION_NAME`) |
//! | `EXPORT_PROJECT_ROLE_ARN_TEMPLATE`, `AWS_*` | see `adapters::aws` |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::factory::{open_own_bucket, open_store, probe_destination, CloudContext};
use super::lambda_invoker::LambdaInvoker;
use super::scheduler::{EventBridgeScheduler, SchedulerConfig};
use super::ses::SesMailer;
use crate::backfill::{BackfillContext, FanOut};
use crate::connection::{Connection, Destination};
use crate::error::{ExportError, Result};
use crate::export::{export_hour, ExportSettings, ExportTargets};
use crate::failure::{system_clock, DestinationProber, FailureHandler, HourRunner, HourSummary};
use crate::hour::UtcHour;
use crate::invocation::{ConnectionSource, ScheduledRunner, Services};
use crate::probe::ProbeReport;
use crate::retry::{HourRequest, RetryPolicy};
use crate::storage::ObjectStore;

/// Settings read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    pub control_bucket: String,
    pub lake_bucket: String,
    pub region: String,
    pub scheduler: SchedulerConfig,
    pub ses_sender: String,
    pub retry: RetryPolicy,
    pub fan_out: FanOut,
    /// The function backfill pieces are handed to.
    pub backfill_function: Option<String>,
}

fn var(name: &str) -> Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ExportError::invalid_config(name, "is not set", "The SAM template sets it; when running locally, export it."))
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| ExportError::invalid_config(name, format!("{v:?} is not a number"), "Give a positive whole number.")),
        _ => Ok(default),
    }
}

impl FunctionConfig {
    pub fn from_env() -> Result<Self> {
        let defaults = RetryPolicy::default();
        let retry = RetryPolicy::new(
            num("EXPORT_MAX_ATTEMPTS", defaults.max_attempts)?,
            Duration::from_secs(num("EXPORT_RETRY_FIRST_DELAY_SECONDS", defaults.first_delay.as_secs())?),
            defaults.factor,
            defaults.max_delay,
        )?;
        let f = FanOut::default();
        let fan_out = FanOut::new(
            num("BACKFILL_LEAF_HOURS", f.leaf_hours)?,
            num("BACKFILL_FAN_OUT", f.fan_out)?,
            num("BACKFILL_MAX_DEPTH", f.max_depth)?,
            num("BACKFILL_PARALLEL", f.parallel)?,
        )?;
        Ok(FunctionConfig {
            control_bucket: var("EXPORT_CONTROL_BUCKET")?,
            lake_bucket: var("EXPORT_LAKE_BUCKET")?,
            region: std::env::var("AWS_REGION").or_else(|_| std::env::var("AWS_DEFAULT_REGION")).unwrap_or_else(|_| "us-east-1".into()),
            scheduler: SchedulerConfig {
                retry_group: var("EXPORT_RETRY_GROUP")?,
                hourly_group: var("EXPORT_HOURLY_GROUP")?,
                target_arn: var("EXPORT_TARGET_ARN")?,
                role_arn: var("EXPORT_SCHEDULER_ROLE_ARN")?,
                dead_letter_arn: std::env::var("EXPORT_SCHEDULER_DLQ_ARN").ok().filter(|v| !v.is_empty()),
            },
            ses_sender: var("EXPORT_SES_SENDER")?,
            retry,
            fan_out,
            backfill_function: std::env::var("BACKFILL_FUNCTION").or_else(|_| std::env::var("AWS_LAMBDA_FUNCTION_NAME")).ok().filter(|v| !v.is_empty()),
        })
    }
}

/// Connections as stored in the control store (`connections/{id}.json`).
#[derive(Debug, Clone)]
pub struct StoredConnections {
    control: Arc<dyn ObjectStore>,
}

impl StoredConnections {
    pub fn new(control: Arc<dyn ObjectStore>) -> Self {
        StoredConnections { control }
    }
}

#[async_trait]
impl ConnectionSource for StoredConnections {
    async fn connection(&self, id: &str) -> Result<Option<Connection>> {
        // An id that could not name a stored connection cannot be one (and must not be
        // spliced into a key).
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Ok(None);
        }
        match self.control.get(&format!("connections/{id}.json")).await {
            Ok(body) => {
                let text = std::str::from_utf8(&body).map_err(|e| ExportError::Corrupt { what: format!("connection {id}"), detail: e.to_string() })?;
                Connection::from_json(text).map(Some)
            }
            Err(ExportError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Exports hours straight through `export::export_hour`, destinations opened as the
/// project's role.
#[derive(Debug, Clone)]
pub struct DirectRunner {
    cloud: CloudContext,
    lake: Arc<dyn ObjectStore>,
    settings: ExportSettings,
}

impl DirectRunner {
    pub fn new(cloud: CloudContext, lake: Arc<dyn ObjectStore>, settings: ExportSettings) -> Self {
        DirectRunner { cloud, lake, settings }
    }

    async fn targets(&self, conn: &Connection) -> Result<ExportTargets> {
        let events = open_store(&conn.destination, &conn.project_id, &self.cloud).await?;
        let merged_ids = match &conn.merged_ids_destination {
            Some(d) => open_store(d, &conn.project_id, &self.cloud).await?,
            None => events.clone(),
        };
        Ok(ExportTargets { lake: self.lake.clone(), events, merged_ids })
    }
}

#[async_trait]
impl HourRunner for DirectRunner {
    async fn run_hour(&self, conn: &Connection, req: &HourRequest) -> Result<HourSummary> {
        let targets = self.targets(conn).await?;
        let report = export_hour(conn, &targets, req.hour, req.mode, &self.settings).await?;
        let events = report.manifest.as_ref().and_then(|m| m.events.as_ref()).map(|e| e.accounting.exported).unwrap_or(0);
        Ok(HourSummary { skipped: report.skipped, events_exported: events })
    }
}

#[async_trait]
impl ScheduledRunner for DirectRunner {
    /// The hour that closed before the schedule fired (a schedule at 18:10 exports 17:00).
    async fn run_scheduled(&self, conn: &Connection, scheduled_time: DateTime<Utc>) -> Result<Vec<(UtcHour, Result<HourSummary>)>> {
        let hour = UtcHour::containing(scheduled_time)?.prev();
        let req = HourRequest::new(conn.id.clone(), hour, crate::export::ExportMode::Recurring, 1);
        Ok(vec![(hour, self.run_hour(conn, &req).await)])
    }
}

/// The probe suite of `adapters::factory`, run as the project's identity.
#[derive(Debug, Clone)]
pub struct FactoryProber {
    cloud: CloudContext,
}

impl FactoryProber {
    pub fn new(cloud: CloudContext) -> Self {
        FactoryProber { cloud }
    }
}

#[async_trait]
impl DestinationProber for FactoryProber {
    async fn probe(&self, conn: &Connection, dest: &Destination) -> ProbeReport {
        probe_destination(dest, &conn.project_id, &self.cloud).await
    }
}

/// Everything both functions use, built once.
#[derive(Clone)]
pub struct FunctionRuntime {
    pub config: FunctionConfig,
    pub services: Services,
    pub backfill: Option<BackfillContext>,
}

impl FunctionRuntime {
    /// Builds clients from the environment. `with_backfill` also builds the self-invoker.
    pub async fn from_env(with_backfill: bool) -> Result<Self> {
        let config = FunctionConfig::from_env()?;
        let cloud = CloudContext::from_env().await?;
        let sdk = cloud
            .aws
            .as_ref()
            .ok_or_else(|| ExportError::invalid_config("AWS", "not configured", "The functions need AWS credentials."))?
            .sdk_config()
            .clone();
        let control = open_own_bucket(&cloud, &config.control_bucket, &config.region)?;
        let lake = open_own_bucket(&cloud, &config.lake_bucket, &config.region)?;
        let scheduler = Arc::new(EventBridgeScheduler::new(aws_sdk_scheduler::Client::new(&sdk), config.scheduler.clone()));
        let mailer = Arc::new(SesMailer::new(aws_sdk_ses::Client::new(&sdk), config.ses_sender.clone()));
        let runner = Arc::new(DirectRunner::new(cloud.clone(), lake, ExportSettings::standard()?));
        let failure = FailureHandler {
            control: control.clone(),
            retries: scheduler,
            mailer,
            prober: Arc::new(FactoryProber::new(cloud.clone())),
            status: None,
            policy: config.retry,
            clock: system_clock(),
        };
        let services = Services { connections: Arc::new(StoredConnections::new(control.clone())), runner: runner.clone(), scheduled: runner.clone(), failure: failure.clone() };
        let backfill = if with_backfill {
            let function = config.backfill_function.clone().ok_or_else(|| {
                ExportError::invalid_config("BACKFILL_FUNCTION", "is not set and AWS_LAMBDA_FUNCTION_NAME is missing", "Set the backfill function's name.")
            })?;
            Some(BackfillContext {
                control,
                invoker: Arc::new(LambdaInvoker::new(aws_sdk_lambda::Client::new(&sdk), function)),
                runner,
                failure,
                fan_out: config.fan_out,
            })
        } else {
            None
        };
        Ok(FunctionRuntime { config, services, backfill })
    }
}
