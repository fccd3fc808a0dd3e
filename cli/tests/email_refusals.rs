//! `exportctl connections create` refuses a connection whose admins or creator are not
//! single plain email addresses, names the bad entry, and stores nothing: no connection,
//! no claim on the destination, no schedule, nothing written to the destination.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AT: &str = "2020-01-25T00:05:00Z";

fn exportctl(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exportctl"))
        .arg("--home")
        .arg(home)
        .arg("--at")
        .arg(AT)
        .args(args)
        .env_remove("EXPORT_PAUSE_AT")
        .output()
        .expect("exportctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every file under `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn connections_create_refuses_an_admin_or_creator_that_is_not_one_address_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let cases: [(serde_json::Value, &str, &str); 3] = [
        (
            serde_json::json!(["ok@example.com", "a@b.com, evil@x.com"]),
            "owner@example.com",
            r#"admins[1]: "a@b.com, evil@x.com" is not a single email address (it is a list"#,
        ),
        (
            serde_json::json!(["ok@example.com"]),
            "a@b.com\r\nBcc: x@y.com",
            r#"creator: "a@b.com\r\nBcc: x@y.com" is not a single email address (it contains a line break"#,
        ),
        (
            serde_json::json!(["Data Team <team@example.com>"]),
            "owner@example.com",
            r#"admins[0]: "Data Team <team@example.com>" is not a single email address (it has angle brackets"#,
        ),
    ];
    assert!(exportctl(&home, &["projects", "add", "187520", "--org", "42"]).status.success());
    for (i, (admins, creator, expected)) in cases.iter().enumerate() {
        let conn = serde_json::json!({"id": format!("c{i}"), "org_id": "42", "project_id": "187520",
            "destination": {"type": "local", "path": dest, "prefix": "exports"}, "admins": admins, "creator": creator});
        let file = dir.path().join(format!("conn{i}.json"));
        std::fs::write(&file, conn.to_string()).unwrap();
        let out = exportctl(&home, &["connections", "create", file.to_str().unwrap()]);
        let said = text(&out);
        assert!(!out.status.success(), "a bad address must be refused:\n{said}");
        assert!(said.contains(expected), "the refusal names the entry and what is wrong; expected {expected:?} in:\n{said}");
        assert!(said.contains("like name@example.com"), "the refusal says what to give instead:\n{said}");
        assert!(!said.contains("\r\nBcc"), "the raw line break is never echoed:\n{said:?}");
    }

    let listed = exportctl(&home, &["connections", "list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1, "only the header, no connection:\n{}", text(&listed));
    let control = files(&home.join("control"));
    assert!(control.iter().all(|p| !p.to_string_lossy().contains("connections/") && !p.to_string_lossy().contains("claims/")), "nothing stored: {control:?}");
    assert!(files(&home.join("schedules")).is_empty(), "no hourly schedule");
    assert!(files(&dest).is_empty(), "refused before any test upload: {:?}", files(&dest));

    // The same connection with a plain address is accepted: the refusals were the addresses.
    let good = serde_json::json!({"id": "c9", "org_id": "42", "project_id": "187520",
        "destination": {"type": "local", "path": dest, "prefix": "exports"}, "admins": ["team@example.com"], "creator": "owner@example.com"});
    let file = dir.path().join("good.json");
    std::fs::write(&file, good.to_string()).unwrap();
    let out = exportctl(&home, &["connections", "create", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}
