//! The world every fault timeline runs in: one embedded home with a lake, local destination
//! folders and connections, driven through the real `exportctl` binary with `--at` as the
//! one clock, and the whole-state check each timeline ends with.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use chrono::{DateTime, Duration, Utc};
use exporter::export::manifest::Manifest;
use exporter::export::schema::{EXPORT_FIELDS, TIMESTAMP_FIELDS};
use exporter::hour::{HourRange, UtcHour};
use sha2::{Digest, Sha256};

pub const PROJECT: &str = "187520";
/// The default export timestamp form, exactly (a space, six fractional digits, no zone).
pub const EXACT_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.6f";
pub const CONN: &str = "c1";

/// One embedded home with a lake, one local destination and one connection.
pub struct World {
    pub _dir: tempfile::TempDir,
    pub home: PathBuf,
    pub dest: PathBuf,
    pub env: Vec<(String, String)>,
    /// The latest `--at` of a command that runs hours (tick, export, backfill): the
    /// timeline's end, where the whole-state check reads the status.
    pub clock: std::sync::Mutex<Option<DateTime<Utc>>>,
}

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn h(s: &str) -> UtcHour {
    UtcHour::parse(s).unwrap()
}

pub fn rfc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl World {
    /// A connection created at 2020-01-25T00:05 (it owes hours from 00:00 that day) and a
    /// lake with `events` events in each of `hours`.
    pub fn new(hours: &str, events: u64) -> World {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let dest = dir.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        let w = World { home, dest, env: Vec::new(), clock: Default::default(), _dir: dir };
        let (from, to) = hours.split_once("..").unwrap();
        w.ok(
            &["generate", "--project", PROJECT, "--from", from, "--to", to, "--events-per-hour", &events.to_string(), "--merges-per-hour", "0"],
            "2020-01-25T00:05:00Z",
        );
        let conn = serde_json::json!({"id": CONN, "org_id": "42", "project_id": PROJECT, "created": "2020-01-25T00:05:00Z",
            "destination": {"type": "local", "path": w.dest, "prefix": "exports"}, "admins": ["admin@example.com"], "creator": "owner@example.com"});
        let file = w.home.parent().unwrap().join("conn.json");
        std::fs::write(&file, conn.to_string()).unwrap();
        w.ok(&["projects", "add", PROJECT, "--org", "42"], "2020-01-25T00:05:00Z");
        w.ok(&["connections", "create", file.to_str().unwrap()], "2020-01-25T00:05:00Z");
        w
    }

    pub fn command(&self, args: &[&str], at: &str) -> Command {
        if let (Some(&("tick" | "export" | "backfill")), Ok(at)) = (args.first(), DateTime::parse_from_rfc3339(at)) {
            let mut clock = self.clock.lock().unwrap();
            *clock = Some(clock.map_or(at.with_timezone(&Utc), |c| c.max(at.with_timezone(&Utc))));
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_exportctl"));
        c.arg("--home").arg(&self.home).arg("--at").arg(at).args(args).env_remove("EXPORT_PAUSE_AT");
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    pub fn run(&self, args: &[&str], at: &str) -> Output {
        self.command(args, at).output().expect("exportctl runs")
    }

    pub fn ok(&self, args: &[&str], at: &str) -> String {
        let o = self.run(args, at);
        assert!(o.status.success(), "exportctl {args:?} at {at} failed:\n{}", text(&o));
        text(&o)
    }

    /// Ticks every five minutes from `from` to `to` (inclusive); `each` runs before a tick.
    pub fn replay(&self, from: &str, to: &str, mut each: impl FnMut(DateTime<Utc>)) {
        let mut at = t(from);
        while at <= t(to) {
            each(at);
            self.run(&["tick"], &rfc(at));
            at += Duration::minutes(5);
        }
    }

    pub fn lake_hour_dir(&self, hour: UtcHour) -> PathBuf {
        self.home.join("lake").join(exporter::export::layout::lake_events_prefix(PROJECT, hour))
    }

    pub fn part_dir(&self) -> PathBuf {
        self.dest.join("exports").join(PROJECT)
    }

    pub fn marker(&self, hour: UtcHour) -> Option<Manifest> {
        let path = self.part_dir().join(format!("{PROJECT}_{}_complete", hour.file_stem()));
        std::fs::read(path).ok().map(|b| serde_json::from_slice(&b).expect("manifest"))
    }

    pub fn emails(&self) -> usize {
        std::fs::read_dir(self.home.join("outbox")).map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count()).unwrap_or(0)
    }

    pub fn dest_snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut todo = vec![self.dest.clone()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    todo.push(e.path());
                } else {
                    out.insert(e.path(), std::fs::read(e.path()).unwrap());
                }
            }
        }
        out
    }

    /// Lines of every lake file of `hour` (the generator writes each event once).
    pub fn lake_lines(&self, hour: UtcHour) -> u64 {
        let mut n = 0;
        for e in std::fs::read_dir(self.lake_hour_dir(hour)).into_iter().flatten().flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            let mut s = String::new();
            if e.path().to_string_lossy().ends_with(".gz") {
                flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut s).unwrap();
            } else {
                s = String::from_utf8(bytes).unwrap();
            }
            n += s.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        }
        n
    }

    /// The end-of-scenario check over `hours`: a marker per hour whose manifest matches the
    /// stored parts exactly, every lake event exported once, the accounting balanced, and
    /// nothing owed any more.
    pub fn assert_complete_and_consistent(&self, hours: HourRange) {
        for hour in hours.hours() {
            // Exactly once within the hour (the generator may reuse ids across hours).
            let mut uuids = BTreeSet::new();
            let manifest = self.marker(hour).unwrap_or_else(|| panic!("no complete marker for {hour}"));
            assert!(manifest.balances(), "{hour}: accounting does not balance: {manifest:?}");
            let events = manifest.events.clone().expect("events report");
            let stored: BTreeSet<String> = std::fs::read_dir(self.part_dir())
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{PROJECT}_{}#", hour.file_stem())))
                .collect();
            let listed: BTreeSet<String> = events.files.iter().map(|f| f.key.rsplit('/').next().unwrap().to_string()).collect();
            assert_eq!(stored, listed, "{hour}: the manifest's parts are not the stored parts");
            let mut lines = 0;
            for f in &events.files {
                let bytes = std::fs::read(self.dest.join(&f.key)).unwrap();
                assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256, "{}: sha256 differs from the manifest", f.key);
                let mut n = 0;
                for line in BufReader::new(flate2::read::GzDecoder::new(&bytes[..])).lines() {
                    let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                    assert_timestamps_exact(&v, EXACT_TIMESTAMP);
                    assert!(uuids.insert(v["uuid"].as_str().unwrap().to_string()), "{hour}: event {} exported twice", v["uuid"]);
                    n += 1;
                }
                assert_eq!(n, f.events, "{}: line count differs from the manifest", f.key);
                lines += n;
            }
            assert_eq!(lines, events.accounting.exported, "{hour}: parts hold {lines} events, manifest says {}", events.accounting.exported);
            assert_eq!(lines, self.lake_lines(hour), "{hour}: every lake event exactly once");
        }
        // At the timeline's end: a status read hours after the last run would rightly say
        // LATE (nothing exported since).
        let end = self.clock.lock().unwrap().map(rfc).unwrap_or_else(|| "2020-01-25T23:59:00Z".into());
        let status = self.ok(&["status"], &end);
        assert!(!status.contains("owed:"), "hours still owed at {end}:\n{status}");
        self.assert_status_ok(&end);
    }

    /// The STATE column of connection `conn` in `exportctl status` at `at` (everything after
    /// the OWED column).
    pub fn state(&self, conn: &str, at: &str) -> String {
        let status = self.ok(&["status"], at);
        state_in(&status, conn).unwrap_or_else(|| panic!("{conn} is not in the status table:\n{status}"))
    }

    /// Status tells the truth at the end of a timeline: every connection's STATE is `ok`.
    pub fn assert_status_ok(&self, at: &str) {
        let status = self.ok(&["status"], at);
        for line in status.lines().skip(1).filter(|l| !l.starts_with(' ')) {
            let id = line.split_whitespace().next().unwrap_or_default();
            let state = state_in(&status, id).unwrap_or_default();
            assert!(state == "ok", "{id}: STATE is not ok at {at}:\n{status}");
        }
    }
}

/// Every timestamp field of an exported line is null or exactly `format` (26 characters).
pub fn assert_timestamps_exact(line: &serde_json::Value, format: &str) {
    for field in TIMESTAMP_FIELDS.map(|i| EXPORT_FIELDS[i]) {
        match &line[field] {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => {
                assert!(s.len() == 26 && chrono::NaiveDateTime::parse_from_str(s, format).is_ok(), "{field}: {s:?} is not {format}")
            }
            other => panic!("{field}: {other} is not a timestamp string"),
        }
    }
}

pub fn first_lake_line(w: &World, hour: UtcHour) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(w.lake_hour_dir(hour)).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let bytes = std::fs::read(&files[0]).unwrap();
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut s).unwrap();
    s.lines().next().unwrap().to_string()
}

/// with SIGKILL once it says it is there.
pub fn kill_at(w: &World, args: &[&str], at: &str, step: &str) {
    let mut child: Child = w.command(args, at).env("EXPORT_PAUSE_AT", step).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(&format!("paused at {step}")) {
            break;
        }
    }
    assert!(seen.contains("paused at"), "exportctl never reached {step}:\n{seen}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// The STATE of `conn` in a status table: the columns after CONNECTION, PROJECT, ENABLED,
/// WATERMARK, LAST EXPORTED, LAG, OWED and FRESHNESS.
/// The STATE of `conn` in a status table: `ok`, or its conditions as spelt out beneath its
/// line (each wrapped to 100 columns there, rejoined here), joined with `; `.
pub fn state_in(status: &str, conn: &str) -> Option<String> {
    let mut lines = status.lines().skip_while(|l| l.split_whitespace().next() != Some(conn));
    let cell = lines.next()?.split_whitespace().skip(8).collect::<Vec<_>>().join(" ");
    if cell == "ok" {
        return Some(cell);
    }
    let mut conditions: Vec<String> = Vec::new();
    for line in lines.take_while(|l| l.starts_with("  ")) {
        if line.starts_with("  owed:") {
            break;
        }
        let words = line.split_whitespace().collect::<Vec<_>>().join(" ");
        match conditions.last_mut() {
            Some(c) if line.starts_with("    ") => {
                c.push(' ');
                c.push_str(&words);
            }
            _ => conditions.push(words),
        }
    }
    Some(conditions.join("; "))
}
