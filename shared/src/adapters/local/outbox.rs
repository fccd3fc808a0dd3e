//! Embedded mode's mailer: each email becomes an RFC 5322 `.eml` file (multipart/alternative,
//! text and HTML) in an outbox folder, where any mail client can open it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::error::{ExportError, Result};
use crate::model::clock::Clock;
use crate::model::email::Email;
use crate::ports::{Mailer, SendOutcome};

#[derive(Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
    sender: String,
    clock: Clock,
}

impl std::fmt::Debug for OutboxMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMailer").field("dir", &self.dir).field("sender", &self.sender).finish()
    }
}

impl OutboxMailer {
    pub fn new(dir: impl Into<PathBuf>, sender: impl Into<String>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| ExportError::io(dir.display().to_string(), e))?;
        Ok(OutboxMailer { dir, sender: sender.into(), clock: Arc::new(Utc::now) })
    }

    /// Dates messages by embedded mode's clock (`exportctl --at`) instead of the wall clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `.eml` files in the outbox, oldest first.
    pub fn messages(&self) -> Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| ExportError::io(self.dir.display().to_string(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// The plain-text body of an `.eml` written by [`render_eml`].
pub fn plain_text(eml: &str) -> Option<String> {
    let part = eml.split("Content-Type: text/plain; charset=UTF-8\r\n").nth(1)?;
    let body = part.split("\r\n\r\n").nth(1)?.split("\r\n--").next()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(body.replace("\r\n", "")).ok()?;
    String::from_utf8(bytes).ok()
}

/// RFC 2047 encoded word when the header is not plain ASCII.
fn header_text(s: &str) -> String {
    if s.is_ascii() && !s.contains(['\r', '\n']) {
        s.to_string()
    } else {
        format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(s.replace(['\r', '\n'], " ")))
    }
}

/// Base64 in 76-character lines, as MIME requires.
fn base64_lines(s: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    encoded.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join("\r\n")
}

/// Renders an email as an `.eml` document; `message_id` and `date` are given so the
/// rendering itself is deterministic.
pub fn render_eml(sender: &str, email: &Email, message_id: &str, date: &str) -> String {
    let boundary = format!("=_export_{}", &message_id.split('@').next().unwrap_or("b"));
    let mut out = String::new();
    out.push_str(&format!("From: {sender}\r\n"));
    out.push_str(&format!("To: {}\r\n", email.to.join(", ")));
    out.push_str(&format!("Subject: {}\r\n", header_text(&email.subject)));
    out.push_str(&format!("Date: {date}\r\n"));
    out.push_str(&format!("Message-ID: <{message_id}>\r\n"));
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!("Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"));
    for (kind, body) in [("plain", &email.text), ("html", &email.html)] {
        out.push_str(&format!("--{boundary}\r\n"));
        out.push_str(&format!("Content-Type: text/{kind}; charset=UTF-8\r\n"));
        out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        out.push_str(&base64_lines(body));
        out.push_str("\r\n");
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

#[async_trait]
impl Mailer for OutboxMailer {
    /// A folder refuses no recipient: every message is accepted (addresses were checked
    /// when the connection was created).
    async fn send(&self, email: &Email) -> Result<SendOutcome> {
        let now = (self.clock)();
        let digest = Sha256::digest(format!("{}\n{}\n{}\n{}", now.timestamp_nanos_opt().unwrap_or_default(), email.to.join(","), email.subject, email.text));
        let id = format!("{}.{}@outbox.local", now.format("%Y%m%dT%H%M%S"), hex::encode(&digest[..6]));
        let eml = render_eml(&self.sender, email, &id, &now.to_rfc2822());
        let name = format!("{}.eml", id.split('@').next().unwrap_or("message"));
        // Written beside, then renamed: a reader never sees half a message.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(&name);
        tokio::fs::write(&tmp, eml.as_bytes()).await.map_err(|e| ExportError::io(tmp.display().to_string(), e))?;
        tokio::fs::rename(&tmp, &path).await.map_err(|e| ExportError::io(path.display().to_string(), e))?;
        Ok(SendOutcome::Accepted { message_id: id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_a_multipart_eml() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = OutboxMailer::new(dir.path().join("outbox"), "exports@example.com").unwrap();
        let email = Email {
            to: vec!["a@example.com".into(), "b@example.com".into()],
            subject: "Event export to s3://b is failing: missing s3:PutObject".into(),
            text: "plain body ✓".into(),
            html: "<p>html body</p>".into(),
        };
        let SendOutcome::Accepted { message_id: id } = outbox.send(&email).await.unwrap() else { panic!("a folder accepts every message") };
        let files = outbox.messages().unwrap();
        assert_eq!(files.len(), 1);
        let eml = std::fs::read_to_string(&files[0]).unwrap();
        assert!(eml.contains("To: a@example.com, b@example.com\r\n"));
        assert!(eml.contains("Subject: Event export to s3://b is failing: missing s3:PutObject\r\n"));
        assert!(eml.contains(&format!("Message-ID: <{id}>")));
        assert!(eml.contains("Content-Type: text/plain; charset=UTF-8"));
        assert!(eml.contains("Content-Type: text/html; charset=UTF-8"));
        assert!(eml.contains(&base64::engine::general_purpose::STANDARD.encode("plain body ✓")));
    }
}
