//! A Delta connection's run killed (kill -9) between its commit and its marker: the next run
//! exports the hour again, finds its parts committed with the same bytes, commits nothing,
//! deletes its own copies and writes the marker naming the first commit's version.

use exporter::adapters::local::store::LocalStore;
use exporter::export::delta::actions::{is_hour, TableData};
use exporter::export::delta::commit::app_id;
use exporter::export::delta::log::DeltaTable;
use exporter::export::manifest::Manifest;
use exporter::ports::ObjectStore;

use crate::world::*;

const DELTA: &str = "c-delta";

/// Creates the Delta connection (Parquet, hive, events only) in a folder of its own: its path.
fn create_delta_connection(w: &World) -> std::path::PathBuf {
    let dest = w.home.parent().unwrap().join("dest-delta");
    std::fs::create_dir_all(&dest).unwrap();
    let conn = serde_json::json!({"id": DELTA, "org_id": "42", "project_id": PROJECT, "created": "2020-01-25T00:05:00Z",
        "destination": {"type": "local", "path": dest, "prefix": "lake"}, "export": {"events": true, "merged_ids": false},
        "format": "parquet", "layout": "hive", "table": "delta", "admins": ["admin@example.com"], "creator": "owner@example.com"});
    let file = w.home.parent().unwrap().join("delta.json");
    std::fs::write(&file, conn.to_string()).unwrap();
    w.ok(&["connections", "create", file.to_str().unwrap()], "2020-01-25T00:05:00Z");
    dest
}

#[test]
fn kill_9_between_the_delta_commit_and_the_marker_then_a_rerun_adds_no_second_commit() {
    let mut w = World::new("2020-01-25T03..2020-01-25T03", 400);
    w.env.push(("EXPORT_PART_SIZE_BYTES".into(), "150000".into()));
    let dest = create_delta_connection(&w);

    let hour = h("2020-01-25T03");
    let root = format!("lake/{PROJECT}");
    let marker = dest.join(&root).join("dt=2020-01-25/hour=03").join(format!("_{PROJECT}_2020-01-25_3_complete"));
    kill_at(&w, &["export", DELTA, "--hour", "2020-01-25T03"], "2020-01-25T04:25:00Z", "after_delta_commit");
    assert!(!marker.exists(), "killed before its marker");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = std::sync::Arc::new(LocalStore::new(&dest).unwrap());
    let table = DeltaTable::new(store.clone(), root.clone());
    let (committed, _) = rt.block_on(table.list_versions()).unwrap();
    assert_eq!(committed, vec![0], "the killed run's commit is in the log");
    let parts_after_kill = rt.block_on(store.list(&format!("{root}/dt=2020-01-25/hour=03/"))).unwrap().len();

    // The lease expires; the next hourly run counts the death and its retry exports the hour
    // again (hour 04, empty, is exported too: one more commit of its own).
    w.replay("2020-01-25T05:20:00Z", "2020-01-25T05:25:00Z", |_| {});
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(&marker).expect("the rerun writes the marker")).unwrap();
    assert_eq!(manifest.table_version, Some(0), "the marker names the killed run's commit");
    let (versions, _) = rt.block_on(table.list_versions()).unwrap();
    let touching: Vec<u64> = versions
        .iter()
        .copied()
        .filter(|&v| rt.block_on(table.read_entry(v)).unwrap().iter().any(|a| a.add.as_ref().is_some_and(|a| is_hour(&a.partition_values, hour))))
        .collect();
    assert_eq!(touching, vec![0], "no second commit adds hour 03 (log: {versions:?})");
    let state = rt.block_on(table.load()).unwrap();
    assert_eq!(state.txns.get(&app_id(DELTA, TableData::Events, hour)), Some(&0));
    let live: Vec<&str> = state.files.values().filter(|a| is_hour(&a.partition_values, hour)).map(|a| a.sha256().unwrap()).collect();
    let listed: Vec<&str> = manifest.events.as_ref().unwrap().files.iter().map(|f| f.sha256.as_str()).collect();
    assert_eq!(live.len(), listed.len());
    assert!(listed.iter().all(|s| live.contains(s)), "the manifest lists the committed parts");
    let folder = rt.block_on(store.list(&format!("{root}/dt=2020-01-25/hour=03/"))).unwrap().len();
    assert_eq!(folder, parts_after_kill + 1, "the rerun's copies are deleted again: the folder holds the parts and the marker");
    w.assert_complete_and_consistent(exporter::hour::HourRange::parse("2020-01-25T03", "2020-01-25T03").unwrap());
}

/// A Delta table whose checkpoints cannot be written for a while (folders squat on the
/// checkpoint files of versions 10 to 12): every hour is still exported; from version 10 on,
/// `status` says `TABLE UPKEEP` with the cause and the run records list it; the upkeep is
/// retried at every commit, so once the folders are gone version 13 writes the checkpoint and
/// status is `ok` again, and the next upkeep falls due at version 20 as usual.
#[test]
fn a_failed_delta_upkeep_shows_in_status_until_an_upkeep_succeeds() {
    let w = World::new("2020-01-25T00..2020-01-25T20", 20);
    let dest = create_delta_connection(&w);
    let log = dest.join(format!("lake/{PROJECT}/_delta_log"));
    let squatters: Vec<_> = (10..=12).map(|v| log.join(format!("{v:020}.checkpoint.parquet"))).collect();
    for squatter in &squatters {
        std::fs::create_dir_all(squatter).unwrap();
    }
    let tick = |hour: u32| {
        let at = format!("2020-01-25T{hour:02}:20:00Z");
        w.run(&["tick"], &at);
        at
    };
    // The tick at hh:20 exports hour hh-1: hours 00..09 are versions 0..9.
    for hour in 1..=13 {
        let at = tick(hour);
        let state = w.state(DELTA, &at);
        if hour <= 10 {
            assert_eq!(state, "ok", "before version 10 at {at}");
        } else {
            assert!(state.starts_with("TABLE UPKEEP"), "version {}'s upkeep failed: {state}", hour - 1);
            let status = w.ok(&["status"], &at);
            let words = status.split_whitespace().collect::<Vec<_>>().join(" ");
            let cause = format!("version {}: i/o error", hour - 1);
            assert!(words.contains(&cause) && words.contains("Is a directory"), "the condition names the failed upkeep and its cause:\n{status}");
        }
    }
    let runs = w.ok(&["runs", DELTA, "--json"], "2020-01-25T13:21:00Z");
    assert_eq!(runs.matches("table_upkeep_failures").count(), 3, "the run records of versions 10 to 12 list the failure:\n{runs}");
    for squatter in &squatters {
        std::fs::remove_dir_all(squatter).unwrap();
    }
    let at = tick(14);
    assert_eq!(w.state(DELTA, &at), "ok", "version 13's upkeep succeeded");
    let last_checkpoint = || -> serde_json::Value { serde_json::from_slice(&std::fs::read(log.join("_last_checkpoint")).unwrap()).unwrap() };
    assert_eq!(last_checkpoint()["version"], 13);
    for hour in 15..=21 {
        tick(hour);
    }
    assert_eq!(last_checkpoint()["version"], 20, "the next upkeep at version 20");
    w.assert_status_ok("2020-01-25T21:21:00Z");
    w.assert_complete_and_consistent(exporter::hour::HourRange::parse("2020-01-25T00", "2020-01-25T20").unwrap());
}
