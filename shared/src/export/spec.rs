//! What the export pipeline is asked to write for one connection: which data, under which
//! prefixes, in which layout, file format and timestamp form, through which filter, and
//! whether the hour ends with a complete marker. The connection produces it
//! (`Connection::export_spec` in `crate::control::connection`); the pipeline sees nothing
//! else of the connection (no admins, webhooks or secrets), so it is tested and
//! benchmarked from a spec alone.

use crate::export::field_policy::FieldPolicy;
use crate::export::filter::Filter;
use crate::export::layout::ExportLayout;
use crate::export::timestamp::TimestampFormat;
use crate::model::format::{PartFormat, TableFormat};
use crate::model::layout_kind::LayoutKind;

#[derive(Debug, Clone, PartialEq)]
pub struct ExportSpec {
    /// The connection the files are written for (manifests name it).
    pub connection_id: String,
    pub project_id: String,
    pub org_id: String,
    /// Export the project's events.
    pub events: bool,
    /// Export the organisation's merged user IDs.
    pub merged_ids: bool,
    /// The prefix under the events' destination.
    pub events_prefix: String,
    /// The prefix under the merged IDs' destination (the events' when they share one).
    pub merged_ids_prefix: String,
    pub layout: LayoutKind,
    pub format: PartFormat,
    /// Whether the Parquet parts also form a Delta table (committed once per hour export).
    pub table: TableFormat,
    pub timestamp_format: TimestampFormat,
    /// Write the `_complete` manifest last (the default); without it an hour is only parts.
    pub complete_markers: bool,
    /// Events that do not match are counted as filtered, not exported.
    pub filter: Option<Filter>,
    /// Fields dropped, pseudonymised or coarsened after the filter (`None`: every value as
    /// normalised, and no per-event work). Holds the opened key; its `Debug` never shows it.
    pub field_policy: Option<FieldPolicy>,
}

impl ExportSpec {
    /// A spec with the defaults of a new connection (events and merged IDs, Amplitude's flat
    /// layout, gzipped JSON, Amplitude timestamps, markers, no filter) under one prefix.
    pub fn new(connection_id: impl Into<String>, project_id: impl Into<String>, org_id: impl Into<String>, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        ExportSpec {
            connection_id: connection_id.into(),
            project_id: project_id.into(),
            org_id: org_id.into(),
            events: true,
            merged_ids: true,
            events_prefix: prefix.clone(),
            merged_ids_prefix: prefix,
            layout: LayoutKind::default(),
            format: PartFormat::default(),
            table: TableFormat::default(),
            timestamp_format: TimestampFormat::default(),
            complete_markers: true,
            filter: None,
            field_policy: None,
        }
    }

    /// Where the event parts and (when events are exported) the marker go.
    pub fn events_layout(&self) -> ExportLayout {
        ExportLayout::new(&self.events_prefix, &self.project_id, &self.org_id).with(self.layout, self.format)
    }

    /// Where the merged-IDs file (and, without events, the marker) goes.
    pub fn merged_ids_layout(&self) -> ExportLayout {
        ExportLayout::new(&self.merged_ids_prefix, &self.project_id, &self.org_id).with(self.layout, self.format)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::local::memory::MemoryStore;
    use crate::export::generate::{generate_hour, HourSpec};
    use crate::export::hour_export::{export_hour, ExportSettings, ExportTargets};
    use crate::hour::UtcHour;
    use crate::model::hour_request::ExportMode;
    use crate::ports::ObjectStore;

    /// The pipeline runs from a spec alone: no connection, destination or secret is built.
    #[tokio::test]
    async fn an_hour_exports_from_a_spec_alone() {
        let hour = UtcHour::parse("2020-01-25T17").unwrap();
        let lake = Arc::new(MemoryStore::new("lake"));
        let dest = Arc::new(MemoryStore::new("dest"));
        let generated = generate_hour(
            lake.as_ref(),
            &HourSpec { project_id: "187520".into(), hour, events: 500, events_per_file: 200, duplicate_every: 50, invalid_every: 100, seed: 3, gzip: true },
        )
        .await
        .unwrap();
        let spec = ExportSpec { merged_ids: false, layout: LayoutKind::Hive, ..ExportSpec::new("c1", "187520", "42", "exports") };
        let targets = ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
        let settings = ExportSettings::new(4 << 10, 1, 1).unwrap();
        let report = export_hour(&spec, &targets, hour, ExportMode::Recurring, &settings).await.unwrap();
        let manifest = report.manifest.expect("a manifest");
        assert_eq!(manifest.connection_id, "c1");
        let events = manifest.events.expect("events exported");
        assert!(events.accounting.balances(), "{:?}", events.accounting);
        assert_eq!(events.accounting.exported, generated.unique_events);
        assert_eq!(events.accounting.invalid, generated.invalid);
        assert!(events.files.len() > 1, "4 KiB parts roll over: {} part(s)", events.files.len());
        let marker = spec.events_layout().complete_key(hour);
        assert_eq!(marker, "exports/187520/dt=2020-01-25/hour=17/_187520_2020-01-25_17_complete");
        assert!(dest.head(&marker).await.unwrap().is_some(), "the marker is written last");
        assert!(manifest.merged_ids.is_none(), "the spec asked for no merged IDs");
    }

    /// A Delta table's upkeep that fails never fails the hour, is reported with the hour (the
    /// run record and the status carry it) and is retried at every commit until it succeeds;
    /// then it falls due every tenth version again.
    #[tokio::test]
    async fn a_failed_delta_upkeep_is_reported_and_retried_at_every_commit_until_it_succeeds() {
        use crate::adapters::local::memory::MemoryOp;
        use crate::model::format::{PartFormat, TableFormat};
        let lake = Arc::new(MemoryStore::new("lake"));
        let dest = Arc::new(MemoryStore::new("dest"));
        let spec = ExportSpec {
            merged_ids: false,
            format: PartFormat::Parquet,
            table: TableFormat::Delta,
            layout: LayoutKind::Hive,
            ..ExportSpec::new("c1", "187520", "42", "exports")
        };
        let targets = ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
        let settings = ExportSettings::new(1 << 20, 1, 1).unwrap();
        // Checkpoints cannot be written; commits (their own log entries) can.
        dest.refuse_keys_containing(MemoryOp::Put, "checkpoint");
        let mut upkeep_at = Vec::new();
        for h in 0..21u32 {
            let hour = UtcHour::parse(&format!("2020-01-{:02}T{:02}", 1 + h / 24, h % 24)).unwrap();
            generate_hour(
                lake.as_ref(),
                &HourSpec {
                    project_id: "187520".into(),
                    hour,
                    events: 20,
                    events_per_file: 20,
                    duplicate_every: 0,
                    invalid_every: 0,
                    seed: h as u64,
                    gzip: true,
                },
            )
            .await
            .unwrap();
            if h == 15 {
                dest.allow_all();
            }
            let report = export_hour(&spec, &targets, hour, ExportMode::Recurring, &settings).await.unwrap();
            assert!(report.manifest.is_some(), "hour {h} is exported whatever its upkeep did");
            let version = report.manifest.as_ref().unwrap().table_version;
            for upkeep in report.table_upkeep {
                let names_it = upkeep.error.map(|e| e.starts_with(&format!("version {}: ", version.unwrap())) && e.contains("memory:Put"));
                upkeep_at.push((version, upkeep.table, names_it));
            }
        }
        let table = "memory://dest/exports/187520".to_string();
        let expected: Vec<_> = [(10, Some(true)), (11, Some(true)), (12, Some(true)), (13, Some(true)), (14, Some(true)), (15, None), (20, None)]
            .into_iter()
            .map(|(v, failed)| (Some(v), table.clone(), failed))
            .collect();
        assert_eq!(upkeep_at, expected, "retried at every commit while it fails, naming the refused permission; then every tenth version again");
    }
}
