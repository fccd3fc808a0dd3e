//! One error type for the whole library, classified the way operators act on it:
//! retry later (transient), fix the destination (accessibility), or fix the input.

use std::fmt;

/// Result alias used across the library.
pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// Every failure the exporter can report. Each variant says what went wrong and, through
/// [`ExportError::is_retryable`] and [`ExportError::is_accessibility`], what to do about it.
/// No variant ever carries a secret: adapters redact before building one.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// An object, connection or resource that should exist does not.
    #[error("not found: {what}")]
    NotFound { what: String },

    /// The destination refused an operation for lack of a permission.
    #[error("permission denied: {operation} on {resource} needs `{permission}`{}{}",
        principal.as_deref().map(|p| format!(" (refused principal: {p})")).unwrap_or_default(),
        if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    PermissionDenied {
        /// What we were doing, e.g. `PutObject`.
        operation: String,
        /// The bucket/key or container/blob.
        resource: String,
        /// The IAM action or Azure data action that is missing, e.g. `s3:PutObject`.
        permission: String,
        /// The identity that was refused, when known.
        principal: Option<String>,
        detail: String,
    },

    /// Credentials were rejected: wrong key, wrong secret, expired or unverifiable token.
    #[error("credentials rejected by {service}: {detail}. {hint}")]
    BadCredentials { service: String, detail: String, hint: String },

    /// The bucket or container itself does not exist.
    #[error("destination missing: {resource} does not exist. {hint}")]
    DestinationMissing { resource: String, hint: String },

    /// The storage account refused the request before looking at permissions
    /// (network rules, firewall, or a SAS that does not authorise the request).
    #[error("access blocked to {resource}: {detail}")]
    AccessBlocked { resource: String, detail: String },

    /// A temporary failure: throttling, 5xx, timeouts, connection resets. Retry later.
    #[error("transient failure during {operation}: {detail}")]
    Transient { operation: String, detail: String },

    /// A connection or setting is invalid; `fix` says what to change.
    #[error("invalid configuration: {field}: {problem}. {fix}")]
    InvalidConfig { field: String, problem: String, fix: String },

    /// A request (hour, range, payload, command line) is invalid.
    #[error("invalid input: {what}: {problem}")]
    InvalidInput { what: String, problem: String },

    /// Another run holds the hour's lease: this run leaves the hour alone (nothing to retry;
    /// the holder finishes it, or its lease expires and the next run does).
    #[error("hour {hour} is being exported by run {run_id} since {since} (lease until {until}); this run left it alone")]
    HourBusy { hour: String, run_id: String, since: String, until: String },

    /// A create-only write or claim collided with something that already exists.
    #[error("conflict: {what}")]
    Conflict { what: String },

    /// Stored data the exporter itself wrote is unreadable (control store, manifest).
    #[error("corrupt data in {what}: {detail}")]
    Corrupt { what: String, detail: String },

    /// Local file system failure (embedded mode), with the path.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A bug or an unexpected answer from a service; not retried, reported as is.
    #[error("internal error: {0}")]
    Internal(String),

    /// Our own infrastructure failed (the event lake or the control store), not the
    /// customer's destination: retried, alarmed to the operators, never emailed to the customer.
    #[error("internal failure of our {component} (operators are alerted; the destination is not at fault): {detail}")]
    OurInfrastructure { component: String, detail: String },

    /// A run that held the hour's lease ended without a result (its lease expired with the
    /// hour still exporting): killed by the function timeout or out of memory, most likely.
    /// Counted as a failed attempt of ours; retried on the schedule, then alarmed.
    #[error(
        "the run {run_id} that started exporting hour {hour} at {since} stopped without a result (timeout or out of memory?); its lease expired at {until}"
    )]
    RunStopped { hour: String, run_id: String, since: String, until: String },
}

/// How the run that hit an error should proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Retry through the scheduler; nobody needs to act.
    Transient,
    /// The destination is not accessible; retry, then tell the admins.
    Accessibility,
    /// The request or configuration is wrong; retrying cannot help.
    Invalid,
    /// Anything else: retried a bounded number of times, then reported.
    Other,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Accessibility => "accessibility",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Other => "other",
        })
    }
}

impl ExportError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ExportError::PermissionDenied { .. }
            | ExportError::BadCredentials { .. }
            | ExportError::DestinationMissing { .. }
            | ExportError::AccessBlocked { .. } => ErrorClass::Accessibility,
            ExportError::Transient { .. } => ErrorClass::Transient,
            ExportError::InvalidConfig { .. } | ExportError::InvalidInput { .. } | ExportError::Conflict { .. } | ExportError::HourBusy { .. } => {
                ErrorClass::Invalid
            }
            ExportError::NotFound { .. }
            | ExportError::Corrupt { .. }
            | ExportError::Io { .. }
            | ExportError::Internal(_)
            | ExportError::OurInfrastructure { .. }
            | ExportError::RunStopped { .. } => ErrorClass::Other,
        }
    }

    /// Whether running the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self.class(), ErrorClass::Invalid)
    }

    /// Whether the destination refused us (the failures that end in an email).
    pub fn is_accessibility(&self) -> bool {
        self.class() == ErrorClass::Accessibility
    }

    /// Stable machine-readable name, used as the Lambda error type.
    pub fn kind(&self) -> &'static str {
        match self {
            ExportError::NotFound { .. } => "NotFound",
            ExportError::PermissionDenied { .. } => "PermissionDenied",
            ExportError::BadCredentials { .. } => "BadCredentials",
            ExportError::DestinationMissing { .. } => "DestinationMissing",
            ExportError::AccessBlocked { .. } => "AccessBlocked",
            ExportError::Transient { .. } => "Transient",
            ExportError::InvalidConfig { .. } => "InvalidConfig",
            ExportError::InvalidInput { .. } => "InvalidInput",
            ExportError::Conflict { .. } => "Conflict",
            ExportError::HourBusy { .. } => "HourBusy",
            ExportError::Corrupt { .. } => "Corrupt",
            ExportError::Io { .. } => "Io",
            ExportError::Internal(_) => "Internal",
            ExportError::OurInfrastructure { .. } => "OurInfrastructure",
            ExportError::RunStopped { .. } => "RunStopped",
        }
    }

    /// The missing permission, for accessibility errors that name one.
    pub fn missing_permission(&self) -> Option<&str> {
        match self {
            ExportError::PermissionDenied { permission, .. } => Some(permission),
            _ => None,
        }
    }

    /// An equal error (the type is not `Clone` because `Io` holds an `io::Error`): used where
    /// one failure must be reported to several callers, e.g. through an io::Error wrapper.
    pub fn duplicate(&self) -> ExportError {
        use ExportError::*;
        match self {
            NotFound { what } => NotFound { what: what.clone() },
            PermissionDenied { operation, resource, permission, principal, detail } => PermissionDenied {
                operation: operation.clone(),
                resource: resource.clone(),
                permission: permission.clone(),
                principal: principal.clone(),
                detail: detail.clone(),
            },
            BadCredentials { service, detail, hint } => BadCredentials { service: service.clone(), detail: detail.clone(), hint: hint.clone() },
            DestinationMissing { resource, hint } => DestinationMissing { resource: resource.clone(), hint: hint.clone() },
            AccessBlocked { resource, detail } => AccessBlocked { resource: resource.clone(), detail: detail.clone() },
            Transient { operation, detail } => Transient { operation: operation.clone(), detail: detail.clone() },
            InvalidConfig { field, problem, fix } => InvalidConfig { field: field.clone(), problem: problem.clone(), fix: fix.clone() },
            InvalidInput { what, problem } => InvalidInput { what: what.clone(), problem: problem.clone() },
            Conflict { what } => Conflict { what: what.clone() },
            HourBusy { hour, run_id, since, until } => HourBusy { hour: hour.clone(), run_id: run_id.clone(), since: since.clone(), until: until.clone() },
            Corrupt { what, detail } => Corrupt { what: what.clone(), detail: detail.clone() },
            Io { path, source } => Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) },
            Internal(m) => Internal(m.clone()),
            OurInfrastructure { component, detail } => OurInfrastructure { component: component.clone(), detail: detail.clone() },
            RunStopped { hour, run_id, since, until } => RunStopped { hour: hour.clone(), run_id: run_id.clone(), since: since.clone(), until: until.clone() },
        }
    }

    /// Whose side failed: "internal" (our lake or control store), "configuration" (the
    /// request or connection), or "destination".
    pub fn blame(&self) -> &'static str {
        match self {
            ExportError::OurInfrastructure { .. } | ExportError::Internal(_) | ExportError::Corrupt { .. } | ExportError::RunStopped { .. } => "internal",
            e if e.class() == ErrorClass::Invalid => "configuration",
            _ => "destination",
        }
    }

    /// The same failure, re-labelled as one of our own components': a refused or missing
    /// lake object must never read as the customer's missing permission.
    pub fn ours(self, component: &str) -> ExportError {
        match self {
            e @ ExportError::OurInfrastructure { .. } => e,
            e => ExportError::OurInfrastructure { component: component.to_string(), detail: e.to_string() },
        }
    }

    pub fn invalid_input(what: impl Into<String>, problem: impl Into<String>) -> Self {
        ExportError::InvalidInput { what: what.into(), problem: problem.into() }
    }

    pub fn invalid_config(field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ExportError::InvalidConfig { field: field.into(), problem: problem.into(), fix: fix.into() }
    }

    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        ExportError::Io { path: path.into(), source }
    }

    pub fn transient(operation: impl Into<String>, detail: impl Into<String>) -> Self {
        ExportError::Transient { operation: operation.into(), detail: detail.into() }
    }
}
