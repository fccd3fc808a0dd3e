//! Fault timelines: poison. Lake lines holding values that strict readers or the Parquet
//! encoder refuse (a lone surrogate escape, a number beyond a 64-bit float, nesting too deep,
//! a raw control character, invalid UTF-8) among good ones, exported by a JSON and a Parquet
//! connection of the same project: each hour is exported, each poison line is an invalid
//! record located by file, line and field, and both formats hold the same rows.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};

use exporter::export::manifest::Manifest;
use exporter::hour::{HourRange, UtcHour};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use crate::world::*;

const JSON_PREFIX: &str = "exports";
const PARQUET_CONN: &str = "c2";
const PARQUET_PREFIX: &str = "lake-ready";
const POISON_FILE: &str = "zz-poison.json";

/// Each poison value (raw bytes of `"field":value`) and the field its invalid record names.
fn poison() -> Vec<(&'static str, Vec<u8>)> {
    let too_deep = format!(r#""groups":{{"g":{}{}}}"#, "[".repeat(64), "]".repeat(64)); // 65 levels with the object
    vec![
        ("user_id", br#""user_id":"\ud800""#.to_vec()),
        ("device_carrier", br#""device_carrier":"\udc00\ud800""#.to_vec()),
        ("event_properties", br#""event_properties":{"amount":1e400}"#.to_vec()),
        ("location_lat", b"\"location_lat\":1e400".to_vec()),
        ("uuid", br#""uuid":"\udbff""#.to_vec()),
        ("groups", too_deep.into_bytes()),
        ("city", b"\"city\":\"Par\x01is\"".to_vec()),
        ("device_model", b"\"device_model\":\"\xff\xfe\"".to_vec()),
    ]
}

/// The Parquet connection: same project and destination folder as `c1`, its own prefix.
fn add_parquet_connection(w: &World) {
    let conn = serde_json::json!({"id": PARQUET_CONN, "org_id": "42", "project_id": PROJECT, "created": "2020-01-25T00:05:00Z", "format": "parquet",
        "destination": {"type": "local", "path": w.dest, "prefix": PARQUET_PREFIX}, "admins": ["admin@example.com"], "creator": "owner@example.com"});
    let file = w.home.parent().unwrap().join("conn-parquet.json");
    std::fs::write(&file, conn.to_string()).unwrap();
    w.ok(&["connections", "create", file.to_str().unwrap()], "2020-01-25T00:05:00Z");
}

/// Writes a lake file into `hour` alternating good lines and the poison ones; returns the
/// poison lines' (line number, field) and the good lines' `$insert_id`s.
fn write_poison_file(w: &World, hour: UtcHour) -> (Vec<(u64, &'static str)>, Vec<String>) {
    let base: serde_json::Value = serde_json::from_str(&first_lake_line(w, hour)).unwrap();
    let mut file = Vec::new();
    let mut poison_at = Vec::new();
    let mut good = Vec::new();
    for (i, (field, value)) in poison().into_iter().enumerate() {
        let mut line = base.clone();
        line.as_object_mut().unwrap().remove("uuid");
        line["$insert_id"] = serde_json::json!(format!("good-{i}"));
        good.push(format!("good-{i}"));
        file.extend_from_slice(line.to_string().as_bytes());
        file.push(b'\n');
        // The poison line: the same event under its own id, the field replaced by the poison.
        line["$insert_id"] = serde_json::json!(format!("poison-{i}"));
        line.as_object_mut().unwrap().remove(field);
        let text = line.to_string();
        file.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
        file.push(b',');
        file.extend_from_slice(&value);
        file.extend_from_slice(b"}\n");
        poison_at.push((2 * i as u64 + 2, field));
    }
    std::fs::write(w.lake_hour_dir(hour).join(POISON_FILE), file).unwrap();
    (poison_at, good)
}

/// Non-blank lines of every lake file of `hour` (bytes: a poison line need not be UTF-8).
fn lake_line_count(w: &World, hour: UtcHour) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(w.lake_hour_dir(hour)).into_iter().flatten().flatten() {
        let mut bytes = std::fs::read(e.path()).unwrap();
        if e.path().to_string_lossy().ends_with(".gz") {
            let mut plain = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut plain).unwrap();
            bytes = plain;
        }
        n += bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count() as u64;
    }
    n
}

/// One exported row: its uuid and `$insert_id`.
type Row = (String, String);

/// The hour's manifest of the connection under `prefix` and its rows, read back from the
/// stored parts: JSON lines with strict serde_json, Parquet parts with the `parquet` crate.
/// Checks the manifest against the stored parts (names, counts, sha256) on the way.
fn exported(w: &World, prefix: &str, hour: UtcHour) -> (Manifest, Vec<Row>) {
    let dir = w.dest.join(prefix).join(PROJECT);
    let marker = dir.join(format!("{PROJECT}_{}_complete", hour.file_stem()));
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(&marker).unwrap_or_else(|_| panic!("{prefix}: no complete marker for {hour}"))).unwrap();
    assert!(manifest.balances(), "{prefix} {hour}: accounting does not balance: {manifest:?}");
    let events = manifest.events.clone().expect("events report");
    let stored: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{PROJECT}_{}#", hour.file_stem())))
        .collect();
    let listed: BTreeSet<String> = events.files.iter().map(|f| f.key.rsplit('/').next().unwrap().to_string()).collect();
    assert_eq!(stored, listed, "{prefix} {hour}: the manifest's parts are not the stored parts");
    let mut rows = Vec::new();
    for f in &events.files {
        let bytes = std::fs::read(w.dest.join(&f.key)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256, "{}: sha256 differs from the manifest", f.key);
        let before = rows.len();
        if f.key.ends_with(".parquet") {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).expect("the parquet crate opens the part").build().unwrap();
            for batch in reader {
                let batch = batch.expect("every row group reads back");
                let text = |name: &str| {
                    let column = batch.column(batch.schema().index_of(name).unwrap()).clone();
                    let strings = column.as_any().downcast_ref::<arrow_array::StringArray>().unwrap().clone();
                    (0..batch.num_rows()).map(move |r| strings.value(r).to_string())
                };
                rows.extend(text("uuid").zip(text("$insert_id")));
            }
        } else {
            for line in BufReader::new(flate2::read::GzDecoder::new(&bytes[..])).lines() {
                let line = line.unwrap();
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: a strict reader refuses an exported line ({e}): {line:.200}", f.key));
                assert_timestamps_exact(&v, EXACT_TIMESTAMP);
                rows.push((v["uuid"].as_str().unwrap().to_string(), v["$insert_id"].as_str().unwrap().to_string()));
            }
        }
        assert_eq!((rows.len() - before) as u64, f.events, "{}: row count differs from the manifest", f.key);
    }
    let uuids: BTreeSet<&String> = rows.iter().map(|(u, _)| u).collect();
    assert_eq!(uuids.len(), rows.len(), "{prefix} {hour}: an event exported twice");
    assert_eq!(rows.len() as u64, events.accounting.exported);
    (manifest, rows)
}

#[test]
fn poison_values_are_invalid_records_named_by_field_and_the_same_hour_exports_in_json_and_parquet() {
    let w = World::new("2020-01-25T03..2020-01-25T03", 200);
    add_parquet_connection(&w);
    let hour = h("2020-01-25T03");
    let (poison_at, good) = write_poison_file(&w, hour);
    w.replay("2020-01-25T00:20:00Z", "2020-01-25T04:20:00Z", |_| {});

    let (json_manifest, json_rows) = exported(&w, JSON_PREFIX, hour);
    let (parquet_manifest, parquet_rows) = exported(&w, PARQUET_PREFIX, hour);
    let (json_events, parquet_events) = (json_manifest.events.unwrap(), parquet_manifest.events.unwrap());
    // Every lake line is an exported event or an invalid record, the same in both formats.
    assert_eq!(json_events.accounting.invalid, poison().len() as u64, "{:?}", json_events.invalid_records);
    assert_eq!(json_events.accounting.exported + json_events.accounting.invalid, lake_line_count(&w, hour));
    assert_eq!(json_events.accounting, parquet_events.accounting, "the same accounting in both formats");
    assert_eq!(json_events.invalid_records, parquet_events.invalid_records);
    assert_eq!(json_rows, parquet_rows, "the same rows, in the same order, in both formats");
    let ids: BTreeSet<&str> = json_rows.iter().map(|(_, id)| id.as_str()).collect();
    assert!(good.iter().all(|g| ids.contains(g.as_str())), "the good lines beside the poison are exported");
    assert!(!ids.iter().any(|id| id.starts_with("poison-")), "no poison line is exported");

    // The run record locates each poison line: file:line and the field.
    let file = format!("{}{POISON_FILE}", exporter::export::layout::lake_events_prefix(PROJECT, hour));
    for conn in [CONN, PARQUET_CONN] {
        let runs = w.ok(&["runs", conn], "2020-01-25T04:25:00Z");
        assert!(runs.lines().any(|l| l.starts_with("2020-01-25T03") && l.contains("exported")), "{conn}: hour 03 exported:\n{runs}");
        for (line, field) in &poison_at {
            let at = format!("invalid record {file}:{line}  field {field:?}");
            assert!(runs.lines().any(|l| l.trim_start().starts_with(&at)), "{conn}: {at} is not in the run record:\n{runs}");
        }
    }

    // The whole state: every owed hour complete in both formats, nothing owed, status ok.
    for hour in HourRange::parse("2020-01-25T00", "2020-01-25T03").unwrap().hours() {
        for prefix in [JSON_PREFIX, PARQUET_PREFIX] {
            let (manifest, rows) = exported(&w, prefix, hour);
            let events = manifest.events.unwrap();
            assert_eq!(events.accounting.exported + events.accounting.invalid, lake_line_count(&w, hour), "{prefix} {hour}: a lake line is missing");
            assert_eq!(rows.len() as u64, events.accounting.exported);
        }
    }
    let status = w.ok(&["status"], "2020-01-25T04:25:00Z");
    assert!(!status.contains("owed:"), "hours still owed:\n{status}");
    w.assert_status_ok("2020-01-25T04:25:00Z");
}
