//! Sealing secrets with AWS KMS envelope encryption (cloud mode): a fresh AES-256 data key
//! per secret from `GenerateDataKey`, the secret encrypted locally with AES-256-GCM, and only
//! the KMS-encrypted data key stored beside it.
//!
//! Sealed form: `kms2:{encrypted data key}:{nonce}:{ciphertext+tag}` (each base64). The
//! encryption context binds the data key to this use and to the secret's connection and
//! field (so a sealed value copied into another connection does not open, and CloudTrail
//! names the connection of every Decrypt), and `Decrypt` names the configured key, so a
//! secret sealed under another key is refused by KMS rather than opened. `kms1` values
//! (sealed before bindings) still open; the next save re-seals them bound.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::aws::service_errors;
use crate::adapters::local::cipher::{aes_open, aes_seal, b64, unb64, BINDING_HINT};
use crate::error::{ExportError, Result};
use crate::model::secret::{Secret, SecretBinding};
use crate::ports::SecretCipher;

pub const KMS_PREFIX: &str = "kms2";
/// Sealed before secrets were bound to their connection and field.
const LEGACY_KMS_PREFIX: &str = "kms1";
const CONTEXT_KEY: &str = "purpose";
const CONTEXT_VALUE: &str = "event-export/connection-secret";

/// Seals secrets under one KMS key (id, ARN or alias).
#[derive(Clone)]
pub struct KmsCipher {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl std::fmt::Debug for KmsCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsCipher").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl KmsCipher {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        KmsCipher { client, key_id: key_id.into() }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The encryption context: the purpose, and for bound secrets their connection and field.
    fn context(binding: Option<&SecretBinding>) -> HashMap<String, String> {
        let mut context = HashMap::from([(CONTEXT_KEY.to_string(), CONTEXT_VALUE.to_string())]);
        if let Some(b) = binding {
            context.insert("connection".into(), b.connection_id.clone());
            context.insert("field".into(), b.field.clone());
        }
        context
    }
}

#[async_trait]
impl SecretCipher for KmsCipher {
    async fn seal(&self, plain: &Secret, binding: &SecretBinding) -> Result<String> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(Self::context(Some(binding))))
            .send()
            .await
            .map_err(|e| service_errors::classify("kms:GenerateDataKey", &self.key_id, e))?;
        let (Some(data_key), Some(encrypted_key)) = (out.plaintext(), out.ciphertext_blob()) else {
            return Err(ExportError::Internal(format!("KMS GenerateDataKey on {} returned no data key", self.key_id)));
        };
        let aad = format!("{KMS_PREFIX}:{}", binding.associated_data());
        let (nonce, ct) = aes_seal(data_key.as_ref(), aad.as_bytes(), plain.expose().as_bytes())?;
        Ok(format!("{KMS_PREFIX}:{}:{}:{}", b64(encrypted_key.as_ref()), b64(&nonce), b64(&ct)))
    }

    async fn open(&self, sealed: &str, binding: &SecretBinding) -> Result<Secret> {
        let parts: Vec<&str> = sealed.split(':').collect();
        let [prefix, edk, nonce, ct] = parts.as_slice() else {
            return Err(ExportError::Corrupt { what: "sealed secret".into(), detail: format!("not a `{KMS_PREFIX}:` sealed value") });
        };
        let legacy = *prefix == LEGACY_KMS_PREFIX;
        if *prefix != KMS_PREFIX && !legacy {
            return Err(ExportError::invalid_config(
                "secret cipher",
                format!("this secret was sealed with `{prefix}`, but this process opens `{KMS_PREFIX}` (AWS KMS) secrets"),
                "Run with the cipher the secret was sealed with (KMS in the cloud, the key file in embedded mode), or re-enter the secret.",
            ));
        }
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(unb64("encrypted data key", edk)?))
            .set_encryption_context(Some(Self::context((!legacy).then_some(binding))))
            .send()
            .await
            .map_err(|e| {
                let code = e.code().unwrap_or("").to_string();
                // Wrong key: real KMS says IncorrectKeyException; moto and a key the role may
                // not use say AccessDenied; a foreign or damaged blob is InvalidCiphertext.
                if matches!(code.as_str(), "IncorrectKeyException" | "InvalidCiphertextException" | "AccessDeniedException") {
                    ExportError::invalid_config(
                        "secret cipher key",
                        format!(
                            "KMS refused to open the sealed secret {} with key {} ({code}): it was sealed under a different KMS key or for another connection or field, or this role may not use kms:Decrypt on it",
                            binding.field, self.key_id
                        ),
                        "Configure the KMS key the secret was sealed with (and grant kms:Decrypt on it); a sealed secret copied from another connection never opens: re-enter the secret.",
                    )
                } else {
                    service_errors::classify("kms:Decrypt", &self.key_id, e)
                }
            })?;
        let data_key = out.plaintext().ok_or_else(|| ExportError::Internal(format!("KMS Decrypt with {} returned no plaintext", self.key_id)))?;
        let aad = if legacy { prefix.to_string() } else { format!("{KMS_PREFIX}:{}", binding.associated_data()) };
        aes_open(data_key.as_ref(), aad.as_bytes(), &unb64("nonce", nonce)?, &unb64("ciphertext", ct)?, BINDING_HINT)
    }
}
