//! Azure Blob Storage destinations: the store (`store`), its access probe (`probe`) and
//! error classification (`errors`).

pub mod errors;
pub mod probe;
pub mod store;
