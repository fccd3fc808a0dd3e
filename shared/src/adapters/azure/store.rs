//! Azure Blob Storage adapter (Microsoft's official `azure_storage_blob` 1.x): one container
//! as an [`ObjectStore`].
//!
//! - Streaming writes stage blocks of bounded size and commit the block list on `finish`;
//!   nothing is visible before the commit. Block ids are derived from the block's index and
//!   content (no random ids), so a retried export stages the same ids, and two concurrent
//!   writers of different bytes can never splice each other's blocks into one blob.
//! - Blob names are put into URLs segment by segment, percent-encoded (`#` → `%23`), so a
//!   part name like `A_D_H#0.json.gz` is never cut at a fragment.
//! - Credentials: a Microsoft Entra ID service principal (client secret) or a SAS token.

use std::num::NonZero;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Etag, ExponentialRetryOptions, RetryOptions, Transport, Url};
use azure_core::time::Duration as AzDuration;
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders, BlobContainerClientListBlobsOptions, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientUploadOptions, BlockLookupList,
};
use azure_storage_blob::{BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions, BlockBlobClient};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::adapters::azure::endpoint::EndpointRules;
use crate::adapters::azure::errors::{classify, AzureOp, ErrorContext, Redactor};
use crate::adapters::upload::{BufferedUpload, MultipartTarget};
use crate::error::{ExportError, Result};
use crate::model::destination::{AzureAuth, Destination};
use crate::model::secret::Secret;
use crate::ports::{ByteStream, CreateOutcome, ObjectMeta, ObjectStore, StreamingUpload};

/// Size of one staged block. 8 MiB keeps an upload's memory small (a few blocks) while a
/// 50,000-block blob can still hold ~390 GiB, far above any export part.
pub const DEFAULT_BLOCK_SIZE: usize = 8 << 20;
/// Staged blocks uploading at once per streaming upload (bounds memory to
/// `(MAX_BLOCKS_IN_FLIGHT + 1) × block size`).
const MAX_BLOCKS_IN_FLIGHT: usize = 2;
/// Objects up to this size are written by `put` in one Put Blob request.
const SINGLE_PUT_LIMIT: u64 = 256 << 20;
/// Environment variable naming a PEM file of extra CA certificates to trust (emulators,
/// TLS-inspecting proxies). The system roots stay trusted.
pub const EXTRA_CA_ENV: &str = "EXPORTER_AZURE_EXTRA_CA_FILE";
/// The Azure SDKs' standard variable for the Microsoft Entra ID authority host.
pub const AUTHORITY_HOST_ENV: &str = "AZURE_AUTHORITY_HOST";

/// Settings that are not part of a connection: where the identity authority is and which
/// extra certificate authorities to trust. Production uses the defaults.
#[derive(Clone, Default)]
pub struct AzureOptions {
    /// Microsoft Entra ID authority, default `https://login.microsoftonline.com`.
    pub authority_host: Option<String>,
    /// Extra PEM CA certificates trusted in addition to the system roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Staged block size; default [`DEFAULT_BLOCK_SIZE`].
    pub block_size: Option<usize>,
    /// Retries inside one request for throttling, 5xx and connection resets (default 3).
    pub max_retries: Option<u32>,
    /// Blobs per List Blobs page; default: the service's (5,000).
    pub list_page_size: Option<u32>,
    /// Which account URLs are accepted (production: https on Azure Storage hosts).
    pub endpoints: EndpointRules,
}

impl std::fmt::Debug for AzureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureOptions")
            .field("authority_host", &self.authority_host)
            .field("extra_ca_pem", &self.extra_ca_pem.as_ref().map(|p| format!("{} bytes", p.len())))
            .field("block_size", &self.block_size)
            .field("max_retries", &self.max_retries)
            .field("list_page_size", &self.list_page_size)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl AzureOptions {
    /// Reads [`AUTHORITY_HOST_ENV`], [`EXTRA_CA_ENV`] and the endpoint rules' variables (all optional).
    pub fn from_env() -> Result<Self> {
        let authority_host = std::env::var(AUTHORITY_HOST_ENV).ok().filter(|s| !s.is_empty());
        let extra_ca_pem = match std::env::var(EXTRA_CA_ENV).ok().filter(|s| !s.is_empty()) {
            Some(path) => Some(std::fs::read(&path).map_err(|e| ExportError::io(path, e))?),
            None => None,
        };
        Ok(AzureOptions { authority_host, extra_ca_pem, endpoints: EndpointRules::from_env()?, ..Default::default() })
    }
}

/// One Azure Blob Storage container.
pub struct AzureStore {
    /// Container URL; carries the SAS query when authenticating with a SAS.
    container_url: Url,
    /// `account_url/container`, never with a query.
    display: String,
    credential: Option<Arc<dyn TokenCredential>>,
    client_options: ClientOptions,
    container: BlobContainerClient,
    redactor: Redactor,
    principal: String,
    sas: bool,
    sas_token: Option<Secret>,
    block_size: usize,
    list_page_size: Option<u32>,
}

impl std::fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore").field("container", &self.display).field("principal", &self.principal).finish_non_exhaustive()
    }
}

fn config_err(field: &str, problem: impl Into<String>, fix: &str) -> ExportError {
    ExportError::invalid_config(field, problem, fix)
}

/// Builds the HTTP transport: the SDK's reqwest client settings, plus extra trusted roots.
fn transport(options: &AzureOptions) -> Result<Transport> {
    let mut builder = reqwest::ClientBuilder::new()
        .connect_timeout(std::time::Duration::from_secs(20))
        .read_timeout(std::time::Duration::from_secs(60))
        // Azure REST guidelines discourage redirects; following them would also resend auth.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = &options.extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| config_err("azure extra CA certificates", format!("not a PEM certificate bundle: {e}"), "Give a PEM file of CA certificates."))?;
        if certs.is_empty() {
            return Err(config_err("azure extra CA certificates", "the PEM bundle holds no certificate", "Give a PEM file of CA certificates."));
        }
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder.build().map_err(|e| ExportError::Internal(format!("cannot build the HTTPS client for Azure: {e}")))?;
    Ok(Transport::new(Arc::new(client)))
}

impl AzureStore {
    /// A store for `container` of the storage account at `account_url`
    /// (`https://{account}.blob.core.windows.net`, or an emulator's `http(s)://host:port/account`).
    pub fn new(account_url: &str, container: &str, credentials: AzureAuth, options: AzureOptions) -> Result<Self> {
        let account = Url::parse(account_url.trim_end_matches('/'))
            .map_err(|e| config_err("account_url", format!("{account_url:?} is not a URL ({e})"), "Use https://{account}.blob.core.windows.net."))?;
        if account.query().is_some() || account.cannot_be_a_base() {
            return Err(config_err("account_url", "must be a plain http(s) URL without a query", "Put a SAS token in sas_token, not in the URL."));
        }
        options.endpoints.check(&account)?;
        if container.is_empty() || container.contains('/') {
            return Err(config_err("container", format!("{container:?} is not a container name"), "Give the container's name."));
        }
        let mut container_url = account.clone();
        container_url
            .path_segments_mut()
            .map_err(|_| config_err("account_url", "cannot hold a path", "Use https://{account}.blob.core.windows.net."))?
            .pop_if_empty()
            .push(container);
        let display = container_url.to_string();

        let retry = RetryOptions::exponential(ExponentialRetryOptions {
            max_retries: options.max_retries.unwrap_or(3),
            max_total_elapsed: AzDuration::seconds(45),
            ..Default::default()
        });
        let mut client_options = ClientOptions { transport: Some(transport(&options)?), retry, ..Default::default() };
        credentials.check("credentials")?;
        let redactor = Redactor::new([credentials.secret().clone()]);
        let principal = credentials.principal();

        let (credential, sas): (Option<Arc<dyn TokenCredential>>, bool) = match &credentials {
            AzureAuth::ServicePrincipal { tenant_id, client_id, client_secret } => {
                if container_url.scheme() != "https" {
                    return Err(config_err("account_url", "a service principal needs an https account URL", "Use https://{account}.blob.core.windows.net."));
                }
                let mut cred_options = client_options.clone();
                if let Some(host) = &options.authority_host {
                    let mut custom = CustomConfiguration::default();
                    custom.authority_host = host.trim_end_matches('/').to_string();
                    cred_options.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
                }
                let cred = ClientSecretCredential::new(
                    tenant_id,
                    client_id.clone(),
                    azure_core::credentials::Secret::new(client_secret.expose().to_string()),
                    Some(ClientSecretCredentialOptions { client_options: cred_options }),
                )
                .map_err(|e| {
                    config_err(
                        "tenant_id/client_id/client_secret",
                        redactor.scrub(&e.to_string()),
                        "Give the service principal's tenant id, client id and secret.",
                    )
                })?;
                (Some(cred as Arc<dyn TokenCredential>), false)
            }
            AzureAuth::Sas { token } => {
                let query = token.expose().trim_start_matches('?');
                container_url.set_query(Some(query));
                (None, true)
            }
        };
        client_options.cloud = None;
        let container = BlobContainerClient::new(
            container_url.clone(),
            credential.clone(),
            Some(BlobContainerClientOptions { client_options: client_options.clone(), ..Default::default() }),
        )
        .map_err(|e| config_err("account_url", redactor.scrub(&e.to_string()), "Use https://{account}.blob.core.windows.net."))?;

        Ok(AzureStore {
            container_url,
            display,
            credential,
            client_options,
            container,
            redactor,
            principal,
            sas,
            sas_token: match &credentials {
                AzureAuth::Sas { token: t } => Some(t.clone()),
                AzureAuth::ServicePrincipal { .. } => None,
            },
            block_size: options.block_size.unwrap_or(DEFAULT_BLOCK_SIZE).max(1),
            list_page_size: options.list_page_size,
        })
    }

    /// A store for an Azure destination of a connection (its container; the prefix is
    /// applied by the caller's layout).
    pub fn from_destination(dest: &Destination, options: AzureOptions) -> Result<Self> {
        let Destination::Azure { account_url, container, tenant_id, client_id, client_secret, sas_token, .. } = dest else {
            return Err(ExportError::Internal(format!("AzureStore::from_destination called with {}", dest.describe())));
        };
        let credentials = AzureAuth::from_fields("destination", tenant_id, client_id, client_secret, sas_token)?;
        AzureStore::new(account_url, container, credentials, options)
    }

    /// Who the storage account sees: `service principal {client id} (tenant ...)` or `SAS token`.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The SAS token, when the store authenticates with one (the probe checks its expiry).
    pub(crate) fn sas_token(&self) -> Option<&Secret> {
        self.sas_token.as_ref()
    }

    /// Asks Microsoft Entra ID for a storage token (service principal only; `Ok(false)` for SAS).
    pub async fn check_token(&self) -> Result<bool> {
        let Some(cred) = &self.credential else { return Ok(false) };
        cred.get_token(&["https://storage.azure.com/.default"], None).await.map(|_| true).map_err(|e| self.classify(e, AzureOp::Token, &self.display))
    }

    /// Whether the container exists (Get Container Properties).
    pub(crate) async fn container_exists(&self) -> Result<bool> {
        match self.container.get_properties(None).await {
            Ok(_) => Ok(true),
            Err(e) => match self.classify(e, AzureOp::ContainerProperties, &self.display) {
                ExportError::DestinationMissing { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    pub(crate) fn classify(&self, err: azure_core::Error, op: AzureOp, resource: &str) -> ExportError {
        classify(err, ErrorContext { op, resource, principal: Some(&self.principal), sas: self.sas, redactor: &self.redactor })
    }

    fn resource(&self, key: &str) -> String {
        format!("{}/{key}", self.display)
    }

    /// The blob's URL: the container URL plus one percent-encoded path segment per
    /// `/`-separated part of the key (so `#`, `?`, `%` and spaces stay in the name).
    fn blob_url(&self, key: &str) -> Result<Url> {
        validate_blob_name(key)?;
        let mut url = self.container_url.clone();
        url.path_segments_mut()
            .map_err(|_| ExportError::Internal(format!("container URL {} cannot hold a path", self.display)))?
            .pop_if_empty()
            .extend(key.split('/'));
        Ok(url)
    }

    fn blob_client(&self, key: &str) -> Result<BlobClient> {
        BlobClient::new(
            self.blob_url(key)?,
            self.credential.clone(),
            Some(BlobClientOptions { client_options: self.client_options.clone(), ..Default::default() }),
        )
        .map_err(|e| ExportError::Internal(self.redactor.scrub(&format!("cannot make a blob client for {}: {e}", self.resource(key)))))
    }

    /// One Put Blob request (with `If-None-Match: *` when `create_only`).
    async fn upload_small(client: &BlobClient, body: Bytes, create_only: bool) -> std::result::Result<(), azure_core::Error> {
        let len = body.len() as u64;
        let opts = BlockBlobClientUploadOptions {
            // Large enough that this is always one Put Blob request (atomic, no staged blocks).
            partition_size: NonZero::new(len.max(SINGLE_PUT_LIMIT)),
            parallel: NonZero::new(1),
            if_none_match: create_only.then(|| Etag::from("*")),
            ..Default::default()
        };
        client.upload(body.into(), Some(opts)).await.map(|_| ())
    }
}

/// Blob names: 1-1024 characters, `/`-separated, no empty, `.` or `..` segment (URLs would
/// fold those), no backslash (Azure turns it into `/`) and no control characters.
pub fn validate_blob_name(key: &str) -> Result<()> {
    let bad = |why: &str| ExportError::invalid_input(format!("blob name {key:?}"), why.to_string());
    if key.is_empty() || key.chars().count() > 1024 {
        return Err(bad("must be 1-1024 characters"));
    }
    if key.contains('\\') || key.chars().any(char::is_control) {
        return Err(bad("must not contain a backslash or control characters"));
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(bad("must not contain empty, '.' or '..' segments (or start/end with '/')"));
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for AzureStore {
    fn describe(&self) -> String {
        self.display.clone()
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        if body.len() as u64 > SINGLE_PUT_LIMIT {
            let mut up = self.upload(key).await?;
            up.write(body).await?;
            return up.finish().await;
        }
        let client = self.blob_client(key)?;
        Self::upload_small(&client, body, false).await.map_err(|e| self.classify(e, AzureOp::Write, &self.resource(key)))
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<CreateOutcome> {
        let client = self.blob_client(key)?;
        match Self::upload_small(&client, body, true).await {
            Ok(()) => Ok(CreateOutcome::Created),
            // If-None-Match: * on an existing blob: 409 BlobAlreadyExists (412 on some versions).
            Err(e) if matches!(e.http_status().map(u16::from), Some(409) | Some(412)) => Ok(CreateOutcome::AlreadyExists),
            Err(e) => Err(self.classify(e, AzureOp::Write, &self.resource(key))),
        }
    }

    async fn upload(&self, key: &str) -> Result<Box<dyn StreamingUpload>> {
        let blob = self.blob_client(key)?;
        let target = AzureBlocks {
            blob: blob.block_blob_client(),
            single: blob,
            resource: self.resource(key),
            ctx: UploadCtx { principal: self.principal.clone(), sas: self.sas, redactor: self.redactor.clone() },
        };
        Ok(Box::new(BufferedUpload::new(target, self.block_size, MAX_BLOCKS_IN_FLIGHT)))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let body = crate::ports::collect_stream(self.get_stream(key).await?).await?;
        Ok(Bytes::from(body))
    }

    async fn get_stream(&self, key: &str) -> Result<ByteStream> {
        let client = self.blob_client(key)?;
        let resource = self.resource(key);
        let opts = BlobClientDownloadOptions {
            // Two 4 MiB ranges at a time: bounded memory, still overlapped.
            parallel: NonZero::new(2),
            partition_size: NonZero::new(4 << 20),
            ..Default::default()
        };
        // A missing container stays DestinationMissing (an accessibility error), not NotFound.
        let result = client.download(Some(opts)).await.map_err(|e| self.classify(e, AzureOp::Read, &resource))?;
        let ctx = UploadCtx { principal: self.principal.clone(), sas: self.sas, redactor: self.redactor.clone() };
        let stream = result.body.map(move |chunk| chunk.map_err(|e| ctx.classify(e, AzureOp::Read, &resource)));
        Ok(Box::pin(stream))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let client = self.blob_client(key)?;
        match client.get_properties(None).await {
            Ok(rsp) => {
                let size = rsp.content_length().map_err(|e| self.classify(e, AzureOp::Read, &self.resource(key)))?.unwrap_or(0);
                Ok(Some(ObjectMeta { key: key.to_string(), size }))
            }
            Err(e) => match self.classify(e, AzureOp::Read, &self.resource(key)) {
                ExportError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let opts = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            maxresults: self.list_page_size.map(|n| n.clamp(1, 5000) as i32),
            ..Default::default()
        };
        let resource = format!("{}/{prefix}*", self.display);
        let mut pages = self.container.list_blobs(Some(opts)).map_err(|e| self.classify(e, AzureOp::List, &resource))?.into_pages();
        let mut out = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| self.classify(e, AzureOp::List, &resource))? {
            let page = page.into_model().map_err(|e| self.classify(e, AzureOp::List, &resource))?;
            for item in page.blob_items {
                // Names come back decoded (XML text, or the `Encoded="true"` form decoded by the SDK).
                let Some(name) = item.name else { continue };
                let size = item.properties.and_then(|p| p.content_length).unwrap_or(0);
                out.push(ObjectMeta { key: name, size });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn first(&self, prefix: &str) -> Result<Option<ObjectMeta>> {
        let opts = BlobContainerClientListBlobsOptions { prefix: (!prefix.is_empty()).then(|| prefix.to_string()), maxresults: Some(1), ..Default::default() };
        let resource = format!("{}/{prefix}*", self.display);
        let mut pages = self.container.list_blobs(Some(opts)).map_err(|e| self.classify(e, AzureOp::List, &resource))?.into_pages();
        // A page may come back empty with a continuation marker: follow it.
        while let Some(page) = pages.try_next().await.map_err(|e| self.classify(e, AzureOp::List, &resource))? {
            let page = page.into_model().map_err(|e| self.classify(e, AzureOp::List, &resource))?;
            if let Some((key, item)) = page.blob_items.into_iter().find_map(|item| item.name.clone().map(|n| (n, item))) {
                return Ok(Some(ObjectMeta { key, size: item.properties.and_then(|p| p.content_length).unwrap_or(0) }));
            }
        }
        Ok(None)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let client = self.blob_client(key)?;
        match client.delete(None).await {
            Ok(_) => Ok(()),
            Err(e) => match self.classify(e, AzureOp::Delete, &self.resource(key)) {
                ExportError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// What a spawned block upload needs to classify its own errors.
struct UploadCtx {
    principal: String,
    sas: bool,
    redactor: Redactor,
}

impl UploadCtx {
    fn classify(&self, err: azure_core::Error, op: AzureOp, resource: &str) -> ExportError {
        classify(err, ErrorContext { op, resource, principal: Some(&self.principal), sas: self.sas, redactor: &self.redactor })
    }
}

/// The Azure requests of one staged write (Put Block, Put Block List). Uncommitted blocks
/// are never visible: Azure lists and reads only committed blobs, and drops uncommitted
/// blocks when the blob is next committed or after seven days, so `abort` has nothing to
/// delete. Buffering and concurrency are [`BufferedUpload`]'s.
struct AzureBlocks {
    blob: BlockBlobClient,
    /// Same blob, for the one-request path of objects smaller than one block.
    single: BlobClient,
    resource: String,
    ctx: UploadCtx,
}

/// `{index:06}-{first 16 bytes of sha256(block), hex}`: 39 bytes, equal for every block as
/// Azure requires, deterministic, and different for different content at the same index.
fn block_id(index: usize, block: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(block);
    format!("{index:06}-{}", hex::encode(&digest[..16])).into_bytes()
}

#[async_trait]
impl MultipartTarget for AzureBlocks {
    type Part = Vec<u8>;

    fn describe(&self) -> String {
        self.resource.clone()
    }

    async fn put_whole(&self, body: Bytes) -> Result<()> {
        // A single Put Blob, as atomic as a commit.
        AzureStore::upload_small(&self.single, body, false).await.map_err(|e| self.ctx.classify(e, AzureOp::Write, &self.resource))
    }

    async fn start(&self) -> Result<String> {
        Ok(String::new()) // blocks need no session: the blob's name is the upload
    }

    async fn put_part(&self, _upload_id: &str, number: u32, block: Bytes) -> Result<Vec<u8>> {
        let id = block_id(number as usize - 1, &block);
        let len = block.len() as u64;
        self.blob.stage_block(&id, len, block.into(), None).await.map_err(|e| self.ctx.classify(e, AzureOp::Write, &self.resource))?;
        Ok(id)
    }

    async fn complete(&self, _upload_id: &str, block_ids: Vec<Vec<u8>>) -> Result<()> {
        let list = BlockLookupList { latest: Some(block_ids), ..Default::default() };
        let content =
            list.try_into().map_err(|e: azure_core::Error| ExportError::Internal(format!("cannot encode the block list of {}: {e}", self.resource)))?;
        self.blob
            .commit_block_list(content, Some(BlockBlobClientCommitBlockListOptions::default()))
            .await
            .map(|_| ())
            .map_err(|e| self.ctx.classify(e, AzureOp::Write, &self.resource))
    }

    async fn abort(&self, _upload_id: &str) -> Result<()> {
        Ok(()) // nothing was committed, so nothing is visible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sas_store() -> AzureStore {
        AzureStore::new(
            "http://127.0.0.1:1/devstoreaccount1",
            "c1",
            AzureAuth::Sas { token: Secret::new("sv=2024-01-01&sp=r&sig=abc") },
            AzureOptions { endpoints: EndpointRules::emulators(), ..AzureOptions::default() },
        )
        .unwrap()
    }

    #[test]
    fn blob_urls_encode_hash_and_keep_the_sas() {
        let s = sas_store();
        let url = s.blob_url("exports/187520/187520_2020-01-25_17#0.json.gz").unwrap();
        assert_eq!(url.path(), "/devstoreaccount1/c1/exports/187520/187520_2020-01-25_17%230.json.gz");
        assert_eq!(url.fragment(), None);
        assert_eq!(url.query(), Some("sv=2024-01-01&sp=r&sig=abc"));
        assert!(s.blob_url("a//b").is_err() && s.blob_url("../x").is_err() && s.blob_url("").is_err());
    }

    #[test]
    fn block_ids_are_deterministic_equal_length_and_content_bound() {
        let a = block_id(0, b"hello");
        assert_eq!(a, block_id(0, b"hello"));
        assert_ne!(a, block_id(0, b"world"));
        assert_ne!(a, block_id(1, b"hello"));
        assert_eq!(a.len(), block_id(123_456, &[0u8; 100]).len());
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = AzureAuth::ServicePrincipal { tenant_id: "t".into(), client_id: "c".into(), client_secret: Secret::new("super-secret-value") };
        assert!(!format!("{c:?}").contains("super-secret-value"));
        let s = sas_store();
        assert!(!format!("{s:?}").contains("sig=abc"));
        assert!(!s.describe().contains("sig"));
    }

    #[test]
    fn service_principal_needs_https() {
        let c = AzureAuth::ServicePrincipal { tenant_id: "t".into(), client_id: "c".into(), client_secret: Secret::new("s3cr3t-value") };
        let e =
            AzureStore::new("http://127.0.0.1:1/devstoreaccount1", "c1", c, AzureOptions { endpoints: EndpointRules::emulators(), ..AzureOptions::default() })
                .unwrap_err();
        assert_eq!(e.kind(), "InvalidConfig");
    }
}
