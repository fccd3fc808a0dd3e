//! `"table": "delta"` on local folders: one commit per hour export, written after the parts
//! and before the marker; late parts are one more `add` each; a replace removes the old
//! parts and adds the new ones in one commit and keeps the old files for older versions; a
//! replace of the same bytes, a rerun after a crash between the commit and the marker, and
//! a redelivery commit nothing; two hours committed at once leave a gapless log; checkpoints
//! every ten commits; vacuum keeps what retained versions read; the merged IDs are a
//! second table under the same rules. The log is read back here
//! entry by entry, not through the writer's own state.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use exporter::adapters::local::store::LocalStore;
use exporter::export::delta::actions::{commit_file, Action, TableData};
use exporter::export::delta::commit::{app_id, HourCommit};
use exporter::export::delta::log::DeltaTable;
use exporter::export::generate::{generate_hour, generate_merges, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets, HourReport};
use exporter::export::layout::{lake_events_prefix, lake_merges_prefix};
use exporter::export::manifest::FileEntry;
use exporter::export::merged_ids::{parse_merge, MergeRow, MERGE_FIELDS};
use exporter::export::spec::ExportSpec;
use exporter::hour::UtcHour;
use exporter::model::format::{PartFormat, TableFormat};
use exporter::model::hour_request::ExportMode;
use exporter::model::layout_kind::LayoutKind;
use exporter::ports::ObjectStore;

const PROJECT: &str = "187520";
const ROOT: &str = "exports/187520";
const MERGES_ROOT: &str = "exports/-42";

struct World {
    _dir: tempfile::TempDir,
    lake: Arc<LocalStore>,
    dest: Arc<LocalStore>,
    spec: ExportSpec,
    settings: ExportSettings,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lake")).unwrap();
        std::fs::create_dir_all(dir.path().join("dest")).unwrap();
        let lake = Arc::new(LocalStore::new(dir.path().join("lake")).unwrap());
        let dest = Arc::new(LocalStore::new(dir.path().join("dest")).unwrap());
        let spec = ExportSpec {
            merged_ids: false,
            format: PartFormat::Parquet,
            layout: LayoutKind::Hive,
            table: TableFormat::Delta,
            ..ExportSpec::new("c-delta", PROJECT, "42", "exports")
        };
        // Small parts: an hour has several.
        let settings = ExportSettings::new(96 << 10, 1, 1).unwrap();
        World { _dir: dir, lake, dest, spec, settings }
    }

    async fn lake_hour(&self, hour: UtcHour, seed: u64) {
        let spec = HourSpec { project_id: PROJECT.into(), hour, events: 400, events_per_file: 150, duplicate_every: 0, invalid_every: 0, seed, gzip: true };
        generate_hour(self.lake.as_ref(), &spec).await.unwrap();
    }

    /// A lake file that lands late, sorted after the generated ones.
    async fn late_file(&self, hour: UtcHour, name: &str, events: usize) {
        let mut body = String::new();
        for i in 0..events {
            body.push_str(&format!(
                r#"{{"event_type":"late","device_id":"late-{name}-{i}","$insert_id":"{i}","client_event_time":"{d} {h}:01:00","server_received_time":"{d} {h}:02:00"}}"#,
                d = hour.date_str(),
                h = hour.hour_padded()
            ));
            body.push('\n');
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).unwrap();
        self.lake.put(&format!("{}zz-{name}.json.gz", lake_events_prefix(PROJECT, hour)), gz.finish().unwrap().into()).await.unwrap();
    }

    fn targets(&self) -> ExportTargets {
        ExportTargets { lake: self.lake.clone(), events: self.dest.clone(), merged_ids: self.dest.clone() }
    }

    async fn export(&self, hour: UtcHour, mode: ExportMode) -> HourReport {
        export_hour(&self.spec, &self.targets(), hour, mode, &self.settings).await.unwrap_or_else(|e| panic!("export {hour} {mode:?}: {e}"))
    }

    fn table(&self) -> DeltaTable {
        DeltaTable::new(self.dest.clone(), ROOT)
    }

    /// Every log entry, read from the store, in version order (fails on a gap).
    async fn log(&self) -> Vec<Vec<Action>> {
        let (versions, _) = self.table().list_versions().await.unwrap();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>(), "the log is gapless from 0");
        let mut out = Vec::new();
        for v in versions {
            out.push(self.table().read_entry(v).await.unwrap());
        }
        out
    }

    async fn part_files(&self, hour: UtcHour) -> Vec<String> {
        let layout = self.spec.events_layout();
        self.dest.list(&layout.part_prefix(hour)).await.unwrap().into_iter().map(|m| m.key).collect()
    }
}

fn adds(entry: &[Action]) -> Vec<&str> {
    entry.iter().filter_map(|a| a.add.as_ref()).map(|a| a.path.as_str()).collect()
}

fn removes(entry: &[Action]) -> Vec<&str> {
    entry.iter().filter_map(|a| a.remove.as_ref()).map(|a| a.path.as_str()).collect()
}

fn files(report: &HourReport) -> Vec<FileEntry> {
    report.manifest.as_ref().unwrap().events.as_ref().unwrap().files.clone()
}

fn encoded(key: &str) -> String {
    key.strip_prefix(&format!("{ROOT}/")).unwrap().replace('#', "%23")
}

#[tokio::test]
async fn recurring_late_and_replace_each_commit_once_and_a_same_bytes_replace_commits_nothing() {
    let w = World::new();
    let hour = UtcHour::parse("2020-01-25T04").unwrap();
    w.lake_hour(hour, 1).await;

    // Recurring: version 0 creates the table and adds every part, with the hour's txn.
    let first = w.export(hour, ExportMode::Recurring).await;
    let first_files = files(&first);
    assert!(first_files.len() > 1, "several parts: {}", first_files.len());
    assert_eq!(first.manifest.as_ref().unwrap().table_version, Some(0));
    assert_eq!(first_files[0].key, format!("{ROOT}/dt=2020-01-25/hour=04/187520_2020-01-25_4#0.parquet"), "parts keep their names");
    let log = w.log().await;
    assert_eq!(log.len(), 1);
    let v0 = &log[0];
    let protocol = v0.iter().find_map(|a| a.protocol.clone()).expect("protocol");
    assert_eq!((protocol.min_reader_version, protocol.min_writer_version), (1, 2));
    let meta = v0.iter().find_map(|a| a.metadata.clone()).expect("metaData");
    assert_eq!(meta.partition_columns, vec!["dt", "hour"]);
    let mut want: Vec<String> = first_files.iter().map(|f| encoded(&f.key)).collect();
    want.sort();
    let mut got = adds(v0);
    got.sort();
    assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>(), "version 0 adds every part");
    assert!(adds(v0)[0].contains("%23"), "`#` is URI-encoded: {}", adds(v0)[0]);
    let add = v0.iter().find_map(|a| a.add.clone()).unwrap();
    assert_eq!(add.partition_values, BTreeMap::from([("dt".to_string(), Some("2020-01-25".to_string())), ("hour".to_string(), Some("4".to_string()))]));
    let txn = v0.iter().find_map(|a| a.txn.clone()).expect("txn");
    assert_eq!((txn.app_id.as_str(), txn.version), (app_id("c-delta", TableData::Events, hour).as_str(), 0));
    assert!(v0.iter().any(|a| a.commit_info.is_some()));

    // Late: one more add per new part, nothing removed.
    w.late_file(hour, "a", 300).await;
    let late = w.export(hour, ExportMode::Late).await;
    let late_new = late.late.as_ref().unwrap().files.clone();
    assert!(!late_new.is_empty());
    assert_eq!(late.manifest.as_ref().unwrap().table_version, Some(1));
    let log = w.log().await;
    assert_eq!(log.len(), 2);
    assert!(removes(&log[1]).is_empty(), "late parts remove nothing");
    let mut want: Vec<String> = late_new.iter().map(|f| encoded(&f.key)).collect();
    want.sort();
    let mut got = adds(&log[1]);
    got.sort();
    assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(late_new[0].part.unwrap() as usize >= first_files.len(), "late parts are numbered after the earlier ones");

    // Replace after the lake changed: one commit removes every live part of the hour and adds
    // the new ones, under new part numbers; the old files stay for readers of older versions.
    w.late_file(hour, "b", 50).await;
    let live_before: Vec<String> = first_files.iter().chain(late_new.iter()).map(|f| encoded(&f.key)).collect();
    let replaced = w.export(hour, ExportMode::Replace).await;
    assert_eq!(replaced.manifest.as_ref().unwrap().table_version, Some(2));
    let new_files = files(&replaced);
    let log = w.log().await;
    assert_eq!(log.len(), 3);
    let mut removed: Vec<&str> = removes(&log[2]);
    removed.sort();
    let mut live_sorted = live_before.clone();
    live_sorted.sort();
    assert_eq!(removed, live_sorted.iter().map(String::as_str).collect::<Vec<_>>(), "every old part is removed in the replace's commit");
    let mut added: Vec<String> = adds(&log[2]).into_iter().map(str::to_string).collect();
    added.sort();
    let mut new_paths: Vec<String> = new_files.iter().map(|f| encoded(&f.key)).collect();
    new_paths.sort();
    assert_eq!(added, new_paths);
    assert!(added.iter().all(|p| !live_before.contains(p)), "a replaced part gets a new name: data files are never overwritten");
    for f in first_files.iter().chain(late_new.iter()) {
        assert!(w.dest.head(&f.key).await.unwrap().is_some(), "{} is kept until vacuum", f.key);
    }
    let state = w.table().load().await.unwrap();
    assert_eq!(state.files.len(), new_files.len());
    assert_eq!(state.tombstones.len(), live_before.len());

    // The same bytes again: no commit, the hour's version stays 2, no file left behind.
    let on_disk = w.part_files(hour).await;
    let again = w.export(hour, ExportMode::Replace).await;
    assert_eq!(again.manifest.as_ref().unwrap().table_version, Some(2));
    assert_eq!(files(&again), new_files, "the manifest lists the parts the table holds");
    assert_eq!(w.log().await.len(), 3, "a replace with byte-identical parts commits nothing");
    assert_eq!(w.part_files(hour).await, on_disk, "the copies it wrote are deleted again");
    assert_eq!(again.manifest.as_ref().unwrap().to_json(), replaced.manifest.as_ref().unwrap().to_json(), "same manifest bytes");
}

#[tokio::test]
async fn a_crash_between_the_commit_and_the_marker_then_a_rerun_adds_no_second_commit() {
    let w = World::new();
    let hour = UtcHour::parse("2020-01-25T17").unwrap();
    w.lake_hour(hour, 2).await;
    let first = w.export(hour, ExportMode::Recurring).await;
    let parts = w.part_files(hour).await;
    // The state a crash after the commit leaves: the commit is in the log, the marker is not.
    let marker = w.spec.events_layout().complete_key(hour);
    w.dest.delete(&marker).await.unwrap();
    let rerun = w.export(hour, ExportMode::Recurring).await;
    assert!(!rerun.skipped, "without a marker the hour is exported again");
    assert_eq!(w.log().await.len(), 1, "the rerun finds its parts committed and commits nothing");
    assert_eq!(rerun.manifest, first.manifest, "the same manifest, naming the commit of version 0");
    assert!(w.dest.head(&marker).await.unwrap().is_some(), "the marker is written");
    assert_eq!(w.part_files(hour).await, parts, "the rerun's copies of the parts are deleted again");
    // A redelivery once the marker exists is skipped as before.
    assert!(w.export(hour, ExportMode::Recurring).await.skipped);
    assert_eq!(w.log().await.len(), 1);
}

#[tokio::test]
async fn an_empty_hour_is_one_commit_and_a_rerun_of_it_none() {
    let w = World::new();
    let hour = UtcHour::parse("2020-01-25T09").unwrap();
    let report = w.export(hour, ExportMode::Recurring).await;
    assert_eq!(report.manifest.as_ref().unwrap().table_version, Some(0));
    w.dest.delete(&w.spec.events_layout().complete_key(hour)).await.unwrap();
    w.export(hour, ExportMode::Recurring).await;
    let log = w.log().await;
    assert_eq!(log.len(), 1);
    assert!(adds(&log[0]).is_empty());
    assert_eq!(log[0].iter().filter(|a| a.txn.is_some()).count(), 1);
}

/// Two hours exported at the same time, 50 times over: each trial's log is gapless, holds
/// exactly two commits, and every hour's parts are added exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hours_committed_concurrently_give_a_gapless_log_with_each_hour_once() {
    let a = UtcHour::parse("2020-01-25T01").unwrap();
    let b = UtcHour::parse("2020-01-25T02").unwrap();
    let template = World::new();
    template.lake_hour(a, 3).await;
    template.lake_hour(b, 4).await;
    for trial in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let dest = Arc::new(LocalStore::new(dir.path()).unwrap());
        let targets = ExportTargets { lake: template.lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
        let (ra, rb) = tokio::join!(
            export_hour(&template.spec, &targets, a, ExportMode::Recurring, &template.settings),
            export_hour(&template.spec, &targets, b, ExportMode::Recurring, &template.settings)
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let table = DeltaTable::new(dest.clone(), ROOT);
        let (versions, _) = table.list_versions().await.unwrap();
        assert_eq!(versions, vec![0, 1], "trial {trial}: one commit per hour, no gap");
        let mut seen = BTreeMap::new();
        for v in versions {
            let entry = table.read_entry(v).await.unwrap();
            assert_eq!(entry.iter().filter(|x| x.protocol.is_some()).count(), usize::from(v == 0), "trial {trial}: protocol only in version 0");
            for p in adds(&entry) {
                *seen.entry(p.to_string()).or_insert(0) += 1;
            }
            assert_eq!(entry.iter().filter(|x| x.txn.is_some()).count(), 1);
        }
        let mut want: Vec<String> = files(&ra).iter().chain(files(&rb).iter()).map(|f| encoded(&f.key)).collect();
        want.sort();
        assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), want, "trial {trial}");
        assert!(seen.values().all(|&n| n == 1), "trial {trial}: every part added once");
        let versions: std::collections::BTreeSet<u64> = [ra, rb].iter().map(|r| r.manifest.as_ref().unwrap().table_version.unwrap()).collect();
        assert_eq!(versions, [0, 1].into(), "trial {trial}: each hour names its own commit");
        assert!(dest.head(&commit_file(0)).await.unwrap().is_none(), "the log is under the events folder, not the store's root");
    }
}

/// Commits straight through the log writer (no parts needed for the log's bookkeeping),
/// with the clock under the test's control.
async fn commit(table: &DeltaTable, hour: UtcHour, parts: &[(&str, &str)], now_ms: i64) -> u64 {
    let files: Vec<FileEntry> = parts
        .iter()
        .enumerate()
        .map(|(i, (key, sha))| FileEntry { key: key.to_string(), part: Some(i as u32), events: 1, bytes: 10, uncompressed_bytes: 10, sha256: sha.to_string() })
        .collect();
    for f in &files {
        table.store.put(&f.key, bytes::Bytes::from_static(b"0123456789")).await.unwrap();
    }
    table.commit_hour(&HourCommit { connection_id: "c", hour, mode: ExportMode::Replace, files: &files, now_ms }).await.unwrap().version
}

#[tokio::test]
async fn a_checkpoint_every_ten_commits_holds_the_same_snapshot_as_the_log() {
    let w = World::new();
    let table = w.table();
    let start = UtcHour::parse("2020-01-25T00").unwrap();
    for i in 0..25 {
        let hour = start.plus(i);
        let key = format!("{ROOT}/dt=2020-01-25/hour={}/187520_{}#0.parquet", hour.hour_padded(), hour.file_stem());
        assert_eq!(commit(&table, hour, &[(&key, &format!("sha-{i}"))], 1_000 + i).await, i as u64);
    }
    let (_, checkpoints) = table.list_versions().await.unwrap();
    assert_eq!(checkpoints, vec![10, 20]);
    let last: serde_json::Value = serde_json::from_slice(&w.dest.get(&format!("{ROOT}/_delta_log/_last_checkpoint")).await.unwrap()).unwrap();
    assert_eq!(last["version"], 20);
    let from_checkpoint = table.load().await.unwrap();
    // The same snapshot replayed from the JSON entries alone.
    let mut replayed = exporter::export::delta::TableState::default();
    for v in 0..25 {
        for a in table.read_entry(v).await.unwrap() {
            replayed.apply(a);
        }
    }
    assert_eq!(from_checkpoint.version, Some(24));
    assert_eq!(from_checkpoint.files, replayed.files);
    assert_eq!(from_checkpoint.txns, replayed.txns);
    assert_eq!(from_checkpoint.metadata, replayed.metadata);
    assert_eq!(from_checkpoint.files.len(), 25);
}

#[tokio::test]
async fn vacuum_deletes_only_files_removed_longer_ago_than_the_retention() {
    let w = World::new();
    let table = w.table();
    let day = 86_400_000i64;
    let t0 = 1_600_000_000_000i64;
    let h = UtcHour::parse("2020-01-25T00").unwrap();
    let old = format!("{ROOT}/dt=2020-01-25/hour=00/187520_2020-01-25_0#0.parquet");
    let newer = format!("{ROOT}/dt=2020-01-25/hour=00/187520_2020-01-25_0#1.parquet");
    let newest = format!("{ROOT}/dt=2020-01-25/hour=00/187520_2020-01-25_0#2.parquet");
    commit(&table, h, &[(&old, "a")], t0).await; // v0
    commit(&table, h, &[(&newer, "b")], t0 + day).await; // v1: removes #0 at day 1
    commit(&table, h, &[(&newest, "c")], t0 + 8 * day).await; // v2: removes #1 at day 8
                                                              // Commits 3..=10 of other hours; the 10th runs the upkeep on day 9.
    for i in 1..=8 {
        let hour = h.plus(i);
        let key = format!("{ROOT}/dt=2020-01-25/hour={}/187520_{}#0.parquet", hour.hour_padded(), hour.file_stem());
        commit(&table, hour, &[(&key, "x")], t0 + 9 * day).await;
    }
    assert!(w.dest.head(&old).await.unwrap().is_none(), "removed 8 days before the upkeep: vacuumed");
    assert!(w.dest.head(&newer).await.unwrap().is_some(), "removed 1 day before: a reader of version 1 still needs it");
    assert!(w.dest.head(&newest).await.unwrap().is_some(), "live");
    let state = table.load().await.unwrap();
    assert_eq!(state.version, Some(10));
    assert!(!state.tombstones.keys().any(|p| p.ends_with("%230.parquet") && p.contains("hour=00")), "the expired tombstone left the checkpoint");
    assert_eq!(state.tombstones.len(), 1);
    // Log retention (30 days) has nothing to drop yet: every entry is kept.
    assert_eq!(table.list_versions().await.unwrap().0.len(), 11);
}

/// The rows of a merged-IDs Parquet file, in file order.
async fn merged_rows(store: &LocalStore, key: &str) -> Vec<MergeRow> {
    use arrow_array::{Array, Int64Array};
    let body = store.get(key).await.unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body).unwrap().build().unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        assert_eq!(batch.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), MERGE_FIELDS);
        let cols: Vec<&Int64Array> = batch.columns().iter().map(|c| c.as_any().downcast_ref::<Int64Array>().unwrap()).collect();
        for r in 0..batch.num_rows() {
            rows.push(std::array::from_fn(|i| (!cols[i].is_null(r)).then(|| cols[i].value(r))));
        }
    }
    rows
}

/// The normalised rows of every lake merge file of the hour, in lake order.
async fn lake_merge_rows(lake: &LocalStore, hour: UtcHour) -> Vec<MergeRow> {
    let mut rows = Vec::new();
    for file in lake.list(&lake_merges_prefix("42", hour)).await.unwrap() {
        let body = lake.get(&file.key).await.unwrap();
        rows.extend(body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| parse_merge(l).unwrap()));
    }
    rows
}

#[tokio::test]
async fn the_merged_ids_are_a_second_delta_table_under_the_same_rules() {
    let mut w = World::new();
    w.spec.merged_ids = true;
    let hour = UtcHour::parse("2020-01-25T04").unwrap();
    w.lake_hour(hour, 5).await;
    generate_merges(w.lake.as_ref(), "42", hour, 40, 5).await.unwrap();
    let table = DeltaTable::merged_ids(w.dest.clone(), MERGES_ROOT);
    let layout = w.spec.merged_ids_layout();
    let log = |t: DeltaTable| async move {
        let (versions, _) = t.list_versions().await.unwrap();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>(), "the log is gapless from 0");
        let mut out = Vec::new();
        for v in versions {
            out.push(t.read_entry(v).await.unwrap());
        }
        out
    };
    let merged_files = |r: &HourReport| r.manifest.as_ref().unwrap().merged_ids.as_ref().unwrap().files.clone();
    let on_disk = || async { w.dest.list(&layout.merged_ids_part_prefix(hour)).await.unwrap().into_iter().map(|m| m.key).collect::<Vec<_>>() };

    // Recurring: the merged IDs' own table, version 0, one Parquet file; no JSON file.
    let first = w.export(hour, ExportMode::Recurring).await;
    let m = first.manifest.as_ref().unwrap();
    assert_eq!((m.table_version, m.merged_ids_table_version), (Some(0), Some(0)), "each table has its own log");
    let first_files = merged_files(&first);
    assert_eq!(first_files.len(), 1);
    assert_eq!(first_files[0].key, format!("{MERGES_ROOT}/dt=2020-01-25/hour=04/-42_2020-01-25_4#0.parquet"));
    assert!(w.dest.head(&layout.merged_ids_key(hour)).await.unwrap().is_none(), "no gzipped JSON merged IDs under a Delta connection");
    assert_eq!(merged_rows(&w.dest, &first_files[0].key).await, lake_merge_rows(&w.lake, hour).await, "the file holds the lake's merges");
    assert_eq!(first_files[0].events, 40);
    let entries = log(table.clone()).await;
    assert_eq!(entries.len(), 1);
    let meta = entries[0].iter().find_map(|a| a.metadata.clone()).expect("metaData");
    let schema: serde_json::Value = serde_json::from_str(&meta.schema_string).unwrap();
    let names: Vec<&str> = schema["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["scope", "merge_time", "merge_server_time", "amplitude_id", "merged_amplitude_id", "dt", "hour"]);
    let txn = entries[0].iter().find_map(|a| a.txn.clone()).expect("txn");
    assert_eq!(txn.app_id, app_id("c-delta", TableData::MergedIds, hour));
    assert_eq!(txn.app_id, "event-export/c-delta/merged_ids/2020-01-25T04");
    let merged_encoded = |key: &str| key.strip_prefix(&format!("{MERGES_ROOT}/")).unwrap().replace('#', "%23");
    assert_eq!(adds(&entries[0]), vec![merged_encoded(&first_files[0].key).as_str()]);

    // Late merges: one more file of the late rows only, added beside the first.
    let late_body = "{\"scope\":-42,\"merge_time\":1579924800000,\"merge_server_time\":1579924800250,\"amplitude_id\":7,\"merged_amplitude_id\":8}\n";
    w.lake.put(&format!("{}merges-00001.json", lake_merges_prefix("42", hour)), bytes::Bytes::from(late_body)).await.unwrap();
    let late = w.export(hour, ExportMode::Late).await;
    assert_eq!(late.manifest.as_ref().unwrap().merged_ids_table_version, Some(1));
    assert_eq!(late.manifest.as_ref().unwrap().table_version, Some(0), "no late events: the events table is untouched");
    let late_files = merged_files(&late);
    assert_eq!(late_files.len(), 2);
    assert_eq!(late_files[0], first_files[0]);
    assert_eq!(late_files[1].part, Some(1));
    assert_eq!(merged_rows(&w.dest, &late_files[1].key).await, vec![[Some(-42), Some(1579924800000), Some(1579924800250), Some(7), Some(8)]]);
    assert_eq!(late.manifest.as_ref().unwrap().merged_ids.as_ref().unwrap().accounting.exported, 41);
    let entries = log(table.clone()).await;
    assert_eq!(entries.len(), 2);
    assert!(removes(&entries[1]).is_empty(), "late merges remove nothing");
    assert_eq!(adds(&entries[1]), vec![merged_encoded(&late_files[1].key).as_str()]);

    // Replace: one commit removes both files and adds one new one, under a new name.
    let replaced = w.export(hour, ExportMode::Replace).await;
    assert_eq!(replaced.manifest.as_ref().unwrap().merged_ids_table_version, Some(2));
    let new_files = merged_files(&replaced);
    assert_eq!(new_files.len(), 1);
    assert_eq!(new_files[0].part, Some(2), "data files are never overwritten");
    assert_eq!(merged_rows(&w.dest, &new_files[0].key).await, lake_merge_rows(&w.lake, hour).await);
    let entries = log(table.clone()).await;
    let mut removed = removes(&entries[2]);
    removed.sort();
    assert_eq!(removed, vec![merged_encoded(&late_files[0].key), merged_encoded(&late_files[1].key)]);
    assert_eq!(adds(&entries[2]), vec![merged_encoded(&new_files[0].key).as_str()]);
    for f in &late_files {
        assert!(w.dest.head(&f.key).await.unwrap().is_some(), "{} is kept until vacuum", f.key);
    }

    // The same bytes again, then a crash between the commit and the marker and a rerun:
    // no commit, the hour's version stays 2, no file left behind.
    let files_before = on_disk().await;
    let again = w.export(hour, ExportMode::Replace).await;
    assert_eq!(again.manifest.as_ref().unwrap().merged_ids_table_version, Some(2));
    assert_eq!(merged_files(&again), new_files);
    w.dest.delete(&w.spec.events_layout().complete_key(hour)).await.unwrap();
    let rerun = w.export(hour, ExportMode::Recurring).await;
    assert_eq!(rerun.manifest, again.manifest);
    assert_eq!(log(table.clone()).await.len(), 3, "identical bytes commit nothing");
    assert_eq!(on_disk().await, files_before, "the copies written are deleted again");
    assert_eq!(table.load().await.unwrap().files.len(), 1);
}

#[tokio::test]
async fn a_files_connection_keeps_its_merged_ids_gzipped_json() {
    let mut w = World::new();
    w.spec.merged_ids = true;
    w.spec.table = TableFormat::Files;
    let hour = UtcHour::parse("2020-01-25T04").unwrap();
    generate_merges(w.lake.as_ref(), "42", hour, 10, 5).await.unwrap();
    let report = w.export(hour, ExportMode::Recurring).await;
    let m = report.manifest.as_ref().unwrap();
    assert_eq!(m.merged_ids_table_version, None);
    assert!(!String::from_utf8(m.to_json()).unwrap().contains("merged_ids_table_version"));
    let layout = w.spec.merged_ids_layout();
    assert_eq!(m.merged_ids.as_ref().unwrap().files[0].key, layout.merged_ids_key(hour));
    assert!(w.dest.list(&format!("{MERGES_ROOT}/_delta_log/")).await.unwrap().is_empty(), "no Delta log");
}
