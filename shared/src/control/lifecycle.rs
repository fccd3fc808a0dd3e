//! A connection's life: create (validate, refuse a key space another connection writes,
//! verify with a test upload, claim, store, hourly schedule), enable, disable, delete. Every step is idempotent where the cloud may retry.

use chrono::{DateTime, Utc};

use crate::control::connection::Connection;
use crate::control::store::ControlStore;
use crate::error::{ExportError, Result};
use crate::model::destination::Destination;
use crate::model::probe_report::{ProbeOutcome, ProbeReport};
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
    let destinations: Vec<&Destination> = std::iter::once(&conn.destination).chain(conn.merged_ids_destination.iter()).collect();
    for dest in &destinations {
        prober.admit(dest).await?;
    }
    if let Some(hook) = &conn.webhook {
        prober.admit_webhook("webhook.url", &hook.url).await?;
    }
    if let Some(url) = &conn.failure_webhook {
        prober.admit_webhook("failure_webhook", url.expose()).await?;
    }
    let mut reports = Vec::new();
    for dest in &destinations {
        reports.push(prober.probe(dest, &conn.project_id).await);
    }
    let failed: Vec<(&Destination, &ProbeReport)> = destinations.iter().copied().zip(&reports).filter(|(_, r)| !r.all_passed()).collect();
    if !failed.is_empty() {
        let details: Vec<String> = failed.iter().map(|(_, r)| format!("{}: failed: {}", r.destination, r.missing().join(", "))).collect();
        let mut fixes: Vec<String> = Vec::new();
        for fix in failed.iter().map(|(d, r)| refusal_fix(d, r)) {
            if !fixes.contains(&fix) {
                fixes.push(fix);
            }
        }
        return Err(ExportError::invalid_config(
            "destination",
            format!("the test upload failed, so the connection was not activated ({})", details.join("; ")),
            format!("{} Then create the connection again.", fixes.join(" ")),
        ));
    }
    let conn = control.create_connection(conn, now).await?;
    schedules.put_hourly(&conn.id, conn.enabled).await?;
    Ok((conn, reports))
}

/// The one fix for a refused test upload, from what the probe found first in this order
/// (a missing bucket, container or folder explains every other failed check; a wrong
/// setting or credential explains the refusals after it) and the kind of destination: only
/// Amazon S3 and Azure permissions are granted with what `exportctl policy` prints.
fn refusal_fix(dest: &Destination, report: &ProbeReport) -> String {
    let causes: Vec<(&str, &str)> = report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            ProbeOutcome::Fail { cause, detail } => Some((cause.as_str(), detail.as_str())),
            _ => None,
        })
        .collect();
    let first = |kinds: &[&str]| causes.iter().find(|(c, _)| kinds.contains(c)).copied();
    let compatible = matches!(dest, Destination::S3 { endpoint_url: Some(_), .. });
    if first(&["DestinationMissing"]).is_some() {
        return match dest {
            Destination::Local { path, .. } => format!("Create the folder {path} (a destination folder is never created by the exporter, like a bucket)."),
            Destination::S3 { bucket, endpoint_url: Some(endpoint), .. } => format!("Create the bucket {bucket} on {endpoint}."),
            Destination::S3 { bucket, region, .. } => format!("Create the bucket {bucket} in {region}."),
            Destination::Azure { account_url, container, .. } => format!("Create the container {container} in the storage account {account_url}."),
        };
    }
    if let Some((_, detail)) = first(&["InvalidConfig"]) {
        return format!("Fix the connection: {detail}");
    }
    if first(&["BadCredentials"]).is_some() {
        return match dest {
            Destination::S3 { .. } if compatible => "Fix access_key_id and secret_access_key in the connection file (the store rejected them).".into(),
            Destination::S3 { .. } => "Fix the AWS credentials the exporter runs with (the project role could not be used with them).".into(),
            Destination::Azure { .. } => {
                "Fix tenant_id, client_id and client_secret (or sas_token) in the connection file (Microsoft Entra ID or the storage account rejected them)."
                    .into()
            }
            Destination::Local { .. } => "Fix the credentials the check above names.".into(),
        };
    }
    if first(&["PermissionDenied", "AccessBlocked"]).is_some() {
        let missing = report.missing().join(", ");
        return match dest {
            Destination::S3 { bucket, access_key_id, .. } if compatible => format!(
                "Give the access key {} read, write, list and delete on bucket {bucket} in the store's settings (missing: {missing}).",
                access_key_id.as_deref().unwrap_or("of the connection")
            ),
            Destination::S3 { .. } => format!("Grant what is missing ({missing}): `exportctl policy FILE` (this connection file) prints the statements."),
            Destination::Azure { container, .. } if first(&["AccessBlocked"]).is_some() && first(&["PermissionDenied"]).is_none() => format!(
                "Let the exporter through the storage account's network rules, or give a SAS token that allows read, write, delete and list on container {container}."
            ),
            Destination::Azure { container, .. } => format!(
                "Grant the service principal the role \"Storage Blob Data Contributor\" on container {container} (it has {missing}; `exportctl policy FILE` prints the az command)."
            ),
            Destination::Local { path, .. } => format!("Give the user the exporter runs as read, write and delete access to the folder {path}."),
        };
    }
    if first(&["Transient"]).is_some() {
        return "The destination did not answer (a network failure or a timeout, not a missing permission); wait a little.".into();
    }
    "`exportctl verify FILE` shows each check's error; fix what it names.".into()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::probe_report::ProbeResult;

    fn report(failures: &[(&str, ExportError)]) -> ProbeReport {
        let mut results = vec![ProbeResult::pass("read", "read")];
        results.extend(failures.iter().map(|(permission, e)| ProbeResult::fail("check", permission, e)));
        ProbeReport { destination: "d".into(), principal: None, results }
    }

    fn denied() -> ExportError {
        ExportError::PermissionDenied { operation: "put".into(), resource: "r".into(), permission: "p".into(), principal: None, detail: String::new() }
    }

    fn missing() -> ExportError {
        ExportError::DestinationMissing { resource: "r".into(), hint: String::new() }
    }

    #[test]
    fn the_fix_follows_what_the_probe_found_and_the_destination_kind() {
        let s3 = Destination::aws_s3("acme-exports", "", "eu-west-1", None);
        let local = Destination::Local { path: "/data/exports".into(), prefix: String::new() };
        let azure: Destination = serde_json::from_value(serde_json::json!({"type": "azure", "account_url": "https://acme.blob.core.windows.net",
            "container": "events", "tenant_id": "t", "client_id": "c", "client_secret": "s"}))
        .unwrap();
        let compatible: Destination = serde_json::from_value(serde_json::json!({"type": "s3", "bucket": "b-1", "region": "auto",
            "endpoint_url": "https://r2.example", "access_key_id": "AKR2", "secret_access_key": "s"}))
        .unwrap();

        // A missing place explains the refusals after it: create it, naming it.
        let fix = refusal_fix(&local, &report(&[("an existing folder", missing())]));
        assert_eq!(fix, "Create the folder /data/exports (a destination folder is never created by the exporter, like a bucket).");
        let fix = refusal_fix(&s3, &report(&[("s3:PutObject", denied()), ("bucket exists", missing())]));
        assert!(fix.starts_with("Create the bucket acme-exports in eu-west-1"), "{fix}");
        assert!(refusal_fix(&azure, &report(&[("container exists", missing())])).starts_with("Create the container events in the storage account https://acme"));

        // Refused permissions: what grants them differs by kind.
        let fix = refusal_fix(&s3, &report(&[("s3:PutObject", denied()), ("s3:DeleteObject", denied())]));
        assert!(fix.contains("s3:PutObject, s3:DeleteObject") && fix.contains("`exportctl policy FILE`"), "{fix}");
        let fix = refusal_fix(&azure, &report(&[("Microsoft.Storage/.../blobs/write", denied())]));
        assert!(fix.contains("Storage Blob Data Contributor") && fix.contains("container events") && fix.contains("blobs/write"), "{fix}");
        let fix = refusal_fix(&compatible, &report(&[("s3:PutObject", denied())]));
        assert!(fix.contains("access key AKR2") && fix.contains("bucket b-1") && !fix.contains("exportctl policy"), "{fix}");
        let fix = refusal_fix(&local, &report(&[("file system write", denied())]));
        assert!(fix.contains("access to the folder /data/exports") && !fix.contains("exportctl policy"), "{fix}");

        // Neither a missing place nor a permission: never "grant".
        let bad = ExportError::BadCredentials { service: "s".into(), detail: "d".into(), hint: String::new() };
        assert!(refusal_fix(&azure, &report(&[("token", bad)])).contains("client_secret"));
        let fix = refusal_fix(&azure, &report(&[("token", ExportError::transient("token", "dns"))]));
        assert!(fix.contains("did not answer") && !fix.contains("Grant"), "{fix}");
    }
}
