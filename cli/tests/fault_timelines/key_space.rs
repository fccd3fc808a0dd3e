//! Fault timelines: one owner per key space (two connections never write the same keys; the
//! organisation's merged IDs have one writer) and late merge records.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use exporter::export::manifest::Manifest;
use exporter::hour::HourRange;
use sha2::{Digest, Sha256};

use crate::world::*;

const OTHER_PROJECT: &str = "187521";

/// Writes a connection file like the world's own (org 42, the world's destination folder),
/// with `extra` fields on top; returns its path.
fn connection_file(w: &World, id: &str, prefix: &str, extra: serde_json::Value) -> PathBuf {
    let mut doc = serde_json::json!({"id": id, "org_id": "42", "project_id": PROJECT, "created": "2020-01-25T00:06:00Z",
        "destination": {"type": "local", "path": w.dest, "prefix": prefix}, "admins": ["admin@example.com"], "creator": "owner@example.com"});
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    let file = w.home.parent().unwrap().join(format!("{id}.json"));
    std::fs::write(&file, doc.to_string()).unwrap();
    file
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn manifest_at(path: &Path) -> Option<Manifest> {
    std::fs::read(path).ok().map(|b| serde_json::from_slice(&b).expect("manifest"))
}

fn gz_lines(bytes: &[u8]) -> Vec<String> {
    BufReader::new(flate2::read::GzDecoder::new(bytes)).lines().map(Result::unwrap).collect()
}

fn merge_lake_dir(w: &World, hour: exporter::hour::UtcHour) -> PathBuf {
    w.home.join("lake").join(exporter::export::layout::lake_merges_prefix("42", hour))
}

/// Merge records in the lake for `hour` (every file, plain JSON lines).
fn lake_merge_lines(w: &World, hour: exporter::hour::UtcHour) -> u64 {
    let mut n = 0;
    for f in files_under(&merge_lake_dir(w, hour)) {
        let mut s = String::new();
        std::fs::File::open(f).unwrap().read_to_string(&mut s).unwrap();
        n += s.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    }
    n
}

fn merged_ids_file(w: &World, hour: exporter::hour::UtcHour) -> PathBuf {
    w.dest.join("exports/-42").join(format!("-42_{}.json.gz", hour.file_stem()))
}

/// The organisation's merged-IDs file of `hour` holds every lake merge record, and the
/// manifest of its one writer lists it with its sha256 and every merge file it read.
fn assert_merged_ids_complete(w: &World, writer: &Manifest) {
    let hour = writer.hour;
    let merged = writer.merged_ids.as_ref().unwrap_or_else(|| panic!("{hour}: {} did not write the merged IDs", writer.connection_id));
    let bytes = std::fs::read(merged_ids_file(w, hour)).unwrap_or_else(|_| panic!("{hour}: no merged-IDs file"));
    assert_eq!(merged.files.len(), 1, "{hour}: one merged-IDs file");
    assert_eq!(hex::encode(Sha256::digest(&bytes)), merged.files[0].sha256, "{hour}: the merged-IDs file is not the one the manifest lists");
    assert_eq!(gz_lines(&bytes).len() as u64, lake_merge_lines(w, hour), "{hour}: every merge record of the lake, once");
    assert_eq!(merged.accounting.exported, lake_merge_lines(w, hour));
    let mut listed: Vec<String> = merged.lake_inputs.iter().map(|i| i.key.clone()).collect();
    listed.sort();
    let lake: Vec<String> =
        files_under(&merge_lake_dir(w, hour)).iter().map(|p| p.strip_prefix(w.home.join("lake")).unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(listed, lake, "{hour}: the manifest lists every merge file it read");
}

fn write_merges(w: &World, hour: exporter::hour::UtcHour, name: &str, ids: std::ops::Range<u64>) {
    let dir = merge_lake_dir(w, hour);
    std::fs::create_dir_all(&dir).unwrap();
    let base = hour.start().timestamp_millis();
    let body: String = ids
        .map(|i| {
            format!(
                "{{\"scope\":-42,\"merge_time\":{},\"merge_server_time\":{},\"amplitude_id\":{},\"merged_amplitude_id\":{}}}\n",
                base + i as i64,
                base + i as i64 + 250,
                100_000_000 + i,
                200_000_000 + i
            )
        })
        .collect();
    std::fs::write(dir.join(name), body).unwrap();
}

#[test]
fn a_json_and_a_parquet_connection_on_one_place_are_refused_at_create_with_the_fix_named() {
    let w = World::new("2020-01-25T00..2020-01-25T02", 60);
    let twin = connection_file(&w, "c2", "exports", serde_json::json!({"format": "parquet"}));
    let o = w.run(&["connections", "create", twin.to_str().unwrap()], "2020-01-25T00:06:00Z");
    let said = text(&o);
    assert!(!o.status.success(), "a second connection on c1's keys was accepted:\n{said}");
    assert!(said.contains("destination.prefix") && said.contains("connection c1"), "the refusal names the field and the connection:\n{said}");
    assert!(said.contains("\"exports/c2\"") && said.contains("connections delete c1"), "the refusal names what to change:\n{said}");
    assert!(!w.ok(&["connections", "list"], "2020-01-25T00:06:00Z").contains("c2"), "nothing was stored");
    // The fix it names works: another prefix.
    let moved = connection_file(&w, "c2", "exports/c2", serde_json::json!({"format": "parquet"}));
    w.ok(&["connections", "create", moved.to_str().unwrap()], "2020-01-25T00:06:00Z");
    w.replay("2020-01-25T00:20:00Z", "2020-01-25T03:20:00Z", |_| {});
    for hour in HourRange::parse("2020-01-25T00", "2020-01-25T02").unwrap().hours() {
        let own = manifest_at(&w.dest.join(format!("exports/c2/{PROJECT}/{PROJECT}_{}_complete", hour.file_stem()))).expect("c2's own marker");
        assert_eq!(own.connection_id, "c2");
        let events = own.events.unwrap();
        assert!(events.files.iter().all(|f| f.key.starts_with("exports/c2/") && f.key.ends_with(".parquet")), "{:?}", events.files);
        assert_eq!(events.accounting.exported, w.lake_lines(hour), "{hour}: c2 exported every event itself");
        assert_eq!(w.marker(hour).unwrap().connection_id, "c1");
    }
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T02").unwrap());
}

#[test]
fn a_stored_pair_on_one_place_fails_loudly_at_run_writes_nothing_and_recovers_once_moved() {
    let w = World::new("2020-01-25T00..2020-01-25T02", 60);
    // A connection stored before the rule (or racing a create): made elsewhere, then its
    // stored file pointed at c1's prefix.
    let elsewhere = connection_file(&w, "c2", "exports/c2", serde_json::json!({"format": "parquet"}));
    w.ok(&["connections", "create", elsewhere.to_str().unwrap()], "2020-01-25T00:06:00Z");
    let stored = w.home.join("control/connections/c2.json");
    let original = std::fs::read_to_string(&stored).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&original).unwrap();
    doc["destination"]["prefix"] = serde_json::json!("exports");
    std::fs::write(&stored, doc.to_string()).unwrap();

    w.replay("2020-01-25T00:20:00Z", "2020-01-25T03:20:00Z", |_| {});
    assert!(files_under(&w.dest).iter().all(|f| !f.to_string_lossy().ends_with(".parquet")), "c2 wrote a part: {:?}", files_under(&w.dest));
    assert!(files_under(&w.home.join("events/c2")).is_empty(), "c2 announced hours it never wrote");
    for hour in HourRange::parse("2020-01-25T00", "2020-01-25T02").unwrap().hours() {
        assert_eq!(w.marker(hour).expect("c1 exported").connection_id, "c1", "{hour}: c1's marker is c1's");
    }
    let runs = w.ok(&["runs", "c2"], "2020-01-25T03:30:00Z");
    assert!(runs.contains("failed") && runs.contains("connection c1") && runs.contains("destination.prefix"), "the run records say why:\n{runs}");
    let state = w.state("c2", "2020-01-25T03:30:00Z");
    assert!(state != "ok" && state.contains("connection c1"), "status must say c2 is broken and why: {state}");
    assert_eq!(w.state("c1", "2020-01-25T03:30:00Z"), "ok", "the older connection keeps working");

    // Moved to its own prefix, as the error says: every owed hour is exported.
    std::fs::write(&stored, original).unwrap();
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    for hour in HourRange::parse("2020-01-25T00", "2020-01-25T03").unwrap().hours() {
        let own = manifest_at(&w.dest.join(format!("exports/c2/{PROJECT}/{PROJECT}_{}_complete", hour.file_stem()))).expect("c2's own marker");
        assert_eq!(own.events.unwrap().accounting.exported, w.lake_lines(hour), "{hour}");
    }
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T03").unwrap());
}

#[test]
fn several_projects_of_one_organisation_share_a_prefix_and_one_of_them_writes_the_merged_ids() {
    let w = World::new("2020-01-25T00..2020-01-25T04", 60);
    w.ok(
        &[
            "generate",
            "--project",
            OTHER_PROJECT,
            "--org",
            "42",
            "--from",
            "2020-01-25T00",
            "--to",
            "2020-01-25T04",
            "--events-per-hour",
            "40",
            "--merges-per-hour",
            "7",
        ],
        "2020-01-25T00:05:00Z",
    );
    w.ok(&["projects", "add", OTHER_PROJECT, "--org", "42"], "2020-01-25T00:05:00Z");
    let app = connection_file(&w, "c2", "exports", serde_json::json!({"project_id": OTHER_PROJECT}));
    w.ok(&["connections", "create", app.to_str().unwrap()], "2020-01-25T00:06:00Z");
    let app_marker =
        |hour: exporter::hour::UtcHour| manifest_at(&w.dest.join(format!("exports/{OTHER_PROJECT}/{OTHER_PROJECT}_{}_complete", hour.file_stem())));

    w.replay("2020-01-25T00:20:00Z", "2020-01-25T02:20:00Z", |_| {});
    for hour in HourRange::parse("2020-01-25T00", "2020-01-25T01").unwrap().hours() {
        let web = w.marker(hour).expect("c1 exported");
        assert_merged_ids_complete(&w, &web);
        let other = app_marker(hour).expect("c2 exported");
        assert_eq!(other.merged_ids, None, "{hour}: c2 must not write the organisation's merged IDs beside c1");
        assert_eq!(other.merged_ids_written_by.as_deref(), Some("c1"), "{hour}: c2's manifest says who writes them");
        assert_eq!(other.events.unwrap().accounting.exported, 40, "{hour}: c2's own events");
    }
    // c2's Hour Exported events say where its merged IDs are.
    let event = files_under(&w.home.join("events/c2")).into_iter().next().expect("c2 announced its hours");
    let event: serde_json::Value = serde_json::from_slice(&std::fs::read(event).unwrap()).unwrap();
    assert_eq!(event["detail"]["merged_ids_written_by"], "c1", "{event}");

    // Ownership passes on while c1 is disabled, and comes back with it.
    w.ok(&["connections", "disable", "c1"], "2020-01-25T02:30:00Z");
    w.replay("2020-01-25T03:20:00Z", "2020-01-25T03:20:00Z", |_| {});
    let while_away = app_marker(h("2020-01-25T02")).expect("c2 exported 02");
    assert_merged_ids_complete(&w, &while_away);
    assert_eq!(while_away.connection_id, "c2");
    w.ok(&["connections", "enable", "c1"], "2020-01-25T03:30:00Z");
    w.replay("2020-01-25T05:20:00Z", "2020-01-25T05:20:00Z", |_| {});
    let back = w.marker(h("2020-01-25T04")).expect("c1 exported 04");
    assert_merged_ids_complete(&w, &back);
    assert_eq!(app_marker(h("2020-01-25T04")).unwrap().merged_ids_written_by.as_deref(), Some("c1"));
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T04").unwrap());
}

#[test]
fn a_merge_file_landing_after_the_merged_ids_file_reaches_the_destination() {
    let w = World::new("2020-01-25T03..2020-01-25T03", 80);
    let hour = h("2020-01-25T03");
    write_merges(&w, hour, "merges-00000.json", 0..3);
    w.replay("2020-01-25T00:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    let first = w.marker(hour).expect("exported");
    assert_merged_ids_complete(&w, &first);
    let part0 = std::fs::read(w.part_dir().join(format!("{PROJECT}_2020-01-25_3#0.json.gz"))).unwrap();
    // Hour Exported events of hour 03 (hourly runs announce later hours meanwhile).
    let events_of_03 = |w: &World| {
        files_under(&w.home.join("events/c1"))
            .iter()
            .map(|p| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap())
            .filter(|e| e["detail"]["hour"] == "2020-01-25T03")
            .count()
    };
    let events_before = events_of_03(&w);

    // A merge record lands an hour late, in a file sorting before the first one.
    write_merges(&w, hour, "a-late.json", 3..5);
    w.replay("2020-01-25T05:20:00Z", "2020-01-25T05:20:00Z", |_| {});
    w.ok(&["export", CONN, "--hour", "2020-01-25T03", "--mode", "late"], "2020-01-25T05:25:00Z");
    let after = w.marker(hour).unwrap();
    assert_merged_ids_complete(&w, &after);
    assert_eq!(after.merged_ids.as_ref().unwrap().accounting.exported, 5, "the late merges are in the file");
    assert_eq!(after.events, first.events, "the event parts are not touched");
    assert_eq!(std::fs::read(w.part_dir().join(format!("{PROJECT}_2020-01-25_3#0.json.gz"))).unwrap(), part0, "part #0 is never rewritten");
    // The event and the run record follow it.
    let announced: Vec<serde_json::Value> =
        files_under(&w.home.join("events/c1")).iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect();
    assert_eq!(events_of_03(&w), events_before + 1, "one new Hour Exported event for the rewritten hour");
    assert!(
        announced.iter().any(|e| e["detail"]["mode"] == "late" && e["detail"]["merged_ids"]["records"] == 5 && e["detail"]["hour"] == "2020-01-25T03"),
        "{announced:?}"
    );
    let records: Vec<serde_json::Value> = files_under(&w.home.join("control/runs/c1/2020-01-25T03"))
        .iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("late-"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    assert!(
        records.iter().any(|r| r["outcome"] == "exported"
            && r["merged_ids"]["exported"] == 5
            && r["files"].as_array().unwrap().iter().any(|f| f == "exports/-42/-42_2020-01-25_3.json.gz")),
        "the run record shows the rewrite: {records:?}"
    );

    // Idempotent: again finds nothing new; a replace writes the very same bytes.
    let file = std::fs::read(merged_ids_file(&w, hour)).unwrap();
    w.ok(&["export", CONN, "--hour", "2020-01-25T03", "--mode", "late"], "2020-01-25T05:40:00Z");
    assert_eq!(w.marker(hour).unwrap(), after);
    w.ok(&["export", CONN, "--hour", "2020-01-25T03", "--mode", "replace"], "2020-01-25T05:45:00Z");
    assert_eq!(std::fs::read(merged_ids_file(&w, hour)).unwrap(), file, "a replace writes the bytes the late run wrote");
    assert_eq!(w.marker(hour).unwrap().merged_ids, after.merged_ids);
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T03", "2020-01-25T03").unwrap());
}
