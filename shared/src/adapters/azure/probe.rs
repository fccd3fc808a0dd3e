//! Azure probe suite: the "test upload" of an Azure destination, and the diagnosis after an
//! access error. Checks, in report order: credentials (token for a service principal, expiry
//! for a SAS), container exists, write, read, list, delete. Every check that can run does, so
//! one report names every missing data action at once.

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use crate::access::probe::{ProbeReport, ProbeResult};
use crate::adapters::azure::errors::{BLOB_DELETE, BLOB_READ, BLOB_WRITE};
use crate::adapters::azure::store::{AzureOptions, AzureStore};
use crate::control::connection::Destination;
use crate::error::{ExportError, Result};
use crate::ports::AccessProbe;
use crate::ports::{join_key, ObjectStore};

/// Folder (under the connection's prefix) that holds the short-lived probe blob; the same
/// name the S3 probe uses, so one lifecycle rule can cover both.
pub const PROBE_DIR: &str = "_export_probe";

const CHECK_TOKEN: &str = "obtain token";
const CHECK_SAS: &str = "SAS token valid";
const CHECK_CONTAINER: &str = "container exists";
const CHECK_WRITE: &str = "write probe blob";
const CHECK_READ: &str = "read probe blob";
const CHECK_LIST: &str = "list under prefix";
const CHECK_DELETE: &str = "delete probe blob";
const NEED_TOKEN: &str = "Microsoft Entra ID token (tenant id, client id, client secret)";
const NEED_SAS: &str = "unexpired SAS token";
const NEED_CONTAINER: &str = "container exists";

pub struct AzureProbe {
    store: AzureStore,
    prefix: String,
}

impl std::fmt::Debug for AzureProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProbe").field("store", &self.store).field("prefix", &self.prefix).finish()
    }
}

impl AzureProbe {
    /// Probes `store` under `prefix` (the connection's prefix, where exports are written).
    pub fn new(store: AzureStore, prefix: &str) -> Self {
        AzureProbe { store, prefix: prefix.trim_matches('/').to_string() }
    }

    pub fn from_destination(dest: &Destination, options: AzureOptions) -> Result<Self> {
        Ok(AzureProbe::new(AzureStore::from_destination(dest, options)?, dest.prefix()))
    }

    fn probe_key(&self) -> String {
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        join_key(&self.prefix, &format!("{PROBE_DIR}/probe-{millis}-{:08x}", rand::thread_rng().gen::<u32>()))
    }
}

/// `se=` of a SAS token (its expiry), when it has one (a SAS tied to a stored access policy
/// may not).
fn sas_expiry(token: &str) -> Option<String> {
    url::form_urlencoded::parse(token.trim_start_matches('?').as_bytes()).find(|(k, _)| k == "se").map(|(_, v)| v.into_owned())
}

fn expired(se: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(se)
        .map(|t| t < chrono::Utc::now())
        .or_else(|_| chrono::NaiveDate::parse_from_str(se, "%Y-%m-%d").map(|d| d < chrono::Utc::now().date_naive()))
        .unwrap_or(false)
}

fn failed_with_missing_container(r: &std::result::Result<(), ExportError>) -> bool {
    matches!(r, Err(ExportError::DestinationMissing { .. }))
}

#[async_trait]
impl AccessProbe for AzureProbe {
    async fn probe(&self) -> ProbeReport {
        let store = &self.store;
        let mut report =
            ProbeReport { destination: join_key(&store.describe(), &self.prefix), principal: Some(store.principal().to_string()), results: Vec::new() };

        // 1. Credentials. Without a token nothing else can run: report the rest as skipped.
        if let Some(sas) = store.sas_token() {
            match sas_expiry(sas.expose()) {
                Some(se) if expired(&se) => {
                    let e = ExportError::BadCredentials {
                        service: "Azure Storage".into(),
                        detail: format!("the SAS token expired at {se}"),
                        hint: "Generate a new SAS token and update the connection.".into(),
                    };
                    report.results.push(ProbeResult::fail(CHECK_SAS, NEED_SAS, &e));
                }
                // No expiry in the token (stored access policy) or a future one: the service decides.
                _ => report.results.push(ProbeResult::pass(CHECK_SAS, NEED_SAS)),
            }
        } else {
            match store.check_token().await {
                Ok(_) => report.results.push(ProbeResult::pass(CHECK_TOKEN, NEED_TOKEN)),
                Err(e) => {
                    tracing::warn!(destination = %report.destination, error = %e, "Azure probe: no token for the service principal");
                    report.results.push(ProbeResult::fail(CHECK_TOKEN, NEED_TOKEN, &e));
                    for (check, need) in [
                        (CHECK_CONTAINER, NEED_CONTAINER),
                        (CHECK_WRITE, BLOB_WRITE),
                        (CHECK_READ, BLOB_READ),
                        (CHECK_LIST, BLOB_READ),
                        (CHECK_DELETE, BLOB_DELETE),
                    ] {
                        report.results.push(ProbeResult::skipped(check, need, "no token for the service principal"));
                    }
                    return report;
                }
            }
        }

        // 2. Container. Get Container Properties may itself be refused to a principal that
        //    holds only blob data actions: then the blob checks below decide.
        let container = store.container_exists().await;
        if let Ok(false) = container {
            let e = ExportError::DestinationMissing {
                resource: store.describe(),
                hint: "Create the container in the storage account, or fix the container name (and account URL) in the connection.".into(),
            };
            report.results.push(ProbeResult::fail(CHECK_CONTAINER, NEED_CONTAINER, &e));
            for (check, need) in [(CHECK_WRITE, BLOB_WRITE), (CHECK_READ, BLOB_READ), (CHECK_LIST, BLOB_READ), (CHECK_DELETE, BLOB_DELETE)] {
                report.results.push(ProbeResult::skipped(check, need, "the container does not exist"));
            }
            return report;
        }
        let container_index = report.results.len();

        // 3. Write.
        let key = self.probe_key();
        let body = Bytes::from_static(b"event export access probe\n");
        let write = store.put(&key, body.clone()).await;
        let written = write.is_ok();

        // 4. Read: the probe blob back when it was written; otherwise a read of the missing
        //    blob still tells a refusal (403) from permission to read (404).
        let read: std::result::Result<(), ExportError> = match store.get(&key).await {
            Ok(b) if b == body => Ok(()),
            Ok(_) => Err(ExportError::Corrupt { what: key.clone(), detail: "the probe blob read back differs from what was written".into() }),
            Err(ExportError::NotFound { .. }) if !written => Ok(()),
            Err(e) => Err(e),
        };

        // 5. List under the prefix (authorised by the blob read data action).
        let list: std::result::Result<(), ExportError> = match store.list(&join_key(&self.prefix, &format!("{PROBE_DIR}/"))).await {
            Ok(items) if !written || items.iter().any(|m| m.key == key) => Ok(()),
            Ok(_) => Err(ExportError::Internal(format!("the probe blob {key} was written but is not listed"))),
            Err(e) => Err(e),
        };

        // 6. Delete (deleting a missing blob is allowed, so this runs even when the write failed).
        let delete = store.delete(&key).await;

        // The container verdict, when Get Container Properties could not give it.
        let blob_results = [&write, &read, &list, &delete];
        let container_result = match container {
            Ok(_) => ProbeResult::pass(CHECK_CONTAINER, NEED_CONTAINER),
            Err(e) if !matches!(e, ExportError::PermissionDenied { .. }) => ProbeResult::fail(CHECK_CONTAINER, NEED_CONTAINER, &e),
            Err(_) if blob_results.iter().any(|r| failed_with_missing_container(r)) => ProbeResult::fail(
                CHECK_CONTAINER,
                NEED_CONTAINER,
                &ExportError::DestinationMissing { resource: store.describe(), hint: "Create the container, or fix its name in the connection.".into() },
            ),
            Err(_) if blob_results.iter().any(|r| r.is_ok()) => ProbeResult::pass(CHECK_CONTAINER, NEED_CONTAINER),
            Err(_) => ProbeResult::skipped(CHECK_CONTAINER, NEED_CONTAINER, "no permission this principal holds can see the container"),
        };
        report.results.insert(container_index, container_result);

        for (check, need, r) in
            [(CHECK_WRITE, BLOB_WRITE, write), (CHECK_READ, BLOB_READ, read), (CHECK_LIST, BLOB_READ, list), (CHECK_DELETE, BLOB_DELETE, delete)]
        {
            match r {
                Ok(()) => report.results.push(ProbeResult::pass(check, need)),
                Err(e) => {
                    tracing::warn!(destination = %report.destination, check, error = %e, "Azure probe failed");
                    report.results.push(ProbeResult::fail(check, need, &e));
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_expiry_is_read_from_the_token() {
        assert_eq!(sas_expiry("?sv=1&se=2020-01-01T00%3A00%3A00Z&sig=x").as_deref(), Some("2020-01-01T00:00:00Z"));
        assert!(expired("2020-01-01T00:00:00Z"));
        assert!(!expired("2999-01-01T00:00:00Z"));
        assert!(expired("2020-01-01"));
        assert_eq!(sas_expiry("sv=1&sig=x"), None);
    }
}
