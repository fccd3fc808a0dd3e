//! Upkeep after every [`CHECKPOINT_INTERVAL`](crate::export::delta::commit::CHECKPOINT_INTERVAL)-th
//! commit, in this order:
//!
//! 1. **Vacuum:** the data files of tombstones older than the table's
//!    `delta.deletedFileRetentionDuration` (7 days unless the table says otherwise) are
//!    deleted. Younger tombstones keep their files, so a reader of any version within the
//!    retention (time travel to before a replace) still finds every file it lists.
//! 2. **Checkpoint** of the version, without the expired tombstones (their files are gone).
//! 3. **Log retention:** entries and checkpoints before the newest checkpoint whose commit
//!    is older than `delta.logRetentionDuration` (30 days) are deleted (PROTOCOL.md,
//!    "Metadata Cleanup"); the table stays readable from that checkpoint on.
//!
//! The commit has happened when this runs: a failure here is logged and the next upkeep
//! does the work, it never fails the hour.

use crate::error::Result;
use crate::export::delta::actions::{checkpoint_file, commit_file};
use crate::export::delta::checkpoint;
use crate::export::delta::commit::{DELETED_FILE_RETENTION, LOG_RETENTION};
use crate::export::delta::log::{DeltaTable, TableState};

/// Milliseconds of a Delta interval property (`interval 7 days`, `interval 12 hours`, ...);
/// `None` when it is not one.
pub fn interval_ms(text: &str) -> Option<i64> {
    let mut words = text.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("interval") {
        return None;
    }
    let n: i64 = words.next()?.parse().ok()?;
    let unit = words.next()?.to_ascii_lowercase();
    let ms = match unit.trim_end_matches('s') {
        "week" => 7 * 86_400_000,
        "day" => 86_400_000,
        "hour" => 3_600_000,
        "minute" => 60_000,
        "second" => 1_000,
        "millisecond" => 1,
        _ => return None,
    };
    words.next().is_none().then_some(n * ms)
}

/// A retention property of the table, or its default.
fn retention(state: &TableState, key: &str, default: &str) -> i64 {
    let text = state.metadata.as_ref().and_then(|m| m.configuration.get(key)).map(String::as_str).unwrap_or(default);
    interval_ms(text).or_else(|| interval_ms(default)).unwrap_or(0)
}

/// What one upkeep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upkeep {
    pub vacuumed_files: usize,
    pub checkpoint: Option<u64>,
    pub deleted_log_files: usize,
}

/// Vacuum, checkpoint and log retention at `state`'s version (see the module's comment).
pub async fn upkeep(table: &DeltaTable, state: &TableState, now_ms: i64) -> Result<Upkeep> {
    let mut done = Upkeep::default();
    let files_after = now_ms - retention(state, "delta.deletedFileRetentionDuration", DELETED_FILE_RETENTION);
    let mut kept = state.clone();
    for (path, remove) in &state.tombstones {
        if remove.deletion_timestamp.unwrap_or(0) < files_after {
            table.store.delete(&table.key_of(path)?).await?;
            kept.tombstones.remove(path);
            done.vacuumed_files += 1;
        }
    }
    checkpoint::write(table, &kept).await?;
    done.checkpoint = kept.version;
    done.deleted_log_files = clean_log(table, now_ms - retention(state, "delta.logRetentionDuration", LOG_RETENTION)).await?;
    Ok(done)
}

/// Deletes the log before the newest checkpoint whose commit is not newer than `cutoff_ms`.
async fn clean_log(table: &DeltaTable, cutoff_ms: i64) -> Result<usize> {
    let (commits, checkpoints) = table.list_versions().await?;
    let mut cut = None;
    // Oldest first: earlier upkeeps removed what is older, so this reads one or two entries.
    for &c in &checkpoints {
        let ts = table.read_entry(c).await?.iter().find_map(|a| a.commit_info.as_ref()?.get("timestamp")?.as_i64());
        match ts {
            Some(ts) if ts <= cutoff_ms => cut = Some(c),
            _ => break,
        }
    }
    let Some(cut) = cut else { return Ok(0) };
    let mut deleted = 0;
    for v in commits.into_iter().filter(|&v| v < cut) {
        table.store.delete(&table.log_key(&commit_file(v))).await?;
        deleted += 1;
    }
    for v in checkpoints.into_iter().filter(|&v| v < cut) {
        table.store.delete(&table.log_key(&checkpoint_file(v))).await?;
        deleted += 1;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_delta_writes_them() {
        assert_eq!(interval_ms("interval 7 days"), Some(7 * 86_400_000));
        assert_eq!(interval_ms("interval 1 day"), Some(86_400_000));
        assert_eq!(interval_ms("INTERVAL 12 hours"), Some(12 * 3_600_000));
        assert_eq!(interval_ms("interval 2 weeks"), Some(14 * 86_400_000));
        assert_eq!(interval_ms("7 days"), None);
        assert_eq!(interval_ms("interval 7 fortnights"), None);
    }
}
