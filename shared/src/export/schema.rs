//! The export schema: raw lake events in, export lines out (the seed's fields in the
//! seed's order, nulls for missing, `YYYY-MM-DDTHH:MM:SS.ffffff` timestamps, the
//! event_time rule, a deterministic uuid). This is the hot path: values of fields that
//! need no conversion are copied as raw JSON text, never parsed into trees.

use std::fmt;
use std::sync::OnceLock;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::export::filter::{FilterSubject, Scope};
use crate::export::timestamp::{parse_micros, write_export_timestamp, Micros, TimestampFormat, TIMESTAMP_RANGE};
use crate::export::value_limits::{check_float, check_string, check_value, field_at, Refusal, MAX_STRING_BYTES};

/// The export fields, in the order every export line has them.
pub const EXPORT_FIELDS: [&str; 49] = [
    "server_received_time",
    "app",
    "device_carrier",
    "$schema",
    "city",
    "user_id",
    "uuid",
    "event_time",
    "platform",
    "os_version",
    "amplitude_id",
    "processed_time",
    "user_creation_time",
    "version_name",
    "ip_address",
    "paying",
    "dma",
    "group_properties",
    "user_properties",
    "client_upload_time",
    "$insert_id",
    "event_type",
    "library",
    "amplitude_attribution_ids",
    "device_type",
    "device_manufacturer",
    "start_version",
    "location_lng",
    "server_upload_time",
    "event_id",
    "location_lat",
    "os_name",
    "amplitude_event_type",
    "device_brand",
    "groups",
    "event_properties",
    "data",
    "device_id",
    "language",
    "device_model",
    "country",
    "region",
    "is_attribution_event",
    "adid",
    "session_id",
    "device_family",
    "sample_rate",
    "idfa",
    "client_event_time",
];

const N: usize = EXPORT_FIELDS.len();

/// How a field's raw value is checked and converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Timestamp,
    Int,
    Float,
    Str,
    Bool,
    Dict,
    Uuid,
    /// Any scalar (`$schema`, `sample_rate`).
    Scalar,
    /// Copied as is (`amplitude_attribution_ids`: a string in the sample, a list in the table).
    Any,
}

/// The kind of export field `i` (see [`EXPORT_FIELDS`]).
pub const fn field_kind(i: usize) -> FieldKind {
    match i {
        0 | 7 | 11 | 12 | 19 | 28 | 48 => FieldKind::Timestamp,
        1 | 3 | 10 | 29 | 44 => FieldKind::Int,
        27 | 30 => FieldKind::Float,
        15 | 42 => FieldKind::Bool,
        17 | 18 | 34 | 35 | 36 => FieldKind::Dict,
        6 => FieldKind::Uuid,
        46 => FieldKind::Scalar,
        23 => FieldKind::Any,
        _ => FieldKind::Str,
    }
}

pub const SERVER_RECEIVED_TIME: usize = 0;
pub const APP: usize = 1;
pub const UUID: usize = 6;
pub const EVENT_TIME: usize = 7;
pub const USER_PROPERTIES: usize = 18;
pub const CLIENT_UPLOAD_TIME: usize = 19;
pub const INSERT_ID: usize = 20;
pub const EVENT_TYPE: usize = 21;
pub const EVENT_PROPERTIES: usize = 35;
pub const DEVICE_ID: usize = 37;
pub const CLIENT_EVENT_TIME: usize = 48;

/// Below this clock difference between the server and the device, event_time is not adjusted.
pub const EVENT_TIME_THRESHOLD_MICROS: i64 = 60 * 1_000_000;

/// The export field named `name`. Called for every key of every lake line, so it is a
/// perfect hash: the length and four bytes of a name pick one slot of 256, and one
/// comparison confirms it (a general hash map read every byte, then compared).
pub fn field_index(name: &str) -> Option<usize> {
    let table = FieldTable::get();
    let i = table.slots[FieldTable::slot(name.as_bytes(), table.seed)];
    (i != FieldTable::EMPTY && EXPORT_FIELDS[i as usize] == name).then_some(i as usize)
}

struct FieldTable {
    slots: [u8; 256],
    seed: u32,
}

impl FieldTable {
    const EMPTY: u8 = u8::MAX;

    fn slot(name: &[u8], seed: u32) -> usize {
        let [first, .., second_last, last] = name else { return 0 };
        // `event_time` and `event_type` agree on their length, ends and middle byte.
        let mixed = (name.len() as u32)
            ^ (*first as u32) << 8
            ^ (*second_last as u32) << 16
            ^ (name[name.len() / 2] as u32) << 24
            ^ (*last as u32).wrapping_mul(0x9e37_79b1);
        (mixed.wrapping_mul(seed) >> 24) as usize
    }

    /// The first odd multiplier that gives every export field a slot of its own.
    fn get() -> &'static FieldTable {
        static TABLE: OnceLock<FieldTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            (1..1u32 << 16)
                .step_by(2)
                .map(|k| k.wrapping_mul(0x9e37_79b9) | 1)
                .find_map(|seed| {
                    let mut slots = [Self::EMPTY; 256];
                    for (i, name) in EXPORT_FIELDS.iter().enumerate() {
                        let slot = &mut slots[Self::slot(name.as_bytes(), seed)];
                        if *slot != Self::EMPTY {
                            return None;
                        }
                        *slot = i as u8;
                    }
                    Some(FieldTable { slots, seed })
                })
                .expect("a multiplier that separates 49 names exists")
        })
    }
}

/// A raw event: the raw JSON text of each known field, borrowed from the line.
struct RawEvent<'a> {
    slots: [Option<&'a RawValue>; N],
}

impl<'de> Deserialize<'de> for RawEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEvent<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent<'de>, A::Error> {
                let mut slots = [None; N];
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match field_index(key.as_str()) {
                        Some(i) => slots[i] = Some(map.next_value::<&'de RawValue>()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RawEvent { slots })
            }
        }
        d.deserialize_map(V)
    }
}

/// An object key, borrowed when it has no escapes.
enum Key<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// One event in export form: the line (no newline) and where each field's value sits.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExportEvent {
    pub line: Vec<u8>,
    spans: Vec<(u32, u32)>,
    /// The timestamp fields as numbers, in [`TIMESTAMP_FIELDS`] order (typed columns use
    /// them instead of parsing the text back).
    times: [Option<Micros>; TIMESTAMP_FIELDS.len()],
    /// Bit `i` set: field `i` is a JSON string with escapes. Typed columns then decode it;
    /// every other string is copied between its quotes without being searched for `\`.
    escapes: u64,
}

// One escape bit per export field.
const _: () = assert!(N <= u64::BITS as usize);

impl ExportEvent {
    /// Microseconds since the epoch of timestamp field `index` (an index into
    /// [`EXPORT_FIELDS`]), `None` when null or not a timestamp field.
    pub fn timestamp(&self, index: usize) -> Option<Micros> {
        TIMESTAMP_FIELDS.iter().position(|&i| i == index).and_then(|slot| self.times[slot])
    }

    /// Raw JSON text of a field's value in the export line.
    pub fn field_json(&self, index: usize) -> &[u8] {
        &self.line[self.field_range(index)]
    }

    /// Where a field's value sits in the export line.
    pub fn field_range(&self, index: usize) -> std::ops::Range<usize> {
        let (a, b) = self.spans[index];
        a as usize..b as usize
    }

    /// Whether field `index` is a JSON string holding escapes (`\"`, `\n`, `\u00e9`, ...).
    pub fn has_escapes(&self, index: usize) -> bool {
        self.escapes & (1 << index) != 0
    }

    /// The field's value when it is a JSON string without escapes (ids, event types).
    pub fn field_str(&self, index: usize) -> Option<&str> {
        let raw = self.field_json(index);
        if raw.len() >= 2 && raw[0] == b'"' && !self.has_escapes(index) {
            std::str::from_utf8(&raw[1..raw.len() - 1]).ok()
        } else {
            // Not a string, or a string with escapes (never an id or event type we match).
            None
        }
    }

    fn field_value(&self, index: usize) -> Option<serde_json::Value> {
        serde_json::from_slice(self.field_json(index)).ok()
    }

    /// Rebuilds the line with new values for some fields: `edit(index, value, out)` writes
    /// field `index`'s new JSON value into `out` and returns true, or returns false to keep
    /// it. Every other byte is copied; a timestamp field rewritten to `null` loses its time.
    pub fn rewrite_fields(&mut self, scratch: &mut Vec<u8>, mut edit: impl FnMut(usize, &[u8], &mut Vec<u8>) -> bool) {
        scratch.clear();
        let mut copied = 0;
        for i in 0..self.spans.len() {
            let (a, b) = self.spans[i];
            scratch.extend_from_slice(&self.line[copied..a as usize]);
            let start = scratch.len();
            if !edit(i, &self.line[a as usize..b as usize], scratch) {
                scratch.truncate(start);
                scratch.extend_from_slice(&self.line[a as usize..b as usize]);
            } else {
                let written = &scratch[start..];
                self.escapes = (self.escapes & !(1 << i)) | (u64::from(is_escaped_string(written)) << i);
                if written == b"null" {
                    if let Some(slot) = TIMESTAMP_FIELDS.iter().position(|&t| t == i) {
                        self.times[slot] = None;
                    }
                }
            }
            copied = b as usize;
            self.spans[i] = (start as u32, scratch.len() as u32);
        }
        scratch.extend_from_slice(&self.line[copied..]);
        std::mem::swap(&mut self.line, scratch);
    }

    /// `(device_id, $insert_id)` raw JSON texts when both are non-null strings.
    pub fn dedup_key(&self) -> Option<(&[u8], &[u8])> {
        let d = self.field_json(DEVICE_ID);
        let i = self.field_json(INSERT_ID);
        (d.first() == Some(&b'"') && i.first() == Some(&b'"')).then_some((d, i))
    }
}

impl FilterSubject for ExportEvent {
    fn event_type(&self) -> Option<String> {
        match self.field_value(EVENT_TYPE)? {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        }
    }

    fn lookup(&self, scope: Scope, name: &str) -> Option<serde_json::Value> {
        let container = match scope {
            Scope::Field => return field_index(name).and_then(|i| self.field_value(i)),
            Scope::EventProperty => EVENT_PROPERTIES,
            Scope::UserProperty => USER_PROPERTIES,
        };
        match self.field_value(container)? {
            serde_json::Value::Object(mut m) => m.remove(name),
            _ => None,
        }
    }
}

/// What comes before each field's value in an export line: `{"server_received_time":`, then
/// `,"app":` and so on, each written with one copy.
struct KeyPrefixes {
    text: String,
    ends: [usize; N],
}

impl KeyPrefixes {
    fn of(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.text.as_bytes()[start..self.ends[index]]
    }
}

fn key_prefixes() -> &'static KeyPrefixes {
    static PREFIXES: OnceLock<KeyPrefixes> = OnceLock::new();
    PREFIXES.get_or_init(|| {
        let mut text = String::new();
        let mut ends = [0; N];
        for (i, name) in EXPORT_FIELDS.iter().enumerate() {
            text.push(if i == 0 { '{' } else { ',' });
            text.push('"');
            text.push_str(name);
            text.push_str("\":");
            ends[i] = text.len();
        }
        KeyPrefixes { text, ends }
    })
}

/// Why a raw line could not become an export event (reported with file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidReason(pub String);

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Turns raw lines of one project into export events.
#[derive(Debug, Clone)]
pub struct Normalizer {
    project_id: String,
    timestamps: TimestampFormat,
}

impl Normalizer {
    pub fn new(project_id: &str, timestamps: TimestampFormat) -> Self {
        Normalizer { project_id: project_id.to_string(), timestamps }
    }

    /// Normalises one raw line into `out` (reused between calls to avoid allocation).
    pub fn normalize(&self, raw_line: &[u8], out: &mut ExportEvent) -> Result<(), InvalidReason> {
        let text = std::str::from_utf8(raw_line).map_err(|e| {
            let at = e.valid_up_to();
            let what = format!("invalid UTF-8 (byte 0x{:02x} at byte {} of the line); the line must be UTF-8 text", raw_line[at], at + 1);
            InvalidReason(match field_at(raw_line, at) {
                Some(field) => format!("field {field:?}: {what}"),
                None => what,
            })
        })?;
        let raw: RawEvent<'_> = serde_json::from_str(text).map_err(|e| {
            if !text.trim_start().starts_with('{') {
                return InvalidReason(format!("not a JSON object: {e}"));
            }
            // One line, so the column is the byte where serde_json stopped.
            InvalidReason(match field_at(text.as_bytes(), e.column()) {
                Some(field) => format!("field {field:?}: malformed JSON: {e}"),
                None => format!("malformed JSON: {e}"),
            })
        })?;
        // Timestamps first: event_time (field 7) derives from fields that come after it.
        let mut times: [Option<Micros>; N] = [None; N];
        for i in TIMESTAMP_FIELDS {
            times[i] = parse_time(EXPORT_FIELDS[i], raw.slots[i])?;
        }
        if times[EVENT_TIME].is_none() {
            times[EVENT_TIME] = derive_event_time(times[CLIENT_EVENT_TIME], times[SERVER_RECEIVED_TIME], times[CLIENT_UPLOAD_TIME])?;
        }
        for (slot, &i) in TIMESTAMP_FIELDS.iter().enumerate() {
            out.times[slot] = times[i];
        }
        out.line.clear();
        out.spans.clear();
        out.escapes = 0;
        let keys = key_prefixes();
        for (i, name) in EXPORT_FIELDS.iter().enumerate() {
            out.line.extend_from_slice(keys.of(i));
            let start = out.line.len();
            let escaped = match field_kind(i) {
                FieldKind::Timestamp => {
                    match times[i] {
                        Some(t) => {
                            out.line.push(b'"');
                            write_export_timestamp(&mut out.line, t, self.timestamps);
                            out.line.push(b'"');
                        }
                        None => out.line.extend_from_slice(b"null"),
                    }
                    false
                }
                FieldKind::Uuid => self.write_uuid(&raw, text, &mut out.line)?,
                _ if i == APP && is_null(raw.slots[i]) => {
                    out.line.extend_from_slice(self.project_id.as_bytes());
                    false
                }
                kind => write_value(name, kind, raw.slots[i], &mut out.line)?,
            };
            out.escapes |= u64::from(escaped) << i;
            out.spans.push((start as u32, out.line.len() as u32));
        }
        out.line.push(b'}');
        Ok(())
    }

    /// Writes the uuid; whether it holds escapes (a given one may, a derived one never).
    fn write_uuid(&self, raw: &RawEvent<'_>, text: &str, out: &mut Vec<u8>) -> Result<bool, InvalidReason> {
        if let Some(v) = raw.slots[UUID] {
            if v.get().starts_with('"') {
                let escaped = check_string(v.get()).map_err(|r| InvalidReason(r.for_field("uuid")))?;
                out.extend_from_slice(v.get().as_bytes());
                return Ok(escaped);
            }
        }
        let mut h = Sha256::new();
        h.update(self.project_id.as_bytes());
        h.update(b"\n");
        match (raw.slots[DEVICE_ID], raw.slots[INSERT_ID]) {
            (Some(d), Some(i)) if d.get().starts_with('"') && i.get().starts_with('"') => {
                h.update(d.get().as_bytes());
                h.update(b"\n");
                h.update(i.get().as_bytes());
            }
            _ => h.update(text.as_bytes()),
        }
        let d = h.finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom, name-based
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
        let hex = hex::encode(b);
        out.push(b'"');
        for (i, part) in [&hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]].iter().enumerate() {
            if i > 0 {
                out.push(b'-');
            }
            out.extend_from_slice(part.as_bytes());
        }
        out.push(b'"');
        Ok(false)
    }
}

fn is_null(v: Option<&RawValue>) -> bool {
    v.is_none_or(|v| v.get() == "null")
}

fn type_name(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "a list",
        Some(b't') | Some(b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn wrong(name: &str, expected: &str, raw: &str) -> InvalidReason {
    let shown: String = raw.chars().take(40).collect();
    InvalidReason(format!("field {name:?}: expected {expected}, got {} ({shown})", type_name(raw)))
}

/// The string inside a raw JSON string token (unescaped only when needed).
fn raw_string(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    if !raw.contains('\\') {
        return Some(std::borrow::Cow::Borrowed(&raw[1..raw.len() - 1]));
    }
    serde_json::from_str::<String>(raw).ok().map(std::borrow::Cow::Owned)
}

/// A 64-bit integer (every id column is BIGINT in Amplitude's schema and INT64 in Parquet).
fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|b| b.is_ascii_digit()) && s.parse::<i64>().is_ok()
}

/// Writes one (non-timestamp) field's export value and says whether it is a string with
/// escapes. Every value written is one that strict JSON readers and the Parquet column of its
/// field accept ([`crate::export::value_limits`]).
fn write_value(name: &str, kind: FieldKind, raw: Option<&RawValue>, out: &mut Vec<u8>) -> Result<bool, InvalidReason> {
    let Some(raw) = raw.map(RawValue::get).filter(|r| *r != "null") else {
        out.extend_from_slice(b"null");
        return Ok(false);
    };
    let refused = |r: Refusal| InvalidReason(r.for_field(name));
    let first = raw.as_bytes()[0];
    match kind {
        FieldKind::Any => {
            check_value(raw).map_err(refused)?;
            out.extend_from_slice(raw.as_bytes())
        }
        FieldKind::Str | FieldKind::Uuid => match first {
            b'"' => {
                let escaped = check_string(raw).map_err(refused)?;
                out.extend_from_slice(raw.as_bytes());
                return Ok(escaped);
            }
            b'{' | b'[' => return Err(wrong(name, "a string", raw)),
            _ => {
                // numbers and booleans become their text, losslessly
                if raw.len() > MAX_STRING_BYTES {
                    return Err(wrong(name, &format!("a value of at most {MAX_STRING_BYTES} bytes"), raw));
                }
                out.push(b'"');
                out.extend_from_slice(raw.as_bytes());
                out.push(b'"');
            }
        },
        FieldKind::Int => {
            if is_integer_text(raw) {
                out.extend_from_slice(raw.as_bytes());
            } else {
                // A numeric string is written as its number, in JSON's form ("007" is 7).
                match raw_string(raw).and_then(|s| s.trim().parse::<i64>().ok().filter(|_| is_integer_text(s.trim()))) {
                    Some(n) => {
                        use std::io::Write as _;
                        write!(out, "{n}").expect("writing to a Vec");
                    }
                    None => return Err(wrong(name, "an integer", raw)),
                }
            }
        }
        FieldKind::Float => match first {
            b'-' | b'0'..=b'9' => {
                check_float(raw).map_err(refused)?;
                out.extend_from_slice(raw.as_bytes())
            }
            b'"' => match raw_string(raw).and_then(|s| s.trim().parse::<f64>().ok()).filter(|f| f.is_finite()) {
                Some(f) => out.extend_from_slice(serde_json::to_string(&f).expect("finite").as_bytes()),
                None => return Err(wrong(name, "a number", raw)),
            },
            _ => return Err(wrong(name, "a number", raw)),
        },
        FieldKind::Bool => match raw {
            "true" | "false" => out.extend_from_slice(raw.as_bytes()),
            "\"true\"" => out.extend_from_slice(b"true"),
            "\"false\"" => out.extend_from_slice(b"false"),
            _ => return Err(wrong(name, "a boolean", raw)),
        },
        FieldKind::Dict => match first {
            b'{' => {
                check_value(raw).map_err(refused)?;
                out.extend_from_slice(raw.as_bytes())
            }
            _ => return Err(wrong(name, "an object", raw)),
        },
        FieldKind::Scalar => match first {
            b'{' | b'[' => return Err(wrong(name, "a single value", raw)),
            _ => {
                check_value(raw).map_err(refused)?;
                out.extend_from_slice(raw.as_bytes())
            }
        },
        FieldKind::Timestamp => unreachable!("timestamps are parsed by parse_time"),
    }
    // A scalar or any value may be a string too (`sample_rate` is a text column).
    Ok(matches!(kind, FieldKind::Scalar | FieldKind::Any) && is_escaped_string(raw.as_bytes()))
}

/// Whether a JSON value's text is a string holding escapes, for values whose check did not
/// already tell (a string's escapes are the only backslashes it can hold).
fn is_escaped_string(raw: &[u8]) -> bool {
    raw.first() == Some(&b'"') && memchr::memchr(b'\\', raw).is_some()
}

/// The export fields that hold timestamps (indexes into [`EXPORT_FIELDS`]).
pub const TIMESTAMP_FIELDS: [usize; 7] = [0, 7, 11, 12, 19, 28, 48];

/// Parses a timestamp field: a string in any common form, or epoch milliseconds.
fn parse_time(name: &str, raw: Option<&RawValue>) -> Result<Option<Micros>, InvalidReason> {
    let Some(raw) = raw.map(RawValue::get).filter(|r| *r != "null") else {
        return Ok(None);
    };
    let t = match raw.as_bytes()[0] {
        b'"' => raw_string(raw).and_then(|s| parse_micros(&s)),
        // epoch milliseconds, as the HTTP API takes them
        b'-' | b'0'..=b'9' => raw.parse::<i64>().ok().and_then(|ms| ms.checked_mul(1000)),
        _ => None,
    };
    t.filter(|t| TIMESTAMP_RANGE.contains(t)).map(Some).ok_or_else(|| {
        let shown: String = raw.chars().take(40).collect();
        InvalidReason(format!("field {name:?}: {shown} is not a timestamp (expected e.g. 2020-01-25 17:03:12.123456)"))
    })
}

/// `event_time = client_event_time + (server_received_time - client_upload_time)`, unless the
/// device's clock is off by less than 60 seconds (either way), then `client_event_time`.
/// A derived instant outside years 0000-9999 (a device clock at 1970 uploading at 9999)
/// makes the line invalid: no timestamp is better than a wrong one.
pub fn derive_event_time(
    client_event: Option<Micros>,
    server_received: Option<Micros>,
    client_upload: Option<Micros>,
) -> Result<Option<Micros>, InvalidReason> {
    let Some(client_event) = client_event else {
        return Ok(None);
    };
    let derived = match (server_received, client_upload) {
        (Some(received), Some(upload)) if (received - upload).abs() >= EVENT_TIME_THRESHOLD_MICROS => client_event + (received - upload),
        _ => client_event,
    };
    if !TIMESTAMP_RANGE.contains(&derived) {
        return Err(InvalidReason(
            "field \"event_time\": client_event_time + (server_received_time - client_upload_time) falls outside years 0000-9999 (the device clock is wrong); give the event its own event_time".into(),
        ));
    }
    Ok(Some(derived))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(line: &str) -> Result<serde_json::Map<String, serde_json::Value>, InvalidReason> {
        let mut ev = ExportEvent::default();
        Normalizer::new("187520", TimestampFormat::Amplitude).normalize(line.as_bytes(), &mut ev)?;
        Ok(serde_json::from_slice(&ev.line).expect("export line is JSON"))
    }

    #[test]
    fn field_index_finds_every_field_and_nothing_else() {
        for (i, name) in EXPORT_FIELDS.iter().enumerate() {
            assert_eq!(field_index(name), Some(i), "{name}");
            for other in [&name[1..], &name[..name.len() - 1], &format!("{name}x"), &name.to_uppercase()] {
                assert_eq!(field_index(other), None, "{other:?}");
            }
        }
        for other in ["", "x", "$", "event_typf", "user_id\0", "server_received_timf"] {
            assert_eq!(field_index(other), None, "{other:?}");
        }
    }

    #[test]
    fn fields_in_order_with_nulls_and_fixed_timestamps() {
        let out = norm(r#"{"event_type":"open","device_id":"d1","$insert_id":"i1","client_event_time":"2020-01-25 17:03:12.5","unknown_field":1}"#).unwrap();
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(keys, EXPORT_FIELDS);
        assert_eq!(out["client_event_time"], "2020-01-25 17:03:12.500000");
        assert_eq!(out["city"], serde_json::Value::Null);
        assert_eq!(out["app"], 187520);
        assert!(!out.contains_key("unknown_field"));
        assert_eq!(out["uuid"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn event_time_rule_on_both_sides_of_sixty_seconds() {
        let line = |upload: &str| {
            format!(r#"{{"client_event_time":"2020-01-25 17:00:00","client_upload_time":"{upload}","server_received_time":"2020-01-25 17:10:00"}}"#)
        };
        // 59 s of clock difference: not adjusted
        assert_eq!(norm(&line("2020-01-25 17:09:01")).unwrap()["event_time"], "2020-01-25 17:00:00.000000");
        // exactly 60 s: adjusted by 60 s
        assert_eq!(norm(&line("2020-01-25 17:09:00")).unwrap()["event_time"], "2020-01-25 17:01:00.000000");
        // device clock two hours behind: adjusted forward
        assert_eq!(norm(&line("2020-01-25 15:10:00")).unwrap()["event_time"], "2020-01-25 19:00:00.000000");
        // device clock 30 s ahead: not adjusted; 10 minutes ahead: adjusted back
        assert_eq!(norm(&line("2020-01-25 17:10:30")).unwrap()["event_time"], "2020-01-25 17:00:00.000000");
        assert_eq!(norm(&line("2020-01-25 17:20:00")).unwrap()["event_time"], "2020-01-25 16:50:00.000000");
        // an event_time of its own wins
        let own = r#"{"event_time":"2021-05-05 05:05:05","client_event_time":"2020-01-25 17:00:00"}"#;
        assert_eq!(norm(own).unwrap()["event_time"], "2021-05-05 05:05:05.000000");
    }

    #[test]
    fn a_derived_event_time_outside_four_digit_years_is_an_invalid_record() {
        // Device clock at 1970, upload seen in 9999: the shift lands past year 9999.
        let future = r#"{"client_event_time":"9999-06-01 00:00:00","client_upload_time":"1970-01-01 00:00:00","server_received_time":"9999-12-31 00:00:00"}"#;
        let past = r#"{"client_event_time":"1970-01-02 00:00:00","client_upload_time":"9999-12-31 00:00:00","server_received_time":"1970-01-01 00:00:00"}"#;
        for line in [future, past] {
            let err = norm(line).unwrap_err();
            assert!(err.0.starts_with("field \"event_time\""), "{err}");
            assert!(err.0.contains("0000-9999"), "{err}");
        }
        // The same clocks with an event_time of the event's own are fine.
        let own = future.replacen('{', r#"{"event_time":"2020-01-01 00:00:00","#, 1);
        assert_eq!(norm(&own).unwrap()["event_time"], "2020-01-01 00:00:00.000000");
    }

    #[test]
    fn ids_beyond_64_bits_are_invalid_records_naming_the_field() {
        let n = Normalizer::new("187520", TimestampFormat::Amplitude);
        let mut out = ExportEvent::default();
        for (field, value) in [("amplitude_id", "9999999999999999999"), ("session_id", "\"-9223372036854775809\""), ("event_id", "18446744073709551615")] {
            let line = format!(r#"{{"event_type":"x","{field}":{value}}}"#);
            let err = n.normalize(line.as_bytes(), &mut out).unwrap_err().0;
            assert!(err.contains(field) && err.contains("an integer"), "{field}: {err}");
        }
        n.normalize(br#"{"event_type":"x","amplitude_id":9223372036854775807,"session_id":-9223372036854775808}"#, &mut out).unwrap();
    }

    #[test]
    fn timestamps_follow_the_connection_format_and_schema_is_an_integer() {
        let line = r#"{"client_event_time":"2020-11-24T09:59:55.977Z","$schema":"12"}"#;
        let amplitude = norm(line).unwrap();
        assert_eq!(amplitude["client_event_time"], "2020-11-24 09:59:55.977000");
        assert_eq!(amplitude["$schema"], 12);
        let mut ev = ExportEvent::default();
        Normalizer::new("1", TimestampFormat::Iso8601).normalize(line.as_bytes(), &mut ev).unwrap();
        let iso: serde_json::Value = serde_json::from_slice(&ev.line).unwrap();
        assert_eq!(iso["client_event_time"], "2020-11-24T09:59:55.977000");
        assert!(norm(r#"{"$schema":"v12"}"#).unwrap_err().0.contains("$schema"));
    }

    /// The escape bits say exactly which fields are strings with escapes (typed columns trust
    /// them instead of searching each value), after normalising and after a rewrite.
    #[test]
    fn escape_bits_match_the_values_written() {
        let lines = [
            r#"{"event_type":"play \"x\"","device_id":"d\u00e9","$insert_id":"i1","user_id":"plain","sample_rate":"0.5\n"}"#,
            r#"{"event_type":"play","device_id":"d","$insert_id":"i\\2","uuid":"u\/1","event_properties":{"k":"v\"w"},"amplitude_attribution_ids":"a\tb","sample_rate":1}"#,
            r#"{"event_type":7,"device_id":"d","$insert_id":"i3","city":"S\u00e3o Paulo","paying":"true","location_lat":"1.5"}"#,
        ];
        let normalizer = Normalizer::new("187520", TimestampFormat::Amplitude);
        let mut event = ExportEvent::default();
        let mut seen = 0;
        let check = |event: &ExportEvent| {
            for (i, name) in EXPORT_FIELDS.iter().enumerate() {
                let raw = event.field_json(i);
                let expected = raw.first() == Some(&b'"') && raw.contains(&b'\\');
                assert_eq!(event.has_escapes(i), expected, "{name} = {}", String::from_utf8_lossy(raw));
            }
        };
        for line in lines {
            normalizer.normalize(line.as_bytes(), &mut event).unwrap();
            check(&event);
            seen += (0..N).filter(|&i| event.has_escapes(i)).count();
        }
        assert_eq!(seen, 7, "every escaped string in the lines above is seen");
        // A rewrite sets the bit of a value that gains escapes and clears it where they go.
        let mut scratch = Vec::new();
        event.rewrite_fields(&mut scratch, |i, _, out| match EXPORT_FIELDS[i] {
            "city" => {
                out.extend_from_slice(b"\"plain\"");
                true
            }
            "os_name" => {
                out.extend_from_slice(br#""a\\b""#);
                true
            }
            _ => false,
        });
        check(&event);
        assert!(event.has_escapes(field_index("os_name").unwrap()) && !event.has_escapes(field_index("city").unwrap()));
    }

    #[test]
    fn uuid_is_deterministic_and_kept_when_given() {
        let a = norm(r#"{"device_id":"d","$insert_id":"x","event_type":"a"}"#).unwrap();
        let b = norm(r#"{"event_type":"a","$insert_id":"x","device_id":"d"}"#).unwrap();
        assert_eq!(a["uuid"], b["uuid"]);
        let c = norm(r#"{"device_id":"d","$insert_id":"y"}"#).unwrap();
        assert_ne!(a["uuid"], c["uuid"]);
        let given = norm(r#"{"uuid":"5f1b7c3e-0000-4000-8000-000000000001"}"#).unwrap();
        assert_eq!(given["uuid"], "5f1b7c3e-0000-4000-8000-000000000001");
    }

    #[test]
    fn coerces_losslessly_and_refuses_wrong_types() {
        let ok = norm(r#"{"app":"187520","user_id":12345,"paying":"true","location_lat":"48.5","session_id":"1579971792000"}"#).unwrap();
        assert_eq!(ok["app"], 187520);
        assert_eq!(ok["user_id"], "12345");
        assert_eq!(ok["paying"], true);
        assert_eq!(ok["location_lat"], 48.5);
        for (bad, field) in [
            (r#"{"event_properties":"oops"}"#, "event_properties"),
            (r#"{"user_id":{"a":1}}"#, "user_id"),
            (r#"{"session_id":"soon"}"#, "session_id"),
            (r#"{"client_event_time":"yesterday"}"#, "client_event_time"),
            (r#"{"paying":"maybe"}"#, "paying"),
            (r#"{"location_lat":[1]}"#, "location_lat"),
        ] {
            let err = norm(bad).unwrap_err();
            assert!(err.0.contains(field), "{bad}: {err}");
        }
        assert!(norm("[1,2]").unwrap_err().0.contains("not a JSON object"));
        assert!(norm(r#"{"a":"#).unwrap_err().0.contains("malformed JSON"));
    }
}
