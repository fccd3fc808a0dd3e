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

/// The plain-text body of an `.eml` written by [`render_eml`], line breaks as `\n`. Reads
/// the quoted-printable bodies written now and the base64 ones older outboxes hold.
pub fn plain_text(eml: &str) -> Option<String> {
    let boundary = eml.split("boundary=\"").nth(1)?.split('"').next()?;
    let part = eml.split("Content-Type: text/plain; charset=UTF-8\r\n").nth(1)?;
    let (headers, rest) = part.split_once("\r\n\r\n")?;
    // The CRLF before a boundary belongs to the boundary (RFC 2046).
    let body = rest.split(&format!("\r\n--{boundary}")).next()?;
    let bytes = if headers.contains("Content-Transfer-Encoding: base64") {
        base64::engine::general_purpose::STANDARD.decode(body.replace("\r\n", "")).ok()?
    } else {
        quoted_printable_decode(body)
    };
    String::from_utf8(bytes).ok()
}

/// RFC 2047 encoded words when the header is not plain ASCII: each at most 75 characters
/// (45 bytes of UTF-8, never split inside a character), folded onto continuation lines.
fn header_text(s: &str) -> String {
    if s.is_ascii() && !s.contains(['\r', '\n']) {
        return s.to_string();
    }
    let flat = s.replace(['\r', '\n'], " ");
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in flat.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words.iter().map(|w| format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(w))).collect::<Vec<_>>().join("\r\n ")
}

/// Quoted-printable (RFC 2045 6.7), so `cat` shows the text: printable ASCII as is; `=`,
/// other bytes and a line's trailing space or tab as `=XX`; each `\n` (or `\r\n`) a CRLF
/// line break; encoded lines of at most 76 characters, longer ones continued after a soft
/// break (`=` at the end of the line).
pub fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = (b.is_ascii_graphic() && b != b'=') || ((b == b' ' || b == b'\t') && !last);
            let token = if literal { (b as char).to_string() } else { format!("={b:02X}") };
            // A soft break takes one column ("="): the line's last token may use it.
            if width + token.len() > if last { 76 } else { 75 } {
                out.push_str("=\r\n");
                width = 0;
            }
            width += token.len();
            out.push_str(&token);
        }
    }
    out
}

/// The bytes of a quoted-printable body; hard line breaks come back as `\n`. Trailing
/// whitespace a transport added is dropped, as RFC 2045 asks; a malformed `=` is kept.
pub fn quoted_printable_decode(body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let lines: Vec<&str> = body.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    for (n, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches([' ', '\t']).as_bytes();
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(l) => (l, true),
            None => (line, false),
        };
        let mut i = 0;
        while i < line.len() {
            let hex = line.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
            match (line[i], hex) {
                (b'=', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        if !soft && n + 1 < lines.len() {
            out.push(b'\n');
        }
    }
    out
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
        out.push_str("Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        out.push_str(&quoted_printable(body));
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
        assert!(eml.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\nplain body =E2=9C=93\r\n--"), "readable as text: {eml}");
        assert_eq!(plain_text(&eml).as_deref(), Some("plain body ✓"));
        // An outbox written before bodies were quoted-printable still reads.
        let old = eml.replace(
            "quoted-printable\r\n\r\nplain body =E2=9C=93",
            &format!("base64\r\n\r\n{}", base64::engine::general_purpose::STANDARD.encode("plain body ✓")),
        );
        assert_eq!(plain_text(&old).as_deref(), Some("plain body ✓"));
    }

    #[test]
    fn quoted_printable_round_trips_and_keeps_every_line_within_76_characters() {
        let long = "Grant s3:PutObject on arn:aws:s3:::acme-exports/exports/* to the role arn:aws:iam::123456789012:role/exporter-187520, then wait.";
        let texts = [
            long.to_string(),
            format!("{long}\n{long}\n"),
            "a=b, 1+1=2 ==\n=".into(),
            "✓ exported; café, naïve é".into(),
            "trailing space \ntrailing tab\t\n  indented\n \n".into(),
            "é".repeat(40),
            format!("{}=", "x".repeat(74)),
            format!("{} ", "x".repeat(75)),
            "=".repeat(30),
            String::new(),
        ];
        for text in &texts {
            let encoded = quoted_printable(text);
            for line in encoded.split("\r\n") {
                assert!(line.len() <= 76, "{line:?} is {} characters", line.len());
                assert!(line.is_ascii() && !line.ends_with([' ', '\t']), "{line:?}");
                assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
            }
            assert_eq!(String::from_utf8(quoted_printable_decode(&encoded)).unwrap(), *text, "{encoded}");
        }
        assert_eq!(quoted_printable("a=b ✓ \nnext"), "a=3Db =E2=9C=93=20\r\nnext");
        // CRLF line breaks are line breaks in the encoding, and come back as \n.
        assert_eq!(quoted_printable("one\r\ntwo \r\n"), "one\r\ntwo=20\r\n");
        assert_eq!(String::from_utf8(quoted_printable_decode(&quoted_printable("one\r\ntwo \r\n"))).unwrap(), "one\ntwo \n");
        // Soft breaks vanish; a transport's trailing whitespace is dropped; a stray = stays.
        assert_eq!(quoted_printable_decode("ab=\r\ncd  \r\nx=ZZ"), b"abcd\nx=ZZ");
    }

    #[test]
    fn a_long_non_ascii_subject_is_split_into_valid_encoded_words() {
        let subject = "Export ✓ für Café Zürich: ".repeat(6);
        let header = header_text(&subject);
        let mut decoded = String::new();
        for word in header.split("\r\n ") {
            assert!(word.len() <= 75 && word.starts_with("=?UTF-8?B?") && word.ends_with("?="), "{word}");
            let b64 = &word["=?UTF-8?B?".len()..word.len() - 2];
            decoded.push_str(&String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap());
        }
        assert_eq!(decoded, subject);
        assert_eq!(header_text("plain ASCII"), "plain ASCII");
    }
}
