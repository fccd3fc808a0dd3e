//! Glue: the event to `invocation::handle_hourly`, the outcome to JSON or a Lambda error.

use exporter::delivery::invocation::{handle_hourly, HourlyResponse};
use exporter::runtime::function_env::FunctionRuntime;
use function_glue::{failed, FunctionError};
use lambda_runtime::LambdaEvent;

pub async fn handle(runtime: &FunctionRuntime, event: LambdaEvent<serde_json::Value>) -> Result<HourlyResponse, FunctionError> {
    // No new hour is started with less than a reserve left before the function's deadline
    // (a reserve of 0 turns the check off: runtimes whose deadline is not a real timeout).
    let reserve = runtime.config.run_policy.reserve;
    let stop_starting = chrono::DateTime::from_timestamp_millis(event.context.deadline as i64)
        .filter(|_| reserve > chrono::Duration::zero())
        .map(|deadline| deadline - reserve);
    handle_hourly(&runtime.services, &event.payload, stop_starting).await.map_err(|e| failed(&event.context.request_id, e))
}
