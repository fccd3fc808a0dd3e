//! The S3 probe suite and accessibility errors with moto's IAM enforcement on (the
//! MOTO_AUTH_URL instance). The exporter's base identity is an IAM user allowed to assume
//! `event-export-project-*`; each project role carries the generated identity policy,
//! with or without one action. Enforcement is global to the moto instance, so the tests
//! here take `auth_lock` and turn it off again when done.

use std::sync::Arc;

use exporter::access::policy::s3_policies;
use exporter::adapters::aws::context::AwsContext;
use exporter::adapters::local::store::LocalStore;
use exporter::control::connection::{Connection, DataKinds, ProjectKind};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
use exporter::model::destination::Destination;
use exporter::model::hour_request::ExportMode;
use exporter::model::probe_report::{ProbeOutcome, ProbeReport};
use exporter::ports::ObjectStore;
use exporter::runtime::factory::{open_store, probe_destination, CloudContext};
use exporter::{ExportError, UtcHour};
use integration_tests::emulators::{moto_auth_url, moto_url, unique_name};
use integration_tests::moto::{
    self, admin_config, create_bucket, create_kms_key, create_role, create_user, moto_enforceable, s3_client, sdk_config, without_action, AuthArmed,
    ROLE_TEMPLATE,
};
use serde_json::json;

const PERMISSIONS: [&str; 7] =
    ["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:DeleteObject", "s3:AbortMultipartUpload", "kms:GenerateDataKey", "kms:Decrypt"];

/// Numeric project ids unique to this run (roles persist in a long-lived moto).
fn project_ids(n: usize) -> Vec<String> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000;
    (0..n).map(|i| format!("{}{:06}{:02}", std::process::id(), nanos, i)).collect()
}

fn role_arn(project_id: &str) -> String {
    format!("arn:aws:iam::{}:role/event-export-project-{project_id}", moto::ACCOUNT)
}

fn s3_dest(bucket: &str, kms: Option<&str>) -> Destination {
    Destination::aws_s3(bucket, "exports/amplitude", moto::REGION, kms.map(str::to_string))
}

/// The exporter's base identity: may assume any project role, nothing else.
async fn exporter_user(admin: &aws_config::SdkConfig) -> (String, String, String) {
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": format!("arn:aws:iam::{}:role/event-export-project-*", moto::ACCOUNT) }]
    });
    create_user(admin, &unique_name("exporter"), &policy).await
}

fn context(url: &str, access_key: &str, secret: &str) -> CloudContext {
    let aws = AwsContext::new(sdk_config(url, access_key, secret), Some(ROLE_TEMPLATE.into())).unwrap();
    CloudContext { aws: Some(aws), ..Default::default() }
}

fn failed(report: &ProbeReport) -> Vec<(String, String)> {
    report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            ProbeOutcome::Fail { cause, .. } => Some((r.permission.clone(), cause.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn probe_suite_names_exactly_the_missing_permission() {
    let url = moto_auth_url();
    let _lock = moto::auth_lock().await;
    let admin = admin_config(&url);

    // --- setup, with enforcement off ---
    let bucket = unique_name("probe");
    create_bucket(&admin, &bucket).await;
    let key = create_kms_key(&admin).await;
    let dest = s3_dest(&bucket, Some(&key));
    let (user_arn, akid, secret) = exporter_user(&admin).await;
    let ids = project_ids(PERMISSIONS.len() + 2);
    // The identity policy is the same for every project (it names no principal).
    let generated = s3_policies(&dest, &role_arn(&ids[0])).unwrap();
    let full = moto_enforceable(&generated.identity_policy);
    for (i, perm) in PERMISSIONS.iter().enumerate() {
        let policy = without_action(&full, perm);
        assert_ne!(policy, full, "{perm} must be in the generated policy");
        create_role(&admin, &format!("event-export-project-{}", ids[i]), &user_arn, &policy).await;
    }
    let full_project = &ids[PERMISSIONS.len()];
    create_role(&admin, &format!("event-export-project-{full_project}"), &user_arn, &full).await;
    let missing_bucket = unique_name("nobucket");
    let missing_dest = s3_dest(&missing_bucket, Some(&key));
    let missing_project = &ids[PERMISSIONS.len() + 1];
    let missing_policy = moto_enforceable(&s3_policies(&missing_dest, &role_arn(missing_project)).unwrap().identity_policy);
    create_role(&admin, &format!("event-export-project-{missing_project}"), &user_arn, &missing_policy).await;

    let ctx = context(&url, &akid, &secret);
    let bad_secret_ctx = context(&url, &akid, "not-the-secret-of-this-key");
    // Without a role template the base credentials reach S3 directly.
    let bad_direct_ctx =
        CloudContext { aws: Some(AwsContext::new(sdk_config(&url, &akid, "not-the-secret-of-this-key"), None).unwrap()), ..Default::default() };

    // --- probes, with enforcement on ---
    let armed = AuthArmed::arm(&url);
    let mut lacking = Vec::new();
    for (i, perm) in PERMISSIONS.iter().enumerate() {
        lacking.push((*perm, probe_destination(&dest, &ids[i], &ctx).await));
    }
    let full_report = probe_destination(&dest, full_project, &ctx).await;
    let bad_secret = probe_destination(&dest, full_project, &bad_secret_ctx).await;
    let no_bucket = probe_destination(&missing_dest, missing_project, &ctx).await;
    let bad_direct = probe_destination(&dest, full_project, &bad_direct_ctx).await;
    drop(armed);

    // Printed for the record (cargo shows it for failing tests or with --nocapture).
    for report in lacking.iter().map(|(_, r)| r).chain([&full_report, &bad_secret, &bad_direct, &no_bucket]) {
        eprintln!("{}", report.table());
    }
    for (perm, report) in &lacking {
        if perm.starts_with("kms:") {
            // The KMS checks go through S3 (SSE-KMS put and get), as exports use the key
            // and as the generated key policy's kms:ViaService requires. moto never consults
            // KMS for SSE-KMS, so a role without the KMS action passes them here; a direct
            // KMS call would have been refused by moto's IAM enforcement.
            assert!(report.all_passed(), "lacking {perm}, the KMS checks (through S3) still pass on moto:\n{}", report.table());
            continue;
        }
        assert_eq!(report.missing(), vec![perm.to_string()], "lacking {perm}, the report must name exactly it:\n{}", report.table());
        assert_eq!(failed(report), vec![(perm.to_string(), "PermissionDenied".to_string())], "{}", report.table());
        assert!(report.principal.as_deref().is_some_and(|p| p.contains("event-export-project-")), "{}", report.table());
    }
    assert!(full_report.all_passed(), "the generated policy must pass every probe:\n{}", full_report.table());
    assert_eq!(full_report.results.len(), 10, "assume role + 7 S3 checks + 2 KMS checks:\n{}", full_report.table());
    assert_eq!(full_report.principal.as_deref(), Some(role_arn(full_project).as_str()));

    assert_eq!(bad_secret.missing(), vec!["valid credentials".to_string()], "{}", bad_secret.table());
    assert_eq!(failed(&bad_secret), vec![("valid credentials".to_string(), "BadCredentials".to_string())]);
    assert_eq!(bad_direct.missing(), vec!["valid credentials".to_string()], "{}", bad_direct.table());
    assert_eq!(failed(&bad_direct), vec![("valid credentials".to_string(), "BadCredentials".to_string())]);
    assert_eq!(bad_direct.results.len(), 9, "{}", bad_direct.table());
    assert!(bad_direct.results.iter().skip(1).all(|r| matches!(r.outcome, ProbeOutcome::Skipped { .. })), "{}", bad_direct.table());

    assert_eq!(no_bucket.missing(), vec!["bucket exists".to_string()], "{}", no_bucket.table());
    assert_eq!(failed(&no_bucket), vec![("bucket exists".to_string(), "DestinationMissing".to_string())]);
    // Without the bucket there is nothing to put the SSE-KMS probe object in.
    let kms_results: Vec<_> = no_bucket.results.iter().filter(|r| r.permission.starts_with("kms:")).collect();
    assert_eq!(kms_results.len(), 2, "{}", no_bucket.table());
    assert!(kms_results.iter().all(|r| matches!(r.outcome, ProbeOutcome::Skipped { .. })), "{}", no_bucket.table());

    // Probe objects and multipart uploads were cleaned up where the identity could.
    let admin_s3 = s3_client(&admin);
    let left = admin_s3.list_objects_v2().bucket(&bucket).prefix("exports/amplitude/_export_probe/").send().await.unwrap();
    let left: Vec<&str> = left.contents().iter().filter_map(|o| o.key()).collect();
    // Only the probe lacking s3:DeleteObject leaves objects: its round-trip object and its
    // SSE-KMS probe object, both named in its report.
    assert_eq!(left.len(), 2, "only the probe lacking s3:DeleteObject leaves its objects: {left:?}");
    let no_delete = &lacking.iter().find(|(p, _)| *p == "s3:DeleteObject").unwrap().1.table();
    for key in &left {
        assert!(no_delete.contains(key), "{key} is named in the report:\n{no_delete}");
    }
    assert!(left.iter().any(|k| k.contains("/kms-probe-")), "{left:?}");
    let uploads = admin_s3.list_multipart_uploads().bucket(&bucket).send().await.unwrap();
    assert_eq!(uploads.uploads().len(), 1, "only the probe lacking s3:AbortMultipartUpload leaves an upload");
}

/// One raw event in the lake for `hour`.
fn lake_with_events(project_id: &str) -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("events/{project_id}/2020-01-25/17"));
    std::fs::create_dir_all(&path).unwrap();
    let mut lines = String::new();
    for i in 0..50 {
        lines.push_str(
            &json!({
                "event_type": "click", "device_id": format!("d{i}"), "$insert_id": format!("i{i}"), "user_id": "u",
                "client_event_time": "2020-01-25 17:01:00.000000", "client_upload_time": "2020-01-25 17:01:01.000000",
                "server_received_time": "2020-01-25 17:01:02.000000", "server_upload_time": "2020-01-25 17:01:03.000000"
            })
            .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(path.join("a.json"), lines).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    (dir, store)
}

#[tokio::test]
async fn export_to_a_bucket_the_role_cannot_write_names_the_permission_and_leaves_no_marker() {
    let url = moto_auth_url();
    let _lock = moto::auth_lock().await;
    let admin = admin_config(&url);
    let bucket = unique_name("nowrite");
    create_bucket(&admin, &bucket).await;
    let dest = s3_dest(&bucket, None);
    let project = project_ids(1).remove(0);
    let (user_arn, akid, secret) = exporter_user(&admin).await;
    let policy = without_action(&moto_enforceable(&s3_policies(&dest, &role_arn(&project)).unwrap().identity_policy), "s3:PutObject");
    create_role(&admin, &format!("event-export-project-{project}"), &user_arn, &policy).await;
    let ctx = context(&url, &akid, &secret);
    let conn = Connection {
        id: "conn-nowrite".into(),
        org_id: "42".into(),
        project_id: project.clone(),
        project_kind: ProjectKind::Standard,
        export: DataKinds { events: true, merged_ids: false },
        filter: None,
        destination: dest.clone(),
        merged_ids_destination: None,
        admins: vec![],
        creator: "owner@example.com".into(),
        complete_markers: true,
        timestamp_format: Default::default(),
        format: Default::default(),
        layout: Default::default(),
        table: Default::default(),
        webhook: None,
        failure_webhook: None,
        fields: None,
        enabled: true,
        created: None,
        owes_from: None,
    };
    conn.validate().unwrap();
    let (_lake_dir, lake) = lake_with_events(&project);
    let hour = UtcHour::parse("2020-01-25T17").unwrap();
    let settings = ExportSettings::new(1 << 20, 6, 1).unwrap();

    let armed = AuthArmed::arm(&url);
    let store = open_store(&dest, &project, &ctx).await.expect("the role can be assumed");
    let targets = ExportTargets { lake, events: store.clone(), merged_ids: store };
    let result = export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Recurring, &settings).await;
    drop(armed);

    match result {
        Err(ExportError::PermissionDenied { operation, resource, permission, principal, .. }) => {
            assert_eq!(permission, "s3:PutObject");
            assert!(["PutObject", "CreateMultipartUpload", "UploadPart"].contains(&operation.as_str()), "operation {operation}");
            assert!(resource.starts_with(&format!("s3://{bucket}/exports/amplitude/{project}/")), "resource {resource}");
            assert_eq!(principal.as_deref(), Some(role_arn(&project).as_str()));
        }
        other => panic!("expected a PermissionDenied naming s3:PutObject, got {other:?}"),
    }
    let objects = s3_client(&admin).list_objects_v2().bucket(&bucket).send().await.unwrap();
    let keys: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
    assert!(!keys.iter().any(|k| k.ends_with("_complete")), "no complete marker may be left: {keys:?}");
    assert!(keys.is_empty(), "nothing may be written: {keys:?}");

    // Control: once the role has the generated policy's write access, the same export
    // succeeds and writes its marker, so the failure above was the missing permission.
    let full = moto_enforceable(&s3_policies(&dest, &role_arn(&project)).unwrap().identity_policy);
    aws_sdk_iam::Client::new(&admin)
        .put_role_policy()
        .role_name(format!("event-export-project-{project}"))
        .policy_name("event-export")
        .policy_document(full.to_string())
        .send()
        .await
        .unwrap();
    let armed = AuthArmed::arm(&url);
    let report = export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Recurring, &settings).await;
    drop(armed);
    let report = report.expect("export with the generated policy");
    assert_eq!(report.manifest.as_ref().and_then(|m| m.events.as_ref()).map(|e| e.files.len()), Some(1));
    let marker = format!("exports/amplitude/{project}/{project}_2020-01-25_17_complete");
    assert!(s3_client(&admin).head_object().bucket(&bucket).key(&marker).send().await.is_ok(), "marker {marker} written");
}

#[tokio::test]
async fn an_sse_kms_destination_passes_the_probe_and_keeps_no_probe_object() {
    let admin = admin_config(&moto_url());
    let bucket = unique_name("kmsprobe");
    create_bucket(&admin, &bucket).await;
    let key = create_kms_key(&admin).await;
    let ctx = CloudContext { aws: Some(AwsContext::new(admin.clone(), None).unwrap()), ..Default::default() };
    let report = probe_destination(&s3_dest(&bucket, Some(&key)), "187520", &ctx).await;
    eprintln!("{}", report.table());
    assert!(report.all_passed(), "{}", report.table());
    let kms: Vec<&str> = report.results.iter().filter(|r| r.permission.starts_with("kms:")).map(|r| r.check.as_str()).collect();
    assert_eq!(kms, ["generate data key", "decrypt data key"], "{}", report.table());
    let left = s3_client(&admin).list_objects_v2().bucket(&bucket).send().await.unwrap();
    let left: Vec<&str> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert!(left.is_empty(), "no probe object is left behind: {left:?}");
}
