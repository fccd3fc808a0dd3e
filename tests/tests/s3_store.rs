//! The S3 adapter on a real moto server (no IAM enforcement): conformance through the
//! destination factory with a per-project role, multipart and SSE-KMS as S3 reports them,
//! create-only writes under contention, aborts, and error classification.

use std::sync::Arc;

use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;
use exporter::adapters::aws::AwsContext;
use exporter::adapters::factory::{open_store, CloudContext};
use exporter::adapters::s3::S3Store;
use exporter::connection::Destination;
use exporter::storage::{CreateOutcome, ObjectStore};
use exporter::ExportError;
use integration_tests::conformance::store_conformance;
use integration_tests::emulators::{moto_url, unique_name};
use integration_tests::moto::{self, admin_config, create_bucket, create_kms_key, s3_client, ROLE_TEMPLATE};

fn s3_dest(bucket: &str, kms: Option<String>) -> Destination {
    Destination::S3 { bucket: bucket.into(), prefix: "exports".into(), region: moto::REGION.into(), kms_key_arn: kms }
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
    let url = moto_url();
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
    let open_uploads = |admin: aws_sdk_s3::Client, bucket: String| async move {
        admin.list_multipart_uploads().bucket(bucket).send().await.unwrap().uploads().len()
    };

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
