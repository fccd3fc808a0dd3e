//! Where exportctl works. Embedded mode (default): a home folder with no cloud at all.
//! `--cloud`: destinations are opened with the environment's AWS/Azure credentials, and
//! when `EXPORT_CONTROL_BUCKET` is set, exportctl manages the deployed stack itself (the
//! control bucket, KMS-sealed secrets, EventBridge Scheduler, the backfill function),
//! configured with the same variables the functions get (see infra/README.md).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use exporter::adapters::aws::kms::KmsCipher;
use exporter::adapters::aws::lambda::LambdaInvoker;
use exporter::adapters::aws::scheduler::EventBridgeScheduler;
use exporter::adapters::aws::ses::SesMailer;
use exporter::control::ledger::HourLedger;
use exporter::control::runs::RunService;
use exporter::control::store::ControlStore;
use exporter::delivery::failure::FailureHandler;
use exporter::delivery::invocation::Services;
use exporter::delivery::retry::RetryPolicy;
use exporter::export::hour_export::ExportSettings;
use exporter::model::clock::{system_clock, Clock};
use exporter::ports::HourlySchedules;
use exporter::ports::Invoker;
use exporter::ports::ObjectStore;
use exporter::runtime::embedded::EmbeddedHome;
use exporter::runtime::factory::{open_own_bucket, CloudContext};
use exporter::runtime::function_env::{cloud_announcer, FactoryProber, FunctionConfig};
use exporter::{ExportError, Result};

pub struct Home {
    pub control: ControlStore,
    pub schedules: Arc<dyn HourlySchedules>,
    pub services: Services,
    pub cloud: CloudContext,
    pub lake: Arc<dyn ObjectStore>,
    /// Embedded mode: everything runs in this process.
    pub embedded: Option<EmbeddedHome>,
    /// Deployed mode: backfills are handed to the backfill function.
    pub backfill_function: Option<Arc<dyn Invoker>>,
}

impl Home {
    pub fn embedded(&self, command: &str) -> Result<&EmbeddedHome> {
        self.embedded.as_ref().ok_or_else(|| {
            ExportError::invalid_input(
                format!("exportctl {command}"),
                "runs in embedded mode only; in a deployed stack EventBridge Scheduler fires the schedules",
            )
        })
    }
}

/// The clock of this invocation: `--at` when given (embedded mode's one clock), else now.
pub fn clock(at: Option<&str>) -> Result<Clock> {
    match at {
        None => Ok(system_clock()),
        Some(s) => {
            let t: DateTime<Utc> = DateTime::parse_from_rfc3339(s)
                .map_err(|_| ExportError::invalid_input(format!("--at {s:?}"), "expected an RFC 3339 time like 2020-01-25T18:20:00Z"))?
                .with_timezone(&Utc);
            Ok(Arc::new(move || t))
        }
    }
}

/// Embedded mode's export settings: the standard ones, with the part size and the hour
/// limits the deployed functions use when the same variables are set
/// (`EXPORT_PART_SIZE_BYTES`, `EXPORT_HOUR_SECONDS`, `EXPORT_HOUR_MEMORY_MB`,
/// `EXPORT_LAKE_BYTES_PER_SECOND`). Unset, an hour is not bounded.
fn embedded_settings() -> Result<ExportSettings> {
    let num = |name: &str| -> Result<Option<u64>> {
        match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => {
                v.trim().parse().map(Some).map_err(|_| ExportError::invalid_config(name, format!("{v:?} is not a number"), "Give a positive whole number."))
            }
            _ => Ok(None),
        }
    };
    let mut settings = ExportSettings::standard()?;
    if let Some(part) = num("EXPORT_PART_SIZE_BYTES")? {
        settings = ExportSettings::new(part, settings.gzip_level, 0)?;
    }
    settings.limits.seconds = num("EXPORT_HOUR_SECONDS")?;
    settings.limits.memory_bytes = num("EXPORT_HOUR_MEMORY_MB")?.map(|mb| mb << 20);
    if let Some(rate) = num("EXPORT_LAKE_BYTES_PER_SECOND")? {
        settings.limits.lake_bytes_per_second = rate.max(1);
    }
    Ok(settings)
}

/// Whether this invocation works on a deployed stack (`--cloud` with
/// `EXPORT_CONTROL_BUCKET`) rather than on a home folder.
pub fn is_deployed(cloud: bool) -> bool {
    cloud && std::env::var("EXPORT_CONTROL_BUCKET").is_ok_and(|v| !v.is_empty())
}

/// Whether `dir` is a home: the first command that wrote state sealed its key there.
pub fn exists(dir: &Path) -> bool {
    dir.join(HOME_KEY_FILE).is_file()
}

/// The error of a command that needs a home where there is none.
pub fn missing(dir: &Path) -> ExportError {
    ExportError::invalid_input(
        format!("home {}", dir.display()),
        format!(
            "is not an exportctl home (no {HOME_KEY_FILE}); nothing was created. Give the home you used before with --home DIR \
             (or EXPORT_HOME), or start one with `exportctl projects add PROJECT --org ORG` or `exportctl generate`"
        ),
    )
}

/// The file every home has from its first command on (the local cipher's key).
const HOME_KEY_FILE: &str = "secret.key";

pub async fn open(dir: &Path, cloud: bool, clock: Clock) -> Result<Home> {
    if is_deployed(cloud) {
        return open_deployed().await;
    }
    let mut embedded = EmbeddedHome::open(dir, embedded_settings()?, RetryPolicy::default(), clock)?;
    // A home folder is embedded mode: its local-folder destinations are served, cloud or not.
    let cloud = if cloud { CloudContext::from_env().await?.with_local_folders() } else { CloudContext::local_only() };
    if cloud.aws.is_some() {
        // Destinations in S3/Azure: exports and probes go through the cloud context.
        embedded.runs.destinations = Arc::new(cloud.clone());
        let runner = Arc::new(embedded.runs.clone());
        embedded.services.runner = runner.clone();
        embedded.services.scheduled = runner.clone();
        embedded.services.failure.prober = Arc::new(FactoryProber::new(cloud.clone()));
        embedded.backfill.runner = runner;
        embedded.backfill.failure = embedded.services.failure.clone();
    }
    Ok(Home {
        control: embedded.control.clone(),
        schedules: embedded.scheduler.clone(),
        services: embedded.services.clone(),
        cloud,
        lake: embedded.lake.clone(),
        embedded: Some(embedded),
        backfill_function: None,
    })
}

async fn open_deployed() -> Result<Home> {
    let config = FunctionConfig::from_env()?;
    let cloud = CloudContext::from_env().await?;
    let sdk = cloud.aws.as_ref().expect("from_env configures AWS").sdk_config().clone();
    let cipher = Arc::new(KmsCipher::new(aws_sdk_kms::Client::new(&sdk), config.secrets_key.clone()));
    let control = ControlStore::new(open_own_bucket(&cloud, &config.control_bucket, &config.region)?, cipher);
    let lake = open_own_bucket(&cloud, &config.lake_bucket, &config.region)?;
    let scheduler = Arc::new(EventBridgeScheduler::new(aws_sdk_scheduler::Client::new(&sdk), config.scheduler.clone()));
    let clock = system_clock();
    // Hours exported from here announce themselves like the functions' (EXPORT_EVENT_BUS_NAME).
    let (announcer, webhooks) = cloud_announcer(&config, &sdk)?;
    let runner = Arc::new(RunService {
        control: control.clone(),
        ledger: HourLedger::new(control.store().clone()),
        lake: lake.clone(),
        destinations: Arc::new(cloud.clone()),
        settings: ExportSettings::standard()?,
        clock: clock.clone(),
        policy: config.run_policy,
        announcer,
        metrics: None,
    });
    let failure = FailureHandler {
        control: control.store().clone(),
        retries: scheduler.clone(),
        mailer: Arc::new(SesMailer::new(aws_sdk_ses::Client::new(&sdk), config.ses_sender.clone())),
        prober: Arc::new(FactoryProber::new(cloud.clone())),
        status: Some(Arc::new(control.clone())),
        webhooks: Some(webhooks),
        policy: config.retry,
        clock,
    };
    let services = Services { connections: Arc::new(control.clone()), runner: runner.clone(), scheduled: runner, failure };
    let backfill_function: Option<Arc<dyn Invoker>> =
        config.backfill_function.clone().map(|f| Arc::new(LambdaInvoker::new(aws_sdk_lambda::Client::new(&sdk), f)) as Arc<dyn Invoker>);
    Ok(Home { control, schedules: scheduler, services, cloud, lake, embedded: None, backfill_function })
}
