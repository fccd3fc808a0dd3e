//! `exportctl ddl` through the binary: the connection comes from the home's control store,
//! Athena's projection starts on the first exported day (a backfill before the connection
//! existed included), and a wrong engine, connection or destination exits 2 saying why.

use std::process::{Command, Output};

const AT: &str = "2020-01-25T06:30:00Z";

fn exportctl(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exportctl")).arg("--home").arg(home).arg("--at").arg(AT).args(args).output().expect("exportctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(home: &std::path::Path, args: &[&str]) -> String {
    let o = exportctl(home, args);
    assert!(o.status.success(), "exportctl {args:?} failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn ddl_reads_the_stored_connection_and_refuses_what_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    ok(&home, &["generate", "--project", "187520", "--org", "42", "--from", "2020-01-20T05", "--events-per-hour", "50"]);
    ok(&home, &["projects", "add", "187520", "--org", "42"]);
    let conn = serde_json::json!({"id": "acme-lake", "org_id": "42", "project_id": "187520", "created": "2020-01-25T00:05:00Z",
        "destination": {"type": "local", "path": dest, "prefix": "exports"}, "admins": ["admin@example.com"], "creator": "owner@example.com", "layout": "hive"});
    let file = dir.path().join("conn.json");
    std::fs::write(&file, conn.to_string()).unwrap();
    ok(&home, &["connections", "create", file.to_str().unwrap()]);

    let duckdb = ok(&home, &["ddl", "acme-lake", "--engine", "duckdb"]);
    let glob = format!("'{}/exports/187520/dt=*/hour=*/187520_*#*.json.gz'", dest.display());
    assert!(duckdb.contains(&glob), "{duckdb}");
    assert!(duckdb.contains("hive_partitioning = true") && duckdb.contains("CREATE OR REPLACE VIEW \"acme_lake_merged_ids\""), "{duckdb}");

    // Athena cannot read a local folder: exit 2, naming the engine that can.
    let athena = exportctl(&home, &["ddl", "acme-lake", "--engine", "athena"]);
    assert_eq!(athena.status.code(), Some(2), "{}", text(&athena));
    assert!(text(&athena).contains("which Athena cannot read: it reads Amazon S3 only. Use --engine duckdb"), "{}", text(&athena));

    // The same connection on S3, from a file: the projection starts on the day the store's
    // runs first exported (a backfill five days before the connection was created).
    ok(&home, &["backfill", "acme-lake", "--from", "2020-01-20T05", "--to", "2020-01-20T05"]);
    let s3 = conn
        .as_object()
        .unwrap()
        .clone()
        .into_iter()
        .chain([("destination".to_string(), serde_json::json!({"type": "s3", "bucket": "acme-analytics", "prefix": "exports", "region": "eu-west-1"}))]);
    let s3_file = dir.path().join("s3.json");
    std::fs::write(&s3_file, serde_json::Value::Object(s3.collect()).to_string()).unwrap();
    let athena = ok(&home, &["ddl", s3_file.to_str().unwrap(), "--engine", "athena"]);
    assert!(athena.contains("'projection.dt.range' = '2020-01-20,NOW'"), "{athena}");
    assert!(athena.contains("'storage.location.template' = 's3://acme-analytics/exports/187520/dt=${dt}/hour=${hour}/'"), "{athena}");

    // A Delta connection (Parquet parts): every engine reads its tables through the Delta log,
    // Spark included.
    let mut delta = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&s3_file).unwrap()).unwrap();
    delta["format"] = "parquet".into();
    delta["table"] = "delta".into();
    let delta_file = dir.path().join("delta.json");
    std::fs::write(&delta_file, delta.to_string()).unwrap();
    let spark = ok(&home, &["ddl", delta_file.to_str().unwrap(), "--engine", "spark"]);
    assert!(spark.contains("CREATE TABLE IF NOT EXISTS acme_lake_events\nUSING DELTA\nLOCATION 's3://acme-analytics/exports/187520';"), "{spark}");
    let athena = ok(&home, &["ddl", delta_file.to_str().unwrap(), "--engine", "athena"]);
    assert!(athena.contains("TBLPROPERTIES ('table_type' = 'DELTA');") && !athena.contains("projection"), "{athena}");
    // Delta needs Parquet parts: a JSON connection saying delta is refused before any SQL.
    delta["format"] = "json".into();
    std::fs::write(&delta_file, delta.to_string()).unwrap();
    let refused = exportctl(&home, &["ddl", delta_file.to_str().unwrap(), "--engine", "spark"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(refused.stdout.is_empty() && text(&refused).contains("a Delta table holds Parquet files only"), "{}", text(&refused));

    for (args, says) in [
        (
            ["ddl", "acme-lake", "--engine", "postgres"],
            "invalid value 'postgres' for '--engine <ENGINE>'\n  [possible values: duckdb, athena, snowflake, bigquery, spark]",
        ),
        (["ddl", "no-such-connection", "--engine", "duckdb"], "not found: connection \"no-such-connection\""),
    ] {
        let o = exportctl(&home, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{args:?} prints no SQL");
    }
}

#[test]
fn policy_for_an_s3_compatible_store_says_iam_does_not_apply_and_needs_no_account() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let conn = serde_json::json!({"id": "acme-r2", "org_id": "42", "project_id": "187520", "admins": ["admin@example.com"], "creator": "owner@example.com",
        "destination": {"type": "s3", "bucket": "acme-analytics", "prefix": "exports", "region": "auto",
                        "endpoint_url": "https://0123456789abcdef.r2.cloudflarestorage.com",
                        "access_key_id": "R2KEYID0123", "secret_access_key": "r2-secret-never-printed"}});
    let file = dir.path().join("r2.json");
    std::fs::write(&file, conn.to_string()).unwrap();
    // No --account and no --cloud: no role is looked up for a store IAM does not govern.
    let out = ok(&home, &["policy", file.to_str().unwrap()]);
    assert!(out.contains("https://0123456789abcdef.r2.cloudflarestorage.com/acme-analytics/exports"), "{out}");
    assert!(out.contains("IAM policies do not apply"), "{out}");
    assert!(!out.contains("r2-secret-never-printed"), "{out}");
}
