//! The one rule for hosts inside the exporter's own network, which a customer's URL (a
//! webhook, an S3-compatible endpoint) must not name: the function would call them with
//! its own network position (the instance metadata address, VPC services, localhost).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// True for `localhost`, `*.localhost`, `*.internal` (cloud-internal DNS such as
/// `metadata.google.internal`), and loopback, private, link-local, unspecified, broadcast
/// and carrier-grade-NAT addresses (IPv4-mapped IPv6 included); also for a URL with no host.
/// Names are judged as written: one that resolves to a private address is not caught here.
pub fn is_internal_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost") || d.ends_with(".internal")
        }
        Some(Host::Ipv4(ip)) => internal_v4(ip),
        Some(Host::Ipv6(ip)) => internal_v6(ip),
        None => true,
    }
}

pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    // 100.64.0.0/10 is carrier-grade NAT space: as internal as 10/8 for the exporter.
    ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast() || (a == 100 && (64..128).contains(&b))
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    ip.is_loopback() || ip.is_unspecified() || ip.is_unique_local() || ip.is_unicast_link_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_inside_our_network_are_recognised() {
        for inside in [
            "https://localhost/x",
            "https://api.localhost/x",
            "https://metadata.google.internal/x",
            "https://127.0.0.1/x",
            "https://10.0.0.5/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:10.0.0.1]/x",
        ] {
            assert!(is_internal_host(&Url::parse(inside).unwrap()), "{inside}");
        }
        for outside in ["https://hooks.slack.com/services/x", "https://1.1.1.1/x", "https://[2606:4700::1111]/x", "https://abc.r2.cloudflarestorage.com"] {
            assert!(!is_internal_host(&Url::parse(outside).unwrap()), "{outside}");
        }
    }
}
