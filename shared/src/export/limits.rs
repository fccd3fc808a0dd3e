//! What one run can finish, to refuse an hour up front rather than be killed on it for ever.
//!
//! The estimate uses what is known: an earlier export of the hour says how many records
//! its lake bytes held (read + invalid per compressed byte), else the lake's typical gzip
//! ratio and event size are assumed. Time is estimated from compressed lake bytes at the
//! measured throughput; memory from the de-duplication set of every hour the process runs at
//! once (a backfill piece exports several hours in parallel, each with its own set).

use crate::error::{ExportError, Result};
use crate::export::manifest::DataReport;
use crate::hour::UtcHour;
use crate::ports::ObjectMeta;

/// What one run can handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourLimits {
    /// Seconds one run may spend on an hour (`None`: unbounded, e.g. embedded mode).
    pub seconds: Option<u64>,
    /// Memory available for the de-duplication sets of the process (`None`: unbounded).
    pub memory_bytes: Option<u64>,
    /// Measured throughput on compressed lake input (see the README's benchmark).
    pub lake_bytes_per_second: u64,
    /// Hours the process exports at once (a backfill piece's parallelism): they share memory.
    pub concurrent_hours: u64,
}

impl Default for HourLimits {
    fn default() -> Self {
        HourLimits { seconds: None, memory_bytes: None, lake_bytes_per_second: LAKE_BYTES_PER_SECOND, concurrent_hours: 1 }
    }
}

/// Compressed lake bytes one run reads per second on one vCPU, the deployed function's size
/// and the slowest case: JSON parts at ~68k events/s of ~176 gzipped lake bytes each
/// (12 MB/s, README "How large an hour one run finishes"), less headroom for a slower
/// destination. Larger functions and Parquet are faster, so this refuses early rather than
/// letting a run time out on an hour for ever.
pub const LAKE_BYTES_PER_SECOND: u64 = 11_000_000;
/// A gzipped lake file holds about this many times its size in JSON.
const LAKE_GZIP_RATIO: u64 = 6;
/// Bytes of raw JSON per event, and bytes of the de-duplication set per event.
const BYTES_PER_EVENT: u64 = 1_000;
const DEDUP_BYTES_PER_EVENT: u64 = 24;

impl HourLimits {
    /// The number of records `files` hold: measured by `known` (an earlier export of the
    /// hour, whose lake inputs and counts are recorded), else estimated from their size.
    pub fn estimated_records(files: &[ObjectMeta], known: Option<&DataReport>) -> u64 {
        if let Some(known) = known {
            let known_bytes: u64 = known.lake_inputs.iter().map(|i| i.size).sum();
            let known_records = known.accounting.read + known.accounting.invalid;
            if known_bytes > 0 && known_records > 0 {
                let bytes: u64 = files.iter().map(|f| f.size).sum();
                return ((bytes as u128 * known_records as u128).div_ceil(known_bytes as u128)) as u64;
            }
        }
        let raw: u64 = files.iter().map(|f| if f.key.ends_with(".gz") { f.size * LAKE_GZIP_RATIO } else { f.size }).sum();
        raw / BYTES_PER_EVENT
    }

    /// Refuses an hour whose estimated cost exceeds the limits, naming size and setting.
    pub fn check(&self, hour: UtcHour, files: &[ObjectMeta], known: Option<&DataReport>) -> Result<()> {
        let compressed: u64 = files.iter().map(|f| f.size).sum();
        let events = Self::estimated_records(files, known);
        let basis = if known.is_some_and(|k| !k.lake_inputs.is_empty()) { "counted by its last export" } else { "estimated from the lake's size" };
        let mb = |b: u64| b as f64 / 1e6;
        if let Some(seconds) = self.seconds {
            let needed = compressed / self.lake_bytes_per_second.max(1);
            if needed > seconds {
                return Err(ExportError::invalid_config(
                    "EXPORT_HOUR_SECONDS",
                    format!(
                        "hour {hour} has {:.1} MB of lake files ({} files, about {events} events, {basis}); at {:.0} MB/s that needs about {needed} s, more than the {seconds} s one run may take",
                        mb(compressed),
                        files.len(),
                        mb(self.lake_bytes_per_second)
                    ),
                    format!("Raise the function's Timeout in the template and EXPORT_HOUR_SECONDS with it (at most 900 s on Lambda), or export this hour with `exportctl export --cloud CONNECTION --hour {hour}` from a machine without that limit."),
                ));
            }
        }
        if let Some(memory) = self.memory_bytes {
            let at_once = self.concurrent_hours.max(1);
            let share = memory / at_once;
            let needed = events * DEDUP_BYTES_PER_EVENT;
            if needed > share {
                let sharing =
                    if at_once > 1 { format!(" (the {:.0} MB of the function shared by {at_once} hours exported at once)", mb(memory)) } else { String::new() };
                return Err(ExportError::invalid_config(
                    "EXPORT_HOUR_MEMORY_MB",
                    format!(
                        "hour {hour} has about {events} events ({:.1} MB of lake files, {basis}); de-duplicating them needs about {:.0} MB, more than the {:.0} MB available{sharing}",
                        mb(compressed),
                        mb(needed),
                        mb(share)
                    ),
                    format!("Raise the function's MemorySize in the template (EXPORT_HOUR_MEMORY_MB follows it), lower BACKFILL_PARALLEL for backfills, or export this hour with `exportctl export --cloud CONNECTION --hour {hour}`."),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::manifest::LakeInput;

    fn file(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta { key: key.into(), size }
    }

    #[test]
    fn an_earlier_export_counts_the_events_better_than_the_gzip_guess() {
        let files = [file("a.json.gz", 1_000_000), file("b.json.gz", 1_000_000)];
        assert_eq!(HourLimits::estimated_records(&files, None), 12_000, "6x gzip, 1 KB per event");
        // The last export read 40,000 records from the first file alone: small events.
        let mut known = DataReport { lake_inputs: vec![LakeInput { key: "a.json.gz".into(), size: 1_000_000 }], ..Default::default() };
        known.accounting.read = 39_990;
        known.accounting.invalid = 10;
        assert_eq!(HourLimits::estimated_records(&files, Some(&known)), 80_000);
        let limits = HourLimits { memory_bytes: Some(1_500_000), ..Default::default() };
        assert!(limits.check(UtcHour::parse("2020-01-25T03").unwrap(), &files, None).is_ok(), "12,000 events fit the guess");
        let err = limits.check(UtcHour::parse("2020-01-25T03").unwrap(), &files, Some(&known)).unwrap_err();
        assert!(err.to_string().contains("80000 events") && err.to_string().contains("counted by its last export"), "{err}");
    }

    #[test]
    fn hours_exported_at_once_share_the_memory() {
        let files = [file("a.json", 10_000_000)];
        let alone = HourLimits { memory_bytes: Some(300_000), ..Default::default() };
        assert!(alone.check(UtcHour::parse("2020-01-25T03").unwrap(), &files, None).is_ok(), "10,000 events need 240 kB");
        let four = HourLimits { concurrent_hours: 4, ..alone };
        let err = four.check(UtcHour::parse("2020-01-25T03").unwrap(), &files, None).unwrap_err();
        assert!(err.to_string().contains("shared by 4 hours") && err.to_string().contains("BACKFILL_PARALLEL"), "{err}");
        assert!(!err.is_retryable());
    }
}
