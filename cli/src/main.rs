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
mod demo_delta;
mod home;
mod network;
mod report;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "exportctl",
    version,
    about = "Hourly event export: connections, verify, policy, ddl, export, backfill, status, demo, bench",
    help_template = HELP_TEMPLATE,
    after_help = "Exit codes: 0 done; 1 a check, an export or a backfill hour failed; 2 refused (bad input or configuration, \
                  nothing found, a home that does not exist) or an error that stopped the command.\n\
                  `exportctl COMMAND --help` describes each command's options, with an example."
)]
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

/// `exportctl --help`: the commands grouped as the README's command table groups them.
const HELP_TEMPLATE: &str = "\
{about-with-newline}
{usage-heading} {usage}

Try it offline:
  demo         Runs the whole flow offline in a new folder and checks its own output
  generate     Writes a synthetic lake into the home (creates the home)
  bench        Exports one generated hour and reports events/s, MB/s and peak memory

Connections and projects:
  projects     The project registry: add, list, remove (add creates the home)
  connections  Connection lifecycle: create (creates the home), enable, disable, delete, list
  verify       Runs the destination probe suite (the test upload) of a connection
  policy       Prints the bucket and KMS key policy statements a connection needs
  ddl          Prints the SQL that reads a connection's export as tables
  network      Prints the stack's fixed egress addresses and how customers allow them

Exporting:
  export       Exports one hour of a connection now
  backfill     Re-exports a range of hours, replacing what is there (or cancels a backfill)
  tick         Embedded mode: fires the due hourly schedules and retries

Watching:
  status       Every connection's watermark, owed hours, freshness and state (ok, or what is wrong)
  runs         The run records of a connection: outcome, accounting, freshness
  metrics      The watchdog's figures in the Prometheus text format
  help         Prints this message or the help of the given command

Options:
{options}

{after-help}
";

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the whole flow offline in DIR and checks its own output.
    Demo {
        /// The folder to run it in: created, or emptied when an earlier demo made it (any other
        /// folder that is not empty is refused).
        #[arg(default_value = "export-demo")]
        dir: PathBuf,
    },
    /// Writes a synthetic lake into the home (events shaped like the export schema, ~1 KB
    /// each).
    ///
    /// Example: exportctl generate --project 187520 --org 42 --from 2020-01-25T00 --to 2020-01-25T05
    Generate {
        /// The project whose lake hours are written, e.g. 187520.
        #[arg(long)]
        project: String,
        /// The project's organisation, e.g. 42: also writes that organisation's merged user
        /// IDs (without it no merges are written, and the command says so).
        #[arg(long)]
        org: Option<String>,
        /// First hour, e.g. 2020-01-25T17.
        #[arg(long)]
        from: String,
        /// Last hour (inclusive); defaults to --from.
        #[arg(long)]
        to: Option<String>,
        /// Events in each lake hour.
        #[arg(long, default_value_t = 10_000)]
        events_per_hour: u64,
        /// Every Nth event is written twice (same device_id and $insert_id), to see
        /// de-duplication at work; 0 writes none.
        #[arg(long, default_value_t = 0)]
        duplicate_every: u64,
        /// Every Nth line is malformed, to see invalid records counted (never exported); 0
        /// writes none.
        #[arg(long, default_value_t = 0)]
        invalid_every: u64,
        /// Merged user IDs written per hour for --org.
        #[arg(long, default_value_t = 20)]
        merges_per_hour: u64,
        /// Seed of the generator: the same seed writes the same lake, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Exports one hour of a connection now.
    ///
    /// Example: exportctl export acme-web --hour 2020-01-25T17 --mode replace
    Export {
        /// The connection's id (as in `exportctl connections list`).
        connection: String,
        /// The hour, UTC, as YYYY-MM-DDTHH (e.g. 2020-01-25T17); refused while it is open or
        /// settling.
        #[arg(long)]
        hour: String,
        /// recurring (skip a completed hour), replace, or late (add late lake files as new parts).
        #[arg(long, default_value = "recurring", value_parser = ["recurring", "replace", "late"])]
        mode: String,
        /// Replace even though the lake hour is empty while the destination holds the hour.
        #[arg(long)]
        allow_empty_lake: bool,
        /// Print one JSON document (its shape is in docs/CLI.md) instead of text, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Re-exports every hour of a range, replacing what is there, with a progress bar.
    ///
    /// Example: exportctl backfill acme-web --from 2020-01-25T00 --to 2020-01-25T23
    Backfill {
        /// The connection's id (as in `exportctl connections list`).
        #[arg(required_unless_present = "cancel")]
        connection: Option<String>,
        /// First hour of the range, UTC, as YYYY-MM-DDTHH (e.g. 2020-01-25T00).
        #[arg(long, required_unless_present = "cancel")]
        from: Option<String>,
        /// Last hour of the range (inclusive), as YYYY-MM-DDTHH (e.g. 2020-01-25T23).
        #[arg(long, required_unless_present = "cancel")]
        to: Option<String>,
        /// Replace hours even where the lake hour is empty while the destination holds them.
        #[arg(long)]
        allow_empty_lake: bool,
        /// Stops the running backfill with this id (printed when it starts): pieces and hours
        /// not started are skipped; what was exported stays.
        #[arg(long, conflicts_with_all = ["connection", "from", "to", "allow_empty_lake"])]
        cancel: Option<String>,
        /// Print the backfill's summary as one JSON document (its shape is in docs/CLI.md), with
        /// no progress bar, instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fires what is due at --at (default now): the hourly schedules and the due retries.
    ///
    /// Example: exportctl tick --at 2020-01-25T18:20:00Z
    Tick {
        /// Print one JSON document (its shape is in docs/CLI.md) instead of text, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Status of every connection: watermark, owed hours, lag, freshness, failing state, gaps.
    Status {
        /// Print the status as one JSON document (its shape is in docs/CLI.md) instead of a table.
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
    /// The run records of a connection: each hour tried, its outcome and accounting.
    ///
    /// Example: exportctl runs acme-web
    Runs {
        /// The connection's id (as in `exportctl connections list`).
        connection: String,
        /// Print one JSON document (its shape is in docs/CLI.md) instead of text, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Runs the destination probe suite (the test upload) of a connection id or file.
    ///
    /// Example: exportctl verify acme-web
    Verify {
        /// A connection's id, or the path of a connection file (JSON) not created yet.
        connection: String,
        /// Print one JSON document (its shape is in docs/CLI.md) instead of text, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Prints the bucket policy and KMS key policy statement a connection needs.
    ///
    /// Example: exportctl policy acme-web --account 111122223333
    Policy {
        /// A connection's id, or the path of a connection file (JSON).
        connection: String,
        /// Role ARN template, e.g. arn:aws:iam::111122223333:role/event-export-project-{project_id}.
        #[arg(long, env = "EXPORT_PROJECT_ROLE_ARN_TEMPLATE")]
        role_template: Option<String>,
        /// The AWS account (12 digits) the exporter's per-project roles live in, e.g.
        /// 111122223333.
        #[arg(long, env = "EXPORT_AWS_ACCOUNT_ID")]
        account: Option<String>,
    },
    /// Prints the SQL that reads a connection's export as tables (events, merged IDs) in one
    /// engine: athena, duckdb, snowflake, bigquery or spark. A Delta connection's tables
    /// are read through their Delta log.
    ///
    /// Example: exportctl ddl acme-web --engine duckdb
    Ddl {
        /// The connection's id (as in `exportctl connections list`).
        connection: String,
        /// The SQL engine: duckdb, athena, snowflake, bigquery or spark (Spark SQL, Databricks).
        #[arg(long, value_parser = ["duckdb", "athena", "snowflake", "bigquery", "spark"])]
        engine: String,
    },
    /// Prints the stack's fixed egress addresses (EXPORT_EGRESS_IPS, the EgressIpAddresses output
    /// of a stack deployed with FixedEgressAddresses) and what a customer runs to allow them:
    /// per destination kind, or for one connection's destinations.
    ///
    /// Example: EXPORT_EGRESS_IPS=52.1.2.3,52.1.2.4 exportctl network acme-web
    Network {
        /// A connection's id or the path of a connection file (JSON); without it, every
        /// destination kind is shown.
        connection: Option<String>,
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
    ///
    /// Example: cargo run --release -p exportctl -- bench --events 1000000 --format parquet
    Bench {
        /// Events in the generated hour.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Compression level of JSON parts: gzip 0-9 (6 is the export's own); Parquet parts
        /// use zstd 3 whatever this says.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
        level: u32,
        /// Compression threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Keep the generated lake here (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Part format: json (gzipped JSON lines), parquet, or both (the default): the same
        /// hour exported in each format by its own process, then Parquet's speed over JSON's.
        #[arg(long, default_value = "both", value_parser = parse_bench_formats)]
        format: bench::Formats,
        /// The lake under --dir is already generated (what `--format both` passes to each
        /// format's process).
        #[arg(long, hide = true, requires = "dir")]
        lake_ready: bool,
    },
}

fn parse_bench_formats(text: &str) -> Result<bench::Formats, String> {
    match text {
        "both" => Ok(bench::Formats::Both),
        _ => parse_format(text).map(bench::Formats::One).map_err(|_| format!("{text:?} is not a part format: use json, parquet or both")),
    }
}

fn parse_format(text: &str) -> Result<exporter::model::format::PartFormat, String> {
    serde_json::from_value(serde_json::Value::from(text)).map_err(|_| format!("{text:?} is not a part format: use json or parquet"))
}

#[derive(Subcommand, Debug)]
enum ProjectAction {
    /// Registers a project as belonging to an organisation (connections are refused for
    /// unregistered projects, other organisations' projects and portfolios).
    ///
    /// Example: exportctl projects add 187520 --org 42
    Add {
        /// The project id, e.g. 187520.
        project: String,
        /// The organisation that owns it, e.g. 42.
        #[arg(long)]
        org: String,
        /// The project is a portfolio (its connections are refused).
        #[arg(long)]
        portfolio: bool,
    },
    /// Every registered project with its organisation and kind.
    List {
        /// Print one JSON document (its shape is in docs/CLI.md) instead of text, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Unregisters a project that no connection uses.
    Remove {
        /// The project id, e.g. 187520.
        project: String,
    },
}

#[derive(Subcommand, Debug)]
enum ConnectionAction {
    /// Validates, verifies the destination, claims it, stores it, creates its schedule.
    ///
    /// Example: exportctl connections create acme-web.json
    Create {
        /// The connection file (JSON; see the README's "Connection files").
        file: PathBuf,
    },
    /// Starts (again) a connection's hourly exports and puts its schedule back; the hours
    /// it missed are owed and exported by the next runs.
    Enable {
        /// The connection's id (as in `exportctl connections list`).
        id: String,
    },
    /// Stops a connection's hourly exports (also one whose file cannot be read). A
    /// connection created on its place within 24 hours owes the hours from where it stopped.
    Disable {
        /// The connection's id (as in `exportctl connections list`).
        id: String,
    },
    /// Deletes a connection (also one whose file cannot be read); exported files stay.
    Delete {
        /// The connection's id (as in `exportctl connections list`).
        id: String,
    },
    /// Every connection, and apart, by id with the reason, those whose file cannot be read.
    List {
        /// Print one JSON document (its shape is in docs/CLI.md) instead of text, for scripts.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("EXPORT_LOG")).with_writer(|| output::LogWriter).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = hint(&e) {
                eprintln!("({hint})");
            }
            ExitCode::from(2)
        }
    }
}

/// The one next step that applies to this kind of error, when its message does not already
/// say it (invalid input and configuration name their fix; permission errors name the
/// permission).
fn hint(e: &exporter::ExportError) -> Option<&'static str> {
    use exporter::ExportError as E;
    match e {
        E::NotFound { .. } => Some("nothing by that name in this home: `exportctl connections list` and `exportctl projects list` show what is there; give --home DIR for another home"),
        E::Transient { .. } | E::OurInfrastructure { .. } | E::RunStopped { .. } | E::HourBusy { .. } => Some("temporary: the same command can succeed later"),
        E::DestinationMissing { .. } => Some("the destination is not there: create it (bucket, container or folder), then `exportctl verify ID` checks it"),
        E::PermissionDenied { .. } | E::BadCredentials { .. } | E::AccessBlocked { .. } => {
            Some("the destination refused: `exportctl verify ID` lists every missing permission")
        }
        _ => None,
    }
}

/// What a command does with the home folder of embedded mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HomeUse {
    /// Needs none (the demo makes its own; the benchmark works in a scratch folder).
    None,
    /// Writes state: creates the home when it is not there, and says so.
    Creates,
    /// Reads or changes an existing home: a missing one is refused, so a mistyped `--home`
    /// never silently starts an empty one.
    Existing,
    /// Works on a connection file without a home too (`verify FILE`, `policy FILE`).
    FileOrExisting,
}

fn home_use(command: &Command) -> HomeUse {
    match command {
        Command::Demo { .. } | Command::Bench { .. } | Command::Network { connection: None } => HomeUse::None,
        Command::Generate { .. }
        | Command::Projects { action: ProjectAction::Add { .. } }
        | Command::Connections { action: ConnectionAction::Create { .. } } => HomeUse::Creates,
        Command::Network { connection: Some(connection) } | Command::Verify { connection, .. } | Command::Policy { connection, .. }
            if std::path::Path::new(connection).is_file() =>
        {
            HomeUse::FileOrExisting
        }
        _ => HomeUse::Existing,
    }
}

async fn run(cli: Cli) -> exporter::Result<ExitCode> {
    let clock = home::clock(cli.at.as_deref())?;
    // A connection file read without a home: a scratch home, gone when the command ends.
    let mut scratch: Option<tempfile::TempDir> = None;
    if !home::is_deployed(cli.cloud) {
        match (home_use(&cli.command), home::exists(&cli.home)) {
            (HomeUse::None, _) | (_, true) => {}
            (HomeUse::Creates, false) => eprintln!("note: no home at {}: creating one there", cli.home.display()),
            (HomeUse::FileOrExisting, false) => {
                scratch = Some(tempfile::tempdir().map_err(|e| exporter::ExportError::io("a scratch home", e))?);
            }
            (HomeUse::Existing, false) => return Err(home::missing(&cli.home)),
        }
    }
    let home_dir = scratch.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_else(|| cli.home.clone());
    let open = |cloud: bool| home::open(&home_dir, cloud, clock.clone());
    match cli.command {
        Command::Demo { dir } => demo::run(&dir).await,
        Command::Bench { events, level, threads, dir, format, lake_ready } => {
            bench::run(bench::Options { events, level, threads, dir, formats: format, lake_ready }).await
        }
        Command::Generate { project, org, from, to, events_per_hour, duplicate_every, invalid_every, merges_per_hour, seed } => {
            let home = open(cli.cloud).await?;
            commands::generate(&home, &project, org.as_deref(), &from, to.as_deref(), events_per_hour, duplicate_every, invalid_every, merges_per_hour, seed)
                .await
        }
        Command::Export { connection, hour, mode, allow_empty_lake, json } => {
            commands::export(&open(cli.cloud).await?, &connection, &hour, &mode, allow_empty_lake, json).await
        }
        Command::Backfill { cancel: Some(id), json, .. } => backfill::cancel(&open(cli.cloud).await?, &id, clock(), json).await,
        Command::Backfill { connection, from, to, allow_empty_lake, cancel: None, json } => {
            let (Some(connection), Some(from), Some(to)) = (connection, from, to) else {
                return Err(exporter::ExportError::invalid_input("backfill", "give a connection, --from and --to (or --cancel ID)"));
            };
            backfill::backfill(&open(cli.cloud).await?, &connection, &from, &to, allow_empty_lake, json).await
        }
        Command::Tick { json } => commands::tick(&open(cli.cloud).await?, clock(), json).await,
        Command::Status { json } => status::status(&open(cli.cloud).await?, clock(), json).await,
        Command::Metrics { stack } => status::metrics(&open(cli.cloud).await?, clock(), &stack).await,
        Command::Runs { connection, json } => commands::runs(&open(cli.cloud).await?, &connection, json).await,
        Command::Verify { connection, json } => commands::verify(&open(cli.cloud).await?, &connection, json).await,
        Command::Policy { connection, role_template, account } => {
            commands::policy(&open(cli.cloud).await?, &connection, role_template.as_deref(), account.as_deref()).await
        }
        Command::Network { connection: None } => network::network(None),
        Command::Network { connection: Some(connection) } => network::network(Some(&commands::load(&open(cli.cloud).await?, &connection).await?)),
        Command::Ddl { connection, engine } => commands::ddl(&open(cli.cloud).await?, &connection, &engine).await,
        Command::Projects { action } => {
            let home = open(cli.cloud).await?;
            match action {
                ProjectAction::Add { project, org, portfolio } => commands::add_project(&home, &project, &org, portfolio).await,
                ProjectAction::List { json } => commands::list_projects(&home, json).await,
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
                ConnectionAction::List { json } => commands::list(&home, json).await,
            }
        }
    }
}
