//! Shared helpers for the integration tests: emulator endpoints (failing loudly when an
//! emulator is missing) and the conformance suite every destination must pass.

pub mod azurite;
pub mod conformance;
pub mod emulators;
pub mod moto;
pub mod relay;
