//! The conformance suite every `ObjectStore` must pass (local folder, memory, S3 on moto,
//! Azure on Azurite), in the spirit of object_store's integration module.

use std::sync::Arc;

use bytes::Bytes;
use exporter::ports::{collect_stream, CreateOutcome, ObjectStore};
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

/// Export-level checks on a destination store: an hour with duplicates and invalid lines
/// exported in several parts (`#n` keys listed and read back, gzip NDJSON, counts matching
/// the manifest), the recurring run skipping by reading the marker from the store, a
/// replace with larger parts deleting the stale parts, and byte-identical re-exports.
pub async fn export_conformance(dest: Arc<dyn ObjectStore>) {
    use exporter::adapters::local::store::LocalStore;
    use exporter::export::generate::{generate_hour, generate_merges, HourSpec};
    use exporter::export::hour_export::{export_hour, ExportMode, ExportSettings, ExportTargets};
    use exporter::hour::UtcHour;
    use std::io::BufRead;

    let lake_dir = tempfile::tempdir().unwrap();
    let lake: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(lake_dir.path()).unwrap());
    let hour = UtcHour::parse("2020-01-05T07").unwrap();
    let spec = HourSpec { project_id: "187520".into(), hour, events: 3000, events_per_file: 700, duplicate_every: 50, invalid_every: 100, seed: 5, gzip: true };
    let g = generate_hour(lake.as_ref(), &spec).await.unwrap();
    generate_merges(lake.as_ref(), "42", hour, 30, 5).await.unwrap();
    let conn = exporter::control::connection::Connection::from_json(
        r#"{"id":"conformance","org_id":"42","project_id":"187520","creator":"c@example.com",
            "destination":{"type":"local","path":"/unused","prefix":"conformance-exports/run"}}"#,
    )
    .unwrap();
    let targets = ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
    let small = ExportSettings::new(300 * 1024, 6, 2).unwrap();
    let big = ExportSettings::new(64 << 20, 6, 2).unwrap();

    let first = export_hour(&conn, &targets, hour, ExportMode::Recurring, &small).await.expect("first export");
    let manifest = first.manifest.expect("exported");
    let events = manifest.events.clone().unwrap();
    assert!(events.files.len() >= 3, "small parts must roll over: {} parts", events.files.len());
    assert!(events.accounting.balances());
    assert_eq!(events.accounting.duplicates, g.duplicates);
    assert_eq!(events.accounting.invalid, g.invalid);
    assert_eq!(events.accounting.exported, g.unique_events);
    let listed: Vec<String> = dest.list("conformance-exports/run/187520/187520_2020-01-05_7#").await.unwrap().into_iter().map(|m| m.key).collect();
    let mut expected: Vec<String> = events.files.iter().map(|f| f.key.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected, "parts with # must list back exactly");
    let mut lines = 0u64;
    for f in &events.files {
        let body = dest.get(&f.key).await.unwrap();
        for line in std::io::BufReader::new(flate2::read::GzDecoder::new(&body[..])).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            assert!(v.is_object());
            lines += 1;
        }
    }
    assert_eq!(lines, events.accounting.exported);
    let marker = dest.get("conformance-exports/run/187520/187520_2020-01-05_7_complete").await.expect("marker written");
    assert_eq!(serde_json::from_slice::<exporter::export::manifest::Manifest>(&marker).unwrap(), manifest);
    let merged = dest.get("conformance-exports/run/-42/-42_2020-01-05_7.json.gz").await.expect("merged IDs written");
    assert!(!merged.is_empty());

    // Recurring: the marker is read from the store and the hour skipped.
    let again = export_hour(&conn, &targets, hour, ExportMode::Recurring, &small).await.unwrap();
    assert!(again.skipped, "recurring run must skip a completed hour");

    // Replace with the same settings: byte-identical parts and marker.
    let replaced = export_hour(&conn, &targets, hour, ExportMode::Replace, &small).await.unwrap();
    assert_eq!(replaced.manifest.unwrap(), manifest, "re-export must be identical");
    assert_eq!(dest.get("conformance-exports/run/187520/187520_2020-01-05_7_complete").await.unwrap(), marker);

    // Replace with big parts: one part left, the stale ones deleted.
    let one = export_hour(&conn, &targets, hour, ExportMode::Replace, &big).await.unwrap().manifest.unwrap();
    assert_eq!(one.events.as_ref().unwrap().files.len(), 1);
    let left: Vec<String> = dest.list("conformance-exports/run/187520/187520_2020-01-05_7#").await.unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(left, vec!["conformance-exports/run/187520/187520_2020-01-05_7#0.json.gz".to_string()], "stale parts must be deleted");
    assert_eq!(one.events.unwrap().accounting.exported, g.unique_events);
}
