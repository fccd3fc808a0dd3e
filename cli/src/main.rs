//! exportctl: the operators' command line. Embedded mode (the default) works on a home
//! folder with no cloud; `--cloud` opens S3/Azure destinations with the environment's
//! credentials.

mod bench;
mod commands;
mod demo;
mod home;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "exportctl", version, about = "Hourly event export: connections, verify, policy, export, backfill, status, demo, bench")]
struct Cli {
    /// Home folder of embedded mode (lake, control store, schedules, outbox).
    #[arg(long, env = "EXPORT_HOME", default_value = ".exporter-home", global = true)]
    home: PathBuf,
    /// Open S3/Azure destinations with the AWS/Azure credentials of the environment.
    #[arg(long, global = true)]
    cloud: bool,
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
        /// recurring (skip a completed hour) or replace.
        #[arg(long, default_value = "recurring")]
        mode: String,
    },
    /// Re-exports every hour of a range, replacing what is there, with a progress bar.
    Backfill {
        connection: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Fires what is due: the hourly schedules for the hour at --at, and due retries.
    Tick {
        /// The time the schedules fire at (RFC 3339); defaults to now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Status of every connection: watermark, lag, failing state, gaps.
    Status,
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
    /// Connection lifecycle.
    Connections {
        #[command(subcommand)]
        action: ConnectionAction,
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
    Disable {
        id: String,
    },
    Delete {
        id: String,
    },
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("EXPORT_LOG")).with_writer(std::io::stderr).init();
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
    match cli.command {
        Command::Demo { dir } => demo::run(&dir).await,
        Command::Bench { events, level, threads, dir } => bench::run(events, level, threads, dir).await,
        Command::Generate { project, org, from, to, events_per_hour, duplicate_every, invalid_every, merges_per_hour, seed } => {
            let home = home::open(&cli.home, cli.cloud).await?;
            commands::generate(&home, &project, org.as_deref(), &from, to.as_deref(), events_per_hour, duplicate_every, invalid_every, merges_per_hour, seed)
                .await
        }
        Command::Export { connection, hour, mode } => commands::export(&home::open(&cli.home, cli.cloud).await?, &connection, &hour, &mode).await,
        Command::Backfill { connection, from, to } => commands::backfill(&home::open(&cli.home, cli.cloud).await?, &connection, &from, &to).await,
        Command::Tick { at } => commands::tick(&home::open(&cli.home, cli.cloud).await?, at.as_deref()).await,
        Command::Status => commands::status(&home::open(&cli.home, cli.cloud).await?).await,
        Command::Runs { connection } => commands::runs(&home::open(&cli.home, cli.cloud).await?, &connection).await,
        Command::Verify { connection } => commands::verify(&home::open(&cli.home, cli.cloud).await?, &connection).await,
        Command::Policy { connection, role_template, account } => {
            commands::policy(&home::open(&cli.home, cli.cloud).await?, &connection, role_template.as_deref(), account.as_deref()).await
        }
        Command::Connections { action } => {
            let home = home::open(&cli.home, cli.cloud).await?;
            match action {
                ConnectionAction::Create { file } => commands::create(&home, &file).await,
                ConnectionAction::Enable { id } => commands::set_enabled(&home, &id, true).await,
                ConnectionAction::Disable { id } => commands::set_enabled(&home, &id, false).await,
                ConnectionAction::Delete { id } => commands::delete(&home, &id).await,
                ConnectionAction::List => commands::list(&home).await,
            }
        }
    }
}
