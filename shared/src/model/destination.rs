//! Where an export goes: an Amazon S3 bucket (or an S3-compatible store), an Azure Blob
//! container, or a local folder, with the credentials each needs. Validated with the
//! connection that holds it; opened by the adapters behind
//! [`crate::ports::DestinationOpener`].

use serde::{Deserialize, Serialize};

use crate::error::{ExportError, Result};
use crate::model::fields::{validate_http_url, validate_prefix};
use crate::model::secret::Secret;

/// How an Azure destination authenticates. The connection file keeps the fields flat
/// (`tenant_id`, `client_id`, `client_secret`, or `sas_token`); [`AzureAuth::from_fields`]
/// reads them into this enum, so the rules about which fields go together, and what a
/// usable secret looks like, exist once.
#[derive(Clone, PartialEq)]
pub enum AzureAuth {
    /// A Microsoft Entra ID service principal with a client secret.
    ServicePrincipal { tenant_id: String, client_id: String, client_secret: Secret },
    /// A SAS token (the query string, with or without the leading `?`).
    Sas { token: Secret },
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AzureAuth::ServicePrincipal { tenant_id, client_id, .. } => {
                f.debug_struct("ServicePrincipal").field("tenant_id", tenant_id).field("client_id", client_id).field("client_secret", &"[redacted]").finish()
            }
            AzureAuth::Sas { .. } => f.write_str("Sas([redacted])"),
        }
    }
}

impl AzureAuth {
    /// The credentials of an Azure destination's fields; `field` names the destination in errors.
    pub fn from_fields(
        field: &str,
        tenant_id: &Option<String>,
        client_id: &Option<String>,
        client_secret: &Option<Secret>,
        sas_token: &Option<Secret>,
    ) -> Result<Self> {
        let auth = match (tenant_id, client_id, client_secret, sas_token) {
            (Some(tenant_id), Some(client_id), Some(client_secret), _) => {
                AzureAuth::ServicePrincipal { tenant_id: tenant_id.clone(), client_id: client_id.clone(), client_secret: client_secret.clone() }
            }
            (None, None, None, Some(token)) => AzureAuth::Sas { token: token.clone() },
            (None, None, None, None) => {
                return Err(ExportError::invalid_config(
                    field,
                    "no credentials",
                    "Give tenant_id, client_id and client_secret of a service principal (or a sas_token).",
                ))
            }
            _ => {
                return Err(ExportError::invalid_config(
                    field,
                    "a service principal needs tenant_id, client_id and client_secret together",
                    "Give all three, or use sas_token instead.",
                ))
            }
        };
        auth.check(field)?;
        Ok(auth)
    }

    /// What a usable credential looks like: a non-empty secret, a SAS token with a signature.
    pub fn check(&self, field: &str) -> Result<()> {
        match self {
            AzureAuth::ServicePrincipal { tenant_id, client_id, client_secret } => {
                if tenant_id.trim().is_empty() || client_id.trim().is_empty() {
                    return Err(ExportError::invalid_config(
                        field,
                        "tenant_id and client_id must not be empty",
                        "Give the service principal's tenant and client ids.",
                    ));
                }
                if client_secret.is_empty() {
                    return Err(ExportError::invalid_config(format!("{field}.client_secret"), "is empty", "Give the service principal's secret value."));
                }
            }
            AzureAuth::Sas { token } => {
                if !token.expose().contains("sig=") {
                    return Err(ExportError::invalid_config(
                        format!("{field}.sas_token"),
                        "is not a SAS token (no sig= parameter)",
                        "Paste the SAS token's query string (sv=...&sig=...).",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The identity the storage account sees, for messages.
    pub fn principal(&self) -> String {
        match self {
            AzureAuth::ServicePrincipal { tenant_id, client_id, .. } => format!("service principal {client_id} (tenant {tenant_id})"),
            AzureAuth::Sas { .. } => "SAS token".into(),
        }
    }

    /// The secret to keep out of every message.
    pub fn secret(&self) -> &Secret {
        match self {
            AzureAuth::ServicePrincipal { client_secret, .. } => client_secret,
            AzureAuth::Sas { token } => token,
        }
    }
}

/// Where an export goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Destination {
    S3 {
        bucket: String,
        #[serde(default)]
        prefix: String,
        region: String,
        /// SSE-KMS key; every put then carries `aws:kms` and this key.
        #[serde(default)]
        kms_key_arn: Option<String>,
        /// An S3-compatible store (Cloudflare R2, MinIO, GCS's XML API, Backblaze, Ceph):
        /// its `https://` endpoint. No project role applies there: the access keys do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint_url: Option<String>,
        /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
        #[serde(default, skip_serializing_if = "is_false")]
        force_path_style: bool,
        /// Access key of an S3-compatible store (sealed like Azure secrets with its secret).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access_key_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_access_key: Option<Secret>,
    },
    Azure {
        /// `https://{account}.blob.core.windows.net` (or an emulator's URL).
        account_url: String,
        container: String,
        #[serde(default)]
        prefix: String,
        #[serde(default)]
        tenant_id: Option<String>,
        #[serde(default)]
        client_id: Option<String>,
        /// Service principal secret; encrypted with KMS in the control store.
        #[serde(default)]
        client_secret: Option<Secret>,
        /// Alternative to the service principal: a SAS token (query string, no `?`).
        #[serde(default)]
        sas_token: Option<Secret>,
    },
    /// A local folder (embedded mode).
    Local {
        path: String,
        #[serde(default)]
        prefix: String,
    },
}

impl Destination {
    /// An Amazon S3 destination, reached through the project role.
    pub fn aws_s3(bucket: impl Into<String>, prefix: impl Into<String>, region: impl Into<String>, kms_key_arn: Option<String>) -> Self {
        Destination::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: region.into(),
            kms_key_arn,
            endpoint_url: None,
            force_path_style: false,
            access_key_id: None,
            secret_access_key: None,
        }
    }

    /// An S3-compatible store at `endpoint_url`, written with its own access key (see
    /// [`Destination::S3`]); `region` is what the store expects (`auto` for R2 and GCS).
    pub fn s3_compatible(
        endpoint_url: impl Into<String>,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        region: impl Into<String>,
        force_path_style: bool,
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
    ) -> Self {
        Destination::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: region.into(),
            kms_key_arn: None,
            endpoint_url: Some(endpoint_url.into()),
            force_path_style,
            access_key_id: Some(access_key_id.into()),
            secret_access_key: Some(secret_access_key),
        }
    }

    pub fn prefix(&self) -> &str {
        match self {
            Destination::S3 { prefix, .. } | Destination::Azure { prefix, .. } | Destination::Local { prefix, .. } => prefix,
        }
    }

    /// The secrets a destination holds, by field name (sealed in the control store, opened
    /// to send them).
    pub fn secrets_mut(&mut self) -> Vec<(&'static str, &mut Secret)> {
        match self {
            Destination::Azure { client_secret, sas_token, .. } => {
                [("client_secret", client_secret), ("sas_token", sas_token)].into_iter().filter_map(|(name, s)| s.as_mut().map(|s| (name, s))).collect()
            }
            Destination::S3 { secret_access_key, .. } => secret_access_key.iter_mut().map(|s| ("secret_access_key", s)).collect(),
            Destination::Local { .. } => Vec::new(),
        }
    }

    /// `s3://bucket/prefix` (`https://endpoint/bucket/prefix` for an S3-compatible store),
    /// `azure://account/container/prefix`, `file:///path/prefix`.
    pub fn describe(&self) -> String {
        let with_prefix = |base: String, prefix: &str| {
            if prefix.is_empty() {
                base
            } else {
                format!("{base}/{}", prefix.trim_matches('/'))
            }
        };
        match self {
            Destination::S3 { bucket, prefix, endpoint_url: Some(endpoint), .. } => with_prefix(format!("{}/{bucket}", endpoint.trim_end_matches('/')), prefix),
            Destination::S3 { bucket, prefix, .. } => with_prefix(format!("s3://{bucket}"), prefix),
            Destination::Azure { account_url, container, prefix, .. } => with_prefix(format!("{}/{container}", account_url.trim_end_matches('/')), prefix),
            Destination::Local { path, prefix } => with_prefix(format!("file://{path}"), prefix),
        }
    }

    /// Checks the destination's fields; `field` names it in errors (`destination`).
    pub(crate) fn validate(&self, field: &str) -> Result<()> {
        validate_prefix(&format!("{field}.prefix"), self.prefix())?;
        match self {
            Destination::S3 { bucket, region, kms_key_arn, endpoint_url, force_path_style, access_key_id, secret_access_key, .. } => {
                validate_bucket_name(&format!("{field}.bucket"), bucket)?;
                validate_s3_compatible(
                    field,
                    endpoint_url.as_deref(),
                    *force_path_style,
                    access_key_id.as_deref(),
                    secret_access_key.as_ref(),
                    kms_key_arn.is_some(),
                )?;
                if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                    return Err(ExportError::invalid_config(
                        format!("{field}.region"),
                        format!("{region:?} is not an AWS region name"),
                        "Use the bucket's region, e.g. us-east-1.",
                    ));
                }
                if let Some(arn) = kms_key_arn {
                    // arn:PARTITION:kms:REGION:ACCOUNT:key/ID, or ...:alias/NAME (resolved to
                    // its key when the destination is probed; policies need the key ARN).
                    let parts: Vec<&str> = arn.splitn(6, ':').collect();
                    let named = |rest: &str, kind: &str| {
                        rest.strip_prefix(kind).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b)))
                    };
                    let ok = parts.len() == 6
                        && parts[0] == "arn"
                        && parts[1].starts_with("aws")
                        && parts[2] == "kms"
                        && !parts[3].is_empty()
                        && parts[3].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && parts[4].len() == 12
                        && parts[4].bytes().all(|b| b.is_ascii_digit())
                        && (named(parts[5], "key/") || named(parts[5], "alias/"));
                    if !ok {
                        return Err(ExportError::invalid_config(
                            format!("{field}.kms_key_arn"),
                            format!("{arn:?} is not a KMS key ARN"),
                            "Give the key's full ARN, e.g. arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab (a key id alone, or an alias name without its ARN, cannot be used).",
                        ));
                    }
                }
            }
            Destination::Azure { account_url, container, tenant_id, client_id, client_secret, sas_token, .. } => {
                let parsed = url::Url::parse(account_url).map_err(|e| {
                    ExportError::invalid_config(
                        format!("{field}.account_url"),
                        format!("{account_url:?} is not a URL ({e})"),
                        "Use https://{account}.blob.core.windows.net.",
                    )
                })?;
                if !matches!(parsed.scheme(), "https" | "http") || parsed.query().is_some() {
                    return Err(ExportError::invalid_config(
                        format!("{field}.account_url"),
                        "must be an http(s) URL without a query string",
                        "Put a SAS token in sas_token, not in the URL.",
                    ));
                }
                validate_container_name(&format!("{field}.container"), container)?;
                AzureAuth::from_fields(field, tenant_id, client_id, client_secret, sas_token)?;
            }
            Destination::Local { path, .. } => {
                if path.is_empty() {
                    return Err(ExportError::invalid_config(format!("{field}.path"), "is empty", "Give a folder path."));
                }
                if !path.starts_with('/') {
                    return Err(ExportError::invalid_config(
                        format!("{field}.path"),
                        format!("{path:?} is relative, so it would name a different folder from each working directory"),
                        "Give the folder's absolute path, e.g. /data/exports.",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The fields that only make sense together for an S3-compatible store.
fn validate_s3_compatible(field: &str, endpoint_url: Option<&str>, path_style: bool, key_id: Option<&str>, secret: Option<&Secret>, kms: bool) -> Result<()> {
    let Some(url) = endpoint_url else {
        if key_id.is_some() || secret.is_some() {
            return Err(ExportError::invalid_config(
                format!("{field}.access_key_id"),
                "access keys are for S3-compatible stores (with endpoint_url); Amazon S3 is written through the project's IAM role",
                "Remove access_key_id and secret_access_key, and grant the project role access (see `exportctl policy`).",
            ));
        }
        if path_style {
            return Err(ExportError::invalid_config(
                format!("{field}.force_path_style"),
                "applies only with endpoint_url",
                "Remove force_path_style for Amazon S3, or give the store's endpoint_url.",
            ));
        }
        return Ok(());
    };
    validate_http_url(&format!("{field}.endpoint_url"), url)?;
    let parsed = url::Url::parse(url).expect("checked above");
    if !matches!(parsed.path(), "" | "/") {
        return Err(ExportError::invalid_config(
            format!("{field}.endpoint_url"),
            format!("{url:?} has a path; the bucket goes in `bucket`, folders in `prefix`"),
            "Give only the endpoint, e.g. https://<account>.r2.cloudflarestorage.com.",
        ));
    }
    if kms {
        return Err(ExportError::invalid_config(
            format!("{field}.kms_key_arn"),
            "SSE-KMS uses AWS KMS, which an S3-compatible store cannot call",
            "Remove kms_key_arn; use the store's own encryption at rest.",
        ));
    }
    if let Some(id) = key_id {
        if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b)) {
            return Err(ExportError::invalid_config(
                format!("{field}.access_key_id"),
                "is not an access key id (letters, digits and + / = _ - only, at most 128)",
                "Paste the access key id exactly as the store shows it.",
            ));
        }
    }
    match (key_id, secret) {
        (Some(id), Some(secret)) if !id.trim().is_empty() && !secret.is_empty() => Ok(()),
        _ => Err(ExportError::invalid_config(
            format!("{field}.access_key_id"),
            "an S3-compatible store needs access_key_id and secret_access_key (no IAM role applies there)",
            "Create an access key with write access to the bucket in the store's console and give both fields.",
        )),
    }
}

fn validate_bucket_name(field: &str, name: &str) -> Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..");
    if !ok {
        return Err(ExportError::invalid_config(
            field,
            format!("{name:?} is not a valid S3 bucket name"),
            "Bucket names are 3-63 lowercase letters, digits, '-' or '.'.",
        ));
    }
    Ok(())
}

fn validate_container_name(field: &str, name: &str) -> Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && !name.contains("--")
        && !name.ends_with('-');
    if !ok {
        return Err(ExportError::invalid_config(
            field,
            format!("{name:?} is not a valid container name"),
            "Container names are 3-63 lowercase letters, digits or single '-'.",
        ));
    }
    Ok(())
}
