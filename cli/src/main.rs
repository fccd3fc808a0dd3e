//! exportctl: the operators' command line. Embedded mode (the default) works on a home
//! folder with no cloud; `--cloud` opens S3/Azure destinations with the environment's
//! credentials.

// First: its print macros replace the standard ones in every module below.
#[macro_use]
mod output;

mod backfill;
mod bench;
mod commands;
mod demo;
mod home;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "exportctl", version, about = "Hourly event export: connections, verify, policy, ddl, export, backfill, status, demo, bench")]
struct Cli {
    /// Home folder of embedded mode (lake, control store, schedules, outbox).
    #[arg(long, env = "EXPORT_HOME", default_value = ".exporter-home", global = true)]
    home: PathBuf,
    /// Open S3/Azure destinations with the AWS/Azure credentials of the environment.
    #[arg(long, global = true)]
    cloud: bool,
    /// Embedded mode's clock (RFC 3339, e.g. 2020-01-25T18:20:00Z): the time schedules fire
    /// at, retries fall due, hours count as closed and leases expire. Defaults to now.
    #[arg(long, global = true)]
    at: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the whole flow offline in DIR and checks its own output.
    Demo {
        #[arg(default_value = "export-demo")]
        dir: PathBuf,
    },
    /// Writes a synthetic lake (events shaped like the export schema, ~1 KB each).
    Generate {
        #[arg(long)]
        project: String,
        #[arg(long)]
        org: Option<String>,
        /// First hour, e.g. 2020-01-25T17.
        #[arg(long)]
        from: String,
        /// Last hour (inclusive); defaults to --from.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        events_per_hour: u64,
        #[arg(long, default_value_t = 0)]
        duplicate_every: u64,
        #[arg(long, default_value_t = 0)]
        invalid_every: u64,
        #[arg(long, default_value_t = 20)]
        merges_per_hour: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Exports one hour of a connection now.
    Export {
        connection: String,
        #[arg(long)]
        hour: String,
        /// recurring (skip a completed hour), replace, or late (add late lake files as new parts).
        #[arg(long, default_value = "recurring")]
        mode: String,
        /// Replace even though the lake hour is empty while the destination holds the hour.
        #[arg(long)]
        allow_empty_lake: bool,
    },
    /// Re-exports every hour of a range, replacing what is there, with a progress bar.
    Backfill {
        #[arg(required_unless_present = "cancel")]
        connection: Option<String>,
        #[arg(long, required_unless_present = "cancel")]
        from: Option<String>,
        #[arg(long, required_unless_present = "cancel")]
        to: Option<String>,
        /// Replace hours even where the lake hour is empty while the destination holds them.
        #[arg(long)]
        allow_empty_lake: bool,
        /// Stops the running backfill with this id (printed when it starts): pieces and hours
        /// not started are skipped; what was exported stays.
        #[arg(long, conflicts_with_all = ["connection", "from", "to", "allow_empty_lake"])]
        cancel: Option<String>,
    },
    /// Fires what is due at --at (default now): the hourly schedules and the due retries.
    Tick,
    /// Status of every connection: watermark, owed hours, lag, freshness, failing state, gaps.
    Status {
        /// Print the status as JSON (one documented shape, for scripts) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The watchdog's figures (oldest owed hour's age, owed and overdue hours, connections
    /// late, failing, broken) and each connection's, in the Prometheus text format: for a
    /// scrape or node_exporter's textfile collector.
    Metrics {
        /// The `stack` label of every sample.
        #[arg(long, default_value = "embedded")]
        stack: String,
    },
    /// Run records of a connection.
    Runs { connection: String },
    /// Runs the destination probe suite (the test upload) of a connection id or file.
    Verify { connection: String },
    /// Prints the bucket policy and KMS key policy statement a connection needs.
    Policy {
        connection: String,
        /// Role ARN template, e.g. arn:aws:iam::111122223333:role/event-export-project-{project_id}.
        #[arg(long, env = "EXPORT_PROJECT_ROLE_ARN_TEMPLATE")]
        role_template: Option<String>,
        #[arg(long, env = "EXPORT_AWS_ACCOUNT_ID")]
        account: Option<String>,
    },
    /// Prints the SQL that reads a connection's export as tables (events, merged IDs) in one
    /// engine: athena, duckdb, snowflake or bigquery.
    Ddl {
        connection: String,
        #[arg(long)]
        engine: String,
    },
    /// Connection lifecycle.
    Connections {
        #[command(subcommand)]
        action: ConnectionAction,
    },
    /// The project registry: which organisation owns each project, and portfolios.
    Projects {
        #[command(subcommand)]
        action: ProjectAction,
    },
    /// Benchmark: generate one hour, export it, report events/s, MB/s and peak RSS.
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 6)]
        level: u32,
        /// Compression threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Keep the generated lake here (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Part format: json (gzipped JSON lines) or parquet.
        #[arg(long, default_value = "json", value_parser = parse_format)]
        format: exporter::model::format::PartFormat,
    },
}

fn parse_format(text: &str) -> Result<exporter::model::format::PartFormat, String> {
    serde_json::from_value(serde_json::Value::from(text)).map_err(|_| format!("{text:?} is not a part format: use json or parquet"))
}

#[derive(Subcommand, Debug)]
enum ProjectAction {
    /// Registers a project as belonging to an organisation (connections are refused for
    /// unregistered projects, other organisations' projects and portfolios).
    Add {
        project: String,
        #[arg(long)]
        org: String,
        /// The project is a portfolio (its connections are refused).
        #[arg(long)]
        portfolio: bool,
    },
    List,
    /// Unregisters a project that no connection uses.
    Remove {
        project: String,
    },
}

#[derive(Subcommand, Debug)]
enum ConnectionAction {
    /// Validates, verifies the destination, claims it, stores it, creates its schedule.
    Create {
        file: PathBuf,
    },
    Enable {
        id: String,
    },
    /// Stops a connection's hourly exports (also one whose file cannot be read). A
    /// connection created on its place within 24 hours owes the hours from where it stopped.
    Disable {
        id: String,
    },
    /// Deletes a connection (also one whose file cannot be read); exported files stay.
    Delete {
        id: String,
    },
    /// Every connection, and apart, by id with the reason, those whose file cannot be read.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("EXPORT_LOG")).with_writer(|| output::LogWriter).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_retryable() {
                eprintln!("(this may be temporary or fixable on the destination side; retrying later can succeed)");
            }
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> exporter::Result<ExitCode> {
    let clock = home::clock(cli.at.as_deref())?;
    let open = |cloud: bool| home::open(&cli.home, cloud, clock.clone());
    match cli.command {
        Command::Demo { dir } => demo::run(&dir).await,
        Command::Bench { events, level, threads, dir, format } => bench::run(events, level, threads, dir, format).await,
        Command::Generate { project, org, from, to, events_per_hour, duplicate_every, invalid_every, merges_per_hour, seed } => {
            let home = open(cli.cloud).await?;
            commands::generate(&home, &project, org.as_deref(), &from, to.as_deref(), events_per_hour, duplicate_every, invalid_every, merges_per_hour, seed)
                .await
        }
        Command::Export { connection, hour, mode, allow_empty_lake } => {
            commands::export(&open(cli.cloud).await?, &connection, &hour, &mode, allow_empty_lake).await
        }
        Command::Backfill { cancel: Some(id), .. } => backfill::cancel(&open(cli.cloud).await?, &id, clock()).await,
        Command::Backfill { connection, from, to, allow_empty_lake, cancel: None } => {
            let (Some(connection), Some(from), Some(to)) = (connection, from, to) else {
                return Err(exporter::ExportError::invalid_input("backfill", "give a connection, --from and --to (or --cancel ID)"));
            };
            backfill::backfill(&open(cli.cloud).await?, &connection, &from, &to, allow_empty_lake).await
        }
        Command::Tick => commands::tick(&open(cli.cloud).await?, clock()).await,
        Command::Status { json } => status::status(&open(cli.cloud).await?, clock(), json).await,
        Command::Metrics { stack } => status::metrics(&open(cli.cloud).await?, clock(), &stack).await,
        Command::Runs { connection } => commands::runs(&open(cli.cloud).await?, &connection).await,
        Command::Verify { connection } => commands::verify(&open(cli.cloud).await?, &connection).await,
        Command::Policy { connection, role_template, account } => {
            commands::policy(&open(cli.cloud).await?, &connection, role_template.as_deref(), account.as_deref()).await
        }
        Command::Ddl { connection, engine } => commands::ddl(&open(cli.cloud).await?, &connection, &engine).await,
        Command::Projects { action } => {
            let home = open(cli.cloud).await?;
            match action {
                ProjectAction::Add { project, org, portfolio } => commands::add_project(&home, &project, &org, portfolio).await,
                ProjectAction::List => commands::list_projects(&home).await,
                ProjectAction::Remove { project } => commands::remove_project(&home, &project).await,
            }
        }
        Command::Connections { action } => {
            let home = open(cli.cloud).await?;
            match action {
                ConnectionAction::Create { file } => commands::create(&home, &file, clock()).await,
                ConnectionAction::Enable { id } => commands::set_enabled(&home, &id, true, clock()).await,
                ConnectionAction::Disable { id } => commands::set_enabled(&home, &id, false, clock()).await,
                ConnectionAction::Delete { id } => commands::delete(&home, &id, clock()).await,
                ConnectionAction::List => commands::list(&home).await,
            }
        }
    }
}
