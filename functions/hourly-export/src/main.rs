//! hourly-export: invoked by each connection's hourly schedule and by retry schedules.
//! Builds the clients once per process, then hands every event to `handler`.

mod handler;

use std::sync::Arc;

use exporter::runtime::function_env::FunctionRuntime;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    function_glue::init_logging();
    let runtime = Arc::new(FunctionRuntime::for_hourly_export().await.map_err(|e| {
        tracing::error!(error_kind = e.kind(), error = %e, "configuration error");
        e
    })?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let runtime = runtime.clone();
        async move { handler::handle(&runtime, event).await }
    }))
    .await
}
