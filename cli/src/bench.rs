//! `exportctl bench`: one generated hour exported to a local folder, timed, with peak RSS.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use exporter::adapters::local::store::LocalStore;
use exporter::export::generate::{generate_hour, HourSpec};
use exporter::export::hour_export::{export_hour, ExportSettings, ExportTargets, DEFAULT_PART_SIZE};
use exporter::export::spec::ExportSpec;
use exporter::hour::UtcHour;
use exporter::model::format::PartFormat;
use exporter::model::hour_request::ExportMode;
use exporter::Result;

/// The variable that gives the bench a connection's `fields` document (a field policy),
/// so the cost of a policy is measured on the same hour: e.g.
/// `EXPORTCTL_BENCH_FIELDS='{"drop":["idfa"],"pseudonymise":["user_id","device_id"],"truncate_ip":true}'`.
pub const BENCH_FIELDS_VAR: &str = "EXPORTCTL_BENCH_FIELDS";

fn bench_field_policy() -> Result<Option<exporter::export::field_policy::FieldPolicy>> {
    let Ok(text) = std::env::var(BENCH_FIELDS_VAR) else { return Ok(None) };
    let mut fields: exporter::control::connection::FieldsPolicy = serde_json::from_str(&text)
        .map_err(|e| exporter::ExportError::invalid_config(BENCH_FIELDS_VAR, format!("is not a fields document: {e}"), "See README: Field policy."))?;
    fields.key.get_or_insert_with(|| exporter::model::secret::Secret::new("bench-key-0123456789abcdef0123456789abcdef"));
    let policy = fields.rules()?.with_key(fields.key.as_ref())?;
    if let Some(p) = &policy {
        eprintln!("field policy {}", p.digest());
    }
    Ok(policy)
}

/// Peak resident set size of this process so far (VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak RSS counter so the export is measured without the generation step.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub async fn run(events: u64, level: u32, threads: usize, dir: Option<PathBuf>, format: PartFormat) -> Result<ExitCode> {
    let temp = tempfile::tempdir().map_err(|e| exporter::ExportError::io("temporary folder", e))?;
    let root = dir.unwrap_or_else(|| temp.path().to_path_buf());
    let lake = Arc::new(LocalStore::new(root.join("lake"))?);
    let dest = Arc::new(LocalStore::new(root.join("destination"))?);
    let hour = UtcHour::parse("2020-01-25T17")?;
    let spec = HourSpec { project_id: "100000".into(), hour, events, events_per_file: 20_000, duplicate_every: 0, invalid_every: 0, seed: 7, gzip: true };
    eprintln!("generating {events} events into {} ...", lake.root().display());
    let generated = generate_hour(lake.as_ref(), &spec).await?;
    // The export pipeline needs only a spec: no connection, destination or secrets.
    let export = ExportSpec { merged_ids: false, format, field_policy: bench_field_policy()?, ..ExportSpec::new("bench", "100000", "1", "bench") };
    let settings = ExportSettings::new(DEFAULT_PART_SIZE, level, threads)?;
    let targets = ExportTargets { lake: lake.clone(), events: dest.clone(), merged_ids: dest.clone() };
    reset_peak_rss();
    let start = Instant::now();
    let report = export_hour(&export, &targets, hour, ExportMode::Replace, &settings).await?;
    let seconds = start.elapsed().as_secs_f64();
    let rss = peak_rss().unwrap_or(0);
    let data = report.manifest.as_ref().and_then(|m| m.events.clone()).expect("events exported");
    let out_bytes: u64 = data.files.iter().map(|f| f.bytes).sum();
    // gzip parts: the JSON's size; Parquet parts: the uncompressed column data's.
    let uncompressed: u64 = data.files.iter().map(|f| f.uncompressed_bytes).sum();
    let mb = |b: u64| b as f64 / 1e6;
    println!("events           {}", data.accounting.exported);
    println!("time             {seconds:.2} s");
    println!("events/s         {:.0}", data.accounting.exported as f64 / seconds);
    println!("in  (lake, gz)   {:.1} MB  {:.1} MB/s", mb(generated.bytes), mb(generated.bytes) / seconds);
    println!("in  (raw JSON)   {:.1} MB  {:.1} MB/s", mb(generated.raw_bytes), mb(generated.raw_bytes) / seconds);
    println!("out (uncompr.)   {:.1} MB  {:.1} MB/s", mb(uncompressed), mb(uncompressed) / seconds);
    println!("{:<17}{:.1} MB  {:.1} MB/s", format!("out ({format})"), mb(out_bytes), mb(out_bytes) / seconds);
    println!("parts            {}", data.files.len());
    match format {
        PartFormat::Json => println!("gzip level       {level}, threads {}", settings.pool.threads()),
        PartFormat::Parquet => println!("parquet          zstd level {}, threads {}", exporter::export::parquet_parts::ZSTD_LEVEL, settings.pool.threads()),
    }
    println!("peak RSS         {:.1} MiB", rss as f64 / (1024.0 * 1024.0));
    if data.accounting.exported != events {
        eprintln!("error: exported {} of {events} events", data.accounting.exported);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
