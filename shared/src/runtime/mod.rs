//! Wiring: builds the adapters once and hands them to the domain. The Lambda functions
//! read their settings from the environment (`function_env`); `exportctl` runs the same
//! services on local folders (`embedded`); `factory` opens a connection's destination.

#[cfg(test)]
mod admission_tests;
pub mod embedded;
pub mod factory;
pub mod function_env;
