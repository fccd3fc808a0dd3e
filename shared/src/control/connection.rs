//! Connections: one project → one destination (or two: events and merged IDs apart).
//! Validated once when loaded, so everything downstream can trust them.

use serde::{Deserialize, Serialize};

use crate::error::{ExportError, Result};
use crate::export::field_policy::{check_key, FieldRules, PolicyInput};
use crate::export::filter::Filter;
use crate::export::layout::ExportLayout;
use crate::export::spec::ExportSpec;
use crate::export::timestamp::TimestampFormat;
use crate::hour::UtcHour;
use crate::model::destination::Destination;
use crate::model::fields::{validate_email, validate_http_url, validate_id, validate_numeric_id};
use crate::model::format::{PartFormat, TableFormat};
use crate::model::layout_kind::LayoutKind;
use crate::model::secret::Secret;

/// Kind of Amplitude project; portfolio projects aggregate others and are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProjectKind {
    #[default]
    Standard,
    Portfolio,
}

/// Which data a connection exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataKinds {
    #[serde(default = "yes")]
    pub events: bool,
    #[serde(default = "yes")]
    pub merged_ids: bool,
}

fn yes() -> bool {
    true
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Default for DataKinds {
    fn default() -> Self {
        DataKinds { events: true, merged_ids: true }
    }
}

/// A connection's webhook for "Hour Exported" events: each POST carries an HMAC-SHA256
/// signature made with `secret`, so the receiver knows the event is ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    pub secret: Secret,
}

/// A connection's field policy as its document gives it (`"fields"`): property paths and
/// fields to drop (written as `null` at the top level) or pseudonymise, and coarsening of
/// `ip_address` and the location. Compiled by [`FieldRules`]; the key is a sealed secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pseudonymise: Vec<String>,
    /// `ip_address` to its /24 (IPv4) or /48 (IPv6).
    #[serde(default, skip_serializing_if = "is_default")]
    pub truncate_ip: bool,
    /// `location_lat` and `location_lng` rounded to this many decimals (0-6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_decimals: Option<i64>,
    /// The HMAC-SHA-256 key of `pseudonymise`: generated at create when absent, sealed in
    /// the control store (bound to the connection and `fields.key`), never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
}

impl FieldsPolicy {
    /// The validated rules (paths compiled), without the key.
    pub fn rules(&self) -> Result<FieldRules> {
        FieldRules::parse(&PolicyInput {
            drop: &self.drop,
            pseudonymise: &self.pseudonymise,
            truncate_ip: self.truncate_ip,
            location_decimals: self.location_decimals,
        })
    }
}

/// A connection as stored in the control store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    #[serde(default)]
    pub project_kind: ProjectKind,
    #[serde(default)]
    pub export: DataKinds,
    /// Filter conditions (see [`Filter`]); validated when the connection is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    pub destination: Destination,
    /// Optional separate destination for merged IDs; defaults to `destination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_ids_destination: Option<Destination>,
    #[serde(default)]
    pub admins: Vec<String>,
    pub creator: String,
    #[serde(default = "yes")]
    pub complete_markers: bool,
    /// `amplitude` (`2020-11-24 09:59:55.977000`, the default) or `iso8601` (`...T...`).
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    /// Event parts as `json` (gzipped JSON lines, the default) or `parquet`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub format: PartFormat,
    /// `amplitude` (flat, the default) or `hive` (`dt=yyyy-MM-dd/hour=HH/` folders).
    #[serde(default, skip_serializing_if = "is_default")]
    pub layout: LayoutKind,
    /// `files` (the default) or `delta`: the Parquet parts also form a Delta Lake table.
    #[serde(default, skip_serializing_if = "is_default")]
    pub table: TableFormat,
    /// Where an "Hour Exported" event is also POSTed, signed with the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// A Slack-compatible incoming-webhook URL that failure notices are posted to as text.
    /// The URL is its own credential, so it is sealed like a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_webhook: Option<Secret>,
    /// Fields to drop, pseudonymise or coarsen in the event parts (see [`FieldsPolicy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<FieldsPolicy>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// RFC 3339 creation time; set by the control store when absent.
    #[serde(default)]
    pub created: Option<String>,
    /// The first hour owed when it is earlier than the creation day: the hour where the
    /// previous connection on the same place (same organisation and project), disabled or
    /// deleted less than 24 hours before this one was created, stopped. Set by the control
    /// store at create; whatever a connection file says here is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owes_from: Option<UtcHour>,
}

impl Connection {
    /// Parses and validates a connection document, naming the first bad field.
    pub fn from_json(text: &str) -> Result<Self> {
        let conn: Connection = serde_json::from_str(text).map_err(|e| document_error(text, &e))?;
        conn.validate()?;
        Ok(conn)
    }

    /// Checks every rule a connection must meet before it can be stored or run.
    pub fn validate(&self) -> Result<()> {
        validate_id("id", &self.id)?;
        validate_numeric_id("org_id", &self.org_id)?;
        validate_numeric_id("project_id", &self.project_id)?;
        if self.project_kind == ProjectKind::Portfolio {
            return Err(ExportError::invalid_config(
                "project_kind",
                format!("project {} is a portfolio project, which cannot be exported", self.project_id),
                "Connect each of the portfolio's source projects instead.",
            ));
        }
        if !self.export.events && !self.export.merged_ids {
            return Err(ExportError::invalid_config("export", "exports neither events nor merged_ids", "Enable at least one."));
        }
        self.destination.validate("destination")?;
        if let Some(d) = &self.merged_ids_destination {
            d.validate("merged_ids_destination")?;
        }
        if let Some(f) = &self.filter {
            Filter::parse(f)?;
        }
        if self.table == TableFormat::Delta && self.format != PartFormat::Parquet {
            return Err(ExportError::invalid_config(
                "table",
                format!("is delta but the parts are {}: a Delta table holds Parquet files only", self.format),
                "Add \"format\": \"parquet\" to the connection, or remove \"table\".",
            ));
        }
        for (i, email) in self.admins.iter().enumerate() {
            validate_email(&format!("admins[{i}]"), email)?;
        }
        validate_email("creator", &self.creator)?;
        if let Some(hook) = &self.webhook {
            validate_http_url("webhook.url", &hook.url)?;
            if hook.secret.expose().len() < 16 {
                return Err(ExportError::invalid_config(
                    "webhook.secret",
                    "is shorter than 16 characters",
                    "Give a random secret of at least 16 characters (e.g. `openssl rand -hex 32`); the receiver checks each POST's signature with it.",
                ));
            }
        }
        if let Some(url) = &self.failure_webhook {
            validate_http_url("failure_webhook", url.expose())?;
        }
        if let Some(fields) = &self.fields {
            fields.rules()?;
            if let Some(key) = &fields.key {
                check_key(key)?;
            }
        }
        Ok(())
    }

    /// Gives a policy that pseudonymises a new random key (64 hex characters) when the
    /// document brings none; called at create, before the key is sealed.
    pub fn ensure_field_key(&mut self) -> Result<()> {
        if let Some(fields) = &mut self.fields {
            if fields.key.is_none() && fields.rules()?.pseudonymises() {
                let mut bytes = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
                fields.key = Some(Secret::new(hex::encode(bytes)));
            }
        }
        Ok(())
    }

    /// The rules a new connection must meet beyond [`Connection::validate`]: someone to tell.
    /// Stored connections from earlier releases without admins still load (their creator
    /// is told); new ones are refused.
    pub fn validate_new(&self) -> Result<()> {
        self.validate()?;
        if self.admins.is_empty() {
            return Err(ExportError::invalid_config(
                "admins",
                "lists nobody: a connection needs at least one administrator, who is emailed when its destination fails",
                "Add the address of at least one administrator, e.g. \"admins\": [\"data-team@example.com\"].",
            ));
        }
        Ok(())
    }

    pub fn compiled_filter(&self) -> Result<Option<Filter>> {
        self.filter.as_ref().map(Filter::parse).transpose()
    }

    /// What the export pipeline needs of this connection, and nothing else; `Err` only for
    /// a filter or field policy that no longer compiles (checked when the connection was
    /// loaded), or a policy that pseudonymises without a key (a file never created).
    pub fn export_spec(&self) -> Result<ExportSpec> {
        Ok(ExportSpec {
            connection_id: self.id.clone(),
            project_id: self.project_id.clone(),
            org_id: self.org_id.clone(),
            events: self.export.events,
            merged_ids: self.export.merged_ids,
            events_prefix: self.destination.prefix().to_string(),
            merged_ids_prefix: self.merged_ids_destination().prefix().to_string(),
            layout: self.layout,
            format: self.format,
            table: self.table,
            timestamp_format: self.timestamp_format,
            complete_markers: self.complete_markers,
            filter: self.compiled_filter()?,
            field_policy: match &self.fields {
                Some(fields) => fields.rules()?.with_key(fields.key.as_ref())?,
                None => None,
            },
        })
    }

    /// Where this connection's event parts (and, with events, its markers) go.
    pub fn events_layout(&self) -> ExportLayout {
        ExportLayout::new(self.destination.prefix(), &self.project_id, &self.org_id).with(self.layout, self.format)
    }

    /// Where this connection's merged-IDs files go.
    pub fn merged_ids_layout(&self) -> ExportLayout {
        ExportLayout::new(self.merged_ids_destination().prefix(), &self.project_id, &self.org_id).with(self.layout, self.format)
    }

    /// Every secret the connection holds, by field path (`destination.sas_token`,
    /// `webhook.secret`, ...): sealed in the control store, opened to use them.
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut Secret)> {
        let mut out = Vec::new();
        let destinations =
            std::iter::once(("destination", &mut self.destination)).chain(self.merged_ids_destination.iter_mut().map(|d| ("merged_ids_destination", d)));
        for (field, dest) in destinations {
            out.extend(dest.secrets_mut().into_iter().map(|(name, s)| (format!("{field}.{name}"), s)));
        }
        if let Some(hook) = &mut self.webhook {
            out.push(("webhook.secret".to_string(), &mut hook.secret));
        }
        if let Some(url) = &mut self.failure_webhook {
            out.push(("failure_webhook".to_string(), url));
        }
        if let Some(key) = self.fields.as_mut().and_then(|f| f.key.as_mut()) {
            out.push(("fields.key".to_string(), key));
        }
        out
    }

    pub fn merged_ids_destination(&self) -> &Destination {
        self.merged_ids_destination.as_ref().unwrap_or(&self.destination)
    }

    /// Admins and creator, without repeats: who is told when the destination breaks.
    pub fn recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.admins.iter().chain(std::iter::once(&self.creator)) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(e)) {
                out.push(e.clone());
            }
        }
        out
    }
}

/// A connection document serde refused, as the operator fixes it: a value of the wrong
/// type names its field's path (`destination.bucket`, `admins[1]`) and what was expected.
/// serde names only a line and column, and cannot name a field inside an internally tagged
/// destination at all, so the field is found by taking values out of the document one at
/// a time (see [`culprit`]). The refused value itself is never shown: it may be a secret.
fn document_error(text: &str, err: &serde_json::Error) -> ExportError {
    let whole = || ExportError::invalid_config("connection", format!("not a valid connection document: {err}"), "See README: Connections for the fields.");
    if !err.is_data() {
        return whole();
    }
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else {
        return whole();
    };
    // Refusals of a value (not a missing field): the ones a field's path explains.
    let Some(reference) = serde_json::from_value::<Connection>(doc.clone()).err().map(|e| e.to_string()) else {
        return whole();
    };
    if !["invalid type", "invalid value", "invalid length", "unknown field", "unknown variant"].iter().any(|p| reference.starts_with(p)) {
        return whole();
    }
    let path = culprit(&doc, Vec::new(), &reference);
    let Some(value) = lookup(&doc, &path).filter(|_| !path.is_empty()) else {
        return whole();
    };
    let field = path_text(&path);
    // The line and column belong to this refusal only when serde stopped at the same one.
    let at = if err.to_string().starts_with(&reference) { format!(" (line {}, column {})", err.line(), err.column()) } else { String::new() };
    let problem = match reference.split_once(", expected ") {
        Some((kind, expected)) if kind.starts_with("invalid") => format!("expected {}, found {}{at}", plain_expected(expected), kind_of(value)),
        // Unknown fields and variants: serde's words name only keys and allowed values.
        _ => format!("{reference}{at}"),
    };
    ExportError::invalid_config(field.clone(), problem, format!("Fix `{field}` in the connection file (README: Connections describes every field)."))
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn path_text(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => out.push_str(&format!(".{k}")),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn lookup<'v>(doc: &'v serde_json::Value, path: &[Step]) -> Option<&'v serde_json::Value> {
    path.iter().try_fold(doc, |v, step| match step {
        Step::Key(k) => v.get(k),
        Step::Index(i) => v.get(*i),
    })
}

/// The value serde refused: the child whose removal changes the refusal (to none, to
/// "missing field" if it is required, or to another value's), followed down as deep as it
/// goes. Removing any other child leaves the same refusal, except the tag of an internally
/// tagged destination (`type`): without it nothing else is read, so it is the culprit only
/// when no other child is.
fn culprit(doc: &serde_json::Value, path: Vec<Step>, reference: &str) -> Vec<Step> {
    let children: Vec<Step> = match lookup(doc, &path) {
        Some(serde_json::Value::Object(map)) => map.keys().map(|k| Step::Key(k.clone())).collect(),
        Some(serde_json::Value::Array(items)) => (0..items.len()).map(Step::Index).collect(),
        _ => return path,
    };
    let mut tag = None;
    for child in children {
        let mut trial = doc.clone();
        let removed = match (lookup_mut(&mut trial, &path), &child) {
            (Some(serde_json::Value::Object(map)), Step::Key(k)) => map.remove(k).is_some(),
            (Some(serde_json::Value::Array(items)), Step::Index(i)) => {
                items.remove(*i);
                true
            }
            _ => false,
        };
        let changed = removed && serde_json::from_value::<Connection>(trial).err().map(|e| e.to_string()).as_deref() != Some(reference);
        if !changed {
            continue;
        }
        if child == Step::Key("type".into()) {
            tag = Some(child);
            continue;
        }
        return culprit(doc, [path, vec![child]].concat(), reference);
    }
    match tag {
        Some(tag) => [path, vec![tag]].concat(),
        None => path,
    }
}

fn lookup_mut<'v>(doc: &'v mut serde_json::Value, path: &[Step]) -> Option<&'v mut serde_json::Value> {
    path.iter().try_fold(doc, |v, step| match step {
        Step::Key(k) => v.get_mut(k),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// serde's name of the expected type in the words of a JSON document.
fn plain_expected(expected: &str) -> String {
    let expected = expected.trim();
    match expected {
        "a sequence" => "a list".into(),
        "a map" => "an object".into(),
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "variant identifier" => "a string (one of the allowed names)".into(),
        e if e.starts_with("struct ") || e.starts_with("internally tagged enum") => "an object".into(),
        e => e.to_string(),
    }
}

/// What kind of JSON value was given, never the value (it may be a secret).
fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "true or false",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::destination::AzureAuth;

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn the_export_spec_carries_what_the_pipeline_needs_and_no_secret() {
        let conn = Connection::from_json(
            r#"{"id":"c1","org_id":"42","project_id":"187520","creator":"c@example.com","format":"parquet","layout":"hive",
                "timestamp_format":"iso8601","complete_markers":false,"export":{"events":true,"merged_ids":true},
                "filter":{"event_type":{"in":["purchase"]}},
                "destination":{"type":"local","path":"/data/a","prefix":"events/"},
                "merged_ids_destination":{"type":"local","path":"/data/b","prefix":"ids"},
                "webhook":{"url":"https://hooks.example.com/x","secret":"0123456789abcdef-secret"}}"#,
        )
        .unwrap();
        let spec = conn.export_spec().unwrap();
        assert_eq!((spec.connection_id.as_str(), spec.project_id.as_str(), spec.org_id.as_str()), ("c1", "187520", "42"));
        assert_eq!((spec.events, spec.merged_ids, spec.complete_markers), (true, true, false));
        assert_eq!((spec.events_prefix.as_str(), spec.merged_ids_prefix.as_str()), ("events/", "ids"));
        assert_eq!((spec.format, spec.layout, spec.timestamp_format), (PartFormat::Parquet, LayoutKind::Hive, TimestampFormat::Iso8601));
        assert_eq!(spec.filter, conn.compiled_filter().unwrap());
        assert!(spec.filter.is_some());
        let hour = UtcHour::parse("2020-01-25T17").unwrap();
        assert_eq!(spec.events_layout().part_key(hour, 0), conn.events_layout().part_key(hour, 0));
        assert_eq!(spec.merged_ids_layout().merged_ids_key(hour), conn.merged_ids_layout().merged_ids_key(hour));
        assert!(!format!("{spec:?}").contains("0123456789abcdef"), "the spec holds no secret");
    }

    #[test]
    fn the_field_policy_is_validated_compiled_into_the_spec_and_its_key_is_a_secret() {
        let doc = |fields: &str| {
            format!(
                r#"{{"id":"c1","org_id":"42","project_id":"187520","creator":"c@example.com","destination":{{"type":"local","path":"/d"}},"fields":{fields}}}"#
            )
        };
        let key = "0123456789abcdef0123456789abcdef-key";
        let mut conn =
            Connection::from_json(&doc(&format!(r#"{{"drop":["idfa"],"pseudonymise":["user_id"],"truncate_ip":true,"location_decimals":1,"key":"{key}"}}"#)))
                .unwrap();
        let spec = conn.export_spec().unwrap();
        let policy = spec.field_policy.as_ref().expect("compiled into the spec");
        assert!(!format!("{spec:?} {conn:?}").contains(key), "Debug never shows the key");
        assert!(policy.digest().starts_with("sha256:"));
        let secrets: Vec<String> = conn.secrets_mut().into_iter().map(|(field, _)| field).collect();
        assert_eq!(secrets, ["fields.key"], "the key is sealed with the other secrets");
        // Without a key, a pseudonymising policy gets one at create; the spec refuses until then.
        let mut keyless = Connection::from_json(&doc(r#"{"pseudonymise":["device_id"]}"#)).unwrap();
        assert!(keyless.export_spec().unwrap_err().to_string().contains("fields.key"));
        keyless.ensure_field_key().unwrap();
        let made = keyless.fields.as_ref().unwrap().key.clone().unwrap();
        assert_eq!(made.expose().len(), 64);
        keyless.ensure_field_key().unwrap();
        assert_eq!(keyless.fields.as_ref().unwrap().key.as_ref(), Some(&made), "an existing key is kept");
        assert!(keyless.export_spec().unwrap().field_policy.is_some());
        // No pseudonymise: no key made; an empty policy is no policy (no per-event work).
        let mut drop_only = Connection::from_json(&doc(r#"{"drop":["adid"]}"#)).unwrap();
        drop_only.ensure_field_key().unwrap();
        assert!(drop_only.fields.as_ref().unwrap().key.is_none());
        assert!(Connection::from_json(&doc("{}")).unwrap().export_spec().unwrap().field_policy.is_none());
        // Round trip through the stored form keeps it.
        conn.created = None;
        let back: Connection = serde_json::from_str(&serde_json::to_string(&conn).unwrap()).unwrap();
        assert_eq!(back, conn);
        let err = Connection::from_json(&doc(r#"{"drop":["event_properties.card..number"]}"#)).unwrap_err().to_string();
        assert!(err.contains("fields.drop[0]") && err.contains("empty segment"), "{err}");
    }

    #[test]
    fn azure_credentials_are_read_and_checked_once() {
        let secret = Some(Secret::new("s3cret"));
        let sas = Some(Secret::new("sv=2024-01-01&sp=rwdl&sig=abc"));
        let sp = AzureAuth::from_fields("destination", &some("t"), &some("c"), &secret, &None).unwrap();
        assert_eq!(sp.principal(), "service principal c (tenant t)");
        assert!(!format!("{sp:?}").contains("s3cret"));
        // A complete service principal wins over a SAS token given as well.
        assert!(matches!(AzureAuth::from_fields("d", &some("t"), &some("c"), &secret, &sas).unwrap(), AzureAuth::ServicePrincipal { .. }));
        assert!(matches!(AzureAuth::from_fields("d", &None, &None, &None, &sas).unwrap(), AzureAuth::Sas { .. }));

        let refused = |e: ExportError| e.to_string();
        assert!(refused(AzureAuth::from_fields("d", &some("t"), &None, &secret, &sas).unwrap_err()).contains("together"));
        assert!(refused(AzureAuth::from_fields("d", &None, &None, &None, &None).unwrap_err()).contains("no credentials"));
        assert!(refused(AzureAuth::from_fields("d", &some("t"), &some("c"), &Some(Secret::new("")), &None).unwrap_err()).contains("client_secret"));
        let unsigned = AzureAuth::from_fields("d", &None, &None, &None, &Some(Secret::new("sv=2024-01-01&sp=r"))).unwrap_err();
        assert!(refused(unsigned).contains("d.sas_token"));
    }

    #[test]
    fn email_addresses_are_single_plain_mailboxes() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", ["b", "c", "d", "e", "f"].map(|c| c.repeat(60)).join("."));
        let long_label = format!("a@{}.com", "b".repeat(64));
        let bad: Vec<(&str, &str)> = vec![
            ("a@b.com, evil@x.com", "list"),
            ("a@b.com,evil@x.com", "list"),
            ("a@b.com;evil@x.com", "list"),
            ("Name <a@b.com>", "angle brackets"),
            ("<a@b.com>", "angle brackets"),
            ("\"a b\"@c.com", "quoted"),
            ("\"a\"@c.com", "quoted"),
            ("a@b.com\r\nBcc: x@y.com", "control character"),
            ("a@b.com\nBcc: x@y.com", "control character"),
            ("a@b.com\u{0}", "control character"),
            ("a\t@b.com", "control character"),
            ("a b@c.com", "space"),
            ("a..b@c.com", "two dots"),
            (".a@b.com", "starts or ends with a dot"),
            ("a.@b.com", "starts or ends with a dot"),
            ("a@b..com", "two dots in a row"),
            ("a@.b.com", "starts or ends with a dot"),
            ("a@b.com.", "starts or ends with a dot"),
            ("a@-b.com", "hyphen"),
            ("a@b-.com", "hyphen"),
            ("a@localhost", "no top-level domain"),
            ("a@b.c", "not a top-level domain"),
            ("a@b.c0m", "not a top-level domain"),
            ("a@b_c.com", "only letters, digits, hyphens"),
            ("a@[127.0.0.1]", "only letters, digits, hyphens"),
            ("a@bücher.de", "xn--"),
            ("jörg@b.com", "not allowed before"),
            ("a(b)@c.com", "not allowed before"),
            ("", "empty"),
            ("a", "no '@'"),
            ("a@b@c.com", "more than one '@'"),
            ("@b.com", "nothing before"),
            ("a@", "nothing after"),
            (&long_local, "64"),
            (&long_total, "254"),
            (&long_label, "63"),
        ];
        for (email, why) in &bad {
            let err = validate_email("admins[1]", email).expect_err(&format!("{email:?} must be refused"));
            let text = err.to_string();
            assert!(text.starts_with(&format!("invalid configuration: admins[1]: {email:?} is not a single email address (")), "{email:?}: {text}");
            assert!(text.contains(why), "{email:?} should be refused for {why:?}: {text}");
            assert!(text.contains("name@example.com"), "the fix is named: {text}");
            assert!(!text.contains('\r') && !text.contains('\n'), "the message never carries the raw line break: {text:?}");
        }
        let good = [
            "a@b.co",
            "first.last@example.com",
            "o'brien+exports@mail.example.co.uk",
            "ops-team_1@sub-domain.example.io",
            "x@xn--bcher-kva.de",
            "a@b.xn--p1ai",
            "UPPER@EXAMPLE.COM",
        ];
        for email in good {
            validate_email("creator", email).unwrap_or_else(|e| panic!("{email:?} is a valid address: {e}"));
        }
        let max_local = format!("{}@example.com", "a".repeat(64));
        validate_email("creator", &max_local).unwrap();
    }

    #[test]
    fn a_connection_naming_a_bad_admin_or_creator_is_refused_with_the_field() {
        let doc = |admins: &str, creator: &str| {
            format!(
                r#"{{"id":"c1","org_id":"42","project_id":"187520","destination":{{"type":"local","path":"/tmp/x"}},"admins":{admins},"creator":{creator}}}"#
            )
        };
        let err = Connection::from_json(&doc(r#"["ok@example.com", "a@b.com, evil@x.com"]"#, r#""c@example.com""#)).unwrap_err();
        assert!(err.to_string().contains(r#"admins[1]: "a@b.com, evil@x.com" is not a single email address"#), "{err}");
        let err = Connection::from_json(&doc("[]", r#""Creator <c@example.com>""#)).unwrap_err();
        assert!(err.to_string().contains(r#"creator: "Creator <c@example.com>" is not a single email address"#), "{err}");
        assert!(Connection::from_json(&doc(r#"["ok@example.com"]"#, r#""c@example.com""#)).is_ok());
    }

    #[test]
    fn kms_key_arns_are_key_or_alias_arns() {
        let s3 = |key: &str| Destination::aws_s3("acme-events", "", "us-east-1", Some(key.into()));
        for good in [
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:alias/exports",
            "arn:aws:kms:us-east-1:111122223333:alias/team/exports_1",
        ] {
            s3(good).validate("destination").unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/exports",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms::111122223333:key/k",
            "arn:aws:kms:us-east-1:1111:key/k",
            "arn:aws:s3:us-east-1:111122223333:key/k",
            "arn:aws:kms:us-east-1:111122223333:keys/k",
            "arn:aws:kms:us-east-1:111122223333:key/k:alias/x",
            "arn:aws:kms:us-east-1:111122223333:key/k\n",
        ] {
            let err = s3(bad).validate("destination").expect_err(bad).to_string();
            assert!(err.contains("destination.kms_key_arn") && err.contains("is not a KMS key ARN") && err.contains("Give the key's full ARN"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_field_and_what_was_expected_never_the_value() {
        let base = || {
            serde_json::json!({"id": "c1", "org_id": "42", "project_id": "187520", "admins": ["admin@example.com"], "creator": "owner@example.com",
                "destination": {"type": "s3", "bucket": "acme-exports", "region": "us-east-1"}})
        };
        let refused = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut doc = base();
            edit(&mut doc);
            // Pretty-printed, so serde's refusal has a line other than 1.
            Connection::from_json(&serde_json::to_string_pretty(&doc).unwrap()).expect_err("refused").to_string()
        };
        for (edit, field, says) in [
            (
                Box::new(|d: &mut serde_json::Value| d["admins"] = "a@b.c".into()) as Box<dyn Fn(&mut serde_json::Value)>,
                "admins",
                "expected a list, found a string",
            ),
            (Box::new(|d: &mut serde_json::Value| d["admins"] = serde_json::json!(["admin@example.com", 7])), "admins[1]", "expected a string, found a number"),
            (Box::new(|d: &mut serde_json::Value| d["destination"]["bucket"] = 5.into()), "destination.bucket", "expected a string, found a number"),
            (
                Box::new(|d: &mut serde_json::Value| d["fields"] = serde_json::json!({"location_decimals": "2"})),
                "fields.location_decimals",
                "expected an integer, found a string",
            ),
            (Box::new(|d: &mut serde_json::Value| d["export"] = serde_json::json!({"events": "yes"})), "export.events", "expected a boolean, found a string"),
            (
                Box::new(|d: &mut serde_json::Value| d["destination"]["type"] = 5.into()),
                "destination.type",
                "expected a string (one of the allowed names), found a number",
            ),
            (Box::new(|d: &mut serde_json::Value| d["destination"]["bukket"] = "x".into()), "destination.bukket", "unknown field `bukket`"),
        ] {
            let err = refused(&*edit);
            assert!(err.contains(&format!("invalid configuration: {field}: {says}")), "{field}: {err}");
            assert!(err.contains(&format!("Fix `{field}`")), "{field}: {err}");
        }
        // serde's line and column are kept when they point at the same value.
        let err = refused(&|d| d["admins"] = "a@b.c".into());
        assert!(err.contains("(line ") && err.contains(", column "), "{err}");
        assert!(!err.contains("a@b.c"), "the value is not echoed: {err}");

        // A secret of the wrong type is named by its field, never shown.
        let azure = |secret: serde_json::Value| {
            let mut doc = base();
            doc["destination"] = serde_json::json!({"type": "azure", "account_url": "https://acme.blob.core.windows.net", "container": "c",
                "tenant_id": "t", "client_id": "c", "client_secret": secret});
            Connection::from_json(&doc.to_string()).expect_err("refused").to_string()
        };
        let err = azure(serde_json::json!(98765432123_u64));
        assert!(err.contains("destination.client_secret: expected a string, found a number") && !err.contains("98765432123"), "{err}");
        let err = azure(serde_json::json!(["s3cr3t-value"]));
        assert!(err.contains("destination.client_secret") && !err.contains("s3cr3t-value"), "{err}");
        let mut doc = base();
        doc["destination"] = serde_json::json!({"type": "s3", "bucket": "b-1", "region": "auto", "endpoint_url": "https://r2.example",
            "access_key_id": "AK", "secret_access_key": 1234567890123_u64});
        let err = Connection::from_json(&doc.to_string()).expect_err("refused").to_string();
        assert!(err.contains("destination.secret_access_key: expected a string") && !err.contains("1234567890123"), "{err}");

        // Not JSON at all: serde's words (line and column) are the useful ones.
        let err = Connection::from_json("{\"id\": ").unwrap_err().to_string();
        assert!(err.contains("not a valid connection document") && err.contains("line 1"), "{err}");
        // A missing field is named by serde already.
        let mut doc = base();
        doc.as_object_mut().unwrap().remove("creator");
        let err = Connection::from_json(&doc.to_string()).unwrap_err().to_string();
        assert!(err.contains("missing field `creator`"), "{err}");
    }
}
