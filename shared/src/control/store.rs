//! The control store: connections (secrets sealed), bucket ownership, run records and a
//! status per connection. An S3 bucket made by the template, or a folder in embedded mode.
//!
//! ```text
//! connections/{id}.json                     the connection (Azure secrets sealed)
//! claims/{kind}/{canonical location}.json  which organisation owns a bucket, container or folder
//! runs/{id}/{yyyy-MM-ddTHH}/{mode}-{attempt}.json   one record per run (idempotent key)
//! status/{id}.json                          watermark, lag, failing state, last error, gap
//! projects/{project_id}.json                the project registry (see `projects`)
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::control::claim;
use crate::control::connection::{Connection, Destination};
use crate::control::secret::{Secret, SecretBinding};
use crate::delivery::failure::FailingStatus;
use crate::delivery::invocation::ConnectionSource;
use crate::error::{ExportError, Result};
use crate::export::hour_export::ExportMode;
use crate::export::lake::InvalidRecord;
use crate::export::manifest::Accounting;
use crate::hour::{HourRange, UtcHour};
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
    pub announcement: Option<crate::delivery::hour_event::Announcement>,
    /// The lake files a late run found after the hour's marker and exported (events and
    /// merges), so a very late delivery is named where an operator looks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_lake_files: Vec<String>,
}

impl RunRecord {
    /// A run of `req` from `started` to `ended`, failed until told otherwise.
    pub fn new(connection_id: String, req: &crate::delivery::retry::HourRequest, started: DateTime<Utc>, ended: DateTime<Utc>) -> Self {
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

fn claim_key(dest: &Destination) -> String {
    format!("claims/{}.json", dest.claim_id())
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
        conn.validate()?;
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
        self.save_connection(&conn).await?;
        Ok(conn)
    }

    /// A destination belongs to the first organisation that connects it; the claim is a
    /// create-only write, so two organisations racing cannot both win.
    /// Claims are keyed by the canonical location, so every spelling of one place is one claim.
    async fn claim(&self, conn: &Connection, dest: &Destination) -> Result<()> {
        let taken = || ExportError::Conflict {
            what: format!(
                "{} is already connected by another organisation; a bucket or container can serve one organisation only. \
                 Use another bucket/container, or have the other organisation delete its connection first",
                dest.describe()
            ),
        };
        // A claim made by an earlier release under the raw spelling still counts.
        if let Some(legacy) = legacy_claim_key(dest) {
            if let Some(existing) = self.read_claim(&legacy).await? {
                if existing.org_id != conn.org_id {
                    return Err(taken());
                }
            }
        }
        let key = claim_key(dest);
        let claim = Claim { org_id: conn.org_id.clone(), connection_id: conn.id.clone(), location: Some(claim::canonical_location(dest)) };
        let body = serde_json::to_vec(&claim).expect("claim serialises");
        if self.store.put_if_absent(&key, Bytes::from(body)).await? == CreateOutcome::Created {
            return Ok(());
        }
        match self.read_claim(&key).await? {
            Some(existing) if existing.org_id != conn.org_id => Err(taken()),
            _ => Ok(()),
        }
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
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ExportError::NotFound { what: format!("connection {id:?}") });
        }
        let key = connection_key(id);
        let body = match self.store.get(&key).await {
            Err(ExportError::NotFound { .. }) => return Err(ExportError::NotFound { what: format!("connection {id:?}") }),
            other => other?,
        };
        // Validated once the secrets are open: a sealed SAS token has no `sig=` to check.
        let mut conn: Connection = serde_json::from_slice(&body).map_err(|e| corrupt(&key, e))?;
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
            match self.get_connection(id).await {
                Ok(conn) => scan.readable.push(conn),
                // Deleted between list and get.
                Err(ExportError::NotFound { .. }) => {}
                Err(e @ (ExportError::Transient { .. } | ExportError::OurInfrastructure { .. } | ExportError::Io { .. })) => return Err(e),
                Err(error) => scan.unreadable.push(UnreadableConnection { id: id.to_string(), error }),
            }
        }
        Ok(scan)
    }

    pub async fn list_connections(&self) -> Result<Vec<Connection>> {
        let mut out = Vec::new();
        for meta in self.store.list("connections/").await? {
            if let Some(id) = meta.key.strip_prefix("connections/").and_then(|k| k.strip_suffix(".json")) {
                out.push(self.get_connection(id).await?);
            }
        }
        Ok(out)
    }

    /// Deletes the connection, its status and its claims (runs are kept as history).
    pub async fn delete_connection(&self, id: &str) -> Result<Connection> {
        let conn = self.get_connection(id).await?;
        for dest in std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()) {
            // Release the claim only if no other connection of the org still uses it.
            let still_used = self
                .list_connections()
                .await?
                .iter()
                .any(|c| c.id != conn.id && (c.destination.claim_id() == dest.claim_id() || c.merged_ids_destination().claim_id() == dest.claim_id()));
            if !still_used {
                self.store.delete(&claim_key(dest)).await?;
                if let Some(legacy) = legacy_claim_key(dest) {
                    self.store.delete(&legacy).await?;
                }
            }
        }
        self.store.delete(&status_key(id)).await?;
        crate::control::ledger::HourLedger::new(self.store.clone()).forget(id).await?;
        self.store.delete(&connection_key(id)).await?;
        Ok(conn)
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
