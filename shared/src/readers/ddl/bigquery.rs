//! BigQuery (Omni): external tables with a connection to S3 or Azure.

use super::*;

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

pub(super) fn bigquery(t: &Table<'_>) -> Result<String> {
    let mut out = t.heading(Engine::BigQuery)?;
    let dir = url(Engine::BigQuery, t.destination, &t.dir())?;
    let connection_region = match t.destination {
        Destination::S3 { region, .. } => format!("aws-{region}"),
        _ => "<azure region, e.g. azure-eastus2>".to_string(),
    };
    out.push_str("-- BigQuery Omni: <project>, <dataset> and <connection> (a BigQuery connection to this bucket or container) are yours to fill in.\n");
    let (kept, dropped): (Vec<&Column>, Vec<&Column>) = t.columns.iter().partition(|c| is_plain(c.name));
    if t.delta() {
        // BigLake's documented Delta form: no column list, the schema comes from the log.
        out.push_str("-- A Delta Lake table: BigQuery reads its columns and partitions (dt, hour) from the Delta log.\n");
        if !dropped.is_empty() {
            let names: Vec<&str> = dropped.iter().map(|c| c.name).collect();
            let _ = writeln!(
                out,
                "-- The log names {}, which are not letters, digits and underscores: check that BigQuery accepts them on a test dataset.",
                names.join(" and ")
            );
        }
        let _ = writeln!(
            out,
            "CREATE EXTERNAL TABLE `<project>.<dataset>.{}`\nWITH CONNECTION `<project>.{connection_region}.<connection>`\nOPTIONS (\n  format = 'DELTA_LAKE',\n  uris = [{}]\n);",
            t.name,
            literal(&format!("{dir}/"))
        );
        return Ok(out);
    }
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
