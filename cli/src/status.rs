//! `exportctl status`: one line per connection (watermark, lag, owed hours, STATE) and the
//! owed hours beneath it.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use exporter::control::health::{self, Health};
use exporter::control::ledger::HourLedger;
use exporter::hour::UtcHour;
use exporter::model::hour_request::ExportMode;
use exporter::Result;

use crate::home::Home;

/// The status table (also used by the demo): the watermark derived from the hour ledger,
/// the owed hours (oldest first), and STATE: `ok` only when nothing is wrong, else every
/// condition found (see `exporter::control::health`). An unreadable connection is listed
/// as broken and the others are still shown.
pub async fn status_table(home: &Home, now: DateTime<Utc>) -> Result<String> {
    let ledger = HourLedger::new(home.control.store().clone());
    let policy = home.embedded.as_ref().map(|e| e.runs.policy).unwrap_or_default();
    let mut out =
        format!("{:<16} {:<8} {:<8} {:<15} {:<15} {:>5} {:>5}  {}\n", "CONNECTION", "PROJECT", "ENABLED", "WATERMARK", "LAST EXPORTED", "LAG", "OWED", "STATE");
    let scan = home.control.scan_connections().await?;
    for conn in &scan.readable {
        let s = home.control.status(&conn.id).await?;
        let owed = ledger.owed(&conn.id).await?;
        let watermark = ledger.watermark(&conn.id).await?;
        let show = |h: Option<UtcHour>| h.map(|h| h.to_string()).unwrap_or_else(|| "-".into());
        let state = health::assess(&ledger, conn, &s, &policy, now).await?.state();
        out.push_str(&format!(
            "{:<16} {:<8} {:<8} {:<15} {:<15} {:>5} {:>5}  {}\n",
            conn.id,
            conn.project_id,
            conn.enabled,
            show(watermark),
            show(s.last_exported_hour),
            s.lag_hours(now).map(|l| format!("{l}h")).unwrap_or_else(|| "-".into()),
            owed.len(),
            state
        ));
        if !owed.is_empty() {
            let listed: Vec<String> = owed
                .iter()
                .take(12)
                .map(|h| {
                    let state = format!("{:?}", h.state).to_lowercase();
                    let detail = match (h.attempts, h.parked, h.retries_exhausted, h.next_retry) {
                        (0, _, _, _) => String::new(),
                        (n, true, _, _) => format!(" ({n} attempts, waits for an operator)"),
                        (n, false, true, _) => format!(" ({n} attempts, retries over: every hourly run tries again)"),
                        (n, false, false, Some(at)) => format!(" ({n} attempts, next retry {})", at.format("%Y-%m-%dT%H:%M")),
                        (n, false, false, None) => format!(" ({n} attempts)"),
                    };
                    let mode = if h.mode == ExportMode::Recurring { String::new() } else { format!(" {}", h.mode) };
                    format!("{} {state}{mode}{detail}", h.hour)
                })
                .collect();
            let more = if owed.len() > 12 { format!(", ... {} more", owed.len() - 12) } else { String::new() };
            out.push_str(&format!("  owed: {}{more}\n", listed.join(", ")));
        }
    }
    for bad in &scan.unreadable {
        let state = Health::unreadable(&bad.id, &bad.error).state();
        out.push_str(&format!("{:<16} {:<8} {:<8} {:<15} {:<15} {:>5} {:>5}  {}\n", bad.id, "?", "?", "-", "-", "-", "-", state));
    }
    Ok(out)
}

pub async fn status(home: &Home, now: DateTime<Utc>) -> Result<ExitCode> {
    print!("{}", status_table(home, now).await?);
    Ok(ExitCode::SUCCESS)
}
