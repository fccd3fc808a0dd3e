//! Athena: Hive DDL over S3, with partition projection for hive folders.

use super::*;

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

pub(super) fn athena(t: &Table<'_>, first_day: &str) -> Result<String> {
    let mut out = t.heading(Engine::Athena)?;
    let location = format!("{}/", url(Engine::Athena, t.destination, &t.dir())?);
    if t.delta() {
        // Athena's documented form for a Delta table: LOCATION and table_type only (it refuses
        // columns, a SerDe or any other property); Glue takes the schema and the partitions
        // from the Delta log.
        out.push_str("-- A Delta Lake table: Athena reads its columns and partitions (dt, hour) from the Delta log; filter on dt (and hour) to prune.\n");
        let _ = writeln!(out, "CREATE EXTERNAL TABLE {}\nLOCATION {}\nTBLPROPERTIES ('table_type' = 'DELTA');", backquoted(&t.name), literal(&location));
        return Ok(out);
    }
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
