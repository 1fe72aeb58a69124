//! Backend configuration: [`BackendConfig`], and the gateway's `[lightning]` table as each
//! backend reads it ([`backend_section`]: one serde type per backend, unknown keys refused,
//! `<secret>_env` read from the environment). The keys are listed in docs/L402.md §9.
//!
//! ```toml
//! [lightning]
//! backend = "lnd"                       # lnd | cln | phoenixd | lnbits | nwc | dev
//! url = "https://127.0.0.1:8080"
//! macaroon_path = "/home/lnd/.lnd/data/chain/bitcoin/mainnet/invoice.macaroon"
//! tls_cert_path = "/home/lnd/.lnd/tls.cert"   # pins the node's self-signed certificate
//! timeout_secs = 10
//! lookup_retries = 2
//! ```

use serde::{Deserialize, Deserializer, Serialize};
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

/// The backends `[lightning] backend` may name.
pub const BACKEND_KINDS: &[&str] = &["lnd", "cln", "phoenixd", "lnbits", "nwc", "dev"];

/// Reads the gateway's `[lightning]` section, less its `backend` key, as the keys of backend
/// `kind` (`None`: no such backend). Each backend's keys are its own serde type with
/// `deny_unknown_fields`; a secret may also be named by `<secret>_env = "VAR"`, read now (an
/// unset variable is an error at that key).
pub fn backend_section<'de, D: Deserializer<'de>>(
    kind: &str,
    d: D,
) -> Option<Result<BackendConfig, D::Error>> {
    Some(match kind {
        "lnd" => LndSection::deserialize(d).and_then(LndSection::into_config),
        "cln" => ClnSection::deserialize(d).and_then(ClnSection::into_config),
        "phoenixd" => PhoenixdSection::deserialize(d).and_then(PhoenixdSection::into_config),
        "lnbits" => LnbitsSection::deserialize(d).and_then(LnbitsSection::into_config),
        "nwc" => NwcSection::deserialize(d).and_then(NwcSection::into_config),
        "dev" => DevSection::deserialize(d).and_then(DevSection::into_config),
        _ => return None,
    })
}

const HINT_ENV: &str = "export it before starting turnpike, or give the secret as a file (_path)";

/// `<secret>_env = "VAR"`: the variable's value.
fn env_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let var = String::deserialize(d)?;
    turnpike_core::conf::env_value(&var, HINT_ENV).map(|v| Some(Secret(v)))
}

/// The secret given inline, or from the environment (then neither inline nor as a file).
fn one_way<E: serde::de::Error>(
    inline: Option<Secret>,
    file: bool,
    env: Option<Secret>,
    (secret, env_key): (&str, &str),
) -> Result<Option<Secret>, E> {
    match env {
        Some(_) if inline.is_some() || file => Err(turnpike_core::conf::at_key(
            env_key,
            format!("give {secret} one way only: inline, as a file or from {env_key}"),
            "",
        )),
        Some(v) => Ok(Some(v)),
        None => Ok(inline),
    }
}

/// The HTTP keys of the REST backends, as each section gives them.
fn http_settings(
    timeout_secs: Option<u64>,
    lookup_retries: Option<u32>,
    tls_cert_path: Option<PathBuf>,
    allow_plain_http: bool,
) -> HttpSettings {
    let d = HttpSettings::default();
    HttpSettings {
        timeout_secs: timeout_secs.unwrap_or(d.timeout_secs),
        lookup_retries: lookup_retries.unwrap_or(d.lookup_retries),
        tls_cert_path,
        allow_plain_http,
    }
}

/// `[lightning]` with `backend = "lnd"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LndSection {
    url: String,
    #[serde(default)]
    macaroon_hex: Option<Secret>,
    #[serde(default)]
    macaroon_path: Option<PathBuf>,
    #[serde(default, deserialize_with = "env_secret")]
    macaroon_env: Option<Secret>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    lookup_retries: Option<u32>,
    #[serde(default)]
    tls_cert_path: Option<PathBuf>,
    #[serde(default)]
    allow_plain_http: bool,
}

impl LndSection {
    fn into_config<E: serde::de::Error>(self) -> Result<BackendConfig, E> {
        let file = self.macaroon_path.is_some();
        Ok(BackendConfig::Lnd(LndConfig {
            url: self.url,
            macaroon_hex: one_way(
                self.macaroon_hex,
                file,
                self.macaroon_env,
                ("macaroon_hex", "macaroon_env"),
            )?,
            macaroon_path: self.macaroon_path,
            http: http_settings(
                self.timeout_secs,
                self.lookup_retries,
                self.tls_cert_path,
                self.allow_plain_http,
            ),
        }))
    }
}

/// `[lightning]` with `backend = "cln"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClnSection {
    url: String,
    #[serde(default)]
    rune: Option<Secret>,
    #[serde(default)]
    rune_path: Option<PathBuf>,
    #[serde(default, deserialize_with = "env_secret")]
    rune_env: Option<Secret>,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    lookup_retries: Option<u32>,
    #[serde(default)]
    tls_cert_path: Option<PathBuf>,
    #[serde(default)]
    allow_plain_http: bool,
}

impl ClnSection {
    fn into_config<E: serde::de::Error>(self) -> Result<BackendConfig, E> {
        let file = self.rune_path.is_some();
        Ok(BackendConfig::Cln(ClnConfig {
            url: self.url,
            rune: one_way(self.rune, file, self.rune_env, ("rune", "rune_env"))?,
            rune_path: self.rune_path,
            node_id: self.node_id,
            http: http_settings(
                self.timeout_secs,
                self.lookup_retries,
                self.tls_cert_path,
                self.allow_plain_http,
            ),
        }))
    }
}

/// `[lightning]` with `backend = "phoenixd"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoenixdSection {
    url: String,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_path: Option<PathBuf>,
    #[serde(default, deserialize_with = "env_secret")]
    password_env: Option<Secret>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    lookup_retries: Option<u32>,
    #[serde(default)]
    tls_cert_path: Option<PathBuf>,
    #[serde(default)]
    allow_plain_http: bool,
}

impl PhoenixdSection {
    fn into_config<E: serde::de::Error>(self) -> Result<BackendConfig, E> {
        let file = self.password_path.is_some();
        Ok(BackendConfig::Phoenixd(PhoenixdConfig {
            url: self.url,
            password: one_way(
                self.password,
                file,
                self.password_env,
                ("password", "password_env"),
            )?,
            password_path: self.password_path,
            http: http_settings(
                self.timeout_secs,
                self.lookup_retries,
                self.tls_cert_path,
                self.allow_plain_http,
            ),
        }))
    }
}

/// `[lightning]` with `backend = "lnbits"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LnbitsSection {
    url: String,
    #[serde(default)]
    api_key: Option<Secret>,
    #[serde(default)]
    api_key_path: Option<PathBuf>,
    #[serde(default, deserialize_with = "env_secret")]
    api_key_env: Option<Secret>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    lookup_retries: Option<u32>,
    #[serde(default)]
    tls_cert_path: Option<PathBuf>,
    #[serde(default)]
    allow_plain_http: bool,
}

impl LnbitsSection {
    fn into_config<E: serde::de::Error>(self) -> Result<BackendConfig, E> {
        let file = self.api_key_path.is_some();
        Ok(BackendConfig::Lnbits(LnbitsConfig {
            url: self.url,
            api_key: one_way(
                self.api_key,
                file,
                self.api_key_env,
                ("api_key", "api_key_env"),
            )?,
            api_key_path: self.api_key_path,
            http: http_settings(
                self.timeout_secs,
                self.lookup_retries,
                self.tls_cert_path,
                self.allow_plain_http,
            ),
        }))
    }
}

/// `[lightning]` with `backend = "nwc"` (Nostr Wallet Connect).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NwcSection {
    #[serde(default)]
    uri: Option<Secret>,
    #[serde(default)]
    uri_path: Option<PathBuf>,
    #[serde(default, deserialize_with = "env_secret")]
    uri_env: Option<Secret>,
    #[serde(default = "default_nwc_timeout")]
    timeout_secs: u64,
}

impl NwcSection {
    fn into_config<E: serde::de::Error>(self) -> Result<BackendConfig, E> {
        let file = self.uri_path.is_some();
        Ok(BackendConfig::Nwc(NwcConfig {
            uri: one_way(self.uri, file, self.uri_env, ("uri", "uri_env"))?,
            uri_env: None,
            uri_path: self.uri_path,
            timeout_secs: self.timeout_secs,
        }))
    }
}

/// `[lightning]` with `backend = "dev"` (the gateway adds `dev_wallet`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevSection {
    #[serde(default = "default_dev_network")]
    network: String,
    #[serde(default)]
    key_hex: Option<Secret>,
    #[serde(default, deserialize_with = "env_secret")]
    key_env: Option<Secret>,
    #[serde(default)]
    custodial: bool,
}

impl DevSection {
    fn into_config<E: serde::de::Error>(self) -> Result<BackendConfig, E> {
        Ok(BackendConfig::Dev(DevConfig {
            network: self.network,
            key_hex: one_way(self.key_hex, false, self.key_env, ("key_hex", "key_env"))?,
            custodial: self.custodial,
        }))
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

/// `[lightning]` as the gateway read it: which node or wallet service creates invoices. Read by
/// the L402 rail's configuration (which owns the table) and shared by every rail that bills
/// through Lightning, found in the rails' sections under [`LIGHTNING_TABLE`].
#[derive(Debug, Clone, PartialEq)]
pub struct LightningSection {
    /// The backend and how to reach it (secrets already read from `*_env` variables; files are
    /// read when the backend is built).
    pub backend: BackendConfig,
    /// `[lightning.dev_wallet]` (dev backend only): serve the dev wallet, an LND-REST look-alike
    /// that pays this gateway's dev invoices. **Not for production.**
    pub dev_wallet: Option<DevWalletConfig>,
}

/// The name of the `[lightning]` table.
pub const LIGHTNING_TABLE: &str = "lightning";

/// `[lightning.dev_wallet]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevWalletConfig {
    /// Loopback address to listen on (port 0: any free port). Default `127.0.0.1:0`.
    pub listen: std::net::SocketAddr,
    /// Write `/v2/router/send`'s preimage in base64 (what `l402-requests` 0.9 reads) instead of
    /// LND's hex.
    pub preimage_base64: bool,
}
