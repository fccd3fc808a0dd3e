//! Values every reader and encoder accepts. A lake line passes serde_json's syntax check
//! with values that strict readers and the Parquet encoder still refuse: escapes of lone
//! UTF-16 surrogates (`"\ud800"`, a low one alone, a reversed pair), numbers beyond a
//! 64-bit float (`1e400`), a key twice in one object, and values too long or too deep for
//! loaders. The normaliser runs every exported value through [`check_value`] (or
//! [`check_string`], [`check_float`]), so such a line is an invalid record naming the
//! field, the same in JSON and Parquet parts, and never reaches an encoder that would fail
//! the hour on it.
//!
//! The limits (also in docs/CONTRACT.md):
//! - [`MAX_STRING_BYTES`]: a string (value or key) of more than 65,535 bytes of UTF-8, the
//!   most a Redshift `VARCHAR` or a MySQL `TEXT` holds, so every loader's text column
//!   takes every exported string;
//! - [`MAX_NESTING_DEPTH`]: a field's value nested more than 64 objects or lists deep (the
//!   field's own object is level 1), half of serde_json's default recursion limit of 128,
//!   the strictest common reader, with room for a reader's own wrapping.
//!
//! Escaped control characters (`"\u0000"`) are valid JSON and valid Parquet text: kept.

use std::fmt;

/// The longest string, in bytes of UTF-8 once unescaped.
pub const MAX_STRING_BYTES: usize = 65_535;
/// The deepest nesting of objects and lists in one field's value.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Why a value is refused, and where inside the field's value (`.items[2].name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    what: String,
    /// Innermost segment first (built while the walk unwinds).
    path: Vec<String>,
}

impl Refusal {
    fn new(what: impl Into<String>) -> Self {
        Refusal { what: what.into(), path: Vec::new() }
    }

    fn in_key(mut self, token: &[u8]) -> Self {
        self.what = format!("the key {}: {}", shown(token), self.what);
        self
    }

    fn under(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }

    /// The reason line for an invalid record of export field `field`.
    pub fn for_field(&self, field: &str) -> String {
        format!("field {field:?}{self}")
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            f.write_str(" at ")?;
            for segment in self.path.iter().rev() {
                f.write_str(segment)?;
            }
        }
        write!(f, ": {}", self.what)
    }
}

/// Checks a value's raw JSON text (already valid JSON syntax, as serde_json's `RawValue`
/// guarantees): every string, number and nesting level in it.
pub fn check_value(raw: &str) -> Result<(), Refusal> {
    let mut walk = Walk { b: raw.as_bytes(), i: 0, keys: Vec::new() };
    walk.value(0)
}

/// Checks one raw JSON string token (quotes included); `Ok(true)` when it holds escapes
/// (every escape decodes to fewer bytes than it takes, so the decoded length tells).
#[inline]
pub fn check_string(raw: &str) -> Result<bool, Refusal> {
    let decoded = Walk { b: raw.as_bytes(), i: 0, keys: Vec::new() }.string()?;
    Ok(decoded + 2 < raw.len())
}

/// Checks one raw JSON number token for a 64-bit float column or reader.
pub fn check_float(raw: &str) -> Result<(), Refusal> {
    Walk { b: raw.as_bytes(), i: 0, keys: Vec::new() }.number()
}

/// Shown in reasons: at most 40 characters of a value.
/// The end of the string token that starts (with its quote) at `start`: past its closing
/// quote, or the end of the input.
fn string_token_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(40).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

struct Walk<'a> {
    b: &'a [u8],
    i: usize,
    /// The key tokens of the objects being walked, innermost object last.
    keys: Vec<std::ops::Range<usize>>,
}

impl Walk<'_> {
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn truncated() -> Refusal {
        Refusal::new("the value ends early (malformed JSON)")
    }

    /// `depth`: containers already open around this value.
    fn value(&mut self, depth: usize) -> Result<(), Refusal> {
        self.skip_ws();
        match self.peek() {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth + 1),
            b'[' => self.list(depth + 1),
            b't' | b'n' => {
                self.i += 4;
                Ok(())
            }
            b'f' => {
                self.i += 5;
                Ok(())
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Self::truncated()),
        }
    }

    fn too_deep(depth: usize) -> Result<(), Refusal> {
        if depth > MAX_NESTING_DEPTH {
            return Err(Refusal::new(format!(
                "nested more than {MAX_NESTING_DEPTH} objects or lists deep; flatten the value (readers refuse or truncate deeper JSON)"
            )));
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<(), Refusal> {
        Self::too_deep(depth)?;
        self.i += 1;
        let first_key = self.keys.len();
        loop {
            self.skip_ws();
            match self.peek() {
                b'}' => {
                    self.i += 1;
                    let duplicate = self.duplicate_key(first_key);
                    self.keys.truncate(first_key);
                    return match duplicate {
                        Some(key) => Err(Refusal::new(format!(
                            "the key {} appears twice in one object; strict readers (Snowflake's, for one) refuse duplicate keys",
                            shown(&key)
                        ))),
                        None => Ok(()),
                    };
                }
                b',' => self.i += 1,
                b'"' => {
                    let start = self.i;
                    let b = self.b;
                    self.string().map_err(|r| r.in_key(&b[start..string_token_end(b, start)]))?;
                    let key = start..self.i;
                    self.keys.push(key.clone());
                    self.skip_ws();
                    if self.peek() != b':' {
                        return Err(Self::truncated());
                    }
                    self.i += 1;
                    self.value(depth).map_err(|r| r.under(segment_for_key(&self.b[key])))?;
                }
                _ => return Err(Self::truncated()),
            }
        }
    }

    /// A key of the object whose keys start at `first_key` that appears twice (compared
    /// as text, escapes decoded).
    fn duplicate_key(&mut self, first_key: usize) -> Option<Vec<u8>> {
        let b = self.b;
        let keys = &mut self.keys[first_key..];
        if keys.iter().any(|k| b[k.clone()].contains(&b'\\')) {
            let mut seen = std::collections::HashSet::new();
            return keys.iter().find(|k| !seen.insert(serde_json::from_slice::<String>(&b[(*k).clone()]).unwrap_or_default())).map(|k| b[k.clone()].to_vec());
        }
        if keys.len() <= 16 {
            return keys.iter().enumerate().find(|(n, k)| keys[..*n].iter().any(|o| b[o.clone()] == b[(*k).clone()])).map(|(_, k)| b[k.clone()].to_vec());
        }
        keys.sort_unstable_by(|x, y| b[x.clone()].cmp(&b[y.clone()]));
        keys.windows(2).find(|w| b[w[0].clone()] == b[w[1].clone()]).map(|w| b[w[0].clone()].to_vec())
    }

    fn list(&mut self, depth: usize) -> Result<(), Refusal> {
        Self::too_deep(depth)?;
        self.i += 1;
        let mut index = 0usize;
        loop {
            self.skip_ws();
            match self.peek() {
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                b',' => {
                    self.i += 1;
                    index += 1;
                }
                0 => return Err(Self::truncated()),
                _ => self.value(depth).map_err(|r| r.under(format!("[{index}]")))?,
            }
        }
    }

    /// A string token: escapes decode to Unicode scalar values, and its UTF-8 length is
    /// within [`MAX_STRING_BYTES`]. Raw control characters never get here (serde_json
    /// refuses them).
    /// Walks a string token; its length once decoded.
    fn string(&mut self) -> Result<usize, Refusal> {
        let start = self.i;
        self.i += 1;
        let mut decoded = 0usize;
        loop {
            let rest = &self.b[self.i.min(self.b.len())..];
            let Some(at) = memchr::memchr2(b'"', b'\\', rest) else { return Err(Self::truncated()) };
            decoded += at;
            self.i += at;
            if self.b[self.i] == b'"' {
                self.i += 1;
                break;
            }
            // An escape.
            match self.b.get(self.i + 1).copied() {
                Some(b'u') => {
                    let unit = self.hex4(self.i + 2)?;
                    match unit {
                        0xD800..=0xDBFF => {
                            let low = if self.b.get(self.i + 6) == Some(&b'\\') && self.b.get(self.i + 7) == Some(&b'u') {
                                Some(self.hex4(self.i + 8)?)
                            } else {
                                None
                            };
                            match low {
                                Some(0xDC00..=0xDFFF) => {
                                    decoded += 4;
                                    self.i += 12;
                                }
                                _ => return Err(lone_surrogate(unit, "high", "with no low surrogate (\\udc00-\\udfff) right after it")),
                            }
                        }
                        0xDC00..=0xDFFF => return Err(lone_surrogate(unit, "low", "with no high surrogate (\\ud800-\\udbff) right before it")),
                        _ => {
                            decoded += char::from_u32(unit as u32).map_or(3, char::len_utf8);
                            self.i += 6;
                        }
                    }
                }
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                    decoded += 1;
                    self.i += 2;
                }
                other => {
                    return Err(Refusal::new(format!(
                        "invalid escape \\{} in a string (JSON allows \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                        other.map(|c| (c as char).to_string()).unwrap_or_default()
                    )))
                }
            }
        }
        if decoded > MAX_STRING_BYTES {
            return Err(Refusal::new(format!(
                "a string of {decoded} bytes ({}) is longer than the {MAX_STRING_BYTES} bytes every loader's text column holds; shorten it at the source",
                shown(&self.b[start..(start + 41).min(self.b.len())])
            )));
        }
        Ok(decoded)
    }

    fn hex4(&self, at: usize) -> Result<u16, Refusal> {
        let digits = self.b.get(at..at + 4).and_then(|d| std::str::from_utf8(d).ok());
        digits.and_then(|d| u16::from_str_radix(d, 16).ok()).ok_or_else(|| Refusal::new("invalid \\u escape in a string (four hex digits expected)"))
    }

    /// A number token: JSON syntax is serde_json's concern; the value must be a finite
    /// 64-bit float (readers parse every JSON number as one or as an integer that fits).
    fn number(&mut self) -> Result<(), Refusal> {
        let start = self.i;
        while matches!(self.peek(), b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            self.i += 1;
        }
        let token = &self.b[start..self.i];
        // Fewer than 300 digits and no exponent: always a finite float, no need to parse.
        if token.len() < 300 && !token.iter().any(|&c| c == b'e' || c == b'E') {
            return Ok(());
        }
        let finite = std::str::from_utf8(token).ok().and_then(|t| t.parse::<f64>().ok()).is_some_and(f64::is_finite);
        if !finite {
            return Err(Refusal::new(format!(
                "the number {} is beyond a 64-bit float (about ±1.8e308): strict JSON readers and Parquet refuse it",
                shown(token)
            )));
        }
        Ok(())
    }
}

fn lone_surrogate(unit: u16, which: &str, why: &str) -> Refusal {
    Refusal::new(format!(
        "the string holds a lone {which} surrogate escape \\u{unit:04x} {why}: that is not Unicode text, and strict JSON readers and Parquet refuse it; fix the string's encoding at the source"
    ))
}

/// `.key` for plain keys, `["k y"]` otherwise (the key as written, shortened).
fn segment_for_key(token: &[u8]) -> String {
    let inner = &token[1..token.len().saturating_sub(1).max(1)];
    if !inner.is_empty() && inner.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$') && inner.len() <= 40 {
        format!(".{}", String::from_utf8_lossy(inner))
    } else {
        format!("[{}]", shown(token))
    }
}

/// The top-level key whose value holds byte `offset` of a lake line, for reasons of lines
/// serde_json cannot parse (a raw control character, an invalid escape, invalid UTF-8, too
/// deep): the bytes before `offset` parsed, so a light scan finds the key.
pub fn field_at(line: &[u8], offset: usize) -> Option<String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expecting_key = false;
    let mut string_is_key = false;
    let mut string_start = 0usize;
    let mut key: Option<(usize, usize)> = None;
    for (i, &c) in line.iter().enumerate().take(offset.min(line.len())) {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
                if string_is_key {
                    key = Some((string_start, i));
                }
            }
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                string_is_key = depth == 1 && expecting_key;
                expecting_key = false;
                string_start = i + 1;
            }
            b'{' => {
                depth += 1;
                expecting_key = depth == 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting_key = true,
            _ => {}
        }
    }
    // In a key itself, between two fields, or after the object: no field to name.
    if (in_string && string_is_key) || (expecting_key && !in_string) || depth == 0 {
        return None;
    }
    key.map(|(a, b)| {
        let text: String = String::from_utf8_lossy(&line[a..b]).chars().take(40).collect();
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogates_pair_or_are_refused() {
        assert!(check_string(r#""\ud83d\ude00 ok""#).is_ok());
        assert!(check_string(r#""\ud800""#).unwrap_err().what.contains("lone high surrogate"));
        assert!(check_string(r#""\udc00""#).unwrap_err().what.contains("lone low surrogate"));
        assert!(check_string(r#""\udc00\ud800""#).unwrap_err().what.contains("lone low surrogate"));
        assert!(check_string(r#""\ud800\u0041""#).unwrap_err().what.contains("lone high surrogate"));
        assert!(check_string(r#""\ud800\n""#).is_err());
        assert!(check_string(r#""a\u0000b""#).is_ok(), "escaped control characters are valid JSON");
    }

    #[test]
    fn paths_name_where_inside_the_value() {
        let err = check_value(r#"{"items":[{"a":1},{"name":"\udfff"}]}"#).unwrap_err();
        assert_eq!(err.for_field("event_properties")[..40], *"field \"event_properties\" at .items[1].na");
        let err = check_value(r#"{"x y":1e400}"#).unwrap_err();
        assert!(err.to_string().starts_with(r#" at ["x y"]: the number 1e400"#), "{err}");
        let err = check_value(r#"{"ok":{"\udfff":1}}"#).unwrap_err();
        assert!(err.to_string().starts_with(r#" at .ok: the key "\udfff": the string holds a lone low surrogate"#), "{err}");
    }

    #[test]
    fn numbers_strings_and_depth_at_their_limits() {
        assert!(check_float("1.7976931348623157e308").is_ok());
        assert!(check_float("1e309").is_err() && check_float("-1e400").is_err());
        assert!(check_float("1e-400").is_ok(), "underflow reads as 0 everywhere");
        assert!(check_float(&"9".repeat(400)).is_err());
        let at_limit = format!("\"{}\"", "a".repeat(MAX_STRING_BYTES));
        assert!(check_string(&at_limit).is_ok());
        let over = format!("\"{}\"", "é".repeat(MAX_STRING_BYTES / 2 + 1));
        assert!(check_string(&over).unwrap_err().what.contains("longer than"));
        let escaped_over = format!("\"{}\"", "\\u00e9".repeat(MAX_STRING_BYTES / 2 + 1));
        assert!(check_string(&escaped_over).is_err(), "escapes count as the bytes they decode to");
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(check_value(&nest(MAX_NESTING_DEPTH)).is_ok());
        assert!(check_value(&nest(MAX_NESTING_DEPTH + 1)).unwrap_err().what.contains("nested more than 64"));
    }

    #[test]
    fn a_key_twice_in_one_object_is_refused_at_any_size() {
        assert!(check_value(r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#).is_ok(), "the same key in different objects is fine");
        let err = check_value(r#"{"x":[{"a":1,"b":2,"a":3}]}"#).unwrap_err();
        assert!(err.to_string().starts_with(r#" at .x[0]: the key "a" appears twice"#), "{err}");
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        assert!(check_value(&format!("{{{}}}", many.join(","))).is_ok());
        assert!(check_value(&format!("{{{},\"k7\":0}}", many.join(","))).unwrap_err().what.contains(r#""k7""#));
        assert!(check_value(r#"{"a":1,"\u0061":2}"#).is_err(), "escapes are decoded before comparing");
    }

    #[test]
    fn the_field_of_a_parse_failure_is_found() {
        let line = br#"{"event_type":"a","user_properties":{"k":[1,{"z":"x"}]},"city":"bad"#;
        assert_eq!(field_at(line, line.len()), Some("city".into()));
        assert_eq!(field_at(line, 16), Some("event_type".into()));
        assert_eq!(field_at(line, 50), Some("user_properties".into()), "a nested key is not a field");
        assert_eq!(field_at(br#"{"event_type":"a","ci"#, 21), None);
        assert_eq!(field_at(br#"{"event_type":"a",}"#, 19), None);
        assert_eq!(field_at(br#"{"event_type":"a"} x"#, 20), None);
    }
}

/// The hostile-value table: each lake line through the normaliser, then every line it
/// accepts through both part writers, read back strictly and compared row by row.
#[cfg(test)]
mod hostile_values {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};

    use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::{json, Value};

    use super::{MAX_NESTING_DEPTH, MAX_STRING_BYTES};
    use crate::export::columns::{column_type, ColumnType};
    use crate::export::parquet_parts::ParquetPartEncoder;
    use crate::export::parts::{CompressionPool, GzipPartEncoder};
    use crate::export::schema::{ExportEvent, Normalizer, EXPORT_FIELDS};
    use crate::export::timestamp::TimestampFormat;

    enum Expect {
        /// An invalid record whose reason names this field and says this.
        Invalid(&'static str, &'static str),
        /// Exported, the field holding this value in both formats.
        Exported(&'static str, Value),
    }
    use Expect::{Exported, Invalid};

    fn nest(depth: usize) -> String {
        format!("{}\"x\"{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn table() -> Vec<(Vec<u8>, Expect)> {
        let long = "a".repeat(MAX_STRING_BYTES + 1);
        let rows: Vec<(String, Expect)> = vec![
            (r#""user_id":"\ud800""#.into(), Invalid("user_id", "lone high surrogate")),
            (r#""user_id":"\udc00""#.into(), Invalid("user_id", "lone low surrogate")),
            (r#""user_id":"\udc00\ud800""#.into(), Invalid("user_id", "lone low surrogate")),
            (r#""device_carrier":"\ud800A""#.into(), Invalid("device_carrier", "lone high surrogate")),
            (r#""event_properties":{"name":"\ud83d"}"#.into(), Invalid("event_properties", "at .name")),
            (r#""user_properties":{"\udfff":1}"#.into(), Invalid("user_properties", "the key")),
            (r#""amplitude_attribution_ids":["\ud800"]"#.into(), Invalid("amplitude_attribution_ids", "at [0]")),
            (r#""uuid":"\udbff""#.into(), Invalid("uuid", "lone high surrogate")),
            (r#""sample_rate":"\udfff""#.into(), Invalid("sample_rate", "lone low surrogate")),
            (r#""client_event_time":"2020-01-25 17:00:00\ud800""#.into(), Invalid("client_event_time", "not a timestamp")),
            (r#""city":"\x41""#.into(), Invalid("city", "malformed JSON")),
            (r#""location_lat":1e400"#.into(), Invalid("location_lat", "beyond a 64-bit float")),
            (r#""location_lng":-1e400"#.into(), Invalid("location_lng", "beyond a 64-bit float")),
            (r#""location_lat":"1e400""#.into(), Invalid("location_lat", "a number")),
            (r#""event_properties":{"amount":1e400}"#.into(), Invalid("event_properties", "at .amount")),
            (r#""sample_rate":1e999"#.into(), Invalid("sample_rate", "beyond a 64-bit float")),
            (r#""user_properties":{"plan":"free","plan":"paid"}"#.into(), Invalid("user_properties", "appears twice")),
            (r#""amplitude_id":9223372036854775808"#.into(), Invalid("amplitude_id", "an integer")),
            (r#""session_id":"-9223372036854775809""#.into(), Invalid("session_id", "an integer")),
            (format!(r#""city":"{long}""#), Invalid("city", "longer than the 65535 bytes")),
            (format!(r#""event_properties":{{"log":"{long}"}}"#), Invalid("event_properties", "at .log")),
            (format!(r#""groups":{{"g":{}}}"#, nest(MAX_NESTING_DEPTH)), Invalid("groups", "nested more than 64")),
            (format!(r#""data":{{"d":{}}}"#, nest(200)), Invalid("data", "nested more than 64")),
            // Kept or repaired, and then identical in both formats.
            (r#""session_id":"007""#.into(), Exported("session_id", json!(7))),
            (r#""$schema":" 12 ""#.into(), Exported("$schema", json!(12))),
            (r#""user_id":"\ud83d\ude00\u0000""#.into(), Exported("user_id", json!("\u{1F600}\u{0}"))),
            (r#""location_lat":1e-400"#.into(), Exported("location_lat", json!(0.0))),
            (r#""event_properties":{"big":123456789012345678901234567890}"#.into(), Exported("event_properties", json!({"big": 1.2345678901234568e29}))),
            (
                format!(r#""data":{{"d":{}}}"#, nest(MAX_NESTING_DEPTH - 1)),
                Exported("data", serde_json::from_str(&format!(r#"{{"d":{}}}"#, nest(63))).unwrap()),
            ),
            (format!(r#""city":"{}""#, &long[1..]), Exported("city", json!(&long[1..]))),
        ];
        let mut lines: Vec<(Vec<u8>, Expect)> = rows.into_iter().map(|(fragment, expect)| (fragment.into_bytes(), expect)).collect();
        // Bytes serde_json refuses before any field is known: found by where parsing stopped.
        lines.push((b"\"user_id\":\"a\x01b\"".to_vec(), Invalid("user_id", "control character")));
        lines.push((b"\"device_model\":\"\xff\xfe\"".to_vec(), Invalid("device_model", "invalid UTF-8")));
        lines
            .into_iter()
            .enumerate()
            .map(|(n, (fragment, expect))| {
                let mut line = format!(r#"{{"event_type":"t","device_id":"d","$insert_id":"i{n}","client_event_time":"2020-01-25 17:00:00","#).into_bytes();
                line.extend_from_slice(&fragment);
                line.push(b'}');
                (line, expect)
            })
            .collect()
    }

    /// The bytes an encoder's sink received.
    type Collected = Arc<Mutex<Vec<u8>>>;

    fn collected() -> (Collected, impl FnMut(Vec<u8>) -> crate::error::Result<()> + Send + 'static) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        (out, move |chunk: Vec<u8>| {
            sink.lock().unwrap().extend_from_slice(&chunk);
            Ok(())
        })
    }

    #[test]
    fn every_hostile_value_is_an_invalid_record_naming_its_field_or_the_same_row_in_both_formats() {
        let normalizer = Normalizer::new("187520", TimestampFormat::Amplitude);
        let table = table();
        assert!(table.iter().filter(|(_, e)| matches!(e, Invalid(..))).count() >= 15);
        let pool = CompressionPool::new(2).unwrap();
        let (json_out, json_sink) = collected();
        let (parquet_out, parquet_sink) = collected();
        let mut gzip = GzipPartEncoder::new(pool.clone(), 6, json_sink);
        let mut parquet = ParquetPartEncoder::new(pool, parquet_sink).unwrap();
        let mut exported = Vec::new();
        for (line, expect) in &table {
            let mut event = ExportEvent::default();
            let shown = String::from_utf8_lossy(&line[..line.len().min(160)]).into_owned();
            match (normalizer.normalize(line, &mut event), expect) {
                (Err(reason), Invalid(field, says)) => {
                    assert!(reason.0.starts_with(&format!("field {field:?}")), "{shown}: names {field}? {reason}");
                    assert!(reason.0.contains(says), "{shown}: says {says:?}? {reason}");
                    assert!(reason.0.len() < 700, "{shown}: the reason quotes too much: {} bytes", reason.0.len());
                }
                (Ok(()), Exported(field, value)) => {
                    event.line.push(b'\n');
                    gzip.write(&event.line).unwrap();
                    parquet.write(&event).unwrap();
                    exported.push((*field, value.clone()));
                }
                (Ok(()), Invalid(field, _)) => panic!("{shown}: exported, but {field} should make it an invalid record"),
                (Err(reason), Exported(..)) => panic!("{shown}: refused ({reason}), should be exported"),
            }
        }
        gzip.finish(exported.len() as u64).unwrap();
        parquet.finish(exported.len() as u64).unwrap();

        // Every JSON line parses with strict serde_json.
        let gz = json_out.lock().unwrap().clone();
        let lines: Vec<Value> = BufReader::new(flate2::read::GzDecoder::new(&gz[..]))
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).expect("a strict reader takes every exported line"))
            .collect();
        assert_eq!(lines.len(), exported.len());
        for (line, (field, value)) in lines.iter().zip(&exported) {
            assert_eq!(&line[*field], value, "{field}");
        }
        // The Parquet part reads back with the same rows, column by column.
        let bytes = bytes::Bytes::from(parquet_out.lock().unwrap().clone());
        let mut row = 0;
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            for r in 0..batch.num_rows() {
                for (i, name) in EXPORT_FIELDS.iter().enumerate() {
                    let column = batch.column(i);
                    let json = &lines[row][*name];
                    assert_eq!(column.is_null(r), json.is_null(), "row {row} {name}");
                    if json.is_null() {
                        continue;
                    }
                    let same = match column_type(i) {
                        ColumnType::Timestamp => {
                            let t =
                                chrono::NaiveDateTime::parse_from_str(json.as_str().unwrap(), "%Y-%m-%d %H:%M:%S%.6f").unwrap().and_utc().timestamp_micros();
                            column.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap().value(r) == t
                        }
                        ColumnType::Int64 => Some(column.as_any().downcast_ref::<Int64Array>().unwrap().value(r)) == json.as_i64(),
                        ColumnType::Float64 => Some(column.as_any().downcast_ref::<Float64Array>().unwrap().value(r)) == json.as_f64(),
                        ColumnType::Boolean => Some(column.as_any().downcast_ref::<BooleanArray>().unwrap().value(r)) == json.as_bool(),
                        ColumnType::Json | ColumnType::String => {
                            let text = column.as_any().downcast_ref::<StringArray>().unwrap().value(r);
                            match json {
                                Value::String(s) if column_type(i) == ColumnType::String => text == s,
                                other => serde_json::from_str::<Value>(text).ok().as_ref() == Some(other),
                            }
                        }
                    };
                    assert!(same, "row {row} {name}: Parquet and JSON differ ({json})");
                }
                row += 1;
            }
        }
        assert_eq!(row, exported.len(), "the same rows in both formats");
    }
}
