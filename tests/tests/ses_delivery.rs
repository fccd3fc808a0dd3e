//! The failure email over SES (moto): a recipient SES refuses does not cost the others
//! their email.
//!
//! SES refuses a whole SendEmail when one recipient is unacceptable. moto does this for a
//! malformed address (`InvalidParameterValue: Missing domain`; it does not enforce
//! sandbox verification of recipients, only of the sender), so the refused recipient
//! here is an address without a domain, as a connection stored before addresses were
//! validated may still hold. What arrived is counted with SES's own send quota
//! (`SentLast24Hours`, one per accepted recipient): moto's `/moto-api/data.json` answers
//! 500 once the shared instance holds S3 objects of another account, so it is not relied
//! on. Each test uses its own region, i.e. its own SES backend in moto, so the counts are
//! not disturbed by other tests.

use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use chrono::{DateTime, Utc};
use exporter::adapters::aws::ses::SesMailer;
use exporter::adapters::local::memory::MemoryStore;
use exporter::adapters::local::scheduler::LocalScheduler;
use exporter::control::connection::Connection;
use exporter::delivery::failure::{AfterFailure, FailureHandler};
use exporter::delivery::notify::deliver;
use exporter::delivery::retry::RetryPolicy;
use exporter::model::email::Email;
use exporter::model::hour_request::ExportMode;
use exporter::model::hour_request::HourRequest;
use exporter::runtime::factory::CloudContext;
use exporter::runtime::function_env::FactoryProber;
use exporter::{ExportError, UtcHour};
use integration_tests::emulators::{moto_url, unique_name};
use integration_tests::moto::admin_config;

/// moto's administrator in `region` (a separate SES backend per region).
fn config_in(region: &'static str) -> SdkConfig {
    admin_config(&moto_url()).to_builder().region(Region::new(region)).build()
}

async fn verified_sender(cfg: &SdkConfig) -> String {
    let sender = format!("{}@exports.example.com", unique_name("sender"));
    aws_sdk_ses::Client::new(cfg).verify_email_identity().email_address(&sender).send().await.expect("verify sender");
    sender
}

/// Recipients SES accepted so far in this backend.
async fn sent_count(cfg: &SdkConfig) -> f64 {
    aws_sdk_ses::Client::new(cfg).get_send_quota().send().await.expect("get send quota").sent_last24_hours()
}

fn email(to: &[&str]) -> Email {
    Email {
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: "Event export to s3://dest/exports is failing: missing s3:PutObject".into(),
        text: "text body".into(),
        html: "<p>html body</p>".into(),
    }
}

#[tokio::test]
async fn ses_refusing_one_recipient_still_delivers_to_the_others() {
    let cfg = config_in("eu-west-3");
    let sender = verified_sender(&cfg).await;
    let mailer = SesMailer::new(aws_sdk_ses::Client::new(&cfg), &sender);

    // Control: nobody refused, one message to all.
    let before = sent_count(&cfg).await;
    let all = deliver(&mailer, &email(&["admin@example.com", "creator@example.com"])).await.expect("delivered");
    assert_eq!(all.sent.len(), 1, "one message: {all:?}");
    assert!(all.refused.is_empty());
    assert_eq!(sent_count(&cfg).await - before, 2.0);

    let before = sent_count(&cfg).await;
    let d = deliver(&mailer, &email(&["admin@example.com", "ops-team", "creator@example.com"])).await.expect("delivered to some");
    assert!(d.reached_anyone());
    assert_eq!(d.reached(), vec!["admin@example.com", "creator@example.com"]);
    assert_eq!(d.sent.len(), 2, "one message each once the group was refused: {d:?}");
    assert!(d.sent.iter().all(|c| c.to.len() == 1 && !c.message_id.is_empty()), "{d:?}");
    assert_eq!(d.refused.len(), 1, "{d:?}");
    assert_eq!(d.refused[0].address, "ops-team");
    assert!(d.refused[0].reason.contains("InvalidParameterValue") && d.refused[0].reason.contains("Missing domain"), "SES's reason is kept: {d:?}");
    assert_eq!(sent_count(&cfg).await - before, 2.0, "SES accepted exactly the two good recipients; the refused group message sent nothing");
}

fn conn_with_a_refused_admin(dest: &std::path::Path) -> Connection {
    let mut conn = Connection::from_json(
        &serde_json::json!({"id": "c-ses", "org_id": "42", "project_id": "187520", "destination": {"type": "local", "path": dest},
            "admins": ["admin@example.com"], "creator": "creator@example.com"})
        .to_string(),
    )
    .unwrap();
    // Stored before addresses were validated: SES refuses it.
    conn.admins.push("ops-team".into());
    conn
}

fn handler(cfg: &SdkConfig, sender: &str, schedules: &std::path::Path) -> FailureHandler {
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339("2020-01-25T18:10:00Z").unwrap().with_timezone(&Utc);
    FailureHandler {
        control: Arc::new(MemoryStore::new("control")),
        retries: Arc::new(LocalScheduler::new(schedules).unwrap()),
        mailer: Arc::new(SesMailer::new(aws_sdk_ses::Client::new(cfg), sender)),
        prober: Arc::new(FactoryProber::new(CloudContext::local_only())),
        status: None,
        webhooks: None,
        policy: RetryPolicy::default(),
        clock: Arc::new(move || at),
    }
}

fn denied() -> ExportError {
    ExportError::PermissionDenied {
        operation: "PutObject".into(),
        resource: "dest/exports/x".into(),
        permission: "s3:PutObject".into(),
        principal: Some("arn:aws:iam::123456789012:role/event-export-project-187520".into()),
        detail: "AccessDenied".into(),
    }
}

#[tokio::test]
async fn the_failure_email_reaches_every_recipient_ses_accepts_and_records_who_was_refused() {
    let cfg = config_in("eu-north-1");
    let sender = verified_sender(&cfg).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dest")).unwrap();
    let conn = conn_with_a_refused_admin(&dir.path().join("dest"));
    let h = handler(&cfg, &sender, &dir.path().join("schedules"));
    let last = HourRequest::new(&conn.id, UtcHour::parse("2020-01-25T17").unwrap(), ExportMode::Recurring, RetryPolicy::default().max_attempts);

    let before = sent_count(&cfg).await;
    let after = h.on_failure(&conn, &last, &denied()).await.expect("the failure is handled");
    let AfterFailure::GaveUp { accessibility: true, email: Some(ids) } = after else { panic!("expected the episode's email, got {after:?}") };
    assert_eq!(ids.split(", ").count(), 2, "one SES message per reached recipient: {ids}");
    assert_eq!(sent_count(&cfg).await - before, 2.0, "SES accepted the admin's and the creator's copies");

    let episode = h.episode(&conn.id).await.unwrap().expect("the episode is open");
    assert!(episode.emailed_at.is_some(), "marked sent: a redelivery sends nothing more");
    assert_eq!(episode.emailed, vec!["admin@example.com", "creator@example.com"]);
    assert_eq!(episode.refused.len(), 1);
    assert_eq!(episode.refused[0].address, "ops-team");
    assert!(episode.refused[0].reason.contains("Missing domain"), "{:?}", episode.refused);

    let again = h.on_failure(&conn, &last, &denied()).await.unwrap();
    assert_eq!(again, AfterFailure::GaveUp { accessibility: true, email: None });
    assert_eq!(sent_count(&cfg).await - before, 2.0, "one email per episode");
}

#[tokio::test]
async fn an_email_ses_refuses_for_everyone_fails_so_it_is_sent_on_redelivery() {
    let cfg = config_in("ap-southeast-2");
    // Never verified in this region: SES refuses every message from it (MessageRejected).
    let sender = format!("{}@exports.example.com", unique_name("unverified"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dest")).unwrap();
    let conn = conn_with_a_refused_admin(&dir.path().join("dest"));
    let h = handler(&cfg, &sender, &dir.path().join("schedules"));
    let last = HourRequest::new(&conn.id, UtcHour::parse("2020-01-25T17").unwrap(), ExportMode::Recurring, RetryPolicy::default().max_attempts);

    let before = sent_count(&cfg).await;
    let err = h.on_failure(&conn, &last, &denied()).await.expect_err("nobody reached is a failure");
    let text = err.to_string();
    assert!(text.contains("refused for every recipient"), "{text}");
    for who in ["admin@example.com (MessageRejected", "creator@example.com (MessageRejected", "ops-team ("] {
        assert!(text.contains(who), "{who} in {text}");
    }
    assert!(err.is_retryable(), "the event is delivered again, as when SES cannot be reached");
    assert!(h.episode(&conn.id).await.unwrap().is_none(), "the claim is given back for the redelivery");
    assert_eq!(sent_count(&cfg).await - before, 0.0);

    // The sender is verified; the redelivered event sends it to everyone SES accepts.
    aws_sdk_ses::Client::new(&cfg).verify_email_identity().email_address(&sender).send().await.unwrap();
    let after = h.on_failure(&conn, &last, &denied()).await.unwrap();
    assert!(matches!(after, AfterFailure::GaveUp { accessibility: true, email: Some(_) }), "{after:?}");
    assert_eq!(sent_count(&cfg).await - before, 2.0);
}
