//! Connection webhooks over HTTPS: the "Hour Exported" event, signed, and failure notices
//! as Slack-compatible `{"text": ...}`.
//!
//! Signature scheme (what a receiver checks):
//!
//! ```text
//! X-Event-Export-Id:        the event id (the same on every delivery of one event)
//! X-Event-Export-Timestamp: Unix seconds when this delivery was sent
//! X-Event-Export-Signature: sha256=hex(HMAC-SHA256(secret, "{timestamp}.{body}"))
//! ```
//!
//! The receiver recomputes the HMAC over the timestamp header, a `.` and the raw body bytes,
//! compares in constant time, and rejects timestamps more than a few minutes old (replay).
//!
//! Only `https://` URLs on public hosts are posted to; plain http and local or private
//! addresses only when the operator sets `EXPORT_ALLOW_EMULATOR_ENDPOINTS=true` (tests,
//! local receivers). Redirects are not followed. No error or log names a URL: a failure
//! webhook's URL is a credential.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use crate::adapters::azure::endpoint::{EndpointRules, ALLOW_EMULATOR_ENV};
use crate::adapters::http_errors::{error_chain_text, is_transient_status};
use crate::adapters::internal_hosts::is_internal_host;
use crate::error::{ExportError, Result};
use crate::ports::{WebhookPost, WebhookPoster};

pub const ID_HEADER: &str = "x-event-export-id";
pub const TIMESTAMP_HEADER: &str = "x-event-export-timestamp";
pub const SIGNATURE_HEADER: &str = "x-event-export-signature";

/// Per-attempt limit (connect, send, answer): with the domain's three attempts a receiver
/// that never answers costs a run at most about 20 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &[timestamp.to_string().as_bytes(), b".", body])))
}

/// Posts with reqwest.
#[derive(Debug, Clone)]
pub struct HttpWebhooks {
    client: reqwest::Client,
    allow_local: bool,
}

impl HttpWebhooks {
    /// `allow_local`: accept http and local or private hosts (emulators and tests only).
    pub fn new(timeout: Duration, allow_local: bool) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("event-export-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExportError::Internal(format!("webhook HTTP client: {}", error_chain_text(&e))))?;
        Ok(HttpWebhooks { client, allow_local })
    }

    /// The default timeout, and the operator's emulator setting.
    pub fn from_env() -> Result<Self> {
        Self::new(DEFAULT_TIMEOUT, EndpointRules::from_env()?.allow_emulators)
    }

    /// Refuses, before any request, a URL this process must not post to.
    fn admit(&self, label: &str, url: &str) -> Result<Url> {
        admit_webhook_url(label, url, self.allow_local)
    }
}

/// Refuses a webhook URL this process must not post to (before any request: at create and
/// at each send). `allow_local`: the operator's emulator setting.
pub fn admit_webhook_url(label: &str, url: &str, allow_local: bool) -> Result<Url> {
    let refuse = |problem: &str| {
        ExportError::invalid_config(
            label,
            problem,
            format!(
                "Give an https:// URL on a public host; plain http and local addresses are accepted only when the operator sets {ALLOW_EMULATOR_ENV}=true."
            ),
        )
    };
    let parsed = Url::parse(url).map_err(|_| refuse("is not a URL"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse("has user info"));
    }
    if allow_local {
        return if matches!(parsed.scheme(), "https" | "http") { Ok(parsed) } else { Err(refuse("is not an http(s) URL")) };
    }
    if parsed.scheme() != "https" {
        return Err(refuse("is not an https:// URL"));
    }
    let local = is_internal_host(&parsed);
    if local {
        return Err(refuse("names a local, private or link-local host"));
    }
    Ok(parsed)
}

/// `text` with the URL and its path removed (both may carry the credential).
fn scrub(text: &str, url: &Url) -> String {
    let mut out = text.replace(url.as_str(), "<url>");
    if url.path().len() > 1 {
        out = out.replace(url.path(), "<path>");
    }
    out
}

#[async_trait]
impl WebhookPoster for HttpWebhooks {
    async fn post(&self, post: &WebhookPost<'_>) -> Result<()> {
        let url = self.admit(post.label, post.url)?;
        let mut request = self.client.post(url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(id) = post.event_id {
            request = request.header(ID_HEADER, id);
        }
        if let Some(secret) = post.signing_secret {
            let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            request = request.header(TIMESTAMP_HEADER, timestamp.to_string()).header(SIGNATURE_HEADER, signature(secret.expose(), timestamp, post.body));
        }
        let operation = format!("POST to the {}", post.label);
        let response =
            request.body(post.body.to_vec()).send().await.map_err(|e| ExportError::transient(&operation, scrub(&error_chain_text(&e.without_url()), &url)))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = response.bytes().await.map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).trim().to_string()).unwrap_or_default();
        let answer = scrub(&format!("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") }), &url);
        if is_transient_status(status) {
            return Err(ExportError::transient(&operation, answer));
        }
        Err(ExportError::invalid_config(
            post.label,
            format!("the receiver refused the POST ({answer})"),
            if (300..400).contains(&status) {
                "Give the final URL: redirects are not followed."
            } else {
                "Check the receiver: the URL, and for signed events the secret it verifies with."
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(&[0xaa; 131], &[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(signature("Jefe", 12, b"body"), format!("sha256={}", hex::encode(hmac_sha256(b"Jefe", &[b"12.body"]))));
    }

    #[test]
    fn only_https_on_public_hosts_unless_emulators_are_allowed() {
        let strict = HttpWebhooks::new(DEFAULT_TIMEOUT, false).unwrap();
        assert!(strict.admit("webhook", "https://hooks.example.com/x").is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "https://127.0.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/",
            "https://[::1]/",
            "https://[::ffff:192.168.1.1]/",
            "https://localhost:8443/",
            "https://user:pw@hooks.example.com/",
            "ftp://hooks.example.com/",
        ] {
            let err = strict.admit("failure webhook of connection c1", bad).unwrap_err();
            let text = err.to_string();
            assert!(!err.is_retryable(), "{bad}");
            assert!(text.contains("failure webhook of connection c1") && !text.contains(bad), "names the hook, never the URL: {text}");
        }
        let local = HttpWebhooks::new(DEFAULT_TIMEOUT, true).unwrap();
        assert!(local.admit("webhook", "http://127.0.0.1:9/x").is_ok());
        assert!(local.admit("webhook", "ftp://127.0.0.1/").is_err());
    }

    #[test]
    fn scrubbing_removes_the_url_and_its_path() {
        let url = Url::parse("https://hooks.slack.com/services/T000/B000/XXXXSECRET").unwrap();
        let text = scrub("error sending request for https://hooks.slack.com/services/T000/B000/XXXXSECRET (path /services/T000/B000/XXXXSECRET)", &url);
        assert!(!text.contains("XXXXSECRET"), "{text}");
    }
}
