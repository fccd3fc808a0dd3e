//! The IAM policies a customer applies so the exporter can write to their bucket:
//! a bucket policy and a KMS key policy statement granting exactly the actions the export
//! needs, on exactly the bucket and prefix, to the project's role (never an account root),
//! plus the same statements as an identity policy (attached to the role itself when the
//! bucket is in the exporter's own account, and what the moto tests enforce).
//!
//! An S3-compatible store (a destination with `endpoint_url`: R2, MinIO, GCS, B2, Ceph)
//! authorises the connection's access key, not an AWS role: IAM policies do not apply
//! there, and [`s3_compatible_grants`] says instead what the key needs and how each store
//! grants it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::connection::Connection;
use crate::error::{ExportError, Result};
use crate::model::destination::Destination;
use crate::ports::KeyResolver;

/// Role ARN template used when none is configured.
pub const DEFAULT_ROLE_TEMPLATE: &str = "arn:aws:iam::{account}:role/event-export-project-{project_id}";

/// Object actions on `bucket/prefix/*`: write parts and markers (multipart uploads are
/// authorised as PutObject), read markers for the recurring skip, delete stale parts on
/// replace, abort failed multipart uploads.
pub const OBJECT_ACTIONS: [&str; 4] = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"];
/// Bucket actions: list under the prefix, find the bucket's region.
pub const BUCKET_ACTIONS: [&str; 2] = ["s3:ListBucket", "s3:GetBucketLocation"];
/// KMS actions for SSE-KMS: GenerateDataKey to write, Decrypt to read and to complete
/// multipart uploads.
pub const KMS_ACTIONS: [&str; 2] = ["kms:GenerateDataKey", "kms:Decrypt"];

/// `arn:aws:iam::{account}:role/...-{project_id}` filled in.
pub fn role_arn_from_template(template: &str, account: &str, project_id: &str) -> String {
    template.replace("{account}", account).replace("{project_id}", project_id)
}

/// Everything a customer needs for an S3 destination.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Policies {
    /// The principal granted access: the project role.
    pub role_arn: String,
    /// Complete bucket policy document.
    pub bucket_policy: Value,
    /// Statement to add to the KMS key's policy, when the destination uses SSE-KMS.
    pub kms_key_policy_statement: Option<Value>,
    /// The same grants as an identity policy document (no principal, KMS on the key ARN).
    pub identity_policy: Value,
}

/// The policies for an S3 destination, or an error for other destination types. A KMS key
/// given as an alias ARN is refused: the identity policy names the key in `Resource`,
/// where IAM never matches an alias (resolve it first with [`resolve_kms_key`]).
pub fn s3_policies(dest: &Destination, role_arn: &str) -> Result<S3Policies> {
    if let Some(grants) = s3_compatible_grants(dest) {
        return Err(ExportError::invalid_config(
            "destination.endpoint_url",
            "IAM policies do not apply to an S3-compatible store: it authorises the connection's access key, not the project's IAM role",
            grants,
        ));
    }
    let Destination::S3 { bucket, prefix, region, kms_key_arn, .. } = dest else {
        return Err(not_s3());
    };
    validate_role_principal(role_arn)?;
    if let Some(alias) = kms_key_arn.as_deref().filter(|k| is_alias_arn(k)) {
        return Err(alias_in_policy("kms_key_arn", alias));
    }
    let principal = json!({ "AWS": role_arn });
    let mut bucket_statements = s3_statements(bucket, prefix);
    for s in &mut bucket_statements {
        s["Principal"] = principal.clone();
    }
    let kms_key_policy_statement = kms_key_arn.as_ref().map(|_| key_policy_statement(bucket, prefix, region, role_arn));
    let mut identity_statements = s3_statements(bucket, prefix);
    if let Some(key) = kms_key_arn {
        identity_statements.push(json!({
            "Sid": KMS_SID, "Effect": "Allow", "Action": KMS_ACTIONS, "Resource": key, "Condition": kms_condition(bucket, prefix, region)
        }));
    }
    Ok(S3Policies {
        role_arn: role_arn.to_string(),
        bucket_policy: json!({ "Version": "2012-10-17", "Statement": bucket_statements }),
        kms_key_policy_statement,
        identity_policy: json!({ "Version": "2012-10-17", "Statement": identity_statements }),
    })
}

fn not_s3() -> ExportError {
    ExportError::invalid_config(
        "destination.type",
        "policies are generated for S3 destinations only",
        "Azure access is granted with a role assignment on the container.",
    )
}

const KMS_SID: &str = "EventExportUseKey";

/// The statement for the key's own policy: the project role may use the key only through
/// S3 in the bucket's region, and only for this bucket's objects under the prefix.
fn key_policy_statement(bucket: &str, prefix: &str, region: &str, role_arn: &str) -> Value {
    json!({
        "Sid": KMS_SID,
        "Effect": "Allow",
        "Principal": { "AWS": role_arn },
        "Action": KMS_ACTIONS,
        // In a key policy "*" means "this key" (an alias would not do here either).
        "Resource": "*",
        "Condition": kms_condition(bucket, prefix, region)
    })
}

/// Use of the key through S3 only, for this bucket's export objects only.
///
/// S3 calls KMS with the encryption context `aws:s3:arn`: the object's ARN
/// (`arn:aws:s3:::bucket/key`) normally, but the bucket's ARN when the bucket uses S3
/// Bucket Keys (S3 User Guide, "Configuring your bucket to use an S3 Bucket Key": the
/// encryption context is then the bucket ARN, not the object ARN). Both are allowed, so the
/// statement works whether or not the customer turns Bucket Keys on. It is `StringLike`
/// because `StringEquals` would take the `*` of `bucket/prefix/*` literally; the bucket
/// ARN has no wildcard, so it still matches exactly. With Bucket Keys the prefix cannot be
/// narrowed here (the context is the whole bucket); the bucket policy narrows the objects.
fn kms_condition(bucket: &str, prefix: &str, region: &str) -> Value {
    json!({
        "StringEquals": { "kms:ViaService": format!("s3.{region}.amazonaws.com") },
        "StringLike": { "kms:EncryptionContext:aws:s3:arn": [format!("arn:aws:s3:::{bucket}"), object_arns(bucket, prefix)] }
    })
}

/// `arn:aws:s3:::bucket/prefix/*`, or `arn:aws:s3:::bucket/*` without a prefix.
fn object_arns(bucket: &str, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("arn:aws:s3:::{bucket}/*")
    } else {
        format!("arn:aws:s3:::{bucket}/{prefix}/*")
    }
}

/// `arn:aws:kms:REGION:ACCOUNT:alias/NAME`.
pub fn is_alias_arn(arn: &str) -> bool {
    arn.splitn(6, ':').nth(5).is_some_and(|r| r.starts_with("alias/"))
}

fn alias_in_policy(field: &str, alias: &str) -> ExportError {
    ExportError::invalid_config(
        field,
        format!("{alias:?} is a KMS alias ARN; IAM never matches an alias in a policy's Resource, so the key must be named by its key ARN"),
        format!("Give the key's ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID): `aws kms describe-key --key-id {alias} --query KeyMetadata.Arn` prints it."),
    )
}

/// The destination with a KMS alias ARN replaced by the ARN of the key it names (asked
/// of `resolver`: KMS DescribeKey in the cloud). A key ARN, or no key, is returned as is,
/// without asking. An alias that cannot be resolved (missing, not allowed to describe it,
/// KMS unreachable) is refused, telling the user to give the key ARN; `field` names the
/// destination in that message.
pub async fn resolve_kms_key(dest: &Destination, field: &str, resolver: &dyn KeyResolver) -> Result<Destination> {
    let Destination::S3 { kms_key_arn: Some(alias), .. } = dest else {
        return Ok(dest.clone());
    };
    if !is_alias_arn(alias) {
        return Ok(dest.clone());
    }
    let refuse = |why: String| {
        ExportError::invalid_config(
            format!("{field}.kms_key_arn"),
            format!("the KMS alias {alias:?} could not be resolved to its key ({why})"),
            format!("Give the key's ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID) instead of the alias: `aws kms describe-key --key-id {alias} --query KeyMetadata.Arn` prints it."),
        )
    };
    let key = resolver.key_arn(alias).await.map_err(|e| refuse(e.to_string()))?;
    if is_alias_arn(&key) || !key.starts_with("arn:") || !key.contains(":key/") {
        return Err(refuse(format!("KMS answered {key:?}, not a key ARN")));
    }
    let mut resolved = dest.clone();
    if let Destination::S3 { kms_key_arn, .. } = &mut resolved {
        *kms_key_arn = Some(key);
    }
    Ok(resolved)
}

/// A connection whose destinations name their KMS keys by key ARN (see [`resolve_kms_key`]).
pub async fn resolve_connection_keys(conn: &Connection, resolver: &dyn KeyResolver) -> Result<Connection> {
    let mut out = conn.clone();
    out.destination = resolve_kms_key(&conn.destination, "destination", resolver).await?;
    if let Some(m) = &conn.merged_ids_destination {
        out.merged_ids_destination = Some(resolve_kms_key(m, "merged_ids_destination", resolver).await?);
    }
    Ok(out)
}

/// The statement (bucket-policy form, with the role as principal) that grants `permission`
/// on this destination: what an email about a missing permission tells the customer to add.
/// The KMS statement goes in the key's own policy, where `Resource` is `*`, so a connection
/// that names its key by an alias still gets it.
pub fn fix_statement(dest: &Destination, role_arn: &str, permission: &str) -> Result<Option<Value>> {
    let Destination::S3 { bucket, prefix, region, kms_key_arn, .. } = dest else {
        return Err(not_s3());
    };
    validate_role_principal(role_arn)?;
    if KMS_ACTIONS.contains(&permission) {
        return Ok(kms_key_arn.as_ref().map(|_| key_policy_statement(bucket, prefix, region, role_arn)));
    }
    let statements = s3_statements(bucket, prefix);
    Ok(statements.into_iter().find(|s| s["Action"].as_array().is_some_and(|a| a.iter().any(|x| x == permission)) || s["Action"] == permission).map(|mut s| {
        s["Principal"] = json!({ "AWS": role_arn });
        s
    }))
}

fn s3_statements(bucket: &str, prefix: &str) -> Vec<Value> {
    let objects = object_arns(bucket, prefix);
    let prefix = prefix.trim_matches('/');
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let mut list = json!({ "Sid": "EventExportList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn });
    if !prefix.is_empty() {
        // Only listings under the prefix; `prefix/*` also matches `prefix/` itself.
        list["Condition"] = json!({ "StringLike": { "s3:prefix": [format!("{prefix}/*")] } });
    }
    vec![
        json!({ "Sid": "EventExportObjects", "Effect": "Allow", "Action": OBJECT_ACTIONS, "Resource": objects }),
        list,
        json!({ "Sid": "EventExportBucketLocation", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": bucket_arn }),
    ]
}

/// For an S3-compatible destination, what its access key needs and how the store grants
/// it (IAM policies do not apply there); `None` for Amazon S3 and other destinations.
/// This is what `exportctl policy` prints for such a destination.
pub fn s3_compatible_grants(dest: &Destination) -> Option<String> {
    let Destination::S3 { bucket, prefix, endpoint_url: Some(endpoint), access_key_id, .. } = dest else {
        return None;
    };
    let key = access_key_id.as_deref().unwrap_or("(access_key_id)");
    let prefix = prefix.trim_matches('/');
    let endpoint = endpoint.trim().trim_end_matches('/');
    let host = url::Url::parse(endpoint).ok().and_then(|u| u.host_str().map(|h| h.trim_end_matches('.').to_ascii_lowercase())).unwrap_or_default();
    let scope = if prefix.is_empty() { format!("every object of bucket {bucket}") } else { format!("the objects under {prefix}/ in bucket {bucket}") };
    let mut text = format!(
        "IAM policies do not apply: {endpoint} is an S3-compatible store, not Amazon S3. It authorises the access key {key}, \
         not the project's IAM role, so no bucket policy, IAM policy or KMS key policy is generated for it.\n\
         \n\
         The access key needs, on {scope}:\n\
         - write objects: PutObject and multipart uploads (create, upload part, complete, abort)\n\
         - read objects: GetObject, HeadObject (an hour whose complete marker is there is skipped)\n\
         - list objects: ListObjectsV2 under the prefix\n\
         - delete objects: DeleteObject (a re-exported hour replaces its parts)\n\
         Nothing else: no bucket administration, and no other bucket.\n\
         \n"
    );
    let r2 = format!(
        "Cloudflare R2: create an R2 API token (R2 > Manage API tokens) with the \"Object Read & Write\" permission, \
         applied to bucket {bucket} only. Its Access Key ID and Secret Access Key go in access_key_id and secret_access_key; \
         region is auto.\n"
    );
    let gcs = format!(
        "Google Cloud Storage (XML API with HMAC keys): create an HMAC key for a service account (Cloud Storage > Settings > \
         Interoperability) and give that service account Storage Object Admin (roles/storage.objectAdmin) on bucket {bucket} only:\n\
         \x20 gcloud storage buckets add-iam-policy-binding gs://{bucket} --member=serviceAccount:SERVICE_ACCOUNT_EMAIL --role=roles/storage.objectAdmin\n\
         The HMAC key's access id and secret go in access_key_id and secret_access_key; region is auto.\n"
    );
    let b2 = format!(
        "Backblaze B2: an application key restricted to bucket {bucket}{}, with Read and Write access.\n",
        if prefix.is_empty() { String::new() } else { format!(" and the file name prefix {prefix}/") }
    );
    // The S3 policy language MinIO (and Ceph RGW) evaluate, scoped to the bucket and prefix.
    let scoped = json!({ "Version": "2012-10-17", "Statement": s3_statements(bucket, prefix) });
    let minio = format!(
        "MinIO (and Ceph RGW, as a bucket policy naming the key's user): attach this policy, scoped to the bucket and prefix, to the access key's user:\n\
         \x20 mc admin policy create ALIAS event-export-{bucket} policy.json\n\
         \x20 mc admin policy attach ALIAS event-export-{bucket} --user {key}\n\
         policy.json:\n{}\n",
        serde_json::to_string_pretty(&scoped).unwrap_or_default()
    );
    if host.ends_with(".r2.cloudflarestorage.com") {
        text.push_str(&r2);
    } else if host == "storage.googleapis.com" {
        text.push_str(&gcs);
    } else if host.ends_with(".backblazeb2.com") {
        text.push_str(&b2);
    } else {
        text.push_str("How each store grants it:\n");
        for part in [&minio, &r2, &gcs, &b2] {
            text.push_str(part);
            text.push('\n');
        }
    }
    Some(text.trim_end().to_string())
}

/// The principal must be a role, never an account (`:root` or a bare account id), which
/// would grant every identity in that account.
fn validate_role_principal(role_arn: &str) -> Result<()> {
    let parts: Vec<&str> = role_arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len();
    if !ok {
        return Err(ExportError::invalid_config(
            "project role",
            format!("{role_arn:?} is not an IAM role ARN"),
            "Policies name the project's role (arn:aws:iam::ACCOUNT:role/NAME), never an account root.",
        ));
    }
    Ok(())
}

/// A policy statement (or document) that grants what is missing, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFix {
    /// e.g. "Add this statement to the bucket policy of my-bucket".
    pub title: String,
    /// Pretty-printed JSON (or, for Azure, the role assignment to make).
    pub statement: String,
}

/// `arn:aws:sts::ACCT:assumed-role/NAME/session` → `arn:aws:iam::ACCT:role/NAME`: policies
/// name the role, not one of its sessions.
pub fn role_arn_of(principal: &str) -> String {
    let parts: Vec<&str> = principal.splitn(6, ':').collect();
    if parts.len() == 6 && parts[2] == "sts" {
        if let Some(rest) = parts[5].strip_prefix("assumed-role/") {
            let name = rest.split('/').next().unwrap_or(rest);
            return format!("arn:{}:iam::{}:role/{name}", parts[1], parts[4]);
        }
    }
    principal.to_string()
}

/// What to grant for the `missing` permissions of `dest`, where it goes: a bucket policy
/// and a key policy statement for S3 (naming the refused role, not its session), an
/// `az role assignment` for Azure.
pub fn fixes_for(dest: &Destination, principal: Option<&str>, missing: &[String]) -> Vec<PolicyFix> {
    if let Some(grants) = s3_compatible_grants(dest) {
        // The store's own settings fix a refusal, not an IAM statement.
        return match dest {
            Destination::S3 { bucket, access_key_id, .. } if missing.iter().any(|m| m.starts_with("s3:")) => vec![PolicyFix {
                title: format!(
                    "IAM policies do not apply to this S3-compatible store: give the access key {} read, write, list and delete on bucket {bucket}",
                    access_key_id.as_deref().unwrap_or_default()
                ),
                statement: grants,
            }],
            _ => Vec::new(),
        };
    }
    match dest {
        Destination::S3 { bucket, kms_key_arn, .. } => {
            let Some(principal) = principal else {
                return Vec::new();
            };
            let role = role_arn_of(principal);
            let mut bucket_statements: Vec<Value> = Vec::new();
            let mut key_statement = None;
            for perm in missing {
                match fix_statement(dest, &role, perm) {
                    Ok(Some(s)) if perm.starts_with("kms:") => key_statement = Some(s),
                    Ok(Some(s)) => {
                        if !bucket_statements.contains(&s) {
                            bucket_statements.push(s)
                        }
                    }
                    // Not an IAM action (e.g. "bucket exists"): nothing to grant.
                    Ok(None) | Err(_) => {}
                }
            }
            let mut out = Vec::new();
            if !bucket_statements.is_empty() {
                let body = if bucket_statements.len() == 1 { bucket_statements.remove(0) } else { Value::Array(bucket_statements) };
                out.push(PolicyFix {
                    title: format!("Add this statement to the bucket policy of {bucket}"),
                    statement: serde_json::to_string_pretty(&body).unwrap_or_default(),
                });
            }
            if let (Some(s), Some(key)) = (key_statement, kms_key_arn) {
                out.push(PolicyFix {
                    title: format!("Add this statement to the key policy of {key}"),
                    statement: serde_json::to_string_pretty(&s).unwrap_or_default(),
                });
            }
            out
        }
        Destination::Azure { account_url, container, client_id, .. } => {
            if missing.iter().any(|m| m.starts_with("Microsoft.Storage/")) {
                let who = client_id.as_deref().map(|c| format!("the service principal {c}")).unwrap_or_else(|| "the SAS token's holder".into());
                vec![PolicyFix {
                    title: format!("Grant {who} the role \"Storage Blob Data Contributor\" on container {container}"),
                    statement: format!(
                        "az role assignment create --role \"Storage Blob Data Contributor\" --assignee {} --scope \"<storage account resource id>/blobServices/default/containers/{container}\"\n(account {account_url}; a SAS token needs the r, w, d and l permissions instead)",
                        client_id.as_deref().unwrap_or("<client id>")
                    ),
                }]
            } else {
                Vec::new()
            }
        }
        Destination::Local { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/event-export-project-187520";

    fn dest(prefix: &str, kms: Option<&str>) -> Destination {
        Destination::aws_s3("acme-events", prefix, "us-east-1", kms.map(str::to_string))
    }

    fn actions(s: &Value) -> Vec<String> {
        match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            other => panic!("bad Action {other}"),
        }
    }

    #[test]
    fn bucket_policy_grants_exactly_the_needed_actions_to_the_role() {
        let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let p = s3_policies(&dest("exports/amplitude/", Some(key)), ROLE).unwrap();
        assert_eq!(p.bucket_policy["Version"], "2012-10-17");
        let st = p.bucket_policy["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 3);
        for s in st {
            assert_eq!(s["Effect"], "Allow");
            assert_eq!(s["Principal"], json!({ "AWS": ROLE }));
            assert!(s["Sid"].as_str().unwrap().bytes().all(|b| b.is_ascii_alphanumeric()), "Sid must be alphanumeric");
        }
        assert_eq!(actions(&st[0]), OBJECT_ACTIONS);
        assert_eq!(st[0]["Resource"], "arn:aws:s3:::acme-events/exports/amplitude/*");
        assert_eq!(actions(&st[1]), ["s3:ListBucket"]);
        assert_eq!(st[1]["Resource"], "arn:aws:s3:::acme-events");
        assert_eq!(st[1]["Condition"], json!({ "StringLike": { "s3:prefix": ["exports/amplitude/*"] } }));
        assert_eq!(actions(&st[2]), ["s3:GetBucketLocation"]);
        let kms = p.kms_key_policy_statement.unwrap();
        assert_eq!(actions(&kms), KMS_ACTIONS);
        assert_eq!(kms["Principal"], json!({ "AWS": ROLE }));
        // Round-trips as JSON text (what exportctl prints and customers paste).
        let text = serde_json::to_string_pretty(&p.bucket_policy).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), p.bucket_policy);
        assert!(!text.contains(":root"));
    }

    #[test]
    fn identity_form_has_no_principal_and_scopes_kms_to_the_key() {
        let key = "arn:aws:kms:us-east-1:123456789012:key/k";
        let p = s3_policies(&dest("exports", Some(key)), ROLE).unwrap();
        let st = p.identity_policy["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 4);
        assert!(st.iter().all(|s| s.get("Principal").is_none()));
        assert_eq!(st[3]["Resource"], key);
        assert_eq!(actions(&st[3]), KMS_ACTIONS);
    }

    #[test]
    fn empty_prefix_means_whole_bucket_and_no_kms_without_key() {
        let p = s3_policies(&dest("", None), ROLE).unwrap();
        let st = p.bucket_policy["Statement"].as_array().unwrap();
        assert_eq!(st[0]["Resource"], "arn:aws:s3:::acme-events/*");
        assert!(st[1].get("Condition").is_none());
        assert!(p.kms_key_policy_statement.is_none());
        assert_eq!(p.identity_policy["Statement"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn account_principals_are_refused() {
        for bad in
            ["arn:aws:iam::123456789012:root", "123456789012", "arn:aws:iam::123456789012:user/bob", "arn:aws:iam::1:role/x", "arn:aws:iam::123456789012:role/"]
        {
            assert!(s3_policies(&dest("p", None), bad).is_err(), "{bad}");
        }
        let azure = Destination::Local { path: "/tmp/x".into(), prefix: String::new() };
        assert!(s3_policies(&azure, ROLE).is_err());
    }

    #[test]
    fn fix_statement_names_the_statement_granting_a_permission() {
        let key = "arn:aws:kms:us-east-1:123456789012:key/k";
        let d = dest("exports", Some(key));
        for perm in OBJECT_ACTIONS.iter().chain(BUCKET_ACTIONS.iter()).chain(KMS_ACTIONS.iter()) {
            let s = fix_statement(&d, ROLE, perm).unwrap().unwrap_or_else(|| panic!("no statement for {perm}"));
            assert!(actions(&s).iter().any(|a| a == perm), "{perm}: {s}");
        }
        assert!(fix_statement(&d, ROLE, "s3:PutBucketPolicy").unwrap().is_none());
        assert_eq!(role_arn_from_template(DEFAULT_ROLE_TEMPLATE, "123456789012", "7"), "arn:aws:iam::123456789012:role/event-export-project-7");
    }

    #[test]
    fn assumed_role_becomes_role() {
        assert_eq!(role_arn_of("arn:aws:sts::123456789012:assumed-role/r1/sess"), "arn:aws:iam::123456789012:role/r1");
        assert_eq!(role_arn_of("arn:aws:iam::123456789012:role/r1"), "arn:aws:iam::123456789012:role/r1");
    }

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const ALIAS: &str = "arn:aws:kms:us-east-1:123456789012:alias/exports";

    #[test]
    fn kms_statements_allow_the_key_only_through_s3_for_this_bucket_and_prefix() {
        let p = s3_policies(&dest("exports/amplitude/", Some(KEY)), ROLE).unwrap();
        let expected_condition = json!({
            "StringEquals": { "kms:ViaService": "s3.us-east-1.amazonaws.com" },
            "StringLike": { "kms:EncryptionContext:aws:s3:arn": ["arn:aws:s3:::acme-events", "arn:aws:s3:::acme-events/exports/amplitude/*"] }
        });
        let key_policy = p.kms_key_policy_statement.unwrap();
        assert_eq!(
            key_policy,
            json!({
                "Sid": "EventExportUseKey", "Effect": "Allow", "Principal": { "AWS": ROLE },
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*", "Condition": expected_condition
            })
        );
        // The identity form names the key by its key ARN, with the same conditions.
        let st = p.identity_policy["Statement"].as_array().unwrap();
        let kms = st.iter().find(|s| s["Sid"] == "EventExportUseKey").unwrap();
        assert_eq!(kms["Resource"], KEY);
        assert_eq!(kms["Condition"], expected_condition);
        assert!(kms.get("Principal").is_none());

        // No prefix: every object of the bucket; the region is the bucket's.
        let mut whole = dest("", Some(KEY));
        if let Destination::S3 { region, .. } = &mut whole {
            *region = "eu-west-1".into();
        }
        let s = s3_policies(&whole, ROLE).unwrap().kms_key_policy_statement.unwrap();
        assert_eq!(s["Condition"]["StringEquals"]["kms:ViaService"], "s3.eu-west-1.amazonaws.com");
        assert_eq!(s["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"], json!(["arn:aws:s3:::acme-events", "arn:aws:s3:::acme-events/*"]));
        // The email's fix for a missing KMS permission is the same statement.
        assert_eq!(fix_statement(&dest("exports/amplitude/", Some(KEY)), ROLE, "kms:Decrypt").unwrap().unwrap(), key_policy);
    }

    #[test]
    fn an_alias_never_goes_into_a_resource() {
        assert!(is_alias_arn(ALIAS));
        assert!(!is_alias_arn(KEY));
        let err = s3_policies(&dest("exports", Some(ALIAS)), ROLE).unwrap_err().to_string();
        assert!(err.contains("kms_key_arn") && err.contains("alias ARN") && err.contains("never matches an alias"), "{err}");
        assert!(err.contains("Give the key's ARN") && err.contains(&format!("aws kms describe-key --key-id {ALIAS}")), "{err}");
        // An email about a connection stored with an alias still carries every fix: the key
        // policy statement's Resource is "*", and the bucket statements name no key.
        let d = dest("exports", Some(ALIAS));
        assert_eq!(fix_statement(&d, ROLE, "kms:GenerateDataKey").unwrap().unwrap()["Resource"], "*");
        assert!(fix_statement(&d, ROLE, "s3:PutObject").unwrap().is_some());
        let fixes = fixes_for(&d, Some(ROLE), &["s3:PutObject".to_string(), "kms:Decrypt".to_string()]);
        assert_eq!(fixes.len(), 2, "{fixes:?}");
    }

    fn compatible(endpoint: &str) -> Destination {
        Destination::s3_compatible(endpoint, "acme-events", "exports/", "auto", true, "KEYID123", crate::model::secret::Secret::new("the-secret-value"))
    }

    #[test]
    fn s3_compatible_stores_get_the_access_keys_grants_not_iam_policies() {
        let r2 = compatible("https://acct.r2.cloudflarestorage.com");
        let text = s3_compatible_grants(&r2).unwrap();
        assert!(text.starts_with("IAM policies do not apply: https://acct.r2.cloudflarestorage.com is an S3-compatible store"), "{text}");
        assert!(text.contains("KEYID123") && !text.contains("the-secret-value"), "{text}");
        assert!(text.contains("the objects under exports/ in bucket acme-events"), "{text}");
        assert!(text.contains("\"Object Read & Write\"") && !text.contains("mc admin"), "R2 only: {text}");
        let gcs = s3_compatible_grants(&compatible("https://storage.googleapis.com")).unwrap();
        assert!(gcs.contains("roles/storage.objectAdmin") && gcs.contains("gs://acme-events") && !gcs.contains("R2"), "{gcs}");
        // An unknown host (MinIO, Ceph, ...): every store's way, MinIO's policy scoped to the prefix.
        let minio = s3_compatible_grants(&compatible("https://minio.acme.example:9000")).unwrap();
        assert!(minio.contains("mc admin policy attach ALIAS event-export-acme-events --user KEYID123"), "{minio}");
        assert!(
            minio.contains("arn:aws:s3:::acme-events/exports/*") && minio.contains("Object Read & Write") && minio.contains("Storage Object Admin"),
            "{minio}"
        );
        assert_eq!(s3_compatible_grants(&dest("exports", None)), None);

        let err = s3_policies(&r2, ROLE).unwrap_err();
        assert_eq!(err.kind(), "InvalidConfig");
        assert!(err.to_string().contains("IAM policies do not apply") && err.to_string().contains("Object Read & Write"), "{err}");
        // The email's fix: the store's own grants, not a bucket policy naming a role.
        let fixes = fixes_for(&r2, Some("access key KEYID123 on https://acct.r2.cloudflarestorage.com"), &["s3:PutObject".to_string()]);
        assert_eq!(fixes.len(), 1, "{fixes:?}");
        assert!(fixes[0].title.contains("IAM policies do not apply") && fixes[0].title.contains("KEYID123"), "{fixes:?}");
        assert!(!fixes[0].statement.contains("\"Principal\""), "{fixes:?}");
        assert!(fixes_for(&r2, None, &["valid credentials".to_string()]).is_empty(), "a wrong key is fixed in the connection, not by a grant");
    }

    /// Answers from a table; counts the questions.
    struct Kms(std::sync::Mutex<u32>);

    #[async_trait::async_trait]
    impl KeyResolver for Kms {
        async fn key_arn(&self, key: &str) -> Result<String> {
            *self.0.lock().unwrap() += 1;
            match key {
                ALIAS => Ok(KEY.into()),
                "arn:aws:kms:us-east-1:123456789012:alias/echo" => Ok(key.into()),
                _ => Err(ExportError::NotFound { what: format!("KMS alias {key}") }),
            }
        }
    }

    #[tokio::test]
    async fn an_alias_is_resolved_to_its_key_or_refused_clearly() {
        let kms = Kms(std::sync::Mutex::new(0));
        let resolved = resolve_kms_key(&dest("exports", Some(ALIAS)), "destination", &kms).await.unwrap();
        assert_eq!(resolved, dest("exports", Some(KEY)));
        assert_eq!(s3_policies(&resolved, ROLE).unwrap().identity_policy["Statement"][3]["Resource"], KEY);
        // A key ARN, no key, or another destination type: nothing to ask.
        assert_eq!(resolve_kms_key(&dest("exports", Some(KEY)), "destination", &kms).await.unwrap(), dest("exports", Some(KEY)));
        assert_eq!(resolve_kms_key(&dest("exports", None), "destination", &kms).await.unwrap(), dest("exports", None));
        assert_eq!(*kms.0.lock().unwrap(), 1);

        let missing = "arn:aws:kms:us-east-1:123456789012:alias/missing";
        let err = resolve_kms_key(&dest("exports", Some(missing)), "merged_ids_destination", &kms).await.unwrap_err();
        assert_eq!(err.kind(), "InvalidConfig");
        let text = err.to_string();
        assert!(text.contains("merged_ids_destination.kms_key_arn") && text.contains(missing) && text.contains("could not be resolved"), "{text}");
        assert!(text.contains("not found: KMS alias") && text.contains("Give the key's ARN"), "{text}");
        let echo = resolve_kms_key(&dest("exports", Some("arn:aws:kms:us-east-1:123456789012:alias/echo")), "destination", &kms).await.unwrap_err();
        assert!(echo.to_string().contains("not a key ARN"), "{echo}");
    }
}
