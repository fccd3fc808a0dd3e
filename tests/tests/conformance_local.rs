//! The conformance suite on the embedded adapters (local folder, memory).

use std::sync::Arc;

use exporter::adapters::local::memory::MemoryStore;
use exporter::adapters::local::store::LocalStore;
use integration_tests::conformance::store_conformance;

#[tokio::test]
async fn local_folder_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    store_conformance(Arc::new(LocalStore::new(dir.path()).unwrap()), 3 << 20).await;
}

#[tokio::test]
async fn memory_store_conforms() {
    store_conformance(Arc::new(MemoryStore::new("conformance")), 3 << 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_folder_exports_conform() {
    let dir = tempfile::tempdir().unwrap();
    integration_tests::conformance::export_conformance(Arc::new(LocalStore::new(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_exports_conform() {
    integration_tests::conformance::export_conformance(Arc::new(MemoryStore::new("exports"))).await;
}
