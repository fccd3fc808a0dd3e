//! `exportctl backfill`: replaces every hour of a range through the backfill logic, with a
//! progress bar and a summary of what became of each hour.

use std::process::ExitCode;

use exporter::delivery::backfill::{progress, BackfillRequest};
use exporter::hour::HourRange;
use exporter::{ExportError, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::home::Home;

pub async fn backfill(home: &Home, id: &str, from: &str, to: &str, allow_empty_lake: bool) -> Result<ExitCode> {
    let range = HourRange::parse(from, to)?;
    // A fresh id per command: running the same range again is a new backfill, while the
    // function's own redeliveries (same id) resume it without starting pieces twice.
    let backfill_id =
        format!("{id}-{}-{}-{}", range.from.start().format("%Y%m%dT%H"), range.to.start().format("%Y%m%dT%H"), exporter::control::ledger::new_run_id());
    let payload = serde_json::json!({"connection_id": id, "from": range.from.to_string(), "to": range.to.to_string(),
        "backfill_id": backfill_id, "allow_empty_lake": allow_empty_lake});
    let req = BackfillRequest::from_payload(&payload)?;
    let bar = ProgressBar::new(range.len());
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} hours {msg}").expect("template"));
    let control = home.control.store().clone();
    let backfill_id = req.id();
    let update = |bar: &ProgressBar| {
        let control = control.clone();
        let id = backfill_id.clone();
        let bar = bar.clone();
        async move {
            if let Ok(p) = progress(control.as_ref(), &id).await {
                bar.set_position(p.done_hours);
                bar.set_message(format!("{} events, {} invocations", p.events_exported, p.invocations));
            }
        }
    };
    match (&home.embedded, &home.backfill_function) {
        (Some(embedded), _) => embedded.backfill(payload, || {}).await?,
        (None, Some(function)) => {
            // Deployed: the function fans out on its own; follow its progress records.
            function.invoke_async(&payload).await?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6 * 3600);
            loop {
                update(&bar).await;
                let p = progress(control.as_ref(), &backfill_id).await?;
                if p.is_finished() || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
        (None, None) => return Err(ExportError::invalid_config("BACKFILL_FUNCTION", "is not set", "Set it to the backfill function's name (a stack output).")),
    }
    update(&bar).await;
    bar.finish();
    let p = progress(control.as_ref(), &backfill_id).await?;
    println!(
        "backfill {backfill_id}: {}/{} hours exported, {} events, {} invocations ({} asynchronous)",
        p.exported_hours, p.total_hours, p.events_exported, p.invocations, p.async_invocations
    );
    if !p.failed_hours.is_empty() {
        println!("failed hours (each is retried when its error can go away; `exportctl status` lists what is owed):");
        let runs = home.control.list_runs(id).await?;
        for hour in &p.failed_hours {
            let error = runs.iter().rev().find(|r| r.hour == *hour && r.error.is_some()).and_then(|r| r.error.clone()).unwrap_or_default();
            println!("  {hour}: {error}");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
