//! Destinations as a newcomer meets them, through the binary: the test upload leaves
//! nothing behind in a local folder, and a refused connection names the one fix that
//! applies (create the missing folder, run with `--cloud`, use an https endpoint, fix the
//! field of the wrong type), never a permission that is not missing or a setting that is
//! not read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AT: &str = "2020-01-25T06:30:00Z";
const EMULATOR_SETTING: &str = "EXPORT_ALLOW_EMULATOR_ENDPOINTS";

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A home with project 187520 registered for organisation 42.
    fn new() -> Home {
        let home = Home { dir: tempfile::tempdir().unwrap() };
        let o = home.run(&["projects", "add", "187520", "--org", "42"]);
        assert!(o.status.success(), "{}", text(&o));
        home
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_exportctl"));
        c.current_dir(self.dir.path())
            .env_remove("EXPORT_HOME")
            .env_remove("EXPORT_CONTROL_BUCKET")
            .env_remove(EMULATOR_SETTING)
            .arg("--home")
            .arg(self.dir.path().join("home"))
            .arg("--at")
            .arg(AT)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("exportctl runs")
    }

    /// A connection file for `destination`, written beside the home.
    fn file(&self, id: &str, destination: serde_json::Value) -> PathBuf {
        let conn = serde_json::json!({"id": id, "org_id": "42", "project_id": "187520", "destination": destination,
            "admins": ["admin@example.com"], "creator": "owner@example.com"});
        let path = self.dir.path().join(format!("{id}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&conn).unwrap()).unwrap();
        path
    }

    /// `connections create FILE`, which must be refused with exit code 2: its stderr.
    fn refused(&self, file: &Path, extra: &[&str]) -> String {
        let o = self.run(&[extra, &["connections", "create", file.to_str().unwrap()]].concat());
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let listed = self.run(&["connections", "list"]);
        let id = file.file_stem().unwrap().to_str().unwrap();
        assert!(!text(&listed).contains(id), "a refused connection is not stored: {}", text(&listed));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Every path under `root`, relative to it.
fn everything_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_test_upload_leaves_no_probe_folder_in_a_local_destination() {
    let home = Home::new();
    let dest = tempfile::tempdir().unwrap();
    // A prefix two folders deep: the probe writes under exports/acme/_export_probe/.
    let file = home.file("acme-web", serde_json::json!({"type": "local", "path": dest.path(), "prefix": "exports/acme"}));
    let o = home.run(&["connections", "create", file.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("delete probe file"), "{}", text(&o));
    let left = everything_under(dest.path());
    assert!(left.is_empty(), "the probe left {left:?} (its folder and the store's .uploads included)");

    for target in ["acme-web", file.to_str().unwrap()] {
        let o = home.run(&["verify", target]);
        assert!(o.status.success() && text(&o).contains("all checks passed"), "{}", text(&o));
        let left = everything_under(dest.path());
        assert!(left.is_empty(), "verify {target} left {left:?}");
    }
    assert!(dest.path().is_dir(), "the destination folder itself stays");
}

#[test]
fn a_missing_local_folder_is_named_to_be_created_not_granted() {
    let home = Home::new();
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("exports-not-made-yet");
    let file = home.file("acme-web", serde_json::json!({"type": "local", "path": missing}));
    let said = home.refused(&file, &[]);
    assert!(said.contains(&format!("Create the folder {}", missing.display())) && said.contains("create the connection again"), "{said}");
    assert!(!said.contains("exportctl policy") && !said.contains("Grant"), "nothing is there to grant: {said}");
    assert!(!missing.exists(), "the folder is not created behind the user's back");
}

#[test]
fn amazon_s3_without_cloud_says_to_run_with_cloud_not_that_a_permission_is_missing() {
    let home = Home::new();
    let file = home.file("acme-s3", serde_json::json!({"type": "s3", "bucket": "acme-exports", "region": "us-east-1"}));
    let said = home.refused(&file, &[]);
    assert!(said.contains("destination is Amazon S3") && said.contains("--cloud") && said.contains("AWS_ACCESS_KEY_ID"), "{said}");
    assert!(!said.contains("exportctl policy") && !said.contains("Grant") && !said.contains("not activated"), "{said}");

    // verify FILE reports the same, as what to run with rather than a missing permission.
    let o = home.run(&["verify", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("exportctl --cloud") && !text(&o).contains("s3:PutObject"), "{}", text(&o));
}

#[test]
fn a_local_http_endpoint_names_the_emulator_setting_only_where_it_is_read() {
    let home = Home::new();
    let file = home.file(
        "acme-minio",
        serde_json::json!({"type": "s3", "bucket": "acme-exports", "region": "us-east-1", "endpoint_url": "http://localhost:9000",
            "force_path_style": true, "access_key_id": "minioadmin", "secret_access_key": "minio-secret-value"}),
    );
    // Embedded mode without --cloud does not read the setting: naming it would not help.
    let said = home.refused(&file, &[]);
    assert!(said.contains("destination.endpoint_url") && said.contains("only https:// endpoints on public hosts are accepted"), "{said}");
    assert!(!said.contains(EMULATOR_SETTING) && !said.contains("minio-secret-value"), "{said}");

    // With --cloud the environment is read, the setting with it: there it is the fix.
    let said = home.refused(&file, &["--cloud"]);
    assert!(said.contains(&format!("{EMULATOR_SETTING}=true")), "{said}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_field() {
    let home = Home::new();
    let dest = tempfile::tempdir().unwrap();
    let file = home.file("acme-web", serde_json::json!({"type": "local", "path": dest.path()}));
    let doc = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, doc.replace("\"admins\": [\n    \"admin@example.com\"\n  ]", "\"admins\": \"admin@example.com\"")).unwrap();
    let said = home.refused(&file, &[]);
    assert!(said.contains("admins: expected a list, found a string (line "), "{said}");
    assert!(said.contains("Fix `admins`"), "{said}");
}
