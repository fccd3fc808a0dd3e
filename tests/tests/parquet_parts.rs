//! Parquet parts and the hive layout through the real exporter: the same events, parts,
//! accounting, de-duplication, late parts and replace as the JSON parts, read back with
//! the `parquet` crate and compared value by value with the JSON export of the same hour.

use std::io::BufRead;
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use exporter::adapters::local::memory::MemoryStore;
use exporter::control::connection::Connection;
use exporter::export::columns::{export_columns, ColumnType};
use exporter::export::generate::{generate_hour, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
use exporter::export::manifest::Manifest;
use exporter::export::parquet_parts::arrow_schema;
use exporter::export::timestamp::parse_micros;
use exporter::hour::UtcHour;
use exporter::model::hour_request::ExportMode;
use exporter::ports::ObjectStore;
use integration_tests::parquet_values::parquet_cell;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use sha2::{Digest, Sha256};

const HOUR: &str = "2020-01-25T17";

fn conn(extra: &str) -> Connection {
    Connection::from_json(&format!(
        r#"{{"id":"c1","org_id":"42","project_id":"187520","creator":"owner@example.com","export":{{"events":true,"merged_ids":false}},
            "destination":{{"type":"local","path":"/unused","prefix":"exports"}}{extra}}}"#
    ))
    .unwrap()
}

fn hour() -> UtcHour {
    UtcHour::parse(HOUR).unwrap()
}

fn settings(part_bytes: u64, threads: usize) -> ExportSettings {
    ExportSettings::new(part_bytes, 6, threads).unwrap()
}

async fn lake_with(events: u64, seed: u64) -> Arc<MemoryStore> {
    let lake = Arc::new(MemoryStore::new("lake"));
    let spec = HourSpec { project_id: "187520".into(), hour: hour(), events, events_per_file: 2500, duplicate_every: 25, invalid_every: 200, seed, gzip: true };
    generate_hour(lake.as_ref(), &spec).await.unwrap();
    lake
}

fn targets(lake: &Arc<MemoryStore>, dest: &Arc<MemoryStore>) -> ExportTargets {
    ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() }
}

/// Every row of a Parquet file as the JSON values the JSON export writes for it.
fn parquet_rows(body: &[u8]) -> Vec<Vec<Value>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(body)).unwrap();
    assert_eq!(reader.schema(), &arrow_schema(), "every part carries the documented schema");
    let mut rows = Vec::new();
    for batch in reader.build().unwrap() {
        let batch: RecordBatch = batch.unwrap();
        for r in 0..batch.num_rows() {
            rows.push(export_columns().enumerate().map(|(i, c)| parquet_cell(batch.column(i).as_ref(), r, c.column_type)).collect());
        }
    }
    rows
}

/// A JSON export line in the same shape: timestamps as microseconds, scalars kept as text
/// where the column is a string.
fn json_row(line: &Value) -> Vec<Value> {
    export_columns()
        .map(|c| match (&line[c.name], c.column_type) {
            (Value::Null, _) => Value::Null,
            (Value::String(s), ColumnType::Timestamp) => Value::from(parse_micros(s).unwrap_or_else(|| panic!("{} = {s}", c.name))),
            (Value::Number(n), ColumnType::String) => Value::from(n.to_string()),
            (Value::Bool(b), ColumnType::String) => Value::from(b.to_string()),
            (v, _) => v.clone(),
        })
        .collect()
}

fn gunzip_lines(body: &[u8]) -> Vec<Value> {
    std::io::BufReader::new(flate2::read::GzDecoder::new(body)).lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect()
}

async fn snapshot(store: &MemoryStore) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    for k in store.keys() {
        out.push((k.clone(), store.get(&k).await.unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_parts_hold_exactly_what_the_json_parts_hold_and_re_export_byte_identical() {
    let lake = lake_with(9000, 11).await;
    let json_dest = Arc::new(MemoryStore::new("json"));
    let parquet_dest = Arc::new(MemoryStore::new("parquet"));
    let json_conn = conn("");
    let parquet_conn = conn(r#","format":"parquet","layout":"hive""#);
    let part_bytes = 1 << 20;
    let json = export_hour(&json_conn.export_spec().unwrap(), &targets(&lake, &json_dest), hour(), ExportMode::Replace, &settings(part_bytes, 2))
        .await
        .unwrap()
        .manifest
        .unwrap();
    let parquet = export_hour(&parquet_conn.export_spec().unwrap(), &targets(&lake, &parquet_dest), hour(), ExportMode::Replace, &settings(part_bytes, 2))
        .await
        .unwrap()
        .manifest
        .unwrap();

    let (json_events, parquet_events) = (json.events.unwrap(), parquet.events.clone().unwrap());
    assert_eq!(json_events.accounting, parquet_events.accounting, "the same accounting whatever the format");
    assert!(json_events.accounting.duplicates > 0 && json_events.accounting.invalid > 0, "the hour exercises dedup and invalid lines");
    assert!(json_events.files.len() >= 3, "several parts: {}", json_events.files.len());
    assert_eq!(json_events.files.len(), parquet_events.files.len(), "parts roll over on the same measure");
    for (j, p) in json_events.files.iter().zip(&parquet_events.files) {
        let hive_key = j.key.replace("exports/187520/", "exports/187520/dt=2020-01-25/hour=17/").replace(".json.gz", ".parquet");
        assert_eq!(p.key, hive_key, "same file names, in hive folders");
        assert_eq!((p.part, p.events), (j.part, j.events));
        let body = parquet_dest.get(&p.key).await.unwrap();
        assert_eq!(p.sha256, Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect::<String>(), "manifest sha256 of {}", p.key);
        assert_eq!(p.bytes, body.len() as u64);
        let expected: Vec<Vec<Value>> = gunzip_lines(&json_dest.get(&j.key).await.unwrap()).iter().map(json_row).collect();
        assert_eq!(parquet_rows(&body), expected, "part {:?}: every value as in the JSON part", p.part);
    }
    assert!(parquet_dest.keys().contains(&"exports/187520/dt=2020-01-25/hour=17/_187520_2020-01-25_17_complete".to_string()));

    // Re-running the hour, with another thread count, rewrites identical bytes.
    let before = snapshot(&parquet_dest).await;
    export_hour(&parquet_conn.export_spec().unwrap(), &targets(&lake, &parquet_dest), hour(), ExportMode::Replace, &settings(part_bytes, 1)).await.unwrap();
    assert!(before == snapshot(&parquet_dest).await, "a replace from the same lake changed the Parquet export");
}

#[tokio::test(flavor = "multi_thread")]
async fn late_files_become_new_parquet_parts_and_a_replace_folds_them_back() {
    let lake = lake_with(3000, 5).await;
    let dest = Arc::new(MemoryStore::new("dest"));
    let c = conn(r#","format":"parquet""#);
    let s = settings(64 << 20, 2);
    let first = export_hour(&c.export_spec().unwrap(), &targets(&lake, &dest), hour(), ExportMode::Recurring, &s).await.unwrap().manifest.unwrap();
    assert_eq!(first.events.as_ref().unwrap().files.len(), 1);
    assert!(
        export_hour(&c.export_spec().unwrap(), &targets(&lake, &dest), hour(), ExportMode::Recurring, &s).await.unwrap().skipped,
        "recurring skips a complete hour"
    );

    // A late file: two events already exported (same device and insert id) and one new.
    let exported = parquet_rows(&dest.get(&first.events.as_ref().unwrap().files[0].key).await.unwrap());
    let (device, insert) = (export_index("device_id"), export_index("$insert_id"));
    let late_line = |d: &Value, i: &Value| {
        format!(
            r#"{{"event_type":"late","device_id":{d},"$insert_id":{i},"client_event_time":"2020-01-25 17:59:00","server_received_time":"2020-01-25 18:03:00","client_upload_time":"2020-01-25 18:02:59"}}"#
        )
    };
    let body = [
        late_line(&exported[0][device], &exported[0][insert]),
        late_line(&exported[1][device], &exported[1][insert]),
        late_line(&Value::from("new-device"), &Value::from("new-insert")),
    ]
    .join("\n");
    lake.put("events/187520/2020-01-25/17/zz-late.json", Bytes::from(body)).await.unwrap();

    let report = export_hour(&c.export_spec().unwrap(), &targets(&lake, &dest), hour(), ExportMode::Late, &s).await.unwrap();
    let late = report.late.unwrap();
    assert_eq!((late.accounting.read, late.accounting.exported, late.accounting.duplicates), (3, 1, 2));
    assert_eq!(late.files.len(), 1);
    assert_eq!(late.files[0].key, "exports/187520/187520_2020-01-25_17#1.parquet");
    let rows = parquet_rows(&dest.get(&late.files[0].key).await.unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][device], Value::from("new-device"));
    let marker: Manifest = serde_json::from_slice(&dest.get("exports/187520/187520_2020-01-25_17_complete").await.unwrap()).unwrap();
    assert_eq!(marker.events.as_ref().unwrap().files.len(), 2, "the marker lists every part");
    let total = first.events.as_ref().unwrap().accounting.exported + 1;
    assert_eq!(marker.events.unwrap().accounting.exported, total);

    // A replace rewrites the hour as one part holding every event once; the late part goes.
    let replaced = export_hour(&c.export_spec().unwrap(), &targets(&lake, &dest), hour(), ExportMode::Replace, &s).await.unwrap().manifest.unwrap();
    let files = replaced.events.unwrap().files;
    assert_eq!(files.len(), 1);
    assert_eq!(parquet_rows(&dest.get(&files[0].key).await.unwrap()).len() as u64, total);
    assert!(!dest.keys().iter().any(|k| k.ends_with("#1.parquet")), "the stale late part is deleted");
}

fn export_index(name: &str) -> usize {
    export_columns().position(|c| c.name == name).unwrap()
}
