//! Which KMS key an alias names: `DescribeKey` on the alias ARN answers the key's
//! metadata, whose `Arn` is the key ARN that policies must name.

use async_trait::async_trait;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::aws::service_errors;
use crate::error::{ExportError, Result};
use crate::ports::KeyResolver;

/// Resolves aliases with one KMS client (in the key's region, as the identity that may
/// describe the key).
#[derive(Debug, Clone)]
pub struct KmsKeyResolver {
    client: aws_sdk_kms::Client,
}

impl KmsKeyResolver {
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        KmsKeyResolver { client }
    }
}

#[async_trait]
impl KeyResolver for KmsKeyResolver {
    async fn key_arn(&self, key: &str) -> Result<String> {
        let out = self.client.describe_key().key_id(key).send().await.map_err(|e| {
            let (status, code, message) = match &e {
                SdkError::ServiceError(s) => (s.raw().status().as_u16(), s.err().code().unwrap_or("").to_string(), s.err().message().unwrap_or("").to_string()),
                _ => (0, String::new(), String::new()),
            };
            match code.as_str() {
                "NotFoundException" => ExportError::NotFound { what: format!("KMS alias {key} (KMS: {message})") },
                "AccessDeniedException" | "AccessDenied" => ExportError::PermissionDenied {
                    operation: "DescribeKey".into(),
                    resource: key.into(),
                    permission: "kms:DescribeKey".into(),
                    principal: None,
                    detail: message,
                },
                // moto answers a refused JSON call with an XML 403 body.
                _ if status == 403 => ExportError::PermissionDenied {
                    operation: "DescribeKey".into(),
                    resource: key.into(),
                    permission: "kms:DescribeKey".into(),
                    principal: None,
                    detail: format!("HTTP 403 {code}").trim_end().to_string(),
                },
                _ => service_errors::classify("kms:DescribeKey", key, e),
            }
        })?;
        out.key_metadata()
            .map(|m| m.arn().unwrap_or_default())
            .filter(|arn| !arn.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ExportError::Internal(format!("KMS DescribeKey of {key} answered no key ARN")))
    }
}
