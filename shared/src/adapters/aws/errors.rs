//! The one place where AWS SDK errors (S3, KMS, STS) become [`ExportError`]s.
//!
//! Operators act on the class of an error, so this module decides it: a refused request
//! becomes an accessibility error naming the IAM action that is missing (mapped from the
//! operation, or read from the service's message when AWS names a KMS action), rejected
//! credentials and missing buckets are named as such, and throttling, 5xx, timeouts and
//! connection failures are transient.
//!
//! On an S3-compatible store (a connection's `endpoint_url`) every such error also names the
//! endpoint and the access key id (never the secret) and says what to check on that store;
//! there, a refused connection or an unknown host is the destination being unreachable
//! (an accessibility error, emailed after the retries), not a hiccup of AWS.

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::http_errors::{error_chain_text, find_in_chain, is_transient_status, json_field, xml_tag};
use crate::error::ExportError;

/// An AWS operation the exporter performs, with the IAM action it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsOp {
    PutObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    GetObject,
    HeadObject,
    ListObjects,
    DeleteObject,
    GetBucketLocation,
    HeadBucket,
    KmsGenerateDataKey,
    KmsDecrypt,
    StsAssumeRole,
    StsGetCallerIdentity,
}

impl AwsOp {
    /// The API name, as AWS documents and logs it.
    pub fn name(self) -> &'static str {
        match self {
            AwsOp::PutObject => "PutObject",
            AwsOp::CreateMultipartUpload => "CreateMultipartUpload",
            AwsOp::UploadPart => "UploadPart",
            AwsOp::CompleteMultipartUpload => "CompleteMultipartUpload",
            AwsOp::AbortMultipartUpload => "AbortMultipartUpload",
            AwsOp::GetObject => "GetObject",
            AwsOp::HeadObject => "HeadObject",
            AwsOp::ListObjects => "ListObjectsV2",
            AwsOp::DeleteObject => "DeleteObject",
            AwsOp::GetBucketLocation => "GetBucketLocation",
            AwsOp::HeadBucket => "HeadBucket",
            AwsOp::KmsGenerateDataKey => "GenerateDataKey",
            AwsOp::KmsDecrypt => "Decrypt",
            AwsOp::StsAssumeRole => "AssumeRole",
            AwsOp::StsGetCallerIdentity => "GetCallerIdentity",
        }
    }

    /// The IAM action an identity needs for this operation (AWS's service authorization
    /// reference: multipart parts and completion are authorised as `s3:PutObject`,
    /// HeadObject as `s3:GetObject`, HeadBucket as `s3:ListBucket`).
    pub fn permission(self) -> &'static str {
        match self {
            AwsOp::PutObject | AwsOp::CreateMultipartUpload | AwsOp::UploadPart | AwsOp::CompleteMultipartUpload => "s3:PutObject",
            AwsOp::AbortMultipartUpload => "s3:AbortMultipartUpload",
            AwsOp::GetObject | AwsOp::HeadObject => "s3:GetObject",
            AwsOp::ListObjects | AwsOp::HeadBucket => "s3:ListBucket",
            AwsOp::DeleteObject => "s3:DeleteObject",
            AwsOp::GetBucketLocation => "s3:GetBucketLocation",
            AwsOp::KmsGenerateDataKey => "kms:GenerateDataKey",
            AwsOp::KmsDecrypt => "kms:Decrypt",
            AwsOp::StsAssumeRole => "sts:AssumeRole",
            AwsOp::StsGetCallerIdentity => "sts:GetCallerIdentity",
        }
    }

    /// The KMS action S3 needs on the bucket's key for this operation when SSE-KMS is on:
    /// writing generates a data key, reading (and completing a multipart upload) decrypts one.
    fn kms_permission(self) -> &'static str {
        match self {
            AwsOp::GetObject | AwsOp::HeadObject | AwsOp::CompleteMultipartUpload | AwsOp::UploadPart | AwsOp::KmsDecrypt => "kms:Decrypt",
            _ => "kms:GenerateDataKey",
        }
    }

    fn service(self) -> &'static str {
        match self {
            AwsOp::KmsGenerateDataKey | AwsOp::KmsDecrypt => "AWS KMS",
            AwsOp::StsAssumeRole | AwsOp::StsGetCallerIdentity => "AWS STS",
            _ => "Amazon S3",
        }
    }
}

/// An S3-compatible store's endpoint and the access key that signs for it: what its errors
/// and probe reports name. It never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibleEndpoint {
    /// `scheme://host[:port]` (no trailing slash).
    pub url: String,
    pub access_key_id: String,
}

impl CompatibleEndpoint {
    /// `access key AKIA... on https://endpoint`: the identity requests run as.
    pub fn principal(&self) -> String {
        format!("access key {} on {}", self.access_key_id, self.url)
    }
}

/// What a failed call was doing: the operation, the resource, and who we were.
#[derive(Debug, Clone)]
pub struct OpContext {
    pub op: AwsOp,
    /// `s3://bucket/key`, `s3://bucket`, a KMS key ARN or a role ARN.
    pub resource: String,
    /// The identity the call ran as, when known (the project role ARN, or the access key
    /// on an S3-compatible store).
    pub principal: Option<String>,
    /// Set when the call went to an S3-compatible store rather than Amazon S3.
    pub endpoint: Option<CompatibleEndpoint>,
}

impl OpContext {
    pub fn new(op: AwsOp, resource: impl Into<String>, principal: Option<&str>) -> Self {
        OpContext { op, resource: resource.into(), principal: principal.map(str::to_string), endpoint: None }
    }

    /// Who answered: `Amazon S3`, `AWS KMS`, ... or the S3-compatible store at its endpoint.
    fn service(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("the S3-compatible store at {}", e.url),
            None => self.op.service().into(),
        }
    }

    /// The call went to an S3-compatible store, signed with its access key.
    pub fn on_endpoint(mut self, endpoint: Option<&CompatibleEndpoint>) -> Self {
        if let Some(e) = endpoint {
            self.principal = Some(e.principal());
            self.endpoint = Some(e.clone());
        }
        self
    }
}

/// Why a request never got an answer, as far as the network stack tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkFailure {
    /// Nothing listens at the address (TCP connection refused).
    ConnectionRefused,
    /// The host name does not resolve.
    UnknownHost,
    /// Anything else (reset, TLS handshake, ...): worth a retry.
    Other,
}

impl NetworkFailure {
    fn of(err: &(dyn StdError + 'static)) -> Self {
        if find_in_chain::<std::io::Error>(err).is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused) {
            return NetworkFailure::ConnectionRefused;
        }
        let text = error_chain_text(err).to_ascii_lowercase();
        if text.contains("connection refused") {
            NetworkFailure::ConnectionRefused
        } else if ["dns error", "failed to lookup address", "name or service not known", "nodename nor servname", "no such host"]
            .iter()
            .any(|t| text.contains(t))
        {
            NetworkFailure::UnknownHost
        } else {
            NetworkFailure::Other
        }
    }
}

/// A failure of the per-project credentials provider (AssumeRole), already classified.
/// It travels through the SDK's error chain as a source error so [`classify`] can recover
/// the original cause (e.g. the exporter may not assume the project role) instead of
/// reporting a generic dispatch failure of the S3 call that needed the credentials.
#[derive(Debug)]
pub struct CredentialsFailure(pub ExportError);

impl std::fmt::Display for CredentialsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for CredentialsFailure {}

/// Error codes meaning the signature or key was not accepted (not a missing permission).
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
    "InvalidToken",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "AuthFailure",
];

const DENIED_CODES: &[&str] = &["AccessDenied", "AccessDeniedException", "AllAccessDisabled", "AccountProblem", "Forbidden"];

const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSInternalException",
    "DependencyTimeoutException",
    "OperationAborted",
    "IDPCommunicationError",
];

/// Turns any AWS SDK error into the exporter's error, classified.
pub fn classify<E>(err: SdkError<E, HttpResponse>, ctx: &OpContext) -> ExportError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    // A credentials provider failure surfaces wrapped in whatever the SDK made of it.
    if let Some(inner) = find_in_chain::<CredentialsFailure>(&err) {
        return inner.0.duplicate();
    }
    // The endpoint's name resolved only to addresses inside our network: nothing was sent.
    if let (Some(endpoint), true) = (&ctx.endpoint, crate::adapters::outbound_dns::is_internal_refusal(&err)) {
        return ExportError::invalid_config(
            "destination.endpoint_url",
            format!("{}: {}; {} was not sent", endpoint.url, crate::adapters::outbound_dns::INTERNAL_REFUSAL, ctx.op.name()),
            "Use the store's public https:// endpoint (a host name that resolves to public addresses only).",
        );
    }
    let (status, body) = match err.raw_response() {
        Some(raw) => (Some(raw.status().as_u16()), raw.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned())),
        None => (None, None),
    };
    match &err {
        SdkError::TimeoutError(_) => {
            let on = ctx.endpoint.as_ref().map(|e| format!(" at {}", e.url)).unwrap_or_default();
            return ExportError::transient(ctx.op.name(), format!("{} timed out on {}{on}", ctx.op.name(), ctx.resource));
        }
        SdkError::DispatchFailure(d) => {
            if d.is_user() && ctx.endpoint.is_some() {
                return ExportError::invalid_config(
                    "destination.endpoint_url",
                    format!("{} could not be sent: {}", ctx.op.name(), error_chain_text(&err)),
                    "Check the endpoint URL of the S3-compatible store.",
                );
            }
            if d.is_user() {
                return ExportError::invalid_config(
                    "aws endpoint",
                    format!("{} could not be sent: {}", ctx.op.name(), error_chain_text(&err)),
                    "Check AWS_ENDPOINT_URL / the region.",
                );
            }
            if let Some(creds) = credentials_error_text(&err) {
                return ExportError::BadCredentials {
                    service: ctx.service(),
                    detail: creds,
                    hint: "No usable AWS credentials: check the exporter's role or AWS_* environment.".into(),
                };
            }
            if ctx.endpoint.is_some() {
                return classify_unreachable(ctx, NetworkFailure::of(&err), &error_chain_text(&err));
            }
            return ExportError::transient(ctx.op.name(), format!("could not reach {} for {}: {}", ctx.service(), ctx.resource, error_chain_text(&err)));
        }
        SdkError::ConstructionFailure(_) => {
            if let Some(creds) = credentials_error_text(&err) {
                return ExportError::BadCredentials {
                    service: ctx.service(),
                    detail: creds,
                    hint: "No usable AWS credentials: check the exporter's role or AWS_* environment.".into(),
                };
            }
            return ExportError::Internal(format!("{} on {} could not be built: {}", ctx.op.name(), ctx.resource, error_chain_text(&err)));
        }
        _ => {}
    }

    // Service or unparseable response: use the modeled code when there is one, else the
    // code in the body. moto answers a refused KMS (JSON protocol) call with an XML
    // `<ErrorResponse>` body, which the JSON error parser cannot read: the SDK then
    // reports no code, so the XML body is read here.
    let meta_code = err.code().map(str::to_string);
    let meta_message = err.message().map(str::to_string);
    let code = meta_code.or_else(|| body.as_deref().and_then(|b| xml_tag(b, "Code").or_else(|| json_code(b))));
    let message =
        meta_message.or_else(|| body.as_deref().and_then(|b| xml_tag(b, "Message").or_else(|| json_field(b, &["message", "Message"])))).unwrap_or_default();
    classify_parts(ctx, status, code.as_deref(), &message)
}

/// Classification from the parts of an error answer; separate so it can be unit-tested.
pub fn classify_parts(ctx: &OpContext, status: Option<u16>, code: Option<&str>, message: &str) -> ExportError {
    match &ctx.endpoint {
        Some(endpoint) => compatible_answer(endpoint, code.unwrap_or(""), classify_aws_answer(ctx, status, code, message)),
        None => classify_aws_answer(ctx, status, code, message),
    }
}

/// A request that got no answer from an S3-compatible store. A refused connection or an
/// unknown host is the customer's endpoint being wrong or down: an accessibility failure
/// (retried, then emailed), unlike the same on Amazon S3, where it is our network's hiccup.
pub fn classify_unreachable(ctx: &OpContext, failure: NetworkFailure, text: &str) -> ExportError {
    let Some(endpoint) = &ctx.endpoint else {
        return ExportError::transient(ctx.op.name(), format!("could not reach {} for {}: {text}", ctx.service(), ctx.resource));
    };
    let why = match failure {
        NetworkFailure::ConnectionRefused => "the connection was refused",
        NetworkFailure::UnknownHost => "its host name does not resolve",
        NetworkFailure::Other => {
            return ExportError::transient(
                ctx.op.name(),
                format!("could not reach the S3-compatible store at {} for {} (access key {}): {text}", endpoint.url, ctx.resource, endpoint.access_key_id),
            )
        }
    };
    ExportError::AccessBlocked {
        resource: endpoint.url.clone(),
        detail: format!(
            "{} on {} with access key {} could not reach the S3-compatible store: {why} ({text}). Check endpoint_url in the connection (scheme, host and port of the store's S3 API) and that the store accepts connections from the exporter",
            ctx.op.name(),
            ctx.resource,
            endpoint.access_key_id
        ),
    }
}

/// The Amazon S3 classification of an answer, reworded for an S3-compatible store: the
/// endpoint and the access key are named, and the advice is about the store, not IAM.
fn compatible_answer(endpoint: &CompatibleEndpoint, code: &str, aws: ExportError) -> ExportError {
    let key = &endpoint.access_key_id;
    let store = format!("the S3-compatible store at {}", endpoint.url);
    match aws {
        ExportError::BadCredentials { detail, .. } => {
            let hint = if matches!(code, "SignatureDoesNotMatch" | "InvalidSignatureException") {
                format!("The secret access key does not match access key {key}: fix secret_access_key in the connection (the store shows a secret only when the key is created; make a new key if it is lost).")
            } else {
                format!("The store does not know access key {key}: check access_key_id in the connection, that the key was not deleted, and that it belongs to this endpoint ({}).", endpoint.url)
            };
            ExportError::BadCredentials { service: store, detail: format!("{detail} (access key {key})"), hint }
        }
        ExportError::PermissionDenied { operation, resource, permission, detail, .. } => ExportError::PermissionDenied {
            operation,
            resource,
            permission,
            principal: Some(endpoint.principal()),
            detail: format!(
                "{detail}. IAM policies do not apply on {}: give access key {key} read, write, list and delete on the bucket and prefix in the store's own settings (`exportctl policy` says how)",
                endpoint.url
            ),
        },
        ExportError::DestinationMissing { resource, .. } => ExportError::DestinationMissing {
            resource: format!("{resource} on {}", endpoint.url),
            hint: format!("Create the bucket on that store, or fix bucket and endpoint_url in the connection (requests were signed with access key {key})."),
        },
        ExportError::InvalidConfig { field, problem, .. } if field == "destination.region" => ExportError::invalid_config(
            field,
            format!("{problem} (on {store}, access key {key})"),
            "Set region to what the store expects (Cloudflare R2 and Google Cloud Storage: auto; MinIO and Ceph: their configured region, usually us-east-1; Backblaze B2: the region in the endpoint's host).",
        ),
        ExportError::Transient { operation, detail } => ExportError::Transient { operation, detail: format!("{detail} (access key {key})") },
        ExportError::Internal(m) => ExportError::Internal(format!("{m} (access key {key})")),
        other => other,
    }
}

/// Classification of an answer from Amazon S3, KMS or STS.
fn classify_aws_answer(ctx: &OpContext, status: Option<u16>, code: Option<&str>, message: &str) -> ExportError {
    let op = ctx.op;
    let code_str = code.unwrap_or("");
    // AWS messages end with a period; the error's Display adds its own punctuation.
    let message = message.trim().trim_end_matches('.');
    let detail = if message.is_empty() {
        code_str.to_string()
    } else if code_str.is_empty() {
        message.to_string()
    } else {
        format!("{code_str}: {message}")
    };
    let principal = ctx.principal.clone().or_else(|| principal_from_message(message));

    if CREDENTIAL_CODES.contains(&code_str) {
        return ExportError::BadCredentials {
            service: ctx.service(),
            detail: format!("{} on {} was refused: {detail}", op.name(), ctx.resource),
            hint: hint_for_credentials(code_str),
        };
    }
    if code_str == "NoSuchBucket" {
        return ExportError::DestinationMissing {
            resource: bucket_of(&ctx.resource),
            hint: "Create the bucket, or fix the bucket name and region in the connection.".into(),
        };
    }
    if matches!(code_str, "NoSuchKey" | "NoSuchUpload") {
        return ExportError::NotFound { what: ctx.resource.clone() };
    }
    if matches!(code_str, "PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") || status == Some(301) {
        return ExportError::invalid_config(
            "destination.region",
            format!("{} answered {detail} for {}", ctx.service(), ctx.resource),
            "Set the connection's region to the bucket's region.",
        );
    }
    // KMS-related refusals from S3 (SSE-KMS) or from KMS itself.
    let kms_in_message = kms_action_in_message(message);
    if code_str.starts_with("KMS.") || code_str == "KMSAccessDeniedException" {
        return match code_str {
            "KMS.DisabledException" | "KMS.KMSInvalidStateException" | "KMS.NotFoundException" => ExportError::AccessBlocked {
                resource: ctx.resource.clone(),
                detail: format!("the bucket's KMS key cannot be used ({detail}); enable the key or fix kms_key_arn"),
            },
            _ => ExportError::PermissionDenied {
                operation: op.name().into(),
                resource: ctx.resource.clone(),
                permission: kms_in_message.unwrap_or_else(|| op.kms_permission()).into(),
                principal,
                detail,
            },
        };
    }
    if matches!(op, AwsOp::KmsGenerateDataKey | AwsOp::KmsDecrypt) {
        match code_str {
            "NotFoundException" => {
                return ExportError::DestinationMissing {
                    resource: ctx.resource.clone(),
                    hint: "The KMS key does not exist in that account and region: fix kms_key_arn.".into(),
                }
            }
            "DisabledException" | "KMSInvalidStateException" | "KeyUnavailableException" => {
                return ExportError::AccessBlocked { resource: ctx.resource.clone(), detail: format!("the KMS key cannot be used ({detail}); enable the key") }
            }
            _ => {}
        }
    }
    if DENIED_CODES.contains(&code_str) || (status == Some(403) && !TRANSIENT_CODES.contains(&code_str)) {
        // AWS names the refused action in its message; a KMS action named there means the
        // S3 call failed on the bucket's key, not on the bucket.
        let permission = kms_in_message.unwrap_or_else(|| op.permission());
        return ExportError::PermissionDenied { operation: op.name().into(), resource: ctx.resource.clone(), permission: permission.into(), principal, detail };
    }
    if TRANSIENT_CODES.contains(&code_str) || status.is_some_and(is_transient_status) {
        return ExportError::transient(
            op.name(),
            format!("{} on {}: {}", ctx.service(), ctx.resource, if detail.is_empty() { format!("HTTP {}", status.unwrap_or(0)) } else { detail }),
        );
    }
    if status == Some(404) {
        return match op {
            // A listing names no key: what is missing is the bucket.
            AwsOp::HeadBucket | AwsOp::GetBucketLocation | AwsOp::ListObjects => ExportError::DestinationMissing {
                resource: bucket_of(&ctx.resource),
                hint: "Create the bucket, or fix the bucket name and region in the connection.".into(),
            },
            _ => ExportError::NotFound { what: ctx.resource.clone() },
        };
    }
    ExportError::Internal(format!(
        "{} {} on {} failed unexpectedly (HTTP {}): {}",
        ctx.service(),
        op.name(),
        ctx.resource,
        status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        if detail.is_empty() { "no error code".into() } else { detail }
    ))
}

fn hint_for_credentials(code: &str) -> String {
    match code {
        "ExpiredToken" | "ExpiredTokenException" | "TokenRefreshRequired" => {
            "The session token expired: the exporter refreshes role credentials; if this repeats, check the clock and the role's session duration.".into()
        }
        "SignatureDoesNotMatch" | "InvalidSignatureException" => "The secret access key does not match the access key id: fix the secret.".into(),
        _ => "The access key is not known to AWS: check the access key id (or that the role session is valid).".into(),
    }
}

/// `s3://bucket/key` → `s3://bucket`.
fn bucket_of(resource: &str) -> String {
    match resource.strip_prefix("s3://") {
        Some(rest) => format!("s3://{}", rest.split('/').next().unwrap_or(rest)),
        None => resource.to_string(),
    }
}

/// `kms:GenerateDataKey` or `kms:Decrypt` when AWS's message names it.
fn kms_action_in_message(message: &str) -> Option<&'static str> {
    if message.contains("kms:GenerateDataKey") {
        Some("kms:GenerateDataKey")
    } else if message.contains("kms:Decrypt") {
        Some("kms:Decrypt")
    } else {
        None
    }
}

/// AWS denial messages read `User: arn:... is not authorized to perform: ...`.
fn principal_from_message(message: &str) -> Option<String> {
    let rest = message.split("User: ").nth(1)?;
    let arn = rest.split_whitespace().next()?;
    arn.starts_with("arn:").then(|| arn.to_string())
}

/// The error code of a JSON error body; `__type` may be `com.amazonaws.kms#AccessDeniedException`.
fn json_code(body: &str) -> Option<String> {
    let raw = json_field(body, &["__type", "code", "Code"])?;
    Some(raw.rsplit('#').next().unwrap_or(&raw).to_string())
}

/// When the SDK failed because no credentials could be loaded.
fn credentials_error_text(err: &(dyn StdError + 'static)) -> Option<String> {
    find_in_chain::<aws_credential_types::provider::error::CredentialsError>(err).map(|e| error_chain_text(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(op: AwsOp) -> OpContext {
        OpContext::new(op, "s3://bucket/exports/1/1_2020-01-01_0#0.json.gz", Some("arn:aws:iam::123456789012:role/event-export-project-1"))
    }

    #[test]
    fn access_denied_names_the_operation_and_permission() {
        for (op, perm) in [
            (AwsOp::PutObject, "s3:PutObject"),
            (AwsOp::UploadPart, "s3:PutObject"),
            (AwsOp::GetObject, "s3:GetObject"),
            (AwsOp::ListObjects, "s3:ListBucket"),
            (AwsOp::DeleteObject, "s3:DeleteObject"),
            (AwsOp::AbortMultipartUpload, "s3:AbortMultipartUpload"),
        ] {
            match classify_parts(&ctx(op), Some(403), Some("AccessDenied"), "Access Denied") {
                ExportError::PermissionDenied { operation, permission, resource, principal, .. } => {
                    assert_eq!(operation, op.name());
                    assert_eq!(permission, perm);
                    assert!(resource.starts_with("s3://bucket/exports/"));
                    assert_eq!(principal.as_deref(), Some("arn:aws:iam::123456789012:role/event-export-project-1"));
                }
                other => panic!("{op:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn kms_refusals_name_the_kms_action() {
        let msg = "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:1:key/k";
        let e = classify_parts(&ctx(AwsOp::PutObject), Some(403), Some("AccessDenied"), msg);
        assert_eq!(e.missing_permission(), Some("kms:GenerateDataKey"));
        let e = classify_parts(&OpContext::new(AwsOp::KmsDecrypt, "arn:aws:kms:us-east-1:1:key/k", None), Some(400), Some("AccessDeniedException"), "no");
        assert_eq!(e.missing_permission(), Some("kms:Decrypt"));
        // Without a known principal the one AWS names is reported.
        let e = classify_parts(&OpContext::new(AwsOp::KmsGenerateDataKey, "arn:aws:kms:us-east-1:1:key/k", None), Some(403), None, msg);
        match e {
            ExportError::PermissionDenied { principal, permission, .. } => {
                assert_eq!(principal.as_deref(), Some("arn:aws:sts::1:assumed-role/r/s"));
                assert_eq!(permission, "kms:GenerateDataKey");
            }
            other => panic!("{other:?}"),
        }
        let e = classify_parts(&ctx(AwsOp::GetObject), Some(403), Some("KMS.AccessDeniedException"), "denied");
        assert_eq!(e.missing_permission(), Some("kms:Decrypt"));
    }

    #[test]
    fn credentials_missing_buckets_and_transients() {
        for code in ["InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException"] {
            assert!(matches!(classify_parts(&ctx(AwsOp::PutObject), Some(403), Some(code), "x"), ExportError::BadCredentials { .. }), "{code}");
        }
        match classify_parts(&ctx(AwsOp::PutObject), Some(404), Some("NoSuchBucket"), "gone") {
            ExportError::DestinationMissing { resource, .. } => assert_eq!(resource, "s3://bucket"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify_parts(&ctx(AwsOp::HeadBucket), Some(404), None, ""), ExportError::DestinationMissing { .. }));
        for (status, code) in [(503, Some("SlowDown")), (500, Some("InternalError")), (502, None), (400, Some("ThrottlingException")), (429, None)] {
            let e = classify_parts(&ctx(AwsOp::PutObject), Some(status), code, "");
            assert!(matches!(e, ExportError::Transient { .. }), "{status} {code:?}: {e:?}");
        }
        assert!(matches!(classify_parts(&ctx(AwsOp::GetObject), Some(404), Some("NoSuchKey"), ""), ExportError::NotFound { .. }));
    }

    fn r2(op: AwsOp) -> OpContext {
        let endpoint = CompatibleEndpoint { url: "https://acct.r2.cloudflarestorage.com".into(), access_key_id: "R2KEY0123".into() };
        OpContext::new(op, "s3://acme-events/exports/1/1_2020-01-01_0#0.json.gz", None).on_endpoint(Some(&endpoint))
    }

    /// Every refusal from an S3-compatible store names its endpoint and access key and says
    /// what to check there; the class is the one Amazon S3's same answer has.
    #[test]
    fn compatible_store_answers_name_the_endpoint_and_key_and_what_to_do() {
        // (status, code, expected kind, what the text must also say)
        type Row = (Option<u16>, Option<&'static str>, &'static str, &'static [&'static str]);
        let table: [Row; 8] = [
            (Some(403), Some("InvalidAccessKeyId"), "BadCredentials", &["does not know access key R2KEY0123", "check access_key_id"]),
            (Some(403), Some("SignatureDoesNotMatch"), "BadCredentials", &["secret access key does not match access key R2KEY0123", "fix secret_access_key"]),
            (Some(403), Some("AccessDenied"), "PermissionDenied", &["s3:PutObject", "IAM policies do not apply", "exportctl policy"]),
            (Some(403), None, "PermissionDenied", &["s3:PutObject", "give access key R2KEY0123"]),
            (
                Some(404),
                Some("NoSuchBucket"),
                "DestinationMissing",
                &["s3://acme-events on https://acct.r2.cloudflarestorage.com", "fix bucket and endpoint_url"],
            ),
            (Some(400), Some("AuthorizationHeaderMalformed"), "InvalidConfig", &["destination.region", "auto"]),
            (Some(503), Some("SlowDown"), "Transient", &[]),
            (Some(501), Some("NotImplemented"), "Transient", &[]),
        ];
        for (status, code, kind, says) in table {
            let e = classify_parts(&r2(AwsOp::PutObject), status, code, "refused");
            let text = e.to_string();
            assert_eq!(e.kind(), kind, "{code:?}: {text}");
            assert!(text.contains("R2KEY0123") && text.contains("https://acct.r2.cloudflarestorage.com"), "{code:?} names key and endpoint: {text}");
            assert!(!text.contains("Amazon S3"), "{code:?} is not Amazon S3: {text}");
            for s in says {
                assert!(text.contains(s), "{code:?} says {s:?}: {text}");
            }
        }
        match classify_parts(&r2(AwsOp::DeleteObject), Some(403), Some("AccessDenied"), "") {
            ExportError::PermissionDenied { principal, permission, .. } => {
                assert_eq!(principal.as_deref(), Some("access key R2KEY0123 on https://acct.r2.cloudflarestorage.com"));
                assert_eq!(permission, "s3:DeleteObject");
            }
            other => panic!("{other:?}"),
        }
        // A missing bucket found by the probe's listing is the bucket, on the endpoint.
        let e = classify_parts(&r2(AwsOp::ListObjects), Some(404), None, "");
        assert_eq!(e.kind(), "DestinationMissing", "{e}");
    }

    #[test]
    fn an_unreachable_compatible_endpoint_is_the_destination_and_amazon_s3_a_hiccup() {
        for (failure, says) in [(NetworkFailure::ConnectionRefused, "connection was refused"), (NetworkFailure::UnknownHost, "does not resolve")] {
            let e = classify_unreachable(&r2(AwsOp::PutObject), failure, "io error");
            assert_eq!(e.kind(), "AccessBlocked", "{e}");
            assert!(e.is_accessibility() && e.is_retryable());
            let text = e.to_string();
            assert!(text.contains(says) && text.contains("R2KEY0123") && text.contains("https://acct.r2.cloudflarestorage.com"), "{text}");
            assert!(text.contains("Check endpoint_url"), "{text}");
        }
        let e = classify_unreachable(&r2(AwsOp::PutObject), NetworkFailure::Other, "connection reset");
        assert_eq!(e.kind(), "Transient", "{e}");
        assert!(e.to_string().contains("R2KEY0123"), "{e}");
        // Amazon S3: our network, retried without blaming the customer.
        assert_eq!(classify_unreachable(&ctx(AwsOp::PutObject), NetworkFailure::ConnectionRefused, "refused").kind(), "Transient");
        // How the network stack's errors are read.
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "nope");
        assert_eq!(NetworkFailure::of(&refused), NetworkFailure::ConnectionRefused);
        let dns = std::io::Error::other("dns error: failed to lookup address information: Name or service not known");
        assert_eq!(NetworkFailure::of(&dns), NetworkFailure::UnknownHost);
        assert_eq!(NetworkFailure::of(&std::io::Error::other("connection reset by peer")), NetworkFailure::Other);
    }

    #[test]
    fn amazon_s3_answers_are_unchanged() {
        let e = classify_parts(&ctx(AwsOp::PutObject), Some(403), Some("InvalidAccessKeyId"), "x");
        assert!(e.to_string().contains("Amazon S3") && !e.to_string().contains("S3-compatible"), "{e}");
    }

    #[test]
    fn moto_xml_bodies_are_read() {
        let body = "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/u is not authorized to perform: kms:Decrypt</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_tag(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(json_code("{\"__type\":\"com.amazonaws.kms#NotFoundException\"}").as_deref(), Some("NotFoundException"));
    }
}
