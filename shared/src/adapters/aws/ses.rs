//! Amazon SES: the failure email, sent with both a text and an HTML body from the sender
//! configured at deploy time (a verified SES identity).

use async_trait::async_trait;
use aws_sdk_ses::types::{Body, Content, Destination, Message};
use aws_sdk_ses::Client;

use crate::adapters::aws::service_errors::classify;
use crate::delivery::notify::Email;
use crate::error::{ExportError, Result};
use crate::ports::Mailer;

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

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<String> {
        if email.to.is_empty() {
            return Err(ExportError::invalid_config("recipients", "the connection has no admin or creator email", "Add admins to the connection."));
        }
        let message = Message::builder().subject(utf8(&email.subject)?).body(Body::builder().text(utf8(&email.text)?).html(utf8(&email.html)?).build()).build();
        let out = self
            .client
            .send_email()
            .source(&self.sender)
            .destination(Destination::builder().set_to_addresses(Some(email.to.clone())).build())
            .message(message)
            .send()
            .await
            .map_err(|e| classify("ses:SendEmail", &format!("sender {}", self.sender), e))?;
        Ok(out.message_id().to_string())
    }
}
