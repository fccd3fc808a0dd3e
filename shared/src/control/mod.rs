//! What we keep about connections and their hours, in the control store: connection files
//! and their lifecycle, sealed secrets, the hour ledger (owed hours, leases, completed
//! hours) and the run service that exports one hour under a lease.

pub mod claim;
pub mod connection;
pub mod fenced_store;
pub mod health;
pub mod key_space;
pub mod ledger;
pub mod lifecycle;
pub mod projects;
pub mod runs;
pub mod secret;
pub mod store;
