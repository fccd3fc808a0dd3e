//! Running hours: each under its lease, recorded in the hour ledger and the run records.
//! Scheduled runs derive their hours from the schedule's time, never the wall clock: every
//! settled hour up to it is registered as owed, and every owed hour that no retry schedule
//! is about to take is exported, oldest first, together with recent hours that received
//! late lake files.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use chrono::Duration;

use crate::control::connection::Connection;
use crate::control::fenced_store::FencedStore;
use crate::control::freshness::{self, HourFreshness};
use crate::control::hour_event::{Announcement, HourAnnouncer};
use crate::control::ledger::{new_run_id, HourLedger, Lease, LeaseOutcome, OwedHour, OwedState};
use crate::control::metrics::MetricsOut;
use crate::control::run_api::{HourRunner, HourSummary};
use crate::control::run_api::{HourlyPlan, ScheduledRunner, StoppedRun};
use crate::control::store::{ControlStore, Gap, RunOutcome, RunRecord};
use crate::error::{ExportError, Result};
use crate::export::hour_export::{export_hour_with, marker_location, ExportOptions, ExportSettings, ExportTargets, HourReport, WriteGuard};
use crate::hour::{HourRange, UtcHour};
use crate::model::clock::Clock;
use crate::model::hour_event::HourExported;
use crate::model::hour_request::ExportMode;
use crate::model::hour_request::HourRequest;
use crate::ports::{DestinationOpener, ObjectStore};

/// Invalid records a run record locates (file and line); the manifest lists more.
pub const MAX_LOCATED_INVALID: usize = 20;

/// How far back a scheduled run registers hours by itself; older gaps need a backfill.
pub const MAX_CATCH_UP_HOURS: i64 = 24;

/// How the runs of a process treat time: settle delay, leases, catch-up and late data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    /// An hour is exportable once it has ended plus this (the ingestion tier's buffering:
    /// Firehose holds records up to 900 s).
    pub settle: Duration,
    /// A lease's lifetime; must exceed the function timeout.
    pub lease: Duration,
    /// Hours a scheduled run registers behind its target (older: reported gap).
    pub catch_up_hours: i64,
    /// Completed hours a scheduled run checks for late lake files.
    pub late_window_hours: i64,
    /// Days behind the late window that the daily sweep checks for late lake files: each
    /// scheduled run checks the hours 24, 48, ... this many days behind its own hour, so
    /// every hour of the range is checked once a day (set it to the lake's retention).
    pub late_sweep_days: i64,
    /// A run starts no new hour with less than this time left before its deadline.
    pub reserve: Duration,
    /// An hour's marker is due this long after the hour ends (see `control::freshness`).
    pub freshness_slo: Duration,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy {
            settle: Duration::minutes(DEFAULT_SETTLE_MINUTES),
            lease: Duration::minutes(crate::control::ledger::DEFAULT_LEASE_MINUTES),
            catch_up_hours: MAX_CATCH_UP_HOURS,
            late_window_hours: 24,
            late_sweep_days: DEFAULT_LATE_SWEEP_DAYS,
            reserve: Duration::seconds(120),
            freshness_slo: Duration::minutes(freshness::DEFAULT_FRESHNESS_SLO_MINUTES),
        }
    }
}

/// Default days of the late-file sweep: a lake retention of 30 days.
pub const DEFAULT_LATE_SWEEP_DAYS: i64 = 30;

/// An owed hour counts as behind once it is this long past its settle time: the hourly
/// schedule fires a few minutes past the hour.
pub const BEHIND_GRACE_MINUTES: i64 = 15;

/// Default settle delay: a Firehose buffer of 900 s plus a minute of delivery.
pub const DEFAULT_SETTLE_MINUTES: i64 = 16;

impl RunPolicy {
    /// When `hour` may be exported.
    pub fn ready_at(&self, hour: UtcHour) -> DateTime<Utc> {
        hour.end() + self.settle
    }

    /// The latest hour exportable at `t`.
    pub fn latest_ready(&self, t: DateTime<Utc>) -> Result<UtcHour> {
        Ok(UtcHour::containing(t - self.settle)?.prev())
    }

    /// Refuses an hour that is open, in the future, or still settling.
    pub fn check_closed(&self, hour: UtcHour, now: DateTime<Utc>) -> Result<()> {
        let ready = self.ready_at(hour);
        if now < ready {
            return Err(ExportError::invalid_input(
                format!("hour {hour}"),
                format!(
                    "is not closed yet: it can be exported from {} (the end of the hour plus the settle delay of {} min that the ingestion tier's buffering needs); nothing was written",
                    ready.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    self.settle.num_minutes()
                ),
            ));
        }
        Ok(())
    }
}

/// The first hour a connection owes: the start of its creation day (UTC), as "events
/// ingested today and moving forward", or the earlier hour it took over from the connection
/// that stopped on its place (`owes_from`); `fallback` when it has neither.
pub fn first_owed_hour(conn: &Connection, fallback: UtcHour) -> UtcHour {
    let creation_day = conn
        .created
        .as_deref()
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .and_then(|t| t.with_timezone(&Utc).date_naive().and_hms_opt(0, 0, 0))
        .and_then(|t| UtcHour::containing(t.and_utc()).ok());
    match (conn.owes_from, creation_day) {
        (Some(from), Some(day)) => from.min(day),
        (from, day) => from.or(day).unwrap_or(fallback),
    }
}

/// One hour a scheduled run will take on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedHour {
    pub request: HourRequest,
    pub owed: Option<OwedHour>,
}

/// Exports hours for connections and records every run in the control store.
#[derive(Clone)]
pub struct RunService {
    pub control: ControlStore,
    pub ledger: HourLedger,
    pub lake: Arc<dyn ObjectStore>,
    pub destinations: Arc<dyn DestinationOpener>,
    pub settings: ExportSettings,
    pub clock: Clock,
    pub policy: RunPolicy,
    /// Publishes each completed hour's "Hour Exported" event.
    pub announcer: HourAnnouncer,
    /// Where each run's figures go (CloudWatch EMF log lines in the functions); `None`:
    /// the run record is the only account.
    pub metrics: Option<MetricsOut>,
}

impl std::fmt::Debug for RunService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunService")
            .field("lake", &self.lake)
            .field("settings", &self.settings)
            .field("policy", &self.policy)
            .field("announcer", &self.announcer)
            .finish()
    }
}

/// What a run under the lease did: the export's report and what became of the hour's event.
struct LeasedRun {
    report: HourReport,
    announcement: Option<Announcement>,
    /// Measured when this run completed the hour for the first time.
    freshness: Option<HourFreshness>,
}

/// The run's lease, checked (and renewed) before every write to the destination.
struct LeaseGuard {
    ledger: HourLedger,
    connection_id: String,
    lease: tokio::sync::Mutex<Lease>,
    ttl: Duration,
    clock: Clock,
}

#[async_trait]
impl WriteGuard for LeaseGuard {
    async fn check(&self) -> Result<()> {
        let mut lease = self.lease.lock().await;
        if self.ledger.renew(&self.connection_id, &mut lease, (self.clock)(), self.ttl).await? {
            return Ok(());
        }
        Err(ExportError::transient(
            format!("export of {}", lease.hour),
            format!(
                "this run's lease (run {}) ran out before it finished (another run may hold the hour now); it stopped writing and the hour stays owed",
                lease.run_id
            ),
        ))
    }
}

impl RunService {
    pub async fn targets(&self, conn: &Connection) -> Result<ExportTargets> {
        let events = self.destinations.open(&conn.destination, &conn.project_id).await?;
        let merged_ids = match &conn.merged_ids_destination {
            Some(d) => self.destinations.open(d, &conn.project_id).await?,
            None => events.clone(),
        };
        Ok(ExportTargets { lake: self.lake.clone(), events, merged_ids })
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Exports one hour as the only writer of it and records the run; the export's error is
    /// returned after it is recorded. Refused before anything is written: an hour that is
    /// not closed, and an hour another run is exporting.
    pub async fn run(&self, conn: &Connection, req: &HourRequest) -> Result<HourReport> {
        let hour = req.hour;
        let started = self.now();
        self.policy.check_closed(hour, started)?;
        let run_id = new_run_id();
        let lease = match self.ledger.acquire(&conn.id, hour, &run_id, started, self.policy.lease).await? {
            LeaseOutcome::Acquired(l) => l,
            LeaseOutcome::Busy(l) => {
                return Err(ExportError::HourBusy {
                    hour: hour.to_string(),
                    run_id: l.run_id,
                    since: l.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    until: l.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })
            }
        };
        // One owner per key space: a connection whose folders are an older one's fails here, writing nothing.
        let result = match crate::control::key_space::plan_run(&self.control, conn).await {
            Ok(key_space) => self.run_leased(conn, req, &lease, key_space).await,
            Err(e) => Err(e),
        };
        let released = self.ledger.release(&conn.id, &lease, self.now()).await;
        let result = self.record(conn, req, &run_id, started, result).await;
        released?;
        result.map(|r| r.report)
    }

    async fn run_leased(&self, conn: &Connection, req: &HourRequest, lease: &Lease, key_space: crate::control::key_space::KeySpacePlan) -> Result<LeasedRun> {
        let hour = req.hour;
        let completed = self.ledger.complete_manifest(&conn.id, hour).await?;
        let was_owed = self.ledger.owed_hour(&conn.id, hour).await?;
        // What this run really does: an hour still owed is exported as it is owed (a late
        // request never downgrades a pending replace), and late data needs an exported hour.
        let mode = match (req.mode, &was_owed, &completed) {
            (ExportMode::Late, Some(owed), _) if owed.mode != ExportMode::Late => owed.mode,
            // A replace that died (its marker may be gone, its parts half rewritten) is
            // finished as a replace, whoever asks for the hour next.
            (ExportMode::Recurring, Some(owed), _) if owed.mode == ExportMode::Replace && owed.event_pending.is_none() => ExportMode::Replace,
            (ExportMode::Late, None, None) => ExportMode::Recurring,
            (mode, _, _) => mode,
        };
        // The mode of the export that wrote the marker, for an event published by a later run.
        let owed_event_mode = was_owed.as_ref().map(|o| o.event_pending.unwrap_or(o.mode));
        if mode == ExportMode::Recurring {
            if let Some(manifest) = completed {
                let report = HourReport { hour, skipped: true, manifest: Some(manifest.clone()), late: None, late_merged_ids: None, table_upkeep: Vec::new() };
                // Done already. Still owed: an interrupted bookkeeping step, or an event the
                // bus did not take; publish (same id as before) and take the hour off.
                let Some(owed) = was_owed else {
                    return Ok(LeasedRun { report, announcement: None, freshness: None });
                };
                let announcement = self.announce_and_complete(conn, &manifest, owed_event_mode.unwrap_or(mode), owed).await?;
                return Ok(LeasedRun { report, announcement: Some(announcement), freshness: None });
            }
        }
        // Owed from now until its marker is written, whatever happens to this run.
        let restorable = was_owed.is_none() && completed.is_some();
        // An exported hour whose event still waits: a refused export leaves it just so.
        let waiting_event = was_owed.clone().filter(|o| o.event_pending.is_some() && completed.is_some());
        let mut owed = was_owed.unwrap_or_else(|| OwedHour::pending(hour, mode));
        owed.state = OwedState::Exporting;
        owed.run_id = Some(lease.run_id.clone());
        owed.exporting_since = Some(lease.since);
        owed.parked = false;
        if owed.mode != ExportMode::Replace {
            owed.mode = mode;
        }
        owed.allow_empty_lake |= req.allow_empty_lake;
        self.ledger.save_owed(&conn.id, &owed).await?;

        let guard: Arc<dyn WriteGuard> = Arc::new(LeaseGuard {
            ledger: self.ledger.clone(),
            connection_id: conn.id.clone(),
            lease: tokio::sync::Mutex::new(lease.clone()),
            ttl: self.policy.lease,
            clock: self.clock.clone(),
        });
        let options = ExportOptions { allow_empty_lake: req.allow_empty_lake, guard: Some(guard.clone()), merged_ids_owner: key_space.merged_ids_owner };
        let mut targets = self.targets(conn).await?;
        // Every write to the destination is fenced by the lease, not only the final ones.
        targets.events = FencedStore::wrap(targets.events, guard.clone());
        targets.merged_ids = FencedStore::wrap(targets.merged_ids, guard);
        let spec = conn.export_spec()?;
        let report = match export_hour_with(&spec, &targets, hour, mode, &self.settings, &options, completed.clone()).await {
            Ok(report) => report,
            // Refused before anything was written (an empty lake under a replace, an hour
            // over the limits): a complete hour whose marker is still in place stays complete.
            Err(e) if (restorable || waiting_event.is_some()) && !e.is_retryable() => {
                let (marker_store, marker_key) = marker_location(&spec, &targets, hour);
                if let (Some(m), true) = (&completed, !conn.complete_markers || marker_store.head(&marker_key).await?.is_some()) {
                    match waiting_event {
                        Some(waiting) => self.ledger.save_owed(&conn.id, &waiting).await?,
                        None => self.ledger.complete(&conn.id, m).await?,
                    }
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let Some(manifest) = report.manifest.clone() else {
            // Skipped on a marker whose manifest is unreadable: the marker still says done,
            // but there is nothing to announce.
            tracing::warn!(connection = %conn.id, hour = %hour, "the hour's marker is unreadable; no Hour Exported event is published for it");
            self.ledger.complete(&conn.id, &crate::export::manifest::Manifest::empty(&conn.export_spec()?, hour)).await?;
            return Ok(LeasedRun { report, announcement: None, freshness: None });
        };
        // Announced: every hour this run wrote, and an hour whose marker this run found while
        // the ledger did not know it complete (its writer may have died before publishing).
        // A late run that found nothing new, on an hour not owed, announces nothing.
        if report.skipped && restorable {
            self.ledger.complete(&conn.id, &manifest).await?;
            return Ok(LeasedRun { report, announcement: None, freshness: None });
        }
        let event_mode = if report.skipped { owed_event_mode.unwrap_or(mode) } else { mode };
        // The first marker of the hour: its freshness, kept once (a replace of an exported
        // hour, late parts and redeliveries measure nothing).
        let freshness = if !report.skipped && mode != ExportMode::Late && completed.is_none() {
            let f = HourFreshness::measure(conn, hour, self.now(), self.policy.freshness_slo);
            freshness::record(self.control.store().as_ref(), &conn.id, &f).await?;
            Some(f)
        } else {
            None
        };
        let announcement = self.announce_and_complete(conn, &manifest, event_mode, owed).await?;
        Ok(LeasedRun { report, announcement: Some(announcement), freshness })
    }

    /// Publishes the hour's event, after its marker and before the hour leaves the ledger:
    /// a run that dies in between leaves the hour owed, and the next run publishes again,
    /// with the same id. When the bus does not take it (after brief retries) the export
    /// stands, the ledger records the manifest, and the hour stays owed with its event
    /// pending, so the next run (finding the hour done) only publishes.
    async fn announce_and_complete(
        &self,
        conn: &Connection,
        manifest: &crate::export::manifest::Manifest,
        mode: ExportMode,
        mut owed: OwedHour,
    ) -> Result<Announcement> {
        let mut event = HourExported::from_manifest(conn, manifest, mode);
        // Every publication of the hour carries the freshness its first export measured.
        event.freshness_seconds = freshness::recorded(self.control.store().as_ref(), &conn.id, manifest.hour).await?.map(|f| f.freshness_seconds);
        let announcement = self.announcer.announce(conn, &event).await;
        if announcement.published() {
            self.ledger.complete(&conn.id, manifest).await?;
            return Ok(announcement);
        }
        self.ledger.record_manifest(&conn.id, manifest).await?;
        let error = announcement.bus.as_ref().and_then(|b| b.error.clone()).unwrap_or_default();
        owed.state = OwedState::Pending;
        owed.run_id = None;
        // Nothing is left to write: the next run finds the hour done and only publishes.
        owed.mode = ExportMode::Recurring;
        owed.allow_empty_lake = false;
        owed.event_pending = Some(mode);
        owed.error_kind = Some("EventNotPublished".into());
        owed.last_error =
            Some(format!("the hour is exported, but its Hour Exported event {} is not published yet (the next run publishes it): {error}", event.id));
        owed.blame = Some("internal".into());
        owed.next_retry = None;
        self.ledger.save_owed(&conn.id, &owed).await?;
        Ok(announcement)
    }

    /// Writes the run record and the status line of a finished run.
    async fn record(&self, conn: &Connection, req: &HourRequest, run_id: &str, started: DateTime<Utc>, result: Result<LeasedRun>) -> Result<LeasedRun> {
        let mut record = RunRecord::new(conn.id.clone(), req, started, self.now());
        record.run_id = Some(run_id.to_string());
        record.announcement = result.as_ref().ok().and_then(|r| r.announcement.clone());
        if let Some(f) = result.as_ref().ok().and_then(|r| r.freshness.as_ref()) {
            record.freshness_seconds = Some(f.freshness_seconds);
            record.slo_met = Some(f.met);
        }
        let (mut bytes_written, mut parts) = (0, 0);
        match result.as_ref().map(|r| &r.report) {
            Ok(report) if report.skipped => record.outcome = RunOutcome::Skipped,
            Ok(report) => {
                record.outcome = RunOutcome::Exported;
                if let Some(late) = &report.late {
                    record.late_lake_files = late.lake_inputs.iter().map(|i| i.key.clone()).collect();
                }
                record.table_upkeep_failures = report.table_upkeep.iter().filter_map(|u| u.error.as_ref().map(|e| format!("{}: {e}", u.table))).collect();
                let (events, merged) = match (&report.late, &report.manifest) {
                    (Some(late), _) => (Some(late), report.late_merged_ids.as_ref()),
                    (None, Some(m)) => (m.events.as_ref(), m.merged_ids.as_ref()),
                    (None, None) => (None, None),
                };
                for (data, acc) in [(events, &mut record.events), (merged, &mut record.merged_ids)] {
                    if let Some(d) = data {
                        *acc = d.accounting.clone();
                        record.files.extend(d.files.iter().map(|f| f.key.clone()));
                        bytes_written += d.files.iter().map(|f| f.bytes).sum::<u64>();
                        parts += d.files.len() as u64;
                        record.invalid_records += d.accounting.invalid;
                        let room = MAX_LOCATED_INVALID.saturating_sub(record.invalid_locations.len());
                        record.invalid_locations.extend(d.invalid_records.iter().take(room).cloned());
                    }
                }
            }
            Err(e) => {
                record.error_kind = Some(e.kind().to_string());
                record.error = Some(e.to_string());
            }
        }
        if let Some(out) = &self.metrics {
            out.sink.publish(&out.run_set(&record, bytes_written, parts));
            if let Err(e) = &result {
                out.sink.publish(&out.failure_set(&record, e.blame()));
            }
        }
        let bookkeeping = async {
            if record.outcome == RunOutcome::Skipped {
                // A redelivery that found the hour done must not hide the run that did it.
                self.control.put_run_if_absent(&record).await?;
            } else {
                self.control.put_run(&record).await?;
            }
            match &result {
                Ok(run) => {
                    let hour = req.hour;
                    self.control
                        .update_status(&conn.id, |s| {
                            s.last_exported_hour = Some(s.last_exported_hour.map_or(hour, |h| h.max(hour)));
                            for upkeep in &run.report.table_upkeep {
                                match &upkeep.error {
                                    Some(e) => s.table_upkeep_failures.insert(upkeep.table.clone(), e.clone()),
                                    None => s.table_upkeep_failures.remove(&upkeep.table),
                                };
                            }
                        })
                        .await?;
                }
                Err(e) => {
                    let message = e.to_string();
                    let blame = e.blame().to_string();
                    self.control
                        .update_status(&conn.id, |s| {
                            s.last_error = Some(message);
                            s.last_error_blame = Some(blame);
                        })
                        .await?;
                }
            }
            Ok::<_, ExportError>(())
        }
        .await;
        match (result, bookkeeping) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e.ours("control store")),
            (Ok(r), Ok(())) => Ok(r),
        }
    }

    /// The hours a schedule firing at `scheduled_time` takes on: registers owed hours up to
    /// the latest settled hour, counts the runs that died on an hour as failed attempts
    /// (each recorded as a run), finds late lake files (events and merges) in the late window
    /// and in the hours the daily sweep checks, and returns the owed hours due now (oldest
    /// first), the late hours and the dead runs.
    pub async fn plan_scheduled(&self, conn: &Connection, scheduled_time: DateTime<Utc>) -> Result<ScheduledPlan> {
        let now = self.now();
        if scheduled_time > now + Duration::minutes(5) {
            return Err(ExportError::invalid_input(
                format!("scheduled_time {}", scheduled_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                format!(
                    "is in the future (now is {}); a schedule fires at or before now, so nothing was exported",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        let target = self.policy.latest_ready(scheduled_time)?;
        let registration = self.ledger.register_through(&conn.id, first_owed_hour(conn, target), target, self.policy.catch_up_hours).await?;
        let gap =
            registration.gap.map(|range| Gap { range, backfill_command: format!("exportctl backfill {} --from {} --to {}", conn.id, range.from, range.to) });
        let mut stopped = Vec::new();
        for (owed, lease) in self.ledger.dead_runs(&conn.id, now, self.policy.lease).await? {
            let mut request = HourRequest::new(conn.id.clone(), owed.hour, owed.mode, owed.attempts + 1);
            request.allow_empty_lake = owed.allow_empty_lake;
            let error = ExportError::RunStopped {
                hour: owed.hour.to_string(),
                run_id: lease.run_id.clone(),
                since: lease.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                until: lease.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            self.record_stopped(conn, &request, &lease, &error).await?;
            stopped.push(StoppedRun { request, error });
        }
        let mut planned = Vec::new();
        let config = crate::control::ledger::connection_digest(conn);
        for owed in self.ledger.owed(&conn.id).await? {
            // A parked hour is tried again once the connection has changed since.
            let changed = owed.parked && owed.parked_config.as_deref() != Some(config.as_str());
            if owed.hour <= target && (owed.due_for_hourly_run(now) || changed) && !stopped.iter().any(|s: &StoppedRun| s.request.hour == owed.hour) {
                let mut request = HourRequest::new(conn.id.clone(), owed.hour, owed.mode, owed.attempts + 1);
                request.allow_empty_lake = owed.allow_empty_lake;
                planned.push(PlannedHour { request, owed: Some(owed) });
            }
        }
        let window_start = target.plus(1 - self.policy.late_window_hours.max(1));
        let mut checked: Vec<UtcHour> = HourRange::new(window_start, target)?.hours().collect();
        checked.extend((1..=self.policy.late_sweep_days.max(0)).map(|days| target.plus(-24 * days)).filter(|h| *h < window_start));
        for hour in checked {
            if planned.iter().any(|p| p.request.hour == hour) || stopped.iter().any(|s| s.request.hour == hour) {
                continue;
            }
            let Some(manifest) = self.ledger.complete_manifest(&conn.id, hour).await? else {
                continue;
            };
            let late = late_lake_files(self.lake.as_ref(), conn, &manifest).await?;
            if late.is_empty() {
                continue;
            }
            if hour < window_start {
                // Later than the window the contract promises: exported all the same, and our
                // operators learn that the ingestion tier delivers this late.
                tracing::warn!(
                    connection = %conn.id, hour = %hour, files = late.len(), first = %late[0], operator_alert = true,
                    "lake files landed more than {} hours after their hour; the sweep found them and they are exported as late parts",
                    self.policy.late_window_hours
                );
            }
            planned.push(PlannedHour { request: HourRequest::new(conn.id.clone(), hour, ExportMode::Late, 1), owed: None });
        }
        Ok(ScheduledPlan { hours: planned, stopped, gap })
    }

    /// Records the run that died on an hour as a failed attempt, under its own run id.
    async fn record_stopped(&self, conn: &Connection, req: &HourRequest, lease: &Lease, error: &ExportError) -> Result<()> {
        let mut record = RunRecord::new(conn.id.clone(), req, lease.since, lease.expires);
        record.run_id = Some(lease.run_id.clone());
        record.outcome = RunOutcome::Failed;
        record.error_kind = Some(error.kind().to_string());
        record.error = Some(error.to_string());
        self.control.put_run_if_absent(&record).await
    }

    /// Keeps the status's derived fields in step with the ledger: the watermark, and the gap
    /// (a new one from registration, or the old one less the hours completed since, so a
    /// filled gap disappears).
    pub async fn refresh_status(&self, conn: &Connection, gap: Option<Gap>) -> Result<()> {
        let watermark = self.ledger.watermark(&conn.id).await?;
        let gap = match gap {
            Some(gap) => Some(gap),
            None => match self.control.status(&conn.id).await?.gap {
                Some(old) => crate::control::health::remaining_gap(&self.ledger, &conn.id, old).await?,
                None => None,
            },
        };
        self.control
            .update_status(&conn.id, |s| {
                s.watermark = watermark;
                s.gap = gap;
            })
            .await
            .map(|_| ())
    }
}

/// The lake files of the manifest's hour, events and merges, that its export did not
/// consume (late data). Reports that do not list their inputs (older manifests) say nothing.
pub async fn late_lake_files(lake: &dyn ObjectStore, conn: &Connection, manifest: &crate::export::manifest::Manifest) -> Result<Vec<String>> {
    use crate::export::layout::{lake_events_prefix, lake_merges_prefix};
    let mut late = Vec::new();
    let kinds = [
        (conn.export.events, &manifest.events, lake_events_prefix(&conn.project_id, manifest.hour)),
        (conn.export.merged_ids, &manifest.merged_ids, lake_merges_prefix(&conn.org_id, manifest.hour)),
    ];
    for (wanted, report, prefix) in kinds {
        let Some(report) = report.as_ref().filter(|r| wanted && r.knows_its_inputs()) else {
            continue;
        };
        let files = crate::export::lake::list_hour_files(lake, &prefix).await.map_err(|e| e.ours("event lake"))?;
        late.extend(files.into_iter().filter(|f| !report.lake_inputs.iter().any(|i| i.key == f.key)).map(|f| f.key));
    }
    Ok(late)
}

fn summary(report: &HourReport) -> HourSummary {
    let data = report.late.as_ref().or(report.manifest.as_ref().and_then(|m| m.events.as_ref()));
    let events = if report.skipped { 0 } else { data.map(|e| e.accounting.exported).unwrap_or(0) };
    HourSummary { skipped: report.skipped, events_exported: events, late_parts: report.late.as_ref().map_or(0, |l| l.files.len() as u64) }
}

#[async_trait]
impl HourRunner for RunService {
    async fn run_hour(&self, conn: &Connection, req: &HourRequest) -> Result<HourSummary> {
        self.run(conn, req).await.map(|r| summary(&r))
    }

    fn check_ready(&self, range: HourRange) -> Result<()> {
        self.policy.check_closed(range.to, self.now())
    }
}

/// What a scheduled run takes on (see [`RunService::plan_scheduled`]).
#[derive(Debug)]
pub struct ScheduledPlan {
    pub hours: Vec<PlannedHour>,
    /// Runs that died on an hour since the last look: failed attempts to handle.
    pub stopped: Vec<StoppedRun>,
    pub gap: Option<Gap>,
}

#[async_trait]
impl ScheduledRunner for RunService {
    async fn plan(&self, conn: &Connection, scheduled_time: DateTime<Utc>) -> Result<HourlyPlan> {
        let plan = self.plan_scheduled(conn, scheduled_time).await?;
        self.refresh_status(conn, plan.gap).await?;
        Ok(HourlyPlan { requests: plan.hours.into_iter().map(|p| p.request).collect(), stopped: plan.stopped })
    }

    async fn finish(&self, conn: &Connection) -> Result<()> {
        self.refresh_status(conn, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn closed_hours_only() {
        let p = RunPolicy::default();
        let h17 = UtcHour::parse("2020-01-25T17").unwrap();
        assert_eq!(p.latest_ready(t("2020-01-25T18:20:00Z")).unwrap(), h17);
        assert_eq!(p.latest_ready(t("2020-01-25T18:10:00Z")).unwrap(), h17.prev(), "17 is still settling at 18:10");
        assert!(p.check_closed(h17, t("2020-01-25T18:16:00Z")).is_ok());
        let err = p.check_closed(h17, t("2020-01-25T17:30:00Z")).unwrap_err();
        assert!(err.to_string().contains("not closed yet") && err.to_string().contains("2020-01-25T18:16:00Z"), "{err}");
        assert!(!err.is_retryable());
    }
}
