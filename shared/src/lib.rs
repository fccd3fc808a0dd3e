//! Hourly event export: everything the Lambda functions and `exportctl` share.
//!
//! Domain modules (hours, schema, filters, partitioning, export rules, diagnosis) depend
//! only on the small ports in [`storage`] and friends; `adapters` plug S3, Azure Blob,
//! local folders, SES and EventBridge Scheduler into them.

pub mod adapters;
pub mod error;
pub mod hour;
pub mod layout;
pub mod storage;

pub use error::{ErrorClass, ExportError, Result};
pub use hour::{HourRange, UtcHour};
pub mod backfill;
pub mod cipher;
pub mod connection;
pub mod control;
pub mod dedup;
pub mod export;
pub mod failure;
pub mod filter;
pub mod generate;
pub mod invocation;
pub mod lake;
pub mod ledger;
pub mod lifecycle;
pub mod manifest;
pub mod merged_ids;
pub mod notify;
pub mod parts;
pub mod policy;
pub mod probe;
pub mod retry;
pub mod runs;
pub mod schedule;
pub mod schema;
pub mod secret;
pub mod timestamp;
