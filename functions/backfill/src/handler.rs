//! Glue: the event to `invocation::handle_backfill` (or, for `{"cancel": ID}`, to
//! `backfill::cancel`), the outcome to JSON or a Lambda error, and the invocation's figures.

use exporter::delivery::backfill::{cancel, cancel_request, BackfillOutcome};
use exporter::delivery::invocation::handle_backfill;
use exporter::runtime::function_env::FunctionRuntime;
use exporter::ExportError;
use function_glue::{failed, invocation_metrics, FunctionError};
use lambda_runtime::LambdaEvent;

pub async fn handle(runtime: &FunctionRuntime, event: LambdaEvent<serde_json::Value>) -> Result<BackfillOutcome, FunctionError> {
    let started = std::time::Instant::now();
    let result = dispatch(runtime, event).await;
    invocation_metrics(&runtime.config.metrics_out(), "backfill", started);
    result
}

async fn dispatch(runtime: &FunctionRuntime, event: LambdaEvent<serde_json::Value>) -> Result<BackfillOutcome, FunctionError> {
    let ctx = runtime.backfill.as_ref().ok_or_else(|| FunctionError(ExportError::Internal("backfill context not built".into())))?;
    let request_id = &event.context.request_id;
    match cancel_request(&event.payload).map_err(|e| failed(request_id, e))? {
        Some(backfill_id) => {
            let progress = cancel(ctx.control.as_ref(), &backfill_id, (ctx.failure.clock)()).await.map_err(|e| failed(request_id, e))?;
            Ok(BackfillOutcome::CancelRequested { backfill_id, progress })
        }
        None => handle_backfill(&runtime.services, ctx, &event.payload).await.map_err(|e| failed(request_id, e)),
    }
}
