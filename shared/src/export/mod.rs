//! Turning one hour of the lake into destination files: read the lake's files for the hour,
//! normalise each line to the export schema, filter, de-duplicate, write numbered gzip parts,
//! then the `_complete` manifest. What to write comes from an [`spec::ExportSpec`] alone (no
//! connection); storage is reached only through [`crate::ports::ObjectStore`].

pub mod columns;
pub mod dedup;
pub mod delta;
pub mod field_policy;
pub mod filter;
pub mod generate;
pub mod hour_export;
pub mod lake;
pub mod layout;
pub mod limits;
pub mod manifest;
pub mod merged_ids;
pub mod merged_ids_parquet;
pub mod parallel;
pub mod parquet_parts;
pub mod part_writer;
pub mod parts;
pub mod schema;
pub mod spec;
pub mod timestamp;
pub mod value_limits;
