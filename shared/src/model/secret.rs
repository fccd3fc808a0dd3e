//! Secrets (Azure client secrets, SAS tokens): never printed, never logged.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string. `Debug` and `Display` print `[redacted]`; only [`Secret::expose`]
/// gives the value, and only adapters that send it to its service call it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces every occurrence of the secret in `text` (for error messages that quote a
    /// service's answer, which could echo what we sent).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Serialises as the plain value: only the connection store writes it, after encrypting
/// the field (see `control::SecretCipher`). Connection files given by users carry it plain.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(String::deserialize(d)?))
    }
}

/// What a sealed secret belongs to: its connection and field. Ciphers bind the sealed value
/// to it (KMS encryption context, AES-GCM associated data), so a sealed value copied into
/// another connection or field does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretBinding {
    pub connection_id: String,
    /// e.g. `destination.client_secret`, `merged_ids_destination.sas_token`.
    pub field: String,
}

impl SecretBinding {
    pub fn new(connection_id: &str, field: impl Into<String>) -> Self {
        SecretBinding { connection_id: connection_id.to_string(), field: field.into() }
    }

    /// The bytes authenticated with the secret (ids and field names hold no `;` or `=`).
    pub fn associated_data(&self) -> String {
        format!("connection={};field={}", self.connection_id, self.field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
        assert_eq!(s.scrub("bad secret hunter2-very-secret!"), "bad secret [redacted]!");
    }
}
