//! Embedded mode and tests: local folders as stores, an in-memory store, a folder of
//! pending schedules, a key-file cipher, an outbox folder for email and an events folder
//! for "Hour Exported" events.

pub mod cipher;
pub mod events;
pub mod memory;
pub mod outbox;
pub mod scheduler;
pub mod store;
