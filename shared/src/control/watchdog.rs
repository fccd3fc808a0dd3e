//! The watchdog: on its own schedule (not only when exports run), it reads every
//! connection's ledger and status and sums up the stack: the oldest owed hour's age, owed
//! and overdue hours, connections late, failing and broken, late files waiting. Exports that
//! stop for any reason (a schedule deleted, a function that never starts, a ledger that
//! stops moving, an hour stuck `exporting`) raise no error, but they do raise the oldest owed
//! hour's age: the alarm on it pages within the SLO. Its own heartbeat (`WatchdogRuns`)
//! feeds the alarm that fires when the watchdog itself stops reporting.
//!
//! Cost per run: one listing of the connections, then per connection its file, its status,
//! its ledger origin and its owed hours (one listing plus one read per owed hour): about
//! four requests per healthy connection, 16 connections at a time.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::control::connection::Connection;
use crate::control::freshness::{self, Overdue};
use crate::control::ledger::{HourLedger, OwedState};
use crate::control::metrics::MetricsOut;
use crate::control::runs::RunPolicy;
use crate::control::store::ControlStore;
use crate::error::Result;
use crate::hour::UtcHour;
use crate::model::hour_request::ExportMode;
use crate::model::metrics::{MetricSet, Unit};

/// Connections read at once.
const SURVEY_CONCURRENCY: usize = 16;

/// One connection as the watchdog sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionFigures {
    pub connection_id: String,
    pub enabled: bool,
    /// Owed hours whose marker is still to be written: in the ledger, plus settled hours no
    /// scheduled run has registered.
    pub owed_hours: u64,
    /// The oldest of them.
    pub oldest_owed: Option<UtcHour>,
    /// Hours past the freshness SLO.
    pub overdue_hours: u64,
    pub oldest_overdue: Option<UtcHour>,
    /// The destination fails, or hours wait for a retry.
    pub failing: bool,
    /// Hours that cannot be exported as they are (parked), or an unreadable connection file.
    pub broken: bool,
    /// Exported hours with late lake files still to export.
    pub late_files_hours: u32,
}

/// What one connection's figures could not be read as: counted as broken, never stopping
/// the others.
fn unreadable(id: &str) -> ConnectionFigures {
    ConnectionFigures {
        connection_id: id.to_string(),
        enabled: true,
        owed_hours: 0,
        oldest_owed: None,
        overdue_hours: 0,
        oldest_overdue: None,
        failing: false,
        broken: true,
        late_files_hours: 0,
    }
}

/// The figures of `conn` at `now`.
pub async fn connection_figures(
    control: &ControlStore,
    ledger: &HourLedger,
    conn: &Connection,
    policy: &RunPolicy,
    now: DateTime<Utc>,
) -> Result<ConnectionFigures> {
    let status = control.status(&conn.id).await?;
    let owed = ledger.owed(&conn.id).await?;
    let origin = ledger.origin(&conn.id).await?;
    let in_ledger: Vec<UtcHour> = owed.iter().filter(|o| freshness::counts(o)).map(|o| o.hour).collect();
    // Settled hours that no scheduled run registered (nor any run completed): owed all the same.
    let untaken = freshness::untaken(ledger, conn, origin.as_ref(), status.last_exported_hour, policy.latest_ready(now)?, now).await?;
    let owed_hours = untaken.count() + in_ledger.iter().filter(|h| !untaken.contains(**h)).count() as u64;
    let oldest_owed = in_ledger.iter().copied().chain(untaken.oldest()).min();
    let overdue: Option<Overdue> = freshness::overdue(ledger, conn, &owed, origin.as_ref(), status.last_exported_hour, policy.freshness_slo, now).await?;
    Ok(ConnectionFigures {
        connection_id: conn.id.clone(),
        enabled: conn.enabled,
        owed_hours,
        oldest_owed,
        overdue_hours: overdue.map_or(0, |o| o.hours),
        oldest_overdue: overdue.map(|o| o.oldest),
        failing: status.failing_since.is_some() || owed.iter().any(|o| o.state == OwedState::Failing && !o.parked),
        broken: owed.iter().any(|o| o.parked),
        late_files_hours: owed.iter().filter(|o| o.mode == ExportMode::Late).count() as u32,
    })
}

/// The stack's figures: what the alarms watch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackFigures {
    pub at: DateTime<Utc>,
    pub connections: u32,
    pub connections_enabled: u32,
    /// Seconds from the oldest owed hour's end to `at` (0 when nothing is owed).
    pub oldest_owed_age_seconds: i64,
    pub owed_hours: u64,
    pub overdue_hours: u64,
    pub connections_late: u32,
    pub connections_failing: u32,
    pub connections_broken: u32,
    pub late_files_hours: u32,
}

/// Every connection's figures and their sum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Survey {
    pub stack: StackFigures,
    pub connections: Vec<ConnectionFigures>,
}

/// Reads every connection (an unreadable one, or one whose ledger cannot be read, counts as
/// broken and the others are still read).
pub async fn survey(control: &ControlStore, policy: &RunPolicy, now: DateTime<Utc>) -> Result<Survey> {
    let ledger = HourLedger::new(control.store().clone());
    let scan = control.scan_connections().await?;
    // A few connections at a time: each is a handful of small sequential reads, so the
    // survey's time is round trips, not work.
    let ledger = &ledger;
    let mut connections: Vec<ConnectionFigures> = futures::stream::iter(&scan.readable)
        .map(|conn| async move {
            connection_figures(control, ledger, conn, policy, now).await.unwrap_or_else(|e| {
                tracing::error!(connection = %conn.id, operator_alert = true, error = %e, "watchdog: the connection's ledger or status cannot be read; counted as broken");
                unreadable(&conn.id)
            })
        })
        .buffered(SURVEY_CONCURRENCY)
        .collect()
        .await;
    connections.extend(scan.unreadable.iter().map(|bad| unreadable(&bad.id)));
    let enabled: Vec<&ConnectionFigures> = connections.iter().filter(|c| c.enabled).collect();
    let oldest = enabled.iter().filter_map(|c| c.oldest_owed).min();
    let stack = StackFigures {
        at: now,
        connections: connections.len() as u32,
        connections_enabled: enabled.len() as u32,
        oldest_owed_age_seconds: oldest.map_or(0, |h| (now - h.end()).num_seconds().max(0)),
        owed_hours: enabled.iter().map(|c| c.owed_hours).sum(),
        overdue_hours: enabled.iter().map(|c| c.overdue_hours).sum(),
        connections_late: enabled.iter().filter(|c| c.overdue_hours > 0).count() as u32,
        connections_failing: connections.iter().filter(|c| c.failing).count() as u32,
        connections_broken: connections.iter().filter(|c| c.broken).count() as u32,
        late_files_hours: connections.iter().map(|c| c.late_files_hours).sum(),
    };
    Ok(Survey { stack, connections })
}

impl StackFigures {
    /// Fills `set` with the figures (`WatchdogRuns` is the heartbeat).
    pub fn fill(&self, set: &mut MetricSet) {
        set.add("WatchdogRuns", Unit::Count, 1.0, "watchdog surveys (the heartbeat its silence alarm watches)")
            .add("OldestOwedHourAgeSeconds", Unit::Seconds, self.oldest_owed_age_seconds as f64, "seconds since the oldest owed hour ended")
            .add("OwedHours", Unit::Count, self.owed_hours as f64, "hours owed and not yet exported")
            .add("OverdueHours", Unit::Count, self.overdue_hours as f64, "owed hours past the freshness SLO")
            .add("ConnectionsLate", Unit::Count, self.connections_late as f64, "connections with an hour past the freshness SLO")
            .add("ConnectionsFailing", Unit::Count, self.connections_failing as f64, "connections whose destination fails or whose hours wait for a retry")
            .add(
                "ConnectionsBroken",
                Unit::Count,
                self.connections_broken as f64,
                "connections with hours that cannot be exported as they are, or an unreadable file",
            )
            .add("LateFilesHours", Unit::Count, self.late_files_hours as f64, "exported hours whose late lake files wait")
            .add("Connections", Unit::Count, self.connections as f64, "connections in the control store");
    }
}

/// Surveys and publishes the stack's figures; returns them.
pub async fn run(control: &ControlStore, policy: &RunPolicy, out: Option<&MetricsOut>, now: DateTime<Utc>) -> Result<Survey> {
    let survey = survey(control, policy, now).await?;
    if let Some(out) = out {
        let mut set = out.stack_set(now);
        survey.stack.fill(&mut set);
        out.sink.publish(&set);
    }
    tracing::info!(
        connections = survey.stack.connections,
        oldest_owed_age_seconds = survey.stack.oldest_owed_age_seconds,
        overdue_hours = survey.stack.overdue_hours,
        connections_late = survey.stack.connections_late,
        "watchdog survey"
    );
    Ok(survey)
}
