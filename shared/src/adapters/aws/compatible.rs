//! S3-compatible stores (Cloudflare R2, MinIO, Google Cloud Storage's XML API with HMAC keys,
//! Backblaze B2, Ceph RGW): the same [`S3Store`] and [`S3Probe`], reached at the
//! connection's `endpoint_url` and signed with the connection's own access key. No AWS
//! account is involved: no project role, no base credentials, no `AWS_ENDPOINT_URL`, so
//! such a destination also works where the process has no AWS context (embedded mode).
//!
//! The endpoint is customer input, so [`check_endpoint`] decides where requests may go
//! before any is sent: `https://` to a public host, never Amazon S3 itself (that is
//! written through the project role), never the exporter's own network (loopback,
//! private, link-local and unspecified addresses: e.g. the instance metadata service at
//! 169.254.169.254). Plain http and local hosts are accepted only with the operator's
//! emulator setting (`EXPORT_ALLOW_EMULATOR_ENDPOINTS`, the one Azure emulators use).
//! A host name is judged by what it resolves to: at create by [`admit_endpoint_host`], and
//! at every connect by the client's own resolver (a [`GuardedResolver`], given to the
//! SDK's HTTP client), which connects only to addresses that passed.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use url::Url;

use crate::adapters::aws::errors::CompatibleEndpoint;
use crate::adapters::aws::probe::S3Probe;
use crate::adapters::aws::s3::S3Store;
use crate::adapters::azure::endpoint::EndpointRules;
use crate::adapters::internal_hosts::is_internal_host;
use crate::adapters::outbound_dns::{GuardError, GuardedResolver, Lookup, INTERNAL_REFUSAL};
use crate::error::{ExportError, Result};
use crate::model::destination::Destination;

const FIELD: &str = "destination.endpoint_url";

/// Refuses an endpoint the exporter must not send requests (and signatures) to. Amazon S3
/// is refused whatever the rules; the rest is relaxed for emulators.
pub fn check_endpoint(endpoint_url: &str, rules: &EndpointRules) -> Result<()> {
    let url = Url::parse(endpoint_url.trim())
        .map_err(|e| ExportError::invalid_config(FIELD, format!("is not a URL ({e})"), "Give the store's https:// endpoint."))?;
    let shown = origin(&url);
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() || url.query().is_some() {
        return Err(ExportError::invalid_config(FIELD, format!("{shown} carries user info, a query or a fragment"), "Give only https://host[:port]."));
    }
    let host = url.host_str().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
    if [".amazonaws.com", ".amazonaws.com.cn"].iter().any(|s| host.ends_with(s) || host == s[1..]) {
        return Err(ExportError::invalid_config(
            FIELD,
            format!("{shown} is Amazon S3; access keys are for S3-compatible stores, and Amazon S3 is written through the project's IAM role"),
            "Remove endpoint_url, force_path_style, access_key_id and secret_access_key, and grant the project role access to the bucket (`exportctl policy` prints the policy).",
        ));
    }
    if rules.allow_emulators {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(ExportError::invalid_config(
            FIELD,
            format!("{shown} is not https; the access key's signatures and the exported events would cross the network in the clear"),
            format!("Use the store's https:// endpoint; {}.", rules.local_endpoints_note()),
        ));
    }
    let internal = is_internal_host(&url);
    if internal {
        return Err(ExportError::invalid_config(
            FIELD,
            format!("{shown} is a local, private, link-local or unspecified address, inside the exporter's own network"),
            format!("Use the store's public https:// endpoint (a host name); {}.", rules.local_endpoints_note()),
        ));
    }
    Ok(())
}

/// [`check_endpoint`], then the endpoint's host name resolved as every request resolves it
/// (one lookup through `lookup`, never a connection): refused when no address it resolves
/// to is outside our network, or when it does not resolve. For connection create.
pub async fn admit_endpoint_host(endpoint_url: &str, rules: &EndpointRules, lookup: std::sync::Arc<dyn Lookup>) -> Result<()> {
    check_endpoint(endpoint_url, rules)?;
    if rules.allow_emulators {
        return Ok(());
    }
    let url = Url::parse(endpoint_url.trim())
        .map_err(|e| ExportError::invalid_config(FIELD, format!("is not a URL ({e})"), "Give the store's https:// endpoint."))?;
    let shown = origin(&url);
    match GuardedResolver::new(lookup, false).resolve(url.host_str().unwrap_or("")).await {
        Ok(_) => Ok(()),
        Err(GuardError::Internal) => Err(ExportError::invalid_config(
            FIELD,
            format!("{shown}: {INTERNAL_REFUSAL}"),
            "Use the store's public https:// endpoint (a host name that resolves to public addresses only).",
        )),
        Err(GuardError::Lookup(_)) => Err(ExportError::invalid_config(
            FIELD,
            format!("{shown}: its host name does not resolve"),
            "Check the host of endpoint_url (it must resolve in public DNS); if it is right, try again in a few minutes.",
        )),
    }
}

/// `scheme://host[:port]`: how an endpoint is named in messages (nothing else of the
/// customer's URL is echoed).
fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// The parts of an S3-compatible destination, or `None` for Amazon S3 and other types.
struct Parts<'a> {
    endpoint: CompatibleEndpoint,
    bucket: &'a str,
    prefix: &'a str,
    region: &'a str,
    path_style: bool,
    client: aws_sdk_s3::Client,
}

fn parts(dest: &Destination, timeouts: TimeoutConfig, resolver: GuardedResolver) -> Result<Parts<'_>> {
    let Destination::S3 { bucket, prefix, region, endpoint_url: Some(endpoint_url), force_path_style, access_key_id, secret_access_key, .. } = dest else {
        return Err(ExportError::Internal("an S3-compatible store was opened for a destination without endpoint_url".into()));
    };
    let (Some(key_id), Some(secret)) = (access_key_id, secret_access_key) else {
        // Connection validation requires both; say so rather than send unsigned requests.
        return Err(ExportError::invalid_config(
            "destination.access_key_id",
            "an S3-compatible store needs access_key_id and secret_access_key",
            "Give the store's access key in the connection.",
        ));
    };
    let url = Url::parse(endpoint_url.trim())
        .map_err(|e| ExportError::invalid_config(FIELD, format!("is not a URL ({e})"), "Give the store's https:// endpoint."))?;
    let endpoint = CompatibleEndpoint { url: origin(&url), access_key_id: key_id.trim().to_string() };
    let credentials = Credentials::new(key_id.trim(), secret.expose(), None, None, "s3-compatible-access-key");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.clone()))
        .endpoint_url(&endpoint.url)
        .force_path_style(*force_path_style)
        .credentials_provider(credentials)
        .timeout_config(timeouts)
        // Checksum headers only where the S3 API requires them: several compatible stores
        // refuse the x-amz-checksum-* headers and trailers the SDK would add by default.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // The SDK's own HTTPS client, resolving through the guard: it connects only to
        // addresses outside our network (unless emulators are allowed).
        .http_client(aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc)).build_with_resolver(resolver))
        .build();
    Ok(Parts { endpoint, bucket, prefix, region, path_style: *force_path_style, client: aws_sdk_s3::Client::from_conf(config) })
}

/// The store of an S3-compatible destination, signing with its access key.
/// `allow_emulators`: the operator's emulator setting (local addresses are connected to).
pub fn compatible_store(dest: &Destination, timeouts: TimeoutConfig, allow_emulators: bool) -> Result<S3Store> {
    compatible_store_resolving(dest, timeouts, GuardedResolver::system(allow_emulators))
}

/// [`compatible_store`] with host names resolved by `resolver` (tests: no real DNS).
pub fn compatible_store_resolving(dest: &Destination, timeouts: TimeoutConfig, resolver: GuardedResolver) -> Result<S3Store> {
    let p = parts(dest, timeouts, resolver)?;
    tracing::debug!(endpoint = %p.endpoint.url, bucket = p.bucket, region = p.region, path_style = p.path_style, "S3-compatible store");
    Ok(S3Store::new(p.client, p.bucket).on_compatible_endpoint(p.endpoint))
}

/// The probe suite of an S3-compatible destination (no KMS: the store cannot use AWS KMS).
pub fn compatible_probe(dest: &Destination, timeouts: TimeoutConfig, allow_emulators: bool) -> Result<S3Probe> {
    let p = parts(dest, timeouts, GuardedResolver::system(allow_emulators))?;
    Ok(S3Probe::new(p.client, p.bucket, p.prefix, None, None).on_compatible_endpoint(p.endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::azure::endpoint::ALLOW_EMULATOR_ENV;

    /// The rules of a process that read the operator's setting (the functions, `--cloud`).
    fn read(allow_emulators: bool) -> EndpointRules {
        EndpointRules { allow_emulators, setting_read: true, ..EndpointRules::default() }
    }

    fn refused(url: &str, allow: bool) -> String {
        check_endpoint(url, &read(allow)).expect_err(url).to_string()
    }

    #[test]
    fn public_https_endpoints_are_admitted() {
        for ok in [
            "https://0123456789abcdef.r2.cloudflarestorage.com",
            "https://0123456789abcdef.eu.r2.cloudflarestorage.com/",
            "https://storage.googleapis.com",
            "https://s3.us-west-004.backblazeb2.com",
            "https://minio.acme.example:9000",
            "https://93.184.216.34",
        ] {
            assert_eq!(check_endpoint(ok, &read(false)).map_err(|e| e.to_string()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn internal_addresses_and_plain_http_are_refused_without_the_emulator_setting() {
        for bad in [
            "https://localhost:9000",
            "https://minio.localhost",
            "https://127.0.0.1",
            "https://127.1",
            "https://0x7f000001",
            "https://10.0.0.5",
            "https://172.16.3.4",
            "https://192.168.1.1:9000",
            "https://169.254.169.254",
            "https://100.64.1.1",
            "https://0.0.0.0",
            "https://[::1]:9000",
            "https://[fd00::1]",
            "https://[fe80::1]",
            "https://[::ffff:169.254.169.254]",
            "https://[::]",
        ] {
            let err = refused(bad, false);
            assert!(err.contains("destination.endpoint_url") && err.contains("inside the exporter's own network"), "{bad}: {err}");
            assert!(err.contains(ALLOW_EMULATOR_ENV), "{bad}: {err}");
        }
        let err = refused("http://minio.acme.example", false);
        assert!(err.contains("is not https") && err.contains(ALLOW_EMULATOR_ENV), "{err}");
        let err = refused("https://key:pw@minio.acme.example", false);
        assert!(err.contains("user info") && !err.contains("pw"), "{err}");
        // Emulators: plain http on the loopback.
        assert_eq!(check_endpoint("http://127.0.0.1:9000", &read(true)).map_err(|e| e.to_string()), Ok(()));
        assert_eq!(check_endpoint("http://localhost:9000", &read(true)).map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn where_the_emulator_setting_is_not_read_a_refusal_does_not_name_it() {
        for bad in ["http://localhost:9000", "https://127.0.0.1:9000", "http://minio.acme.example"] {
            let err = check_endpoint(bad, &EndpointRules::default()).expect_err(bad).to_string();
            assert!(err.contains("only https:// endpoints on public hosts are accepted here") && !err.contains(ALLOW_EMULATOR_ENV), "{bad}: {err}");
        }
    }

    #[test]
    fn amazon_s3_is_refused_even_for_emulators() {
        for aws in [
            "https://s3.amazonaws.com",
            "https://s3.eu-west-1.amazonaws.com",
            "https://S3.Dualstack.us-east-1.AMAZONAWS.com.",
            "https://acme.s3.amazonaws.com",
            "https://s3.cn-north-1.amazonaws.com.cn",
            "http://amazonaws.com",
        ] {
            for allow in [false, true] {
                let err = refused(aws, allow);
                assert!(err.contains("is Amazon S3") && err.contains("project's IAM role") && err.contains("exportctl policy"), "{aws}: {err}");
            }
        }
        // A host that merely contains the name is not Amazon's.
        assert_eq!(check_endpoint("https://amazonaws.com.attacker.example", &read(false)).map_err(|e| e.to_string()), Ok(()));
        assert_eq!(check_endpoint("https://notamazonaws.com", &read(false)).map_err(|e| e.to_string()), Ok(()));
    }

    use crate::adapters::outbound_dns::test_support::{accepted_none, ip, listener};

    fn store_at(endpoint: &str, lookup: std::sync::Arc<crate::adapters::outbound_dns::StaticLookup>) -> S3Store {
        let dest = Destination::s3_compatible(endpoint, "acme-events", "exports", "auto", true, "AKIAEXAMPLEKEY", crate::model::secret::Secret::new("s3cr3t"));
        let timeouts = TimeoutConfig::builder().connect_timeout(std::time::Duration::from_secs(2)).build();
        compatible_store_resolving(&dest, timeouts, GuardedResolver::new(lookup, false)).unwrap()
    }

    /// The SDK's client resolves through the guard: a name answering with the listener's
    /// address (or any other internal one) gets no connection, and the error says why.
    #[tokio::test]
    async fn a_public_looking_endpoint_that_resolves_inside_is_refused_at_send_without_connecting() {
        use crate::adapters::outbound_dns::StaticLookup;
        use crate::ports::ObjectStore;
        let (listener, port) = listener();
        for answer in ["127.0.0.1", "::ffff:127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"] {
            let lookup = std::sync::Arc::new(StaticLookup::new().answer("store.example.com", &[ip(answer)]));
            let store = store_at(&format!("https://store.example.com:{port}"), lookup.clone());
            let err = store.put("exports/x", bytes::Bytes::from_static(b"x")).await.expect_err(answer);
            assert!(accepted_none(&listener), "{answer}: a connection reached the listener");
            let text = err.to_string();
            assert_eq!(err.kind(), "InvalidConfig", "{answer}: {text}");
            assert!(text.contains(INTERNAL_REFUSAL) && text.contains(FIELD), "{answer}: {text}");
            assert!(!text.contains(answer) && !text.contains("s3cr3t"), "{answer}: {text}");
            assert!(lookup.lookups() >= 1, "{answer}: the guard resolved the name");
        }
    }

    #[tokio::test]
    async fn an_endpoint_that_rebinds_after_admission_is_refused_at_send() {
        use crate::adapters::outbound_dns::StaticLookup;
        use crate::ports::ObjectStore;
        let (listener, port) = listener();
        let lookup =
            std::sync::Arc::new(StaticLookup::new().answer("rebind.example.com", &[ip("93.184.216.34")]).answer("rebind.example.com", &[ip("127.0.0.1")]));
        let endpoint = format!("https://rebind.example.com:{port}");
        admit_endpoint_host(&endpoint, &read(false), lookup.clone()).await.expect("public at admission");
        let err = store_at(&endpoint, lookup.clone()).put("exports/x", bytes::Bytes::from_static(b"x")).await.expect_err("rebound");
        assert!(err.to_string().contains(INTERNAL_REFUSAL), "{err}");
        assert!(accepted_none(&listener), "a connection reached the listener");
    }

    #[tokio::test]
    async fn admission_resolves_the_endpoint_and_refuses_names_inside() {
        use crate::adapters::outbound_dns::StaticLookup;
        for answer in ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"] {
            let lookup = std::sync::Arc::new(StaticLookup::new().answer("store.example.com", &[ip(answer)]));
            let err = admit_endpoint_host("https://store.example.com:9000", &read(false), lookup).await.expect_err(answer).to_string();
            assert!(err.contains(INTERNAL_REFUSAL) && err.contains("https://store.example.com:9000") && !err.contains(answer), "{answer}: {err}");
        }
        let public = std::sync::Arc::new(StaticLookup::new().answer("store.example.com", &[ip("93.184.216.34")]));
        assert_eq!(admit_endpoint_host("https://store.example.com", &read(false), public).await.map_err(|e| e.to_string()), Ok(()));
        let err = admit_endpoint_host("https://nowhere.example.com", &read(false), std::sync::Arc::new(StaticLookup::new())).await.unwrap_err().to_string();
        assert!(err.contains("does not resolve"), "{err}");
        // Emulators: no lookup at all.
        let lookup = std::sync::Arc::new(StaticLookup::new());
        assert_eq!(admit_endpoint_host("http://minio.example.com:9000", &read(true), lookup.clone()).await.map_err(|e| e.to_string()), Ok(()));
        assert_eq!(lookup.lookups(), 0);
    }

    #[test]
    fn stores_name_the_endpoint_and_key_never_the_secret() {
        let dest = Destination::s3_compatible(
            "https://ACCT.r2.cloudflarestorage.com/",
            "acme-events",
            "exports",
            "auto",
            true,
            "AKIAEXAMPLEKEY",
            crate::model::secret::Secret::new("very-secret-value"),
        );
        let timeouts = TimeoutConfig::builder().build();
        let store = compatible_store(&dest, timeouts.clone(), false).unwrap();
        use crate::ports::ObjectStore;
        assert_eq!(store.describe(), "https://acct.r2.cloudflarestorage.com/acme-events");
        assert_eq!(store.endpoint().unwrap().principal(), "access key AKIAEXAMPLEKEY on https://acct.r2.cloudflarestorage.com");
        let debug = format!("{store:?} {:?}", store.client().config());
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(compatible_probe(&dest, timeouts.clone(), false).is_ok());
        assert!(compatible_store(&Destination::aws_s3("b", "", "us-east-1", None), timeouts, false).is_err());
    }
}
