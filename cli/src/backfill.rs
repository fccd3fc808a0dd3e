//! `exportctl backfill`: replaces every hour of a range through the backfill logic, with a
//! progress bar and a summary that says what became of each hour: exported, waiting for
//! another run's lease (and until when), failed (and what happens next), or cancelled.
//! `exportctl backfill --cancel ID` stops a running backfill's remaining pieces.
//!
//! Exit code 0 only when every hour is exported or waits for its scheduled replace; 1 when
//! any hour failed, was cancelled, or was not reported before the CLI stopped following.

use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use exporter::delivery::backfill::{self as backfill_logic, merge_ranges, progress, BackfillOutcome, BackfillProgress, BackfillRequest};
use exporter::hour::{HourRange, UtcHour};
use exporter::{ExportError, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::home::Home;
use crate::report::rfc;

/// What `backfill --json` prints.
#[derive(Debug, serde::Serialize)]
pub struct BackfillReport {
    pub connection_id: String,
    pub range: HourRange,
    /// Every hour exported or waiting for its scheduled replace (exit code 0).
    pub complete: bool,
    pub progress: BackfillProgress,
}

pub async fn backfill(home: &Home, id: &str, from: &str, to: &str, allow_empty_lake: bool, json: bool) -> Result<ExitCode> {
    let range = HourRange::parse(from, to)?;
    // A fresh id per command: running the same range again is a new backfill, while the
    // function's own redeliveries (same id) resume it without starting pieces twice.
    let backfill_id =
        format!("{id}-{}-{}-{}", range.from.start().format("%Y%m%dT%H"), range.to.start().format("%Y%m%dT%H"), exporter::control::ledger::new_run_id());
    let payload = serde_json::json!({"connection_id": id, "from": range.from.to_string(), "to": range.to.to_string(),
        "backfill_id": backfill_id, "allow_empty_lake": allow_empty_lake});
    let req = BackfillRequest::from_payload(&payload)?;
    let backfill_id = req.id();
    let control = home.control.store().clone();
    // With --json stdout holds the one document: no bar, and the start line goes to stderr.
    let bar = if json { ProgressBar::hidden() } else { ProgressBar::new(range.len()) };
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} hours exported {msg}").expect("template"));
    match (&home.embedded, &home.backfill_function) {
        (Some(embedded), _) => {
            let started = |o: &BackfillOutcome| {
                if let BackfillOutcome::Split { .. } | BackfillOutcome::Leaf { .. } = o {
                    started_line(&bar, &backfill_id, range, json);
                }
            };
            let mut announced = false;
            let mut exported = 0;
            let (mut waiting, mut failed, mut cancelled) = (0, 0, 0);
            embedded
                .backfill_with(payload, |o| {
                    if !announced {
                        started(o);
                        announced = true;
                    }
                    match o {
                        BackfillOutcome::Leaf { exported: e, failed: f, waiting: w, cancelled: c, .. } => {
                            exported += e;
                            failed += f.len() as u64;
                            waiting += w.len() as u64;
                            cancelled += c;
                        }
                        BackfillOutcome::Cancelled { hours, .. } => cancelled += hours,
                        _ => {}
                    }
                    bar.set_position(exported);
                    bar.set_message(counts_message(waiting, failed, cancelled));
                })
                .await?;
        }
        (None, Some(function)) => {
            // Deployed: the function fans out on its own; follow its progress records. A range
            // before the lake's first hour is refused here, as the function would refuse it
            // where nobody sees the error.
            let conn = home.control.get_connection(id).await?;
            backfill_logic::check_within_lake(home.lake.as_ref(), &conn, range).await?;
            function.invoke_async(&payload).await?;
            started_line(&bar, &backfill_id, range, json);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6 * 3600);
            loop {
                let p = progress(control.as_ref(), &backfill_id).await?;
                bar.set_position(p.exported_hours);
                bar.set_message(counts_message(p.waiting.len() as u64, p.failures.len() as u64, p.cancelled_hours));
                if p.is_finished() || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
        (None, None) => return Err(ExportError::invalid_config("BACKFILL_FUNCTION", "is not set", "Set it to the backfill function's name (a stack output).")),
    }
    let p = progress(control.as_ref(), &backfill_id).await?;
    bar.set_position(p.exported_hours);
    bar.set_message(counts_message(p.waiting.len() as u64, p.failures.len() as u64, p.cancelled_hours));
    bar.finish();
    if !bar.is_hidden() {
        // indicatif leaves the cursor at the end of the bar's line.
        eprintln!();
    }
    let complete = p.failures.is_empty() && p.cancelled_hours == 0 && p.unreported_hours() == 0;
    if json {
        let report = BackfillReport { connection_id: id.to_string(), range, complete, progress: p };
        crate::output::json(&report);
    } else {
        print!("{}", summary(&p, id, range));
    }
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn started_line(bar: &ProgressBar, backfill_id: &str, range: HourRange, json: bool) {
    // Printed once the first invocation is accepted: the id is what `--cancel` takes.
    let line = format!("backfill {backfill_id} started: {} hour(s), {range}; stop it with: exportctl backfill --cancel {backfill_id}", range.len());
    if json {
        eprintln!("{line}");
    } else {
        bar.suspend(|| println!("{line}"));
    }
}

fn counts_message(waiting: u64, failed: u64, cancelled: u64) -> String {
    let mut parts = Vec::new();
    if waiting > 0 {
        parts.push(format!("{waiting} waiting"));
    }
    if failed > 0 {
        parts.push(format!("{failed} failed"));
    }
    if cancelled > 0 {
        parts.push(format!("{cancelled} cancelled"));
    }
    parts.join(", ")
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        "hour"
    } else {
        "hours"
    }
}

fn ranges_text(ranges: &[HourRange]) -> String {
    ranges.iter().map(|r| if r.len() == 1 { r.from.to_string() } else { r.to_string() }).collect::<Vec<_>>().join(", ")
}

/// The exported hours: every hour of the range not waiting, failed, cancelled or unreported.
fn exported_ranges(p: &BackfillProgress, range: HourRange) -> Option<Vec<HourRange>> {
    if p.unreported_hours() > 0 {
        return None;
    }
    let mut other: Vec<UtcHour> = p.waiting.iter().map(|w| w.hour).chain(p.failures.iter().map(|f| f.hour)).collect();
    other.extend(p.cancelled.iter().flat_map(|r| r.hours()));
    other.sort();
    let exported: Vec<HourRange> = range.hours().filter(|h| other.binary_search(h).is_err()).map(|h| HourRange { from: h, to: h }).collect();
    Some(merge_ranges(exported))
}

/// What the backfill did, hour by hour, counting only what happened.
pub fn summary(p: &BackfillProgress, connection: &str, range: HourRange) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "backfill {}: {} of {} hours exported ({} events, {} invocations, {} asynchronous)",
        p.backfill_id, p.exported_hours, p.total_hours, p.events_exported, p.invocations, p.async_invocations
    );
    if p.exported_hours > 0 {
        match exported_ranges(p, range) {
            Some(ranges) => {
                let _ = writeln!(out, "  exported  {} {}: {}", p.exported_hours, plural(p.exported_hours), ranges_text(&ranges));
            }
            None => {
                let _ = writeln!(out, "  exported  {} {}", p.exported_hours, plural(p.exported_hours));
            }
        }
    }
    if !p.waiting.is_empty() {
        let n = p.waiting.len() as u64;
        let _ = writeln!(out, "  waiting   {n} {} (another run held each; a scheduled replace runs when its lease ends):", plural(n));
        for w in &p.waiting {
            let _ = writeln!(out, "    {}: replaced at {} (schedule {})", w.hour, rfc(w.until), w.schedule);
        }
    }
    if !p.failures.is_empty() {
        let n = p.failures.len() as u64;
        let _ = writeln!(out, "  failed    {n} {}:", plural(n));
        for f in &p.failures {
            let _ = writeln!(out, "    {}: {} — {}", f.hour, f.error, f.next);
        }
    }
    if p.cancelled_hours > 0 {
        let when = p.cancel_requested.map(|t| format!(" at {}", rfc(t))).unwrap_or_default();
        let _ = writeln!(
            out,
            "  cancelled {} {} (cancelled{when}; not exported, the hours above stay): {}",
            p.cancelled_hours,
            plural(p.cancelled_hours),
            ranges_text(&p.cancelled)
        );
    }
    if p.unreported_hours() > 0 {
        let n = p.unreported_hours();
        let _ =
            writeln!(out, "  running   {n} {} not reported yet (the backfill goes on; `exportctl backfill --cancel {}` stops it)", plural(n), p.backfill_id);
    }
    let redo: Vec<HourRange> = merge_ranges(p.failures.iter().map(|f| HourRange { from: f.hour, to: f.hour }).chain(p.cancelled.iter().copied()).collect());
    if let (Some(first), Some(last)) = (redo.first(), redo.last()) {
        let _ = writeln!(out, "  to export what is left: exportctl backfill {connection} --from {} --to {}", first.from, last.to);
    }
    out
}

/// What `backfill --cancel ID --json` prints.
#[derive(Debug, serde::Serialize)]
pub struct CancelReport {
    /// False when the backfill had already finished (nothing was left to cancel).
    pub cancel_recorded: bool,
    pub progress: BackfillProgress,
}

/// `exportctl backfill --cancel ID`.
pub async fn cancel(home: &Home, backfill_id: &str, now: DateTime<Utc>, json: bool) -> Result<ExitCode> {
    let p = backfill_logic::cancel(home.control.store().as_ref(), backfill_id, now).await?;
    if json {
        crate::output::json(&CancelReport { cancel_recorded: !p.is_finished(), progress: p });
    } else if p.is_finished() {
        println!("backfill {backfill_id} had already finished: nothing left to cancel ({} of {} hours exported)", p.exported_hours, p.total_hours);
    } else {
        println!(
            "backfill {backfill_id}: cancel recorded at {}; pieces and hours not started yet are skipped, the {} hour(s) exported so far stay",
            rfc(p.cancel_requested.unwrap_or(now)),
            p.exported_hours
        );
    }
    Ok(ExitCode::SUCCESS)
}
