//! Embedded mode's "Hour Exported" events, through the real `exportctl` binary: a tick
//! that exports hours leaves one event file per hour under `{home}/events/{connection}/`,
//! whose parts match the files in the destination; a redelivered tick adds none.

use std::path::{Path, PathBuf};
use std::process::Command;

use exporter::control::hour_event::hour_event_id;
use exporter::export::manifest::Manifest;
use exporter::hour::UtcHour;
use serde_json::Value;
use sha2::{Digest, Sha256};

const PROJECT: &str = "187520";

fn exportctl(home: &Path, args: &[&str], at: &str) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_exportctl")).arg("--home").arg(home).arg("--at").arg(at).args(args).env_remove("EXPORT_PAUSE_AT").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "exportctl {args:?} failed:\n{text}");
    text
}

fn event_files(home: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(home.join("events/c1")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files
}

#[test]
fn a_tick_leaves_one_event_file_per_exported_hour_and_a_redelivery_adds_none() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let at = "2020-01-25T00:05:00Z";
    exportctl(&home, &["generate", "--project", PROJECT, "--from", "2020-01-25T00", "--to", "2020-01-25T01", "--events-per-hour", "300"], at);
    let conn = serde_json::json!({"id": "c1", "org_id": "42", "project_id": PROJECT, "created": at,
        "destination": {"type": "local", "path": dest, "prefix": "exports"}, "admins": ["admin@example.com"], "creator": "owner@example.com"});
    let file = dir.path().join("conn.json");
    std::fs::write(&file, conn.to_string()).unwrap();
    exportctl(&home, &["projects", "add", PROJECT, "--org", "42"], at);
    exportctl(&home, &["connections", "create", file.to_str().unwrap()], at);

    exportctl(&home, &["tick"], "2020-01-25T02:20:00Z");
    let files = event_files(&home);
    assert_eq!(files.len(), 2, "hours 00 and 01: {files:?}");
    for (path, hour) in files.iter().zip(["2020-01-25T00", "2020-01-25T01"]) {
        let event: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!((event["source"].as_str(), event["detail-type"].as_str()), (Some("event-export"), Some("Hour Exported")));
        let detail = &event["detail"];
        let h = UtcHour::parse(hour).unwrap();
        let marker = dest.join(format!("exports/{PROJECT}/{PROJECT}_{}_complete", h.file_stem()));
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(marker).unwrap()).unwrap();
        let id = hour_event_id("c1", h, &manifest);
        assert_eq!(detail["id"].as_str(), Some(id.as_str()));
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), format!("{hour}_{id}.json"));
        let parts = detail["parts"].as_array().unwrap();
        assert!(!parts.is_empty());
        for p in parts {
            let bytes = std::fs::read(dest.join(p["key"].as_str().unwrap())).unwrap();
            let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(p["sha256"].as_str(), Some(sha.as_str()));
        }
        assert_eq!(detail["accounting"]["events"]["exported"].as_u64(), Some(300));
    }
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();

    // The same tick again (a redelivery): nothing owed, no new event file, none changed.
    exportctl(&home, &["tick"], "2020-01-25T02:20:00Z");
    assert_eq!(event_files(&home), files);
    assert_eq!(files.iter().map(|f| std::fs::read(f).unwrap()).collect::<Vec<_>>(), before);
}

#[test]
fn a_webhook_the_exporter_would_never_post_to_is_refused_at_create_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let at = "2020-01-25T00:05:00Z";
    exportctl(&home, &["projects", "add", PROJECT, "--org", "42"], at);
    let secret = "a-webhook-secret-of-enough-length";
    for (field, extra, says) in [
        ("webhook.url", serde_json::json!({"webhook": {"url": "http://hooks.example.com/x", "secret": secret}}), "is not an https:// URL"),
        ("webhook.url", serde_json::json!({"webhook": {"url": "https://169.254.169.254/latest", "secret": secret}}), "local, private or link-local"),
        ("failure_webhook", serde_json::json!({"failure_webhook": "https://localhost/services/T0/B0/never-shown"}), "local, private or link-local"),
    ] {
        let mut conn = serde_json::json!({"id": "c1", "org_id": "42", "project_id": PROJECT, "created": at,
            "destination": {"type": "local", "path": dest, "prefix": "exports"}, "admins": ["admin@example.com"], "creator": "owner@example.com"});
        conn.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let file = dir.path().join("conn.json");
        std::fs::write(&file, conn.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_exportctl"))
            .arg("--home")
            .arg(&home)
            .arg("--at")
            .arg(at)
            .args(["connections", "create", file.to_str().unwrap()])
            .env_remove("EXPORT_ALLOW_EMULATOR_ENDPOINTS")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{field}: {text}");
        assert!(text.contains(field) && text.contains(says), "{field}: {text}");
        assert!(!text.contains("never-shown"), "a failure webhook URL is a credential: {text}");
        assert!(!home.join("control/connections/c1.json").exists(), "{field}: nothing is stored");
    }
}
