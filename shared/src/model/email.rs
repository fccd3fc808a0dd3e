//! An email ready to send: what the failure path composes and the [`crate::ports::Mailer`] sends.

use serde::{Deserialize, Serialize};

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}
