//! Fault timelines: the operator plane. One unreadable connection file never breaks the
//! operator's commands; a closed output pipe never stops the work; claims cover the
//! folders inside and above them and every connection has an admin; a connection
//! re-created on a place within 24 hours leaves no gap.

use std::path::Path;
use std::process::{Output, Stdio};

use exporter::hour::HourRange;

use crate::world::*;

/// A connection document of organisation `org` and `project` on `path` with `prefix`.
fn connection_doc(id: &str, org: &str, project: &str, path: &Path, prefix: &str, created: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "org_id": org, "project_id": project, "created": created,
        "destination": {"type": "local", "path": path, "prefix": prefix}, "admins": ["admin@example.com"], "creator": "owner@example.com"})
}

/// `exportctl connections create` of `doc` at `at`.
fn create(w: &World, doc: &serde_json::Value, at: &str) -> Output {
    let file = w.home.parent().unwrap().join(format!("{}.json", doc["id"].as_str().unwrap()));
    std::fs::write(&file, doc.to_string()).unwrap();
    w.run(&["connections", "create", file.to_str().unwrap()], at)
}

fn connection_file(w: &World, id: &str) -> std::path::PathBuf {
    w.home.join("control").join("connections").join(format!("{id}.json"))
}

fn marker_exists(w: &World, prefix: &str, hour: &str) -> bool {
    w.dest.join(prefix).join(PROJECT).join(format!("{PROJECT}_{}_complete", h(hour).file_stem())).is_file()
}

/// Ticks once an hour at :20 from `from` to `to` (inclusive).
fn tick_hourly(w: &World, from: &str, to: &str) {
    let mut at = t(from);
    while at <= t(to) {
        w.run(&["tick"], &rfc(at));
        at += chrono::Duration::hours(1);
    }
}

#[test]
fn one_unreadable_connection_file_never_breaks_the_operator_and_can_be_disabled_and_deleted() {
    let w = World::new("2020-01-25T00..2020-01-25T03", 40);
    let at = "2020-01-25T00:05:00Z";
    for id in ["c2", "c3"] {
        let o = create(&w, &connection_doc(id, "42", PROJECT, &w.dest, id, at), at);
        assert!(o.status.success(), "{}", text(&o));
    }
    w.ok(&["projects", "add", "999", "--org", "42"], at);
    tick_hourly(&w, "2020-01-25T01:20:00Z", "2020-01-25T01:20:00Z");
    // c2 no longer validates (a hand edit broke its creator); c3 is cut off mid-write.
    let c2 = std::fs::read_to_string(connection_file(&w, "c2")).unwrap().replace("\"owner@example.com\"", "\"owner at example.com\"");
    std::fs::write(connection_file(&w, "c2"), c2).unwrap();
    std::fs::write(connection_file(&w, "c3"), "{\n  \"id\": \"c3\",\n  \"org_id\": \"4").unwrap();

    // Listing shows every connection, the unreadable ones by id with the reason.
    let list = w.ok(&["connections", "list"], "2020-01-25T02:00:00Z");
    // A connection's row and the lines beneath it (why it cannot be read).
    let row = |id: &str| {
        let mut lines = list.lines().skip_while(|l| l.split_whitespace().next() != Some(id));
        let first = lines.next().unwrap_or_else(|| panic!("{id} not listed:\n{list}"));
        std::iter::once(first).chain(lines.take_while(|l| l.starts_with("  "))).collect::<Vec<_>>().join("\n")
    };
    assert!(row("c1").contains("file://"), "{list}");
    assert!(row("c2").contains("UNREADABLE") && row("c2").contains("creator") && row("c2").contains("connections delete c2"), "{list}");
    assert!(row("c3").contains("UNREADABLE") && row("c3").contains("corrupt"), "{list}");
    assert!(row("c2").contains(PROJECT), "what the file still says is shown: {list}");
    let status = w.ok(&["status"], "2020-01-25T02:00:00Z");
    assert!(status.lines().any(|l| l.starts_with("c1 ")), "{status}");

    // c3 may use any project (its file does not say): no project is removed under it.
    let refused = w.run(&["projects", "remove", "999"], "2020-01-25T02:00:00Z");
    assert!(!refused.status.success() && text(&refused).contains("c3 (unreadable, may use it"), "{}", text(&refused));
    assert!(!text(&refused).contains("c2"), "c2's file shows project {PROJECT}: {}", text(&refused));

    // Both are disabled without their secrets or their validity; enabling is refused.
    assert!(w.ok(&["connections", "disable", "c2"], "2020-01-25T02:05:00Z").contains("its file says enabled: false"));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(connection_file(&w, "c2")).unwrap()).unwrap();
    assert_eq!(doc["enabled"], false);
    assert_eq!(doc["creator"], "owner at example.com", "the rest of the file is left as it was");
    assert!(w.ok(&["connections", "disable", "c3"], "2020-01-25T02:05:00Z").contains("hourly schedule is off"));
    let enable = w.run(&["connections", "enable", "c2"], "2020-01-25T02:05:00Z");
    assert!(!enable.status.success() && text(&enable).contains("cannot be enabled") && text(&enable).contains("creator"), "{}", text(&enable));

    // The healthy connection goes on; the disabled ones are not run.
    let tick = w.run(&["tick"], "2020-01-25T02:20:00Z");
    assert!(tick.status.success(), "{}", text(&tick));
    assert!(marker_exists(&w, "exports", "2020-01-25T01") && !marker_exists(&w, "c2", "2020-01-25T01"), "{}", text(&tick));

    // Deleted, each; c1 shares c2's folder, so the folder's claim stays with organisation 42.
    w.ok(&["connections", "delete", "c3"], "2020-01-25T02:30:00Z");
    w.ok(&["projects", "remove", "999"], "2020-01-25T02:30:00Z");
    w.ok(&["connections", "delete", "c2"], "2020-01-25T02:30:00Z");
    assert!(!connection_file(&w, "c2").exists() && !connection_file(&w, "c3").exists());
    w.ok(&["projects", "add", "555", "--org", "77"], "2020-01-25T02:30:00Z");
    let other = create(&w, &connection_doc("o1", "77", "555", &w.dest, "theirs", "2020-01-25T02:30:00Z"), "2020-01-25T02:30:00Z");
    assert!(!other.status.success() && text(&other).contains("another organisation"), "{}", text(&other));
    let list = w.ok(&["connections", "list"], "2020-01-25T02:30:00Z");
    assert_eq!(list.lines().count(), 2, "only c1 is left:\n{list}");

    tick_hourly(&w, "2020-01-25T03:20:00Z", "2020-01-25T04:20:00Z");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T03").unwrap());
}

/// Runs `args` with stdout and stderr pipes whose reading ends are closed before it writes.
fn run_with_closed_pipes(w: &World, args: &[&str], at: &str) -> std::process::ExitStatus {
    let mut child = w.command(args, at).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    child.wait().unwrap()
}

#[test]
fn a_closed_output_pipe_ends_the_printing_never_the_exports() {
    let w = World::new("2020-01-25T00..2020-01-25T01", 30);
    let at = "2020-01-25T00:05:00Z";
    let prefixes = ["exports", "c2", "c3", "c4"];
    for id in &prefixes[1..] {
        let o = create(&w, &connection_doc(id, "42", PROJECT, &w.dest, id, at), at);
        assert!(o.status.success(), "{}", text(&o));
    }
    // `exportctl tick | head -c 0`, stderr closed too: every connection is exported.
    let status = run_with_closed_pipes(&w, &["tick"], "2020-01-25T01:20:00Z");
    assert!(status.success(), "tick exits by its work, not its output: {status}");
    for prefix in prefixes {
        assert!(marker_exists(&w, prefix, "2020-01-25T00"), "{prefix}: hour 00 not exported behind a closed pipe");
    }
    // Every other command survives a closed pipe too.
    for args in [&["status"][..], &["connections", "list"], &["runs", CONN], &["projects", "list"]] {
        let status = run_with_closed_pipes(&w, args, "2020-01-25T01:30:00Z");
        assert!(status.success(), "{args:?}: {status}");
    }
    // An error is still an exit code when it cannot be printed.
    assert_eq!(run_with_closed_pipes(&w, &["runs", "nobody"], "2020-01-25T01:30:00Z").code(), Some(2));
    let status = run_with_closed_pipes(&w, &["tick"], "2020-01-25T02:20:00Z");
    assert!(status.success(), "{status}");
    for prefix in prefixes {
        assert!(marker_exists(&w, prefix, "2020-01-25T01"), "{prefix}: hour 01");
    }
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T01").unwrap());
}

#[test]
fn another_organisation_is_refused_every_folder_overlapping_a_claim_and_every_connection_has_an_admin() {
    let w = World::new("2020-01-25T00..2020-01-25T01", 30);
    let at = "2020-01-25T00:10:00Z";
    w.ok(&["projects", "add", "555", "--org", "77"], at);
    let theirs = |id: &str, path: &Path| connection_doc(id, "77", "555", path, "theirs", at);
    let spelled = format!("{}/./", w.dest.display());
    let inside = w.dest.join("exports").join(PROJECT);
    let parent = w.dest.parent().unwrap().to_path_buf();
    for (id, path) in [("o-same", Path::new(&spelled)), ("o-inside", &inside), ("o-parent", &parent)] {
        let o = create(&w, &theirs(id, path), at);
        let out = text(&o);
        assert!(!o.status.success() && out.contains("another organisation"), "{id} must be refused:\n{out}");
        assert!(!out.contains("organisation 42") && !out.contains("c1") && !out.contains("admin@example.com"), "{id}: names nothing of the other's: {out}");
    }
    // A sibling is another place; the same organisation may nest its own folders.
    let sibling = w.dest.with_file_name("dest2");
    std::fs::create_dir_all(&sibling).unwrap();
    // But nobody would be told: refused at create, with the field and the fix.
    let mut nobody = theirs("o-sibling", &sibling);
    nobody["admins"] = serde_json::json!([]);
    let o = create(&w, &nobody, at);
    assert!(!o.status.success() && text(&o).contains("admins: lists nobody") && text(&o).contains("\"admins\": ["), "{}", text(&o));
    nobody.as_object_mut().unwrap().remove("admins");
    let o = create(&w, &nobody, at);
    assert!(!o.status.success() && text(&o).contains("admins: lists nobody"), "{}", text(&o));
    assert!(std::fs::read_dir(&sibling).unwrap().next().is_none(), "nothing written for a refused connection");
    let o = create(&w, &theirs("o-sibling", &sibling), at);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::create_dir_all(w.dest.join("exports").join("nested")).unwrap();
    let nested = create(&w, &connection_doc("c-nested", "42", PROJECT, &w.dest.join("exports").join("nested"), "", at), at);
    assert!(nested.status.success(), "{}", text(&nested));

    tick_hourly(&w, "2020-01-25T01:20:00Z", "2020-01-25T02:20:00Z");
    assert!(sibling.join("theirs").join("555").join("555_2020-01-25_1_complete").is_file(), "the sibling's connection exports");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-25T01").unwrap());
}

#[test]
fn a_connection_recreated_within_24_hours_of_the_old_ones_stop_owes_from_where_it_stopped() {
    // Day 1 and most of day 2 in the lake; the connection exports through hour 21 of day 1.
    let w = World::new("2020-01-25T00..2020-01-26T19", 20);
    tick_hourly(&w, "2020-01-25T00:20:00Z", "2020-01-25T22:20:00Z");
    assert!(w.marker(h("2020-01-25T21")).is_some() && w.marker(h("2020-01-25T22")).is_none());
    w.ok(&["connections", "disable", CONN], "2020-01-25T22:30:00Z");
    w.ok(&["connections", "delete", CONN], "2020-01-25T23:00:00Z");
    // 21.5 hours after the disable, a new connection on the same place.
    let at = "2020-01-26T20:00:00Z";
    let o = create(&w, &connection_doc("c1-again", "42", PROJECT, &w.dest, "exports", at), at);
    assert!(o.status.success() && text(&o).contains("owes the hours from 2020-01-25T22"), "{}", text(&o));
    tick_hourly(&w, "2020-01-26T20:20:00Z", "2020-01-26T20:20:00Z");
    w.assert_complete_and_consistent(HourRange::parse("2020-01-25T00", "2020-01-26T19").unwrap());
    w.assert_status_ok("2020-01-26T20:30:00Z");

    // More than 24 hours after a stop, a new connection starts on its creation day.
    w.ok(&["connections", "delete", "c1-again"], "2020-01-26T20:40:00Z");
    let late = "2020-01-27T21:00:00Z";
    let o = create(&w, &connection_doc("c1-late", "42", PROJECT, &w.dest, "exports", late), late);
    assert!(o.status.success() && !text(&o).contains("owes the hours from"), "{}", text(&o));
}
