//! Fixed egress addresses through the binary: `exportctl network` prints the stack's addresses
//! and, per destination kind or for one connection, what the customer runs to allow them; it
//! refuses to guess when the stack has none; and an Azure firewall refusal (a storage account
//! answering 403 AuthorizationFailure, classified by the real Azure SDK path) names the
//! addresses and the command.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ADDRESSES: &str = "52.1.2.3,52.1.2.4";

fn exportctl(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exportctl"));
    c.current_dir(dir)
        .env_remove("EXPORT_HOME")
        .env_remove("EXPORT_CONTROL_BUCKET")
        .env_remove("EXPORT_EGRESS_IPS")
        .env_remove("EXPORT_S3_VPC_ENDPOINT_ID")
        .env_remove("EXPORT_ALLOW_EMULATOR_ENDPOINTS")
        .args(["--at", "2020-01-25T06:30:00Z"])
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("exportctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn connection_file(dir: &Path, id: &str, destination: serde_json::Value) -> PathBuf {
    let conn = serde_json::json!({"id": id, "org_id": "42", "project_id": "187520", "destination": destination,
        "admins": ["admin@example.com"], "creator": "owner@example.com"});
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&path, conn.to_string()).unwrap();
    path
}

#[test]
fn network_prints_the_addresses_and_how_each_destination_kind_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // No fixed addresses: refused, naming the parameter that gives them.
    let o = exportctl(cwd, &[], &["network"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("FixedEgressAddresses=two-nat") && text(&o).contains("EgressIpAddresses"), "{}", text(&o));
    let o = exportctl(cwd, &[("EXPORT_EGRESS_IPS", "52.1.2.3,eipalloc-1")], &["network"]);
    assert_eq!(o.status.code(), Some(2), "a mistyped setting is not 'no addresses': {}", text(&o));
    assert!(text(&o).contains("\"eipalloc-1\" is not an IP address"), "{}", text(&o));

    let env = [("EXPORT_EGRESS_IPS", ADDRESSES), ("EXPORT_S3_VPC_ENDPOINT_ID", "vpce-0a1b2c3d")];
    let every = exportctl(cwd, &env, &["network"]);
    assert!(every.status.success(), "{}", text(&every));
    let every = text(&every);
    assert!(every.contains("Egress addresses: 52.1.2.3 and 52.1.2.4"), "{every}");
    assert!(every.contains("az storage account network-rule add --resource-group RESOURCE_GROUP --account-name ACCOUNT --ip-address 52.1.2.4"), "{every}");
    assert!(every.contains(r#""Condition": {"IpAddress":{"aws:SourceIp":["52.1.2.3/32","52.1.2.4/32"]}}"#), "{every}");
    assert!(every.contains(r#""aws:SourceVpce":"vpce-0a1b2c3d""#) && every.contains("carry no public source address"), "{every}");
    assert!(every.contains("S3-compatible stores"), "{every}");

    // For one connection: the commands for its own destinations only, filled in.
    let azure = connection_file(
        cwd,
        "acme-azure",
        serde_json::json!({"type": "azure", "account_url": "https://acmeexports.blob.core.windows.net", "container": "events",
            "tenant_id": "t", "client_id": "c", "client_secret": "s3cr3t-value"}),
    );
    let o = exportctl(cwd, &env, &["network", azure.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--account-name acmeexports --ip-address 52.1.2.3") && !text(&o).contains("aws:SourceIp"), "{}", text(&o));
    assert!(!text(&o).contains("s3cr3t-value"));
    let s3 = connection_file(cwd, "acme-s3", serde_json::json!({"type": "s3", "bucket": "acme-events", "prefix": "exports/", "region": "eu-west-1"}));
    let o = exportctl(cwd, &env, &["network", s3.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("arn:aws:s3:::acme-events/exports/*") && !text(&o).contains("az storage"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(cwd).unwrap().count(), 2, "network FILE made no home");
}

/// A storage account whose firewall refuses every request: HTTP 403 AuthorizationFailure,
/// as Azure answers before it checks any data permission. Returns its URL.
fn refusing_storage_account() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 16 * 1024];
            let _ = stream.read(&mut request);
            let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationFailure</Code><Message>This request is not authorized to perform this operation.</Message></Error>";
            let response = format!(
                "HTTP/1.1 403 This request is not authorized to perform this operation.\r\nx-ms-error-code: AuthorizationFailure\r\n\
                 Content-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}/devstoreaccount1")
}

#[test]
fn an_azure_firewall_refusal_names_the_addresses_to_allow_and_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let account_url = refusing_storage_account();
    let file = connection_file(
        cwd,
        "acme-azure",
        serde_json::json!({"type": "azure", "account_url": account_url, "container": "events", "sas_token": "sv=2024-01-01&sp=racwdl&sig=c2lnbmF0dXJl"}),
    );
    let file = file.to_str().unwrap();
    let emulators = ("EXPORT_ALLOW_EMULATOR_ENDPOINTS", "true");
    let o = exportctl(cwd, &[emulators, ("EXPORT_EGRESS_IPS", ADDRESSES)], &["--cloud", "verify", file]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("AccessBlocked") || said.contains("network rules"), "{said}");
    assert!(said.contains("52.1.2.3 and 52.1.2.4"), "the addresses to allow: {said}");
    assert!(
        said.contains("az storage account network-rule add --resource-group RESOURCE_GROUP --account-name devstoreaccount1 --ip-address 52.1.2.3"),
        "{said}"
    );
    assert!(!said.contains("c2lnbmF0dXJl"), "the SAS signature never shows: {said}");
    let missing = said.lines().find(|l| l.starts_with("MISSING: ")).unwrap_or_else(|| panic!("{said}"));
    assert!(missing.contains("network access") && !missing.contains("blobs/write"), "a firewall is not a missing permission: {missing}");
    // Without fixed addresses it says how to get them.
    let o = exportctl(cwd, &[emulators], &["--cloud", "verify", file]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FixedEgressAddresses") && text(&o).contains("exportctl network") && !text(&o).contains("52.1.2.3"), "{}", text(&o));
}
