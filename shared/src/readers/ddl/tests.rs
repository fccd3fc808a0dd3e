//! Shapes of every engine's statements: files, types, quoting, partitions, refusals.

use super::duckdb::duckdb_type;
use super::*;

fn connection(destination: &str, format: &str, layout: &str, timestamps: &str) -> Connection {
    connection_with(destination, format, layout, timestamps, "files")
}

/// A connection exporting events and merged IDs; `table` is `files` or `delta`.
pub(super) fn connection_with(destination: &str, format: &str, layout: &str, timestamps: &str, table: &str) -> Connection {
    let text = format!(
        r#"{{"id":"acme-web","org_id":"42","project_id":"187520","destination":{destination},
            "creator":"c@example.com","format":"{format}","layout":"{layout}","timestamp_format":"{timestamps}",
            "table":"{table}","created":"2020-01-25T17:03:00Z"}}"#
    );
    Connection::from_json(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

pub(super) const LOCAL: &str = r#"{"type":"local","path":"/data/out","prefix":"exports"}"#;
pub(super) const S3: &str = r#"{"type":"s3","bucket":"acme-analytics","prefix":"exports","region":"eu-west-1"}"#;
pub(super) const AZURE: &str =
    r#"{"type":"azure","account_url":"https://acct.blob.core.windows.net","container":"events","prefix":"exports","sas_token":"sv=1&sig=x"}"#;
pub(super) const COMPAT: &str =
    r#"{"type":"s3","bucket":"acme","region":"auto","endpoint_url":"https://r2.example.com","access_key_id":"AKIA1","secret_access_key":"s3cret"}"#;

/// `sql` holds every `must` needle and none of the `must_not` ones.
fn assert_shape(label: &str, sql: &str, must: &[&str], must_not: &[&str]) {
    for needle in must {
        assert!(sql.contains(needle), "{label}: missing {needle:?} in\n{sql}");
    }
    for needle in must_not {
        assert!(!sql.contains(needle), "{label}: unexpected {needle:?} in\n{sql}");
    }
}

pub(super) fn ddl(conn: &Connection, engine: Engine) -> Result<String> {
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

/// One statement to check: the engine and connection it is printed for, and the text it must
/// and must not hold.
struct Case {
    engine: Engine,
    destination: &'static str,
    format: &'static str,
    layout: &'static str,
    must: &'static [&'static str],
    must_not: &'static [&'static str],
}

/// Every engine × format × layout: the statement names the right files, types, quoting
/// and partitions, and never a marker.
#[test]
fn every_engine_format_and_layout() {
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
        assert_shape(&label, &sql, case.must, case.must_not);
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
    let compat = connection(COMPAT, "json", "amplitude", "amplitude");
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
    assert!(err.contains("\"postgres\"") && err.contains("athena, duckdb, snowflake, bigquery or spark"), "{err}");
}

#[test]
fn projection_starts_on_the_first_exported_day() {
    let conn = connection(S3, "json", "hive", "amplitude");
    let early = DdlOptions { first_hour: Some(UtcHour::parse("2019-12-31T23").unwrap()) };
    assert!(table_ddl(&conn, Engine::Athena, &early).unwrap().contains("'projection.dt.range' = '2019-12-31,NOW'"));
    assert!(ddl(&conn, Engine::Athena).unwrap().contains("'projection.dt.range' = '2020-01-25,NOW'"));
}

/// A Delta connection's two tables are read through their Delta log, at the table's root
/// folder, in each engine's documented form: no file globs, patterns or column lists where
/// the engine takes the schema from the log.
#[test]
fn delta_tables_are_read_through_their_log() {
    let cases = [
        Case {
            engine: Engine::DuckDb,
            destination: LOCAL,
            format: "parquet",
            layout: "hive",
            must: &[
                "CREATE OR REPLACE VIEW \"acme_web_events\" AS\nSELECT * REPLACE (",
                "CAST(\"event_properties\" AS JSON) AS \"event_properties\"",
                "FROM delta_scan('file:///data/out/exports/187520');",
                "CREATE OR REPLACE VIEW \"acme_web_merged_ids\" AS\nSELECT *\nFROM delta_scan('file:///data/out/exports/-42');",
                "Delta Lake tables)",
                "check it on a test table",
            ],
            must_not: &["read_parquet", "hive_partitioning", "dt=*"],
        },
        Case {
            engine: Engine::DuckDb,
            destination: S3,
            format: "parquet",
            layout: "amplitude",
            must: &["FROM delta_scan('s3://acme-analytics/exports/187520');", "CREATE SECRET (TYPE s3"],
            must_not: &["file://"],
        },
        Case {
            engine: Engine::Athena,
            destination: S3,
            format: "parquet",
            layout: "hive",
            must: &[
                "CREATE EXTERNAL TABLE `acme_web_events`\nLOCATION 's3://acme-analytics/exports/187520/'\nTBLPROPERTIES ('table_type' = 'DELTA');",
                "CREATE EXTERNAL TABLE `acme_web_merged_ids`\nLOCATION 's3://acme-analytics/exports/-42/'\nTBLPROPERTIES ('table_type' = 'DELTA');",
            ],
            must_not: &["projection", "PARTITIONED BY", "STORED AS", "SERDE", "_files", "`event_time`"],
        },
        Case {
            engine: Engine::Snowflake,
            destination: S3,
            format: "parquet",
            layout: "amplitude",
            must: &[
                "CREATE STAGE IF NOT EXISTS acme_web_events_stage\n  URL = 's3://acme-analytics/exports/187520/'",
                "TYPE = PARQUET\n  USE_LOGICAL_TYPE = TRUE;",
                "event_time TIMESTAMP_NTZ AS (value:\"event_time\"::TIMESTAMP_NTZ)",
                "dt DATE AS (TO_DATE(REGEXP_SUBSTR(METADATA$FILENAME, '_([0-9]{4}-[0-9]{2}-[0-9]{2})_[0-9]+[#.][^/]*$', 1, 1, 'e')))",
                "LOCATION = @acme_web_events_stage\nREFRESH_ON_CREATE = FALSE\nAUTO_REFRESH = FALSE\nFILE_FORMAT = (FORMAT_NAME = 'acme_web_events_format')\nTABLE_FORMAT = DELTA;",
                "ALTER EXTERNAL TABLE acme_web_events REFRESH;",
                "merged_amplitude_id NUMBER(38,0) AS (value:\"merged_amplitude_id\"::NUMBER(38,0))",
                "ALTER EXTERNAL TABLE acme_web_merged_ids REFRESH;",
            ],
            must_not: &["PATTERN", "PARTITION BY", "COMPRESSION = GZIP"],
        },
        Case {
            engine: Engine::Snowflake,
            destination: AZURE,
            format: "parquet",
            layout: "hive",
            must: &["'dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/'", "'hour=([0-9]{2})/'", "TABLE_FORMAT = DELTA;"],
            must_not: &["PARTITION BY", "PATTERN"],
        },
        Case {
            engine: Engine::BigQuery,
            destination: S3,
            format: "parquet",
            layout: "hive",
            must: &[
                "CREATE EXTERNAL TABLE `<project>.<dataset>.acme_web_events`\nWITH CONNECTION `<project>.aws-eu-west-1.<connection>`\nOPTIONS (\n  format = 'DELTA_LAKE',\n  uris = ['s3://acme-analytics/exports/187520/']\n);",
                "uris = ['s3://acme-analytics/exports/-42/']",
                "The log names $schema and $insert_id",
            ],
            must_not: &["WITH PARTITION COLUMNS", "hive_partition_uri_prefix", "`event_time`", "PARQUET"],
        },
        Case {
            engine: Engine::Spark,
            destination: S3,
            format: "parquet",
            layout: "amplitude",
            must: &[
                "CREATE TABLE IF NOT EXISTS acme_web_events\nUSING DELTA\nLOCATION 's3://acme-analytics/exports/187520';",
                "CREATE TABLE IF NOT EXISTS acme_web_merged_ids\nUSING DELTA\nLOCATION 's3://acme-analytics/exports/-42';",
            ],
            must_not: &["pathGlobFilter", "MSCK", "USING PARQUET"],
        },
        Case {
            engine: Engine::Spark,
            destination: AZURE,
            format: "parquet",
            layout: "hive",
            must: &["LOCATION 'abfss://events@acct.dfs.core.windows.net/exports/187520';"],
            must_not: &["MSCK", "PARTITIONED BY"],
        },
    ];
    for case in &cases {
        let conn = connection_with(case.destination, case.format, case.layout, "amplitude", "delta");
        let sql = ddl(&conn, case.engine).unwrap_or_else(|e| panic!("{} {}: {e}", case.engine.name(), case.layout));
        let label = format!("{} delta {} {}", case.engine.name(), destination_kind(&conn.destination), case.layout);
        assert_shape(&label, &sql, case.must, case.must_not);
    }
}

/// Spark over files: typed columns, the parts only (pathGlobFilter), the connection's
/// timestamp pattern for JSON, hive folders as partitions found by MSCK REPAIR.
#[test]
fn spark_reads_json_and_parquet_folders_typed() {
    let json = ddl(&connection(S3, "json", "hive", "iso8601"), Engine::Spark).unwrap();
    for needle in [
        "CREATE TABLE IF NOT EXISTS acme_web_events (\n  `server_received_time` TIMESTAMP,",
        "`$insert_id` STRING",
        "`$schema` BIGINT",
        "`paying` BOOLEAN",
        "`location_lat` DOUBLE",
        "`event_properties` STRING",
        "  `dt` STRING,\n  `hour` INT\n)\nUSING JSON\nOPTIONS (\n  pathGlobFilter = '187520_*#*.json.gz',\n  timestampFormat = 'yyyy-MM-dd''T''HH:mm:ss.SSSSSS'\n)\nPARTITIONED BY (dt, hour)\nLOCATION 's3://acme-analytics/exports/187520';",
        "MSCK REPAIR TABLE acme_web_events;",
        "pathGlobFilter = '-42_*.json.gz'",
        "SET spark.sql.session.timeZone = UTC",
        "s3a://",
    ] {
        assert!(json.contains(needle), "missing {needle:?} in\n{json}");
    }
    let parquet = ddl(&connection(LOCAL, "parquet", "amplitude", "amplitude"), Engine::Spark).unwrap();
    for needle in [
        "USING PARQUET\nOPTIONS (\n  pathGlobFilter = '187520_*#*.parquet'\n)\nLOCATION 'file:///data/out/exports/187520';",
        // Merged IDs stay gzipped JSON lines under a Parquet connection of files.
        "USING JSON\nOPTIONS (\n  pathGlobFilter = '-42_*.json.gz'\n)\nLOCATION 'file:///data/out/exports/-42';",
    ] {
        assert!(parquet.contains(needle), "missing {needle:?} in\n{parquet}");
    }
    for needle in ["PARTITIONED BY", "MSCK", "timestampFormat"] {
        assert!(!parquet.contains(needle), "unexpected {needle:?} in\n{parquet}");
    }
    let compat = ddl(&connection(COMPAT, "parquet", "hive", "amplitude"), Engine::Spark).unwrap();
    assert!(compat.contains("LOCATION 's3a://acme/187520';") && compat.contains("spark.hadoop.fs.s3a.endpoint=https://r2.example.com"), "{compat}");
    assert!(!compat.contains("s3cret"), "the secret key is never printed");
    let emulator = r#"{"type":"azure","account_url":"http://127.0.0.1:10000/devstoreaccount1","container":"events","sas_token":"sv=1&sig=x"}"#;
    let err = ddl(&connection(emulator, "json", "hive", "amplitude"), Engine::Spark).unwrap_err().to_string();
    assert!(err.contains("which Spark cannot read") && err.contains("Use --engine duckdb"), "{err}");
}
