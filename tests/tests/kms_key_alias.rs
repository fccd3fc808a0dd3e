//! A destination's KMS key given as an alias ARN, on moto: KMS DescribeKey resolves it to
//! the key ARN that the generated policies name (IAM never matches an alias in
//! `Resource`); an alias that does not exist is refused, telling the user to give the key
//! ARN, and a connection naming it is not created.

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use exporter::access::policy::{resolve_kms_key, s3_policies};
use exporter::adapters::aws::context::AwsContext;
use exporter::adapters::aws::kms_keys::KmsKeyResolver;
use exporter::adapters::local::cipher::LocalCipher;
use exporter::adapters::local::scheduler::LocalScheduler;
use exporter::adapters::local::store::LocalStore;
use exporter::control::connection::Connection;
use exporter::control::lifecycle::create_connection;
use exporter::control::store::ControlStore;
use exporter::model::destination::Destination;
use exporter::ports::{HourlySchedules, KeyResolver};
use exporter::runtime::factory::{probe_destination, CloudContext};
use exporter::runtime::function_env::FactoryProber;
use integration_tests::emulators::{moto_url, unique_name};
use integration_tests::moto::{self, admin_config, create_bucket, create_kms_key};
use serde_json::json;

/// A key and an alias naming it; returns (key ARN, alias ARN).
async fn key_with_alias(cfg: &SdkConfig) -> (String, String) {
    let key = create_kms_key(cfg).await;
    let name = format!("alias/{}", unique_name("exports"));
    aws_sdk_kms::Client::new(cfg).create_alias().alias_name(&name).target_key_id(&key).send().await.expect("create alias");
    (key, format!("arn:aws:kms:{}:{}:{name}", moto::REGION, moto::ACCOUNT))
}

fn s3_dest(bucket: &str, key: &str) -> Destination {
    Destination::aws_s3(bucket, "exports", moto::REGION, Some(key.into()))
}

#[tokio::test]
async fn an_alias_arn_is_resolved_to_its_key_arn_before_it_goes_into_a_policy() {
    let cfg = admin_config(&moto_url());
    let (key, alias) = key_with_alias(&cfg).await;
    let resolver = KmsKeyResolver::new(aws_sdk_kms::Client::new(&cfg));
    assert_eq!(resolver.key_arn(&alias).await.unwrap(), key, "DescribeKey on the alias answers the key's ARN");

    let bucket = unique_name("alias");
    let resolved = resolve_kms_key(&s3_dest(&bucket, &alias), "destination", &resolver).await.unwrap();
    assert_eq!(resolved, s3_dest(&bucket, &key));
    let role = format!("arn:aws:iam::{}:role/event-export-project-187520", moto::ACCOUNT);
    let policies = s3_policies(&resolved, &role).unwrap();
    let kms = policies.identity_policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "EventExportUseKey").cloned().unwrap();
    assert_eq!(kms["Resource"], key, "the key ARN, never the alias");
    assert_eq!(kms["Condition"]["StringEquals"]["kms:ViaService"], format!("s3.{}.amazonaws.com", moto::REGION));
    assert_eq!(
        policies.kms_key_policy_statement.unwrap()["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"],
        json!([format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/exports/*")])
    );
    // Unresolved, the alias is refused rather than put in a Resource.
    assert!(s3_policies(&s3_dest(&bucket, &alias), &role).unwrap_err().to_string().contains("Give the key's ARN"));
}

#[tokio::test]
async fn an_alias_that_does_not_exist_is_refused_and_its_connection_not_created() {
    let cfg = admin_config(&moto_url());
    let missing = format!("arn:aws:kms:{}:{}:alias/{}", moto::REGION, moto::ACCOUNT, unique_name("missing"));
    let resolver = KmsKeyResolver::new(aws_sdk_kms::Client::new(&cfg));
    let bucket = unique_name("noalias");
    create_bucket(&cfg, &bucket).await;

    let err = resolve_kms_key(&s3_dest(&bucket, &missing), "destination", &resolver).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidConfig");
    let text = err.to_string();
    assert!(text.contains("destination.kms_key_arn") && text.contains(&missing) && text.contains("could not be resolved"), "{text}");
    assert!(text.contains("not found") && text.contains("Give the key's ARN"), "{text}");

    // The test upload (base credentials, as exportctl --cloud runs it): the resolution is a
    // failed check naming what to give; a real alias is a passed one.
    let ctx = CloudContext { aws: Some(AwsContext::new(cfg.clone(), None).unwrap()), ..Default::default() };
    let report = probe_destination(&s3_dest(&bucket, &missing), "187520", &ctx).await;
    eprintln!("{}", report.table());
    // (The KMS checks go through S3, and moto's S3 does not look the key up, so only the
    // resolution fails here; on AWS the S3 put would name the missing key too.)
    assert_eq!(report.missing(), vec!["kms_key_arn as a key ARN (the alias could not be resolved)".to_string()], "{}", report.table());
    assert!(report.table().contains("Give the key's ARN"), "{}", report.table());
    let (_, alias) = key_with_alias(&cfg).await;
    let ok = probe_destination(&s3_dest(&bucket, &alias), "187520", &ctx).await;
    assert!(ok.all_passed(), "{}", ok.table());
    assert!(ok.results.iter().any(|r| r.check == "resolve KMS key alias" && r.passed()), "{}", ok.table());

    // Creating the connection: refused by its test upload, nothing stored or scheduled.
    let dir = tempfile::tempdir().unwrap();
    let control = ControlStore::new(
        Arc::new(LocalStore::new(dir.path().join("control")).unwrap()),
        Arc::new(LocalCipher::open_or_create(dir.path().join("secret.key")).unwrap()),
    );
    let schedules = LocalScheduler::new(dir.path().join("schedules")).unwrap();
    let conn = Connection::from_json(
        &json!({"id": "c-alias", "org_id": "42", "project_id": "187520", "destination": s3_dest(&bucket, &missing),
            "admins": ["admin@example.com"], "creator": "owner@example.com"})
        .to_string(),
    )
    .unwrap();
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339("2020-01-25T00:05:00Z").unwrap().with_timezone(&Utc);
    control.add_project(&exporter::control::projects::Project::new("187520", "42", false).unwrap()).await.unwrap();
    let err = create_connection(&control, &schedules, &FactoryProber::new(ctx), conn, now).await.unwrap_err();
    assert!(err.to_string().contains("kms_key_arn as a key ARN (the alias could not be resolved)"), "{err}");
    assert!(control.list_connections().await.unwrap().is_empty(), "nothing stored");
    assert_eq!(schedules.hourly_state("c-alias").await.unwrap(), None, "nothing scheduled");
}
