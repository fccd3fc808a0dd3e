//! Streaming writes, written once for every provider: bytes are buffered into fixed-size
//! parts, up to `concurrency` parts upload at once, and the object appears only when the
//! provider commits the parts (S3 CompleteMultipartUpload, Azure Put Block List). An object
//! smaller than one part is written in one request instead. A provider supplies only the
//! requests, through [`MultipartTarget`].
//!
//! Part boundaries depend only on the bytes written (parts are numbered from 1 in write
//! order), so re-exporting an hour sends the same parts. After a failed write the upload
//! is aborted and refuses further writes; an upload dropped without `finish` or `abort`
//! (a cancelled task) is aborted in the background so no billed parts stay behind.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::task::JoinSet;

use crate::error::{ExportError, Result};
use crate::ports::StreamingUpload;

/// The requests of one provider's multipart write of one object.
#[async_trait]
pub trait MultipartTarget: Send + Sync + 'static {
    /// What a provider needs back from an uploaded part to commit it (S3: ETag and
    /// checksum; Azure: the block id).
    type Part: Send + 'static;

    /// `s3://bucket/key` or the blob's URL, for messages.
    fn describe(&self) -> String;
    /// Writes the whole object in one request (objects smaller than one part).
    async fn put_whole(&self, body: Bytes) -> Result<()>;
    /// Starts a multipart write and returns its id (S3's upload id; Azure has none).
    async fn start(&self) -> Result<String>;
    /// Uploads part `number` (from 1).
    async fn put_part(&self, upload_id: &str, number: u32, body: Bytes) -> Result<Self::Part>;
    /// Commits the parts, in part-number order: the object appears.
    async fn complete(&self, upload_id: &str, parts: Vec<Self::Part>) -> Result<()>;
    /// Discards the uploaded parts; an upload that is already gone is not an error.
    async fn abort(&self, upload_id: &str) -> Result<()>;
}

/// A [`StreamingUpload`] over any [`MultipartTarget`]. Memory is bounded by
/// `(concurrency + 1) × part_size`.
pub struct BufferedUpload<T: MultipartTarget> {
    target: Arc<T>,
    part_size: usize,
    concurrency: usize,
    buf: BytesMut,
    upload_id: Option<String>,
    next_part: u32,
    in_flight: JoinSet<Result<(u32, T::Part)>>,
    done: Vec<(u32, T::Part)>,
    /// Set once finished, aborted or failed: Drop then leaves the upload alone.
    closed: bool,
}

impl<T: MultipartTarget> BufferedUpload<T> {
    pub fn new(target: T, part_size: usize, concurrency: usize) -> Self {
        BufferedUpload {
            target: Arc::new(target),
            part_size: part_size.max(1),
            concurrency: concurrency.max(1),
            buf: BytesMut::new(),
            upload_id: None,
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            closed: false,
        }
    }

    async fn upload_id(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let id = self.target.start().await?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Waits for one part in flight and records it.
    async fn reap_one(&mut self) -> Result<()> {
        if let Some(joined) = self.in_flight.join_next().await {
            let part = joined.map_err(|e| ExportError::Internal(format!("a part upload of {} stopped: {e}", self.target.describe())))??;
            self.done.push(part);
        }
        Ok(())
    }

    /// Sends `body` as the next part, after making room under the concurrency limit.
    async fn send_part(&mut self, body: Bytes) -> Result<()> {
        let upload_id = self.upload_id().await?;
        while self.in_flight.len() >= self.concurrency {
            self.reap_one().await?;
        }
        let number = self.next_part;
        self.next_part += 1;
        let target = self.target.clone();
        self.in_flight.spawn(async move { target.put_part(&upload_id, number, body).await.map(|part| (number, part)) });
        Ok(())
    }

    async fn write_inner(&mut self, chunk: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&chunk);
        while self.buf.len() >= self.part_size {
            let part = self.buf.split_to(self.part_size).freeze();
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn finish_inner(&mut self) -> Result<()> {
        if self.upload_id.is_none() {
            // Never reached a full part: one request (also for empty objects).
            let body = std::mem::take(&mut self.buf).freeze();
            return self.target.put_whole(body).await;
        }
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf).freeze();
            self.send_part(last).await?;
        }
        while !self.in_flight.is_empty() {
            self.reap_one().await?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|(number, _)| *number);
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.target.complete(&upload_id, parts.into_iter().map(|(_, part)| part).collect()).await
    }

    async fn abort_inner(&mut self) -> Result<()> {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        self.buf = BytesMut::new();
        let Some(upload_id) = self.upload_id.take() else { return Ok(()) };
        self.target.abort(&upload_id).await
    }

    /// A write after a failed write: the parts were discarded, nothing can be finished.
    fn already_failed(&self) -> ExportError {
        ExportError::Internal(format!("the upload to {} was aborted after an earlier failure; start a new upload", self.target.describe()))
    }

    async fn abort_after(&mut self, error: ExportError, during: &str) -> ExportError {
        self.closed = true;
        if let Err(abort_err) = self.abort_inner().await {
            tracing::warn!(target = %self.target.describe(), error = %abort_err, "could not abort an upload after a failed {during}");
        }
        error
    }
}

#[async_trait]
impl<T: MultipartTarget> StreamingUpload for BufferedUpload<T> {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if self.closed {
            return Err(self.already_failed());
        }
        match self.write_inner(chunk).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.abort_after(e, "part").await),
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        if self.closed {
            return Err(self.already_failed());
        }
        match self.finish_inner().await {
            Ok(()) => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(self.abort_after(e, "finish").await),
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.closed = true;
        self.abort_inner().await
    }
}

impl<T: MultipartTarget> Drop for BufferedUpload<T> {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.in_flight.abort_all();
        let Some(upload_id) = self.upload_id.take() else { return };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let target = self.target.clone();
            handle.spawn(async move {
                if let Err(e) = target.abort(&upload_id).await {
                    tracing::warn!(target = %target.describe(), error = %e, "could not abort an abandoned upload");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records every request; fails part `fail_part` when set.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<String>>,
        fail_part: Option<u32>,
    }

    #[async_trait]
    impl MultipartTarget for Arc<Recorder> {
        type Part = u32;
        fn describe(&self) -> String {
            "mem://key".into()
        }
        async fn put_whole(&self, body: Bytes) -> Result<()> {
            self.log.lock().unwrap().push(format!("whole {}", body.len()));
            Ok(())
        }
        async fn start(&self) -> Result<String> {
            self.log.lock().unwrap().push("start".into());
            Ok("u1".into())
        }
        async fn put_part(&self, upload_id: &str, number: u32, body: Bytes) -> Result<u32> {
            if self.fail_part == Some(number) {
                return Err(ExportError::transient("put part", "injected"));
            }
            self.log.lock().unwrap().push(format!("part {upload_id} {number} {}", body.len()));
            Ok(number)
        }
        async fn complete(&self, upload_id: &str, parts: Vec<u32>) -> Result<()> {
            self.log.lock().unwrap().push(format!("complete {upload_id} {parts:?}"));
            Ok(())
        }
        async fn abort(&self, upload_id: &str) -> Result<()> {
            self.log.lock().unwrap().push(format!("abort {upload_id}"));
            Ok(())
        }
    }

    fn log(r: &Recorder) -> Vec<String> {
        let mut l = r.log.lock().unwrap().clone();
        l.sort();
        l
    }

    #[tokio::test]
    async fn small_objects_are_one_request_and_large_ones_parts_in_order() {
        let r = Arc::new(Recorder::default());
        let mut up: Box<dyn StreamingUpload> = Box::new(BufferedUpload::new(r.clone(), 4, 2));
        up.write(Bytes::from_static(b"abc")).await.unwrap();
        up.finish().await.unwrap();
        assert_eq!(log(&r), ["whole 3"]);

        let r = Arc::new(Recorder::default());
        let mut up: Box<dyn StreamingUpload> = Box::new(BufferedUpload::new(r.clone(), 4, 2));
        for chunk in [&b"abcdef"[..], b"ghij", b"k"] {
            up.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        up.finish().await.unwrap();
        assert_eq!(log(&r), ["complete u1 [1, 2, 3]", "part u1 1 4", "part u1 2 4", "part u1 3 3", "start"]);
    }

    #[tokio::test]
    async fn a_failed_part_aborts_and_refuses_more_writes() {
        let r = Arc::new(Recorder { fail_part: Some(2), ..Default::default() });
        let mut up: Box<dyn StreamingUpload> = Box::new(BufferedUpload::new(r.clone(), 2, 1));
        let mut failed = None;
        for _ in 0..4 {
            if let Err(e) = up.write(Bytes::from_static(b"xy")).await {
                failed = Some(e);
                break;
            }
        }
        assert!(matches!(failed, Some(ExportError::Transient { .. })), "{failed:?}");
        assert!(up.write(Bytes::from_static(b"z")).await.unwrap_err().to_string().contains("aborted after an earlier failure"));
        assert!(log(&r).contains(&"abort u1".to_string()));
        assert!(up.finish().await.is_err());
    }

    #[tokio::test]
    async fn a_dropped_upload_is_aborted_in_the_background() {
        let r = Arc::new(Recorder::default());
        let mut up = BufferedUpload::new(r.clone(), 2, 1);
        up.write(Bytes::from_static(b"abcd")).await.unwrap();
        drop(up);
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if log(&r).contains(&"abort u1".to_string()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("not aborted: {:?}", log(&r));
    }
}
