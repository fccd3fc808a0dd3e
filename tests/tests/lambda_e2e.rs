//! The deployed product end to end: both functions run under `cargo lambda watch` (the
//! Lambda runtime API emulator) against moto — lake, control store and destination in S3
//! with IAM enforced (the moto auth instance, where the project role is assumed through
//! STS), EventBridge Scheduler and SES on the moto instance without auth (its Scheduler
//! GET/DELETE break with auth on). moto never fires schedules, so the test plays the
//! scheduler: it reads each retry schedule's input, invokes the function with it and
//! deletes the schedule (ActionAfterCompletion DELETE).
//!
//! The backfill's asynchronous self-invocations go through the Lambda API to the watch
//! server (AWS_ENDPOINT_URL_LAMBDA); they are counted from the progress records each
//! invocation writes in the control store.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use exporter::adapters::aws::s3::S3Store;
use exporter::delivery::backfill::progress;
use exporter::export::layout::{lake_events_prefix, ExportLayout};
use exporter::hour::{HourRange, UtcHour};
use exporter::ports::ObjectStore;
use integration_tests::emulators::{moto_auth_url, moto_url, unique_name};
use integration_tests::moto::{self, ACCOUNT, ROLE_TEMPLATE};
use serde_json::{json, Value};

const SENDER: &str = "exports@example.com";

/// `cargo lambda watch` in its own process group, killed with its children on drop.
struct Watch {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill").arg("-TERM").arg("--").arg(format!("-{pgid}")).status();
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{pgid}")).status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Starts `cargo lambda watch` on `port` with exactly `env` (nothing inherited, so no
/// stray AWS settings of the machine reach the functions); its log goes outside the crate.
fn start_watch(port: u16, env: &BTreeMap<String, String>, log_dir: &std::path::Path) -> Watch {
    let log = log_dir.join("cargo-lambda-watch.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("cargo")
        .args(["lambda", "watch", "-A", "127.0.0.1", "-P", &port.to_string(), "--concurrency", "4", "--ignore-changes", "-q"])
        .current_dir(workspace_root())
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("start `cargo lambda watch` (installed by tests/scripts/install-emulators.sh)");
    let watch = Watch { child, url: format!("http://127.0.0.1:{port}"), log };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "cargo lambda watch did not listen: {}", std::fs::read_to_string(&watch.log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }
    watch
}

/// Everything the functions logged so far.
fn watch_log(dir: &std::path::Path) -> String {
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect()
}

/// The Embedded Metric Format lines the functions logged, each checked against the EMF
/// specification's structure: `_aws` with an integer millisecond `Timestamp` and
/// `CloudWatchMetrics` directives, each with a `Namespace`, `Dimensions` (arrays of at most 30
/// names, each a string member of the line) and `Metrics` (a `Name` that is a numeric member
/// of the line, and a `Unit` CloudWatch knows).
fn emf_lines(log: &str) -> Vec<Value> {
    const UNITS: [&str; 27] = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(start) = line.find("{\"_aws\"") else { continue };
        let v: Value = serde_json::from_str(&line[start..]).unwrap_or_else(|e| panic!("an EMF line is not one JSON object ({e}): {line}"));
        let meta = &v["_aws"];
        assert!(meta["Timestamp"].as_i64().is_some_and(|t| t > 1_500_000_000_000), "Timestamp in ms: {v}");
        let directives = meta["CloudWatchMetrics"].as_array().unwrap_or_else(|| panic!("CloudWatchMetrics: {v}"));
        assert!(!directives.is_empty(), "{v}");
        for d in directives {
            assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty() && n.len() <= 255), "Namespace: {v}");
            for set in d["Dimensions"].as_array().unwrap_or_else(|| panic!("Dimensions: {v}")) {
                let names = set.as_array().unwrap_or_else(|| panic!("a dimension set is an array: {v}"));
                assert!(!names.is_empty() && names.len() <= 30, "{v}");
                for n in names {
                    assert!(v[n.as_str().unwrap()].is_string(), "dimension {n} is a string member: {v}");
                }
            }
            let metrics = d["Metrics"].as_array().unwrap_or_else(|| panic!("Metrics: {v}"));
            assert!(!metrics.is_empty() && metrics.len() <= 100, "{v}");
            for m in metrics {
                let name = m["Name"].as_str().unwrap_or_else(|| panic!("Name: {v}"));
                assert!(v[name].is_number(), "metric {name} is a numeric member: {v}");
                assert!(UNITS.contains(&m["Unit"].as_str().unwrap_or_default()), "unit of {name}: {v}");
            }
        }
        out.push(v);
    }
    out
}

/// Invokes a function over the Lambda invoke API; returns the parsed answer.
async fn invoke(http: &reqwest::Client, watch: &Watch, function: &str, payload: &Value) -> Value {
    let resp = http
        .post(format!("{}/2015-03-31/functions/{function}/invocations", watch.url))
        .header("content-type", "application/json")
        .body(payload.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke {function}: {e}; log: {}", watch.log.display()));
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{function} answered non-JSON {text:?}; log {}", watch.log.display()))
}

fn ses_messages_to(moto: &str, to: &str) -> Vec<Value> {
    let body = http_get(&format!("{moto}/moto-api/data.json"));
    let data: Value = serde_json::from_str(&body).expect("moto data.json");
    let mut out = Vec::new();
    collect_ses(&data["ses"]["Message"], to, &mut out);
    out
}

/// moto nests its data by account and region in some versions: walk whatever is there.
fn collect_ses(v: &Value, to: &str, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => {
            for m in items {
                if m.get("destinations").is_some() || m.get("subject").is_some() {
                    if m.to_string().contains(to) {
                        out.push(m.clone());
                    }
                } else {
                    collect_ses(m, to, out);
                }
            }
        }
        Value::Object(map) => {
            if map.contains_key("destinations") {
                if v.to_string().contains(to) {
                    out.push(v.clone());
                }
            } else {
                for m in map.values() {
                    collect_ses(m, to, out);
                }
            }
        }
        _ => {}
    }
}

fn http_get(url: &str) -> String {
    use std::io::Read;
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    }
}

/// Raw lake events: `n` per hour, unique (device_id, $insert_id) per hour.
async fn write_lake_hour(lake: &dyn ObjectStore, project: &str, hour: UtcHour, n: u64) {
    let mut body = String::new();
    let t = hour.start().format("%Y-%m-%d %H:%M:%S").to_string();
    for i in 0..n {
        body.push_str(
            &json!({
                "event_type": "purchase", "device_id": format!("dev-{i}"), "$insert_id": format!("{}-{i}", hour.index()),
                "user_id": format!("user-{i}"), "event_time": format!("{t}.000000"), "client_event_time": format!("{t}.000000"),
                "client_upload_time": format!("{t}.000000"), "server_received_time": format!("{t}.000000"),
                "server_upload_time": format!("{t}.000000"), "event_properties": {"i": i}
            })
            .to_string(),
        );
        body.push('\n');
    }
    lake.put(&format!("{}part-0.json", lake_events_prefix(project, hour)), body.into_bytes().into()).await.unwrap();
}

/// Every event line under the project's export folder within `range`, by hour.
async fn exported_events(dest: &dyn ObjectStore, layout: &ExportLayout, range: HourRange) -> (u64, std::collections::HashSet<String>, u64) {
    let mut lines = 0;
    let mut ids = std::collections::HashSet::new();
    let mut markers = 0;
    for hour in range.hours() {
        if dest.head(&layout.complete_key(hour)).await.unwrap().is_some() {
            markers += 1;
        }
        for meta in dest.list(&layout.part_prefix(hour)).await.unwrap() {
            let gz = dest.get(&meta.key).await.unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut text).unwrap();
            for line in text.lines().filter(|l| !l.is_empty()) {
                lines += 1;
                let v: Value = serde_json::from_str(line).unwrap();
                ids.insert(format!("{}|{}", v["device_id"], v["$insert_id"]));
            }
        }
    }
    (lines, ids, markers)
}

async fn snapshot(store: &dyn ObjectStore, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for m in store.list(prefix).await.unwrap() {
        out.insert(m.key.clone(), store.get(&m.key).await.unwrap().to_vec());
    }
    out
}

fn keys(m: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    m.keys().collect()
}

async fn retry_schedules(sched: &aws_sdk_scheduler::Client, group: &str) -> Vec<(String, Value)> {
    let list = sched.list_schedules().group_name(group).send().await.expect("list schedules");
    let mut out = Vec::new();
    for s in list.schedules() {
        let name = s.name().unwrap().to_string();
        let got = sched.get_schedule().group_name(group).name(&name).send().await.expect("get schedule");
        let target = got.target().expect("target");
        assert_eq!(target.role_arn(), format!("arn:aws:iam::{ACCOUNT}:role/scheduler-invoke"));
        assert!(got.schedule_expression().unwrap().starts_with("at("), "{:?}", got.schedule_expression());
        assert_eq!(got.action_after_completion().map(|a| a.as_str()), Some("DELETE"));
        out.push((name, serde_json::from_str(target.input().expect("input")).unwrap()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn bucket_store(cfg: &SdkConfig, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(S3Store::new(moto::s3_client(cfg), bucket))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn functions_under_cargo_lambda_watch_against_moto() {
    let moto_plain = moto_url();
    let moto_auth = moto_auth_url();
    let _lock = moto::auth_lock().await;
    let plain = moto::admin_config(&moto_plain);
    let boot = moto::admin_config(&moto_auth);

    // --- world: buckets, identities, connection, lake
    let uniq = unique_name("fn");
    let (lake_b, control_b, dest_b) = (format!("{uniq}-lake"), format!("{uniq}-control"), format!("{uniq}-dest"));
    for b in [&lake_b, &control_b, &dest_b] {
        moto::create_bucket(&boot, b).await;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let project = format!("{}", 100_000 + (nanos % 800_000_000));
    let org = "42";
    let (_, admin_key, admin_secret) =
        moto::create_user(&boot, &format!("{uniq}-admin"), &json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]})).await;
    let own = json!({"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"s3:*","Resource":[
            format!("arn:aws:s3:::{lake_b}"), format!("arn:aws:s3:::{lake_b}/*"), format!("arn:aws:s3:::{control_b}"), format!("arn:aws:s3:::{control_b}/*")]},
        {"Effect":"Allow","Action":"sts:*","Resource":"*"}]});
    let (fn_arn, fn_key, fn_secret) = moto::create_user(&boot, &format!("{uniq}-fn"), &own).await;
    let dest = exporter::model::destination::Destination::aws_s3(dest_b.clone(), "exports", "us-east-1", None);
    let role_name = format!("event-export-project-{project}");
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role_name}");
    let identity = moto::moto_enforceable(&exporter::access::policy::s3_policies(&dest, &role_arn).unwrap().identity_policy);
    moto::create_role(&boot, &role_name, &fn_arn, &identity).await;
    aws_sdk_ses::Client::new(&plain).verify_email_identity().email_address(SENDER).send().await.expect("verify sender");
    let secrets_key = moto::create_kms_key(&boot).await;
    let scheduler = aws_sdk_scheduler::Client::new(&plain);
    let retry_group = format!("{uniq}-retries");
    scheduler.create_schedule_group().name(&retry_group).send().await.expect("retry group");

    let admin = moto::sdk_config(&moto_auth, &admin_key, &admin_secret);
    let lake = bucket_store(&boot, &lake_b);
    let control = bucket_store(&boot, &control_b);
    let admins_email = format!("{uniq}@example.com");
    let conn_id = "conn-e2e";
    let conn = json!({"id": conn_id, "org_id": org, "project_id": project, "export": {"events": true, "merged_ids": false},
        "destination": {"type": "s3", "bucket": dest_b, "prefix": "exports", "region": "us-east-1"},
        "admins": [admins_email], "creator": "creator@example.com"});
    control.put(&format!("connections/{conn_id}.json"), conn.to_string().into_bytes().into()).await.unwrap();
    let mut disabled = conn.clone();
    disabled["id"] = json!("conn-off");
    disabled["enabled"] = json!(false);
    control.put("connections/conn-off.json", disabled.to_string().into_bytes().into()).await.unwrap();

    let h17 = UtcHour::parse("2020-01-25T17").unwrap();
    let h18 = UtcHour::parse("2020-01-25T18").unwrap();
    write_lake_hour(lake.as_ref(), &project, h17, 25).await;
    write_lake_hour(lake.as_ref(), &project, h18, 7).await;
    // Backfill months: events in a few hours spread over the range.
    let month = HourRange::parse("2020-02-01T00", "2020-03-01T23").unwrap();
    let overlap = HourRange::parse("2020-02-20T00", "2020-03-05T23").unwrap();
    let mut lake_counts: BTreeMap<UtcHour, u64> = BTreeMap::new();
    for (i, hour) in HourRange::parse("2020-02-01T00", "2020-03-05T23").unwrap().hours().enumerate() {
        if i % 37 == 0 {
            let n = 3 + (i as u64 % 5);
            write_lake_hour(lake.as_ref(), &project, hour, n).await;
            lake_counts.insert(hour, n);
        }
    }
    let count_in = |r: HourRange| lake_counts.iter().filter(|(h, _)| **h >= r.from && **h <= r.to).map(|(_, n)| *n).sum::<u64>();

    // --- the functions, as Lambda would run them
    let logs = tempfile::tempdir().unwrap();
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", fn_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", fn_secret.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", moto_auth.as_str()),
        ("AWS_ENDPOINT_URL_SCHEDULER", moto_plain.as_str()),
        ("AWS_ENDPOINT_URL_SES", moto_plain.as_str()),
        ("EXPORT_CONTROL_BUCKET", control_b.as_str()),
        ("EXPORT_LAKE_BUCKET", lake_b.as_str()),
        ("EXPORT_RETRY_GROUP", retry_group.as_str()),
        ("EXPORT_HOURLY_GROUP", "hourly"),
        ("EXPORT_SCHEDULER_ROLE_ARN", &format!("arn:aws:iam::{ACCOUNT}:role/scheduler-invoke")),
        ("EXPORT_TARGET_ARN", &format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:hourly-export")),
        ("EXPORT_SES_SENDER", SENDER),
        ("EXPORT_SECRETS_KEY_ARN", secrets_key.as_str()),
        ("EXPORT_MAX_ATTEMPTS", "5"),
        // cargo lambda watch's deadline is not the template's 900 s timeout: with the 120 s
        // reserve every hour but the first would be handed on, so the check is off here.
        ("EXPORT_RESERVE_SECONDS", "0"),
        ("EXPORT_PROJECT_ROLE_ARN_TEMPLATE", ROLE_TEMPLATE),
        ("BACKFILL_FUNCTION", "backfill"),
        ("BACKFILL_LEAF_HOURS", "24"),
        ("BACKFILL_FAN_OUT", "10"),
        ("BACKFILL_PARALLEL", "4"),
        ("RUST_LOG", "info"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    env.insert("CARGO_TARGET_DIR".into(), std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| workspace_root().join("target").display().to_string()));
    env.insert("PATH".into(), std::env::var("PATH").unwrap());
    env.insert("HOME".into(), std::env::var("HOME").unwrap());
    // The backfill's self-invocations go to the watch server, not to moto.
    let port = free_port();
    env.insert("AWS_ENDPOINT_URL_LAMBDA".into(), format!("http://127.0.0.1:{port}"));
    let watch = start_watch(port, &env, logs.path());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1200)).build().unwrap();

    // IAM is enforced from here on: the functions act as their own user and the project role.
    let _armed = moto::AuthArmed::arm(&moto_auth);
    let dest_store = bucket_store(&admin, &dest_b);
    let control = bucket_store(&admin, &control_b);
    let layout = ExportLayout::new("exports", &project, org);

    // 1. A scheduler-shaped invocation exports the hour that closed (and settled) before it fired.
    let scheduled = json!({"connection_id": conn_id, "scheduled_time": "2020-01-25T18:20:00Z"});
    let first = invoke(&http, &watch, "hourly-export", &scheduled).await;
    assert_eq!(first["hours"][0]["request"]["hour"], "2020-01-25T17", "{first}");
    assert_eq!(first["hours"][0]["exported"]["events_exported"], 25, "{first}");
    let (lines, _, markers) = exported_events(dest_store.as_ref(), &layout, HourRange::new(h17, h17).unwrap()).await;
    assert_eq!((lines, markers), (25, 1));
    let files_once = snapshot(dest_store.as_ref(), "exports/").await;
    let records_once = snapshot(control.as_ref(), "").await;
    // The same event delivered again: the ledger owes nothing up to 17, so nothing runs.
    let again = invoke(&http, &watch, "hourly-export", &scheduled).await;
    assert_eq!(again["hours"], json!([]), "{again}");
    assert_eq!(snapshot(dest_store.as_ref(), "exports/").await, files_once, "same payload twice: same files");
    assert_eq!(keys(&snapshot(control.as_ref(), "").await), keys(&records_once), "same payload twice: same records");
    // An hour that has not settled yet, and a schedule time in the future, write nothing.
    let open = invoke(&http, &watch, "hourly-export", &json!({"connection_id": conn_id, "hour": "2099-01-01T00"})).await;
    assert_eq!(open["hours"][0]["error_kind"], "InvalidInput", "{open}");
    assert!(open["hours"][0]["error"].as_str().unwrap().contains("not closed yet"), "{open}");
    let future = invoke(&http, &watch, "hourly-export", &json!({"connection_id": conn_id, "scheduled_time": "2099-01-01T00:20:00Z"})).await;
    assert_eq!(future["errorType"], "InvalidInput", "{future}");
    assert_eq!(snapshot(dest_store.as_ref(), "exports/").await, files_once, "refused hours wrote nothing");

    // 2. Without s3:PutObject the run fails and attempt 2 is scheduled.
    let iam = aws_sdk_iam::Client::new(&admin);
    let denied = moto::without_action(&identity, "s3:PutObject");
    iam.put_role_policy().role_name(&role_name).policy_name("event-export").policy_document(denied.to_string()).send().await.unwrap();
    let failing = json!({"connection_id": conn_id, "scheduled_time": "2020-01-25T19:20:00Z"});
    let r = invoke(&http, &watch, "hourly-export", &failing).await;
    assert_eq!(r["hours"][0]["error_kind"], "PermissionDenied", "{r}");
    assert_eq!(r["hours"][0]["after_failure"]["action"], "retry_scheduled", "{r}");
    let r2 = invoke(&http, &watch, "hourly-export", &failing).await;
    assert_eq!(r2["hours"], json!([]), "redelivery leaves the hour to its planned retry: {r2}");
    let pending = retry_schedules(&scheduler, &retry_group).await;
    assert_eq!(pending.len(), 1, "one schedule for two identical failures: {pending:?}");
    assert_eq!(pending[0].1, json!({"connection_id": conn_id, "hour": "2020-01-25T18", "mode": "recurring", "attempt": 2}));

    // Fire each retry (as the scheduler would) up to the last attempt.
    let mut fired = 0;
    let mut last_payload = Value::Null;
    loop {
        let pending = retry_schedules(&scheduler, &retry_group).await;
        let Some((name, input)) = pending.into_iter().next() else { break };
        let r = invoke(&http, &watch, "hourly-export", &input).await;
        scheduler.delete_schedule().group_name(&retry_group).name(&name).send().await.unwrap();
        fired += 1;
        last_payload = input.clone();
        let attempt = input["attempt"].as_u64().unwrap();
        if attempt < 5 {
            assert_eq!(r["hours"][0]["after_failure"]["attempt"], attempt + 1, "{r}");
        } else {
            assert_eq!(r["hours"][0]["after_failure"]["action"], "gave_up", "{r}");
            assert!(r["hours"][0]["after_failure"]["email"].is_string(), "{r}");
        }
        assert!(fired <= 4, "retries must stop after attempt 5");
    }
    assert_eq!(fired, 4, "attempts 2, 3, 4 and 5 were scheduled and fired");
    // A duplicate delivery of the last attempt sends nothing more.
    let dup = invoke(&http, &watch, "hourly-export", &last_payload).await;
    assert_eq!(dup["hours"][0]["after_failure"]["email"], Value::Null, "{dup}");
    let mails = ses_messages_to(&moto_plain, &admins_email);
    assert_eq!(mails.len(), 1, "exactly one email: {mails:?}");
    let mail = mails[0].to_string();
    assert!(mail.contains("s3:PutObject"), "{mail}");
    assert!(mail.contains(&role_arn), "the refused principal is named: {mail}");
    assert!(dest_store.head(&layout.complete_key(h18)).await.unwrap().is_none(), "no complete marker while failing");
    assert!(control.head("failures/conn-e2e/episode.json").await.unwrap().is_some(), "connection marked failing");
    let status: Value = serde_json::from_slice(&control.get("status/conn-e2e.json").await.unwrap()).unwrap();
    assert!(status["failing_since"].is_string() && status["notified"] == true, "{status}");
    assert!(retry_schedules(&scheduler, &retry_group).await.is_empty());
    // Giving up ended the retries, not the debt: the hour is still owed in the ledger.
    let owed: Value = serde_json::from_slice(&control.get("ledger/conn-e2e/owed/2020-01-25T18.json").await.unwrap()).unwrap();
    assert_eq!((owed["state"].as_str(), owed["retries_exhausted"].as_bool()), (Some("failing"), Some(true)), "{owed}");

    // 3. Permission restored: the next hourly run exports the owed hour (and its own),
    // and clears the failing state. The email's promise holds.
    iam.put_role_policy().role_name(&role_name).policy_name("event-export").policy_document(identity.to_string()).send().await.unwrap();
    let ok = invoke(&http, &watch, "hourly-export", &json!({"connection_id": conn_id, "scheduled_time": "2020-01-25T20:20:00Z"})).await;
    assert_eq!(ok["hours"][0]["request"]["hour"], "2020-01-25T18", "{ok}");
    assert_eq!(ok["hours"][0]["exported"]["events_exported"], 7, "{ok}");
    assert_eq!(ok["hours"][1]["request"]["hour"], "2020-01-25T19", "{ok}");
    assert!(dest_store.head(&layout.complete_key(h18)).await.unwrap().is_some());
    assert!(control.head("failures/conn-e2e/episode.json").await.unwrap().is_none(), "failing state cleared");
    let owed = control.list("ledger/conn-e2e/owed/").await.unwrap();
    assert!(owed.is_empty(), "nothing owed: {owed:?} {ok}");
    let dup = invoke(&http, &watch, "hourly-export", &last_payload).await;
    assert_eq!(dup["hours"][0]["exported"]["skipped"], true, "a stale retry finds the hour done: {dup}");
    let status: Value = serde_json::from_slice(&control.get("status/conn-e2e.json").await.unwrap()).unwrap();
    assert!(status["failing_since"].is_null() && status["notified"] == false, "{status}");
    assert_eq!(ses_messages_to(&moto_plain, &admins_email).len(), 1);

    // 4. A 30-day backfill fans out over asynchronous invocations.
    let bf = json!({"connection_id": conn_id, "from": "2020-02-01T00", "to": "2020-03-01T23", "backfill_id": "month"});
    let root = invoke(&http, &watch, "backfill", &bf).await;
    assert_eq!(root["step"], "split", "{root}");
    assert_eq!(root["pieces"].as_array().unwrap().len(), 10);
    let p = progress(control.as_ref(), "month").await.unwrap();
    assert_eq!(p.total_hours, 720);
    assert_eq!(p.async_invocations, 40, "10 pieces of 72 h, each split into 3 leaves of 24 h: {p:?}");
    assert_eq!(p.invocations, 41);
    assert!(p.is_finished() && p.failed_hours.is_empty(), "{p:?}");
    let (lines, ids, markers) = exported_events(dest_store.as_ref(), &layout, month).await;
    assert_eq!(markers, 720, "every hour has its complete marker");
    assert_eq!(lines, count_in(month));
    assert_eq!(p.events_exported, count_in(month));

    // A second, overlapping backfill: every event exactly once.
    let bf2 = json!({"connection_id": conn_id, "from": "2020-02-20T00", "to": "2020-03-05T23", "backfill_id": "overlap"});
    invoke(&http, &watch, "backfill", &bf2).await;
    assert!(progress(control.as_ref(), "overlap").await.unwrap().is_finished());
    let union = HourRange::new(month.from, overlap.to).unwrap();
    let (lines, ids2, markers) = exported_events(dest_store.as_ref(), &layout, union).await;
    assert_eq!(markers, union.len());
    assert_eq!(lines, count_in(union), "no event duplicated by the overlap");
    assert_eq!(ids2.len() as u64, lines, "every (device_id, $insert_id) once");
    assert!(ids.is_subset(&ids2));

    // 5. The same backfill payload twice: same files, same records.
    let small = json!({"connection_id": conn_id, "from": "2020-02-03T00", "to": "2020-02-04T23", "backfill_id": "twice"});
    invoke(&http, &watch, "backfill", &small).await;
    let files1 = snapshot(dest_store.as_ref(), "exports/").await;
    let recs1 = snapshot(control.as_ref(), "backfills/twice/").await;
    invoke(&http, &watch, "backfill", &small).await;
    assert_eq!(snapshot(dest_store.as_ref(), "exports/").await, files1);
    assert_eq!(snapshot(control.as_ref(), "backfills/twice/").await, recs1);
    assert_eq!(recs1.len(), 1 + 3, "request + split + two leaves");

    // 6. Our own lake refuses the function: an operator-facing error, no customer email.
    let mails_before = ses_messages_to(&moto_plain, &admins_email).len();
    let no_lake = json!({"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"s3:*","Resource":[format!("arn:aws:s3:::{control_b}"), format!("arn:aws:s3:::{control_b}/*")]},
        {"Effect":"Allow","Action":"sts:*","Resource":"*"}]});
    iam.put_user_policy().user_name(format!("{uniq}-fn")).policy_name("inline").policy_document(no_lake.to_string()).send().await.unwrap();
    let ours = invoke(&http, &watch, "hourly-export", &json!({"connection_id": conn_id, "hour": "2020-01-25T17", "mode": "replace", "attempt": 5})).await;
    iam.put_user_policy().user_name(format!("{uniq}-fn")).policy_name("inline").policy_document(own.to_string()).send().await.unwrap();
    assert_eq!(ours["hours"][0]["error_kind"], "OurInfrastructure", "{ours}");
    assert_eq!(ours["hours"][0]["after_failure"], json!({"action": "gave_up", "accessibility": false, "email": null}), "{ours}");
    assert_eq!(ses_messages_to(&moto_plain, &admins_email).len(), mails_before, "our failure never emails the customer");
    let status: Value = serde_json::from_slice(&control.get("status/conn-e2e.json").await.unwrap()).unwrap();
    assert_eq!(status["last_error_blame"], "internal", "{status}");
    assert!(watch_log(logs.path()).contains("operator_alert"), "the operators' alarm line is logged");
    let again = invoke(&http, &watch, "hourly-export", &json!({"connection_id": conn_id, "scheduled_time": "2020-01-25T20:20:00Z"})).await;
    assert_eq!(again["hours"][0]["exported"]["events_exported"], 25, "the owed hour is exported once the lake is readable: {again}");

    // 7. Bad payloads: a clear non-retryable error, nothing changed.
    let before = (snapshot(dest_store.as_ref(), "").await, snapshot(control.as_ref(), "").await, retry_schedules(&scheduler, &retry_group).await);
    for (function, payload, want) in [
        ("hourly-export", json!({"connection_id": "nope", "scheduled_time": "2020-01-25T18:10:00Z"}), "no such connection"),
        ("hourly-export", json!({"connection_id": conn_id, "hour": "2020-01-25T7", "attempt": 1}), "expected a UTC hour"),
        ("hourly-export", json!({"connection_id": "conn-off", "hour": "2020-01-25T17"}), "disabled"),
        ("backfill", json!({"connection_id": "nope", "from": "2020-02-01T00", "to": "2020-02-02T00"}), "no such connection"),
        ("backfill", json!({"connection_id": conn_id, "from": "2020-02-02", "to": "2020-02-03T00"}), "expected a UTC hour"),
        ("backfill", json!({"connection_id": conn_id, "from": "2020-02-03T00", "to": "2020-02-01T00"}), "before"),
        ("backfill", json!({"connection_id": "conn-off", "from": "2020-02-01T00", "to": "2020-02-02T00"}), "disabled"),
    ] {
        let r = invoke(&http, &watch, function, &payload).await;
        assert_eq!(r["errorType"], "InvalidInput", "{function} {payload}: {r}");
        let msg = r["errorMessage"].as_str().unwrap_or_default();
        assert!(msg.contains(want) && msg.contains("not retryable"), "{function} {payload}: {msg}");
    }
    let after = (snapshot(dest_store.as_ref(), "").await, snapshot(control.as_ref(), "").await, retry_schedules(&scheduler, &retry_group).await);
    assert!(before == after, "bad payloads changed nothing");

    // 8. Metrics: every run, invocation and the watchdog logged EMF lines, as CloudWatch reads them.
    let survey = invoke(&http, &watch, "hourly-export", &json!({"watchdog": {}})).await;
    assert!(survey["connections"].as_u64().is_some_and(|n| n >= 2), "{survey}");
    assert!(survey["oldest_owed_age_seconds"].as_i64().is_some_and(|a| a > 0), "the 2020 connections are years behind today: {survey}");
    assert!(survey["connections_late"].as_u64().is_some_and(|n| n >= 1), "{survey}");
    let emf = emf_lines(&watch_log(logs.path()));
    let with = |metric: &str| emf.iter().filter(|v| v[metric].is_number()).cloned().collect::<Vec<_>>();
    let exported: Vec<Value> = with("EventsExported").into_iter().filter(|v| v["Outcome"] == "exported" && v["connection"] == conn_id).collect();
    let first_run = exported.iter().find(|v| v["hour"] == "2020-01-25T17").unwrap_or_else(|| panic!("the first export's figures: {emf:?}"));
    assert_eq!(first_run["_aws"]["CloudWatchMetrics"][0]["Namespace"], "EventExport");
    assert_eq!(first_run["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Stack", "Outcome"]]), "no per-connection dimension by default");
    assert_eq!((first_run["Stack"].as_str(), first_run["EventsExported"].as_u64(), first_run["Attempt"].as_u64()), (Some("event-export"), Some(25), Some(1)));
    assert!(first_run["BytesWritten"].as_u64().is_some_and(|b| b > 0) && first_run["Parts"].as_u64() == Some(1), "{first_run}");
    assert!(first_run["FreshnessSeconds"].as_i64().is_some_and(|f| f > 0), "the hour's first marker is measured: {first_run}");
    let failed = with("FailedRuns");
    assert!(failed.iter().any(|v| v["Blame"] == "destination"), "the destination's failures by blame: {failed:?}");
    assert!(failed.iter().any(|v| v["Blame"] == "internal"), "ours too: {failed:?}");
    let watchdog = with("WatchdogRuns");
    assert_eq!(watchdog.len(), 1, "{watchdog:?}");
    assert_eq!(watchdog[0]["OverdueHours"].as_u64(), survey["overdue_hours"].as_u64(), "the line and the answer agree: {}", watchdog[0]);
    let invocations = with("Invocations");
    for function in ["hourly-export", "watchdog", "backfill"] {
        let one = invocations.iter().find(|v| v["Function"] == function).unwrap_or_else(|| panic!("{function}'s invocation figures: {invocations:?}"));
        assert!(one["PeakMemoryMegabytes"].as_f64().is_some_and(|m| m > 1.0) && one["InvocationSeconds"].is_number(), "{one}");
    }
}
