//! SDK errors of the control-plane services the functions call (EventBridge Scheduler,
//! SES, Lambda) as [`ExportError`]s. These are our own infrastructure, not the customer's
//! destination, so a refusal here is a deployment problem (`InvalidConfig`, naming the
//! action the function role lacks) rather than an accessibility failure that would email
//! the customer; throttling, 5xx and network failures are transient.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::http_errors::{error_chain_text, is_transient_status};
use crate::error::ExportError;

/// `service:Action` is what the function's role needs for `operation`.
pub fn classify<E>(action: &str, resource: &str, err: SdkError<E, HttpResponse>) -> ExportError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => ExportError::transient(action, format!("{resource}: {}", error_chain_text(&err))),
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            if is_transient_status(status) {
                ExportError::transient(action, format!("{resource}: HTTP {status}"))
            } else {
                ExportError::Internal(format!("{action} on {resource}: unreadable answer (HTTP {status})"))
            }
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("");
            let message = s.err().message().unwrap_or("").to_string();
            classify_parts(action, resource, status, code, &message)
        }
        _ => ExportError::Internal(format!("{action} on {resource}: {}", error_chain_text(&err))),
    }
}

/// The decision, on the parts of an answer (kept apart so it can be tested without HTTP).
pub fn classify_parts(action: &str, resource: &str, status: u16, code: &str, message: &str) -> ExportError {
    let transient_codes = [
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceException",
        "RequestLimitExceeded",
    ];
    if is_transient_status(status) || transient_codes.contains(&code) {
        return ExportError::transient(action, format!("{resource}: {code} {message}").trim_end().to_string());
    }
    let denied = matches!(code, "AccessDenied" | "AccessDeniedException" | "AccessDeniedFault")
        || (status == 403 && !matches!(code, "InvalidClientTokenId" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "UnrecognizedClientException"));
    if denied {
        return ExportError::invalid_config(
            "function role",
            format!("{action} on {resource} was refused ({code}: {message})"),
            format!("Grant `{action}` on {resource} to the function's role (infra/template.yaml)."),
        );
    }
    if status == 403 || matches!(code, "InvalidClientTokenId" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "UnrecognizedClientException" | "ExpiredToken")
    {
        return ExportError::BadCredentials {
            service: action.split(':').next().unwrap_or(action).to_string(),
            detail: format!("{code}: {message}"),
            hint: "Check the function's AWS credentials.".into(),
        };
    }
    if code == "ResourceNotFoundException" || status == 404 {
        return ExportError::NotFound { what: format!("{resource} ({action}: {message})") };
    }
    ExportError::Internal(format!("{action} on {resource} failed: HTTP {status} {code}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    #[test]
    fn classes() {
        assert_eq!(classify_parts("scheduler:CreateSchedule", "s", 400, "ThrottlingException", "").class(), ErrorClass::Transient);
        assert_eq!(classify_parts("ses:SendEmail", "s", 503, "", "").class(), ErrorClass::Transient);
        let denied = classify_parts("ses:SendEmail", "from@x", 403, "AccessDenied", "no");
        assert_eq!(denied.kind(), "InvalidConfig");
        assert!(denied.to_string().contains("ses:SendEmail"));
        assert_eq!(classify_parts("lambda:InvokeFunction", "f", 403, "UnrecognizedClientException", "").kind(), "BadCredentials");
        assert_eq!(classify_parts("scheduler:GetSchedule", "s", 404, "ResourceNotFoundException", "").kind(), "NotFound");
    }
}
