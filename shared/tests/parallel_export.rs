//! The parallel pipeline keeps the serial guarantees: the same lake hour gives the same
//! bytes at any thread count (JSON and Parquet parts, and the marker with its accounting
//! and invalid records); de-duplication keeps the first occurrence in lake order; invalid
//! records keep their file and line. Checked against a reference computed here one line
//! at a time, so a pipeline that reorders, loses or double-counts lines fails.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::Arc;

use exporter::adapters::local::store::LocalStore;
use exporter::export::generate::{generate_hour, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
use exporter::export::schema::{ExportEvent, Normalizer};
use exporter::export::spec::ExportSpec;
use exporter::hour::UtcHour;
use exporter::model::format::PartFormat;
use exporter::model::hour_request::ExportMode;
use exporter::ports::ObjectStore;

const HOUR: &str = "2020-01-25T17";
const PROJECT: &str = "187520";

fn gz(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

fn event(device: &str, insert: &str, event_type: &str) -> String {
    format!(
        r#"{{"event_type":"{event_type}","device_id":"{device}","$insert_id":"{insert}","client_event_time":"2020-01-25 17:01:00","server_received_time":"2020-01-25 17:02:00"}}"#
    )
}

/// A generated hour (duplicates across files, broken lines) plus a hand-made file whose
/// duplicates differ in content from their first occurrence, with a broken line at a known
/// place, sorted after the generated files so its repeats of them come later in lake order.
async fn lake(root: &std::path::Path) -> Arc<LocalStore> {
    let lake = Arc::new(LocalStore::new(root.join("lake")).unwrap());
    let spec = HourSpec {
        project_id: PROJECT.into(),
        hour: UtcHour::parse(HOUR).unwrap(),
        events: 12_000,
        events_per_file: 1_500,
        duplicate_every: 17,
        invalid_every: 401,
        seed: 11,
        gzip: true,
    };
    generate_hour(lake.as_ref(), &spec).await.unwrap();
    let files = lake.list("").await.unwrap();
    let dir = files[0].key.rsplit_once('/').unwrap().0.to_string();
    let mut body = String::new();
    for i in 0..3000 {
        body.push_str(&event(&format!("hand-{}", i % 50), &format!("h{}", i % 2000), &format!("first-{i}")));
        body.push('\n');
        if i == 1234 {
            body.push_str("{\"event_type\": broken\n");
        }
    }
    lake.put(&format!("{dir}/zz-hand.json.gz"), gz(body.as_bytes()).into()).await.unwrap();
    lake
}

async fn export(lake: &Arc<LocalStore>, root: &std::path::Path, format: PartFormat, threads: usize) -> Vec<(String, Vec<u8>)> {
    let dest = Arc::new(LocalStore::new(root).unwrap());
    let spec = ExportSpec { merged_ids: false, format, ..ExportSpec::new("c", PROJECT, "1", "exports") };
    // Small parts: several boundaries fall inside the hour.
    let settings = ExportSettings::new(2 << 20, 6, threads).unwrap();
    let targets = ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
    export_hour(&spec, &targets, UtcHour::parse(HOUR).unwrap(), ExportMode::Replace, &settings).await.unwrap();
    let mut files = Vec::new();
    for meta in dest.list("").await.unwrap() {
        files.push((meta.key.clone(), dest.get(&meta.key).await.unwrap().to_vec()));
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_byte_identical_at_any_thread_count_and_follow_lake_order() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = lake(tmp.path()).await;

    // The reference: every lake line in key order, normalised and de-duplicated one by one.
    let normalizer = Normalizer::new(PROJECT, Default::default());
    let mut files = lake.list("").await.unwrap();
    files.sort_by(|a, b| a.key.cmp(&b.key));
    let mut seen = HashSet::new();
    let mut expected = Vec::new();
    let mut invalid = Vec::new();
    let mut event = ExportEvent::default();
    for f in &files {
        let mut text = Vec::new();
        flate2::read::MultiGzDecoder::new(&lake.get(&f.key).await.unwrap()[..]).read_to_end(&mut text).unwrap();
        for (n, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if normalizer.normalize(line, &mut event).is_err() {
                invalid.push((f.key.clone(), n as u64 + 1));
                continue;
            }
            let key = event.dedup_key().map(|(d, i)| (d.to_vec(), i.to_vec()));
            if key.is_none_or(|k| seen.insert(k)) {
                expected.push(String::from_utf8(event.line.clone()).unwrap());
            }
        }
    }
    assert!(invalid.iter().any(|(file, line)| file.ends_with("zz-hand.json.gz") && *line == 1236), "the hand-made broken line is in the reference");
    assert!(expected.iter().any(|l| l.contains("\"first-0\"")) && !expected.iter().any(|l| l.contains("\"first-2000\"")), "first occurrences only");

    for format in [PartFormat::Json, PartFormat::Parquet] {
        let one = export(&lake, &tmp.path().join(format!("{format}-1")), format, 1).await;
        let two = export(&lake, &tmp.path().join(format!("{format}-2")), format, 2).await;
        let three = export(&lake, &tmp.path().join(format!("{format}-3")), format, 3).await;
        assert!(one.len() >= 4, "{format}: several parts and a marker, got {}", one.len());
        for other in [&two, &three] {
            assert_eq!(one.len(), other.len(), "{format}: the thread count changed the number of files");
            for ((key_a, bytes_a), (key_b, bytes_b)) in one.iter().zip(other.iter()) {
                assert_eq!(key_a, key_b);
                assert!(bytes_a == bytes_b, "{format}: {key_a} differs between thread counts");
            }
        }
        let marker = &one.iter().find(|(k, _)| k.ends_with("_complete")).expect("a marker").1;
        let manifest: serde_json::Value = serde_json::from_slice(marker).unwrap();
        let events = &manifest["events"];
        assert_eq!(events["accounting"]["exported"], expected.len() as u64, "{format}");
        assert_eq!(events["accounting"]["invalid"], invalid.len() as u64, "{format}");
        let listed: Vec<(String, u64)> =
            events["invalid_records"].as_array().unwrap().iter().map(|r| (r["file"].as_str().unwrap().to_string(), r["line"].as_u64().unwrap())).collect();
        assert_eq!(listed, invalid, "{format}: invalid records keep their file and line, in lake order");
        if format == PartFormat::Json {
            let mut lines = Vec::new();
            for (key, bytes) in one.iter().filter(|(k, _)| k.contains('#')) {
                let mut text = String::new();
                flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
                assert!(text.ends_with('\n'), "{key}");
                lines.extend(text.lines().map(str::to_string));
            }
            assert!(lines == expected, "the parts hold the first occurrence of every key, in lake order");
        }
    }
}
