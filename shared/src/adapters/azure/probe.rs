//! Azure probe suite: the "test upload" of an Azure destination, and the diagnosis after an
//! access error. Checks, in report order: credentials (token for a service principal, expiry
//! for a SAS), container exists, write, read, list, delete. Every check that can run does, so
//! one report names every missing data action at once.

use async_trait::async_trait;

use crate::access::probe::{round_trip, RoundTripChecks};
use crate::adapters::azure::errors::{BLOB_DELETE, BLOB_READ, BLOB_WRITE};
use crate::adapters::azure::store::{AzureOptions, AzureStore};
use crate::error::{ExportError, Result};
use crate::model::destination::Destination;
use crate::model::probe_report::{ProbeReport, ProbeResult};
use crate::ports::AccessProbe;
use crate::ports::{join_key, ObjectStore};

const CHECK_TOKEN: &str = "obtain token";
const CHECK_SAS: &str = "SAS token valid";
const CHECK_CONTAINER: &str = "container exists";
const ROUND_TRIP: RoundTripChecks = RoundTripChecks {
    write: ("write probe blob", BLOB_WRITE),
    read: ("read probe blob", BLOB_READ),
    list: ("list under prefix", BLOB_READ),
    delete: ("delete probe blob", BLOB_DELETE),
    read_answers_without_object: true,
};
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
                    for (check, need) in [(CHECK_CONTAINER, NEED_CONTAINER), ROUND_TRIP.write, ROUND_TRIP.read, ROUND_TRIP.list, ROUND_TRIP.delete] {
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
            for (check, need) in [ROUND_TRIP.write, ROUND_TRIP.read, ROUND_TRIP.list, ROUND_TRIP.delete] {
                report.results.push(ProbeResult::skipped(check, need, "the container does not exist"));
            }
            return report;
        }
        // 3-6. Write, read, list and delete a probe blob through the store.
        let trip = round_trip(store, &self.prefix, &ROUND_TRIP).await;

        // The container verdict, when Get Container Properties could not give it.
        let outcomes = trip.outcomes();
        let container_result = match container {
            Ok(_) => ProbeResult::pass(CHECK_CONTAINER, NEED_CONTAINER),
            Err(e) if !matches!(e, ExportError::PermissionDenied { .. }) => ProbeResult::fail(CHECK_CONTAINER, NEED_CONTAINER, &e),
            Err(_) if outcomes.iter().any(|r| matches!(r, Err(ExportError::DestinationMissing { .. }))) => ProbeResult::fail(
                CHECK_CONTAINER,
                NEED_CONTAINER,
                &ExportError::DestinationMissing { resource: store.describe(), hint: "Create the container, or fix its name in the connection.".into() },
            ),
            Err(_) if outcomes.iter().any(|r| r.is_ok()) => ProbeResult::pass(CHECK_CONTAINER, NEED_CONTAINER),
            Err(_) => ProbeResult::skipped(CHECK_CONTAINER, NEED_CONTAINER, "no permission this principal holds can see the container"),
        };
        report.results.push(container_result);
        report.results.extend(trip.results(&ROUND_TRIP, ProbeResult::fail));
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
