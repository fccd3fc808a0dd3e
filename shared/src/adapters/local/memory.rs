//! In-memory adapter: for unit tests and for the domain's own conformance checks.
//! It can be told to refuse an operation, to exercise the accessibility paths.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{ExportError, Result};
use crate::ports::{ByteStream, CreateOutcome, ObjectMeta, ObjectStore, StreamingUpload};

/// Operations a [`MemoryStore`] can be told to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryOp {
    Put,
    Get,
    List,
    Delete,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, Bytes>,
    refused: Vec<MemoryOp>,
    /// Operations refused only on keys that contain the text.
    refused_keys: Vec<(MemoryOp, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    name: String,
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    pub fn new(name: &str) -> Self {
        MemoryStore { name: name.to_string(), inner: Arc::default() }
    }

    /// Makes every later `op` fail with a permission error naming `memory:{op:?}`.
    pub fn refuse(&self, op: MemoryOp) {
        self.inner.lock().unwrap().refused.push(op);
    }

    /// Makes every later `op` on a key containing `text` fail the same way.
    pub fn refuse_keys_containing(&self, op: MemoryOp, text: &str) {
        self.inner.lock().unwrap().refused_keys.push((op, text.to_string()));
    }

    pub fn allow_all(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.refused.clear();
        inner.refused_keys.clear();
    }

    pub fn keys(&self) -> Vec<String> {
        self.inner.lock().unwrap().objects.keys().cloned().collect()
    }

    fn check(&self, op: MemoryOp, key: &str) -> Result<()> {
        let refused = {
            let inner = self.inner.lock().unwrap();
            inner.refused.contains(&op) || inner.refused_keys.iter().any(|(o, text)| *o == op && key.contains(text.as_str()))
        };
        if refused {
            return Err(ExportError::PermissionDenied {
                operation: format!("{op:?}"),
                resource: format!("memory://{}/{key}", self.name),
                permission: format!("memory:{op:?}"),
                principal: None,
                detail: "refused by test configuration".into(),
            });
        }
        Ok(())
    }

    fn store(&self, key: &str, body: Bytes) {
        self.inner.lock().unwrap().objects.insert(key.to_string(), body);
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.check(MemoryOp::Put, key)?;
        self.store(key, body);
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<CreateOutcome> {
        self.check(MemoryOp::Put, key)?;
        let mut inner = self.inner.lock().unwrap();
        if inner.objects.contains_key(key) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        inner.objects.insert(key.to_string(), body);
        Ok(CreateOutcome::Created)
    }

    async fn upload(&self, key: &str) -> Result<Box<dyn StreamingUpload>> {
        self.check(MemoryOp::Put, key)?;
        Ok(Box::new(MemoryUpload { store: self.clone(), key: key.to_string(), buf: Vec::new() }))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.check(MemoryOp::Get, key)?;
        self.inner.lock().unwrap().objects.get(key).cloned().ok_or_else(|| ExportError::NotFound { what: format!("{}/{key}", self.describe()) })
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        let body = self.get(key).await?;
        // Hand it out in small chunks so readers are exercised across chunk boundaries.
        let chunks: Vec<Result<Bytes>> = (0..body.len()).step_by(64 * 1024).map(|i| Ok(body.slice(i..(i + 64 * 1024).min(body.len())))).collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.check(MemoryOp::Get, key)?;
        Ok(self.inner.lock().unwrap().objects.get(key).map(|b| ObjectMeta { key: key.to_string(), size: b.len() as u64 }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.check(MemoryOp::List, prefix)?;
        Ok(self
            .inner
            .lock()
            .unwrap()
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectMeta { key: k.clone(), size: v.len() as u64 })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.check(MemoryOp::Delete, key)?;
        self.inner.lock().unwrap().objects.remove(key);
        Ok(())
    }
}

struct MemoryUpload {
    store: MemoryStore,
    key: String,
    buf: Vec<u8>,
}

#[async_trait]
impl StreamingUpload for MemoryUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<()> {
        self.store.check(MemoryOp::Put, &self.key)?;
        self.store.store(&self.key, Bytes::from(self.buf));
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
