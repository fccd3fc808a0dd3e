//! What is wrong with a connection, read from its ledger and status: the STATE that
//! `exportctl status` shows. `ok` means nothing is wrong: nothing owed past its settle time,
//! no run stuck past its lease, no late file waiting, no hour that cannot be exported as it
//! is, no failing destination, no gap. Otherwise each condition is one short sentence that
//! starts with an upper-case word and, where an operator can act, names the command.

use chrono::{DateTime, Duration, Utc};

use crate::control::connection::Connection;
use crate::control::freshness;
use crate::control::ledger::{HourLedger, OwedHour, OwedState};
use crate::control::runs::{RunPolicy, BEHIND_GRACE_MINUTES};
use crate::control::store::{ConnectionStatus, Gap};
use crate::error::Result;
use crate::hour::HourRange;
use crate::model::hour_request::ExportMode;

/// The conditions found; none means `ok`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub conditions: Vec<String>,
}

impl Health {
    pub fn is_ok(&self) -> bool {
        self.conditions.is_empty()
    }

    /// `ok`, or the conditions joined with `; `.
    pub fn state(&self) -> String {
        if self.is_ok() {
            "ok".into()
        } else {
            self.conditions.join("; ")
        }
    }

    /// A connection whose file cannot be read.
    pub fn unreadable(id: &str, error: &crate::error::ExportError) -> Health {
        Health {
            conditions: vec![format!(
                "BROKEN: the connection file cannot be read ({error}); nothing is exported for it — fix the file or run: exportctl connections delete {id}"
            )],
        }
    }
}

/// First line of an error, shortened for a status cell.
fn short(text: &str) -> String {
    const MAX: usize = 160;
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= MAX {
        line.to_string()
    } else {
        format!("{}…", line.chars().take(MAX).collect::<String>())
    }
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

/// The health of `conn` at `now`.
pub async fn assess(ledger: &HourLedger, conn: &Connection, status: &ConnectionStatus, policy: &RunPolicy, now: DateTime<Utc>) -> Result<Health> {
    let owed = ledger.owed(&conn.id).await?;
    let dead = ledger.dead_runs(&conn.id, now, policy.lease).await?;
    let mut conditions = Vec::new();
    let first = |pick: &dyn Fn(&OwedHour) -> bool| owed.iter().filter(|h| pick(h)).cloned().collect::<Vec<_>>();

    let parked = first(&|h| h.parked);
    if let Some(oldest) = parked.first() {
        let error = oldest.last_error.as_deref().unwrap_or_default();
        let fix = if oldest.error_kind.as_deref() == Some("RunStopped") {
            format!(
                "it stopped its run on every attempt (timeout or out of memory?): raise the function's memory or timeout, or export it from a machine without those limits — run: exportctl export {} --hour {} (with --cloud for a cloud destination)",
                conn.id, oldest.hour
            )
        } else {
            format!("retrying cannot help: {} — fix it, then run: exportctl export {} --hour {}", short(error), conn.id, oldest.hour)
        };
        conditions.push(format!("BROKEN: {} hour(s) cannot be exported as they are (oldest {}); {fix}", parked.len(), oldest.hour));
    }
    if let Some(since) = status.failing_since {
        let blame = status.last_error_blame.as_deref().unwrap_or("destination");
        conditions.push(format!("FAILING ({blame}) since {}: {}", at(since), short(status.last_error.as_deref().unwrap_or_default())));
    }
    if !dead.is_empty() {
        let (hour, lease) = (&dead[0].0, &dead[0].1);
        conditions.push(format!(
            "STUCK: {} hour(s) exporting past their lease (oldest {}: run {} stopped without a result at {}); the next hourly run counts it as a failed attempt",
            dead.len(),
            hour.hour,
            lease.run_id,
            at(lease.expires)
        ));
    }
    let failing = first(&|h| h.state == OwedState::Failing && !h.parked);
    if let Some(oldest) = failing.first() {
        let error = short(oldest.last_error.as_deref().unwrap_or_default());
        let when = match (oldest.retries_exhausted, oldest.next_retry) {
            (true, _) => "retries over: every hourly run tries again".to_string(),
            (false, Some(t)) => format!("attempt {}, next retry {}", oldest.attempts, at(t)),
            (false, None) => format!("attempt {}", oldest.attempts),
        };
        // Already said by the FAILING line when the destination is the cause.
        if status.failing_since.is_none() || failing.iter().any(|h| h.blame.as_deref() != Some("destination")) {
            let blame = oldest.blame.as_deref().unwrap_or("destination");
            conditions.push(format!("RETRYING {} hour(s) ({blame}), oldest {}, {when}: {error}", failing.len(), oldest.hour));
        }
    }
    let late = first(&|h| h.mode == ExportMode::Late && h.state != OwedState::Failing && h.event_pending.is_none());
    let late_failing = failing.iter().filter(|h| h.mode == ExportMode::Late).count();
    if let Some(oldest) = late.first().or(failing.iter().find(|h| h.mode == ExportMode::Late)) {
        conditions.push(format!(
            "LATE FILES: {} hour(s) have late lake files not exported yet (oldest {}) — run: exportctl export {} --hour {} --mode late",
            late.len() + late_failing,
            oldest.hour,
            conn.id,
            oldest.hour
        ));
    }
    let events = first(&|h| h.event_pending.is_some());
    if let Some(oldest) = events.first() {
        conditions.push(format!(
            "EVENT PENDING: {} hour(s) exported but their Hour Exported event is not published yet (oldest {}); the next run publishes it",
            events.len(),
            oldest.hour
        ));
    }
    let grace = Duration::minutes(BEHIND_GRACE_MINUTES);
    let behind = first(&|h| h.state == OwedState::Pending && h.mode != ExportMode::Late && h.event_pending.is_none() && policy.ready_at(h.hour) + grace <= now);
    if let Some(oldest) = behind.first() {
        let what = if conn.enabled {
            "owed past their settle time".to_string()
        } else {
            format!("owed while the connection is disabled — run: exportctl connections enable {}", conn.id)
        };
        conditions.push(format!("BEHIND: {} hour(s) {what} (oldest {})", behind.len(), oldest.hour));
    }
    // Set by the run whose commit ran the upkeep; removed by the next upkeep of the table
    // that succeeds.
    for (table, error) in &status.table_upkeep_failures {
        conditions.push(format!(
            "TABLE UPKEEP (checkpoint, vacuum, log retention) failed for the Delta table at {table}, {}; the hours are exported and read correctly, but the log grows and replaced files stay until an upkeep succeeds (it is retried at every commit) — fix what the error names",
            short(error)
        ));
    }
    // Read through the ledger: a gap that a backfill filled since is gone at once.
    if let Some(gap) = status.gap.clone() {
        if let Some(gap) = remaining_gap(ledger, &conn.id, gap).await? {
            conditions.push(format!("GAP {} never exported — run: {}", gap.range, gap.backfill_command));
        }
    }
    // Last, so the causes above come first; LATE says what they cost.
    let origin = ledger.origin(&conn.id).await?;
    if let Some(late) = freshness::overdue(ledger, conn, &owed, origin.as_ref(), status.last_exported_hour, policy.freshness_slo, now).await? {
        let registered_to = origin.map(|o| o.registered_to);
        // Nothing owed in the ledger is that old: no scheduled run registered the hour.
        let cause = if registered_to.is_none_or(|r| late.oldest > r) {
            format!(
                "no scheduled run has taken hours since {} — is the connection's hourly schedule there and the function running? run: exportctl connections enable {}",
                registered_to.map(|r| r.to_string()).unwrap_or_else(|| "it was created".into()),
                conn.id
            )
        } else {
            "see the conditions that follow".to_string()
        };
        conditions.push(format!(
            "LATE: {} hour(s) past the freshness SLO of {} (oldest {}, due {}, {} overdue); {cause}",
            late.hours,
            freshness::minutes(policy.freshness_slo.num_seconds()),
            late.oldest,
            at(late.due),
            freshness::minutes(late.late_by(now).num_seconds())
        ));
    }
    Ok(Health { conditions })
}

/// What is left of a gap once its completed hours at either end are taken off (`None` when
/// every hour is complete).
pub async fn remaining_gap(ledger: &HourLedger, conn_id: &str, gap: Gap) -> Result<Option<Gap>> {
    let (mut from, mut to) = (gap.range.from, gap.range.to);
    while from <= to && ledger.complete_manifest(conn_id, from).await?.is_some() {
        from = from.next();
    }
    while from <= to && ledger.complete_manifest(conn_id, to).await?.is_some() {
        to = to.prev();
    }
    if from > to {
        return Ok(None);
    }
    let range = HourRange::new(from, to)?;
    Ok(Some(Gap { range, backfill_command: format!("exportctl backfill {conn_id} --from {} --to {}", range.from, range.to) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory::MemoryStore;
    use crate::hour::UtcHour;
    use std::sync::Arc;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn conn() -> Connection {
        serde_json::from_value(serde_json::json!({"id": "c1", "org_id": "42", "project_id": "187520",
            "destination": {"type": "local", "path": "/tmp/dest", "prefix": "exports"}, "admins": ["admin@example.com"], "creator": "owner@example.com"}))
        .unwrap()
    }

    #[tokio::test]
    async fn ok_only_when_nothing_is_owed_past_its_settle_time() {
        let ledger = HourLedger::new(Arc::new(MemoryStore::new("control")));
        let policy = RunPolicy::default();
        let status = ConnectionStatus::default();
        let hour = UtcHour::parse("2020-01-25T03").unwrap();
        let health = |now| {
            let (ledger, status, policy) = (ledger.clone(), status.clone(), policy);
            async move { assess(&ledger, &conn(), &status, &policy, t(now)).await.unwrap() }
        };
        assert!(health("2020-01-25T04:20:00Z").await.is_ok(), "nothing owed");
        ledger.save_owed("c1", &OwedHour::pending(hour, ExportMode::Recurring)).await.unwrap();
        assert!(health("2020-01-25T04:20:00Z").await.is_ok(), "owed, but the hourly run is due to take it");
        let late = health("2020-01-25T04:31:00Z").await;
        assert!(late.state().starts_with("BEHIND: 1 hour(s) owed past their settle time (oldest 2020-01-25T03)"), "{}", late.state());
        let mut parked = OwedHour::pending(hour, ExportMode::Recurring);
        parked.state = OwedState::Failing;
        parked.parked = true;
        parked.error_kind = Some("RunStopped".into());
        ledger.save_owed("c1", &parked).await.unwrap();
        let broken = health("2020-01-25T09:00:00Z").await.state();
        assert!(broken.starts_with("BROKEN: 1 hour(s)") && broken.contains("exportctl export c1 --hour 2020-01-25T03"), "{broken}");
    }

    #[tokio::test]
    async fn a_delta_table_whose_upkeep_failed_is_not_ok_until_an_upkeep_succeeds() {
        let ledger = HourLedger::new(Arc::new(MemoryStore::new("control")));
        let mut status = ConnectionStatus::default();
        status.table_upkeep_failures.insert("s3://b/exports/187520".into(), "version 10: access denied (s3:DeleteObject)".into());
        let health = assess(&ledger, &conn(), &status, &RunPolicy::default(), t("2020-01-25T04:20:00Z")).await.unwrap();
        assert!(
            health.state().starts_with("TABLE UPKEEP (checkpoint, vacuum, log retention) failed for the Delta table at s3://b/exports/187520, version 10:"),
            "{}",
            health.state()
        );
        assert!(health.state().contains("s3:DeleteObject"), "the cause is named");
        status.table_upkeep_failures.clear();
        assert!(assess(&ledger, &conn(), &status, &RunPolicy::default(), t("2020-01-25T04:20:00Z")).await.unwrap().is_ok());
    }
}
