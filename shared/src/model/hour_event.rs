//! The shape of the "Hour Exported" event: the EventBridge `detail`, the webhook's body and
//! the file of embedded mode. How it is built from a manifest and announced is
//! `crate::control::hour_event`; the buses that carry it are adapters of
//! [`crate::ports::HourEventSink`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::{ExportError, Result};
use crate::hour::UtcHour;
use crate::model::accounting::Accounting;
use crate::model::format::PartFormat;
use crate::model::hour_request::ExportMode;
use crate::model::layout_kind::LayoutKind;

/// EventBridge `source` of our events (rules match on it).
pub const EVENT_SOURCE: &str = "event-export";
/// EventBridge `detail-type` of the event.
pub const HOUR_EXPORTED: &str = "Hour Exported";

/// One event part of the hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartFile {
    pub key: String,
    /// Part number (`#n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
    /// Records in the part.
    pub events: u64,
    /// Size of the object as stored (compressed).
    pub bytes: u64,
    pub sha256: String,
}

/// The organisation's merged-IDs file of the hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedIdsFile {
    /// Where it is (the merged-IDs destination may differ from the events').
    pub destination: String,
    pub key: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// `read = exported + filtered + duplicates + invalid`, per data kind exported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourAccounting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Accounting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_ids: Option<Accounting>,
}

/// The "Hour Exported" event: the EventBridge `detail`, the webhook's body and the file of
/// embedded mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourExported {
    /// Same for every publication of the same completed hour; new when its files change.
    pub id: String,
    pub connection_id: String,
    pub org_id: String,
    pub project_id: String,
    pub hour: UtcHour,
    /// `recurring` (the scheduled export), `replace` (rewritten by a backfill: reload the
    /// hour) or `late` (new parts were added after the earlier ones).
    pub mode: ExportMode,
    /// Where the events are (`s3://bucket/prefix`, an Azure container URL, a folder).
    pub destination: String,
    pub format: PartFormat,
    pub layout: LayoutKind,
    /// The `_complete` marker (absent when the connection turned markers off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_key: Option<String>,
    /// Every event part of the hour, in part order.
    pub parts: Vec<PartFile>,
    /// Parts left out of `parts` to fit the bus's size limit (the marker lists them all).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts_omitted: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_ids: Option<MergedIdsFile>,
    /// The connection whose event carries this hour's merged IDs, when another connection
    /// of the organisation writes them in this connection's merged-IDs folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_ids_written_by: Option<String>,
    pub accounting: HourAccounting,
    /// Seconds from the hour's end to its first complete marker (absent for hours exported
    /// before freshness was measured, or completed only by a replace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_seconds: Option<i64>,
    /// `"table": "delta"`: the version of the events table whose commit holds this hour as
    /// the event describes it (time travel to it reads exactly these parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<u64>,
    /// `"table": "delta"` with the merged IDs: the version of the merged-IDs table whose
    /// commit holds the hour's merged IDs as `merged_ids` describes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_ids_table_version: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl HourExported {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("event serialises")
    }

    /// The event as it fits in `max_bytes` of JSON: whole when it does, else without its
    /// part list (`parts_omitted` says how many; the marker lists them). Same id either way.
    pub fn within(&self, max_bytes: usize) -> Result<Cow<'_, HourExported>> {
        if self.to_json().len() <= max_bytes {
            return Ok(Cow::Borrowed(self));
        }
        let slim = HourExported { parts: Vec::new(), parts_omitted: self.parts.len() as u64, ..self.clone() };
        if slim.to_json().len() > max_bytes {
            return Err(ExportError::Internal(format!(
                "the Hour Exported event of {} {} exceeds {max_bytes} bytes even without its parts",
                self.connection_id, self.hour
            )));
        }
        Ok(Cow::Owned(slim))
    }
}
