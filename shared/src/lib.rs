//! Hourly event export: everything the Lambda functions and `exportctl` share.
//!
//! The library is in layers. Each imports only the layers before it in this list, so each
//! can be read, tested and benchmarked with what lies below it alone:
//!
//! 1. [`hour`], [`error`]: UTC hours and ranges; the one error enum every layer returns.
//! 2. [`model`]: the values every layer and every adapter shares, and the ports carry
//!    (an hour's request and mode, destinations, secrets, the Hour Exported event, probe
//!    reports, emails, the clock).
//! 3. [`ports`]: the traits the domain needs from the outside world, naming only the model.
//! 4. [`export`]: one hour of the lake to destination files, from an
//!    [`export::spec::ExportSpec`]; it knows no connection.
//! 5. [`control`]: connections (which produce that spec), the hour ledger, the run of one
//!    hour under its lease, and [`control::run_api`], the traits delivery drives it by; it
//!    knows nothing of retries, emails or function events.
//! 6. [`readers`]: how readers see an export (the tables' DDL per engine).
//! 7. [`access`]: the access probes' round trip and the policy statements that fix them.
//! 8. [`delivery`]: function events, retries, failure emails, backfill fan-out.
//! 9. [`runtime`]: wiring for the Lambda functions and embedded mode.
//!
//! [`adapters`] sit beside the layers: AWS, Azure and local implementations of the ports,
//! built on the model (and the access probe's round trip), never on export, control or
//! delivery logic; only `runtime` names them. The lint step of the test suite
//! (`tests/scripts/check-boundaries.sh`) checks every import against this order.

pub mod access;
pub mod adapters;
pub mod control;
pub mod delivery;
pub mod error;
pub mod export;
pub mod hour;
pub mod model;
pub mod ports;
pub mod readers;
pub mod runtime;

pub use error::{ErrorClass, ExportError, Result};
pub use hour::{HourRange, UtcHour};
