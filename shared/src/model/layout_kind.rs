//! How a connection arranges its export files under the prefix (see `crate::export::layout`).

use serde::{Deserialize, Serialize};

/// How export files are arranged under the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    /// Amplitude's flat folders (`P/A/A_D_H#n.json.gz`): the default, byte for byte.
    #[default]
    Amplitude,
    /// Hive-style partitions (`P/A/dt=yyyy-MM-dd/hour=HH/A_D_H#n...`) engines prune by.
    Hive,
}
