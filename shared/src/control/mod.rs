//! What we keep about connections and their hours, in the control store: connection files
//! (and the export spec each produces) and their lifecycle, claims and key spaces, the hour
//! ledger (owed hours, leases, completed hours), the run service that exports one hour under
//! a lease and announces it, and the health each connection shows. Delivery, above, drives
//! it through the traits of [`run_api`]; nothing here knows how failures are retried or told.

pub mod claim;
pub mod connection;
pub mod fenced_store;
pub mod freshness;
pub mod health;
pub mod hour_event;
pub mod key_space;
pub mod ledger;
pub mod lifecycle;
pub mod metrics;
pub mod projects;
pub mod run_api;
pub mod runs;
pub mod store;
pub mod watchdog;
