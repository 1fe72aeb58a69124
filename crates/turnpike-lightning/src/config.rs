//! Backend configuration, as it appears in the gateway's TOML (`[l402.backend]`).
//!
//! ```toml
//! [l402.backend]
//! kind = "lnd"                          # lnd | cln | phoenixd | lnbits | nwc | dev
//! url = "https://127.0.0.1:8080"
//! macaroon_path = "/home/lnd/.lnd/data/chain/bitcoin/mainnet/invoice.macaroon"
//! tls_cert_path = "/home/lnd/.lnd/tls.cert"   # pins the node's self-signed certificate
//! timeout_secs = 10
//! lookup_retries = 2
//! ```

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A secret string (macaroon, rune, password, API key): its `Debug` form is redacted and its
/// memory is wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// HTTP settings shared by the REST backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Time allowed for one request, connection included.
    pub timeout_secs: u64,
    /// Extra attempts for invoice lookups after a transport error, a timeout or a 502/503/504.
    /// Invoice creation is never retried.
    pub lookup_retries: u32,
    /// PEM file with the node's certificate. When set, the connection is accepted only if the
    /// server presents exactly this certificate (pinning, as LND's and clnrest's self-signed
    /// certificates need); otherwise the Mozilla root store is used.
    pub tls_cert_path: Option<PathBuf>,
    /// Allows `http://` URLs to hosts other than loopback. Credentials then cross the network
    /// in clear text; leave off unless the network is private.
    pub allow_plain_http: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout_secs: 10,
            lookup_retries: 2,
            tls_cert_path: None,
            allow_plain_http: false,
        }
    }
}

/// Which backend to use, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendConfig {
    /// LND's REST API.
    Lnd(LndConfig),
    /// Core Lightning's `clnrest`.
    Cln(ClnConfig),
    /// phoenixd.
    Phoenixd(PhoenixdConfig),
    /// An LNbits wallet.
    Lnbits(LnbitsConfig),
    /// The dev backend (regtest-style invoices it settles itself; never for production).
    Dev(DevConfig),
    /// Nostr Wallet Connect (NIP-47).
    Nwc(NwcConfig),
}

/// LND's REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LndConfig {
    /// Base URL of the REST listener, e.g. `https://127.0.0.1:8080`.
    pub url: String,
    /// The macaroon as hex (an `invoice.macaroon` is enough: it may add and read invoices).
    #[serde(default)]
    pub macaroon_hex: Option<Secret>,
    /// Or the macaroon file (binary), read at start.
    #[serde(default)]
    pub macaroon_path: Option<PathBuf>,
    /// Timeouts, retries, TLS pinning and plain-HTTP permission.
    #[serde(flatten)]
    pub http: HttpSettings,
}

/// Core Lightning's `clnrest` plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClnConfig {
    /// Base URL, e.g. `https://127.0.0.1:3010`.
    pub url: String,
    /// A rune allowing `invoice` and `listinvoices`
    /// (`lightning-cli createrune restrictions='[["method=invoice","method=listinvoices"]]'`).
    #[serde(default)]
    pub rune: Option<Secret>,
    /// Or a file holding the rune.
    #[serde(default)]
    pub rune_path: Option<PathBuf>,
    /// The node's id (hex public key), sent as the `Nodeid` header, which the first (Python)
    /// clnrest of v23.08 also required; later versions ignore it.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Timeouts, retries, TLS pinning and plain-HTTP permission.
    #[serde(flatten)]
    pub http: HttpSettings,
}

/// phoenixd's HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoenixdConfig {
    /// Base URL, e.g. `http://127.0.0.1:9740`.
    pub url: String,
    /// `http-password` (or the limited `http-password-limited-access`) from `phoenix.conf`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Or a file holding the password.
    #[serde(default)]
    pub password_path: Option<PathBuf>,
    /// Timeouts, retries, TLS pinning and plain-HTTP permission.
    #[serde(flatten)]
    pub http: HttpSettings,
}

/// An LNbits wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LnbitsConfig {
    /// Base URL of the LNbits instance, e.g. `https://legend.lnbits.com`.
    pub url: String,
    /// The wallet's invoice/read key (not the admin key: it cannot spend).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Or a file holding the key.
    #[serde(default)]
    pub api_key_path: Option<PathBuf>,
    /// Timeouts, retries, TLS pinning and plain-HTTP permission.
    #[serde(flatten)]
    pub http: HttpSettings,
}

/// The dev backend: invoices signed by a local key, paid by nobody but the dev wallet.
/// **Not for production**: it grants access for payments that never happened on any network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevConfig {
    /// `regtest` (`lnbcrt…` invoices, the default) or `signet` (`lntbs…`).
    #[serde(default = "default_dev_network")]
    pub network: String,
    /// The node key as 64 hex digits; random when absent.
    #[serde(default)]
    pub key_hex: Option<Secret>,
    /// Report the backend as custodial, so the rail confirms settlement with it (to exercise
    /// that path in tests).
    #[serde(default)]
    pub custodial: bool,
}

fn default_dev_network() -> String {
    "regtest".into()
}

impl Default for DevConfig {
    fn default() -> Self {
        DevConfig {
            network: default_dev_network(),
            key_hex: None,
            custodial: false,
        }
    }
}

/// Nostr Wallet Connect (NIP-47): a wallet service reached through a Nostr relay.
///
/// The connection URI (`nostr+walletconnect://<wallet pubkey>?relay=wss://…&secret=<hex>`)
/// holds the client's private key: give it inline (`uri`), in an environment variable
/// (`uri_env`) or in a file (`uri_path`) — exactly one. It is redacted in `Debug` output and
/// never logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NwcConfig {
    /// The connection URI, inline.
    #[serde(default)]
    pub uri: Option<Secret>,
    /// Or the name of an environment variable holding it.
    #[serde(default)]
    pub uri_env: Option<String>,
    /// Or a file holding it.
    #[serde(default)]
    pub uri_path: Option<PathBuf>,
    /// Time allowed for one request: connecting to the relay, publishing, and the wallet's
    /// answer.
    #[serde(default = "default_nwc_timeout")]
    pub timeout_secs: u64,
}

fn default_nwc_timeout() -> u64 {
    10
}

impl NwcConfig {
    /// A configuration with the URI given inline and the default timeout.
    pub fn with_uri(uri: &str) -> Self {
        NwcConfig {
            uri: Some(Secret::from(uri)),
            uri_env: None,
            uri_path: None,
            timeout_secs: default_nwc_timeout(),
        }
    }

    /// Reads the connection URI from wherever the configuration says it is.
    pub fn read_uri(&self) -> Result<Secret, crate::LightningError> {
        match (&self.uri, &self.uri_env, &self.uri_path) {
            (Some(_), None, None) | (None, None, Some(_)) => {
                read_secret(&self.uri, &self.uri_path, "nwc uri")
            }
            (None, Some(var), None) => std::env::var(var)
                .map(|v| Secret(v.trim().to_string()))
                .map_err(|_| {
                    crate::LightningError::Config(format!(
                        "nwc uri_env: environment variable {var} is not set"
                    ))
                }),
            (None, None, None) => Err(crate::LightningError::Config(
                "nwc: one of uri, uri_env, uri_path is required".into(),
            )),
            _ => Err(crate::LightningError::Config(
                "nwc: give only one of uri, uri_env, uri_path".into(),
            )),
        }
    }
}

/// Reads a secret given inline or as a file (trailing whitespace trimmed).
pub(crate) fn read_secret(
    inline: &Option<Secret>,
    path: &Option<PathBuf>,
    what: &str,
) -> Result<Secret, crate::LightningError> {
    match (inline, path) {
        (Some(s), None) => Ok(s.clone()),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map(|s| Secret(s.trim_end().to_string()))
            .map_err(|e| crate::LightningError::Config(format!("{what}: {}: {e}", p.display()))),
        (Some(_), Some(_)) => Err(crate::LightningError::Config(format!(
            "{what}: give it inline or as a file, not both"
        ))),
        (None, None) => Err(crate::LightningError::Config(format!("{what} is missing"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tagged_toml_shape() {
        let v: BackendConfig = serde_json::from_value(serde_json::json!({
            "kind": "lnd", "url": "https://127.0.0.1:8080", "macaroon_hex": "0201",
            "timeout_secs": 3
        }))
        .unwrap();
        match v {
            BackendConfig::Lnd(c) => {
                assert_eq!(c.http.timeout_secs, 3);
                assert_eq!(c.http.lookup_retries, 2);
                assert!(!format!("{c:?}").contains("0201"), "secrets are redacted");
            }
            other => panic!("{other:?}"),
        }
        let d: BackendConfig = serde_json::from_value(serde_json::json!({"kind": "dev"})).unwrap();
        assert_eq!(d, BackendConfig::Dev(DevConfig::default()));
    }
}
