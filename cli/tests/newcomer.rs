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
    for expected in
        ["demo", "generate", "bench", "projects", "connections", "verify", "policy", "ddl", "export", "backfill", "tick", "status", "runs", "metrics", "help"]
    {
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
        (vec!["ddl"], "duckdb, athena, snowflake or bigquery"),
        (vec!["export"], "recurring (skip a completed hour), replace, or late"),
        (vec!["bench"], "json (gzipped JSON lines) or parquet"),
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
