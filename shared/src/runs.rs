//! Running hours: export through `export_hour`, then record the run and keep the
//! connection's status (watermark, last exported hour, last error, gap) in step.
//! Scheduled runs derive their hours from the schedule's time, never the wall clock.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::adapters::factory::{open_store, CloudContext};
use crate::connection::Connection;
use crate::control::{ControlStore, Gap, RunOutcome, RunRecord};
use crate::error::Result;
use crate::export::{export_hour, ExportMode, ExportSettings, ExportTargets, HourReport};
use crate::failure::{Clock, HourRunner, HourSummary};
use crate::hour::{HourRange, UtcHour};
use crate::invocation::ScheduledRunner;
use crate::retry::HourRequest;
use crate::storage::ObjectStore;

/// How far back a scheduled run catches up by itself; older gaps need a backfill.
pub const MAX_CATCH_UP_HOURS: i64 = 24;

/// The hours a schedule firing at `scheduled_time` exports, given the watermark, and the
/// gap (if any) that is older than the catch-up window.
pub fn catch_up(watermark: Option<UtcHour>, scheduled_time: DateTime<Utc>, connection_id: &str) -> Result<(Vec<UtcHour>, Option<Gap>)> {
    let target = UtcHour::containing(scheduled_time)?.prev();
    let first = match watermark {
        Some(w) if w < target => w.next(),
        _ => target,
    };
    let window_start = target.plus(1 - MAX_CATCH_UP_HOURS);
    if first < window_start {
        let range = HourRange::new(first, window_start.prev())?;
        let gap = Gap { range, backfill_command: format!("exportctl backfill {connection_id} --from {} --to {}", range.from, range.to) };
        return Ok((HourRange::new(window_start, target)?.hours().collect(), Some(gap)));
    }
    Ok((HourRange::new(first, target)?.hours().collect(), None))
}

/// Exports hours for connections and records every run in the control store.
#[derive(Clone)]
pub struct RunService {
    pub control: ControlStore,
    pub lake: Arc<dyn ObjectStore>,
    pub cloud: CloudContext,
    pub settings: ExportSettings,
    pub clock: Clock,
}

impl std::fmt::Debug for RunService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunService").field("lake", &self.lake).field("settings", &self.settings).finish()
    }
}

impl RunService {
    pub async fn targets(&self, conn: &Connection) -> Result<ExportTargets> {
        let events = open_store(&conn.destination, &conn.project_id, &self.cloud).await?;
        let merged_ids = match &conn.merged_ids_destination {
            Some(d) => open_store(d, &conn.project_id, &self.cloud).await?,
            None => events.clone(),
        };
        Ok(ExportTargets { lake: self.lake.clone(), events, merged_ids })
    }

    /// Exports one hour and records the run; the export's error is returned after it is
    /// recorded.
    pub async fn run(&self, conn: &Connection, hour: UtcHour, mode: ExportMode, attempt: u32) -> Result<HourReport> {
        let started = (self.clock)();
        let result = async { export_hour(conn, &self.targets(conn).await?, hour, mode, &self.settings).await }.await;
        let mut record = RunRecord {
            connection_id: conn.id.clone(),
            hour,
            mode,
            attempt,
            started,
            ended: (self.clock)(),
            outcome: RunOutcome::Failed,
            events: Default::default(),
            merged_ids: Default::default(),
            files: Vec::new(),
            invalid_records: 0,
            error_kind: None,
            error: None,
        };
        match &result {
            Ok(report) if report.skipped => record.outcome = RunOutcome::Skipped,
            Ok(report) => {
                record.outcome = RunOutcome::Exported;
                if let Some(m) = &report.manifest {
                    for (data, acc) in [(&m.events, &mut record.events), (&m.merged_ids, &mut record.merged_ids)] {
                        if let Some(d) = data {
                            *acc = d.accounting.clone();
                            record.files.extend(d.files.iter().map(|f| f.key.clone()));
                            record.invalid_records += d.accounting.invalid;
                        }
                    }
                }
            }
            Err(e) => {
                record.error_kind = Some(e.kind().to_string());
                record.error = Some(e.to_string());
            }
        }
        self.control.put_run(&record).await?;
        match &result {
            Ok(_) => {
                self.control
                    .update_status(&conn.id, |s| {
                        s.last_exported_hour = Some(s.last_exported_hour.map_or(hour, |h| h.max(hour)));
                    })
                    .await?;
            }
            Err(e) => {
                let message = e.to_string();
                self.control.update_status(&conn.id, |s| s.last_error = Some(message)).await?;
            }
        }
        result
    }
}

fn summary(report: &HourReport) -> HourSummary {
    let events = report.manifest.as_ref().and_then(|m| m.events.as_ref()).map(|e| e.accounting.exported).unwrap_or(0);
    HourSummary { skipped: report.skipped, events_exported: events }
}

#[async_trait]
impl HourRunner for RunService {
    async fn run_hour(&self, conn: &Connection, req: &HourRequest) -> Result<HourSummary> {
        self.run(conn, req.hour, req.mode, req.attempt).await.map(|r| summary(&r))
    }
}

#[async_trait]
impl ScheduledRunner for RunService {
    async fn run_scheduled(&self, conn: &Connection, scheduled_time: DateTime<Utc>) -> Result<Vec<(UtcHour, Result<HourSummary>)>> {
        let status = self.control.status(&conn.id).await?;
        let (hours, gap) = catch_up(status.watermark, scheduled_time, &conn.id)?;
        let mut out = Vec::with_capacity(hours.len());
        for hour in hours {
            let result = self.run(conn, hour, ExportMode::Recurring, 1).await.map(|r| summary(&r));
            out.push((hour, result));
        }
        // Failed hours are handed to retry schedules, so the watermark moves past them.
        let latest = out.last().map(|(h, _)| *h);
        self.control
            .update_status(&conn.id, |s| {
                if let Some(h) = latest {
                    s.watermark = Some(s.watermark.map_or(h, |w| w.max(h)));
                }
                if gap.is_some() {
                    s.gap = gap;
                }
            })
            .await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn catch_up_from_watermark() {
        let h = |s| UtcHour::parse(s).unwrap();
        let (hours, gap) = catch_up(None, t("2020-01-25T18:10:00Z"), "c").unwrap();
        assert_eq!(hours, vec![h("2020-01-25T17")]);
        assert!(gap.is_none());
        let (hours, _) = catch_up(Some(h("2020-01-25T14")), t("2020-01-25T18:10:00Z"), "c").unwrap();
        assert_eq!(hours, vec![h("2020-01-25T15"), h("2020-01-25T16"), h("2020-01-25T17")]);
        // already handled: the same hour again (a redelivered event), skipped by its marker
        let (hours, _) = catch_up(Some(h("2020-01-25T17")), t("2020-01-25T18:10:00Z"), "c").unwrap();
        assert_eq!(hours, vec![h("2020-01-25T17")]);
        let (hours, gap) = catch_up(Some(h("2020-01-20T00")), t("2020-01-25T18:10:00Z"), "c").unwrap();
        assert_eq!(hours.len(), 24);
        let gap = gap.unwrap();
        assert_eq!(gap.range.from, h("2020-01-20T01"));
        assert_eq!(gap.range.to.next(), hours[0]);
        assert!(gap.backfill_command.contains("exportctl backfill c --from 2020-01-20T01"));
    }
}
