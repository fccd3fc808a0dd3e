//! Fast timestamp handling for the hot path: raw event timestamps in, export form
//! `YYYY-MM-DD HH:MM:SS.ffffff` (or the `T` form) out, as microseconds since the epoch in
//! between.

use serde::{Deserialize, Serialize};

use crate::hour::parse_timestamp;

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

/// The instants a timestamp field may hold: years 0000 to 9999, the four-digit years the
/// export form can write.
pub const TIMESTAMP_RANGE: std::ops::Range<Micros> = -62_167_219_200_000_000..253_402_300_800_000_000;

/// How exported timestamps are written; a per-connection option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// `2020-11-24 09:59:55.977000`: what Amplitude's export files and Export API carry, and
    /// what importers built on them (and DuckDB's `read_json_auto`) parse.
    #[default]
    Amplitude,
    /// `2020-11-24T09:59:55.977000`: the form of Amplitude's documentation examples.
    Iso8601,
}

impl TimestampFormat {
    /// The `strftime` pattern of the form, for readers (`%Y-%m-%d %H:%M:%S.%f`).
    pub fn strftime(self) -> &'static str {
        match self {
            TimestampFormat::Amplitude => "%Y-%m-%d %H:%M:%S.%f",
            TimestampFormat::Iso8601 => "%Y-%m-%dT%H:%M:%S.%f",
        }
    }

    fn separator(self) -> u8 {
        match self {
            TimestampFormat::Amplitude => b' ',
            TimestampFormat::Iso8601 => b'T',
        }
    }
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z]` without allocating; falls back to the general
/// parser (offsets, other forms). Returns `None` for anything that is not a real instant.
pub fn parse_micros(s: &str) -> Option<Micros> {
    fast_parse(s.as_bytes()).or_else(|| parse_timestamp(s).map(|t| t.timestamp_micros()))
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

fn fast_parse(b: &[u8]) -> Option<Micros> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, min, sec) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let mut v = digits(&frac[..n.min(6)])?;
        for _ in n.min(6)..6 {
            v *= 10;
        }
        micros = v;
        rest = &frac[n..];
    }
    if !(rest.is_empty() || rest == b"Z") {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3600 + min * 60 + sec) * 1_000_000) + micros)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends `YYYY-MM-DD HH:MM:SS.ffffff` (26 bytes, `T` for [`TimestampFormat::Iso8601`]) for
/// `t`, which must be in [`TIMESTAMP_RANGE`] (callers check, so no garbage digits are written).
pub fn write_export_timestamp(out: &mut Vec<u8>, t: Micros, format: TimestampFormat) {
    debug_assert!(TIMESTAMP_RANGE.contains(&t), "timestamp {t} out of range");
    let secs = t.div_euclid(1_000_000);
    let micros = t.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut buf = [0u8; 26];
    let put = |buf: &mut [u8], at: usize, width: usize, mut v: i64| {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut buf, 0, 4, y);
    buf[4] = b'-';
    put(&mut buf, 5, 2, m);
    buf[7] = b'-';
    put(&mut buf, 8, 2, d);
    buf[10] = format.separator();
    put(&mut buf, 11, 2, sod / 3600);
    buf[13] = b':';
    put(&mut buf, 14, 2, (sod / 60) % 60);
    buf[16] = b':';
    put(&mut buf, 17, 2, sod % 60);
    buf[19] = b'.';
    put(&mut buf, 20, 6, micros);
    out.extend_from_slice(&buf);
}

pub fn format_export_timestamp(t: Micros, format: TimestampFormat) -> String {
    let mut v = Vec::with_capacity(26);
    write_export_timestamp(&mut v, t, format);
    String::from_utf8(v).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_agrees_with_chrono() {
        for s in ["2020-01-25 17:03:12.123", "2020-01-25T17:03:12.123456Z", "1999-12-31T23:59:59", "2024-02-29 00:00:00.5", "2020-01-25T18:03:12+01:00"] {
            let fast = parse_micros(s).unwrap();
            let slow = parse_timestamp(s).unwrap().timestamp_micros();
            assert_eq!(fast, slow, "{s}");
        }
        let t = parse_micros("2020-01-25 17:03:12.123").unwrap();
        assert_eq!(format_export_timestamp(t, TimestampFormat::Amplitude), "2020-01-25 17:03:12.123000");
        assert_eq!(format_export_timestamp(t, TimestampFormat::Iso8601), "2020-01-25T17:03:12.123000");
        assert_eq!(format_export_timestamp(0, TimestampFormat::Amplitude), "1970-01-01 00:00:00.000000");
        // The ends of the range are the ends of four-digit years.
        assert_eq!(format_export_timestamp(TIMESTAMP_RANGE.start, TimestampFormat::Amplitude), "0000-01-01 00:00:00.000000");
        assert_eq!(format_export_timestamp(TIMESTAMP_RANGE.end - 1, TimestampFormat::Amplitude), "9999-12-31 23:59:59.999999");
        assert_eq!(parse_micros("0000-01-01 00:00:00"), Some(TIMESTAMP_RANGE.start));
        for bad in ["2023-02-29 00:00:00", "2020-13-01 00:00:00", "2020-01-01 24:00:00", "garbage", "2020-01-01"] {
            assert!(parse_micros(bad).is_none(), "{bad}");
        }
    }
}
