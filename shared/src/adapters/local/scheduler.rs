//! Embedded mode's scheduler: a retry schedule is a JSON file in `{dir}/retries/` that
//! `exportctl` runs once its time has come and then deletes (as EventBridge Scheduler does
//! with ActionAfterCompletion DELETE); an hourly schedule is `{dir}/hourly/{name}.json`
//! holding its state.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::error::{ExportError, Result};
use crate::model::hour_request::{HourRequest, PlannedRetry};
use crate::ports::CreateOutcome;
use crate::ports::HourlySchedules;
use crate::ports::RetryScheduler;

/// A retry schedule as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRetry {
    pub name: String,
    pub at: DateTime<Utc>,
    pub request: HourRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LocalHourly {
    connection_id: String,
    enabled: bool,
}

#[derive(Debug, Clone)]
pub struct LocalScheduler {
    dir: PathBuf,
}

impl LocalScheduler {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        for sub in ["retries", "hourly"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| ExportError::io(p.display().to_string(), e))?;
        }
        Ok(LocalScheduler { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn retry_path(&self, name: &str) -> PathBuf {
        self.dir.join("retries").join(format!("{name}.json"))
    }

    fn hourly_path(&self, connection_id: &str) -> PathBuf {
        self.dir.join("hourly").join(format!("hourly-{connection_id}.json"))
    }

    /// Every pending retry, earliest first (ties by name, so the order is stable).
    pub async fn retries(&self) -> Result<Vec<LocalRetry>> {
        let mut out: Vec<LocalRetry> = read_json_files(&self.dir.join("retries")).await?;
        out.sort_by(|a, b| (a.at, &a.name).cmp(&(b.at, &b.name)));
        Ok(out)
    }

    /// The retries whose time is at or before `now`.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<LocalRetry>> {
        Ok(self.retries().await?.into_iter().filter(|r| r.at <= now).collect())
    }

    /// Removes a retry once it has been run (a missing file is fine: run twice, deleted once).
    pub async fn complete(&self, name: &str) -> Result<()> {
        let path = self.retry_path(name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExportError::io(path.display().to_string(), e)),
        }
    }

    /// Connections with an hourly schedule and whether it is enabled.
    pub async fn hourly(&self) -> Result<Vec<(String, bool)>> {
        let hourly: Vec<LocalHourly> = read_json_files(&self.dir.join("hourly")).await?;
        let mut out: Vec<(String, bool)> = hourly.into_iter().map(|h| (h.connection_id, h.enabled)).collect();
        out.sort();
        Ok(out)
    }

    async fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        tokio::fs::write(&tmp, body).await.map_err(|e| ExportError::io(tmp.display().to_string(), e))?;
        tokio::fs::rename(&tmp, path).await.map_err(|e| ExportError::io(path.display().to_string(), e))
    }
}

/// Every `*.json` file of `dir`, parsed (a file that does not parse is `Corrupt`, named).
async fn read_json_files<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let mut entries = tokio::fs::read_dir(dir).await.map_err(|e| ExportError::io(dir.display().to_string(), e))?;
    let mut out = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(|e| ExportError::io(dir.display().to_string(), e))? {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = tokio::fs::read_to_string(&path).await.map_err(|e| ExportError::io(path.display().to_string(), e))?;
        out.push(serde_json::from_str(&text).map_err(|e| ExportError::Corrupt { what: path.display().to_string(), detail: e.to_string() })?);
    }
    Ok(out)
}

#[async_trait]
impl RetryScheduler for LocalScheduler {
    async fn schedule_retry(&self, retry: &PlannedRetry) -> Result<CreateOutcome> {
        // Connection ids are validated (letters, digits, `-`, `_`), so the id is a safe file name.
        if retry.id.is_empty() || !retry.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ExportError::Internal(format!("retry id {:?} is not a safe file name", retry.id)));
        }
        let body = serde_json::to_vec_pretty(&LocalRetry { name: retry.id.clone(), at: retry.at, request: retry.request.clone() })
            .map_err(|e| ExportError::Internal(e.to_string()))?;
        let path = self.retry_path(&retry.id);
        // Create-only, like CreateSchedule: the second request for a name finds the first.
        let mut file = match tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(CreateOutcome::AlreadyExists),
            Err(e) => return Err(ExportError::io(path.display().to_string(), e)),
        };
        file.write_all(&body).await.map_err(|e| ExportError::io(path.display().to_string(), e))?;
        file.sync_all().await.map_err(|e| ExportError::io(path.display().to_string(), e))?;
        Ok(CreateOutcome::Created)
    }
}

#[async_trait]
impl HourlySchedules for LocalScheduler {
    async fn put_hourly(&self, connection_id: &str, enabled: bool) -> Result<()> {
        let body =
            serde_json::to_vec_pretty(&LocalHourly { connection_id: connection_id.into(), enabled }).map_err(|e| ExportError::Internal(e.to_string()))?;
        Self::write_atomic(&self.hourly_path(connection_id), &body).await
    }

    async fn set_hourly_enabled(&self, connection_id: &str, enabled: bool) -> Result<()> {
        if self.hourly_state(connection_id).await?.is_none() {
            return Err(ExportError::NotFound { what: format!("hourly schedule of connection {connection_id}") });
        }
        self.put_hourly(connection_id, enabled).await
    }

    async fn delete_hourly(&self, connection_id: &str) -> Result<()> {
        let path = self.hourly_path(connection_id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExportError::io(path.display().to_string(), e)),
        }
    }

    async fn hourly_state(&self, connection_id: &str) -> Result<Option<bool>> {
        let path = self.hourly_path(connection_id);
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => {
                let h: LocalHourly =
                    serde_json::from_str(&text).map_err(|e| ExportError::Corrupt { what: path.display().to_string(), detail: e.to_string() })?;
                Ok(Some(h.enabled))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ExportError::io(path.display().to_string(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::retry::RetryPolicy;
    use crate::hour::UtcHour;
    use crate::model::hour_request::ExportMode;

    #[tokio::test]
    async fn retries_are_create_only_and_run_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalScheduler::new(dir.path()).unwrap();
        let now = DateTime::parse_from_rfc3339("2020-01-25T18:05:00Z").unwrap().with_timezone(&Utc);
        let failed = HourRequest::new("c1", UtcHour::parse("2020-01-25T17").unwrap(), ExportMode::Recurring, 1);
        let plan = RetryPolicy::default().plan(&failed, now).unwrap();
        assert_eq!(s.schedule_retry(&plan).await.unwrap(), CreateOutcome::Created);
        assert_eq!(s.schedule_retry(&plan).await.unwrap(), CreateOutcome::AlreadyExists);
        assert!(s.due(now).await.unwrap().is_empty(), "not due before its time");
        let due = s.due(plan.at).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].request.attempt, 2);
        s.complete(&due[0].name).await.unwrap();
        s.complete(&due[0].name).await.unwrap();
        assert!(s.retries().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn hourly_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalScheduler::new(dir.path()).unwrap();
        assert_eq!(s.hourly_state("c1").await.unwrap(), None);
        assert!(s.set_hourly_enabled("c1", false).await.is_err());
        s.put_hourly("c1", true).await.unwrap();
        s.put_hourly("c1", true).await.unwrap();
        s.set_hourly_enabled("c1", false).await.unwrap();
        assert_eq!(s.hourly().await.unwrap(), vec![("c1".to_string(), false)]);
        s.delete_hourly("c1").await.unwrap();
        s.delete_hourly("c1").await.unwrap();
        assert_eq!(s.hourly_state("c1").await.unwrap(), None);
    }
}
