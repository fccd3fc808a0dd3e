//! The two functions' events turned into library calls, so the function crates stay glue.
//!
//! hourly-export receives either `{connection_id, scheduled_time}` from the connection's
//! hourly schedule or `{connection_id, hour, mode, attempt}` from a retry schedule;
//! backfill receives `{connection_id, from, to}` (plus `depth`/`backfill_id` on the
//! invocations it makes itself). A bad payload, an unknown or disabled connection is an
//! `InvalidInput` error, reported before anything is written, so it changes nothing and
//! retrying it is pointless.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::control::connection::Connection;
use crate::control::run_api::{ConnectionSource, HourRunner, HourlyPlan, ScheduledRunner};
use crate::delivery::backfill::{run_backfill, BackfillContext, BackfillOutcome, BackfillRequest};
use crate::delivery::failure::{FailureHandler, HourResult};
use crate::error::{ExportError, Result};
use crate::hour::UtcHour;
use crate::model::hour_request::ExportMode;
use crate::model::hour_request::HourRequest;

/// An hourly run that exported nothing because the destination, whose failure email is
/// out, still fails its probe: one probe instead of an export attempt per owed hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deferred {
    /// The destinations probed and what still fails there.
    pub still_failing: Vec<String>,
    /// Owed hours that wait for the destination.
    pub hours_waiting: usize,
}

/// The hourly-export function's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HourlyEvent {
    Scheduled { connection_id: String, scheduled_time: DateTime<Utc> },
    Hour(HourRequest),
}

impl HourlyEvent {
    pub fn connection_id(&self) -> &str {
        match self {
            HourlyEvent::Scheduled { connection_id, .. } => connection_id,
            HourlyEvent::Hour(r) => &r.connection_id,
        }
    }

    /// Reads a payload, naming exactly what is wrong with a bad one.
    pub fn from_payload(payload: &serde_json::Value) -> Result<Self> {
        let obj = payload.as_object().ok_or_else(|| {
            ExportError::invalid_input(
                "hourly-export payload",
                "expected a JSON object {connection_id, scheduled_time} or {connection_id, hour, mode, attempt}",
            )
        })?;
        let allowed: &[&str] = if obj.contains_key("scheduled_time") {
            &["connection_id", "scheduled_time"]
        } else {
            &["connection_id", "hour", "mode", "attempt", "allow_empty_lake"]
        };
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(ExportError::invalid_input("hourly-export payload", format!("unexpected field `{key}` (expected {})", allowed.join(", "))));
            }
        }
        let text = |field: &str| -> Result<String> {
            match obj.get(field) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(_) => Err(ExportError::invalid_input(format!("`{field}`"), "must be a non-empty string")),
                None => Err(ExportError::invalid_input("hourly-export payload", format!("missing `{field}`"))),
            }
        };
        let connection_id = text("connection_id")?;
        if obj.contains_key("scheduled_time") {
            let raw = text("scheduled_time")?;
            let scheduled_time = DateTime::parse_from_rfc3339(&raw)
                .map_err(|_| {
                    ExportError::invalid_input(
                        format!("scheduled_time {raw:?}"),
                        "expected an RFC 3339 time such as 2020-01-25T18:10:00Z (the schedule's input must carry <aws.scheduler.scheduled-time>)",
                    )
                })?
                .with_timezone(&Utc);
            return Ok(HourlyEvent::Scheduled { connection_id, scheduled_time });
        }
        let hour = UtcHour::parse(&text("hour")?)?;
        let mode = match obj.get("mode") {
            None => ExportMode::Recurring,
            Some(serde_json::Value::String(m)) if m == "recurring" => ExportMode::Recurring,
            Some(serde_json::Value::String(m)) if m == "replace" => ExportMode::Replace,
            Some(serde_json::Value::String(m)) if m == "late" => ExportMode::Late,
            Some(other) => return Err(ExportError::invalid_input(format!("mode {other}"), "expected \"recurring\", \"replace\" or \"late\"")),
        };
        let allow_empty_lake = match obj.get("allow_empty_lake") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => return Err(ExportError::invalid_input(format!("allow_empty_lake {other}"), "expected true or false")),
        };
        let attempt = match obj.get("attempt") {
            None => 1,
            Some(v) => v
                .as_u64()
                .filter(|a| (1..=1000).contains(a))
                .ok_or_else(|| ExportError::invalid_input(format!("attempt {v}"), "expected a positive integer"))? as u32,
        };
        Ok(HourlyEvent::Hour(HourRequest { connection_id, hour, mode, attempt, allow_empty_lake }))
    }
}

/// What hourly-export did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourlyResponse {
    pub connection_id: String,
    pub hours: Vec<HourResult>,
    /// Runs found dead on an hour, each counted as a failed attempt.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<HourResult>,
    /// Set when the destination still fails its probe and nothing was exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Deferred>,
}

/// Everything the functions need, built once per process.
#[derive(Clone)]
pub struct Services {
    pub connections: Arc<dyn ConnectionSource>,
    pub runner: Arc<dyn HourRunner>,
    pub scheduled: Arc<dyn ScheduledRunner>,
    pub failure: FailureHandler,
}

/// Loads a connection that may run: unknown and disabled connections are refused.
pub async fn load_enabled(connections: &dyn ConnectionSource, id: &str) -> Result<Connection> {
    let conn = connections
        .connection(id)
        .await?
        .ok_or_else(|| ExportError::invalid_input(format!("connection_id {id:?}"), "no such connection; `exportctl connections list` shows the ids"))?;
    if !conn.enabled {
        return Err(ExportError::invalid_input(
            format!("connection {id}"),
            "is disabled; nothing is exported until `exportctl connections enable` turns it back on",
        ));
    }
    Ok(conn)
}

/// Handles one hourly-export event. `stop_starting` is the time after which no new hour
/// is started (the function's deadline less a reserve): the hours left are handed to
/// one-time schedules and stay owed. The first hour always starts.
pub async fn handle_hourly(services: &Services, payload: &serde_json::Value, stop_starting: Option<DateTime<Utc>>) -> Result<HourlyResponse> {
    let event = HourlyEvent::from_payload(payload)?;
    let conn = load_enabled(services.connections.as_ref(), event.connection_id()).await?;
    let scheduled = matches!(event, HourlyEvent::Scheduled { .. });
    let plan = match event {
        HourlyEvent::Hour(req) => HourlyPlan { requests: vec![req], stopped: Vec::new() },
        HourlyEvent::Scheduled { scheduled_time, .. } => services.scheduled.plan(&conn, scheduled_time).await?,
    };
    let mut response = HourlyResponse { connection_id: conn.id.clone(), hours: Vec::new(), stopped: Vec::new(), deferred: None };
    let mut first_error = None;
    // A run that died is a failed attempt: retried on the schedule, alarmed after the last.
    for dead in &plan.stopped {
        match services.failure.on_failure(&conn, &dead.request, &dead.error).await {
            Ok(after) => response.stopped.push(HourResult {
                request: dead.request.clone(),
                exported: None,
                error_kind: Some(dead.error.kind().into()),
                error: Some(dead.error.to_string()),
                after_failure: Some(after),
            }),
            Err(e) => {
                tracing::error!(connection = %conn.id, hour = %dead.request.hour, error_kind = e.kind(), error = %e, "failure handling of a dead run failed; the hour stays owed");
                first_error.get_or_insert(e);
            }
        }
    }
    // A destination known dead (its failure email is out) costs one probe per hourly run
    // and per retry, not an export attempt per owed hour; an operator's own request still runs.
    let retry = plan.requests.iter().all(|r| r.attempt > 1);
    if (scheduled || retry) && !plan.requests.is_empty() {
        response.deferred = services.failure.probe_if_known_dead(&conn, plan.requests.len()).await?;
        if response.deferred.is_some() && !scheduled {
            for req in &plan.requests {
                services.failure.leave_to_hourly_runs(&conn, req).await?;
            }
        }
    }
    let requests = if response.deferred.is_some() { Vec::new() } else { plan.requests };
    run_requests(services, &conn, &requests, stop_starting, &mut response, &mut first_error).await?;
    // The destination works again (an hour was exported): the hours still waiting for
    // their retry schedule go now, so a recovered destination shows as recovered at once.
    if scheduled && response.hours.iter().any(|h| h.exported.as_ref().is_some_and(|e| !e.skipped)) {
        let mut waiting = services.failure.waiting_retries(&conn).await?;
        // Only hours that failed before this run: one that just failed keeps its schedule.
        waiting.retain(|w| !response.hours.iter().any(|h| h.request.hour == w.hour));
        run_requests(services, &conn, &waiting, stop_starting, &mut response, &mut first_error).await?;
    }
    services.scheduled.finish(&conn).await?;
    // Reported after every hour had its turn, so the event is delivered again.
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(response)
}

/// Runs `requests` in order, handing those it has no time to start to one-time schedules.
async fn run_requests(
    services: &Services,
    conn: &Connection,
    requests: &[HourRequest],
    stop_starting: Option<DateTime<Utc>>,
    response: &mut HourlyResponse,
    first_error: &mut Option<ExportError>,
) -> Result<()> {
    for req in requests {
        if !response.hours.is_empty() && stop_starting.is_some_and(|t| Utc::now() >= t) {
            response.hours.push(services.failure.hand_off(conn, req).await?);
            continue;
        }
        // One hour whose failure could not be handled must not cost the others their turn.
        match services.failure.process_hour(services.runner.as_ref(), conn, req).await {
            Ok(result) => response.hours.push(result),
            Err(e) => {
                tracing::error!(connection = %conn.id, hour = %req.hour, error_kind = e.kind(), error = %e, "failure handling failed; the hour stays owed");
                first_error.get_or_insert(e);
            }
        }
    }
    Ok(())
}

/// Handles one backfill event.
pub async fn handle_backfill(services: &Services, ctx: &BackfillContext, payload: &serde_json::Value) -> Result<BackfillOutcome> {
    let req = BackfillRequest::from_payload(payload)?;
    // Checked before anything is recorded: a range too long or too deep, or reaching an
    // hour that is not closed yet, changes nothing.
    ctx.fan_out.plan(req.range()?, req.depth)?;
    ctx.runner.check_ready(req.range()?)?;
    let conn = load_enabled(services.connections.as_ref(), &req.connection_id).await?;
    run_backfill(ctx, &conn, &req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hourly_payloads() {
        let s = HourlyEvent::from_payload(&json!({"connection_id":"c1","scheduled_time":"2020-01-25T18:10:00Z"})).unwrap();
        assert!(matches!(s, HourlyEvent::Scheduled { ref connection_id, .. } if connection_id == "c1"));
        let h = HourlyEvent::from_payload(&json!({"connection_id":"c1","hour":"2020-01-25T17","mode":"replace","attempt":2})).unwrap();

        assert_eq!(h, HourlyEvent::Hour(HourRequest::new("c1", UtcHour::parse("2020-01-25T17").unwrap(), ExportMode::Replace, 2)));
        let late = HourlyEvent::from_payload(&json!({"connection_id":"c1","hour":"2020-01-25T17","mode":"late","allow_empty_lake":true})).unwrap();
        assert!(matches!(late, HourlyEvent::Hour(HourRequest { mode: ExportMode::Late, allow_empty_lake: true, .. })));
        for (bad, want) in [
            (json!({"connection_id":"c1","hour":"2020-01-25 17:30"}), "minutes and seconds"),
            (json!({"connection_id":"c1","hour":"2020-01-25T17","mode":"sideways"}), "recurring"),
            (json!({"connection_id":"c1","hour":"2020-01-25T17","attempt":0}), "positive integer"),
            (json!({"connection_id":"c1","scheduled_time":"<aws.scheduler.scheduled-time>"}), "RFC 3339"),
            (json!({"hour":"2020-01-25T17"}), "missing `connection_id`"),
            (json!({"connection_id":"c1","hour":"2020-01-25T17","extra":true}), "unexpected field"),
            (json!({"connection_id":"c1","hour":"2020-01-25T17","allow_empty_lake":"yes"}), "expected true or false"),
            (json!({"connection_id":"c1","scheduled_time":"2020-01-25T18:20:00Z","allow_empty_lake":true}), "unexpected field"),
            (json!("c1"), "JSON object"),
        ] {
            let err = HourlyEvent::from_payload(&bad).unwrap_err();
            assert_eq!(err.kind(), "InvalidInput", "{bad}");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains(want), "{bad}: {err}");
        }
    }
}
