//! The one rule for hosts inside the exporter's own network, which a customer's URL (a
//! webhook, an S3-compatible endpoint) must not name: the function would call them with
//! its own network position (the instance metadata address, VPC services, localhost).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// True for `localhost`, `*.localhost`, `*.internal` (cloud-internal DNS such as
/// `metadata.google.internal`), and addresses [`is_internal_ip`] refuses; also for a URL
/// with no host. Names are judged as written: one that resolves to a private address is
/// caught when it is resolved, by [`crate::adapters::outbound_dns`].
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

/// True for every address the exporter must not connect to on a customer's behalf:
///
/// * IPv4: "this network" 0/8 (0.0.0.0 included), loopback 127/8, private 10/8,
///   172.16/12 and 192.168/16, carrier-grade NAT 100.64/10, link-local 169.254/16 (the
///   cloud metadata service 169.254.169.254 included), IETF protocol assignments
///   192.0.0/24, the documentation ranges 192.0.2/24, 198.51.100/24 and 203.0.113/24,
///   benchmarking 198.18/15, the 6to4 relay anycast 192.88.99/24, multicast 224/4,
///   reserved 240/4 and broadcast 255.255.255.255.
/// * IPv6: anything outside global unicast 2000::/3 (so `::`, `::1`, unique-local fc00::/7
///   with the AWS metadata address fd00:ec2::254, link-local fe80::/10, site-local
///   fec0::/10, multicast ff00::/8), and inside it Teredo 2001::/32, documentation
///   2001:db8::/32 and 3fff::/20, and local-use NAT64 64:ff9b:1::/48; forms that embed an
///   IPv4 address are judged by that address: IPv4-mapped `::ffff:a.b.c.d`,
///   IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::/48`.
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT: as internal as 10/8 for us
        || (a == 169 && b == 254) // link-local, the metadata service
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| internal_v4(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8));
    match s {
        // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d (:: and ::1 included:
        // 0.0.0.0 and 0.0.0.1 are "this network").
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => embedded(hi, lo),
        // NAT64 well-known prefix: the gateway connects to the embedded address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded(hi, lo),
        // Local-use NAT64 (RFC 8215): translated inside someone's own network.
        [0x64, 0xff9b, 1, ..] => true,
        // 6to4: the tunnel ends at the embedded address.
        [0x2002, hi, lo, ..] => embedded(hi, lo),
        // Teredo: a tunnel through an IPv4 server and client we cannot judge.
        [0x2001, 0, ..] => true,
        // Documentation.
        [0x2001, 0xdb8, ..] => true,
        [0x3fff, second, ..] if second < 0x1000 => true,
        // Global unicast is 2000::/3; nothing else is a public host.
        [first, ..] => first & 0xe000 != 0x2000,
    }
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
            "https://[64:ff9b::a9fe:a9fe]/x",
            "https://[fd00:ec2::254]/x",
        ] {
            assert!(is_internal_host(&Url::parse(inside).unwrap()), "{inside}");
        }
        for outside in ["https://hooks.slack.com/services/x", "https://1.1.1.1/x", "https://[2606:4700::1111]/x", "https://abc.r2.cloudflarestorage.com"] {
            assert!(!is_internal_host(&Url::parse(outside).unwrap()), "{outside}");
        }
    }

    /// Every form of the rule, each with the reason it is refused (or admitted).
    #[test]
    fn every_address_form_of_the_rule() {
        let refused = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network 0/8"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback /8"),
            ("10.0.0.5", "private 10/8"),
            ("172.16.0.1", "private 172.16/12, first"),
            ("172.31.255.254", "private 172.16/12, last"),
            ("192.168.1.1", "private 192.168/16"),
            ("100.64.0.1", "CGNAT 100.64/10, first"),
            ("100.127.255.254", "CGNAT 100.64/10, last"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.2.1", "TEST-NET-1"),
            ("198.51.100.7", "TEST-NET-2"),
            ("203.0.113.10", "TEST-NET-3"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.1", "benchmarking, last /16"),
            ("192.88.99.1", "6to4 relay anycast"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast SSDP"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "IPv6 unspecified"),
            ("::1", "IPv6 loopback"),
            ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
            ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
            ("::ffff:10.0.0.5", "IPv4-mapped private"),
            ("::10.0.0.5", "IPv4-compatible private"),
            ("::169.254.169.254", "IPv4-compatible metadata"),
            ("64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"),
            ("64:ff9b::7f00:1", "NAT64 of 127.0.0.1"),
            ("64:ff9b::a00:5", "NAT64 of 10.0.0.5"),
            ("64:ff9b:1::8.8.8.8", "local-use NAT64"),
            ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254"),
            ("2002:7f00:1::1", "6to4 of 127.0.0.1"),
            ("2002:c0a8:101::1", "6to4 of 192.168.1.1"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001::5ef5:79fd:0:0:f5ff:fffa", "Teredo around 10.0.0.5"),
            ("fc00::1", "unique-local fc00::/8"),
            ("fd00::1", "unique-local fd00::/8"),
            ("fd00:ec2::254", "AWS IPv6 metadata"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local, last"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "global multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation 3fff::/20"),
            ("100::1", "discard-only, outside 2000::/3"),
            ("4000::1", "outside 2000::/3"),
        ];
        for (ip, why) in refused {
            assert!(is_internal_ip(ip.parse().unwrap()), "{ip} ({why}) must be refused");
        }
        let admitted = [
            ("93.184.216.34", "public"),
            ("1.1.1.1", "public"),
            ("8.8.8.8", "public"),
            ("100.63.255.255", "just below CGNAT"),
            ("100.128.0.1", "just above CGNAT"),
            ("172.15.255.255", "just below 172.16/12"),
            ("172.32.0.1", "just above 172.16/12"),
            ("169.253.255.255", "just below link-local"),
            ("192.0.1.1", "between the 192.0 ranges"),
            ("198.20.0.1", "just above benchmarking"),
            ("223.255.255.254", "last unicast"),
            ("2606:4700::1111", "global unicast"),
            ("2a05:d018::1", "global unicast (AWS)"),
            ("::ffff:93.184.216.34", "IPv4-mapped public"),
            ("64:ff9b::5db8:d822", "NAT64 of 93.184.216.34"),
            ("2002:5db8:d822::1", "6to4 of 93.184.216.34"),
            ("3fff:1000::1", "just above 3fff::/20"),
        ];
        for (ip, why) in admitted {
            assert!(!is_internal_ip(ip.parse().unwrap()), "{ip} ({why}) must be admitted");
        }
    }
}
