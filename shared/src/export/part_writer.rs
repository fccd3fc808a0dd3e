//! Files streamed to a store: the one writer behind event parts (gzipped JSON lines or
//! Parquet) and the merged-IDs file. The blocking pipeline encodes (in parallel, see
//! [`GzipPartEncoder`] and [`ParquetPartEncoder`]) and hands chunks over a bounded channel
//! to an async task that streams them into the store's upload, so neither an hour nor a
//! part is ever held in memory.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{ExportError, Result};
use crate::export::manifest::FileEntry;
use crate::export::parquet_parts::{FinishingPart, ParquetPartEncoder, PartSink, RowGroupLimits};
use crate::export::parts::{CompressionPool, GzipPartEncoder, PartStats};
use crate::export::schema::ExportEvent;
use crate::model::format::PartFormat;
use crate::ports::{ObjectStore, StreamingUpload};

/// Chunks in flight between one file's encoder and the upload (bounds memory: a Parquet
/// chunk is 1 MiB; more would only queue behind a slow upload).
const CHANNEL_CHUNKS: usize = 4;
/// Files announced to the uploader and not yet uploaded: the one being written and the
/// Parquet part still finishing behind it.
const FILES_IN_FLIGHT: usize = 2;

/// One file for the uploader: its key, then its bytes on a channel of its own, so a part
/// that is still finishing and the next one being written never mix their chunks.
struct FileUpload {
    key: String,
    chunks: mpsc::Receiver<FileChunk>,
}

enum FileChunk {
    Bytes(Bytes),
    /// The file is complete. A channel that closes without it was abandoned mid-file.
    End,
}

type ChunkSink = Box<dyn FnMut(Vec<u8>) -> Result<()> + Send>;

enum Encoder {
    /// With the channel the pipeline ends the file on.
    Gzip(GzipPartEncoder<ChunkSink>, mpsc::Sender<FileChunk>),
    Parquet(ParquetPartEncoder),
}

/// A Parquet part's bytes, sent by its encoding thread, which also ends the file.
struct ChunkSender(mpsc::Sender<FileChunk>);

impl PartSink for ChunkSender {
    fn chunk(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.0.blocking_send(FileChunk::Bytes(Bytes::from(bytes))).map_err(|_| stopped())
    }

    fn complete(&mut self) -> Result<()> {
        self.0.blocking_send(FileChunk::End).map_err(|_| stopped())
    }
}

struct OpenFile {
    key: String,
    part: Option<u32>,
    lines: u64,
    encoder: Encoder,
}

/// A Parquet part closed by the pipeline whose encoder is writing its last row group and
/// footer while the pipeline fills the next part.
struct FinishingFile {
    key: String,
    part: Option<u32>,
    encoding: FinishingPart,
}

/// Writes files of one format to one store. Used from a blocking thread; the upload runs
/// on the runtime. At most one file is open at a time, and at most one more finishing.
pub struct PartWriter {
    files: mpsc::Sender<FileUpload>,
    pool: CompressionPool,
    level: u32,
    format: PartFormat,
    open: Option<OpenFile>,
    finishing: Option<FinishingFile>,
    /// Row groups of Parquet parts close at these limits (tests make them small).
    parquet_limits: RowGroupLimits,
}

fn stopped() -> ExportError {
    ExportError::Internal("upload stopped".into())
}

fn entry(key: String, part: Option<u32>, stats: PartStats) -> FileEntry {
    FileEntry { key, part, events: stats.events, bytes: stats.compressed_bytes, uncompressed_bytes: stats.uncompressed_bytes, sha256: stats.sha256 }
}

impl PartWriter {
    /// A writer of `format` files (`level` is gzip's) and the task that uploads what it
    /// writes; await the task after the writer is dropped (its error is the real cause
    /// when both fail).
    pub fn start(store: Arc<dyn ObjectStore>, pool: CompressionPool, level: u32, format: PartFormat) -> (PartWriter, JoinHandle<Result<()>>) {
        let (files, queued) = mpsc::channel::<FileUpload>(FILES_IN_FLIGHT);
        let uploader = tokio::spawn(upload_files(store, queued));
        (PartWriter { files, pool, level, format, open: None, finishing: None, parquet_limits: RowGroupLimits::DEFAULT }, uploader)
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Starts the file `key` (`part` is its `#n`, or `None` for the merged-IDs file).
    pub fn open(&mut self, key: String, part: Option<u32>) -> Result<()> {
        debug_assert!(self.open.is_none(), "close the open file first");
        let (chunks, receiver) = mpsc::channel::<FileChunk>(CHANNEL_CHUNKS);
        self.files.blocking_send(FileUpload { key: key.clone(), chunks: receiver }).map_err(|_| stopped())?;
        let encoder = match self.format {
            PartFormat::Json => {
                let tx = chunks.clone();
                let sink: ChunkSink = Box::new(move |chunk: Vec<u8>| tx.blocking_send(FileChunk::Bytes(Bytes::from(chunk))).map_err(|_| stopped()));
                Encoder::Gzip(GzipPartEncoder::new(self.pool.clone(), self.level, sink), chunks)
            }
            // The encoding thread holds the only sender and ends the file itself: the upload
            // of a part never waits for the pipeline to come back to it.
            PartFormat::Parquet => Encoder::Parquet(ParquetPartEncoder::with_limits(self.pool.clone(), ChunkSender(chunks), self.parquet_limits)?),
        };
        self.open = Some(OpenFile { key, part, lines: 0, encoder });
        Ok(())
    }

    fn open_file(&mut self) -> Result<&mut OpenFile> {
        self.open.as_mut().ok_or_else(|| ExportError::Internal("a record was written with no file open".into()))
    }

    /// Appends one line (ending in `\n`) to the open gzip file (the merged IDs).
    pub fn write_line(&mut self, line: &[u8]) -> Result<()> {
        let file = self.open_file()?;
        match &mut file.encoder {
            Encoder::Gzip(gzip, _) => gzip.write(line)?,
            Encoder::Parquet(_) => return Err(ExportError::Internal("a JSON line was written to a Parquet file".into())),
        }
        file.lines += 1;
        Ok(())
    }

    /// Appends one event (its line ending in `\n`) to the open part, in the part's format.
    pub fn write_event(&mut self, event: &ExportEvent) -> Result<()> {
        let file = self.open_file()?;
        match &mut file.encoder {
            Encoder::Gzip(gzip, _) => gzip.write(&event.line)?,
            Encoder::Parquet(parquet) => parquet.write(event)?,
        }
        file.lines += 1;
        Ok(())
    }

    /// Uncompressed JSON bytes written to the open file (0 when none is open): the
    /// measure parts roll over on, whatever their format.
    pub fn uncompressed_len(&self) -> u64 {
        self.open.as_ref().map_or(0, |f| match &f.encoder {
            Encoder::Gzip(gzip, _) => gzip.uncompressed_len(),
            Encoder::Parquet(parquet) => parquet.uncompressed_len(),
        })
    }

    /// Closes the open file, if any, and returns the manifest entries of the files complete
    /// now, in order. A Parquet part's last row group and footer are encoded while the
    /// pipeline fills the next part (waiting for them stalled every thread once a part):
    /// its entry comes from the next `close` or from [`Self::finish`].
    pub fn close(&mut self) -> Result<Vec<FileEntry>> {
        let mut complete: Vec<FileEntry> = self.settle()?.into_iter().collect();
        let Some(file) = self.open.take() else { return Ok(complete) };
        match file.encoder {
            Encoder::Gzip(gzip, chunks) => {
                let stats = gzip.finish(file.lines)?;
                chunks.blocking_send(FileChunk::End).map_err(|_| stopped())?;
                complete.push(entry(file.key, file.part, stats));
            }
            Encoder::Parquet(parquet) => self.finishing = Some(FinishingFile { key: file.key, part: file.part, encoding: parquet.finish_later(file.lines) }),
        }
        Ok(complete)
    }

    /// Closes the open file and waits for every file to be complete: the manifest entries
    /// not yet returned, in order.
    pub fn finish(mut self) -> Result<Vec<FileEntry>> {
        let mut complete = self.close()?;
        complete.extend(self.settle()?);
        Ok(complete)
    }

    /// Waits for the finishing part, if any.
    fn settle(&mut self) -> Result<Option<FileEntry>> {
        let Some(file) = self.finishing.take() else { return Ok(None) };
        Ok(Some(entry(file.key, file.part, file.encoding.wait()?)))
    }
}

/// Receives files from the pipeline, in order, and streams each to the store.
async fn upload_files(store: Arc<dyn ObjectStore>, mut files: mpsc::Receiver<FileUpload>) -> Result<()> {
    let mut current: Option<Box<dyn StreamingUpload>> = None;
    let result = async {
        while let Some(FileUpload { key, mut chunks }) = files.recv().await {
            current = Some(store.upload(&key).await?);
            let upload = current.as_mut().expect("set above");
            let mut complete = false;
            while let Some(chunk) = chunks.recv().await {
                match chunk {
                    FileChunk::Bytes(bytes) => upload.write(bytes).await?,
                    FileChunk::End => {
                        complete = true;
                        break;
                    }
                }
            }
            if !complete {
                // The pipeline stopped mid-file; its error is the one reported.
                break;
            }
            current.take().expect("set above").finish().await?;
        }
        Ok(())
    }
    .await;
    files.close();
    // A file still open here means the pipeline stopped mid-file (its error is reported
    // by the pipeline) or the upload failed: either way it must not linger half-written.
    if let Some(upload) = current.take() {
        let _ = upload.abort().await;
    }
    result
}

/// Waits for a pipeline and its uploader; the uploader's error wins (the pipeline then
/// only saw "upload stopped").
pub async fn join<T>(pipeline: JoinHandle<Result<T>>, uploader: JoinHandle<Result<()>>, what: &str) -> Result<T> {
    let pipeline_result = pipeline.await.map_err(|e| ExportError::Internal(format!("{what} pipeline panicked: {e}")))?;
    uploader.await.map_err(|e| ExportError::Internal(format!("{what} uploader panicked: {e}")))??;
    pipeline_result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory::MemoryStore;
    use crate::export::schema::Normalizer;
    use crate::export::timestamp::TimestampFormat;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use std::time::Duration;

    /// Events of ~60 KB of incompressible text, so a few hundred make megabytes of Parquet.
    fn big_events(n: usize, seed: u64) -> Vec<ExportEvent> {
        let normalizer = Normalizer::new("187520", TimestampFormat::Amplitude);
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let blob: String = (0..60_000).map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)])).collect();
                let line = format!(r#"{{"event_type":"e","device_id":"d{i}","$insert_id":"{seed}-{i}","event_properties":{{"blob":"{blob}"}}}}"#);
                let mut event = ExportEvent::default();
                normalizer.normalize(line.as_bytes(), &mut event).unwrap();
                event.line.push(b'\n');
                event
            })
            .collect()
    }

    /// A Parquet part finishes while the next one is written, and the next one's row groups
    /// already stream out: the upload of the first must end without waiting for the
    /// pipeline to close the second (it once waited, and the export hung).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parquet_parts_upload_whole_while_the_next_part_streams() {
        let store = Arc::new(MemoryStore::new("dest"));
        let (mut writer, uploader) = PartWriter::start(store.clone(), CompressionPool::new(2).unwrap(), 6, PartFormat::Parquet);
        // Row groups close every few events: each part streams several 1 MiB chunks,
        // more than its channel holds, before it is closed.
        writer.parquet_limits = RowGroupLimits { rows: usize::MAX, json_bytes: u64::MAX, memory_bytes: 256 << 10 };
        let parts = [big_events(200, 1), big_events(200, 2), big_events(200, 3)];
        let pipeline = tokio::task::spawn_blocking(move || {
            let mut entries = Vec::new();
            for (n, events) in parts.iter().enumerate() {
                writer.open(format!("p#{n}.parquet"), Some(n as u32))?;
                for event in events {
                    writer.write_event(event)?;
                }
                entries.extend(writer.close()?);
            }
            entries.extend(writer.finish()?);
            Ok::<_, ExportError>(entries)
        });
        let entries = tokio::time::timeout(Duration::from_secs(120), join(pipeline, uploader, "test")).await.expect("the export hung").unwrap();
        assert_eq!(entries.iter().map(|e| e.part).collect::<Vec<_>>(), vec![Some(0), Some(1), Some(2)], "entries in part order");
        for entry in &entries {
            assert_eq!(entry.events, 200);
            assert!(entry.bytes > (CHANNEL_CHUNKS as u64 + 1) << 20, "{} bytes: more chunks than the channel holds", entry.bytes);
            let bytes = store.get(&entry.key).await.unwrap();
            assert_eq!(bytes.len() as u64, entry.bytes, "{} uploaded whole", entry.key);
            assert_eq!(&bytes[..4], b"PAR1");
            assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
        }
    }
}
