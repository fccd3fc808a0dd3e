//! Fault timelines: key_space.

#[allow(unused_imports)]
use crate::world::*;
