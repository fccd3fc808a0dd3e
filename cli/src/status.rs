//! `exportctl status`: one line per connection (watermark, lag, owed hours, STATE) and the
//! owed hours beneath it.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use exporter::hour::UtcHour;
use exporter::Result;

use crate::home::Home;

/// The status table (also used by the demo): the watermark derived from the hour ledger,
/// the owed hours (oldest first), whose side the last failure was on, and any gap.
pub async fn status_table(home: &Home, now: DateTime<Utc>) -> Result<String> {
    let ledger = exporter::control::ledger::HourLedger::new(home.control.store().clone());
    let mut out =
        format!("{:<16} {:<8} {:<8} {:<15} {:<15} {:>5} {:>5}  {}\n", "CONNECTION", "PROJECT", "ENABLED", "WATERMARK", "LAST EXPORTED", "LAG", "OWED", "STATE");
    for conn in home.control.list_connections().await? {
        let s = home.control.status(&conn.id).await?;
        let owed = ledger.owed(&conn.id).await?;
        let watermark = ledger.watermark(&conn.id).await?;
        let show = |h: Option<UtcHour>| h.map(|h| h.to_string()).unwrap_or_else(|| "-".into());
        let failing = owed.iter().filter(|h| h.state == exporter::control::ledger::OwedState::Failing).count();
        let mut state = match (&s.failing_since, failing) {
            (Some(since), _) => {
                format!("FAILING ({}) since {since}: {}", s.last_error_blame.as_deref().unwrap_or("destination"), s.last_error.clone().unwrap_or_default())
            }
            (None, n) if n > 0 => {
                format!("retrying {n} hour(s) ({}): {}", s.last_error_blame.as_deref().unwrap_or("destination"), s.last_error.clone().unwrap_or_default())
            }
            _ => "ok".into(),
        };
        if let Some(gap) = &s.gap {
            state.push_str(&format!("; gap {} — run: {}", gap.range, gap.backfill_command));
        }
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
                    let detail = match (h.attempts, h.retries_exhausted, h.next_retry) {
                        (0, _, _) => String::new(),
                        (n, true, _) => format!(" ({n} attempts, retries over: every hourly run tries again)"),
                        (n, false, Some(at)) => format!(" ({n} attempts, next retry {})", at.format("%Y-%m-%dT%H:%M")),
                        (n, false, None) => format!(" ({n} attempts)"),
                    };
                    format!("{} {state}{detail}", h.hour)
                })
                .collect();
            let more = if owed.len() > 12 { format!(", ... {} more", owed.len() - 12) } else { String::new() };
            out.push_str(&format!("  owed: {}{more}\n", listed.join(", ")));
        }
    }
    Ok(out)
}

pub async fn status(home: &Home, now: DateTime<Utc>) -> Result<ExitCode> {
    print!("{}", status_table(home, now).await?);
    Ok(ExitCode::SUCCESS)
}
