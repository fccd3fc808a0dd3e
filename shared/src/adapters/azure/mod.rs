//! Azure Blob Storage destinations: the store (`store`), its access probe (`probe`), error
//! classification (`errors`) and which account URLs are accepted (`endpoint`).

pub mod endpoint;
pub mod errors;
pub mod probe;
pub mod store;
