//! Embedded mode and tests: local folders as stores, an in-memory store, a folder of
//! pending schedules, a key-file cipher and an outbox folder for email.

pub mod cipher;
pub mod memory;
pub mod outbox;
pub mod scheduler;
pub mod store;
