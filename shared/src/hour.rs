//! UTC hours: the unit of export. Parsing, ranges and the file-name forms.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ExportError, Result};

/// One UTC hour, e.g. `2020-01-25T17`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcHour {
    /// Hours since the Unix epoch.
    index: i64,
}

/// Hours are only accepted from 1970 to 9999, which covers any real event.
const MAX_INDEX: i64 = 70_000_000; // a little past year 9900

impl UtcHour {
    pub fn from_index(index: i64) -> Result<Self> {
        if !(0..=MAX_INDEX).contains(&index) {
            return Err(ExportError::invalid_input("hour", format!("hour index {index} is outside 1970..9900")));
        }
        Ok(UtcHour { index })
    }

    /// The hour that contains `t`.
    pub fn containing(t: DateTime<Utc>) -> Result<Self> {
        Self::from_index(t.timestamp().div_euclid(3600))
    }

    /// Parses `YYYY-MM-DDTHH` (also accepts `YYYY-MM-DDTHH:00`, `YYYY-MM-DDTHH:00:00Z`, and
    /// `YYYY-MM-DD HH`), refusing anything that is not exactly on an hour.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| ExportError::invalid_input(format!("hour {s:?}"), format!("{why}; expected a UTC hour like 2020-01-25T17"));
        let t = s.trim();
        let t = t.strip_suffix('Z').unwrap_or(t);
        let (date, rest) = t.split_once(['T', ' ']).ok_or_else(|| bad("missing the hour part"))?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad("the date is not a valid YYYY-MM-DD"))?;
        let mut fields = rest.split(':');
        let hour_text = fields.next().unwrap_or("");
        if hour_text.len() != 2 || !hour_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the hour must be two digits"));
        }
        let hour: u32 = hour_text.parse().map_err(|_| bad("the hour is not a number"))?;
        if hour > 23 {
            return Err(bad("the hour must be 00 to 23"));
        }
        for extra in fields {
            if !(extra == "00" || extra == "00.000" || extra == "00.000000") {
                return Err(bad("minutes and seconds must be zero: an hour starts on the hour"));
            }
        }
        let dt = date.and_hms_opt(hour, 0, 0).ok_or_else(|| bad("not a valid time"))?;
        Self::containing(Utc.from_utc_datetime(&dt))
    }

    pub fn start(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.index * 3600, 0).expect("index is range-checked")
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.start() + Duration::hours(1)
    }

    pub fn index(&self) -> i64 {
        self.index
    }

    pub fn next(&self) -> UtcHour {
        UtcHour { index: self.index + 1 }
    }

    pub fn prev(&self) -> UtcHour {
        UtcHour { index: self.index - 1 }
    }

    pub fn plus(&self, hours: i64) -> UtcHour {
        UtcHour { index: self.index + hours }
    }

    /// `yyyy-MM-dd`, as used in export file names and lake folders.
    pub fn date_str(&self) -> String {
        self.start().format("%Y-%m-%d").to_string()
    }

    /// Hour 0–23, not zero-padded (export file names).
    pub fn hour_unpadded(&self) -> String {
        self.start().hour().to_string()
    }

    /// Hour `00`–`23`, zero-padded (lake folders, as Firehose writes them).
    pub fn hour_padded(&self) -> String {
        format!("{:02}", self.start().hour())
    }

    /// `yyyy-MM-dd_H`, the hour part of export file names.
    pub fn file_stem(&self) -> String {
        format!("{}_{}", self.date_str(), self.hour_unpadded())
    }

    /// Parses the `yyyy-MM-dd_H` form back (as found in export file names).
    pub fn parse_file_stem(s: &str) -> Result<Self> {
        let (date, hour) = s.rsplit_once('_').ok_or_else(|| ExportError::invalid_input(format!("file hour {s:?}"), "expected yyyy-MM-dd_H"))?;
        let hour: u32 = hour
            .parse()
            .ok()
            .filter(|h| *h < 24 && !(hour.len() > 1 && hour.starts_with('0')))
            .ok_or_else(|| ExportError::invalid_input(format!("file hour {s:?}"), "hour must be 0-23, unpadded"))?;
        Self::parse(&format!("{date}T{hour:02}"))
    }

    pub fn year(&self) -> i32 {
        self.start().year()
    }
}

impl fmt::Display for UtcHour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}T{}", self.date_str(), self.hour_padded())
    }
}

impl fmt::Debug for UtcHour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UtcHour({self})")
    }
}

impl FromStr for UtcHour {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for UtcHour {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UtcHour {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UtcHour::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An inclusive range of hours, `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourRange {
    pub from: UtcHour,
    pub to: UtcHour,
}

impl HourRange {
    /// Builds a range, refusing `to` before `from`.
    pub fn new(from: UtcHour, to: UtcHour) -> Result<Self> {
        if to < from {
            return Err(ExportError::invalid_input("hour range", format!("`to` ({to}) is before `from` ({from}); give the earlier hour first")));
        }
        Ok(HourRange { from, to })
    }

    pub fn parse(from: &str, to: &str) -> Result<Self> {
        Self::new(UtcHour::parse(from)?, UtcHour::parse(to)?)
    }

    pub fn len(&self) -> u64 {
        (self.to.index - self.from.index + 1) as u64
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn hours(&self) -> impl Iterator<Item = UtcHour> {
        (self.from.index..=self.to.index).map(|index| UtcHour { index })
    }

    /// Splits into consecutive pieces of at most `max_hours` hours.
    pub fn split(&self, max_hours: u64) -> Vec<HourRange> {
        let step = max_hours.max(1) as i64;
        let mut out = Vec::new();
        let mut start = self.from.index;
        while start <= self.to.index {
            let end = (start + step - 1).min(self.to.index);
            out.push(HourRange { from: UtcHour { index: start }, to: UtcHour { index: end } });
            start = end + 1;
        }
        out
    }
}

impl fmt::Display for HourRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}

/// Parses any timestamp form found in raw events (used by the schema module):
/// `2020-01-25 17:03:12.123456`, `2020-01-25T17:03:12Z`, RFC 3339 with offset, or epoch
/// milliseconds as a number.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&n));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_hours() {
        let h = UtcHour::parse("2020-01-25T17").unwrap();
        assert_eq!(h.to_string(), "2020-01-25T17");
        assert_eq!(h.file_stem(), "2020-01-25_17");
        let h = UtcHour::parse("2020-01-05T03").unwrap();
        assert_eq!(h.file_stem(), "2020-01-05_3");
        assert_eq!(h.hour_padded(), "03");
        assert_eq!(UtcHour::parse_file_stem("2020-01-05_3").unwrap(), h);
        assert_eq!(UtcHour::parse("2020-01-05T03:00:00Z").unwrap(), h);
    }

    #[test]
    fn refuses_bad_hours() {
        for bad in ["", "2020-01-25", "2020-13-01T00", "2020-01-25T24", "2020-01-25T7", "2020-01-25T17:30", "yesterday", "2020-02-30T01"] {
            let err = UtcHour::parse(bad).unwrap_err();
            assert!(err.to_string().contains("expected a UTC hour"), "{bad}: {err}");
        }
        assert!(UtcHour::parse_file_stem("2020-01-05_03").is_err());
        assert!(UtcHour::parse_file_stem("2020-01-05_24").is_err());
    }

    #[test]
    fn ranges_split_and_refuse_reversed() {
        let r = HourRange::parse("2020-01-01T00", "2020-01-02T01").unwrap();
        assert_eq!(r.len(), 26);
        let pieces = r.split(10);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.iter().map(|p| p.len()).sum::<u64>(), 26);
        assert_eq!(pieces[2].to, r.to);
        let err = HourRange::parse("2020-01-02T00", "2020-01-01T00").unwrap_err();
        assert!(err.to_string().contains("before"));
    }

    #[test]
    fn parses_timestamps() {
        let a = parse_timestamp("2020-01-25 17:03:12.123456").unwrap();
        let b = parse_timestamp("2020-01-25T17:03:12.123456Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_timestamp("not a time").is_none());
    }
}
