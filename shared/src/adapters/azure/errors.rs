//! Azure Blob Storage failures → [`ExportError`], in one place, so every caller (store,
//! probe, export) names the same missing data action or cause for the same answer.
//!
//! Every message built here goes through a [`Redactor`] first: Azure (and reqwest) can echo
//! request URLs, and a SAS token lives in the URL's query string.

use azure_core::error::ErrorKind;
use azure_core::http::StatusCode;

use crate::adapters::http_errors::{error_chain_text, is_transient_status, json_field, xml_tag};
use crate::error::ExportError;
use crate::model::secret::Secret;

/// Data action needed to read blobs (get, head, download, list).
pub const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
/// Data action needed to create or replace blobs (put, stage block, commit block list).
pub const BLOB_WRITE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write";
/// Data action needed to delete blobs.
pub const BLOB_DELETE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete";

/// What we were doing when Azure answered; decides which data action a refusal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureOp {
    /// Get Blob / Get Blob Properties.
    Read,
    /// List Blobs (authorised by the blob read data action).
    List,
    /// Put Blob / Put Block / Put Block List.
    Write,
    /// Delete Blob.
    Delete,
    /// Get Container Properties (existence check).
    ContainerProperties,
    /// Acquiring a Microsoft Entra ID token for the service principal.
    Token,
}

impl AzureOp {
    pub fn name(self) -> &'static str {
        match self {
            AzureOp::Read => "GetBlob",
            AzureOp::List => "ListBlobs",
            AzureOp::Write => "PutBlob",
            AzureOp::Delete => "DeleteBlob",
            AzureOp::ContainerProperties => "GetContainerProperties",
            AzureOp::Token => "GetToken",
        }
    }

    /// The data action an `AuthorizationPermissionMismatch` on this operation means is missing.
    pub fn data_action(self) -> &'static str {
        match self {
            AzureOp::Read | AzureOp::List | AzureOp::ContainerProperties => BLOB_READ,
            AzureOp::Write => BLOB_WRITE,
            AzureOp::Delete => BLOB_DELETE,
            // A token request is not a data-plane call; never reported as a data action.
            AzureOp::Token => "service principal credentials",
        }
    }
}

/// Removes secrets from text before it goes into an error, a log line or a probe report.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Redactor { secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect() }
    }

    /// Scrubs every known secret, then any `sig=` query value (a SAS signature can appear
    /// re-encoded in a URL, so scrubbing the token verbatim is not enough).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = s.scrub(&out);
        }
        redact_query_value(&out, "sig=")
    }
}

fn redact_query_value(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(name) {
        // Only a query parameter: preceded by '?' or '&' (raw or encoded as %26/%3F).
        let before = &rest[..i];
        let is_param = before.ends_with('?') || before.ends_with('&') || before.ends_with("%26") || before.ends_with("%3F");
        out.push_str(&rest[..i + name.len()]);
        rest = &rest[i + name.len()..];
        if is_param {
            let end = rest.find(|c: char| c == '&' || c == ')' || c == '"' || c == '\'' || c == '>' || c.is_whitespace()).unwrap_or(rest.len());
            out.push_str("[redacted]");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// What we know about the request that failed, to name it in the error.
#[derive(Debug, Clone, Copy)]
pub struct ErrorContext<'a> {
    pub op: AzureOp,
    /// `account/container/blob` or `account/container`.
    pub resource: &'a str,
    /// The service principal's client id, or `SAS token`.
    pub principal: Option<&'a str>,
    /// True when authenticating with a SAS token (changes the credential hints).
    pub sas: bool,
    pub redactor: &'a Redactor,
}

/// Status, error code and message of an HTTP error answer, when it is one.
struct HttpFailure {
    status: StatusCode,
    code: String,
    message: String,
}

fn http_failure(err: &azure_core::Error) -> Option<HttpFailure> {
    match err.kind() {
        ErrorKind::HttpResponse { status, error_code, raw_response } => {
            let body = raw_response.as_ref().map(|r| String::from_utf8_lossy(r.body().as_ref()).into_owned()).unwrap_or_default();
            let code = error_code.clone().filter(|c| !c.is_empty()).or_else(|| xml_tag(&body, "Code")).unwrap_or_default();
            let mut message =
                xml_tag(&body, "Message").or_else(|| json_field(&body, &["error_description"])).unwrap_or_else(|| status.canonical_reason().to_string());
            if let Some(detail) = xml_tag(&body, "AuthenticationErrorDetail") {
                message = format!("{message} ({detail})");
            }
            // Azure's messages end with "RequestId:...\nTime:..." lines: keep the first line.
            let message = message.lines().next().unwrap_or_default().trim().to_string();
            Some(HttpFailure { status: *status, code, message })
        }
        _ => None,
    }
}

/// The innermost `azure_core::Error` that carries an HTTP answer or an I/O failure.
fn root_kind(err: &azure_core::Error) -> &azure_core::Error {
    let mut current = err;
    while let Some(inner) = current.get_ref().and_then(|e| e.downcast_ref::<azure_core::Error>()) {
        current = inner;
    }
    current
}

const SP_HINT: &str = "Check the connection's tenant id, client id and client secret: the secret may be wrong or expired, the client id unknown in that tenant, or the tenant id wrong. Create a new client secret for the service principal and update the connection.";
const SAS_HINT: &str = "The SAS token was not accepted (bad signature, expired or not yet valid): generate a new SAS token and update the connection.";

/// Classifies an Azure SDK error. `ctx.op` decides the data action a permission refusal names.
pub fn classify(err: azure_core::Error, ctx: ErrorContext<'_>) -> ExportError {
    let scrub = |s: &str| ctx.redactor.scrub(s);
    let resource = scrub(ctx.resource);
    let root = root_kind(&err);

    // Token acquisition (ClientSecretCredential) failures come wrapped as Credential errors.
    if matches!(err.kind(), ErrorKind::Credential) || ctx.op == AzureOp::Token {
        if matches!(root.kind(), ErrorKind::Connection | ErrorKind::Io) {
            return ExportError::transient(
                "obtaining a Microsoft Entra ID token",
                scrub(&format!("could not reach the identity authority: {}", error_chain_text(&err))),
            );
        }
        if let Some(f) = http_failure(root) {
            if is_transient_status(u16::from(f.status)) {
                return ExportError::transient("obtaining a Microsoft Entra ID token", scrub(&format!("{} {}: {}", u16::from(f.status), f.code, f.message)));
            }
        }
        return ExportError::BadCredentials {
            service: "Microsoft Entra ID".into(),
            detail: scrub(&format!("could not obtain a token for the service principal ({})", error_chain_text(&err))),
            hint: SP_HINT.into(),
        };
    }

    if let Some(f) = http_failure(&err) {
        let detail = scrub(&format!("{} {}: {}", u16::from(f.status), f.code, f.message));
        let status = u16::from(f.status);
        return match (status, f.code.as_str()) {
            (403, "AuthorizationPermissionMismatch") => ExportError::PermissionDenied {
                operation: ctx.op.name().into(),
                resource,
                permission: ctx.op.data_action().into(),
                principal: ctx.principal.map(str::to_string),
                detail,
            },
            (403, "AuthorizationFailure")
            | (403, "AuthorizationSourceIPMismatch")
            | (403, "AuthorizationProtocolMismatch")
            | (403, "AuthorizationServiceMismatch")
            | (403, "AuthorizationResourceTypeMismatch") => ExportError::AccessBlocked {
                resource: resource.clone(),
                detail: format!(
                    "{detail}. Azure Storage refused the request before checking data permissions. Either the storage account's network rules (Networking → Firewalls and virtual networks) do not admit this client's address, or the SAS token does not authorise this request (expired, wrong IP range, protocol, service or resource type). {}",
                    crate::adapters::egress::azure_firewall_fix(&resource, &crate::adapters::egress::configured())
                ),
            },
            (401, _) | (403, "AuthenticationFailed") | (403, "InvalidAuthenticationInfo") | (403, "NoAuthenticationInformation") => {
                ExportError::BadCredentials {
                    service: "Azure Storage".into(),
                    detail,
                    hint: if ctx.sas { SAS_HINT.into() } else { SP_HINT.into() },
                }
            }
            (403, _) => ExportError::PermissionDenied {
                operation: ctx.op.name().into(),
                resource,
                permission: ctx.op.data_action().into(),
                principal: ctx.principal.map(str::to_string),
                detail,
            },
            (404, "ContainerNotFound") => ExportError::DestinationMissing {
                resource,
                hint: "Create the container in the storage account, or fix the container name (and account URL) in the connection.".into(),
            },
            (404, _) => ExportError::NotFound { what: resource },
            _ if is_transient_status(u16::from(f.status)) || f.code == "ServerBusy" || f.code == "OperationTimedOut" => {
                ExportError::transient(format!("{} on {resource}", ctx.op.name()), detail)
            }
            _ => ExportError::Internal(format!("{} on {resource} failed: {detail}", ctx.op.name())),
        };
    }

    match root.kind() {
        ErrorKind::Connection | ErrorKind::Io => ExportError::transient(
            format!("{} on {resource}", ctx.op.name()),
            scrub(&format!("connection to Azure Storage failed or timed out: {}", error_chain_text(&err))),
        ),
        _ => ExportError::Internal(scrub(&format!("{} on {resource} failed: {}", ctx.op.name(), error_chain_text(&err)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::http::headers::Headers;
    use azure_core::http::RawResponse;

    fn http_error(status: u16, code: &str, body: &str) -> azure_core::Error {
        let mut headers = Headers::new();
        headers.insert("x-ms-error-code", code.to_string());
        let raw = RawResponse::from_bytes(StatusCode::from(status), headers, body.as_bytes().to_vec());
        azure_core::Error::with_message(
            ErrorKind::HttpResponse { status: StatusCode::from(status), error_code: Some(code.into()), raw_response: Some(Box::new(raw)) },
            format!("{status} {code}"),
        )
    }

    fn ctx<'a>(op: AzureOp, r: &'a Redactor) -> ErrorContext<'a> {
        ErrorContext { op, resource: "acct/c/blob", principal: Some("client-1"), sas: false, redactor: r }
    }

    #[test]
    fn permission_mismatch_names_the_data_action_of_the_operation() {
        let r = Redactor::default();
        for (op, action) in [(AzureOp::Write, BLOB_WRITE), (AzureOp::Read, BLOB_READ), (AzureOp::List, BLOB_READ), (AzureOp::Delete, BLOB_DELETE)] {
            let e = classify(http_error(403, "AuthorizationPermissionMismatch", "<Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.\nRequestId:1</Message></Error>"), ctx(op, &r));
            assert_eq!(e.missing_permission(), Some(action), "{e}");
            assert!(e.to_string().contains("client-1"));
        }
    }

    #[test]
    fn other_answers_are_classified() {
        let r = Redactor::default();
        assert_eq!(classify(http_error(404, "ContainerNotFound", ""), ctx(AzureOp::Write, &r)).kind(), "DestinationMissing");
        assert_eq!(classify(http_error(404, "BlobNotFound", ""), ctx(AzureOp::Read, &r)).kind(), "NotFound");
        let blocked = classify(http_error(403, "AuthorizationFailure", ""), ctx(AzureOp::Read, &r));
        assert_eq!(blocked.kind(), "AccessBlocked");
        assert!(blocked.to_string().contains("network rules") && blocked.to_string().contains("SAS"));
        assert_eq!(classify(http_error(403, "AuthenticationFailed", ""), ctx(AzureOp::Read, &r)).kind(), "BadCredentials");
        assert_eq!(classify(http_error(503, "ServerBusy", ""), ctx(AzureOp::Write, &r)).kind(), "Transient");
        assert_eq!(classify(http_error(429, "", ""), ctx(AzureOp::Write, &r)).kind(), "Transient");
        assert_eq!(classify(http_error(500, "InternalError", ""), ctx(AzureOp::Write, &r)).kind(), "Transient");
        let conn = azure_core::Error::with_message(ErrorKind::Connection, "connection refused");
        assert_eq!(classify(conn, ctx(AzureOp::Read, &r)).kind(), "Transient");
        let token = azure_core::Error::with_error(
            ErrorKind::Credential,
            http_error(401, "7000215", r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#),
            "ClientSecretCredential authentication failed.",
        );
        let e = classify(token, ctx(AzureOp::Read, &r));
        assert_eq!(e.kind(), "BadCredentials");
        assert!(e.to_string().contains("client secret"), "{e}");
    }

    #[test]
    fn secrets_and_signatures_are_scrubbed() {
        let r = Redactor::new([Secret::new("sv=2024&sig=abc%2Bdef"), Secret::new("hunter2-secret")]);
        let text = "GET https://a/c/b?sv=2024&se=1&sig=abc%2Bdef failed; body echoed hunter2-secret; http://x/y?comp=list&sig=zzz)";
        let out = r.scrub(text);
        assert!(!out.contains("abc%2Bdef") && !out.contains("hunter2-secret") && !out.contains("zzz"), "{out}");
        assert!(out.contains("sig=[redacted]"));
        assert_eq!(r.scrub("design=1"), "design=1", "only query parameters named sig are redacted");
    }
}
