//! Synthetic lake data shaped like real raw events (about 1 KB each), for the demo, the
//! benchmark and tests. Deterministic: the same spec writes the same bytes.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;
use crate::export::layout::{lake_events_prefix, lake_merges_prefix};
use crate::export::timestamp::{write_export_timestamp, TimestampFormat};
use crate::hour::UtcHour;
use crate::ports::ObjectStore;

/// What to generate for one project hour.
#[derive(Debug, Clone)]
pub struct HourSpec {
    pub project_id: String,
    pub hour: UtcHour,
    pub events: u64,
    /// Events per lake file (the last file may hold fewer).
    pub events_per_file: u64,
    /// Every n-th event is repeated later in the hour with the same device_id/$insert_id (0 = none).
    pub duplicate_every: u64,
    /// Every n-th line is replaced by a broken one (0 = none).
    pub invalid_every: u64,
    pub seed: u64,
    pub gzip: bool,
}

/// Counts of what was written, so callers can check the accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    pub lines: u64,
    pub unique_events: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub files: u64,
    /// Bytes written to the lake (compressed when gzip).
    pub bytes: u64,
    /// Uncompressed JSON bytes.
    pub raw_bytes: u64,
}

const EVENT_TYPES: [&str; 8] = ["session_start", "page_view", "search", "add_to_cart", "purchase", "signup", "share", "session_end"];
const PLATFORMS: [(&str, &str, &str, &str); 3] =
    [("iOS", "ios", "Apple", "iPhone14,2"), ("Android", "android", "Samsung", "SM-G991B"), ("Web", "Chrome", "Google", "Chrome 131")];
const PLACES: [(&str, &str, &str, f64, f64); 4] = [
    ("United States", "California", "San Francisco", 37.77, -122.42),
    ("France", "Ile-de-France", "Paris", 48.86, 2.35),
    ("Japan", "Tokyo", "Tokyo", 35.68, 139.69),
    ("Brazil", "Sao Paulo", "Sao Paulo", -23.55, -46.63),
];
const BROKEN_LINES: [&str; 4] = [
    "{\"event_type\": \"truncated\", \"device_id\": \"dev-",
    "this is not json",
    "[1, 2, 3]",
    "{\"event_type\":\"bad_time\",\"device_id\":\"d\",\"client_event_time\":\"not a time\"}",
];

fn ts(out: &mut Vec<u8>, micros: i64) {
    out.push(b'"');
    // raw events carry milliseconds, as the HTTP API stores them
    write_export_timestamp(out, micros, TimestampFormat::Amplitude);
    out.truncate(out.len() - 3);
    out.push(b'"');
}

/// Writes one raw event (no newline) for event number `i` of the hour.
pub fn write_raw_event(out: &mut Vec<u8>, spec: &HourSpec, i: u64, rng: &mut SmallRng) {
    let start = spec.hour.start().timestamp_micros();
    let user = rng.gen_range(0..5_000u64);
    let (platform, os, brand, model) = PLATFORMS[(user % 3) as usize];
    let (country, region, city, lat, lng) = PLACES[(user % 4) as usize];
    let received = start + rng.gen_range(0..3_600_000_000i64);
    // Most devices are within a few seconds of the server; one in eight is minutes off.
    let skew = if user % 8 == 0 { rng.gen_range(120..7_200) * 1_000_000 } else { rng.gen_range(0..30) * 1_000_000 };
    let upload = received - skew;
    let client_event = upload - rng.gen_range(0..600_000_000i64);
    let event_type = EVENT_TYPES[rng.gen_range(0..EVENT_TYPES.len())];
    let _ = write!(
        out,
        "{{\"event_type\":\"{event_type}\",\"user_id\":\"user-{user}\",\"device_id\":\"{:08x}-d3v1-4c3e-9a1b-{:012x}\",",
        user * 2654435761 % 0xffff_ffff,
        user
    );
    let _ = write!(out, "\"$insert_id\":\"{}-{:016x}-{i}\",\"client_event_time\":", spec.project_id, spec.seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    ts(out, client_event);
    out.extend_from_slice(b",\"client_upload_time\":");
    ts(out, upload);
    out.extend_from_slice(b",\"server_received_time\":");
    ts(out, received);
    out.extend_from_slice(b",\"server_upload_time\":");
    ts(out, received + 1_500);
    let _ = write!(
        out,
        ",\"app\":{},\"platform\":\"{platform}\",\"os_name\":\"{os}\",\"os_version\":\"{}.{}\",\"device_brand\":\"{brand}\",\"device_manufacturer\":\"{brand}\",\"device_model\":\"{model}\",\"device_type\":\"{model}\",\"device_carrier\":\"{}\",",
        spec.project_id,
        14 + user % 4,
        user % 10,
        ["Verizon", "Orange", "Docomo", "Vivo"][(user % 4) as usize]
    );
    let _ = write!(
        out,
        "\"country\":\"{country}\",\"region\":\"{region}\",\"city\":\"{city}\",\"language\":\"English\",\"ip_address\":\"10.{}.{}.{}\",\"location_lat\":{lat},\"location_lng\":{lng},",
        user % 256,
        (user / 256) % 256,
        i % 256
    );
    let _ = write!(
        out,
        "\"library\":\"amplitude-swift/1.9.2\",\"version_name\":\"5.{}.0\",\"session_id\":{},\"event_id\":{},\"amplitude_id\":{},\"paying\":{},\"$schema\":12,",
        user % 7,
        (received / 1000) - (received / 1000) % 1_800_000,
        i % 1000,
        100_000_000 + user,
        user % 5 == 0
    );
    let _ = write!(
        out,
        "\"user_properties\":{{\"plan\":\"{}\",\"age\":{},\"referrer\":\"campaign-{}\",\"beta\":{}}},",
        ["free", "pro", "team"][(user % 3) as usize],
        18 + user % 60,
        user % 40,
        user % 11 == 0
    );
    let _ = write!(
        out,
        "\"event_properties\":{{\"path\":\"/products/{}\",\"amount\":{}.{:02},\"currency\":\"EUR\",\"items\":{},\"query\":\"q{}\"}},",
        rng.gen_range(0..500),
        rng.gen_range(0..200),
        rng.gen_range(0..100),
        rng.gen_range(1..6),
        rng.gen_range(0..1000)
    );
    out.extend_from_slice(b"\"groups\":{},\"group_properties\":{},\"data\":{\"path\":\"/2/httpapi\"}}");
}

/// Writes the lake files of one project hour; returns what went in.
pub async fn generate_hour(lake: &dyn ObjectStore, spec: &HourSpec) -> Result<Generated> {
    let mut g = Generated::default();
    let prefix = lake_events_prefix(&spec.project_id, spec.hour);
    let mut rng = SmallRng::seed_from_u64(spec.seed ^ spec.hour.index() as u64);
    let per_file = spec.events_per_file.max(1);
    let mut pending_dups: Vec<Vec<u8>> = Vec::new();
    let mut i = 0u64;
    let mut file_no = 0u64;
    let mut line = Vec::with_capacity(2048);
    while i < spec.events || !pending_dups.is_empty() {
        let mut body: Vec<u8> = Vec::with_capacity((per_file as usize) * 1100);
        let mut in_file = 0;
        while in_file < per_file && (i < spec.events || !pending_dups.is_empty()) {
            line.clear();
            if i < spec.events {
                if spec.invalid_every > 0 && (g.lines + 1) % spec.invalid_every == 0 {
                    body.extend_from_slice(BROKEN_LINES[(g.invalid % 4) as usize].as_bytes());
                    g.invalid += 1;
                } else {
                    write_raw_event(&mut line, spec, i, &mut rng);
                    if spec.duplicate_every > 0 && i.is_multiple_of(spec.duplicate_every) {
                        pending_dups.push(line.clone());
                    }
                    body.extend_from_slice(&line);
                    g.unique_events += 1;
                    i += 1;
                }
            } else {
                body.extend_from_slice(&pending_dups.pop().expect("checked"));
                g.duplicates += 1;
            }
            body.push(b'\n');
            g.lines += 1;
            in_file += 1;
        }
        g.raw_bytes += body.len() as u64;
        let (name, data) = if spec.gzip {
            let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 6), Compression::fast());
            enc.write_all(&body).expect("in-memory write");
            (format!("{prefix}firehose-{file_no:05}.json.gz"), enc.finish().expect("in-memory gzip"))
        } else {
            (format!("{prefix}firehose-{file_no:05}.json"), body)
        };
        g.bytes += data.len() as u64;
        lake.put(&name, Bytes::from(data)).await?;
        g.files += 1;
        file_no += 1;
    }
    Ok(g)
}

/// Writes `count` merge records for an organisation's hour.
pub async fn generate_merges(lake: &dyn ObjectStore, org_id: &str, hour: UtcHour, count: u64, seed: u64) -> Result<u64> {
    let mut rng = SmallRng::seed_from_u64(seed ^ hour.index() as u64 ^ 0x5eed);
    let mut body = Vec::new();
    let base_ms = hour.start().timestamp_millis();
    for _ in 0..count {
        let t = base_ms + rng.gen_range(0..3_600_000);
        let _ = writeln!(
            body,
            "{{\"scope\":-{org_id},\"merge_time\":{t},\"merge_server_time\":{},\"amplitude_id\":{},\"merged_amplitude_id\":{}}}",
            t + 250,
            100_000_000 + rng.gen_range(0..5_000u64),
            200_000_000 + rng.gen_range(0..5_000u64)
        );
    }
    lake.put(&format!("{}merges-00000.json", lake_merges_prefix(org_id, hour)), Bytes::from(body)).await?;
    Ok(count)
}
