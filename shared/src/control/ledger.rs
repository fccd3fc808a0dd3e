//! The hour ledger: per connection, every hour the product owes and its state, kept in the
//! control store. It is the single source of truth for "what is still to export":
//!
//! ```text
//! ledger/{conn}/origin.json                   first owed hour, last hour registered
//! ledger/{conn}/owed/{yyyy-MM-ddTHH}.json     an owed hour: pending, exporting or failing
//! ledger/{conn}/complete/{yyyy-MM-ddTHH}.json the manifest of a completed hour (late-data checks)
//! ledger/{conn}/leases/{hour}/{run}.json      who is exporting the hour, until when
//! ```
//!
//! An hour enters the ledger when a scheduled run registers it (from the start of the
//! connection's creation day) or when any run starts on it; it leaves only when its complete
//! marker is written and its "Hour Exported" event published ([`HourLedger::complete`]).
//! Giving up retries never removes it. The
//! watermark is derived: the hour before the oldest owed hour.
//!
//! **Leases** give one writer per hour. Each run announces itself with a create-only object
//! of its own under the hour's lease folder, then lists the folder: it holds the lease only if
//! no other unexpired announcement is there. Of two racing runs at least the later lister sees
//! the other, so two can never both hold it (both may back off; the hour stays owed). An
//! expired announcement (its run died) is ignored and cleaned up. Runs that withdrew because
//! they announced at the same moment try again after a random pause. Expiry must be longer than
//! the function timeout, so a run is dead before anyone takes its hour over.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{ExportError, Result};
use crate::export::manifest::Manifest;
use crate::hour::{HourRange, UtcHour};
use crate::model::hour_request::ExportMode;
use crate::ports::{CreateOutcome, ObjectStore};

/// Default lease lifetime: longer than the Lambda limit of 15 minutes.
pub const DEFAULT_LEASE_MINUTES: i64 = 20;

/// Where an owed hour stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwedState {
    /// Not tried yet (or handed on by a run that ran short of time).
    Pending,
    /// A run holds its lease and is exporting it.
    Exporting,
    /// The last attempt failed; see `next_retry` and `retries_exhausted`.
    Failing,
}

/// One owed hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedHour {
    pub hour: UtcHour,
    pub state: OwedState,
    /// How the hour is to be exported (a backfill's hour stays a replace).
    pub mode: ExportMode,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty_lake: bool,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `destination` or `internal` (our lake or control store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blame: Option<String>,
    /// When the scheduled retry fires (`None`: the next hourly run takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<DateTime<Utc>>,
    /// Retries are over; the hour stays owed and every hourly run tries it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retries_exhausted: bool,
    /// The hour is exported (marker and ledger manifest written) but its "Hour Exported"
    /// event, of this mode, is not published yet: the next run publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_pending: Option<ExportMode>,
    /// When the run named by `run_id` started exporting (state `exporting`): a run whose
    /// lease has expired since is dead, and its death is counted as a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporting_since: Option<DateTime<Utc>>,
    /// Trying again the same way cannot help (the error cannot go away by retrying, or the
    /// hour stopped its run on every attempt): hourly runs leave it alone and status shows
    /// it as broken, with the command that exports it, until an operator's request runs it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parked: bool,
    /// The connection's configuration when the hour was parked ([`connection_digest`]): once
    /// the connection changes (moved to its own prefix, say), hourly runs try the hour again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_config: Option<String>,
}

/// A digest of a connection's configuration, secrets left out (its Debug form redacts them).
pub fn connection_digest(conn: &crate::control::connection::Connection) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(format!("{conn:?}").as_bytes())[..16])
}

impl OwedHour {
    pub fn pending(hour: UtcHour, mode: ExportMode) -> Self {
        OwedHour {
            hour,
            state: OwedState::Pending,
            mode,
            allow_empty_lake: false,
            attempts: 0,
            run_id: None,
            error_kind: None,
            last_error: None,
            blame: None,
            next_retry: None,
            retries_exhausted: false,
            event_pending: None,
            exporting_since: None,
            parked: false,
            parked_config: None,
        }
    }

    /// Whether an hourly run at `now` should export this hour itself rather than leave it
    /// to a retry schedule that is still to fire (a few minutes of slack cover a late firing).
    pub fn due_for_hourly_run(&self, now: DateTime<Utc>) -> bool {
        if self.parked {
            return false;
        }
        match self.state {
            OwedState::Pending | OwedState::Exporting => true,
            OwedState::Failing => self.retries_exhausted || self.next_retry.is_none_or(|t| t + Duration::minutes(15) <= now),
        }
    }
}

/// Where the ledger of a connection starts and how far scheduled runs have registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub origin: UtcHour,
    pub registered_to: UtcHour,
}

/// A run's claim on an hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub hour: UtcHour,
    pub run_id: String,
    pub since: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired(Lease),
    /// Another run is exporting the hour.
    Busy(Lease),
}

/// Hours registered by a scheduled run and the older hours it would not register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub registered: Vec<UtcHour>,
    /// Hours older than the catch-up window that were never owed (the connection was off,
    /// or no schedule fired): reported with the backfill command that fills them.
    pub gap: Option<HourRange>,
}

/// The ledgers of every connection, in the control store.
#[derive(Debug, Clone)]
pub struct HourLedger {
    store: Arc<dyn ObjectStore>,
}

fn json<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(v).expect("ledger records serialise"))
}

fn owed_key(conn: &str, hour: UtcHour) -> String {
    format!("ledger/{conn}/owed/{hour}.json")
}

fn complete_key(conn: &str, hour: UtcHour) -> String {
    format!("ledger/{conn}/complete/{hour}.json")
}

fn origin_key(conn: &str) -> String {
    format!("ledger/{conn}/origin.json")
}

fn lease_dir(conn: &str, hour: UtcHour) -> String {
    format!("ledger/{conn}/leases/{hour}/")
}

impl HourLedger {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        HourLedger { store }
    }

    /// Control-store failures are ours, never the destination's.
    fn ours<T>(r: Result<T>) -> Result<T> {
        r.map_err(|e| match e {
            e @ (ExportError::NotFound { .. } | ExportError::Corrupt { .. }) => e,
            e => e.ours("control store"),
        })
    }

    async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match Self::ours(self.store.get(key).await) {
            Ok(body) => serde_json::from_slice(&body).map(Some).map_err(|e| ExportError::Corrupt { what: key.to_string(), detail: e.to_string() }),
            Err(ExportError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn origin(&self, conn: &str) -> Result<Option<Origin>> {
        self.read(&origin_key(conn)).await
    }

    /// Registers every hour up to `target` as owed, from the ledger's origin (`first_owed`
    /// for a new ledger) but no further back than `window` hours; older unregistered hours
    /// are returned as a gap. Idempotent: an hour already owed keeps its state.
    pub async fn register_through(&self, conn: &str, first_owed: UtcHour, target: UtcHour, window: i64) -> Result<Registration> {
        let stored = self.origin(conn).await?;
        let origin = stored.unwrap_or(Origin { origin: first_owed, registered_to: first_owed.prev() });
        let mut from = origin.registered_to.next().max(origin.origin);
        let mut gap = None;
        let window_start = target.plus(1 - window.max(1));
        if from < window_start {
            gap = Some(HourRange::new(from, window_start.prev())?);
            from = window_start;
        }
        let mut registered = Vec::new();
        if from <= target {
            for hour in HourRange::new(from, target)?.hours() {
                if self.complete_manifest(conn, hour).await?.is_none() {
                    Self::ours(self.store.put_if_absent(&owed_key(conn, hour), json(&OwedHour::pending(hour, ExportMode::Recurring))).await)?;
                    registered.push(hour);
                }
            }
        }
        let next = Origin { origin: origin.origin, registered_to: origin.registered_to.max(target) };
        if Some(next) != stored {
            Self::ours(self.store.put(&origin_key(conn), json(&next)).await)?;
        }
        Ok(Registration { registered, gap })
    }

    /// Every owed hour of a connection, oldest first.
    pub async fn owed(&self, conn: &str) -> Result<Vec<OwedHour>> {
        let mut out = Vec::new();
        for meta in Self::ours(self.store.list(&format!("ledger/{conn}/owed/")).await)? {
            // Completed by a concurrent run between list and get: no longer owed.
            if let Some(h) = self.read::<OwedHour>(&meta.key).await? {
                out.push(h);
            }
        }
        out.sort_by_key(|h| h.hour);
        Ok(out)
    }

    pub async fn owed_hour(&self, conn: &str, hour: UtcHour) -> Result<Option<OwedHour>> {
        self.read(&owed_key(conn, hour)).await
    }

    pub async fn save_owed(&self, conn: &str, owed: &OwedHour) -> Result<()> {
        Self::ours(self.store.put(&owed_key(conn, owed.hour), json(owed)).await)
    }

    /// The watermark: the hour before the oldest owed hour, else the last registered hour.
    pub async fn watermark(&self, conn: &str) -> Result<Option<UtcHour>> {
        let owed = self.owed(conn).await?;
        if let Some(first) = owed.first() {
            return Ok(Some(first.hour.prev()));
        }
        Ok(self.origin(conn).await?.map(|o| o.registered_to))
    }

    /// The manifest stored when `hour` was completed.
    pub async fn complete_manifest(&self, conn: &str, hour: UtcHour) -> Result<Option<Manifest>> {
        self.read(&complete_key(conn, hour)).await
    }

    /// The hour's marker is written: record its manifest and take the hour off the ledger.
    pub async fn complete(&self, conn: &str, manifest: &Manifest) -> Result<()> {
        self.record_manifest(conn, manifest).await?;
        Self::ours(self.store.delete(&owed_key(conn, manifest.hour)).await)
    }

    /// Records what the hour's marker says without taking the hour off the ledger (its
    /// event is still to publish): the next run finds the hour done and owed.
    pub async fn record_manifest(&self, conn: &str, manifest: &Manifest) -> Result<()> {
        Self::ours(self.store.put(&complete_key(conn, manifest.hour), Bytes::from(manifest.to_json())).await)
    }

    /// Tries to become the hour's only writer until `now + ttl`.
    pub async fn acquire(&self, conn: &str, hour: UtcHour, run_id: &str, now: DateTime<Utc>, ttl: Duration) -> Result<LeaseOutcome> {
        if let Some(other) = self.live_other(conn, hour, run_id, now).await? {
            return Ok(LeaseOutcome::Busy(other));
        }
        let lease = Lease { hour, run_id: run_id.to_string(), since: now, expires: now + ttl };
        let key = format!("{}{run_id}.json", lease_dir(conn, hour));
        // Two runs announcing at the same moment both see the other and both withdraw; each
        // then tries once more after a random pause, so one of them usually goes ahead.
        let mut round = 0u64;
        loop {
            if Self::ours(self.store.put_if_absent(&key, json(&lease)).await)? == CreateOutcome::AlreadyExists {
                // The same run asking twice (a redelivered event carries a new run id, so
                // this is only a caller bug): refuse rather than share.
                return Err(ExportError::Internal(format!("lease {key} taken twice by one run")));
            }
            let Some(other) = self.live_other(conn, hour, run_id, now).await? else {
                return Ok(LeaseOutcome::Acquired(lease));
            };
            Self::ours(self.store.delete(&key).await)?;
            round += 1;
            if round == 3 {
                return Ok(LeaseOutcome::Busy(other));
            }
            let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 20..200) * round;
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            if let Some(other) = self.live_other(conn, hour, run_id, now).await? {
                return Ok(LeaseOutcome::Busy(other));
            }
        }
    }

    /// Whether `lease` is still the run's own and unexpired at `now`: its announcement is
    /// still there, and no other run has announced itself since the lease ran out (a run that
    /// stalled past its lease, whose hour was taken over, has lost it even if its own clock
    /// says otherwise).
    pub async fn still_holds(&self, conn: &str, lease: &Lease, now: DateTime<Utc>) -> Result<bool> {
        if now >= lease.expires {
            return Ok(false);
        }
        let mine = format!("/{}.json", lease.run_id);
        let mut found = false;
        for meta in Self::ours(self.store.list(&lease_dir(conn, lease.hour)).await)? {
            if meta.key.ends_with(&mine) {
                found = true;
            } else if let Some(other) = self.read::<Lease>(&meta.key).await? {
                if other.since >= lease.expires {
                    return Ok(false);
                }
            }
        }
        Ok(found)
    }

    /// Extends a lease the run still holds to `now + ttl`; `false` when it is lost.
    pub async fn renew(&self, conn: &str, lease: &mut Lease, now: DateTime<Utc>, ttl: Duration) -> Result<bool> {
        if !self.still_holds(conn, lease, now).await? {
            return Ok(false);
        }
        let renewed = Lease { expires: lease.expires.max(now + ttl), ..lease.clone() };
        let key = format!("{}{}.json", lease_dir(conn, lease.hour), lease.run_id);
        Self::ours(self.store.put(&key, json(&renewed)).await)?;
        *lease = renewed;
        Ok(true)
    }

    /// The owed hours whose exporting run is dead at `now`: it started more than `ttl` ago
    /// and holds no unexpired lease (it was killed, timed out or ran out of memory before it
    /// could record a result).
    pub async fn dead_runs(&self, conn: &str, now: DateTime<Utc>, ttl: Duration) -> Result<Vec<(OwedHour, Lease)>> {
        let mut dead = Vec::new();
        for owed in self.owed(conn).await? {
            let (OwedState::Exporting, Some(run_id)) = (owed.state, owed.run_id.clone()) else {
                continue;
            };
            let key = format!("{}{run_id}.json", lease_dir(conn, owed.hour));
            let lease = self.read::<Lease>(&key).await?;
            let since = owed.exporting_since.or(lease.as_ref().map(|l| l.since));
            let alive = lease.as_ref().is_some_and(|l| l.expires > now);
            let old_enough = since.is_none_or(|s| s + ttl <= now);
            if !alive && old_enough {
                let since = since.unwrap_or(now - ttl);
                let lease = lease.unwrap_or(Lease { hour: owed.hour, run_id, since, expires: since + ttl });
                dead.push((owed, lease));
            }
        }
        Ok(dead)
    }

    /// Gives the hour back (and sweeps announcements of runs that died).
    pub async fn release(&self, conn: &str, lease: &Lease, now: DateTime<Utc>) -> Result<()> {
        for meta in Self::ours(self.store.list(&lease_dir(conn, lease.hour)).await)? {
            let mine = meta.key.ends_with(&format!("/{}.json", lease.run_id));
            let expired = !mine && self.read::<Lease>(&meta.key).await?.is_none_or(|l| l.expires <= now);
            if mine || expired {
                Self::ours(self.store.delete(&meta.key).await)?;
            }
        }
        Ok(())
    }

    /// An unexpired lease of another run on the hour, if any.
    async fn live_other(&self, conn: &str, hour: UtcHour, run_id: &str, now: DateTime<Utc>) -> Result<Option<Lease>> {
        let mut live: Option<Lease> = None;
        for meta in Self::ours(self.store.list(&lease_dir(conn, hour)).await)? {
            if meta.key.ends_with(&format!("/{run_id}.json")) {
                continue;
            }
            if let Some(l) = self.read::<Lease>(&meta.key).await? {
                if l.expires > now && live.as_ref().is_none_or(|o| l.since < o.since) {
                    live = Some(l);
                }
            }
        }
        Ok(live)
    }

    /// Forgets a connection's ledger (connection deleted).
    pub async fn forget(&self, conn: &str) -> Result<()> {
        for meta in Self::ours(self.store.list(&format!("ledger/{conn}/")).await)? {
            Self::ours(self.store.delete(&meta.key).await)?;
        }
        Ok(())
    }
}

/// A fresh run id: lease announcements and run records of one run share it.
pub fn new_run_id() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory::MemoryStore;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn h(s: &str) -> UtcHour {
        UtcHour::parse(s).unwrap()
    }

    #[tokio::test]
    async fn leases_admit_one_writer_and_expire() {
        let ledger = HourLedger::new(Arc::new(MemoryStore::new("control")));
        let now = t("2020-01-25T18:20:00Z");
        let hour = h("2020-01-25T17");
        let ttl = Duration::minutes(20);
        let LeaseOutcome::Acquired(a) = ledger.acquire("c", hour, "run-a", now, ttl).await.unwrap() else { panic!("first run gets it") };
        let LeaseOutcome::Busy(by) = ledger.acquire("c", hour, "run-b", now, ttl).await.unwrap() else { panic!("second run is refused") };
        assert_eq!(by.run_id, "run-a");
        assert!(ledger.still_holds("c", &a, now).await.unwrap());
        // run-a dies; after expiry another run takes the hour over.
        let later = now + Duration::minutes(21);
        assert!(!ledger.still_holds("c", &a, later).await.unwrap());
        let LeaseOutcome::Acquired(c) = ledger.acquire("c", hour, "run-c", later, ttl).await.unwrap() else { panic!("expired lease is taken over") };
        ledger.release("c", &c, later).await.unwrap();
        let LeaseOutcome::Acquired(_) = ledger.acquire("c", hour, "run-d", later, ttl).await.unwrap() else { panic!("released") };
    }

    #[tokio::test]
    async fn registration_owes_from_origin_and_reports_older_gaps() {
        let ledger = HourLedger::new(Arc::new(MemoryStore::new("control")));
        let r = ledger.register_through("c", h("2020-01-25T00"), h("2020-01-25T05"), 24).await.unwrap();
        assert_eq!(r.registered.len(), 6);
        assert!(r.gap.is_none());
        assert_eq!(ledger.watermark("c").await.unwrap(), Some(h("2020-01-24T23")));
        // Registering again changes nothing; a later target adds only the new hours.
        assert!(ledger.register_through("c", h("2020-01-25T00"), h("2020-01-25T05"), 24).await.unwrap().registered.is_empty());
        let r = ledger.register_through("c", h("2020-01-25T00"), h("2020-01-28T05"), 24).await.unwrap();
        assert_eq!(r.gap, Some(HourRange::new(h("2020-01-25T06"), h("2020-01-27T05")).unwrap()));
        assert_eq!(r.registered.len(), 24);
        assert_eq!(ledger.owed("c").await.unwrap().len(), 30, "owed hours are never dropped");
    }
}
