//! The ports: every trait the domain needs from the outside world, in one place. Adapters
//! (`crate::adapters`) implement them for S3, Azure Blob, KMS, SES, EventBridge Scheduler,
//! Lambda and local folders; the domain takes them as `&dyn` or `Arc<dyn>`. They carry only
//! the values of [`crate::model`], so this file sits below every domain folder.
//!
//! - Storage: [`ObjectStore`] (with [`StreamingUpload`]) for the lake, the control store
//!   and every destination, and [`DestinationOpener`] to reach a connection's destination.
//! - [`SecretCipher`] seals connection secrets; [`Mailer`] sends the failure email and
//!   says whether the service accepted or refused it ([`SendOutcome`]).
//! - [`RetryScheduler`] and [`HourlySchedules`] create one-time and hourly schedules;
//!   [`Invoker`] hands a backfill piece to another invocation.
//! - [`AccessProbe`] and [`DestinationProber`] run the access checks of a destination;
//!   [`KeyResolver`] finds the KMS key an alias names.
//! - [`HourEventSink`] publishes "Hour Exported" events (EventBridge, a folder in embedded
//!   mode); [`WebhookPoster`] POSTs them, and failure notices, to connections' webhooks.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::model::destination::Destination;
use crate::model::email::Email;
use crate::model::hour_event::HourExported;
use crate::model::hour_request::PlannedRetry;
use crate::model::metrics::MetricSet;
use crate::model::probe_report::ProbeReport;
use crate::model::secret::{Secret, SecretBinding};

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

    /// The first object in key order whose key starts with `prefix`, or `None`. The cloud
    /// stores answer it with one request (S3 `MaxKeys=1`, Azure `maxresults=1`) however many
    /// objects the prefix holds; this default lists them all.
    async fn first(&self, prefix: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.list(prefix).await?.into_iter().next())
    }

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Opens a connection's destination as a store (S3 as the project role, Azure as its
/// service principal, a local folder): the port the run machinery reaches destinations by.
#[async_trait]
pub trait DestinationOpener: Send + Sync {
    async fn open(&self, dest: &Destination, project_id: &str) -> Result<std::sync::Arc<dyn ObjectStore>>;
}

/// An object being written in pieces (S3 multipart, Azure staged blocks, a temp file).
/// Until `finish` succeeds nothing is visible at the key; `abort` cleans up.
#[async_trait]
pub trait StreamingUpload: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    async fn finish(self: Box<Self>) -> Result<()>;
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Seals and opens connection secrets (KMS envelope in the cloud, a local key file in
/// embedded mode); only the adapter that sends a secret opens it.
#[async_trait]
pub trait SecretCipher: Send + Sync + std::fmt::Debug {
    /// Seals a secret into a printable string safe to store (never contains the secret),
    /// bound to `binding`.
    async fn seal(&self, plain: &Secret, binding: &SecretBinding) -> Result<String>;
    /// Opens a string made by `seal` with the same binding; any other binding is refused.
    async fn open(&self, sealed: &str, binding: &SecretBinding) -> Result<Secret>;
}

/// What the mail service answered for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted for every recipient; the id the transport gave the message.
    Accepted { message_id: String },
    /// Refused as addressed, and nothing was sent: the service will not send this message
    /// to one of its recipients (a malformed or, in a sandbox, unverified address), or not
    /// from the sender. `reason` is the service's own words. Sending to fewer recipients
    /// may succeed; sending the same message again will not.
    Refused { reason: String },
}

/// Sends email (SES in the cloud, an outbox folder in embedded mode).
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Sends `email` as one message to all of `email.to`. `Err` is a failure to reach the
    /// service or a problem of ours (throttling, network, configuration): trying again
    /// later may succeed. A refusal of the message as addressed is `Ok(Refused)`;
    /// [`crate::delivery::notify::deliver`] then sends to each recipient alone.
    async fn send(&self, email: &Email) -> Result<SendOutcome>;
}

/// Creates one-time schedules that invoke the hourly export with a request.
/// Creating a schedule whose name exists already is `AlreadyExists`, not an error: a
/// redelivered failure must not fail the second time.
#[async_trait]
pub trait RetryScheduler: Send + Sync + std::fmt::Debug {
    async fn schedule_retry(&self, retry: &PlannedRetry) -> Result<CreateOutcome>;
}

/// Per-connection hourly schedules. Every call is idempotent.
#[async_trait]
pub trait HourlySchedules: Send + Sync + std::fmt::Debug {
    /// Creates the schedule, or updates it to the given state if it exists.
    async fn put_hourly(&self, connection_id: &str, enabled: bool) -> Result<()>;
    /// Enables or disables an existing schedule (missing → `NotFound`).
    async fn set_hourly_enabled(&self, connection_id: &str, enabled: bool) -> Result<()>;
    /// Deletes the schedule; a missing schedule is not an error.
    async fn delete_hourly(&self, connection_id: &str) -> Result<()>;
    /// Whether the schedule exists and is enabled (`None` when missing).
    async fn hourly_state(&self, connection_id: &str) -> Result<Option<bool>>;
}

/// Hands a payload to another invocation of the backfill function without waiting for it.
#[async_trait]
pub trait Invoker: Send + Sync + std::fmt::Debug {
    async fn invoke_async(&self, payload: &serde_json::Value) -> Result<()>;
}

/// Tells which KMS key an alias names (KMS DescribeKey in the cloud): policies must name
/// the key by its key ARN, since IAM never matches an alias in `Resource`.
#[async_trait]
pub trait KeyResolver: Send + Sync {
    /// The key ARN of `key` (a key ARN or an alias ARN); `Err` when it cannot be told
    /// (no such alias, not allowed to describe it, KMS unreachable).
    async fn key_arn(&self, key: &str) -> Result<String>;
}

/// Runs a destination's probe suite. Never fails as a whole: every problem is a result.
#[async_trait]
pub trait AccessProbe: Send + Sync {
    async fn probe(&self) -> ProbeReport;
}

/// Runs the access probes of a destination (the "test upload"), as the connection's
/// project identity.
#[async_trait]
pub trait DestinationProber: Send + Sync {
    /// Refuses, before any request, a destination this process must never write to (an
    /// account URL off the provider's hosts; a local folder in a deployed function; an
    /// endpoint whose name resolves inside our network: resolved, never connected to).
    async fn admit(&self, dest: &Destination) -> Result<()>;

    /// Refuses, before anything is stored, a webhook URL this process would never post to
    /// (plain http, a host inside our network, by spelling or by what its name resolves
    /// to); `field` names it in the error.
    async fn admit_webhook(&self, field: &str, url: &str) -> Result<()>;

    /// Probes `dest` as the identity that writes it for `project_id` (the project role).
    async fn probe(&self, dest: &Destination, project_id: &str) -> ProbeReport;
}

/// Publishes "Hour Exported" events to the stack's event bus (EventBridge in the cloud, the
/// home's `events/` folder in embedded mode). Publishing the same event again is allowed
/// (at-least-once): receivers recognise it by its id.
#[async_trait]
pub trait HourEventSink: Send + Sync + std::fmt::Debug {
    /// Where events go, for messages (`EventBridge bus X`, a folder).
    fn describe(&self) -> String;
    /// One attempt to publish; `Err` when the bus did not take the event.
    async fn publish(&self, event: &HourExported) -> Result<()>;
}

/// One POST to a webhook.
#[derive(Clone, Copy)]
pub struct WebhookPost<'a> {
    /// How messages name the hook (`webhook of connection c1`): never its URL, which for a
    /// failure webhook is a credential.
    pub label: &'a str,
    pub url: &'a str,
    /// JSON body, sent as is.
    pub body: &'a [u8],
    /// Signs the POST (HMAC-SHA256 over timestamp and body) when given.
    pub signing_secret: Option<&'a Secret>,
    /// Sent as a header so receivers can drop a delivery they already have.
    pub event_id: Option<&'a str>,
}

impl std::fmt::Debug for WebhookPost<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPost").field("label", &self.label).field("bytes", &self.body.len()).field("event_id", &self.event_id).finish()
    }
}

/// POSTs JSON to connections' webhooks (over HTTPS; plain http only for emulators).
#[async_trait]
pub trait WebhookPoster: Send + Sync + std::fmt::Debug {
    /// One POST, bounded by the adapter's timeouts. `Ok` on a 2xx answer; a retryable
    /// `Err` (`Transient`) for timeouts, network failures, 408, 429 and 5xx; otherwise the
    /// receiver refused and sending again will not help. No error names the URL.
    async fn post(&self, post: &WebhookPost<'_>) -> Result<()>;
}

/// Publishes figures (CloudWatch Embedded Metric Format log lines in the functions). Never
/// fails the work it measures: a figure that cannot be written is dropped with a log line.
pub trait MetricsSink: Send + Sync + std::fmt::Debug {
    fn publish(&self, set: &MetricSet);
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
