//! Which storage accounts a connection may point us at. A connection's `account_url` is
//! customer input: without a rule, it could make the exporter send its requests (and a
//! service principal's token) to any host, or over plain http. Production accepts only
//! `https://` on an Azure Storage host; emulators need an explicit operator setting.

use url::Url;

use crate::error::{ExportError, Result};

/// Blob endpoint suffixes of the Azure clouds: public, China (21Vianet), US Government.
pub const DEFAULT_HOST_SUFFIXES: [&str; 3] = [".blob.core.windows.net", ".blob.core.chinacloudapi.cn", ".blob.core.usgovcloudapi.net"];
/// Comma-separated list replacing [`DEFAULT_HOST_SUFFIXES`] (e.g. for a sovereign cloud).
pub const HOST_SUFFIXES_ENV: &str = "EXPORT_AZURE_HOST_SUFFIXES";
/// `true`/`1` lets `account_url` be plain http or any host: for emulators such as Azurite.
pub const ALLOW_EMULATOR_ENV: &str = "EXPORT_ALLOW_EMULATOR_ENDPOINTS";

/// The operator's rule for account URLs (not part of a connection, so a connection cannot
/// loosen it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointRules {
    /// Host suffixes accepted; empty means [`DEFAULT_HOST_SUFFIXES`].
    pub host_suffixes: Vec<String>,
    /// Accept http and any host (emulators). Off in production.
    pub allow_emulators: bool,
    /// The operator's setting ([`ALLOW_EMULATOR_ENV`]) was read from this process's
    /// environment: only then does a refusal name it. Where it is not read (embedded mode
    /// without `--cloud`), setting it would change nothing.
    pub setting_read: bool,
}

impl EndpointRules {
    /// Reads [`HOST_SUFFIXES_ENV`] and [`ALLOW_EMULATOR_ENV`].
    pub fn from_env() -> Result<Self> {
        let host_suffixes = match std::env::var(HOST_SUFFIXES_ENV) {
            Ok(list) if !list.trim().is_empty() => list.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect(),
            _ => Vec::new(),
        };
        for suffix in &host_suffixes {
            if !suffix.starts_with('.') || suffix.len() < 4 {
                return Err(ExportError::invalid_config(
                    HOST_SUFFIXES_ENV,
                    format!("{suffix:?} is not a host suffix"),
                    "List suffixes that start with a dot, e.g. .blob.core.windows.net,.blob.core.chinacloudapi.cn.",
                ));
            }
        }
        let allow_emulators = match std::env::var(ALLOW_EMULATOR_ENV).unwrap_or_default().trim() {
            "" | "0" | "false" => false,
            "1" | "true" => true,
            other => {
                return Err(ExportError::invalid_config(
                    ALLOW_EMULATOR_ENV,
                    format!("{other:?} is not true or false"),
                    "Set it to true (emulators only) or leave it unset.",
                ))
            }
        };
        Ok(EndpointRules { host_suffixes, allow_emulators, setting_read: true })
    }

    /// Emulators allowed (tests, local development).
    pub fn emulators() -> Self {
        EndpointRules { host_suffixes: Vec::new(), allow_emulators: true, setting_read: false }
    }

    /// How a refusal of plain http or a local host ends: the operator's setting where this
    /// process reads it, else that nothing else is accepted here.
    pub fn local_endpoints_note(&self) -> String {
        if self.setting_read {
            format!("plain http and local hosts are accepted only for emulators, when the operator sets {ALLOW_EMULATOR_ENV}=true")
        } else {
            "only https:// endpoints on public hosts are accepted here".into()
        }
    }

    /// Refuses an account URL that is not `https://{account}{suffix}` (unless emulators are allowed).
    pub fn check(&self, account: &Url) -> Result<()> {
        if account.username() != "" || account.password().is_some() || account.fragment().is_some() {
            return Err(refused(account, "carries user info or a fragment", "Give just https://{account}.blob.core.windows.net."));
        }
        if self.allow_emulators {
            return Ok(());
        }
        let host = account.host_str().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
        let defaults: Vec<String> = DEFAULT_HOST_SUFFIXES.iter().map(|s| s.to_string()).collect();
        let suffixes = if self.host_suffixes.is_empty() { &defaults } else { &self.host_suffixes };
        let on_azure = suffixes.iter().any(|s| host.len() > s.len() && host.ends_with(s.as_str()) && !host[..host.len() - s.len()].contains('.'));
        if account.scheme() != "https" {
            return Err(refused(account, "is not https", &format!("Use https://{{account}}.blob.core.windows.net; {}.", self.local_endpoints_note())));
        }
        if !on_azure || account.port().is_some() || account.path() != "/" {
            return Err(refused(
                account,
                &format!("is not an Azure Storage account endpoint (https://{{account}} followed by one of {})", suffixes.join(", ")),
                "Use the storage account's blob endpoint, e.g. https://acme.blob.core.windows.net; for a sovereign cloud the operator sets EXPORT_AZURE_HOST_SUFFIXES.",
            ));
        }
        Ok(())
    }
}

fn refused(account: &Url, problem: &str, fix: &str) -> ExportError {
    // Only scheme and host are shown: the URL is customer input and may carry anything.
    let shown = format!("{}://{}", account.scheme(), account.host_str().unwrap_or(""));
    ExportError::invalid_config("destination.account_url", format!("{shown} {problem}"), fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rules: &EndpointRules, url: &str) -> std::result::Result<(), String> {
        rules.check(&Url::parse(url).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn production_accepts_only_https_on_azure_storage_hosts() {
        let rules = EndpointRules::default();
        for ok in [
            "https://acme.blob.core.windows.net",
            "https://acme.blob.core.windows.net/",
            "https://ACME.blob.core.windows.net.",
            "https://acme.blob.core.chinacloudapi.cn",
        ] {
            assert_eq!(check(&rules, ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("http://acme.blob.core.windows.net", "is not https"),
            ("http://127.0.0.1:10000/devstoreaccount1", "is not https"),
            ("https://attacker.example", "not an Azure Storage account endpoint"),
            ("https://blob.core.windows.net", "not an Azure Storage account endpoint"),
            ("https://x.y.blob.core.windows.net", "not an Azure Storage account endpoint"),
            ("https://acme.blob.core.windows.net.attacker.example", "not an Azure Storage account endpoint"),
            ("https://acme.blob.core.windows.net:8443", "not an Azure Storage account endpoint"),
            ("https://acme.blob.core.windows.net/other", "not an Azure Storage account endpoint"),
            ("https://user:pw@acme.blob.core.windows.net", "user info"),
        ] {
            let err = check(&rules, bad).unwrap_err();
            assert!(err.contains(says) && err.contains("destination.account_url"), "{bad}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
        let sovereign = EndpointRules { host_suffixes: vec![".blob.core.example.cloud".into()], allow_emulators: false, setting_read: true };
        assert_eq!(check(&sovereign, "https://acme.blob.core.example.cloud"), Ok(()));
        assert!(check(&sovereign, "https://acme.blob.core.windows.net").is_err(), "the list replaces the defaults");
        assert_eq!(check(&EndpointRules::emulators(), "http://127.0.0.1:10000/devstoreaccount1"), Ok(()));
    }

    #[test]
    fn a_refusal_names_the_emulator_setting_only_where_it_is_read() {
        let unread = check(&EndpointRules::default(), "http://127.0.0.1:10000/devstoreaccount1").unwrap_err();
        assert!(unread.contains("only https:// endpoints on public hosts are accepted here") && !unread.contains(ALLOW_EMULATOR_ENV), "{unread}");
        let read = EndpointRules { setting_read: true, ..EndpointRules::default() };
        let err = check(&read, "http://127.0.0.1:10000/devstoreaccount1").unwrap_err();
        assert!(err.contains(&format!("{ALLOW_EMULATOR_ENV}=true")), "{err}");
    }
}
