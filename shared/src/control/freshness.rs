//! Freshness: how long after an hour ends its complete marker is written, against the SLO
//! (default one hour after the hour ends, the seed's promise; `EXPORT_FRESHNESS_SLO_MINUTES`).
//!
//! - The run that first completes an hour records its freshness once, in
//!   `freshness/{conn}/{yyyy-MM-dd}/{HH}.json` (create-only: a redelivery or a later replace
//!   never rewrites it), in its run record and in its Hour Exported event.
//! - An hour is **due** one SLO after it ends, or one SLO after the connection was created
//!   for the hours before that (a new connection is not late for its first day's hours
//!   before its first run could take them).
//! - An hour is **overdue** when it is due and its marker is not written: an owed hour of the
//!   ledger, or an hour no scheduled run registered (the schedule was removed, the function
//!   never starts). The second kind is what makes silence visible: nothing failed, yet the
//!   hour is late.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::control::connection::Connection;
use crate::control::ledger::{HourLedger, Origin, OwedHour};
use crate::control::runs::first_owed_hour;
use crate::control::store::read_json;
use crate::error::Result;
use crate::hour::UtcHour;
use crate::model::hour_request::ExportMode;
use crate::ports::{CreateOutcome, ObjectStore};

/// The default freshness SLO: the marker within one hour after the hour ends.
pub const DEFAULT_FRESHNESS_SLO_MINUTES: i64 = 60;

/// The hours a status line's SLO ratio covers.
pub const SLO_WINDOW_HOURS: i64 = 24;

/// One hour's freshness, as its first complete export measured it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourFreshness {
    pub hour: UtcHour,
    /// When the run that wrote the marker finished writing it.
    pub marker_written: DateTime<Utc>,
    /// `marker_written` minus the hour's end.
    pub freshness_seconds: i64,
    /// The SLO in force then, in seconds after the hour's end (or after creation, see
    /// [`deadline`]).
    pub slo_seconds: i64,
    /// Written by its deadline.
    pub met: bool,
}

/// When `hour` is due: one SLO after it ends, or after the connection was created.
pub fn deadline(conn: &Connection, hour: UtcHour, slo: Duration) -> DateTime<Utc> {
    let created = conn.created.as_deref().and_then(|c| DateTime::parse_from_rfc3339(c).ok()).map(|t| t.with_timezone(&Utc));
    hour.end().max(created.unwrap_or(hour.end())) + slo
}

impl HourFreshness {
    pub fn measure(conn: &Connection, hour: UtcHour, marker_written: DateTime<Utc>, slo: Duration) -> Self {
        HourFreshness {
            hour,
            marker_written,
            freshness_seconds: (marker_written - hour.end()).num_seconds(),
            slo_seconds: slo.num_seconds(),
            met: marker_written <= deadline(conn, hour, slo),
        }
    }
}

fn day_prefix(conn: &str, day: chrono::NaiveDate) -> String {
    format!("freshness/{conn}/{}/", day.format("%Y-%m-%d"))
}

fn key(conn: &str, hour: UtcHour) -> String {
    format!("{}{:02}.json", day_prefix(conn, hour.start().date_naive()), hour.start().format("%H"))
}

/// Keeps the first measurement of `f.hour`; later ones (a redelivery, a replace) are not kept.
pub async fn record(store: &dyn ObjectStore, conn: &str, f: &HourFreshness) -> Result<CreateOutcome> {
    let body = serde_json::to_vec(f).expect("freshness serialises");
    store.put_if_absent(&key(conn, f.hour), body.into()).await
}

/// The measurement of `hour`, when its first export made one.
pub async fn recorded(store: &dyn ObjectStore, conn: &str, hour: UtcHour) -> Result<Option<HourFreshness>> {
    read_json(store, &key(conn, hour)).await
}

/// The measured hours of the days `from` to `to` (inclusive), oldest first.
async fn measured(store: &dyn ObjectStore, conn: &str, from: UtcHour, to: UtcHour) -> Result<Vec<HourFreshness>> {
    let mut out = Vec::new();
    let mut day = from.start().date_naive();
    while day <= to.start().date_naive() {
        for meta in store.list(&day_prefix(conn, day)).await? {
            if let Some(f) = read_json::<HourFreshness>(store, &meta.key).await? {
                if f.hour >= from && f.hour <= to {
                    out.push(f);
                }
            }
        }
        day = day.succ_opt().unwrap_or(day);
        if day == chrono::NaiveDate::MAX {
            break;
        }
    }
    Ok(out)
}

/// What the FRESHNESS column shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreshnessSummary {
    /// The newest measured hour.
    pub last: Option<HourFreshness>,
    /// Hours due in the last 24 hours whose marker was written by their deadline.
    pub met: u32,
    /// Hours due in the last 24 hours whose outcome is known (met, written late, or still
    /// overdue); hours completed without a measurement (by a replace only) are left out.
    pub due: u32,
}

impl FreshnessSummary {
    /// `21m(23/24)`: the newest hour's freshness, then the hours that met the SLO out of
    /// those due in the last 24 hours; one word, so the table's columns stay countable.
    pub fn cell(&self) -> String {
        let last = self.last.as_ref().map(|f| minutes(f.freshness_seconds)).unwrap_or_else(|| "-".into());
        if self.due == 0 {
            return last;
        }
        format!("{last}({}/{})", self.met, self.due)
    }

    pub fn ratio(&self) -> Option<f64> {
        (self.due > 0).then(|| self.met as f64 / self.due as f64)
    }
}

/// `75s` → `1m`, `4000s` → `1h06m`.
pub fn minutes(seconds: i64) -> String {
    let m = seconds.max(0) / 60;
    if m >= 60 {
        format!("{}h{:02}m", m / 60, m % 60)
    } else {
        format!("{m}m")
    }
}

/// The hours whose deadline falls in the last [`SLO_WINDOW_HOURS`] at `now`, from the
/// connection's first owed hour on.
fn window(conn: &Connection, first: UtcHour, slo: Duration, now: DateTime<Utc>) -> Result<Vec<UtcHour>> {
    let newest = UtcHour::containing(now - slo)?.prev();
    let oldest = UtcHour::containing(now - slo - Duration::hours(SLO_WINDOW_HOURS))?.max(first);
    let mut hours = Vec::new();
    let mut h = oldest;
    while h <= newest {
        let due = deadline(conn, h, slo);
        if due <= now && due > now - Duration::hours(SLO_WINDOW_HOURS) {
            hours.push(h);
        }
        h = h.next();
    }
    Ok(hours)
}

/// The FRESHNESS figures of `conn` at `now`.
pub async fn summary(
    store: &dyn ObjectStore,
    ledger: &HourLedger,
    conn: &Connection,
    owed: &[OwedHour],
    last_exported: Option<UtcHour>,
    slo: Duration,
    now: DateTime<Utc>,
) -> Result<FreshnessSummary> {
    let first = first_hour(ledger, conn, now).await?;
    let hours = window(conn, first, slo, now)?;
    // The last two days: every hour of the window, and the newest measurement to show.
    let two_days_ago = UtcHour::containing(now - Duration::hours(2 * SLO_WINDOW_HOURS))?;
    let from = hours.first().map_or(two_days_ago, |&h| h.min(two_days_ago));
    let records = measured(store, &conn.id, from, UtcHour::containing(now)?).await?;
    let last = records.iter().max_by_key(|f| f.hour).cloned();
    let (mut met, mut due) = (0, 0);
    let origin = ledger.origin(&conn.id).await?;
    let unregistered = match newest_due(conn, slo, now)? {
        Some(newest) => untaken(ledger, conn, origin.as_ref(), last_exported, newest, now).await?,
        None => Untaken::default(),
    };
    for h in hours {
        if let Some(f) = records.iter().find(|f| f.hour == h) {
            due += 1;
            met += u32::from(f.met);
        } else if owed.iter().any(|o| o.hour == h && counts(o)) || unregistered.contains(h) {
            // Still not written: overdue.
            due += 1;
        }
    }
    Ok(FreshnessSummary { last, met, due })
}

/// An owed hour whose marker is still to be written (not late data of an exported hour, not
/// an exported hour whose event waits).
pub fn counts(o: &OwedHour) -> bool {
    o.mode != ExportMode::Late && o.event_pending.is_none()
}

/// The connection's first owed hour: the ledger's origin, or where it will start.
async fn first_hour(ledger: &HourLedger, conn: &Connection, now: DateTime<Utc>) -> Result<UtcHour> {
    Ok(match ledger.origin(&conn.id).await? {
        Some(o) => o.origin,
        None => first_owed_hour(conn, UtcHour::containing(now)?),
    })
}

/// The oldest hour of `conn` past its deadline with no marker written, and how many such
/// hours there are: owed hours of the ledger, and the untaken hours (see [`Untaken`]).
/// `origin` is the ledger's ([`HourLedger::origin`]). `None` when nothing is overdue.
pub async fn overdue(
    ledger: &HourLedger,
    conn: &Connection,
    owed: &[OwedHour],
    origin: Option<&Origin>,
    last_exported: Option<UtcHour>,
    slo: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Overdue>> {
    let owed_due: Vec<UtcHour> = owed.iter().filter(|o| counts(o) && deadline(conn, o.hour, slo) <= now).map(|o| o.hour).collect();
    let untaken = match newest_due(conn, slo, now)? {
        Some(newest) => untaken(ledger, conn, origin, last_exported, newest, now).await?,
        None => Untaken::default(),
    };
    let hours = untaken.count() + owed_due.iter().filter(|h| !untaken.contains(**h)).count() as u64;
    let oldest = owed_due.iter().copied().chain(untaken.oldest()).min();
    Ok(oldest.map(|oldest| Overdue { oldest, hours, due: deadline(conn, oldest, slo) }))
}

/// At most this many of the newest unregistered hours are read one by one (a backfill or an
/// export may have completed them); older ones count as untaken unless the status says an
/// hour at least as new was exported.
const MAX_UNTAKEN_CHECKS: i64 = 48;

/// The hours of an enabled connection up to `through` that no scheduled run registered and
/// no run completed: they are owed all the same, and nothing else will say so. The newest
/// ones are read from the ledger; after a long silence the older ones are counted, not listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Untaken {
    /// Every hour of this span is untaken (the older part of a long silence).
    pub span: Option<(UtcHour, UtcHour)>,
    /// Untaken hours among the newest ones, read one by one.
    pub checked: Vec<UtcHour>,
}

impl Untaken {
    pub fn contains(&self, h: UtcHour) -> bool {
        self.checked.contains(&h) || self.span.is_some_and(|(from, to)| h >= from && h <= to)
    }

    pub fn count(&self) -> u64 {
        self.checked.len() as u64 + self.span.map_or(0, |(from, to)| (to.index() - from.index() + 1) as u64)
    }

    pub fn oldest(&self) -> Option<UtcHour> {
        self.span.map(|(from, _)| from).or(self.checked.first().copied())
    }
}

/// See [`Untaken`]; `last_exported` is the status's newest exported hour.
pub async fn untaken(
    ledger: &HourLedger,
    conn: &Connection,
    origin: Option<&Origin>,
    last_exported: Option<UtcHour>,
    through: UtcHour,
    now: DateTime<Utc>,
) -> Result<Untaken> {
    let mut out = Untaken::default();
    let from = unregistered_from(conn, origin, now)?;
    if !conn.enabled || from > through {
        return Ok(out);
    }
    let read_from = if through.index() - from.index() >= MAX_UNTAKEN_CHECKS { UtcHour::from_index(through.index() - MAX_UNTAKEN_CHECKS + 1)? } else { from };
    let mut older_from = last_exported.map_or(from, |l| l.next().max(from));
    // The status's newest exported hour can lag behind runs that finished together (its
    // update is a read-modify-write): the hours just after it are read until one is
    // untaken, so an hour exported by them is never counted (one read in a plain silence).
    let mut walked = 0;
    while older_from < read_from && walked < MAX_UNTAKEN_CHECKS && ledger.complete_manifest(&conn.id, older_from).await?.is_some() {
        older_from = older_from.next();
        walked += 1;
    }
    if older_from < read_from {
        out.span = Some((older_from, read_from.prev()));
    }
    let mut h = read_from;
    while h <= through {
        if ledger.complete_manifest(&conn.id, h).await?.is_none() {
            out.checked.push(h);
        }
        h = h.next();
    }
    Ok(out)
}

/// The newest hour due at `now`, if any: every hour up to it is past its deadline.
pub fn newest_due(conn: &Connection, slo: Duration, now: DateTime<Utc>) -> Result<Option<UtcHour>> {
    let newest = UtcHour::containing(now - slo)?.prev();
    Ok((deadline(conn, newest, slo) <= now).then_some(newest))
}

/// The first hour no scheduled run has registered yet.
pub fn unregistered_from(conn: &Connection, origin: Option<&Origin>, now: DateTime<Utc>) -> Result<UtcHour> {
    Ok(match origin {
        Some(o) => o.registered_to.next(),
        None => first_owed_hour(conn, UtcHour::containing(now)?),
    })
}

/// Hours past their freshness deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    pub oldest: UtcHour,
    pub hours: u64,
    /// The oldest hour's deadline.
    pub due: DateTime<Utc>,
}

impl Overdue {
    /// How long past the SLO the oldest overdue hour is.
    pub fn late_by(&self, now: DateTime<Utc>) -> Duration {
        now - self.due
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::local::memory::MemoryStore;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn h(s: &str) -> UtcHour {
        UtcHour::parse(s).unwrap()
    }

    fn conn(created: &str, enabled: bool) -> Connection {
        serde_json::from_value(serde_json::json!({"id": "c1", "org_id": "42", "project_id": "187520", "created": created, "enabled": enabled,
            "destination": {"type": "local", "path": "/tmp/dest", "prefix": "exports"}, "admins": ["admin@example.com"], "creator": "owner@example.com"}))
        .unwrap()
    }

    #[test]
    fn an_hour_is_due_one_slo_after_it_ends_or_after_the_connection_was_created() {
        let slo = Duration::minutes(60);
        let c = conn("2020-01-25T15:00:00Z", true);
        assert_eq!(deadline(&c, h("2020-01-25T16"), slo), t("2020-01-25T18:00:00Z"));
        assert_eq!(deadline(&c, h("2020-01-25T03"), slo), t("2020-01-25T16:00:00Z"), "before creation: one SLO after it");
        let f = HourFreshness::measure(&c, h("2020-01-25T16"), t("2020-01-25T17:20:00Z"), slo);
        assert_eq!((f.freshness_seconds, f.met), (1200, true));
        let late = HourFreshness::measure(&c, h("2020-01-25T16"), t("2020-01-25T18:00:01Z"), slo);
        assert!(!late.met);
        assert_eq!(minutes(late.freshness_seconds), "1h00m");
        assert_eq!(newest_due(&c, slo, t("2020-01-25T15:59:00Z")).unwrap(), None, "nothing is due before one SLO after creation");
        assert_eq!(newest_due(&c, slo, t("2020-01-25T18:00:00Z")).unwrap(), Some(h("2020-01-25T16")));
    }

    #[tokio::test]
    async fn untaken_hours_after_a_long_silence_are_counted_and_the_newest_read_one_by_one() {
        let ledger = HourLedger::new(Arc::new(MemoryStore::new("control")));
        let slo = Duration::minutes(60);
        let c = conn("2020-01-25T00:05:00Z", true);
        ledger.register_through("c1", h("2020-01-25T00"), h("2020-01-25T02"), 24).await.unwrap();
        let origin = ledger.origin("c1").await.unwrap();
        // Years of silence: counted, not listed.
        let now = t("2021-01-25T00:30:00Z");
        let newest = newest_due(&c, slo, now).unwrap().unwrap();
        let u = untaken(&ledger, &c, origin.as_ref(), Some(h("2020-01-25T02")), newest, now).await.unwrap();
        assert_eq!(u.oldest(), Some(h("2020-01-25T03")));
        assert_eq!(u.count(), (newest.index() - h("2020-01-25T03").index() + 1) as u64);
        assert_eq!(u.checked.len(), 48, "only the newest hours are read");
        // The newest hours are read: a backfill may have completed some (whatever the
        // status's newest exported hour says: concurrent runs may have left it behind).
        let spec = c.export_spec().unwrap();
        ledger.record_manifest("c1", &crate::export::manifest::Manifest::empty(&spec, h("2020-01-25T04"))).await.unwrap();
        ledger.record_manifest("c1", &crate::export::manifest::Manifest::empty(&spec, h("2020-01-25T06"))).await.unwrap();
        let u = untaken(&ledger, &c, origin.as_ref(), Some(h("2020-01-25T05")), h("2020-01-25T06"), t("2020-01-25T08:00:00Z")).await.unwrap();
        assert_eq!(u.checked, vec![h("2020-01-25T03"), h("2020-01-25T05")], "04 and 06 were completed by a backfill");
        assert_eq!((u.span, u.count()), (None, 2));
        let owed = ledger.owed("c1").await.unwrap();
        let o = overdue(&ledger, &c, &owed, origin.as_ref(), Some(h("2020-01-25T04")), slo, t("2020-01-25T08:00:00Z")).await.unwrap().unwrap();
        assert_eq!((o.oldest, o.hours), (h("2020-01-25T00"), 5), "the ledger's 00..02 and the untaken 03 and 05");
        // Years of silence after a backfill whose last hours the status missed (a lost
        // update): the hours after the status's newest are read until one is untaken.
        let newest = newest_due(&c, slo, now).unwrap().unwrap();
        let u = untaken(&ledger, &c, origin.as_ref(), Some(h("2020-01-25T03")), newest, now).await.unwrap();
        assert_eq!(u.oldest(), Some(h("2020-01-25T05")), "04 is exported although the status names 03");
        assert_eq!(u.count(), (newest.index() - h("2020-01-25T05").index() + 1) as u64);
        // A disabled connection is never late for hours nobody takes.
        let off = conn("2020-01-25T00:05:00Z", false);
        assert_eq!(untaken(&ledger, &off, origin.as_ref(), None, h("2020-01-25T06"), t("2020-01-25T08:00:00Z")).await.unwrap(), Untaken::default());
    }
}
