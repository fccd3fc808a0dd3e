//! `exportctl network [ID-or-FILE]`: the stack's fixed egress addresses (`EXPORT_EGRESS_IPS`,
//! the `EgressIpAddresses` output of a stack deployed with `FixedEgressAddresses`) and, per
//! destination kind (or for the one connection named), what the customer runs to allow them.

use std::net::IpAddr;
use std::process::ExitCode;

use exporter::adapters::egress::{self, EGRESS_IPS_ENV, S3_ENDPOINT_ENV};
use exporter::control::connection::Connection;
use exporter::model::destination::Destination;
use exporter::{ExportError, Result};

/// `connection`: the one whose destinations are shown; `None`, every destination kind.
pub fn network(connection: Option<&Connection>) -> Result<ExitCode> {
    let addresses = egress::parse(&std::env::var(EGRESS_IPS_ENV).unwrap_or_default())
        .map_err(|e| ExportError::invalid_config(EGRESS_IPS_ENV, e, "Set it to the stack's EgressIpAddresses output."))?;
    if addresses.is_empty() {
        return Err(ExportError::invalid_config(
            EGRESS_IPS_ENV,
            "is not set: this stack has no fixed egress addresses (its functions send from arbitrary AWS addresses)",
            "Deploy the stack with FixedEgressAddresses=two-nat (or one-nat), then set EXPORT_EGRESS_IPS (and EXPORT_S3_VPC_ENDPOINT_ID) from its \
             EgressIpAddresses (and S3GatewayEndpointId) outputs.",
        ));
    }
    let endpoint = std::env::var(S3_ENDPOINT_ENV).ok().filter(|v| !v.is_empty());
    let destinations: Vec<&Destination> =
        connection.map(|c| std::iter::once(&c.destination).chain(c.merged_ids_destination.iter()).collect()).unwrap_or_default();
    println!("Egress addresses: {}", egress::listed(&addresses));
    println!("Every request the export functions send to a customer's store or webhook comes from these addresses,");
    println!("except requests to S3 buckets in the stack's own region, which go through its S3 gateway endpoint.\n");
    if destinations.is_empty() {
        print!("{}", azure("ACCOUNT", &addresses));
        print!("{}", s3("BUCKET", "PREFIX", &addresses, endpoint.as_deref()));
        print!("{}", compatible(&addresses));
    }
    for dest in destinations {
        match dest {
            Destination::Azure { account_url, .. } => {
                let account = egress::azure_account(account_url).unwrap_or_else(|| "ACCOUNT".into());
                print!("{}", azure(&account, &addresses));
            }
            Destination::S3 { endpoint_url: Some(_), .. } => print!("{}", compatible(&addresses)),
            Destination::S3 { bucket, prefix, .. } => print!("{}", s3(bucket, prefix, &addresses, endpoint.as_deref())),
            Destination::Local { .. } => println!("# {}\nA local folder: no network rule applies.\n", dest.describe()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn azure(account: &str, addresses: &[IpAddr]) -> String {
    let mut out = String::from("# Azure Blob Storage: admit the addresses through the storage account's firewall (Networking)\n");
    for command in egress::azure_network_rules(account, addresses) {
        out.push_str(&command);
        out.push('\n');
    }
    out.push('\n');
    out
}

fn s3(bucket: &str, prefix: &str, addresses: &[IpAddr], endpoint: Option<&str>) -> String {
    let cidrs: Vec<String> = addresses.iter().map(|ip| if ip.is_ipv4() { format!("{ip}/32") } else { format!("{ip}/128") }).collect();
    let resource = if prefix.is_empty() { format!("arn:aws:s3:::{bucket}/*") } else { format!("arn:aws:s3:::{bucket}/{}/*", prefix.trim_end_matches('/')) };
    let by_address = serde_json::json!({"IpAddress": {"aws:SourceIp": cidrs}});
    let by_endpoint = serde_json::json!({"StringEquals": {"aws:SourceVpce": endpoint.unwrap_or("VPC_ENDPOINT_ID")}});
    format!(
        "# Amazon S3 (optional): keep the exporter's Allow statements of `exportctl policy` for {resource},\n\
         # and add to each this condition, so its role is accepted only from these addresses:\n\
         \"Condition\": {}\n\
         # A bucket in the stack's own region is reached through the stack's S3 gateway endpoint:\n\
         # such requests carry no public source address (aws:SourceIp is absent), so the condition\n\
         # above would refuse them. For such a bucket, use this condition instead:\n\
         \"Condition\": {}\n\n",
        by_address, by_endpoint
    )
}

fn compatible(addresses: &[IpAddr]) -> String {
    format!(
        "# S3-compatible stores (R2, MinIO, GCS, B2, Ceph): allow {} in the store's own IP access\n\
         # rules (MinIO and Ceph: an aws:SourceIp condition in the bucket policy, as for Amazon S3).\n\n",
        egress::listed(addresses)
    )
}
