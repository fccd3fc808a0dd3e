//! Fault timelines: operator_plane.

#[allow(unused_imports)]
use crate::world::*;
