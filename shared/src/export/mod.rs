//! Turning one hour of the lake into destination files: read the lake's files for the hour,
//! normalise each line to the export schema, filter, de-duplicate, write numbered gzip parts,
//! then the `_complete` manifest. Everything here is pure domain: it reaches storage only
//! through [`crate::ports::ObjectStore`].

pub mod columns;
pub mod ddl;
pub mod dedup;
pub mod filter;
pub mod format;
pub mod generate;
pub mod hour_export;
pub mod lake;
pub mod layout;
pub mod limits;
pub mod manifest;
pub mod merged_ids;
pub mod parquet_parts;
pub mod part_writer;
pub mod parts;
pub mod schema;
pub mod timestamp;
pub mod value_limits;
