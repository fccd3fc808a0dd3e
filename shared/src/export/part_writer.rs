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
use crate::export::parquet_parts::ParquetPartEncoder;
use crate::export::parts::{CompressionPool, GzipPartEncoder};
use crate::export::schema::ExportEvent;
use crate::model::format::PartFormat;
use crate::ports::{ObjectStore, StreamingUpload};

/// Chunks in flight between the compressor and the upload (bounds memory: a Parquet chunk
/// is 1 MiB; more would only queue behind a slow upload).
const CHANNEL_CHUNKS: usize = 4;

enum UploadMsg {
    Begin(String),
    Chunk(Bytes),
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
}

/// Writes files of one format to one store. Used from a blocking thread; the upload runs
/// on the runtime. At most one file is open at a time.
pub struct PartWriter {
    tx: mpsc::Sender<UploadMsg>,
    pool: CompressionPool,
    level: u32,
    format: PartFormat,
    open: Option<OpenFile>,
}

fn stopped() -> ExportError {
    ExportError::Internal("upload stopped".into())
}

impl PartWriter {
    /// A writer of `format` files (`level` is gzip's) and the task that uploads what it
    /// writes; await the task after the writer is dropped (its error is the real cause
    /// when both fail).
    pub fn start(store: Arc<dyn ObjectStore>, pool: CompressionPool, level: u32, format: PartFormat) -> (PartWriter, JoinHandle<Result<()>>) {
        let (tx, rx) = mpsc::channel::<UploadMsg>(CHANNEL_CHUNKS);
        let uploader = tokio::spawn(upload_files(store, rx));
        (PartWriter { tx, pool, level, format, open: None }, uploader)
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Starts the file `key` (`part` is its `#n`, or `None` for the merged-IDs file).
    pub fn open(&mut self, key: String, part: Option<u32>) -> Result<()> {
        debug_assert!(self.open.is_none(), "close the open file first");
        self.tx.blocking_send(UploadMsg::Begin(key.clone())).map_err(|_| stopped())?;
        let tx = self.tx.clone();
        let sink: ChunkSink = Box::new(move |chunk: Vec<u8>| tx.blocking_send(UploadMsg::Chunk(Bytes::from(chunk))).map_err(|_| stopped()));
        let encoder = match self.format {
            PartFormat::Json => Encoder::Gzip(GzipPartEncoder::new(self.pool.clone(), self.level, sink)),
            PartFormat::Parquet => Encoder::Parquet(ParquetPartEncoder::new(self.pool.clone(), sink)?),
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

    /// Finishes the open file, if any, and returns its manifest entry.
    pub fn close(&mut self) -> Result<Option<FileEntry>> {
        let Some(file) = self.open.take() else { return Ok(None) };
        let stats = match file.encoder {
            Encoder::Gzip(gzip) => gzip.finish(file.lines)?,
            Encoder::Parquet(parquet) => parquet.finish(file.lines)?,
        };
        self.tx.blocking_send(UploadMsg::End).map_err(|_| stopped())?;
        Ok(Some(FileEntry {
            key: file.key,
            part: file.part,
            events: file.lines,
            bytes: stats.compressed_bytes,
            uncompressed_bytes: stats.uncompressed_bytes,
            sha256: stats.sha256,
        }))
    }
}

/// Receives files from the pipeline and streams them to the store, one at a time.
async fn upload_files(store: Arc<dyn ObjectStore>, mut rx: mpsc::Receiver<UploadMsg>) -> Result<()> {
    let mut current: Option<Box<dyn StreamingUpload>> = None;
    let result = async {
        while let Some(msg) = rx.recv().await {
            match msg {
                UploadMsg::Begin(key) => current = Some(store.upload(&key).await?),
                UploadMsg::Chunk(bytes) => current.as_mut().expect("chunk inside a file").write(bytes).await?,
                UploadMsg::End => current.take().expect("end of an open file").finish().await?,
            }
        }
        Ok(())
    }
    .await;
    rx.close();
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
