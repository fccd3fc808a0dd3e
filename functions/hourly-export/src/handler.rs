//! Glue: the event to `invocation::handle_hourly`, the outcome to JSON or a Lambda error
//! whose type is the error's kind (`InvalidInput` means: do not retry, fix the payload).

use exporter::adapters::function_env::FunctionRuntime;
use exporter::invocation::{handle_hourly, HourlyResponse};
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

pub async fn handle(runtime: &FunctionRuntime, event: LambdaEvent<serde_json::Value>) -> Result<HourlyResponse, FunctionError> {
    let request_id = event.context.request_id.clone();
    // No new hour is started with less than a reserve left before the function's deadline
    // (a reserve of 0 turns the check off: runtimes whose deadline is not a real timeout).
    let reserve = runtime.config.run_policy.reserve;
    let stop_starting = chrono::DateTime::from_timestamp_millis(event.context.deadline as i64)
        .filter(|_| reserve > chrono::Duration::zero())
        .map(|deadline| deadline - reserve);
    match handle_hourly(&runtime.services, &event.payload, stop_starting).await {
        Ok(response) => Ok(response),
        Err(e) => {
            // The payload is not logged: it is small and known, and this keeps anything a
            // caller put in it out of the logs.
            tracing::error!(request_id = %request_id, outcome = "error", error_kind = e.kind(), error = %e, retryable = e.is_retryable(), "invocation failed");
            Err(FunctionError(e))
        }
    }
}
