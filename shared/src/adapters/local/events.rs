//! Embedded mode's event bus: each "Hour Exported" event becomes a file
//! `{home}/events/{connection}/{hour}_{id}.json` holding what EventBridge would deliver
//! (`source`, `detail-type`, `detail`). One file per event id, written atomically, so a
//! redelivery rewrites the same file with the same bytes, and a changed hour adds a file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::{ExportError, Result};
use crate::model::hour_event::{HourExported, EVENT_SOURCE, HOUR_EXPORTED};
use crate::ports::HourEventSink;

#[derive(Debug, Clone)]
pub struct FolderEventSink {
    dir: PathBuf,
}

impl FolderEventSink {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| ExportError::io(dir.display().to_string(), e))?;
        Ok(FolderEventSink { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the event's file goes (connection ids and hours are file-name safe; ids are hex).
    pub fn path_of(&self, event: &HourExported) -> PathBuf {
        self.dir.join(&event.connection_id).join(format!("{}_{}.json", event.hour, event.id))
    }
}

#[async_trait]
impl HourEventSink for FolderEventSink {
    fn describe(&self) -> String {
        format!("folder {}", self.dir.display())
    }

    async fn publish(&self, event: &HourExported) -> Result<()> {
        let envelope = serde_json::json!({ "source": EVENT_SOURCE, "detail-type": HOUR_EXPORTED, "detail": event });
        let mut body = serde_json::to_vec_pretty(&envelope).expect("event serialises");
        body.push(b'\n');
        let path = self.path_of(event);
        let folder = path.parent().expect("the event file is in the connection's folder");
        let io = |p: &Path, e| ExportError::io(p.display().to_string(), e);
        tokio::fs::create_dir_all(folder).await.map_err(|e| io(folder, e))?;
        let temp = folder.join(format!(".{}.tmp", event.id));
        tokio::fs::write(&temp, &body).await.map_err(|e| io(&temp, e))?;
        tokio::fs::rename(&temp, &path).await.map_err(|e| io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::connection::Connection;
    use crate::export::manifest::Manifest;
    use crate::hour::UtcHour;
    use crate::model::hour_request::ExportMode;

    #[tokio::test]
    async fn one_file_per_event_id_rewritten_identically_on_redelivery() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FolderEventSink::new(dir.path().join("events")).unwrap();
        let conn = Connection::from_json(r#"{"id":"c1","org_id":"42","project_id":"187520","destination":{"type":"local","path":"/out"},"creator":"a@b.co"}"#)
            .unwrap();
        let event =
            HourExported::from_manifest(&conn, &Manifest::empty(&conn.export_spec().unwrap(), UtcHour::parse("2020-01-25T17").unwrap()), ExportMode::Recurring);
        sink.publish(&event).await.unwrap();
        let path = sink.path_of(&event);
        let first = std::fs::read(&path).unwrap();
        sink.publish(&event).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp file left, no second file");
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(
            (v["source"].as_str(), v["detail-type"].as_str(), v["detail"]["id"].as_str()),
            (Some("event-export"), Some("Hour Exported"), Some(event.id.as_str()))
        );
        assert!(path.ends_with(format!("c1/2020-01-25T17_{}.json", event.id)));
    }
}
