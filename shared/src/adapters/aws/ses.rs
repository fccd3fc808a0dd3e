//! Amazon SES: the failure email, sent with both a text and an HTML body from the sender
//! configured at deploy time (a verified SES identity).

use async_trait::async_trait;
use aws_sdk_ses::types::{Body, Content, Destination, Message};
use aws_sdk_ses::Client;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::aws::service_errors::classify;
use crate::error::{ExportError, Result};
use crate::model::email::Email;
use crate::ports::{Mailer, SendOutcome};

#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
    sender: String,
}

impl SesMailer {
    pub fn new(client: Client, sender: impl Into<String>) -> Self {
        SesMailer { client, sender: sender.into() }
    }
}

fn utf8(text: &str) -> Result<Content> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| ExportError::Internal(format!("email content: {e}")))
}

/// SES refuses the whole message, and sends nothing, when it will not send to one of the
/// recipients: `MessageRejected` (in the sandbox, an unverified address; also an
/// unverified sender, "too many recipients") or `InvalidParameterValue` (a malformed
/// address). Those are refusals as addressed, for the domain to split; everything else
/// (throttling, 5xx, network, a refused role) is an error as before.
const REFUSED_AS_ADDRESSED: [&str; 2] = ["MessageRejected", "InvalidParameterValue"];

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<SendOutcome> {
        if email.to.is_empty() {
            return Err(ExportError::invalid_config("recipients", "the connection has no admin or creator email", "Add admins to the connection."));
        }
        let message = Message::builder().subject(utf8(&email.subject)?).body(Body::builder().text(utf8(&email.text)?).html(utf8(&email.html)?).build()).build();
        let sent = self
            .client
            .send_email()
            .source(&self.sender)
            .destination(Destination::builder().set_to_addresses(Some(email.to.clone())).build())
            .message(message)
            .send()
            .await;
        match sent {
            Ok(out) => Ok(SendOutcome::Accepted { message_id: out.message_id().to_string() }),
            Err(SdkError::ServiceError(e)) if e.err().code().is_some_and(|c| REFUSED_AS_ADDRESSED.contains(&c)) => {
                let code = e.err().code().unwrap_or_default();
                let reason = match e.err().message() {
                    Some(m) if !m.is_empty() => format!("{code}: {m}"),
                    _ => code.to_string(),
                };
                Ok(SendOutcome::Refused { reason })
            }
            Err(e) => Err(classify("ses:SendEmail", &format!("sender {}", self.sender), e)),
        }
    }
}
