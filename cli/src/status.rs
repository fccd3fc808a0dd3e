//! `exportctl status`: one line per connection (watermark, lag, owed hours, freshness,
//! STATE) and the owed hours beneath it, or the same as JSON (`--json`); `exportctl metrics`:
//! the watchdog's figures and each connection's in the Prometheus text format.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use exporter::control::freshness::{self, FreshnessSummary};
use exporter::control::health::{self, Health};
use exporter::control::ledger::{HourLedger, OwedHour};
use exporter::control::runs::RunPolicy;
use exporter::control::store::ConnectionStatus;
use exporter::control::watchdog;
use exporter::hour::UtcHour;
use exporter::model::hour_request::ExportMode;
use exporter::model::metrics::{to_prometheus, MetricSet, Unit};
use exporter::Result;
use serde::Serialize;

use crate::home::Home;
use crate::report;

/// One connection's line, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct StatusLine {
    pub connection_id: String,
    pub project_id: String,
    pub enabled: bool,
    /// Every hour up to it is complete.
    pub watermark: Option<UtcHour>,
    pub last_exported_hour: Option<UtcHour>,
    pub lag_hours: Option<i64>,
    pub owed: Vec<OwedHour>,
    pub freshness: FreshnessSummary,
    /// Hours due in the last 24 hours whose marker came by the deadline, as a share.
    pub slo_met_ratio: Option<f64>,
    /// `ok` only when nothing is wrong; else the conditions, joined.
    pub state: String,
    pub conditions: Vec<String>,
}

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub at: DateTime<Utc>,
    pub freshness_slo_minutes: i64,
    pub connections: Vec<StatusLine>,
    /// Connection files that cannot be read, with why: nothing is exported for them.
    pub unreadable: Vec<UnreadableLine>,
}

#[derive(Debug, Serialize)]
pub struct UnreadableLine {
    pub connection_id: String,
    pub state: String,
}

fn policy_of(home: &Home) -> RunPolicy {
    home.embedded.as_ref().map(|e| e.runs.policy).unwrap_or_default()
}

/// Every connection's line (an unreadable connection is listed apart; the others are still read).
pub async fn report(home: &Home, now: DateTime<Utc>) -> Result<StatusReport> {
    let ledger = HourLedger::new(home.control.store().clone());
    let policy = policy_of(home);
    let scan = home.control.scan_connections().await?;
    let mut connections = Vec::new();
    for conn in &scan.readable {
        let s: ConnectionStatus = home.control.status(&conn.id).await?;
        let owed = ledger.owed(&conn.id).await?;
        let health = health::assess(&ledger, conn, &s, &policy, now).await?;
        let freshness = freshness::summary(home.control.store().as_ref(), &ledger, conn, &owed, s.last_exported_hour, policy.freshness_slo, now).await?;
        connections.push(StatusLine {
            connection_id: conn.id.clone(),
            project_id: conn.project_id.clone(),
            enabled: conn.enabled,
            watermark: ledger.watermark(&conn.id).await?,
            last_exported_hour: s.last_exported_hour,
            lag_hours: s.lag_hours(now),
            owed,
            slo_met_ratio: freshness.ratio(),
            freshness,
            state: health.state(),
            conditions: health.conditions,
        });
    }
    let unreadable =
        scan.unreadable.iter().map(|bad| UnreadableLine { connection_id: bad.id.clone(), state: Health::unreadable(&bad.id, &bad.error).state() }).collect();
    Ok(StatusReport { at: now, freshness_slo_minutes: policy.freshness_slo.num_minutes(), connections, unreadable })
}

const HEADER: [&str; 9] = ["CONNECTION", "PROJECT", "ENABLED", "WATERMARK", "LAST EXPORTED", "LAG", "OWED", "FRESHNESS", "STATE"];

fn row(cells: [&str; 9]) -> String {
    format!(
        "{:<16} {:<8} {:<7} {:<13} {:<13} {:>5} {:>5} {:<11} {}\n",
        cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], cells[8]
    )
}

/// A condition's name: its leading capitals (`LATE FILES: ...` is `LATE FILES`).
fn label(condition: &str) -> &str {
    let end = condition.find(|c: char| !(c.is_ascii_uppercase() || c == ' ')).unwrap_or(condition.len());
    match condition[..end].trim_end() {
        "" => condition.split_whitespace().next().unwrap_or("?"),
        name => name,
    }
}

/// The STATE cell: `ok`, or the names of the conditions (each is then spelt out beneath the
/// line); when they do not fit, the first and how many more.
fn state_cell(conditions: &[String], line_so_far: usize) -> String {
    if conditions.is_empty() {
        return "ok".into();
    }
    let names: Vec<&str> = conditions.iter().map(|c| label(c)).collect();
    let all = names.join(", ");
    if line_so_far + all.len() <= report::WIDTH {
        all
    } else {
        format!("{} +{} more", names[0], names.len() - 1)
    }
}

/// The status table (also used by the demo): the watermark derived from the hour ledger,
/// the owed hours (oldest first), FRESHNESS (the newest hour's freshness, then in brackets
/// the hours of the last 24 that met the SLO out of those due), and STATE: `ok` only when
/// nothing is wrong, else the names of the conditions found, each spelt out beneath with
/// the command that fixes it (see `exporter::control::health`). Lines fit 100 columns. An
/// unreadable connection is listed as broken and the others are still shown.
pub async fn status_table(home: &Home, now: DateTime<Utc>) -> Result<String> {
    let report = report(home, now).await?;
    let mut out = row(HEADER);
    let show = |h: Option<UtcHour>| h.map(|h| h.to_string()).unwrap_or_else(|| "-".into());
    for line in &report.connections {
        let lag = line.lag_hours.map(|l| format!("{l}h")).unwrap_or_else(|| "-".into());
        let state = state_cell(&line.conditions, row(["", "", "", "", "", "", "", "", ""]).len() - 1 + line.connection_id.len().saturating_sub(16));
        out.push_str(&row([
            &line.connection_id,
            &line.project_id,
            &line.enabled.to_string(),
            &show(line.watermark),
            &show(line.last_exported_hour),
            &lag,
            &line.owed.len().to_string(),
            &line.freshness.cell(),
            &state,
        ]));
        for condition in &line.conditions {
            out.push_str(&report::wrap(condition, "  ", "    "));
        }
        if !line.owed.is_empty() {
            let listed: Vec<String> = line
                .owed
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
            let mut listed = listed;
            if line.owed.len() > 12 {
                listed.push(format!("... {} more", line.owed.len() - 12));
            }
            out.push_str(&report::wrap_items(&listed, "  owed: ", "    "));
        }
    }
    for bad in &report.unreadable {
        out.push_str(&row([&bad.connection_id, "?", "?", "-", "-", "-", "-", "-", label(&bad.state)]));
        out.push_str(&report::wrap(&bad.state, "  ", "    "));
    }
    Ok(out)
}

pub async fn status(home: &Home, now: DateTime<Utc>, json: bool) -> Result<ExitCode> {
    if json {
        crate::output::json(&report(home, now).await?);
    } else {
        print!("{}", status_table(home, now).await?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The watchdog's stack figures (label `stack`) and each connection's (labels `stack`,
/// `connection`), in the Prometheus text exposition format.
pub async fn metrics_text(home: &Home, now: DateTime<Utc>, stack: &str) -> Result<String> {
    let policy = policy_of(home);
    let survey = watchdog::survey(&home.control, &policy, now).await?;
    let report = report(home, now).await?;
    let dims = |extra: Option<&str>| {
        let mut d = vec![("Stack".to_string(), stack.to_string())];
        if let Some(c) = extra {
            d.push(("Connection".to_string(), c.to_string()));
        }
        d
    };
    let mut stack_set = MetricSet::new(now, dims(None));
    survey.stack.fill(&mut stack_set);
    let mut sets = vec![stack_set];
    for c in &survey.connections {
        let mut set = MetricSet::new(now, dims(Some(&c.connection_id)));
        let age = c.oldest_owed.map_or(0.0, |h| (now - h.end()).num_seconds().max(0) as f64);
        set.add("ConnectionOwedHours", Unit::Count, c.owed_hours as f64, "hours this connection owes")
            .add("ConnectionOverdueHours", Unit::Count, c.overdue_hours as f64, "this connection's owed hours past the freshness SLO")
            .add("ConnectionOldestOwedHourAgeSeconds", Unit::Seconds, age, "seconds since this connection's oldest owed hour ended")
            .add("ConnectionFailing", Unit::Count, f64::from(u8::from(c.failing)), "1 while the destination fails or hours wait for a retry")
            .add("ConnectionBroken", Unit::Count, f64::from(u8::from(c.broken)), "1 while hours cannot be exported as they are")
            .add("ConnectionLateFilesHours", Unit::Count, c.late_files_hours as f64, "exported hours whose late lake files wait");
        if let Some(line) = report.connections.iter().find(|l| l.connection_id == c.connection_id) {
            if let Some(last) = &line.freshness.last {
                set.add("ConnectionLastFreshnessSeconds", Unit::Seconds, last.freshness_seconds as f64, "freshness of the newest exported hour");
            }
            if let Some(ratio) = line.slo_met_ratio {
                set.add("ConnectionSloMet", Unit::Ratio, ratio, "share of the last 24 hours due whose marker met the freshness SLO");
            }
        }
        sets.push(set);
    }
    Ok(to_prometheus(&sets))
}

pub async fn metrics(home: &Home, now: DateTime<Utc>, stack: &str) -> Result<ExitCode> {
    print!("{}", metrics_text(home, now, stack).await?);
    Ok(ExitCode::SUCCESS)
}
