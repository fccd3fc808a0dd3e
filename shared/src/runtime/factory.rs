//! From a connection's destination to a store and a probe suite: the one place that
//! knows which adapter serves which destination type. Clients are built from a
//! [`CloudContext`] made once per process.

use std::sync::Arc;

use async_trait::async_trait;

use crate::access::policy::{is_alias_arn, resolve_kms_key};
use crate::access::probe::{round_trip, RoundTripChecks};
use crate::adapters::aws::compatible::{check_endpoint, compatible_probe, compatible_store};
use crate::adapters::aws::context::{AwsContext, AwsTimeouts, ProjectIdentity};
use crate::adapters::aws::kms_keys::KmsKeyResolver;
use crate::adapters::aws::probe::S3Probe;
use crate::adapters::aws::s3::S3Store;
use crate::adapters::azure::store::{AzureOptions, AzureStore};
use crate::adapters::local::store::LocalStore;
use crate::error::{ExportError, Result};
use crate::model::destination::Destination;
use crate::model::probe_report::{ProbeReport, ProbeResult};
use crate::ports::AccessProbe;
use crate::ports::ObjectStore;

/// Cloud clients and settings shared by every connection in this process.
#[derive(Clone, Debug, Default)]
pub struct CloudContext {
    /// `None` in embedded mode without `--cloud`: Amazon S3 destinations are then refused
    /// at admission, naming `--cloud` (S3-compatible stores need no AWS account and still
    /// work; Azure destinations carry their own credentials and work with the default
    /// Azure settings).
    pub aws: Option<AwsContext>,
    pub azure: AzureOptions,
    /// Local-folder destinations are served (embedded mode). Off in the deployed
    /// functions: they would write to the function's temporary disk and mark hours done.
    pub local_folders: bool,
}

impl CloudContext {
    /// AWS from the standard environment (plus `EXPORT_PROJECT_ROLE_ARN_TEMPLATE`),
    /// Azure options from theirs.
    pub async fn from_env() -> Result<Self> {
        Ok(CloudContext { aws: Some(AwsContext::from_env().await?), azure: AzureOptions::from_env()?, local_folders: false })
    }

    /// No cloud at all (embedded mode): only local destinations work.
    pub fn local_only() -> Self {
        CloudContext { local_folders: true, ..CloudContext::default() }
    }

    /// Serves local-folder destinations too (embedded mode with cloud credentials).
    pub fn with_local_folders(mut self) -> Self {
        self.local_folders = true;
        self
    }

    /// Refuses a destination this process must not write to, before any request.
    pub fn admit(&self, dest: &Destination) -> Result<()> {
        match dest {
            Destination::Local { .. } if !self.local_folders => Err(ExportError::invalid_config(
                "destination.type",
                "local folders are served only in embedded mode; a deployed function would write to its own temporary disk and mark the hours exported",
                "Use an S3 or Azure destination, or run this connection with exportctl in embedded mode.",
            )),
            // The operator's emulator setting is read once, with the Azure endpoint rules
            // (EXPORT_ALLOW_EMULATOR_ENDPOINTS): one switch for every emulator.
            Destination::S3 { endpoint_url: Some(endpoint), .. } => check_endpoint(endpoint, &self.azure.endpoints),
            // Before any probe: nothing is missing on the bucket's side, this process cannot
            // reach Amazon S3 at all.
            Destination::S3 { .. } if self.aws.is_none() => Err(no_aws()),
            Destination::Azure { account_url, .. } => {
                let url = url::Url::parse(account_url.trim_end_matches('/')).map_err(|e| {
                    ExportError::invalid_config("destination.account_url", format!("is not a URL ({e})"), "Use https://{account}.blob.core.windows.net.")
                })?;
                self.azure.endpoints.check(&url)
            }
            _ => Ok(()),
        }
    }

    /// Limits for clients made without the AWS context (S3-compatible stores): the
    /// context's when there is one, so both kinds of S3 destination behave alike.
    fn timeouts(&self) -> aws_config::timeout::TimeoutConfig {
        self.aws.as_ref().map(AwsContext::timeout_config).unwrap_or_else(|| AwsTimeouts::default().config())
    }

    fn aws(&self) -> Result<&AwsContext> {
        self.aws.as_ref().ok_or_else(no_aws)
    }
}

/// Amazon S3 without an AWS context: only embedded mode without `--cloud` has none (the
/// functions always read their environment's credentials).
fn no_aws() -> ExportError {
    ExportError::invalid_config(
        "destination.type",
        "this connection's destination is Amazon S3, and exportctl without --cloud reads no AWS credentials (it serves local folders and S3-compatible stores only)",
        "Run exportctl with --cloud and the environment's AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; AWS_REGION; EXPORT_PROJECT_ROLE_ARN_TEMPLATE when exports run as a project role).",
    )
}

/// The store a connection's destination is written through. For S3 the calls run as the
/// project role (AssumeRole happens here, so a refused role is reported before any write).
pub async fn open_store(dest: &Destination, project_id: &str, ctx: &CloudContext) -> Result<Arc<dyn ObjectStore>> {
    ctx.admit(dest)?;
    match dest {
        // Its own endpoint and access key: no project role, no AWS account needed.
        Destination::S3 { endpoint_url: Some(_), .. } => Ok(Arc::new(compatible_store(dest, ctx.timeouts(), ctx.azure.endpoints.allow_emulators)?)),
        Destination::S3 { bucket, region, kms_key_arn, .. } => {
            let aws = ctx.aws()?;
            let identity = aws.project_identity(project_id).await?;
            aws.resolve(&identity).await?;
            let store =
                S3Store::new(aws.s3_client(region, &identity), bucket.clone()).with_kms_key(kms_key_arn.clone()).with_principal(identity.principal.clone());
            Ok(Arc::new(store))
        }
        // Built by the Azure adapter's own constructor (service principal or SAS).
        Destination::Azure { .. } => Ok(Arc::new(AzureStore::from_destination(dest, ctx.azure.clone())?)),
        Destination::Local { path, .. } => Ok(Arc::new(LocalStore::existing(path)?)),
    }
}

#[async_trait]
impl crate::ports::DestinationOpener for CloudContext {
    async fn open(&self, dest: &Destination, project_id: &str) -> Result<Arc<dyn ObjectStore>> {
        open_store(dest, project_id, self).await
    }
}

/// Runs the destination's probe suite as the identity exports run as. Never fails as a
/// whole: a problem building clients is itself a failed probe.
pub async fn probe_destination(dest: &Destination, project_id: &str, ctx: &CloudContext) -> ProbeReport {
    if let Err(e) = ctx.admit(dest) {
        // Not a permission the destination lacks: what this process must be run with.
        let need = if matches!(dest, Destination::S3 { endpoint_url: None, .. }) && ctx.aws.is_none() {
            "exportctl --cloud with AWS credentials"
        } else {
            "a destination this deployment may write to"
        };
        return single_failure(dest, None, "destination admitted", need, &e);
    }
    match dest {
        Destination::S3 { endpoint_url: Some(_), .. } => match compatible_probe(dest, ctx.timeouts(), ctx.azure.endpoints.allow_emulators) {
            Ok(probe) => probe.probe().await,
            Err(e) => single_failure(dest, None, "S3-compatible client configured", "valid endpoint and access key settings", &e),
        },
        Destination::S3 { bucket, prefix, region, kms_key_arn, .. } => {
            let aws = match ctx.aws() {
                Ok(a) => a,
                Err(e) => return single_failure(dest, None, "aws configured", "AWS credentials", &e),
            };
            let identity = match aws.project_identity(project_id).await {
                Ok(i) => i,
                Err(e) => return single_failure(dest, None, "project role", cause_or(&e, "sts:GetCallerIdentity"), &e),
            };
            // With a project role, assuming it is the first check: nothing else can run
            // without it, and a refusal there is fixed in the role's trust policy.
            let mut preamble = Vec::new();
            if let Some(role) = &identity.principal {
                let check = "assume project role";
                match aws.resolve(&identity).await {
                    Ok(_) => preamble.push(ProbeResult::pass(check, "sts:AssumeRole")),
                    Err(e) => {
                        tracing::warn!(role = %role, error = %e, "could not assume the project role");
                        preamble.push(ProbeResult::fail(check, cause_or(&e, "sts:AssumeRole"), &e));
                    }
                }
            }
            // A key named by an alias is probed as the key it names (DescribeKey with the
            // exporter's own credentials): policies must name the key ARN. One that cannot
            // be resolved is a failed check telling the user to give the key ARN; the other
            // checks still run with the alias, so a diagnosis loses nothing.
            let (key, alias_check) = match kms_key_arn.as_deref().filter(|k| is_alias_arn(k)) {
                None => (kms_key_arn.clone(), None),
                Some(alias) => {
                    let resolver = KmsKeyResolver::new(aws.kms_client(key_region(alias).unwrap_or(region), &ProjectIdentity::base()));
                    match resolve_kms_key(dest, "destination", &resolver).await {
                        Ok(Destination::S3 { kms_key_arn: resolved, .. }) => (resolved, Some(ProbeResult::pass(ALIAS_CHECK, "kms:DescribeKey"))),
                        Ok(_) => (kms_key_arn.clone(), None),
                        Err(e) => (kms_key_arn.clone(), Some(ProbeResult::fail(ALIAS_CHECK, "kms_key_arn as a key ARN (the alias could not be resolved)", &e))),
                    }
                }
            };
            let probe = S3Probe::new(aws.s3_client(region, &identity), bucket, prefix, key.as_deref(), identity.principal.clone()).with_preamble(preamble);
            let mut report = probe.probe().await;
            report.results.extend(alias_check);
            report
        }
        // The Azure adapter's suite: token (or SAS expiry), container exists, write, read,
        // list, delete. A destination that cannot even be configured is one failed check.
        Destination::Azure { .. } => match crate::adapters::azure::probe::AzureProbe::from_destination(dest, ctx.azure.clone()) {
            Ok(probe) => probe.probe().await,
            Err(e) => single_failure(dest, None, "azure client configured", "valid Azure destination settings", &e),
        },
        Destination::Local { path, prefix } => match LocalStore::existing(path) {
            Ok(store) => LocalProbe { store, destination: dest.describe(), prefix: prefix.clone() }.probe().await,
            Err(e) => single_failure(dest, None, "folder exists", "an existing folder (create it first)", &e),
        },
    }
}

/// What a failed check names: rejected credentials as such, else the permission it needs.
fn cause_or<'a>(err: &ExportError, permission: &'a str) -> &'a str {
    match err {
        ExportError::BadCredentials { .. } => "valid credentials",
        _ => permission,
    }
}

/// The probe result of resolving a KMS alias to its key.
const ALIAS_CHECK: &str = "resolve KMS key alias";

/// The region in a KMS key ARN (`arn:aws:kms:REGION:ACCOUNT:key/ID`).
fn key_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

fn single_failure(dest: &Destination, principal: Option<String>, check: &str, permission: &str, err: &ExportError) -> ProbeReport {
    ProbeReport { destination: dest.describe(), principal, results: vec![ProbeResult::fail(check, permission, err)] }
}

/// Embedded-mode probe: the shared round trip on the local folder.
struct LocalProbe {
    store: LocalStore,
    destination: String,
    prefix: String,
}

const LOCAL_ROUND_TRIP: RoundTripChecks = RoundTripChecks {
    write: ("write probe file", "file system write"),
    read: ("read probe file", "file system read"),
    list: ("list under prefix", "file system list"),
    delete: ("delete probe file", "file system delete"),
    read_answers_without_object: false,
};

#[async_trait]
impl AccessProbe for LocalProbe {
    async fn probe(&self) -> ProbeReport {
        let results = round_trip(&self.store, &self.prefix, &LOCAL_ROUND_TRIP).await.results(&LOCAL_ROUND_TRIP, ProbeResult::fail);
        ProbeReport { destination: self.destination.clone(), principal: None, results }
    }
}

/// Opens one of the exporter's own buckets (lake, control store) with base credentials.
pub fn open_own_bucket(ctx: &CloudContext, bucket: &str, region: &str) -> Result<Arc<dyn ObjectStore>> {
    Ok(Arc::new(ctx.aws()?.own_bucket(bucket, region)))
}

/// The role ARN exports of `project_id` run as, if a role template is configured
/// (for `exportctl policy` and the emails' policy statements).
pub async fn project_principal(project_id: &str, ctx: &CloudContext) -> Result<Option<String>> {
    match &ctx.aws {
        Some(aws) => aws.project_role_arn(project_id).await,
        None => Ok(None),
    }
}
