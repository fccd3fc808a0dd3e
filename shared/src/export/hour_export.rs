//! Exporting one hour of one connection: the export rules of the contract in one place.
//!
//! Recurring mode skips an hour whose complete marker exists. Recurring and replace then
//! write every part, delete stale extra parts, write the merged IDs, and write the marker
//! last. A failure anywhere leaves no marker, so the hour is retried, never half-reported.
//! Late mode adds the lake files that landed after the marker as new parts (de-duplicated
//! against the whole hour) and rewrites the marker to list every part.
//!
//! The lake is listed first: a replace over an empty lake hour while the destination holds
//! the hour refuses before anything is deleted, and an hour too large for the function's
//! limits fails with the size and the setting to raise instead of timing out.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::error::{ExportError, Result};
use crate::export::dedup::Deduplicator;
use crate::export::delta::{CommitOutcome, DeltaTable, HourCommit, TableUpkeep};
use crate::export::filter::Filter;
use crate::export::lake::{list_hour_files, read_files_blocking, InvalidRecord, LakeItem};
use crate::export::layout::{lake_events_prefix, lake_merges_prefix};
use crate::export::manifest::{DataReport, FileEntry, LakeInput, Manifest};
use crate::export::merged_ids::{normalize_merge, parse_merge};
use crate::export::merged_ids_parquet::MergedIdsColumns;
use crate::export::parallel::{for_each_event, EventPrep, Prepared};
use crate::export::part_writer::{self, PartWriter};
use crate::export::parts::CompressionPool;
use crate::export::schema::{InvalidReason, Normalizer};
use crate::export::spec::ExportSpec;
use crate::hour::UtcHour;
use crate::model::format::{PartFormat, TableFormat};
use crate::model::hour_request::ExportMode;
use crate::ports::{ObjectMeta, ObjectStore};

#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// A part is closed once it holds at least this many uncompressed bytes.
    pub part_size_bytes: u64,
    pub gzip_level: u32,
    pub pool: CompressionPool,
    /// What one run can finish (time and memory of the function).
    pub limits: HourLimits,
}

pub use crate::export::limits::{HourLimits, LAKE_BYTES_PER_SECOND};

/// Default roll-over: 128 MiB of JSON per part (about 15 MiB gzipped).
pub const DEFAULT_PART_SIZE: u64 = 128 << 20;

impl ExportSettings {
    /// `threads = 0`: one compression thread per core.
    pub fn new(part_size_bytes: u64, gzip_level: u32, threads: usize) -> Result<Self> {
        if part_size_bytes == 0 {
            return Err(ExportError::invalid_input("part size", "must be positive"));
        }
        if gzip_level > 9 {
            return Err(ExportError::invalid_input("gzip level", format!("{gzip_level} is not 0-9")));
        }
        Ok(ExportSettings { part_size_bytes, gzip_level, pool: CompressionPool::new(threads)?, limits: HourLimits::default() })
    }

    pub fn standard() -> Result<Self> {
        Self::new(DEFAULT_PART_SIZE, 6, 0)
    }
}

/// Where an export reads and writes.
#[derive(Debug, Clone)]
pub struct ExportTargets {
    pub lake: Arc<dyn ObjectStore>,
    pub events: Arc<dyn ObjectStore>,
    pub merged_ids: Arc<dyn ObjectStore>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourReport {
    pub hour: UtcHour,
    /// The marker already existed (recurring mode), or no late file was found (late mode):
    /// nothing was written.
    pub skipped: bool,
    pub manifest: Option<Manifest>,
    /// Late mode: what the late files added (new parts and their accounting).
    pub late: Option<DataReport>,
    /// Late mode: the hour's merged-IDs file as rewritten because late merge files landed
    /// (every merge record of the hour; `None` when it was not rewritten).
    pub late_merged_ids: Option<DataReport>,
    /// Delta connections: the upkeep of each table whose commit ran it (every tenth version, and every commit while a failed one is owed).
    pub table_upkeep: Vec<TableUpkeep>,
}

/// Where this connection's complete marker for `hour` lives.
pub fn marker_location<'a>(spec: &ExportSpec, targets: &'a ExportTargets, hour: UtcHour) -> (&'a Arc<dyn ObjectStore>, String) {
    if spec.events {
        (&targets.events, spec.events_layout().complete_key(hour))
    } else {
        (&targets.merged_ids, spec.merged_ids_layout().merged_ids_complete_key(hour))
    }
}

/// Checked before every destructive or final write (marker delete, stale-part delete,
/// marker write): a run that no longer holds its hour's lease must stop writing.
#[async_trait::async_trait]
pub trait WriteGuard: Send + Sync {
    async fn check(&self) -> Result<()>;
}

/// Choices for one export.
#[derive(Clone, Default)]
pub struct ExportOptions {
    /// Let a replace proceed although the lake hour is empty while the destination holds
    /// the hour (the operator knows the hour is really empty).
    pub allow_empty_lake: bool,
    /// The run's lease on the hour.
    pub guard: Option<Arc<dyn WriteGuard>>,
    /// Another connection of the organisation writes the merged IDs in this connection's
    /// merged-IDs folder (one owner per key space, `control::key_space`): this export
    /// leaves them to it and its manifest names it.
    pub merged_ids_owner: Option<String>,
}

impl ExportOptions {
    async fn check(&self) -> Result<()> {
        match &self.guard {
            Some(g) => g.check().await,
            None => Ok(()),
        }
    }
}

/// Crash points for the fault-timeline tests: with `EXPORT_PAUSE_AT=<step>` in the
/// environment the exporter stops at that step (prints `paused at <step>` on stderr and
/// waits), so a test can kill -9 it exactly there; with `EXPORT_PAUSE_UNTIL=<file>` as well
/// it goes on once that file exists (a run that stalled and wakes up). Steps:
/// `after_marker_delete`, `between_parts`, `before_stale_delete`, `after_delta_commit` (a
/// Delta table's commit is written, the marker not yet), `before_marker`.
pub fn crash_point(step: &str) {
    static PAUSE_AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if PAUSE_AT.get_or_init(|| std::env::var("EXPORT_PAUSE_AT").ok()).as_deref() == Some(step) {
        eprintln!("paused at {step}");
        let until = std::env::var_os("EXPORT_PAUSE_UNTIL").map(std::path::PathBuf::from);
        loop {
            match &until {
                Some(file) if file.exists() => return,
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                None => std::thread::sleep(std::time::Duration::from_secs(3600)),
            }
        }
    }
}

/// The lake files of an hour, as our own infrastructure (never the customer's) reads them.
async fn lake_files(lake: &dyn ObjectStore, prefix: &str) -> Result<Vec<ObjectMeta>> {
    list_hour_files(lake, prefix).await.map_err(|e| e.ours("event lake"))
}

fn inputs_of(files: &[ObjectMeta]) -> Vec<LakeInput> {
    files.iter().map(|f| LakeInput { key: f.key.clone(), size: f.size }).collect()
}

/// Exports one hour of one connection.
pub async fn export_hour(spec: &ExportSpec, targets: &ExportTargets, hour: UtcHour, mode: ExportMode, settings: &ExportSettings) -> Result<HourReport> {
    export_hour_with(spec, targets, hour, mode, settings, &ExportOptions::default(), None).await
}

/// [`export_hour`] with options, and for late mode the manifest already exported (read
/// from the destination's marker when not given).
pub async fn export_hour_with(
    spec: &ExportSpec,
    targets: &ExportTargets,
    hour: UtcHour,
    mode: ExportMode,
    settings: &ExportSettings,
    options: &ExportOptions,
    prior: Option<Manifest>,
) -> Result<HourReport> {
    let filter = spec.filter.clone();
    let (marker_store, marker_key) = marker_location(spec, targets, hour);
    if mode == ExportMode::Recurring && spec.complete_markers {
        if let Some(meta) = marker_store.head(&marker_key).await? {
            // Read back so the ledger learns what the earlier export consumed.
            let manifest = match marker_store.get(&meta.key).await {
                Ok(body) => serde_json::from_slice(&body).ok(),
                Err(_) => None,
            };
            return Ok(HourReport { hour, skipped: true, manifest, late: None, late_merged_ids: None, table_upkeep: Vec::new() });
        }
    }
    let event_files = if spec.events { lake_files(targets.lake.as_ref(), &lake_events_prefix(&spec.project_id, hour)).await? } else { Vec::new() };
    let merge_files = if spec.merged_ids { lake_files(targets.lake.as_ref(), &lake_merges_prefix(&spec.org_id, hour)).await? } else { Vec::new() };

    if mode == ExportMode::Late {
        return export_late(spec, targets, hour, settings, filter, event_files, merge_files, prior, options).await;
    }
    settings.limits.check(hour, &event_files, prior.as_ref().and_then(|m| m.events.as_ref()))?;
    if mode == ExportMode::Replace {
        refuse_empty_replace(spec, targets, hour, &event_files, &merge_files, options).await?;
        if spec.complete_markers {
            // The old marker goes first: while parts are rewritten the hour must not look complete.
            options.check().await?;
            marker_store.delete(&marker_key).await?;
            crash_point("after_marker_delete");
        }
    }
    let mut manifest = Manifest::empty(spec, hour);
    let mut table_upkeep = Vec::new();
    if spec.events {
        let table = events_table(spec, targets);
        // A Delta table's data files are never overwritten: the parts are numbered above
        // every part of the hour its log still knows.
        let first_part = match &table {
            Some(t) => t.next_part(&t.load().await?, &spec.events_layout(), hour)?,
            None => 0,
        };
        let mut report = export_events(spec, targets, hour, filter, settings, event_files, first_part, Deduplicator::new()).await?;
        crash_point("before_stale_delete");
        options.check().await?;
        match &table {
            // The replaced parts stay until the table's vacuum: readers of older versions need them.
            Some(t) => {
                let outcome = commit_hour(t, spec, hour, mode, &report.files).await?;
                report.files = outcome.files;
                manifest.table_version = Some(outcome.version);
                table_upkeep.extend(outcome.upkeep);
            }
            None => delete_stale_parts(spec, targets, hour, report.files.len() as u32).await?,
        }
        manifest.events = Some(report);
    }
    if spec.merged_ids {
        match (&options.merged_ids_owner, merged_ids_table(spec, targets)) {
            (Some(owner), _) => manifest.merged_ids_written_by = Some(owner.clone()),
            (None, None) => manifest.merged_ids = Some(export_merged_ids(spec, targets, hour, settings, merge_files).await?),
            (None, Some(t)) => {
                // Boxed: the export's future stays small (clippy's large_futures).
                let (report, version, upkeep) = Box::pin(export_merged_ids_table(&t, spec, targets, hour, mode, merge_files, options)).await?;
                manifest.merged_ids_table_version = Some(version);
                table_upkeep.extend(upkeep);
                manifest.merged_ids = Some(report);
            }
        }
    }
    write_marker(spec, marker_store, &marker_key, &manifest, options).await?;
    Ok(HourReport { hour, skipped: false, manifest: Some(manifest), late: None, late_merged_ids: None, table_upkeep })
}

/// The last step of every export: the accounting must balance, then the marker (with the
/// lease checked once more) says the hour is complete.
async fn write_marker(spec: &ExportSpec, store: &Arc<dyn ObjectStore>, key: &str, manifest: &Manifest, options: &ExportOptions) -> Result<()> {
    if !manifest.balances() {
        return Err(ExportError::Internal(format!("accounting does not balance for {}: {manifest:?}", manifest.hour)));
    }
    if spec.complete_markers {
        crash_point("before_marker");
        options.check().await?;
        store.put(key, Bytes::from(manifest.to_json())).await?;
    }
    Ok(())
}

/// A replace whose lake hour is missing or empty would erase what the destination holds:
/// lake retention or a wrong lake prefix is not a reason to delete a customer's export.
async fn refuse_empty_replace(
    spec: &ExportSpec,
    targets: &ExportTargets,
    hour: UtcHour,
    event_files: &[ObjectMeta],
    merge_files: &[ObjectMeta],
    options: &ExportOptions,
) -> Result<()> {
    if options.allow_empty_lake {
        return Ok(());
    }
    // Each kind on its own: expired event files beside surviving merge files must not
    // erase the hour's events (nor the other way round).
    let empty = |files: &[ObjectMeta]| files.iter().all(|f| f.size == 0);
    let mut held = Vec::new();
    if spec.events && empty(event_files) {
        let parts = targets.events.list(&spec.events_layout().part_prefix(hour)).await?.len();
        if parts > 0 {
            held.push(format!("{parts} event part(s) while the lake has no event files"));
        }
    }
    if spec.merged_ids && empty(merge_files) {
        let layout = spec.merged_ids_layout();
        let held_file = match spec.table {
            TableFormat::Files => targets.merged_ids.head(&layout.merged_ids_key(hour)).await?.is_some(),
            TableFormat::Delta => !targets.merged_ids.list(&layout.merged_ids_part_prefix(hour)).await?.is_empty(),
        };
        if held_file {
            held.push("its merged-IDs file while the lake has no merge files".to_string());
        }
    }
    let (marker_store, marker_key) = marker_location(spec, targets, hour);
    // A marker alone deletes nothing unless it counts exported records: an hour that was
    // empty when exported (its marker counts 0) is simply exported empty again.
    if held.is_empty() && empty(event_files) && empty(merge_files) && spec.complete_markers && marker_store.head(&marker_key).await?.is_some() {
        let counted = marker_store
            .get(&marker_key)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            .map(|m| [m.events, m.merged_ids].iter().flatten().map(|r| r.accounting.exported).sum::<u64>());
        match counted {
            Some(0) => {}
            Some(n) => held.push(format!("a complete marker counting {n} exported record(s) while the lake has no files at all")),
            None => held.push("an unreadable complete marker while the lake has no files at all".to_string()),
        }
    }
    if held.is_empty() {
        return Ok(());
    }
    Err(ExportError::Conflict {
        what: format!(
            "refusing to replace {hour}: the destination holds {} for this hour (expired by the lake's retention, or a wrong lake prefix); \
             nothing was deleted. If the hour is really empty, run the backfill again with --allow-empty-lake",
            held.join(", and ")
        ),
    })
}

/// The Delta table over the connection's event parts, when it asked for one.
fn events_table(spec: &ExportSpec, targets: &ExportTargets) -> Option<DeltaTable> {
    (spec.events && spec.table == TableFormat::Delta).then(|| DeltaTable::new(targets.events.clone(), spec.events_layout().events_dir()))
}

/// The Delta table over the organisation's merged IDs (`P/-O`), when the connection asked
/// for Delta tables.
fn merged_ids_table(spec: &ExportSpec, targets: &ExportTargets) -> Option<DeltaTable> {
    (spec.merged_ids && spec.table == TableFormat::Delta).then(|| DeltaTable::merged_ids(targets.merged_ids.clone(), spec.merged_ids_layout().merges_dir()))
}

/// Commits the hour's files to its Delta table (see `export::delta::commit`: one idempotent
/// commit). When the table already held the same bytes under other part numbers (a rerun
/// after a crash between the commit and the marker), the files just written are deleted
/// again and the table's are the hour's.
async fn commit_hour(table: &DeltaTable, spec: &ExportSpec, hour: UtcHour, mode: ExportMode, files: &[FileEntry]) -> Result<CommitOutcome> {
    let commit = HourCommit { connection_id: &spec.connection_id, hour, mode, files, now_ms: chrono::Utc::now().timestamp_millis() };
    let outcome = table.commit_hour(&commit).await?;
    for key in &outcome.redundant {
        table.store.delete(key).await?;
    }
    crash_point("after_delta_commit");
    Ok(outcome)
}

/// Parts beyond the ones just written belong to an earlier, larger export of this hour.
async fn delete_stale_parts(spec: &ExportSpec, targets: &ExportTargets, hour: UtcHour, written: u32) -> Result<()> {
    let layout = spec.events_layout();
    for stale in targets.events.list(&layout.part_prefix(hour)).await? {
        if layout.part_number(hour, &stale.key).is_some_and(|n| n >= written) {
            targets.events.delete(&stale.key).await?;
        }
    }
    Ok(())
}

/// Late data: exports the lake event files the prior manifest does not list as new parts,
/// after the existing ones, de-duplicated against every event already exported for the hour;
/// when merge files landed that the manifest does not list, rewrites the hour's merged-IDs
/// file from every merge file of the hour (the same bytes a replace would write). Then
/// rewrites the marker. Existing event parts are never touched.
#[allow(clippy::too_many_arguments)]
async fn export_late(
    spec: &ExportSpec,
    targets: &ExportTargets,
    hour: UtcHour,
    settings: &ExportSettings,
    filter: Option<Filter>,
    event_files: Vec<ObjectMeta>,
    merge_files: Vec<ObjectMeta>,
    prior: Option<Manifest>,
    options: &ExportOptions,
) -> Result<HourReport> {
    let (marker_store, marker_key) = marker_location(spec, targets, hour);
    let prior = match prior {
        Some(m) => m,
        None => {
            let body = marker_store.get(&marker_key).await?;
            serde_json::from_slice::<Manifest>(&body).map_err(|e| ExportError::Corrupt { what: marker_key.clone(), detail: e.to_string() })?
        }
    };
    let events_before = prior.events.clone().filter(|e| spec.events && e.knows_its_inputs());
    let (old, new): (Vec<ObjectMeta>, Vec<ObjectMeta>) = match &events_before {
        Some(before) => event_files.into_iter().partition(|f| before.lake_inputs.iter().any(|i| i.key == f.key)),
        None => (Vec::new(), Vec::new()),
    };
    let merges_late = options.merged_ids_owner.is_none() && !unlisted(spec.merged_ids, prior.merged_ids.as_ref(), &merge_files).is_empty();
    if new.is_empty() && !merges_late {
        return Ok(HourReport { hour, skipped: true, manifest: Some(prior), late: None, late_merged_ids: None, table_upkeep: Vec::new() });
    }
    let mut manifest = prior;
    let mut late = DataReport::default();
    let mut table_upkeep = Vec::new();
    if let (Some(mut events), false) = (events_before, new.is_empty()) {
        // The whole hour is read again (the de-duplication replays the old files), so the
        // whole hour is what must fit, not only the new files.
        let whole: Vec<ObjectMeta> = old.iter().chain(new.iter()).cloned().collect();
        settings.limits.check(hour, &whole, Some(&events))?;
        let dedup = replay_dedup(spec, targets, settings, old).await?;
        let table = events_table(spec, targets);
        let mut first_part = events.files.iter().filter_map(|f| f.part).max().map_or(0, |p| p + 1);
        if let Some(t) = &table {
            first_part = first_part.max(t.next_part(&t.load().await?, &spec.events_layout(), hour)?);
        }
        late = export_events(spec, targets, hour, filter, settings, new, first_part, dedup).await?;
        let earlier = events.files.len();
        events.extend(late.clone());
        if let Some(t) = &table {
            options.check().await?;
            // One more `add` per new part; the earlier parts are already in the table.
            let outcome = commit_hour(t, spec, hour, ExportMode::Late, &events.files).await?;
            late.files = outcome.files[earlier..].to_vec();
            events.files = outcome.files;
            manifest.table_version = Some(outcome.version);
            table_upkeep.extend(outcome.upkeep);
        }
        manifest.events = Some(events);
    }
    let mut late_merged_ids = None;
    if merges_late {
        let merged = match (merged_ids_table(spec, targets), manifest.merged_ids.clone()) {
            (Some(t), Some(merged)) => {
                let (merged, version, upkeep) = Box::pin(add_late_merged_ids(&t, spec, targets, hour, merged, &merge_files, options)).await?;
                manifest.merged_ids_table_version = Some(version);
                table_upkeep.extend(upkeep);
                merged
            }
            _ => {
                // One file per hour, the name loaders know: rewritten whole, never a second file.
                options.check().await?;
                export_merged_ids(spec, targets, hour, settings, merge_files).await?
            }
        };
        manifest.merged_ids = Some(merged.clone());
        late_merged_ids = Some(merged);
    }
    write_marker(spec, marker_store, &marker_key, &manifest, options).await?;
    Ok(HourReport { hour, skipped: false, manifest: Some(manifest), late: Some(late), late_merged_ids, table_upkeep })
}

/// The lake files of one data kind that `report` (what the hour's manifest says was
/// consumed) does not list: none when the kind is not exported by this connection, or when
/// the report predates `lake_inputs` and cannot tell.
fn unlisted<'a>(exported: bool, report: Option<&DataReport>, files: &'a [ObjectMeta]) -> Vec<&'a ObjectMeta> {
    match report.filter(|r| exported && r.knows_its_inputs()) {
        Some(r) => files.iter().filter(|f| !r.lake_inputs.iter().any(|i| i.key == f.key)).collect(),
        None => Vec::new(),
    }
}

/// The hour's lake merge files that landed after its manifest was written (not in its
/// `merged_ids.lake_inputs`): what a late run rewrites the merged-IDs file for. Empty when
/// the manifest has no merged IDs of its own (another connection writes them, or the
/// connection exports none).
pub async fn late_merge_files(lake: &dyn ObjectStore, spec: &ExportSpec, manifest: &Manifest) -> Result<Vec<ObjectMeta>> {
    if !spec.merged_ids || manifest.merged_ids.is_none() {
        return Ok(Vec::new());
    }
    let files = lake_files(lake, &lake_merges_prefix(&spec.org_id, manifest.hour)).await?;
    Ok(unlisted(true, manifest.merged_ids.as_ref(), &files).into_iter().cloned().collect())
}

/// The de-duplication set of the events in lake files already exported.
async fn replay_dedup(spec: &ExportSpec, targets: &ExportTargets, settings: &ExportSettings, files: Vec<ObjectMeta>) -> Result<Deduplicator> {
    let lake = targets.lake.clone();
    let handle = tokio::runtime::Handle::current();
    let prep = EventPrep { normalizer: Normalizer::new(&spec.project_id, spec.timestamp_format), filter: None, field_policy: None };
    let workers = settings.pool.threads();
    tokio::task::spawn_blocking(move || {
        let mut dedup = Deduplicator::new();
        for_each_event(&lake, &files, &handle, workers, &prep, |item| {
            if let Prepared::Event { key: Some(key), .. } = item {
                dedup.first_time_fingerprint(key);
            }
            Ok(())
        })
        .map(|()| dedup)
    })
    .await
    .map_err(|e| ExportError::Internal(format!("de-duplication replay panicked: {e}")))?
}

/// Messages from the CPU pipeline (blocking thread) to the uploader (async task).
/// Exports `files` as parts numbered from `first_part`, skipping events `dedup` has seen.
#[allow(clippy::too_many_arguments)]
async fn export_events(
    spec: &ExportSpec,
    targets: &ExportTargets,
    hour: UtcHour,
    filter: Option<Filter>,
    settings: &ExportSettings,
    files: Vec<ObjectMeta>,
    first_part: u32,
    mut dedup: Deduplicator,
) -> Result<DataReport> {
    let layout = spec.events_layout();
    let (mut writer, uploader) = PartWriter::start(targets.events.clone(), settings.pool.clone(), settings.gzip_level, spec.format);
    let lake = targets.lake.clone();
    let handle = tokio::runtime::Handle::current();
    let prep = EventPrep { normalizer: Normalizer::new(&spec.project_id, spec.timestamp_format), filter, field_policy: spec.field_policy.clone() };
    let part_size = settings.part_size_bytes;
    let workers = settings.pool.threads();
    let pipeline = tokio::task::spawn_blocking(move || {
        let mut report = DataReport { lake_files: files.len() as u64, lake_inputs: inputs_of(&files), ..DataReport::default() };
        let mut next_part = first_part;
        // Every decision that depends on order is taken here, one line after the other in
        // lake order: the same lake gives the same parts at any thread count.
        for_each_event(&lake, &files, &handle, workers, &prep, |item| {
            let (event, key, kept) = match item {
                Prepared::Invalid(rec) => {
                    report.record_invalid(rec);
                    return Ok(());
                }
                Prepared::Event { event, key, kept } => (event, key, kept),
            };
            report.accounting.read += 1;
            if let Some(key) = key {
                if !dedup.first_time_fingerprint(key) {
                    report.accounting.duplicates += 1;
                    return Ok(());
                }
            }
            if !kept {
                report.accounting.filtered += 1;
                return Ok(());
            }
            report.accounting.exported += 1;
            if !writer.is_open() {
                writer.open(layout.part_key(hour, next_part), Some(next_part))?;
                next_part += 1;
            }
            writer.write_event(event)?;
            if writer.uncompressed_len() >= part_size {
                report.files.extend(writer.close()?);
                crash_point("between_parts");
            }
            Ok(())
        })?;
        report.files.extend(writer.close()?);
        Ok::<_, ExportError>(report)
    });
    part_writer::join(pipeline, uploader, "export").await
}

/// Reads the hour's merge files for either merged-IDs writer: `take` turns one lake line
/// into output, or says why the line is invalid; broken pieces of the lake and invalid lines
/// are recorded with their file and line, and the accounting counts the rest.
fn read_merges(
    lake: &Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
    handle: &tokio::runtime::Handle,
    report: &mut DataReport,
    mut take: impl FnMut(&[u8]) -> Result<std::result::Result<(), InvalidReason>>,
) -> Result<()> {
    read_files_blocking(lake, files, handle, |item| {
        let (file, line, bytes) = match item {
            LakeItem::Broken(rec) => {
                report.record_invalid(rec);
                return Ok(());
            }
            LakeItem::Line { file, line, bytes } => (file, line, bytes),
        };
        match take(bytes)? {
            Ok(()) => {
                report.accounting.read += 1;
                report.accounting.exported += 1;
            }
            Err(reason) => report.record_invalid(InvalidRecord { file: file.to_string(), line, reason: reason.0 }),
        }
        Ok(())
    })
}

async fn export_merged_ids(spec: &ExportSpec, targets: &ExportTargets, hour: UtcHour, settings: &ExportSettings, files: Vec<ObjectMeta>) -> Result<DataReport> {
    let key = spec.merged_ids_layout().merged_ids_key(hour);
    let (mut writer, uploader) = PartWriter::start(targets.merged_ids.clone(), settings.pool.clone(), settings.gzip_level, PartFormat::Json);
    let lake = targets.lake.clone();
    let handle = tokio::runtime::Handle::current();
    let file_key = key.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let mut report = DataReport { lake_files: files.len() as u64, lake_inputs: inputs_of(&files), ..DataReport::default() };
        let mut line_out = Vec::new();
        read_merges(&lake, &files, &handle, &mut report, |bytes| {
            if let Err(reason) = normalize_merge(bytes, &mut line_out) {
                return Ok(Err(reason));
            }
            if !writer.is_open() {
                writer.open(file_key.clone(), None)?;
            }
            line_out.push(b'\n');
            writer.write_line(&line_out).map(Ok)
        })?;
        report.files.extend(writer.close()?);
        Ok::<_, ExportError>(report)
    });
    let report = part_writer::join(pipeline, uploader, "merged-ID").await?;
    if report.files.is_empty() {
        // No merges this hour: a file left by an earlier export of it is stale.
        targets.merged_ids.delete(&key).await?;
    }
    Ok(report)
}

/// A Delta connection's merged IDs of the hour: one Parquet file, numbered above every file
/// of the hour the log knows (like the event parts), committed; the report and the version.
async fn export_merged_ids_table(
    table: &DeltaTable,
    spec: &ExportSpec,
    targets: &ExportTargets,
    hour: UtcHour,
    mode: ExportMode,
    files: Vec<ObjectMeta>,
    options: &ExportOptions,
) -> Result<(DataReport, u64, Option<TableUpkeep>)> {
    let part = table.next_part(&table.load().await?, &spec.merged_ids_layout(), hour)?;
    let mut report = export_merged_ids_parquet(spec, targets, hour, files, part).await?;
    options.check().await?;
    let outcome = commit_hour(table, spec, hour, mode, &report.files).await?;
    report.files = outcome.files;
    Ok((report, outcome.version, outcome.upkeep))
}

/// A Delta connection's late merges: one more file of the late records only, committed
/// beside the hour's earlier files (whose rows the table already holds); `merged` extended
/// with it, and the version.
async fn add_late_merged_ids(
    table: &DeltaTable,
    spec: &ExportSpec,
    targets: &ExportTargets,
    hour: UtcHour,
    mut merged: DataReport,
    merge_files: &[ObjectMeta],
    options: &ExportOptions,
) -> Result<(DataReport, u64, Option<TableUpkeep>)> {
    let late_files = unlisted(true, Some(&merged), merge_files).into_iter().cloned().collect();
    let part = table.next_part(&table.load().await?, &spec.merged_ids_layout(), hour)?;
    merged.extend(export_merged_ids_parquet(spec, targets, hour, late_files, part).await?);
    options.check().await?;
    let outcome = commit_hour(table, spec, hour, ExportMode::Late, &merged.files).await?;
    merged.files = outcome.files;
    Ok((merged, outcome.version, outcome.upkeep))
}

/// A Delta connection's merged IDs of `files` as one Parquet file numbered `part` (no file
/// when they hold no merge: the commit then leaves the hour without one).
async fn export_merged_ids_parquet(spec: &ExportSpec, targets: &ExportTargets, hour: UtcHour, files: Vec<ObjectMeta>, part: u32) -> Result<DataReport> {
    let key = spec.merged_ids_layout().merged_ids_part_key(hour, part);
    let lake = targets.lake.clone();
    let handle = tokio::runtime::Handle::current();
    let encoded = tokio::task::spawn_blocking(move || {
        let mut report = DataReport { lake_files: files.len() as u64, lake_inputs: inputs_of(&files), ..DataReport::default() };
        let mut columns = MergedIdsColumns::default();
        read_merges(&lake, &files, &handle, &mut report, |bytes| Ok(parse_merge(bytes).map(|row| columns.push(&row))))?;
        let rows = columns.rows();
        let file = if rows == 0 { None } else { Some(columns.finish()?) };
        Ok::<_, ExportError>((report, rows, file))
    })
    .await
    .map_err(|e| ExportError::Internal(format!("merged-ID parquet encoding panicked: {e}")))?;
    let (mut report, rows, file) = encoded?;
    if let Some((bytes, uncompressed)) = file {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        targets.merged_ids.put(&key, Bytes::from(bytes)).await?;
        report.files.push(FileEntry { key, part: Some(part), events: rows, bytes: size, uncompressed_bytes: uncompressed, sha256 });
    }
    Ok(report)
}
