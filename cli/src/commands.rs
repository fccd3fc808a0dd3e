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

pub async fn export(home: &Home, id: &str, hour: &str, mode: &str, allow_empty_lake: bool) -> Result<ExitCode> {
    let hour = UtcHour::parse(hour)?;
    let mode = parse_mode(mode)?;
    let payload =
        serde_json::json!({"connection_id": id, "hour": hour.to_string(), "mode": mode.to_string(), "attempt": 1, "allow_empty_lake": allow_empty_lake});
    let response = exporter::delivery::invocation::handle_hourly(&home.services, &payload, None).await?;
    println!("{}", serde_json::to_string_pretty(&response).expect("response serialises"));
    Ok(if response.hours.iter().all(|h| h.succeeded()) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Fires everything due at `at`: each enabled connection's hourly schedule, then the due
/// retries. A connection that errors is reported and the others still run.
pub async fn tick(home: &Home, at: DateTime<Utc>) -> Result<ExitCode> {
    let embedded = home.embedded("tick")?;
    let mut ok = true;
    let mut report = |what: &str, r: Result<exporter::delivery::invocation::HourlyResponse>| match r {
        Ok(r) => {
            ok &= r.hours.iter().all(|h| h.succeeded() || h.left_alone());
            println!("{}", serde_json::to_string(&r).expect("serialises"));
        }
        Err(e) => {
            ok = false;
            eprintln!("{what}: error: {e}");
        }
    };
    for (id, enabled) in embedded.scheduler.hourly().await? {
        if enabled {
            report(&format!("hourly {id}"), embedded.fire_hourly(&id, at).await);
        }
    }
    for (name, r) in embedded.fire_due_retries(at).await? {
        report(&format!("retry {name}"), r);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn runs(home: &Home, id: &str) -> Result<ExitCode> {
    // The history of a connection whose file cannot be read is still shown.
    if let ConnectionFile::Unreadable(u) = home.control.connection_file(id).await? {
        println!("connection {id}: its file cannot be read ({}); its runs as recorded:", u.error);
    }
    println!(
        "{:<14} {:<10} {:>7} {:<9} {:>8} {:>8} {:>6} {:>6} {:>7} {:>7}  ERROR",
        "HOUR", "MODE", "ATTEMPT", "OUTCOME", "READ", "EXPORTED", "FILT", "DUPS", "INVALID", "FRESH"
    );
    for r in home.control.list_runs(id).await? {
        // The freshness this run measured (it wrote the hour's first marker); `!` past the SLO.
        let fresh = match (r.freshness_seconds, r.slo_met) {
            (Some(s), Some(false)) => format!("{}!", exporter::control::freshness::minutes(s)),
            (Some(s), _) => exporter::control::freshness::minutes(s),
            (None, _) => "-".into(),
        };
        println!(
            "{:<14} {:<10} {:>7} {:<9} {:>8} {:>8} {:>6} {:>6} {:>7} {:>7}  {}",
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
            r.error.unwrap_or_default()
        );
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
async fn load(home: &Home, id_or_file: &str) -> Result<Connection> {
    let path = Path::new(id_or_file);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| ExportError::io(id_or_file, e))?;
        return Connection::from_json(&text);
    }
    home.control.get_connection(id_or_file).await
}

pub async fn verify(home: &Home, id_or_file: &str) -> Result<ExitCode> {
    let conn = load(home, id_or_file).await?;
    let mut ok = true;
    for dest in std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()) {
        let report = probe_destination(dest, &conn.project_id, &home.cloud).await;
        print!("{}", report.table());
        if !report.all_passed() {
            ok = false;
            println!("MISSING: {}\n", report.missing().join(", "));
        } else {
            println!("all checks passed\n");
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn policy(home: &Home, id_or_file: &str, template: Option<&str>, account: Option<&str>) -> Result<ExitCode> {
    let conn = load(home, id_or_file).await?;
    let destinations: Vec<&Destination> = std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()).collect();
    // S3-compatible stores: IAM does not apply; say what their access key needs instead.
    let mut printed = false;
    for dest in &destinations {
        if let Some(grants) = exporter::access::policy::s3_compatible_grants(dest) {
            println!("# {}\n{grants}", dest.describe());
            printed = true;
        }
    }
    let amazon_s3: Vec<&&Destination> =
        destinations.iter().filter(|d| matches!(d, Destination::S3 { .. }) && exporter::access::policy::s3_compatible_grants(d).is_none()).collect();
    if !amazon_s3.is_empty() {
        let role_arn =
            match (project_principal(&conn.project_id, &home.cloud).await?, account) {
                (Some(arn), _) => arn,
                (None, Some(account)) => role_arn_from_template(template.unwrap_or(DEFAULT_ROLE_TEMPLATE), account, &conn.project_id),
                (None, None) => return Err(ExportError::invalid_input(
                    "policy",
                    "the project role's account is unknown; pass --account 111122223333 (and --role-template if you changed the role naming) or use --cloud",
                )),
            };
        for dest in amazon_s3 {
            let p = s3_policies(dest, &role_arn)?;
            println!("# Bucket policy for {}\n{}", dest.describe(), serde_json::to_string_pretty(&p.bucket_policy).expect("json"));
            if let Some(k) = &p.kms_key_policy_statement {
                println!("# KMS key policy statement (add to the key's policy)\n{}", serde_json::to_string_pretty(k).expect("json"));
            }
            printed = true;
        }
    }
    if !printed {
        return Err(ExportError::invalid_input(
            "policy",
            "this connection has no S3 destination; for Azure, assign the service principal the Storage Blob Data Contributor role on the container",
        ));
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

/// Every connection; those whose file cannot be read are listed by id with the reason and
/// whatever their file still says.
pub async fn list(home: &Home) -> Result<ExitCode> {
    let scan = home.control.scan_connections().await?;
    println!("{:<16} {:<8} {:<8} {:<8} DESTINATION", "ID", "ORG", "PROJECT", "ENABLED");
    for c in &scan.readable {
        println!("{:<16} {:<8} {:<8} {:<8} {}", c.id, c.org_id, c.project_id, c.enabled, c.destination.describe());
    }
    for u in &scan.unreadable {
        let o = &u.outline;
        let known = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        println!(
            "{:<16} {:<8} {:<8} {:<8} UNREADABLE: {} — fix the file, or run: exportctl connections delete {}",
            u.id,
            known(&o.org_id),
            known(&o.project_id),
            o.enabled.map_or_else(|| "?".into(), |e| e.to_string()),
            u.error,
            u.id
        );
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

pub async fn list_projects(home: &Home) -> Result<ExitCode> {
    println!("{:<20} {:<20} KIND", "PROJECT", "ORG");
    for p in home.control.list_projects().await? {
        println!("{:<20} {:<20} {}", p.project_id, p.org_id, if p.portfolio { "portfolio" } else { "standard" });
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn remove_project(home: &Home, project: &str) -> Result<ExitCode> {
    let p = home.control.remove_project(project).await?;
    println!("project {} (organisation {}) removed from the registry", p.project_id, p.org_id);
    Ok(ExitCode::SUCCESS)
}
