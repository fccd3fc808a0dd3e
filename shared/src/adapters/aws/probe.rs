//! The S3 probe suite: the "test upload" before a connection is activated, `exportctl
//! verify`, and the diagnosis after an accessibility failure. Every probe that can run
//! runs, so one report lists every missing permission at once; a probe that depends on
//! one that failed is reported as skipped, not as a second failure.
//!
//! KMS is probed with direct GenerateDataKey/Decrypt calls made with the exporter's
//! credentials: that is what S3 does on our behalf for SSE-KMS puts and gets, and it is
//! the only check that works against moto, whose SSE-KMS puts never consult KMS.

use async_trait::async_trait;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;

use crate::access::probe::{ProbeReport, ProbeResult};
use crate::adapters::aws::errors::{classify, AwsOp, OpContext};
use crate::error::ExportError;
use crate::ports::join_key;
use crate::ports::AccessProbe;

/// Folder under the connection prefix that holds probe objects (removed by the probe).
pub const PROBE_DIR: &str = "_export_probe";

/// Probes one S3 destination with the identity the exporter writes with.
pub struct S3Probe {
    s3: aws_sdk_s3::Client,
    kms: Option<aws_sdk_kms::Client>,
    bucket: String,
    prefix: String,
    kms_key: Option<String>,
    principal: Option<String>,
    /// A result to put first (e.g. the AssumeRole that produced the credentials).
    preamble: Vec<ProbeResult>,
}

impl S3Probe {
    /// `kms` must be a client in the key's region when `kms_key` is set.
    pub fn new(s3: aws_sdk_s3::Client, kms: Option<aws_sdk_kms::Client>, bucket: &str, prefix: &str, kms_key: Option<&str>, principal: Option<String>) -> Self {
        S3Probe {
            s3,
            kms,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            kms_key: kms_key.map(str::to_string),
            principal,
            preamble: Vec::new(),
        }
    }

    /// Results placed before the S3 checks (used by the factory for AssumeRole).
    pub fn with_preamble(mut self, results: Vec<ProbeResult>) -> Self {
        self.preamble = results;
        self
    }

    fn destination(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn ctx(&self, op: AwsOp, key: &str) -> OpContext {
        let resource = if key.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{key}", self.bucket) };
        OpContext::new(op, resource, self.principal.as_deref())
    }

    fn kms_ctx(&self, op: AwsOp) -> OpContext {
        OpContext::new(op, self.kms_key.clone().unwrap_or_default(), self.principal.as_deref())
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

fn probe_name() -> String {
    use rand::Rng;
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("probe-{millis}-{:08x}", rand::thread_rng().gen::<u32>())
}

/// Why the remaining probes cannot run, if the failure makes every later call pointless.
fn stops_everything(err: &ExportError) -> Option<&'static str> {
    match err {
        ExportError::BadCredentials { .. } => Some("credentials were rejected"),
        _ => None,
    }
}

#[async_trait]
impl AccessProbe for S3Probe {
    async fn probe(&self) -> ProbeReport {
        let mut results = self.preamble.clone();
        let mut principal = self.principal.clone();
        let stop_reason: Option<String> = results.iter().find(|r| r.failed()).map(|r| format!("{} failed", r.check));
        let probe_key = join_key(&self.prefix, &format!("{PROBE_DIR}/{}", probe_name()));
        let multipart_key = format!("{probe_key}.multipart");
        let list_prefix = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };

        const S3_CHECKS: [(&str, &str); 7] = [
            ("bucket reachable", "s3:GetBucketLocation"),
            ("list under prefix", "s3:ListBucket"),
            ("put probe object", "s3:PutObject"),
            ("read probe object", "s3:GetObject"),
            ("delete probe object", "s3:DeleteObject"),
            ("start multipart upload", "s3:PutObject"),
            ("abort multipart upload", "s3:AbortMultipartUpload"),
        ];
        const KMS_CHECKS: [(&str, &str); 2] = [("generate data key", "kms:GenerateDataKey"), ("decrypt data key", "kms:Decrypt")];

        if let Some(reason) = stop_reason {
            for (check, perm) in S3_CHECKS.iter().chain(if self.kms_key.is_some() { KMS_CHECKS.iter() } else { [].iter() }) {
                results.push(ProbeResult::skipped(check, perm, &reason));
            }
            return ProbeReport { destination: self.destination(), principal, results };
        }

        // Set when a failure makes further calls pointless (rejected credentials).
        let mut halt: Option<String> = None;
        // Set when the bucket is missing: S3 checks are skipped, KMS still runs.
        let mut bucket_missing = false;
        let note = |err: &ExportError, principal: &mut Option<String>| {
            if let ExportError::PermissionDenied { principal: Some(p), .. } = err {
                principal.get_or_insert_with(|| p.clone());
            }
        };

        // 1. Bucket reachable. GetBucketLocation rather than HeadBucket: it is the action
        // the generated policy grants, and it answers NoSuchBucket with a body.
        let (check, perm) = S3_CHECKS[0];
        match self.s3.get_bucket_location().bucket(&self.bucket).send().await {
            Ok(_) => results.push(ProbeResult::pass(check, perm)),
            Err(e) => {
                let err = classify(e, &self.ctx(AwsOp::GetBucketLocation, ""));
                note(&err, &mut principal);
                bucket_missing = matches!(err, ExportError::DestinationMissing { .. });
                halt = stops_everything(&err).map(str::to_string);
                results.push(failure(check, perm, &err));
            }
        }
        let s3_skip = halt.clone().or_else(|| bucket_missing.then(|| "the bucket does not exist".to_string()));

        if let Some(reason) = &s3_skip {
            for (check, perm) in &S3_CHECKS[1..] {
                results.push(ProbeResult::skipped(check, perm, reason));
            }
        } else {
            // 2. List under the prefix.
            let (check, perm) = S3_CHECKS[1];
            match self.s3.list_objects_v2().bucket(&self.bucket).prefix(&list_prefix).max_keys(1).send().await {
                Ok(_) => results.push(ProbeResult::pass(check, perm)),
                Err(e) => {
                    let err = classify(e, &self.ctx(AwsOp::ListObjects, &list_prefix));
                    note(&err, &mut principal);
                    results.push(failure(check, perm, &err));
                }
            }

            // 3. Put a probe object, with the SSE-KMS headers the export uses.
            let body = Bytes::from(format!("event export access probe for {}\n", self.destination()));
            let (check, perm) = S3_CHECKS[2];
            let mut put = self.s3.put_object().bucket(&self.bucket).key(&probe_key).body(S3Body::from(body.clone()));
            if let Some(k) = &self.kms_key {
                put = put.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k);
            }
            let put_error = match put.send().await {
                Ok(_) => {
                    results.push(ProbeResult::pass(check, perm));
                    None
                }
                Err(e) => {
                    let err = classify(e, &self.ctx(AwsOp::PutObject, &probe_key));
                    note(&err, &mut principal);
                    results.push(failure(check, perm, &err));
                    Some(err)
                }
            };

            // 4. Read it back.
            let (check, perm) = S3_CHECKS[3];
            if put_error.is_some() {
                results.push(ProbeResult::skipped(check, perm, "no probe object to read: the put failed"));
            } else {
                match self.s3.get_object().bucket(&self.bucket).key(&probe_key).send().await {
                    Ok(out) => match out.body.collect().await.map(|d| d.into_bytes()) {
                        Ok(data) if data == body => results.push(ProbeResult::pass(check, perm)),
                        Ok(_) => results.push(ProbeResult::fail(
                            check,
                            perm,
                            &ExportError::Corrupt {
                                what: format!("s3://{}/{probe_key}", self.bucket),
                                detail: "the probe object read back differs from what was written".into(),
                            },
                        )),
                        Err(e) => {
                            results.push(ProbeResult::fail(check, perm, &ExportError::transient("GetObject", format!("reading the probe object failed: {e}"))))
                        }
                    },
                    Err(e) => {
                        let err = classify(e, &self.ctx(AwsOp::GetObject, &probe_key));
                        note(&err, &mut principal);
                        results.push(failure(check, perm, &err));
                    }
                }
            }

            // 5. Delete it. Runs even when the put failed: deleting a missing key needs
            // the same permission, so the check still answers.
            let (check, perm) = S3_CHECKS[4];
            match self.s3.delete_object().bucket(&self.bucket).key(&probe_key).send().await {
                Ok(_) => results.push(ProbeResult::pass(check, perm)),
                Err(e) => {
                    let err = classify(e, &self.ctx(AwsOp::DeleteObject, &probe_key));
                    note(&err, &mut principal);
                    let mut r = failure(check, perm, &err);
                    if put_error.is_none() {
                        if let crate::access::probe::ProbeOutcome::Fail { detail, .. } = &mut r.outcome {
                            detail.push_str(&format!(" (the probe object s3://{}/{probe_key} was left behind; delete it by hand)", self.bucket));
                        }
                    }
                    results.push(r);
                }
            }

            // 6-7. Start and abort a multipart upload. Starting needs s3:PutObject: when
            // the put was refused for that, starting would only repeat the same failure.
            let (check, perm) = S3_CHECKS[5];
            let put_refused = matches!(&put_error, Some(ExportError::PermissionDenied { permission, .. }) if permission == "s3:PutObject");
            if put_refused {
                results.push(ProbeResult::skipped(check, perm, "s3:PutObject was refused for the probe object"));
                results.push(ProbeResult::skipped(S3_CHECKS[6].0, S3_CHECKS[6].1, "no multipart upload to abort"));
            } else {
                let mut create = self.s3.create_multipart_upload().bucket(&self.bucket).key(&multipart_key);
                if let Some(k) = &self.kms_key {
                    create = create.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k);
                }
                match create.send().await {
                    Ok(out) => {
                        results.push(ProbeResult::pass(check, perm));
                        let (check, perm) = S3_CHECKS[6];
                        let upload_id = out.upload_id().unwrap_or_default().to_string();
                        match self.s3.abort_multipart_upload().bucket(&self.bucket).key(&multipart_key).upload_id(&upload_id).send().await {
                            Ok(_) => results.push(ProbeResult::pass(check, perm)),
                            Err(e) => {
                                let err = classify(e, &self.ctx(AwsOp::AbortMultipartUpload, &multipart_key));
                                note(&err, &mut principal);
                                results.push(failure(check, perm, &err));
                            }
                        }
                    }
                    Err(e) => {
                        let err = classify(e, &self.ctx(AwsOp::CreateMultipartUpload, &multipart_key));
                        note(&err, &mut principal);
                        results.push(failure(check, perm, &err));
                        results.push(ProbeResult::skipped(S3_CHECKS[6].0, S3_CHECKS[6].1, "the multipart upload could not be started"));
                    }
                }
            }
        }

        // 8-9. The KMS key: generate a data key, then decrypt it.
        if let Some(key) = &self.kms_key {
            let (gen_check, gen_perm) = KMS_CHECKS[0];
            let (dec_check, dec_perm) = KMS_CHECKS[1];
            match (&halt, &self.kms) {
                (Some(reason), _) => {
                    results.push(ProbeResult::skipped(gen_check, gen_perm, reason));
                    results.push(ProbeResult::skipped(dec_check, dec_perm, reason));
                }
                (None, None) => {
                    let err = ExportError::Internal("no KMS client was configured for the probe".into());
                    results.push(ProbeResult::fail(gen_check, gen_perm, &err));
                    results.push(ProbeResult::skipped(dec_check, dec_perm, "no data key to decrypt"));
                }
                (None, Some(kms)) => match kms.generate_data_key().key_id(key).key_spec(DataKeySpec::Aes256).send().await {
                    Err(e) => {
                        let err = classify(e, &self.kms_ctx(AwsOp::KmsGenerateDataKey));
                        note(&err, &mut principal);
                        results.push(kms_failure(gen_check, gen_perm, &err));
                        results.push(ProbeResult::skipped(dec_check, dec_perm, "no data key to decrypt: GenerateDataKey failed"));
                    }
                    Ok(out) => {
                        results.push(ProbeResult::pass(gen_check, gen_perm));
                        let blob = out.ciphertext_blob().cloned().unwrap_or_else(|| aws_sdk_kms::primitives::Blob::new(Vec::new()));
                        match kms.decrypt().key_id(key).ciphertext_blob(blob).send().await {
                            Ok(dec) => {
                                // Compared, never printed: this is key material.
                                let same = dec.plaintext().map(|p| p.as_ref()) == out.plaintext().map(|p| p.as_ref());
                                if same {
                                    results.push(ProbeResult::pass(dec_check, dec_perm));
                                } else {
                                    results.push(ProbeResult::fail(
                                        dec_check,
                                        dec_perm,
                                        &ExportError::Internal("KMS Decrypt returned a different data key than GenerateDataKey".into()),
                                    ));
                                }
                            }
                            Err(e) => {
                                let err = classify(e, &self.kms_ctx(AwsOp::KmsDecrypt));
                                note(&err, &mut principal);
                                results.push(kms_failure(dec_check, dec_perm, &err));
                            }
                        }
                    }
                },
            }
        }

        ProbeReport { destination: self.destination(), principal, results }
    }
}

/// Like [`failure`], but a missing KMS key is named as such, not as a missing bucket.
fn kms_failure(check: &str, needed: &str, err: &ExportError) -> ProbeResult {
    match err {
        ExportError::DestinationMissing { .. } => ProbeResult::fail(check, "KMS key exists", err),
        _ => failure(check, needed, err),
    }
}
