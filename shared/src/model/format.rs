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
