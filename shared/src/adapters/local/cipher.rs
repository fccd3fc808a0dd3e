//! Sealing secrets with a local key file (embedded mode): AES-256-GCM under a 32-byte key
//! that is created, mode 0600, on first use. Also the AES-GCM envelope both ciphers share.
//!
//! Sealed form: `local2:{key id}:{nonce, base64}:{ciphertext+tag, base64}`. The key id (the
//! first 8 bytes of the key's SHA-256, hex) lets a wrong key file be named as such instead
//! of surfacing as a bare authentication-tag failure. The associated data carries the
//! secret's binding (connection and field), so a sealed value opens only where it was
//! sealed. `local1` values (sealed before bindings) still open; the next save re-seals them.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{ExportError, Result};
use crate::model::secret::{Secret, SecretBinding};
use crate::ports::SecretCipher;

pub const LOCAL_PREFIX: &str = "local2";
/// Sealed before secrets were bound to their connection and field.
const LEGACY_LOCAL_PREFIX: &str = "local1";
/// The hint when a bound secret does not open.
pub(crate) const BINDING_HINT: &str =
    "A sealed secret opens only with its key and in the connection and field it was sealed for (it was not copied from another connection?); re-enter the secret.";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(crate) fn unb64(what: &str, text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| ExportError::Corrupt { what: "sealed secret".into(), detail: format!("the {what} is not base64 ({e})") })
}

/// Encrypts `plain` under a 32-byte key with a fresh random nonce; `aad` binds the header.
pub(crate) fn aes_seal(key: &[u8], aad: &[u8], plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| ExportError::Internal(format!("AES-256 needs a {KEY_LEN}-byte key, got {}", key.len())))?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad }).map_err(|_| ExportError::Internal("AES-GCM encryption failed".into()))?;
    Ok((nonce.to_vec(), ct))
}

/// Decrypts what [`aes_seal`] made; a wrong key or altered data fails the tag check.
pub(crate) fn aes_open(key: &[u8], aad: &[u8], nonce: &[u8], ct: &[u8], wrong_key_hint: &str) -> Result<Secret> {
    if nonce.len() != NONCE_LEN {
        return Err(ExportError::Corrupt { what: "sealed secret".into(), detail: format!("nonce is {} bytes, expected {NONCE_LEN}", nonce.len()) });
    }
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| ExportError::Internal(format!("AES-256 needs a {KEY_LEN}-byte key, got {}", key.len())))?;
    let plain = cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad }).map_err(|_| ExportError::Corrupt {
        what: "sealed secret".into(),
        detail: format!("decryption failed: the data was sealed with a different key or has been altered. {wrong_key_hint}"),
    })?;
    let text = String::from_utf8(plain).map_err(|_| ExportError::Corrupt { what: "sealed secret".into(), detail: "the opened secret is not UTF-8".into() })?;
    Ok(Secret::new(text))
}

/// Seals secrets with a key file on this machine.
pub struct LocalCipher {
    path: PathBuf,
    key: [u8; KEY_LEN],
    key_id: String,
}

impl std::fmt::Debug for LocalCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCipher").field("key_file", &self.path).field("key_id", &self.key_id).finish()
    }
}

fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..8])
}

impl LocalCipher {
    /// Uses the key in `path`, creating it (32 random bytes, mode 0600) when it does not exist.
    pub fn open_or_create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| ExportError::io(parent.display().to_string(), e))?;
        }
        let mut fresh = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        match create_new_private(&path) {
            Ok(mut f) => {
                f.write_all(&fresh).and_then(|_| f.sync_all()).map_err(|e| ExportError::io(path.display().to_string(), e))?;
                tracing::info!(key_file = %path.display(), "created a new local secret key");
                Ok(LocalCipher { key_id: key_id(&fresh), key: fresh, path })
            }
            // Someone (maybe a concurrent process) created it first: use theirs.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::open(path),
            Err(e) => Err(ExportError::io(path.display().to_string(), e)),
        }
    }

    /// Uses the existing key in `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        check_private(&path)?;
        let bytes = std::fs::read(&path).map_err(|e| ExportError::io(path.display().to_string(), e))?;
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            ExportError::invalid_config(
                "secret key file",
                format!("{} holds {} bytes, not a {KEY_LEN}-byte key", path.display(), bytes.len()),
                "Restore the key file from backup (secrets sealed with it cannot be opened otherwise), or remove it to start over and re-enter the secrets.",
            )
        })?;
        Ok(LocalCipher { key_id: key_id(&key), key, path })
    }

    pub fn key_file(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// Refuses a key file others can read, as ssh does for private keys.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| ExportError::io(path.display().to_string(), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ExportError::invalid_config(
            "secret key file",
            format!("{} is accessible by other users (mode {mode:o})", path.display()),
            "Run `chmod 600` on it.",
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<()> {
    Ok(())
}

#[async_trait]
impl SecretCipher for LocalCipher {
    async fn seal(&self, plain: &Secret, binding: &SecretBinding) -> Result<String> {
        let aad = format!("{LOCAL_PREFIX}:{}:{}", self.key_id, binding.associated_data());
        let (nonce, ct) = aes_seal(&self.key, aad.as_bytes(), plain.expose().as_bytes())?;
        Ok(format!("{LOCAL_PREFIX}:{}:{}:{}", self.key_id, b64(&nonce), b64(&ct)))
    }

    async fn open(&self, sealed: &str, binding: &SecretBinding) -> Result<Secret> {
        let parts: Vec<&str> = sealed.split(':').collect();
        let [prefix, kid, nonce, ct] = parts.as_slice() else {
            return Err(ExportError::Corrupt { what: "sealed secret".into(), detail: format!("not a `{LOCAL_PREFIX}:` sealed value") });
        };
        if *prefix != LOCAL_PREFIX && *prefix != LEGACY_LOCAL_PREFIX {
            return Err(ExportError::invalid_config(
                "secret cipher",
                format!("this secret was sealed with `{prefix}`, but this process opens `{LOCAL_PREFIX}` (local key file) secrets"),
                "Run with the cipher the secret was sealed with (KMS in the cloud, the key file in embedded mode), or re-enter the secret.",
            ));
        }
        if *kid != self.key_id {
            return Err(ExportError::invalid_config(
                "secret key file",
                format!("the secret was sealed with key {kid}, but {} holds key {}", self.path.display(), self.key_id),
                "Use the key file the secret was sealed with, or re-enter the secret.",
            ));
        }
        let aad = if *prefix == LEGACY_LOCAL_PREFIX { format!("{prefix}:{kid}") } else { format!("{prefix}:{kid}:{}", binding.associated_data()) };
        aes_open(&self.key, aad.as_bytes(), &unb64("nonce", nonce)?, &unb64("ciphertext", ct)?, BINDING_HINT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> SecretBinding {
        SecretBinding::new("c1", "destination.client_secret")
    }

    #[tokio::test]
    async fn seals_opens_and_refuses_the_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret.key");
        let c = LocalCipher::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let secret = Secret::new("client-secret-value-123");
        let sealed = c.seal(&secret, &bound()).await.unwrap();
        assert!(sealed.starts_with("local2:") && !sealed.contains("client-secret-value-123"));
        assert_ne!(sealed, c.seal(&secret, &bound()).await.unwrap(), "fresh nonce per seal");
        assert_eq!(c.open(&sealed, &bound()).await.unwrap(), secret);
        // The same file opened again gives the same key.
        assert_eq!(LocalCipher::open_or_create(&path).unwrap().open(&sealed, &bound()).await.unwrap(), secret);

        let other = LocalCipher::open_or_create(dir.path().join("other.key")).unwrap();
        let err = other.open(&sealed, &bound()).await.unwrap_err();
        assert!(err.to_string().contains("sealed with key"), "{err}");

        // Altered ciphertext fails the tag check with a clear message.
        let mut parts: Vec<String> = sealed.split(':').map(str::to_string).collect();
        let mut ct = unb64("ct", &parts[3]).unwrap();
        ct[0] ^= 1;
        parts[3] = b64(&ct);
        let err = c.open(&parts.join(":"), &bound()).await.unwrap_err();
        assert!(err.to_string().contains("different key or has been altered"), "{err}");
        assert!(!format!("{c:?} {err:?}").contains("client-secret-value-123"));

        // A value sealed before bindings (local1) still opens, wherever it is.
        let aad = format!("{LEGACY_LOCAL_PREFIX}:{}", c.key_id);
        let (nonce, ct) = aes_seal(&c.key, aad.as_bytes(), secret.expose().as_bytes()).unwrap();
        let legacy = format!("{aad}:{}:{}", b64(&nonce), b64(&ct));
        assert_eq!(c.open(&legacy, &bound()).await.unwrap(), secret);

        // Bound to its connection and field: copied elsewhere, it does not open.
        for elsewhere in [SecretBinding::new("c2", "destination.client_secret"), SecretBinding::new("c1", "merged_ids_destination.client_secret")] {
            let err = c.open(&sealed, &elsewhere).await.unwrap_err();
            assert!(err.to_string().contains("in the connection and field it was sealed for"), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        LocalCipher::open_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(LocalCipher::open(&path).unwrap_err().kind(), "InvalidConfig");
    }
}
