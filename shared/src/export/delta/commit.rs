//! One commit per hour export, written after the hour's parts are durable and before its
//! marker.
//!
//! **Exactly once, by the hour's content.** A commit makes the hour's partition
//! (`dt`, `hour`) hold exactly the parts the export wrote: it removes the hour's live files
//! that are not among them and adds those that are new, in ONE log entry, so a reader sees
//! the old hour or the new one, never a mix and never both. Before writing, the table's
//! current state is compared with what is wanted: when the hour already holds parts with
//! the same sha256s in the same order (kept in each `add`'s `tags.sha256`) and the hour
//! has been committed before, nothing is committed and the earlier commit's version is
//! the hour's version. That one check makes a retry, a redelivered event, a rerun after
//! a crash between the commit and the marker, and a replace that wrote byte-identical
//! parts all commit nothing new, whatever their attempt number, because it asks the
//! table what it holds rather than trusting a counter kept elsewhere.
//!
//! **`txn`:** every hour commit also carries `txn {appId: "event-export/{connection}/{data}/
//! {yyyy-MM-dd}T{HH}"` (`{data}`: `events` or `merged_ids`), version: <the table version of this commit>}`. Reconciliation keeps the
//! newest per appId, also through checkpoints (which drop `commitInfo`), so the version of
//! the commit that last changed an hour is one lookup in the snapshot: it is the version an
//! unchanged re-export reports, and "committed before" above means "has a txn". `commitInfo`
//! records the connection, hour, mode and a digest of the hour's part list, for people
//! reading the log.
//!
//! **Concurrency.** The next entry is written create-only (`put_if_absent`: S3 conditional
//! put, Azure If-None-Match, a local create-new link). A writer that finds the version
//! taken (another hour committed first) reads the entries it missed, checks again whether
//! its hour is already as wanted, rebuilds its actions and tries the next version.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{ExportError, Result};
use crate::export::delta::actions::{
    commit_file, is_hour, partition_values, schema_string, table_id, Action, Add, Format, Metadata, Protocol, Remove, TableData, Txn, MIN_READER_VERSION,
    MIN_WRITER_VERSION, PARTITION_COLUMNS, TAG_SHA256,
};
use crate::export::delta::log::{DeltaTable, TableState};
use crate::export::delta::vacuum::upkeep;
use crate::export::layout::ExportLayout;
use crate::export::manifest::FileEntry;
use crate::hour::UtcHour;
use crate::model::hour_request::ExportMode;
use crate::ports::CreateOutcome;

/// Table properties every table is created with (readers and our vacuum honour them).
pub const DELETED_FILE_RETENTION: &str = "interval 7 days";
pub const LOG_RETENTION: &str = "interval 30 days";
/// A checkpoint every this many commits.
pub const CHECKPOINT_INTERVAL: u64 = 10;

/// Tries before a commit gives up on conflicts (each try follows another writer's commit).
const MAX_TRIES: u32 = 200;

/// What one hour's commit asks for.
#[derive(Debug, Clone)]
pub struct HourCommit<'a> {
    pub connection_id: &'a str,
    pub hour: UtcHour,
    pub mode: ExportMode,
    /// Every part the hour holds once committed, in part order (for late runs: the earlier
    /// parts and the new ones).
    pub files: &'a [FileEntry],
    /// Milliseconds since the epoch: `modificationTime`, `deletionTimestamp`, commit time.
    pub now_ms: i64,
}

/// How the upkeep of a table (checkpoint, vacuum, log retention) went. A failure never
/// fails the hour (readers stay correct; the next checkpoint retries) but must not pass in
/// silence: it reaches the run record and the connection's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableUpkeep {
    /// The table, as [`DeltaTable::describe`] names it.
    pub table: String,
    pub error: Option<String>,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The version whose commit made the hour what it is now.
    pub version: u64,
    /// Whether this call wrote that commit (false: the table already held these parts).
    pub committed: bool,
    /// The parts the table holds for the hour, in part order: the ones asked for, or, when
    /// the table already held the same bytes under other part numbers (a rerun), those.
    pub files: Vec<FileEntry>,
    /// Parts asked for that the table does not hold (their bytes are already in it under
    /// other names): the caller deletes them.
    pub redundant: Vec<String>,
    /// The state after the commit (for checkpoints and vacuum).
    pub state: TableState,
    /// The table's upkeep, when this commit ran it (every tenth version, and every commit while a failed one is owed).
    pub upkeep: Option<TableUpkeep>,
}

/// `event-export/{connection}/events/{yyyy-MM-dd}T{HH}` (or `.../merged_ids/...`): one
/// `txn` appId per hour of a connection's table (an hour may be committed long after later
/// hours, so one appId per table could not keep a version that only grows).
pub fn app_id(connection_id: &str, data: TableData, hour: UtcHour) -> String {
    format!("event-export/{connection_id}/{}/{hour}", data.name())
}

impl DeltaTable {
    /// The first part number an export of `hour` may write: above every part of the hour
    /// the log still knows (live or removed and not yet vacuumed), because Delta data files
    /// must never be overwritten (a reader of an older version may still read them).
    pub fn next_part(&self, state: &TableState, layout: &ExportLayout, hour: UtcHour) -> Result<u32> {
        let mut next = 0;
        for path in state.files.keys().chain(state.tombstones.keys()) {
            let key = self.key_of(path)?;
            let part = match self.data {
                TableData::Events => layout.part_number(hour, &key),
                TableData::MergedIds => layout.merged_ids_part_number(hour, &key),
            };
            if let Some(n) = part {
                next = next.max(n + 1);
            }
        }
        Ok(next)
    }

    /// Commits the hour (see the module's comment): idempotent, retried on conflicts.
    pub async fn commit_hour(&self, commit: &HourCommit<'_>) -> Result<CommitOutcome> {
        let (mut state, checkpointed) = self.load_with_checkpoint(None).await?;
        for _ in 0..MAX_TRIES {
            let live = hour_files(&state, commit.hour);
            let app = app_id(commit.connection_id, self.data, commit.hour);
            if let Some(&version) = state.txns.get(&app) {
                if same_bytes(&live, commit.files) {
                    let files = commit.files.iter().zip(&live).map(|(want, (path, _))| self.as_held(want, path)).collect::<Result<Vec<_>>>()?;
                    let held: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
                    let redundant = commit.files.iter().filter(|f| !held.contains(&f.key.as_str())).map(|f| f.key.clone()).collect();
                    return Ok(CommitOutcome { version: version as u64, committed: false, files, redundant, state, upkeep: None });
                }
            }
            let version = state.next_version();
            let actions = self.actions(&state, commit, &live, version)?;
            let body = Bytes::from(actions.iter().map(|a| serde_json::to_string(a).expect("actions serialise") + "\n").collect::<String>());
            match self.store.put_if_absent(&self.log_key(&commit_file(version)), body).await? {
                CreateOutcome::Created => {
                    for a in actions {
                        state.apply(a);
                    }
                    state.version = Some(version);
                    // Due every tenth version, and at every commit after one whose upkeep did
                    // not write its checkpoint: a failure is retried (and reported) at once,
                    // even when the hour that ran it failed afterwards and its report was lost.
                    let due_since = version - version % CHECKPOINT_INTERVAL;
                    let upkept = if due_since > 0 && checkpointed.is_none_or(|c| c < due_since) {
                        let error = upkeep(self, &state, commit.now_ms).await.err().map(|e| {
                            tracing::warn!(table = %self.describe(), version, error = %e, "Delta upkeep (vacuum, checkpoint, log retention) failed; the next one retries");
                            format!("version {version}: {e}")
                        });
                        Some(TableUpkeep { table: self.describe(), error })
                    } else {
                        None
                    };
                    return Ok(CommitOutcome { version, committed: true, files: commit.files.to_vec(), redundant: Vec::new(), state, upkeep: upkept });
                }
                CreateOutcome::AlreadyExists => self.catch_up(&mut state).await?,
            }
        }
        Err(ExportError::Transient {
            operation: format!("Delta commit of {} to the table at {}", commit.hour, self.describe()),
            detail: format!("{MAX_TRIES} versions in a row were taken by other writers; the next attempt tries again"),
        })
    }

    /// Where the table is, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.store.describe().trim_end_matches('/'), self.root)
    }

    /// `want` (same bytes) as the table holds it: under `path`'s key and part number.
    fn as_held(&self, want: &FileEntry, path: &str) -> Result<FileEntry> {
        let key = self.key_of(path)?;
        let part = match (want.part, key.rsplit_once('#')) {
            (Some(_), Some((_, rest))) => rest.split('.').next().and_then(|n| n.parse().ok()),
            _ => want.part,
        };
        Ok(FileEntry { key, part, ..want.clone() })
    }

    /// The entry's actions: protocol and metadata when the table is new, the removes and
    /// adds that make the hour hold `commit.files`, the hour's `txn`, and `commitInfo`.
    fn actions(&self, state: &TableState, commit: &HourCommit<'_>, live: &[(String, &Add)], version: u64) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        if state.protocol.is_none() {
            actions.push(Action {
                protocol: Some(Protocol { min_reader_version: MIN_READER_VERSION, min_writer_version: MIN_WRITER_VERSION }),
                ..Action::default()
            });
        }
        if state.metadata.is_none() {
            actions.push(Action { metadata: Some(self.metadata(commit.now_ms)), ..Action::default() });
        }
        let wanted: BTreeMap<String, &FileEntry> = commit.files.iter().map(|f| (self.path_of(&f.key), f)).collect();
        for (path, add) in live {
            if !wanted.contains_key(path) {
                actions.push(Action {
                    remove: Some(Remove {
                        path: path.clone(),
                        deletion_timestamp: Some(commit.now_ms),
                        data_change: true,
                        extended_file_metadata: Some(true),
                        partition_values: Some(add.partition_values.clone()),
                        size: Some(add.size),
                    }),
                    ..Action::default()
                });
            }
        }
        let mut added = 0;
        for (path, file) in &wanted {
            if live.iter().any(|(p, a)| p == path && a.sha256() == Some(file.sha256.as_str())) {
                continue;
            }
            added += 1;
            actions.push(Action {
                add: Some(Add {
                    path: path.clone(),
                    partition_values: partition_values(commit.hour),
                    size: file.bytes as i64,
                    modification_time: commit.now_ms,
                    data_change: true,
                    stats: Some(json!({"numRecords": file.events}).to_string()),
                    tags: Some(BTreeMap::from([(TAG_SHA256.to_string(), Some(file.sha256.clone()))])),
                }),
                ..Action::default()
            });
        }
        let removed = actions.iter().filter(|a| a.remove.is_some()).count();
        actions.push(Action {
            txn: Some(Txn { app_id: app_id(commit.connection_id, self.data, commit.hour), version: version as i64, last_updated: Some(commit.now_ms) }),
            ..Action::default()
        });
        actions.push(Action { commit_info: Some(self.commit_info(commit, added, removed)), ..Action::default() });
        Ok(actions)
    }

    fn metadata(&self, now_ms: i64) -> Metadata {
        Metadata {
            id: table_id(&format!("{}\n{}", self.store.describe(), self.root)),
            name: None,
            format: Format { provider: "parquet".into(), options: BTreeMap::new() },
            schema_string: schema_string(self.data),
            partition_columns: PARTITION_COLUMNS.iter().map(|c| c.to_string()).collect(),
            configuration: BTreeMap::from([
                ("delta.deletedFileRetentionDuration".into(), DELETED_FILE_RETENTION.into()),
                ("delta.logRetentionDuration".into(), LOG_RETENTION.into()),
                ("delta.checkpointInterval".into(), CHECKPOINT_INTERVAL.to_string()),
            ]),
            created_time: Some(now_ms),
        }
    }

    fn commit_info(&self, commit: &HourCommit<'_>, added: usize, removed: usize) -> serde_json::Value {
        let mut digest = Sha256::new();
        for f in commit.files {
            digest.update(format!("{}\t{}\n", self.path_of(&f.key), f.sha256));
        }
        let predicate = format!("dt = '{}' AND hour = {}", commit.hour.date_str(), commit.hour.hour_unpadded());
        json!({
            "timestamp": commit.now_ms,
            "operation": if removed > 0 { "REPLACE HOUR" } else { "WRITE" },
            "operationParameters": {
                "mode": if removed > 0 { "Overwrite" } else { "Append" },
                "partitionBy": serde_json::to_string(&PARTITION_COLUMNS).expect("names serialise"),
                "predicate": predicate,
            },
            "isBlindAppend": removed == 0,
            "engineInfo": concat!("event-export/", env!("CARGO_PKG_VERSION")),
            "eventExport": {
                "connection": commit.connection_id,
                "hour": commit.hour.to_string(),
                "mode": commit.mode,
                "parts": commit.files.len(),
                "added": added,
                "removed": removed,
                "partsDigest": format!("sha256:{}", hex::encode(digest.finalize())),
            },
        })
    }
}

/// The hour's live files, by log path, in part order (`#n` compared as a number).
fn hour_files(state: &TableState, hour: UtcHour) -> Vec<(String, &Add)> {
    let mut files: Vec<(String, &Add)> = state.files.iter().filter(|(_, a)| is_hour(&a.partition_values, hour)).map(|(p, a)| (p.clone(), a)).collect();
    files.sort_by_key(|(p, _)| (part_of(p), p.clone()));
    files
}

/// The part number in a log path (`...%23{n}.parquet`), for ordering.
fn part_of(path: &str) -> Option<u32> {
    path.rsplit_once("%23")?.1.split('.').next()?.parse().ok()
}

/// Whether the live files hold the wanted parts' bytes, one for one in order.
fn same_bytes(live: &[(String, &Add)], want: &[FileEntry]) -> bool {
    live.len() == want.len() && live.iter().zip(want).all(|((_, a), w)| a.sha256() == Some(w.sha256.as_str()) && a.size == w.bytes as i64)
}
