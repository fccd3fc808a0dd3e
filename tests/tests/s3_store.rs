//! The S3 adapter on a real moto server (no IAM enforcement): conformance through the
//! destination factory with a per-project role, multipart and SSE-KMS as S3 reports them,
//! create-only writes under contention, aborts, and error classification.

use std::sync::Arc;

use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;
use exporter::adapters::aws::context::AwsContext;
use exporter::adapters::aws::s3::S3Store;
use exporter::model::destination::Destination;
use exporter::ports::{CreateOutcome, ObjectStore};
use exporter::runtime::factory::{open_store, CloudContext};
use exporter::ExportError;
use integration_tests::conformance::store_conformance;
use integration_tests::emulators::{moto_serial_url, moto_url, unique_name};
use integration_tests::moto::{self, admin_config, create_bucket, create_kms_key, s3_client, ROLE_TEMPLATE};

fn s3_dest(bucket: &str, kms: Option<String>) -> Destination {
    Destination::aws_s3(bucket, "exports", moto::REGION, kms)
}

/// A context whose project writes go through AssumeRole on `event-export-project-{id}`.
fn role_context(url: &str) -> CloudContext {
    let aws = AwsContext::new(admin_config(url), Some(ROLE_TEMPLATE.into())).expect("context");
    CloudContext { aws: Some(aws), ..Default::default() }
}

/// Every chunk of a 20 MiB upload in order; the conformance suite writes 300,007-byte chunks.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn s3_store_conforms_through_the_factory_with_a_project_role() {
    let url = moto_url();
    let bucket = unique_name("conf");
    create_bucket(&admin_config(&url), &bucket).await;
    let ctx = role_context(&url);
    let store = open_store(&s3_dest(&bucket, None), "187520", &ctx).await.expect("open S3 store");
    assert_eq!(store.describe(), format!("s3://{bucket}"));
    // 20 MiB: three multipart parts of 8 + 8 + 4 MiB.
    store_conformance(store, 20 << 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_exports_conform_with_sse_kms() {
    let url = moto_url();
    let cfg = admin_config(&url);
    let bucket = unique_name("conf-export");
    create_bucket(&cfg, &bucket).await;
    let key = create_kms_key(&cfg).await;
    let ctx = role_context(&url);
    let store = open_store(&s3_dest(&bucket, Some(key)), "187520", &ctx).await.expect("open S3 store");
    integration_tests::conformance::export_conformance(store).await;
}

#[tokio::test]
async fn large_uploads_are_multipart_and_small_ones_single_puts() {
    let url = moto_url();
    let cfg = admin_config(&url);
    let bucket = unique_name("mpu");
    create_bucket(&cfg, &bucket).await;
    let store = S3Store::new(s3_client(&cfg), &bucket);
    let data = pattern(20 << 20);
    let mut up = store.upload("big.bin").await.unwrap();
    for chunk in data.chunks(1 << 20) {
        up.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    up.finish().await.unwrap();
    let head = s3_client(&cfg).head_object().bucket(&bucket).key("big.bin").send().await.unwrap();
    // A multipart object's ETag is `md5-of-part-md5s-N`: N = 3 parts of 8, 8 and 4 MiB.
    assert!(head.e_tag().unwrap().trim_matches('"').ends_with("-3"), "etag {:?}", head.e_tag());
    assert_eq!(head.content_length(), Some(20 << 20));
    assert_eq!(&store.get("big.bin").await.unwrap()[..], &data[..]);

    let mut up = store.upload("small.bin").await.unwrap();
    up.write(Bytes::from_static(b"tiny")).await.unwrap();
    up.finish().await.unwrap();
    let head = s3_client(&cfg).head_object().bucket(&bucket).key("small.bin").send().await.unwrap();
    assert!(!head.e_tag().unwrap().contains('-'), "a small upload is a single PutObject, etag {:?}", head.e_tag());

    // An empty streaming upload still creates an (empty) object.
    let up = store.upload("empty.bin").await.unwrap();
    up.finish().await.unwrap();
    assert_eq!(store.head("empty.bin").await.unwrap().unwrap().size, 0);
}

#[tokio::test]
async fn sse_kms_is_on_every_object_written_with_a_key() {
    let url = moto_url();
    let cfg = admin_config(&url);
    let bucket = unique_name("kms");
    create_bucket(&cfg, &bucket).await;
    let key = create_kms_key(&cfg).await;
    let store = open_store(&s3_dest(&bucket, Some(key.clone())), "187521", &role_context(&url)).await.unwrap();

    store.put("exports/187521/small#0.json.gz", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(store.put_if_absent("exports/187521/claim", Bytes::from_static(b"o")).await.unwrap(), CreateOutcome::Created);
    let mut up = store.upload("exports/187521/big#1.json.gz").await.unwrap();
    up.write(Bytes::from(pattern(9 << 20))).await.unwrap();
    up.finish().await.unwrap();

    let admin = s3_client(&cfg);
    for k in ["exports/187521/small#0.json.gz", "exports/187521/claim", "exports/187521/big#1.json.gz"] {
        let head = admin.head_object().bucket(&bucket).key(k).send().await.unwrap();
        assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::AwsKms), "{k}");
        assert_eq!(head.ssekms_key_id(), Some(key.as_str()), "{k}");
    }
    // Without a key, nothing asks for KMS.
    let plain = S3Store::new(s3_client(&cfg), &bucket);
    plain.put("plain", Bytes::from_static(b"p")).await.unwrap();
    let head = admin.head_object().bucket(&bucket).key("plain").send().await.unwrap();
    assert_ne!(head.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
}

#[tokio::test]
async fn create_only_writes_have_exactly_one_winner() {
    // The single-threaded moto: the threaded one can let two create-only puts both win.
    let url = moto_serial_url();
    let cfg = admin_config(&url);
    let bucket = unique_name("claim");
    create_bucket(&cfg, &bucket).await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(s3_client(&cfg), &bucket));
    let mut tasks = Vec::new();
    for org in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { (org, store.put_if_absent("claims/s3/acme", Bytes::from(format!("org-{org}"))).await.unwrap()) }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (org, outcome) = t.await.unwrap();
        if outcome == CreateOutcome::Created {
            winners.push(org);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create-only write wins, got {winners:?}");
    assert_eq!(&store.get("claims/s3/acme").await.unwrap()[..], format!("org-{}", winners[0]).as_bytes());
}

#[tokio::test]
async fn aborted_and_abandoned_uploads_leave_no_multipart_upload() {
    let url = moto_url();
    let cfg = admin_config(&url);
    let bucket = unique_name("abort");
    create_bucket(&cfg, &bucket).await;
    let store = S3Store::new(s3_client(&cfg), &bucket);
    let admin = s3_client(&cfg);
    let open_uploads =
        |admin: aws_sdk_s3::Client, bucket: String| async move { admin.list_multipart_uploads().bucket(bucket).send().await.unwrap().uploads().len() };

    // 9 MiB: one full part is uploaded, so a multipart upload exists before the abort.
    let mut up = store.upload("aborted.bin").await.unwrap();
    up.write(Bytes::from(pattern(9 << 20))).await.unwrap();
    assert_eq!(open_uploads(admin.clone(), bucket.clone()).await, 1, "the multipart upload started once a part was full");
    up.abort().await.unwrap();
    assert_eq!(open_uploads(admin.clone(), bucket.clone()).await, 0);
    assert!(store.head("aborted.bin").await.unwrap().is_none());

    // Dropped without finish or abort (a cancelled export): aborted in the background.
    let mut up = store.upload("dropped.bin").await.unwrap();
    up.write(Bytes::from(pattern(9 << 20))).await.unwrap();
    drop(up);
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = open_uploads(admin.clone(), bucket.clone()).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "a dropped upload must be aborted");
}

#[tokio::test]
async fn missing_buckets_and_keys_are_named() {
    let url = moto_url();
    let cfg = admin_config(&url);
    let store = S3Store::new(s3_client(&cfg), unique_name("nobucket"));
    match store.put("k", Bytes::from_static(b"x")).await {
        Err(ExportError::DestinationMissing { resource, .. }) => assert!(resource.starts_with("s3://nobucket-"), "{resource}"),
        other => panic!("put to a missing bucket must be DestinationMissing, got {other:?}"),
    }
    match store.list("").await {
        Err(ExportError::DestinationMissing { .. }) => {}
        other => panic!("list of a missing bucket must be DestinationMissing, got {other:?}"),
    }
    let bucket = unique_name("keys");
    create_bucket(&cfg, &bucket).await;
    let store = S3Store::new(s3_client(&cfg), &bucket);
    assert!(matches!(store.get_stream("nope#1").await, Err(ExportError::NotFound { .. })));
    store.delete("nope#1").await.expect("deleting a missing key is fine");
}

#[tokio::test]
async fn project_role_credentials_are_assumed_once_and_cached() {
    let url = moto_url();
    let aws = AwsContext::new(admin_config(&url), Some(ROLE_TEMPLATE.into())).unwrap();
    let a = aws.project_identity("42").await.unwrap();
    assert_eq!(a.principal.as_deref(), Some("arn:aws:iam::123456789012:role/event-export-project-42"));
    let first = aws.resolve(&a).await.unwrap().expect("role credentials");
    assert!(first.session_token().is_some() && first.expiry().is_some());
    // moto issues a new key on every AssumeRole: the same key means the cache answered.
    let again = aws.resolve(&aws.project_identity("42").await.unwrap()).await.unwrap().unwrap();
    assert_eq!(first.access_key_id(), again.access_key_id());
    let other = aws.resolve(&aws.project_identity("43").await.unwrap()).await.unwrap().unwrap();
    assert_ne!(first.access_key_id(), other.access_key_id(), "each project has its own role session");
    // Without a template the base credentials are used and no principal is claimed.
    let base = AwsContext::new(admin_config(&url), None).unwrap();
    assert!(base.project_identity("42").await.unwrap().principal.is_none());
}

/// The export rules that depend on the destination, on S3 (until the shared
/// `export_conformance` exists): parts with `#` and SSE-KMS, the marker read back for the
/// recurring skip, and a replace that deletes stale parts.
#[tokio::test]
async fn export_on_s3_skips_marked_hours_and_replace_deletes_stale_parts() {
    use std::io::Read;

    use exporter::control::connection::{Connection, DataKinds, ProjectKind};
    use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
    use exporter::model::hour_request::ExportMode;
    use exporter::UtcHour;

    let url = moto_url();
    let cfg = admin_config(&url);
    let bucket = unique_name("export");
    create_bucket(&cfg, &bucket).await;
    let key = create_kms_key(&cfg).await;
    let project = "187522";
    let dest = s3_dest(&bucket, Some(key.clone()));
    let conn = Connection {
        id: "conn-s3".into(),
        org_id: "42".into(),
        project_id: project.into(),
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

    let lake_dir = tempfile::tempdir().unwrap();
    let hour_dir = lake_dir.path().join(format!("events/{project}/2020-01-25/17"));
    std::fs::create_dir_all(&hour_dir).unwrap();
    let mut lines = String::new();
    for i in 0..400 {
        lines.push_str(
            &serde_json::json!({
                "event_type": "click", "device_id": format!("d{i}"), "$insert_id": format!("i{i}"),
                "client_event_time": "2020-01-25 17:01:00.000000", "client_upload_time": "2020-01-25 17:01:01.000000",
                "server_received_time": "2020-01-25 17:01:02.000000", "server_upload_time": "2020-01-25 17:01:03.000000"
            })
            .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(hour_dir.join("a.json"), lines).unwrap();
    let lake: Arc<dyn ObjectStore> = Arc::new(exporter::adapters::local::store::LocalStore::new(lake_dir.path()).unwrap());
    let store = open_store(&dest, project, &role_context(&url)).await.unwrap();
    let targets = ExportTargets { lake, events: store.clone(), merged_ids: store.clone() };
    let hour = UtcHour::parse("2020-01-25T17").unwrap();
    let layout = conn.events_layout();
    let parts_in_s3 = || async { store.list(&layout.part_prefix(hour)).await.unwrap().into_iter().map(|m| m.key).collect::<Vec<_>>() };

    // Small parts: several parts for the hour.
    let small = ExportSettings::new(16 << 10, 6, 1).unwrap();
    let first = export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Replace, &small).await.unwrap();
    let first_parts = first.manifest.unwrap().events.unwrap().files.len();
    assert!(first_parts >= 3, "expected several parts, got {first_parts}");
    assert_eq!(parts_in_s3().await.len(), first_parts);
    let admin = s3_client(&cfg);
    let part0 = layout.part_key(hour, 0);
    let head = admin.head_object().bucket(&bucket).key(&part0).send().await.unwrap();
    assert_eq!(head.ssekms_key_id(), Some(key.as_str()), "parts carry the connection's key");

    // Recurring: the marker in S3 makes the hour a skip.
    let again = export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Recurring, &small).await.unwrap();
    assert!(again.skipped, "the complete marker must be read back from S3");

    // A stale extra part (as left by an older, differently split export) and a replace
    // with larger parts: the extra parts go, the marker comes back last.
    let stale = layout.part_key(hour, first_parts as u32 + 5);
    store.put(&stale, Bytes::from_static(b"stale")).await.unwrap();
    let big = ExportSettings::new(64 << 20, 6, 1).unwrap();
    let replaced = export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Replace, &big).await.unwrap();
    let report = replaced.manifest.unwrap().events.unwrap();
    assert_eq!(report.files.len(), 1);
    assert_eq!(parts_in_s3().await, vec![part0.clone()], "stale parts must be deleted on replace");
    assert!(store.head(&layout.complete_key(hour)).await.unwrap().is_some());

    // The part is plain gzip NDJSON holding every event.
    let gz = store.get(&part0).await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    assert_eq!(text.lines().count(), 400);
    assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object())));
}

/// A server that accepts connections and never answers: every client made from the
/// context (S3, and the control-plane clients built from its SDK configuration) gives up
/// within its timeouts with a retryable error instead of hanging the run.
#[tokio::test]
async fn a_stalled_endpoint_times_out_as_a_transient_error() {
    use exporter::adapters::aws::context::AwsTimeouts;
    use std::time::{Duration, Instant};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // read nothing, answer nothing
        }
    });
    let timeouts = AwsTimeouts {
        connect: Duration::from_secs(1),
        first_byte: Duration::from_secs(1),
        attempt: Duration::from_millis(1500),
        operation: Duration::from_secs(3),
    };
    let cfg = moto::sdk_config(&format!("http://{addr}"), "test", "test");
    let ctx = AwsContext::with_timeouts(cfg, None, timeouts).unwrap();

    let started = Instant::now();
    let err = ctx.own_bucket("stalled", moto::REGION).get("exports/k").await.expect_err("a server that never answers");
    assert!(matches!(err, ExportError::Transient { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "S3 gave up after {:?}", started.elapsed());

    let started = Instant::now();
    let ses = aws_sdk_ses::Client::new(ctx.sdk_config());
    let sent = ses.list_identities().send().await;
    assert!(sent.is_err() && started.elapsed() < Duration::from_secs(10), "SES gave up after {:?}: {sent:?}", started.elapsed());
}
