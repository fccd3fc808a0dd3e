//! Amazon S3 adapter for the storage port: destinations, the event lake and the control
//! store.
//!
//! - Small objects: one PutObject. Streaming uploads buffer to parts of `part_size`
//!   (8 MiB by default; S3's minimum is 5 MiB) and switch to a multipart upload once the
//!   first part is full, uploading up to `concurrency` parts in the background while more
//!   data arrives. Memory is bounded by `part_size × (concurrency + 1)` per upload.
//!   A failed or abandoned multipart upload is aborted, so no orphaned parts are billed.
//! - SSE-KMS: with a key, every PutObject and CreateMultipartUpload carries
//!   `x-amz-server-side-encryption: aws:kms` and the key id.
//! - Create-only writes use S3 conditional writes (`If-None-Match: *`): S3 answers 412
//!   when the key exists, atomically. moto 5.2.5 implements this too (412
//!   PreconditionFailed on PutObject and CompleteMultipartUpload), so the conformance
//!   suite exercises the real path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;

use crate::adapters::aws::errors::{classify, AwsOp, CompatibleEndpoint, OpContext};
use crate::adapters::upload::{BufferedUpload, MultipartTarget};
use crate::error::{ExportError, Result};
use crate::ports::{ByteStream, CreateOutcome, ObjectMeta, ObjectStore, StreamingUpload};

/// Default part size: large enough for few requests, and the product's stated minimum.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// S3 refuses parts (other than the last) smaller than this.
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Parts of one upload in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A bucket. Keys are relative to the bucket root (the connection prefix is part of the
/// key, as the layout builds it). Clones share the client.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_s3::Client,
    bucket: String,
    kms_key: Option<String>,
    /// The identity requests run as (project role ARN), for error messages.
    principal: Option<String>,
    /// Set for an S3-compatible store: its errors name the endpoint and access key.
    endpoint: Option<CompatibleEndpoint>,
    /// CRC32 checksums on multipart parts. Off for S3-compatible stores, which do not all
    /// accept the `x-amz-checksum-*` headers.
    part_checksums: bool,
    part_size: usize,
    concurrency: usize,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.inner.bucket)
            .field("kms_key", &self.inner.kms_key)
            .field("principal", &self.inner.principal)
            .field("endpoint", &self.inner.endpoint)
            .field("part_size", &self.inner.part_size)
            .finish()
    }
}

impl S3Store {
    /// A store on `bucket` using `client` (see `AwsContext::s3_client`).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Store {
            inner: Arc::new(Inner {
                client,
                bucket: bucket.into(),
                kms_key: None,
                principal: None,
                endpoint: None,
                part_checksums: true,
                part_size: DEFAULT_PART_SIZE,
                concurrency: DEFAULT_CONCURRENCY,
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|arc| Inner {
            client: arc.client.clone(),
            bucket: arc.bucket.clone(),
            kms_key: arc.kms_key.clone(),
            principal: arc.principal.clone(),
            endpoint: arc.endpoint.clone(),
            part_checksums: arc.part_checksums,
            part_size: arc.part_size,
            concurrency: arc.concurrency,
        });
        f(&mut inner);
        S3Store { inner: Arc::new(inner) }
    }

    /// Encrypts every written object with SSE-KMS under `key_arn`.
    pub fn with_kms_key(self, key_arn: Option<String>) -> Self {
        self.with(|i| i.kms_key = key_arn)
    }

    /// Names the identity requests run as in permission errors.
    pub fn with_principal(self, principal: Option<String>) -> Self {
        self.with(|i| i.principal = principal)
    }

    /// Marks the store as an S3-compatible one at `endpoint` (the client must already point
    /// there): errors and the principal name the endpoint and access key, and multipart
    /// parts carry no checksum headers.
    pub fn on_compatible_endpoint(self, endpoint: CompatibleEndpoint) -> Self {
        self.with(|i| {
            i.principal = Some(endpoint.principal());
            i.endpoint = Some(endpoint);
            i.part_checksums = false;
        })
    }

    /// The S3-compatible endpoint, when the store is not Amazon S3.
    pub fn endpoint(&self) -> Option<&CompatibleEndpoint> {
        self.inner.endpoint.as_ref()
    }

    /// Multipart part size (at least 5 MiB, S3's minimum) and parts in flight (at least 1).
    pub fn with_part_size(self, part_size: usize, concurrency: usize) -> Result<Self> {
        if part_size < MIN_PART_SIZE {
            return Err(ExportError::invalid_config("part_size", format!("{part_size} bytes is below S3's 5 MiB minimum part size"), "Use at least 5242880."));
        }
        Ok(self.with(|i| {
            i.part_size = part_size;
            i.concurrency = concurrency.max(1);
        }))
    }

    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.inner.client
    }

    pub fn kms_key(&self) -> Option<&str> {
        self.inner.kms_key.as_deref()
    }
}

impl Inner {
    fn ctx(&self, op: AwsOp, key: &str) -> OpContext {
        let resource = if key.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{key}", self.bucket) };
        OpContext::new(op, resource, self.principal.as_deref()).on_endpoint(self.endpoint.as_ref())
    }

    async fn put_object(&self, key: &str, body: Bytes, if_none_match: bool) -> std::result::Result<(), ExportError> {
        let mut req = self.client.put_object().bucket(&self.bucket).key(key).content_length(body.len() as i64).body(S3Body::from(body));
        if let Some(k) = &self.kms_key {
            req = req.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k);
        }
        if if_none_match {
            req = req.if_none_match("*");
        }
        req.send().await.map(|_| ()).map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16());
            if if_none_match && status == Some(412) {
                return ExportError::Conflict { what: format!("s3://{}/{key} already exists", self.bucket) };
            }
            if if_none_match && status == Some(409) {
                // S3: "ConditionalRequestConflict" — another conditional write to the key is
                // in progress; the caller retries to learn who won.
                return ExportError::transient("PutObject", format!("concurrent create-only write to s3://{}/{key}", self.bucket));
            }
            classify(e, &self.ctx(AwsOp::PutObject, key))
        })
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    /// `s3://bucket` on Amazon S3; `https://endpoint/bucket` on an S3-compatible store.
    fn describe(&self) -> String {
        match &self.inner.endpoint {
            Some(e) => format!("{}/{}", e.url, self.inner.bucket),
            None => format!("s3://{}", self.inner.bucket),
        }
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.inner.put_object(key, body, false).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<CreateOutcome> {
        // A 409 means a concurrent conditional write is in flight; once it settles the
        // retry gets a definite 200 or 412.
        let mut delay = Duration::from_millis(100);
        for attempt in 0..5 {
            match self.inner.put_object(key, body.clone(), true).await {
                Ok(()) => return Ok(CreateOutcome::Created),
                Err(ExportError::Conflict { .. }) => return Ok(CreateOutcome::AlreadyExists),
                Err(ExportError::Transient { .. }) if attempt < 4 => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn upload(&self, key: &str) -> Result<Box<dyn StreamingUpload>> {
        let target = S3Multipart { store: self.inner.clone(), key: key.to_string() };
        Ok(Box::new(BufferedUpload::new(target, self.inner.part_size, self.inner.concurrency)))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let out = self.inner.client.get_object().bucket(&self.inner.bucket).key(key).send().await.map_err(|e| get_error(e, &self.inner, key))?;
        let data =
            out.body.collect().await.map_err(|e| ExportError::transient("GetObject", format!("reading s3://{}/{key} failed: {e}", self.inner.bucket)))?;
        Ok(data.into_bytes())
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        let out = self.inner.client.get_object().bucket(&self.inner.bucket).key(key).send().await.map_err(|e| get_error(e, &self.inner, key))?;
        let location = format!("s3://{}/{key}", self.inner.bucket);
        let stream = futures::stream::unfold((out.body, location), |(mut body, location)| async move {
            match body.next().await {
                None => None,
                Some(Ok(b)) => Some((Ok(b), (body, location))),
                Some(Err(e)) => {
                    let err = ExportError::transient("GetObject", format!("reading {location} failed: {e}"));
                    Some((Err(err), (body, location)))
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.inner.client.head_object().bucket(&self.inner.bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectMeta { key: key.to_string(), size: out.content_length().unwrap_or(0).max(0) as u64 })),
            Err(e) => {
                // HEAD answers carry no body, so a missing key is a bare 404.
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(404) && e.as_service_error().is_some_and(|s| s.is_not_found()) {
                    return Ok(None);
                }
                // A bare 403 does not say whether the key, the signature or a permission was
                // refused (a wrong secret would read as a missing s3:GetObject): a one-byte GET
                // of the same key is answered with the error code.
                if status == Some(403) && e.code().is_none() {
                    if let Err(get) = self.inner.client.get_object().bucket(&self.inner.bucket).key(key).range("bytes=0-0").send().await {
                        return match get_error(get, &self.inner, key) {
                            ExportError::NotFound { .. } => Ok(None),
                            other => Err(other),
                        };
                    }
                }
                match classify(e, &self.inner.ctx(AwsOp::HeadObject, key)) {
                    ExportError::NotFound { .. } => Ok(None),
                    other => Err(other),
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut pages = self.inner.client.list_objects_v2().bucket(&self.inner.bucket).prefix(prefix).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(e, &self.inner.ctx(AwsOp::ListObjects, prefix)))?;
            for obj in page.contents() {
                if let Some(key) = obj.key() {
                    out.push(ObjectMeta { key: key.to_string(), size: obj.size().unwrap_or(0).max(0) as u64 });
                }
            }
        }
        // S3 lists in UTF-8 binary order, which is Rust's String order; sort anyway so
        // every store returns the same order whatever the backend does.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn first(&self, prefix: &str) -> Result<Option<ObjectMeta>> {
        let page = self
            .inner
            .client
            .list_objects_v2()
            .bucket(&self.inner.bucket)
            .prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| classify(e, &self.inner.ctx(AwsOp::ListObjects, prefix)))?;
        Ok(page.contents().first().and_then(|o| o.key().map(|key| ObjectMeta { key: key.to_string(), size: o.size().unwrap_or(0).max(0) as u64 })))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.client.delete_object().bucket(&self.inner.bucket).key(key).send().await {
            Ok(_) => Ok(()),
            Err(e) => match classify(e, &self.inner.ctx(AwsOp::DeleteObject, key)) {
                ExportError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

fn get_error(
    e: aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    inner: &Inner,
    key: &str,
) -> ExportError {
    if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
        return ExportError::NotFound { what: format!("s3://{}/{key}", inner.bucket) };
    }
    classify(e, &inner.ctx(AwsOp::GetObject, key))
}

/// The S3 requests of one multipart write (CreateMultipartUpload, UploadPart with a CRC32
/// checksum, CompleteMultipartUpload, AbortMultipartUpload); buffering and concurrency are
/// [`BufferedUpload`]'s.
struct S3Multipart {
    store: Arc<Inner>,
    key: String,
}

#[async_trait]
impl MultipartTarget for S3Multipart {
    type Part = CompletedPart;

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.store.bucket, self.key)
    }

    async fn put_whole(&self, body: Bytes) -> Result<()> {
        self.store.put_object(&self.key, body, false).await
    }

    async fn start(&self) -> Result<String> {
        let s = &self.store;
        let mut req = s.client.create_multipart_upload().bucket(&s.bucket).key(&self.key);
        if s.part_checksums {
            req = req.checksum_algorithm(ChecksumAlgorithm::Crc32);
        }
        if let Some(k) = &s.kms_key {
            req = req.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k);
        }
        let out = req.send().await.map_err(|e| classify(e, &s.ctx(AwsOp::CreateMultipartUpload, &self.key)))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| ExportError::Internal(format!("CreateMultipartUpload for s3://{}/{} returned no upload id", s.bucket, self.key)))
    }

    async fn put_part(&self, upload_id: &str, number: u32, body: Bytes) -> Result<CompletedPart> {
        let s = &self.store;
        let number = i32::try_from(number).map_err(|_| ExportError::Internal(format!("part number {number} is out of range")))?;
        let mut req = s.client.upload_part().bucket(&s.bucket).key(&self.key).upload_id(upload_id).part_number(number);
        if s.part_checksums {
            req = req.checksum_algorithm(ChecksumAlgorithm::Crc32);
        }
        let out = req.content_length(body.len() as i64).body(S3Body::from(body)).send().await.map_err(|e| classify(e, &s.ctx(AwsOp::UploadPart, &self.key)))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
            .build())
    }

    async fn complete(&self, upload_id: &str, parts: Vec<CompletedPart>) -> Result<()> {
        let s = &self.store;
        s.client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| classify(e, &s.ctx(AwsOp::CompleteMultipartUpload, &self.key)))?;
        Ok(())
    }

    async fn abort(&self, upload_id: &str) -> Result<()> {
        let s = &self.store;
        match s.client.abort_multipart_upload().bucket(&s.bucket).key(&self.key).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(e) => match classify(e, &s.ctx(AwsOp::AbortMultipartUpload, &self.key)) {
                ExportError::NotFound { .. } => Ok(()), // already gone
                other => Err(other),
            },
        }
    }
}
