//! The Delta log's actions as we write and read them (PROTOCOL.md of delta-io/delta,
//! "Actions"): `protocol`, `metaData`, `add`, `remove`, `txn` and `commitInfo`, one JSON
//! object per line of `_delta_log/{version:020}.json`. Actions we never write (`cdc`,
//! `domainMetadata`, ...) are ignored when read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::export::columns::{export_columns, ColumnType};
use crate::export::merged_ids::MERGE_FIELDS;
use crate::hour::UtcHour;

/// Reader and writer versions: plain Parquet files, no table features (any Delta reader
/// since 2019 reads the table; writer version 2 is what column invariants need, the lowest
/// a current writer accepts).
pub const MIN_READER_VERSION: u32 = 1;
pub const MIN_WRITER_VERSION: u32 = 2;

/// The partition columns, in order: `dt` (`yyyy-MM-dd`, string) and `hour` (0-23, integer).
pub const PARTITION_COLUMNS: [&str; 2] = ["dt", "hour"];

/// One line of a log entry. Exactly one field is set on lines we write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub protocol: Option<Protocol>,
    #[serde(rename = "metaData", skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<Metadata>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub add: Option<Add>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub remove: Option<Remove>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub txn: Option<Txn>,
    /// Free-form provenance; never part of a snapshot's state.
    #[serde(rename = "commitInfo", skip_serializing_if = "Option::is_none", default)]
    pub commit_info: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: u32,
    pub min_writer_version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    pub provider: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    pub format: Format,
    pub schema_string: String,
    pub partition_columns: Vec<String>,
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    /// Relative to the table root, URI-encoded ([`encode_path`]).
    pub path: String,
    pub partition_values: BTreeMap<String, Option<String>>,
    pub size: i64,
    pub modification_time: i64,
    pub data_change: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stats: Option<String>,
    /// `sha256`: the part's digest, as in the manifest; what tells a re-export that wrote
    /// the same bytes from one that changed the hour.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tags: Option<BTreeMap<String, Option<String>>>,
}

impl Add {
    pub fn sha256(&self) -> Option<&str> {
        self.tags.as_ref()?.get(TAG_SHA256)?.as_deref()
    }
}

/// The tag of an `add` that carries the part's sha256.
pub const TAG_SHA256: &str = "sha256";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub deletion_timestamp: Option<i64>,
    pub data_change: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub extended_file_metadata: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partition_values: Option<BTreeMap<String, Option<String>>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Txn {
    pub app_id: String,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_updated: Option<i64>,
}

/// `_delta_log/{version:020}.json`
pub fn commit_file(version: u64) -> String {
    format!("{version:020}.json")
}

/// `_delta_log/{version:020}.checkpoint.parquet`
pub fn checkpoint_file(version: u64) -> String {
    format!("{version:020}.checkpoint.parquet")
}

/// The version of a log file name (`00000000000000000012.json` → 12), and whether it is a
/// (single-file) checkpoint.
pub fn parse_log_file(name: &str) -> Option<(u64, bool)> {
    let (digits, checkpoint) = if let Some(d) = name.strip_suffix(".checkpoint.parquet") { (d, true) } else { (name.strip_suffix(".json")?, false) };
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok().map(|v| (v, checkpoint)))?
}

/// The partition values of an hour: `dt` = `yyyy-MM-dd`, `hour` = 0-23 as text.
pub fn partition_values(hour: UtcHour) -> BTreeMap<String, Option<String>> {
    BTreeMap::from([("dt".to_string(), Some(hour.date_str())), ("hour".to_string(), Some(hour.hour_unpadded()))])
}

/// Whether `values` are `hour`'s.
pub fn is_hour(values: &BTreeMap<String, Option<String>>, hour: UtcHour) -> bool {
    *values == partition_values(hour)
}

/// Which data a table holds: what its schema is and what its `txn` appIds say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableData {
    /// The events folder `P/A`: the 49 columns of the one column table.
    Events,
    /// The merged IDs' folder `P/-O`: the five merged-ID columns, all longs.
    MergedIds,
}

impl TableData {
    /// The data's name in a `txn` appId (`events`, `merged_ids`).
    pub fn name(self) -> &'static str {
        match self {
            TableData::Events => "events",
            TableData::MergedIds => "merged_ids",
        }
    }
}

/// The table schema in Delta's JSON form (Spark's StructType): the data's columns, then the
/// partition columns. Event property maps are strings (JSON text), as in the parts.
pub fn schema_string(data: TableData) -> String {
    let field = |name: &str, t: &str| serde_json::json!({"name": name, "type": t, "nullable": true, "metadata": {}});
    let mut fields: Vec<Value> = match data {
        TableData::Events => export_columns()
            .map(|c| {
                let t = match c.column_type {
                    ColumnType::Timestamp => "timestamp",
                    ColumnType::Int64 => "long",
                    ColumnType::Float64 => "double",
                    ColumnType::Boolean => "boolean",
                    ColumnType::Json | ColumnType::String => "string",
                };
                field(c.name, t)
            })
            .collect(),
        TableData::MergedIds => MERGE_FIELDS.iter().map(|name| field(name, "long")).collect(),
    };
    fields.push(field("dt", "string"));
    fields.push(field("hour", "integer"));
    serde_json::json!({"type": "struct", "fields": fields}).to_string()
}

/// A stable table id (a UUID in form) derived from where the table lives, so two writers
/// racing to create the table write the same `metaData`.
pub fn table_id(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let h = hex::encode(&d[..16]);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Characters kept as they are in an `add`/`remove` path: RFC 2396's unreserved marks, the
/// `/` between folders and the `=` of hive folders; everything else (our parts' `#` above
/// all, which would start a URI fragment) is percent-encoded.
fn keep(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b'=')
}

/// A key relative to the table root as a log path: `187520_2020-01-25_17#0.parquet` →
/// `187520_2020-01-25_17%230.parquet`.
pub fn encode_path(relative: &str) -> String {
    let mut out = String::with_capacity(relative.len() + 8);
    for &b in relative.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key a log path names, relative to the table root (`None` when it is not valid
/// percent-encoding of UTF-8).
pub fn decode_path(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_uri_encoded_and_decode_back() {
        let key = "dt=2020-01-25/hour=04/187520_2020-01-25_4#12.parquet";
        let path = encode_path(key);
        assert_eq!(path, "dt=2020-01-25/hour=04/187520_2020-01-25_4%2312.parquet");
        assert_eq!(decode_path(&path).as_deref(), Some(key));
        assert_eq!(encode_path("a b%c"), "a%20b%25c");
        assert_eq!(decode_path("a%20b%25c").as_deref(), Some("a b%c"));
        assert_eq!(decode_path("bad%2"), None);
    }

    #[test]
    fn log_file_names_carry_their_version() {
        assert_eq!(commit_file(12), "00000000000000000012.json");
        assert_eq!(parse_log_file("00000000000000000012.json"), Some((12, false)));
        assert_eq!(parse_log_file(&checkpoint_file(20)), Some((20, true)));
        assert_eq!(parse_log_file("_last_checkpoint"), None);
        assert_eq!(parse_log_file("0012.json"), None);
        assert_eq!(parse_log_file("00000000000000000012.crc"), None);
    }

    #[test]
    fn the_schema_is_the_column_table_then_the_partitions() {
        let schema: Value = serde_json::from_str(&schema_string(TableData::Events)).unwrap();
        let fields = schema["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 51);
        assert_eq!(fields[0]["name"], "server_received_time");
        assert_eq!(fields[0]["type"], "timestamp");
        assert_eq!(fields[1]["type"], "long");
        assert_eq!(fields[49]["name"], "dt");
        assert_eq!(fields[50]["type"], "integer");
        let hour = UtcHour::parse("2020-01-25T04").unwrap();
        assert_eq!(partition_values(hour)["hour"].as_deref(), Some("4"));
        assert!(is_hour(&partition_values(hour), hour));
        let merged: Value = serde_json::from_str(&schema_string(TableData::MergedIds)).unwrap();
        let names: Vec<&str> = merged["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["scope", "merge_time", "merge_server_time", "amplitude_id", "merged_amplitude_id", "dt", "hour"]);
        assert!(merged["fields"].as_array().unwrap()[..5].iter().all(|f| f["type"] == "long"));
    }

    #[test]
    fn actions_round_trip_in_the_protocols_spelling() {
        let line = r#"{"add":{"path":"a%230.parquet","partitionValues":{"dt":"2020-01-25","hour":"4"},"size":10,"modificationTime":1,"dataChange":true,"tags":{"sha256":"ab"}}}"#;
        let a: Action = serde_json::from_str(line).unwrap();
        assert_eq!(a.add.as_ref().unwrap().sha256(), Some("ab"));
        assert_eq!(serde_json::to_string(&a).unwrap(), line);
        let unknown: Action = serde_json::from_str(r#"{"cdc":{"path":"x"}}"#).unwrap();
        assert_eq!(unknown, Action::default());
    }
}
