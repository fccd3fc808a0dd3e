//! Snowflake: a stage, a file format and an external table of typed virtual columns.

use super::*;

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

pub(super) fn snowflake(t: &Table<'_>) -> Result<String> {
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
    if t.delta() {
        delta(t, &mut out, columns, &stage, &file_format);
        return Ok(out);
    }
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

/// An external table over the Delta log (`TABLE_FORMAT = DELTA`): the log, not a pattern,
/// says which parts are the table. Snowflake refreshes such a table only by hand, so
/// `REFRESH_ON_CREATE` and `AUTO_REFRESH` are FALSE and the first refresh follows.
fn delta(t: &Table<'_>, out: &mut String, mut columns: Vec<String>, stage: &str, file_format: &str) {
    // dt and hour are partition values in the log, not columns of the parts: both come from
    // the part's path, the dt=/hour= folders or the flat name (`187520_2020-01-25_5#0.parquet`).
    let (dt, hour) = if t.hive() {
        ("dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/", "hour=([0-9]{2})/")
    } else {
        ("_([0-9]{4}-[0-9]{2}-[0-9]{2})_[0-9]+[#.][^/]*$", "_[0-9]{4}-[0-9]{2}-[0-9]{2}_([0-9]+)[#.][^/]*$")
    };
    columns.push(format!("  dt DATE AS (TO_DATE(REGEXP_SUBSTR(METADATA$FILENAME, {}, 1, 1, 'e')))", literal(dt)));
    columns.push(format!("  hour NUMBER(2,0) AS (TO_NUMBER(REGEXP_SUBSTR(METADATA$FILENAME, {}, 1, 1, 'e')))", literal(hour)));
    out.push_str(
        "-- A Delta Lake table: Snowflake reads the Delta log for the committed parts and refreshes only by hand, so run\n\
         -- the ALTER ... REFRESH below again after each exported hour. Snowflake plans to deprecate external tables on\n\
         -- Delta in favour of Delta Direct (CREATE ICEBERG TABLE with a catalog integration of TABLE_FORMAT = DELTA).\n",
    );
    let _ = writeln!(
        out,
        "CREATE OR REPLACE EXTERNAL TABLE {} (\n{}\n)\nLOCATION = @{stage}\nREFRESH_ON_CREATE = FALSE\nAUTO_REFRESH = FALSE\nFILE_FORMAT = (FORMAT_NAME = {})\nTABLE_FORMAT = DELTA;",
        t.name,
        columns.join(",\n"),
        literal(file_format)
    );
    let _ = writeln!(out, "ALTER EXTERNAL TABLE {} REFRESH;", t.name);
}
