//! Table DDL: the statements that read one connection's export as tables in DuckDB, Athena,
//! Snowflake or BigQuery, one table for events and one for merged IDs (when the connection
//! exports them). Column types come from [`export_columns`], the one table the Parquet parts
//! are written with, so a table never disagrees with its files. Pure: a connection in, SQL
//! text out.
//!
//! Every statement reads the parts only, never the `_complete` markers: by file name (DuckDB
//! globs, Snowflake patterns, BigQuery URIs), by the hidden `_` prefix in hive folders, or by
//! `"$path"` in a view (Athena over flat folders, where markers sit beside the parts).

use std::fmt::Write;

use crate::control::connection::Connection;
use crate::error::{ExportError, Result};
use crate::export::columns::{export_columns, Column, ColumnType};
use crate::export::layout::ExportLayout;
use crate::export::merged_ids::MERGE_FIELDS;
use crate::export::timestamp::TimestampFormat;
use crate::hour::UtcHour;
use crate::model::destination::Destination;
use crate::model::format::PartFormat;
use crate::model::layout_kind::LayoutKind;

/// A query engine `exportctl ddl` writes statements for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Athena,
    DuckDb,
    Snowflake,
    BigQuery,
}

impl Engine {
    pub const ALL: [Engine; 4] = [Engine::Athena, Engine::DuckDb, Engine::Snowflake, Engine::BigQuery];

    /// The name on the command line (`--engine duckdb`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Athena => "athena",
            Engine::DuckDb => "duckdb",
            Engine::Snowflake => "snowflake",
            Engine::BigQuery => "bigquery",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Engine::Athena => "Athena",
            Engine::DuckDb => "DuckDB",
            Engine::Snowflake => "Snowflake",
            Engine::BigQuery => "BigQuery",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        let wanted = name.trim().to_ascii_lowercase();
        Engine::ALL.into_iter().find(|e| e.name() == wanted).ok_or_else(|| {
            ExportError::invalid_input(format!("--engine {name:?}"), "is not an engine exportctl ddl knows; use athena, duckdb, snowflake or bigquery")
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
    let mut out = format!(
        "-- exportctl ddl {} --engine {}: {} of project {} ({} parts, {} layout{timestamps})\n",
        conn.id,
        engine.name(),
        tables.iter().map(|t| t.data.what()).collect::<Vec<_>>().join(" and "),
        conn.project_id,
        conn.format,
        layout_name(conn.layout),
    );
    if engine != Engine::DuckDb {
        // Only DuckDB's statements are run by our tests (over the demo's export).
        let _ = writeln!(out, "-- Written to {}'s documented syntax; check it on a test table before relying on it.", engine.title());
    }
    for table in &tables {
        out.push('\n');
        let statements = match engine {
            Engine::DuckDb => duckdb(table)?,
            Engine::Athena => athena(table, &first_day(conn, options))?,
            Engine::Snowflake => snowflake(table)?,
            Engine::BigQuery => bigquery(table)?,
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
            columns: export_columns().collect(),
            timestamps: conn.timestamp_format,
            file_glob: format!("{}_*#*{ext}", conn.project_id),
            file_regex: format!("{}_[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}_[0-9]+#[0-9]+{}", conn.project_id, regex_literal(ext)),
        });
    }
    if conn.export.merged_ids {
        // Merged IDs are gzipped JSON lines whatever the events' format.
        out.push(Table {
            data: Data::MergedIds,
            name: format!("{base}_merged_ids"),
            destination: conn.merged_ids_destination(),
            layout: conn.merged_ids_layout(),
            format: PartFormat::Json,
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
        let what = match self.data {
            Data::Events => format!("Events ({} parts)", self.format),
            Data::MergedIds => "Merged IDs (gzipped JSON lines; merge_time and merge_server_time are epoch milliseconds)".to_string(),
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
        (_, Destination::Local { .. }) => Err(unreadable(engine, dest, "Use --engine duckdb for a local folder.")),
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
        (_, Destination::Azure { account_url, container, .. }) => Ok(format!("azure://{}/{container}/{key}", azure_account(account_url))),
    }
}

// ---------------------------------------------------------------- DuckDB

fn duckdb_type(t: ColumnType, format: PartFormat) -> &'static str {
    match (t, format) {
        (ColumnType::Timestamp, PartFormat::Json) => "TIMESTAMP",
        // TIMESTAMP(MICROS, isAdjustedToUTC) in the file: DuckDB reads it with its zone.
        (ColumnType::Timestamp, PartFormat::Parquet) => "TIMESTAMP WITH TIME ZONE",
        (ColumnType::Int64, _) => "BIGINT",
        (ColumnType::Float64, _) => "DOUBLE",
        (ColumnType::Boolean, _) => "BOOLEAN",
        (ColumnType::Json, _) => "JSON",
        (ColumnType::String, _) => "VARCHAR",
    }
}

fn duckdb_access(dest: &Destination) -> Option<String> {
    match dest {
        Destination::S3 { region, endpoint_url, .. } => {
            let endpoint = endpoint_url.as_deref().map(|e| format!(", ENDPOINT {}", literal(e.trim_start_matches("https://")))).unwrap_or_default();
            Some(format!("-- Needs the httpfs extension and a secret, e.g. CREATE SECRET (TYPE s3, PROVIDER credential_chain, REGION {}{endpoint});\n", literal(region)))
        }
        Destination::Azure { account_url, .. } => Some(format!(
            "-- Needs the azure extension and a secret for the account {}, e.g. CREATE SECRET (TYPE azure, PROVIDER credential_chain, ACCOUNT_NAME '<account>');\n",
            account_url
        )),
        Destination::Local { .. } => None,
    }
}

fn duckdb(t: &Table<'_>) -> Result<String> {
    let mut out = t.heading(Engine::DuckDb)?;
    out.push_str(&format!("-- Reads only `{}` files (never the `_complete` markers).\n", t.file_glob));
    if let Some(access) = duckdb_access(t.destination) {
        out.push_str(&access);
    }
    let files = literal(&url(Engine::DuckDb, t.destination, &t.glob_key())?);
    let hive = if t.hive() { "hive_partitioning = true,\n    hive_types = {'dt': 'DATE', 'hour': 'INTEGER'}" } else { "hive_partitioning = false" };
    let _ = writeln!(out, "CREATE OR REPLACE VIEW {} AS", quoted(&t.name));
    match t.format {
        PartFormat::Json => {
            // Explicit columns: types never depend on sampling, and property maps are JSON.
            let columns: Vec<String> =
                t.columns.iter().map(|c| format!("        {}: {}", literal(c.name), literal(duckdb_type(c.column_type, t.format)))).collect();
            let _ = writeln!(out, "SELECT * FROM read_json(\n    {files},\n    format = 'newline_delimited',\n    compression = 'gzip',\n    {hive},");
            if t.has_timestamps() {
                let _ = writeln!(out, "    timestampformat = {},", literal(t.timestamps.strftime()));
            }
            let _ = writeln!(out, "    columns = {{\n{}\n    }}\n);", columns.join(",\n"));
        }
        PartFormat::Parquet => {
            // The file types are the column table's; property maps are JSON text in the file.
            let json: Vec<String> = t
                .columns
                .iter()
                .filter(|c| c.column_type == ColumnType::Json)
                .map(|c| format!("    CAST({name} AS JSON) AS {name}", name = quoted(c.name)))
                .collect();
            let replace = if json.is_empty() { String::new() } else { format!(" REPLACE (\n{}\n)", json.join(",\n")) };
            let _ = writeln!(out, "SELECT *{replace}\nFROM read_parquet(\n    {files},\n    {hive}\n);");
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- Athena

fn athena_type(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Timestamp => "timestamp",
        ColumnType::Int64 => "bigint",
        ColumnType::Float64 => "double",
        ColumnType::Boolean => "boolean",
        // Property maps change keys (and value types) from hour to hour: JSON text, read
        // with json_extract in queries.
        ColumnType::Json | ColumnType::String => "string",
    }
}

/// The `java.time` pattern of the export's timestamps, for the OpenX SerDe's `timestamp.formats`.
fn java_timestamp_pattern(format: TimestampFormat) -> &'static str {
    match format {
        TimestampFormat::Amplitude => "yyyy-MM-dd HH:mm:ss.SSSSSS",
        TimestampFormat::Iso8601 => "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
    }
}

fn athena(t: &Table<'_>, first_day: &str) -> Result<String> {
    let mut out = t.heading(Engine::Athena)?;
    let location = format!("{}/", url(Engine::Athena, t.destination, &t.dir())?);
    // Flat folders hold the markers beside the parts: the table reads the folder and a view
    // keeps the parts. Hive folders hide the markers (`_` prefix), so the table is the table.
    let table_name = if t.hive() { t.name.clone() } else { format!("{}_files", t.name) };
    out.push_str("-- Athena runs one statement per query: run them one after the other.\n");
    if t.format == PartFormat::Json {
        out.push_str(
            "-- OpenX JSON SerDe: it reads the property maps (JSON objects) into string columns as JSON text, where\n\
             -- the Hive JSON SerDe refuses objects in string columns, and parses timestamps with 'timestamp.formats'.\n",
        );
    }
    if t.has_timestamps() {
        out.push_str("-- Athena timestamps on these tables have millisecond precision: the microseconds are truncated.\n");
    }
    if t.hive() {
        let _ = writeln!(
            out,
            "-- Partition projection over dt=yyyy-MM-dd/hour=HH: no crawler, no MSCK REPAIR; filter on dt (and hour) to prune.\n\
             -- The range starts on {first_day}; to read hours exported before it, lower its start:\n\
             -- ALTER TABLE {} SET TBLPROPERTIES ('projection.dt.range' = 'yyyy-MM-dd,NOW');",
            backquoted(&table_name)
        );
    } else {
        out.push_str("-- Amplitude's flat layout has no partitions, so every query reads every hour: use \"layout\": \"hive\" for pruning.\n");
    }
    let columns: Vec<String> = t.columns.iter().map(|c| format!("  {} {}", backquoted(c.name), athena_type(c.column_type))).collect();
    let _ = writeln!(out, "CREATE EXTERNAL TABLE IF NOT EXISTS {} (\n{}\n)", backquoted(&table_name), columns.join(",\n"));
    if t.hive() {
        out.push_str("PARTITIONED BY (`dt` string, `hour` int)\n");
    }
    match t.format {
        PartFormat::Json => {
            out.push_str("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n");
            if t.has_timestamps() {
                let _ = writeln!(out, "WITH SERDEPROPERTIES ('timestamp.formats' = {})", literal(java_timestamp_pattern(t.timestamps)));
            }
        }
        PartFormat::Parquet => out.push_str("STORED AS PARQUET\n"),
    }
    let _ = write!(out, "LOCATION {}", literal(&location));
    if t.hive() {
        let template = format!("{location}dt=${{dt}}/hour=${{hour}}/");
        let _ = write!(
            out,
            "\nTBLPROPERTIES (\n  'projection.enabled' = 'true',\n  'projection.dt.type' = 'date',\n  'projection.dt.format' = 'yyyy-MM-dd',\n  \
             'projection.dt.range' = {},\n  'projection.dt.interval' = '1',\n  'projection.dt.interval.unit' = 'DAYS',\n  \
             'projection.hour.type' = 'integer',\n  'projection.hour.range' = '0,23',\n  'projection.hour.digits' = '2',\n  \
             'storage.location.template' = {}\n)",
            literal(&format!("{first_day},NOW")),
            literal(&template)
        );
    }
    out.push_str(";\n");
    if !t.hive() {
        let ext = match t.data {
            Data::Events => format!("%#%{}", t.format.extension()),
            Data::MergedIds => "%.json.gz".to_string(),
        };
        let _ = writeln!(out, "CREATE OR REPLACE VIEW {} AS\nSELECT * FROM {} WHERE \"$path\" LIKE {};", quoted(&t.name), quoted(&table_name), literal(&ext));
    }
    Ok(out)
}

// ---------------------------------------------------------------- Snowflake

fn snowflake_type(t: ColumnType) -> &'static str {
    match t {
        // UTC instants with no zone in the text: NTZ keeps the value as written.
        ColumnType::Timestamp => "TIMESTAMP_NTZ",
        ColumnType::Int64 => "NUMBER(38,0)",
        ColumnType::Float64 => "FLOAT",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Json => "VARIANT",
        ColumnType::String => "VARCHAR",
    }
}

fn snowflake_timestamp_format(format: TimestampFormat) -> &'static str {
    match format {
        TimestampFormat::Amplitude => "YYYY-MM-DD HH24:MI:SS.FF6",
        TimestampFormat::Iso8601 => "YYYY-MM-DD\"T\"HH24:MI:SS.FF6",
    }
}

/// Snowflake folds unquoted names to upper case: plain names stay unquoted (queried in any
/// case), the others (`$insert_id`) are quoted exactly.
fn snowflake_name(name: &str) -> String {
    if is_plain(name) {
        name.to_string()
    } else {
        quoted(name)
    }
}

fn snowflake_value(c: &Column, t: &Table<'_>) -> String {
    let field = format!("value:{}", quoted(c.name));
    let sql_type = snowflake_type(c.column_type);
    match (c.column_type, t.format) {
        (ColumnType::Timestamp, PartFormat::Json) => {
            format!("TO_TIMESTAMP_NTZ({field}::VARCHAR, {})", literal(snowflake_timestamp_format(t.timestamps)))
        }
        (ColumnType::Json, PartFormat::Json) => field,
        (ColumnType::Json, PartFormat::Parquet) => format!("PARSE_JSON({field}::VARCHAR)"),
        _ => format!("{field}::{sql_type}"),
    }
}

fn snowflake(t: &Table<'_>) -> Result<String> {
    let mut out = t.heading(Engine::Snowflake)?;
    out.push_str(
        "-- An external table reads the files in place, so late parts and backfills (which replace parts) show up\n\
         -- after a refresh; COPY INTO would load a replaced part a second time.\n",
    );
    let stage = format!("{}_stage", t.name);
    let file_format = format!("{}_format", t.name);
    let location = format!("{}/", url(Engine::Snowflake, t.destination, &t.dir())?);
    let access = match t.destination {
        Destination::S3 { endpoint_url: Some(endpoint), access_key_id, .. } => format!(
            "\n  ENDPOINT = {}\n  CREDENTIALS = (AWS_KEY_ID = {} AWS_SECRET_KEY = '<secret access key>')",
            literal(endpoint.trim_start_matches("https://")),
            literal(access_key_id.as_deref().unwrap_or("<access key id>"))
        ),
        _ => "\n  STORAGE_INTEGRATION = <storage_integration>".to_string(),
    };
    if access.contains("<storage_integration>") {
        out.push_str("-- <storage_integration>: a storage integration allowed to read this location (CREATE STORAGE INTEGRATION).\n");
    }
    let _ = writeln!(out, "CREATE STAGE IF NOT EXISTS {stage}\n  URL = {}{access};", literal(&location));
    match t.format {
        PartFormat::Json => {
            let _ = writeln!(
                out,
                "CREATE FILE FORMAT IF NOT EXISTS {file_format}\n  TYPE = JSON\n  COMPRESSION = GZIP\n  TIMESTAMP_FORMAT = {};",
                literal(snowflake_timestamp_format(t.timestamps))
            );
        }
        PartFormat::Parquet => {
            let _ = writeln!(out, "CREATE FILE FORMAT IF NOT EXISTS {file_format}\n  TYPE = PARQUET\n  USE_LOGICAL_TYPE = TRUE;");
        }
    }
    let mut columns: Vec<String> =
        t.columns.iter().map(|c| format!("  {} {} AS ({})", snowflake_name(c.name), snowflake_type(c.column_type), snowflake_value(c, t))).collect();
    if t.hive() {
        columns.push("  dt DATE AS (TO_DATE(REGEXP_SUBSTR(METADATA$FILENAME, 'dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/', 1, 1, 'e')))".to_string());
        columns.push("  hour NUMBER(2,0) AS (TO_NUMBER(REGEXP_SUBSTR(METADATA$FILENAME, 'hour=([0-9]{2})/', 1, 1, 'e')))".to_string());
    }
    let _ = writeln!(out, "CREATE OR REPLACE EXTERNAL TABLE {} (\n{}\n)", t.name, columns.join(",\n"));
    if t.hive() {
        out.push_str("PARTITION BY (dt, hour)\n");
    }
    let _ = writeln!(
        out,
        "LOCATION = @{stage}\nPATTERN = {}\nFILE_FORMAT = (FORMAT_NAME = {})\nAUTO_REFRESH = FALSE;",
        literal(&format!(".*{}", t.file_regex)),
        literal(&file_format)
    );
    let _ = writeln!(out, "-- After each exported hour (or with AUTO_REFRESH and event notifications): ALTER EXTERNAL TABLE {} REFRESH;", t.name);
    Ok(out)
}

// ---------------------------------------------------------------- BigQuery

fn bigquery_type(t: ColumnType, format: PartFormat) -> &'static str {
    match (t, format) {
        (ColumnType::Timestamp, _) => "TIMESTAMP",
        (ColumnType::Int64, _) => "INT64",
        (ColumnType::Float64, _) => "FLOAT64",
        (ColumnType::Boolean, _) => "BOOL",
        (ColumnType::Json, PartFormat::Json) => "JSON",
        // Parquet holds the maps as text: PARSE_JSON in queries.
        (ColumnType::Json, PartFormat::Parquet) => "STRING",
        (ColumnType::String, _) => "STRING",
    }
}

fn bigquery(t: &Table<'_>) -> Result<String> {
    let mut out = t.heading(Engine::BigQuery)?;
    let dir = url(Engine::BigQuery, t.destination, &t.dir())?;
    let connection_region = match t.destination {
        Destination::S3 { region, .. } => format!("aws-{region}"),
        _ => "<azure region, e.g. azure-eastus2>".to_string(),
    };
    out.push_str("-- BigQuery Omni: <project>, <dataset> and <connection> (a BigQuery connection to this bucket or container) are yours to fill in.\n");
    let (kept, dropped): (Vec<&Column>, Vec<&Column>) = t.columns.iter().partition(|c| is_plain(c.name));
    if !dropped.is_empty() {
        let names: Vec<&str> = dropped.iter().map(|c| c.name).collect();
        let _ = writeln!(
            out,
            "-- BigQuery column names hold letters, digits and underscores only, so {} cannot be columns here; uuid identifies an event.",
            names.join(" and ")
        );
    }
    if t.has_timestamps() && t.format == PartFormat::Json {
        out.push_str("-- BigQuery's JSON reader takes YYYY-MM-DD HH:MM:SS.ffffff (and the T form) as TIMESTAMP, in UTC when no zone is written.\n");
    }
    let columns: Vec<String> = kept.iter().map(|c| format!("  {} {}", backquoted(c.name), bigquery_type(c.column_type, t.format))).collect();
    let _ = writeln!(out, "CREATE EXTERNAL TABLE `<project>.<dataset>.{}` (\n{}\n)", t.name, columns.join(",\n"));
    let _ = writeln!(out, "WITH CONNECTION `<project>.{connection_region}.<connection>`");
    if t.hive() {
        out.push_str("WITH PARTITION COLUMNS (`dt` DATE, `hour` INT64)\n");
    }
    let ext = match t.data {
        Data::Events => t.format.extension(),
        Data::MergedIds => ".json.gz",
    };
    let mut options = vec![match t.format {
        PartFormat::Json => "format = 'NEWLINE_DELIMITED_JSON',\n  compression = 'GZIP'".to_string(),
        PartFormat::Parquet => "format = 'PARQUET'".to_string(),
    }];
    // One wildcard, in the file name: parts only, never the markers.
    options.push(format!("uris = [{}]", literal(&format!("{dir}/*{ext}"))));
    if t.hive() {
        options.push(format!("hive_partition_uri_prefix = {}", literal(&format!("{dir}/"))));
    }
    if t.format == PartFormat::Json && !dropped.is_empty() {
        options.push("ignore_unknown_values = true".to_string());
    }
    let _ = writeln!(out, "OPTIONS (\n  {}\n);", options.join(",\n  "));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(destination: &str, format: &str, layout: &str, timestamps: &str) -> Connection {
        let text = format!(
            r#"{{"id":"acme-web","org_id":"42","project_id":"187520","destination":{destination},
                "creator":"c@example.com","format":"{format}","layout":"{layout}","timestamp_format":"{timestamps}",
                "created":"2020-01-25T17:03:00Z"}}"#
        );
        Connection::from_json(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    const LOCAL: &str = r#"{"type":"local","path":"/data/out","prefix":"exports"}"#;
    const S3: &str = r#"{"type":"s3","bucket":"acme-analytics","prefix":"exports","region":"eu-west-1"}"#;
    const AZURE: &str =
        r#"{"type":"azure","account_url":"https://acct.blob.core.windows.net","container":"events","prefix":"exports","sas_token":"sv=1&sig=x"}"#;

    fn ddl(conn: &Connection, engine: Engine) -> Result<String> {
        table_ddl(conn, engine, &DdlOptions::default())
    }

    #[test]
    fn values_that_could_break_out_of_a_literal_or_comment_are_refused() {
        let hostile = [
            (r#"{"type":"local","path":"/data/it's","prefix":"exports"}"#, "destination"),
            (r#"{"type":"local","path":"/data/a\nCOPY (SELECT 1) TO '/tmp/x';","prefix":"exports"}"#, "destination"),
            (r#"{"type":"local","path":"/data/back\\slash","prefix":"exports"}"#, "destination"),
            (r#"{"type":"local","path":"/data/tick`","prefix":"exports"}"#, "destination"),
        ];
        for (destination, field) in hostile {
            let conn = connection(destination, "json", "hive", "amplitude");
            for engine in Engine::ALL {
                let err = ddl(&conn, engine).unwrap_err().to_string();
                assert!(err.contains(field) && err.contains("cannot be written safely"), "{engine:?} {destination}: {err}");
            }
        }
    }

    /// Every engine × format × layout: the statement names the right files, types, quoting
    /// and partitions, and never a marker.
    #[test]
    fn every_engine_format_and_layout() {
        struct Case {
            engine: Engine,
            destination: &'static str,
            format: &'static str,
            layout: &'static str,
            must: &'static [&'static str],
            must_not: &'static [&'static str],
        }
        let cases = [
            Case {
                engine: Engine::DuckDb,
                destination: LOCAL,
                format: "json",
                layout: "amplitude",
                must: &[
                    "CREATE OR REPLACE VIEW \"acme_web_events\" AS",
                    "read_json(\n    '/data/out/exports/187520/187520_*#*.json.gz'",
                    "hive_partitioning = false",
                    "timestampformat = '%Y-%m-%d %H:%M:%S.%f'",
                    "'event_time': 'TIMESTAMP'",
                    "'$insert_id': 'VARCHAR'",
                    "'$schema': 'BIGINT'",
                    "'paying': 'BOOLEAN'",
                    "'event_properties': 'JSON'",
                    "CREATE OR REPLACE VIEW \"acme_web_merged_ids\" AS",
                    "'/data/out/exports/-42/-42_*.json.gz'",
                    "'merged_amplitude_id': 'BIGINT'",
                ],
                must_not: &["_complete'", "hive_types"],
            },
            Case {
                engine: Engine::DuckDb,
                destination: S3,
                format: "parquet",
                layout: "hive",
                must: &[
                    "read_parquet(\n    's3://acme-analytics/exports/187520/dt=*/hour=*/187520_*#*.parquet'",
                    "hive_partitioning = true,\n    hive_types = {'dt': 'DATE', 'hour': 'INTEGER'}",
                    "CAST(\"event_properties\" AS JSON) AS \"event_properties\"",
                    "'s3://acme-analytics/exports/-42/dt=*/hour=*/-42_*.json.gz'",
                    "CREATE SECRET (TYPE s3, PROVIDER credential_chain, REGION 'eu-west-1')",
                ],
                must_not: &["*_complete", "timestampformat = '%Y-%m-%dT"],
            },
            Case {
                engine: Engine::DuckDb,
                destination: AZURE,
                format: "json",
                layout: "hive",
                must: &["'az://acct.blob.core.windows.net/events/exports/187520/dt=*/hour=*/187520_*#*.json.gz'", "azure extension", "hive_partitioning = true"],
                must_not: &["s3://"],
            },
            Case {
                engine: Engine::Athena,
                destination: S3,
                format: "json",
                layout: "amplitude",
                must: &[
                    "CREATE EXTERNAL TABLE IF NOT EXISTS `acme_web_events_files` (",
                    "`$insert_id` string",
                    "`event_time` timestamp",
                    "`event_properties` string",
                    "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'",
                    "WITH SERDEPROPERTIES ('timestamp.formats' = 'yyyy-MM-dd HH:mm:ss.SSSSSS')",
                    "LOCATION 's3://acme-analytics/exports/187520/'",
                    "CREATE OR REPLACE VIEW \"acme_web_events\" AS\nSELECT * FROM \"acme_web_events_files\" WHERE \"$path\" LIKE '%#%.json.gz';",
                    "use \"layout\": \"hive\" for pruning",
                    "LOCATION 's3://acme-analytics/exports/-42/'",
                ],
                must_not: &["PARTITIONED BY", "projection"],
            },
            Case {
                engine: Engine::Athena,
                destination: S3,
                format: "parquet",
                layout: "hive",
                must: &[
                    "CREATE EXTERNAL TABLE IF NOT EXISTS `acme_web_events` (",
                    "PARTITIONED BY (`dt` string, `hour` int)",
                    "STORED AS PARQUET",
                    "'projection.dt.type' = 'date'",
                    "'projection.dt.format' = 'yyyy-MM-dd'",
                    "'projection.dt.range' = '2020-01-25,NOW'",
                    "'projection.hour.type' = 'integer'",
                    "'projection.hour.range' = '0,23'",
                    "'projection.hour.digits' = '2'",
                    "'storage.location.template' = 's3://acme-analytics/exports/187520/dt=${dt}/hour=${hour}/'",
                    // Merged IDs stay JSON lines under a parquet connection.
                    "CREATE EXTERNAL TABLE IF NOT EXISTS `acme_web_merged_ids` (",
                    "'storage.location.template' = 's3://acme-analytics/exports/-42/dt=${dt}/hour=${hour}/'",
                ],
                must_not: &["$path", "_files"],
            },
            Case {
                engine: Engine::Snowflake,
                destination: S3,
                format: "json",
                layout: "hive",
                must: &[
                    "CREATE STAGE IF NOT EXISTS acme_web_events_stage\n  URL = 's3://acme-analytics/exports/187520/'\n  STORAGE_INTEGRATION = <storage_integration>;",
                    "TYPE = JSON\n  COMPRESSION = GZIP\n  TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF6'",
                    "event_time TIMESTAMP_NTZ AS (TO_TIMESTAMP_NTZ(value:\"event_time\"::VARCHAR, 'YYYY-MM-DD HH24:MI:SS.FF6'))",
                    "\"$insert_id\" VARCHAR AS (value:\"$insert_id\"::VARCHAR)",
                    "event_properties VARIANT AS (value:\"event_properties\")",
                    "dt DATE AS (TO_DATE(REGEXP_SUBSTR(METADATA$FILENAME",
                    "PARTITION BY (dt, hour)",
                    "PATTERN = '.*187520_[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]+#[0-9]+[.]json[.]gz'",
                ],
                must_not: &["COPY INTO acme"],
            },
            Case {
                engine: Engine::Snowflake,
                destination: AZURE,
                format: "parquet",
                layout: "amplitude",
                must: &[
                    "URL = 'azure://acct.blob.core.windows.net/events/exports/187520/'",
                    "TYPE = PARQUET",
                    "event_time TIMESTAMP_NTZ AS (value:\"event_time\"::TIMESTAMP_NTZ)",
                    "event_properties VARIANT AS (PARSE_JSON(value:\"event_properties\"::VARCHAR))",
                    "PATTERN = '.*187520_[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]+#[0-9]+[.]parquet'",
                ],
                must_not: &["PARTITION BY", "METADATA$FILENAME"],
            },
            Case {
                engine: Engine::BigQuery,
                destination: S3,
                format: "json",
                layout: "hive",
                must: &[
                    "CREATE EXTERNAL TABLE `<project>.<dataset>.acme_web_events` (",
                    "`event_time` TIMESTAMP",
                    "`event_properties` JSON",
                    "WITH CONNECTION `<project>.aws-eu-west-1.<connection>`",
                    "WITH PARTITION COLUMNS (`dt` DATE, `hour` INT64)",
                    "format = 'NEWLINE_DELIMITED_JSON'",
                    "uris = ['s3://acme-analytics/exports/187520/*.json.gz']",
                    "hive_partition_uri_prefix = 's3://acme-analytics/exports/187520/'",
                    "ignore_unknown_values = true",
                    "$schema and $insert_id cannot be columns",
                ],
                must_not: &["`$insert_id`", "_complete"],
            },
            Case {
                engine: Engine::BigQuery,
                destination: AZURE,
                format: "parquet",
                layout: "amplitude",
                must: &[
                    "format = 'PARQUET'",
                    "`event_properties` STRING",
                    "uris = ['azure://acct.blob.core.windows.net/events/exports/187520/*.parquet']",
                    "<azure region, e.g. azure-eastus2>",
                ],
                must_not: &["hive_partition_uri_prefix", "`$insert_id`"],
            },
        ];
        for case in &cases {
            let conn = connection(case.destination, case.format, case.layout, "amplitude");
            let sql = ddl(&conn, case.engine).unwrap_or_else(|e| panic!("{} {} {}: {e}", case.engine.name(), case.format, case.layout));
            let label = format!("{} {} {} {}", case.engine.name(), destination_kind(&conn.destination), case.format, case.layout);
            for needle in case.must {
                assert!(sql.contains(needle), "{label}: missing {needle:?} in\n{sql}");
            }
            for needle in case.must_not {
                assert!(!sql.contains(needle), "{label}: unexpected {needle:?} in\n{sql}");
            }
        }
    }

    /// A field policy writes dropped top-level fields as `null` and pseudonyms as strings in
    /// string columns: every engine's statement is the one of the same connection without it.
    #[test]
    fn a_field_policy_changes_no_statement() {
        let policy = r#"{"drop":["idfa","user_creation_time","event_properties"],"pseudonymise":["user_id","device_id","user_properties.email"],
            "truncate_ip":true,"location_decimals":2,"key":"0123456789abcdef0123456789abcdef"}"#;
        for (destination, format, layout) in [(LOCAL, "json", "amplitude"), (S3, "parquet", "hive"), (AZURE, "json", "hive"), (S3, "json", "amplitude")] {
            let plain = connection(destination, format, layout, "amplitude");
            let with_policy = Connection { fields: Some(serde_json::from_str(policy).unwrap()), ..plain.clone() };
            with_policy.validate().unwrap();
            for engine in Engine::ALL {
                let (a, b) = (ddl(&plain, engine), ddl(&with_policy, engine));
                assert_eq!(a.is_ok(), b.is_ok(), "{engine:?} {format} {layout}");
                if let (Ok(a), Ok(b)) = (a, b) {
                    assert_eq!(a, b, "{engine:?} {format} {layout}");
                    assert!(!b.contains("0123456789abcdef"), "the key is never printed");
                }
            }
        }
    }

    #[test]
    fn types_come_from_the_column_table() {
        let conn = connection(LOCAL, "json", "amplitude", "amplitude");
        let sql = ddl(&conn, Engine::DuckDb).unwrap();
        for c in export_columns() {
            let entry = format!("{}: {}", literal(c.name), literal(duckdb_type(c.column_type, PartFormat::Json)));
            assert!(sql.contains(&entry), "{entry} missing");
        }
        let athena_sql = ddl(&connection(S3, "parquet", "hive", "amplitude"), Engine::Athena).unwrap();
        assert_eq!(athena_sql.matches(" timestamp,").count() + athena_sql.matches(" timestamp\n").count(), 7, "{athena_sql}");
    }

    #[test]
    fn iso8601_timestamps_get_their_own_patterns() {
        let conn = connection(S3, "json", "amplitude", "iso8601");
        assert!(ddl(&conn, Engine::DuckDb).unwrap().contains("timestampformat = '%Y-%m-%dT%H:%M:%S.%f'"));
        assert!(ddl(&conn, Engine::Athena).unwrap().contains("'timestamp.formats' = 'yyyy-MM-dd''T''HH:mm:ss.SSSSSS'"));
        assert!(ddl(&conn, Engine::Snowflake).unwrap().contains("'YYYY-MM-DD\"T\"HH24:MI:SS.FF6'"));
    }

    #[test]
    fn globs_match_parts_and_never_markers() {
        // DuckDB's glob: `*` matches within one path segment.
        fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
            match pattern.split_first() {
                None => text.is_empty(),
                Some((b'*', rest)) => (0..=text.len()).any(|i| wildcard(rest, &text[i..])),
                Some((p, rest)) => text.first() == Some(p) && wildcard(rest, &text[1..]),
            }
        }
        fn glob_matches(glob: &str, key: &str) -> bool {
            let (g, k): (Vec<&str>, Vec<&str>) = (glob.split('/').collect(), key.split('/').collect());
            g.len() == k.len() && g.iter().zip(&k).all(|(g, k)| wildcard(g.as_bytes(), k.as_bytes()))
        }
        let hour = UtcHour::parse("2020-01-05T04").unwrap();
        for (format, layout) in [("json", "amplitude"), ("json", "hive"), ("parquet", "amplitude"), ("parquet", "hive")] {
            let conn = connection(LOCAL, format, layout, "amplitude");
            for t in tables(&conn) {
                let glob = t.glob_key();
                let (data, marker) = match t.data {
                    Data::Events => (t.layout.part_key(hour, 3), t.layout.complete_key(hour)),
                    Data::MergedIds => (t.layout.merged_ids_key(hour), t.layout.merged_ids_complete_key(hour)),
                };
                assert!(glob_matches(&glob, &data), "{format} {layout}: {glob} must match {data}");
                assert!(!glob_matches(&glob, &marker), "{format} {layout}: {glob} must not match {marker}");
            }
        }
        let flat_json = connection(LOCAL, "json", "amplitude", "amplitude");
        let events = &tables(&flat_json)[0];
        assert!(!glob_matches(&events.glob_key(), "exports/187520/187520_2020-01-05_4#3.parquet"));
    }

    #[test]
    fn engines_that_cannot_read_a_destination_say_so() {
        let azure = connection(AZURE, "json", "hive", "amplitude");
        let err = ddl(&azure, Engine::Athena).unwrap_err().to_string();
        assert!(err.starts_with("invalid input: exportctl ddl --engine athena:"), "{err}");
        assert!(err.contains("Azure Blob Storage (https://acct.blob.core.windows.net/events/exports)"), "{err}");
        assert!(err.contains("which Athena cannot read: it reads Amazon S3 only"), "{err}");
        assert!(err.contains("Use --engine duckdb, snowflake or bigquery"), "{err}");
        assert!(!err.contains("sig="), "no secret in messages: {err}");

        let local = connection(LOCAL, "json", "amplitude", "amplitude");
        for engine in [Engine::Athena, Engine::Snowflake, Engine::BigQuery] {
            let err = ddl(&local, engine).unwrap_err().to_string();
            assert!(err.contains("a local folder (file:///data/out/exports)") && err.contains("Use --engine duckdb"), "{err}");
        }
        let compat =
            r#"{"type":"s3","bucket":"acme","region":"auto","endpoint_url":"https://r2.example.com","access_key_id":"AKIA1","secret_access_key":"s3cret"}"#;
        let compat = connection(compat, "json", "amplitude", "amplitude");
        assert!(ddl(&compat, Engine::Athena).unwrap_err().to_string().contains("an S3-compatible store"));
        let snowflake = ddl(&compat, Engine::Snowflake).unwrap();
        assert!(snowflake.contains("URL = 's3compat://acme/187520/'") && snowflake.contains("ENDPOINT = 'r2.example.com'"), "{snowflake}");
        assert!(!snowflake.contains("s3cret"), "the secret key stays a placeholder");
    }

    #[test]
    fn only_exported_data_gets_a_table_and_merged_ids_follow_their_destination() {
        let text = format!(
            r#"{{"id":"acme-web","org_id":"42","project_id":"187520","destination":{LOCAL},"creator":"c@example.com",
                "export":{{"events":true,"merged_ids":true}},"merged_ids_destination":{{"type":"local","path":"/ids","prefix":"m"}}}}"#
        );
        let sql = ddl(&Connection::from_json(&text).unwrap(), Engine::DuckDb).unwrap();
        assert!(sql.contains("'/ids/m/-42/-42_*.json.gz'"), "{sql}");
        let events_only = text.replace(r#""merged_ids":true"#, r#""merged_ids":false"#);
        let sql = ddl(&Connection::from_json(&events_only).unwrap(), Engine::DuckDb).unwrap();
        assert!(!sql.contains("acme_web_merged_ids"), "{sql}");
        assert_eq!(sql.matches("CREATE OR REPLACE VIEW").count(), 1);
    }

    #[test]
    fn engine_names_parse_and_unknown_ones_are_refused() {
        for engine in Engine::ALL {
            assert_eq!(Engine::parse(engine.name()).unwrap(), engine);
        }
        assert_eq!(Engine::parse("DuckDB").unwrap(), Engine::DuckDb);
        let err = Engine::parse("postgres").unwrap_err().to_string();
        assert!(err.contains("\"postgres\"") && err.contains("athena, duckdb, snowflake or bigquery"), "{err}");
    }

    #[test]
    fn projection_starts_on_the_first_exported_day() {
        let conn = connection(S3, "json", "hive", "amplitude");
        let early = DdlOptions { first_hour: Some(UtcHour::parse("2019-12-31T23").unwrap()) };
        assert!(table_ddl(&conn, Engine::Athena, &early).unwrap().contains("'projection.dt.range' = '2019-12-31,NOW'"));
        assert!(ddl(&conn, Engine::Athena).unwrap().contains("'projection.dt.range' = '2020-01-25,NOW'"));
    }
}
