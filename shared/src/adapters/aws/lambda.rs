//! Asynchronous self-invocation through the Lambda API (InvocationType `Event`): the
//! backfill hands each piece of a long range to a fresh invocation and returns at once.

use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_lambda::Client;

use crate::adapters::aws::service_errors::classify;
use crate::error::{ExportError, Result};
use crate::ports::Invoker;

#[derive(Debug, Clone)]
pub struct LambdaInvoker {
    client: Client,
    /// Name or ARN of the function to invoke (the backfill function itself).
    function: String,
}

impl LambdaInvoker {
    pub fn new(client: Client, function: impl Into<String>) -> Self {
        LambdaInvoker { client, function: function.into() }
    }
}

#[async_trait]
impl Invoker for LambdaInvoker {
    async fn invoke_async(&self, payload: &serde_json::Value) -> Result<()> {
        let body = serde_json::to_vec(payload).map_err(|e| ExportError::Internal(format!("invoke payload: {e}")))?;
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(body))
            .send()
            .await
            .map_err(|e| classify("lambda:InvokeFunction", &format!("function {}", self.function), e))?;
        // Lambda answers 202 once the event is queued. A local emulator that runs the
        // invocation synchronously answers with its outcome instead; the piece's failure
        // is the piece's own (its hours go through retries), so it is reported, not raised.
        if let Some(err) = out.function_error() {
            tracing::warn!(function = %self.function, function_error = %err, "invoked piece reported an error");
        }
        Ok(())
    }
}
