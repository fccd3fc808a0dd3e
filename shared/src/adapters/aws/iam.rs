//! The per-project IAM role exports run as, made by `exportctl projects add` on a deployed
//! stack: it trusts the two function roles (so they can assume it), and its own policy lets
//! it use S3 objects and, through S3 only, KMS keys. What it may touch is then decided by
//! each customer's bucket policy and key policy, which name this role (`exportctl policy`).
//! Idempotent: adding a project again brings the trust and the policy up to date.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::aws::service_errors;
use crate::error::{ExportError, Result};

/// Comma-separated ARNs of the roles that assume project roles (the template's
/// `FunctionRoleArns` output).
pub const FUNCTION_ROLES_ENV: &str = "EXPORT_FUNCTION_ROLE_ARNS";
const POLICY_NAME: &str = "event-export-destinations";

/// Creates or updates project roles.
#[derive(Debug, Clone)]
pub struct ProjectRoles {
    client: aws_sdk_iam::Client,
    trusted: Vec<String>,
}

impl ProjectRoles {
    /// `trusted`: the function roles' ARNs; refused when empty or not role ARNs.
    pub fn new(client: aws_sdk_iam::Client, trusted: Vec<String>) -> Result<Self> {
        if trusted.is_empty() || trusted.iter().any(|arn| !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/"))) {
            return Err(ExportError::invalid_config(
                FUNCTION_ROLES_ENV,
                format!("{trusted:?} is not a list of IAM role ARNs"),
                "Set it to the stack's FunctionRoleArns output (the hourly-export and backfill roles, comma-separated).",
            ));
        }
        Ok(ProjectRoles { client, trusted })
    }

    /// The trusted roles from [`FUNCTION_ROLES_ENV`].
    pub fn trusted_from_env() -> Vec<String> {
        std::env::var(FUNCTION_ROLES_ENV).unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }

    /// Makes `role_arn` exist with the trust and policy above; tags it with the project and
    /// organisation. Returns whether it was created (false: brought up to date).
    pub async fn ensure(&self, role_arn: &str, project_id: &str, org_id: &str) -> Result<bool> {
        let (path, name) = split_role_arn(role_arn)?;
        let trust = trust_policy(&self.trusted);
        let tag = |k: &str, v: &str| aws_sdk_iam::types::Tag::builder().key(k).value(v).build().expect("key and value set");
        let created = match self
            .client
            .create_role()
            .role_name(&name)
            .path(&path)
            .assume_role_policy_document(&trust)
            .description(format!("event-export: exports of project {project_id} (organisation {org_id}) run as this role"))
            .tags(tag("event-export:project", project_id))
            .tags(tag("event-export:org", org_id))
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) if e.code() == Some("EntityAlreadyExists") => {
                self.client
                    .update_assume_role_policy()
                    .role_name(&name)
                    .policy_document(&trust)
                    .send()
                    .await
                    .map_err(|e| service_errors::classify("iam:UpdateAssumeRolePolicy", role_arn, e))?;
                false
            }
            Err(e) => return Err(service_errors::classify("iam:CreateRole", role_arn, e)),
        };
        self.client
            .put_role_policy()
            .role_name(&name)
            .policy_name(POLICY_NAME)
            .policy_document(permissions_policy())
            .send()
            .await
            .map_err(|e| service_errors::classify("iam:PutRolePolicy", role_arn, e))?;
        Ok(created)
    }
}

/// `arn:aws:iam::ACCOUNT:role/PATH/NAME` → (`/PATH/`, `NAME`).
fn split_role_arn(arn: &str) -> Result<(String, String)> {
    let resource = arn.split_once(":role/").map(|(_, r)| r).filter(|r| !r.is_empty() && !r.ends_with('/')).ok_or_else(|| {
        ExportError::invalid_config(
            "EXPORT_PROJECT_ROLE_ARN_TEMPLATE",
            format!("{arn:?} is not an IAM role ARN"),
            "Use arn:aws:iam::{account}:role/event-export-project-{project_id}.",
        )
    })?;
    let (path, name) = match resource.rsplit_once('/') {
        Some((path, name)) => (format!("/{path}/"), name.to_string()),
        None => ("/".to_string(), resource.to_string()),
    };
    Ok((path, name))
}

pub fn trust_policy(trusted: &[String]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": trusted}, "Action": "sts:AssumeRole"}]
    })
    .to_string()
}

/// Objects anywhere, keys only through S3: the customer's bucket and key policies narrow
/// both to their bucket, prefix and key.
fn permissions_policy() -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Destinations", "Effect": "Allow", "Resource": "*", "Action": [
                "s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetObject", "s3:PutObject",
                "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]},
            {"Sid": "DestinationKeysThroughS3", "Effect": "Allow", "Resource": "*", "Action": ["kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"],
             "Condition": {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}}}
        ]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_split_into_path_and_name() {
        assert_eq!(split_role_arn("arn:aws:iam::111122223333:role/event-export-project-7").unwrap(), ("/".into(), "event-export-project-7".into()));
        assert_eq!(split_role_arn("arn:aws:iam::111122223333:role/exports/p-7").unwrap(), ("/exports/".into(), "p-7".into()));
        assert!(split_role_arn("arn:aws:iam::111122223333:user/x").is_err());
        let trust: serde_json::Value = serde_json::from_str(&trust_policy(&["arn:aws:iam::1:role/a".into(), "arn:aws:iam::1:role/b".into()])).unwrap();
        assert_eq!(trust["Statement"][0]["Principal"]["AWS"][1], "arn:aws:iam::1:role/b");
    }
}
