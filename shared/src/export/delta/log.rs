//! Reading a table's log into its latest snapshot ([`TableState`]): the newest checkpoint
//! (when one exists) and every JSON entry after it, reconciled as the protocol says
//! ("Action Reconciliation": the newest action per path wins; `remove`s are tombstones;
//! the newest `txn` per appId wins).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ExportError, Result};
use crate::export::delta::actions::{commit_file, decode_path, parse_log_file, Action, Add, Metadata, Protocol, Remove, TableData};
use crate::export::delta::checkpoint;
use crate::ports::{join_key, ObjectStore};

/// A Delta table in a store: its root folder (the events folder `P/A`, or the merged IDs'
/// folder `P/-O`).
#[derive(Debug, Clone)]
pub struct DeltaTable {
    pub store: Arc<dyn ObjectStore>,
    /// The table root, a key prefix without trailing `/` (may be empty).
    pub root: String,
    /// What it holds (its schema, its `txn` appIds).
    pub data: TableData,
}

/// A table's state at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// `None`: the table has no log yet.
    pub version: Option<u64>,
    pub protocol: Option<Protocol>,
    pub metadata: Option<Metadata>,
    /// Live files by log path.
    pub files: BTreeMap<String, Add>,
    /// Removed files not yet vacuumed, by log path.
    pub tombstones: BTreeMap<String, Remove>,
    /// The latest version per `txn` appId.
    pub txns: BTreeMap<String, i64>,
}

impl TableState {
    pub fn apply(&mut self, action: Action) {
        if let Some(p) = action.protocol {
            self.protocol = Some(p);
        }
        if let Some(m) = action.metadata {
            self.metadata = Some(m);
        }
        if let Some(t) = action.txn {
            self.txns.insert(t.app_id, t.version);
        }
        if let Some(r) = action.remove {
            self.files.remove(&r.path);
            self.tombstones.insert(r.path.clone(), r);
        }
        if let Some(a) = action.add {
            self.tombstones.remove(&a.path);
            self.files.insert(a.path.clone(), a);
        }
    }

    /// The version after this one: where the next commit goes.
    pub fn next_version(&self) -> u64 {
        self.version.map_or(0, |v| v + 1)
    }
}

impl DeltaTable {
    /// The events table at `root`.
    pub fn new(store: Arc<dyn ObjectStore>, root: impl Into<String>) -> Self {
        Self::holding(store, root, TableData::Events)
    }

    /// The merged IDs' table at `root`.
    pub fn merged_ids(store: Arc<dyn ObjectStore>, root: impl Into<String>) -> Self {
        Self::holding(store, root, TableData::MergedIds)
    }

    pub fn holding(store: Arc<dyn ObjectStore>, root: impl Into<String>, data: TableData) -> Self {
        DeltaTable { store, root: root.into().trim_matches('/').to_string(), data }
    }

    /// `root/_delta_log/` (the listing prefix of the log).
    pub fn log_dir(&self) -> String {
        join_key(&self.root, "_delta_log/")
    }

    /// The key of a file in the log folder.
    pub fn log_key(&self, name: &str) -> String {
        format!("{}{name}", self.log_dir())
    }

    /// The store key of a log path (`add`/`remove` paths are relative and URI-encoded).
    pub fn key_of(&self, path: &str) -> Result<String> {
        let rel =
            decode_path(path).ok_or_else(|| ExportError::Corrupt { what: self.log_dir(), detail: format!("the path {path:?} is not URI-encoded UTF-8") })?;
        Ok(join_key(&self.root, &rel))
    }

    /// The log path of a store key under the root.
    pub fn path_of(&self, key: &str) -> String {
        let rel = if self.root.is_empty() { key } else { key.strip_prefix(&self.root).map(|k| k.trim_start_matches('/')).unwrap_or(key) };
        crate::export::delta::actions::encode_path(rel)
    }

    /// Every version the log folder holds, and the versions of its checkpoints, ascending.
    pub async fn list_versions(&self) -> Result<(Vec<u64>, Vec<u64>)> {
        let dir = self.log_dir();
        let (mut commits, mut checkpoints) = (Vec::new(), Vec::new());
        for meta in self.store.list(&dir).await? {
            let name = &meta.key[dir.len()..];
            match parse_log_file(name) {
                Some((v, false)) => commits.push(v),
                Some((v, true)) => checkpoints.push(v),
                None => {}
            }
        }
        commits.sort_unstable();
        checkpoints.sort_unstable();
        Ok((commits, checkpoints))
    }

    /// The latest snapshot: the newest checkpoint, then every entry after it.
    pub async fn load(&self) -> Result<TableState> {
        self.load_at(None).await
    }

    /// The snapshot at `version` (the latest when `None`).
    pub async fn load_at(&self, version: Option<u64>) -> Result<TableState> {
        Ok(self.load_with_checkpoint(version).await?.0)
    }

    /// The snapshot at `version` (the latest when `None`) and the version of the newest
    /// checkpoint at or below it (`None`: the table has none).
    pub async fn load_with_checkpoint(&self, version: Option<u64>) -> Result<(TableState, Option<u64>)> {
        let (commits, checkpoints) = self.list_versions().await?;
        let last = match (version, commits.last(), checkpoints.last()) {
            (Some(v), _, _) => v,
            (None, Some(&c), Some(&k)) => c.max(k),
            (None, Some(&v), None) | (None, None, Some(&v)) => v,
            (None, None, None) => return Ok((TableState::default(), None)),
        };
        let newest_checkpoint = checkpoints.iter().rev().find(|&&c| c <= last).copied();
        let (mut state, from) = match newest_checkpoint {
            Some(c) => (checkpoint::read(self, c).await?, c + 1),
            None => (TableState::default(), 0),
        };
        if from == 0 && commits.first().is_some_and(|&first| first > 0) {
            return Err(ExportError::Corrupt {
                what: self.log_dir(),
                detail: format!("the log starts at version {} and holds no checkpoint before it", commits[0]),
            });
        }
        for v in from..=last {
            self.apply_entry(&mut state, v).await?;
        }
        Ok((state, newest_checkpoint))
    }

    /// Brings `state` up to the latest version by reading the entries after it, one by one
    /// until the next is missing (no listing: what a commit retry needs after a conflict).
    pub async fn catch_up(&self, state: &mut TableState) -> Result<()> {
        loop {
            let version = state.next_version();
            let key = self.log_key(&commit_file(version));
            match self.store.get(&key).await {
                Ok(body) => apply_body(state, version, &body, &key)?,
                Err(ExportError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    async fn apply_entry(&self, state: &mut TableState, version: u64) -> Result<()> {
        let key = self.log_key(&commit_file(version));
        let body = self.store.get(&key).await?;
        apply_body(state, version, &body, &key)
    }

    /// Reads the actions of one entry.
    pub async fn read_entry(&self, version: u64) -> Result<Vec<Action>> {
        let key = self.log_key(&commit_file(version));
        parse_entry(&self.store.get(&key).await?, &key)
    }
}

fn apply_body(state: &mut TableState, version: u64, body: &Bytes, key: &str) -> Result<()> {
    for action in parse_entry(body, key)? {
        state.apply(action);
    }
    state.version = Some(version);
    Ok(())
}

/// The actions of a log entry (newline-delimited JSON; blank lines skipped).
pub fn parse_entry(body: &[u8], key: &str) -> Result<Vec<Action>> {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| {
            serde_json::from_slice::<Action>(l)
                .map_err(|e| ExportError::Corrupt { what: key.to_string(), detail: format!("a log line is not a Delta action: {e}") })
        })
        .collect()
}
