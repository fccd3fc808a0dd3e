//! The storage port: what the exporter needs from a bucket, a container or a folder.
//! The lake, the control store and every destination are reached through it.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::error::Result;

/// A stream of an object's bytes, read chunk by chunk.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// What a listing returns for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Full key, exactly as written (`#` and all).
    pub key: String,
    pub size: u64,
}

/// Outcome of a create-only write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    AlreadyExists,
}

/// A bucket, container or folder. Keys are `/`-separated and relative to the store's root.
/// Implementations must be safe to call concurrently.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Human-readable location for messages, e.g. `s3://bucket` or `/tmp/dest`.
    fn describe(&self) -> String;

    /// Writes a small object in one request, replacing any existing one.
    async fn put(&self, key: &str, body: Bytes) -> Result<()>;

    /// Writes only if no object exists at `key` (atomically, not read-then-write).
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<CreateOutcome>;

    /// Starts a streaming write: the object appears only when the upload is finished.
    async fn upload(&self, key: &str) -> Result<Box<dyn StreamingUpload>>;

    /// Reads a whole (small) object. Missing → `ExportError::NotFound`.
    async fn get(&self, key: &str) -> Result<Bytes>;

    /// Reads an object as a stream of chunks. Missing → `ExportError::NotFound`.
    async fn get_stream(&self, key: &str) -> Result<ByteStream>;

    /// Size of an object, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Opens a connection's destination as a store (S3 as the project role, Azure as its
/// service principal, a local folder): the port the run machinery reaches destinations by.
#[async_trait]
pub trait DestinationOpener: Send + Sync {
    async fn open(&self, dest: &crate::connection::Destination, project_id: &str) -> Result<std::sync::Arc<dyn ObjectStore>>;
}

/// An object being written in pieces (S3 multipart, Azure staged blocks, a temp file).
/// Until `finish` succeeds nothing is visible at the key; `abort` cleans up.
#[async_trait]
pub trait StreamingUpload: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    async fn finish(self: Box<Self>) -> Result<()>;
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Reads a whole stream into memory (for small objects and tests).
pub async fn collect_stream(mut stream: ByteStream) -> Result<Vec<u8>> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Joins a prefix and a relative key with exactly one `/` between them.
pub fn join_key(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}
