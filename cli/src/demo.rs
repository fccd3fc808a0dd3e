//! `exportctl demo [DIR]`: the whole product offline, replayed on its own clock. Generates
//! a lake (three projects in two organisations, duplicates, invalid lines, a truncated file,
//! merges, an empty hour), creates connections (one with a filter), runs the hourly
//! schedules, runs an overlapping backfill, takes one destination folder away for longer
//! than the whole retry schedule (the one email, the owed hours, the recovery), prints the
//! destination tree, the status table and the accounting, shows the DuckDB statement that
//! reads the Parquet + hive connection, reads the Delta connection's table back from its
//! log, and checks its own output: it exits non-zero if
//! anything is off.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Duration, Timelike, Utc};
use exporter::control::connection::Connection;
use exporter::export::columns::{export_columns, ColumnType};
use exporter::export::generate::{generate_hour, generate_merges, write_raw_event, Generated, HourSpec};

use exporter::export::manifest::Manifest;
use exporter::export::schema::{EXPORT_FIELDS, TIMESTAMP_FIELDS};
use exporter::hour::{HourRange, UtcHour};
use exporter::model::format::{PartFormat, TableFormat};
use exporter::ports::ObjectStore;
use exporter::{ExportError, Result};
use sha2::{Digest, Sha256};

use crate::home;
use crate::home::Home;

/// The default export timestamp form, exactly: a space, six fractional digits, no zone.
const EXACT_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// The demo's connections, in the order the schedules fire.
const CONNECTIONS: [&str; 6] = ["acme-web", "acme-app", "globex-main", "acme-lake", "globex-private", crate::demo_delta::DELTA_CONNECTION];

/// The field policy of `globex-private` (the same project as `globex-main`, so each of its
/// rows is checked against the unprotected row of the same event). No key: create makes one.
const FIELD_POLICY: &str = r#"{"drop":["idfa","adid","user_properties.referrer","event_properties.query"],
    "pseudonymise":["user_id","device_id"],"truncate_ip":true,"location_decimals":1}"#;

/// Written into a demo folder so a second run may safely wipe it.
const DEMO_MARK: &str = ".exportctl-demo";

pub(crate) struct Checks {
    failures: Vec<String>,
    passed: u64,
}

impl Checks {
    pub(crate) fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(what());
        }
    }
}

fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(|e| ExportError::io(dir.display().to_string(), e))?.next().is_none();
        if !empty && !dir.join(DEMO_MARK).exists() {
            return Err(ExportError::invalid_input(
                format!("demo folder {}", dir.display()),
                "exists, is not empty and was not made by the demo; give another folder",
            ));
        }
        std::fs::remove_dir_all(dir).map_err(|e| ExportError::io(dir.display().to_string(), e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| ExportError::io(dir.display().to_string(), e))?;
    std::fs::write(dir.join(DEMO_MARK), "made by exportctl demo\n").map_err(|e| ExportError::io(dir.display().to_string(), e))
}

fn connection_json(id: &str, org: &str, project: &str, dest: &Path, prefix: &str, extra: &str) -> String {
    format!(
        r#"{{"id":"{id}","org_id":"{org}","project_id":"{project}",
            "destination":{{"type":"local","path":"{}","prefix":"{prefix}"}},
            "admins":["data-admin@{org}.example.com"],"creator":"creator@{org}.example.com"{extra}}}"#,
        dest.display()
    )
}

/// The demo's clock: embedded mode acts at the time the replay has reached.
#[derive(Clone)]
struct ReplayClock(Arc<Mutex<DateTime<Utc>>>);

impl ReplayClock {
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock") = t;
    }
    fn clock(&self) -> exporter::model::clock::Clock {
        let c = self.0.clone();
        Arc::new(move || *c.lock().expect("clock"))
    }
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("demo time").with_timezone(&Utc)
}

/// One step of the replay at `at`: the hourly schedules when it is 20 past, then the due
/// retries. Prints what happened to each hour; returns every hour result.
async fn replay_step(home: &Home, at: DateTime<Utc>, quiet_success: bool, checks: &mut Checks) -> Result<Vec<exporter::delivery::failure::HourResult>> {
    let embedded = home.embedded("demo")?;
    let mut responses = Vec::new();
    if at.minute() == exporter::model::schedule::HOURLY_MINUTE {
        for id in CONNECTIONS {
            responses.push(embedded.fire_hourly(id, at).await);
        }
    }
    for (_, r) in embedded.fire_due_retries(at).await? {
        responses.push(r);
    }
    let mut out = Vec::new();
    for r in responses {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                checks.check(false, || format!("{at}: a run failed as a whole: {e}"));
                continue;
            }
        };
        for h in r.hours {
            let what = match (&h.exported, &h.after_failure) {
                (Some(s), _) => format!("{} events (attempt {})", s.events_exported, h.request.attempt),
                (None, Some(after)) => format!("{} → {}", h.error_kind.clone().unwrap_or_default(), serde_json::to_string(after).unwrap_or_default()),
                (None, None) => h.error.clone().unwrap_or_default(),
            };
            if !(quiet_success && h.succeeded() && h.request.attempt == 1) {
                println!("   {} {:<12} {} {}", at.format("%H:%M"), r.connection_id, h.request.hour, what);
            }
            out.push(h);
        }
    }
    Ok(out)
}

pub async fn run(dir: &Path) -> Result<ExitCode> {
    // Local destinations are absolute paths (a relative one would move with the working directory).
    let dir = &std::path::absolute(dir).map_err(|e| ExportError::io(dir.display().to_string(), e))?;
    prepare(dir)?;
    let replay = ReplayClock(Arc::new(Mutex::new(time("2020-01-25T00:05:00Z"))));
    let home = home::open(&dir.join("home"), false, replay.clock()).await?;
    let embedded = home.embedded("demo")?;
    let lake = embedded.lake.clone();
    let hours = HourRange::parse("2020-01-25T00", "2020-01-25T07")?;
    let empty_hour = UtcHour::parse("2020-01-25T02")?;
    let truncated_hour = UtcHour::parse("2020-01-25T01")?;

    println!("== 1. Event lake: {}", lake.root().display());
    let mut generated: BTreeMap<(String, UtcHour), Generated> = BTreeMap::new();
    for (project, org, per_hour) in [("187520", "42", 1500u64), ("187521", "42", 600), ("300001", "77", 900)] {
        for hour in hours.hours() {
            if project == "187520" && hour == empty_hour {
                continue; // an hour with no data at all: it must still get its marker
            }
            let spec = HourSpec {
                project_id: project.into(),
                hour,
                events: per_hour,
                events_per_file: 400,
                duplicate_every: 40,
                invalid_every: 250,
                seed: 2020,
                gzip: true,
            };
            generated.insert((project.into(), hour), generate_hour(lake.as_ref(), &spec).await?);
        }
        if project != "187521" {
            for hour in hours.hours() {
                generate_merges(lake.as_ref(), org, hour, 25, 7).await?;
            }
        }
    }
    // A gzip file cut in half, as an interrupted upload leaves it.
    let truncated_key = write_truncated_file(lake.as_ref(), "187520", truncated_hour).await?;
    println!("   3 projects, 2 organisations, hours {hours}; project 187520 has no data at {empty_hour}");
    println!("   duplicates every 40 events, a broken line every 250, and a truncated file: {truncated_key}");

    println!("\n== 2. Connections");
    let dest_a = dir.join("destinations/acme-analytics");
    let dest_b = dir.join("destinations/globex-lake");
    let dest_c = dir.join("destinations/acme-lakehouse");
    let dest_d = dir.join("destinations/globex-private");
    let dest_e = dir.join("destinations/acme-delta");
    // Destination folders behave like buckets: they exist before a connection points at them.
    for d in [&dest_a, &dest_b, &dest_c, &dest_d, &dest_e] {
        std::fs::create_dir_all(d).map_err(|e| ExportError::io(d.display().to_string(), e))?;
    }
    let created = replay.0.lock().expect("clock").to_owned();
    let filter = r#","filter":{"not":{"event_type":{"in":["session_end"]}}}"#;
    let web = connection_json("acme-web", "42", "187520", &dest_a, "exports", filter);
    let app = connection_json("acme-app", "42", "187521", &dest_a, "exports", "");
    let globex = connection_json("globex-main", "77", "300001", &dest_b, "amplitude", r#","export":{"events":true,"merged_ids":true}"#);
    // Lake-ready: the same project's events as Parquet in dt=/hour= folders engines prune by.
    let lakehouse = connection_json("acme-lake", "42", "187520", &dest_c, "events", r#","format":"parquet","layout":"hive""#);
    // A Delta Lake table: acme-app's project as Parquet parts in hive folders, one commit per hour.
    let delta = connection_json(
        crate::demo_delta::DELTA_CONNECTION,
        "42",
        "187521",
        &dest_e,
        "delta",
        r#","format":"parquet","layout":"hive","table":"delta","export":{"events":true,"merged_ids":true}"#,
    );
    // Privacy: the same events as globex-main with identifiers pseudonymised, some dropped.
    let private = connection_json(
        "globex-private",
        "77",
        "300001",
        &dest_d,
        "private",
        &format!(r#","export":{{"events":true,"merged_ids":false}},"fields":{FIELD_POLICY}"#),
    );
    // The operator's project registry: whose each project is, and which is a portfolio.
    for (project, org, portfolio) in [("187520", "42", false), ("187521", "42", false), ("300001", "77", false), ("999999", "42", true)] {
        home.control.add_project(&exporter::control::projects::Project::new(project, org, portfolio)?).await?;
    }
    println!("   registered projects 187520, 187521 (org 42), 300001 (org 77) and portfolio 999999 (org 42)");
    let prober = exporter::runtime::function_env::FactoryProber::new(home.cloud.clone());
    for doc in [&web, &app, &globex, &lakehouse, &private, &delta] {
        let conn = Connection::from_json(doc)?;
        let (conn, reports) = exporter::control::lifecycle::create_connection(&home.control, home.schedules.as_ref(), &prober, conn, created).await?;
        println!(
            "   created {:<12} project {} → {} (test upload: {} checks passed)",
            conn.id,
            conn.project_id,
            conn.destination.describe(),
            reports[0].results.len()
        );
    }
    // What the product refuses, with the message a user would see.
    // The same folder spelled another way is the same claim.
    let intruder = connection_json("globex-steal", "77", "300001", &dest_a.join("..").join("acme-analytics"), "x", "");
    let portfolio = connection_json("acme-portfolio", "42", "999999", &dest_a, "exports", "");
    let foreign = connection_json("globex-peek", "77", "187520", &dest_b, "peek", "");
    let hostile = connection_json("acme-hostile", "42", "187520", &dest_a, "../../etc", "");
    let mut checks = Checks { failures: Vec::new(), passed: 0 };
    for (what, doc) in
        [("another org's bucket", intruder), ("a portfolio project", portfolio), ("another org's project", foreign), ("a hostile prefix", hostile)]
    {
        let result = async {
            let conn = Connection::from_json(&doc)?;
            exporter::control::lifecycle::create_connection(&home.control, home.schedules.as_ref(), &prober, conn, created).await
        }
        .await;
        match result {
            Err(e) => println!("   refused {what}: {e}"),
            Ok(_) => checks.check(false, || format!("{what} was accepted")),
        }
    }

    println!("\n== 3. Hourly schedules fire at 20 past each hour (after the hour has settled), 00:20 to 04:20");
    let mut at = time("2020-01-25T00:20:00Z");
    while at <= time("2020-01-25T04:20:00Z") {
        replay.set(at);
        for h in replay_step(&home, at, false, &mut checks).await? {
            checks.check(h.succeeded(), || format!("scheduled run {} failed: {:?}", h.request, h.error));
        }
        at += Duration::minutes(5);
    }
    let before = part_digests(&dest_a)?;

    println!("\n== 4. Backfill acme-web 2020-01-25T00..2020-01-25T03 (overlaps everything exported)");
    replay.set(time("2020-01-25T04:30:00Z"));
    let backfill = HourRange::parse("2020-01-25T00", "2020-01-25T03")?;
    let payload = serde_json::json!({"connection_id": "acme-web", "from": backfill.from.to_string(), "to": backfill.to.to_string()});
    embedded.backfill(payload, || {}).await?;
    let after = part_digests(&dest_a)?;
    checks.check(before == after, || "re-exporting the hours did not give byte-identical parts".into());
    println!("   re-exported {} hours; parts byte-identical to the scheduled export: {}", backfill.len(), before == after);

    println!("\n== 5. An outage longer than the whole retry schedule: {} is taken away 05:00-09:00", dest_b.display());
    let away = dest_b.with_extension("away");
    std::fs::rename(&dest_b, &away).map_err(|e| ExportError::io(dest_b.display().to_string(), e))?;
    let mut at = time("2020-01-25T04:35:00Z");
    let mut status_shown = false;
    while at <= time("2020-01-25T11:20:00Z") {
        if at == time("2020-01-25T09:00:00Z") {
            std::fs::rename(&away, &dest_b).map_err(|e| ExportError::io(dest_b.display().to_string(), e))?;
            println!("   09:00 the folder is back");
        }
        replay.set(at);
        replay_step(&home, at, true, &mut checks).await?;
        if !status_shown && at >= time("2020-01-25T08:45:00Z") {
            status_shown = true;
            println!("   status at 08:45 (the owed hours are listed, none dropped):");
            for line in crate::status::status_table(&home, at).await?.lines() {
                println!("     {line}");
            }
        }
        at += Duration::minutes(5);
    }
    let emails = embedded.outbox.messages()?;
    checks.check(emails.len() == 1, || format!("{} failure emails in the outbox, expected exactly one", emails.len()));
    if let Some(first) = emails.first() {
        let text = std::fs::read_to_string(first).map_err(|e| ExportError::io(first.display().to_string(), e))?;
        println!("   the one email ({}):", first.display());
        let body = exporter::adapters::local::outbox::plain_text(&text).unwrap_or_default();
        for line in text.lines().filter(|l| l.starts_with("Subject:") || l.starts_with("To:")).chain(body.lines().filter(|l| !l.trim().is_empty()).take(8)) {
            println!("     {line}");
        }
    }
    let ledger = exporter::control::ledger::HourLedger::new(home.control.store().clone());
    for conn in home.control.list_connections().await? {
        let owed = ledger.owed(&conn.id).await?;
        checks.check(owed.is_empty(), || format!("{} still owes {} hour(s) after the recovery", conn.id, owed.len()));
    }
    println!("   after the recovery every owed hour is exported; the email's promise held");

    println!("\n== 6. Destination tree");
    for d in [&dest_a, &dest_b, &dest_c, &dest_d, &dest_e] {
        print_tree(d)?;
    }

    println!("\n== 7. Status");
    let table = crate::status::status_table(&home, time("2020-01-25T11:20:00Z")).await?;
    print!("{table}");
    // Status tells the truth: after the recovery nothing is wrong, so every STATE is ok.
    for row in table.lines().skip(1).filter(|l| !l.starts_with(' ')) {
        let state = row.split_whitespace().skip(8).collect::<Vec<_>>().join(" ");
        checks.check(state == "ok", || format!("status is not ok after the recovery: {row}"));
    }

    println!("\n== 8. Accounting (read = exported + filtered + duplicates + invalid)");
    let exported = verify_exports(&home, &dir.join("destinations"), &hours, &generated, &mut checks).await?;

    println!("\n== 9. The Parquet + hive connection as a table (exportctl ddl acme-lake --engine duckdb)");
    show_duckdb_table(&home, exported.get("acme-lake").copied().unwrap_or(0), &mut checks).await?;

    println!("\n== 10. The Delta Lake table of acme-delta (one commit per hour; read back from its log)");
    crate::demo_delta::verify_delta_table(&home, &hours, &mut checks).await?;

    println!("\n== 11. The field policy of globex-private (its key was generated at create and is sealed)");
    verify_field_policy(&home, &dir.join("destinations"), &hours, &mut checks).await?;

    println!("\n== 12. Self-check");
    if checks.failures.is_empty() {
        println!("   all {} checks passed", checks.passed);
        println!("\nEverything is in {}", dir.display());
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &checks.failures {
            println!("   FAILED: {f}");
        }
        println!("   {} passed, {} failed", checks.passed, checks.failures.len());
        Ok(ExitCode::from(1))
    }
}

async fn write_truncated_file(lake: &dyn ObjectStore, project: &str, hour: UtcHour) -> Result<String> {
    use rand::SeedableRng;
    let spec = HourSpec { project_id: project.into(), hour, events: 0, events_per_file: 1, duplicate_every: 0, invalid_every: 0, seed: 99, gzip: true };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(99);
    let mut body = Vec::new();
    for i in 0..60 {
        write_raw_event(&mut body, &spec, 1_000_000 + i, &mut rng);
        body.push(b'\n');
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&body).expect("in-memory");
    let gz = enc.finish().expect("in-memory");
    let key = format!("{}zz-interrupted-upload.json.gz", exporter::export::layout::lake_events_prefix(project, hour));
    lake.put(&key, Bytes::copy_from_slice(&gz[..gz.len() / 2])).await?;
    Ok(key)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(|e| ExportError::io(dir.display().to_string(), e))?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if e.file_name() == ".uploads" {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn print_tree(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    walk(root, &mut files)?;
    println!("   {}/", root.display());
    for f in files {
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        println!("     {:<60} {:>9} B", f.strip_prefix(root).unwrap_or(&f).display(), size);
    }
    Ok(())
}

fn part_digests(root: &Path) -> Result<BTreeMap<PathBuf, String>> {
    let mut files = Vec::new();
    walk(root, &mut files)?;
    let mut out = BTreeMap::new();
    for f in files.into_iter().filter(|f| f.to_string_lossy().ends_with(".json.gz")) {
        let bytes = std::fs::read(&f).map_err(|e| ExportError::io(f.display().to_string(), e))?;
        out.insert(f, hex::encode(Sha256::digest(&bytes)));
    }
    Ok(out)
}

/// `A_yyyy-MM-dd_H#n.json.gz` (or `.parquet`) with H 0-23 unpadded.
fn is_part_name(name: &str, project: &str, format: PartFormat) -> bool {
    let Some(rest) = name.strip_prefix(&format!("{project}_")) else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(format.extension()) else {
        return false;
    };
    let Some((stem, n)) = rest.split_once('#') else {
        return false;
    };
    UtcHour::parse_file_stem(stem).is_ok() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
}

async fn verify_exports(
    home: &Home,
    destinations: &Path,
    hours: &HourRange,
    generated: &BTreeMap<(String, UtcHour), Generated>,
    checks: &mut Checks,
) -> Result<BTreeMap<String, u64>> {
    let mut exported_by_connection = BTreeMap::new();
    println!("   {:<12} {:<14} {:>6} {:>8} {:>8} {:>10} {:>7}  PARTS", "CONNECTION", "HOUR", "READ", "EXPORTED", "FILTERED", "DUPLICATES", "INVALID");
    for conn in home.control.list_connections().await? {
        let exporter::model::destination::Destination::Local { path, .. } = &conn.destination else {
            checks.check(false, || format!("{}: the demo's destinations are local folders", conn.id));
            continue;
        };
        let root = Path::new(path);
        checks.check(root.starts_with(destinations), || format!("{}: {} is outside the demo", conn.id, root.display()));
        let layout = conn.events_layout();
        let mut seen = HashSet::new();
        for hour in hours.hours() {
            let marker = root.join(layout.complete_key(hour));
            let Ok(text) = std::fs::read(&marker) else {
                checks.check(false, || format!("{}: no complete marker for {hour}", conn.id));
                continue;
            };
            let manifest: Manifest = match serde_json::from_slice(&text) {
                Ok(m) => m,
                Err(e) => {
                    checks.check(false, || format!("{}: marker of {hour} is not a manifest: {e}", conn.id));
                    continue;
                }
            };
            checks.check(manifest.balances(), || format!("{} {hour}: accounting does not balance", conn.id));
            let events = manifest.events.clone().unwrap_or_default();
            let acc = &events.accounting;
            println!(
                "   {:<12} {:<14} {:>6} {:>8} {:>8} {:>10} {:>7}  {}",
                conn.id,
                hour.to_string(),
                acc.read,
                acc.exported,
                acc.filtered,
                acc.duplicates,
                acc.invalid,
                events.files.len()
            );
            if let Some(g) = generated.get(&(conn.project_id.clone(), hour)) {
                checks
                    .check(acc.duplicates == g.duplicates, || format!("{} {hour}: {} duplicates dropped, {} generated", conn.id, acc.duplicates, g.duplicates));
                checks.check(acc.invalid >= g.invalid, || format!("{} {hour}: {} invalid counted, {} generated", conn.id, acc.invalid, g.invalid));
                checks.check(acc.exported + acc.filtered >= g.unique_events, || format!("{} {hour}: events lost", conn.id));
            } else if conn.project_id == "187520" && hour.to_string() == "2020-01-25T02" {
                checks.check(acc.read == 0 && events.files.is_empty(), || "the empty hour has data".into());
            }
            let mut counted = 0u64;
            for file in &events.files {
                let name = file.key.rsplit('/').next().unwrap_or("");
                checks.check(is_part_name(name, &conn.project_id, conn.format), || format!("bad part name {}", file.key));
                checks.check(file.key.starts_with(&layout.part_prefix(hour)), || format!("{} is not in {}'s folder for {hour}", file.key, conn.id));
                let path = root.join(&file.key);
                let bytes = match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        checks.check(false, || format!("{} listed in the manifest but unreadable: {e}", file.key));
                        continue;
                    }
                };
                checks.check(hex::encode(Sha256::digest(&bytes)) == file.sha256, || format!("{}: sha256 differs from the manifest", file.key));
                for obj in part_records(&file.key, &bytes, conn.format, checks)? {
                    counted += 1;
                    if counted == 1 {
                        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                        checks.check(keys == EXPORT_FIELDS, || format!("{}: fields are not the export schema in order", file.key));
                    }
                    // Every timestamp in the exact export form, which readers parse as a timestamp
                    // (Parquet's typed timestamps are rendered in the same form).
                    for field in TIMESTAMP_FIELDS.map(|i| EXPORT_FIELDS[i]) {
                        let ok = match &obj[field] {
                            serde_json::Value::Null => true,
                            serde_json::Value::String(s) => s.len() == 26 && chrono::NaiveDateTime::parse_from_str(s, EXACT_TIMESTAMP).is_ok(),
                            _ => false,
                        };
                        checks.check(ok, || format!("{}: {field} {} is not in the form {EXACT_TIMESTAMP}", file.key, obj[field]));
                    }
                    if conn.filter.is_some() {
                        checks.check(obj["event_type"] != "session_end", || format!("{}: filtered event exported", file.key));
                    }
                    // Exactly once per hour (de-duplication is per hour, as in Amplitude's export).
                    let key = format!("{hour}|{}|{}", obj["device_id"], obj["$insert_id"]);
                    checks.check(seen.insert(key.clone()), || format!("{}: event {key} exported twice", conn.id));
                }
            }
            checks.check(counted == acc.exported, || format!("{} {hour}: {counted} lines in parts, manifest says {}", conn.id, acc.exported));
            *exported_by_connection.entry(conn.id.clone()).or_insert(0) += acc.exported;
            if let Some(merged) = &manifest.merged_ids {
                let layout = conn.merged_ids_layout();
                let expected = layout.merged_ids_key(hour);
                // A Delta table's files are numbered (`-O_D_H#n.parquet`): a replace never overwrites one.
                let named = |key: &str| match conn.table {
                    TableFormat::Delta => layout.merged_ids_part_number(hour, key).is_some(),
                    TableFormat::Files => key == expected,
                };
                checks.check(merged.files.iter().all(|f| named(&f.key)), || format!("{} {hour}: merged IDs misnamed (expected {expected})", conn.id));
            }
        }
    }
    Ok(exported_by_connection)
}

/// The records of one part as JSON objects: its lines, or its Parquet rows rendered the
/// way the JSON export writes them (timestamps in the export form, JSON columns parsed).
fn part_records(key: &str, bytes: &[u8], format: PartFormat, checks: &mut Checks) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut out = Vec::new();
    match format {
        PartFormat::Json => {
            for line in BufReader::new(flate2::read::GzDecoder::new(bytes)).lines() {
                let line = line.map_err(|e| ExportError::io(key.to_string(), e))?;
                match serde_json::from_str(&line) {
                    Ok(o) => out.push(o),
                    Err(e) => checks.check(false, || format!("{key}: a line is not a JSON object: {e}")),
                }
            }
        }
        PartFormat::Parquet => {
            use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
            let broken = |e: &dyn std::fmt::Display| ExportError::Corrupt { what: key.to_string(), detail: e.to_string() };
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(bytes)).map_err(|e| broken(&e))?;
            let documented = exporter::export::parquet_parts::arrow_schema();
            checks.check(reader.schema() == &documented, || format!("{key}: the Parquet schema is not the documented one"));
            for batch in reader.build().map_err(|e| broken(&e))? {
                let batch = batch.map_err(|e| broken(&e))?;
                for r in 0..batch.num_rows() {
                    let mut obj = serde_json::Map::new();
                    for (i, column) in export_columns().enumerate() {
                        let a = batch.column(i).as_any();
                        let value = if batch.column(i).is_null(r) {
                            serde_json::Value::Null
                        } else {
                            match column.column_type {
                                ColumnType::Timestamp => {
                                    let micros = a.downcast_ref::<TimestampMicrosecondArray>().map(|t| t.value(r)).unwrap_or(i64::MIN);
                                    DateTime::from_timestamp_micros(micros).map(|t| t.format(EXACT_TIMESTAMP).to_string().into()).unwrap_or_default()
                                }
                                ColumnType::Int64 => a.downcast_ref::<Int64Array>().map(|v| v.value(r).into()).unwrap_or_default(),
                                ColumnType::Float64 => a.downcast_ref::<Float64Array>().map(|v| v.value(r).into()).unwrap_or_default(),
                                ColumnType::Boolean => a.downcast_ref::<BooleanArray>().map(|v| v.value(r).into()).unwrap_or_default(),
                                ColumnType::Json => a.downcast_ref::<StringArray>().and_then(|v| serde_json::from_str(v.value(r)).ok()).unwrap_or_default(),
                                ColumnType::String => a.downcast_ref::<StringArray>().map(|v| v.value(r).into()).unwrap_or_default(),
                            }
                        };
                        obj.insert(column.name.to_string(), value);
                    }
                    out.push(obj);
                }
            }
        }
    }
    Ok(out)
}

/// One hour of a connection: its manifest and the rows of the parts it lists.
fn hour_records(conn: &Connection, hour: UtcHour, checks: &mut Checks) -> Result<(Manifest, Vec<serde_json::Map<String, serde_json::Value>>)> {
    let exporter::model::destination::Destination::Local { path, .. } = &conn.destination else {
        return Err(ExportError::invalid_config("destination", "is not a local folder", "The demo's destinations are local folders."));
    };
    let root = Path::new(path);
    let marker = root.join(conn.events_layout().complete_key(hour));
    let text = std::fs::read(&marker).map_err(|e| ExportError::io(marker.display().to_string(), e))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| ExportError::Corrupt { what: marker.display().to_string(), detail: e.to_string() })?;
    let mut out = Vec::new();
    for file in manifest.events.iter().flat_map(|e| e.files.iter()) {
        let bytes = std::fs::read(root.join(&file.key)).map_err(|e| ExportError::io(file.key.clone(), e))?;
        out.extend(part_records(&file.key, &bytes, conn.format, checks)?);
    }
    Ok((manifest, out))
}

/// Every string anywhere in a JSON value (property values included).
fn strings_in(value: &serde_json::Value, out: &mut HashSet<String>) {
    match value {
        serde_json::Value::String(s) => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings_in(v, out)),
        serde_json::Value::Object(m) => m.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

/// Checks globex-private row by row against globex-main (the same events, unprotected):
/// dropped fields are null or gone, identifiers are the HMAC of the original under the
/// connection's key, addresses and locations are coarsened, everything else is equal, the
/// manifests name the policy's digest, and no dropped or raw pseudonymised value is in any
/// file of its destination.
async fn verify_field_policy(home: &Home, destinations: &Path, hours: &HourRange, checks: &mut Checks) -> Result<()> {
    let private = home.control.get_connection("globex-private").await?;
    let plain = home.control.get_connection("globex-main").await?;
    let Some(policy) = private.export_spec()?.field_policy else {
        checks.check(false, || "globex-private has no field policy".into());
        return Ok(());
    };
    println!("   \"fields\": {}", FIELD_POLICY.split_whitespace().collect::<Vec<_>>().join(" "));
    println!("   policy digest (in every manifest): {}", policy.digest());
    let touched = ["user_id", "device_id", "idfa", "adid", "ip_address", "location_lat", "location_lng", "user_properties", "event_properties"];
    let (mut compared, mut forbidden) = (0u64, HashSet::new());
    for hour in hours.hours() {
        let (manifest, rows) = hour_records(&private, hour, checks)?;
        checks.check(manifest.field_policy.as_deref() == Some(policy.digest()), || format!("globex-private {hour}: the manifest does not name the policy"));
        let (plain_manifest, plain_rows) = hour_records(&plain, hour, checks)?;
        checks.check(plain_manifest.field_policy.is_none(), || format!("globex-main {hour}: a manifest names a policy it does not have"));
        let originals: BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
            plain_rows.into_iter().map(|r| (r["$insert_id"].to_string(), r)).collect();
        checks.check(rows.len() == originals.len(), || format!("globex-private {hour}: {} rows, globex-main has {}", rows.len(), originals.len()));
        for row in rows {
            let Some(original) = originals.get(&row["$insert_id"].to_string()) else {
                checks.check(false, || format!("globex-private {hour}: {} is not in globex-main", row["$insert_id"]));
                continue;
            };
            compared += 1;
            for id in ["user_id", "device_id"] {
                let expected = original[id].as_str().and_then(|s| policy.pseudonym(s)).map(serde_json::Value::from).unwrap_or_default();
                checks.check(row[id] == expected, || format!("globex-private {hour}: {id} {} is not the pseudonym of {}", row[id], original[id]));
                strings_in(&original[id], &mut forbidden);
            }
            checks.check(row["idfa"].is_null() && row["adid"].is_null(), || format!("globex-private {hour}: idfa or adid exported"));
            checks.check(row["user_properties"].get("referrer").is_none(), || format!("globex-private {hour}: user_properties.referrer exported"));
            checks.check(row["event_properties"].get("query").is_none(), || format!("globex-private {hour}: event_properties.query exported"));
            for (container, dropped) in [("user_properties", "referrer"), ("event_properties", "query")] {
                if let Some(v) = original[container].get(dropped) {
                    strings_in(v, &mut forbidden);
                }
                let mut kept = original[container].clone();
                if let Some(m) = kept.as_object_mut() {
                    m.shift_remove(dropped);
                }
                checks.check(row[container] == kept, || format!("globex-private {hour}: {container} changed beyond {dropped}"));
            }
            let truncated = original["ip_address"].as_str().and_then(|ip| ip.rsplit_once('.')).map(|(net, _)| format!("{net}.0"));
            checks.check(row["ip_address"].as_str() == truncated.as_deref(), || {
                format!("globex-private {hour}: ip_address {} not cut to /24", row["ip_address"])
            });
            for loc in ["location_lat", "location_lng"] {
                let (got, was) = (row[loc].as_f64().unwrap_or(f64::NAN), original[loc].as_f64().unwrap_or(f64::NAN));
                checks.check((got * 10.0).fract().abs() < 1e-6 && (got - was).abs() <= 0.05 + 1e-9, || {
                    format!("globex-private {hour}: {loc} {got} is not {was} to 1 decimal")
                });
            }
            for field in EXPORT_FIELDS.iter().filter(|f| !touched.contains(f)) {
                checks.check(row[*field] == original[*field], || format!("globex-private {hour}: {field} differs from the original"));
            }
        }
    }
    // No file of the destination holds a dropped value or a raw identifier, anywhere.
    let mut files = Vec::new();
    walk(&destinations.join("globex-private"), &mut files)?;
    let mut leaked = 0;
    for file in files.iter().filter(|f| f.to_string_lossy().ends_with(".json.gz")) {
        let bytes = std::fs::read(file).map_err(|e| ExportError::io(file.display().to_string(), e))?;
        let mut seen = HashSet::new();
        for row in part_records(&file.display().to_string(), &bytes, PartFormat::Json, checks)? {
            strings_in(&serde_json::Value::Object(row), &mut seen);
        }
        leaked += seen.intersection(&forbidden).count();
    }
    checks.check(compared > 0 && !forbidden.is_empty(), || "the field policy check compared nothing".into());
    checks.check(leaked == 0, || format!("{leaked} dropped or raw pseudonymised values found in globex-private's files"));
    println!(
        "   {compared} rows compared with globex-main's; {} distinct raw identifiers and dropped values, {leaked} of them in the {} files",
        forbidden.len(),
        files.len()
    );
    Ok(())
}

/// Prints the DuckDB statement `exportctl ddl` gives for the Parquet + hive connection and
/// the count it must return: every event its markers account for (the test suite runs the
/// statement in DuckDB and compares).
async fn show_duckdb_table(home: &Home, exported: u64, checks: &mut Checks) -> Result<()> {
    use exporter::readers::ddl::{table_ddl, DdlOptions, Engine};
    let conn = home.control.get_connection("acme-lake").await?;
    let ddl = table_ddl(&conn, Engine::DuckDb, &DdlOptions::default())?;
    for line in ddl.lines() {
        println!("   {line}");
    }
    let Some(view) = ddl.lines().find_map(|l| l.strip_prefix("CREATE OR REPLACE VIEW ")).and_then(|rest| rest.split_whitespace().next()) else {
        checks.check(false, || "the DuckDB statement creates no view".into());
        return Ok(());
    };
    println!("   SELECT count(*) FROM {view};  -- {exported} events, as the hours' markers account for");
    checks.check(exported > 0, || "the Parquet connection exported nothing".into());
    Ok(())
}
