//! The subcommands other than demo and bench: thin calls into the library.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use exporter::access::policy::{role_arn_from_template, s3_policies, DEFAULT_ROLE_TEMPLATE};
use exporter::control::connection::{Connection, Destination};
use exporter::control::lifecycle;
use exporter::export::ddl::{table_ddl, DdlOptions, Engine};
use exporter::export::generate::{generate_hour, generate_merges, HourSpec};
use exporter::export::hour_export::ExportMode;
use exporter::hour::{HourRange, UtcHour};
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
    home.control.get_connection(id).await?;
    println!(
        "{:<14} {:<10} {:>7} {:<9} {:>8} {:>8} {:>6} {:>6} {:>7}  ERROR",
        "HOUR", "MODE", "ATTEMPT", "OUTCOME", "READ", "EXPORTED", "FILT", "DUPS", "INVALID"
    );
    for r in home.control.list_runs(id).await? {
        println!(
            "{:<14} {:<10} {:>7} {:<9} {:>8} {:>8} {:>6} {:>6} {:>7}  {}",
            r.hour.to_string(),
            r.mode.to_string(),
            r.attempt,
            format!("{:?}", r.outcome).to_lowercase(),
            r.events.read,
            r.events.exported,
            r.events.filtered,
            r.events.duplicates,
            r.events.invalid,
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
    let prober = exporter::runtime::function_env::FactoryProber::new(home.cloud.clone());
    let (conn, reports) = lifecycle::create_connection(&home.control, home.schedules.as_ref(), &prober, conn, now).await?;
    for r in &reports {
        print!("{}", r.table());
    }
    println!("connection {} created for project {} → {}", conn.id, conn.project_id, conn.destination.describe());
    Ok(ExitCode::SUCCESS)
}

pub async fn set_enabled(home: &Home, id: &str, enabled: bool) -> Result<ExitCode> {
    let conn = lifecycle::set_enabled(&home.control, home.schedules.as_ref(), id, enabled).await?;
    println!("connection {} {}", conn.id, if enabled { "enabled" } else { "disabled" });
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(home: &Home, id: &str) -> Result<ExitCode> {
    let conn = lifecycle::delete_connection(&home.control, home.schedules.as_ref(), id).await?;
    println!("connection {} deleted (exported files are kept)", conn.id);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(home: &Home) -> Result<ExitCode> {
    println!("{:<16} {:<8} {:<8} {:<8} DESTINATION", "ID", "ORG", "PROJECT", "ENABLED");
    for c in home.control.list_connections().await? {
        println!("{:<16} {:<8} {:<8} {:<8} {}", c.id, c.org_id, c.project_id, c.enabled, c.destination.describe());
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
