//! HTTP error plumbing every provider shares: reading the code and message out of an error
//! body, walking an error's sources, and the one rule for which HTTP statuses are worth a
//! retry. Each provider's `errors` module decides what a refusal means; this one only
//! reads answers.

use std::error::Error as StdError;

/// 408 (request timeout), 429 (throttled) and every 5xx: the same request may succeed later.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// The text of `<tag>...</tag>` in an XML error body (S3, Azure Blob, moto's XML answers).
pub fn xml_tag(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim().to_string()).filter(|s| !s.is_empty())
}

/// The first of `fields` that is a string at the top of a JSON error body.
pub fn json_field(body: &str, fields: &[&str]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    fields.iter().find_map(|f| v.get(*f)?.as_str().map(str::to_string))
}

/// The first error of type `T` in `err`'s chain of sources.
pub fn find_in_chain<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// The messages of an error and its sources on one line, each said once: SDKs keep the
/// useful part (an I/O error, an `AADSTS...` answer) in the sources. These texts come from
/// the SDK and the network stack; callers scrub them when a secret could be echoed.
pub fn error_chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503] {
            assert!(is_transient_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 412] {
            assert!(!is_transient_status(s), "{s}");
        }
    }

    #[test]
    fn bodies_and_chains() {
        let body = "<Error><Code>AccessDenied</Code><Message> no </Message><Empty></Empty></Error>";
        assert_eq!(xml_tag(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(xml_tag(body, "Message").as_deref(), Some("no"));
        assert_eq!(xml_tag(body, "Empty"), None);
        assert_eq!(json_field(r#"{"code":"x","message":"m"}"#, &["__type", "code"]).as_deref(), Some("x"));
        assert_eq!(json_field("not json", &["code"]), None);

        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "dispatch failure")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let err = Wrapper(std::io::Error::other("connection reset\nby peer"));
        assert_eq!(error_chain_text(&err), "dispatch failure: connection reset by peer");
        assert!(find_in_chain::<std::io::Error>(&err).is_some());
        assert!(find_in_chain::<std::fmt::Error>(&err).is_none());
    }
}
