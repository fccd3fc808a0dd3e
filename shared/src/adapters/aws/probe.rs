//! The S3 probe suite: the "test upload" before a connection is activated, `exportctl
//! verify`, and the diagnosis after an accessibility failure. Every probe that can run
//! runs, so one report lists every missing permission at once; a probe that depends on
//! one that failed is reported as skipped, not as a second failure.
//!
//! Order: the factory's preamble (AssumeRole of the project role), the bucket, the shared
//! round trip through the store (put with the export's SSE-KMS headers, read, list,
//! delete), a multipart upload started and aborted, then the KMS key. The key is probed
//! through S3, never with direct KMS calls: the key policy `exportctl policy` generates
//! lets the project role use the key only with `kms:ViaService = s3.<region>.amazonaws.com`
//! and the bucket's `aws:s3:arn` encryption context, so a direct GenerateDataKey or
//! Decrypt is refused on AWS even when exports would work. The "generate data key" check
//! is an SSE-KMS put of a probe object (S3 calls kms:GenerateDataKey for us), "decrypt
//! data key" reads it back (S3 calls kms:Decrypt); S3 names the refused KMS action in its
//! AccessDenied, which [`classify`] maps to that permission. moto never consults KMS for
//! SSE-KMS, so there these checks only show that the S3 calls with the key's headers work.
//!
//! On an S3-compatible store (R2, MinIO, GCS, ...) the same suite runs against its endpoint
//! with the connection's access key, with two differences: the bucket is checked by listing
//! under the prefix (GetBucketLocation needs a bucket-level permission that object-scoped
//! keys, e.g. GCS's Storage Object Admin, do not have), and there is no KMS key to check.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::access::probe::{round_trip, RoundTripChecks};
use crate::adapters::aws::errors::{classify, AwsOp, CompatibleEndpoint, OpContext};
use crate::adapters::aws::s3::S3Store;
use crate::error::ExportError;
use crate::model::probe_report::{ProbeOutcome, ProbeReport, ProbeResult, PROBE_DIR};
use crate::ports::{join_key, AccessProbe, ObjectStore};

const BUCKET_CHECK: (&str, &str) = ("bucket reachable", "s3:GetBucketLocation");
/// On an S3-compatible store the bucket is reached by listing under the prefix.
const COMPATIBLE_BUCKET_CHECK: (&str, &str) = ("bucket reachable", "s3:ListBucket");
const ROUND_TRIP: RoundTripChecks = RoundTripChecks {
    write: ("put probe object", "s3:PutObject"),
    read: ("read probe object", "s3:GetObject"),
    list: ("list under prefix", "s3:ListBucket"),
    delete: ("delete probe object", "s3:DeleteObject"),
    read_answers_without_object: false,
};
const MULTIPART_CHECKS: [(&str, &str); 2] = [("start multipart upload", "s3:PutObject"), ("abort multipart upload", "s3:AbortMultipartUpload")];
const KMS_CHECKS: [(&str, &str); 2] = [("generate data key", "kms:GenerateDataKey"), ("decrypt data key", "kms:Decrypt")];

/// Probes one S3 destination with the identity the exporter writes with.
pub struct S3Probe {
    store: S3Store,
    prefix: String,
    kms_key: Option<String>,
    principal: Option<String>,
    /// Results to put first (the AssumeRole that produced the credentials).
    preamble: Vec<ProbeResult>,
}

impl S3Probe {
    /// The key, if any, is probed through S3 (see the module doc), so no KMS client is needed.
    pub fn new(s3: aws_sdk_s3::Client, bucket: &str, prefix: &str, kms_key: Option<&str>, principal: Option<String>) -> Self {
        let store = S3Store::new(s3, bucket).with_kms_key(kms_key.map(str::to_string)).with_principal(principal.clone());
        S3Probe { store, prefix: prefix.trim_matches('/').to_string(), kms_key: kms_key.map(str::to_string), principal, preamble: Vec::new() }
    }

    /// Probes an S3-compatible store at `endpoint` (the client must already point there and
    /// sign with its access key): the access key is the principal reported.
    pub fn on_compatible_endpoint(mut self, endpoint: CompatibleEndpoint) -> Self {
        self.principal = Some(endpoint.principal());
        self.store = self.store.on_compatible_endpoint(endpoint);
        self
    }

    fn bucket_check_names(&self) -> (&'static str, &'static str) {
        if self.store.endpoint().is_some() {
            COMPATIBLE_BUCKET_CHECK
        } else {
            BUCKET_CHECK
        }
    }

    /// Results placed before the S3 checks (used by the factory for AssumeRole).
    pub fn with_preamble(mut self, results: Vec<ProbeResult>) -> Self {
        self.preamble = results;
        self
    }

    fn bucket(&self) -> &str {
        self.store.bucket()
    }

    /// `s3://bucket/prefix`, or `https://endpoint/bucket/prefix` on an S3-compatible store.
    fn destination(&self) -> String {
        let base = self.store.describe();
        if self.prefix.is_empty() {
            base
        } else {
            format!("{base}/{}", self.prefix)
        }
    }

    fn ctx(&self, op: AwsOp, key: &str) -> OpContext {
        let resource = if key.is_empty() { format!("s3://{}", self.bucket()) } else { format!("s3://{}/{key}", self.bucket()) };
        OpContext::new(op, resource, self.principal.as_deref()).on_endpoint(self.store.endpoint())
    }

    /// The checks that follow the bucket, skipped for `reason`.
    fn skip_s3_checks(results: &mut Vec<ProbeResult>, reason: &str) {
        for (check, perm) in [ROUND_TRIP.write, ROUND_TRIP.read, ROUND_TRIP.list, ROUND_TRIP.delete].into_iter().chain(MULTIPART_CHECKS) {
            results.push(ProbeResult::skipped(check, perm, reason));
        }
    }

    /// GetBucketLocation rather than HeadBucket: it is the action the generated policy
    /// grants, and it answers NoSuchBucket with a body. On an S3-compatible store, a
    /// one-key listing under the prefix (it answers NoSuchBucket with a body too).
    async fn bucket_check(&self) -> Result<(), ExportError> {
        if self.store.endpoint().is_some() {
            let prefix = join_key(&self.prefix, "");
            return self
                .store
                .client()
                .list_objects_v2()
                .bucket(self.bucket())
                .prefix(prefix.as_str())
                .max_keys(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(e, &self.ctx(AwsOp::ListObjects, &prefix)));
        }
        self.store
            .client()
            .get_bucket_location()
            .bucket(self.bucket())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, &self.ctx(AwsOp::GetBucketLocation, "")))
    }

    /// Starts a multipart upload with the export's SSE-KMS headers and aborts it. Starting
    /// needs `s3:PutObject`: when the put was refused for that, it would only repeat it.
    async fn multipart_checks(&self, put_refused: bool, results: &mut Vec<ProbeResult>, principal: &mut Option<String>) {
        let [(start_check, start_perm), (abort_check, abort_perm)] = MULTIPART_CHECKS;
        if put_refused {
            results.push(ProbeResult::skipped(start_check, start_perm, "s3:PutObject was refused for the probe object"));
            results.push(ProbeResult::skipped(abort_check, abort_perm, "no multipart upload to abort"));
            return;
        }
        let key = join_key(&self.prefix, &format!("{PROBE_DIR}/multipart-probe"));
        let s3 = self.store.client();
        let mut create = s3.create_multipart_upload().bucket(self.bucket()).key(&key);
        if let Some(k) = &self.kms_key {
            create = create.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k);
        }
        let upload_id = match create.send().await {
            Ok(out) => {
                results.push(ProbeResult::pass(start_check, start_perm));
                out.upload_id().unwrap_or_default().to_string()
            }
            Err(e) => {
                let err = classify(e, &self.ctx(AwsOp::CreateMultipartUpload, &key));
                note_principal(principal, &err);
                results.push(failure(start_check, start_perm, &err));
                results.push(ProbeResult::skipped(abort_check, abort_perm, "the multipart upload could not be started"));
                return;
            }
        };
        match s3.abort_multipart_upload().bucket(self.bucket()).key(&key).upload_id(&upload_id).send().await {
            Ok(_) => results.push(ProbeResult::pass(abort_check, abort_perm)),
            Err(e) => {
                let err = classify(e, &self.ctx(AwsOp::AbortMultipartUpload, &key));
                note_principal(principal, &err);
                results.push(failure(abort_check, abort_perm, &err));
            }
        }
    }

    /// Uses the bucket's key the way exports do, through S3: a small probe object put with
    /// SSE-KMS under this key (S3 calls kms:GenerateDataKey for us), read back and compared
    /// (S3 calls kms:Decrypt), then deleted. `skip` is the reason both checks cannot run;
    /// `get_refused` skips the read when the round trip's read was refused by S3 itself.
    /// Returns the probe object's location when it could not be deleted.
    async fn kms_checks(
        &self,
        key_id: &str,
        skip: Option<&str>,
        get_refused: bool,
        results: &mut Vec<ProbeResult>,
        principal: &mut Option<String>,
    ) -> Option<String> {
        let [(gen_check, gen_perm), (dec_check, dec_perm)] = KMS_CHECKS;
        if let Some(reason) = skip {
            results.push(ProbeResult::skipped(gen_check, gen_perm, reason));
            results.push(ProbeResult::skipped(dec_check, dec_perm, reason));
            return None;
        }
        let key = join_key(&self.prefix, &format!("{PROBE_DIR}/{}", kms_probe_name()));
        let body = format!("event export KMS probe for {}\n", self.destination()).into_bytes();
        let s3 = self.store.client();
        let put = s3
            .put_object()
            .bucket(self.bucket())
            .key(&key)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_id)
            .body(ByteStream::from(body.clone()))
            .send()
            .await;
        if let Err(e) = put {
            let err = classify(e, &self.ctx(AwsOp::PutObject, &key));
            note_principal(principal, &err);
            results.push(kms_failure(gen_check, gen_perm, &err));
            results.push(ProbeResult::skipped(dec_check, dec_perm, "no SSE-KMS probe object to read: the put failed"));
            return None;
        }
        results.push(ProbeResult::pass(gen_check, gen_perm));
        if get_refused {
            results.push(ProbeResult::skipped(dec_check, dec_perm, "s3:GetObject was refused for the probe object"));
        } else {
            let got = match s3.get_object().bucket(self.bucket()).key(&key).send().await {
                Ok(out) => out
                    .body
                    .collect()
                    .await
                    .map(|d| d.into_bytes())
                    .map_err(|e| ExportError::transient("GetObject", format!("reading s3://{}/{key} failed: {e}", self.bucket()))),
                Err(e) => Err(classify(e, &self.ctx(AwsOp::GetObject, &key))),
            };
            match got {
                Ok(b) if b.as_ref() == body.as_slice() => results.push(ProbeResult::pass(dec_check, dec_perm)),
                Ok(_) => results.push(ProbeResult::fail(
                    dec_check,
                    dec_perm,
                    &ExportError::Corrupt {
                        what: format!("s3://{}/{key}", self.bucket()),
                        detail: "the SSE-KMS probe object read back differs from what was written".into(),
                    },
                )),
                Err(err) => {
                    note_principal(principal, &err);
                    results.push(kms_failure(dec_check, dec_perm, &err));
                }
            }
        }
        // Best effort: a refused delete is the round trip's "delete probe object" failure.
        match s3.delete_object().bucket(self.bucket()).key(&key).send().await {
            Ok(_) => None,
            Err(e) => {
                let err = classify(e, &self.ctx(AwsOp::DeleteObject, &key));
                tracing::warn!(key = %key, error = %err, "the KMS probe object could not be deleted");
                Some(format!("s3://{}/{key}", self.bucket()))
            }
        }
    }
}

/// `kms-probe-{millis}-{random}`: probes of one destination running at once never collide.
fn kms_probe_name() -> String {
    use rand::Rng;
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("kms-probe-{millis}-{:08x}", rand::thread_rng().gen::<u32>())
}

/// What a failed probe names: the permission AWS refused, or the cause when the failure
/// is not about a permission (missing bucket, rejected credentials).
fn failure(check: &str, needed: &str, err: &ExportError) -> ProbeResult {
    let named = match err {
        ExportError::PermissionDenied { permission, .. } => permission.as_str(),
        ExportError::DestinationMissing { .. } => "bucket exists",
        ExportError::BadCredentials { .. } => "valid credentials",
        _ => needed,
    };
    ProbeResult::fail(check, named, err)
}

/// Like [`failure`], but a key S3 cannot use (`KMS.NotFoundException`,
/// `KMS.DisabledException`) is named as such, not as a missing KMS permission.
fn kms_failure(check: &str, needed: &str, err: &ExportError) -> ProbeResult {
    match err {
        ExportError::AccessBlocked { .. } => ProbeResult::fail(check, "KMS key exists and is enabled", err),
        _ => failure(check, needed, err),
    }
}

/// The identity AWS named in a refusal, when the probe did not know it.
fn note_principal(principal: &mut Option<String>, err: &ExportError) {
    if let ExportError::PermissionDenied { principal: Some(p), .. } = err {
        principal.get_or_insert_with(|| p.clone());
    }
}

#[async_trait]
impl AccessProbe for S3Probe {
    async fn probe(&self) -> ProbeReport {
        let mut results = self.preamble.clone();
        let mut principal = self.principal.clone();
        let bucket_check = self.bucket_check_names();
        if let Some(failed) = results.iter().find(|r| r.failed()) {
            let reason = format!("{} failed", failed.check);
            results.push(ProbeResult::skipped(bucket_check.0, bucket_check.1, &reason));
            Self::skip_s3_checks(&mut results, &reason);
            if self.kms_key.is_some() {
                for (check, perm) in KMS_CHECKS {
                    results.push(ProbeResult::skipped(check, perm, &reason));
                }
            }
            return ProbeReport { destination: self.destination(), principal, results };
        }

        let bucket = self.bucket_check().await;
        // Rejected credentials make every later call pointless; without the bucket there is
        // nothing to put, so the key (probed through S3) is skipped too.
        let halt = matches!(bucket, Err(ExportError::BadCredentials { .. })).then_some("credentials were rejected");
        let skip_s3 = halt.or(matches!(bucket, Err(ExportError::DestinationMissing { .. })).then_some("the bucket does not exist"));
        // The KMS checks are S3 calls: one S3 itself refused would only be repeated.
        let mut kms_skip = skip_s3;
        let mut get_refused = false;
        match bucket {
            Ok(()) => results.push(ProbeResult::pass(bucket_check.0, bucket_check.1)),
            Err(err) => {
                note_principal(&mut principal, &err);
                results.push(failure(bucket_check.0, bucket_check.1, &err));
            }
        }
        match skip_s3 {
            Some(reason) => Self::skip_s3_checks(&mut results, reason),
            None => {
                let trip = round_trip(&self.store, &self.prefix, &ROUND_TRIP).await;
                trip.outcomes().into_iter().filter_map(|o| o.as_ref().err()).for_each(|e| note_principal(&mut principal, e));
                let put_refused = matches!(&trip.write, Err(ExportError::PermissionDenied { permission, .. }) if permission == "s3:PutObject");
                get_refused = matches!(&trip.read, Some(Err(ExportError::PermissionDenied { permission, .. })) if permission == "s3:GetObject");
                if put_refused {
                    kms_skip = Some("s3:PutObject was refused for the probe object");
                }
                results.extend(trip.results(&ROUND_TRIP, failure));
                self.multipart_checks(put_refused, &mut results, &mut principal).await;
            }
        }
        if let Some(key) = &self.kms_key {
            if let Some(left) = self.kms_checks(key, kms_skip, get_refused, &mut results, &mut principal).await {
                // Named where the round trip names its own left-behind object.
                if let Some(ProbeOutcome::Fail { detail, .. }) = results.iter_mut().find(|r| r.check == ROUND_TRIP.delete.0).map(|r| &mut r.outcome) {
                    detail.push_str(&format!(" (the KMS probe object {left} was left behind too; delete it by hand)"));
                }
            }
        }
        ProbeReport { destination: self.destination(), principal, results }
    }
}
