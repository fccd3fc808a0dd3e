//! The file format of event parts: gzipped JSON lines (Amplitude's, the default) or
//! Parquet with the typed columns of [`crate::export::columns`].

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PartFormat {
    /// `A_D_H#n.json.gz`: one JSON object per line, gzip.
    #[default]
    Json,
    /// `A_D_H#n.parquet`: zstd-compressed Parquet, one fixed schema for every hour.
    Parquet,
}

impl PartFormat {
    /// The file name ending of a part, after `#n`.
    pub fn extension(self) -> &'static str {
        match self {
            PartFormat::Json => ".json.gz",
            PartFormat::Parquet => ".parquet",
        }
    }
}

impl std::fmt::Display for PartFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartFormat::Json => "json",
            PartFormat::Parquet => "parquet",
        })
    }
}

/// What a connection's Parquet parts form besides files: nothing more (the default), or a
/// Delta Lake table whose log says which parts are the data, committed once per hour export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// Parts and `_complete` manifests only: readers follow the manifests.
    #[default]
    Files,
    /// The events folder (and the merged IDs' folder) is also a Delta table, partitioned by
    /// `dt` and `hour`.
    Delta,
}

impl std::fmt::Display for TableFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TableFormat::Files => "files",
            TableFormat::Delta => "delta",
        })
    }
}
