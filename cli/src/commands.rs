//! The subcommands other than demo and bench: thin calls into the library.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use exporter::access::policy::{role_arn_from_template, s3_policies, DEFAULT_ROLE_TEMPLATE};
use exporter::control::connection::{Connection, Destination};
use exporter::control::lifecycle;
use exporter::delivery::backfill::{progress, BackfillRequest};
use exporter::export::ddl::{table_ddl, DdlOptions, Engine};
use exporter::export::generate::{generate_hour, generate_merges, HourSpec};
use exporter::export::hour_export::ExportMode;
use exporter::hour::{HourRange, UtcHour};
use exporter::runtime::factory::{probe_destination, project_principal};
use exporter::{ExportError, Result};
use indicatif::{ProgressBar, ProgressStyle};

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

pub async fn backfill(home: &Home, id: &str, from: &str, to: &str, allow_empty_lake: bool) -> Result<ExitCode> {
    let range = HourRange::parse(from, to)?;
    // A fresh id per command: running the same range again is a new backfill, while the
    // function's own redeliveries (same id) resume it without starting pieces twice.
    let backfill_id =
        format!("{id}-{}-{}-{}", range.from.start().format("%Y%m%dT%H"), range.to.start().format("%Y%m%dT%H"), exporter::control::ledger::new_run_id());
    let payload = serde_json::json!({"connection_id": id, "from": range.from.to_string(), "to": range.to.to_string(),
        "backfill_id": backfill_id, "allow_empty_lake": allow_empty_lake});
    let req = BackfillRequest::from_payload(&payload)?;
    let bar = ProgressBar::new(range.len());
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} hours {msg}").expect("template"));
    let control = home.control.store().clone();
    let backfill_id = req.id();
    let update = |bar: &ProgressBar| {
        let control = control.clone();
        let id = backfill_id.clone();
        let bar = bar.clone();
        async move {
            if let Ok(p) = progress(control.as_ref(), &id).await {
                bar.set_position(p.done_hours);
                bar.set_message(format!("{} events, {} invocations", p.events_exported, p.invocations));
            }
        }
    };
    match (&home.embedded, &home.backfill_function) {
        (Some(embedded), _) => embedded.backfill(payload, || {}).await?,
        (None, Some(function)) => {
            // Deployed: the function fans out on its own; follow its progress records.
            function.invoke_async(&payload).await?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6 * 3600);
            loop {
                update(&bar).await;
                let p = progress(control.as_ref(), &backfill_id).await?;
                if p.is_finished() || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
        (None, None) => return Err(ExportError::invalid_config("BACKFILL_FUNCTION", "is not set", "Set it to the backfill function's name (a stack output).")),
    }
    update(&bar).await;
    bar.finish();
    let p = progress(control.as_ref(), &backfill_id).await?;
    println!(
        "backfill {backfill_id}: {}/{} hours exported, {} events, {} invocations ({} asynchronous)",
        p.exported_hours, p.total_hours, p.events_exported, p.invocations, p.async_invocations
    );
    if !p.failed_hours.is_empty() {
        println!("failed hours (each is retried when its error can go away; `exportctl status` lists what is owed):");
        let runs = home.control.list_runs(id).await?;
        for hour in &p.failed_hours {
            let error = runs.iter().rev().find(|r| r.hour == *hour && r.error.is_some()).and_then(|r| r.error.clone()).unwrap_or_default();
            println!("  {hour}: {error}");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
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

/// The status table (also used by the demo): the watermark derived from the hour ledger,
/// the owed hours (oldest first), whose side the last failure was on, and any gap.
pub async fn status_table(home: &Home, now: DateTime<Utc>) -> Result<String> {
    let ledger = exporter::control::ledger::HourLedger::new(home.control.store().clone());
    let mut out =
        format!("{:<16} {:<8} {:<8} {:<15} {:<15} {:>5} {:>5}  {}\n", "CONNECTION", "PROJECT", "ENABLED", "WATERMARK", "LAST EXPORTED", "LAG", "OWED", "STATE");
    for conn in home.control.list_connections().await? {
        let s = home.control.status(&conn.id).await?;
        let owed = ledger.owed(&conn.id).await?;
        let watermark = ledger.watermark(&conn.id).await?;
        let show = |h: Option<UtcHour>| h.map(|h| h.to_string()).unwrap_or_else(|| "-".into());
        let failing = owed.iter().filter(|h| h.state == exporter::control::ledger::OwedState::Failing).count();
        let mut state = match (&s.failing_since, failing) {
            (Some(since), _) => {
                format!("FAILING ({}) since {since}: {}", s.last_error_blame.as_deref().unwrap_or("destination"), s.last_error.clone().unwrap_or_default())
            }
            (None, n) if n > 0 => {
                format!("retrying {n} hour(s) ({}): {}", s.last_error_blame.as_deref().unwrap_or("destination"), s.last_error.clone().unwrap_or_default())
            }
            _ => "ok".into(),
        };
        if let Some(gap) = &s.gap {
            state.push_str(&format!("; gap {} — run: {}", gap.range, gap.backfill_command));
        }
        out.push_str(&format!(
            "{:<16} {:<8} {:<8} {:<15} {:<15} {:>5} {:>5}  {}\n",
            conn.id,
            conn.project_id,
            conn.enabled,
            show(watermark),
            show(s.last_exported_hour),
            s.lag_hours(now).map(|l| format!("{l}h")).unwrap_or_else(|| "-".into()),
            owed.len(),
            state
        ));
        if !owed.is_empty() {
            let listed: Vec<String> = owed
                .iter()
                .take(12)
                .map(|h| {
                    let state = format!("{:?}", h.state).to_lowercase();
                    let detail = match (h.attempts, h.retries_exhausted, h.next_retry) {
                        (0, _, _) => String::new(),
                        (n, true, _) => format!(" ({n} attempts, retries over: every hourly run tries again)"),
                        (n, false, Some(at)) => format!(" ({n} attempts, next retry {})", at.format("%Y-%m-%dT%H:%M")),
                        (n, false, None) => format!(" ({n} attempts)"),
                    };
                    format!("{} {state}{detail}", h.hour)
                })
                .collect();
            let more = if owed.len() > 12 { format!(", ... {} more", owed.len() - 12) } else { String::new() };
            out.push_str(&format!("  owed: {}{more}\n", listed.join(", ")));
        }
    }
    Ok(out)
}

pub async fn status(home: &Home, now: DateTime<Utc>) -> Result<ExitCode> {
    print!("{}", status_table(home, now).await?);
    Ok(ExitCode::SUCCESS)
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
