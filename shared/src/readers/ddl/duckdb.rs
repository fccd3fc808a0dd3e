//! DuckDB: views over `read_json` / `read_parquet` with explicit types.

use super::*;

pub(super) fn duckdb_type(t: ColumnType, format: PartFormat) -> &'static str {
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

/// `SELECT *`, with the property maps (JSON text in Parquet) cast to JSON.
fn parquet_select(t: &Table<'_>) -> String {
    let json: Vec<String> =
        t.columns.iter().filter(|c| c.column_type == ColumnType::Json).map(|c| format!("    CAST({name} AS JSON) AS {name}", name = quoted(c.name))).collect();
    if json.is_empty() {
        "SELECT *".to_string()
    } else {
        format!("SELECT * REPLACE (\n{}\n)", json.join(",\n"))
    }
}

pub(super) fn duckdb(t: &Table<'_>) -> Result<String> {
    let mut out = t.heading(Engine::DuckDb)?;
    if t.delta() {
        return delta(t, out);
    }
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
            let _ = writeln!(out, "{}\nFROM read_parquet(\n    {files},\n    {hive}\n);", parquet_select(t));
        }
    }
    Ok(out)
}

/// A view over `delta_scan`: the Delta log lists the committed parts and carries `dt`
/// (text) and `hour` (integer) as partition values, so no glob or hive option is needed.
fn delta(t: &Table<'_>, mut out: String) -> Result<String> {
    out.push_str("-- Reads the Delta log (_delta_log/): exactly the committed parts, with dt (VARCHAR) and hour (INTEGER).\n");
    out.push_str("-- Needs the delta extension (INSTALL delta; LOAD delta; DuckDB autoloads it on first use).\n");
    if let Some(access) = duckdb_access(t.destination) {
        out.push_str(&access);
    }
    let dir = url(Engine::DuckDb, t.destination, &t.dir())?;
    // delta_scan wants a URI: a local table is file:///absolute/path.
    let uri = match t.destination {
        Destination::Local { .. } => format!("file://{dir}"),
        _ => dir,
    };
    let _ = writeln!(out, "CREATE OR REPLACE VIEW {} AS\n{}\nFROM delta_scan({});", quoted(&t.name), parquet_select(t), literal(&uri));
    Ok(out)
}
