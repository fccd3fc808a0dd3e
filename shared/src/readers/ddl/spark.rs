//! Spark SQL (Databricks, EMR, spark-sql): a data-source table over the folder, `USING JSON`
//! or `USING PARQUET` with the column table's types, or `USING DELTA` over a Delta
//! connection's table, whose columns come from its log.

use super::*;

fn spark_type(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Timestamp => "TIMESTAMP",
        ColumnType::Int64 => "BIGINT",
        ColumnType::Float64 => "DOUBLE",
        ColumnType::Boolean => "BOOLEAN",
        // Property maps: Spark's JSON reader keeps an object as its JSON text in a STRING
        // column, and Parquet parts hold them as text; get_json_object or from_json read them.
        ColumnType::Json | ColumnType::String => "STRING",
    }
}

/// What the cluster needs to reach the location, as a comment.
fn access(dest: &Destination) -> Option<String> {
    match dest {
        Destination::S3 { endpoint_url: Some(endpoint), force_path_style, .. } => Some(format!(
            "-- Through the s3a connector, with spark.hadoop.fs.s3a.endpoint={endpoint}{} and the store's access key.\n",
            if *force_path_style { " and spark.hadoop.fs.s3a.path.style.access=true" } else { "" }
        )),
        Destination::S3 { .. } => {
            Some("-- s3:// as Databricks and EMR name S3; open-source Spark with hadoop-aws reads the same keys as s3a://.\n".to_string())
        }
        Destination::Azure { .. } => {
            Some("-- Needs the storage account's credentials in the Spark settings (fs.azure.account.* for its dfs endpoint).\n".to_string())
        }
        Destination::Local { .. } => None,
    }
}

pub(super) fn spark(t: &Table<'_>) -> Result<String> {
    let mut out = t.heading(Engine::Spark)?;
    let location = literal(&url(Engine::Spark, t.destination, &t.dir())?);
    if let Some(access) = access(t.destination) {
        out.push_str(&access);
    }
    if t.delta() {
        out.push_str("-- A Delta Lake table (Databricks, or Spark with delta-spark): its columns and partitions (dt, hour) come from the Delta log.\n");
        let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS {}\nUSING DELTA\nLOCATION {location};", t.name);
        return Ok(out);
    }
    // pathGlobFilter matches file names only: the parts, never the markers beside them.
    let _ = writeln!(out, "-- Reads only `{}` files (pathGlobFilter; never the `_complete` markers).", t.file_glob);
    let mut options = vec![format!("pathGlobFilter = {}", literal(&t.file_glob))];
    if t.format == PartFormat::Json && t.has_timestamps() {
        out.push_str("-- The timestamps are UTC with no zone written: SET spark.sql.session.timeZone = UTC in the sessions that read them.\n");
        options.push(format!("timestampFormat = {}", literal(java_timestamp_pattern(t.timestamps))));
    }
    let mut columns: Vec<String> = t.columns.iter().map(|c| format!("  {} {}", backquoted(c.name), spark_type(c.column_type))).collect();
    if t.hive() {
        // Partition columns are listed with the others; their values come from the folders.
        columns.push("  `dt` STRING".to_string());
        columns.push("  `hour` INT".to_string());
        out.push_str("-- Partitioned by the dt=/hour= folders: MSCK REPAIR TABLE adds the hours exported since, so run it again after each hour.\n");
    }
    let using = match t.format {
        PartFormat::Json => "JSON",
        PartFormat::Parquet => "PARQUET",
    };
    let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS {} (\n{}\n)\nUSING {using}\nOPTIONS (\n  {}\n)", t.name, columns.join(",\n"), options.join(",\n  "));
    if t.hive() {
        out.push_str("PARTITIONED BY (dt, hour)\n");
    }
    let _ = writeln!(out, "LOCATION {location};");
    if t.hive() {
        let _ = writeln!(out, "MSCK REPAIR TABLE {};", t.name);
    }
    Ok(out)
}
