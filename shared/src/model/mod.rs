//! The values every layer and every adapter share, and that the ports carry: what an hour
//! run is asked to do, where an export goes and with which secrets, the kinds of file a
//! connection writes, the "Hour Exported" event, a probe's report, an email, the clock.
//! Plain data with its own rules; nothing here reaches storage or imports a layer above.

pub mod accounting;
pub mod clock;
pub mod destination;
pub mod email;
pub mod fields;
pub mod format;
pub mod hour_event;
pub mod hour_request;
pub mod layout_kind;
pub mod metrics;
pub mod probe_report;
pub mod schedule;
pub mod secret;
