//! What both Lambda functions share: JSON logs, and export errors reported as Lambda
//! diagnostics whose type is the error's kind (`InvalidInput` means: do not retry, fix the
//! payload).

use exporter::ExportError;
use lambda_runtime::Diagnostic;

/// An export error as the Lambda runtime reports it.
#[derive(Debug)]
pub struct FunctionError(pub ExportError);

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        let retry = if e.0.is_retryable() { "" } else { " (not retryable)" };
        Diagnostic { error_type: e.0.kind().to_string(), error_message: format!("{}{retry}", e.0) }
    }
}

/// JSON logs, one object per line, with the fields the handlers attach (connection, hour,
/// attempt, outcome). `RUST_LOG` sets the level.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
}

/// Logs a failed invocation and wraps its error. The payload is not logged: it is small
/// and known, and this keeps anything a caller put in it out of the logs.
pub fn failed(request_id: &str, e: ExportError) -> FunctionError {
    tracing::error!(request_id = %request_id, outcome = "error", error_kind = e.kind(), error = %e, retryable = e.is_retryable(), "invocation failed");
    FunctionError(e)
}
