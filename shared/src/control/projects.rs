//! The project registry: which organisation each project belongs to, and whether it is a
//! portfolio. The operator fills it (`exportctl projects add`); a connection's own file
//! never decides either, so a connection naming another organisation's project, or a
//! portfolio, is refused at create.
//!
//! ```text
//! projects/{project_id}.json   {"project_id", "org_id", "portfolio"}
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::control::connection::Connection;
use crate::control::store::{read_json, ControlStore};
use crate::error::{ExportError, Result};
use crate::model::fields::validate_numeric_id;
use crate::ports::CreateOutcome;

/// One registered project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub project_id: String,
    pub org_id: String,
    #[serde(default)]
    pub portfolio: bool,
}

impl Project {
    pub fn new(project_id: &str, org_id: &str, portfolio: bool) -> Result<Self> {
        validate_numeric_id("project_id", project_id)?;
        validate_numeric_id("org_id", org_id)?;
        Ok(Project { project_id: project_id.into(), org_id: org_id.into(), portfolio })
    }
}

fn project_key(project_id: &str) -> String {
    format!("projects/{project_id}.json")
}

impl ControlStore {
    /// Registers a project (create-only). Registering it again the same way is a no-op;
    /// registering it for another organisation, or with another kind, is refused: remove it
    /// first.
    pub async fn add_project(&self, project: &Project) -> Result<Project> {
        let body = serde_json::to_vec_pretty(project).expect("project serialises");
        if self.store().put_if_absent(&project_key(&project.project_id), Bytes::from(body)).await? == CreateOutcome::Created {
            return Ok(project.clone());
        }
        let existing = self.get_project(&project.project_id).await?.ok_or_else(|| ExportError::Internal("project vanished while registering".into()))?;
        if existing != *project {
            return Err(ExportError::Conflict {
                what: format!(
                    "project {} is already registered (organisation {}, portfolio: {}); remove it first (`exportctl projects remove {}`) to change it",
                    existing.project_id, existing.org_id, existing.portfolio, existing.project_id
                ),
            });
        }
        Ok(existing)
    }

    pub async fn get_project(&self, project_id: &str) -> Result<Option<Project>> {
        read_json(self.store().as_ref(), &project_key(project_id)).await
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let mut out = Vec::new();
        for meta in self.store().list("projects/").await? {
            if let Some(id) = meta.key.strip_prefix("projects/").and_then(|k| k.strip_suffix(".json")) {
                out.extend(self.get_project(id).await?);
            }
        }
        Ok(out)
    }

    /// Unregisters a project no connection uses.
    pub async fn remove_project(&self, project_id: &str) -> Result<Project> {
        let project = self.get_project(project_id).await?.ok_or_else(|| ExportError::NotFound { what: format!("project {project_id:?}") })?;
        let users = self.connections_using_project(project_id).await?;
        if !users.is_empty() {
            return Err(ExportError::Conflict { what: format!("project {project_id} is used by connection(s) {}; delete them first", users.join(", ")) });
        }
        self.store().delete(&project_key(project_id)).await?;
        Ok(project)
    }

    /// A connection may be created only for a registered, non-portfolio project of its own
    /// organisation.
    pub async fn check_project(&self, conn: &Connection) -> Result<Project> {
        let Some(project) = self.get_project(&conn.project_id).await? else {
            return Err(ExportError::invalid_config(
                "project_id",
                format!("project {} is not registered", conn.project_id),
                format!("The operator registers it first: exportctl projects add {} --org {}", conn.project_id, conn.org_id),
            ));
        };
        if project.org_id != conn.org_id {
            // The other organisation is not named: its ids are not this customer's business.
            return Err(ExportError::invalid_config(
                "project_id",
                format!("project {} does not belong to organisation {}", conn.project_id, conn.org_id),
                "Use a project of your own organisation.",
            ));
        }
        if project.portfolio {
            return Err(ExportError::invalid_config(
                "project_id",
                format!("project {} is a portfolio project (registry), which cannot be exported", conn.project_id),
                "Connect each of the portfolio's source projects instead.",
            ));
        }
        Ok(project)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::local::memory::MemoryStore;
    use crate::model::secret::{Secret, SecretBinding};
    use crate::ports::SecretCipher;

    #[derive(Debug)]
    struct Plain;
    #[async_trait::async_trait]
    impl SecretCipher for Plain {
        async fn seal(&self, plain: &Secret, _b: &SecretBinding) -> Result<String> {
            Ok(plain.expose().to_string())
        }
        async fn open(&self, sealed: &str, _b: &SecretBinding) -> Result<Secret> {
            Ok(Secret::new(sealed))
        }
    }

    fn conn(org: &str, project: &str) -> Connection {
        let doc = format!(
            r#"{{"id":"c{project}","org_id":"{org}","project_id":"{project}","admins":["admin@example.com"],"creator":"a@b.co","destination":{{"type":"local","path":"/x{project}"}}}}"#
        );
        Connection::from_json(&doc).unwrap()
    }

    #[tokio::test]
    async fn the_registry_decides_owner_and_kind() {
        let control = ControlStore::new(Arc::new(MemoryStore::new("control")), Arc::new(Plain));
        let now = chrono::Utc::now();
        control.add_project(&Project::new("100", "1", false).unwrap()).await.unwrap();
        control.add_project(&Project::new("100", "1", false).unwrap()).await.expect("idempotent");
        assert!(matches!(control.add_project(&Project::new("100", "2", false).unwrap()).await, Err(ExportError::Conflict { .. })));
        control.add_project(&Project::new("200", "1", true).unwrap()).await.unwrap();

        let refused = |r: Result<Connection>| r.unwrap_err().to_string();
        assert!(refused(control.create_connection(conn("1", "999"), now).await).contains("projects add 999 --org 1"));
        assert!(refused(control.create_connection(conn("2", "100"), now).await).contains("does not belong to organisation 2"));
        assert!(refused(control.create_connection(conn("1", "200"), now).await).contains("portfolio"));
        control.create_connection(conn("1", "100"), now).await.expect("own standard project");
        assert!(matches!(control.remove_project("100").await, Err(ExportError::Conflict { .. })), "in use");
        control.delete_connection("c100").await.unwrap();
        control.remove_project("100").await.unwrap();
        assert_eq!(control.list_projects().await.unwrap(), vec![Project::new("200", "1", true).unwrap()]);
        assert!(Project::new("abc", "1", false).is_err());
    }
}
