//! Adapters: the only modules that know a concrete storage, mailer, scheduler or cipher.
//! One folder per provider; the machinery every provider shares (HTTP error plumbing,
//! buffered multipart upload) is written once beside them, and so are webhooks (HTTPS
//! POSTs to connections' receivers, whatever the provider).

pub mod aws;
pub mod azure;
pub mod egress;
pub mod http_errors;
pub mod internal_hosts;
pub mod local;
pub mod outbound_dns;
pub mod upload;
pub mod webhook;
