//! The rules of the connection file's plain fields, shared by the connection and its
//! destinations: ids, http(s) URLs, email addresses and key prefixes. Each refusal names
//! the field and what to write instead.

use crate::error::{ExportError, Result};

/// An http(s) URL with a host and no credentials in it.
pub(crate) fn validate_http_url(field: &str, url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| ExportError::invalid_config(field, format!("is not a URL ({e})"), "Give an https:// URL."))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ExportError::invalid_config(field, format!("{} is not an http(s) URL with a host", parsed.scheme()), "Give an https:// URL."));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.fragment().is_some() {
        return Err(ExportError::invalid_config(field, "has user info or a fragment", "Give the URL without user:password@ or #fragment."));
    }
    Ok(())
}

pub(crate) fn validate_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ExportError::invalid_config(field, format!("{id:?} is not a valid id"), "Use 1-64 letters, digits, '-' or '_'."));
    }
    Ok(())
}

/// A numeric Amplitude id (project or organisation).
pub(crate) fn validate_numeric_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExportError::invalid_config(field, format!("{id:?} is not a numeric id"), "Use the numeric id from the project's settings."));
    }
    Ok(())
}

/// One mailbox address, as SES sends to it: `local@domain`, nothing around it.
///
/// The local part is a dot-atom (RFC 5322 `atext`: letters, digits and
/// ``!#$%&'*+/=?^_`{|}~-``, dots only between them, at most 64 characters); quoted local
/// parts are refused. The domain is dot-separated labels of ASCII letters, digits and
/// hyphens (no hyphen first or last, at most 63 characters each; international domains
/// in their `xn--` form) ending in an alphabetic TLD. At most 254 characters in all.
/// Display names (`Name <a@b.com>`), lists, whitespace and control characters are refused:
/// an address goes into SES's destination and the `.eml` headers as is.
pub(crate) fn validate_email(field: &str, email: &str) -> Result<()> {
    let refuse = |why: &str| {
        ExportError::invalid_config(
            field,
            format!("{email:?} is not a single email address ({why})"),
            "Give one plain address per entry, like name@example.com: no display name, quotes, list or spaces.",
        )
    };
    if email.is_empty() {
        return Err(refuse("it is empty"));
    }
    if email.chars().any(char::is_control) {
        return Err(refuse("it contains a line break or another control character"));
    }
    if email.contains([',', ';']) {
        return Err(refuse("it is a list: give each address as its own entry"));
    }
    if email.contains(['<', '>']) {
        return Err(refuse("it has angle brackets: give the bare address without a display name"));
    }
    if email.contains('"') {
        return Err(refuse("quoted local parts are not accepted"));
    }
    if email.contains(char::is_whitespace) {
        return Err(refuse("it contains a space"));
    }
    if email.len() > 254 {
        return Err(refuse("it is longer than 254 characters"));
    }
    let (local, domain) = match email.split('@').collect::<Vec<_>>()[..] {
        [local, domain] => (local, domain),
        [_] => return Err(refuse("it has no '@'")),
        _ => return Err(refuse("it has more than one '@'")),
    };
    if local.is_empty() {
        return Err(refuse("nothing before the '@'"));
    }
    if local.len() > 64 {
        return Err(refuse("the part before the '@' is longer than 64 characters"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(refuse("the part before the '@' starts or ends with a dot, or has two dots in a row"));
    }
    if let Some(c) = local.chars().find(|c| !(c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-.".contains(*c))) {
        return Err(refuse(&format!("{c:?} is not allowed before the '@'")));
    }
    if domain.is_empty() {
        return Err(refuse("nothing after the '@'"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(refuse("the domain has no top-level domain, like .com"));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(refuse("the domain starts or ends with a dot, or has two dots in a row"));
        }
        if label.len() > 63 {
            return Err(refuse("a domain label is longer than 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(refuse("the domain may hold only letters, digits, hyphens and dots (international domains in their xn-- form)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(refuse("a domain label starts or ends with a hyphen"));
        }
    }
    let tld = labels[labels.len() - 1];
    if tld.len() < 2 || !(tld.bytes().all(|b| b.is_ascii_alphabetic()) || tld.starts_with("xn--")) {
        return Err(refuse(&format!("{tld:?} is not a top-level domain")));
    }
    Ok(())
}

/// A prefix is a relative path: no leading `/`, no `.`/`..` or empty segments, no
/// backslash or control characters, and not too long for S3 keys.
pub fn validate_prefix(field: &str, prefix: &str) -> Result<()> {
    let bad = |problem: String| ExportError::invalid_config(field, problem, "Use a relative folder like exports/amplitude (letters, digits, - _ . / only).");
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') {
        return Err(bad(format!("{prefix:?} starts with '/'")));
    }
    if prefix.len() > 512 {
        return Err(bad("is longer than 512 characters".into()));
    }
    if prefix.chars().any(|c| c.is_control() || c == '\\' || c == '#' || c == '?') {
        return Err(bad(format!("{prefix:?} contains a control character, backslash, '#' or '?'")));
    }
    for seg in prefix.trim_end_matches('/').split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad(format!("{prefix:?} has an empty, '.' or '..' segment")));
        }
    }
    Ok(())
}
