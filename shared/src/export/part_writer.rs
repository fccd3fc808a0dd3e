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
use crate::export::parquet_parts::{FinishingPart, ParquetPartEncoder};
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
    Gzip(GzipPartEncoder<ChunkSink>),
    Parquet(ParquetPartEncoder),
}

struct OpenFile {
    key: String,
    part: Option<u32>,
    lines: u64,
    encoder: Encoder,
    chunks: mpsc::Sender<FileChunk>,
}

/// A Parquet part closed by the pipeline whose encoder is writing its last row group and
/// footer while the pipeline fills the next part.
struct FinishingFile {
    key: String,
    part: Option<u32>,
    encoding: FinishingPart,
    chunks: mpsc::Sender<FileChunk>,
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
}

fn stopped() -> ExportError {
    ExportError::Internal("upload stopped".into())
}

fn entry(key: String, part: Option<u32>, stats: PartStats, chunks: &mpsc::Sender<FileChunk>) -> Result<FileEntry> {
    chunks.blocking_send(FileChunk::End).map_err(|_| stopped())?;
    Ok(FileEntry { key, part, events: stats.events, bytes: stats.compressed_bytes, uncompressed_bytes: stats.uncompressed_bytes, sha256: stats.sha256 })
}

impl PartWriter {
    /// A writer of `format` files (`level` is gzip's) and the task that uploads what it
    /// writes; await the task after the writer is dropped (its error is the real cause
    /// when both fail).
    pub fn start(store: Arc<dyn ObjectStore>, pool: CompressionPool, level: u32, format: PartFormat) -> (PartWriter, JoinHandle<Result<()>>) {
        let (files, queued) = mpsc::channel::<FileUpload>(FILES_IN_FLIGHT);
        let uploader = tokio::spawn(upload_files(store, queued));
        (PartWriter { files, pool, level, format, open: None, finishing: None }, uploader)
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Starts the file `key` (`part` is its `#n`, or `None` for the merged-IDs file).
    pub fn open(&mut self, key: String, part: Option<u32>) -> Result<()> {
        debug_assert!(self.open.is_none(), "close the open file first");
        let (chunks, receiver) = mpsc::channel::<FileChunk>(CHANNEL_CHUNKS);
        self.files.blocking_send(FileUpload { key: key.clone(), chunks: receiver }).map_err(|_| stopped())?;
        let tx = chunks.clone();
        let sink: ChunkSink = Box::new(move |chunk: Vec<u8>| tx.blocking_send(FileChunk::Bytes(Bytes::from(chunk))).map_err(|_| stopped()));
        let encoder = match self.format {
            PartFormat::Json => Encoder::Gzip(GzipPartEncoder::new(self.pool.clone(), self.level, sink)),
            PartFormat::Parquet => Encoder::Parquet(ParquetPartEncoder::new(self.pool.clone(), sink)?),
        };
        self.open = Some(OpenFile { key, part, lines: 0, encoder, chunks });
        Ok(())
    }

    fn open_file(&mut self) -> Result<&mut OpenFile> {
        self.open.as_mut().ok_or_else(|| ExportError::Internal("a record was written with no file open".into()))
    }

    /// Appends one line (ending in `\n`) to the open gzip file (the merged IDs).
    pub fn write_line(&mut self, line: &[u8]) -> Result<()> {
        let file = self.open_file()?;
        match &mut file.encoder {
            Encoder::Gzip(gzip) => gzip.write(line)?,
            Encoder::Parquet(_) => return Err(ExportError::Internal("a JSON line was written to a Parquet file".into())),
        }
        file.lines += 1;
        Ok(())
    }

    /// Appends one event (its line ending in `\n`) to the open part, in the part's format.
    pub fn write_event(&mut self, event: &ExportEvent) -> Result<()> {
        let file = self.open_file()?;
        match &mut file.encoder {
            Encoder::Gzip(gzip) => gzip.write(&event.line)?,
            Encoder::Parquet(parquet) => parquet.write(event)?,
        }
        file.lines += 1;
        Ok(())
    }

    /// Uncompressed JSON bytes written to the open file (0 when none is open): the
    /// measure parts roll over on, whatever their format.
    pub fn uncompressed_len(&self) -> u64 {
        self.open.as_ref().map_or(0, |f| match &f.encoder {
            Encoder::Gzip(gzip) => gzip.uncompressed_len(),
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
            Encoder::Gzip(gzip) => complete.push(entry(file.key, file.part, gzip.finish(file.lines)?, &file.chunks)?),
            Encoder::Parquet(parquet) => {
                self.finishing = Some(FinishingFile { key: file.key, part: file.part, encoding: parquet.finish_later(file.lines), chunks: file.chunks })
            }
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
        let stats = file.encoding.wait()?;
        entry(file.key, file.part, stats, &file.chunks).map(Some)
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
