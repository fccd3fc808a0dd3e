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
//! local receivers). A host name is judged by every address it resolves to, at create
//! ([`admit_webhook_host`]) and at each connect (the client's resolver is a
//! [`GuardedResolver`]: it connects only to addresses that passed). Redirects are not
//! followed. No error or log names a URL: a failure webhook's URL is a credential.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use crate::adapters::azure::endpoint::{EndpointRules, ALLOW_EMULATOR_ENV};
use crate::adapters::http_errors::{error_chain_text, is_transient_status};
use crate::adapters::internal_hosts::is_internal_host;
use crate::adapters::outbound_dns::{is_internal_refusal, GuardError, GuardedResolver, Lookup, SystemLookup, INTERNAL_REFUSAL};
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
        Self::with_lookup(timeout, allow_local, Arc::new(SystemLookup))
    }

    /// Host names answered by `lookup` (tests: no real DNS).
    pub fn with_lookup(timeout: Duration, allow_local: bool, lookup: Arc<dyn Lookup>) -> Result<Self> {
        // No proxy: through one, the webhook's host would be resolved by the proxy, out of
        // the guard's sight (HTTPS_PROXY in the environment must not turn it off).
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver::new(lookup, allow_local))
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
    let refuse = |problem: &str| refusal(label, problem);
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

fn refusal(label: &str, problem: &str) -> ExportError {
    ExportError::invalid_config(
        label,
        problem,
        format!("Give an https:// URL on a public host; plain http and local addresses are accepted only when the operator sets {ALLOW_EMULATOR_ENV}=true."),
    )
}

/// [`admit_webhook_url`], then the host name resolved as each send resolves it (one lookup
/// through `lookup`, never a connection): refused when no address it resolves to is
/// outside our network, or when it does not resolve. For connection create.
pub async fn admit_webhook_host(label: &str, url: &str, allow_local: bool, lookup: Arc<dyn Lookup>) -> Result<Url> {
    let parsed = admit_webhook_url(label, url, allow_local)?;
    if allow_local {
        return Ok(parsed);
    }
    match GuardedResolver::new(lookup, false).resolve(parsed.host_str().unwrap_or("")).await {
        Ok(_) => Ok(parsed),
        Err(GuardError::Internal) => Err(refusal(label, INTERNAL_REFUSAL)),
        Err(GuardError::Lookup(_)) => Err(ExportError::invalid_config(
            label,
            "its host name does not resolve",
            "Check the host name in the URL (it must resolve in public DNS); if it is right, try again in a few minutes.",
        )),
    }
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
        let response = request.body(post.body.to_vec()).send().await.map_err(|e| {
            if is_internal_refusal(&e) {
                // The name answered only with addresses inside our network: nothing was sent.
                return refusal(post.label, INTERNAL_REFUSAL);
            }
            ExportError::transient(&operation, scrub(&error_chain_text(&e.without_url()), &url))
        })?;
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

    use crate::adapters::outbound_dns::test_support::{accepted_none, ip, listener};

    fn post<'a>(url: &'a str) -> WebhookPost<'a> {
        WebhookPost { label: "failure webhook of connection c1", url, body: b"{}", signing_secret: None, event_id: None }
    }

    /// Names that answer with the listener's address (127.0.0.1, and its IPv4-mapped form,
    /// which a dual-stack socket reaches too) or with other internal addresses are refused
    /// at each send, with no connection made; emulators not admitted (explicitly, whatever
    /// the environment says).
    #[tokio::test]
    async fn a_public_looking_name_that_resolves_inside_is_refused_at_send_without_connecting() {
        use crate::adapters::outbound_dns::StaticLookup;
        let (listener, port) = listener();
        for answer in ["127.0.0.1", "::ffff:127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"] {
            let lookup = Arc::new(StaticLookup::new().answer("hooks.example.com", &[ip(answer)]));
            let hooks = HttpWebhooks::with_lookup(Duration::from_secs(2), false, lookup.clone()).unwrap();
            let url = format!("https://hooks.example.com:{port}/services/SECRETPATH");
            let err = hooks.post(&post(&url)).await.expect_err(answer);
            assert!(accepted_none(&listener), "{answer}: a connection reached the listener");
            let text = err.to_string();
            assert!(text.contains(INTERNAL_REFUSAL) && text.contains("failure webhook of connection c1"), "{answer}: {text}");
            assert!(!err.is_retryable() && !text.contains("SECRETPATH") && !text.contains(answer), "{answer}: {text}");
            assert!(lookup.lookups() >= 1, "{answer}: the guard resolved the name");
        }
    }

    /// DNS rebinding: public at admission, the loopback at send: the send's own lookup is
    /// the one connected with, so it is refused.
    #[tokio::test]
    async fn a_name_that_rebinds_after_admission_is_refused_at_send() {
        use crate::adapters::outbound_dns::StaticLookup;
        let (listener, port) = listener();
        let lookup = Arc::new(StaticLookup::new().answer("rebind.example.com", &[ip("93.184.216.34")]).answer("rebind.example.com", &[ip("127.0.0.1")]));
        let url = format!("https://rebind.example.com:{port}/h");
        admit_webhook_host("webhook.url", &url, false, lookup.clone()).await.expect("public at admission");
        let hooks = HttpWebhooks::with_lookup(Duration::from_secs(2), false, lookup.clone()).unwrap();
        let err = hooks.post(&post(&url)).await.expect_err("rebound to the loopback");
        assert!(err.to_string().contains(INTERNAL_REFUSAL), "{err}");
        assert_eq!(lookup.lookups(), 2, "one lookup at admission, one at send");
        assert!(accepted_none(&listener), "a connection reached the listener");
    }

    #[tokio::test]
    async fn admission_resolves_and_refuses_names_inside_without_connecting() {
        use crate::adapters::outbound_dns::StaticLookup;
        let (listener, port) = listener();
        for answer in ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"] {
            let lookup = Arc::new(StaticLookup::new().answer("hooks.example.com", &[ip(answer)]));
            let err = admit_webhook_host("webhook.url", &format!("https://hooks.example.com:{port}/x"), false, lookup).await.expect_err(answer);
            assert!(err.to_string().contains(INTERNAL_REFUSAL) && !err.is_retryable(), "{answer}: {err}");
        }
        let err = admit_webhook_host("webhook.url", "https://nowhere.example.com/x", false, Arc::new(StaticLookup::new())).await.unwrap_err();
        assert!(err.to_string().contains("does not resolve"), "{err}");
        // Emulators admitted: no lookup, the loopback is fine.
        let lookup = Arc::new(StaticLookup::new().answer("hooks.example.com", &[ip("127.0.0.1")]));
        assert!(admit_webhook_host("webhook.url", &format!("http://hooks.example.com:{port}/x"), true, lookup.clone()).await.is_ok());
        assert_eq!(lookup.lookups(), 0);
        assert!(accepted_none(&listener));
    }

    /// The control: with emulators admitted, a name on the loopback is posted to.
    #[tokio::test]
    async fn with_emulators_admitted_the_loopback_is_posted_to() {
        use crate::adapters::outbound_dns::StaticLookup;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let answered = tokio::spawn(async move {
            let (mut socket, _) = server.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            while !String::from_utf8_lossy(&seen).contains("\r\n\r\n{}") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        let lookup = Arc::new(StaticLookup::new().answer("receiver.example.com", &[ip("127.0.0.1")]));
        let hooks = HttpWebhooks::with_lookup(Duration::from_secs(5), true, lookup).unwrap();
        hooks.post(&post(&format!("http://receiver.example.com:{port}/h"))).await.expect("posted");
        assert!(answered.await.unwrap().starts_with("POST /h "));
    }

    #[test]
    fn scrubbing_removes_the_url_and_its_path() {
        let url = Url::parse("https://hooks.slack.com/services/T000/B000/XXXXSECRET").unwrap();
        let text = scrub("error sending request for https://hooks.slack.com/services/T000/B000/XXXXSECRET (path /services/T000/B000/XXXXSECRET)", &url);
        assert!(!text.contains("XXXXSECRET"), "{text}");
    }
}
