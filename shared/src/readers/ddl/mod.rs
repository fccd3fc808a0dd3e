//! Table DDL: the statements that read one connection's export as tables in DuckDB, Athena,
//! Snowflake, BigQuery or Spark, one table for events and one for merged IDs (when the
//! connection exports them). Column types come from [`export_columns`], the one table the
//! Parquet parts are written with, so a table never disagrees with its files. Pure: a
//! connection in, SQL text out. One file per engine.
//!
//! Every statement reads the parts only, never the `_complete` markers: by file name (DuckDB
//! globs, Snowflake patterns, BigQuery URIs, Spark's `pathGlobFilter`), by the hidden `_`
//! prefix in hive folders, or by `"$path"` in a view (Athena over flat folders, where markers
//! sit beside the parts). A Delta connection's tables are read through their Delta log
//! instead, which lists exactly the committed parts.

mod athena;
mod bigquery;
mod duckdb;
#[cfg(test)]
mod parse_tests;
mod snowflake;
mod spark;
#[cfg(test)]
mod tests;

use std::fmt::Write;

use crate::control::connection::Connection;
use crate::error::{ExportError, Result};
use crate::export::columns::{export_columns, Column, ColumnType};
use crate::export::layout::ExportLayout;
use crate::export::merged_ids::MERGE_FIELDS;
use crate::export::timestamp::TimestampFormat;
use crate::hour::UtcHour;
use crate::model::destination::Destination;
use crate::model::format::{PartFormat, TableFormat};
use crate::model::layout_kind::LayoutKind;

/// A query engine `exportctl ddl` writes statements for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Athena,
    DuckDb,
    Snowflake,
    BigQuery,
    /// Spark SQL (Databricks, EMR, spark-sql).
    Spark,
}

impl Engine {
    pub const ALL: [Engine; 5] = [Engine::Athena, Engine::DuckDb, Engine::Snowflake, Engine::BigQuery, Engine::Spark];

    /// The name on the command line (`--engine duckdb`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Athena => "athena",
            Engine::DuckDb => "duckdb",
            Engine::Snowflake => "snowflake",
            Engine::BigQuery => "bigquery",
            Engine::Spark => "spark",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Engine::Athena => "Athena",
            Engine::DuckDb => "DuckDB",
            Engine::Snowflake => "Snowflake",
            Engine::BigQuery => "BigQuery",
            Engine::Spark => "Spark",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        let wanted = name.trim().to_ascii_lowercase();
        Engine::ALL.into_iter().find(|e| e.name() == wanted).ok_or_else(|| {
            ExportError::invalid_input(format!("--engine {name:?}"), "is not an engine exportctl ddl knows; use athena, duckdb, snowflake, bigquery or spark")
        })
    }
}

/// What the statements need beyond the connection itself.
#[derive(Debug, Clone, Default)]
pub struct DdlOptions {
    /// The earliest hour the connection has exported (its run records know it): Athena's
    /// partition projection starts on that day, so backfilled hours before the connection
    /// was created are in range. Without it, the day the connection was created.
    pub first_hour: Option<UtcHour>,
}

/// The statements that read `conn`'s export as tables in `engine`, with a comment header
/// naming every placeholder (`<...>`) the user fills in.
pub fn table_ddl(conn: &Connection, engine: Engine, options: &DdlOptions) -> Result<String> {
    for (field, dest) in std::iter::once(("destination", &conn.destination)).chain(conn.merged_ids_destination.iter().map(|d| ("merged_ids_destination", d))) {
        refuse_unquotable(field, dest)?;
    }
    let tables = tables(conn);
    // Parquet parts carry typed timestamps; the text form matters to JSON parts only.
    let timestamps = match conn.format {
        PartFormat::Json => format!(", timestamps like {}", timestamp_example(conn.timestamp_format)),
        PartFormat::Parquet => String::new(),
    };
    let delta = match conn.table {
        TableFormat::Delta => ", Delta Lake tables",
        TableFormat::Files => "",
    };
    let mut out = format!(
        "-- exportctl ddl {} --engine {}: {} of project {} ({} parts, {} layout{timestamps}{delta})\n",
        conn.id,
        engine.name(),
        tables.iter().map(|t| t.data.what()).collect::<Vec<_>>().join(" and "),
        conn.project_id,
        conn.format,
        layout_name(conn.layout),
    );
    if engine != Engine::DuckDb || conn.table == TableFormat::Delta {
        // Only DuckDB's statements over files are run by our tests (over the demo's export):
        // delta_scan needs the delta extension, which DuckDB downloads.
        let _ = writeln!(out, "-- Written to {}'s documented syntax; check it on a test table before relying on it.", engine.title());
    }
    for table in &tables {
        out.push('\n');
        let statements = match engine {
            Engine::DuckDb => duckdb::duckdb(table)?,
            Engine::Athena => athena::athena(table, &first_day(conn, options))?,
            Engine::Snowflake => snowflake::snowflake(table)?,
            Engine::BigQuery => bigquery::bigquery(table)?,
            Engine::Spark => spark::spark(table)?,
        };
        out.push_str(&statements);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    Events,
    MergedIds,
}

impl Data {
    fn what(self) -> &'static str {
        match self {
            Data::Events => "events",
            Data::MergedIds => "merged IDs",
        }
    }
}

/// One table to define: where its files are and what columns they hold.
struct Table<'a> {
    data: Data,
    /// `acme_web_events`: the connection id made a plain identifier, and the data kind.
    name: String,
    destination: &'a Destination,
    layout: ExportLayout,
    format: PartFormat,
    /// Files only, or a Delta Lake table whose log lists the parts.
    table: TableFormat,
    columns: Vec<Column>,
    timestamps: TimestampFormat,
    /// The file-name pattern of its data files, `*` for the varying parts: `187520_*#*.json.gz`.
    file_glob: String,
    /// The same as a regular expression, for engines that match names by regex.
    file_regex: String,
}

fn tables(conn: &Connection) -> Vec<Table<'_>> {
    let base: String = conn.id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    let mut out = Vec::new();
    if conn.export.events {
        let ext = conn.format.extension();
        out.push(Table {
            data: Data::Events,
            name: format!("{base}_events"),
            destination: &conn.destination,
            layout: conn.events_layout(),
            format: conn.format,
            table: conn.table,
            columns: export_columns().collect(),
            timestamps: conn.timestamp_format,
            file_glob: format!("{}_*#*{ext}", conn.project_id),
            file_regex: format!("{}_[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}_[0-9]+#[0-9]+{}", conn.project_id, regex_literal(ext)),
        });
    }
    if conn.export.merged_ids {
        // Merged IDs are gzipped JSON lines whatever the events' format, except under a Delta
        // connection, whose merged-IDs folder is a second Delta table (of Parquet parts).
        let format = match conn.table {
            TableFormat::Delta => PartFormat::Parquet,
            TableFormat::Files => PartFormat::Json,
        };
        out.push(Table {
            data: Data::MergedIds,
            name: format!("{base}_merged_ids"),
            destination: conn.merged_ids_destination(),
            layout: conn.merged_ids_layout(),
            format,
            table: conn.table,
            columns: MERGE_FIELDS.iter().map(|name| Column { name, column_type: ColumnType::Int64 }).collect(),
            timestamps: conn.timestamp_format,
            file_glob: format!("-{}_*.json.gz", conn.org_id),
            file_regex: format!("-{}_[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}_[0-9]+[.]json[.]gz", conn.org_id),
        });
    }
    out
}

impl Table<'_> {
    fn hive(&self) -> bool {
        self.layout.kind() == LayoutKind::Hive
    }

    fn delta(&self) -> bool {
        self.table == TableFormat::Delta
    }

    /// The key of the folder the table reads (`P/A` or `P/-O`).
    fn dir(&self) -> String {
        match self.data {
            Data::Events => self.layout.events_dir(),
            Data::MergedIds => self.layout.merges_dir(),
        }
    }

    /// The key glob of every data file: `P/A/A_*#*.json.gz`, or under `dt=*/hour=*/`.
    fn glob_key(&self) -> String {
        if self.hive() {
            format!("{}/dt=*/hour=*/{}", self.dir(), self.file_glob)
        } else {
            format!("{}/{}", self.dir(), self.file_glob)
        }
    }

    fn has_timestamps(&self) -> bool {
        self.columns.iter().any(|c| c.column_type == ColumnType::Timestamp)
    }

    fn heading(&self, engine: Engine) -> Result<String> {
        let what = match (self.data, self.delta()) {
            (Data::Events, false) => format!("Events ({} parts)", self.format),
            (Data::Events, true) => "Events (a Delta Lake table of parquet parts, partitioned by dt and hour)".to_string(),
            (Data::MergedIds, false) => "Merged IDs (gzipped JSON lines; merge_time and merge_server_time are epoch milliseconds)".to_string(),
            (Data::MergedIds, true) => {
                "Merged IDs (a Delta Lake table partitioned by dt and hour; merge_time and merge_server_time are epoch milliseconds)".to_string()
            }
        };
        Ok(format!("-- {what} in {}\n", url(engine, self.destination, &self.dir())?))
    }
}

fn layout_name(kind: LayoutKind) -> &'static str {
    match kind {
        LayoutKind::Amplitude => "amplitude",
        LayoutKind::Hive => "hive",
    }
}

fn timestamp_example(format: TimestampFormat) -> &'static str {
    match format {
        TimestampFormat::Amplitude => "2020-11-24 09:59:55.977000",
        TimestampFormat::Iso8601 => "2020-11-24T09:59:55.977000",
    }
}

/// The `java.time` pattern of the export's timestamps: the OpenX SerDe's `timestamp.formats`
/// (Athena) and Spark's `timestampFormat` read the same patterns.
fn java_timestamp_pattern(format: TimestampFormat) -> &'static str {
    match format {
        TimestampFormat::Amplitude => "yyyy-MM-dd HH:mm:ss.SSSSSS",
        TimestampFormat::Iso8601 => "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
    }
}

/// Athena's projection starts here: the first exported hour's day, else the creation day.
fn first_day(conn: &Connection, options: &DdlOptions) -> String {
    let created = conn.created.as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()).map(|t| t.format("%Y-%m-%d").to_string());
    let first = options.first_hour.map(|h| h.date_str());
    match (first, created) {
        (Some(a), Some(b)) => a.min(b),
        (Some(day), None) | (None, Some(day)) => day,
        // A connection read from a file was never created: a day before any export.
        (None, None) => "2012-01-01".to_string(),
    }
}

/// `'text'` with quotes doubled: a SQL string literal in every engine here.
/// Every value printed into the statements comes from the connection: one that could end
/// a string literal or a comment in some engine (quotes, backslashes, backticks, line
/// breaks) is refused rather than escaped four ways.
fn refuse_unquotable(field: &str, dest: &Destination) -> Result<()> {
    let mut values = vec![("", dest.describe())];
    if let Destination::S3 { access_key_id: Some(key), .. } = dest {
        values.push((".access_key_id", key.clone()));
    }
    for (name, value) in values {
        if let Some(c) = value.chars().find(|c| c.is_control() || matches!(c, '\'' | '"' | '\\' | '`')) {
            return Err(ExportError::invalid_config(
                format!("{field}{name}"),
                format!("holds {c:?}, which cannot be written safely into SQL for every engine"),
                "Use a bucket, container, folder and prefix without quotes, backslashes, backticks or control characters.",
            ));
        }
    }
    Ok(())
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"name"`: a quoted identifier (DuckDB, Snowflake, Athena views).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `` `name` ``: a quoted identifier in Hive DDL (Athena) and BigQuery.
fn backquoted(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn regex_literal(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_string() } else { format!("[{c}]") }).collect()
}

/// A plain identifier needs no quotes (and stays case-insensitive where the engine folds case).
fn is_plain(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn destination_kind(dest: &Destination) -> &'static str {
    match dest {
        Destination::S3 { endpoint_url: Some(_), .. } => "an S3-compatible store",
        Destination::S3 { .. } => "Amazon S3",
        Destination::Azure { .. } => "Azure Blob Storage",
        Destination::Local { .. } => "a local folder",
    }
}

fn unreadable(engine: Engine, dest: &Destination, instead: &str) -> ExportError {
    let reads = match engine {
        Engine::Athena => "Amazon S3 only",
        Engine::Snowflake => "Amazon S3, S3-compatible stores and Azure Blob Storage",
        Engine::BigQuery => "Amazon S3 and Azure Blob Storage (BigQuery Omni)",
        Engine::DuckDb => "local folders, S3 and Azure",
        Engine::Spark => "local folders, Amazon S3, S3-compatible stores (s3a) and Azure Blob Storage accounts (abfss)",
    };
    ExportError::invalid_input(
        format!("exportctl ddl --engine {}", engine.name()),
        format!(
            "the connection exports to {} ({}), which {} cannot read: it reads {reads}. {instead}",
            destination_kind(dest),
            dest.describe(),
            engine.title()
        ),
    )
}

/// The account host (and path, for emulators) of an Azure account URL.
fn azure_account(account_url: &str) -> String {
    let trimmed = account_url.trim_end_matches('/');
    trimmed.split_once("://").map(|(_, rest)| rest).unwrap_or(trimmed).to_string()
}

/// Where `key` of `dest` is, in the URL form `engine` reads.
fn url(engine: Engine, dest: &Destination, key: &str) -> Result<String> {
    match (engine, dest) {
        (Engine::DuckDb, Destination::Local { path, .. }) => Ok(format!("{}/{key}", path.trim_end_matches('/'))),
        // Local paths are absolute (the connection checks it): file:///data/out/...
        (Engine::Spark, Destination::Local { path, .. }) => Ok(format!("file://{}/{key}", path.trim_end_matches('/'))),
        // Open-source Spark reads S3-compatible stores through the s3a connector, with the
        // store's endpoint in its settings (the statement's comment says which).
        (Engine::Spark, Destination::S3 { bucket, endpoint_url: Some(_), .. }) => Ok(format!("s3a://{bucket}/{key}")),
        (_, Destination::Local { .. }) => Err(unreadable(engine, dest, "Use --engine duckdb (or spark) for a local folder.")),
        (Engine::Athena | Engine::BigQuery, Destination::S3 { endpoint_url: Some(_), .. }) => {
            Err(unreadable(engine, dest, "Use --engine duckdb (or snowflake, which reads S3-compatible stores) for this destination."))
        }
        (Engine::Snowflake, Destination::S3 { bucket, endpoint_url: Some(_), .. }) => Ok(format!("s3compat://{bucket}/{key}")),
        (_, Destination::S3 { bucket, .. }) => Ok(format!("s3://{bucket}/{key}")),
        (Engine::Athena, Destination::Azure { .. }) => {
            Err(unreadable(engine, dest, "Use --engine duckdb, snowflake or bigquery for an Azure container, or export to S3 for Athena."))
        }
        (Engine::DuckDb, Destination::Azure { account_url, container, .. }) => {
            let account = azure_account(account_url);
            // The fully qualified form names the account; an emulator's URL does not fit it,
            // so there the account comes from the secret.
            if account.contains(".blob.") && !account.contains('/') {
                Ok(format!("az://{account}/{container}/{key}"))
            } else {
                Ok(format!("az://{container}/{key}"))
            }
        }
        (Engine::Spark, Destination::Azure { account_url, container, .. }) => {
            // ABFS names the account's dfs endpoint; an emulator's URL has none.
            let account = azure_account(account_url);
            match account.strip_suffix(".blob.core.windows.net") {
                Some(name) if !name.contains(['/', '.']) => Ok(format!("abfss://{container}@{name}.dfs.core.windows.net/{key}")),
                _ => Err(unreadable(engine, dest, "Use --engine duckdb for an account outside *.blob.core.windows.net (an emulator).")),
            }
        }
        (_, Destination::Azure { account_url, container, .. }) => Ok(format!("azure://{}/{container}/{key}", azure_account(account_url))),
    }
}
