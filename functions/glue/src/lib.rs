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

/// Peak resident memory of this process so far (Linux `VmHWM`), in megabytes: what the
/// dashboard sets against the function's memory size.
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Publishes one invocation's figures (`Invocations`, `InvocationSeconds`,
/// `PeakMemoryMegabytes`) by stack and function.
pub fn invocation_metrics(out: &exporter::control::metrics::MetricsOut, function: &str, started: std::time::Instant) {
    use exporter::model::metrics::Unit;
    let mut set = out.stack_set(chrono::Utc::now());
    set.dimensions.push(("Function".into(), function.into()));
    set.add("Invocations", Unit::Count, 1.0, "function invocations finished").add(
        "InvocationSeconds",
        Unit::Seconds,
        started.elapsed().as_secs_f64(),
        "time one invocation took (set against the function's timeout)",
    );
    if let Some(mb) = peak_memory_mb() {
        set.add("PeakMemoryMegabytes", Unit::Megabytes, mb, "peak resident memory of the function's process");
    }
    out.sink.publish(&set);
}
