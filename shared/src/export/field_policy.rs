//! A connection's field policy, compiled: which export fields and property paths are
//! dropped, pseudonymised (HMAC-SHA-256 under the connection's key) or coarsened
//! (`ip_address`, `location_lat`/`location_lng`). Applied to each event after the filter
//! and de-duplication saw its original values and before a part writer takes it, so the
//! JSON and the Parquet parts carry the same values.
//!
//! Paths are compiled once into a trie; per event only the touched fields are rewritten
//! and only the members on a path are parsed (everything else is copied as raw JSON text).
//! A dropped top-level field is written as `null`: the 49 fields, their order, the Parquet
//! schema and every table DDL stay as they are.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::{ExportError, Result};
use crate::export::schema::{field_index, field_kind, ExportEvent, FieldKind, EXPORT_FIELDS};
use crate::model::secret::Secret;

/// A path is at most this many bytes long.
pub const MAX_PATH_BYTES: usize = 256;
/// A path has at most this many segments (the top-level field included).
pub const MAX_PATH_SEGMENTS: usize = 16;
/// Each list names at most this many paths.
pub const MAX_PATHS: usize = 256;
/// `location_decimals` is at most this (6 decimals is about 0.1 m: nothing left to coarsen).
pub const MAX_LOCATION_DECIMALS: i64 = 6;
/// A pseudonymisation key has at least this many characters.
pub const MIN_KEY_CHARS: usize = 32;

const IP_ADDRESS: &str = "ip_address";
const LOCATION_FIELDS: [&str; 2] = ["location_lat", "location_lng"];
const FIX_PATHS: &str = "Write a path as a top-level export field, then property names, joined by '.' (e.g. \"user_properties.email\"); \
     end it with \".*\" for everything under a property (e.g. \"event_properties.card.*\").";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Drop,
    Hash,
}

/// One step of the path trie: the action on this member itself, the action on everything
/// under it (`.*`), or deeper paths.
#[derive(Debug, Clone, Default, PartialEq)]
struct PathNode {
    action: Option<Action>,
    all_under: Option<Action>,
    children: Vec<(String, PathNode)>,
    /// Where the rule came from (`fields.drop[1] "event_properties.card"`), for conflicts.
    origin: String,
}

/// What a policy does to one top-level field.
#[derive(Debug, Clone, PartialEq)]
enum FieldRule {
    Null,
    Hash,
    Paths(PathNode),
    TruncateIp,
    Round(u32),
}

/// A validated policy without its key: the connection checks a document with it (the key
/// may be created later, at `connections create`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldRules {
    /// (field index, rule, origin), ascending by index.
    rules: Vec<(usize, FieldRule, String)>,
    canonical: String,
    pseudonymises: bool,
}

/// The policy as a connection document gives it.
pub struct PolicyInput<'a> {
    pub drop: &'a [String],
    pub pseudonymise: &'a [String],
    pub truncate_ip: bool,
    pub location_decimals: Option<i64>,
}

impl FieldRules {
    /// Validates and compiles the paths, naming the bad entry (`fields.drop[2]`) and the fix.
    pub fn parse(input: &PolicyInput<'_>) -> Result<FieldRules> {
        let mut top: Vec<Option<(FieldRule, String)>> = vec![None; EXPORT_FIELDS.len()];
        for (list, paths, action) in [("fields.drop", input.drop, Action::Drop), ("fields.pseudonymise", input.pseudonymise, Action::Hash)] {
            if paths.len() > MAX_PATHS {
                return Err(ExportError::invalid_config(
                    list,
                    format!("names {} paths; at most {MAX_PATHS} are allowed", paths.len()),
                    "Name a common parent with \".*\" instead.",
                ));
            }
            for (i, path) in paths.iter().enumerate() {
                let origin = format!("{list}[{i}]");
                add_path(&mut top, &origin, path, action)?;
            }
        }
        if input.truncate_ip {
            claim_whole_field(&mut top, IP_ADDRESS, FieldRule::TruncateIp, "fields.truncate_ip")?;
        }
        if let Some(decimals) = input.location_decimals {
            if !(0..=MAX_LOCATION_DECIMALS).contains(&decimals) {
                return Err(ExportError::invalid_config(
                    "fields.location_decimals",
                    format!("is {decimals}; it must be between 0 and {MAX_LOCATION_DECIMALS}"),
                    "Give the number of decimals to keep: 1 is about 11 km, 2 about 1.1 km, 3 about 110 m.",
                ));
            }
            for name in LOCATION_FIELDS {
                claim_whole_field(&mut top, name, FieldRule::Round(decimals as u32), "fields.location_decimals")?;
            }
        }
        let rules: Vec<(usize, FieldRule, String)> = top.into_iter().enumerate().filter_map(|(i, r)| r.map(|(rule, origin)| (i, rule, origin))).collect();
        let sorted = |paths: &[String]| {
            let mut v = paths.to_vec();
            v.sort();
            v
        };
        let canonical = serde_json::json!({
            "drop": sorted(input.drop),
            "pseudonymise": sorted(input.pseudonymise),
            "truncate_ip": input.truncate_ip,
            "location_decimals": input.location_decimals,
        })
        .to_string();
        Ok(FieldRules { rules, canonical, pseudonymises: !input.pseudonymise.is_empty() })
    }

    /// Whether the policy changes anything (an empty policy costs nothing per event).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a key is needed.
    pub fn pseudonymises(&self) -> bool {
        self.pseudonymises
    }

    /// The compiled policy with its key, or `None` when it changes nothing.
    pub fn with_key(self, key: Option<&Secret>) -> Result<Option<FieldPolicy>> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = match (self.pseudonymises, key) {
            (false, _) => None,
            (true, None) => return Err(ExportError::invalid_config(
                "fields.key",
                "is missing, and fields.pseudonymise needs it",
                "Create the connection with `exportctl connections create`, which generates a key, or give \"key\": a random secret of at least 32 characters.",
            )),
            (true, Some(key)) => {
                check_key(key)?;
                Some(HashKey(Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes keys of any length")))
            }
        };
        let mut canonical = self.canonical.clone();
        if let Some(key) = &key {
            // The key's identity (never the key): a rotated key makes another digest.
            canonical.push_str("\nkey ");
            canonical.push_str(&key.hash_text(b"event-export field policy key id"));
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes())));
        Ok(Some(FieldPolicy { rules: self.rules, key, digest }))
    }
}

/// Refuses a key too short to resist guessing; never quotes it.
pub fn check_key(key: &Secret) -> Result<()> {
    if key.expose().chars().count() < MIN_KEY_CHARS {
        return Err(ExportError::invalid_config(
            "fields.key",
            format!("is shorter than {MIN_KEY_CHARS} characters"),
            "Leave it out to have `connections create` generate one, or give a random secret of at least 32 characters (e.g. `openssl rand -hex 32`).",
        ));
    }
    Ok(())
}

/// The keyed hash, ready to clone per value. `Debug` never shows the key.
#[derive(Clone)]
struct HashKey(Hmac<Sha256>);

impl HashKey {
    fn hash_text(&self, bytes: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(bytes);
        hex::encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey([redacted])")
    }
}

/// A compiled policy with its key, carried by the export spec.
#[derive(Debug, Clone)]
pub struct FieldPolicy {
    rules: Vec<(usize, FieldRule, String)>,
    key: Option<HashKey>,
    digest: String,
}

/// Two policies are equal when they write the same values: same rules and same key (the
/// digest covers both).
impl PartialEq for FieldPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl FieldPolicy {
    /// `sha256:` and the hex SHA-256 of the policy (lists sorted, options, and an HMAC of a
    /// fixed text under the key when it pseudonymises): recorded in each manifest.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The pseudonym of a string value (what a hashed `user_id` "u1" becomes).
    pub fn pseudonym(&self, text: &str) -> Option<String> {
        self.key.as_ref().map(|k| k.hash_text(text.as_bytes()))
    }

    /// Rewrites the event's touched fields; `scratch` is reused between events.
    pub fn apply(&self, event: &mut ExportEvent, scratch: &mut Vec<u8>) {
        let mut rules = self.rules.iter();
        let mut next = rules.next();
        event.rewrite_fields(scratch, |index, value, out| {
            while let Some((i, _, _)) = next {
                if *i < index {
                    next = rules.next();
                } else {
                    break;
                }
            }
            match next {
                Some((i, rule, _)) if *i == index => {
                    self.rewrite_field(rule, value, out);
                    true
                }
                _ => false,
            }
        });
    }

    fn rewrite_field(&self, rule: &FieldRule, value: &[u8], out: &mut Vec<u8>) {
        let raw = std::str::from_utf8(value).expect("export lines are UTF-8");
        if raw == "null" {
            out.extend_from_slice(b"null");
            return;
        }
        match rule {
            FieldRule::Null => out.extend_from_slice(b"null"),
            FieldRule::Hash => self.hash_whole(raw, out),
            FieldRule::Paths(node) => self.rewrite_container(raw, node, out),
            FieldRule::TruncateIp => match unquote(raw).and_then(|s| s.trim().parse::<IpAddr>().ok()) {
                Some(ip) => write_json_string(&truncate_ip(ip), out),
                // Not an address: nothing safe to keep.
                None => out.extend_from_slice(b"null"),
            },
            FieldRule::Round(decimals) => match raw.parse::<f64>() {
                Ok(v) => out.extend_from_slice(round_to(v, *decimals).as_bytes()),
                Err(_) => out.extend_from_slice(b"null"),
            },
        }
    }

    /// A whole value hashed: a string over its text, any other value over the compact JSON
    /// text serde_json writes for it (`1.50` as `1.5`; so `12345` and `"12345"` hash alike);
    /// `null` stays `null`.
    fn hash_whole(&self, raw: &str, out: &mut Vec<u8>) {
        let key = self.key.as_ref().expect("a policy that hashes has a key");
        let hashed = match raw.as_bytes()[0] {
            b'n' => return out.extend_from_slice(b"null"),
            b'"' => key.hash_text(unquote(raw).expect("a JSON string").as_bytes()),
            _ => key.hash_text(serde_json::from_str::<serde_json::Value>(raw).expect("export values are JSON").to_string().as_bytes()),
        };
        out.push(b'"');
        out.extend_from_slice(hashed.as_bytes());
        out.push(b'"');
    }

    /// Every scalar under a value hashed, its objects and lists kept (`card.*` pseudonymised).
    fn hash_leaves(&self, raw: &str, out: &mut Vec<u8>) {
        match raw.as_bytes()[0] {
            b'{' => {
                out.push(b'{');
                for (n, (key, value)) in members(raw).iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    write_json_string(key, out);
                    out.push(b':');
                    self.hash_leaves(value.get(), out);
                }
                out.push(b'}');
            }
            b'[' => {
                out.push(b'[');
                for (n, value) in elements(raw).iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    self.hash_leaves(value.get(), out);
                }
                out.push(b']');
            }
            _ => self.hash_whole(raw, out),
        }
    }

    /// An object or list with the paths of `node` applied under it; a scalar has nothing
    /// under it and is copied.
    fn rewrite_container(&self, raw: &str, node: &PathNode, out: &mut Vec<u8>) {
        match (raw.as_bytes()[0], node.all_under) {
            (b'{', Some(Action::Drop)) => out.extend_from_slice(b"{}"),
            (b'[', Some(Action::Drop)) => out.extend_from_slice(b"[]"),
            (b'{' | b'[', Some(Action::Hash)) => self.hash_leaves(raw, out),
            (b'{', None) => {
                out.push(b'{');
                let mut first = true;
                for (key, value) in members(raw) {
                    let child = node.children.iter().find(|(name, _)| *name == *key).map(|(_, c)| c);
                    let Some(child) = child else {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        write_json_string(&key, out);
                        out.push(b':');
                        out.extend_from_slice(value.get().as_bytes());
                        continue;
                    };
                    let value = value.get();
                    let is_container = matches!(value.as_bytes()[0], b'{' | b'[');
                    // `x.*` on a scalar: the scalar is all there is under `x`.
                    let action = child.action.or(if is_container { None } else { child.all_under });
                    if action == Some(Action::Drop) {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_json_string(&key, out);
                    out.push(b':');
                    match action {
                        Some(_) => self.hash_whole(value, out),
                        None => self.rewrite_container(value, child, out),
                    }
                }
                out.push(b'}');
            }
            // A path goes through lists: `items.sku` is `sku` in every element of `items`.
            (b'[', None) => {
                out.push(b'[');
                for (n, value) in elements(raw).iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    self.rewrite_container(value.get(), node, out);
                }
                out.push(b']');
            }
            _ => out.extend_from_slice(raw.as_bytes()),
        }
    }
}

fn add_path(top: &mut [Option<(FieldRule, String)>], origin: &str, path: &str, action: Action) -> Result<()> {
    let bad = |problem: String| ExportError::invalid_config(origin, problem, FIX_PATHS);
    let shown: String = path.chars().take(60).collect();
    if path.is_empty() {
        return Err(bad("is empty".into()));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(bad(format!("\"{shown}...\" is {} bytes long; a path is at most {MAX_PATH_BYTES}", path.len())));
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(format!("{path:?} holds a space or control character")));
    }
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(bad(format!("{path:?} has an empty segment (a leading, trailing or doubled '.', as in \"..\")")));
    }
    if segments.len() > MAX_PATH_SEGMENTS {
        return Err(bad(format!("{path:?} has {} segments; a path has at most {MAX_PATH_SEGMENTS}", segments.len())));
    }
    if let Some(pos) = segments.iter().position(|s| s.contains('*')) {
        if segments[pos] != "*" || pos != segments.len() - 1 || pos == 0 {
            return Err(bad(format!("{path:?}: '*' may only be the whole last segment after a property (\"event_properties.card.*\")")));
        }
    }
    let field = segments[0];
    let Some(index) = field_index(field) else {
        return Err(bad(format!("{path:?}: {field:?} is not an export field (see the schema in docs/CONTRACT.md)")));
    };
    let kind = field_kind(index);
    let named = format!("{origin} {path:?}");
    if segments.len() == 1 {
        let rule = match action {
            Action::Drop => FieldRule::Null,
            Action::Hash if matches!(kind, FieldKind::Str | FieldKind::Uuid) => FieldRule::Hash,
            Action::Hash => {
                return Err(bad(format!(
                    "{field:?} is not a string column, and a pseudonym is a string; only string fields (user_id, device_id, ...) and property paths can be pseudonymised"
                )))
            }
        };
        return claim(top, index, rule, named, origin);
    }
    if kind != FieldKind::Dict {
        return Err(ExportError::invalid_config(
            origin,
            format!("{path:?}: {field:?} holds no properties; only event_properties, user_properties, group_properties, groups and data have paths"),
            format!("Name the whole field (\"{field}\") instead."),
        ));
    }
    let root = match &mut top[index] {
        slot @ None => {
            *slot = Some((FieldRule::Paths(PathNode::default()), named.clone()));
            match slot {
                Some((FieldRule::Paths(node), _)) => node,
                _ => unreachable!(),
            }
        }
        Some((FieldRule::Paths(node), _)) => node,
        Some((_, other)) => return Err(conflict(origin, path, other)),
    };
    let (last, inner) = segments[1..].split_last().expect("two segments or more");
    let mut node = root;
    for segment in inner {
        if node.action.is_some() || node.all_under.is_some() {
            return Err(conflict(origin, path, &node.origin));
        }
        let at = match node.children.iter().position(|(name, _)| name == segment) {
            Some(at) => at,
            None => {
                node.children.push((segment.to_string(), PathNode::default()));
                node.children.len() - 1
            }
        };
        node = &mut node.children[at].1;
    }
    if *last == "*" {
        if node.action.is_some() || node.all_under.is_some() || !node.children.is_empty() {
            return Err(conflict(origin, path, &first_origin(node)));
        }
        node.all_under = Some(action);
    } else {
        if node.action.is_some() || node.all_under.is_some() {
            return Err(conflict(origin, path, &node.origin));
        }
        let at = match node.children.iter().position(|(name, _)| name == last) {
            Some(at) => at,
            None => {
                node.children.push((last.to_string(), PathNode::default()));
                node.children.len() - 1
            }
        };
        node = &mut node.children[at].1;
        if node.action.is_some() || node.all_under.is_some() || !node.children.is_empty() {
            return Err(conflict(origin, path, &first_origin(node)));
        }
        node.action = Some(action);
    }
    node.origin = named;
    Ok(())
}

fn claim(top: &mut [Option<(FieldRule, String)>], index: usize, rule: FieldRule, named: String, origin: &str) -> Result<()> {
    match &top[index] {
        None => {
            top[index] = Some((rule, named));
            Ok(())
        }
        Some((FieldRule::Paths(node), _)) => Err(conflict(origin, EXPORT_FIELDS[index], &first_origin(node))),
        Some((_, other)) => Err(conflict(origin, EXPORT_FIELDS[index], other)),
    }
}

fn first_origin(node: &PathNode) -> String {
    if !node.origin.is_empty() {
        return node.origin.clone();
    }
    node.children.iter().map(|(_, c)| first_origin(c)).find(|o| !o.is_empty()).unwrap_or_default()
}

fn claim_whole_field(top: &mut [Option<(FieldRule, String)>], name: &str, rule: FieldRule, origin: &str) -> Result<()> {
    let index = field_index(name).expect("a known export field");
    claim(top, index, rule, origin.to_string(), origin)
}

fn conflict(origin: &str, path: &str, other: &str) -> ExportError {
    ExportError::invalid_config(
        origin,
        format!("{path:?} overlaps {other}: a field or property is named by one rule only"),
        "Keep one of the two (a path under a dropped or pseudonymised one is already covered).",
    )
}

/// IPv4 to its /24, IPv6 to its /48; an IPv4-mapped IPv6 address is an IPv4 address.
fn truncate_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            std::net::Ipv4Addr::new(a, b, c, 0).to_string()
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => truncate_ip(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
            }
        },
    }
}

/// `v` rounded to `decimals` decimals, in JSON's shortest form (`-0` is written as `0.0`).
fn round_to(v: f64, decimals: u32) -> String {
    let scale = 10f64.powi(decimals as i32);
    let rounded = (v * scale).round() / scale;
    let rounded = if rounded == 0.0 { 0.0 } else { rounded };
    serde_json::to_string(&rounded).expect("a finite number")
}

fn unquote(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    if !raw.contains('\\') {
        return Some(Cow::Borrowed(&raw[1..raw.len() - 1]));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec");
}

/// An object's members in order, values as raw text (export values are valid JSON).
fn members(raw: &str) -> Vec<(Cow<'_, str>, &RawValue)> {
    struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);
    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Members<'de>, A::Error> {
                    let mut out = Vec::new();
                    while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                        out.push((key, map.next_value::<&'de RawValue>()?));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Members<'_>>(raw).expect("export values are JSON objects").0
}

fn elements(raw: &str) -> Vec<&RawValue> {
    serde_json::from_str::<Vec<&RawValue>>(raw).expect("export values are JSON lists")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::schema::Normalizer;
    use crate::export::timestamp::TimestampFormat;

    const KEY: &str = "k3y-for-tests-0123456789abcdef-0123456789";

    fn rules(drop: &[&str], pseudonymise: &[&str], truncate_ip: bool, location_decimals: Option<i64>) -> Result<FieldRules> {
        let drop: Vec<String> = drop.iter().map(|s| s.to_string()).collect();
        let pseudonymise: Vec<String> = pseudonymise.iter().map(|s| s.to_string()).collect();
        FieldRules::parse(&PolicyInput { drop: &drop, pseudonymise: &pseudonymise, truncate_ip, location_decimals })
    }

    fn policy(drop: &[&str], pseudonymise: &[&str], truncate_ip: bool, location_decimals: Option<i64>) -> FieldPolicy {
        rules(drop, pseudonymise, truncate_ip, location_decimals).unwrap().with_key(Some(&Secret::new(KEY))).unwrap().expect("a policy")
    }

    fn hmac_hex(text: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The line normalised, then with the policy applied, as JSON.
    fn applied(p: &FieldPolicy, line: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut ev = ExportEvent::default();
        Normalizer::new("187520", TimestampFormat::Amplitude).normalize(line.as_bytes(), &mut ev).unwrap();
        let mut scratch = Vec::new();
        p.apply(&mut ev, &mut scratch);
        for (i, name) in EXPORT_FIELDS.iter().enumerate() {
            let alone: serde_json::Value = serde_json::from_slice(ev.field_json(i)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let whole: serde_json::Value = serde_json::from_slice(&ev.line).unwrap();
            assert_eq!(alone, whole[*name], "the span of {name} follows the rewritten line");
        }
        serde_json::from_slice(&ev.line).unwrap()
    }

    fn err(r: Result<FieldRules>) -> String {
        r.expect_err("refused").to_string()
    }

    #[test]
    fn hostile_and_wrong_paths_are_refused_naming_the_entry() {
        let long = format!("event_properties.{}", "a".repeat(300));
        let deep = format!("event_properties{}", ".a".repeat(MAX_PATH_SEGMENTS));
        for (drop, expected) in [
            ("", "is empty"),
            ("event_properties..card", "empty segment"),
            ("..", "empty segment"),
            (".user_id", "empty segment"),
            ("user_properties.", "empty segment"),
            (long.as_str(), "bytes long"),
            (deep.as_str(), "segments"),
            ("event_properties.a b", "space or control"),
            ("event_properties.a\u{0}", "space or control"),
            ("emails", "\"emails\" is not an export field"),
            ("*", "'*' may only be"),
            ("event_properties.*.x", "'*' may only be"),
            ("event_properties.car*", "'*' may only be"),
            ("user_id.first", "holds no properties"),
            ("amplitude_attribution_ids.x", "holds no properties"),
        ] {
            let text = err(rules(&["idfa", drop], &[], false, None));
            assert!(text.contains("fields.drop[1]") && text.contains(expected), "{drop:?}: {text}");
            assert!(text.contains("fix:") || text.contains("Name the whole field") || text.contains("e.g."), "a fix is named: {text}");
        }
        let text = err(rules(&[], &["amplitude_id"], false, None));
        assert!(text.contains("fields.pseudonymise[0]") && text.contains("not a string column"), "{text}");
        let text = err(rules(&["event_properties.card"], &["event_properties.card.number"], false, None));
        assert!(text.contains("fields.pseudonymise[0]") && text.contains("overlaps fields.drop[0]"), "{text}");
        let text = err(rules(&["event_properties.card.number"], &["event_properties.card.*"], false, None));
        assert!(text.contains("overlaps fields.drop[0]"), "{text}");
        assert!(err(rules(&["user_id", "user_id"], &[], false, None)).contains("overlaps fields.drop[0]"));
        assert!(err(rules(&["ip_address"], &[], true, None)).contains("fields.truncate_ip"));
        assert!(err(rules(&[], &[], false, Some(7))).contains("fields.location_decimals: is 7"));
        assert!(err(rules(&[], &[], false, Some(-1))).contains("fields.location_decimals"));
        let many: Vec<String> = (0..=MAX_PATHS).map(|i| format!("event_properties.p{i}")).collect();
        assert!(FieldRules::parse(&PolicyInput { drop: &many, pseudonymise: &[], truncate_ip: false, location_decimals: None }).is_err());
        // What is fine.
        rules(&["idfa", "user_properties.email", "event_properties.card.*", "$insert_id"], &["user_id", "event_properties.phone", "uuid"], true, Some(0))
            .unwrap();
    }

    #[test]
    fn a_pseudonymising_policy_needs_a_long_key_and_never_shows_it() {
        let r = rules(&[], &["user_id"], false, None).unwrap();
        assert!(r.clone().with_key(None).unwrap_err().to_string().contains("fields.key: is missing"));
        let short = r.clone().with_key(Some(&Secret::new("short-key"))).unwrap_err().to_string();
        assert!(short.contains("fields.key") && !short.contains("short-key"), "{short}");
        let p = r.with_key(Some(&Secret::new(KEY))).unwrap().unwrap();
        let shown = format!("{p:?}");
        assert!(!shown.contains(KEY) && !shown.contains(&KEY[..12]), "{shown}");
        assert!(p.digest().starts_with("sha256:") && !p.digest().contains(KEY));
        // No key needed, and none used, without pseudonymise; an empty policy is no policy.
        assert!(rules(&["idfa"], &[], false, None).unwrap().with_key(None).unwrap().is_some());
        assert!(rules(&[], &[], false, None).unwrap().with_key(None).unwrap().is_none());
    }

    #[test]
    fn the_digest_names_the_rules_and_the_key_not_their_order() {
        let a = policy(&["idfa", "adid"], &["user_id"], false, None);
        let b = policy(&["adid", "idfa"], &["user_id"], false, None);
        assert_eq!(a.digest(), b.digest());
        let other_key = rules(&["idfa", "adid"], &["user_id"], false, None).unwrap().with_key(Some(&Secret::new(KEY.replace('k', "K")))).unwrap().unwrap();
        assert_ne!(a.digest(), other_key.digest(), "a rotated key is another policy");
        assert_ne!(a.digest(), policy(&["idfa"], &["user_id"], false, None).digest());
        assert_ne!(a, other_key);
    }

    #[test]
    fn top_level_fields_are_nulled_hashed_and_coarsened() {
        let p = policy(&["idfa", "user_creation_time", "event_properties"], &["user_id", "device_id"], true, Some(1));
        let line = r#"{"event_type":"e","user_id":"u1","device_id":12345,"$insert_id":"i","idfa":"AAAA","ip_address":"10.149.10.77",
            "user_creation_time":"2020-01-01 00:00:00","location_lat":48.8566,"location_lng":-0.04,"event_properties":{"a":1}}"#;
        let out = applied(&p, line);
        assert_eq!(out["idfa"], serde_json::Value::Null);
        assert_eq!(out["user_creation_time"], serde_json::Value::Null);
        assert_eq!(out["event_properties"], serde_json::Value::Null);
        assert_eq!(out["user_id"], hmac_hex("u1"));
        assert_eq!(out["device_id"], hmac_hex("12345"), "a number given for a string field is hashed as its text");
        assert_eq!(out["ip_address"], "10.149.10.0");
        assert_eq!(out["location_lat"], 48.9);
        assert_eq!(out["location_lng"], 0.0, "-0.04 rounds to 0, never -0");
        assert_eq!(out["event_type"], "e");
        let keys: Vec<&String> = out.keys().collect();
        assert_eq!(keys, EXPORT_FIELDS.iter().collect::<Vec<_>>(), "49 fields, in order");
        // Missing values stay null; a value that is no address is not kept.
        let out = applied(&p, r#"{"event_type":"e","ip_address":"not an ip"}"#);
        assert_eq!((&out["user_id"], &out["ip_address"], &out["location_lat"]), (&serde_json::Value::Null, &serde_json::Value::Null, &serde_json::Value::Null));
    }

    #[test]
    fn a_dropped_timestamp_is_null_in_the_typed_view_too() {
        let p = policy(&["user_creation_time"], &[], false, None);
        let mut ev = ExportEvent::default();
        Normalizer::new("1", TimestampFormat::Amplitude)
            .normalize(br#"{"user_creation_time":"2020-01-01 00:00:00","client_event_time":"2020-01-02 00:00:00"}"#, &mut ev)
            .unwrap();
        let ucreation = field_index("user_creation_time").unwrap();
        assert!(ev.timestamp(ucreation).is_some());
        p.apply(&mut ev, &mut Vec::new());
        assert_eq!(ev.timestamp(ucreation), None);
        assert!(ev.timestamp(field_index("client_event_time").unwrap()).is_some(), "other times stay");
    }

    #[test]
    fn ip_addresses_are_cut_to_their_network() {
        for (given, expected) in [
            ("1.2.3.4", "1.2.3.0"),
            ("255.255.255.255", "255.255.255.0"),
            ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
            ("::1", "::"),
            ("::ffff:192.0.2.128", "192.0.2.0"),
            (" 1.2.3.4 ", "1.2.3.0"),
        ] {
            assert_eq!(truncate_ip(given.trim().parse().unwrap()), expected, "{given}");
        }
        assert_eq!(round_to(48.8566, 2), "48.86");
        assert_eq!(round_to(2.35, 0), "2.0");
        assert_eq!(round_to(-122.4194, 3), "-122.419");
    }

    #[test]
    fn property_paths_reach_nested_members_lists_and_everything_under() {
        let p = policy(
            &["user_properties.email", "event_properties.card.*", "event_properties.items.secret", "event_properties.meta.tags.*", "data.nope.deeper"],
            &["event_properties.phone", "event_properties.items.sku", "event_properties.profile.*", "user_properties.ids"],
            false,
            None,
        );
        let line = r#"{"event_type":"e",
            "user_properties":{"email":"a@b.c","plan":"free","ids":[1,"x",{"z":true}],"n\u00e9":1},
            "event_properties":{"phone":5551234,"card":{"number":"4111","exp":"12/30"},"keep":1.50,
                "items":[{"sku":"S1","secret":"x","qty":2},{"sku":null},"loose",[{"sku":"S2"}]],
                "meta":{"tags":"single"},"profile":{"name":"Ann","age":31,"nested":{"pet":"cat"},"list":["a",null]}},
            "data":{"path":"/x"}}"#;
        let out = applied(&p, line);
        let up = &out["user_properties"];
        assert!(up.get("email").is_none(), "dropped");
        assert_eq!(up["plan"], "free");
        assert_eq!(up["né"], 1, "untouched members survive (their key re-escaped)");
        assert_eq!(up["ids"], hmac_hex(r#"[1,"x",{"z":true}]"#), "a list under a hashed path is hashed as its compact JSON");
        let ep = &out["event_properties"];
        assert_eq!(ep["phone"], hmac_hex("5551234"), "a number is hashed over its JSON text, written as a string");
        assert_eq!(ep["card"], serde_json::json!({}), "everything under card dropped, card kept");
        assert_eq!(ep["items"][0], serde_json::json!({"sku": hmac_hex("S1"), "qty": 2}));
        assert_eq!(ep["items"][1], serde_json::json!({"sku": null}), "null stays null");
        assert_eq!(ep["items"][2], "loose");
        assert_eq!(ep["items"][3], serde_json::json!([{"sku": hmac_hex("S2")}]), "lists in lists are walked");
        assert!(ep.get("meta").unwrap().get("tags").is_none(), "a scalar named by `.*` is all there is under it: dropped");
        assert_eq!(
            ep["profile"],
            serde_json::json!({"name": hmac_hex("Ann"), "age": hmac_hex("31"), "nested": {"pet": hmac_hex("cat")}, "list": [hmac_hex("a"), null]})
        );
        let mut ev = ExportEvent::default();
        Normalizer::new("187520", TimestampFormat::Amplitude).normalize(line.as_bytes(), &mut ev).unwrap();
        p.apply(&mut ev, &mut Vec::new());
        assert!(std::str::from_utf8(&ev.line).unwrap().contains(r#""keep":1.50"#), "untouched values keep their exact text");
        assert_eq!(out["data"], serde_json::json!({"path": "/x"}), "a missing path changes nothing");
        // Missing containers and non-object values where a path expects an object.
        let out = applied(&p, r#"{"event_type":"e","event_properties":{"card":"4111","items":7},"user_properties":{}}"#);
        assert_eq!(out["event_properties"], serde_json::json!({"items": 7}), "card.* on a scalar drops it; a path through a number stops");
        assert_eq!(out["user_properties"], serde_json::json!({}));
    }
}
