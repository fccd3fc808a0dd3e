//! Azurite helpers: SAS tokens signed with the emulator's well-known account key, container
//! creation, and the HTTPS service-principal setup that `start-emulators.sh` starts
//! (Azurite `--oauth basic` + a local token endpoint). Missing variables fail loudly.

use std::sync::Arc;

use azure_core::http::{ClientOptions, Transport, Url};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use exporter::adapters::azure::endpoint::EndpointRules;
use exporter::adapters::azure::store::{AzureOptions, AzureStore};
use exporter::model::destination::AzureAuth;
use exporter::model::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Azurite's account and its publicly documented key (not a secret).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Account SAS version whose string-to-sign has no encryption-scope line.
const SAS_VERSION: &str = "2020-08-04";
/// Every blob permission, in the order account SAS tokens list them.
pub const ALL_PERMISSIONS: &str = "rwdlac";

fn required(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: {what} is not running. Start the emulators with tests/scripts/start-emulators.sh (tests/run.sh does) and source its env file."
        )
    })
}

/// An account SAS (blob service; service, container and object resource types) with
/// `permissions`, valid from `start` to `expiry`: the query string, without `?`.
pub fn account_sas_between(permissions: &str, start: DateTime<Utc>, expiry: DateTime<Utc>) -> String {
    let st = start.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let se = expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (ss, srt, spr) = ("b", "sco", "https,http");
    // Account SAS string-to-sign for versions before 2020-12-06 (one field per line).
    let to_sign = format!("{ACCOUNT}\n{permissions}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n");
    let key = base64::engine::general_purpose::STANDARD.decode(ACCOUNT_KEY).expect("well-known key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length works for HMAC");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("sv", SAS_VERSION)
        .append_pair("ss", ss)
        .append_pair("srt", srt)
        .append_pair("sp", permissions)
        .append_pair("st", &st)
        .append_pair("se", &se)
        .append_pair("spr", spr)
        .append_pair("sig", &sig);
    q.finish()
}

/// An account SAS with `permissions`, valid for the next two hours.
pub fn account_sas(permissions: &str) -> String {
    let now = Utc::now();
    account_sas_between(permissions, now - Duration::minutes(5), now + Duration::hours(2))
}

/// A reqwest transport that trusts `ca_pem` besides the system roots.
fn transport(ca_pem: Option<&[u8]>) -> Transport {
    let mut b = reqwest::ClientBuilder::new();
    if let Some(pem) = ca_pem {
        b = b.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem).expect("CA file is PEM"));
    }
    Transport::new(Arc::new(b.build().expect("reqwest client")))
}

/// Creates `container` in the Azurite at `account_url` (http or https) with a full SAS.
pub async fn create_container_at(account_url: &str, container: &str, ca_pem: Option<&[u8]>) {
    let mut url = Url::parse(&format!("{}/{container}", account_url.trim_end_matches('/'))).unwrap();
    url.set_query(Some(&account_sas(ALL_PERMISSIONS)));
    let opts = BlobContainerClientOptions { client_options: ClientOptions { transport: Some(transport(ca_pem)), ..Default::default() }, ..Default::default() };
    let client = BlobContainerClient::new(url, None, Some(opts)).expect("container client");
    client.create(None).await.unwrap_or_else(|e| panic!("creating container {container} on {account_url} failed: {e}"));
}

/// The plain-http Azurite (SAS tests).
pub fn http_url() -> String {
    crate::emulators::azurite_url()
}

/// Creates a fresh container on the http Azurite and returns its name.
pub async fn new_container(prefix: &str) -> String {
    let name = crate::emulators::unique_name(prefix);
    create_container_at(&http_url(), &name, None).await;
    name
}

/// Options that accept the emulator's http URL (the explicit emulator setting).
pub fn emulator_options() -> AzureOptions {
    AzureOptions { endpoints: EndpointRules::emulators(), ..Default::default() }
}

/// A store on the http Azurite authenticated by an account SAS with `permissions`.
pub fn sas_store(container: &str, permissions: &str) -> AzureStore {
    AzureStore::new(&http_url(), container, AzureAuth::Sas { token: Secret::new(account_sas(permissions)) }, emulator_options()).expect("SAS store")
}

/// The HTTPS Azurite with `--oauth basic`, the local token endpoint and the one valid
/// service principal (from the env file `start-emulators.sh` writes).
pub struct OAuthSetup {
    pub account_url: String,
    pub authority_host: String,
    pub ca_pem: Vec<u8>,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl std::fmt::Debug for OAuthSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSetup").field("account_url", &self.account_url).field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

pub fn oauth() -> OAuthSetup {
    let what = "the HTTPS Azurite (--oauth basic) and the local token endpoint";
    let ca_file = required("AZURE_TEST_CA_FILE", what);
    OAuthSetup {
        account_url: required("AZURITE_OAUTH_URL", what),
        authority_host: required("AZURE_AUTHORITY_HOST", what),
        ca_pem: std::fs::read(&ca_file).unwrap_or_else(|e| panic!("cannot read AZURE_TEST_CA_FILE {ca_file}: {e}")),
        tenant_id: required("AZURE_TEST_TENANT_ID", what),
        client_id: required("AZURE_TEST_CLIENT_ID", what),
        client_secret: Secret::new(required("AZURE_TEST_CLIENT_SECRET", what)),
    }
}

impl OAuthSetup {
    /// Options pointing the identity client at the local authority and trusting the test CA.
    pub fn options(&self) -> AzureOptions {
        AzureOptions {
            authority_host: Some(self.authority_host.clone()),
            extra_ca_pem: Some(self.ca_pem.clone()),
            endpoints: EndpointRules::emulators(),
            ..Default::default()
        }
    }

    pub fn credentials_with_secret(&self, secret: Secret) -> AzureAuth {
        AzureAuth::ServicePrincipal { tenant_id: self.tenant_id.clone(), client_id: self.client_id.clone(), client_secret: secret }
    }

    pub fn credentials(&self) -> AzureAuth {
        self.credentials_with_secret(self.client_secret.clone())
    }

    pub fn store(&self, container: &str) -> AzureStore {
        AzureStore::new(&self.account_url, container, self.credentials(), self.options()).expect("service-principal store")
    }

    pub async fn new_container(&self, prefix: &str) -> String {
        let name = crate::emulators::unique_name(prefix);
        create_container_at(&self.account_url, &name, Some(&self.ca_pem)).await;
        name
    }

    /// Panics if `text` contains the client secret (for every error string and Debug output).
    pub fn assert_no_secret(&self, text: &str) {
        assert!(!text.contains(self.client_secret.expose()), "the client secret leaked into: {text}");
    }
}
