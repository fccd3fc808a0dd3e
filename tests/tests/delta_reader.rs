//! `"table": "delta"` read by an independent reader: Delta Lake's own Python package
//! (delta-rs, `tests/scripts/delta-with-deltalake.py`) opens the table the exporter wrote on a
//! local folder, on S3 (moto) and on Azure Blob (Azurite). At every version its rows equal the
//! JSON export of the same hours as they stood then (count, rows per hour, every value of a
//! sample of rows); `version()` advances once per hour export; time travel around a replace
//! shows the old hour, then the new one, never both; a replace of the same bytes adds no
//! version. On local folders, a table of 25 commits is read from its checkpoint alone. On
//! moto the commit latency per hour is printed. Concurrent commits of two hours serialise on
//! S3's and Azure's conditional puts as on local folders.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use exporter::adapters::aws::s3::S3Store;
use exporter::adapters::local::store::LocalStore;
use exporter::export::columns::{export_columns, ColumnType};
use exporter::export::delta::commit::HourCommit;
use exporter::export::delta::log::DeltaTable;
use exporter::export::delta::vacuum;
use exporter::export::generate::{generate_hour, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
use exporter::export::layout::lake_events_prefix;
use exporter::export::manifest::{FileEntry, Manifest};
use exporter::export::spec::ExportSpec;
use exporter::hour::UtcHour;
use exporter::model::format::{PartFormat, TableFormat};
use exporter::model::hour_request::ExportMode;
use exporter::model::layout_kind::LayoutKind;
use exporter::ports::ObjectStore;
use integration_tests::emulators::{azurite_url, moto_serial_url, moto_url, unique_name};
use integration_tests::{azurite, moto};
use serde_json::{json, Value};

const PROJECT: &str = "187520";
const ROOT: &str = "exports/187520";

/// How the Python reader reaches the table.
struct Reader {
    uri: String,
    storage_options: Value,
    env: Value,
}

struct Scenario {
    _dir: tempfile::TempDir,
    lake: Arc<LocalStore>,
    json: Arc<LocalStore>,
    dest: Arc<dyn ObjectStore>,
    settings: ExportSettings,
}

fn delta_spec() -> ExportSpec {
    ExportSpec {
        merged_ids: false,
        format: PartFormat::Parquet,
        layout: LayoutKind::Hive,
        table: TableFormat::Delta,
        ..ExportSpec::new("c-delta", PROJECT, "42", "exports")
    }
}

fn json_spec() -> ExportSpec {
    ExportSpec { merged_ids: false, ..ExportSpec::new("c-json", PROJECT, "42", "exports") }
}

impl Scenario {
    fn new(dest: Arc<dyn ObjectStore>) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        for d in ["lake", "json"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Scenario {
            lake: Arc::new(LocalStore::new(dir.path().join("lake")).unwrap()),
            json: Arc::new(LocalStore::new(dir.path().join("json")).unwrap()),
            _dir: dir,
            dest,
            settings: ExportSettings::new(64 << 10, 1, 1).unwrap(),
        }
    }

    async fn lake_hour(&self, hour: UtcHour, events: u64, seed: u64) {
        let spec = HourSpec { project_id: PROJECT.into(), hour, events, events_per_file: 100, duplicate_every: 20, invalid_every: 97, seed, gzip: true };
        generate_hour(self.lake.as_ref(), &spec).await.unwrap();
    }

    async fn late_file(&self, hour: UtcHour, name: &str, events: usize) {
        let mut body = String::new();
        for i in 0..events {
            body.push_str(&format!(
                r#"{{"event_type":"late","device_id":"late-{name}-{i}","$insert_id":"{i}","user_id":"u{i}","event_properties":{{"n":{i}}},"client_event_time":"{d} {h}:01:00.123456","server_received_time":"{d} {h}:02:00"}}"#,
                d = hour.date_str(),
                h = hour.hour_padded()
            ));
            body.push('\n');
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).unwrap();
        self.lake.put(&format!("{}zz-{name}.json.gz", lake_events_prefix(PROJECT, hour)), gz.finish().unwrap().into()).await.unwrap();
    }

    /// Exports the hour to the Delta table and, the same way, as JSON parts (the reference).
    async fn export(&self, hour: UtcHour, mode: ExportMode) -> Manifest {
        let delta = ExportTargets { lake: self.lake.clone(), events: self.dest.clone(), merged_ids: self.dest.clone() };
        let reference = ExportTargets { lake: self.lake.clone(), events: self.json.clone(), merged_ids: self.json.clone() };
        export_hour(&json_spec(), &reference, hour, mode, &self.settings).await.unwrap_or_else(|e| panic!("JSON export {hour}: {e}"));
        let report = export_hour(&delta_spec(), &delta, hour, mode, &self.settings).await.unwrap_or_else(|e| panic!("Delta export {hour}: {e}"));
        report.manifest.unwrap()
    }

    /// Every exported JSON line of the hour as the JSON export holds it now.
    async fn json_rows(&self, hour: UtcHour) -> Vec<Value> {
        let marker = json_spec().events_layout().complete_key(hour);
        let manifest: Manifest = serde_json::from_slice(&self.json.get(&marker).await.unwrap()).unwrap();
        let mut rows = Vec::new();
        for f in manifest.events.unwrap().files {
            let body = self.json.get(&f.key).await.unwrap();
            for line in std::io::BufReader::new(flate2::read::GzDecoder::new(&body[..])).lines() {
                rows.push(serde_json::from_str(&line.unwrap()).unwrap());
            }
        }
        rows
    }
}

/// What a version must hold: the JSON rows of each hour as they stood then.
async fn expect_version(s: &Scenario, version: u64, hours: &[UtcHour]) -> Value {
    let (mut rows, mut per_hour, mut samples) = (0, BTreeMap::new(), Vec::new());
    for &h in hours {
        let r = s.json_rows(h).await;
        rows += r.len();
        per_hour.insert(h.to_string(), r.len());
        // The first two and the last two events of the hour (the late ones among them).
        let n = r.len();
        for i in [0, 1, n.saturating_sub(2), n.saturating_sub(1)] {
            if i < n && !samples.contains(&r[i]) {
                samples.push(r[i].clone());
            }
        }
    }
    json!({"version": version, "rows": rows, "hours": per_hour, "samples": samples})
}

fn columns() -> Value {
    let kinds: serde_json::Map<String, Value> = export_columns()
        .map(|c| {
            let k = match c.column_type {
                ColumnType::Timestamp => "timestamp",
                ColumnType::Int64 => "int64",
                ColumnType::Float64 => "float64",
                ColumnType::Boolean => "boolean",
                ColumnType::Json => "json",
                ColumnType::String => "string",
            };
            (c.name.to_string(), Value::from(k))
        })
        .collect();
    Value::Object(kinds)
}

/// Runs the Python reader over `versions`; panics with its words when it disagrees.
fn read_with_deltalake(reader: &Reader, latest: u64, versions: Vec<Value>) {
    let spec =
        json!({"uri": reader.uri, "storage_options": reader.storage_options, "env": reader.env, "latest": latest, "columns": columns(), "versions": versions});
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&spec).unwrap()).unwrap();
    let venv = std::env::var("EMULATOR_VENV").expect("EMULATOR_VENV is not set: run through tests/run.sh (or source tests/scripts/env.sh)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/delta-with-deltalake.py");
    let out = std::process::Command::new(format!("{venv}/bin/python3")).arg(script).arg(file.path()).output().expect("run the deltalake reader");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the deltalake reader disagrees:\n{stdout}\n{stderr}");
    println!("{}", stdout.trim());
}

/// Two hours, late parts, a replace after the lake changed, a replace of the same bytes:
/// one version per export that changed the table, each read back by time travel.
async fn every_version_reads_as_the_json_export(dest: Arc<dyn ObjectStore>, reader: Reader) {
    let s = Scenario::new(dest);
    let (h1, h2) = (UtcHour::parse("2020-01-25T04").unwrap(), UtcHour::parse("2020-01-25T05").unwrap());
    s.lake_hour(h1, 300, 1).await;
    s.lake_hour(h2, 250, 2).await;
    let mut versions = Vec::new();

    assert_eq!(s.export(h1, ExportMode::Recurring).await.table_version, Some(0));
    versions.push(expect_version(&s, 0, &[h1]).await);
    assert_eq!(s.export(h2, ExportMode::Recurring).await.table_version, Some(1));
    versions.push(expect_version(&s, 1, &[h1, h2]).await);
    s.late_file(h2, "a", 40).await;
    assert_eq!(s.export(h2, ExportMode::Late).await.table_version, Some(2), "late parts: one more version");
    versions.push(expect_version(&s, 2, &[h1, h2]).await);
    // The replace: version 2 keeps the old hour 04, version 3 has the new one.
    s.late_file(h1, "b", 30).await;
    assert_eq!(s.export(h1, ExportMode::Replace).await.table_version, Some(3));
    versions.push(expect_version(&s, 3, &[h1, h2]).await);
    // The same bytes again (the lake hour did not change since the replace): no version.
    assert_eq!(s.export(h1, ExportMode::Replace).await.table_version, Some(3), "a replace of the same bytes names the earlier commit");

    assert_ne!(versions[2]["hours"][h1.to_string()], versions[3]["hours"][h1.to_string()], "the replace changed the hour");
    read_with_deltalake(&reader, 3, versions.clone());

    // Vacuum a day after the replace: the replaced parts are within the 7-day retention and
    // stay, so time travel to version 2 still reads the old hour.
    let table = DeltaTable::new(s.dest.clone(), ROOT);
    let state = table.load().await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    let upkeep = vacuum::upkeep(&table, &state, now + day).await.unwrap();
    assert_eq!((upkeep.vacuumed_files, upkeep.checkpoint), (0, Some(3)));
    read_with_deltalake(&reader, 3, versions[2..].to_vec());
    // Eight days on, the replaced parts are deleted; the latest version still reads whole.
    let upkeep = vacuum::upkeep(&table, &state, now + 8 * day).await.unwrap();
    assert_eq!(upkeep.vacuumed_files, state.tombstones.len());
    assert!(upkeep.vacuumed_files > 0);
    for path in state.tombstones.keys() {
        assert!(s.dest.head(&table.key_of(path).unwrap()).await.unwrap().is_none(), "{path} is vacuumed");
    }
    read_with_deltalake(&reader, 3, versions[3..].to_vec());
}

#[tokio::test]
async fn deltalake_reads_every_version_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let dest = Arc::new(LocalStore::new(dir.path()).unwrap());
    let uri = dir.path().join(ROOT).to_string_lossy().to_string();
    every_version_reads_as_the_json_export(dest, Reader { uri, storage_options: json!({}), env: json!({}) }).await;
}

fn moto_reader(bucket: &str) -> Reader {
    Reader {
        uri: format!("s3://{bucket}/{ROOT}"),
        storage_options: json!({
            "AWS_ENDPOINT_URL": moto_url(), "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": moto::REGION, "AWS_ALLOW_HTTP": "true", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"
        }),
        env: json!({}),
    }
}

#[tokio::test]
async fn deltalake_reads_every_version_on_s3_and_commits_are_timed() {
    let cfg = moto::admin_config(&moto_url());
    let bucket = unique_name("delta");
    moto::create_bucket(&cfg, &bucket).await;
    // Every object (parts, log entries, checkpoints) written with SSE-KMS, as a connection
    // with a KMS key writes them.
    let key = moto::create_kms_key(&cfg).await;
    let dest: Arc<dyn ObjectStore> = Arc::new(S3Store::new(moto::s3_client(&cfg), &bucket).with_kms_key(Some(key)));
    every_version_reads_as_the_json_export(dest.clone(), moto_reader(&bucket)).await;

    // Commit latency per hour on moto, over a table of a few versions: read the log, write
    // the next entry create-only (parts are already durable, so not counted).
    let table = DeltaTable::new(dest.clone(), "latency/187520");
    let start = UtcHour::parse("2020-02-01T00").unwrap();
    let mut took = Vec::new();
    for i in 0..20 {
        let hour = start.plus(i);
        let key = format!("latency/187520/dt={}/hour={}/187520_{}#0.parquet", hour.date_str(), hour.hour_padded(), hour.file_stem());
        dest.put(&key, bytes::Bytes::from_static(b"not read")).await.unwrap();
        let files = [FileEntry { key, part: Some(0), events: 1, bytes: 8, uncompressed_bytes: 8, sha256: format!("{i:064}") }];
        let t = Instant::now();
        let outcome = table
            .commit_hour(&HourCommit { connection_id: "c", hour, mode: ExportMode::Recurring, files: &files, now_ms: chrono::Utc::now().timestamp_millis() })
            .await
            .unwrap();
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(outcome.version, i as u64);
    }
    let mut sorted = took.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "delta commit latency on moto over 20 hours: median {:.1} ms, max {:.1} ms (the 11th includes the checkpoint at version 10: {:.1} ms)",
        sorted[10], sorted[19], took[10]
    );
}

#[tokio::test]
async fn deltalake_reads_every_version_on_azure_blob() {
    let container = azurite::new_container("delta").await;
    let dest: Arc<dyn ObjectStore> = Arc::new(azurite::sas_store(&container, azurite::ALL_PERMISSIONS));
    let blob_host = azurite_url().trim_end_matches('/').trim_end_matches(azurite::ACCOUNT).trim_end_matches('/').to_string();
    let reader = Reader {
        uri: format!("az://{container}/{ROOT}"),
        storage_options: json!({"azure_storage_use_emulator": "true", "allow_http": "true"}),
        env: json!({"AZURITE_BLOB_STORAGE_URL": blob_host}),
    };
    every_version_reads_as_the_json_export(dest, reader).await;
}

/// 25 hour exports: checkpoints at versions 10 and 20. With the JSON entries before 20
/// deleted, the reader can only start from the checkpoint, and still reads every row.
#[tokio::test]
async fn deltalake_reads_a_table_of_25_commits_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let dest = Arc::new(LocalStore::new(dir.path()).unwrap());
    let s = Scenario::new(dest.clone());
    let start = UtcHour::parse("2020-01-25T00").unwrap();
    let hours: Vec<UtcHour> = (0..25).map(|i| start.plus(i)).collect();
    for (i, &h) in hours.iter().enumerate() {
        s.lake_hour(h, 20, 100 + i as u64).await;
        assert_eq!(s.export(h, ExportMode::Recurring).await.table_version, Some(i as u64));
    }
    let table = DeltaTable::new(dest.clone(), ROOT);
    assert_eq!(table.list_versions().await.unwrap().1, vec![10, 20]);
    let expected = expect_version(&s, 24, &hours).await;
    for v in 0..20 {
        dest.delete(&table.log_key(&exporter::export::delta::actions::commit_file(v))).await.unwrap();
    }
    let uri = dir.path().join(ROOT).to_string_lossy().to_string();
    read_with_deltalake(&Reader { uri, storage_options: json!({}), env: json!({}) }, 24, vec![expected]);
}

/// Two hours committed at the same time on a store whose create-only write is a conditional
/// request (S3 If-None-Match on moto, Azure If-None-Match on Azurite): each trial's log is
/// gapless and holds each hour once.
async fn concurrent_commits_serialise(dest: Arc<dyn ObjectStore>, trials: u32) {
    let (a, b) = (UtcHour::parse("2020-03-01T01").unwrap(), UtcHour::parse("2020-03-01T02").unwrap());
    for trial in 0..trials {
        let table = DeltaTable::new(dest.clone(), format!("race-{trial}/187520"));
        let files = |hour: UtcHour| {
            vec![FileEntry {
                key: format!("race-{trial}/187520/dt={}/hour={}/187520_{}#0.parquet", hour.date_str(), hour.hour_padded(), hour.file_stem()),
                part: Some(0),
                events: 1,
                bytes: 8,
                uncompressed_bytes: 8,
                sha256: format!("{:064}", hour.index()),
            }]
        };
        let (fa, fb) = (files(a), files(b));
        let now = chrono::Utc::now().timestamp_millis();
        let ca = HourCommit { connection_id: "c", hour: a, mode: ExportMode::Recurring, files: &fa, now_ms: now };
        let cb = HourCommit { connection_id: "c", hour: b, mode: ExportMode::Recurring, files: &fb, now_ms: now };
        let (ra, rb) = tokio::join!(table.commit_hour(&ca), table.commit_hour(&cb));
        let mut versions = [ra.unwrap().version, rb.unwrap().version];
        versions.sort_unstable();
        assert_eq!(versions, [0, 1], "trial {trial}: one version each");
        assert_eq!(table.list_versions().await.unwrap().0, vec![0, 1], "trial {trial}: a gapless log");
        let state = table.load().await.unwrap();
        assert_eq!(state.files.len(), 2, "trial {trial}: both hours' parts, once each");
        assert_eq!(state.txns.len(), 2);
        let protocols = table.read_entry(0).await.unwrap().iter().filter(|x| x.protocol.is_some()).count()
            + table.read_entry(1).await.unwrap().iter().filter(|x| x.protocol.is_some()).count();
        assert_eq!(protocols, 1, "trial {trial}: the loser of version 0 did not repeat the table's creation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_hours_serialise_on_s3_conditional_puts() {
    // The single-threaded moto: the threaded one can let two create-only puts both win.
    let cfg = moto::admin_config(&moto_serial_url());
    let bucket = unique_name("delta-race");
    moto::create_bucket(&cfg, &bucket).await;
    concurrent_commits_serialise(Arc::new(S3Store::new(moto::s3_client(&cfg), &bucket)), 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_hours_serialise_on_azure_conditional_puts() {
    let container = azurite::new_container("delta-race").await;
    concurrent_commits_serialise(Arc::new(azurite::sas_store(&container, azurite::ALL_PERMISSIONS)), 10).await;
}
