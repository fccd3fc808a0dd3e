//! Whether we may write to a destination, and what to grant when we may not: the probe
//! report every provider fills in, and the policy statements that fix a missing permission.

pub mod policy;
pub mod probe;
