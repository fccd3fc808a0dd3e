//! Merged Amplitude IDs: lake merge records → `{scope, merge_time, merge_server_time,
//! amplitude_id, merged_amplitude_id}` lines (integers; times as epoch milliseconds).

use serde_json::{Map, Value};

use crate::export::schema::InvalidReason;
use crate::export::timestamp::parse_micros;

pub const MERGE_FIELDS: [&str; 5] = ["scope", "merge_time", "merge_server_time", "amplitude_id", "merged_amplitude_id"];

/// One merge record's values, in [`MERGE_FIELDS`] order (`None`: null).
pub type MergeRow = [Option<i64>; 5];

/// Parses one merge record line into its values.
pub fn parse_merge(raw: &[u8]) -> Result<MergeRow, InvalidReason> {
    let obj: Map<String, Value> = serde_json::from_slice(raw).map_err(|e| InvalidReason(format!("not a JSON object: {e}")))?;
    let mut row = [None; 5];
    for (slot, name) in row.iter_mut().zip(MERGE_FIELDS) {
        let is_time = name.ends_with("_time");
        let value = match obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            Some(Value::String(s)) if is_time => Some(parse_micros(s).ok_or_else(|| InvalidReason(format!("field {name:?}: {s:?} is not a time")))? / 1000),
            Some(other) => return Err(InvalidReason(format!("field {name:?}: expected an integer, got {other}"))),
        };
        if value.is_none() && (name == "amplitude_id" || name == "merged_amplitude_id") {
            return Err(InvalidReason(format!("field {name:?} is missing")));
        }
        *slot = value;
    }
    Ok(row)
}

/// Normalises one merge record line into `out` (no newline).
pub fn normalize_merge(raw: &[u8], out: &mut Vec<u8>) -> Result<(), InvalidReason> {
    let row = parse_merge(raw)?;
    out.clear();
    write_json_line(&row, out);
    Ok(())
}

/// `row` as a JSON object in [`MERGE_FIELDS`] order, appended to `out` (no newline).
pub fn write_json_line(row: &MergeRow, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, value)) in MERGE_FIELDS.iter().zip(row).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match value {
            Some(v) => out.extend_from_slice(v.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}
