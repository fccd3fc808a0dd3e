//! Glue: the event to `invocation::handle_hourly` (or, from the watchdog's own schedule, to
//! the watchdog), the outcome to JSON or a Lambda error, and the invocation's figures.

use exporter::delivery::invocation::handle_hourly;
use exporter::runtime::function_env::FunctionRuntime;
use function_glue::{failed, invocation_metrics, FunctionError};
use lambda_runtime::LambdaEvent;

pub async fn handle(runtime: &FunctionRuntime, event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, FunctionError> {
    let started = std::time::Instant::now();
    let result = dispatch(runtime, &event).await;
    // The watchdog's invocations are told apart, so the hourly runs' silence alarm is not
    // kept quiet by them.
    let function = if event.payload.get("watchdog").is_some() { "watchdog" } else { "hourly-export" };
    invocation_metrics(&runtime.config.metrics_out(), function, started);
    result.map_err(|e| failed(&event.context.request_id, e))
}

async fn dispatch(runtime: &FunctionRuntime, event: &LambdaEvent<serde_json::Value>) -> exporter::Result<serde_json::Value> {
    if event.payload.get("watchdog").is_some() {
        let survey = runtime.watchdog().await?;
        return Ok(serde_json::to_value(&survey.stack).expect("figures serialise"));
    }
    // No new hour is started with less than a reserve left before the function's deadline
    // (a reserve of 0 turns the check off: runtimes whose deadline is not a real timeout).
    let reserve = runtime.config.run_policy.reserve;
    let stop_starting = chrono::DateTime::from_timestamp_millis(event.context.deadline as i64)
        .filter(|_| reserve > chrono::Duration::zero())
        .map(|deadline| deadline - reserve);
    let response = handle_hourly(&runtime.services, &event.payload, stop_starting).await?;
    Ok(serde_json::to_value(&response).expect("the response serialises"))
}
