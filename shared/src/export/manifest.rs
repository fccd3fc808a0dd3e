//! The complete marker's body: what was exported for an hour and the accounting that
//! proves nothing was lost (`read = exported + filtered + duplicates + invalid`).
//! No wall-clock time or run id is in it, so re-running an hour rewrites identical bytes.

use serde::{Deserialize, Serialize};

use crate::export::lake::InvalidRecord;
use crate::hour::UtcHour;
use crate::model::accounting::Accounting;

/// At most this many invalid records are listed; all are counted.
pub const MAX_LISTED_INVALID: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub key: String,
    /// Part number (`#n`) for event parts.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub part: Option<u32>,
    /// Records in the file.
    pub events: u64,
    /// Compressed size.
    pub bytes: u64,
    pub uncompressed_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReport {
    pub files: Vec<FileEntry>,
    pub accounting: Accounting,
    pub invalid_records: Vec<InvalidRecord>,
    /// True when more invalid records exist than are listed.
    #[serde(default)]
    pub invalid_records_truncated: bool,
    /// Lake files read for this hour.
    pub lake_files: u64,
    /// The lake files consumed, with their sizes: a file that lands after the marker is
    /// one not listed here (late data), exported as new parts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lake_inputs: Vec<LakeInput>,
}

/// One lake file an export consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LakeInput {
    pub key: String,
    pub size: u64,
}

impl DataReport {
    /// Whether the report lists the lake files it consumed. Manifests written before
    /// `lake_inputs` existed do not: their hours cannot tell late files from old ones.
    pub fn knows_its_inputs(&self) -> bool {
        self.lake_files == 0 || !self.lake_inputs.is_empty()
    }

    /// Adds what a late-data run exported to what was exported before.
    pub fn extend(&mut self, later: DataReport) {
        self.files.extend(later.files);
        self.accounting.add(&later.accounting);
        for rec in later.invalid_records {
            if self.invalid_records.len() < MAX_LISTED_INVALID {
                self.invalid_records.push(rec);
            } else {
                self.invalid_records_truncated = true;
            }
        }
        self.invalid_records_truncated |= later.invalid_records_truncated;
        self.lake_files += later.lake_files;
        self.lake_inputs.extend(later.lake_inputs);
    }

    pub fn record_invalid(&mut self, rec: InvalidRecord) {
        self.accounting.read += 1;
        self.accounting.invalid += 1;
        if self.invalid_records.len() < MAX_LISTED_INVALID {
            self.invalid_records.push(rec);
        } else {
            self.invalid_records_truncated = true;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub connection_id: String,
    pub project_id: String,
    pub org_id: String,
    pub hour: UtcHour,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub events: Option<DataReport>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub merged_ids: Option<DataReport>,
    /// The connection that writes the organisation's merged IDs in this connection's
    /// merged-IDs folder, when it is another one (one owner per key space): this hour's
    /// merged IDs are in that connection's file, and `merged_ids` is absent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub merged_ids_written_by: Option<String>,
    /// The digest of the field policy the hour's event parts were written with (see
    /// `export::field_policy`); absent when the connection has none. Never the key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field_policy: Option<String>,
    /// `"table": "delta"`: the version of the Delta commit that made the hour's events what
    /// this manifest lists (an export that found them already committed names that commit).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub table_version: Option<u64>,
    /// `"table": "delta"`: the same for the merged IDs' Delta table (absent when this
    /// connection does not write the organisation's merged IDs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub merged_ids_table_version: Option<u64>,
}

impl Manifest {
    /// A manifest with nothing exported yet (also: an hour known complete whose marker
    /// body could not be read).
    pub fn empty(spec: &crate::export::spec::ExportSpec, hour: UtcHour) -> Self {
        Manifest {
            format: 1,
            connection_id: spec.connection_id.clone(),
            project_id: spec.project_id.clone(),
            org_id: spec.org_id.clone(),
            hour,
            events: None,
            merged_ids: None,
            merged_ids_written_by: None,
            field_policy: spec.field_policy.as_ref().map(|p| p.digest().to_string()),
            table_version: None,
            merged_ids_table_version: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serialises");
        v.push(b'\n');
        v
    }

    /// Whether every data kind's accounting balances.
    pub fn balances(&self) -> bool {
        self.events.iter().chain(self.merged_ids.iter()).all(|d| d.accounting.balances())
    }
}
