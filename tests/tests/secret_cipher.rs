//! Sealing connection secrets: KMS envelope encryption on moto, the local key file of embedded
//! mode, wrong keys refused with a clear error, and a sealed Azure client secret that, once
//! opened, authenticates against the HTTPS Azurite.

use bytes::Bytes;
use exporter::adapters::aws::kms::KmsCipher;
use exporter::adapters::azure::store::AzureStore;
use exporter::adapters::local::cipher::LocalCipher;
use exporter::adapters::local::memory::MemoryStore;
use exporter::control::connection::Connection;
use exporter::control::projects::Project;
use exporter::control::store::ControlStore;
use exporter::model::secret::{Secret, SecretBinding};
use exporter::ports::ObjectStore;
use exporter::ports::SecretCipher;
use integration_tests::{azurite, emulators, moto};
use std::sync::Arc;

fn bound() -> SecretBinding {
    SecretBinding::new("c1", "destination.client_secret")
}

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
    let sealed = cipher.seal(&secret, &bound()).await.unwrap();
    assert!(sealed.starts_with("kms2:"), "{sealed}");
    assert_eq!(sealed.split(':').count(), 4);
    assert!(!sealed.contains(secret.expose()));
    assert_ne!(sealed, cipher.seal(&secret, &bound()).await.unwrap(), "a fresh data key and nonce per seal");
    assert_eq!(cipher.open(&sealed, &bound()).await.unwrap(), secret);

    let err = other.open(&sealed, &bound()).await.unwrap_err();
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
    let err = cipher.open(&parts.join(":"), &bound()).await.unwrap_err();
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
    let sealed = cipher.seal(&secret, &bound()).await.unwrap();
    assert!(sealed.starts_with("local2:") && !sealed.contains(secret.expose()));
    // A later process reading the same key file opens it.
    assert_eq!(LocalCipher::open_or_create(&key_file).unwrap().open(&sealed, &bound()).await.unwrap(), secret);

    let stranger = LocalCipher::open_or_create(dir.path().join("other.key")).unwrap();
    let err = stranger.open(&sealed, &bound()).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidConfig", "{err}");

    let (kms, _) = kms_cipher_pair().await;
    let err = kms.open(&sealed, &bound()).await.unwrap_err();
    assert!(err.to_string().contains("sealed with `local2`"), "{err}");
    let err = cipher.open(&kms.seal(&secret, &bound()).await.unwrap(), &bound()).await.unwrap_err();
    assert!(err.to_string().contains("sealed with `kms2`"), "{err}");
}

#[tokio::test]
async fn a_sealed_azure_client_secret_opens_and_authenticates() {
    let oauth = azurite::oauth();
    let container = oauth.new_container("sealed").await;
    let (kms, _) = kms_cipher_pair().await;
    // What the control store keeps: the sealed string only.
    let stored = kms.seal(&oauth.client_secret, &bound()).await.unwrap();
    oauth.assert_no_secret(&stored);

    let opened = kms.open(&stored, &bound()).await.unwrap();
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

/// A sealed secret is bound to its connection and field (KMS encryption context and AES-GCM
/// associated data): copied into another connection's file in the control store, or into
/// another field, it does not open, and the error says why without showing it.
#[tokio::test]
async fn a_sealed_secret_copied_into_another_connection_does_not_open() {
    let (kms, _) = kms_cipher_pair().await;
    let secret = Secret::new("sv=2024-01-01&sp=rwdl&sig=c29tZS1zaWduYXR1cmU");
    let sealed = kms.seal(&secret, &bound()).await.unwrap();
    assert_eq!(kms.open(&sealed, &bound()).await.unwrap(), secret);
    for elsewhere in [SecretBinding::new("c2", "destination.client_secret"), SecretBinding::new("c1", "merged_ids_destination.client_secret")] {
        let err = kms.open(&sealed, &elsewhere).await.unwrap_err();
        assert!(err.to_string().contains("another connection") || err.to_string().contains("in the connection and field it was sealed for"), "{err}");
        assert!(!format!("{err} {err:?}").contains(secret.expose()));
    }

    // Through the control store: org 1's connection holds a sealed SAS token; an attacker
    // with write access to the store pastes it into a connection of their own.
    let control = ControlStore::new(Arc::new(MemoryStore::new("control")), Arc::new(kms));
    let doc = |id: &str, org: &str, container: &str| {
        format!(
            r#"{{"id":"{id}","org_id":"{org}","project_id":"{org}","admins":["admin@example.com"],"creator":"a@b.co","destination":{{"type":"azure","account_url":"https://acme.blob.core.windows.net","container":"{container}","sas_token":"{}"}}}}"#,
            secret.expose()
        )
    };
    for org in ["1", "2"] {
        control.add_project(&Project::new(org, org, false).unwrap()).await.unwrap();
    }
    control.create_connection(Connection::from_json(&doc("victim", "1", "events")).unwrap(), chrono::Utc::now()).await.unwrap();
    control.create_connection(Connection::from_json(&doc("thief", "2", "mine")).unwrap(), chrono::Utc::now()).await.unwrap();
    assert_eq!(control.get_connection("victim").await.unwrap().destination.secrets_mut()[0].1.expose(), secret.expose());
    let store = control.store();
    let victim: serde_json::Value = serde_json::from_slice(&store.get("connections/victim.json").await.unwrap()).unwrap();
    let mut thief: serde_json::Value = serde_json::from_slice(&store.get("connections/thief.json").await.unwrap()).unwrap();
    assert_ne!(victim["destination"]["sas_token"], secret.expose(), "stored sealed");
    thief["destination"]["sas_token"] = victim["destination"]["sas_token"].clone();
    store.put("connections/thief.json", Bytes::from(thief.to_string())).await.unwrap();
    let err = control.get_connection("thief").await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains(secret.expose()));
    assert!(err.to_string().contains("another connection") || err.to_string().contains("in the connection and field it was sealed for"), "{err}");
    // The file renamed to pose as the victim is refused too (its id does not match its key).
    let mut renamed = thief.clone();
    renamed["id"] = serde_json::json!("victim2");
    store.put("connections/victim2.json", Bytes::from(renamed.to_string())).await.unwrap();
    assert!(control.get_connection("victim2").await.is_err());
}
