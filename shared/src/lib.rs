//! Hourly event export: everything the Lambda functions and `exportctl` share.
//!
//! - [`export`]: one hour of the lake to destination files (schema, parts, manifest).
//! - [`control`]: connections, the hour ledger and the run service.
//! - [`delivery`]: function events, retries, failure emails, backfill fan-out.
//! - [`access`]: access probes and the policy statements that fix them.
//! - [`ports`]: the traits the domain needs from the outside world.
//! - [`adapters`]: AWS, Azure and local implementations of those ports.
//! - [`runtime`]: wiring for the Lambda functions and embedded mode.
//!
//! The domain folders (`export`, `control`, `delivery`, `access`) never import an adapter:
//! the lint step of the test suite checks it.

pub mod access;
pub mod adapters;
pub mod control;
pub mod delivery;
pub mod error;
pub mod export;
pub mod hour;
pub mod ports;
pub mod runtime;

pub use error::{ErrorClass, ExportError, Result};
pub use hour::{HourRange, UtcHour};
