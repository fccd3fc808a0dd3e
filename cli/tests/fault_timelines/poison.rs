//! Fault timelines: poison.

#[allow(unused_imports)]
use crate::world::*;
