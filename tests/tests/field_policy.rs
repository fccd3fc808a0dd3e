//! Field policies through the real exporter: an hour exported without a policy and with
//! one, as JSON and as Parquet, every value of every row compared with what an independent
//! model of the policy (written here over `serde_json::Value`) says it must be; the filter
//! sees the original values; re-exports are byte-identical and the manifest names the
//! policy's digest, never its key. Local in-memory stores only: no emulator.

use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use exporter::adapters::local::memory::MemoryStore;
use exporter::control::connection::Connection;
use exporter::export::columns::{export_columns, ColumnType};
use exporter::export::generate::{generate_hour, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
use exporter::export::layout::lake_events_prefix;
use exporter::export::manifest::Manifest;
use exporter::export::timestamp::parse_micros;
use exporter::hour::UtcHour;
use exporter::model::hour_request::ExportMode;
use exporter::ports::ObjectStore;
use hmac::{Hmac, Mac};
use integration_tests::parquet_values::parquet_cell;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Map, Value};
use sha2::Sha256;

const HOUR: &str = "2020-01-25T17";
const KEY: &str = "field-policy-test-key-0123456789abcdef";
const DROP: [&str; 6] = ["idfa", "adid", "user_creation_time", "user_properties.email", "event_properties.card.*", "event_properties.items.secret"];
const PSEUDONYMISE: [&str; 6] =
    ["user_id", "device_id", "event_properties.phone", "event_properties.items.sku", "user_properties.ids", "event_properties.profile.*"];

/// Hand-written lines beside the generated ones: nested paths, lists, missing paths,
/// non-string values under hashed paths, IPv6, escapes.
const HAND_LINES: [&str; 6] = [
    r#"{"event_type":"checkout","user_id":"u-1","device_id":"d-1","$insert_id":"h1","client_event_time":"2020-01-25 17:10:00","idfa":"IDFA-1","adid":"AD-1","user_creation_time":"2019-01-01 00:00:00","ip_address":"2001:db8:abcd:12::7","location_lat":48.8566,"location_lng":2.3522,"user_properties":{"email":"ann@example.com","plan":"pro","ids":[1,"two",{"three":3}]},"event_properties":{"phone":5551234,"card":{"number":"4111111111111111","exp":"12/30"},"items":[{"sku":"S-1","secret":"x","qty":2},{"sku":17},"loose",[{"sku":"S-2"}]],"profile":{"name":"Ann","age":31,"tags":["a",null]},"keep":1.50}}"#,
    r#"{"event_type":"view","user_id":12345,"device_id":"d-2","$insert_id":"h2","client_event_time":"2020-01-25 17:11:00","ip_address":"::ffff:192.0.2.128","location_lat":-0.04,"location_lng":-122.4194,"event_properties":{"card":"4111-as-a-string","phone":"+1 555","items":7}}"#,
    r#"{"event_type":"view","user_id":"u-3","device_id":"d-3","$insert_id":"h3","client_event_time":"2020-01-25 17:12:00","ip_address":"not an address","user_properties":{"email":null,"ids":null},"event_properties":{"profile":"flat","phone":true}}"#,
    r#"{"event_type":"view","device_id":"d-4","$insert_id":"h4","client_event_time":"2020-01-25 17:13:00","event_properties":{"phone":{"home":"1","work":[2]},"items":[]},"user_properties":{"n\u00e9":"\"quoted\""}}"#,
    r#"{"event_type":"view","user_id":"u-5","device_id":"d-5","$insert_id":"h5","client_event_time":"2020-01-25 17:14:00","event_properties":{"card":{},"profile":{}}}"#,
    r#"{"event_type":"internal","user_id":"u-6","device_id":"d-6","$insert_id":"h6","client_event_time":"2020-01-25 17:15:00","user_properties":{"email":"staff@example.com"}}"#,
];

fn hour() -> UtcHour {
    UtcHour::parse(HOUR).unwrap()
}

fn policy_doc() -> String {
    format!(r#","fields":{{"drop":{},"pseudonymise":{},"truncate_ip":true,"location_decimals":1,"key":"{KEY}"}}"#, json!(DROP), json!(PSEUDONYMISE))
}

fn conn(format: &str, extra: &str) -> Connection {
    Connection::from_json(&format!(
        r#"{{"id":"c1","org_id":"42","project_id":"187520","creator":"owner@example.com","export":{{"events":true,"merged_ids":false}},
            "format":"{format}","destination":{{"type":"local","path":"/unused","prefix":"exports"}}{extra}}}"#
    ))
    .unwrap()
}

async fn lake() -> Arc<MemoryStore> {
    let lake = Arc::new(MemoryStore::new("lake"));
    let spec = HourSpec {
        project_id: "187520".into(),
        hour: hour(),
        events: 3000,
        events_per_file: 1000,
        duplicate_every: 25,
        invalid_every: 200,
        seed: 21,
        gzip: true,
    };
    generate_hour(lake.as_ref(), &spec).await.unwrap();
    let body = HAND_LINES.join("\n") + "\n";
    lake.put(&format!("{}zz-hand.json", lake_events_prefix("187520", hour())), Bytes::from(body)).await.unwrap();
    lake
}

/// Exports the hour for `c` into a fresh store; returns the store and the manifest.
async fn export(lake: &Arc<MemoryStore>, c: &Connection) -> (Arc<MemoryStore>, Manifest) {
    let dest = Arc::new(MemoryStore::new("dest"));
    let targets = ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
    let settings = ExportSettings::new(256 << 10, 6, 2).unwrap();
    let report = export_hour(&c.export_spec().unwrap(), &targets, hour(), ExportMode::Replace, &settings).await.unwrap();
    (dest, report.manifest.expect("a manifest"))
}

/// Every exported row, in part order, as the JSON export's values or the Parquet row read
/// back into the same shape.
async fn rows(dest: &MemoryStore, manifest: &Manifest) -> Vec<Map<String, Value>> {
    let mut files = manifest.events.as_ref().unwrap().files.clone();
    files.sort_by_key(|f| f.part);
    let mut out = Vec::new();
    for f in files {
        let body = dest.get(&f.key).await.unwrap();
        if f.key.ends_with(".parquet") {
            out.extend(parquet_rows(&body));
        } else {
            for line in std::io::BufReader::new(flate2::read::GzDecoder::new(&body[..])).lines() {
                let line = line.unwrap();
                let row: Map<String, Value> = serde_json::from_str(&line).unwrap();
                let keys: Vec<&str> = row.keys().map(String::as_str).collect();
                assert_eq!(keys, export_columns().map(|c| c.name).collect::<Vec<_>>(), "49 fields in order, none left out");
                out.push(row);
            }
        }
    }
    out
}

fn parquet_rows(body: &[u8]) -> Vec<Map<String, Value>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(body)).unwrap();
    assert_eq!(reader.schema(), &exporter::export::parquet_parts::arrow_schema(), "the schema is the same with a policy");
    let mut out = Vec::new();
    for batch in reader.build().unwrap() {
        let batch: RecordBatch = batch.unwrap();
        for r in 0..batch.num_rows() {
            out.push(export_columns().enumerate().map(|(i, c)| (c.name.to_string(), parquet_cell(batch.column(i).as_ref(), r, c.column_type))).collect());
        }
    }
    out
}

/// A JSON row in the Parquet row's shape: timestamps as microseconds, scalars of string
/// columns as text.
fn typed(row: &Map<String, Value>) -> Map<String, Value> {
    export_columns()
        .map(|c| {
            let v = match (&row[c.name], c.column_type) {
                (Value::String(s), ColumnType::Timestamp) => Value::from(parse_micros(s).unwrap()),
                (Value::Number(n), ColumnType::String) => Value::from(n.to_string()),
                (Value::Bool(b), ColumnType::String) => Value::from(b.to_string()),
                (v, _) => v.clone(),
            };
            (c.name.to_string(), v)
        })
        .collect()
}

// ---- The model of the policy, independent of the exporter's raw-text rewriting. ----

fn pseudonym(v: &Value) -> Value {
    let text = match v {
        Value::Null => return Value::Null,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    Value::from(mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn hash_leaves(v: &mut Value) {
    match v {
        Value::Object(m) => m.values_mut().for_each(hash_leaves),
        Value::Array(a) => a.iter_mut().for_each(hash_leaves),
        other => *other = pseudonym(other),
    }
}

/// Applies one property path (segments after the top-level field) to `v`.
fn apply_path(v: &mut Value, path: &[&str], hash: bool) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|item| apply_path(item, path, hash)),
        Value::Object(m) if path == ["*"] => {
            if hash {
                m.values_mut().for_each(hash_leaves)
            } else {
                m.clear()
            }
        }
        Value::Object(m) => {
            let Some(member) = m.get_mut(path[0]) else { return };
            let rest = &path[1..];
            let scalar = !matches!(member, Value::Object(_) | Value::Array(_));
            if rest.is_empty() || (rest == ["*"] && scalar) {
                if hash {
                    *member = pseudonym(member);
                } else {
                    m.shift_remove(path[0]);
                }
            } else if rest == ["*"] && matches!(member, Value::Array(_)) && !hash {
                *member = json!([]);
            } else {
                apply_path(member, rest, hash);
            }
        }
        _ => {}
    }
}

fn expected(original: &Map<String, Value>) -> Map<String, Value> {
    let mut row = original.clone();
    for (paths, hash) in [(&DROP[..], false), (&PSEUDONYMISE[..], true)] {
        for path in paths {
            let segments: Vec<&str> = path.split('.').collect();
            let field = row.get_mut(segments[0]).unwrap();
            if segments.len() == 1 {
                *field = if hash { pseudonym(field) } else { Value::Null };
            } else if !field.is_null() {
                apply_path(field, &segments[1..], hash);
            }
        }
    }
    if let Some(ip) = row["ip_address"].as_str() {
        row["ip_address"] = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Value::from(format!("{}.{}.{}.0", v4.octets()[0], v4.octets()[1], v4.octets()[2])),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Value::from(format!("{}.{}.{}.0", v4.octets()[0], v4.octets()[1], v4.octets()[2])),
                None => Value::from(std::net::Ipv6Addr::new(v6.segments()[0], v6.segments()[1], v6.segments()[2], 0, 0, 0, 0, 0).to_string()),
            },
            Err(_) => Value::Null,
        };
    }
    for f in ["location_lat", "location_lng"] {
        if let Some(x) = row[f].as_f64() {
            let r = (x * 10.0).round() / 10.0;
            row[f] = json!(if r == 0.0 { 0.0 } else { r });
        }
    }
    row
}

#[tokio::test(flavor = "multi_thread")]
async fn every_value_of_every_row_follows_the_policy_in_json_and_parquet() {
    let lake = lake().await;
    let (plain_dest, plain_manifest) = export(&lake, &conn("json", "")).await;
    let (json_dest, json_manifest) = export(&lake, &conn("json", &policy_doc())).await;
    let (parquet_dest, parquet_manifest) = export(&lake, &conn("parquet", &policy_doc())).await;
    let plain = rows(&plain_dest, &plain_manifest).await;
    let json_rows = rows(&json_dest, &json_manifest).await;
    let parquet = rows(&parquet_dest, &parquet_manifest).await;
    assert!(plain.len() > 2500, "{} rows", plain.len());
    assert_eq!(json_rows.len(), plain.len(), "a policy exports the same events");
    assert_eq!(parquet.len(), plain.len());
    assert_eq!(json_manifest.events.as_ref().unwrap().accounting, plain_manifest.events.as_ref().unwrap().accounting);

    let mut hand_rows = 0;
    for (n, ((original, with_policy), from_parquet)) in plain.iter().zip(&json_rows).zip(&parquet).enumerate() {
        let want = expected(original);
        assert_eq!(with_policy, &want, "row {n} (JSON): {}", original["$insert_id"]);
        for (name, value) in &want {
            if let Value::Object(m) = value {
                assert_eq!(
                    serde_json::to_string(m).unwrap(),
                    serde_json::to_string(with_policy[name].as_object().unwrap()).unwrap(),
                    "{name}: member order kept"
                );
            }
        }
        assert_eq!(from_parquet, &typed(with_policy), "row {n} (Parquet) holds what the JSON row holds");
        if original["$insert_id"].as_str().is_some_and(|i| i.starts_with('h')) {
            hand_rows += 1;
        }
    }
    assert_eq!(hand_rows, HAND_LINES.len(), "every hand-written line was compared");

    // Spot checks of the model itself, so a wrong model cannot pass for a right exporter.
    let h1 = json_rows.iter().find(|r| r["$insert_id"] == "h1").unwrap();
    assert_eq!(h1["idfa"], Value::Null);
    assert_eq!(h1["ip_address"], "2001:db8:abcd::");
    assert_eq!(h1["location_lat"], 48.9);
    assert_eq!(h1["user_properties"], json!({"plan": "pro", "ids": pseudonym(&json!([1, "two", {"three": 3}]))}));
    assert_eq!(h1["event_properties"]["card"], json!({}));
    assert_eq!(h1["event_properties"]["items"][1], json!({"sku": pseudonym(&json!("17"))}), "17 and \"17\" hash alike");
    assert_eq!(h1["event_properties"]["profile"]["tags"], json!([pseudonym(&json!("a")), null]));
    let h2 = json_rows.iter().find(|r| r["$insert_id"] == "h2").unwrap();
    assert_eq!(h2["user_id"], pseudonym(&json!("12345")));
    assert_eq!(h2["ip_address"], "192.0.2.0");
    assert_eq!(h2["location_lat"], 0.0);
    assert!(h2["event_properties"].get("card").is_none(), "card.* on a string drops it");
    let h3 = json_rows.iter().find(|r| r["$insert_id"] == "h3").unwrap();
    assert_eq!((&h3["ip_address"], &h3["event_properties"]["profile"]), (&Value::Null, &pseudonym(&json!("flat"))));

    // No raw value the policy removes or hashes is left in any file.
    for (dest, manifest) in [(&json_dest, &json_manifest), (&parquet_dest, &parquet_manifest)] {
        for f in &manifest.events.as_ref().unwrap().files {
            let body = dest.get(&f.key).await.unwrap();
            let text = if f.key.ends_with(".parquet") {
                parquet_rows(&body).iter().map(|r| Value::Object(r.clone()).to_string()).collect::<String>()
            } else {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut s).unwrap();
                s
            };
            for raw in ["ann@example.com", "4111111111111111", "IDFA-1", "AD-1", "\"u-1\"", "user-1", "d3v1", "S-1", "5551234", "Ann"] {
                assert!(!text.contains(raw), "{}: {raw} left in the file", f.key);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn re_exports_are_byte_identical_and_the_manifest_names_the_policy_not_the_key() {
    let lake = lake().await;
    for format in ["json", "parquet"] {
        let c = conn(format, &policy_doc());
        let (first, manifest) = export(&lake, &c).await;
        let (second, _) = export(&lake, &c).await;
        assert_eq!(first.keys(), second.keys());
        for k in first.keys() {
            assert_eq!(first.get(&k).await.unwrap(), second.get(&k).await.unwrap(), "{format}: {k} differs between two exports");
        }
        let digest = c.export_spec().unwrap().field_policy.unwrap().digest().to_string();
        assert_eq!(manifest.field_policy.as_deref(), Some(digest.as_str()));
        let marker = first.keys().into_iter().find(|k| k.ends_with("_complete")).unwrap();
        let body = String::from_utf8(first.get(&marker).await.unwrap().to_vec()).unwrap();
        assert!(body.contains(&digest) && !body.contains(KEY), "{body}");
    }
    // Without a policy the manifest has no field_policy at all (byte-identical to before).
    let (plain, _) = export(&lake, &conn("json", "")).await;
    let marker = plain.keys().into_iter().find(|k| k.ends_with("_complete")).unwrap();
    assert!(!String::from_utf8(plain.get(&marker).await.unwrap().to_vec()).unwrap().contains("field_policy"));
    // Another key: other pseudonyms, another digest.
    let rotated = conn("json", &policy_doc().replace(KEY, "a-rotated-key-of-32-characters-or-more"));
    let (_, rotated_manifest) = export(&lake, &rotated).await;
    let (_, manifest) = export(&lake, &conn("json", &policy_doc())).await;
    assert_ne!(rotated_manifest.field_policy, manifest.field_policy);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_filter_sees_the_original_values() {
    let lake = lake().await;
    let filter = r#","filter":{"user_property":"email","op":"ne","value":"staff@example.com"}"#;
    let (_, plain) = export(&lake, &conn("json", filter)).await;
    let (dest, with_policy) = export(&lake, &conn("json", &format!("{filter}{}", policy_doc()))).await;
    let (plain, with) = (plain.events.unwrap().accounting, with_policy.events.as_ref().unwrap().accounting.clone());
    assert_eq!(with.filtered, 1, "the staff event is filtered on its email, which the policy drops");
    assert_eq!(plain, with);
    let rows = rows(&dest, &with_policy).await;
    assert!(!rows.iter().any(|r| r["$insert_id"] == "h6"));
}

#[test]
fn a_bad_policy_is_refused_at_load_naming_the_part() {
    for (fields, expected) in [
        (r#"{"drop":["user_properties..email"]}"#, "fields.drop[0]"),
        (r#"{"pseudonymise":["session_id"]}"#, "fields.pseudonymise[0]"),
        (r#"{"drop":["nope"]}"#, "\"nope\" is not an export field"),
        (r#"{"location_decimals":9}"#, "fields.location_decimals"),
        (r#"{"pseudonymise":["user_id"],"key":"short"}"#, "fields.key"),
        (r#"{"hash":["user_id"]}"#, "unknown field `hash`"),
    ] {
        let doc = format!(
            r#"{{"id":"c1","org_id":"42","project_id":"187520","creator":"owner@example.com","destination":{{"type":"local","path":"/unused"}},"fields":{fields}}}"#
        );
        let err = Connection::from_json(&doc).unwrap_err().to_string();
        assert!(err.contains(expected), "{fields}: {err}");
        assert!(!err.contains("short\""), "the key is never quoted: {err}");
    }
}

/// A backfill (replace) of an hour exported under one policy rewrites it with the current
/// one: the parts hold the new values and the manifest names the new digest.
#[tokio::test(flavor = "multi_thread")]
async fn a_replace_re_applies_the_current_policy() {
    let lake = lake().await;
    let dest = Arc::new(MemoryStore::new("dest"));
    let targets = ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
    let settings = ExportSettings::new(256 << 10, 6, 2).unwrap();
    let old = conn("json", "");
    let new = conn("json", &policy_doc());
    export_hour(&old.export_spec().unwrap(), &targets, hour(), ExportMode::Recurring, &settings).await.unwrap();
    // A recurring run of a completed hour leaves it as it was written.
    let skipped = export_hour(&new.export_spec().unwrap(), &targets, hour(), ExportMode::Recurring, &settings).await.unwrap();
    assert!(skipped.skipped);
    let before = rows(&dest, skipped.manifest.as_ref().unwrap()).await;
    assert!(before.iter().any(|r| r["user_id"].as_str().is_some_and(|u| u.starts_with("user-"))));
    let replaced = export_hour(&new.export_spec().unwrap(), &targets, hour(), ExportMode::Replace, &settings).await.unwrap();
    let manifest = replaced.manifest.unwrap();
    assert_eq!(manifest.field_policy.as_deref(), Some(new.export_spec().unwrap().field_policy.unwrap().digest()));
    let after = rows(&dest, &manifest).await;
    assert_eq!(after.len(), before.len());
    for (was, is) in before.iter().zip(&after) {
        assert_eq!(is, &expected(was), "{}", was["$insert_id"]);
    }
}
