//! Fault timelines, replayed through the real `exportctl` binary in embedded mode with
//! `--at` as the one clock: an outage longer than the retries, a late lake file, open and
//! future hours, a replace over an expired lake hour, a retry firing while disabled, kill -9
//! at each step of a replace, two writers at once (50 trials), a redelivered tick, a lake
//! object we cannot read, an hour too large for the limits, a Delta connection killed
//! between its commit and its marker.
//!
//! Every scenario ends with the same check: every owed hour has a marker whose manifest
//! matches the stored parts (names, counts, sha256), every lake event is exported exactly
//! once across all parts (uuids counted), and the accounting balances.

//!
//! The timelines of "no hour is lost in silence" live in one file per concern beside this one.

mod world;

mod backfills;
mod delta;
mod freshness;
mod key_space;
mod operator_plane;
mod poison;
mod silence;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use chrono::Duration;
use exporter::hour::HourRange;
use sha2::{Digest, Sha256};
use world::*;

#[test]
fn an_outage_longer_than_the_whole_retry_schedule_loses_no_hour_and_sends_one_true_email() {
    let w = World::new("2020-01-25T00..2020-01-25T07", 120);
    let away = w.dest.with_extension("away");
    let mut status_during = String::new();
    // The destination folder is gone 02:00-07:00: longer than 5+15+45+135 minutes of retries.
    w.replay("2020-01-25T00:20:00Z", "2020-01-25T10:40:00Z", |at| {
        if at == t("2020-01-25T02:00:00Z") {
            std::fs::rename(&w.dest, &away).unwrap();
        }
        if at == t("2020-01-25T06:00:00Z") {
            status_during = w.ok(&["status"], &rfc(at));
        }
        if at == t("2020-01-25T07:00:00Z") {
            std::fs::rename(&away, &w.dest).unwrap();
        }
    });
    // Meanwhile: the owed hours were listed, failing, blamed on the destination.
    assert!(status_during.contains("FAILING (destination)"), "{status_during}");
    for hour in ["2020-01-25T01", "2020-01-25T02", "2020-01-25T03", "2020-01-25T04"] {
        assert!(status_during.contains(&format!("{hour} failing")), "{hour} not listed as owed:\n{status_during}");
    }
    assert_eq!(w.emails(), 1, "one email for the whole episode");
    let email = std::fs::read_dir(w.home.join("outbox")).unwrap().flatten().next().unwrap().path();
    let body = exporter::adapters::local::outbox::plain_text(&std::fs::read_to_string(email).unwrap()).unwrap();
    assert!(body.contains("the next run exports these hours"), "{body}");
    // ... and the promise is true.
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T09").unwrap());
}

#[test]
fn a_lake_file_landing_after_the_marker_is_exported_as_a_new_part_and_nothing_repeats() {
    let w = World::new("2020-01-25T03..2020-01-25T03", 200);
    w.replay("2020-01-25T00:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    let hour = h("2020-01-25T03");
    let first = w.marker(hour).expect("exported");
    assert_eq!(first.events.as_ref().unwrap().files.len(), 1);
    let part0 = std::fs::read(w.part_dir().join(format!("{PROJECT}_2020-01-25_3#0.json.gz"))).unwrap();
    // A Firehose buffer flushes late: a new file in the hour folder, with one event that
    // repeats an already exported one (same device_id and $insert_id) and two new ones.
    let old_line = first_lake_line(&w, hour);
    let mut late = format!("{old_line}\n");
    for i in 0..2 {
        let mut v: serde_json::Value = serde_json::from_str(&old_line).unwrap();
        v["$insert_id"] = serde_json::json!(format!("late-{i}"));
        v.as_object_mut().unwrap().remove("uuid");
        late.push_str(&format!("{v}\n"));
    }
    std::fs::write(w.lake_hour_dir(hour).join("zz-late.json"), late).unwrap();
    w.replay("2020-01-25T05:20:00Z", "2020-01-25T05:20:00Z", |_| {});
    let after = w.marker(hour).unwrap();
    let events = after.events.as_ref().unwrap();
    assert_eq!(events.files.len(), 2, "the late file became part #1: {:?}", events.files);
    assert_eq!(events.files[1].events, 2, "the repeated event is not exported again");
    assert_eq!(events.accounting.duplicates, 1);
    assert_eq!(std::fs::read(w.part_dir().join(format!("{PROJECT}_2020-01-25_3#0.json.gz"))).unwrap(), part0, "part #0 is never rewritten");
    let runs = w.ok(&["runs", CONN], "2020-01-25T05:30:00Z");
    assert!(runs.lines().any(|l| l.contains("late") && l.contains("exported")), "the run record shows the late run:\n{runs}");
    // A second pass finds nothing new.
    w.replay("2020-01-25T06:20:00Z", "2020-01-25T06:20:00Z", |_| {});
    assert_eq!(w.marker(hour).unwrap(), after);
    // The duplicate line is counted, not exported: the lake holds one line more than the parts.
    let mut check = w.marker(hour).unwrap().events.unwrap();
    check.accounting.exported += check.accounting.duplicates;
    assert_eq!(check.accounting.exported, w.lake_lines(hour));
}

#[test]
fn open_and_future_hours_are_refused_and_nothing_is_written() {
    let w = World::new("2020-01-25T05..2020-01-25T06", 50);
    // 06:10: hour 06 is open, hour 05 is still settling (ready at 06:16).
    for (args, what) in [
        (vec!["export", CONN, "--hour", "2020-01-25T06"], "open hour"),
        (vec!["export", CONN, "--hour", "2020-01-25T05", "--mode", "replace"], "settling hour"),
        (vec!["export", CONN, "--hour", "2020-01-26T00"], "future hour"),
        (vec!["backfill", CONN, "--from", "2020-01-25T00", "--to", "2020-01-25T06"], "backfill into the open hour"),
    ] {
        let o = w.run(&args, "2020-01-25T06:10:00Z");
        assert!(!o.status.success(), "{what} was accepted: {}", text(&o));
        assert!(text(&o).contains("not closed yet"), "{what}: {}", text(&o));
    }
    w.ok(&["tick"], "2020-01-25T06:10:00Z");
    assert!(w.marker(h("2020-01-25T05")).is_none() && w.marker(h("2020-01-25T06")).is_none(), "a tick exported an unsettled hour");
    assert!(w.dest_snapshot().keys().all(|k| !k.to_string_lossy().contains("2020-01-25_5") && !k.to_string_lossy().contains("2020-01-25_6")));
    w.replay("2020-01-25T07:20:00Z", "2020-01-25T07:20:00Z", |_| {});
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T06").unwrap());
}

#[test]
fn a_replace_over_an_expired_lake_hour_refuses_and_deletes_nothing() {
    let w = World::new("2020-01-25T02..2020-01-25T03", 80);
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    let before = w.dest_snapshot();
    std::fs::remove_dir_all(w.lake_hour_dir(h("2020-01-25T02"))).unwrap();
    let o = w.run(&["backfill", CONN, "--from", "2020-01-25T02", "--to", "2020-01-25T03"], "2020-01-25T05:00:00Z");
    assert!(!o.status.success());
    let out = text(&o);
    // Refused at once: hour 02 is before the first hour the lake still holds.
    assert!(
        out.contains("is before 2020-01-25T03, the first hour the event lake holds") && out.contains("retention") && out.contains("--allow-empty-lake"),
        "{out}"
    );
    let after = w.dest_snapshot();
    for (k, v) in &before {
        if k.to_string_lossy().contains("2020-01-25_2") {
            assert_eq!(after.get(k), Some(v), "{} was changed or deleted", k.display());
        }
    }
    // Nothing is owed because of the refusal: the hour is still complete where it is.
    assert!(!w.ok(&["status"], "2020-01-25T05:00:00Z").contains("owed:"));
    // The operator who knows the hour is really empty says so.
    w.ok(&["backfill", CONN, "--from", "2020-01-25T02", "--to", "2020-01-25T02", "--allow-empty-lake"], "2020-01-25T05:05:00Z");
    assert_eq!(w.marker(h("2020-01-25T02")).unwrap().events.unwrap().accounting.read, 0);
}

#[test]
fn a_retry_firing_while_the_connection_is_disabled_is_not_lost() {
    let w = World::new("2020-01-25T03..2020-01-25T03", 60);
    let away = w.dest.with_extension("away");
    std::fs::rename(&w.dest, &away).unwrap();
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    w.ok(&["connections", "disable", CONN], "2020-01-25T04:21:00Z");
    std::fs::rename(&away, &w.dest).unwrap();
    // The retry of 04:25 fires while disabled: refused, but the hour stays owed.
    let o = w.run(&["tick"], "2020-01-25T04:25:00Z");
    assert!(text(&o).contains("disabled"), "{}", text(&o));
    assert!(w.ok(&["status"], "2020-01-25T04:30:00Z").contains("2020-01-25T03 failing"));
    w.ok(&["connections", "enable", CONN], "2020-01-25T04:40:00Z");
    w.replay("2020-01-25T05:20:00Z", "2020-01-25T05:20:00Z", |_| {});
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T04").unwrap());
}

/// Starts exportctl paused at `step` (see `exporter::export::hour_export::crash_point`) and kills it
#[test]
fn kill_9_at_each_step_of_a_replace_is_repaired_by_the_next_tick() {
    for step in ["after_marker_delete", "between_parts", "before_stale_delete", "before_marker"] {
        let mut w = World::new("2020-01-25T03..2020-01-25T03", 600);
        // Small parts, so the hour has several (and a crash can fall between two).
        w.env.push(("EXPORT_PART_SIZE_BYTES".into(), "200000".into()));
        w.replay("2020-01-25T04:20:00Z", "2020-01-25T04:20:00Z", |_| {});
        assert!(w.marker(h("2020-01-25T03")).unwrap().events.unwrap().files.len() >= 3, "{step}: several parts");
        kill_at(&w, &["export", CONN, "--hour", "2020-01-25T03", "--mode", "replace"], "2020-01-25T05:00:00Z", step);
        // The killed run's lease expires after 20 minutes: the next hourly run counts the
        // death as a failed attempt, and its retry, 5 minutes later, repairs the hour.
        w.replay("2020-01-25T05:20:00Z", "2020-01-25T05:25:00Z", |_| {});
        assert!(w.ok(&["runs", CONN], "2020-01-25T05:30:00Z").contains("stopped without a result"), "{step}: the death is a run record");
        w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T04").unwrap());
    }
}

#[test]
fn a_plain_export_after_a_replace_died_finishes_the_replace_instead_of_calling_the_hour_done() {
    let mut w = World::new("2020-01-25T03..2020-01-25T03", 600);
    w.env.push(("EXPORT_PART_SIZE_BYTES".into(), "200000".into()));
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    kill_at(&w, &["export", CONN, "--hour", "2020-01-25T03", "--mode", "replace"], "2020-01-25T05:00:00Z", "after_marker_delete");
    assert!(w.marker(h("2020-01-25T03")).is_none(), "the replace died with the marker deleted");
    // Not the hourly schedule but an operator's plain (recurring) export, once the lease expired.
    w.ok(&["export", CONN, "--hour", "2020-01-25T03"], "2020-01-25T05:25:00Z");
    assert!(w.marker(h("2020-01-25T03")).is_some(), "the hour was left without its marker");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T03", "2020-01-25T03").unwrap());
}

#[test]
fn two_writers_of_one_hour_with_a_late_file_between_their_starts_never_disagree_with_the_parts() {
    let mut w = World::new("2020-01-25T03..2020-01-25T03", 300);
    w.env.push(("EXPORT_PART_SIZE_BYTES".into(), "150000".into()));
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    let hour = h("2020-01-25T03");
    let template: serde_json::Value = serde_json::from_str(&first_lake_line(&w, hour)).unwrap();
    let (mut busy, mut trials) = (0, 0);
    for trial in 0..50 {
        let at = rfc(t("2020-01-25T05:00:00Z") + Duration::minutes(trial));
        let a =
            w.command(&["export", CONN, "--hour", "2020-01-25T03", "--mode", "replace"], &at).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut v = template.clone();
        v["$insert_id"] = serde_json::json!(format!("late-{trial}"));
        v.as_object_mut().unwrap().remove("uuid");
        std::fs::write(w.lake_hour_dir(hour).join(format!("zz-late-{trial:02}.json")), format!("{v}\n")).unwrap();
        let mode = if trial % 2 == 0 { "late" } else { "replace" };
        let b = w.command(&["export", CONN, "--hour", "2020-01-25T03", "--mode", mode], &at).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        busy += outs.iter().filter(|o| text(o).contains("HourBusy")).count();
        trials += 1;
        // After both: whatever happened, the marker agrees with the stored parts.
        let manifest = w.marker(hour).expect("a marker");
        let stored: BTreeSet<String> = std::fs::read_dir(w.part_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{PROJECT}_2020-01-25_3#")))
            .collect();
        let events = manifest.events.unwrap();
        let listed: BTreeSet<String> = events.files.iter().map(|f| f.key.rsplit('/').next().unwrap().to_string()).collect();
        assert_eq!(stored, listed, "trial {trial}: manifest and stored parts disagree");
        for f in &events.files {
            assert_eq!(hex::encode(Sha256::digest(std::fs::read(w.dest.join(&f.key)).unwrap())), f.sha256, "trial {trial}: {}", f.key);
        }
    }
    assert_eq!(trials, 50);
    eprintln!("two writers: {busy} of {} runs found the hour busy", 2 * trials);
    // The hourly run picks up any late file the winners did not see.
    w.replay("2020-01-25T07:20:00Z", "2020-01-25T07:20:00Z", |_| {});
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T06").unwrap());
}

#[test]
fn a_redelivered_tick_exports_no_hour_twice_at_once() {
    let w = World::new("2020-01-25T00..2020-01-25T03", 300);
    for _ in 0..5 {
        let at = "2020-01-25T04:20:00Z";
        let kids: Vec<Child> = (0..2).map(|_| w.command(&["tick"], at).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
        for k in kids {
            k.wait_with_output().unwrap();
        }
    }
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T03").unwrap());
    let runs = w.ok(&["runs", CONN], "2020-01-25T05:00:00Z");
    let exported = runs.lines().filter(|l| l.contains(" exported ")).count();
    assert_eq!(exported, 4, "each hour exported by exactly one run:\n{runs}");
}

#[test]
fn a_lake_object_we_cannot_read_never_emails_the_customer() {
    let w = World::new("2020-01-25T03..2020-01-25T03", 40);
    // A lake entry that cannot be read (a dangling link): our infrastructure, not theirs.
    std::os::unix::fs::symlink("/nonexistent/lake-object.json.gz", w.lake_hour_dir(h("2020-01-25T03")).join("broken.json.gz")).unwrap();
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T08:45:00Z", |_| {});
    assert_eq!(w.emails(), 0, "our own failure never emails the customer");
    let status = w.ok(&["status"], "2020-01-25T08:45:00Z");
    assert!(status.contains("(internal)") && status.contains("event lake"), "{status}");
    assert!(status.contains("2020-01-25T03 failing"), "the hour stays owed: {status}");
    let runs = w.ok(&["runs", CONN], "2020-01-25T08:45:00Z");
    assert!(runs.contains("internal failure of our event lake"), "{runs}");
    // Fixed by the operators: the next run exports it.
    std::fs::remove_file(w.lake_hour_dir(h("2020-01-25T03")).join("broken.json.gz")).unwrap();
    w.replay("2020-01-25T09:20:00Z", "2020-01-25T09:20:00Z", |_| {});
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T08").unwrap());
}

#[test]
fn an_hour_too_large_for_the_limits_fails_clearly_instead_of_timing_out() {
    let mut w = World::new("2020-01-25T03..2020-01-25T03", 500);
    w.env.push(("EXPORT_HOUR_SECONDS".into(), "10".into()));
    w.env.push(("EXPORT_LAKE_BYTES_PER_SECOND".into(), "1000".into()));
    let o = w.run(&["export", CONN, "--hour", "2020-01-25T03"], "2020-01-25T04:30:00Z");
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("InvalidConfig") && out.contains("EXPORT_HOUR_SECONDS") && out.contains("MB of lake files") && out.contains("Timeout"), "{out}");
    assert!(w.marker(h("2020-01-25T03")).is_none());
}

#[test]
fn re_creating_a_connection_on_the_same_destination_leaves_no_gap_and_no_duplicate() {
    let w = World::new("2020-01-25T00..2020-01-25T05", 70);
    w.replay("2020-01-25T01:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    let before = w.dest_snapshot();
    // As the KMS migration guide has users do: delete, then create again the same day.
    w.ok(&["connections", "delete", CONN], "2020-01-25T04:30:00Z");
    let conn = serde_json::json!({"id": CONN, "org_id": "42", "project_id": PROJECT,
        "destination": {"type": "local", "path": w.dest, "prefix": "exports"}, "admins": ["admin@example.com"], "creator": "owner@example.com"});
    let file = w.home.parent().unwrap().join("conn-again.json");
    std::fs::write(&file, conn.to_string()).unwrap();
    w.ok(&["connections", "create", file.to_str().unwrap()], "2020-01-25T05:40:00Z");
    w.replay("2020-01-25T06:20:00Z", "2020-01-25T06:20:00Z", |_| {});
    let after = w.dest_snapshot();
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{} was rewritten", k.display());
    }
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap());
}

#[test]
fn manifests_from_before_the_ledger_and_stale_owed_records_never_cause_a_second_export() {
    let w = World::new("2020-01-25T01..2020-01-25T02", 90);
    w.replay("2020-01-25T03:20:00Z", "2020-01-25T03:20:00Z", |_| {});
    let hour = h("2020-01-25T01");
    let marker_path = w.part_dir().join(format!("{PROJECT}_{}_complete", hour.file_stem()));
    // An upgrade: markers written before manifests listed their lake inputs, and no ledger.
    let mut legacy: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker_path).unwrap()).unwrap();
    legacy["events"].as_object_mut().unwrap().remove("lake_inputs");
    std::fs::write(&marker_path, serde_json::to_vec_pretty(&legacy).unwrap()).unwrap();
    std::fs::remove_dir_all(w.home.join("control/ledger")).unwrap();
    let before = w.dest_snapshot();
    // A completed hour that a crash between two bookkeeping writes left owed.
    let stale = serde_json::json!({"hour": "2020-01-25T02", "state": "pending", "mode": "recurring"});
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T06:20:00Z", |at| {
        if at == t("2020-01-25T05:00:00Z") {
            let dir = w.home.join("control/ledger").join(CONN).join("owed");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("2020-01-25T02.json"), stale.to_string()).unwrap();
        }
    });
    let after = w.dest_snapshot();
    for (k, v) in &before {
        if !k.to_string_lossy().ends_with("_complete") {
            assert_eq!(after.get(k), Some(v), "{} was rewritten", k.display());
        }
    }
    let parts = |hour: &str| after.keys().filter(|k| k.to_string_lossy().contains(&format!("{PROJECT}_2020-01-25_{hour}#"))).count();
    assert_eq!((parts("1"), parts("2")), (1, 1), "no hour got a second copy of its events");
    let status = w.ok(&["status"], "2020-01-25T06:30:00Z");
    assert!(!status.contains("owed:"), "the stale owed record was cleared: {status}");
    let mut check = w.marker(hour).unwrap().events.unwrap();
    assert_eq!(check.files.len(), 1);
    check.accounting.exported += check.accounting.duplicates;
    assert_eq!(check.accounting.exported, w.lake_lines(hour));
}

#[test]
fn bad_clocks_and_settings_are_refused_clearly_and_change_nothing() {
    let mut w = World::new("2020-01-25T03..2020-01-25T03", 20);
    let before = w.dest_snapshot();
    let o = w.run(&["tick"], "yesterday");
    assert!(!o.status.success() && text(&o).contains("--at \"yesterday\"") && text(&o).contains("RFC 3339"), "{}", text(&o));
    let o = w.run(&["export", CONN, "--hour", "2020-01-25T03", "--mode", "sideways"], "2020-01-25T05:00:00Z");
    assert!(!o.status.success() && text(&o).contains("[possible values: recurring, replace, late]"), "{}", text(&o));
    for (var, value) in [("EXPORT_PART_SIZE_BYTES", "0"), ("EXPORT_HOUR_SECONDS", "ten")] {
        w.env = vec![(var.into(), value.into())];
        let o = w.run(&["tick"], "2020-01-25T05:20:00Z");
        assert!(!o.status.success(), "{var}={value} accepted");
        let out = text(&o);
        assert!(out.contains(if value == "0" { "part size" } else { var }), "{var}={value}: {out}");
    }
    assert_eq!(w.dest_snapshot(), before, "nothing written by a refused command");
}

#[test]
fn invalid_records_are_located_in_runs_and_a_derived_event_time_out_of_range_is_one() {
    let w = World::new("2020-01-25T03..2020-01-25T03", 100);
    let hour = h("2020-01-25T03");
    // A device clock at 1970 uploading in year 9999 would shift event_time past 9999.
    let mut far: serde_json::Value = serde_json::from_str(&first_lake_line(&w, hour)).unwrap();
    for (field, value) in [
        ("client_event_time", "9999-06-01 00:00:00.000"),
        ("client_upload_time", "1970-01-01 00:00:00.000"),
        ("server_received_time", "9999-12-31 00:00:00.000"),
    ] {
        far[field] = serde_json::json!(value);
    }
    far.as_object_mut().unwrap().remove("event_time");
    far["$insert_id"] = serde_json::json!("far-clock");
    let mut ok = far.clone();
    ok["client_upload_time"] = serde_json::json!("9999-12-30 23:59:30.000");
    ok["$insert_id"] = serde_json::json!("near-clock");
    std::fs::write(w.lake_hour_dir(hour).join("zz-clocks.json"), format!("{ok}\n{far}\nnot json at all\n")).unwrap();
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T04:20:00Z", |_| {});

    let events = w.marker(hour).expect("the hour is exported despite its invalid lines").events.unwrap();
    assert_eq!(events.accounting.invalid, 2);
    assert_eq!(events.accounting.exported, 101, "the 100 generated events and the one with a sane clock");
    let file = format!("{}/zz-clocks.json", exporter::export::layout::lake_events_prefix(PROJECT, hour).trim_end_matches('/'));
    let runs = w.ok(&["runs", CONN], "2020-01-25T04:30:00Z");
    let line_two = runs.lines().find(|l| l.contains(&format!("invalid record {file}:2 "))).unwrap_or_else(|| panic!("runs locates line 2:\n{runs}"));
    assert!(line_two.contains("\"event_time\"") && line_two.contains("0000-9999"), "{line_two}");
    assert!(runs.contains(&format!("invalid record {file}:3 ")), "runs locates line 3:\n{runs}");
    // The exported line with a year-9999 clock is written in the exact form too.
    let part = std::fs::read(w.part_dir().join(format!("{PROJECT}_2020-01-25_3#0.json.gz"))).unwrap();
    let lines: Vec<serde_json::Value> =
        BufReader::new(flate2::read::GzDecoder::new(&part[..])).lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    let near = lines.iter().find(|v| v["$insert_id"] == "near-clock").expect("the sane-clock event is exported");
    assert_eq!(near["client_event_time"], "9999-06-01 00:00:00.000000");
    for v in &lines {
        assert_timestamps_exact(v, EXACT_TIMESTAMP);
    }
}
