//! A destination store fenced by the run's lease: every write (a put, a delete, the start
//! and the finish of a streamed part) first checks, and renews, the lease, so a run that
//! stalled past its lease and lost its hour to another run stops writing at its next write
//! instead of interleaving its parts with the new holder's. Reads pass straight through.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::export::hour_export::WriteGuard;
use crate::ports::{ByteStream, CreateOutcome, ObjectMeta, ObjectStore, StreamingUpload};

/// `inner`, with each write checked by `guard` first.
pub struct FencedStore {
    inner: Arc<dyn ObjectStore>,
    guard: Arc<dyn WriteGuard>,
}

impl FencedStore {
    pub fn wrap(inner: Arc<dyn ObjectStore>, guard: Arc<dyn WriteGuard>) -> Arc<dyn ObjectStore> {
        Arc::new(FencedStore { inner, guard })
    }
}

impl std::fmt::Debug for FencedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedStore").field("inner", &self.inner).finish()
    }
}

#[async_trait]
impl ObjectStore for FencedStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.guard.check().await?;
        self.inner.put(key, body).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<CreateOutcome> {
        self.guard.check().await?;
        self.inner.put_if_absent(key, body).await
    }

    async fn upload(&self, key: &str) -> Result<Box<dyn StreamingUpload>> {
        self.guard.check().await?;
        let inner = self.inner.upload(key).await?;
        Ok(Box::new(FencedUpload { inner, guard: self.guard.clone() }))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.inner.get(key).await
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        self.inner.get_stream(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.guard.check().await?;
        self.inner.delete(key).await
    }
}

/// A streamed part: nothing is visible until `finish`, which is fenced; a part whose run
/// lost the lease is aborted instead.
struct FencedUpload {
    inner: Box<dyn StreamingUpload>,
    guard: Arc<dyn WriteGuard>,
}

#[async_trait]
impl StreamingUpload for FencedUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.inner.write(chunk).await
    }

    async fn finish(self: Box<Self>) -> Result<()> {
        if let Err(lost) = self.guard.check().await {
            let _ = self.inner.abort().await;
            return Err(lost);
        }
        self.inner.finish().await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::memory::MemoryStore;
    use crate::error::ExportError;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Switch(AtomicBool);

    #[async_trait]
    impl WriteGuard for Switch {
        async fn check(&self) -> Result<()> {
            if self.0.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(ExportError::transient("export", "lease lost"))
            }
        }
    }

    #[tokio::test]
    async fn writes_stop_the_moment_the_lease_is_lost_and_reads_go_on() {
        let inner: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("dest"));
        let switch = Arc::new(Switch(AtomicBool::new(true)));
        let fenced = FencedStore::wrap(inner.clone(), switch.clone());
        fenced.put("a", Bytes::from_static(b"1")).await.unwrap();
        let mut part = fenced.upload("p#0").await.unwrap();
        part.write(Bytes::from_static(b"half")).await.unwrap();
        // The lease is lost while the part streams: it never appears.
        switch.0.store(false, Ordering::SeqCst);
        assert!(part.finish().await.is_err());
        assert!(inner.head("p#0").await.unwrap().is_none(), "a part finished after the lease was lost");
        assert!(fenced.put("b", Bytes::from_static(b"2")).await.is_err());
        assert!(fenced.delete("a").await.is_err());
        assert!(fenced.upload("p#1").await.is_err());
        assert_eq!(fenced.get("a").await.unwrap(), Bytes::from_static(b"1"), "reads are not fenced");
        assert!(inner.head("b").await.unwrap().is_none());
    }
}
