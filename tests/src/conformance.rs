//! The conformance suite every `ObjectStore` must pass (local folder, memory, S3 on moto,
//! Azure on Azurite), in the spirit of object_store's integration module.

use std::sync::Arc;

use bytes::Bytes;
use exporter::storage::{collect_stream, CreateOutcome, ObjectStore};
use exporter::ExportError;

/// Storage-level checks: keys with `#` round-trip through list and get, streaming uploads
/// of `big_upload_bytes` (use more than one multipart part / block), create-only writes,
/// idempotent deletes, NotFound on missing objects.
pub async fn store_conformance(store: Arc<dyn ObjectStore>, big_upload_bytes: usize) {
    let base = "conformance/187520";
    let hash_key = format!("{base}/187520_2020-01-25_7#0.json.gz");
    let other_key = format!("{base}/187520_2020-01-25_17#0.json.gz");
    store.put(&hash_key, Bytes::from_static(b"part zero")).await.expect("put with # in key");
    store.put(&other_key, Bytes::from_static(b"other hour")).await.expect("put second key");

    // `#` survives the round trip, list is sorted and exact.
    let listed: Vec<String> = store.list(&format!("{base}/")).await.expect("list").into_iter().map(|m| m.key).collect();
    assert_eq!(listed, vec![other_key.clone(), hash_key.clone()], "list must return keys exactly, sorted by key");
    let hour7: Vec<String> = store.list(&format!("{base}/187520_2020-01-25_7#")).await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(hour7, vec![hash_key.clone()], "a prefix ending in # must not match hour 17");
    assert_eq!(&store.get(&hash_key).await.expect("get with #")[..], b"part zero");
    let meta = store.head(&hash_key).await.unwrap().expect("head finds it");
    assert_eq!(meta.size, 9);

    // Missing objects.
    assert!(store.head(&format!("{base}/missing")).await.unwrap().is_none());
    match store.get(&format!("{base}/missing")).await {
        Err(ExportError::NotFound { .. }) => {}
        other => panic!("get of a missing object must be NotFound, got {other:?}"),
    }

    // Overwrite replaces.
    store.put(&hash_key, Bytes::from_static(b"replaced")).await.unwrap();
    assert_eq!(&store.get(&hash_key).await.unwrap()[..], b"replaced");

    // Create-only writes.
    let claim = format!("{base}/claims/bucket");
    assert_eq!(store.put_if_absent(&claim, Bytes::from_static(b"org-1")).await.unwrap(), CreateOutcome::Created);
    assert_eq!(store.put_if_absent(&claim, Bytes::from_static(b"org-2")).await.unwrap(), CreateOutcome::AlreadyExists);
    assert_eq!(&store.get(&claim).await.unwrap()[..], b"org-1", "a losing create-only write must not overwrite");

    // Streaming upload: invisible until finished, byte-exact after.
    let big_key = format!("{base}/big#1.bin");
    let mut upload = store.upload(&big_key).await.expect("start upload");
    let mut expected = Vec::with_capacity(big_upload_bytes);
    let mut i: u64 = 0;
    while expected.len() < big_upload_bytes {
        let chunk: Vec<u8> = (0..300_007u64).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        expected.extend_from_slice(&chunk);
        upload.write(Bytes::from(chunk)).await.expect("write chunk");
        i += 1;
    }
    assert!(store.head(&big_key).await.unwrap().is_none(), "an unfinished upload must not be visible");
    upload.finish().await.expect("finish upload");
    let got = collect_stream(store.get_stream(&big_key).await.unwrap()).await.unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "streamed object differs from what was written");

    // Aborted upload leaves nothing.
    let aborted = format!("{base}/aborted#0.bin");
    let mut upload = store.upload(&aborted).await.unwrap();
    upload.write(Bytes::from_static(b"never visible")).await.unwrap();
    upload.abort().await.unwrap();
    assert!(store.head(&aborted).await.unwrap().is_none(), "an aborted upload must leave nothing");

    // Deletes are idempotent.
    store.delete(&hash_key).await.unwrap();
    store.delete(&hash_key).await.expect("deleting a missing object is not an error");
    assert!(store.head(&hash_key).await.unwrap().is_none());
    for key in [other_key, claim, big_key] {
        store.delete(&key).await.unwrap();
    }
    assert!(store.list(&format!("{base}/")).await.unwrap().is_empty());
}
