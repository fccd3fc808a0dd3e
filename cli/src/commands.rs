//! The subcommands other than demo and bench: thin calls into the library.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use exporter::access::policy::{role_arn_from_template, s3_policies, DEFAULT_ROLE_TEMPLATE};
use exporter::control::connection::Connection;
use exporter::control::lifecycle;
use exporter::control::store::ConnectionFile;
use exporter::export::generate::{generate_hour, generate_merges, HourSpec};
use exporter::hour::{HourRange, UtcHour};
use exporter::model::destination::Destination;
use exporter::model::hour_request::ExportMode;
use exporter::readers::ddl::{table_ddl, DdlOptions, Engine};
use exporter::runtime::factory::{probe_destination, project_principal};
use exporter::{ExportError, Result};

use crate::home::Home;
use crate::report;

#[allow(clippy::too_many_arguments)]
pub async fn generate(
    home: &Home,
    project: &str,
    org: Option<&str>,
    from: &str,
    to: Option<&str>,
    events_per_hour: u64,
    duplicate_every: u64,
    invalid_every: u64,
    merges_per_hour: u64,
    seed: u64,
) -> Result<ExitCode> {
    let range = HourRange::parse(from, to.unwrap_or(from))?;
    if org.is_none() {
        eprintln!("note: no --org given: no merged user IDs are written (give the project's organisation to write them)");
    }
    let lake = home.lake.clone();
    let mut total = exporter::export::generate::Generated::default();
    for hour in range.hours() {
        let spec = HourSpec {
            project_id: project.to_string(),
            hour,
            events: events_per_hour,
            events_per_file: 10_000,
            duplicate_every,
            invalid_every,
            seed,
            gzip: true,
        };
        let g = generate_hour(lake.as_ref(), &spec).await?;
        total.lines += g.lines;
        total.files += g.files;
        total.bytes += g.bytes;
        if let Some(org) = org {
            generate_merges(lake.as_ref(), org, hour, merges_per_hour, seed).await?;
        }
    }
    println!("wrote {} lines in {} files ({:.1} MB gzipped) to {}", total.lines, total.files, total.bytes as f64 / 1e6, lake.describe());
    Ok(ExitCode::SUCCESS)
}

fn parse_mode(mode: &str) -> Result<ExportMode> {
    match mode {
        "recurring" => Ok(ExportMode::Recurring),
        "replace" => Ok(ExportMode::Replace),
        "late" => Ok(ExportMode::Late),
        other => Err(ExportError::invalid_input(format!("mode {other:?}"), "use recurring, replace or late")),
    }
}

pub async fn export(home: &Home, id: &str, hour: &str, mode: &str, allow_empty_lake: bool, json: bool) -> Result<ExitCode> {
    let hour = UtcHour::parse(hour)?;
    let mode = parse_mode(mode)?;
    let payload =
        serde_json::json!({"connection_id": id, "hour": hour.to_string(), "mode": mode.to_string(), "attempt": 1, "allow_empty_lake": allow_empty_lake});
    let response = exporter::delivery::invocation::handle_hourly(&home.services, &payload, None).await?;
    if json {
        crate::output::json(&response);
    } else {
        say(&report::hourly(&response));
    }
    Ok(if response.hours.iter().all(|h| h.succeeded()) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Prints what happened: exported and skipped hours on stdout, failures on stderr.
/// Each on one line, whole (a terminal wraps it; grep finds it).
fn say(lines: &[report::Said]) {
    for line in lines {
        if line.error {
            eprintln!("error: {}", line.text);
        } else {
            println!("{}", line.text);
        }
    }
}

/// What `tick --json` prints: each schedule fired, with the response or the error.
#[derive(Debug, serde::Serialize)]
pub struct TickReport {
    pub at: DateTime<Utc>,
    pub fired: Vec<Fired>,
}

#[derive(Debug, serde::Serialize)]
pub struct Fired {
    /// `hourly` (a connection's schedule) or `retry` (a due retry schedule).
    pub schedule_kind: &'static str,
    /// The connection id (hourly) or the retry schedule's name.
    pub schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<exporter::delivery::invocation::HourlyResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Fires everything due at `at`: each enabled connection's hourly schedule, then the due
/// retries. A connection that errors is reported and the others still run.
pub async fn tick(home: &Home, at: DateTime<Utc>, json: bool) -> Result<ExitCode> {
    let embedded = home.embedded("tick")?;
    let mut ok = true;
    let mut fired = Vec::new();
    let mut record = |schedule_kind: &'static str, schedule: String, r: Result<exporter::delivery::invocation::HourlyResponse>| {
        let (response, error) = match r {
            Ok(r) => {
                ok &= r.hours.iter().all(|h| h.succeeded() || h.left_alone());
                if !json {
                    say(&report::hourly(&r));
                }
                (Some(r), None)
            }
            Err(e) => {
                ok = false;
                if !json {
                    eprintln!("error: {schedule_kind} {schedule}: {e}");
                }
                (None, Some(e.to_string()))
            }
        };
        fired.push(Fired { schedule_kind, schedule, response, error });
    };
    for (id, enabled) in embedded.scheduler.hourly().await? {
        if enabled {
            record("hourly", id.clone(), embedded.fire_hourly(&id, at).await);
        }
    }
    for (name, r) in embedded.fire_due_retries(at).await? {
        record("retry", name, r);
    }
    if json {
        crate::output::json(&TickReport { at, fired });
    } else if fired.is_empty() {
        println!("nothing due at {} (no enabled connection, no retry due)", report::rfc(at));
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What `runs --json` prints.
#[derive(Debug, serde::Serialize)]
pub struct RunsReport {
    pub connection_id: String,
    /// Set when the connection's file cannot be read (its runs are still listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// Every run record, oldest start first.
    pub runs: Vec<exporter::control::store::RunRecord>,
}

/// A connection's run records in the order they started, with when: each hour tried, its
/// outcome and accounting, the freshness it measured, and beneath it why it was skipped,
/// its error and the first invalid records (one line each, whole, so they can be searched).
pub async fn runs(home: &Home, id: &str, json: bool) -> Result<ExitCode> {
    // The history of a connection whose file cannot be read is still shown.
    let unreadable = match home.control.connection_file(id).await? {
        ConnectionFile::Unreadable(u) => Some(u.error.to_string()),
        ConnectionFile::Readable(_) => None,
    };
    let mut runs = home.control.list_runs(id).await?;
    runs.sort_by_key(|r| (r.started, r.hour, r.attempt));
    if json {
        let report = RunsReport { connection_id: id.to_string(), unreadable, runs };
        crate::output::json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(error) = &unreadable {
        print!("{}", report::wrap(&format!("connection {id}: its file cannot be read ({error}); its runs as recorded:"), "", "  "));
    }
    if runs.is_empty() {
        println!("connection {id} has no runs yet (its hourly schedule runs it once an hour has settled; `exportctl tick` in embedded mode)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<13} {:<9} {:>3} {:<9} {:>7} {:>8} {:>5} {:>5} {:>7} {:>6}  STARTED",
        "HOUR", "MODE", "TRY", "OUTCOME", "READ", "EXPORTED", "FILT", "DUPS", "INVALID", "FRESH"
    );
    for r in runs {
        // The freshness this run measured (it wrote the hour's first marker); `!` past the SLO.
        let fresh = match (r.freshness_seconds, r.slo_met) {
            (Some(s), Some(false)) => format!("{}!", exporter::control::freshness::minutes(s)),
            (Some(s), _) => exporter::control::freshness::minutes(s),
            (None, _) => "-".into(),
        };
        println!(
            "{:<13} {:<9} {:>3} {:<9} {:>7} {:>8} {:>5} {:>5} {:>7} {:>6}  {}",
            r.hour.to_string(),
            r.mode.to_string(),
            r.attempt,
            format!("{:?}", r.outcome).to_lowercase(),
            r.events.read,
            r.events.exported,
            r.events.filtered,
            r.events.duplicates,
            r.events.invalid,
            fresh,
            r.started.format("%Y-%m-%dT%H:%MZ"),
        );
        if r.outcome == exporter::control::store::RunOutcome::Skipped {
            println!("    skipped: the hour was already complete (its _complete marker is there)");
        }
        if let Some(error) = &r.error {
            let kind = r.error_kind.as_deref().unwrap_or("Error");
            println!("    error {kind}: {error}");
        }
        for at in &r.invalid_locations {
            println!("    invalid record {}:{}  {}", at.file, at.line, at.reason);
        }
        let unlisted = r.invalid_records.saturating_sub(r.invalid_locations.len() as u64);
        if unlisted > 0 {
            println!("    ... and {unlisted} more invalid records (the hour's complete marker lists up to 100)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A connection named by id (in the control store) or by a JSON file.
pub(crate) async fn load(home: &Home, id_or_file: &str) -> Result<Connection> {
    let path = Path::new(id_or_file);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| ExportError::io(id_or_file, e))?;
        return Connection::from_json(&text);
    }
    home.control.get_connection(id_or_file).await
}

/// What `verify --json` prints: one probe report per destination (events, then merged IDs).
#[derive(Debug, serde::Serialize)]
pub struct VerifyReport {
    pub connection_id: String,
    pub all_passed: bool,
    pub destinations: Vec<exporter::model::probe_report::ProbeReport>,
}

pub async fn verify(home: &Home, id_or_file: &str, json: bool) -> Result<ExitCode> {
    let conn = load(home, id_or_file).await?;
    let mut reports = Vec::new();
    for dest in std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()) {
        reports.push(probe_destination(dest, &conn.project_id, &home.cloud).await);
    }
    let ok = reports.iter().all(|r| r.all_passed());
    if json {
        let report = VerifyReport { connection_id: conn.id.clone(), all_passed: ok, destinations: reports };
        crate::output::json(&report);
    } else {
        for report in &reports {
            print!("{}", report.table());
            if report.all_passed() {
                println!("all checks passed\n");
            } else {
                println!("MISSING: {}\n", report.missing().join(", "));
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The role the bucket policy grants: the deployed stack's own answer, else the template
/// filled in. A template that already names its account needs no `--account`, and one
/// given that disagrees with it is refused rather than ignored.
fn project_role(template: Option<&str>, account: Option<&str>, project_id: &str) -> Result<String> {
    if let Some(account) = account {
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ExportError::invalid_input(format!("--account {account:?}"), "an AWS account id is 12 digits, e.g. 111122223333"));
        }
    }
    let template = template.unwrap_or(DEFAULT_ROLE_TEMPLATE);
    if !template.starts_with("arn:aws") || !template.contains(":role/") || !template.contains("{project_id}") {
        return Err(ExportError::invalid_input(
            format!("--role-template {template:?}"),
            "give a role ARN with {project_id} (and {account} or the account), e.g. arn:aws:iam::111122223333:role/event-export-project-{project_id}",
        ));
    }
    if template.contains("{account}") {
        let Some(account) = account else {
            return Err(ExportError::invalid_input(
                "policy",
                "the project role's account is unknown: pass --account 111122223333, a --role-template that names the account, or use --cloud on the deployed stack",
            ));
        };
        return Ok(role_arn_from_template(template, account, project_id));
    }
    let role = role_arn_from_template(template, "", project_id);
    let named = role.split(':').nth(4).unwrap_or_default();
    match account {
        Some(account) if account != named => Err(ExportError::invalid_input(
            format!("--account {account}"),
            format!("the role template names account {named:?}: give one of the two, or make them agree"),
        )),
        _ => Ok(role),
    }
}

pub async fn policy(home: &Home, id_or_file: &str, template: Option<&str>, account: Option<&str>) -> Result<ExitCode> {
    let conn = load(home, id_or_file).await?;
    let destinations: Vec<&Destination> = std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()).collect();
    let mut role_arn: Option<String> = None;
    for dest in destinations {
        // S3-compatible stores: IAM does not apply; say what their access key needs instead.
        if let Some(grants) = exporter::access::policy::s3_compatible_grants(dest) {
            println!("# {}\n{grants}", dest.describe());
            continue;
        }
        match dest {
            Destination::S3 { .. } => {
                let role = match &role_arn {
                    Some(r) => r.clone(),
                    None => {
                        let r = match project_principal(&conn.project_id, &home.cloud).await? {
                            Some(arn) => arn,
                            None => project_role(template, account, &conn.project_id)?,
                        };
                        role_arn = Some(r.clone());
                        r
                    }
                };
                let p = s3_policies(dest, &role)?;
                println!("# Bucket policy for {}\n{}", dest.describe(), serde_json::to_string_pretty(&p.bucket_policy).expect("json"));
                if let Some(k) = &p.kms_key_policy_statement {
                    println!("# KMS key policy statement (add to the key's policy)\n{}", serde_json::to_string_pretty(k).expect("json"));
                }
            }
            Destination::Azure { container, client_id, sas_token, .. } => {
                if let (None, Some(_)) = (client_id, sas_token) {
                    println!("# {}\nNo bucket policy: the SAS token needs the r, w, d and l permissions on the container {container}.\n", dest.describe());
                } else {
                    println!(
                        "# {}\nNo bucket policy: give the service principal the role \"Storage Blob Data Contributor\" on the container {container}:\n\
                         az role assignment create --role \"Storage Blob Data Contributor\" --assignee {} \\\n  \
                         --scope \"<storage account resource id>/blobServices/default/containers/{container}\"\n",
                        dest.describe(),
                        client_id.as_deref().unwrap_or("<client id>")
                    );
                }
            }
            Destination::Local { .. } => {
                println!("# {}", dest.describe());
                print!(
                    "{}",
                    report::wrap(
                        "No policy: a local folder is written with the permissions of the user running exportctl; the folder must exist \
                         and be writable by that user (`exportctl verify` checks it).",
                        "",
                        ""
                    )
                );
                println!();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the statements that read a connection's export as tables in `engine`.
pub async fn ddl(home: &Home, id_or_file: &str, engine: &str) -> Result<ExitCode> {
    let engine = Engine::parse(engine)?;
    let conn = load(home, id_or_file).await?;
    // Athena's partition projection starts on the first day any run exported, so hours
    // backfilled before the connection was created are in range.
    let first_hour = home.control.list_runs(&conn.id).await?.iter().map(|r| r.hour).min();
    print!("{}", table_ddl(&conn, engine, &DdlOptions { first_hour })?);
    Ok(ExitCode::SUCCESS)
}

pub async fn create(home: &Home, file: &Path, now: DateTime<Utc>) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file).map_err(|e| ExportError::io(file.display().to_string(), e))?;
    let conn = Connection::from_json(&text)?;
    // Before the test upload: nothing is written for a connection that would be refused.
    conn.validate_new()?;
    home.control.check_claimable(&conn).await?;
    let prober = exporter::runtime::function_env::FactoryProber::new(home.cloud.clone());
    let (conn, reports) = lifecycle::create_connection(&home.control, home.schedules.as_ref(), &prober, conn, now).await?;
    for r in &reports {
        print!("{}", r.table());
    }
    println!("connection {} created for project {} → {}", conn.id, conn.project_id, conn.destination.describe());
    if let Some(from) = conn.owes_from {
        println!("it owes the hours from {from}, where the connection that stopped on this place less than 24 hours ago left off");
    }
    Ok(ExitCode::SUCCESS)
}

/// Enables or disables a connection. Disabling records where it stopped first (a
/// connection created on its place within 24 hours owes the hours from there). A
/// connection whose file cannot be read can be disabled (its schedule and the file's
/// `enabled`), not enabled.
pub async fn set_enabled(home: &Home, id: &str, enabled: bool, now: DateTime<Utc>) -> Result<ExitCode> {
    match home.control.connection_file(id).await? {
        ConnectionFile::Readable(conn) => {
            if !enabled && conn.enabled {
                home.control.record_stop(&conn, now).await?;
            }
            let conn = lifecycle::set_enabled(&home.control, home.schedules.as_ref(), id, enabled).await?;
            if enabled {
                home.control.clear_stop(&conn).await?;
            }
            println!("connection {} {}", conn.id, if enabled { "enabled" } else { "disabled" });
        }
        ConnectionFile::Unreadable(u) if enabled => {
            return Err(ExportError::invalid_config(
                format!("connection {id}"),
                format!("cannot be enabled: its file cannot be read ({})", u.error),
                format!("Fix the file, or delete the connection (`exportctl connections delete {id}`) and create it again."),
            ));
        }
        ConnectionFile::Unreadable(u) => {
            let file_updated = home.control.disable_unreadable_connection(id).await?;
            home.schedules.put_hourly(id, false).await?;
            println!(
                "connection {id} disabled: its hourly schedule is off{} (its file cannot be read: {})",
                if file_updated { " and its file says enabled: false" } else { "; the file is not JSON, so it was left as it is" },
                u.error
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes a connection, readable or not. Where it stopped is recorded first, for a
/// successor on its place within 24 hours.
pub async fn delete(home: &Home, id: &str, now: DateTime<Utc>) -> Result<ExitCode> {
    match home.control.connection_file(id).await? {
        ConnectionFile::Readable(conn) => {
            home.control.record_stop(&conn, now).await?;
            let conn = lifecycle::delete_connection(&home.control, home.schedules.as_ref(), id).await?;
            println!("connection {} deleted (exported files are kept)", conn.id);
        }
        ConnectionFile::Unreadable(u) => {
            let deleted = home.control.delete_unreadable_connection(id, now).await?;
            home.schedules.delete_hourly(id).await?;
            println!("connection {id} deleted (its file could not be read: {}; exported files are kept)", u.error);
            if !deleted.destinations_known {
                println!("  its file does not say its destinations: only the claims that name it were considered");
            }
            for key in &deleted.kept {
                println!("  claim {key} kept: another connection, or one whose file cannot be read, may still use it");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One connection as `connections list --json` prints it (no secret, no field policy key).
#[derive(Debug, serde::Serialize)]
pub struct ListedConnection {
    pub connection_id: String,
    pub org_id: Option<String>,
    pub project_id: Option<String>,
    pub enabled: Option<bool>,
    /// Where the events go, e.g. `s3://bucket/prefix`, `azure://account/container/prefix`.
    pub destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_ids_destination: Option<String>,
    /// Set when its file cannot be read: why, and the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// Every connection; those whose file cannot be read are listed by id with the reason and
/// whatever their file still says.
pub async fn list(home: &Home, json: bool) -> Result<ExitCode> {
    let scan = home.control.scan_connections().await?;
    let mut listed: Vec<ListedConnection> = scan
        .readable
        .iter()
        .map(|c| ListedConnection {
            connection_id: c.id.clone(),
            org_id: Some(c.org_id.clone()),
            project_id: Some(c.project_id.clone()),
            enabled: Some(c.enabled),
            destination: Some(c.destination.describe()),
            merged_ids_destination: c.merged_ids_destination.as_ref().map(|d| d.describe()),
            unreadable: None,
        })
        .collect();
    for u in &scan.unreadable {
        let o = &u.outline;
        let destinations = o.destinations.as_deref().unwrap_or_default();
        listed.push(ListedConnection {
            connection_id: u.id.clone(),
            org_id: o.org_id.clone(),
            project_id: o.project_id.clone(),
            enabled: o.enabled,
            destination: destinations.first().map(|d| d.describe()),
            merged_ids_destination: destinations.get(1).map(|d| d.describe()),
            unreadable: Some(format!("{} — fix the file, or run: exportctl connections delete {}", u.error, u.id)),
        });
    }
    if json {
        crate::output::json(&serde_json::json!({ "connections": listed }));
        return Ok(ExitCode::SUCCESS);
    }
    if listed.is_empty() {
        println!("no connections yet: `exportctl connections create FILE` creates one (the README's \"Connection files\" shows a file)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<16} {:<8} {:<8} {:<7} DESTINATION", "ID", "ORG", "PROJECT", "ENABLED");
    let known = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    for c in &listed {
        let enabled = c.enabled.map_or_else(|| "?".into(), |e| e.to_string());
        println!("{:<16} {:<8} {:<8} {:<7} {}", c.connection_id, known(&c.org_id), known(&c.project_id), enabled, known(&c.destination));
        if let Some(merged) = &c.merged_ids_destination {
            println!("{:<43} merged IDs: {merged}", "");
        }
        if let Some(why) = &c.unreadable {
            println!("    UNREADABLE: {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Registers a project; on a deployed stack also makes its IAM role (trusting the function
/// roles), so the operator has nothing left to create by hand.
pub async fn add_project(home: &Home, project: &str, org: &str, portfolio: bool) -> Result<ExitCode> {
    let p = home.control.add_project(&exporter::control::projects::Project::new(project, org, portfolio)?).await?;
    println!("project {} registered for organisation {}{}", p.project_id, p.org_id, if p.portfolio { " (portfolio: its connections are refused)" } else { "" });
    if home.embedded.is_none() && !p.portfolio {
        let aws = home.cloud.aws.as_ref().ok_or_else(|| ExportError::Internal("a deployed stack without AWS clients".into()))?;
        let Some(role_arn) = aws.project_role_arn(&p.project_id).await? else {
            // Without a template exports run with the functions' own credentials.
            println!("no project role: EXPORT_PROJECT_ROLE_ARN_TEMPLATE is not set, so exports run with the functions' own role");
            return Ok(ExitCode::SUCCESS);
        };
        let roles = exporter::adapters::aws::iam::ProjectRoles::new(
            aws_sdk_iam::Client::new(aws.sdk_config()),
            exporter::adapters::aws::iam::ProjectRoles::trusted_from_env(),
        )?;
        let created = roles.ensure(&role_arn, &p.project_id, &p.org_id).await?;
        println!("role {role_arn} {} (trusted by the export functions)", if created { "created" } else { "brought up to date" });
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list_projects(home: &Home, json: bool) -> Result<ExitCode> {
    let projects = home.control.list_projects().await?;
    if json {
        crate::output::json(&serde_json::json!({ "projects": projects }));
        return Ok(ExitCode::SUCCESS);
    }
    if projects.is_empty() {
        println!("no projects registered: `exportctl projects add PROJECT --org ORG` registers one");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<20} KIND", "PROJECT", "ORG");
    for p in projects {
        println!("{:<20} {:<20} {}", p.project_id, p.org_id, if p.portfolio { "portfolio" } else { "standard" });
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn remove_project(home: &Home, project: &str) -> Result<ExitCode> {
    let p = home.control.remove_project(project).await?;
    println!("project {} (organisation {}) removed from the registry", p.project_id, p.org_id);
    Ok(ExitCode::SUCCESS)
}
