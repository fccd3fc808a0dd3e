//! exportctl managing a deployed stack (`--cloud` with EXPORT_CONTROL_BUCKET set), run as
//! a user runs it, against moto: connection lifecycle with the hourly schedule in
//! EventBridge Scheduler, verify, policy, export, runs.

use std::process::{Command, Output};

use exporter::adapters::aws::s3::S3Store;
use exporter::export::generate::{generate_hour, HourSpec};
use exporter::hour::UtcHour;
use integration_tests::emulators::{moto_url, unique_name};
use integration_tests::moto::{admin_config, create_bucket, create_kms_key, s3_client, ACCOUNT};

struct Stack {
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Stack {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_exportctl"))
            .arg("--cloud")
            .arg("--home")
            .arg(self.dir.path().join("unused-home"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("exportctl runs");
        eprintln!("$ exportctl {}\n{}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        out
    }
}

/// The settings a deployed stack gives exportctl (as its outputs would), plus `extra`.
fn stack_env(url: &str, control: &str, lake: &str, hourly_group: &str, secrets_key: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let scheduler_role = format!("arn:aws:iam::{ACCOUNT}:role/scheduler-invoke");
    let target = format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:hourly-export");
    [
        ("AWS_ENDPOINT_URL", url),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("EXPORT_CONTROL_BUCKET", control),
        ("EXPORT_LAKE_BUCKET", lake),
        ("EXPORT_RETRY_GROUP", "retries"),
        ("EXPORT_HOURLY_GROUP", hourly_group),
        ("EXPORT_SCHEDULER_ROLE_ARN", &scheduler_role),
        ("EXPORT_TARGET_ARN", &target),
        ("EXPORT_SES_SENDER", "exports@example.com"),
        ("EXPORT_SECRETS_KEY_ARN", secrets_key),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn exportctl_manages_connections_of_a_deployed_stack() {
    let url = moto_url();
    let cfg = admin_config(&url);
    let (control, lake, dest) = (unique_name("ctl"), unique_name("lake"), unique_name("dest"));
    for b in [&control, &lake, &dest] {
        create_bucket(&cfg, b).await;
    }
    let secrets_key = create_kms_key(&cfg).await;
    let group = unique_name("hourly");
    let scheduler = aws_sdk_scheduler::Client::new(&cfg);
    scheduler.create_schedule_group().name(&group).send().await.expect("schedule group");
    let hour = UtcHour::parse("2020-01-25T17").unwrap();
    let lake_store = S3Store::new(s3_client(&cfg), &lake);
    let spec = HourSpec { project_id: "187520".into(), hour, events: 300, events_per_file: 100, duplicate_every: 0, invalid_every: 0, seed: 1, gzip: true };
    generate_hour(&lake_store, &spec).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let env = stack_env(&url, &control, &lake, &group, &secrets_key, &[("BACKFILL_FUNCTION", "backfill")]);
    let stack = Stack { env, dir };
    let id = unique_name("conn").replace('-', "_");
    let conn_file = stack.dir.path().join("conn.json");
    std::fs::write(
        &conn_file,
        format!(
            r#"{{"id":"{id}","org_id":"42","project_id":"187520","creator":"owner@example.com","admins":["admin@example.com"],
                "destination":{{"type":"s3","bucket":"{dest}","prefix":"exports","region":"us-east-1"}}}}"#
        ),
    )
    .unwrap();
    let conn_path = conn_file.to_str().unwrap();

    // verify a file before creating it: every probe passes with the base credentials
    let out = stack.run(&["verify", conn_path]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("s3:PutObject") && text(&out).contains("all checks passed"));

    // The project registry decides whose a project is: unregistered is refused, naming the
    // command that registers it; another organisation's project is refused.
    let out = stack.run(&["connections", "create", conn_path]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("projects add 187520 --org 42"), "{}", text(&out));
    assert!(stack.run(&["projects", "add", "187520", "--org", "41"]).status.success());
    let out = stack.run(&["connections", "create", conn_path]);
    assert!(text(&out).contains("does not belong to organisation 42"), "{}", text(&out));
    assert!(stack.run(&["projects", "remove", "187520"]).status.success());
    assert!(stack.run(&["projects", "add", "187520", "--org", "42"]).status.success());
    assert!(text(&stack.run(&["projects", "list"])).contains("187520"));

    let out = stack.run(&["connections", "create", conn_path]);
    assert!(out.status.success(), "{}", text(&out));
    let out = stack.run(&["projects", "remove", "187520"]);
    assert!(!out.status.success() && text(&out).contains("used by connection"), "{}", text(&out));
    let name = exporter::adapters::aws::scheduler::hourly_schedule_name(&id);
    let schedule = scheduler.get_schedule().name(&name).group_name(&group).send().await.expect("hourly schedule created");
    assert_eq!(schedule.state().map(|s| s.as_str()), Some("ENABLED"));
    assert!(schedule.target().unwrap().input().unwrap().contains(&id));

    // creating it again is refused, and changes nothing
    let out = stack.run(&["connections", "create", conn_path]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already exists"));

    let out = stack.run(&["connections", "disable", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let schedule = scheduler.get_schedule().name(&name).group_name(&group).send().await.unwrap();
    assert_eq!(schedule.state().map(|s| s.as_str()), Some("DISABLED"));
    let out = stack.run(&["export", &id, "--hour", "2020-01-25T17"]);
    assert!(!out.status.success() && text(&out).contains("disabled"), "a disabled connection must not export");
    assert!(stack.run(&["connections", "enable", &id]).status.success());

    let out = stack.run(&["connections", "list"]);
    assert!(text(&out).contains(&id) && text(&out).contains(&format!("s3://{dest}/exports")));

    let out = stack.run(&["policy", &id, "--account", ACCOUNT]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("event-export-project-187520") && text(&out).contains(&format!("arn:aws:s3:::{dest}/exports/*")));

    let out = stack.run(&["export", &id, "--hour", "2020-01-25T17"]);
    assert!(out.status.success(), "{}", text(&out));
    let s3 = s3_client(&cfg);
    let listed = s3.list_objects_v2().bucket(&dest).prefix("exports/187520/").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(keys.contains(&"exports/187520/187520_2020-01-25_17#0.json.gz"), "{keys:?}");
    assert!(keys.contains(&"exports/187520/187520_2020-01-25_17_complete"), "{keys:?}");
    let out = stack.run(&["runs", &id]);
    assert!(text(&out).contains("exported") && text(&out).contains("300"), "{}", text(&out));

    // a destination that does not exist is named as such, and verify exits 1
    let missing = stack.dir.path().join("missing.json");
    std::fs::write(&missing, std::fs::read_to_string(&conn_file).unwrap().replace(&dest, "no-such-bucket-anywhere")).unwrap();
    let out = stack.run(&["verify", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("DestinationMissing"), "{}", text(&out));

    // creating a connection whose test upload fails refuses activation and stores nothing
    let refused_id = format!("{id}_x");
    std::fs::write(&missing, std::fs::read_to_string(&missing).unwrap().replace(&format!("\"id\":\"{id}\""), &format!("\"id\":\"{refused_id}\""))).unwrap();
    let out = stack.run(&["connections", "create", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not activated") && text(&out).contains("no-such-bucket-anywhere"), "{}", text(&out));
    assert!(!text(&stack.run(&["connections", "list"])).contains(&refused_id));
    let refused_schedule = exporter::adapters::aws::scheduler::hourly_schedule_name(&refused_id);
    assert!(scheduler.get_schedule().name(&refused_schedule).group_name(&group).send().await.is_err(), "no schedule for a refused connection");

    // Destinations a deployed stack must never write to are refused before any request,
    // naming the field: a local folder (the function's temporary disk), plain http or a
    // host that is not Azure Storage (the emulator setting is off here).
    let hostile = [
        (r#"{"type":"local","path":"/tmp/exports"}"#, "local folders are served only in embedded mode"),
        (r#"{"type":"azure","account_url":"http://127.0.0.1:10000/devstoreaccount1","container":"events","sas_token":"sv=1&sig=x"}"#, "is not https"),
        (r#"{"type":"azure","account_url":"https://attacker.example","container":"events","sas_token":"sv=1&sig=x"}"#, "not an Azure Storage account endpoint"),
    ];
    for (i, (destination, says)) in hostile.into_iter().enumerate() {
        let hostile_id = format!("{id}_h{i}");
        let file = stack.dir.path().join(format!("hostile-{i}.json"));
        std::fs::write(
            &file,
            format!(r#"{{"id":"{hostile_id}","org_id":"42","project_id":"187520","admins":["admin@example.com"],"creator":"owner@example.com","destination":{destination}}}"#),
        )
        .unwrap();
        let out = stack.run(&["connections", "create", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(says) && text(&out).contains("destination."), "{says}: {}", text(&out));
        assert!(!text(&stack.run(&["connections", "list"])).contains(&hostile_id));
    }
    // A local connection already in the control store (written by hand or by an old
    // release) is refused when the deployed stack runs it: nothing is marked exported.
    let planted = format!("{id}_planted");
    let doc = format!(
        r#"{{"id":"{planted}","org_id":"42","project_id":"187520","admins":["admin@example.com"],"creator":"owner@example.com","destination":{{"type":"local","path":"/tmp"}}}}"#
    );
    s3.put_object().bucket(&control).key(format!("connections/{planted}.json")).body(doc.into_bytes().into()).send().await.unwrap();
    let out = stack.run(&["export", &planted, "--hour", "2020-01-25T17"]);
    assert!(!out.status.success() && text(&out).contains("embedded mode"), "{}", text(&out));
    assert!(!std::path::Path::new("/tmp/187520").exists(), "nothing written to the local disk");
    assert!(stack.run(&["connections", "delete", &planted]).status.success());

    let out = stack.run(&["connections", "delete", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(scheduler.get_schedule().name(&name).group_name(&group).send().await.is_err(), "schedule deleted with the connection");
    let out = stack.run(&["runs", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not found"));
}

/// `projects add` on a deployed stack registers the project and creates its IAM role,
/// trusting the two function roles, with S3 object actions and KMS through S3 only; again,
/// it brings the role up to date; without the function roles it refuses, naming the setting.
#[tokio::test(flavor = "multi_thread")]
async fn projects_add_on_a_deployed_stack_creates_the_project_role() {
    let url = moto_url();
    let cfg = admin_config(&url);
    let control = unique_name("ctl");
    create_bucket(&cfg, &control).await;
    let secrets_key = create_kms_key(&cfg).await;
    let project = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000);
    let functions = [format!("arn:aws:iam::{ACCOUNT}:role/stack-HourlyExportRole"), format!("arn:aws:iam::{ACCOUNT}:role/stack-BackfillRole")];
    let template = "arn:aws:iam::{account}:role/event-export-project-{project_id}";
    let env = |function_roles: &str| {
        stack_env(
            &url,
            &control,
            &control,
            "hourly",
            &secrets_key,
            &[("EXPORT_PROJECT_ROLE_ARN_TEMPLATE", template), ("EXPORT_FUNCTION_ROLE_ARNS", function_roles)],
        )
    };
    let stack = Stack { env: env(""), dir: tempfile::tempdir().unwrap() };
    let out = stack.run(&["projects", "add", &project, "--org", "42"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("EXPORT_FUNCTION_ROLE_ARNS") && text(&out).contains("FunctionRoleArns"), "{}", text(&out));

    let stack = Stack { env: env(&functions.join(",")), dir: tempfile::tempdir().unwrap() };
    let out = stack.run(&["projects", "add", &project, "--org", "42"]);
    assert!(out.status.success() && text(&out).contains("created"), "{}", text(&out));
    let iam = aws_sdk_iam::Client::new(&cfg);
    let name = format!("event-export-project-{project}");
    let role = iam.get_role().role_name(&name).send().await.expect("project role created");
    let trust = urlencoding_decode(role.role().unwrap().assume_role_policy_document().unwrap());
    let trust: serde_json::Value = serde_json::from_str(&trust).unwrap();
    assert_eq!(trust["Statement"][0]["Principal"]["AWS"], serde_json::json!(functions), "{trust}");
    let policy = iam.get_role_policy().role_name(&name).policy_name("event-export-destinations").send().await.expect("permissions policy");
    let policy = urlencoding_decode(policy.policy_document());
    assert!(policy.contains("s3:PutObject") && policy.contains("kms:ViaService"), "{policy}");

    let out = stack.run(&["projects", "add", &project, "--org", "42"]);
    assert!(out.status.success() && text(&out).contains("brought up to date"), "{}", text(&out));
    assert!(text(&stack.run(&["projects", "list"])).contains(&project));
}

/// IAM returns policy documents URL-encoded.
fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}
