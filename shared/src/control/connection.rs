//! Connections: one project → one destination (or two: events and merged IDs apart).
//! Validated once when loaded, so everything downstream can trust them.

use serde::{Deserialize, Serialize};

use crate::control::secret::Secret;
use crate::error::{ExportError, Result};
use crate::export::filter::Filter;
use crate::export::format::PartFormat;
use crate::export::layout::LayoutKind;
use crate::export::timestamp::TimestampFormat;
use crate::hour::UtcHour;

/// Kind of Amplitude project; portfolio projects aggregate others and are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProjectKind {
    #[default]
    Standard,
    Portfolio,
}

/// Which data a connection exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataKinds {
    #[serde(default = "yes")]
    pub events: bool,
    #[serde(default = "yes")]
    pub merged_ids: bool,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Default for DataKinds {
    fn default() -> Self {
        DataKinds { events: true, merged_ids: true }
    }
}

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

    /// The key of the claim an organisation holds on this destination's bucket, container
    /// or folder: the same for every spelling of one place (see [`crate::control::claim`]).
    pub fn claim_id(&self) -> String {
        crate::control::claim::claim_id(self)
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

    fn validate(&self, field: &str) -> Result<()> {
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

/// A connection's webhook for "Hour Exported" events: each POST carries an HMAC-SHA256
/// signature made with `secret`, so the receiver knows the event is ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    pub secret: Secret,
}

/// A connection as stored in the control store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    #[serde(default)]
    pub project_kind: ProjectKind,
    #[serde(default)]
    pub export: DataKinds,
    /// Filter conditions (see [`Filter`]); validated when the connection is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    pub destination: Destination,
    /// Optional separate destination for merged IDs; defaults to `destination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_ids_destination: Option<Destination>,
    #[serde(default)]
    pub admins: Vec<String>,
    pub creator: String,
    #[serde(default = "yes")]
    pub complete_markers: bool,
    /// `amplitude` (`2020-11-24 09:59:55.977000`, the default) or `iso8601` (`...T...`).
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// Event parts as `json` (gzipped JSON lines, the default) or `parquet`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub format: PartFormat,
    /// `amplitude` (flat, the default) or `hive` (`dt=yyyy-MM-dd/hour=HH/` folders).
    #[serde(default, skip_serializing_if = "is_default")]
    pub layout: LayoutKind,
    /// Where an "Hour Exported" event is also POSTed, signed with the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// A Slack-compatible incoming-webhook URL that failure notices are posted to as text.
    /// The URL is its own credential, so it is sealed like a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_webhook: Option<Secret>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// RFC 3339 creation time; set by the control store when absent.
    #[serde(default)]
    pub created: Option<String>,
    /// The first hour owed when it is earlier than the creation day: the hour where the
    /// previous connection on the same place (same organisation and project), disabled or
    /// deleted less than 24 hours before this one was created, stopped. Set by the control
    /// store at create; whatever a connection file says here is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owes_from: Option<UtcHour>,
}

impl Connection {
    /// Parses and validates a connection document, naming the first bad field.
    pub fn from_json(text: &str) -> Result<Self> {
        let conn: Connection = serde_json::from_str(text).map_err(|e| {
            ExportError::invalid_config("connection", format!("not a valid connection document: {e}"), "See README: Connections for the fields.")
        })?;
        conn.validate()?;
        Ok(conn)
    }

    /// Checks every rule a connection must meet before it can be stored or run.
    pub fn validate(&self) -> Result<()> {
        validate_id("id", &self.id)?;
        validate_numeric_id("org_id", &self.org_id)?;
        validate_numeric_id("project_id", &self.project_id)?;
        if self.project_kind == ProjectKind::Portfolio {
            return Err(ExportError::invalid_config(
                "project_kind",
                format!("project {} is a portfolio project, which cannot be exported", self.project_id),
                "Connect each of the portfolio's source projects instead.",
            ));
        }
        if !self.export.events && !self.export.merged_ids {
            return Err(ExportError::invalid_config("export", "exports neither events nor merged_ids", "Enable at least one."));
        }
        self.destination.validate("destination")?;
        if let Some(d) = &self.merged_ids_destination {
            d.validate("merged_ids_destination")?;
        }
        if let Some(f) = &self.filter {
            Filter::parse(f)?;
        }
        for (i, email) in self.admins.iter().enumerate() {
            validate_email(&format!("admins[{i}]"), email)?;
        }
        validate_email("creator", &self.creator)?;
        if let Some(hook) = &self.webhook {
            validate_http_url("webhook.url", &hook.url)?;
            if hook.secret.expose().len() < 16 {
                return Err(ExportError::invalid_config(
                    "webhook.secret",
                    "is shorter than 16 characters",
                    "Give a random secret of at least 16 characters (e.g. `openssl rand -hex 32`); the receiver checks each POST's signature with it.",
                ));
            }
        }
        if let Some(url) = &self.failure_webhook {
            validate_http_url("failure_webhook", url.expose())?;
        }
        Ok(())
    }

    /// The rules a new connection must meet beyond [`Connection::validate`]: someone to tell.
    /// Stored connections from earlier releases without admins still load (their creator
    /// is told); new ones are refused.
    pub fn validate_new(&self) -> Result<()> {
        self.validate()?;
        if self.admins.is_empty() {
            return Err(ExportError::invalid_config(
                "admins",
                "lists nobody: a connection needs at least one administrator, who is emailed when its destination fails",
                "Add the address of at least one administrator, e.g. \"admins\": [\"data-team@example.com\"].",
            ));
        }
        Ok(())
    }

    pub fn compiled_filter(&self) -> Result<Option<Filter>> {
        self.filter.as_ref().map(Filter::parse).transpose()
    }

    /// Every secret the connection holds, by field path (`destination.sas_token`,
    /// `webhook.secret`, ...): sealed in the control store, opened to use them.
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut Secret)> {
        let mut out = Vec::new();
        let destinations =
            std::iter::once(("destination", &mut self.destination)).chain(self.merged_ids_destination.iter_mut().map(|d| ("merged_ids_destination", d)));
        for (field, dest) in destinations {
            out.extend(dest.secrets_mut().into_iter().map(|(name, s)| (format!("{field}.{name}"), s)));
        }
        if let Some(hook) = &mut self.webhook {
            out.push(("webhook.secret".to_string(), &mut hook.secret));
        }
        if let Some(url) = &mut self.failure_webhook {
            out.push(("failure_webhook".to_string(), url));
        }
        out
    }

    pub fn merged_ids_destination(&self) -> &Destination {
        self.merged_ids_destination.as_ref().unwrap_or(&self.destination)
    }

    /// Admins and creator, without repeats: who is told when the destination breaks.
    pub fn recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.admins.iter().chain(std::iter::once(&self.creator)) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(e)) {
                out.push(e.clone());
            }
        }
        out
    }
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

/// An http(s) URL with a host and no credentials in it.
fn validate_http_url(field: &str, url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| ExportError::invalid_config(field, format!("is not a URL ({e})"), "Give an https:// URL."))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ExportError::invalid_config(field, format!("{} is not an http(s) URL with a host", parsed.scheme()), "Give an https:// URL."));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return Err(ExportError::invalid_config(field, "has user info or a fragment", "Give the URL without user:password@ or #fragment."));
    }
    Ok(())
}

fn validate_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ExportError::invalid_config(field, format!("{id:?} is not a valid id"), "Use 1-64 letters, digits, '-' or '_'."));
    }
    Ok(())
}

/// A numeric Amplitude id (project or organisation).
pub(crate) fn validate_numeric_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExportError::invalid_config(field, format!("{id:?} is not a numeric id"), "Use the numeric id from the project's settings."));
    }
    Ok(())
}

/// One mailbox address, as SES sends to it: `local@domain`, nothing around it.
///
/// The local part is a dot-atom (RFC 5322 `atext`: letters, digits and
/// ``!#$%&'*+/=?^_`{|}~-``, dots only between them, at most 64 characters); quoted local
/// parts are refused. The domain is dot-separated labels of ASCII letters, digits and
/// hyphens (no hyphen first or last, at most 63 characters each; international domains
/// in their `xn--` form) ending in an alphabetic TLD. At most 254 characters in all.
/// Display names (`Name <a@b.com>`), lists, whitespace and control characters are refused:
/// an address goes into SES's destination and the `.eml` headers as is.
fn validate_email(field: &str, email: &str) -> Result<()> {
    let refuse = |why: &str| {
        ExportError::invalid_config(
            field,
            format!("{email:?} is not a single email address ({why})"),
            "Give one plain address per entry, like name@example.com: no display name, quotes, list or spaces.",
        )
    };
    if email.is_empty() {
        return Err(refuse("it is empty"));
    }
    if email.chars().any(char::is_control) {
        return Err(refuse("it contains a line break or another control character"));
    }
    if email.contains([',', ';']) {
        return Err(refuse("it is a list: give each address as its own entry"));
    }
    if email.contains(['<', '>']) {
        return Err(refuse("it has angle brackets: give the bare address without a display name"));
    }
    if email.contains('"') {
        return Err(refuse("quoted local parts are not accepted"));
    }
    if email.contains(char::is_whitespace) {
        return Err(refuse("it contains a space"));
    }
    if email.len() > 254 {
        return Err(refuse("it is longer than 254 characters"));
    }
    let (local, domain) = match email.split('@').collect::<Vec<_>>()[..] {
        [local, domain] => (local, domain),
        [_] => return Err(refuse("it has no '@'")),
        _ => return Err(refuse("it has more than one '@'")),
    };
    if local.is_empty() {
        return Err(refuse("nothing before the '@'"));
    }
    if local.len() > 64 {
        return Err(refuse("the part before the '@' is longer than 64 characters"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(refuse("the part before the '@' starts or ends with a dot, or has two dots in a row"));
    }
    if let Some(c) = local.chars().find(|c| !(c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-.".contains(*c))) {
        return Err(refuse(&format!("{c:?} is not allowed before the '@'")));
    }
    if domain.is_empty() {
        return Err(refuse("nothing after the '@'"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(refuse("the domain has no top-level domain, like .com"));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(refuse("the domain starts or ends with a dot, or has two dots in a row"));
        }
        if label.len() > 63 {
            return Err(refuse("a domain label is longer than 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(refuse("the domain may hold only letters, digits, hyphens and dots (international domains in their xn-- form)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(refuse("a domain label starts or ends with a hyphen"));
        }
    }
    let tld = labels[labels.len() - 1];
    if tld.len() < 2 || !(tld.bytes().all(|b| b.is_ascii_alphabetic()) || tld.starts_with("xn--")) {
        return Err(refuse(&format!("{tld:?} is not a top-level domain")));
    }
    Ok(())
}

/// A prefix is a relative path: no leading `/`, no `.`/`..` or empty segments, no
/// backslash or control characters, and not too long for S3 keys.
pub fn validate_prefix(field: &str, prefix: &str) -> Result<()> {
    let bad = |problem: String| ExportError::invalid_config(field, problem, "Use a relative folder like exports/amplitude (letters, digits, - _ . / only).");
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') {
        return Err(bad(format!("{prefix:?} starts with '/'")));
    }
    if prefix.len() > 512 {
        return Err(bad("is longer than 512 characters".into()));
    }
    if prefix.chars().any(|c| c.is_control() || c == '\\' || c == '#' || c == '?') {
        return Err(bad(format!("{prefix:?} contains a control character, backslash, '#' or '?'")));
    }
    for seg in prefix.trim_end_matches('/').split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad(format!("{prefix:?} has an empty, '.' or '..' segment")));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn azure_credentials_are_read_and_checked_once() {
        let secret = Some(Secret::new("s3cret"));
        let sas = Some(Secret::new("sv=2024-01-01&sp=rwdl&sig=abc"));
        let sp = AzureAuth::from_fields("destination", &some("t"), &some("c"), &secret, &None).unwrap();
        assert_eq!(sp.principal(), "service principal c (tenant t)");
        assert!(!format!("{sp:?}").contains("s3cret"));
        // A complete service principal wins over a SAS token given as well.
        assert!(matches!(AzureAuth::from_fields("d", &some("t"), &some("c"), &secret, &sas).unwrap(), AzureAuth::ServicePrincipal { .. }));
        assert!(matches!(AzureAuth::from_fields("d", &None, &None, &None, &sas).unwrap(), AzureAuth::Sas { .. }));

        let refused = |e: ExportError| e.to_string();
        assert!(refused(AzureAuth::from_fields("d", &some("t"), &None, &secret, &sas).unwrap_err()).contains("together"));
        assert!(refused(AzureAuth::from_fields("d", &None, &None, &None, &None).unwrap_err()).contains("no credentials"));
        assert!(refused(AzureAuth::from_fields("d", &some("t"), &some("c"), &Some(Secret::new("")), &None).unwrap_err()).contains("client_secret"));
        let unsigned = AzureAuth::from_fields("d", &None, &None, &None, &Some(Secret::new("sv=2024-01-01&sp=r"))).unwrap_err();
        assert!(refused(unsigned).contains("d.sas_token"));
    }

    #[test]
    fn email_addresses_are_single_plain_mailboxes() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", ["b", "c", "d", "e", "f"].map(|c| c.repeat(60)).join("."));
        let long_label = format!("a@{}.com", "b".repeat(64));
        let bad: Vec<(&str, &str)> = vec![
            ("a@b.com, evil@x.com", "list"),
            ("a@b.com,evil@x.com", "list"),
            ("a@b.com;evil@x.com", "list"),
            ("Name <a@b.com>", "angle brackets"),
            ("<a@b.com>", "angle brackets"),
            ("\"a b\"@c.com", "quoted"),
            ("\"a\"@c.com", "quoted"),
            ("a@b.com\r\nBcc: x@y.com", "control character"),
            ("a@b.com\nBcc: x@y.com", "control character"),
            ("a@b.com\u{0}", "control character"),
            ("a\t@b.com", "control character"),
            ("a b@c.com", "space"),
            ("a..b@c.com", "two dots"),
            (".a@b.com", "starts or ends with a dot"),
            ("a.@b.com", "starts or ends with a dot"),
            ("a@b..com", "two dots in a row"),
            ("a@.b.com", "starts or ends with a dot"),
            ("a@b.com.", "starts or ends with a dot"),
            ("a@-b.com", "hyphen"),
            ("a@b-.com", "hyphen"),
            ("a@localhost", "no top-level domain"),
            ("a@b.c", "not a top-level domain"),
            ("a@b.c0m", "not a top-level domain"),
            ("a@b_c.com", "only letters, digits, hyphens"),
            ("a@[127.0.0.1]", "only letters, digits, hyphens"),
            ("a@bücher.de", "xn--"),
            ("jörg@b.com", "not allowed before"),
            ("a(b)@c.com", "not allowed before"),
            ("", "empty"),
            ("a", "no '@'"),
            ("a@b@c.com", "more than one '@'"),
            ("@b.com", "nothing before"),
            ("a@", "nothing after"),
            (&long_local, "64"),
            (&long_total, "254"),
            (&long_label, "63"),
        ];
        for (email, why) in &bad {
            let err = validate_email("admins[1]", email).expect_err(&format!("{email:?} must be refused"));
            let text = err.to_string();
            assert!(text.starts_with(&format!("invalid configuration: admins[1]: {email:?} is not a single email address (")), "{email:?}: {text}");
            assert!(text.contains(why), "{email:?} should be refused for {why:?}: {text}");
            assert!(text.contains("name@example.com"), "the fix is named: {text}");
            assert!(!text.contains('\r') && !text.contains('\n'), "the message never carries the raw line break: {text:?}");
        }
        let good = [
            "a@b.co",
            "first.last@example.com",
            "o'brien+exports@mail.example.co.uk",
            "ops-team_1@sub-domain.example.io",
            "x@xn--bcher-kva.de",
            "a@b.xn--p1ai",
            "UPPER@EXAMPLE.COM",
        ];
        for email in good {
            validate_email("creator", email).unwrap_or_else(|e| panic!("{email:?} is a valid address: {e}"));
        }
        let max_local = format!("{}@example.com", "a".repeat(64));
        validate_email("creator", &max_local).unwrap();
    }

    #[test]
    fn a_connection_naming_a_bad_admin_or_creator_is_refused_with_the_field() {
        let doc = |admins: &str, creator: &str| {
            format!(
                r#"{{"id":"c1","org_id":"42","project_id":"187520","destination":{{"type":"local","path":"/tmp/x"}},"admins":{admins},"creator":{creator}}}"#
            )
        };
        let err = Connection::from_json(&doc(r#"["ok@example.com", "a@b.com, evil@x.com"]"#, r#""c@example.com""#)).unwrap_err();
        assert!(err.to_string().contains(r#"admins[1]: "a@b.com, evil@x.com" is not a single email address"#), "{err}");
        let err = Connection::from_json(&doc("[]", r#""Creator <c@example.com>""#)).unwrap_err();
        assert!(err.to_string().contains(r#"creator: "Creator <c@example.com>" is not a single email address"#), "{err}");
        assert!(Connection::from_json(&doc(r#"["ok@example.com"]"#, r#""c@example.com""#)).is_ok());
    }

    #[test]
    fn kms_key_arns_are_key_or_alias_arns() {
        let s3 = |key: &str| Destination::aws_s3("acme-events", "", "us-east-1", Some(key.into()));
        for good in [
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:alias/exports",
            "arn:aws:kms:us-east-1:111122223333:alias/team/exports_1",
        ] {
            s3(good).validate("destination").unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/exports",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms::111122223333:key/k",
            "arn:aws:kms:us-east-1:1111:key/k",
            "arn:aws:s3:us-east-1:111122223333:key/k",
            "arn:aws:kms:us-east-1:111122223333:keys/k",
            "arn:aws:kms:us-east-1:111122223333:key/k:alias/x",
            "arn:aws:kms:us-east-1:111122223333:key/k\n",
        ] {
            let err = s3(bad).validate("destination").expect_err(bad).to_string();
            assert!(err.contains("destination.kms_key_arn") && err.contains("is not a KMS key ARN") && err.contains("Give the key's full ARN"), "{bad}: {err}");
        }
    }
}
