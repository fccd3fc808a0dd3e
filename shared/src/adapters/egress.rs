//! The stack's fixed egress addresses: with `FixedEgressAddresses` every outbound request of
//! the functions leaves through NAT gateways whose Elastic IPs are the `EgressIpAddresses`
//! output, set in the functions' environment as `EXPORT_EGRESS_IPS` (and by an operator for
//! `exportctl network`). A firewall refusal then names what to allow and the command that
//! allows it, instead of "allow the exporter's network".

use std::net::IpAddr;

/// Comma-separated addresses (empty or unset: no fixed addresses).
pub const EGRESS_IPS_ENV: &str = "EXPORT_EGRESS_IPS";
/// The S3 gateway endpoint's id (the `S3GatewayEndpointId` output), for `exportctl network`.
pub const S3_ENDPOINT_ENV: &str = "EXPORT_S3_VPC_ENDPOINT_ID";

/// The addresses of `text` (`52.1.2.3,52.1.2.4`); an entry that is not an address is an error
/// naming it, so a mistyped setting is never silently "no addresses".
pub fn parse(text: &str) -> Result<Vec<IpAddr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| format!("{EGRESS_IPS_ENV}: {s:?} is not an IP address (give the EgressIpAddresses output, e.g. 52.1.2.3,52.1.2.4)"))
        })
        .collect()
}

/// The addresses this process's requests leave from, when the stack has fixed ones. An
/// unparsable setting counts as none here (the diagnosis then says so in general terms);
/// `exportctl network` reports it as an error.
pub fn configured() -> Vec<IpAddr> {
    std::env::var(EGRESS_IPS_ENV).ok().and_then(|v| parse(&v).ok()).unwrap_or_default()
}

/// `a`, `a and b`, `a, b and c`.
pub fn listed(addresses: &[IpAddr]) -> String {
    let all: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    match all.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The storage account named by a container URL (`https://acct.blob.core.windows.net/c`, or
/// an emulator's `http://127.0.0.1:10000/acct/c`).
pub fn azure_account(container_url: &str) -> Option<String> {
    let url = url::Url::parse(container_url).ok()?;
    match url.host()? {
        url::Host::Domain(d) => d.split('.').next().map(str::to_string),
        _ => url.path_segments()?.next().filter(|s| !s.is_empty()).map(str::to_string),
    }
}

/// The `az` commands that admit `addresses` through a storage account's firewall.
pub fn azure_network_rules(account: &str, addresses: &[IpAddr]) -> Vec<String> {
    addresses
        .iter()
        .map(|ip| format!("az storage account network-rule add --resource-group RESOURCE_GROUP --account-name {account} --ip-address {ip}"))
        .collect()
}

/// What fixes an Azure firewall refusal of the account behind `container_url`: the fixed
/// addresses and the command when the stack has them, else how to get them.
pub fn azure_firewall_fix(container_url: &str, addresses: &[IpAddr]) -> String {
    if addresses.is_empty() {
        return "Allow the exporter's network (a stack deployed with FixedEgressAddresses sends from fixed addresses: `exportctl network` \
                lists them and the command that allows them) or issue a SAS that covers it."
            .into();
    }
    let account = azure_account(container_url).unwrap_or_else(|| "STORAGE_ACCOUNT".into());
    format!(
        "Allow the exporter's addresses {} on the storage account's firewall: {} (or issue a SAS that covers them).",
        listed(addresses),
        azure_network_rules(&account, addresses).join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(text: &str) -> Vec<IpAddr> {
        parse(text).unwrap()
    }

    #[test]
    fn addresses_are_parsed_and_a_bad_one_is_named() {
        assert_eq!(ips(" 52.1.2.3, 52.1.2.4 ,"), vec!["52.1.2.3".parse::<IpAddr>().unwrap(), "52.1.2.4".parse().unwrap()]);
        assert!(ips("").is_empty());
        let e = parse("52.1.2.3,eip-1234").unwrap_err();
        assert!(e.contains("\"eip-1234\"") && e.contains(EGRESS_IPS_ENV), "{e}");
        assert_eq!(listed(&ips("1.1.1.1,2.2.2.2,3.3.3.3")), "1.1.1.1, 2.2.2.2 and 3.3.3.3");
    }

    #[test]
    fn an_azure_refusal_names_the_addresses_and_the_command() {
        let url = "https://acmeexports.blob.core.windows.net/events";
        let fix = azure_firewall_fix(url, &ips("52.1.2.3,52.1.2.4"));
        assert!(fix.contains("52.1.2.3 and 52.1.2.4"), "{fix}");
        assert!(fix.contains("az storage account network-rule add --resource-group RESOURCE_GROUP --account-name acmeexports --ip-address 52.1.2.4"), "{fix}");
        let without = azure_firewall_fix(url, &[]);
        assert!(without.contains("exportctl network") && !without.contains("az storage"), "{without}");
        assert_eq!(azure_account("http://127.0.0.1:10000/devstoreaccount1/c").as_deref(), Some("devstoreaccount1"));
    }
}
