//! Name resolution for connections to customers' hosts (webhooks, failure webhooks,
//! S3-compatible endpoints) that cannot be turned inward.
//!
//! A host name is judged by what it resolves to, not by its spelling: every address of
//! the answer is checked against [`is_internal_ip`], and the HTTP client connects only to
//! the addresses that passed, from this one lookup (no second lookup that could answer
//! differently: DNS rebinding). [`GuardedResolver`] is that resolver; it is installed in
//! the clients themselves (reqwest's `dns_resolver`, the AWS SDK's HTTP client), so no
//! request can bypass it, and the same check runs at connection create, where a bad name
//! is refused before anything is stored. Neither ever connects to judge a host, so no
//! error can tell whether something listens on an internal port.
//!
//! Host names given as IP literals never reach a resolver: they are judged by
//! [`crate::adapters::internal_hosts::is_internal_host`] before any request, with the same
//! address rule. With the operator's emulator setting (`EXPORT_ALLOW_EMULATOR_ENDPOINTS`)
//! nothing is refused (local emulators and receivers live on the loopback).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::adapters::internal_hosts::is_internal_ip;

/// Answers a host name with its addresses (the system resolver in production; a table
/// in tests, so they need no real DNS).
pub trait Lookup: Send + Sync + fmt::Debug {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (`getaddrinfo`, through `tokio::net::lookup_host`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// A table of answers, for tests: each lookup of a name takes its next answer, and the
/// last answer repeats (so a name can answer differently at admission and at send).
/// Unknown names do not resolve.
#[derive(Debug, Default)]
pub struct StaticLookup {
    answers: Mutex<HashMap<String, VecDeque<Vec<IpAddr>>>>,
    lookups: AtomicUsize,
}

impl StaticLookup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next answer for `host`.
    pub fn answer(self, host: &str, addrs: &[IpAddr]) -> Self {
        self.answers.lock().expect("lookup table").entry(host.to_ascii_lowercase()).or_default().push_back(addrs.to_vec());
        self
    }

    /// How many lookups were made.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl Lookup for StaticLookup {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let mut table = self.answers.lock().expect("lookup table");
        let answer = match table.get_mut(&host.trim_end_matches('.').to_ascii_lowercase()) {
            Some(queue) if queue.len() > 1 => queue.pop_front(),
            Some(queue) => queue.front().cloned(),
            None => None,
        };
        let result = answer.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "failed to lookup address information: no such host"));
        Box::pin(futures::future::ready(result))
    }
}

/// Why a host name was not resolved to an address the exporter may connect to. Never
/// names the host or its addresses (a failure webhook's URL is a credential).
#[derive(Debug)]
pub enum GuardError {
    /// Every address of the answer is inside a private network.
    Internal,
    /// The lookup itself failed.
    Lookup(std::io::Error),
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::Internal => f.write_str(INTERNAL_REFUSAL),
            GuardError::Lookup(e) => write!(f, "the host name could not be resolved ({e})"),
        }
    }
}

impl std::error::Error for GuardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GuardError::Internal => None,
            GuardError::Lookup(e) => Some(e),
        }
    }
}

/// What every refusal says (at create and at send).
pub const INTERNAL_REFUSAL: &str = "the host resolves to an address inside a private network and is refused";

/// Resolves host names to the addresses that pass [`is_internal_ip`], or refuses.
#[derive(Clone)]
pub struct GuardedResolver {
    lookup: Arc<dyn Lookup>,
    allow_internal: bool,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver").field("lookup", &self.lookup).field("allow_internal", &self.allow_internal).finish()
    }
}

impl GuardedResolver {
    /// `allow_internal`: the operator's emulator setting (every address passes).
    pub fn new(lookup: Arc<dyn Lookup>, allow_internal: bool) -> Self {
        GuardedResolver { lookup, allow_internal }
    }

    /// The system resolver.
    pub fn system(allow_internal: bool) -> Self {
        Self::new(Arc::new(SystemLookup), allow_internal)
    }

    /// One lookup of `host`; the addresses that passed, or why none did.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, GuardError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let answer = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.lookup.lookup(host).await.map_err(GuardError::Lookup)?,
        };
        if answer.is_empty() {
            return Err(GuardError::Lookup(std::io::Error::new(std::io::ErrorKind::NotFound, "the answer has no address")));
        }
        if self.allow_internal {
            return Ok(answer);
        }
        let passed: Vec<IpAddr> = answer.into_iter().filter(|ip| !is_internal_ip(*ip)).collect();
        if passed.is_empty() {
            tracing::warn!("refused a customer host that resolves only to addresses inside a private network");
            return Err(GuardError::Internal);
        }
        Ok(passed)
    }
}

/// reqwest's hook: the connector connects to these addresses only (the URL's port is put
/// on them by reqwest).
impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.resolve(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0))) as reqwest::dns::Addrs)
        })
    }
}

/// The AWS SDK's hook (`aws_smithy_http_client::Builder::build_with_resolver`).
impl aws_smithy_runtime_api::client::dns::ResolveDns for GuardedResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::new(async move {
            self.resolve(name).await.map_err(aws_smithy_runtime_api::client::dns::ResolveDnsError::new)
        })
    }
}

/// True when `err` or one of its sources is the refusal of an internal address (how a
/// client's send error is recognised as this refusal, not a network failure).
pub fn is_internal_refusal(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::adapters::http_errors::find_in_chain::<GuardError>(err).is_some_and(|e| matches!(e, GuardError::Internal))
}

/// What the send-path tests of every guarded client share: a listener that must see no
/// connection, and addresses by their spelling.
#[cfg(test)]
pub(crate) mod test_support {
    /// A TCP listener on the loopback that accepts nothing by itself: a connection made to
    /// it waits in its backlog, where [`accepted_none`] finds it.
    pub fn listener() -> (std::net::TcpListener, u16) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    pub fn accepted_none(listener: &std::net::TcpListener) -> bool {
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    pub fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn only_addresses_that_pass_are_returned() {
        let lookup = Arc::new(
            StaticLookup::new()
                .answer("mixed.example.com", &ips(&["10.0.0.5", "93.184.216.34", "::ffff:127.0.0.1", "2606:4700::1111"]))
                .answer("inside.example.com", &ips(&["127.0.0.1", "169.254.169.254", "64:ff9b::a9fe:a9fe"]))
                .answer("empty.example.com", &[]),
        );
        let strict = GuardedResolver::new(lookup.clone(), false);
        assert_eq!(strict.resolve("mixed.example.com").await.unwrap(), ips(&["93.184.216.34", "2606:4700::1111"]));
        let err = strict.resolve("inside.example.com").await.unwrap_err();
        assert!(matches!(err, GuardError::Internal) && err.to_string() == INTERNAL_REFUSAL, "{err}");
        assert!(!err.to_string().contains("127.0.0.1"), "never the address: {err}");
        assert!(matches!(strict.resolve("empty.example.com").await, Err(GuardError::Lookup(_))));
        assert!(matches!(strict.resolve("unknown.example.com").await, Err(GuardError::Lookup(_))));
        // IP literals are judged without a lookup.
        let before = lookup.lookups();
        assert!(matches!(strict.resolve("127.0.0.1").await, Err(GuardError::Internal)));
        assert!(matches!(strict.resolve("[::1]").await, Err(GuardError::Internal)));
        assert_eq!(strict.resolve("1.1.1.1").await.unwrap(), ips(&["1.1.1.1"]));
        assert_eq!(lookup.lookups(), before);
        // The emulator setting admits the loopback.
        let emulators = GuardedResolver::new(lookup, true);
        assert_eq!(emulators.resolve("inside.example.com").await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn answers_change_in_order_and_the_last_repeats() {
        let lookup = StaticLookup::new().answer("rebind.example.com", &ips(&["93.184.216.34"])).answer("rebind.example.com", &ips(&["127.0.0.1"]));
        assert_eq!(lookup.lookup("rebind.example.com").await.unwrap(), ips(&["93.184.216.34"]));
        assert_eq!(lookup.lookup("REBIND.example.com.").await.unwrap(), ips(&["127.0.0.1"]));
        assert_eq!(lookup.lookup("rebind.example.com").await.unwrap(), ips(&["127.0.0.1"]));
        assert_eq!(lookup.lookups(), 3);
    }

    #[tokio::test]
    async fn the_system_resolver_answers_localhost() {
        let addrs = SystemLookup.lookup("localhost").await.unwrap();
        assert!(addrs.iter().all(|ip| ip.is_loopback()) && !addrs.is_empty(), "{addrs:?}");
        assert!(matches!(GuardedResolver::system(false).resolve("localhost").await, Err(GuardError::Internal)));
    }
}
