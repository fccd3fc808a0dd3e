//! Lake lines → export events on several threads, handed back in lake order.
//!
//! One reader thread inflates the lake files and cuts their lines into batches; batch `k`
//! goes to worker `k mod n`, which normalises it, fingerprints the de-duplication key,
//! applies the filter and the field policy (all pure functions of one line); the calling
//! thread takes batch `k` back from worker `k mod n`, so it sees every line in lake order
//! and makes every decision that depends on order (de-duplication, accounting, part
//! boundaries) alone. The output therefore depends only on the lake, never on `n`.
//! A fixed number of batches circulate (reader → worker → caller → reader), so memory is
//! bounded whatever the size of the hour.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use tokio::runtime::Handle;

use crate::error::{ExportError, Result};
use crate::export::dedup::fingerprint;
use crate::export::field_policy::FieldPolicy;
use crate::export::filter::Filter;
use crate::export::lake::{read_files_blocking, InvalidRecord, LakeItem};
use crate::export::schema::{ExportEvent, Normalizer};
use crate::ports::{ObjectMeta, ObjectStore};

/// A batch closes at this many lines...
const BATCH_LINES: usize = 1024;
/// ...or this much raw JSON, whichever comes first.
const BATCH_BYTES: usize = 1 << 20;

/// What the workers do to each line (everything that needs no other line).
#[derive(Clone)]
pub struct EventPrep {
    pub normalizer: Normalizer,
    pub filter: Option<Filter>,
    pub field_policy: Option<FieldPolicy>,
}

/// One lake line (or broken piece of the lake) after the workers, in lake order.
pub enum Prepared<'a> {
    Invalid(InvalidRecord),
    Event {
        /// Normalised, the field policy applied when the filter keeps it, its line ending
        /// in `\n`.
        event: &'a ExportEvent,
        /// Fingerprint of (`device_id`, `$insert_id`) of the original values, when both
        /// are strings (see [`crate::export::dedup`]).
        key: Option<u64>,
        /// The filter (which sees the original values) keeps the event.
        kept: bool,
    },
}

enum Item {
    Line { file: u32, line: u64, start: u32, end: u32 },
    Broken(InvalidRecord),
}

enum Out {
    Invalid(InvalidRecord),
    Event { slot: u32, key: Option<u64>, kept: bool },
}

#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    items: Vec<Item>,
    events: Vec<ExportEvent>,
    outs: Vec<Out>,
}

fn stopped() -> ExportError {
    ExportError::Internal("normalisation stopped".into())
}

/// Reads `files` in order and calls `visit` for each line, in lake order, with `workers`
/// threads normalising. With one worker (the deployed function's single vCPU) everything
/// runs on the calling thread: handing batches between three threads on one core only
/// costs (about 9 % of Parquet throughput, measured), and the output is the same.
pub fn for_each_event(
    lake: &Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
    handle: &Handle,
    workers: usize,
    prep: &EventPrep,
    mut visit: impl FnMut(Prepared<'_>) -> Result<()>,
) -> Result<()> {
    if workers <= 1 {
        return inline(lake, files, handle, prep, visit);
    }
    let n = workers;
    // One batch being read, one being consumed, one per worker: enough to keep every
    // thread busy, and what bounds the memory of the pipeline.
    let circulating = n + 2;
    std::thread::scope(|scope| {
        let (free_tx, free_rx) = mpsc::sync_channel::<Batch>(circulating);
        let mut to_workers = Vec::with_capacity(n);
        let mut from_workers = Vec::with_capacity(n);
        let mut worker_threads = Vec::with_capacity(n);
        for k in 0..n {
            let (in_tx, in_rx) = mpsc::sync_channel::<Batch>(1);
            let (out_tx, out_rx) = mpsc::sync_channel::<Batch>(1);
            to_workers.push(in_tx);
            from_workers.push(out_rx);
            let spawned = std::thread::Builder::new().name(format!("normalise-{k}")).spawn_scoped(scope, move || work(files, prep, in_rx, out_tx));
            worker_threads.push(spawned.map_err(|e| ExportError::Internal(format!("cannot start a normalising thread: {e}")))?);
        }
        let reader = std::thread::Builder::new()
            .name("lake-reader".into())
            .spawn_scoped(scope, move || read(lake, files, handle, to_workers, free_rx, circulating))
            .map_err(|e| ExportError::Internal(format!("cannot start the lake reader: {e}")))?;
        // In order: batch k comes back from worker k mod n. Returning drops the receivers
        // and the free list, which stops the workers and the reader on an early error.
        let sequenced = (|| {
            let mut k = 0usize;
            while let Ok(mut batch) = from_workers[k % n].recv() {
                for out in batch.outs.drain(..) {
                    match out {
                        Out::Invalid(rec) => visit(Prepared::Invalid(rec))?,
                        Out::Event { slot, key, kept } => visit(Prepared::Event { event: &batch.events[slot as usize], key, kept })?,
                    }
                }
                let _ = free_tx.send(batch);
                k += 1;
            }
            Ok::<_, ExportError>(())
        })();
        drop(from_workers);
        drop(free_tx);
        let read = reader.join().map_err(|_| ExportError::Internal("lake reader panicked".into()))?;
        for w in worker_threads {
            w.join().map_err(|_| ExportError::Internal("normalising thread panicked".into()))?;
        }
        // The caller's own error is the cause when both failed (the reader then only saw
        // "stopped"); a storage error of the reader is the cause when the caller ran dry.
        sequenced?;
        read
    })
}

/// The same as the workers and the sequencer together, one line at a time, on this thread.
fn inline(
    lake: &Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
    handle: &Handle,
    prep: &EventPrep,
    mut visit: impl FnMut(Prepared<'_>) -> Result<()>,
) -> Result<()> {
    let mut event = ExportEvent::default();
    let mut scratch = Vec::new();
    read_files_blocking(lake, files, handle, |item| match item {
        LakeItem::Broken(rec) => visit(Prepared::Invalid(rec)),
        LakeItem::Line { file, line, bytes } => match prepare(prep, bytes, &mut event, &mut scratch) {
            Ok((key, kept)) => visit(Prepared::Event { event: &event, key, kept }),
            Err(reason) => visit(Prepared::Invalid(InvalidRecord { file: file.to_string(), line, reason })),
        },
    })
}

/// One line: normalised into `event`, its de-duplication fingerprint and the filter's
/// verdict taken on the original values, then the field policy applied to a kept event;
/// or why it is invalid.
fn prepare(prep: &EventPrep, line: &[u8], event: &mut ExportEvent, scratch: &mut Vec<u8>) -> std::result::Result<(Option<u64>, bool), String> {
    prep.normalizer.normalize(line, event).map_err(|reason| reason.0)?;
    let key = event.dedup_key().map(|(device, insert)| fingerprint(device, insert));
    let kept = prep.filter.as_ref().is_none_or(|f| f.matches(event));
    if let (true, Some(policy)) = (kept, &prep.field_policy) {
        policy.apply(event, scratch);
    }
    event.line.push(b'\n');
    Ok((key, kept))
}

fn read(
    lake: &Arc<dyn ObjectStore>,
    files: &[ObjectMeta],
    handle: &Handle,
    to_workers: Vec<SyncSender<Batch>>,
    free: Receiver<Batch>,
    max: usize,
) -> Result<()> {
    let n = to_workers.len();
    let mut made = 0usize;
    let mut sent = 0usize;
    let next = |made: &mut usize| -> Result<Batch> {
        if *made < max {
            *made += 1;
            // Sized once, so the text never reallocates as it fills.
            return Ok(Batch { text: Vec::with_capacity(BATCH_BYTES + (64 << 10)), ..Batch::default() });
        }
        let mut b = free.recv().map_err(|_| stopped())?;
        b.text.clear();
        b.items.clear();
        Ok(b)
    };
    let mut batch = next(&mut made)?;
    let mut file_index = 0usize;
    read_files_blocking(lake, files, handle, |item| {
        match item {
            LakeItem::Line { file, line, bytes } => {
                // Files are read in order: find this line's file from the last one on.
                while !std::ptr::eq(files[file_index].key.as_str(), file) && files[file_index].key != file {
                    file_index += 1;
                }
                let start = batch.text.len() as u32;
                batch.text.extend_from_slice(bytes);
                batch.items.push(Item::Line { file: file_index as u32, line, start, end: batch.text.len() as u32 });
            }
            LakeItem::Broken(rec) => batch.items.push(Item::Broken(rec)),
        }
        if batch.items.len() >= BATCH_LINES || batch.text.len() >= BATCH_BYTES {
            let full = std::mem::replace(&mut batch, next(&mut made)?);
            to_workers[sent % n].send(full).map_err(|_| stopped())?;
            sent += 1;
        }
        Ok(())
    })?;
    if !batch.items.is_empty() {
        to_workers[sent % n].send(batch).map_err(|_| stopped())?;
    }
    Ok(())
}

fn work(files: &[ObjectMeta], prep: &EventPrep, inbox: Receiver<Batch>, outbox: SyncSender<Batch>) {
    let mut scratch = Vec::new();
    for mut batch in inbox {
        batch.outs.clear();
        let mut used = 0usize;
        for item in batch.items.drain(..) {
            let (file, line, start, end) = match item {
                Item::Broken(rec) => {
                    batch.outs.push(Out::Invalid(rec));
                    continue;
                }
                Item::Line { file, line, start, end } => (file, line, start, end),
            };
            if batch.events.len() == used {
                batch.events.push(ExportEvent::default());
            }
            match prepare(prep, &batch.text[start as usize..end as usize], &mut batch.events[used], &mut scratch) {
                Ok((key, kept)) => {
                    batch.outs.push(Out::Event { slot: used as u32, key, kept });
                    used += 1;
                }
                Err(reason) => batch.outs.push(Out::Invalid(InvalidRecord { file: files[file as usize].key.clone(), line, reason })),
            }
        }
        if outbox.send(batch).is_err() {
            return;
        }
    }
}
