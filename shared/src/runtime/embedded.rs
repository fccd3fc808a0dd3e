//! Embedded mode: the whole product on local folders, no cloud. One home folder holds
//!
//! ```text
//! lake/        the event lake           control/    connections, runs, status
//! schedules/   hourly + retry schedules outbox/     failure emails as .eml
//! events/      "Hour Exported" events   secret.key  seals connection secrets
//! ```
//! Connection webhooks are posted to as in the cloud (https only, unless
//! `EXPORT_ALLOW_EMULATOR_ENDPOINTS=true`).
//! Backfill "invocations" go to an in-process queue that `drain` runs, like the Lambda
//! function would run them one by one.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::adapters::local::cipher::LocalCipher;
use crate::adapters::local::events::FolderEventSink;
use crate::adapters::local::outbox::OutboxMailer;
use crate::adapters::local::scheduler::LocalScheduler;
use crate::adapters::local::store::LocalStore;
use crate::adapters::webhook::HttpWebhooks;
use crate::control::hour_event::HourAnnouncer;
use crate::control::ledger::HourLedger;
use crate::control::runs::{RunPolicy, RunService};
use crate::control::store::ControlStore;
use crate::delivery::backfill::{BackfillContext, BackfillOutcome, FanOut};
use crate::delivery::failure::FailureHandler;
use crate::delivery::invocation::{handle_backfill, handle_hourly, HourlyResponse, Services};
use crate::delivery::retry::RetryPolicy;
use crate::error::Result;
use crate::export::hour_export::ExportSettings;
use crate::model::clock::Clock;
use crate::ports::Invoker;
use crate::ports::ObjectStore;
use crate::ports::WebhookPoster;
use crate::runtime::factory::CloudContext;

/// Sender of embedded-mode emails (they only reach the outbox folder).
pub const EMBEDDED_SENDER: &str = "exports@localhost.invalid";

/// Async invocations queued in memory.
#[derive(Debug, Default)]
pub struct QueueInvoker {
    queue: Mutex<VecDeque<serde_json::Value>>,
    count: Mutex<u64>,
}

impl QueueInvoker {
    pub fn pop(&self) -> Option<serde_json::Value> {
        self.queue.lock().unwrap().pop_front()
    }

    pub fn invoked(&self) -> u64 {
        *self.count.lock().unwrap()
    }
}

#[async_trait]
impl Invoker for QueueInvoker {
    async fn invoke_async(&self, payload: &serde_json::Value) -> Result<()> {
        self.queue.lock().unwrap().push_back(payload.clone());
        *self.count.lock().unwrap() += 1;
        Ok(())
    }
}

/// Everything embedded mode needs, built from a home folder.
#[derive(Clone)]
pub struct EmbeddedHome {
    pub dir: PathBuf,
    pub lake: Arc<LocalStore>,
    pub control: ControlStore,
    pub scheduler: Arc<LocalScheduler>,
    pub outbox: Arc<OutboxMailer>,
    pub events: Arc<FolderEventSink>,
    pub runs: RunService,
    pub services: Services,
    pub backfill: BackfillContext,
    pub queue: Arc<QueueInvoker>,
}

impl EmbeddedHome {
    pub fn open(dir: &Path, settings: ExportSettings, policy: RetryPolicy, clock: Clock) -> Result<Self> {
        let lake = Arc::new(LocalStore::new(dir.join("lake"))?);
        let control_store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.join("control"))?);
        let cipher = Arc::new(LocalCipher::open_or_create(dir.join("secret.key"))?);
        let control = ControlStore::new(control_store.clone(), cipher);
        let scheduler = Arc::new(LocalScheduler::new(dir.join("schedules"))?);
        let outbox = Arc::new(OutboxMailer::new(dir.join("outbox"), EMBEDDED_SENDER)?.with_clock(clock.clone()));
        let events = Arc::new(FolderEventSink::new(dir.join("events"))?);
        let webhooks: Arc<dyn WebhookPoster> = Arc::new(HttpWebhooks::from_env()?);
        let cloud = CloudContext::local_only();
        let runs = RunService {
            control: control.clone(),
            ledger: HourLedger::new(control_store.clone()),
            lake: lake.clone(),
            destinations: Arc::new(cloud.clone()),
            settings,
            clock: clock.clone(),
            policy: RunPolicy::default(),
            announcer: HourAnnouncer::new(Some(events.clone()), Some(webhooks.clone())),
            metrics: None,
        };
        let failure = FailureHandler {
            control: control_store.clone(),
            retries: scheduler.clone(),
            mailer: outbox.clone(),
            prober: Arc::new(crate::runtime::function_env::FactoryProber::new(cloud)),
            status: Some(Arc::new(control.clone())),
            webhooks: Some(webhooks),
            policy,
            clock,
        };
        let runner = Arc::new(runs.clone());
        let services = Services { connections: Arc::new(control.clone()), runner: runner.clone(), scheduled: runner.clone(), failure: failure.clone() };
        let queue = Arc::new(QueueInvoker::default());
        let backfill = BackfillContext { control: control_store, lake: lake.clone(), invoker: queue.clone(), runner, failure, fan_out: FanOut::default() };
        Ok(EmbeddedHome { dir: dir.to_path_buf(), lake, control, scheduler, outbox, events, runs, services, backfill, queue })
    }

    /// What the hourly schedule of `connection_id` does when it fires at `at`.
    pub async fn fire_hourly(&self, connection_id: &str, at: DateTime<Utc>) -> Result<HourlyResponse> {
        let payload = serde_json::json!({ "connection_id": connection_id, "scheduled_time": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) });
        handle_hourly(&self.services, &payload, None).await
    }

    /// Fires every retry schedule due at `now` (and removes it, like ActionAfterCompletion).
    /// A retry that fails (its connection disabled, say) is reported and the others still
    /// fire; its hour stays owed in the ledger either way.
    pub async fn fire_due_retries(&self, now: DateTime<Utc>) -> Result<Vec<(String, Result<HourlyResponse>)>> {
        let mut out = Vec::new();
        for retry in self.scheduler.due(now).await? {
            let payload = serde_json::to_value(&retry.request).expect("request serialises");
            let response = handle_hourly(&self.services, &payload, None).await;
            self.scheduler.complete(&retry.name).await?;
            out.push((retry.name, response));
        }
        Ok(out)
    }

    /// Starts a backfill and runs its queued invocations until none is left; `tick` is
    /// called after each invocation (progress display).
    pub async fn backfill(&self, payload: serde_json::Value, mut tick: impl FnMut()) -> Result<()> {
        self.backfill_with(payload, |_| tick()).await
    }

    /// [`Self::backfill`], handing each invocation's outcome to `each`. A cancel request
    /// (`exportctl backfill --cancel ID` from another process) is seen by every invocation
    /// still queued: each records its piece as cancelled without exporting.
    pub async fn backfill_with(&self, payload: serde_json::Value, mut each: impl FnMut(&BackfillOutcome)) -> Result<()> {
        let outcome = handle_backfill(&self.services, &self.backfill, &payload).await?;
        each(&outcome);
        while let Some(next) = self.queue.pop() {
            let outcome = handle_backfill(&self.services, &self.backfill, &next).await?;
            each(&outcome);
            if matches!(outcome, BackfillOutcome::Leaf { .. }) {
                hold_point("backfill_after_leaf");
            }
        }
        Ok(())
    }
}

/// Hold points for the fault-timeline tests: with `EXPORT_HOLD_AT=<step>` the process prints
/// `holding at <step>` on stderr the first time it reaches the step, then waits until the
/// file `EXPORT_HOLD_RELEASE` names exists (so a test can act, e.g. cancel, while it waits).
pub fn hold_point(step: &str) {
    static HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("EXPORT_HOLD_AT").ok().as_deref() != Some(step) || HELD.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Some(release) = std::env::var_os("EXPORT_HOLD_RELEASE").map(PathBuf::from) else {
        return;
    };
    eprintln!("holding at {step}");
    while !release.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
