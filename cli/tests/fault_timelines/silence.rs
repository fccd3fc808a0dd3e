//! Fault timelines: silence.

#[allow(unused_imports)]
use crate::world::*;
