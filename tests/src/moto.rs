//! Helpers for tests against moto: clients with explicit credentials, buckets, KMS keys,
//! IAM users and roles, and arming moto's IAM enforcement on the auth instance.

use std::io::{Read, Write};
use std::net::TcpStream;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use serde_json::Value;

/// moto's default account.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// The role template the tests configure (the product's default naming).
pub const ROLE_TEMPLATE: &str = "arn:aws:iam::{account}:role/event-export-project-{project_id}";

/// SDK configuration pointing at a moto server with static credentials.
pub fn sdk_config(url: &str, access_key: &str, secret: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(access_key, secret, None, None, "moto-test")))
        .build()
}

/// moto's administrator: any credentials are accepted while auth is not armed.
pub fn admin_config(url: &str) -> SdkConfig {
    sdk_config(url, "test", "test")
}

pub fn s3_client(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(cfg).force_path_style(true).build())
}

pub async fn create_bucket(cfg: &SdkConfig, name: &str) {
    s3_client(cfg).create_bucket().bucket(name).send().await.unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
}

/// A KMS key in moto; returns its ARN.
pub async fn create_kms_key(cfg: &SdkConfig) -> String {
    let out = aws_sdk_kms::Client::new(cfg).create_key().description("event export test key").send().await.expect("create KMS key");
    out.key_metadata().and_then(|m| m.arn()).expect("key ARN").to_string()
}

/// Sets moto's `INITIAL_NO_AUTH_ACTION_COUNT` to `n` and resets its request counter:
/// after `n` more requests every request is authenticated and authorised.
pub fn reset_auth(url: &str, n: u64) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let body = n.to_string();
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to moto at {addr}: {e}"));
    write!(
        s,
        "POST /moto-api/reset-auth HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"), "reset-auth failed: {resp}");
}

/// While alive, moto (auth instance) enforces IAM on every request; dropping it (also on a
/// panic) turns enforcement off again so other tests using the instance are unaffected.
pub struct AuthArmed {
    url: String,
}

impl AuthArmed {
    pub fn arm(url: &str) -> Self {
        reset_auth(url, 0);
        AuthArmed { url: url.to_string() }
    }
}

impl Drop for AuthArmed {
    fn drop(&mut self) {
        reset_auth(&self.url, 1_000_000);
    }
}

/// IAM enforcement is global to the moto instance: tests of one binary that arm it take
/// this lock so they never overlap.
pub async fn auth_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// An IAM user with one inline policy; returns (user ARN, access key id, secret).
pub async fn create_user(cfg: &SdkConfig, name: &str, policy: &Value) -> (String, String, String) {
    let iam = aws_sdk_iam::Client::new(cfg);
    let user = iam.create_user().user_name(name).send().await.expect("create user");
    let arn = user.user().map(|u| u.arn().to_string()).expect("user arn");
    iam.put_user_policy().user_name(name).policy_name("inline").policy_document(policy.to_string()).send().await.expect("put user policy");
    let key = iam.create_access_key().user_name(name).send().await.expect("create access key");
    let key = key.access_key().expect("access key");
    (arn, key.access_key_id().to_string(), key.secret_access_key().to_string())
}

/// A role that `trusted` may assume, with one inline policy; returns its ARN.
pub async fn create_role(cfg: &SdkConfig, name: &str, trusted: &str, policy: &Value) -> String {
    let iam = aws_sdk_iam::Client::new(cfg);
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": { "AWS": trusted }, "Action": "sts:AssumeRole" }]
    });
    let role = iam.create_role().role_name(name).assume_role_policy_document(trust.to_string()).send().await.expect("create role");
    iam.put_role_policy().role_name(name).policy_name("event-export").policy_document(policy.to_string()).send().await.expect("put role policy");
    role.role().map(|r| r.arn().to_string()).expect("role arn")
}

/// The generated identity policy adapted to what moto 5.2.5 can evaluate, with the same
/// actions and S3 resources:
/// - moto evaluates an identity-policy `Condition` against an empty request context, so
///   the ListBucket `s3:prefix` condition would always fail there: it is dropped;
/// - moto authorises KMS calls against the resource `*` (not the key ARN), so the KMS
///   statement's resource becomes `*`.
///
/// Real IAM evaluates the generated policy as written.
pub fn moto_enforceable(policy: &Value) -> Value {
    let mut p = policy.clone();
    for s in p["Statement"].as_array_mut().expect("statements") {
        if let Some(obj) = s.as_object_mut() {
            obj.remove("Condition");
        }
        let is_kms = match &s["Action"] {
            Value::String(a) => a.starts_with("kms:"),
            Value::Array(a) => a.iter().any(|x| x.as_str().is_some_and(|x| x.starts_with("kms:"))),
            _ => false,
        };
        if is_kms {
            s["Resource"] = Value::String("*".into());
        }
    }
    p
}

/// The policy with one action removed (and statements left empty dropped).
pub fn without_action(policy: &Value, action: &str) -> Value {
    let mut p = policy.clone();
    let statements = p["Statement"].as_array_mut().expect("statements");
    for s in statements.iter_mut() {
        match s["Action"].clone() {
            Value::String(a) if a == action => s["Action"] = Value::Array(vec![]),
            Value::Array(a) => s["Action"] = Value::Array(a.into_iter().filter(|x| x != action).collect()),
            _ => {}
        }
    }
    statements.retain(|s| s["Action"] != Value::Array(vec![]));
    p
}

/// An EventBridge bus with a rule matching our "Hour Exported" events whose target is a
/// new SQS queue (so a test can read what the bus delivered); returns the queue URL.
pub async fn bus_to_queue(cfg: &SdkConfig, bus: &str) -> String {
    let events = aws_sdk_eventbridge::Client::new(cfg);
    events.create_event_bus().name(bus).send().await.unwrap_or_else(|e| panic!("create event bus {bus}: {e:?}"));
    queue_for_bus(cfg, bus).await
}

/// A rule on an existing `bus` matching source `event-export` and detail-type
/// `Hour Exported`, targeting a new SQS queue; returns the queue URL.
pub async fn queue_for_bus(cfg: &SdkConfig, bus: &str) -> String {
    let events = aws_sdk_eventbridge::Client::new(cfg);
    let sqs = aws_sdk_sqs::Client::new(cfg);
    let queue = sqs.create_queue().queue_name(format!("{bus}-q")).send().await.expect("create queue");
    let url = queue.queue_url().expect("queue url").to_string();
    let attrs = sqs.get_queue_attributes().queue_url(&url).attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn).send().await.expect("queue arn");
    let arn = attrs.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)).expect("queue arn").clone();
    let pattern = serde_json::json!({"source": ["event-export"], "detail-type": ["Hour Exported"]});
    events.put_rule().name(format!("{bus}-rule")).event_bus_name(bus).event_pattern(pattern.to_string()).send().await.expect("put rule");
    let target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(arn).build().expect("target");
    events.put_targets().rule(format!("{bus}-rule")).event_bus_name(bus).targets(target).send().await.expect("put targets");
    url
}

/// Every message waiting on the queue (bodies parsed as JSON), deleting them.
pub async fn drain_queue(cfg: &SdkConfig, queue_url: &str) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(cfg);
    let mut out = Vec::new();
    loop {
        let got = sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).wait_time_seconds(1).send().await.expect("receive");
        if got.messages().is_empty() {
            return out;
        }
        for m in got.messages() {
            out.push(serde_json::from_str(m.body().expect("body")).expect("JSON body"));
            sqs.delete_message().queue_url(queue_url).receipt_handle(m.receipt_handle().expect("handle")).send().await.expect("delete message");
        }
    }
}
