//! The Azure Blob adapter on a real Azurite: the conformance suite over a SAS (http) and over
//! a service principal (https, `--oauth basic`, token from the local authority), committed
//! blocks, exact names, paging, aborted uploads.

use std::sync::Arc;

use azure_core::http::{ClientOptions, Transport, Url};
use azure_storage_blob::models::{BlockBlobClientGetBlockListOptions, BlockListType};
use azure_storage_blob::{BlobClient, BlobClientOptions};
use bytes::Bytes;
use exporter::adapters::azure::endpoint::EndpointRules;
use exporter::adapters::azure::store::{AzureOptions, AzureStore};
use exporter::model::destination::AzureAuth;
use exporter::model::secret::Secret;
use exporter::ports::{collect_stream, ObjectStore};
use integration_tests::azurite::{self, account_sas, ALL_PERMISSIONS};
use integration_tests::conformance::store_conformance;

/// Committed block count of a blob, read with the SDK directly (not through the adapter).
async fn committed_blocks(container: &str, key: &str) -> usize {
    let mut url = Url::parse(&format!("{}/{container}", azurite::http_url())).unwrap();
    url.path_segments_mut().unwrap().extend(key.split('/'));
    url.set_query(Some(&account_sas(ALL_PERMISSIONS)));
    let opts = BlobClientOptions {
        client_options: ClientOptions { transport: Some(Transport::new(Arc::new(reqwest::Client::new()))), ..Default::default() },
        ..Default::default()
    };
    let blob = BlobClient::new(url, None, Some(opts)).unwrap();
    let list = blob
        .block_blob_client()
        .get_block_list(BlockListType::Committed, Some(BlockBlobClientGetBlockListOptions::default()))
        .await
        .expect("get block list")
        .into_model()
        .unwrap();
    list.committed_blocks.map(|b| b.len()).unwrap_or(0)
}

#[tokio::test]
async fn sas_store_passes_the_conformance_suite_with_several_blocks() {
    let container = azurite::new_container("conf-sas").await;
    let store = Arc::new(azurite::sas_store(&container, ALL_PERMISSIONS));
    // 20 MiB through 8 MiB blocks: three staged blocks per streaming upload.
    store_conformance(store, 20 << 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sas_store_exports_conform() {
    let container = azurite::new_container("conf-export").await;
    integration_tests::conformance::export_conformance(Arc::new(azurite::sas_store(&container, ALL_PERMISSIONS))).await;
}

#[tokio::test]
async fn service_principal_store_passes_the_conformance_suite_over_https() {
    let oauth = azurite::oauth();
    let container = oauth.new_container("conf-sp").await;
    let store = Arc::new(oauth.store(&container));
    store_conformance(store.clone(), 20 << 20).await;
    oauth.assert_no_secret(&format!("{store:?}"));
}

#[tokio::test]
async fn streaming_upload_commits_one_block_per_block_size() {
    let container = azurite::new_container("blocks").await;
    let opts = AzureOptions { block_size: Some(1 << 20), endpoints: EndpointRules::emulators(), ..Default::default() };
    let store = AzureStore::new(&azurite::http_url(), &container, AzureAuth::Sas { token: Secret::new(account_sas(ALL_PERMISSIONS)) }, opts).unwrap();
    let key = "exports/1/1_2020-01-25_7#0.json.gz";
    let data: Vec<u8> = (0..(5 * (1 << 20) + 12_345)).map(|i| (i % 241) as u8).collect();
    let mut up = store.upload(key).await.unwrap();
    for chunk in data.chunks(300_001) {
        up.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert!(store.head(key).await.unwrap().is_none(), "staged blocks must not be visible before the commit");
    assert!(store.list("exports/").await.unwrap().is_empty(), "staged blocks must not be listed before the commit");
    up.finish().await.unwrap();
    assert_eq!(committed_blocks(&container, key).await, 6, "5 full 1 MiB blocks + the rest");
    assert_eq!(store.head(key).await.unwrap().unwrap().size, data.len() as u64);
    assert!(collect_stream(store.get_stream(key).await.unwrap()).await.unwrap() == data);

    // A small streaming upload is a single Put Blob (no block list).
    let small = "exports/1/1_2020-01-25_7_complete";
    let mut up = store.upload(small).await.unwrap();
    up.write(Bytes::from_static(b"{\"parts\":1}")).await.unwrap();
    up.finish().await.unwrap();
    assert_eq!(&store.get(small).await.unwrap()[..], b"{\"parts\":1}");
}

#[tokio::test]
async fn aborted_upload_leaves_nothing_and_a_later_upload_of_the_same_name_is_exact() {
    let container = azurite::new_container("abort").await;
    let opts = AzureOptions { block_size: Some(1 << 20), endpoints: EndpointRules::emulators(), ..Default::default() };
    let store = AzureStore::new(&azurite::http_url(), &container, AzureAuth::Sas { token: Secret::new(account_sas(ALL_PERMISSIONS)) }, opts).unwrap();
    let key = "p/7/7_2021-06-01_0#0.json.gz";
    let mut up = store.upload(key).await.unwrap();
    up.write(Bytes::from(vec![1u8; 3 << 20])).await.unwrap();
    up.abort().await.unwrap();
    assert!(store.head(key).await.unwrap().is_none());
    assert!(store.list("p/").await.unwrap().is_empty(), "uncommitted blocks must not show up in listings");

    // Same name, different and shorter content: must not pick up the aborted upload's blocks.
    let second: Vec<u8> = (0..(2 << 20) + 7).map(|i| (i % 13) as u8).collect();
    let mut up = store.upload(key).await.unwrap();
    up.write(Bytes::from(second.clone())).await.unwrap();
    up.finish().await.unwrap();
    assert!(store.get(key).await.unwrap() == second);
}

#[tokio::test]
async fn names_with_reserved_characters_round_trip_exactly_and_listing_pages() {
    let container = azurite::new_container("names").await;
    let opts = AzureOptions { list_page_size: Some(2), endpoints: EndpointRules::emulators(), ..Default::default() };
    let store = AzureStore::new(&azurite::http_url(), &container, AzureAuth::Sas { token: Secret::new(account_sas(ALL_PERMISSIONS)) }, opts).unwrap();
    let names = [
        "exports/187520/187520_2020-01-25_17#0.json.gz",
        "exports/187520/187520_2020-01-25_17#1.json.gz",
        "exports/187520/187520_2020-01-25_17_complete",
        "exports/-42/-42_2020-01-25_17.json.gz",
        "exports/odd/a b+c%20d?e&f=g#h.json",
    ];
    for (i, n) in names.iter().enumerate() {
        store.put(n, Bytes::from(format!("body {i}"))).await.unwrap();
    }
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    // Page size 2: five blobs come back over three pages.
    let listed: Vec<String> = store.list("exports/").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(listed, expected);
    let parts: Vec<String> = store.list("exports/187520/187520_2020-01-25_17#").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(parts, names[..2].to_vec());
    for (i, n) in names.iter().enumerate() {
        assert_eq!(store.get(n).await.unwrap(), Bytes::from(format!("body {i}")), "{n}");
    }
}

#[tokio::test]
async fn missing_container_is_named_as_such() {
    let store = azurite::sas_store("no-such-container-anywhere", ALL_PERMISSIONS);
    let err = store.put("a/b", Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), "DestinationMissing", "{err}");
    assert!(err.to_string().contains("no-such-container-anywhere"), "{err}");
    assert!(!err.to_string().contains("sig="), "a SAS signature must never appear in errors: {err}");
}

/// A lake with `events` raw events for project `project` and 20 merge records for org 42,
/// all in hour 2020-01-25 17.
fn lake(project: &str, events: usize) -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join(format!("events/{project}/2020-01-25/17"));
    std::fs::create_dir_all(&ev).unwrap();
    let mut lines = String::new();
    for i in 0..events {
        lines.push_str(
            &serde_json::json!({
                "event_type": "click", "device_id": format!("d{i}"), "$insert_id": format!("i{i}"), "user_id": format!("u{}", i % 17),
                "event_properties": {"n": i, "pad": "x".repeat(200)},
                "client_event_time": "2020-01-25 17:01:00.000000", "client_upload_time": "2020-01-25 17:01:01.000000",
                "server_received_time": "2020-01-25 17:01:02.000000", "server_upload_time": "2020-01-25 17:01:03.000000"
            })
            .to_string(),
        );
        lines.push('\n');
    }
    std::fs::write(ev.join("a.json"), lines).unwrap();
    let merges = dir.path().join("merges/42/2020-01-25/17");
    std::fs::create_dir_all(&merges).unwrap();
    let mut m = String::new();
    for i in 0..20 {
        m.push_str(&serde_json::json!({"scope": 42, "merge_time": 1579971661000i64 + i, "merge_server_time": 1579971662000i64 + i, "amplitude_id": 1000 + i, "merged_amplitude_id": 2000 + i}).to_string());
        m.push('\n');
    }
    std::fs::write(merges.join("m.json"), m).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(exporter::adapters::local::store::LocalStore::new(dir.path()).unwrap());
    (dir, store)
}

fn gunzip_lines(data: &[u8]) -> usize {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(data).read_to_string(&mut text).unwrap();
    text.lines().count()
}

#[tokio::test]
async fn events_and_merged_ids_go_to_two_containers_of_one_connection() {
    use exporter::control::connection::{Connection, DataKinds, ProjectKind};
    use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets};
    use exporter::model::destination::Destination;
    use exporter::model::hour_request::ExportMode;
    use exporter::runtime::factory::{open_store, CloudContext};
    use exporter::UtcHour;

    let oauth = azurite::oauth();
    let events_container = oauth.new_container("ev").await;
    let ids_container = oauth.new_container("ids").await;
    let dest = |container: &str, prefix: &str| Destination::Azure {
        account_url: oauth.account_url.clone(),
        container: container.to_string(),
        prefix: prefix.to_string(),
        tenant_id: Some(oauth.tenant_id.clone()),
        client_id: Some(oauth.client_id.clone()),
        client_secret: Some(oauth.client_secret.clone()),
        sas_token: None,
    };
    let project = "187520";
    let conn = Connection {
        id: "azure-two-containers".into(),
        org_id: "42".into(),
        project_id: project.into(),
        project_kind: ProjectKind::Standard,
        export: DataKinds { events: true, merged_ids: true },
        filter: None,
        destination: dest(&events_container, "exports/amplitude"),
        merged_ids_destination: Some(dest(&ids_container, "merged")),
        admins: vec!["admin@example.com".into()],
        creator: "owner@example.com".into(),
        complete_markers: true,
        timestamp_format: Default::default(),
        format: Default::default(),
        layout: Default::default(),
        table: Default::default(),
        webhook: None,
        failure_webhook: None,
        fields: None,
        enabled: true,
        created: None,
        owes_from: None,
    };
    conn.validate().unwrap();
    oauth.assert_no_secret(&format!("{conn:?}"));

    let ctx = CloudContext { aws: None, azure: oauth.options(), local_folders: false };
    let events_store = open_store(&conn.destination, project, &ctx).await.unwrap();
    let ids_store = open_store(conn.merged_ids_destination(), project, &ctx).await.unwrap();
    let (_dir, lake) = lake(project, 3000);
    let targets = ExportTargets { lake, events: events_store.clone(), merged_ids: ids_store.clone() };
    let hour = UtcHour::parse("2020-01-25T17").unwrap();

    // Small parts: several parts per hour.
    let small = ExportSettings::new(256 << 10, 6, 2).unwrap();
    let report = export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Recurring, &small).await.unwrap();
    let manifest = report.manifest.expect("exported");
    let events_report = manifest.events.as_ref().unwrap();
    assert_eq!(events_report.accounting.exported, 3000);
    let parts = events_report.files.len();
    assert!(parts >= 3, "expected several parts, got {parts}");

    let ev_keys: Vec<String> = events_store.list("").await.unwrap().into_iter().map(|m| m.key).collect();
    let mut expected: Vec<String> = (0..parts).map(|n| format!("exports/amplitude/{project}/{project}_2020-01-25_17#{n}.json.gz")).collect();
    expected.push(format!("exports/amplitude/{project}/{project}_2020-01-25_17_complete"));
    expected.sort();
    assert_eq!(ev_keys, expected, "the events container holds the parts and the marker, nothing else");
    let mut lines = 0;
    for key in ev_keys.iter().filter(|k| k.ends_with(".json.gz")) {
        lines += gunzip_lines(&events_store.get(key).await.unwrap());
    }
    assert_eq!(lines, 3000);

    let id_keys: Vec<String> = ids_store.list("").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(id_keys, ["merged/-42/-42_2020-01-25_17.json.gz"], "the merged-IDs container holds only merged IDs");
    assert_eq!(gunzip_lines(&ids_store.get(&id_keys[0]).await.unwrap()), 20);

    // Recurring run again: the marker is there, the hour is skipped.
    assert!(export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Recurring, &small).await.unwrap().skipped);

    // Replace with bigger parts: fewer parts, the stale ones are deleted.
    let big = ExportSettings::new(64 << 20, 6, 2).unwrap();
    let report = export_hour(&conn.export_spec().unwrap(), &targets, hour, ExportMode::Replace, &big).await.unwrap();
    assert_eq!(report.manifest.unwrap().events.unwrap().files.len(), 1);
    let ev_keys: Vec<String> = events_store.list(&format!("exports/amplitude/{project}/")).await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(
        ev_keys,
        [format!("exports/amplitude/{project}/{project}_2020-01-25_17#0.json.gz"), format!("exports/amplitude/{project}/{project}_2020-01-25_17_complete")]
    );
}
