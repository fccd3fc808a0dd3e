//! Fault timelines: nothing fails in silence. A run that dies is an attempt, and an hour that
//! kills every run waits for an operator, shown as broken; a run that stalls past its lease
//! stops writing; a file landing a day late is still exported; a dead destination costs one
//! probe per hourly run; and status drops a gap once it is filled and a failing state once
//! the destination works again.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use chrono::Duration;
use exporter::hour::HourRange;
use sha2::{Digest, Sha256};

use crate::world::*;

/// One tick at `at` with every run told to pause between parts: `true` when a run paused
/// there and was killed (kill -9), `false` when the tick finished without reaching it.
fn tick_killing_any_export(w: &World, at: &str) -> bool {
    let mut child = w.command(&["tick"], at).env("EXPORT_PAUSE_AT", "between_parts").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("paused at between_parts") {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
    }
    child.wait().unwrap();
    false
}

fn run_records(w: &World) -> Vec<serde_json::Value> {
    let dir = w.home.join("control/runs").join(CONN);
    let mut out = Vec::new();
    let mut todo = vec![dir];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "json") {
                out.push(serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_run_that_dies_is_a_failed_attempt_and_an_hour_that_kills_every_run_waits_for_an_operator() {
    let mut w = World::new("2020-01-25T03..2020-01-25T03", 600);
    w.env.push(("EXPORT_PART_SIZE_BYTES".into(), "200000".into()));
    let mut kills = Vec::new();
    let mut state_after_first_death = String::new();
    let mut at = t("2020-01-25T04:20:00Z");
    while at <= t("2020-01-25T11:00:00Z") {
        if tick_killing_any_export(&w, &rfc(at)) {
            kills.push(at);
        }
        if kills.len() == 1 && state_after_first_death.is_empty() && at >= t("2020-01-25T04:40:00Z") {
            state_after_first_death = w.state(CONN, &rfc(at));
        }
        at += Duration::minutes(5);
    }
    // Every death was counted: five attempts on the retry schedule (5, 15, 45, 135 min
    // after each death is seen), then no blind retries.
    assert_eq!(kills.len(), 5, "runs started on the hour: {kills:?}");
    assert!(
        state_after_first_death.starts_with("RETRYING 1 hour(s)") && state_after_first_death.contains("stopped without a result"),
        "{state_after_first_death}"
    );
    let stopped: Vec<_> = run_records(&w).into_iter().filter(|r| r["error_kind"] == "RunStopped").collect();
    assert_eq!(stopped.len(), 5, "each death is a run record");
    assert!(stopped.iter().all(|r| r["error"].as_str().unwrap().contains("timeout or out of memory?")));
    let state = w.state(CONN, "2020-01-25T11:05:00Z");
    assert!(state.starts_with("BROKEN: 1 hour(s) cannot be exported as they are (oldest 2020-01-25T03)"), "{state}");
    assert!(state.contains(&format!("exportctl export {CONN} --hour 2020-01-25T03")), "status names the command: {state}");
    // The path that can finish it: an operator's run without the function's limits.
    w.ok(&["export", CONN, "--hour", "2020-01-25T03"], "2020-01-25T11:10:00Z");
    w.replay("2020-01-25T11:20:00Z", "2020-01-25T11:20:00Z", |_| {});
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T10").unwrap());
}

#[test]
fn a_run_that_stalls_past_its_lease_stops_writing_once_another_run_holds_the_hour() {
    let mut w = World::new("2020-01-25T03..2020-01-25T03", 600);
    w.env.push(("EXPORT_PART_SIZE_BYTES".into(), "200000".into()));
    w.replay("2020-01-25T04:20:00Z", "2020-01-25T04:20:00Z", |_| {});
    let hour = h("2020-01-25T03");
    let resume = w.home.parent().unwrap().join("resume");
    let mut stalled = w
        .command(&["export", CONN, "--hour", "2020-01-25T03", "--mode", "replace"], "2020-01-25T05:00:00Z")
        .env("EXPORT_PAUSE_AT", "between_parts")
        .env("EXPORT_PAUSE_UNTIL", &resume)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(stalled.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("paused at") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the replace never reached a part boundary");
    }
    // While it stalls, a late file lands and, once its lease ran out, another run replaces
    // the hour with it.
    let mut late: serde_json::Value = serde_json::from_str(&first_lake_line(&w, hour)).unwrap();
    late["$insert_id"] = serde_json::json!("late-while-stalled");
    late.as_object_mut().unwrap().remove("uuid");
    std::fs::write(w.lake_hour_dir(hour).join("zz-late.json"), format!("{late}\n")).unwrap();
    w.ok(&["export", CONN, "--hour", "2020-01-25T03", "--mode", "replace"], "2020-01-25T05:25:00Z");
    let digests = |w: &World| w.dest_snapshot().into_iter().map(|(k, v)| (k, hex::encode(Sha256::digest(v)))).collect::<Vec<_>>();
    let after_takeover = digests(&w);
    // The stalled run wakes up: its next write finds the lease lost, and it writes nothing.
    std::fs::write(&resume, b"").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = stalled.wait_with_output().unwrap();
    let said = format!("{}{rest}", String::from_utf8_lossy(&out.stdout));
    assert!(!out.status.success(), "the stalled run claims success:\n{said}");
    assert!(said.contains("lease") && said.contains("stopped writing"), "{said}");
    assert_eq!(digests(&w), after_takeover, "the stalled run wrote after losing its lease");
    w.replay("2020-01-25T06:20:00Z", "2020-01-25T06:20:00Z", |_| {});
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap());
}

#[test]
fn a_file_landing_26_hours_late_is_found_by_the_sweep_exported_and_named_in_the_run_record() {
    let w = World::new("2020-01-25T03..2020-01-25T03", 100);
    let hour = h("2020-01-25T03");
    let mut at = t("2020-01-25T04:20:00Z");
    while at <= t("2020-01-27T05:20:00Z") {
        if at == t("2020-01-26T05:20:00Z") {
            // 26 hours after the hour began, beyond the 24-hour late window.
            let mut v: serde_json::Value = serde_json::from_str(&first_lake_line(&w, hour)).unwrap();
            v["$insert_id"] = serde_json::json!("a-day-late");
            v.as_object_mut().unwrap().remove("uuid");
            std::fs::write(w.lake_hour_dir(hour).join("zz-a-day-late.json"), format!("{v}\n")).unwrap();
        }
        w.ok(&["tick"], &rfc(at));
        at += Duration::hours(1);
    }
    let events = w.marker(hour).unwrap().events.unwrap();
    assert_eq!(events.files.len(), 2, "the day-late file became part #1: {:?}", events.files);
    assert_eq!(events.files[1].events, 1);
    let late_runs: Vec<_> = run_records(&w).into_iter().filter(|r| r["mode"] == "late").collect();
    assert_eq!(late_runs.len(), 1, "{late_runs:?}");
    assert!(late_runs[0]["late_lake_files"].to_string().contains("zz-a-day-late.json"), "the run record names the late file: {}", late_runs[0]);
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-27T04").unwrap());
}

#[test]
fn a_destination_dead_for_hours_costs_one_probe_per_hourly_run_until_it_is_back() {
    let w = World::new("2020-01-25T00..2020-01-25T09", 40);
    let away = w.dest.with_extension("away");
    std::fs::rename(&w.dest, &away).unwrap();
    let mut runs_at_email = None;
    let mut deferred_ticks = 0;
    let mut at = t("2020-01-25T00:20:00Z");
    while at <= t("2020-01-25T12:40:00Z") {
        if at == t("2020-01-25T12:00:00Z") {
            assert_eq!(run_records(&w).len(), runs_at_email.expect("the email was sent"), "export attempts after the email");
            std::fs::rename(&away, &w.dest).unwrap();
        }
        let out = w.run(&["tick"], &rfc(at));
        deferred_ticks += usize::from(text(&out).contains(": deferred: the destination still fails its probe"));
        if runs_at_email.is_none() && w.emails() == 1 {
            runs_at_email = Some(run_records(&w).len());
        }
        at += Duration::minutes(5);
    }
    assert!(deferred_ticks >= 80, "hourly runs probed instead of exporting: {deferred_ticks}");
    assert_eq!(w.emails(), 1);
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T11").unwrap());
}

#[test]
fn status_drops_a_gap_once_filled_and_a_failing_state_once_the_destination_works_again() {
    let w = World::new("2020-01-25T00..2020-01-25T03", 20);
    // No schedule fired for two days: the hours older than the catch-up window are a gap.
    w.ok(&["tick"], "2020-01-27T00:20:00Z");
    let state = w.state(CONN, "2020-01-27T00:25:00Z");
    let command = state.split("run: ").nth(1).unwrap_or_else(|| panic!("no command in {state}")).split(';').next().unwrap().trim().to_string();
    assert!(state.starts_with("GAP ") && command.starts_with("exportctl backfill"), "{state}");
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    w.ok(&args, "2020-01-27T00:30:00Z");
    assert_eq!(w.state(CONN, "2020-01-27T00:35:00Z"), "ok", "the gap was filled by exactly the command status gave");

    // The destination goes away for a while, shorter than the retries, and comes back.
    let away = w.dest.with_extension("away");
    std::fs::rename(&w.dest, &away).unwrap();
    w.replay("2020-01-27T01:20:00Z", "2020-01-27T01:40:00Z", |_| {});
    assert!(w.state(CONN, "2020-01-27T01:45:00Z").starts_with("RETRYING 1 hour(s)"));
    std::fs::rename(&away, &w.dest).unwrap();
    w.ok(&["tick"], "2020-01-27T02:20:00Z");
    assert_eq!(w.state(CONN, "2020-01-27T02:21:00Z"), "ok", "the destination works again and the hour waiting for its retry went too");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-27T01").unwrap());
}
