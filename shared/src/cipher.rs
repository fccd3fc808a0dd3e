//! The secret-sealing port: connection secrets are stored sealed (KMS envelope in the
//! cloud, a local key file in embedded mode) and opened only by the adapter that sends them.

use async_trait::async_trait;

use crate::error::Result;
use crate::secret::Secret;

#[async_trait]
pub trait SecretCipher: Send + Sync + std::fmt::Debug {
    /// Seals a secret into a printable string safe to store (never contains the secret).
    async fn seal(&self, plain: &Secret) -> Result<String>;
    /// Opens a string made by `seal`.
    async fn open(&self, sealed: &str) -> Result<Secret>;
}
