//! Fault timelines: backfills that say exactly what they did. A busy hour waits for the
//! holder's lease and is then replaced; a range before the lake's first hour is refused at
//! once; a running backfill can be cancelled; an hour exported empty is replaced empty; a
//! refused hour is reported as failed without a promised retry.

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use exporter::hour::HourRange;

use crate::world::*;

/// Waits for `child` at most `limit`, killing it when it runs longer.
fn wait_at_most(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

/// Waits until the file at `path` contains `needle` (or the child ends without it).
fn wait_for_text(path: &Path, needle: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = std::fs::read_to_string(path).unwrap_or_default();
        if seen.contains(needle) {
            return seen;
        }
        assert!(child.try_wait().unwrap().is_none(), "exportctl ended before printing {needle:?}:\n{seen}");
        assert!(Instant::now() < deadline, "no {needle:?} within a minute:\n{seen}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The run records of `hour` in `exportctl runs` with the given mode.
fn runs_of(w: &World, hour: &str, mode: &str) -> usize {
    w.ok(&["runs", CONN], "2020-01-25T23:59:00Z").lines().filter(|l| l.starts_with(hour) && l.split_whitespace().nth(1) == Some(mode)).count()
}

/// The one-time schedules of replaces (a backfill's hours) not fired yet.
fn pending_retries(w: &World) -> Vec<String> {
    let dir = w.home.join("schedules").join("retries");
    let mut names: Vec<String> =
        std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains("-rep-")).collect();
    names.sort();
    names
}

#[test]
fn a_backfill_hour_held_by_another_run_waits_for_its_lease_and_is_then_replaced() {
    let w = World::new("2020-01-25T00..2020-01-25T05", 60);
    // A scheduled export of 03 dies before its marker (kill -9): its lease holds until 06:40.
    kill_at(&w, &["export", CONN, "--hour", "2020-01-25T03"], "2020-01-25T06:20:00Z", "before_marker");
    let o = w.run(&["backfill", CONN, "--from", "2020-01-25T00", "--to", "2020-01-25T05"], "2020-01-25T06:25:00Z");
    let out = text(&o);
    assert!(o.status.success(), "an hour that waits for a scheduled replace is not a failure:\n{out}");
    assert!(out.contains("5 of 6 hours exported"), "{out}");
    assert!(out.contains("waiting   1 hour"), "{out}");
    assert!(out.contains("2020-01-25T03: replaced at 2020-01-25T06:40:00Z"), "the summary says when:\n{out}");
    assert!(!out.contains("failed"), "nothing failed:\n{out}");
    assert_eq!(pending_retries(&w).len(), 1, "the promised replace is scheduled: {:?}", pending_retries(&w));
    assert_eq!(runs_of(&w, "2020-01-25T03", "replace"), 0);
    // The lease ends; the tick fires the one-time schedule, which replaces the hour.
    w.ok(&["tick"], "2020-01-25T06:40:00Z");
    assert_eq!(runs_of(&w, "2020-01-25T03", "replace"), 1, "hour 03 was replaced as the backfill asked");
    assert!(pending_retries(&w).is_empty(), "{:?}", pending_retries(&w));
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap());
}

#[test]
fn a_backfill_starting_before_the_lakes_first_hour_is_refused_at_once_naming_that_hour() {
    let w = World::new("2020-01-25T00..2020-01-25T05", 40);
    let mut child = w
        .command(&["backfill", CONN, "--from", "1970-01-01T00", "--to", "2020-01-25T05"], "2020-01-25T06:30:00Z")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_at_most(&mut child, Duration::from_secs(30)).expect("refused at once, not 440,000 hours later");
    let out = text(&child.wait_with_output().unwrap());
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("backfill `from` 1970-01-01T00"), "the error names the field:\n{out}");
    assert!(out.contains("before 2020-01-25T00, the first hour the event lake holds for project 187520"), "and the first hour:\n{out}");
    assert!(out.contains("exportctl backfill c1 --from 2020-01-25T00 --to 2020-01-25T05"), "and what to run:\n{out}");
    assert!(w.dest_snapshot().is_empty(), "nothing was written");
    assert!(!w.home.join("control").join("backfills").exists(), "no backfill was recorded");
    // From the first hour on there is no limit: the suggested command does it all.
    let out = w.ok(&["backfill", CONN, "--from", "2020-01-25T00", "--to", "2020-01-25T05"], "2020-01-25T06:30:00Z");
    assert!(out.contains("6 of 6 hours exported"), "{out}");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap());
}

#[test]
fn a_running_backfill_is_cancelled_its_remaining_pieces_skipped_and_what_was_done_stays() {
    let w = World::new("2020-01-25T00..2020-01-27T23", 20);
    let logs = w.home.parent().unwrap().to_path_buf();
    let (stdout, stderr, release) = (logs.join("backfill.out"), logs.join("backfill.err"), logs.join("release"));
    // Three days: one piece per day. The backfill holds after its first piece.
    let mut child = w
        .command(&["backfill", CONN, "--from", "2020-01-25T00", "--to", "2020-01-27T23"], "2020-01-28T01:00:00Z")
        .env("EXPORT_HOLD_AT", "backfill_after_leaf")
        .env("EXPORT_HOLD_RELEASE", &release)
        .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
    wait_for_text(&stderr, "holding at backfill_after_leaf", &mut child);
    let started = std::fs::read_to_string(&stdout).unwrap();
    let id = started.split("--cancel ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_else(|| panic!("no id to cancel:\n{started}")).to_string();
    let said = w.ok(&["backfill", "--cancel", &id], "2020-01-28T01:10:00Z");
    assert!(said.contains("cancel recorded"), "{said}");
    std::fs::write(&release, "").unwrap();
    let status = wait_at_most(&mut child, Duration::from_secs(60)).expect("the backfill ends");
    let out = std::fs::read_to_string(&stdout).unwrap();
    assert_eq!(status.code(), Some(1), "a cancelled backfill did not export its range:\n{out}");
    assert!(out.contains("24 of 72 hours exported"), "{out}");
    assert!(out.contains("exported  24 hours: 2020-01-25T00..2020-01-25T23"), "{out}");
    assert!(out.contains("cancelled 48 hours (cancelled at 2020-01-28T01:10:00Z; not exported, the hours above stay): 2020-01-26T00..2020-01-27T23"), "{out}");
    assert!(out.contains("to export what is left: exportctl backfill c1 --from 2020-01-26T00 --to 2020-01-27T23"), "{out}");
    for hour in HourRange::parse("2020-01-26T00", "2020-01-27T23").unwrap().hours() {
        assert!(w.marker(hour).is_none(), "{hour} was exported after the cancel");
    }
    // Cancelling a finished backfill says so and changes nothing.
    let again = w.ok(&["backfill", "--cancel", &id], "2020-01-28T01:20:00Z");
    assert!(again.contains("already finished"), "{again}");
    // Status tells the truth about the hours the cancel left: not exported, past the SLO.
    let state = w.state(CONN, "2020-01-28T01:20:00Z");
    assert!(state.contains("LATE: 48 hour(s) past the freshness SLO") && state.contains("oldest 2020-01-26T00"), "{state}");
    // The command the summary printed exports them, and the whole range is then complete.
    w.ok(&["backfill", CONN, "--from", "2020-01-26T00", "--to", "2020-01-27T23"], "2020-01-28T01:30:00Z");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-27T23").unwrap());
}

#[test]
fn a_backfill_over_an_hour_exported_empty_replaces_it_without_refusing() {
    let w = World::new("2020-01-25T00..2020-01-25T05", 30);
    std::fs::remove_dir_all(w.lake_hour_dir(h("2020-01-25T03"))).unwrap();
    for hour in HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap().hours() {
        w.ok(&["export", CONN, "--hour", &hour.to_string()], "2020-01-25T06:30:00Z");
    }
    let empty = w.marker(h("2020-01-25T03")).expect("the empty hour has its marker");
    assert_eq!(empty.events.as_ref().unwrap().accounting.exported, 0);
    let before = w.dest_snapshot();
    let o = w.run(&["backfill", CONN, "--from", "2020-01-25T00", "--to", "2020-01-25T05"], "2020-01-25T07:00:00Z");
    let out = text(&o);
    assert!(o.status.success(), "an empty hour deletes nothing, so its replace is not refused:\n{out}");
    assert!(out.contains("6 of 6 hours exported"), "{out}");
    assert!(!out.contains("refusing"), "{out}");
    assert_eq!(w.dest_snapshot(), before, "the replace is byte-identical");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap());
}

#[test]
fn a_refused_backfill_hour_is_reported_failed_with_no_promised_retry_and_the_bar_ends_its_line() {
    let w = World::new("2020-01-25T00..2020-01-25T05", 30);
    for hour in HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap().hours() {
        w.ok(&["export", CONN, "--hour", &hour.to_string()], "2020-01-25T06:30:00Z");
    }
    // The lake's retention took hour 02 after its export: its replace would delete events.
    let lake = w.lake_hour_dir(h("2020-01-25T02"));
    let kept = lake.with_extension("kept");
    std::fs::rename(&lake, &kept).unwrap();
    // Through a terminal (script(1) gives it one), where the progress bar is drawn.
    let cmd = w.command(&["backfill", CONN, "--from", "2020-01-25T00", "--to", "2020-01-25T05"], "2020-01-25T07:00:00Z");
    let line = std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| format!("'{}'", a.to_string_lossy())).collect::<Vec<_>>().join(" ");
    let o = std::process::Command::new("script").args(["-qec", &line, "/dev/null"]).output().expect("script(1) runs");
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    assert_eq!(o.status.code(), Some(1), "a failed hour is exit code 1:\n{out}");
    let bar_end = out.rfind("/6 hours exported").unwrap_or_else(|| panic!("no progress bar on a terminal:\n{out}"));
    let summary = out.rfind("backfill c1-").unwrap();
    assert!(bar_end < summary && out[bar_end..summary].contains('\n'), "the bar ends with a line break before the summary:\n{out:?}");
    assert!(out.contains("5/6 hours exported"), "the bar counts exported hours only:\n{out}");
    assert!(out.contains("5 of 6 hours exported"), "{out}");
    assert!(out.contains("failed    1 hour:"), "{out}");
    assert!(out.contains("2020-01-25T02: conflict: refusing to replace 2020-01-25T02"), "{out}");
    assert!(out.contains("not retried: retrying cannot fix this error"), "{out}");
    assert!(!out.contains("each is retried"), "no promise of a retry that does not exist:\n{out}");
    assert!(pending_retries(&w).is_empty(), "and indeed none is scheduled: {:?}", pending_retries(&w));
    assert!(out.contains("to export what is left: exportctl backfill c1 --from 2020-01-25T02 --to 2020-01-25T02"), "{out}");
    // The files come back: the suggested command finishes the job.
    std::fs::rename(&kept, &lake).unwrap();
    let again = w.ok(&["backfill", CONN, "--from", "2020-01-25T02", "--to", "2020-01-25T02"], "2020-01-25T07:10:00Z");
    assert!(again.contains("1 of 1 hours exported"), "{again}");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T05").unwrap());
}
