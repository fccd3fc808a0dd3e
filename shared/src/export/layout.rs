//! Where things live: export keys (the contract warehouses load) and lake folders.
//!
//! ```text
//! amplitude (default)                      hive
//! P/A/A_D_H#n.json.gz     event parts      P/A/dt=D/hour=HH/A_D_H#n.json.gz
//! P/A/A_D_H_complete      complete marker  P/A/dt=D/hour=HH/_A_D_H_complete
//! P/-O/-O_D_H.json.gz     merged IDs       P/-O/dt=D/hour=HH/-O_D_H.json.gz
//! ```
//!
//! H is 0-23, not zero-padded; HH is zero-padded. Parquet parts end in `.parquet` instead
//! of `.json.gz`. In hive folders the marker starts with `_`, the prefix Hive, Spark,
//! Athena and Glue treat as hidden, so a table over the folders never reads it as data.

use crate::hour::UtcHour;
use crate::model::format::PartFormat;
use crate::model::layout_kind::LayoutKind;
use crate::ports::join_key;

/// Export file names of one project (events) and its organisation (merged IDs) under a prefix.
#[derive(Debug, Clone)]
pub struct ExportLayout {
    prefix: String,
    project_id: String,
    org_id: String,
    kind: LayoutKind,
    format: PartFormat,
}

impl ExportLayout {
    /// The default: Amplitude's flat folders and gzipped JSON parts.
    pub fn new(prefix: &str, project_id: impl ToString, org_id: impl ToString) -> Self {
        ExportLayout {
            prefix: prefix.trim_matches('/').to_string(),
            project_id: project_id.to_string(),
            org_id: org_id.to_string(),
            kind: LayoutKind::default(),
            format: PartFormat::default(),
        }
    }

    /// The same names arranged as `kind` says, with parts in `format`.
    pub fn with(mut self, kind: LayoutKind, format: PartFormat) -> Self {
        self.kind = kind;
        self.format = format;
        self
    }

    pub fn kind(&self) -> LayoutKind {
        self.kind
    }

    pub fn format(&self) -> PartFormat {
        self.format
    }

    /// `P/A`: the folder a table over the connection's events reads.
    pub fn events_dir(&self) -> String {
        join_key(&self.prefix, &self.project_id)
    }

    /// `P/-O`: the folder of the organisation's merged IDs.
    pub fn merges_dir(&self) -> String {
        join_key(&self.prefix, &format!("-{}", self.org_id))
    }

    /// The folder of one hour's files under `dir`: `dir` itself, or `dir/dt=D/hour=HH`.
    fn hour_dir(&self, dir: String, hour: UtcHour) -> String {
        match self.kind {
            LayoutKind::Amplitude => dir,
            LayoutKind::Hive => format!("{dir}/dt={}/hour={}", hour.date_str(), hour.hour_padded()),
        }
    }

    /// `_` before a marker in hive folders (hidden from engines), nothing in flat ones.
    fn marker_lead(&self) -> &'static str {
        match self.kind {
            LayoutKind::Amplitude => "",
            LayoutKind::Hive => "_",
        }
    }

    /// `P/A/A_D_H#` — every part of the hour starts with this (and no other hour's does,
    /// because `#` follows the unpadded hour).
    pub fn part_prefix(&self, hour: UtcHour) -> String {
        format!("{}/{}_{}#", self.hour_dir(self.events_dir(), hour), self.project_id, hour.file_stem())
    }

    /// `P/A/A_D_H#n.json.gz` (or `.parquet`)
    pub fn part_key(&self, hour: UtcHour, part: u32) -> String {
        format!("{}{part}{}", self.part_prefix(hour), self.format.extension())
    }

    /// `P/A/A_D_H_complete`
    pub fn complete_key(&self, hour: UtcHour) -> String {
        format!("{}/{}{}_{}_complete", self.hour_dir(self.events_dir(), hour), self.marker_lead(), self.project_id, hour.file_stem())
    }

    /// `P/-O/-O_D_H.json.gz`
    pub fn merged_ids_key(&self, hour: UtcHour) -> String {
        format!("{}/-{}_{}.json.gz", self.hour_dir(self.merges_dir(), hour), self.org_id, hour.file_stem())
    }

    /// `P/-O/-O_D_H_complete`: the marker of a connection that exports merged IDs only.
    pub fn merged_ids_complete_key(&self, hour: UtcHour) -> String {
        format!("{}/{}-{}_{}_complete", self.hour_dir(self.merges_dir(), hour), self.marker_lead(), self.org_id, hour.file_stem())
    }

    /// `P/-O/-O_D_H#`: the start of a Delta connection's merged-IDs Parquet files, which
    /// are numbered like event parts because a Delta table never overwrites a data file.
    pub fn merged_ids_part_prefix(&self, hour: UtcHour) -> String {
        format!("{}/-{}_{}#", self.hour_dir(self.merges_dir(), hour), self.org_id, hour.file_stem())
    }

    /// `P/-O/-O_D_H#n.parquet`
    pub fn merged_ids_part_key(&self, hour: UtcHour, part: u32) -> String {
        format!("{}{part}{}", self.merged_ids_part_prefix(hour), PartFormat::Parquet.extension())
    }

    /// The part number of a key under [`Self::merged_ids_part_prefix`], if it is one.
    pub fn merged_ids_part_number(&self, hour: UtcHour, key: &str) -> Option<u32> {
        parse_part(key.strip_prefix(&self.merged_ids_part_prefix(hour))?, PartFormat::Parquet)
    }

    /// The part number of a key under [`Self::part_prefix`], if it is a part.
    pub fn part_number(&self, hour: UtcHour, key: &str) -> Option<u32> {
        parse_part(key.strip_prefix(&self.part_prefix(hour))?, self.format)
    }
}

/// `n` of `{n}{extension}`, without leading zeros.
fn parse_part(rest: &str, format: PartFormat) -> Option<u32> {
    let digits = rest.strip_suffix(format.extension())?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse().ok()
}

/// Lake folder of one project's raw events for one hour: `events/{project}/{yyyy-MM-dd}/{HH}/`.
pub fn lake_events_prefix(project_id: &str, hour: UtcHour) -> String {
    format!("events/{project_id}/{}/{}/", hour.date_str(), hour.hour_padded())
}

/// Lake folder of one organisation's merge records for one hour: `merges/{org}/{yyyy-MM-dd}/{HH}/`.
pub fn lake_merges_prefix(org_id: &str, hour: UtcHour) -> String {
    format!("merges/{org_id}/{}/{}/", hour.date_str(), hour.hour_padded())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let l = ExportLayout::new("exports", "187520", "42");
        let h = UtcHour::parse("2020-01-25T17").unwrap();
        assert_eq!(l.part_key(h, 0), "exports/187520/187520_2020-01-25_17#0.json.gz");
        assert_eq!(l.complete_key(h), "exports/187520/187520_2020-01-25_17_complete");
        assert_eq!(l.merged_ids_key(h), "exports/-42/-42_2020-01-25_17.json.gz");
        let early = UtcHour::parse("2020-01-05T04").unwrap();
        assert_eq!(l.part_key(early, 12), "exports/187520/187520_2020-01-05_4#12.json.gz");
        assert_eq!(l.part_number(early, &l.part_key(early, 12)), Some(12));
        // hour 1 must not claim hour 10's parts
        let one = UtcHour::parse("2020-01-05T01").unwrap();
        let ten = UtcHour::parse("2020-01-05T10").unwrap();
        assert_eq!(l.part_number(one, &l.part_key(ten, 0)), None);
        assert!(!l.part_key(ten, 0).starts_with(&l.part_prefix(one)));
    }

    #[test]
    fn hive_folders_hold_the_same_names_and_a_hidden_marker() {
        let h = UtcHour::parse("2020-01-05T04").unwrap();
        let l = ExportLayout::new("exports", "187520", "42").with(LayoutKind::Hive, PartFormat::Parquet);
        assert_eq!(l.part_key(h, 3), "exports/187520/dt=2020-01-05/hour=04/187520_2020-01-05_4#3.parquet");
        assert_eq!(l.part_number(h, &l.part_key(h, 3)), Some(3));
        assert_eq!(l.part_number(h, "exports/187520/dt=2020-01-05/hour=04/187520_2020-01-05_4#3.json.gz"), None);
        assert_eq!(l.complete_key(h), "exports/187520/dt=2020-01-05/hour=04/_187520_2020-01-05_4_complete");
        assert_eq!(l.merged_ids_key(h), "exports/-42/dt=2020-01-05/hour=04/-42_2020-01-05_4.json.gz");
        assert_eq!(l.merged_ids_complete_key(h), "exports/-42/dt=2020-01-05/hour=04/_-42_2020-01-05_4_complete");
        assert!(!l.complete_key(h).starts_with(&l.part_prefix(h)));
        let flat = ExportLayout::new("exports", "187520", "42").with(LayoutKind::Amplitude, PartFormat::Parquet);
        assert_eq!(flat.part_key(h, 0), "exports/187520/187520_2020-01-05_4#0.parquet");
    }

    #[test]
    fn empty_prefix_has_no_leading_slash() {
        let l = ExportLayout::new("", "7", "1");
        let h = UtcHour::parse("2021-06-01T00").unwrap();
        assert_eq!(l.part_key(h, 0), "7/7_2021-06-01_0#0.json.gz");
        assert_eq!(l.merged_ids_key(h), "-1/-1_2021-06-01_0.json.gz");
        assert_eq!(lake_events_prefix("7", h), "events/7/2021-06-01/00/");
    }
}
