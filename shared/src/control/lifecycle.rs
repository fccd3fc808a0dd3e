//! A connection's life: create (validate, refuse a key space another connection writes,
//! verify with a test upload, claim, store, hourly schedule), enable, disable, delete. Every step is idempotent where the cloud may retry.

use chrono::{DateTime, Utc};

use crate::control::connection::Connection;
use crate::control::store::ControlStore;
use crate::error::{ExportError, Result};
use crate::model::probe_report::ProbeReport;
use crate::ports::DestinationProber;
use crate::ports::HourlySchedules;

/// Creates a connection. The destination(s) must pass the probe suite first: a failure
/// refuses activation and lists every missing permission at once. Returns the stored
/// connection and the probe reports.
pub async fn create_connection(
    control: &ControlStore,
    schedules: &dyn HourlySchedules,
    prober: &dyn DestinationProber,
    conn: Connection,
    now: DateTime<Utc>,
) -> Result<(Connection, Vec<ProbeReport>)> {
    conn.validate()?;
    control.check_project(&conn).await?;
    // No two connections write the same keys (see `key_space`): refused before any probe.
    crate::control::key_space::refuse_coinciding(control, &conn).await?;
    for dest in std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()) {
        prober.admit(dest).await?;
    }
    if let Some(hook) = &conn.webhook {
        prober.admit_webhook("webhook.url", &hook.url).await?;
    }
    if let Some(url) = &conn.failure_webhook {
        prober.admit_webhook("failure_webhook", url.expose()).await?;
    }
    let mut reports = vec![prober.probe(&conn.destination, &conn.project_id).await];
    if let Some(d) = &conn.merged_ids_destination {
        reports.push(prober.probe(d, &conn.project_id).await);
    }
    let failed: Vec<&ProbeReport> = reports.iter().filter(|r| !r.all_passed()).collect();
    if !failed.is_empty() {
        let details: Vec<String> = failed.iter().map(|r| format!("{}: failed: {}", r.destination, r.missing().join(", "))).collect();
        return Err(ExportError::invalid_config(
            "destination",
            format!("the test upload failed, so the connection was not activated ({})", details.join("; ")),
            "Grant what is missing (`exportctl policy` prints the statements), then create the connection again.",
        ));
    }
    let conn = control.create_connection(conn, now).await?;
    schedules.put_hourly(&conn.id, conn.enabled).await?;
    Ok((conn, reports))
}

/// Turns a connection's hourly exports on or off (its schedule's state and its record).
pub async fn set_enabled(control: &ControlStore, schedules: &dyn HourlySchedules, id: &str, enabled: bool) -> Result<Connection> {
    let mut conn = control.get_connection(id).await?;
    conn.enabled = enabled;
    control.save_connection(&conn).await?;
    schedules.put_hourly(id, enabled).await?;
    Ok(conn)
}

/// Deletes a connection, its hourly schedule, status and claims. Exported files stay.
pub async fn delete_connection(control: &ControlStore, schedules: &dyn HourlySchedules, id: &str) -> Result<Connection> {
    let conn = control.delete_connection(id).await?;
    schedules.delete_hourly(id).await?;
    Ok(conn)
}
