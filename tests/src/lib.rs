//! Shared helpers for the integration tests: emulator endpoints (failing loudly when an
//! emulator is missing) and the conformance suite every destination must pass.

pub mod azurite;
pub mod captured_logs;
pub mod conformance;
pub mod emulators;
pub mod moto;
pub mod parquet_values;
pub mod relay;
