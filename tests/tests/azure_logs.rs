//! No log line, at any level and from any crate, ever carries an Azure client secret or a
//! SAS signature (its own binary: it installs the global log subscriber).

use bytes::Bytes;
use exporter::adapters::azure::probe::AzureProbe;
use exporter::adapters::azure::store::AzureStore;
use exporter::model::destination::AzureAuth;
use exporter::model::secret::Secret;
use exporter::ports::AccessProbe;
use exporter::ports::ObjectStore;
use integration_tests::azurite::{self, account_sas};
use integration_tests::captured_logs::CapturedLogs;

fn url_sig(sas: &str) -> String {
    url::form_urlencoded::parse(sas.as_bytes()).find(|(k, _)| k == "sig").map(|(_, v)| v.into_owned()).unwrap()
}

/// Collects every formatted log line (all targets, TRACE) written while it is the default.

#[tokio::test]
async fn no_log_line_at_any_level_contains_the_secret_or_the_sas_signature() {
    let logs = CapturedLogs::install();

    let oauth = azurite::oauth();
    let container = oauth.new_container("logs").await;
    let good = oauth.store(&container);
    good.put("exports/a#0.json.gz", Bytes::from_static(b"a")).await.unwrap();
    good.get("exports/a#0.json.gz").await.unwrap();
    AzureProbe::new(oauth.store(&container), "exports").probe().await;
    let wrong = Secret::new(format!("{}-wrong", oauth.client_secret.expose()));
    let bad = AzureStore::new(&oauth.account_url, &container, oauth.credentials_with_secret(wrong.clone()), oauth.options()).unwrap();
    bad.put("exports/b", Bytes::from_static(b"b")).await.unwrap_err();
    AzureProbe::new(bad, "exports").probe().await;

    let sas_container = azurite::new_container("logs-sas").await;
    let sas = account_sas("rl");
    let sas_store =
        AzureStore::new(&azurite::http_url(), &sas_container, AzureAuth::Sas { token: Secret::new(sas.clone()) }, azurite::emulator_options()).unwrap();
    sas_store.put("exports/c", Bytes::from_static(b"c")).await.unwrap_err();
    AzureProbe::new(sas_store, "exports").probe().await;

    let text = logs.text();
    assert!(text.lines().count() > 20, "the capture must see the SDK's request logs:\n{text}");
    assert!(text.contains("Azure probe"), "our own warnings are captured too");
    oauth.assert_no_secret(&text);
    assert!(!text.contains(wrong.expose()), "the wrong secret was logged");
    let sig = url_sig(&sas);
    let encoded = sas.split('&').find_map(|p| p.strip_prefix("sig=")).unwrap();
    assert!(!text.contains(&sig) && !text.contains(encoded), "the SAS signature was logged");
}
