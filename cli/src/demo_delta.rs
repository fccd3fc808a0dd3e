//! The demo's Delta connection (`acme-delta`: Parquet parts in hive folders, `"table":
//! "delta"`): its table is read back from the log (checkpoint included) and checked against
//! the hours' manifests: one commit per exported hour, every hour's live files exactly the
//! parts its manifest lists (same sha256), the hour's `txn` naming the version the manifest
//! names, nothing else live.

use std::path::Path;
use std::sync::Arc;

use exporter::adapters::local::store::LocalStore;
use exporter::export::delta::actions::{is_hour, TableData};
use exporter::export::delta::commit::app_id;
use exporter::export::delta::log::DeltaTable;
use exporter::export::manifest::Manifest;
use exporter::hour::HourRange;
use exporter::Result;

use crate::demo::Checks;
use crate::home::Home;

/// The Delta connection's id.
pub const DELTA_CONNECTION: &str = "acme-delta";

/// Checks the table of [`DELTA_CONNECTION`] against its manifests; prints one line about it.
pub async fn verify_delta_table(home: &Home, hours: &HourRange, checks: &mut Checks) -> Result<()> {
    let conn = home.control.get_connection(DELTA_CONNECTION).await?;
    let exporter::model::destination::Destination::Local { path, .. } = &conn.destination else {
        checks.check(false, || format!("{DELTA_CONNECTION}: the demo's destinations are local folders"));
        return Ok(());
    };
    let store = Arc::new(LocalStore::new(Path::new(path))?);
    let layout = conn.events_layout();
    let table = DeltaTable::new(store.clone(), layout.events_dir());
    let state = table.load().await?;
    let (commits, checkpoints) = table.list_versions().await?;
    let mut parts = 0;
    let mut rows = 0u64;
    for hour in hours.hours() {
        let manifest: Manifest = match exporter::ports::ObjectStore::get(store.as_ref(), &layout.complete_key(hour)).await {
            Ok(body) => serde_json::from_slice(&body).map_err(|e| exporter::ExportError::Internal(format!("marker of {hour}: {e}")))?,
            Err(e) => {
                checks.check(false, || format!("{DELTA_CONNECTION}: no marker for {hour}: {e}"));
                continue;
            }
        };
        let listed = manifest.events.map(|e| e.files).unwrap_or_default();
        let mut live: Vec<(String, Option<String>)> =
            state.files.values().filter(|a| is_hour(&a.partition_values, hour)).map(|a| (a.path.clone(), a.sha256().map(str::to_string))).collect();
        live.sort();
        let mut want: Vec<(String, Option<String>)> = listed.iter().map(|f| (table.path_of(&f.key), Some(f.sha256.clone()))).collect();
        want.sort();
        checks.check(live == want, || format!("{DELTA_CONNECTION} {hour}: the table holds {live:?}, the manifest lists {want:?}"));
        let txn = state.txns.get(&app_id(&conn.id, TableData::Events, hour)).map(|&v| v as u64);
        checks.check(txn.is_some() && txn == manifest.table_version, || {
            format!("{DELTA_CONNECTION} {hour}: the manifest names version {:?}, the table's txn {txn:?}", manifest.table_version)
        });
        parts += listed.len();
        rows += listed.iter().map(|f| f.events).sum::<u64>();
    }
    checks.check(state.files.len() == parts, || format!("{DELTA_CONNECTION}: {} live files in the table, {parts} parts in the manifests", state.files.len()));
    // One commit per exported hour: a gapless log whose every entry is a different hour.
    checks.check(commits == (0..commits.len() as u64).collect::<Vec<_>>(), || format!("{DELTA_CONNECTION}: the log has gaps: {commits:?}"));
    checks.check(state.txns.len() == commits.len(), || format!("{DELTA_CONNECTION}: {} commits for {} hours", commits.len(), state.txns.len()));
    let due: Vec<u64> = (1..).map(|k| k * exporter::export::delta::commit::CHECKPOINT_INTERVAL).take_while(|&v| v < commits.len() as u64).collect();
    checks.check(checkpoints == due, || format!("{DELTA_CONNECTION}: checkpoints {checkpoints:?} after {} commits, expected {due:?}", commits.len()));
    println!(
        "   {DELTA_CONNECTION}: Delta table {} at version {}, {} commits, checkpoint(s) {:?}, {parts} parts, {rows} rows; each hour's files and txn match its manifest",
        table.describe(),
        state.version.map_or("-".to_string(), |v| v.to_string()),
        commits.len(),
        checkpoints
    );
    Ok(())
}
