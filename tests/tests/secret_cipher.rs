//! Sealing connection secrets: KMS envelope encryption on moto, the local key file of embedded
//! mode, wrong keys refused with a clear error, and a sealed Azure client secret that, once
//! opened, authenticates against the HTTPS Azurite.

use bytes::Bytes;
use exporter::adapters::aws::kms::KmsCipher;
use exporter::adapters::azure::store::AzureStore;
use exporter::adapters::local::cipher::LocalCipher;
use exporter::control::secret::Secret;
use exporter::ports::ObjectStore;
use exporter::ports::SecretCipher;
use integration_tests::{azurite, emulators, moto};

async fn kms_cipher_pair() -> (KmsCipher, KmsCipher) {
    let cfg = moto::admin_config(&emulators::moto_url());
    let a = moto::create_kms_key(&cfg).await;
    let b = moto::create_kms_key(&cfg).await;
    let client = aws_sdk_kms::Client::new(&cfg);
    (KmsCipher::new(client.clone(), a), KmsCipher::new(client, b))
}

#[tokio::test]
async fn kms_envelope_round_trips_and_refuses_another_key() {
    let (cipher, other) = kms_cipher_pair().await;
    let secret = Secret::new("Xq8~azure-client-secret-value");
    let sealed = cipher.seal(&secret).await.unwrap();
    assert!(sealed.starts_with("kms1:"), "{sealed}");
    assert_eq!(sealed.split(':').count(), 4);
    assert!(!sealed.contains(secret.expose()));
    assert_ne!(sealed, cipher.seal(&secret).await.unwrap(), "a fresh data key and nonce per seal");
    assert_eq!(cipher.open(&sealed).await.unwrap(), secret);

    let err = other.open(&sealed).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidConfig", "{err}");
    assert!(err.to_string().contains("different KMS key"), "{err}");

    // Altered ciphertext: KMS opens the data key, AES-GCM refuses the body.
    let mut parts: Vec<&str> = sealed.split(':').collect();
    let tampered_ct = {
        let mut ct = base64_decode(parts[3]);
        ct[3] ^= 0x40;
        base64_encode(&ct)
    };
    parts[3] = &tampered_ct;
    let err = cipher.open(&parts.join(":")).await.unwrap_err();
    assert_eq!(err.kind(), "Corrupt", "{err}");

    for shown in [format!("{cipher:?}"), format!("{err:?}"), err.to_string(), sealed.clone()] {
        assert!(!shown.contains(secret.expose()), "secret shown: {shown}");
    }
}

#[tokio::test]
async fn local_key_file_round_trips_and_the_two_formats_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("control/secret.key");
    let cipher = LocalCipher::open_or_create(&key_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&key_file).unwrap().len(), 32);
    }
    let secret = Secret::new("local-secret-value-42");
    let sealed = cipher.seal(&secret).await.unwrap();
    assert!(sealed.starts_with("local1:") && !sealed.contains(secret.expose()));
    // A later process reading the same key file opens it.
    assert_eq!(LocalCipher::open_or_create(&key_file).unwrap().open(&sealed).await.unwrap(), secret);

    let stranger = LocalCipher::open_or_create(dir.path().join("other.key")).unwrap();
    let err = stranger.open(&sealed).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidConfig", "{err}");

    let (kms, _) = kms_cipher_pair().await;
    let err = kms.open(&sealed).await.unwrap_err();
    assert!(err.to_string().contains("sealed with `local1`"), "{err}");
    let err = cipher.open(&kms.seal(&secret).await.unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("sealed with `kms1`"), "{err}");
}

#[tokio::test]
async fn a_sealed_azure_client_secret_opens_and_authenticates() {
    let oauth = azurite::oauth();
    let container = oauth.new_container("sealed").await;
    let (kms, _) = kms_cipher_pair().await;
    // What the control store keeps: the sealed string only.
    let stored = kms.seal(&oauth.client_secret).await.unwrap();
    oauth.assert_no_secret(&stored);

    let opened = kms.open(&stored).await.unwrap();
    let store = AzureStore::new(&oauth.account_url, &container, oauth.credentials_with_secret(opened), oauth.options()).unwrap();
    store.put("exports/ok", Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(&store.get("exports/ok").await.unwrap()[..], b"ok");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
