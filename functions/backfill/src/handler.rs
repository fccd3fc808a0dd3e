//! Glue: the event to `invocation::handle_backfill`, the outcome to JSON or a Lambda error
//! whose type is the error's kind (`InvalidInput` means: do not retry, fix the payload).

use exporter::adapters::function_env::FunctionRuntime;
use exporter::backfill::BackfillOutcome;
use exporter::invocation::handle_backfill;
use exporter::ExportError;
use lambda_runtime::{Diagnostic, LambdaEvent};

/// An export error as the Lambda runtime reports it.
#[derive(Debug)]
pub struct FunctionError(pub ExportError);

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        let retry = if e.0.is_retryable() { "" } else { " (not retryable)" };
        Diagnostic { error_type: e.0.kind().to_string(), error_message: format!("{}{retry}", e.0) }
    }
}

/// JSON logs, one object per line, with the fields the handlers attach (connection,
/// backfill, range, hour, outcome). `RUST_LOG` sets the level.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .init();
}

pub async fn handle(runtime: &FunctionRuntime, event: LambdaEvent<serde_json::Value>) -> Result<BackfillOutcome, FunctionError> {
    let request_id = event.context.request_id.clone();
    let ctx = runtime.backfill.as_ref().ok_or_else(|| FunctionError(ExportError::Internal("backfill context not built".into())))?;
    match handle_backfill(&runtime.services, ctx, &event.payload).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            tracing::error!(request_id = %request_id, outcome = "error", error_kind = e.kind(), error = %e, retryable = e.is_retryable(), "invocation failed");
            Err(FunctionError(e))
        }
    }
}
