//! The Azure Blob adapter on a real Azurite: the conformance suite over a SAS (http) and over
//! a service principal (https, `--oauth basic`, token from the local authority), committed
//! blocks, exact names, paging, aborted uploads.

use std::sync::Arc;

use azure_core::http::{ClientOptions, Transport, Url};
use azure_storage_blob::models::{BlockBlobClientGetBlockListOptions, BlockListType};
use azure_storage_blob::{BlobClient, BlobClientOptions};
use bytes::Bytes;
use exporter::adapters::azure::{AzureCredentials, AzureOptions, AzureStore};
use exporter::secret::Secret;
use exporter::storage::{collect_stream, ObjectStore};
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
    let opts = AzureOptions { block_size: Some(1 << 20), ..Default::default() };
    let store = AzureStore::new(&azurite::http_url(), &container, AzureCredentials::Sas(Secret::new(account_sas(ALL_PERMISSIONS))), opts).unwrap();
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
    let opts = AzureOptions { block_size: Some(1 << 20), ..Default::default() };
    let store = AzureStore::new(&azurite::http_url(), &container, AzureCredentials::Sas(Secret::new(account_sas(ALL_PERMISSIONS))), opts).unwrap();
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
    let opts = AzureOptions { list_page_size: Some(2), ..Default::default() };
    let store = AzureStore::new(&azurite::http_url(), &container, AzureCredentials::Sas(Secret::new(account_sas(ALL_PERMISSIONS))), opts).unwrap();
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
