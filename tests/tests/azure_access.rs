//! Azure access diagnosis on a real Azurite: SAS tokens lacking one permission make the probe
//! suite name exactly that data action; the service principal runs end to end over HTTPS
//! (Azurite `--oauth basic`, local token endpoint); a wrong secret is a credential error; the
//! client secret never appears in any error string, report or Debug output.

use bytes::Bytes;
use chrono::{Duration, Utc};
use exporter::adapters::azure::endpoint::EndpointRules;
use exporter::adapters::azure::errors::{BLOB_DELETE, BLOB_READ, BLOB_WRITE};
use exporter::adapters::azure::probe::AzureProbe;
use exporter::adapters::azure::store::AzureStore;
use exporter::model::destination::AzureAuth;
use exporter::model::destination::Destination;
use exporter::model::probe_report::{ProbeOutcome, ProbeReport};
use exporter::model::secret::Secret;
use exporter::ports::AccessProbe;
use exporter::ports::ObjectStore;
use exporter::runtime::factory::{open_store, probe_destination, CloudContext};
use integration_tests::azurite::{self, account_sas, account_sas_between, ALL_PERMISSIONS};

fn sas_probe(container: &str, permissions: &str) -> AzureProbe {
    AzureProbe::new(azurite::sas_store(container, permissions), "exports")
}

fn outcome<'a>(report: &'a ProbeReport, check: &str) -> &'a ProbeOutcome {
    &report.results.iter().find(|r| r.check == check).unwrap_or_else(|| panic!("no check {check:?} in\n{}", report.table())).outcome
}

#[tokio::test]
async fn full_sas_passes_every_probe() {
    let container = azurite::new_container("probe-ok").await;
    let report = sas_probe(&container, ALL_PERMISSIONS).probe().await;
    assert!(report.all_passed(), "{}", report.table());
    let checks: Vec<&str> = report.results.iter().map(|r| r.check.as_str()).collect();
    assert_eq!(checks, ["SAS token valid", "container exists", "write probe blob", "read probe blob", "list under prefix", "delete probe blob"]);
    // The probe cleans up after itself.
    assert!(azurite::sas_store(&container, ALL_PERMISSIONS).list("exports/").await.unwrap().is_empty());
}

#[tokio::test]
async fn sas_lacking_one_permission_names_exactly_that_data_action() {
    let container = azurite::new_container("probe-sas").await;
    // `a` (add) and `c` (create) also let a SAS create blobs, so "no write" drops all three.
    for (permissions, missing) in [("rwlac", BLOB_DELETE), ("rdl", BLOB_WRITE), ("wdlac", BLOB_READ)] {
        let report = sas_probe(&container, permissions).probe().await;
        assert_eq!(report.missing(), vec![missing.to_string()], "SAS sp={permissions}:\n{}", report.table());
        let failed: Vec<_> = report.results.iter().filter(|r| r.failed()).collect();
        assert!(failed.iter().all(|r| matches!(&r.outcome, ProbeOutcome::Fail { cause, .. } if cause == "PermissionDenied")), "{}", report.table());
        assert!(!report.table().contains("sig="), "SAS signature in the report:\n{}", report.table());
    }
    // And the store's own errors name the same data action.
    let no_delete = azurite::sas_store(&container, "rwlac");
    no_delete.put("exports/x", Bytes::from_static(b"x")).await.unwrap();
    let err = no_delete.delete("exports/x").await.unwrap_err();
    assert_eq!(err.missing_permission(), Some(BLOB_DELETE), "{err}");
    let err = azurite::sas_store(&container, "rdl").put("exports/y", Bytes::from_static(b"y")).await.unwrap_err();
    assert_eq!(err.missing_permission(), Some(BLOB_WRITE), "{err}");
    let err = azurite::sas_store(&container, "wdlac").get("exports/x").await.unwrap_err();
    assert_eq!(err.missing_permission(), Some(BLOB_READ), "{err}");
}

#[tokio::test]
async fn missing_container_and_expired_sas_are_named_as_causes() {
    let report = sas_probe("container-that-is-not-there", ALL_PERMISSIONS).probe().await;
    assert!(matches!(outcome(&report, "container exists"), ProbeOutcome::Fail { cause, .. } if cause == "DestinationMissing"), "{}", report.table());
    assert!(matches!(outcome(&report, "write probe blob"), ProbeOutcome::Skipped { .. }), "{}", report.table());
    assert_eq!(report.missing(), vec!["container exists".to_string()]);

    let container = azurite::new_container("probe-exp").await;
    let past = Utc::now() - Duration::hours(3);
    let expired = account_sas_between(ALL_PERMISSIONS, past - Duration::hours(1), past);
    let store = AzureStore::new(&azurite::http_url(), &container, AzureAuth::Sas { token: Secret::new(expired.clone()) }, azurite::emulator_options()).unwrap();
    let err = store.put("exports/z", Bytes::from_static(b"z")).await.unwrap_err();
    assert!(matches!(err.kind(), "AccessBlocked" | "BadCredentials"), "{err}");
    if err.kind() == "AccessBlocked" {
        let text = err.to_string();
        assert!(text.contains("network rules") && text.contains("SAS"), "both causes must be named: {text}");
    }
    let report = AzureProbe::new(store, "exports").probe().await;
    assert!(matches!(outcome(&report, "SAS token valid"), ProbeOutcome::Fail { cause, .. } if cause == "BadCredentials"), "{}", report.table());
    let sig = url_sig(&expired);
    let encoded = expired.split('&').find_map(|p| p.strip_prefix("sig=")).unwrap();
    for shown in [report.table(), err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(&sig) && !shown.contains(encoded), "SAS signature leaked: {shown}");
    }
}

/// The SAS signature as it appears in the token (percent-encoded) and decoded.
fn url_sig(sas: &str) -> String {
    url::form_urlencoded::parse(sas.as_bytes()).find(|(k, _)| k == "sig").map(|(_, v)| v.into_owned()).unwrap()
}

#[tokio::test]
async fn service_principal_runs_end_to_end_over_https() {
    let oauth = azurite::oauth();
    let container = oauth.new_container("sp-probe").await;
    let report = AzureProbe::new(oauth.store(&container), "exports").probe().await;
    assert!(report.all_passed(), "{}", report.table());
    assert_eq!(report.results[0].check, "obtain token");
    assert!(report.principal.as_deref().unwrap().contains(&oauth.client_id));
    oauth.assert_no_secret(&report.table());
    oauth.assert_no_secret(&format!("{report:?}"));

    // Through the factory, from a connection's destination, as `exportctl verify` does.
    let dest = Destination::Azure {
        account_url: oauth.account_url.clone(),
        container: container.clone(),
        prefix: "exports".into(),
        tenant_id: Some(oauth.tenant_id.clone()),
        client_id: Some(oauth.client_id.clone()),
        client_secret: Some(oauth.client_secret.clone()),
        sas_token: None,
    };
    let ctx = CloudContext { aws: None, azure: oauth.options(), local_folders: false };
    let report = probe_destination(&dest, "187520", &ctx).await;
    assert!(report.all_passed(), "{}", report.table());
    let store = open_store(&dest, "187520", &ctx).await.unwrap();
    store.put("exports/187520/187520_2020-01-25_17#0.json.gz", Bytes::from_static(b"{}\n")).await.unwrap();
    let keys: Vec<String> = store.list("exports/").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["exports/187520/187520_2020-01-25_17#0.json.gz"]);
    oauth.assert_no_secret(&format!("{dest:?} {store:?} {ctx:?}"));
}

#[tokio::test]
async fn wrong_secret_or_tenant_is_a_credential_error_that_never_shows_the_secret() {
    let oauth = azurite::oauth();
    let container = oauth.new_container("sp-bad").await;
    let wrong = Secret::new(format!("{}-but-wrong", oauth.client_secret.expose()));

    let store = AzureStore::new(&oauth.account_url, &container, oauth.credentials_with_secret(wrong.clone()), oauth.options()).unwrap();
    let err = store.put("exports/a", Bytes::from_static(b"a")).await.unwrap_err();
    assert_eq!(err.kind(), "BadCredentials", "{err}");
    let text = err.to_string();
    assert!(text.contains("AADSTS7000215"), "the authority's answer is kept: {text}");
    assert!(text.contains("tenant id, client id and client secret"), "the fix is named: {text}");
    for shown in [text.clone(), format!("{err:?}"), format!("{store:?}")] {
        oauth.assert_no_secret(&shown);
        assert!(!shown.contains(wrong.expose()), "the wrong secret leaked: {shown}");
    }

    let report = AzureProbe::new(store, "exports").probe().await;
    assert!(matches!(outcome(&report, "obtain token"), ProbeOutcome::Fail { cause, .. } if cause == "BadCredentials"), "{}", report.table());
    assert!(report.results[1..].iter().all(|r| matches!(r.outcome, ProbeOutcome::Skipped { .. })), "{}", report.table());
    for shown in [report.table(), format!("{report:?}"), serde_json::to_string(&report).unwrap()] {
        oauth.assert_no_secret(&shown);
        assert!(!shown.contains(wrong.expose()));
    }

    // Unknown tenant: also a credential error naming what to check.
    let creds = AzureAuth::ServicePrincipal {
        tenant_id: "00000000-0000-0000-0000-000000000000".into(),
        client_id: oauth.client_id.clone(),
        client_secret: oauth.client_secret.clone(),
    };
    let store = AzureStore::new(&oauth.account_url, &container, creds, oauth.options()).unwrap();
    let err = store.head("exports/a").await.unwrap_err();
    assert_eq!(err.kind(), "BadCredentials", "{err}");
    assert!(err.to_string().contains("AADSTS90002"), "{err}");
    oauth.assert_no_secret(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn sas_store_errors_never_show_the_signature() {
    let container = azurite::new_container("sas-redact").await;
    let sas = account_sas("r");
    let store = AzureStore::new(&azurite::http_url(), &container, AzureAuth::Sas { token: Secret::new(sas.clone()) }, azurite::emulator_options()).unwrap();
    let err = store.put("exports/a#1", Bytes::from_static(b"a")).await.unwrap_err();
    assert_eq!(err.missing_permission(), Some(BLOB_WRITE));
    let sig = url_sig(&sas);
    let encoded = sas.split('&').find_map(|p| p.strip_prefix("sig=")).unwrap();
    for shown in [err.to_string(), format!("{err:?}"), format!("{store:?}")] {
        assert!(!shown.contains(&sig) && !shown.contains(encoded), "SAS leaked: {shown}");
    }
}

#[tokio::test]
async fn options_from_the_environment_reach_the_local_authority_and_trust_its_ca() {
    // start-emulators.sh exports AZURE_AUTHORITY_HOST and EXPORTER_AZURE_EXTRA_CA_FILE, as an
    // operator would for a sovereign cloud or a TLS-inspecting proxy.
    let oauth = azurite::oauth();
    let opts = exporter::adapters::azure::store::AzureOptions::from_env().unwrap();
    assert_eq!(opts.authority_host.as_deref(), Some(oauth.authority_host.as_str()));
    assert_eq!(opts.extra_ca_pem.as_deref(), Some(oauth.ca_pem.as_slice()));
    let container = oauth.new_container("from-env").await;
    let store = AzureStore::new(&oauth.account_url, &container, oauth.credentials(), opts).unwrap();
    store.put("exports/env", Bytes::from_static(b"env")).await.unwrap();

    // Without the extra CA the self-signed chain is refused: the trust really comes from it.
    let untrusting = exporter::adapters::azure::store::AzureOptions {
        authority_host: Some(oauth.authority_host.clone()),
        endpoints: EndpointRules::emulators(),
        ..Default::default()
    };
    let store = AzureStore::new(&oauth.account_url, &container, oauth.credentials(), untrusting).unwrap();
    let err = store.get("exports/env").await.unwrap_err();
    assert!(matches!(err.kind(), "Transient" | "BadCredentials"), "{err}");
    oauth.assert_no_secret(&format!("{err} {err:?}"));
}
