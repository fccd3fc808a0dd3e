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

use crate::control::connection::Connection;
use crate::delivery::failure::{FailureHandler, HourResult, HourRunner};
use crate::delivery::retry::HourRequest;
use crate::error::{ExportError, Result};
use crate::export::hour_export::ExportMode;
use crate::hour::{HourRange, UtcHour};
use crate::ports::{CreateOutcome, Invoker, ObjectStore};

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

/// What one invocation did with its piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRecord {
    pub from: UtcHour,
    pub to: UtcHour,
    pub depth: u32,
    /// `split` (handed to `children` invocations) or `leaf` (exported here).
    pub kind: String,
    #[serde(default)]
    pub children: u32,
    pub hours: u64,
    #[serde(default)]
    pub exported: u64,
    #[serde(default)]
    pub events_exported: u64,
    /// Hours that failed here; each has a retry scheduled (or an email sent).
    #[serde(default)]
    pub failed: Vec<UtcHour>,
}

/// Progress of a backfill, summed from its records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillProgress {
    pub backfill_id: String,
    /// Hours in the backfill (0 when the backfill is unknown).
    pub total_hours: u64,
    /// Hours of finished leaves (exported or failed).
    pub done_hours: u64,
    pub exported_hours: u64,
    pub failed_hours: Vec<UtcHour>,
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
}

pub fn backfill_key(backfill_id: &str) -> String {
    format!("backfills/{backfill_id}/backfill.json")
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

/// Reads a backfill's progress from the control store.
pub async fn progress(control: &dyn ObjectStore, backfill_id: &str) -> Result<BackfillProgress> {
    let mut p = BackfillProgress { backfill_id: backfill_id.to_string(), ..Default::default() };
    match control.get(&backfill_key(backfill_id)).await {
        Ok(b) => {
            let r: BackfillRecord = serde_json::from_slice(&b).map_err(|e| ExportError::Corrupt { what: backfill_key(backfill_id), detail: e.to_string() })?;
            p.total_hours = r.hours;
        }
        Err(ExportError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    for meta in control.list(&format!("backfills/{backfill_id}/pieces/")).await? {
        let b = match control.get(&meta.key).await {
            Ok(b) => b,
            Err(ExportError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let piece: PieceRecord = serde_json::from_slice(&b).map_err(|e| ExportError::Corrupt { what: meta.key.clone(), detail: e.to_string() })?;
        p.invocations += 1;
        if piece.depth > 0 {
            p.async_invocations += 1;
        }
        if piece.kind == "leaf" {
            p.done_hours += piece.hours;
            p.exported_hours += piece.exported;
            p.events_exported += piece.events_exported;
            p.failed_hours.extend(piece.failed);
        }
    }
    p.failed_hours.sort();
    Ok(p)
}

/// What the backfill function talks to.
#[derive(Clone)]
pub struct BackfillContext {
    pub control: Arc<dyn ObjectStore>,
    pub invoker: Arc<dyn Invoker>,
    pub runner: Arc<dyn HourRunner>,
    pub failure: FailureHandler,
    pub fan_out: FanOut,
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum BackfillOutcome {
    Split { backfill_id: String, pieces: Vec<HourRange> },
    Leaf { backfill_id: String, hours: u64, exported: u64, failed: Vec<UtcHour>, events_exported: u64 },
}

/// Runs one backfill invocation for an enabled connection (the caller has loaded it).
pub async fn run_backfill(ctx: &BackfillContext, conn: &Connection, req: &BackfillRequest) -> Result<BackfillOutcome> {
    let range = req.range()?;
    let step = ctx.fan_out.plan(range, req.depth)?;
    let id = req.id();
    if req.depth == 0 {
        let record = BackfillRecord { backfill_id: id.clone(), connection_id: conn.id.clone(), from: range.from, to: range.to, hours: range.len() };
        ctx.control.put(&backfill_key(&id), json(&record)?).await?;
    }
    match step {
        Step::Split(pieces) => {
            // The split is recorded before any child starts, and each child is handed out
            // once per backfill (create-only claim): a redelivered split starts no subtree
            // twice, and a failed hand-out gives its claim back so the redelivery retries it.
            let record = PieceRecord {
                from: range.from,
                to: range.to,
                depth: req.depth,
                kind: "split".into(),
                children: pieces.len() as u32,
                hours: range.len(),
                exported: 0,
                events_exported: 0,
                failed: Vec::new(),
            };
            ctx.control.put(&piece_key(&id, range), json(&record)?).await?;
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
            let results: Vec<Result<HourResult>> = futures::stream::iter(range.hours())
                .map(|hour| {
                    let ctx = ctx.clone();
                    let conn = conn.clone();
                    async move {
                        let mut req = HourRequest::new(conn.id.clone(), hour, ExportMode::Replace, 1);
                        req.allow_empty_lake = allow_empty_lake;
                        ctx.failure.process_hour(ctx.runner.as_ref(), &conn, &req).await
                    }
                })
                .buffer_unordered(ctx.fan_out.parallel)
                .collect()
                .await;
            let mut exported = 0;
            let mut events = 0;
            let mut failed = Vec::new();
            let mut first_error = None;
            for r in results {
                match r {
                    Ok(r) if r.succeeded() => {
                        exported += 1;
                        events += r.exported.as_ref().map(|s| s.events_exported).unwrap_or(0);
                    }
                    Ok(r) => failed.push(r.request.hour),
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
            failed.sort();
            let record = PieceRecord {
                from: range.from,
                to: range.to,
                depth: req.depth,
                kind: "leaf".into(),
                children: 0,
                hours: range.len(),
                exported,
                events_exported: events,
                failed: failed.clone(),
            };
            ctx.control.put(&piece_key(&id, range), json(&record)?).await?;
            tracing::info!(connection = %conn.id, backfill = %id, range = %range, depth = req.depth, exported, failed = failed.len(), outcome = "leaf_done", "backfill piece exported");
            Ok(BackfillOutcome::Leaf { backfill_id: id, hours: range.len(), exported, failed, events_exported: events })
        }
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
}
