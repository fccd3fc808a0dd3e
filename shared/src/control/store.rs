//! The control store: connections (secrets sealed), bucket ownership, run records and a
//! status per connection. An S3 bucket made by the template, or a folder in embedded mode.
//!
//! ```text
//! connections/{id}.json                     the connection (Azure secrets sealed)
//! claims/{kind}/{canonical location}.json  which organisation owns a bucket, container or folder
//! runs/{id}/{yyyy-MM-ddTHH}/{mode}-{attempt}.json   one record per run (idempotent key)
//! status/{id}.json                          watermark, lag, failing state, last error, gap
//! projects/{project_id}.json                the project registry (see `projects`)
//! stopped/{org}/{project}/{place}.json       where the last connection on a place stopped, and when
//! ```
//!
//! One unreadable connection file (corrupt, a secret that does not open, a rule it no longer
//! meets) never stops the others: listings report it apart with the reason, it can still be
//! disabled and deleted, and every decision it might bear on (releasing a claim, removing a
//! project) assumes the worst about it.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::claim;
use crate::control::connection::Connection;
use crate::control::run_api::ConnectionSource;
use crate::control::run_api::FailingStatus;
use crate::error::{ExportError, Result};
use crate::export::lake::InvalidRecord;
use crate::hour::{HourRange, UtcHour};
use crate::model::accounting::Accounting;
use crate::model::destination::Destination;
use crate::model::hour_request::ExportMode;
use crate::model::secret::{Secret, SecretBinding};
use crate::ports::SecretCipher;
use crate::ports::{CreateOutcome, ObjectStore};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Exported,
    /// Recurring run found the hour's complete marker: nothing written.
    Skipped,
    Failed,
}

/// One run of one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub connection_id: String,
    pub hour: UtcHour,
    pub mode: ExportMode,
    pub attempt: u32,
    /// The run (also named in the hour's lease while it ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    pub outcome: RunOutcome,
    #[serde(default)]
    pub events: Accounting,
    #[serde(default)]
    pub merged_ids: Accounting,
    /// Keys written (parts, merged IDs file).
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub invalid_records: u64,
    /// Where the first invalid records are (file, line, reason), events then merges; the
    /// hour's manifest lists up to 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_locations: Vec<InvalidRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What became of the hour's "Hour Exported" event (bus, webhook), when the run
    /// published one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<crate::control::hour_event::Announcement>,
    /// The lake files a late run found after the hour's marker and exported (events and
    /// merges), so a very late delivery is named where an operator looks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_lake_files: Vec<String>,
    /// Seconds from the hour's end to the marker, when this run completed the hour first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_seconds: Option<i64>,
    /// Whether that marker was written within the freshness SLO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_met: Option<bool>,
    /// Delta connections: the table upkeep (checkpoint, vacuum, log retention) this run's
    /// commits ran and could not finish, one sentence per table. The hour is exported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table_upkeep_failures: Vec<String>,
}

impl RunRecord {
    /// A run of `req` from `started` to `ended`, failed until told otherwise.
    pub fn new(connection_id: String, req: &crate::model::hour_request::HourRequest, started: DateTime<Utc>, ended: DateTime<Utc>) -> Self {
        RunRecord {
            connection_id,
            hour: req.hour,
            mode: req.mode,
            attempt: req.attempt,
            run_id: None,
            started,
            ended,
            outcome: RunOutcome::Failed,
            events: Default::default(),
            merged_ids: Default::default(),
            files: Vec::new(),
            invalid_records: 0,
            invalid_locations: Vec::new(),
            error_kind: None,
            error: None,
            announcement: None,
            late_lake_files: Vec::new(),
            freshness_seconds: None,
            slo_met: None,
            table_upkeep_failures: Vec::new(),
        }
    }
}

/// What `exportctl status` shows for a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub connection_id: String,
    /// Derived from the hour ledger: every hour up to it is complete.
    #[serde(default)]
    pub watermark: Option<UtcHour>,
    /// Latest hour exported successfully (any mode).
    #[serde(default)]
    pub last_exported_hour: Option<UtcHour>,
    #[serde(default)]
    pub failing_since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Whose side the last error was on: `destination`, `internal` (our lake or control
    /// store: operators act, the customer is not emailed) or `configuration`.
    #[serde(default)]
    pub last_error_blame: Option<String>,
    /// Whether the admins were emailed about the current failing episode.
    #[serde(default)]
    pub notified: bool,
    /// Hours the scheduled catch-up will not reach, with the command that fills them.
    #[serde(default)]
    pub gap: Option<Gap>,
    /// Delta tables whose last upkeep failed, with the error; a table leaves once an upkeep
    /// of it succeeds.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub table_upkeep_failures: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub range: HourRange,
    pub backfill_command: String,
}

impl ConnectionStatus {
    /// Hours between the last exported hour and the latest closed hour at `now`.
    pub fn lag_hours(&self, now: DateTime<Utc>) -> Option<i64> {
        let latest_closed = UtcHour::containing(now).ok()?.prev();
        self.last_exported_hour.map(|h| (latest_closed.index() - h.index()).max(0))
    }
}

/// A connection file that cannot be read, by id, with why.
#[derive(Debug)]
pub struct UnreadableConnection {
    pub id: String,
    pub error: ExportError,
    /// What its file still says without opening a secret, where it says it.
    pub outline: ConnectionOutline,
}

/// What an unreadable connection file still says, read field by field from its JSON
/// without opening a secret: each field is `None` where the file does not say it (or the
/// file is not JSON at all).
#[derive(Debug, Clone, Default)]
pub struct ConnectionOutline {
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    pub enabled: Option<bool>,
    pub created: Option<String>,
    /// `destination` (and `merged_ids_destination` where given) when each parses; the
    /// secrets in them stay sealed and are never shown.
    pub destinations: Option<Vec<Destination>>,
}

impl ConnectionOutline {
    fn of(body: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice::<serde_json::Value>(body) else {
            return ConnectionOutline::default();
        };
        let text = |field: &str| doc.get(field).and_then(|v| v.as_str()).map(str::to_string);
        let destination = |field: &str| doc.get(field).map(|v| serde_json::from_value::<Destination>(v.clone()).ok());
        let destinations = match (destination("destination"), destination("merged_ids_destination")) {
            (Some(Some(events)), None) => Some(vec![events]),
            (Some(Some(events)), Some(Some(merged))) => Some(vec![events, merged]),
            _ => None,
        };
        ConnectionOutline {
            org_id: text("org_id"),
            project_id: text("project_id"),
            enabled: doc.get("enabled").and_then(|v| v.as_bool()),
            created: text("created"),
            destinations,
        }
    }

    /// Whether the connection may hold `claim` (its org's, at `org_id`): yes unless its
    /// file shows another organisation or destinations that do not use it.
    fn may_use_claim(&self, org_id: &str, claim: &str) -> bool {
        self.org_id.as_deref().is_none_or(|o| o == org_id)
            && self.destinations.as_ref().is_none_or(|ds| ds.iter().any(|d| claim_key(d) == claim || legacy_claim_key(d).as_deref() == Some(claim)))
    }
}

/// A stored connection file, readable or not.
#[derive(Debug)]
pub enum ConnectionFile {
    Readable(Box<Connection>),
    Unreadable(Box<UnreadableConnection>),
}

/// What deleting an unreadable connection did with the claims it may have held.
#[derive(Debug, Default)]
pub struct UnreadableDeletion {
    pub released: Vec<String>,
    /// Claims kept because another connection, or one that cannot be read, may still use them.
    pub kept: Vec<String>,
    /// Whether its file said which destinations it used (if not, only claims naming it are released).
    pub destinations_known: bool,
}

/// Where the last connection on a place stopped: written when a connection is disabled or
/// deleted, read when a connection of the same organisation and project is created there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedConnection {
    pub connection_id: String,
    pub org_id: String,
    pub project_id: String,
    pub place: String,
    /// When it was disabled (or deleted, if it never was).
    pub stopped_at: DateTime<Utc>,
    /// The first hour it had not exported: the hour before it, and every hour before that,
    /// was complete.
    pub resume_from: UtcHour,
}

/// How long after a connection stopped a new one on its place still takes over its hours.
pub const SUCCESSION_WINDOW_HOURS: i64 = 24;

impl StoppedConnection {
    /// The hour a connection created at `created` on the same place owes from, when it is
    /// the successor: created less than 24 hours after this one stopped.
    pub fn owed_from_for_successor(&self, created: DateTime<Utc>) -> Option<UtcHour> {
        let since = created - self.stopped_at;
        (since >= chrono::Duration::zero() && since < chrono::Duration::hours(SUCCESSION_WINDOW_HOURS)).then_some(self.resume_from)
    }
}

fn taken(dest: &Destination) -> ExportError {
    ExportError::Conflict {
        what: format!(
            "{} is already connected by another organisation; a bucket or container can serve one organisation only. \
             Use another bucket/container, or have the other organisation delete its connection first",
            dest.describe()
        ),
    }
}

fn overlapping(dest: &Destination) -> ExportError {
    ExportError::Conflict {
        what: format!(
            "{} lies inside or above a folder another organisation already exports to; a folder, and every folder inside it, serves one organisation only. \
             Use a folder that neither contains nor is inside another organisation's export folder",
            dest.describe()
        ),
    }
}

/// An error that says something about the control store itself, not the one file.
fn is_store_failure(e: &ExportError) -> bool {
    matches!(e, ExportError::Transient { .. } | ExportError::OurInfrastructure { .. } | ExportError::Io { .. })
}

/// The connections of the control store: the readable ones and, apart, the unreadable ones.
#[derive(Debug, Default)]
pub struct ConnectionScan {
    pub readable: Vec<Connection>,
    pub unreadable: Vec<UnreadableConnection>,
}

/// Access to the control store.
#[derive(Debug, Clone)]
pub struct ControlStore {
    store: Arc<dyn ObjectStore>,
    cipher: Arc<dyn SecretCipher>,
}

fn connection_key(id: &str) -> String {
    format!("connections/{id}.json")
}

fn status_key(id: &str) -> String {
    format!("status/{id}.json")
}

fn run_key(id: &str, hour: UtcHour, mode: ExportMode, attempt: u32) -> String {
    format!("runs/{id}/{hour}/{mode}-{attempt}.json")
}

fn stopped_key(org_id: &str, project_id: &str, dest: &Destination) -> String {
    format!("stopped/{org_id}/{project_id}/{}.json", claim::place_id(dest))
}

fn claim_key(dest: &Destination) -> String {
    format!("claims/{}.json", claim::claim_id(dest))
}

/// A connection's destinations with their field names (the secrets' bindings name them).
fn legacy_claim_key(dest: &Destination) -> Option<String> {
    claim::legacy_claim_id(dest).map(|id| format!("claims/{id}.json"))
}

#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    org_id: String,
    connection_id: String,
    /// The canonical location claimed (for operators reading the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    location: Option<String>,
}

/// A JSON document of the control store, or `None` when it is absent.
pub async fn read_json<T: serde::de::DeserializeOwned>(store: &dyn ObjectStore, key: &str) -> Result<Option<T>> {
    match store.get(key).await {
        Ok(body) => serde_json::from_slice(&body).map(Some).map_err(|e| corrupt(key, e)),
        Err(ExportError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ExportError {
    ExportError::Corrupt { what: what.to_string(), detail: e.to_string() }
}

impl ControlStore {
    pub fn new(store: Arc<dyn ObjectStore>, cipher: Arc<dyn SecretCipher>) -> Self {
        ControlStore { store, cipher }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Validates, claims the destination(s) for the organisation, and stores the
    /// connection with its secrets sealed. Access verification is the caller's (it needs
    /// the cloud clients): see `lifecycle`.
    pub async fn create_connection(&self, mut conn: Connection, now: DateTime<Utc>) -> Result<Connection> {
        conn.validate_new()?;
        // A pseudonymising field policy gets its key here, sealed with the other secrets.
        conn.ensure_field_key()?;
        self.check_project(&conn).await?;
        if self.store.head(&connection_key(&conn.id)).await?.is_some() {
            return Err(ExportError::Conflict {
                what: format!("connection {} already exists; pick another id or delete it first (`exportctl connections delete {}`)", conn.id, conn.id),
            });
        }
        self.claim(&conn, &conn.destination).await?;
        if let Some(d) = &conn.merged_ids_destination {
            self.claim(&conn, d).await?;
        }
        if conn.created.is_none() {
            conn.created = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        conn.owes_from = None;
        let creation_day = crate::control::runs::first_owed_hour(&conn, UtcHour::containing(now)?);
        conn.owes_from = self.succession(&conn, now).await?.filter(|from| *from < creation_day);
        if let Some(from) = conn.owes_from {
            tracing::info!(connection = %conn.id, owes_from = %from, "takes over the hours of the connection that stopped on this place less than 24 hours ago");
        }
        self.save_connection(&conn).await?;
        Ok(conn)
    }

    /// The hour a new connection owes from as the successor of the connection that last
    /// stopped on its place (same organisation and project), if that one was disabled or
    /// deleted less than 24 hours before `now`. A predecessor that is enabled again has not
    /// stopped; one still disabled is asked its ledger (retries may have exported more).
    async fn succession(&self, conn: &Connection, now: DateTime<Utc>) -> Result<Option<UtcHour>> {
        let Some(stopped) = read_json::<StoppedConnection>(self.store.as_ref(), &stopped_key(&conn.org_id, &conn.project_id, &conn.destination)).await? else {
            return Ok(None);
        };
        let Some(from) = stopped.owed_from_for_successor(now) else {
            return Ok(None);
        };
        if stopped.connection_id == conn.id {
            // The same id again: its old file is gone (create refuses existing ids).
            return Ok(Some(from));
        }
        match self.connection_file(&stopped.connection_id).await {
            Err(ExportError::NotFound { .. }) => Ok(Some(from)),
            Err(e) => Err(e),
            Ok(ConnectionFile::Readable(old)) if old.enabled => Ok(None),
            Ok(ConnectionFile::Readable(_)) => {
                Ok(Some(crate::control::ledger::HourLedger::new(self.store.clone()).watermark(&stopped.connection_id).await?.map_or(from, |w| w.next())))
            }
            Ok(ConnectionFile::Unreadable(_)) => Ok(Some(from)),
        }
    }

    /// Records where a connection stopped (it is being disabled or deleted at `now`), so a
    /// connection created on its place within 24 hours owes the hours from there. A
    /// connection disabled earlier keeps the time it was disabled.
    pub async fn record_stop(&self, conn: &Connection, now: DateTime<Utc>) -> Result<StoppedConnection> {
        let key = stopped_key(&conn.org_id, &conn.project_id, &conn.destination);
        let earlier = read_json::<StoppedConnection>(self.store.as_ref(), &key).await?.filter(|s| s.connection_id == conn.id && !conn.enabled);
        let watermark = crate::control::ledger::HourLedger::new(self.store.clone()).watermark(&conn.id).await?;
        let resume_from = match watermark {
            Some(w) => w.next(),
            None => crate::control::runs::first_owed_hour(conn, UtcHour::containing(now)?),
        };
        let stopped = StoppedConnection {
            connection_id: conn.id.clone(),
            org_id: conn.org_id.clone(),
            project_id: conn.project_id.clone(),
            place: conn.destination.describe(),
            stopped_at: earlier.map_or(now, |e| e.stopped_at),
            resume_from,
        };
        self.store.put(&key, Bytes::from(serde_json::to_vec_pretty(&stopped).expect("serialises"))).await?;
        Ok(stopped)
    }

    /// Forgets where a connection stopped (it is enabled again).
    pub async fn clear_stop(&self, conn: &Connection) -> Result<()> {
        let key = stopped_key(&conn.org_id, &conn.project_id, &conn.destination);
        match read_json::<StoppedConnection>(self.store.as_ref(), &key).await? {
            Some(s) if s.connection_id == conn.id => self.store.delete(&key).await,
            _ => Ok(()),
        }
    }

    /// A destination belongs to the first organisation that connects it; the claim is a
    /// create-only write, so two organisations racing cannot both win.
    /// Claims are keyed by the canonical location, so every spelling of one place is one claim.
    async fn claim(&self, conn: &Connection, dest: &Destination) -> Result<()> {
        // A claim made by an earlier release under the raw spelling still counts.
        if self.legacy_claim_of_another(&conn.org_id, dest).await? {
            return Err(taken(dest));
        }
        let key = claim_key(dest);
        let claim = Claim { org_id: conn.org_id.clone(), connection_id: conn.id.clone(), location: Some(claim::canonical_location(dest)) };
        let body = serde_json::to_vec(&claim).expect("claim serialises");
        let created = self.store.put_if_absent(&key, Bytes::from(body)).await? == CreateOutcome::Created;
        if !created {
            if let Some(existing) = self.read_claim(&key).await? {
                if existing.org_id != conn.org_id {
                    return Err(taken(dest));
                }
            }
        }
        // A folder claim also covers the folders inside and above it. Checked after the
        // claim is written: of two organisations racing for nested folders, at least the
        // later one sees the other (both may be refused, never both accepted).
        if matches!(dest, Destination::Local { .. }) && self.overlaps_another_organisation(&conn.org_id, &key, &claim::canonical_location(dest)).await? {
            if created {
                self.store.delete(&key).await?;
            }
            return Err(overlapping(dest));
        }
        Ok(())
    }

    /// The claim checks of create, read only: refuses a connection whose destination another
    /// organisation holds, or lies inside or above one of its folders, before anything is
    /// written there (the test upload). Create itself checks again as it claims.
    pub async fn check_claimable(&self, conn: &Connection) -> Result<()> {
        for dest in std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()) {
            if self.legacy_claim_of_another(&conn.org_id, dest).await? || self.read_claim(&claim_key(dest)).await?.is_some_and(|c| c.org_id != conn.org_id) {
                return Err(taken(dest));
            }
            if matches!(dest, Destination::Local { .. })
                && self.overlaps_another_organisation(&conn.org_id, &claim_key(dest), &claim::canonical_location(dest)).await?
            {
                return Err(overlapping(dest));
            }
        }
        Ok(())
    }

    async fn legacy_claim_of_another(&self, org_id: &str, dest: &Destination) -> Result<bool> {
        let Some(legacy) = legacy_claim_key(dest) else { return Ok(false) };
        Ok(self.read_claim(&legacy).await?.is_some_and(|existing| existing.org_id != org_id))
    }

    /// Whether another organisation holds a folder claim that overlaps `location`. Claims
    /// from before canonical claims (no location recorded) are matched by key only.
    async fn overlaps_another_organisation(&self, org_id: &str, own_key: &str, location: &str) -> Result<bool> {
        for meta in self.store.list("claims/local/").await? {
            if meta.key == own_key {
                continue;
            }
            let Some(other) = self.read_claim(&meta.key).await? else { continue };
            if other.org_id != org_id && other.location.as_deref().is_some_and(|l| claim::locations_overlap(l, location)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn read_claim(&self, key: &str) -> Result<Option<Claim>> {
        read_json(self.store.as_ref(), key).await
    }

    pub async fn save_connection(&self, conn: &Connection) -> Result<()> {
        let mut stored = conn.clone();
        for (field, secret) in stored.secrets_mut() {
            let binding = SecretBinding::new(&conn.id, field);
            *secret = Secret::new(self.cipher.seal(secret, &binding).await?);
        }
        let body = serde_json::to_vec_pretty(&stored).expect("connection serialises");
        self.store.put(&connection_key(&conn.id), Bytes::from(body)).await
    }

    /// Loads a connection with its secrets opened. Unknown ids → `NotFound`.
    pub async fn get_connection(&self, id: &str) -> Result<Connection> {
        let body = self.connection_body(id).await?;
        self.open_connection(id, &body).await
    }

    /// A stored connection, or why it cannot be read (with what its file still says).
    /// Unknown ids → `NotFound`; failures of the control store itself are errors.
    pub async fn connection_file(&self, id: &str) -> Result<ConnectionFile> {
        let body = self.connection_body(id).await?;
        match self.open_connection(id, &body).await {
            Ok(conn) => Ok(ConnectionFile::Readable(Box::new(conn))),
            Err(e) if is_store_failure(&e) => Err(e),
            Err(error) => Ok(ConnectionFile::Unreadable(Box::new(UnreadableConnection { id: id.to_string(), error, outline: ConnectionOutline::of(&body) }))),
        }
    }

    async fn connection_body(&self, id: &str) -> Result<Bytes> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ExportError::NotFound { what: format!("connection {id:?}") });
        }
        match self.store.get(&connection_key(id)).await {
            Err(ExportError::NotFound { .. }) => Err(ExportError::NotFound { what: format!("connection {id:?}") }),
            other => other,
        }
    }

    async fn open_connection(&self, id: &str, body: &[u8]) -> Result<Connection> {
        let key = connection_key(id);
        // Validated once the secrets are open: a sealed SAS token has no `sig=` to check.
        let mut conn: Connection = serde_json::from_slice(body).map_err(|e| corrupt(&key, e))?;
        if conn.id != id {
            return Err(corrupt(&key, format!("holds connection {:?}", conn.id)));
        }
        for (field, secret) in conn.secrets_mut() {
            let binding = SecretBinding::new(id, field);
            *secret = self.cipher.open(secret.expose(), &binding).await?;
        }
        conn.validate()?;
        Ok(conn)
    }

    /// Every stored connection, the unreadable ones apart (a corrupt file, a secret that does
    /// not open, a file that no longer validates): one bad connection never hides the others.
    /// Failures of the control store itself are still errors.
    pub async fn scan_connections(&self) -> Result<ConnectionScan> {
        let mut scan = ConnectionScan::default();
        for meta in self.store.list("connections/").await? {
            let Some(id) = meta.key.strip_prefix("connections/").and_then(|k| k.strip_suffix(".json")) else {
                continue;
            };
            match self.connection_file(id).await {
                Ok(ConnectionFile::Readable(conn)) => scan.readable.push(*conn),
                Ok(ConnectionFile::Unreadable(u)) => scan.unreadable.push(*u),
                // Deleted between list and get.
                Err(ExportError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(scan)
    }

    /// The readable connections. Each unreadable one is logged as an operator alert and
    /// left out; callers that must not overlook one (claims, the project registry, the
    /// operator's listings) use [`ControlStore::scan_connections`].
    pub async fn list_connections(&self) -> Result<Vec<Connection>> {
        let scan = self.scan_connections().await?;
        for u in &scan.unreadable {
            tracing::error!(connection = %u.id, operator_alert = true, error = %u.error, "connection file unreadable; left out (fix it, or disable or delete it)");
        }
        Ok(scan.readable)
    }

    /// The connections that use `project_id`, by id. An unreadable connection whose file
    /// does not show another project is counted too, marked as such: a project is removed
    /// only when nothing can still be using it.
    pub async fn connections_using_project(&self, project_id: &str) -> Result<Vec<String>> {
        let scan = self.scan_connections().await?;
        let mut users: Vec<String> = scan.readable.iter().filter(|c| c.project_id == project_id).map(|c| c.id.clone()).collect();
        for u in scan.unreadable.iter().filter(|u| u.outline.project_id.as_deref().is_none_or(|p| p == project_id)) {
            let known = if u.outline.project_id.is_some() { "uses it" } else { "may use it" };
            users.push(format!("{} (unreadable, {known}: {}; `exportctl connections delete {}` deletes it)", u.id, u.error, u.id));
        }
        Ok(users)
    }

    /// Releases the claims in `candidates` that no other connection may still use: a
    /// readable one that does, or an unreadable one whose file does not show it does not
    /// (another organisation, other destinations). A claim that cannot be read is kept.
    async fn release_claims(&self, deleting: &str, candidates: Vec<String>) -> Result<(Vec<String>, Vec<String>)> {
        let others = self.scan_connections().await?;
        let (mut released, mut kept) = (Vec::new(), Vec::new());
        for key in candidates {
            let org_id = match self.read_claim(&key).await {
                Ok(Some(claim)) => claim.org_id,
                Ok(None) => continue,
                Err(e) if is_store_failure(&e) => return Err(e),
                Err(_) => {
                    kept.push(key);
                    continue;
                }
            };
            let used = others.readable.iter().filter(|c| c.id != deleting).any(|c| {
                std::iter::once(&c.destination)
                    .chain(c.merged_ids_destination.iter())
                    .any(|d| claim_key(d) == key || legacy_claim_key(d).as_deref() == Some(&key))
            });
            let maybe_used = others.unreadable.iter().filter(|u| u.id != deleting).find(|u| u.outline.may_use_claim(&org_id, &key));
            if let Some(u) = maybe_used.filter(|_| !used) {
                tracing::warn!(claim = %key, connection = %u.id, operator_alert = true, "claim kept: an unreadable connection may still use it");
            }
            if used || maybe_used.is_some() {
                kept.push(key);
            } else {
                self.store.delete(&key).await?;
                released.push(key);
            }
        }
        Ok((released, kept))
    }

    /// Deletes the connection, its status and its claims (runs are kept as history). A
    /// claim is kept while another connection may still use it: a readable one that does, or
    /// an unreadable one whose file does not show it does not.
    pub async fn delete_connection(&self, id: &str) -> Result<Connection> {
        let conn = self.get_connection(id).await?;
        let mut candidates = Vec::new();
        for dest in std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()) {
            candidates.push(claim_key(dest));
            candidates.extend(legacy_claim_key(dest));
        }
        candidates.dedup();
        self.release_claims(id, candidates).await?;
        self.forget_connection(id).await?;
        Ok(conn)
    }

    async fn forget_connection(&self, id: &str) -> Result<()> {
        self.store.delete(&status_key(id)).await?;
        crate::control::ledger::HourLedger::new(self.store.clone()).forget(id).await?;
        self.store.delete(&connection_key(id)).await
    }

    /// Deletes a connection whose file cannot be read (its secrets are never needed). The
    /// claims it may hold are its destinations' where its file still names them, else those
    /// that name it as their maker; each is released only if nothing else may use it.
    /// Where it stopped is recorded when the file still says where it exported. A readable
    /// connection is refused here: [`ControlStore::delete_connection`] deletes it.
    pub async fn delete_unreadable_connection(&self, id: &str, now: DateTime<Utc>) -> Result<UnreadableDeletion> {
        let unreadable = match self.connection_file(id).await? {
            ConnectionFile::Readable(_) => {
                return Err(ExportError::invalid_input(format!("connection {id}"), "is readable; delete it the ordinary way (`exportctl connections delete`)"))
            }
            ConnectionFile::Unreadable(u) => u,
        };
        let outline = &unreadable.outline;
        let mut candidates = Vec::new();
        match &outline.destinations {
            Some(destinations) => {
                for dest in destinations {
                    candidates.push(claim_key(dest));
                    candidates.extend(legacy_claim_key(dest));
                }
            }
            None => {
                for meta in self.store.list("claims/").await? {
                    if self.read_claim(&meta.key).await.ok().flatten().is_some_and(|c| c.connection_id == id) {
                        candidates.push(meta.key);
                    }
                }
            }
        }
        candidates.dedup();
        let (released, kept) = self.release_claims(id, candidates).await?;
        if let (Some(org_id), Some(project_id), Some(dest)) = (&outline.org_id, &outline.project_id, outline.destinations.as_ref().and_then(|d| d.first())) {
            let watermark = crate::control::ledger::HourLedger::new(self.store.clone()).watermark(id).await?;
            if let Some(resume_from) = watermark.map(|w| w.next()) {
                let key = stopped_key(org_id, project_id, dest);
                let earlier = read_json::<StoppedConnection>(self.store.as_ref(), &key).await?.filter(|s| s.connection_id == id);
                let stopped = StoppedConnection {
                    connection_id: id.to_string(),
                    org_id: org_id.clone(),
                    project_id: project_id.clone(),
                    place: dest.describe(),
                    stopped_at: earlier.map_or(now, |e| e.stopped_at),
                    resume_from,
                };
                self.store.put(&key, Bytes::from(serde_json::to_vec_pretty(&stopped).expect("serialises"))).await?;
            }
        }
        self.forget_connection(id).await?;
        Ok(UnreadableDeletion { released, kept, destinations_known: outline.destinations.is_some() })
    }

    /// Disables a connection whose file cannot be read: `"enabled": false` is written into
    /// the file as it is (sealed secrets untouched). Returns whether the file could take it
    /// (a file that is not a JSON object cannot; its schedule is what stops it then).
    pub async fn disable_unreadable_connection(&self, id: &str) -> Result<bool> {
        let body = self.connection_body(id).await?;
        if self.open_connection(id, &body).await.is_ok() {
            return Err(ExportError::invalid_input(format!("connection {id}"), "is readable; disable it the ordinary way (`exportctl connections disable`)"));
        }
        let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Ok(false);
        };
        doc.insert("enabled".into(), serde_json::Value::Bool(false));
        let body = serde_json::to_vec_pretty(&serde_json::Value::Object(doc)).expect("json serialises");
        self.store.put(&connection_key(id), Bytes::from(body)).await?;
        Ok(true)
    }

    pub async fn put_run(&self, run: &RunRecord) -> Result<()> {
        let body = serde_json::to_vec_pretty(run).expect("run serialises");
        self.store.put(&run_key(&run.connection_id, run.hour, run.mode, run.attempt), Bytes::from(body)).await
    }

    /// Writes a run record unless one exists at its key.
    pub async fn put_run_if_absent(&self, run: &RunRecord) -> Result<()> {
        let body = serde_json::to_vec_pretty(run).expect("run serialises");
        self.store.put_if_absent(&run_key(&run.connection_id, run.hour, run.mode, run.attempt), Bytes::from(body)).await.map(|_| ())
    }

    /// Every run of a connection, oldest hour first.
    pub async fn list_runs(&self, connection_id: &str) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        for meta in self.store.list(&format!("runs/{connection_id}/")).await? {
            let body = self.store.get(&meta.key).await?;
            out.push(serde_json::from_slice(&body).map_err(|e| corrupt(&meta.key, e))?);
        }
        out.sort_by_key(|r: &RunRecord| (r.hour, r.started, r.attempt));
        Ok(out)
    }

    pub async fn status(&self, connection_id: &str) -> Result<ConnectionStatus> {
        let key = status_key(connection_id);
        match self.store.get(&key).await {
            Ok(body) => serde_json::from_slice(&body).map_err(|e| corrupt(&key, e)),
            Err(ExportError::NotFound { .. }) => Ok(ConnectionStatus { connection_id: connection_id.to_string(), ..Default::default() }),
            Err(e) => Err(e),
        }
    }

    pub async fn save_status(&self, status: &ConnectionStatus) -> Result<()> {
        let body = serde_json::to_vec_pretty(status).expect("status serialises");
        self.store.put(&status_key(&status.connection_id), Bytes::from(body)).await
    }

    /// Read-modify-write of a status.
    pub async fn update_status(&self, connection_id: &str, change: impl FnOnce(&mut ConnectionStatus)) -> Result<ConnectionStatus> {
        let mut status = self.status(connection_id).await?;
        change(&mut status);
        self.save_status(&status).await?;
        Ok(status)
    }
}

#[async_trait]
impl ConnectionSource for ControlStore {
    async fn connection(&self, id: &str) -> Result<Option<Connection>> {
        match self.get_connection(id).await {
            Ok(c) => Ok(Some(c)),
            Err(ExportError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl FailingStatus for ControlStore {
    async fn mark_failing(&self, connection_id: &str, since: DateTime<Utc>, last_error: &str, notified: bool) -> Result<()> {
        self.update_status(connection_id, |s| {
            s.failing_since = Some(s.failing_since.unwrap_or(since));
            s.last_error = Some(last_error.to_string());
            s.notified = s.notified || notified;
        })
        .await
        .map(|_| ())
    }

    async fn clear_failing(&self, connection_id: &str) -> Result<()> {
        self.update_status(connection_id, |s| {
            s.failing_since = None;
            s.notified = false;
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory::MemoryStore;
    use crate::control::projects::Project;
    use crate::model::secret::SecretBinding;

    #[derive(Debug)]
    struct Plain;
    #[async_trait]
    impl SecretCipher for Plain {
        async fn seal(&self, plain: &Secret, _b: &SecretBinding) -> Result<String> {
            Ok(plain.expose().to_string())
        }
        async fn open(&self, sealed: &str, _b: &SecretBinding) -> Result<Secret> {
            Ok(Secret::new(sealed))
        }
    }

    async fn control() -> ControlStore {
        let control = ControlStore::new(Arc::new(MemoryStore::new("control")), Arc::new(Plain));
        control.add_project(&Project::new("100", "1", false).unwrap()).await.unwrap();
        control.add_project(&Project::new("200", "2", false).unwrap()).await.unwrap();
        control
    }

    fn local(id: &str, org: &str, path: &str) -> Connection {
        let project = if org == "1" { "100" } else { "200" };
        let doc = serde_json::json!({"id": id, "org_id": org, "project_id": project, "creator": "a@b.co", "admins": ["ops@b.co"],
            "destination": {"type": "local", "path": path, "prefix": id}});
        Connection::from_json(&doc.to_string()).unwrap()
    }

    #[tokio::test]
    async fn another_organisation_is_refused_every_folder_that_overlaps_a_claim() {
        let control = control().await;
        let now = Utc::now();
        control.create_connection(local("a1", "1", "/data/acme"), now).await.unwrap();
        for (i, path) in ["/data/acme", "/data//acme/", "/data/acme/100", "/data/acme/a/b", "/data", "/"].iter().enumerate() {
            let err = control.create_connection(local(&format!("b{i}"), "2", path), now).await.expect_err(path).to_string();
            assert!(err.contains("another organisation") && !err.contains("a1") && !err.contains("organisation 1"), "{path}: {err}");
        }
        // Siblings and look-alike names are other places.
        control.create_connection(local("b-sibling", "2", "/data/acme2"), now).await.unwrap();
        control.create_connection(local("b-other", "2", "/data/other/acme"), now).await.unwrap();
        // The same organisation may nest its own folders.
        control.create_connection(local("a2", "1", "/data/acme/nested"), now).await.unwrap();
        control.create_connection(local("a3", "1", "/data/acme2/x"), now).await.expect_err("inside the other organisation's /data/acme2");
        // A refused claim leaves nothing behind, and a released claim frees its place.
        assert!(control.store.list("claims/local/").await.unwrap().len() == 4, "{:?}", control.store.list("claims/local/").await.unwrap());
        control.delete_connection("a2").await.unwrap();
        control.delete_connection("a1").await.unwrap();
        control.create_connection(local("b-now", "2", "/data/acme/100"), now).await.expect("no claim above it any more");
    }

    #[tokio::test]
    async fn a_connection_needs_an_admin_to_be_created() {
        let control = control().await;
        let mut conn = local("a1", "1", "/data/acme");
        conn.admins.clear();
        let err = control.create_connection(conn, Utc::now()).await.unwrap_err().to_string();
        assert!(err.contains("admins") && err.contains("at least one administrator"), "{err}");
        assert!(control.store.list("").await.unwrap().iter().all(|m| m.key.starts_with("projects/")), "nothing stored");
    }

    #[tokio::test]
    async fn one_unreadable_connection_never_stops_the_others_and_holds_its_claims_conservatively() {
        let control = control().await;
        let now = Utc::now();
        control.create_connection(local("a1", "1", "/data/acme"), now).await.unwrap();
        control.create_connection(local("a2", "1", "/data/acme"), now).await.unwrap();
        control.create_connection(local("a3", "1", "/data/other"), now).await.unwrap();
        // a2 no longer validates (its destinations still read); a3 is not JSON at all.
        let a2 = String::from_utf8(control.store.get("connections/a2.json").await.unwrap().to_vec())
            .unwrap()
            .replace("\"creator\": \"a@b.co\"", "\"creator\": \"a b\"");
        control.store.put("connections/a2.json", Bytes::from(a2)).await.unwrap();
        control.store.put("connections/a3.json", Bytes::from_static(b"{\"id\": \"a3\", tru")).await.unwrap();

        let scan = control.scan_connections().await.unwrap();
        assert_eq!(scan.readable.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["a1"]);
        assert_eq!(scan.unreadable.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["a2", "a3"]);
        assert!(scan.unreadable[0].error.to_string().contains("creator"), "{}", scan.unreadable[0].error);
        assert_eq!(control.list_connections().await.unwrap().len(), 1);
        assert_eq!(scan.unreadable[0].outline.project_id.as_deref(), Some("100"));
        assert!(scan.unreadable[1].outline.destinations.is_none());

        // a3 does not say its project: it may use any, so no project is removed under it.
        control.add_project(&Project::new("300", "1", false).unwrap()).await.unwrap();
        let err = control.remove_project("300").await.unwrap_err().to_string();
        assert!(err.contains("a3 (unreadable, may use it") && !err.contains("a2"), "{err}");

        // a1 deleted: its claim stays, a2 (unreadable, same folder) may still use it.
        control.delete_connection("a1").await.unwrap();
        let blocked = control.create_connection(local("b1", "2", "/data/acme"), now).await.unwrap_err().to_string();
        assert!(blocked.contains("already connected by another organisation"), "{blocked}");
        // Both disabled and deleted without their files being readable.
        assert!(control.disable_unreadable_connection("a2").await.unwrap());
        let doc: serde_json::Value = serde_json::from_slice(&control.store.get("connections/a2.json").await.unwrap()).unwrap();
        assert_eq!(doc["enabled"], false);
        assert_eq!(doc["creator"], "a b", "the rest of the file as it was");
        assert!(!control.disable_unreadable_connection("a3").await.unwrap(), "not JSON: the file stays as it is");
        assert!(control.disable_unreadable_connection("a1").await.is_err(), "gone");
        // a3's file names no destination: the claims naming it are its candidates; a2's
        // file shows it does not use /data/other, so that claim goes.
        let deleted = control.delete_unreadable_connection("a3", now).await.unwrap();
        assert!(!deleted.destinations_known);
        assert_eq!((deleted.released.len(), deleted.kept.len()), (1, 0), "{deleted:?}");
        let deleted = control.delete_unreadable_connection("a2", now).await.unwrap();
        assert!(deleted.destinations_known && deleted.kept.is_empty() && deleted.released.len() == 1, "{deleted:?}");
        control.create_connection(local("b1", "2", "/data/acme"), now).await.expect("nothing holds /data/acme any more");
        control.remove_project("300").await.unwrap();
        assert!(control.scan_connections().await.unwrap().unreadable.is_empty());
    }

    #[test]
    fn a_successor_takes_over_only_within_24_hours_of_the_stop() {
        let stopped = StoppedConnection {
            connection_id: "c1".into(),
            org_id: "1".into(),
            project_id: "100".into(),
            place: "file:///d/exports".into(),
            stopped_at: "2020-01-25T22:30:00Z".parse().unwrap(),
            resume_from: UtcHour::parse("2020-01-25T22").unwrap(),
        };
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(stopped.owed_from_for_successor(at("2020-01-26T20:00:00Z")), Some(UtcHour::parse("2020-01-25T22").unwrap()));
        assert_eq!(stopped.owed_from_for_successor(at("2020-01-26T22:29:59Z")), Some(UtcHour::parse("2020-01-25T22").unwrap()));
        assert_eq!(stopped.owed_from_for_successor(at("2020-01-26T22:30:00Z")), None, "24 hours after: a new connection");
        assert_eq!(stopped.owed_from_for_successor(at("2020-01-25T22:00:00Z")), None, "before the stop");
    }
}
