//! What an access probe found: one result per check, with the permission it needs. The
//! probes themselves (`crate::access::probe`) and each provider's checks fill it in; the
//! failure email, `exportctl verify` and the connection lifecycle read it.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::error::ExportError;

/// Folder under the connection's prefix that holds the short-lived probe object, for
/// every provider (one lifecycle rule covers them all).
pub const PROBE_DIR: &str = "_export_probe";

/// What a probe refused by a firewall (or a SAS's limits) before any permission was checked lacks.
pub const NETWORK_ACCESS: &str = "network access (the storage firewall admits the exporter, or the SAS covers it)";
/// What a probe that got no answer lacks.
pub const AN_ANSWER: &str = "an answer from the destination (it did not respond: retried later)";

/// Outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProbeOutcome {
    Pass,
    /// Refused: `cause` is the error kind (PermissionDenied, BadCredentials, ...).
    Fail {
        cause: String,
        detail: String,
    },
    /// Not run because an earlier probe it depends on failed.
    Skipped {
        reason: String,
    },
}

/// One check, e.g. "put probe object" needing `s3:PutObject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub check: String,
    /// The permission the check needs (`s3:PutObject`, `kms:Decrypt`,
    /// `Microsoft.Storage/.../blobs/write`) or the precondition (`bucket exists`).
    pub permission: String,
    #[serde(flatten)]
    pub outcome: ProbeOutcome,
}

impl ProbeResult {
    pub fn pass(check: &str, permission: &str) -> Self {
        ProbeResult { check: check.into(), permission: permission.into(), outcome: ProbeOutcome::Pass }
    }

    pub fn fail(check: &str, permission: &str, err: &ExportError) -> Self {
        ProbeResult { check: check.into(), permission: permission.into(), outcome: ProbeOutcome::Fail { cause: err.kind().into(), detail: err.to_string() } }
    }

    pub fn skipped(check: &str, permission: &str, reason: &str) -> Self {
        ProbeResult { check: check.into(), permission: permission.into(), outcome: ProbeOutcome::Skipped { reason: reason.into() } }
    }

    pub fn passed(&self) -> bool {
        self.outcome == ProbeOutcome::Pass
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, ProbeOutcome::Fail { .. })
    }
}

/// All probes of one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// e.g. `s3://bucket/prefix` or `https://acct.blob.core.windows.net/container/prefix`.
    pub destination: String,
    /// The identity the probes ran as (role ARN, service principal client id).
    pub principal: Option<String>,
    pub results: Vec<ProbeResult>,
}

impl ProbeReport {
    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|r| r.passed())
    }

    /// The permissions (or causes) of every failed probe, in probe order, without repeats. A
    /// probe refused before any permission was checked (a storage firewall) or never answered
    /// names that, not the permission it would have needed: no permission is known missing.
    pub fn missing(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.results.iter().filter(|r| r.failed()) {
            let what = match &r.outcome {
                ProbeOutcome::Fail { cause, .. } if cause == "AccessBlocked" => NETWORK_ACCESS.to_string(),
                ProbeOutcome::Fail { cause, .. } if cause == "Transient" => AN_ANSWER.to_string(),
                _ => r.permission.clone(),
            };
            if !out.contains(&what) {
                out.push(what);
            }
        }
        out
    }

    /// A fixed-width table for terminals and plain-text emails.
    pub fn table(&self) -> String {
        let width = self.results.iter().map(|r| r.check.len()).max().unwrap_or(5).max(5);
        let pw = self.results.iter().map(|r| r.permission.len()).max().unwrap_or(10).max(10);
        let mut s = String::new();
        let _ = writeln!(s, "Destination: {}", self.destination);
        if let Some(p) = &self.principal {
            let _ = writeln!(s, "Principal:   {p}");
        }
        let _ = writeln!(s, "{:<width$}  {:<pw$}  RESULT", "CHECK", "PERMISSION");
        for r in &self.results {
            let result = match &r.outcome {
                ProbeOutcome::Pass => "pass".to_string(),
                ProbeOutcome::Fail { cause, detail } => format!("FAIL {cause}: {detail}"),
                ProbeOutcome::Skipped { reason } => format!("skipped ({reason})"),
            };
            let _ = writeln!(s, "{:<width$}  {:<pw$}  {result}", r.check, r.permission);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(check: &str, permission: &str, cause: &str) -> ProbeResult {
        ProbeResult { check: check.into(), permission: permission.into(), outcome: ProbeOutcome::Fail { cause: cause.into(), detail: "d".into() } }
    }

    #[test]
    fn a_firewall_or_silence_is_named_instead_of_permissions_nobody_checked() {
        let report = |results| ProbeReport { destination: "https://a.blob.core.windows.net/c".into(), principal: None, results };
        let blocked = report(vec![
            failed("container exists", "container exists", "AccessBlocked"),
            failed("write probe blob", "blobs/write", "AccessBlocked"),
            ProbeResult::skipped("read probe blob", "blobs/read", "no probe blob"),
        ]);
        assert_eq!(blocked.missing(), vec![NETWORK_ACCESS.to_string()]);
        let silent = report(vec![failed("write probe blob", "blobs/write", "Transient")]);
        assert_eq!(silent.missing(), vec![AN_ANSWER.to_string()]);
        let denied = report(vec![failed("write probe blob", "blobs/write", "PermissionDenied"), ProbeResult::pass("read", "blobs/read")]);
        assert_eq!(denied.missing(), vec!["blobs/write".to_string()]);
    }
}
