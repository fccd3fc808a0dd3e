//! Delta Lake tables over the Parquet parts (`"table": "delta"`): the events folder `P/A` is
//! a Delta table partitioned by `dt` (`yyyy-MM-dd`) and `hour` (0-23), whose log
//! (`P/A/_delta_log/`) we write ourselves over the [`crate::ports::ObjectStore`] port, so
//! it works on every destination (S3, S3-compatible stores, Azure Blob, local folders).
//!
//! - [`actions`]: the protocol's actions (protocol, metaData, add, remove, txn, commitInfo),
//!   the schema from the one column table, URI-encoded paths (`#` → `%23`).
//! - [`log`]: reading the log into a snapshot.
//! - [`commit`]: one idempotent commit per hour export, after the parts are durable.
//! - [`checkpoint`]: the snapshot as Parquet every ten commits, and `_last_checkpoint`.
//! - [`vacuum`]: at each checkpoint, removed files past their retention are deleted, and
//!   log entries past the log retention.
//!
//! Why not the `deltalake` crate: with no features it adds 258 crates to the build (127 we
//! do not already build, a second arrow/parquet at major 59 beside our 60), for what is here
//! a few hundred lines of JSON over a port the exporter already has.

pub mod actions;
pub mod checkpoint;
pub mod commit;
pub mod log;
pub mod vacuum;

pub use commit::{CommitOutcome, HourCommit, TableUpkeep};
pub use log::{DeltaTable, TableState};
