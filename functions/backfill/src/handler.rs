//! Glue: the event to `invocation::handle_backfill`, the outcome to JSON or a Lambda error.

use exporter::delivery::backfill::BackfillOutcome;
use exporter::delivery::invocation::handle_backfill;
use exporter::runtime::function_env::FunctionRuntime;
use exporter::ExportError;
use function_glue::{failed, FunctionError};
use lambda_runtime::LambdaEvent;

pub async fn handle(runtime: &FunctionRuntime, event: LambdaEvent<serde_json::Value>) -> Result<BackfillOutcome, FunctionError> {
    let ctx = runtime.backfill.as_ref().ok_or_else(|| FunctionError(ExportError::Internal("backfill context not built".into())))?;
    handle_backfill(&runtime.services, ctx, &event.payload).await.map_err(|e| failed(&event.context.request_id, e))
}
