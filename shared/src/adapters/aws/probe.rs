//! The S3 probe suite: the "test upload" before a connection is activated, `exportctl
//! verify`, and the diagnosis after an accessibility failure. Every probe that can run
//! runs, so one report lists every missing permission at once; a probe that depends on
//! one that failed is reported as skipped, not as a second failure.
//!
//! Order: the factory's preamble (AssumeRole of the project role), the bucket, the shared
//! round trip through the store (put with the export's SSE-KMS headers, read, list,
//! delete), a multipart upload started and aborted, then the KMS key. KMS is probed with
//! direct GenerateDataKey/Decrypt calls made with the exporter's credentials: that is what
//! S3 does on our behalf for SSE-KMS puts and gets, and it is the only check that works
//! against moto, whose SSE-KMS puts never consult KMS.

use async_trait::async_trait;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::access::probe::{round_trip, ProbeReport, ProbeResult, RoundTripChecks, PROBE_DIR};
use crate::adapters::aws::errors::{classify, AwsOp, OpContext};
use crate::adapters::aws::s3::S3Store;
use crate::error::ExportError;
use crate::ports::{join_key, AccessProbe};

const BUCKET_CHECK: (&str, &str) = ("bucket reachable", "s3:GetBucketLocation");
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
    kms: Option<aws_sdk_kms::Client>,
    prefix: String,
    kms_key: Option<String>,
    principal: Option<String>,
    /// Results to put first (the AssumeRole that produced the credentials).
    preamble: Vec<ProbeResult>,
}

impl S3Probe {
    /// `kms` must be a client in the key's region when `kms_key` is set.
    pub fn new(s3: aws_sdk_s3::Client, kms: Option<aws_sdk_kms::Client>, bucket: &str, prefix: &str, kms_key: Option<&str>, principal: Option<String>) -> Self {
        let store = S3Store::new(s3, bucket).with_kms_key(kms_key.map(str::to_string)).with_principal(principal.clone());
        S3Probe { store, kms, prefix: prefix.trim_matches('/').to_string(), kms_key: kms_key.map(str::to_string), principal, preamble: Vec::new() }
    }

    /// Results placed before the S3 checks (used by the factory for AssumeRole).
    pub fn with_preamble(mut self, results: Vec<ProbeResult>) -> Self {
        self.preamble = results;
        self
    }

    fn bucket(&self) -> &str {
        self.store.bucket()
    }

    fn destination(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket())
        } else {
            format!("s3://{}/{}", self.bucket(), self.prefix)
        }
    }

    fn ctx(&self, op: AwsOp, key: &str) -> OpContext {
        let resource = if key.is_empty() { format!("s3://{}", self.bucket()) } else { format!("s3://{}/{key}", self.bucket()) };
        OpContext::new(op, resource, self.principal.as_deref())
    }

    fn kms_ctx(&self, op: AwsOp) -> OpContext {
        OpContext::new(op, self.kms_key.clone().unwrap_or_default(), self.principal.as_deref())
    }

    /// The checks that follow the bucket, skipped for `reason`.
    fn skip_s3_checks(results: &mut Vec<ProbeResult>, reason: &str) {
        for (check, perm) in [ROUND_TRIP.write, ROUND_TRIP.read, ROUND_TRIP.list, ROUND_TRIP.delete].into_iter().chain(MULTIPART_CHECKS) {
            results.push(ProbeResult::skipped(check, perm, reason));
        }
    }

    /// GetBucketLocation rather than HeadBucket: it is the action the generated policy
    /// grants, and it answers NoSuchBucket with a body.
    async fn bucket_check(&self) -> Result<(), ExportError> {
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

    /// Generates a data key with the bucket's key and decrypts it again.
    async fn kms_checks(&self, key: &str, halt: Option<&str>, results: &mut Vec<ProbeResult>, principal: &mut Option<String>) {
        let [(gen_check, gen_perm), (dec_check, dec_perm)] = KMS_CHECKS;
        let kms = match (halt, &self.kms) {
            (Some(reason), _) => {
                results.push(ProbeResult::skipped(gen_check, gen_perm, reason));
                results.push(ProbeResult::skipped(dec_check, dec_perm, reason));
                return;
            }
            (None, None) => {
                results.push(ProbeResult::fail(gen_check, gen_perm, &ExportError::Internal("no KMS client was configured for the probe".into())));
                results.push(ProbeResult::skipped(dec_check, dec_perm, "no data key to decrypt"));
                return;
            }
            (None, Some(kms)) => kms,
        };
        let generated = match kms.generate_data_key().key_id(key).key_spec(DataKeySpec::Aes256).send().await {
            Ok(out) => out,
            Err(e) => {
                let err = classify(e, &self.kms_ctx(AwsOp::KmsGenerateDataKey));
                note_principal(principal, &err);
                results.push(kms_failure(gen_check, gen_perm, &err));
                results.push(ProbeResult::skipped(dec_check, dec_perm, "no data key to decrypt: GenerateDataKey failed"));
                return;
            }
        };
        results.push(ProbeResult::pass(gen_check, gen_perm));
        let blob = generated.ciphertext_blob().cloned().unwrap_or_else(|| aws_sdk_kms::primitives::Blob::new(Vec::new()));
        match kms.decrypt().key_id(key).ciphertext_blob(blob).send().await {
            // Compared, never printed: this is key material.
            Ok(dec) if dec.plaintext().map(|p| p.as_ref()) == generated.plaintext().map(|p| p.as_ref()) => results.push(ProbeResult::pass(dec_check, dec_perm)),
            Ok(_) => results.push(ProbeResult::fail(
                dec_check,
                dec_perm,
                &ExportError::Internal("KMS Decrypt returned a different data key than GenerateDataKey".into()),
            )),
            Err(e) => {
                let err = classify(e, &self.kms_ctx(AwsOp::KmsDecrypt));
                note_principal(principal, &err);
                results.push(kms_failure(dec_check, dec_perm, &err));
            }
        }
    }
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

/// Like [`failure`], but a missing KMS key is named as such, not as a missing bucket.
fn kms_failure(check: &str, needed: &str, err: &ExportError) -> ProbeResult {
    match err {
        ExportError::DestinationMissing { .. } => ProbeResult::fail(check, "KMS key exists", err),
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
        if let Some(failed) = results.iter().find(|r| r.failed()) {
            let reason = format!("{} failed", failed.check);
            results.push(ProbeResult::skipped(BUCKET_CHECK.0, BUCKET_CHECK.1, &reason));
            Self::skip_s3_checks(&mut results, &reason);
            if self.kms_key.is_some() {
                for (check, perm) in KMS_CHECKS {
                    results.push(ProbeResult::skipped(check, perm, &reason));
                }
            }
            return ProbeReport { destination: self.destination(), principal, results };
        }

        let bucket = self.bucket_check().await;
        // Rejected credentials make every later call pointless; a missing bucket skips the
        // S3 checks, but the key is still checked.
        let halt = matches!(bucket, Err(ExportError::BadCredentials { .. })).then_some("credentials were rejected");
        let skip_s3 = halt.or(matches!(bucket, Err(ExportError::DestinationMissing { .. })).then_some("the bucket does not exist"));
        match bucket {
            Ok(()) => results.push(ProbeResult::pass(BUCKET_CHECK.0, BUCKET_CHECK.1)),
            Err(err) => {
                note_principal(&mut principal, &err);
                results.push(failure(BUCKET_CHECK.0, BUCKET_CHECK.1, &err));
            }
        }
        match skip_s3 {
            Some(reason) => Self::skip_s3_checks(&mut results, reason),
            None => {
                let trip = round_trip(&self.store, &self.prefix, &ROUND_TRIP).await;
                trip.outcomes().into_iter().filter_map(|o| o.as_ref().err()).for_each(|e| note_principal(&mut principal, e));
                let put_refused = matches!(&trip.write, Err(ExportError::PermissionDenied { permission, .. }) if permission == "s3:PutObject");
                results.extend(trip.results(&ROUND_TRIP, failure));
                self.multipart_checks(put_refused, &mut results, &mut principal).await;
            }
        }
        if let Some(key) = &self.kms_key {
            self.kms_checks(key, halt, &mut results, &mut principal).await;
        }
        ProbeReport { destination: self.destination(), principal, results }
    }
}
