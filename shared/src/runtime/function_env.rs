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
//! | `EXPORT_SECRETS_KEY_ARN` | KMS key sealing connection secrets |
//! | `EXPORT_EVENT_BUS_NAME` | EventBridge bus of "Hour Exported" events (unset: none are published) |
//! | `EXPORT_ALLOW_EMULATOR_ENDPOINTS` | `true`: webhooks may be plain http or local hosts (tests only) |
//! | `EXPORT_MAX_ATTEMPTS` | attempts per hour (default 5) |
//! | `EXPORT_SETTLE_MINUTES` | an hour is exportable this long after it ends (default 16) |
//! | `EXPORT_LEASE_MINUTES` | lease lifetime, longer than the function timeout (default 20) |
//! | `EXPORT_RESERVE_SECONDS` | no new hour starts with less time left than this (default 120; 0 turns it off) |
//! | `EXPORT_LATE_WINDOW_HOURS` | completed hours checked for late lake files by every run (default 24) |
//! | `EXPORT_FRESHNESS_SLO_MINUTES` | an hour's marker is due this long after the hour ends (default 60) |
//! | `EXPORT_STACK_NAME` | the `Stack` dimension of every metric (the template sets the stack's name) |
//! | `EXPORT_METRICS_PER_CONNECTION` | `true`: run metrics also by `ConnectionId` (costly: see `control::metrics`) |
//! | `EXPORT_LATE_SWEEP_DAYS` | days behind that window the daily sweep checks for late lake files; set it to the lake's retention (default 30) |
//! | `EXPORT_HOUR_SECONDS` | time one run may spend on an hour (default 780) |
//! | `EXPORT_HOUR_MEMORY_MB` | memory for one hour's de-duplication (default: function memory less 256 MB) |
//! | `EXPORT_RETRY_FIRST_DELAY_SECONDS` | wait before attempt 2 (default 300) |
//! | `BACKFILL_LEAF_HOURS`, `BACKFILL_FAN_OUT`, `BACKFILL_MAX_DEPTH`, `BACKFILL_PARALLEL` | fan-out |
//! | `BACKFILL_FUNCTION` | function the backfill invokes (default: itself, `AWS_LAMBDA_FUNCTION_NAME`) |
//! | `EXPORT_PROJECT_ROLE_ARN_TEMPLATE`, `AWS_*` | see `adapters::aws` |

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::adapters::aws::compatible::admit_endpoint_host;
use crate::adapters::aws::emf::EmfLogSink;
use crate::adapters::aws::eventbridge::EventBridgeSink;
use crate::adapters::aws::kms::KmsCipher;
use crate::adapters::aws::lambda::LambdaInvoker;
use crate::adapters::aws::scheduler::{EventBridgeScheduler, SchedulerConfig};
use crate::adapters::aws::ses::SesMailer;
use crate::adapters::outbound_dns::{Lookup, SystemLookup};
use crate::adapters::webhook::HttpWebhooks;
use crate::control::hour_event::HourAnnouncer;
use crate::control::ledger::HourLedger;
use crate::control::metrics::MetricsOut;
use crate::control::runs::{RunPolicy, RunService};
use crate::control::store::ControlStore;
use crate::control::watchdog::{self, Survey};
use crate::delivery::backfill::{BackfillContext, FanOut};
use crate::delivery::failure::FailureHandler;
use crate::delivery::invocation::Services;
use crate::delivery::retry::RetryPolicy;
use crate::error::{ExportError, Result};
use crate::export::hour_export::{ExportSettings, HourLimits};
use crate::model::clock::system_clock;
use crate::model::destination::Destination;
use crate::model::probe_report::ProbeReport;
use crate::ports::{DestinationProber, HourEventSink, WebhookPoster};
use crate::runtime::factory::{open_own_bucket, probe_destination, CloudContext};

/// Settings read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    pub control_bucket: String,
    pub lake_bucket: String,
    pub region: String,
    pub scheduler: SchedulerConfig,
    pub ses_sender: String,
    pub secrets_key: String,
    /// The bus "Hour Exported" events go to; `None` publishes none (the template sets it).
    pub event_bus: Option<String>,
    pub retry: RetryPolicy,
    pub fan_out: FanOut,
    /// The function backfill pieces are handed to.
    pub backfill_function: Option<String>,
    pub run_policy: RunPolicy,
    pub limits: HourLimits,
    /// The `Stack` dimension of every metric.
    pub stack_name: String,
    /// Run metrics also by `ConnectionId`.
    pub metrics_per_connection: bool,
}

fn var(name: &str) -> Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ExportError::invalid_config(name, "is not set", "The SAM template sets it; when running locally, export it."))
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    num_from(&|n| std::env::var(n).ok(), name, default)
}

/// The run settings (settle, lease, reserve, late window) from `lookup`, each checked.
fn run_policy_from(lookup: &dyn Fn(&str) -> Option<String>) -> Result<RunPolicy> {
    let d = RunPolicy::default();
    let settle: i64 = num_from(lookup, "EXPORT_SETTLE_MINUTES", d.settle.num_minutes())?;
    let lease: i64 = num_from(lookup, "EXPORT_LEASE_MINUTES", d.lease.num_minutes())?;
    if lease <= 15 {
        return Err(ExportError::invalid_config(
            "EXPORT_LEASE_MINUTES",
            format!("{lease} is not longer than Lambda's 15-minute limit"),
            "A lease must outlive the run holding it; use 16 or more (default 20).",
        ));
    }
    let reserve: i64 = num_from(lookup, "EXPORT_RESERVE_SECONDS", d.reserve.num_seconds())?;
    let late_window_hours: i64 = num_from(lookup, "EXPORT_LATE_WINDOW_HOURS", d.late_window_hours)?;
    let late_sweep_days: i64 = num_from(lookup, "EXPORT_LATE_SWEEP_DAYS", d.late_sweep_days)?;
    let slo: i64 = num_from(lookup, "EXPORT_FRESHNESS_SLO_MINUTES", d.freshness_slo.num_minutes())?;
    for (name, value, least) in [
        ("EXPORT_FRESHNESS_SLO_MINUTES", slo, 1),
        ("EXPORT_SETTLE_MINUTES", settle, 0),
        ("EXPORT_RESERVE_SECONDS", reserve, 0),
        ("EXPORT_LATE_WINDOW_HOURS", late_window_hours, 1),
        ("EXPORT_LATE_SWEEP_DAYS", late_sweep_days, 0),
    ] {
        if value < least {
            return Err(ExportError::invalid_config(name, format!("{value} is below {least}"), format!("Use {least} or more.")));
        }
    }
    Ok(RunPolicy {
        settle: chrono::Duration::minutes(settle),
        lease: chrono::Duration::minutes(lease),
        reserve: chrono::Duration::seconds(reserve),
        late_window_hours,
        late_sweep_days,
        freshness_slo: chrono::Duration::minutes(slo),
        ..d
    })
}

/// A number setting from `lookup` (the environment, or a table in tests).
fn num_from<T: std::str::FromStr>(lookup: &dyn Fn(&str) -> Option<String>, name: &str, default: T) -> Result<T> {
    match lookup(name) {
        Some(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|_| ExportError::invalid_config(name, format!("{v:?} is not a number"), "Give a positive whole number."))
        }
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
            secrets_key: var("EXPORT_SECRETS_KEY_ARN")?,
            event_bus: std::env::var("EXPORT_EVENT_BUS_NAME").ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()),
            retry,
            fan_out,
            backfill_function: std::env::var("BACKFILL_FUNCTION").or_else(|_| std::env::var("AWS_LAMBDA_FUNCTION_NAME")).ok().filter(|v| !v.is_empty()),
            run_policy: run_policy_from(&|n| std::env::var(n).ok())?,
            limits: Self::limits()?,
            stack_name: std::env::var("EXPORT_STACK_NAME")
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "event-export".into()),
            metrics_per_connection: match std::env::var("EXPORT_METRICS_PER_CONNECTION").ok().as_deref().map(str::trim) {
                None | Some("") | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ExportError::invalid_config(
                        "EXPORT_METRICS_PER_CONNECTION",
                        format!("{other:?} is not true or false"),
                        "Use true or false (default false).",
                    ))
                }
            },
        })
    }

    /// Metrics as EMF log lines, by stack (and by connection when configured).
    pub fn metrics_out(&self) -> MetricsOut {
        MetricsOut { sink: Arc::new(EmfLogSink), stack: self.stack_name.clone(), per_connection: self.metrics_per_connection }
    }

    fn limits() -> Result<HourLimits> {
        let memory_mb: u64 = num("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 1024)?;
        Ok(HourLimits {
            seconds: Some(num("EXPORT_HOUR_SECONDS", 780)?),
            memory_bytes: Some(num("EXPORT_HOUR_MEMORY_MB", memory_mb.saturating_sub(256).max(64))? << 20),
            ..HourLimits::default()
        })
    }
}

/// The probe suite of `adapters::factory`, run as the project's identity.
#[derive(Debug, Clone)]
pub struct FactoryProber {
    cloud: CloudContext,
    /// Resolves customers' host names at admission (the system resolver but in tests).
    lookup: Arc<dyn Lookup>,
    /// The emulator setting for webhooks; `None`: read from the environment at each
    /// admission, as each send reads it (`HttpWebhooks::from_env`).
    webhook_emulators: Option<bool>,
}

/// The "Hour Exported" publisher of a deployed stack: the bus the configuration names, and
/// connection webhooks; also returns the webhook poster, for failure notices.
pub fn cloud_announcer(config: &FunctionConfig, sdk: &aws_config::SdkConfig) -> Result<(HourAnnouncer, Arc<dyn WebhookPoster>)> {
    let bus =
        config.event_bus.as_ref().map(|name| Arc::new(EventBridgeSink::new(aws_sdk_eventbridge::Client::new(sdk), name.clone())) as Arc<dyn HourEventSink>);
    if bus.is_none() {
        tracing::warn!("EXPORT_EVENT_BUS_NAME is not set: no Hour Exported events are published to a bus");
    }
    let webhooks: Arc<dyn WebhookPoster> = Arc::new(HttpWebhooks::from_env()?);
    Ok((HourAnnouncer::new(bus, Some(webhooks.clone())), webhooks))
}

impl FactoryProber {
    pub fn new(cloud: CloudContext) -> Self {
        FactoryProber { cloud, lookup: Arc::new(SystemLookup), webhook_emulators: None }
    }

    /// Host names answered by `lookup` instead of the system resolver (tests).
    pub fn with_lookup(mut self, lookup: Arc<dyn Lookup>) -> Self {
        self.lookup = lookup;
        self
    }

    /// The emulator setting for webhooks, instead of the environment's (tests).
    pub fn with_webhook_emulators(mut self, allow: bool) -> Self {
        self.webhook_emulators = Some(allow);
        self
    }
}

#[async_trait]
impl DestinationProber for FactoryProber {
    async fn admit(&self, dest: &Destination) -> Result<()> {
        self.cloud.admit(dest)?;
        match dest {
            // The name resolved as each request resolves it (never connected to).
            Destination::S3 { endpoint_url: Some(endpoint), .. } => admit_endpoint_host(endpoint, &self.cloud.azure.endpoints, self.lookup.clone()).await,
            _ => Ok(()),
        }
    }

    async fn admit_webhook(&self, field: &str, url: &str) -> Result<()> {
        // The same rule, and the same operator setting, as each send (`HttpWebhooks::from_env`).
        let allow = match self.webhook_emulators {
            Some(allow) => allow,
            None => crate::adapters::azure::endpoint::EndpointRules::from_env()?.allow_emulators,
        };
        crate::adapters::webhook::admit_webhook_host(field, url, allow, self.lookup.clone()).await.map(|_| ())
    }

    async fn probe(&self, dest: &Destination, project_id: &str) -> ProbeReport {
        probe_destination(dest, project_id, &self.cloud).await
    }
}

/// Everything both functions use, built once.
#[derive(Clone)]
pub struct FunctionRuntime {
    pub config: FunctionConfig,
    pub control: ControlStore,
    pub services: Services,
    pub backfill: Option<BackfillContext>,
}

impl FunctionRuntime {
    /// The hourly-export function's clients, built from the environment.
    pub async fn for_hourly_export() -> Result<Self> {
        Self::from_env(false).await
    }

    /// The backfill function's clients: those of hourly-export plus its self-invoker.
    pub async fn for_backfill() -> Result<Self> {
        Self::from_env(true).await
    }

    /// The watchdog's survey of every connection, published as metrics (the hourly-export
    /// function runs it when its own schedule sends `{"watchdog": {}}`).
    pub async fn watchdog(&self) -> Result<Survey> {
        watchdog::run(&self.control, &self.config.run_policy, Some(&self.config.metrics_out()), chrono::Utc::now()).await
    }

    async fn from_env(with_backfill: bool) -> Result<Self> {
        let config = FunctionConfig::from_env()?;
        let cloud = CloudContext::from_env().await?;
        let sdk =
            cloud.aws.as_ref().ok_or_else(|| ExportError::invalid_config("AWS", "not configured", "The functions need AWS credentials."))?.sdk_config().clone();
        let cipher = Arc::new(KmsCipher::new(aws_sdk_kms::Client::new(&sdk), config.secrets_key.clone()));
        let control = ControlStore::new(open_own_bucket(&cloud, &config.control_bucket, &config.region)?, cipher);
        let lake = open_own_bucket(&cloud, &config.lake_bucket, &config.region)?;
        let scheduler = Arc::new(EventBridgeScheduler::new(aws_sdk_scheduler::Client::new(&sdk), config.scheduler.clone()));
        let mailer = Arc::new(SesMailer::new(aws_sdk_ses::Client::new(&sdk), config.ses_sender.clone()));
        let clock = system_clock();
        let mut settings = ExportSettings::standard()?;
        settings.limits = config.limits;
        if with_backfill {
            // A backfill piece exports this many hours at once: they share the memory.
            settings.limits.concurrent_hours = config.fan_out.parallel as u64;
        }
        let (announcer, webhooks) = cloud_announcer(&config, &sdk)?;
        let runner = Arc::new(RunService {
            control: control.clone(),
            ledger: HourLedger::new(control.store().clone()),
            lake: lake.clone(),
            destinations: Arc::new(cloud.clone()),
            settings,
            clock: clock.clone(),
            policy: config.run_policy,
            announcer,
            metrics: Some(config.metrics_out()),
        });
        let failure = FailureHandler {
            control: control.store().clone(),
            retries: scheduler,
            mailer,
            prober: Arc::new(FactoryProber::new(cloud.clone())),
            status: Some(Arc::new(control.clone())),
            webhooks: Some(webhooks),
            policy: config.retry,
            clock,
        };
        let services = Services { connections: Arc::new(control.clone()), runner: runner.clone(), scheduled: runner.clone(), failure: failure.clone() };
        let backfill = if with_backfill {
            let function = config.backfill_function.clone().ok_or_else(|| {
                ExportError::invalid_config("BACKFILL_FUNCTION", "is not set and AWS_LAMBDA_FUNCTION_NAME is missing", "Set the backfill function's name.")
            })?;
            Some(BackfillContext {
                control: control.store().clone(),
                lake,
                invoker: Arc::new(LambdaInvoker::new(aws_sdk_lambda::Client::new(&sdk), function)),
                runner,
                failure,
                fan_out: config.fan_out,
            })
        } else {
            None
        };
        Ok(FunctionRuntime { config, control, services, backfill })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(vars: &[(&str, &str)]) -> Result<RunPolicy> {
        let table: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        run_policy_from(&move |n| table.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn run_settings_are_read_and_bad_ones_refused_by_name() {
        assert_eq!(policy(&[]).unwrap(), RunPolicy::default());
        let p = policy(&[("EXPORT_SETTLE_MINUTES", "30"), ("EXPORT_LATE_WINDOW_HOURS", "48")]).unwrap();
        assert_eq!((p.settle.num_minutes(), p.late_window_hours), (30, 48));
        for (var, value, want) in [
            ("EXPORT_LEASE_MINUTES", "15", "15-minute limit"),
            ("EXPORT_SETTLE_MINUTES", "-5", "below 0"),
            ("EXPORT_LATE_WINDOW_HOURS", "0", "below 1"),
            ("EXPORT_RESERVE_SECONDS", "soon", "not a number"),
        ] {
            let err = policy(&[(var, value)]).unwrap_err();
            assert!(err.to_string().contains(var) && err.to_string().contains(want), "{var}={value}: {err}");
        }
    }
}
