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

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use url::Url;

use crate::adapters::aws::errors::CompatibleEndpoint;
use crate::adapters::aws::probe::S3Probe;
use crate::adapters::aws::s3::S3Store;
use crate::adapters::azure::endpoint::ALLOW_EMULATOR_ENV;
use crate::adapters::internal_hosts::is_internal_host;
use crate::error::{ExportError, Result};
use crate::model::destination::Destination;

const FIELD: &str = "destination.endpoint_url";

/// Refuses an endpoint the exporter must not send requests (and signatures) to. Amazon S3
/// is refused whatever the setting; the rest is relaxed for emulators.
pub fn check_endpoint(endpoint_url: &str, allow_emulators: bool) -> Result<()> {
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
    if allow_emulators {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(ExportError::invalid_config(
            FIELD,
            format!("{shown} is not https; the access key's signatures and the exported events would cross the network in the clear"),
            format!("Use the store's https:// endpoint; plain http is accepted only for emulators ({ALLOW_EMULATOR_ENV})."),
        ));
    }
    let internal = is_internal_host(&url);
    if internal {
        return Err(ExportError::invalid_config(
            FIELD,
            format!("{shown} is a local, private, link-local or unspecified address, inside the exporter's own network"),
            format!("Use the store's public https:// endpoint (a host name); local stores are accepted only for emulators ({ALLOW_EMULATOR_ENV})."),
        ));
    }
    Ok(())
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

fn parts(dest: &Destination, timeouts: TimeoutConfig) -> Result<Parts<'_>> {
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
        .build();
    Ok(Parts { endpoint, bucket, prefix, region, path_style: *force_path_style, client: aws_sdk_s3::Client::from_conf(config) })
}

/// The store of an S3-compatible destination, signing with its access key.
pub fn compatible_store(dest: &Destination, timeouts: TimeoutConfig) -> Result<S3Store> {
    let p = parts(dest, timeouts)?;
    tracing::debug!(endpoint = %p.endpoint.url, bucket = p.bucket, region = p.region, path_style = p.path_style, "S3-compatible store");
    Ok(S3Store::new(p.client, p.bucket).on_compatible_endpoint(p.endpoint))
}

/// The probe suite of an S3-compatible destination (no KMS: the store cannot use AWS KMS).
pub fn compatible_probe(dest: &Destination, timeouts: TimeoutConfig) -> Result<S3Probe> {
    let p = parts(dest, timeouts)?;
    Ok(S3Probe::new(p.client, p.bucket, p.prefix, None, None).on_compatible_endpoint(p.endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str, allow: bool) -> String {
        check_endpoint(url, allow).expect_err(url).to_string()
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
            assert_eq!(check_endpoint(ok, false).map_err(|e| e.to_string()), Ok(()), "{ok}");
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
        assert_eq!(check_endpoint("http://127.0.0.1:9000", true).map_err(|e| e.to_string()), Ok(()));
        assert_eq!(check_endpoint("http://localhost:9000", true).map_err(|e| e.to_string()), Ok(()));
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
        assert_eq!(check_endpoint("https://amazonaws.com.attacker.example", false).map_err(|e| e.to_string()), Ok(()));
        assert_eq!(check_endpoint("https://notamazonaws.com", false).map_err(|e| e.to_string()), Ok(()));
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
        let store = compatible_store(&dest, timeouts.clone()).unwrap();
        use crate::ports::ObjectStore;
        assert_eq!(store.describe(), "https://acct.r2.cloudflarestorage.com/acme-events");
        assert_eq!(store.endpoint().unwrap().principal(), "access key AKIAEXAMPLEKEY on https://acct.r2.cloudflarestorage.com");
        let debug = format!("{store:?} {:?}", store.client().config());
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(compatible_probe(&dest, timeouts.clone()).is_ok());
        assert!(compatible_store(&Destination::aws_s3("b", "", "us-east-1", None), timeouts).is_err());
    }
}
