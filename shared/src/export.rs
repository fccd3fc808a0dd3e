//! Exporting one hour of one connection: the export rules of DESIGN.md in one place.
//!
//! Recurring mode skips an hour whose complete marker exists. Both modes then write every
//! part, delete stale extra parts, write the merged IDs, and write the marker last. A
//! failure anywhere leaves no marker, so the hour is retried, never half-reported.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::connection::Connection;
use crate::dedup::Deduplicator;
use crate::error::{ExportError, Result};
use crate::filter::Filter;
use crate::hour::UtcHour;
use crate::lake::{list_hour_files, read_files_blocking, InvalidRecord, LakeItem};
use crate::layout::{lake_events_prefix, lake_merges_prefix, ExportLayout};
use crate::manifest::{DataReport, FileEntry, Manifest};
use crate::merged_ids::normalize_merge;
use crate::parts::{CompressionPool, GzipPartEncoder};
use crate::schema::{ExportEvent, Normalizer};
use crate::storage::{ObjectStore, StreamingUpload};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExportMode {
    /// Scheduled runs: an hour that already has its complete marker is skipped.
    #[default]
    Recurring,
    /// Backfills: the hour is rewritten whatever is there.
    Replace,
}

impl std::fmt::Display for ExportMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExportMode::Recurring => "recurring",
            ExportMode::Replace => "replace",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// A part is closed once it holds at least this many uncompressed bytes.
    pub part_size_bytes: u64,
    pub gzip_level: u32,
    pub pool: CompressionPool,
}

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
        Ok(ExportSettings { part_size_bytes, gzip_level, pool: CompressionPool::new(threads)? })
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
    /// The marker already existed (recurring mode): nothing was written.
    pub skipped: bool,
    pub manifest: Option<Manifest>,
}

pub fn events_layout(conn: &Connection) -> ExportLayout {
    ExportLayout::new(conn.destination.prefix(), &conn.project_id, &conn.org_id)
}

pub fn merged_ids_layout(conn: &Connection) -> ExportLayout {
    ExportLayout::new(conn.merged_ids_destination().prefix(), &conn.project_id, &conn.org_id)
}

/// Where this connection's complete marker for `hour` lives.
pub fn marker_location<'a>(conn: &Connection, targets: &'a ExportTargets, hour: UtcHour) -> (&'a Arc<dyn ObjectStore>, String) {
    if conn.export.events {
        (&targets.events, events_layout(conn).complete_key(hour))
    } else {
        (&targets.merged_ids, merged_ids_layout(conn).merged_ids_complete_key(hour))
    }
}

/// Exports one hour of one connection.
pub async fn export_hour(conn: &Connection, targets: &ExportTargets, hour: UtcHour, mode: ExportMode, settings: &ExportSettings) -> Result<HourReport> {
    let filter = conn.compiled_filter()?;
    let (marker_store, marker_key) = marker_location(conn, targets, hour);
    if conn.complete_markers {
        match mode {
            ExportMode::Recurring => {
                if marker_store.head(&marker_key).await?.is_some() {
                    return Ok(HourReport { hour, skipped: true, manifest: None });
                }
            }
            // The old marker goes first: while parts are rewritten the hour must not look complete.
            ExportMode::Replace => marker_store.delete(&marker_key).await?,
        }
    }
    let mut manifest = Manifest {
        format: 1,
        connection_id: conn.id.clone(),
        project_id: conn.project_id.clone(),
        org_id: conn.org_id.clone(),
        hour,
        events: None,
        merged_ids: None,
    };
    if conn.export.events {
        manifest.events = Some(export_events(conn, targets, hour, filter, settings).await?);
    }
    if conn.export.merged_ids {
        manifest.merged_ids = Some(export_merged_ids(conn, targets, hour, settings).await?);
    }
    if !manifest.balances() {
        return Err(ExportError::Internal(format!("accounting does not balance for {hour}: {manifest:?}")));
    }
    if conn.complete_markers {
        marker_store.put(&marker_key, Bytes::from(manifest.to_json())).await?;
    }
    Ok(HourReport { hour, skipped: false, manifest: Some(manifest) })
}

/// Messages from the CPU pipeline (blocking thread) to the uploader (async task).
enum UploadMsg {
    Begin(String),
    Chunk(Bytes),
    End,
}

async fn export_events(conn: &Connection, targets: &ExportTargets, hour: UtcHour, filter: Option<Filter>, settings: &ExportSettings) -> Result<DataReport> {
    let layout = events_layout(conn);
    let files = list_hour_files(targets.lake.as_ref(), &lake_events_prefix(&conn.project_id, hour)).await?;
    let (tx, rx) = mpsc::channel::<UploadMsg>(16);
    let uploader = tokio::spawn(upload_parts(targets.events.clone(), rx));

    let lake = targets.lake.clone();
    let handle = tokio::runtime::Handle::current();
    let normalizer = Normalizer::new(&conn.project_id);
    let settings2 = settings.clone();
    let layout2 = layout.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let mut report = DataReport { lake_files: files.len() as u64, ..DataReport::default() };
        let mut dedup = Deduplicator::new();
        let mut event = ExportEvent::default();
        let mut part: Option<(u32, u64, GzipPartEncoder<_>)> = None;
        let mut next_part = 0u32;
        let send = |msg: UploadMsg| tx.blocking_send(msg).map_err(|_| ExportError::Internal("upload stopped".into()));
        let finish_part = |part: Option<(u32, u64, GzipPartEncoder<_>)>, report: &mut DataReport| -> Result<()> {
            if let Some((n, events, enc)) = part {
                let enc: GzipPartEncoder<_> = enc;
                let stats = enc.finish(events)?;
                send(UploadMsg::End)?;
                report.files.push(FileEntry {
                    key: layout2.part_key(hour, n),
                    part: Some(n),
                    events,
                    bytes: stats.compressed_bytes,
                    uncompressed_bytes: stats.uncompressed_bytes,
                    sha256: stats.sha256,
                });
            }
            Ok(())
        };
        read_files_blocking(&lake, &files, &handle, |item| {
            let Some((file, line, bytes)) = line_or_record(&mut report, item) else {
                return Ok(());
            };
            if let Err(reason) = normalizer.normalize(bytes, &mut event) {
                report.record_invalid(InvalidRecord { file: file.to_string(), line, reason: reason.0 });
                return Ok(());
            }
            report.accounting.read += 1;
            if let Some((device, insert)) = event.dedup_key() {
                if !dedup.first_time(device, insert) {
                    report.accounting.duplicates += 1;
                    return Ok(());
                }
            }
            if let Some(f) = &filter {
                if !f.matches(&event) {
                    report.accounting.filtered += 1;
                    return Ok(());
                }
            }
            report.accounting.exported += 1;
            if part.is_none() {
                send(UploadMsg::Begin(layout2.part_key(hour, next_part)))?;
                let tx = tx.clone();
                let enc = GzipPartEncoder::new(settings2.pool.clone(), settings2.gzip_level, move |chunk: Vec<u8>| {
                    tx.blocking_send(UploadMsg::Chunk(Bytes::from(chunk))).map_err(|_| ExportError::Internal("upload stopped".into()))
                });
                part = Some((next_part, 0, enc));
                next_part += 1;
            }
            let (_, events, enc) = part.as_mut().expect("part just opened");
            event.line.push(b'\n');
            enc.write(&event.line)?;
            *events += 1;
            if enc.uncompressed_len() >= settings2.part_size_bytes {
                finish_part(part.take(), &mut report)?;
            }
            Ok(())
        })?;
        finish_part(part.take(), &mut report)?;
        Ok::<_, ExportError>(report)
    });

    let pipeline_result = pipeline.await.map_err(|e| ExportError::Internal(format!("export pipeline panicked: {e}")))?;
    let upload_result = uploader.await.map_err(|e| ExportError::Internal(format!("uploader panicked: {e}")))?;
    // The uploader's error is the real cause when both failed (the pipeline only saw "stopped").
    upload_result?;
    let report = pipeline_result?;

    // Parts beyond the ones just written belong to an earlier, larger export of this hour.
    let written = report.files.len() as u32;
    for stale in targets.events.list(&layout.part_prefix(hour)).await? {
        if layout.part_number(hour, &stale.key).is_some_and(|n| n >= written) {
            targets.events.delete(&stale.key).await?;
        }
    }
    Ok(report)
}

/// A lake line to process, or `None` once a broken piece of the lake has been recorded.
fn line_or_record<'a>(report: &mut DataReport, item: LakeItem<'a>) -> Option<(&'a str, u64, &'a [u8])> {
    match item {
        LakeItem::Broken(rec) => {
            report.record_invalid(rec);
            None
        }
        LakeItem::Line { file, line, bytes } => Some((file, line, bytes)),
    }
}

/// Receives parts from the pipeline and streams them to the destination, one at a time.
async fn upload_parts(store: Arc<dyn ObjectStore>, mut rx: mpsc::Receiver<UploadMsg>) -> Result<()> {
    let mut current: Option<Box<dyn StreamingUpload>> = None;
    let result = async {
        while let Some(msg) = rx.recv().await {
            match msg {
                UploadMsg::Begin(key) => current = Some(store.upload(&key).await?),
                UploadMsg::Chunk(bytes) => current.as_mut().expect("chunk inside a part").write(bytes).await?,
                UploadMsg::End => current.take().expect("end of an open part").finish().await?,
            }
        }
        Ok(())
    }
    .await;
    rx.close();
    // A part still open here means the pipeline stopped mid-part (its error is reported
    // by the pipeline) or the upload failed: either way it must not linger half-written.
    if let Some(upload) = current.take() {
        let _ = upload.abort().await;
    }
    result
}

async fn export_merged_ids(conn: &Connection, targets: &ExportTargets, hour: UtcHour, settings: &ExportSettings) -> Result<DataReport> {
    let layout = merged_ids_layout(conn);
    let key = layout.merged_ids_key(hour);
    let files = list_hour_files(targets.lake.as_ref(), &lake_merges_prefix(&conn.org_id, hour)).await?;
    let (tx, rx) = mpsc::channel::<UploadMsg>(16);
    let uploader = tokio::spawn(upload_parts(targets.merged_ids.clone(), rx));
    let lake = targets.lake.clone();
    let handle = tokio::runtime::Handle::current();
    let settings2 = settings.clone();
    let key2 = key.clone();
    let pipeline = tokio::task::spawn_blocking(move || {
        let mut report = DataReport { lake_files: files.len() as u64, ..DataReport::default() };
        let mut line_out = Vec::new();
        let mut enc = None;
        let mut records = 0u64;
        read_files_blocking(&lake, &files, &handle, |item| {
            let Some((file, line, bytes)) = line_or_record(&mut report, item) else {
                return Ok(());
            };
            if let Err(reason) = normalize_merge(bytes, &mut line_out) {
                report.record_invalid(InvalidRecord { file: file.to_string(), line, reason: reason.0 });
                return Ok(());
            }
            report.accounting.read += 1;
            report.accounting.exported += 1;
            if enc.is_none() {
                tx.blocking_send(UploadMsg::Begin(key2.clone())).map_err(|_| ExportError::Internal("upload stopped".into()))?;
                let tx = tx.clone();
                enc = Some(GzipPartEncoder::new(settings2.pool.clone(), settings2.gzip_level, move |chunk: Vec<u8>| {
                    tx.blocking_send(UploadMsg::Chunk(Bytes::from(chunk))).map_err(|_| ExportError::Internal("upload stopped".into()))
                }));
            }
            line_out.push(b'\n');
            enc.as_mut().expect("opened").write(&line_out)?;
            records += 1;
            Ok(())
        })?;
        if let Some(enc) = enc {
            let stats = enc.finish(records)?;
            tx.blocking_send(UploadMsg::End).map_err(|_| ExportError::Internal("upload stopped".into()))?;
            report.files.push(FileEntry {
                key: key2,
                part: None,
                events: records,
                bytes: stats.compressed_bytes,
                uncompressed_bytes: stats.uncompressed_bytes,
                sha256: stats.sha256,
            });
        }
        Ok::<_, ExportError>(report)
    });
    let pipeline_result = pipeline.await.map_err(|e| ExportError::Internal(format!("merged-ID pipeline panicked: {e}")))?;
    uploader.await.map_err(|e| ExportError::Internal(format!("uploader panicked: {e}")))??;
    let report = pipeline_result?;
    if report.files.is_empty() {
        // No merges this hour: a file left by an earlier export of it is stale.
        targets.merged_ids.delete(&key).await?;
    }
    Ok(report)
}
