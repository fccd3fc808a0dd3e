//! Fault timelines: backfills.

#[allow(unused_imports)]
use crate::world::*;
