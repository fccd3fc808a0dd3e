//! What happens after a run of one hour: retries through the scheduler, the failing state
//! of a connection, and the one email per failing episode.
//!
//! - A failed attempt that may succeed later schedules attempt + 1 (deterministic name,
//!   so a redelivered failure finds its retry already planned).
//! - The last attempt of an accessibility failure probes the destination, marks the
//!   connection failing and emails the admins and the creator, once per episode: the
//!   episode is opened with a create-only write in the control store, and only the
//!   invocation that created it sends. Concurrent hours failing together, and Lambda or
//!   the scheduler delivering an event twice, therefore send one email, not one per hour.
//! - The next success closes the episode, so a later breakage is a new episode.
//! - A connection with a `failure_webhook` also gets the notice as Slack-compatible text,
//!   once per episode, after the email (a webhook that fails never holds the email back, and
//!   its outcome is kept in the episode).
//!
//! Failing hours are owed hours of the hour ledger (`ledger`), in state `failing` with
//! their attempts, last error, blame and next retry; giving up ends the retries, never the
//! debt: the next hourly run that reaches the destination exports them. The episode is
//! `failures/{connection}/episode.json` while failing.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::control::connection::Connection;
use crate::control::hour_event::{post_with_backoff, Backoff, ChannelOutcome};
use crate::control::ledger::{HourLedger, OwedHour, OwedState};
use crate::control::run_api::{FailingStatus, HourRunner, HourSummary};
use crate::control::store::read_json;
use crate::delivery::invocation::Deferred;
use crate::delivery::notify::{compose_failure_email, compose_failure_text, deliver, FailedHour, FailureNotice, RefusedRecipient};
use crate::delivery::retry::{handoff, RetryPolicy};
use crate::error::{ExportError, Result};
use crate::hour::UtcHour;
use crate::model::clock::Clock;
use crate::model::destination::Destination;
use crate::model::hour_request::ExportMode;
use crate::model::hour_request::HourRequest;
use crate::model::probe_report::ProbeReport;
use crate::ports::RetryScheduler;
use crate::ports::{CreateOutcome, ObjectStore};
use crate::ports::{DestinationProber, Mailer};
use crate::ports::{WebhookPost, WebhookPoster};

/// An episode whose email was claimed but never marked sent after this long is taken
/// over: the invocation that claimed it died between the claim and the send.
const STALE_CLAIM_MINUTES: i64 = 15;

/// At most this many failing hours are listed in an email (all are counted).
const MAX_LISTED_HOURS: usize = 48;

/// The outcome of one hour, as handlers report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourResult {
    pub request: HourRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exported: Option<HourSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_failure: Option<AfterFailure>,
}

impl HourResult {
    pub fn succeeded(&self) -> bool {
        self.exported.is_some()
    }

    /// Not a failure of this run: another run holds the hour (a replace waits for its lease),
    /// or it was handed on.
    pub fn left_alone(&self) -> bool {
        matches!(self.after_failure, Some(AfterFailure::LeftToOtherRun | AfterFailure::HandedOff { .. })) || self.error_kind.as_deref() == Some("HourBusy")
    }
}

/// Everything the failure path talks to.
#[derive(Clone)]
pub struct FailureHandler {
    pub control: Arc<dyn ObjectStore>,
    pub retries: Arc<dyn RetryScheduler>,
    pub mailer: Arc<dyn Mailer>,
    pub prober: Arc<dyn DestinationProber>,
    pub status: Option<Arc<dyn FailingStatus>>,
    /// Posts the notice to a connection's `failure_webhook`; `None`: no webhooks here.
    pub webhooks: Option<Arc<dyn WebhookPoster>>,
    pub policy: RetryPolicy,
    pub clock: Clock,
}

impl std::fmt::Debug for FailureHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureHandler").field("retries", &self.retries).field("mailer", &self.mailer).field("policy", &self.policy).finish()
    }
}

/// What was done about a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AfterFailure {
    /// Attempt + 1 is scheduled (`created: false` when it already was).
    RetryScheduled { schedule: String, at: DateTime<Utc>, attempt: u32, created: bool },
    /// The error cannot go away by retrying (invalid configuration or input).
    NotRetryable,
    /// The last attempt failed: retries end, the hour stays owed and every hourly run tries
    /// it again. `email` is the message id when this call sent the episode's email; `None`
    /// when the failure is not about access or the email was already sent for this episode.
    GaveUp { accessibility: bool, email: Option<String> },
    /// Another run holds the hour's lease: nothing was done and nothing is to be done.
    LeftToOtherRun,
    /// Not started: the invocation ran short of time, so a one-time schedule takes it.
    HandedOff { schedule: String, at: DateTime<Utc> },
}

/// The record of one failing hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourFailure {
    pub hour: UtcHour,
    pub attempts: u32,
    pub kind: String,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// The open failing episode of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    pub since: DateTime<Utc>,
    pub first_hour: UtcHour,
    pub last_error: String,
    #[serde(default)]
    pub emailed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub missing: Vec<String>,
    /// The recipients the email reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emailed: Vec<String>,
    /// The recipients the mail service refused, and why (the others got the email).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedRecipient>,
    /// What became of the Slack-style notice to the connection's failure webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_webhook: Option<ChannelOutcome>,
}

pub fn episode_key(connection_id: &str) -> String {
    format!("failures/{connection_id}/episode.json")
}

fn to_json<T: Serialize>(v: &T) -> Result<Bytes> {
    serde_json::to_vec_pretty(v).map(Bytes::from).map_err(|e| ExportError::Internal(format!("failure record: {e}")))
}

impl FailureHandler {
    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The open episode of a connection, if it is failing.
    pub async fn episode(&self, connection_id: &str) -> Result<Option<Episode>> {
        read_json(self.control.as_ref(), &episode_key(connection_id)).await
    }

    fn ledger(&self) -> HourLedger {
        HourLedger::new(self.control.clone())
    }

    /// The hours currently failing, oldest first.
    pub async fn failing_hours(&self, connection_id: &str) -> Result<Vec<HourFailure>> {
        Ok(self
            .ledger()
            .owed(connection_id)
            .await?
            .into_iter()
            .filter(|h| h.state == OwedState::Failing)
            .map(|h| HourFailure {
                hour: h.hour,
                attempts: h.attempts,
                kind: h.error_kind.unwrap_or_default(),
                error: h.last_error.unwrap_or_default(),
                at: h.next_retry.unwrap_or_else(|| self.now()),
            })
            .collect())
    }

    /// Failing hours whose retry schedule has not fired yet, as the requests that retry them
    /// now: once a run reaches the destination again, they need not wait for their schedule
    /// (which later finds them done).
    pub async fn waiting_retries(&self, conn: &Connection) -> Result<Vec<HourRequest>> {
        let now = self.now();
        Ok(self
            .ledger()
            .owed(&conn.id)
            .await?
            .into_iter()
            // Only the destination's failures: a run that reached it proves them gone; ours
            // (a lake object, a run that died) keep their schedule.
            .filter(|h| h.state == OwedState::Failing && !h.parked && !h.due_for_hourly_run(now) && h.blame.as_deref() == Some("destination"))
            .map(|h| {
                let mut req = HourRequest::new(conn.id.clone(), h.hour, h.mode, h.attempts + 1);
                req.allow_empty_lake = h.allow_empty_lake;
                req
            })
            .collect())
    }

    /// A retry not run because the destination still fails its probe: its schedule is
    /// spent, so the hour is left to the hourly runs, which export it once the probe passes.
    pub async fn leave_to_hourly_runs(&self, conn: &Connection, req: &HourRequest) -> Result<()> {
        let ledger = self.ledger();
        if let Some(mut owed) = ledger.owed_hour(&conn.id, req.hour).await? {
            owed.next_retry = None;
            owed.retries_exhausted = true;
            ledger.save_owed(&conn.id, &owed).await?;
        }
        Ok(())
    }

    /// Hands an hour this invocation has no time to start to a one-time schedule; the
    /// hour stays owed either way.
    pub async fn hand_off(&self, conn: &Connection, req: &HourRequest) -> Result<HourResult> {
        let plan = handoff(req, self.now());
        self.retries.schedule_retry(&plan).await?;
        let ledger = self.ledger();
        let mut owed = ledger.owed_hour(&conn.id, req.hour).await?.unwrap_or_else(|| OwedHour::pending(req.hour, req.mode));
        owed.next_retry = Some(plan.at);
        ledger.save_owed(&conn.id, &owed).await?;
        tracing::info!(connection = %conn.id, hour = %req.hour, outcome = "handed_off", schedule = %plan.id, "little time left; hour handed to a one-time schedule");
        Ok(HourResult {
            request: req.clone(),
            exported: None,
            error_kind: None,
            error: None,
            after_failure: Some(AfterFailure::HandedOff { schedule: plan.id, at: plan.at }),
        })
    }

    /// Runs one hour and deals with the outcome: success clears failing state, failure
    /// schedules the retry or, on the last attempt, notifies. `Err` only when the failure
    /// could not be handled (e.g. the scheduler is down): the caller must then fail so the
    /// event is delivered again.
    pub async fn process_hour(&self, runner: &dyn HourRunner, conn: &Connection, req: &HourRequest) -> Result<HourResult> {
        match runner.run_hour(conn, req).await {
            Ok(summary) => {
                self.on_success(conn, req).await?;
                tracing::info!(
                    connection = %conn.id, hour = %req.hour, mode = %req.mode, attempt = req.attempt,
                    outcome = if summary.skipped { "skipped" } else { "exported" }, events = summary.events_exported, "hour done"
                );
                Ok(HourResult { request: req.clone(), exported: Some(summary), error_kind: None, error: None, after_failure: None })
            }
            Err(err) => {
                tracing::warn!(
                    connection = %conn.id, hour = %req.hour, mode = %req.mode, attempt = req.attempt,
                    outcome = "failed", error_kind = err.kind(), error = %err, "hour failed"
                );
                let after = self.on_failure(conn, req, &err).await?;
                Ok(HourResult {
                    request: req.clone(),
                    exported: None,
                    error_kind: Some(err.kind().into()),
                    error: Some(err.to_string()),
                    after_failure: Some(after),
                })
            }
        }
    }

    /// After a successful run of `req`: the hour is no longer failing, and a failing
    /// connection is healthy again (its episode closes). Returns whether an episode closed.
    pub async fn on_success(&self, conn: &Connection, req: &HourRequest) -> Result<bool> {
        let key = episode_key(&conn.id);
        let open = self.control.head(&key).await?.is_some();
        if open {
            self.control.delete(&key).await?;
            tracing::info!(connection = %conn.id, hour = %req.hour, attempt = req.attempt, outcome = "recovered", "destination accessible again; failing state cleared");
        }
        if let Some(status) = &self.status {
            if open {
                status.clear_failing(&conn.id).await?;
            }
        }
        Ok(open)
    }

    /// After a failed run of `req` with `err`.
    pub async fn on_failure(&self, conn: &Connection, req: &HourRequest, err: &ExportError) -> Result<AfterFailure> {
        let now = self.now();
        if let ExportError::HourBusy { until, .. } = err {
            // A replace (a backfill) must still happen after the holder: it waits for the lease's end.
            if req.mode == ExportMode::Replace {
                return crate::delivery::backfill::wait_for_lease(self.retries.as_ref(), req, until, now).await;
            }
            // The lease holder owns the hour's state: touch nothing.
            return Ok(AfterFailure::LeftToOtherRun);
        }
        let plan = if err.is_retryable() { self.policy.plan(req, now) } else { None };
        self.record_failure(conn, req, err, plan.as_ref().map(|p| p.at)).await?;
        if err.blame() == "internal" {
            // Ours, not the customer's: the operators' alarm (error log line), never an email.
            tracing::error!(
                connection = %conn.id, hour = %req.hour, attempt = req.attempt, operator_alert = true, error_kind = err.kind(), error = %err,
                "our own infrastructure failed; the customer is not notified"
            );
        }

        if !err.is_retryable() {
            if self.ledger().owed_hour(&conn.id, req.hour).await?.is_some_and(|h| h.parked) {
                // Loud once: the hour waits for an operator instead of failing every hour.
                tracing::error!(
                    connection = %conn.id, hour = %req.hour, attempt = req.attempt, outcome = "parked", operator_alert = true, error_kind = err.kind(), error = %err,
                    "the hour cannot be exported as it is; it waits, shown as broken in status, until an operator exports it"
                );
            }
            return Ok(AfterFailure::NotRetryable);
        }
        if let Some(plan) = plan {
            let outcome = self.retries.schedule_retry(&plan).await?;
            tracing::info!(
                connection = %conn.id, hour = %req.hour, attempt = req.attempt, outcome = "retry_scheduled",
                schedule = %plan.id, at = %plan.at, error_kind = err.kind(), "attempt failed; retry scheduled"
            );
            return Ok(AfterFailure::RetryScheduled {
                schedule: plan.id,
                at: plan.at,
                attempt: plan.request.attempt,
                created: outcome == CreateOutcome::Created,
            });
        }
        if !err.is_accessibility() {
            // Not the customer's to fix: the last attempt is our operators' alarm.
            tracing::error!(
                connection = %conn.id, hour = %req.hour, attempt = req.attempt, outcome = "gave_up", operator_alert = true, error_kind = err.kind(), error = %err,
                "last attempt failed; the hour stays owed and is shown in status"
            );
            return Ok(AfterFailure::GaveUp { accessibility: false, email: None });
        }
        let email = self.notify_once(conn, req, err, now).await?;
        Ok(AfterFailure::GaveUp { accessibility: true, email })
    }

    /// Keeps the failed hour owed, with what went wrong and when it is tried next. A
    /// request that cannot succeed (a refused, not-closed hour), or one about an hour
    /// already completed, is not made a debt unless the hour was owed already.
    async fn record_failure(&self, conn: &Connection, req: &HourRequest, err: &ExportError, next_retry: Option<DateTime<Utc>>) -> Result<()> {
        let ledger = self.ledger();
        let existing = ledger.owed_hour(&conn.id, req.hour).await?;
        // Not owed and nothing to owe: a request that cannot succeed, or a failure after
        // the hour was completed (bookkeeping, a racing second run). A late export that
        // fails is owed all the same: its late files must not wait in silence.
        let late = req.mode == ExportMode::Late;
        if existing.is_none() && (!err.is_retryable() || (!late && ledger.complete_manifest(&conn.id, req.hour).await?.is_some())) {
            return Ok(());
        }
        // An exported hour whose event still waits, and a request on it refused before
        // anything was written (a replace over an expired lake): the hour stays as it was,
        // so the next run publishes its event.
        if existing.as_ref().is_some_and(|o| o.event_pending.is_some()) && !err.is_retryable() {
            return Ok(());
        }
        let mut owed = existing.unwrap_or_else(|| OwedHour::pending(req.hour, req.mode));
        owed.state = OwedState::Failing;
        owed.run_id = None;
        owed.attempts = owed.attempts.max(req.attempt);
        owed.error_kind = Some(err.kind().to_string());
        owed.last_error = Some(err.to_string());
        owed.blame = Some(err.blame().to_string());
        owed.next_retry = next_retry;
        owed.retries_exhausted = next_retry.is_none();
        owed.exporting_since = None;
        // Trying again the same way cannot help: the hour waits, shown as broken with the
        // command that exports it, instead of costing a full attempt every hour for ever.
        owed.parked = !err.is_retryable() || (matches!(err, ExportError::RunStopped { .. }) && next_retry.is_none());
        owed.parked_config = owed.parked.then(|| crate::control::ledger::connection_digest(conn));
        ledger.save_owed(&conn.id, &owed).await
    }

    /// Before a scheduled run exports anything for a connection whose destination stayed
    /// inaccessible (its failure email is out): one probe. While it still fails, the owed
    /// hours wait (`Some`) and cost nothing more; once it passes, the run exports them.
    pub async fn probe_if_known_dead(&self, conn: &Connection, hours_waiting: usize) -> Result<Option<Deferred>> {
        let Some(episode) = self.episode(&conn.id).await?.filter(|e| e.emailed_at.is_some()) else {
            return Ok(None);
        };
        let mut still_failing = Vec::new();
        let mut destinations = Vec::new();
        if conn.export.events || conn.merged_ids_destination.is_none() {
            destinations.push(&conn.destination);
        }
        if let Some(merged) = conn.merged_ids_destination.as_ref().filter(|_| conn.export.merged_ids) {
            destinations.push(merged);
        }
        for dest in destinations {
            let report = self.prober.probe(dest, &conn.project_id).await;
            if !report.all_passed() {
                still_failing.push(format!("{}: {}", report.destination, report.missing().join(", ")));
            }
        }
        if still_failing.is_empty() {
            tracing::info!(connection = %conn.id, outcome = "probe_passed", "the destination passes its probe again; exporting the owed hours");
            return Ok(None);
        }
        let message = format!(
            "the destination still fails its probe ({}); the owed hours wait and are exported by the first hourly run whose probe passes",
            still_failing.join("; ")
        );
        if let Some(status) = &self.status {
            status.mark_failing(&conn.id, episode.since, &message, true).await?;
        }
        tracing::warn!(connection = %conn.id, outcome = "deferred", hours_waiting, still_failing = %still_failing.join("; "), "destination still inaccessible; probed once, exported nothing");
        Ok(Some(Deferred { still_failing, hours_waiting }))
    }

    /// Opens the failing episode (create-only) and, if this call opened it, probes the
    /// destination and sends the email.
    async fn notify_once(&self, conn: &Connection, req: &HourRequest, err: &ExportError, now: DateTime<Utc>) -> Result<Option<String>> {
        let key = episode_key(&conn.id);
        let mut episode = Episode {
            since: now,
            first_hour: req.hour,
            last_error: err.to_string(),
            emailed_at: None,
            message_id: None,
            missing: err.missing_permission().map(|p| vec![p.to_string()]).unwrap_or_default(),
            emailed: Vec::new(),
            refused: Vec::new(),
            failure_webhook: None,
        };
        match self.control.put_if_absent(&key, to_json(&episode)?).await? {
            CreateOutcome::Created => {}
            CreateOutcome::AlreadyExists => {
                let Some(existing) = self.episode(&conn.id).await? else {
                    // Closed by a success in between: the destination works again.
                    return Ok(None);
                };
                let stale = existing.emailed_at.is_none() && now - existing.since > Duration::minutes(STALE_CLAIM_MINUTES);
                if !stale {
                    if let Some(status) = &self.status {
                        status.mark_failing(&conn.id, existing.since, &err.to_string(), existing.emailed_at.is_some()).await?;
                    }
                    tracing::info!(connection = %conn.id, hour = %req.hour, attempt = req.attempt, outcome = "failing", "last attempt failed; the episode's email is already sent");
                    return Ok(None);
                }
                episode.since = existing.since;
                episode.first_hour = existing.first_hour;
            }
        }
        if let Some(status) = &self.status {
            status.mark_failing(&conn.id, episode.since, &err.to_string(), false).await?;
        }

        let dest = failing_destination(conn, err);
        let report = self.prober.probe(dest, &conn.project_id).await;
        let hours = self.failing_hours(&conn.id).await?;
        let notice = build_notice(conn, dest, report, &hours, err);
        let email = compose_failure_email(&notice);
        // Every recipient the mail service accepts gets it, even when it refuses another.
        let sent = deliver(self.mailer.as_ref(), &email).await.and_then(|d| {
            if d.reached_anyone() {
                Ok(d)
            } else {
                // Nobody has it: a failure, handled like one the service could not be reached for.
                Err(ExportError::Internal(format!(
                    "the failure email of connection {} was refused for every recipient: {}; fix the addresses (or, in the SES sandbox, verify them)",
                    conn.id,
                    d.refused_summary()
                )))
            }
        });
        let delivery = match sent {
            Ok(d) => d,
            Err(e) => {
                // Give the claim back so the redelivered event (Lambda retries a failed
                // async invocation) can send it; otherwise the email would be lost.
                let _ = self.control.delete(&key).await;
                return Err(e);
            }
        };
        let message_id = delivery.message_ids();
        episode.emailed_at = Some(self.now());
        episode.message_id = Some(message_id.clone());
        episode.missing = notice.missing();
        episode.emailed = delivery.reached();
        episode.refused = delivery.refused.clone();
        self.control.put(&key, to_json(&episode)?).await?;
        if let Some(outcome) = self.post_failure_webhook(conn, &notice).await {
            episode.failure_webhook = Some(outcome);
            self.control.put(&key, to_json(&episode)?).await?;
        }
        if let Some(status) = &self.status {
            status.mark_failing(&conn.id, episode.since, &err.to_string(), true).await?;
        }
        if !delivery.refused.is_empty() {
            tracing::warn!(
                connection = %conn.id, outcome = "recipients_refused", refused = %delivery.refused_summary(),
                "the failure email could not be sent to some recipients; the others got it"
            );
        }
        tracing::warn!(
            connection = %conn.id, hour = %req.hour, attempt = req.attempt, outcome = "failing_notified",
            missing = %episode.missing.join(","), recipients = episode.emailed.len(), refused = delivery.refused.len(), "destination inaccessible; admins emailed"
        );
        Ok(Some(message_id))
    }
}

impl FailureHandler {
    /// Posts the notice to the connection's failure webhook, if it has one: bounded in
    /// time, never raised. The URL is a credential: no log line or error names it.
    async fn post_failure_webhook(&self, conn: &Connection, notice: &FailureNotice) -> Option<ChannelOutcome> {
        let (url, poster) = (conn.failure_webhook.as_ref()?, self.webhooks.as_ref()?);
        let body = serde_json::to_vec(&serde_json::json!({ "text": compose_failure_text(notice) })).expect("notice serialises");
        let label = format!("failure webhook of connection {}", conn.id);
        let post = WebhookPost { label: &label, url: url.expose(), body: &body, signing_secret: None, event_id: None };
        let outcome = post_with_backoff(poster.as_ref(), post, Backoff::WEBHOOK).await;
        if outcome.delivered {
            tracing::info!(connection = %conn.id, attempts = outcome.attempts, "failure notice posted to the failure webhook");
        } else {
            tracing::warn!(connection = %conn.id, attempts = outcome.attempts, error = outcome.error.as_deref().unwrap_or(""), "failure notice not posted to the failure webhook (the email went out)");
        }
        Some(outcome)
    }
}

/// The destination the error is about: the merged-IDs destination when the error names
/// its bucket or container, else the events destination.
pub fn failing_destination<'a>(conn: &'a Connection, err: &ExportError) -> &'a Destination {
    if let Some(m) = &conn.merged_ids_destination {
        let text = err.to_string();
        let name = match m {
            Destination::S3 { bucket, .. } => bucket.as_str(),
            Destination::Azure { container, .. } => container.as_str(),
            Destination::Local { path, .. } => path.as_str(),
        };
        if !conn.export.events || (text.contains(name) && !text.contains(&conn.destination.describe())) {
            return m;
        }
    }
    &conn.destination
}

/// The refused identity: from the error, else the probe report.
fn refused_principal(err: &ExportError, report: &ProbeReport) -> Option<String> {
    match err {
        ExportError::PermissionDenied { principal: Some(p), .. } => Some(p.clone()),
        _ => report.principal.clone(),
    }
}

/// The notice for the email: probes, failing hours, principal and the fixing policy.
pub fn build_notice(conn: &Connection, dest: &Destination, report: ProbeReport, hours: &[HourFailure], err: &ExportError) -> FailureNotice {
    let principal = refused_principal(err, &report);
    let mut notice = FailureNotice {
        connection_id: conn.id.clone(),
        project_id: conn.project_id.clone(),
        recipients: conn.recipients(),
        failing_hours: hours.iter().take(MAX_LISTED_HOURS).map(|h| FailedHour { hour: h.hour, attempts: h.attempts, error: h.error.clone() }).collect(),
        run_missing_permission: err.missing_permission().map(str::to_string),
        principal,
        report,
        fixes: Vec::new(),
    };
    notice.fixes = crate::access::policy::fixes_for(dest, notice.principal.as_deref(), &notice.missing());
    notice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory::MemoryStore;
    use crate::model::email::Email;
    use crate::model::hour_request::ExportMode;
    use crate::model::hour_request::PlannedRetry;
    use crate::model::probe_report::ProbeResult;
    use crate::ports::SendOutcome;
    use async_trait::async_trait;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Sched(Mutex<Vec<PlannedRetry>>);
    #[async_trait]
    impl RetryScheduler for Sched {
        async fn schedule_retry(&self, r: &PlannedRetry) -> Result<CreateOutcome> {
            let mut v = self.0.lock().unwrap();
            if v.iter().any(|x| x.id == r.id) {
                return Ok(CreateOutcome::AlreadyExists);
            }
            v.push(r.clone());
            Ok(CreateOutcome::Created)
        }
    }
    /// Records what it accepts; refuses, like SES, a whole message naming a refused address.
    #[derive(Debug, Default)]
    struct Mail(Mutex<Vec<Email>>, Mutex<Vec<String>>);
    #[async_trait]
    impl Mailer for Mail {
        async fn send(&self, e: &Email) -> Result<SendOutcome> {
            if let Some(bad) = e.to.iter().find(|a| self.1.lock().unwrap().contains(a)) {
                return Ok(SendOutcome::Refused { reason: format!("MessageRejected: Email address is not verified: {bad}") });
            }
            let mut v = self.0.lock().unwrap();
            v.push(e.clone());
            Ok(SendOutcome::Accepted { message_id: format!("m{}", v.len()) })
        }
    }
    struct Probe;
    #[async_trait]
    impl DestinationProber for Probe {
        async fn admit(&self, _d: &Destination) -> Result<()> {
            Ok(())
        }

        async fn admit_webhook(&self, _field: &str, _url: &str) -> Result<()> {
            Ok(())
        }

        async fn probe(&self, d: &Destination, _project_id: &str) -> ProbeReport {
            ProbeReport {
                destination: d.describe(),
                principal: Some("arn:aws:iam::123456789012:role/event-export-project-187520".into()),
                results: vec![ProbeResult::pass("list", "s3:ListBucket"), ProbeResult::fail("put probe object", "s3:PutObject", &denied())],
            }
        }
    }

    fn denied() -> ExportError {
        ExportError::PermissionDenied {
            operation: "PutObject".into(),
            resource: "dest/exports/x".into(),
            permission: "s3:PutObject".into(),
            principal: Some("arn:aws:sts::123456789012:assumed-role/event-export-project-187520/export-187520".into()),
            detail: "AccessDenied".into(),
        }
    }

    fn conn() -> Connection {
        Connection::from_json(
            r#"{"id":"c1","org_id":"42","project_id":"187520","destination":{"type":"s3","bucket":"dest","prefix":"exports","region":"us-east-1"},
                "admins":["admin@example.com"],"creator":"creator@example.com"}"#,
        )
        .unwrap()
    }

    fn handler(clock: Arc<Mutex<DateTime<Utc>>>) -> (FailureHandler, Arc<Sched>, Arc<Mail>) {
        let sched = Arc::new(Sched::default());
        let mail = Arc::new(Mail::default());
        let c = clock.clone();
        let h = FailureHandler {
            control: Arc::new(MemoryStore::new("control")),
            retries: sched.clone(),
            mailer: mail.clone(),
            prober: Arc::new(Probe),
            status: None,
            webhooks: None,
            policy: RetryPolicy::default(),
            clock: Arc::new(move || *c.lock().unwrap()),
        };
        (h, sched, mail)
    }

    #[tokio::test]
    async fn retries_then_one_email_for_many_hours_then_recovery() {
        let clock = Arc::new(Mutex::new(DateTime::parse_from_rfc3339("2020-01-25T18:10:00Z").unwrap().with_timezone(&Utc)));
        let (h, sched, mail) = handler(clock.clone());
        let c = conn();
        let hours = [UtcHour::parse("2020-01-25T17").unwrap(), UtcHour::parse("2020-01-25T18").unwrap()];
        for hour in hours {
            for attempt in 1..=4 {
                let req = HourRequest::new("c1", hour, ExportMode::Recurring, attempt);
                let after = h.on_failure(&c, &req, &denied()).await.unwrap();
                assert!(matches!(after, AfterFailure::RetryScheduled { attempt: a, created: true, .. } if a == attempt + 1), "{after:?}");
                // Redelivery of the same failure plans nothing new.
                let again = h.on_failure(&c, &req, &denied()).await.unwrap();
                assert!(matches!(again, AfterFailure::RetryScheduled { created: false, .. }));
            }
        }
        assert_eq!(sched.0.lock().unwrap().len(), 8);
        let last_a = HourRequest::new("c1", hours[0], ExportMode::Recurring, 5);
        let last_b = HourRequest::new("c1", hours[1], ExportMode::Recurring, 5);
        let a = h.on_failure(&c, &last_a, &denied()).await.unwrap();
        assert_eq!(a, AfterFailure::GaveUp { accessibility: true, email: Some("m1".into()) });
        let b = h.on_failure(&c, &last_b, &denied()).await.unwrap();
        assert_eq!(b, AfterFailure::GaveUp { accessibility: true, email: None }, "one email per episode");
        let again = h.on_failure(&c, &last_a, &denied()).await.unwrap();
        assert_eq!(again, AfterFailure::GaveUp { accessibility: true, email: None });
        let mails = mail.0.lock().unwrap().clone();
        assert_eq!(mails.len(), 1);
        assert!(mails[0].subject.contains("s3:PutObject"));
        assert!(mails[0].text.contains("arn:aws:iam::123456789012:role/event-export-project-187520"), "{}", mails[0].text);
        assert!(mails[0].text.contains("\"s3:PutObject\""), "the fixing statement is in the body");
        assert_eq!(mails[0].to, vec!["admin@example.com", "creator@example.com"]);
        let ep = h.episode("c1").await.unwrap().unwrap();
        assert_eq!(ep.message_id.as_deref(), Some("m1"));
        assert_eq!(ep.missing, vec!["s3:PutObject".to_string()]);

        // Recovery clears the state; a new breakage is a new episode with its own email.
        assert!(h.on_success(&c, &last_a).await.unwrap());
        assert!(h.episode("c1").await.unwrap().is_none());
        assert!(!h.on_success(&c, &last_a).await.unwrap(), "second success changes nothing");
        // The run that exported hour a completed it in the ledger; hour b stays owed.
        h.ledger().complete("c1", &crate::export::manifest::Manifest::empty(&c.export_spec().unwrap(), hours[0])).await.unwrap();
        assert_eq!(h.failing_hours("c1").await.unwrap().iter().map(|f| f.hour).collect::<Vec<_>>(), vec![hours[1]]);
        let c2 = h.on_failure(&c, &last_b, &denied()).await.unwrap();
        assert_eq!(c2, AfterFailure::GaveUp { accessibility: true, email: Some("m2".into()) });
    }

    #[tokio::test]
    async fn invalid_errors_are_not_retried_and_others_do_not_email() {
        let clock = Arc::new(Mutex::new(Utc::now()));
        let (h, sched, mail) = handler(clock);
        let c = conn();
        let hour = UtcHour::parse("2020-01-25T17").unwrap();
        let bad = ExportError::invalid_config("filter", "broken", "fix it");
        assert_eq!(h.on_failure(&c, &HourRequest::new("c1", hour, ExportMode::Recurring, 1), &bad).await.unwrap(), AfterFailure::NotRetryable);
        let flaky = ExportError::transient("PutObject", "503");
        assert_eq!(
            h.on_failure(&c, &HourRequest::new("c1", hour, ExportMode::Recurring, 5), &flaky).await.unwrap(),
            AfterFailure::GaveUp { accessibility: false, email: None }
        );
        assert!(sched.0.lock().unwrap().is_empty());
        assert!(mail.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_recipient_does_not_cost_the_others_their_email() {
        let clock = Arc::new(Mutex::new(DateTime::parse_from_rfc3339("2020-01-25T18:10:00Z").unwrap().with_timezone(&Utc)));
        let (h, _sched, mail) = handler(clock);
        let mut c = conn();
        c.admins = vec!["admin@example.com".into(), "bounced@example.com".into()];
        mail.1.lock().unwrap().push("bounced@example.com".into());
        let last = HourRequest::new("c1", UtcHour::parse("2020-01-25T17").unwrap(), ExportMode::Recurring, 5);

        let after = h.on_failure(&c, &last, &denied()).await.unwrap();
        assert_eq!(after, AfterFailure::GaveUp { accessibility: true, email: Some("m1, m2".into()) });
        let mails = mail.0.lock().unwrap().clone();
        assert_eq!(
            mails.iter().map(|m| m.to.clone()).collect::<Vec<_>>(),
            vec![vec!["admin@example.com".to_string()], vec!["creator@example.com".to_string()]]
        );
        assert!(mails.iter().all(|m| m.subject.contains("s3:PutObject")), "each gets the whole notice");
        let ep = h.episode("c1").await.unwrap().expect("the episode is open and marked sent");
        assert!(ep.emailed_at.is_some());
        assert_eq!(ep.emailed, vec!["admin@example.com", "creator@example.com"]);
        assert_eq!(ep.refused.len(), 1);
        assert_eq!(ep.refused[0].address, "bounced@example.com");
        assert!(ep.refused[0].reason.contains("not verified"), "{:?}", ep.refused);
        // One email per episode still: a redelivery sends nothing more.
        assert_eq!(h.on_failure(&c, &last, &denied()).await.unwrap(), AfterFailure::GaveUp { accessibility: true, email: None });
        assert_eq!(mail.0.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_email_refused_for_every_recipient_is_a_failure_and_the_next_delivery_sends_it() {
        let clock = Arc::new(Mutex::new(DateTime::parse_from_rfc3339("2020-01-25T18:10:00Z").unwrap().with_timezone(&Utc)));
        let (h, _sched, mail) = handler(clock);
        let c = conn();
        mail.1.lock().unwrap().extend(["admin@example.com".to_string(), "creator@example.com".to_string()]);
        let last = HourRequest::new("c1", UtcHour::parse("2020-01-25T17").unwrap(), ExportMode::Recurring, 5);

        let err = h.on_failure(&c, &last, &denied()).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("refused for every recipient") && text.contains("admin@example.com (") && text.contains("creator@example.com ("), "{text}");
        assert!(err.is_retryable(), "the caller fails and the event is delivered again, as for an unreachable service");
        assert!(h.episode("c1").await.unwrap().is_none(), "the claim is given back so the redelivery can send");
        assert!(mail.0.lock().unwrap().is_empty());

        // The addresses are fixed (verified): the redelivered event sends it, once, to both.
        mail.1.lock().unwrap().clear();
        assert_eq!(h.on_failure(&c, &last, &denied()).await.unwrap(), AfterFailure::GaveUp { accessibility: true, email: Some("m1".into()) });
        assert_eq!(mail.0.lock().unwrap()[0].to, vec!["admin@example.com", "creator@example.com"], "one message to all when none is refused");
        assert!(h.episode("c1").await.unwrap().unwrap().refused.is_empty());
    }
}
