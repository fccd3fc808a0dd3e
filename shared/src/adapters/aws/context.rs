//! AWS context: the SDK configuration loaded once per process (Lambda cold start, CLI
//! start) plus the per-project role the exporter assumes to write to customers' buckets.
//!
//! - Endpoint: the standard `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_S3`) variables are
//!   honoured by `aws_config`; when an endpoint is overridden (moto, MinIO) S3 uses
//!   path-style addressing, since such servers do not resolve `bucket.host` names.
//! - Per-project role: with `EXPORT_PROJECT_ROLE_ARN_TEMPLATE` set (e.g.
//!   `arn:aws:iam::{account}:role/event-export-project-{project_id}`), every call for a
//!   project's destination runs with credentials from STS AssumeRole on that role, cached
//!   until five minutes before they expire. `{account}` is the exporter's own account,
//!   read once with GetCallerIdentity. Without a template the base credentials are used.
//! - Timeouts: every client made from the context (S3, KMS, STS, SES, Scheduler, Lambda)
//!   has connect, first-byte, attempt and operation limits ([`AwsTimeouts`]), so a stalled
//!   connection fails as `Transient` and is retried by the retry schedule instead of
//!   hanging a run until the function's own timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

use crate::adapters::aws::errors::{classify, AwsOp, CredentialsFailure, OpContext};
use crate::error::{ExportError, Result};

/// Environment variable holding the project role ARN template.
pub const ROLE_TEMPLATE_ENV: &str = "EXPORT_PROJECT_ROLE_ARN_TEMPLATE";

/// Role credentials are renewed this long before they expire, so a request signed with
/// them never reaches S3 after expiry (a multipart part can take a while).
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Requested role session length (the AWS default and the role's default maximum).
const SESSION_SECONDS: i32 = 3600;

/// Limits on every AWS call. The attempt limit covers a request until its response
/// headers (an 8 MiB part at 1 MB/s takes 8 s); the operation limit covers the SDK's own
/// retries of it. A response body then streams under the first-byte limit per read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub attempt: Duration,
    pub operation: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(30),
            attempt: Duration::from_secs(60),
            operation: Duration::from_secs(150),
        }
    }
}

impl AwsTimeouts {
    pub fn config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.first_byte)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }
}

/// The SDK configuration and per-project credentials. Cheap to clone; build once.
#[derive(Clone)]
pub struct AwsContext {
    inner: Arc<Inner>,
}

struct Inner {
    base: SdkConfig,
    sts: aws_sdk_sts::Client,
    role_template: Option<String>,
    account: tokio::sync::OnceCell<String>,
    /// Role ARN → its caching provider, shared by every client of that project.
    roles: Mutex<HashMap<String, SharedCredentialsProvider>>,
}

impl std::fmt::Debug for AwsContext {
    // Never prints credentials: only where requests go and which role template is used.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsContext")
            .field("region", &self.inner.base.region().map(|r| r.to_string()))
            .field("endpoint_url", &self.inner.base.endpoint_url())
            .field("role_template", &self.inner.role_template)
            .finish()
    }
}

/// The credentials (and the identity they belong to) for one project's destination.
#[derive(Clone, Debug)]
pub struct ProjectIdentity {
    /// The project role ARN when a role is assumed; `None` for the base credentials.
    pub principal: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
}

impl ProjectIdentity {
    /// The exporter's own credentials (lake, control store, buckets in its own account).
    pub fn base() -> Self {
        ProjectIdentity { principal: None, credentials: None }
    }
}

impl AwsContext {
    /// Loads the standard AWS configuration (env, profile, container/instance role) and
    /// the role template from `EXPORT_PROJECT_ROLE_ARN_TEMPLATE`.
    pub async fn from_env() -> Result<Self> {
        let base = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let template = std::env::var(ROLE_TEMPLATE_ENV).ok().filter(|t| !t.trim().is_empty());
        Self::new(base, template)
    }

    /// From an explicit SDK configuration (tests, tools) and optional role template, with
    /// the default [`AwsTimeouts`].
    pub fn new(base: SdkConfig, role_template: Option<String>) -> Result<Self> {
        Self::with_timeouts(base, role_template, AwsTimeouts::default())
    }

    /// Like [`AwsContext::new`] with explicit timeouts (they replace any in `base`).
    pub fn with_timeouts(base: SdkConfig, role_template: Option<String>, timeouts: AwsTimeouts) -> Result<Self> {
        if let Some(t) = &role_template {
            validate_template(t)?;
        }
        let base = base.into_builder().timeout_config(timeouts.config()).build();
        let sts = aws_sdk_sts::Client::new(&base);
        Ok(AwsContext { inner: Arc::new(Inner { base, sts, role_template, account: tokio::sync::OnceCell::new(), roles: Mutex::new(HashMap::new()) }) })
    }

    pub fn sdk_config(&self) -> &SdkConfig {
        &self.inner.base
    }

    /// The limits every client made from this context has (see [`AwsTimeouts`]).
    pub fn timeout_config(&self) -> TimeoutConfig {
        self.inner.base.timeout_config().cloned().unwrap_or_else(|| AwsTimeouts::default().config())
    }

    /// Whether requests go to an overridden endpoint (emulator) rather than AWS.
    pub fn endpoint_overridden(&self) -> bool {
        self.inner.base.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
    }

    /// The project's role ARN, or `None` when no template is configured.
    pub async fn project_role_arn(&self, project_id: &str) -> Result<Option<String>> {
        let Some(template) = &self.inner.role_template else { return Ok(None) };
        let mut arn = template.replace("{project_id}", project_id);
        if arn.contains("{account}") {
            let account = self.account_id().await?;
            arn = arn.replace("{account}", &account);
        }
        Ok(Some(arn))
    }

    /// The exporter's own account id (GetCallerIdentity, once).
    async fn account_id(&self) -> Result<String> {
        self.inner
            .account
            .get_or_try_init(|| async {
                let out =
                    self.inner.sts.get_caller_identity().send().await.map_err(|e| classify(e, &OpContext::new(AwsOp::StsGetCallerIdentity, "sts", None)))?;
                out.account().map(str::to_string).ok_or_else(|| ExportError::Internal("GetCallerIdentity returned no account".into()))
            })
            .await
            .cloned()
    }

    /// Credentials for a project's destination: the project role's (cached) or the base ones.
    pub async fn project_identity(&self, project_id: &str) -> Result<ProjectIdentity> {
        let Some(role_arn) = self.project_role_arn(project_id).await? else {
            return Ok(ProjectIdentity::base());
        };
        let provider = {
            let mut roles = self.inner.roles.lock().expect("role cache lock poisoned");
            roles
                .entry(role_arn.clone())
                .or_insert_with(|| {
                    SharedCredentialsProvider::new(AssumeRoleCache {
                        sts: self.inner.sts.clone(),
                        role_arn: role_arn.clone(),
                        session_name: session_name(project_id),
                        cached: tokio::sync::Mutex::new(None),
                    })
                })
                .clone()
        };
        Ok(ProjectIdentity { principal: Some(role_arn), credentials: Some(provider) })
    }

    /// Current credentials of a project identity (AssumeRole happens here at the latest).
    /// Callers use it to fail early with a clear error instead of inside an S3 call.
    pub async fn resolve(&self, identity: &ProjectIdentity) -> Result<Option<Credentials>> {
        match &identity.credentials {
            None => Ok(None),
            Some(p) => p.provide_credentials().await.map(Some).map_err(|e| match crate::adapters::http_errors::find_in_chain::<CredentialsFailure>(&e) {
                Some(f) => f.0.duplicate(),
                None => ExportError::BadCredentials {
                    service: "AWS STS".into(),
                    detail: e.to_string(),
                    hint: "The exporter could not obtain the project role's credentials.".into(),
                },
            }),
        }
    }

    /// An S3 client for a bucket in `region`, signing with `identity`'s credentials.
    pub fn s3_client(&self, region: &str, identity: &ProjectIdentity) -> aws_sdk_s3::Client {
        let mut b = aws_sdk_s3::config::Builder::from(&self.inner.base);
        if !region.is_empty() {
            b = b.region(aws_config::Region::new(region.to_string()));
        }
        if self.endpoint_overridden() {
            b = b.force_path_style(true);
        }
        if let Some(c) = &identity.credentials {
            b = b.credentials_provider(c.clone());
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }

    /// A store on one of the exporter's own buckets (the lake, the control store), with
    /// the base credentials.
    pub fn own_bucket(&self, bucket: &str, region: &str) -> crate::adapters::aws::s3::S3Store {
        crate::adapters::aws::s3::S3Store::new(self.s3_client(region, &ProjectIdentity::base()), bucket)
    }

    /// A KMS client in `region` (the key's region), signing with `identity`'s credentials.
    pub fn kms_client(&self, region: &str, identity: &ProjectIdentity) -> aws_sdk_kms::Client {
        let mut b = aws_sdk_kms::config::Builder::from(&self.inner.base);
        if !region.is_empty() {
            b = b.region(aws_config::Region::new(region.to_string()));
        }
        if let Some(c) = &identity.credentials {
            b = b.credentials_provider(c.clone());
        }
        aws_sdk_kms::Client::from_conf(b.build())
    }
}

/// Role session names show up in CloudTrail of the customer's account: name the project.
fn session_name(project_id: &str) -> String {
    let mut s = format!("event-export-{project_id}");
    s.truncate(64);
    s
}

fn validate_template(t: &str) -> Result<()> {
    if !t.starts_with("arn:") || !t.contains(":role/") || !t.contains("{project_id}") {
        return Err(ExportError::invalid_config(
            ROLE_TEMPLATE_ENV,
            format!("{t:?} is not a role ARN template with {{project_id}}"),
            "Use e.g. arn:aws:iam::{account}:role/event-export-project-{project_id}.",
        ));
    }
    Ok(())
}

/// STS AssumeRole on one role, with the credentials kept until shortly before expiry.
/// The lock is held across the STS call so concurrent uploads of a project wait for one
/// AssumeRole rather than each making their own.
struct AssumeRoleCache {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    session_name: String,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for AssumeRoleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRoleCache").field("role_arn", &self.role_arn).finish_non_exhaustive()
    }
}

impl AssumeRoleCache {
    async fn load(&self) -> aws_credential_types::provider::Result {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c.expiry().is_none_or(|exp| exp > SystemTime::now() + REFRESH_MARGIN);
            if fresh {
                return Ok(c.clone());
            }
        }
        let ctx = OpContext::new(AwsOp::StsAssumeRole, self.role_arn.clone(), None);
        let out =
            self.sts.assume_role().role_arn(&self.role_arn).role_session_name(&self.session_name).duration_seconds(SESSION_SECONDS).send().await.map_err(
                |e| {
                    let mut err = classify(e, &ctx);
                    // The refused principal is the exporter itself; the resource is the role.
                    if let ExportError::PermissionDenied { operation, .. } = &mut err {
                        *operation = "AssumeRole".into();
                    }
                    CredentialsError::provider_error(CredentialsFailure(err))
                },
            )?;
        let c = out.credentials().ok_or_else(|| {
            CredentialsError::provider_error(CredentialsFailure(ExportError::Internal(format!("AssumeRole on {} returned no credentials", self.role_arn))))
        })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        let creds = Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().to_string()), expiry, "event-export-project-role");
        *cached = Some(creds.clone());
        Ok(creds)
    }
}

impl ProvideCredentials for AssumeRoleCache {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert!(validate_template("arn:aws:iam::{account}:role/event-export-project-{project_id}").is_ok());
        assert!(validate_template("arn:aws:iam::1:role/fixed").is_err());
        assert!(validate_template("event-export-{project_id}").is_err());
        assert_eq!(session_name("187520"), "event-export-187520");
    }
}
