//! The command line as a newcomer meets it, through the binary: every command, argument
//! and option described in its help (the top-level help grouping every command), a missing
//! home refused by every command that only reads or changes one (exit 2, nothing created),
//! created (and said so) only by commands that write state, and a connection file verified
//! without any home.

use std::path::Path;
use std::process::{Command, Output};

const AT: &str = "2020-01-25T06:30:00Z";

fn exportctl_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exportctl"))
        .current_dir(cwd)
        .env_remove("EXPORT_HOME")
        .env_remove("EXPORT_CONTROL_BUCKET")
        .arg("--at")
        .arg(AT)
        .args(args)
        .output()
        .expect("exportctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn help(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let o = exportctl_in(dir.path(), &[args, &["-h"]].concat());
    assert!(o.status.success(), "{args:?} -h: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The entries of a help section (`Commands:`, `Arguments:`, `Options:` or a group of the
/// top-level help) as (name, description) pairs; an entry without a description has "".
fn entries(help: &str, heading: &str) -> Vec<(String, String)> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if !line.starts_with(' ') {
            inside = line.trim_end() == heading;
            continue;
        }
        if !inside || line.trim().is_empty() {
            continue;
        }
        // clap puts a description on the line below its entry (indented deeper) when the
        // entries are too wide to share a line with it.
        if indent(line) >= 10 {
            if let Some((_, description)) = out.last_mut().filter(|(_, d)| d.is_empty()) {
                *description = line.trim().to_string();
            }
            continue;
        }
        let entry = line.trim_start();
        // Name and description are separated by two spaces or more.
        let (name, description) = match entry.find("  ") {
            Some(at) => (&entry[..at], entry[at..].trim()),
            None => (entry, ""),
        };
        out.push((name.to_string(), description.to_string()));
    }
    out
}

/// A description with clap's own annotations (`[default: 1]`, `[env: X=]`) taken out.
fn own_words(description: &str) -> String {
    let mut words = String::new();
    let mut depth = 0usize;
    for c in description.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => words.push(c),
            _ => {}
        }
    }
    words.trim().to_string()
}

const GROUPS: [&str; 4] = ["Try it offline:", "Connections and projects:", "Exporting:", "Watching:"];

#[test]
fn every_command_argument_and_option_is_described() {
    let top = help(&[]);
    let commands: Vec<(String, String)> = GROUPS.iter().flat_map(|g| entries(&top, g)).collect();
    let names: Vec<&str> = commands.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "demo",
        "generate",
        "bench",
        "projects",
        "connections",
        "verify",
        "policy",
        "ddl",
        "network",
        "export",
        "backfill",
        "tick",
        "status",
        "runs",
        "metrics",
        "help",
    ] {
        assert!(names.contains(&expected), "the top-level help groups every command; {expected} is missing:\n{top}");
    }
    assert!(top.contains("Exit codes: 0 done; 1 "), "the exit codes are documented:\n{top}");
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (name, description) in &commands {
        assert!(!description.is_empty(), "{name} has no description");
        if name == "help" {
            continue;
        }
        paths.push(vec![name.clone()]);
        for (sub, sub_description) in entries(&help(&[name]), "Commands:") {
            assert!(!sub_description.is_empty(), "{name} {sub} has no description");
            if sub != "help" {
                paths.push(vec![name.clone(), sub]);
            }
        }
    }
    let mut described = 0;
    for path in &paths {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let page = help(&args);
        for heading in ["Arguments:", "Options:"] {
            for (entry, description) in entries(&page, heading) {
                assert!(!own_words(&description).is_empty(), "exportctl {}: {entry} has no description:\n{page}", path.join(" "));
                described += 1;
            }
        }
    }
    assert!(paths.len() >= 20, "{paths:?}");
    assert!(described > 100, "only {described} entries read: the help's shape changed");
    // Options with a fixed set of values name them.
    for (args, values) in [
        (vec!["ddl"], "duckdb, athena, snowflake, bigquery or spark"),
        (vec!["export"], "recurring (skip a completed hour), replace, or late"),
        (vec!["bench"], "json (gzipped JSON lines), parquet, or both"),
    ] {
        assert!(help(&args).contains(values), "{args:?} names its values");
    }
    // The long help of a command carries an example.
    let dir = tempfile::tempdir().unwrap();
    let long = text(&exportctl_in(dir.path(), &["backfill", "--help"]));
    assert!(long.contains("Example: exportctl backfill acme-web --from 2020-01-25T00 --to 2020-01-25T23"), "{long}");
}

#[test]
fn a_missing_home_is_refused_by_what_reads_it_and_created_only_by_what_writes_state() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["tick"],
        vec!["runs", "acme-web"],
        vec!["metrics"],
        vec!["connections", "list"],
        vec!["connections", "delete", "acme-web"],
        vec!["projects", "list"],
        vec!["export", "acme-web", "--hour", "2020-01-25T01"],
        vec!["backfill", "acme-web", "--from", "2020-01-25T01", "--to", "2020-01-25T02"],
        vec!["verify", "acme-web"],
        vec!["ddl", "acme-web", "--engine", "duckdb"],
        vec!["--home", "mistyped-home", "status"],
    ] {
        let o = exportctl_in(cwd, &args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}");
        assert!(out.contains("is not an exportctl home") && out.contains("--home"), "{args:?} names the home and --home: {out}");
        assert_eq!(std::fs::read_dir(cwd).unwrap().count(), 0, "{args:?} created something: {out}");
    }

    // A connection file is verified without a home, and none is left behind.
    let dest = tempfile::tempdir().unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    let conn = serde_json::json!({"id": "acme-web", "org_id": "42", "project_id": "187520",
        "destination": {"type": "local", "path": dest.path()}, "admins": ["admin@example.com"], "creator": "owner@example.com"});
    std::fs::write(file.path(), conn.to_string()).unwrap();
    let o = exportctl_in(cwd, &["verify", file.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("all checks passed"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(cwd).unwrap().count(), 0, "verify FILE created a home");

    // Commands that write state create the home and say so; then the readers work.
    let o = exportctl_in(cwd, &["generate", "--project", "187520", "--from", "2020-01-25T00", "--events-per-hour", "10"]);
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("no home at .exporter-home: creating one there"), "{said}");
    assert!(said.contains("no --org given: no merged user IDs are written"), "{said}");
    assert!(cwd.join(".exporter-home/secret.key").is_file());
    let o = exportctl_in(cwd, &["projects", "add", "187520", "--org", "42"]);
    assert!(o.status.success() && !text(&o).contains("creating one"), "{}", text(&o));
    let o = exportctl_in(cwd, &["status"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_name_that_is_not_there_is_not_called_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let o = exportctl_in(cwd, &["projects", "add", "187520", "--org", "42"]);
    assert!(o.status.success(), "{}", text(&o));
    for args in [vec!["verify", "nope"], vec!["runs", "nope"], vec!["connections", "delete", "nope"]] {
        let o = exportctl_in(cwd, &args);
        let said = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains("nope"), "{args:?} names what was not found: {said}");
        assert!(said.contains("exportctl connections list") && !said.contains("temporary"), "{args:?}: {said}");
    }
}

/// `exportctl --home HOME --at AT ARGS` from `cwd`.
fn exportctl_at(home: &Path, at: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exportctl"))
        .env_remove("EXPORT_HOME")
        .env_remove("EXPORT_CONTROL_BUCKET")
        .env_remove("EXPORT_PROJECT_ROLE_ARN_TEMPLATE")
        .env_remove("EXPORT_AWS_ACCOUNT_ID")
        .arg("--home")
        .arg(home)
        .arg("--at")
        .arg(at)
        .args(args)
        .output()
        .expect("exportctl runs")
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", text(o)))
}

/// A home with project 187520 of organisation 42, lake hours 00..08 of 2020-01-25 and a local
/// connection `acme-web` created at 06:30 (it owes the hours from 00:00 that day).
fn home_with_a_connection() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let at = "2020-01-25T06:30:00Z";
    for args in [
        vec!["projects", "add", "187520", "--org", "42"],
        vec!["generate", "--project", "187520", "--org", "42", "--from", "2020-01-25T00", "--to", "2020-01-25T08", "--events-per-hour", "50"],
    ] {
        let o = exportctl_at(&home, at, &args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    let file = dir.path().join("acme-web.json");
    let conn = serde_json::json!({"id": "acme-web", "org_id": "42", "project_id": "187520",
        "destination": {"type": "local", "path": dest}, "admins": ["admin@example.com"], "creator": "owner@example.com"});
    std::fs::write(&file, conn.to_string()).unwrap();
    let o = exportctl_at(&home, at, &["connections", "create", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    (dir, home, file)
}

#[test]
fn every_reporting_command_prints_one_json_document_with_json() {
    let (_dir, home, file) = home_with_a_connection();
    let tick = json_of(&exportctl_at(&home, "2020-01-25T08:20:00Z", &["tick", "--json"]));
    let fired = tick["fired"].as_array().unwrap();
    assert_eq!(fired.len(), 1, "{tick}");
    assert_eq!((fired[0]["schedule_kind"].as_str(), fired[0]["schedule"].as_str()), (Some("hourly"), Some("acme-web")));
    let hours: Vec<&str> = fired[0]["response"]["hours"].as_array().unwrap().iter().map(|h| h["request"]["hour"].as_str().unwrap()).collect();
    assert_eq!(hours, (0..8).map(|h| format!("2020-01-25T{h:02}")).collect::<Vec<_>>(), "{tick}");
    assert_eq!(fired[0]["response"]["hours"][0]["exported"]["events_exported"], 50);

    let export = json_of(&exportctl_at(&home, "2020-01-25T09:20:00Z", &["export", "acme-web", "--hour", "2020-01-25T07", "--json"]));
    assert_eq!(export["hours"][0]["exported"]["skipped"], true, "{export}");
    let backfill = exportctl_at(&home, "2020-01-25T09:30:00Z", &["backfill", "acme-web", "--from", "2020-01-25T06", "--to", "2020-01-25T08", "--json"]);
    assert!(backfill.status.success(), "{}", text(&backfill));
    let report = json_of(&backfill);
    assert_eq!((report["complete"].as_bool(), report["progress"]["exported_hours"].as_u64()), (Some(true), Some(3)), "{report}");
    assert!(String::from_utf8_lossy(&backfill.stderr).contains("exportctl backfill --cancel"), "the cancel command still shows, on stderr");

    let runs = json_of(&exportctl_at(&home, "2020-01-25T09:40:00Z", &["runs", "acme-web", "--json"]));
    let started: Vec<&str> = runs["runs"].as_array().unwrap().iter().map(|r| r["started"].as_str().unwrap()).collect();
    assert_eq!(started.len(), 11, "8 by the tick, 3 by the backfill (a skipped hour writes no record): {runs}");
    assert!(started.windows(2).all(|w| w[0] <= w[1]), "in the order they started: {started:?}");
    let status = json_of(&exportctl_at(&home, "2020-01-25T09:40:00Z", &["status", "--json"]));
    assert_eq!(status["connections"][0]["state"], "ok", "{status}");
    let verify = json_of(&exportctl_at(&home, "2020-01-25T09:40:00Z", &["verify", "acme-web", "--json"]));
    assert_eq!(verify["all_passed"], true, "{verify}");
    assert!(!verify["destinations"][0]["results"].as_array().unwrap().is_empty(), "{verify}");
    let verify_file = json_of(&exportctl_at(&home, "2020-01-25T09:40:00Z", &["verify", file.to_str().unwrap(), "--json"]));
    assert_eq!(verify_file["connection_id"], "acme-web");
    let list = json_of(&exportctl_at(&home, "2020-01-25T09:40:00Z", &["connections", "list", "--json"]));
    assert_eq!((list["connections"][0]["connection_id"].as_str(), list["connections"][0]["enabled"].as_bool()), (Some("acme-web"), Some(true)), "{list}");
    let projects = json_of(&exportctl_at(&home, "2020-01-25T09:40:00Z", &["projects", "list", "--json"]));
    assert_eq!(projects["projects"], serde_json::json!([{"project_id": "187520", "org_id": "42", "portfolio": false}]));
}

#[test]
fn human_output_says_why_and_when_fits_100_columns_and_puts_errors_on_stderr() {
    let (dir, home, _file) = home_with_a_connection();
    let o = exportctl_at(&home, "2020-01-25T08:20:00Z", &["tick"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("acme-web 2020-01-25T07 recurring: exported 50 events\n"), "{}", text(&o));
    // Re-exporting a complete hour says why nothing was written and how to write it again.
    let o = exportctl_at(&home, "2020-01-25T09:20:00Z", &["export", "acme-web", "--hour", "2020-01-25T07"]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && said.contains("skipped: already complete") && said.contains("--mode replace"), "{}", text(&o));
    // A failed hour: the error on stderr, with what happens next; nothing on stdout.
    std::fs::rename(dir.path().join("dest"), dir.path().join("dest.away")).unwrap();
    let o = exportctl_at(&home, "2020-01-25T09:25:00Z", &["export", "acme-web", "--hour", "2020-01-25T08"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(o.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: acme-web 2020-01-25T08 recurring: failed (DestinationMissing)") && err.contains("attempt 2 is scheduled at"), "{err}");

    // Hours later the status names what is wrong in STATE and spells it out beneath, in 100 columns.
    let status = exportctl_at(&home, "2020-01-26T02:00:00Z", &["status"]);
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.lines().all(|l| l.chars().count() <= 100), "a line is wider than 100 columns:\n{table}");
    let row = table.lines().find(|l| l.starts_with("acme-web")).unwrap();
    assert!(row.contains("LATE") && !row.contains("freshness SLO"), "STATE names the conditions only: {row}");
    assert!(table.contains("\n  LATE: ") && table.contains("past the freshness SLO"), "each condition is spelt out beneath:\n{table}");

    // Runs say when each ran, oldest first.
    let runs = String::from_utf8_lossy(&exportctl_at(&home, "2020-01-26T02:00:00Z", &["runs", "acme-web"]).stdout).into_owned();
    assert!(runs.lines().next().unwrap().ends_with("STARTED"), "{runs}");
    let started: Vec<&str> = runs.lines().skip(1).filter(|l| !l.starts_with(' ')).map(|l| l.split_whitespace().last().unwrap()).collect();
    assert_eq!(started.first(), Some(&"2020-01-25T08:20Z"), "{runs}");
    assert!(started.windows(2).all(|w| w[0] <= w[1]) && started.len() == 9, "{runs}");
    assert!(runs.contains("    error DestinationMissing: destination missing"), "the error beneath its run: {runs}");
    assert!(runs.lines().filter(|l| !l.starts_with(' ')).all(|l| l.chars().count() <= 100), "{runs}");
}

#[test]
fn arguments_are_checked_before_any_work_and_policy_answers_for_the_destination_it_has() {
    let dir = tempfile::tempdir().unwrap();
    // A compression level out of range is refused before a lake is generated.
    let started = std::time::Instant::now();
    let o = exportctl_in(dir.path(), &["bench", "--events", "50000000", "--level", "12"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0..=9"), "{}", text(&o));
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "refused only after work: {:?}", started.elapsed());
    for args in [vec!["ddl", "x", "--engine", "oracle"], vec!["export", "x", "--hour", "2020-01-25T01", "--mode", "sideways"]] {
        let o = exportctl_in(dir.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("possible values"), "{args:?} names the values: {}", text(&o));
    }

    // An S3 connection file: the role template that names its account needs no --account.
    let s3 = dir.path().join("s3.json");
    let conn = serde_json::json!({"id": "acme-s3", "org_id": "42", "project_id": "187520", "admins": ["admin@example.com"], "creator": "owner@example.com",
        "destination": {"type": "s3", "bucket": "acme-events", "prefix": "exports", "region": "us-east-1"}});
    std::fs::write(&s3, conn.to_string()).unwrap();
    let s3 = s3.to_str().unwrap();
    let template = "arn:aws:iam::444455556666:role/exports/event-export-project-{project_id}";
    let o = exportctl_in(dir.path(), &["policy", s3, "--role-template", template]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("arn:aws:iam::444455556666:role/exports/event-export-project-187520"), "{}", text(&o));
    let o = exportctl_in(dir.path(), &["policy", s3, "--role-template", template, "--account", "111122223333"]);
    assert_eq!(o.status.code(), Some(2), "a disagreeing --account is refused, not ignored: {}", text(&o));
    assert!(text(&o).contains("444455556666"), "{}", text(&o));
    let o = exportctl_in(dir.path(), &["policy", s3, "--account", "111122223333"]);
    assert!(o.status.success() && text(&o).contains("arn:aws:iam::111122223333:role/event-export-project-187520"), "{}", text(&o));
    let o = exportctl_in(dir.path(), &["policy", s3]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--account"), "{}", text(&o));

    // A local folder needs no policy, and is not answered with Azure advice.
    let local = dir.path().join("local.json");
    let conn = serde_json::json!({"id": "acme-web", "org_id": "42", "project_id": "187520", "admins": ["admin@example.com"], "creator": "owner@example.com",
        "destination": {"type": "local", "path": dir.path()}});
    std::fs::write(&local, conn.to_string()).unwrap();
    let o = exportctl_in(dir.path(), &["policy", local.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("No policy: a local folder") && !text(&o).contains("Azure") && !text(&o).contains("Storage Blob"), "{}", text(&o));
}
