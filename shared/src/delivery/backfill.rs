//! Backfills of any length: a long range is split and each piece handed to a further
//! asynchronous invocation ([`Invoker`]); a piece of at most `leaf_hours` exports its hours
//! in parallel in replace mode (so overlapping earlier exports never duplicates an event).
//!
//! Runaway recursion is impossible by construction and checked anyway: every piece is
//! strictly shorter than its parent, the depth travels in the payload, a range that would
//! need more than `max_depth` levels is refused up front, and a payload claiming a depth
//! beyond the limit is refused.
//!
//! Progress is kept in the control store under `backfills/{backfill_id}/`: the request
//! (`backfill.json`) and one record per piece (`pieces/...`, written by the invocation
//! that ran it); [`progress`] sums them. Records have deterministic keys and no clock
//! time, so a redelivered invocation rewrites its own records with the same bytes.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::control::connection::Connection;
use crate::control::run_api::HourRunner;
use crate::control::store::read_json;
use crate::delivery::failure::{AfterFailure, FailureHandler, HourResult};
use crate::delivery::retry::retry_id;
use crate::error::{ExportError, Result};
use crate::hour::{HourRange, UtcHour};
use crate::model::hour_request::ExportMode;
use crate::model::hour_request::{HourRequest, PlannedRetry};
use crate::ports::{CreateOutcome, Invoker, ObjectStore, RetryScheduler};

/// How a range is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// A piece this long or shorter is exported by the invocation that receives it.
    pub leaf_hours: u64,
    /// A longer piece is split into at most this many.
    pub fan_out: u64,
    /// Deepest allowed level of invocations (the first invocation is depth 0).
    pub max_depth: u32,
    /// Hours exported at the same time within a leaf.
    pub parallel: usize,
}

impl Default for FanOut {
    /// A day per leaf and ten pieces per split: a 30-day backfill is 1 + 10 + 30
    /// invocations, and five levels cover 2.4 million hours (273 years).
    fn default() -> Self {
        FanOut { leaf_hours: 24, fan_out: 10, max_depth: 5, parallel: 4 }
    }
}

impl FanOut {
    pub fn new(leaf_hours: u64, fan_out: u64, max_depth: u32, parallel: usize) -> Result<Self> {
        if leaf_hours == 0 || fan_out < 2 || parallel == 0 {
            return Err(ExportError::invalid_config(
                "backfill fan-out",
                format!("leaf_hours={leaf_hours}, fan_out={fan_out}, parallel={parallel}"),
                "Use leaf_hours >= 1, fan_out >= 2 and parallel >= 1.",
            ));
        }
        Ok(FanOut { leaf_hours, fan_out, max_depth, parallel })
    }

    /// The longest range that can be backfilled starting at `depth`.
    pub fn capacity(&self, depth: u32) -> u64 {
        let levels = self.max_depth.saturating_sub(depth);
        let mut cap = self.leaf_hours;
        for _ in 0..levels {
            cap = cap.saturating_mul(self.fan_out);
        }
        cap
    }

    /// What an invocation at `depth` does with `range`.
    pub fn plan(&self, range: HourRange, depth: u32) -> Result<Step> {
        if depth > self.max_depth {
            return Err(ExportError::invalid_input(
                "backfill depth",
                format!("{depth} exceeds the recursion limit {}; refusing to fan out further", self.max_depth),
            ));
        }
        if range.len() > self.capacity(depth) {
            return Err(ExportError::invalid_input(
                "backfill range",
                format!("{range} is {} hours; at most {} hours can be backfilled at once", range.len(), self.capacity(depth)),
            ));
        }
        if range.len() <= self.leaf_hours {
            return Ok(Step::Leaf(range));
        }
        let piece = self.leaf_hours.max(range.len().div_ceil(self.fan_out));
        Ok(Step::Split(range.split(piece)))
    }
}

/// The decision for one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Leaf(HourRange),
    Split(Vec<HourRange>),
}

/// The backfill function's payload: `{connection_id, from, to}` from users, plus `depth`
/// and `backfill_id` on the invocations it makes itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillRequest {
    pub connection_id: String,
    pub from: UtcHour,
    pub to: UtcHour,
    #[serde(default)]
    pub depth: u32,
    /// Names one backfill: its progress records, and the pieces already handed out (the
    /// same id again resumes it rather than starting pieces twice). Derived from the
    /// request when absent; `exportctl backfill` gives each run a fresh one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_id: Option<String>,
    /// Replace hours even where the lake hour is empty (the operator knows it is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty_lake: bool,
}

impl BackfillRequest {
    /// Reads a payload, naming exactly what is wrong with a bad one.
    pub fn from_payload(payload: &serde_json::Value) -> Result<Self> {
        let obj = payload.as_object().ok_or_else(|| ExportError::invalid_input("backfill payload", "expected a JSON object {connection_id, from, to}"))?;
        for key in obj.keys() {
            if !["connection_id", "from", "to", "depth", "backfill_id", "allow_empty_lake"].contains(&key.as_str()) {
                return Err(ExportError::invalid_input("backfill payload", format!("unknown field `{key}`; expected connection_id, from, to")));
            }
        }
        let text = |field: &str| -> Result<String> {
            match obj.get(field) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(_) => Err(ExportError::invalid_input(format!("backfill `{field}`"), "must be a non-empty string")),
                None => Err(ExportError::invalid_input("backfill payload", format!("missing `{field}`"))),
            }
        };
        let connection_id = text("connection_id")?;
        let from = UtcHour::parse(&text("from")?)?;
        let to = UtcHour::parse(&text("to")?)?;
        HourRange::new(from, to)?;
        let depth = match obj.get("depth") {
            None => 0,
            Some(v) => v
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| ExportError::invalid_input("backfill `depth`", "must be a small non-negative integer"))?,
        };
        let backfill_id = match obj.get("backfill_id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if is_valid_backfill_id(s) => Some(s.clone()),
            Some(_) => return Err(ExportError::invalid_input("backfill `backfill_id`", "must be 1-128 letters, digits, '-', '_' or '.'")),
        };
        let allow_empty_lake = match obj.get("allow_empty_lake") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(ExportError::invalid_input("backfill `allow_empty_lake`", "must be true or false")),
        };
        Ok(BackfillRequest { connection_id, from, to, depth, backfill_id, allow_empty_lake })
    }

    pub fn range(&self) -> Result<HourRange> {
        HourRange::new(self.from, self.to)
    }

    /// The id progress is recorded under: given, or `{connection}-{from}-{to}`.
    pub fn id(&self) -> String {
        self.backfill_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}-{}", self.connection_id, self.from.start().format("%Y%m%dT%H"), self.to.start().format("%Y%m%dT%H")))
    }

    fn child(&self, piece: HourRange) -> BackfillRequest {
        BackfillRequest {
            connection_id: self.connection_id.clone(),
            from: piece.from,
            to: piece.to,
            depth: self.depth + 1,
            backfill_id: Some(self.id()),
            allow_empty_lake: self.allow_empty_lake,
        }
    }
}

fn is_valid_backfill_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The request a backfill was started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillRecord {
    pub backfill_id: String,
    pub connection_id: String,
    pub from: UtcHour,
    pub to: UtcHour,
    pub hours: u64,
}

/// An hour another run held when the backfill reached it: a one-time schedule replaces it
/// once that run's lease has ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingHour {
    pub hour: UtcHour,
    /// When the replace runs (the holder's lease ends).
    pub until: DateTime<Utc>,
    pub schedule: String,
}

/// An hour that failed, and what happens to it next, in words an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedHour {
    pub hour: UtcHour,
    pub error_kind: String,
    pub error: String,
    pub next: String,
}

/// What one invocation did with its piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRecord {
    pub from: UtcHour,
    pub to: UtcHour,
    pub depth: u32,
    /// `split` (handed to `children` invocations), `leaf` (exported here) or `cancelled`
    /// (the backfill was cancelled before the piece started: none of its hours ran).
    pub kind: String,
    #[serde(default)]
    pub children: u32,
    pub hours: u64,
    #[serde(default)]
    pub exported: u64,
    #[serde(default)]
    pub events_exported: u64,
    /// Hours that failed here (their details and next step are in `failures`).
    #[serde(default)]
    pub failed: Vec<UtcHour>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<FailedHour>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<WaitingHour>,
    /// Hours not started because the backfill was cancelled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancelled: Vec<HourRange>,
}

/// The record of a cancel request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRecord {
    pub backfill_id: String,
    pub at: DateTime<Utc>,
}

/// Progress of a backfill, summed from its records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillProgress {
    pub backfill_id: String,
    /// Hours in the backfill (0 when the backfill is unknown).
    pub total_hours: u64,
    /// Hours whose fate is known: exported, waiting, failed or cancelled.
    pub done_hours: u64,
    pub exported_hours: u64,
    pub failed_hours: Vec<UtcHour>,
    pub failures: Vec<FailedHour>,
    pub waiting: Vec<WaitingHour>,
    /// Hours not exported because the backfill was cancelled, as merged ranges.
    pub cancelled: Vec<HourRange>,
    pub cancelled_hours: u64,
    /// When a cancel was requested, if it was.
    pub cancel_requested: Option<DateTime<Utc>>,
    pub events_exported: u64,
    /// Invocations that ran a piece, the first included.
    pub invocations: u64,
    /// Invocations made by the backfill itself (depth ≥ 1).
    pub async_invocations: u64,
}

impl BackfillProgress {
    pub fn is_finished(&self) -> bool {
        self.total_hours > 0 && self.done_hours >= self.total_hours
    }

    /// Hours no invocation has reported yet (still running, or queued).
    pub fn unreported_hours(&self) -> u64 {
        self.total_hours.saturating_sub(self.done_hours)
    }
}

pub fn backfill_key(backfill_id: &str) -> String {
    format!("backfills/{backfill_id}/backfill.json")
}

pub fn cancel_key(backfill_id: &str) -> String {
    format!("backfills/{backfill_id}/cancelled.json")
}

/// The claim that a piece was handed to an invocation (kept apart from the progress records).
pub fn handout_key(backfill_id: &str, piece: HourRange) -> String {
    format!("backfill-handouts/{backfill_id}/{}_{}.json", piece.from.start().format("%Y%m%dT%H"), piece.to.start().format("%Y%m%dT%H"))
}

pub fn piece_key(backfill_id: &str, piece: HourRange) -> String {
    format!("backfills/{backfill_id}/pieces/{}_{}.json", piece.from.start().format("%Y%m%dT%H"), piece.to.start().format("%Y%m%dT%H"))
}

fn json<T: Serialize>(v: &T) -> Result<Bytes> {
    serde_json::to_vec_pretty(v).map(Bytes::from).map_err(|e| ExportError::Internal(format!("backfill record: {e}")))
}

/// Consecutive hours as ranges (input sorted or not).
pub fn merge_ranges(mut ranges: Vec<HourRange>) -> Vec<HourRange> {
    ranges.sort_by_key(|r| r.from);
    let mut out: Vec<HourRange> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.from <= last.to.next() => last.to = last.to.max(r.to),
            _ => out.push(r),
        }
    }
    out
}

/// Reads a backfill's progress from the control store.
pub async fn progress(control: &dyn ObjectStore, backfill_id: &str) -> Result<BackfillProgress> {
    let mut p = BackfillProgress { backfill_id: backfill_id.to_string(), ..Default::default() };
    if let Some(r) = read_json::<BackfillRecord>(control, &backfill_key(backfill_id)).await? {
        p.total_hours = r.hours;
    }
    p.cancel_requested = read_json::<CancelRecord>(control, &cancel_key(backfill_id)).await?.map(|c| c.at);
    let mut cancelled = Vec::new();
    for meta in control.list(&format!("backfills/{backfill_id}/pieces/")).await? {
        let Some(piece) = read_json::<PieceRecord>(control, &meta.key).await? else {
            continue;
        };
        p.invocations += 1;
        if piece.depth > 0 {
            p.async_invocations += 1;
        }
        if piece.kind == "leaf" || piece.kind == "cancelled" {
            p.done_hours += piece.hours;
            p.exported_hours += piece.exported;
            p.events_exported += piece.events_exported;
            p.failed_hours.extend(piece.failed);
            p.failures.extend(piece.failures);
            p.waiting.extend(piece.waiting);
            cancelled.extend(piece.cancelled);
        }
    }
    p.failed_hours.sort();
    p.failures.sort_by_key(|f| f.hour);
    p.waiting.sort_by_key(|w| w.hour);
    p.cancelled = merge_ranges(cancelled);
    p.cancelled_hours = p.cancelled.iter().map(|r| r.len()).sum();
    Ok(p)
}

/// Asks a backfill to stop: every piece and hour not started yet is skipped (and recorded as
/// cancelled); what was exported stays. Asking twice keeps the first request's time.
pub async fn cancel(control: &dyn ObjectStore, backfill_id: &str, at: DateTime<Utc>) -> Result<BackfillProgress> {
    if !is_valid_backfill_id(backfill_id) {
        return Err(ExportError::invalid_input("backfill id", format!("{backfill_id:?} is not a backfill id (1-128 letters, digits, '-', '_' or '.')")));
    }
    if control.head(&backfill_key(backfill_id)).await?.is_none() {
        return Err(ExportError::NotFound { what: format!("backfill {backfill_id} (its id is printed when it starts)") });
    }
    control.put_if_absent(&cancel_key(backfill_id), json(&CancelRecord { backfill_id: backfill_id.to_string(), at })?).await?;
    tracing::info!(backfill = %backfill_id, outcome = "cancel_requested", "backfill cancel requested; pieces not started yet are skipped");
    progress(control, backfill_id).await
}

async fn is_cancelled(control: &dyn ObjectStore, backfill_id: &str) -> Result<bool> {
    Ok(control.head(&cancel_key(backfill_id)).await?.is_some())
}

/// The first hour the lake holds data of `conn` for (events of its project, merges of its
/// organisation, whichever it exports), or `None` when it holds none.
///
/// Lake keys are `events/{project}/{yyyy-MM-dd}/{HH}/...` and `merges/{org}/...`: key order
/// is time order, so the first key under the project's folder names the first hour. That is
/// one request ([`ObjectStore::first`]: S3 `MaxKeys=1`, Azure `maxresults=1`), however many
/// years the lake holds; listing hour by hour would not scale.
pub async fn first_lake_hour(lake: &dyn ObjectStore, conn: &Connection) -> Result<Option<UtcHour>> {
    let mut prefixes = Vec::new();
    if conn.export.events {
        prefixes.push(format!("events/{}/", conn.project_id));
    }
    if conn.export.merged_ids {
        prefixes.push(format!("merges/{}/", conn.org_id));
    }
    let mut first: Option<UtcHour> = None;
    for prefix in prefixes {
        let Some(meta) = lake.first(&prefix).await.map_err(|e| e.ours("event lake"))? else {
            continue;
        };
        let hour = hour_of_lake_key(&prefix, &meta.key).ok_or_else(|| ExportError::Corrupt {
            what: format!("event lake key {}", meta.key),
            detail: format!("expected {prefix}yyyy-MM-dd/HH/...; the first hour of the lake cannot be told"),
        })?;
        first = Some(first.map_or(hour, |f| f.min(hour)));
    }
    Ok(first)
}

fn hour_of_lake_key(prefix: &str, key: &str) -> Option<UtcHour> {
    let mut parts = key.strip_prefix(prefix)?.split('/');
    let (date, hour) = (parts.next()?, parts.next()?);
    UtcHour::parse(&format!("{date}T{hour}")).ok()
}

/// A backfill covers only hours that can hold data: starting before the connection's first
/// lake hour (or with an empty lake) is refused before anything is written.
pub async fn check_within_lake(lake: &dyn ObjectStore, conn: &Connection, range: HourRange) -> Result<()> {
    let Some(first) = first_lake_hour(lake, conn).await? else {
        return Err(ExportError::invalid_input(
            format!("backfill {range}"),
            format!("the event lake holds no data for project {} yet, so there is nothing to backfill; nothing was exported", conn.project_id),
        ));
    };
    if range.from >= first {
        return Ok(());
    }
    let hint = if range.to >= first {
        format!("start at the first hour instead: exportctl backfill {} --from {first} --to {}", conn.id, range.to)
    } else {
        "the whole range is before it".to_string()
    };
    Err(ExportError::invalid_input(
        format!("backfill `from` {}", range.from),
        format!(
            "is before {first}, the first hour the event lake holds for project {}; nothing was exported ({hint}; if the lake's retention removed those hours and they really are empty, add --allow-empty-lake)",
            conn.project_id
        ),
    ))
}

/// A replace that found its hour held by another run: a one-time schedule replaces it when
/// the holder's lease ends (named after that time, so waiting again later is a new schedule).
/// `until` is the lease's end as the busy error gives it.
pub async fn wait_for_lease(retries: &dyn RetryScheduler, req: &HourRequest, until: &str, now: DateTime<Utc>) -> Result<AfterFailure> {
    let plan = lease_wait_plan(req, until, now);
    let outcome = retries.schedule_retry(&plan).await?;
    tracing::info!(connection = %req.connection_id, hour = %req.hour, outcome = "waits_for_lease", schedule = %plan.id, at = %plan.at,
        "another run holds the hour; the replace runs when its lease ends");
    Ok(AfterFailure::RetryScheduled { schedule: plan.id, at: plan.at, attempt: req.attempt, created: outcome == CreateOutcome::Created })
}

/// The schedule of [`wait_for_lease`]: at the lease's end (a minute from now when the time
/// is unreadable or past), same attempt, since a busy hour is not a failed attempt.
pub fn lease_wait_plan(req: &HourRequest, until: &str, now: DateTime<Utc>) -> PlannedRetry {
    let at = DateTime::parse_from_rfc3339(until).map(|t| t.with_timezone(&Utc)).ok().filter(|t| *t > now).unwrap_or(now + chrono::Duration::minutes(1));
    let at = DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at);
    PlannedRetry { id: format!("{}-w{}", retry_id(req), at.format("%Y%m%dT%H%M%S")), at, request: req.clone() }
}

/// What became of one hour of a leaf.
enum HourFate {
    Exported { events: u64 },
    Waiting(WaitingHour),
    Failed(FailedHour),
    Cancelled(UtcHour),
}

fn fate(result: HourResult) -> HourFate {
    let hour = result.request.hour;
    if let Some(summary) = &result.exported {
        return HourFate::Exported { events: summary.events_exported };
    }
    let kind = result.error_kind.clone().unwrap_or_default();
    let next = match &result.after_failure {
        Some(AfterFailure::RetryScheduled { schedule, at, .. }) if kind == "HourBusy" => {
            return HourFate::Waiting(WaitingHour { hour, until: *at, schedule: schedule.clone() });
        }
        Some(AfterFailure::HandedOff { schedule, at }) => {
            return HourFate::Waiting(WaitingHour { hour, until: *at, schedule: schedule.clone() });
        }
        Some(AfterFailure::RetryScheduled { at, attempt, .. }) => {
            format!("retried at {} (attempt {attempt}) as a replace", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        Some(AfterFailure::NotRetryable) => {
            "not retried: retrying cannot fix this error; the hour's earlier export, if any, stands. Fix the cause, then backfill the hour again".to_string()
        }
        Some(AfterFailure::GaveUp { .. }) => {
            "no retries left; the hour stays owed and every hourly run tries it again (`exportctl status` lists it)".to_string()
        }
        Some(AfterFailure::LeftToOtherRun) => "another run holds the hour and will finish it; it was not replaced".to_string(),
        None => "not retried".to_string(),
    };
    HourFate::Failed(FailedHour { hour, error_kind: kind, error: result.error.unwrap_or_default(), next })
}

/// What the backfill function talks to.
#[derive(Clone)]
pub struct BackfillContext {
    pub control: Arc<dyn ObjectStore>,
    /// The event lake: the first hour a backfill may start at is read from it.
    pub lake: Arc<dyn ObjectStore>,
    pub invoker: Arc<dyn Invoker>,
    pub runner: Arc<dyn HourRunner>,
    pub failure: FailureHandler,
    pub fan_out: FanOut,
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum BackfillOutcome {
    Split {
        backfill_id: String,
        pieces: Vec<HourRange>,
    },
    Leaf {
        backfill_id: String,
        hours: u64,
        exported: u64,
        failed: Vec<UtcHour>,
        waiting: Vec<UtcHour>,
        cancelled: u64,
        events_exported: u64,
    },
    /// The backfill was cancelled before this piece started: none of its hours ran.
    Cancelled {
        backfill_id: String,
        hours: u64,
    },
    /// A cancel request (`{"cancel": ID}`) was recorded.
    CancelRequested {
        backfill_id: String,
        progress: BackfillProgress,
    },
}

/// Runs one backfill invocation for an enabled connection (the caller has loaded it).
pub async fn run_backfill(ctx: &BackfillContext, conn: &Connection, req: &BackfillRequest) -> Result<BackfillOutcome> {
    let range = req.range()?;
    let step = ctx.fan_out.plan(range, req.depth)?;
    let id = req.id();
    if req.depth == 0 {
        // The operator who says the lake hours are really empty may reach before its first hour.
        if !req.allow_empty_lake {
            check_within_lake(ctx.lake.as_ref(), conn, range).await?;
        }
        let record = BackfillRecord { backfill_id: id.clone(), connection_id: conn.id.clone(), from: range.from, to: range.to, hours: range.len() };
        ctx.control.put(&backfill_key(&id), json(&record)?).await?;
    }
    let blank = |kind: &str, children: u32| PieceRecord {
        from: range.from,
        to: range.to,
        depth: req.depth,
        kind: kind.into(),
        children,
        hours: range.len(),
        exported: 0,
        events_exported: 0,
        failed: Vec::new(),
        failures: Vec::new(),
        waiting: Vec::new(),
        cancelled: Vec::new(),
    };
    if is_cancelled(ctx.control.as_ref(), &id).await? {
        // Recorded like a leaf, so the progress of a cancelled backfill still adds up.
        let record = PieceRecord { cancelled: vec![range], ..blank("cancelled", 0) };
        ctx.control.put(&piece_key(&id, range), json(&record)?).await?;
        tracing::info!(connection = %conn.id, backfill = %id, range = %range, depth = req.depth, outcome = "cancelled", "backfill cancelled; piece skipped");
        return Ok(BackfillOutcome::Cancelled { backfill_id: id, hours: range.len() });
    }
    match step {
        Step::Split(pieces) => {
            // The split is recorded before any child starts, and each child is handed out
            // once per backfill (create-only claim): a redelivered split starts no subtree
            // twice, and a failed hand-out gives its claim back so the redelivery retries it.
            ctx.control.put(&piece_key(&id, range), json(&blank("split", pieces.len() as u32))?).await?;
            for piece in &pieces {
                let claim = handout_key(&id, *piece);
                if ctx.control.put_if_absent(&claim, Bytes::from_static(b"{}")).await? == CreateOutcome::AlreadyExists {
                    continue;
                }
                let child = serde_json::to_value(req.child(*piece)).map_err(|e| ExportError::Internal(e.to_string()))?;
                if let Err(e) = ctx.invoker.invoke_async(&child).await {
                    let _ = ctx.control.delete(&claim).await;
                    return Err(e);
                }
            }
            tracing::info!(connection = %conn.id, backfill = %id, range = %range, depth = req.depth, pieces = pieces.len(), outcome = "split", "backfill piece split");
            Ok(BackfillOutcome::Split { backfill_id: id, pieces })
        }
        Step::Leaf(range) => {
            let allow_empty_lake = req.allow_empty_lake;
            let results: Vec<Result<HourFate>> = futures::stream::iter(range.hours())
                .map(|hour| {
                    let ctx = ctx.clone();
                    let conn = conn.clone();
                    let id = id.clone();
                    async move {
                        // Checked as each hour starts: a cancel stops the hours not begun.
                        if is_cancelled(ctx.control.as_ref(), &id).await? {
                            return Ok(HourFate::Cancelled(hour));
                        }
                        let mut req = HourRequest::new(conn.id.clone(), hour, ExportMode::Replace, 1);
                        req.allow_empty_lake = allow_empty_lake;
                        ctx.failure.process_hour(ctx.runner.as_ref(), &conn, &req).await.map(fate)
                    }
                })
                .buffer_unordered(ctx.fan_out.parallel)
                .collect()
                .await;
            let mut record = blank("leaf", 0);
            let mut cancelled = Vec::new();
            let mut first_error = None;
            for r in results {
                match r {
                    Ok(HourFate::Exported { events }) => {
                        record.exported += 1;
                        record.events_exported += events;
                    }
                    Ok(HourFate::Waiting(w)) => record.waiting.push(w),
                    Ok(HourFate::Failed(f)) => {
                        record.failed.push(f.hour);
                        record.failures.push(f);
                    }
                    Ok(HourFate::Cancelled(hour)) => cancelled.push(HourRange { from: hour, to: hour }),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            // Unhandled failures (the retry could not be scheduled) fail the invocation, so
            // Lambda delivers it again; replace mode makes the rerun harmless.
            if let Some(e) = first_error {
                return Err(e);
            }
            record.failed.sort();
            record.failures.sort_by_key(|f| f.hour);
            record.waiting.sort_by_key(|w| w.hour);
            record.cancelled = merge_ranges(cancelled);
            ctx.control.put(&piece_key(&id, range), json(&record)?).await?;
            let cancelled_hours: u64 = record.cancelled.iter().map(|r| r.len()).sum();
            tracing::info!(connection = %conn.id, backfill = %id, range = %range, depth = req.depth, exported = record.exported,
                failed = record.failed.len(), waiting = record.waiting.len(), cancelled = cancelled_hours, outcome = "leaf_done", "backfill piece exported");
            Ok(BackfillOutcome::Leaf {
                backfill_id: id,
                hours: range.len(),
                exported: record.exported,
                failed: record.failed,
                waiting: record.waiting.iter().map(|w| w.hour).collect(),
                cancelled: cancelled_hours,
                events_exported: record.events_exported,
            })
        }
    }
}

/// A backfill function payload: a backfill (piece) to run, or `{"cancel": ID}`.
pub fn cancel_request(payload: &serde_json::Value) -> Result<Option<String>> {
    let Some(obj) = payload.as_object().filter(|o| o.contains_key("cancel")) else {
        return Ok(None);
    };
    if obj.len() != 1 {
        return Err(ExportError::invalid_input("backfill payload", "a cancel request is {\"cancel\": \"<backfill id>\"} and nothing else"));
    }
    match obj.get("cancel") {
        Some(serde_json::Value::String(id)) if is_valid_backfill_id(id) => Ok(Some(id.clone())),
        _ => Err(ExportError::invalid_input("backfill `cancel`", "must be a backfill id (1-128 letters, digits, '-', '_' or '.')")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: &str, to: &str) -> HourRange {
        HourRange::parse(from, to).unwrap()
    }

    #[test]
    fn thirty_days_split_into_ten_then_thirty_leaves() {
        let f = FanOut::default();
        let month = range("2020-01-01T00", "2020-01-30T23");
        assert_eq!(month.len(), 720);
        let Step::Split(pieces) = f.plan(month, 0).unwrap() else { panic!("720 hours must split") };
        assert_eq!(pieces.len(), 10);
        assert_eq!(pieces.iter().map(|p| p.len()).sum::<u64>(), 720);
        let mut leaves = 0;
        for p in &pieces {
            let Step::Split(sub) = f.plan(*p, 1).unwrap() else { panic!("72 hours must split") };
            for s in sub {
                assert_eq!(f.plan(s, 2).unwrap(), Step::Leaf(s));
                leaves += 1;
            }
        }
        assert_eq!(leaves, 30);
    }

    #[test]
    fn pieces_shrink_and_depth_is_guarded() {
        let f = FanOut::new(2, 2, 3, 1).unwrap();
        assert_eq!(f.capacity(0), 16);
        assert!(f.plan(range("2020-01-01T00", "2020-01-01T16"), 0).is_err(), "17 hours need a 4th level");
        let err = f.plan(range("2020-01-01T00", "2020-01-01T03"), 4).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
        // Every split piece is strictly shorter than its parent.
        let mut todo = vec![(range("2020-01-01T00", "2020-01-01T15"), 0u32)];
        let mut leaves = 0u64;
        while let Some((r, d)) = todo.pop() {
            match f.plan(r, d).unwrap() {
                Step::Leaf(l) => leaves += l.len(),
                Step::Split(ps) => {
                    for p in ps {
                        assert!(p.len() < r.len());
                        todo.push((p, d + 1));
                    }
                }
            }
        }
        assert_eq!(leaves, 16);
    }

    #[test]
    fn payloads_are_checked() {
        let ok = BackfillRequest::from_payload(&serde_json::json!({"connection_id":"c1","from":"2020-01-01T00","to":"2020-01-02T05"})).unwrap();
        assert_eq!(ok.depth, 0);
        assert_eq!(ok.id(), "c1-20200101T00-20200102T05");
        let cases = [
            (serde_json::json!({"connection_id":"c1","from":"2020-01-01","to":"2020-01-02T05"}), "expected a UTC hour"),
            (serde_json::json!({"connection_id":"c1","from":"2020-01-03T00","to":"2020-01-02T05"}), "before"),
            (serde_json::json!({"from":"2020-01-01T00","to":"2020-01-02T05"}), "missing `connection_id`"),
            (serde_json::json!({"connection_id":"c1","from":"2020-01-01T00","to":"2020-01-02T05","extra":1}), "unknown field"),
            (serde_json::json!({"connection_id":"c1","from":"2020-01-01T00","to":"2020-01-02T05","allow_empty_lake":1}), "true or false"),
            (serde_json::json!([1]), "JSON object"),
        ];
        for (payload, want) in cases {
            let err = BackfillRequest::from_payload(&payload).unwrap_err();
            assert_eq!(err.kind(), "InvalidInput");
            assert!(err.to_string().contains(want), "{payload}: {err}");
        }
        let child = ok.child(range("2020-01-01T00", "2020-01-01T23"));
        let back = BackfillRequest::from_payload(&serde_json::to_value(&child).unwrap()).unwrap();
        assert_eq!(back.depth, 1);
        assert_eq!(back.id(), ok.id(), "children keep the backfill's id");
    }

    #[test]
    fn a_busy_replace_waits_until_the_lease_ends_under_a_name_of_its_own() {
        let now = DateTime::parse_from_rfc3339("2020-01-25T06:05:00Z").unwrap().with_timezone(&Utc);
        let req = HourRequest::new("c1", UtcHour::parse("2020-01-25T03").unwrap(), ExportMode::Replace, 1);
        let plan = lease_wait_plan(&req, "2020-01-25T06:20:00Z", now);
        assert_eq!(plan.at.to_rfc3339(), "2020-01-25T06:20:00+00:00");
        assert_eq!(plan.id, "c1-20200125T03-rep-a1-w20200125T062000");
        assert_eq!(plan.request, req, "a busy hour is not a failed attempt");
        // Waiting again for a renewed lease is another schedule, not the one being fired.
        assert_ne!(lease_wait_plan(&req, "2020-01-25T06:40:00Z", now).id, plan.id);
        // An unreadable or past end waits a minute.
        assert_eq!(lease_wait_plan(&req, "soon", now).at, now + chrono::Duration::minutes(1));
        assert_eq!(lease_wait_plan(&req, "2020-01-25T06:00:00Z", now).at, now + chrono::Duration::minutes(1));
    }

    #[test]
    fn consecutive_hours_merge_into_ranges() {
        let one = |s: &str| range(s, s);
        let merged = merge_ranges(vec![one("2020-01-01T05"), range("2020-01-01T00", "2020-01-01T02"), one("2020-01-01T03"), one("2020-01-01T07")]);
        assert_eq!(merged, vec![range("2020-01-01T00", "2020-01-01T03"), one("2020-01-01T05"), one("2020-01-01T07")]);
        assert_eq!(
            merge_ranges(vec![range("2020-01-01T00", "2020-01-01T09"), range("2020-01-01T02", "2020-01-01T04")]),
            vec![range("2020-01-01T00", "2020-01-01T09")]
        );
        assert!(merge_ranges(Vec::new()).is_empty());
    }

    #[test]
    fn cancel_payloads_are_checked() {
        assert_eq!(cancel_request(&serde_json::json!({"cancel": "c1-20200101T00-x"})).unwrap().as_deref(), Some("c1-20200101T00-x"));
        assert_eq!(cancel_request(&serde_json::json!({"connection_id":"c1","from":"2020-01-01T00","to":"2020-01-01T01"})).unwrap(), None);
        for bad in [serde_json::json!({"cancel": 1}), serde_json::json!({"cancel": "a/b"}), serde_json::json!({"cancel": "x", "from": "2020-01-01T00"})] {
            assert_eq!(cancel_request(&bad).unwrap_err().kind(), "InvalidInput", "{bad}");
        }
    }

    #[tokio::test]
    async fn the_first_lake_hour_is_one_lookup_and_bounds_the_range() {
        use crate::adapters::local::store::LocalStore;
        let dir = tempfile::tempdir().unwrap();
        let lake = LocalStore::new(dir.path().to_path_buf()).unwrap();
        let conn = Connection::from_json(
            r#"{"id":"c1","org_id":"42","project_id":"187520","creator":"a@b.co","admins":["a@b.co"],"destination":{"type":"local","path":"/x"}}"#,
        )
        .unwrap();
        assert_eq!(first_lake_hour(&lake, &conn).await.unwrap(), None);
        let err = check_within_lake(&lake, &conn, range("2020-01-01T00", "2020-01-01T01")).await.unwrap_err();
        assert!(err.to_string().contains("holds no data for project 187520"), "{err}");
        for key in ["events/187520/2020-01-26/00/b.json.gz", "events/187520/2020-01-25/13/a.json.gz", "events/1875200/2019-01-01/00/x.json", "events/187520-x"]
        {
            lake.put(key, Bytes::from_static(b"{}")).await.unwrap();
        }
        // The folder walk returns what a full listing would put first.
        for prefix in ["events/187520/", "events/187520", "events/", "events/187520/2020-01-26/", "nothing/"] {
            assert_eq!(lake.first(prefix).await.unwrap(), lake.list(prefix).await.unwrap().into_iter().next(), "{prefix}");
        }
        assert_eq!(first_lake_hour(&lake, &conn).await.unwrap(), Some(UtcHour::parse("2020-01-25T13").unwrap()));
        check_within_lake(&lake, &conn, range("2020-01-25T13", "2020-02-25T13")).await.expect("from the first hour on, any length");
        let err = check_within_lake(&lake, &conn, range("1970-01-01T00", "2020-01-26T00")).await.unwrap_err();
        assert_eq!(err.kind(), "InvalidInput");
        assert!(err.to_string().contains("before 2020-01-25T13") && err.to_string().contains("--from 2020-01-25T13 --to 2020-01-26T00"), "{err}");
        let err = check_within_lake(&lake, &conn, range("1970-01-01T00", "1970-01-01T05")).await.unwrap_err();
        assert!(err.to_string().contains("the whole range is before it"), "{err}");
    }
}
