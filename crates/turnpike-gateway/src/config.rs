//! The gateway's configuration file (TOML).
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8402"
//! path = "/mcp"                      # endpoint path the gateway serves
//! allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]   # Host values accepted (port ignored)
//! allowed_origins = []               # Origins accepted besides http(s)://<allowed host>[:port]
//! challenge_mode = "auto"            # auto | http | in-band
//! max_body_bytes = 4194304
//! data_dir = "turnpike-data"         # keys persisted here (0600)
//! public_url = "https://mcp.example.com/mcp"   # how callers reach the endpoint; default
//!                                    # http://<listen><path> (OAuth resource and DPoP htu)
//! header_read_timeout_secs = 10      # a client must send its request head within this time
//! body_read_timeout_secs = 30        # … and its body within this time
//! shutdown_timeout_secs = 10         # on SIGTERM: how long in-flight calls may take to finish
//! watch_config = true                # reload when the file changes (SIGHUP always reloads)
//! max_connections = 10000            # open connections in all (lowered to fit the open-file limit)
//! max_connections_per_address = 128  # open connections from one address (IPv6: one /64)
//! first_byte_timeout_secs = 5        # a new connection must start its request within this time
//! connection_idle_timeout_secs = 60  # a connection with no request in progress is closed after this
//! http2_max_concurrent_streams = 100 # streams one HTTP/2 connection may have open
//! http2_keepalive_secs = 30          # HTTP/2 ping interval (and how long an answer may take)
//!
//! [admin]                            # optional: metrics, admin API and dashboard (off without it)
//! listen = "127.0.0.1:8403"          # its own listener (default shown); a warning if not loopback
//! allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]   # Host values the admin listener accepts
//! allowed_origins = []               # Origins accepted besides http(s)://<allowed host>[:port]
//! token_env = "TURNPIKE_ADMIN_TOKEN" # or token = "…" (at least 16 characters)
//! metrics_public = true              # /metrics without the token (default true)
//!
//! [upstream]                         # exactly one of url / command
//! url = "http://127.0.0.1:3001/mcp"
//! # command = ["npx", "-y", "@modelcontextprotocol/server-everything"]
//! # env = { KEY = "value" }
//! # idle_timeout_secs = 900
//! # response_timeout_secs = 60       # time to the response head; then 504, call cancelled
//! # stream_idle_timeout_secs = 120   # silence within a streamed answer; then an error event
//! # era = "auto"                    # auto | "2025" | "2026-07-28": what the upstream speaks
//!                                    # (auto probes with server/discover); see docs/ERAS.md
//!
//! [stdio]                            # bounds on stdio children ([upstream] command and every
//!                                    # stdio [[mount]] together; see docs/OPERATIONS.md)
//! # max_sessions = 64                # children at once; default: MemAvailable / 2 /
//!                                    # session_memory_mib, clamped to 8..=512
//! session_memory_mib = 64            # per-child memory estimate for that default
//! max_sessions_per_caller = 4        # children one address (IPv6: /64) may hold
//! spawns_per_minute_per_caller = 20  # children one address may start per minute
//!
//! [pow]                              # see turnpike_pow::PowConfig
//! expiry_secs = 300
//!
//! [tools.default]                    # tools not named below; omit the table = free
//! pow = 200000
//! [tools.echo]
//! free = true
//! [methods."resources/read"]         # methods other than tools/call may be priced too
//! pow = 100000
//! [tools.search]                     # dual rail: pay or solve, the caller chooses
//! pow = 2000000
//! l402 = { sat = 10 }                # per call (the default mode)
//! [tools.report]
//! l402 = { msat = 2000, mode = "balance", bundle = 50000 }   # 50000 msat of credit per invoice
//! [tools.deploy]
//! oauth = { scopes = ["deploy:write"] }   # a token with these scopes (`oauth = true`: any token)
//! pow = 5000000                      # … or a puzzle: a signed-in caller skips it
//!
//! [oauth]                            # required as soon as a price names oauth; every key of
//! issuer = "https://auth.example.com"   # turnpike_oauth::OAuthConfig, plus:
//! forward_identity = "signed"        # none (default) | signed: Turnpike-Identity to the upstream
//! identity_secret = "<64 hex>"       # HMAC key for it (or identity_secret_env = "VAR")
//!
//! [l402]                             # optional: see turnpike_l402::L402Config
//! token_ttl_secs = 86400
//! invoices_per_minute_per_caller = 20   # invoices one caller (identity, else address) is offered
//! invoices_per_minute = 600          # … and this process offers in all (0: no bound)
//! confirm_settlement = "custodial"   # custodial | always | never
//! store = "sqlite"                   # or "memory", or { kind = "sqlite", path = "l402.sqlite" }
//!
//! [lightning]                        # required as soon as a price names l402
//! backend = "lnd"                    # lnd | cln | phoenixd | lnbits | nwc | dev
//! url = "https://127.0.0.1:8080"
//! macaroon_path = "/var/lib/lnd/invoice.macaroon"   # or macaroon_hex, or macaroon_env = "VAR"
//! ```
//!
//! [`parse`] and [`load`] report **every** problem they find, each with `file:line:col`, what is
//! wrong and a hint. Unknown keys are refused everywhere. A price is `free = true`, or any of
//! `pow = <effort>`, `l402 = { msat | sat = N, mode, bundle }` and `oauth = true | { scopes =
//! […] }` (several: the caller chooses).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;
use turnpike_core::{BillingMode, Offer, Policy, Price};
use turnpike_http::conns::ConnRules;
use turnpike_l402::{L402Config, StoreConfig};
use turnpike_lightning::BackendConfig;
use turnpike_limits::{BudgetsConfig, LimitsConfig, StoreConfig as LimitsStoreConfig};
use turnpike_oauth::{OAuthConfig, Secret};
use turnpike_pow::PowConfig;
use turnpike_upstream::http::check_url;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[upstream]`.
    pub upstream: UpstreamConfig,
    /// `[pow]` (owned by the proof-of-work rail).
    pub pow: PowConfig,
    /// `[tools.<name>]`; the entry named `default` prices every tool not named.
    pub tools: BTreeMap<String, PriceConfig>,
    /// `[methods."<method>"]`: prices of methods other than `tools/call`.
    pub methods: BTreeMap<String, PriceConfig>,
    /// `[l402]`: the L402 rail's settings and store.
    pub l402: L402Section,
    /// `[lightning]`: the Lightning backend the L402 rail bills through. Required when any
    /// price names `l402`.
    pub lightning: Option<LightningConfig>,
    /// `[oauth]`: the OAuth rail (the authorization server it trusts, the resource, DPoP) and
    /// what the upstream learns of the caller. Required when any price names `oauth`.
    pub oauth: Option<OAuthSection>,
    /// `[limits]`: rate limits, in-flight caps and the loop brake (on by default, sized for
    /// agents; see docs/LIMITS.md).
    pub limits: LimitsConfig,
    /// `[budgets]`: daily caps (none by default).
    pub budgets: BudgetsConfig,
    /// `[store]`: where the hot shared state lives — limits and the single-use credential sets
    /// (`memory` by default; `redis` to share it between instances).
    pub store: LimitsStoreConfig,
    /// `[[mount]]`: more upstreams, each at its own path with its own prices
    /// (`mount.rs`).
    pub mounts: Vec<MountConfig>,
    /// `[merge]`: one endpoint over several mounts (`mount_merge.rs`).
    pub merge: Option<MergeConfig>,
    /// `[admin]`: the admin listener (metrics, admin API, dashboard). `None`: off.
    pub admin: Option<AdminConfig>,
    /// `[stdio]`: bounds on stdio children, shared by `[upstream] command` and every stdio
    /// `[[mount]]`.
    pub stdio: StdioSection,
}

/// `[stdio]`: how many stdio children may live, in all and per caller
/// ([`turnpike_upstream::stdio::StdioBudget`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioSection {
    /// Children alive at once; `None`: sized to memory ([`StdioSection::limits`]).
    pub max_sessions: Option<usize>,
    /// The per-child memory estimate (MiB) the default `max_sessions` is computed with.
    /// Default 64.
    pub session_memory_mib: u64,
    /// Children one caller (address; IPv6 /64) may hold at once. Default 4.
    pub max_sessions_per_caller: usize,
    /// Children one caller may start per minute. Default 20.
    pub spawns_per_minute_per_caller: u32,
}

impl Default for StdioSection {
    fn default() -> Self {
        use turnpike_upstream::stdio as s;
        StdioSection {
            max_sessions: None,
            session_memory_mib: s::DEFAULT_SESSION_MEMORY_MIB,
            max_sessions_per_caller: s::DEFAULT_MAX_SESSIONS_PER_CALLER,
            spawns_per_minute_per_caller: s::DEFAULT_SPAWNS_PER_MINUTE_PER_CALLER,
        }
    }
}

impl StdioSection {
    /// The limits in force, and the available memory (MiB) the global cap was sized from when
    /// `max_sessions` is not set (`None` when it is set, or when the memory cannot be read).
    pub fn limits(&self) -> (turnpike_upstream::stdio::StdioLimits, Option<u64>) {
        let (max_sessions, avail) = match self.max_sessions {
            Some(n) => (n, None),
            None => turnpike_upstream::stdio::memory_sized_max_sessions(self.session_memory_mib),
        };
        (
            turnpike_upstream::stdio::StdioLimits {
                max_sessions,
                max_sessions_per_caller: self.max_sessions_per_caller,
                spawns_per_minute_per_caller: self.spawns_per_minute_per_caller,
            },
            avail,
        )
    }
}

/// `[admin]`: `/metrics`, the JSON admin API and the dashboard, on a listener of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Address of the admin listener. Default `127.0.0.1:8403`.
    pub listen: SocketAddr,
    /// The admin token (`token`, or read from `token_env`): at least 16 characters.
    pub token: Secret,
    /// Whether `/metrics` answers without the token. Default true.
    pub metrics_public: bool,
    /// Host header values the admin listener accepts (port ignored; `"*"`: any). Default
    /// localhost, 127.0.0.1 and [::1].
    pub allowed_hosts: Vec<String>,
    /// Origins accepted besides `http(s)://<allowed host>[:port]`. Default none.
    pub allowed_origins: Vec<String>,
}

/// The admin listener's default address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8403";

/// `[oauth]`: every key of [`turnpike_oauth::OAuthConfig`], plus the gateway's own
/// `forward_identity` and `identity_secret`.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthSection {
    /// The rail's settings. `resource` stays `None` when the file leaves it out: it defaults to
    /// [`Config::public_url`] when the rail is built ([`Config::oauth_config`]).
    pub rail: OAuthConfig,
    /// Whether the upstream is told who the caller is.
    pub forward_identity: ForwardIdentity,
    /// The HMAC-SHA256 key of the `Turnpike-Identity` header (32 bytes), required with
    /// `forward_identity = "signed"`.
    pub identity_secret: Option<Secret>,
}

/// What the upstream learns about a caller who came in with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardIdentity {
    /// Nothing (the default): the token is stripped and no statement replaces it.
    #[default]
    None,
    /// A `Turnpike-Identity` header signed by the gateway (see [`crate::identity`]).
    Signed,
}

/// `[l402]`: the rail's settings (every key of [`turnpike_l402::L402Config`]) and `store`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct L402Section {
    /// Token lifetimes, invoice expiry, settlement confirmation, limits.
    pub rail: L402Config,
    /// Where root keys, tokens, balances and the ledger live. Default: SQLite at
    /// `<data_dir>/l402.sqlite`.
    pub store: StoreConfig,
}

/// `[lightning]`: which node or wallet service creates invoices.
#[derive(Debug, Clone, PartialEq)]
pub struct LightningConfig {
    /// The backend and how to reach it (secrets already read from `*_env` variables; files are
    /// read when the backend is built).
    pub backend: BackendConfig,
    /// `[lightning.dev_wallet]` (dev backend only): serve the dev wallet, an LND-REST look-alike
    /// that pays this gateway's dev invoices. **Not for production.**
    pub dev_wallet: Option<DevWalletConfig>,
}

/// `[lightning.dev_wallet]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevWalletConfig {
    /// Loopback address to listen on (port 0: any free port). Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Write `/v2/router/send`'s preimage in base64 (what `l402-requests` 0.9 reads) instead of
    /// LND's hex.
    pub preimage_base64: bool,
}

/// An L402 price: `l402 = { msat = N | sat = N, mode = "per_call" | "balance" | "time_pass",
/// bundle = … }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L402Price {
    /// Price of one call in millisatoshis.
    pub msat: u64,
    /// How the token is billed.
    pub mode: BillingMode,
    /// Balance: millisatoshis of credit one invoice buys (0: one call's worth); time pass:
    /// seconds the pass lasts (0: `[l402] pass_secs`); per call: 0.
    pub bundle: u64,
}

/// How challenges are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeMode {
    /// In band when the request carries `Mcp-Session-Id` or `MCP-Protocol-Version` (an MCP
    /// client mid-session), HTTP 402 otherwise.
    #[default]
    Auto,
    /// Always HTTP 402 (401, 503) with `WWW-Authenticate`.
    Http,
    /// Always an HTTP 200 tool result with `isError: true`.
    InBand,
}

impl ChallengeMode {
    /// Parses `auto`, `http` or `in-band`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(ChallengeMode::Auto),
            "http" => Some(ChallengeMode::Http),
            "in-band" => Some(ChallengeMode::InBand),
            _ => None,
        }
    }
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeMode::Auto => "auto",
            ChallengeMode::Http => "http",
            ChallengeMode::InBand => "in-band",
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8402`.
    pub listen: SocketAddr,
    /// The endpoint path. Default `/mcp`.
    pub path: String,
    /// Host header values accepted, port ignored (`"*"` accepts any). Default localhost,
    /// 127.0.0.1 and [::1].
    pub allowed_hosts: Vec<String>,
    /// Origins accepted besides `http(s)://<allowed host>[:port]`. Default none.
    pub allowed_origins: Vec<String>,
    /// How challenges are delivered. Default auto.
    pub challenge_mode: ChallengeMode,
    /// Largest accepted POST body. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Where keys are persisted. Default `turnpike-data`.
    pub data_dir: PathBuf,
    /// The public URL of the endpoint, as callers reach it (behind a proxy, its https URL).
    /// Default `http://<listen><path>`. The OAuth resource identifier and the DPoP `htu` of
    /// every call derive from it.
    pub public_url: Option<String>,
    /// Seconds a client has to send its request head. Default 10.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send its request body. Default 30.
    pub body_read_timeout_secs: u64,
    /// Seconds in-flight calls and streams get to finish after a shutdown signal. Default 10.
    pub shutdown_timeout_secs: u64,
    /// Whether the configuration file is watched and reloaded when it changes. Default true.
    pub watch_config: bool,
    /// Open connections in all (each listener counts its own); a connection beyond it is
    /// closed at once. Lowered at start to fit the open-file limit. Default 10000.
    pub max_connections: usize,
    /// Open connections from one address (an IPv6 address counts as its /64); a connection
    /// beyond it is closed at once. Default 128.
    pub max_connections_per_address: usize,
    /// Seconds a new connection has to send the start of its request (enough bytes to tell
    /// HTTP/1 from HTTP/2). Default 5.
    pub first_byte_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress (HTTP/1 keep-alive,
    /// HTTP/2 with no open stream or still in its handshake). Default 60.
    pub connection_idle_timeout_secs: u64,
    /// Streams one HTTP/2 connection may have open at once. Default 100.
    pub http2_max_concurrent_streams: u32,
    /// Seconds between HTTP/2 keep-alive pings, and how long the answer may take. Default 30.
    pub http2_keepalive_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let conns = ConnRules::default();
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8402)),
            path: "/mcp".into(),
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
            allowed_origins: Vec::new(),
            challenge_mode: ChallengeMode::Auto,
            max_body_bytes: 4 * 1024 * 1024,
            data_dir: PathBuf::from("turnpike-data"),
            public_url: None,
            header_read_timeout_secs: conns.header_read_timeout.as_secs(),
            body_read_timeout_secs: 30,
            shutdown_timeout_secs: 10,
            watch_config: true,
            max_connections: conns.max_connections,
            max_connections_per_address: conns.max_per_address,
            first_byte_timeout_secs: conns.first_byte_timeout.as_secs(),
            connection_idle_timeout_secs: conns.idle_timeout.as_secs(),
            http2_max_concurrent_streams: conns.h2_max_streams,
            http2_keepalive_secs: conns.h2_keepalive.as_secs(),
        }
    }
}

impl ServerConfig {
    /// The connection rules these keys set for the endpoint's listener.
    pub fn conn_rules(&self) -> ConnRules {
        ConnRules {
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_address,
            first_byte_timeout: Duration::from_secs(self.first_byte_timeout_secs),
            idle_timeout: Duration::from_secs(self.connection_idle_timeout_secs),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            h2_max_streams: self.http2_max_concurrent_streams,
            h2_keepalive: Duration::from_secs(self.http2_keepalive_secs),
        }
    }
}

/// One `[[mount]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MountConfig {
    /// The endpoint path.
    pub path: String,
    /// A short name: the prefix of its clashing names on the merged endpoint. Default: the
    /// first segment of the path.
    pub name: String,
    /// The upstream, as `[upstream]` describes one.
    pub upstream: UpstreamConfig,
    /// Prices of tools (`default` for every tool not named).
    pub tools: BTreeMap<String, PriceConfig>,
    /// Prices of other methods.
    pub methods: BTreeMap<String, PriceConfig>,
}

/// `[merge]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergeConfig {
    /// The merged endpoint's path.
    pub path: String,
    /// The mounts merged, by name (empty: all).
    pub mounts: Vec<String>,
}

/// The name of a mount at `path` when none is given: its first non-empty segment.
pub fn default_name(path: &str) -> String {
    path.split('/')
        .find(|s| !s.is_empty())
        .unwrap_or("mount")
        .to_owned()
}

/// `[upstream]`: exactly one of `url` and `command`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// An MCP server's Streamable HTTP endpoint (`http://` or `https://`).
    pub url: Option<String>,
    /// A stdio MCP server: program and arguments.
    pub command: Option<Vec<String>>,
    /// Environment for the stdio child.
    pub env: BTreeMap<String, String>,
    /// Seconds after which an idle session's child is ended. Default 900.
    pub idle_timeout_secs: u64,
    /// Seconds the upstream has to send a call's response head; then 504 and the call is
    /// cancelled upstream ([`crate::deadline`]). Default 60.
    pub response_timeout_secs: u64,
    /// Longest silence, in seconds, within a streamed answer before the call's response; then
    /// a last JSON-RPC error event and the call is cancelled upstream. Default 120.
    pub stream_idle_timeout_secs: u64,
    /// The MCP era the upstream speaks (`auto`: probe); clients of the other era are
    /// translated (the `turnpike-era` crate).
    pub era: turnpike_era::EraSetting,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: None,
            command: None,
            env: BTreeMap::new(),
            idle_timeout_secs: 900,
            response_timeout_secs: 60,
            stream_idle_timeout_secs: 120,
            era: turnpike_era::EraSetting::Auto,
        }
    }
}

/// The price of one tool or method: `free = true`, or any of `pow = <effort>` and
/// `l402 = {…}` (both: a dual-rail price, the caller chooses).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceConfig {
    /// The call is free.
    pub free: bool,
    /// Proof-of-work of this many expected hashes.
    pub pow: Option<u64>,
    /// A Lightning payment.
    pub l402: Option<L402Price>,
    /// An OAuth access token with every one of these scopes (empty: any valid token).
    pub oauth: Option<Vec<String>>,
}

impl PriceConfig {
    /// The price as the policy holds it (the L402 offer first).
    pub fn to_price(&self) -> Price {
        if self.free {
            return Price::free();
        }
        let mut offers = Vec::new();
        if let Some(p) = self.l402 {
            offers.push(Offer::L402 {
                msat: p.msat,
                mode: p.mode,
                bundle: p.bundle,
            });
        }
        if let Some(effort) = self.pow {
            offers.push(Offer::Pow { effort });
        }
        if let Some(scopes) = &self.oauth {
            offers.push(Offer::OAuth {
                scopes: scopes.clone(),
            });
        }
        Price { offers }
    }
}

impl Config {
    /// Whether any price names `l402`.
    pub fn uses_l402(&self) -> bool {
        self.tools
            .values()
            .chain(self.methods.values())
            .any(|p| !p.free && p.l402.is_some())
    }

    /// Whether any price names `oauth`.
    pub fn uses_oauth(&self) -> bool {
        self.tools
            .values()
            .chain(self.methods.values())
            .any(|p| !p.free && p.oauth.is_some())
    }

    /// The public URL of the endpoint: `server.public_url`, else `http://<listen><path>`.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.clone(),
            None => format!("http://{}{}", self.server.listen, self.server.path),
        }
    }

    /// The OAuth rail's configuration with `resource` defaulted to [`Config::public_url`], when
    /// there is an `[oauth]` section.
    pub fn oauth_config(&self) -> Option<OAuthConfig> {
        self.oauth
            .as_ref()
            .map(|o| o.rail.clone().with_default_resource(&self.public_url()))
    }
}

impl Config {
    /// The policy: `tools.default` prices unnamed tools, other `tools` entries their tool,
    /// `methods` their method.
    pub fn policy(&self) -> Policy {
        let mut p = Policy::default();
        for (name, price) in &self.tools {
            if name == "default" {
                p.default_tool = price.to_price();
            } else {
                p.tools.insert(name.clone(), price.to_price());
            }
        }
        for (m, price) in &self.methods {
            p.methods.insert(m.clone(), price.to_price());
        }
        p
    }

    /// Checks the rules that span fields (after command-line overrides, say): exactly one
    /// upstream, a valid URL, sane limits. Problems carry no line numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut add = |message: String, hint: &str| {
            problems.push(Problem {
                line: 0,
                col: 0,
                message,
                hint: hint.into(),
            })
        };
        match (&self.upstream.url, &self.upstream.command) {
            (None, None) if !self.mounts.is_empty() => {}
            (Some(_), Some(_)) => add(
                "[upstream] sets both url and command".into(),
                HINT_ONE_UPSTREAM,
            ),
            (None, None) => add(
                "no upstream: set [upstream] url or command".into(),
                HINT_ONE_UPSTREAM,
            ),
            (Some(u), None) => {
                if let Err(e) = check_url(u) {
                    add(format!("[upstream] url: {e}"), HINT_URL);
                }
            }
            (None, Some(c)) => {
                if c.first().is_none_or(|p| p.is_empty()) {
                    add("[upstream] command is empty".into(), HINT_COMMAND);
                }
            }
        }
        if !self.server.path.starts_with('/') {
            add(
                format!(
                    "[server] path {:?} does not start with \"/\"",
                    self.server.path
                ),
                HINT_PATH,
            );
        }
        if self.server.allowed_hosts.is_empty() {
            add("[server] allowed_hosts is empty".into(), HINT_HOSTS);
        }
        if self.server.max_body_bytes == 0 {
            add("[server] max_body_bytes is 0".into(), HINT_POSITIVE);
        }
        if let Err(errs) = self.pow.validate() {
            for e in errs {
                add(
                    e.to_string(),
                    "see the [pow] table in the configuration reference",
                );
            }
        }
        for (table, map) in [("tools", &self.tools), ("methods", &self.methods)] {
            for (k, p) in map {
                if p.pow == Some(0) {
                    add(format!("[{table}.{k}] pow = 0"), HINT_EFFORT);
                }
                if p.l402.is_some_and(|l| l.msat == 0) {
                    add(format!("[{table}.{k}] l402 price is 0"), HINT_L402);
                }
            }
        }
        if self.uses_l402() && self.lightning.is_none() {
            add(
                "a price names l402 but there is no [lightning] section".into(),
                HINT_NO_LIGHTNING,
            );
        }
        if let Some(u) = &self.server.public_url {
            if let Err(e) = check_public_url(u) {
                add(format!("[server] public_url {u:?}: {e}"), HINT_PUBLIC_URL);
            }
        }
        if self.uses_oauth() && self.oauth.is_none() {
            add(
                "a price names oauth but there is no [oauth] section".into(),
                HINT_NO_OAUTH,
            );
        }
        if let (Some(o), Some(cfg)) = (&self.oauth, self.oauth_config()) {
            if let Err(e) = cfg.validate() {
                for p in e.problems {
                    add(p, HINT_OAUTH);
                }
            }
            if o.forward_identity == ForwardIdentity::Signed && o.identity_secret.is_none() {
                add(
                    "[oauth] forward_identity = \"signed\" needs identity_secret".into(),
                    HINT_IDENTITY_SECRET,
                );
            }
        }
        for p in self.limits.validate(&self.budgets, &self.store) {
            add(format!("{}: {}", p.path, p.message), HINT_LIMITS);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: "<config>".into(),
                problems,
            })
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; 0 when the problem has no single place.
    pub line: usize,
    /// 1-based column (in characters); 0 when the problem has no single place.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

/// Every problem found in a configuration file. Displayed one per line as
/// `file:line:col: message` followed by an indented `hint:` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.line == 0 {
                write!(f, "{}: {}", self.file, p.message)?;
            } else {
                write!(f, "{}:{}:{}: {}", self.file, p.line, p.col, p.message)?;
            }
            if !p.hint.is_empty() {
                write!(f, "\n    hint: {}", p.hint)?;
            }
        }
        Ok(())
    }
}

const HINT_ONE_UPSTREAM: &str =
    "give exactly one of url = \"http://host:port/mcp\" or command = [\"program\", \"arg\", …]";
const HINT_URL: &str =
    "write an absolute http:// or https:// URL, e.g. \"http://127.0.0.1:3001/mcp\"";
const HINT_COMMAND: &str = "write the program and its arguments as an array of strings";
const HINT_PATH: &str = "write the endpoint path starting with \"/\", e.g. \"/mcp\"";
const HINT_HOSTS: &str =
    "list the Host names clients use, e.g. [\"localhost\", \"127.0.0.1\"], or [\"*\"] to accept any";
const HINT_POSITIVE: &str = "use a whole number of at least 1";
/// The longest upstream time limit accepted (a day).
const MAX_UPSTREAM_TIMEOUT_SECS: u64 = 86_400;
const HINT_TIMEOUT: &str = "use a whole number of seconds from 1 to 86400";
const HINT_EFFORT: &str = "an effort is a number of expected hashes, at least 1 (e.g. 200000)";
const HINT_PRICE: &str =
    "write `free = true`, or `pow = <effort>` and/or `l402 = { sat = <n> }`, e.g. `pow = 200000`";
const HINT_L402: &str = "write l402 = { msat = <n> } or { sat = <n> }, optionally with mode = \"per_call\" | \"balance\" | \"time_pass\" and bundle = <n> (balance: credit per invoice, in the price's unit; time_pass: seconds)";
const HINT_NO_LIGHTNING: &str = "add a [lightning] section naming the node that creates invoices, e.g. [lightning] backend = \"lnd\", url = \"https://127.0.0.1:8080\", macaroon_path = \"…/invoice.macaroon\" (or backend = \"dev\" to try it out, never in production)";
const HINT_LIGHTNING: &str = "see the [lightning] section in docs/L402.md: backend = \"lnd\" | \"cln\" | \"phoenixd\" | \"lnbits\" | \"nwc\" | \"dev\" and that backend's keys";
const HINT_L402_TABLE: &str = "see the [l402] section in docs/L402.md";
const HINT_OAUTH_PRICE: &str = "write oauth = true (any valid token for this resource) or oauth = { scopes = [\"deploy:write\"] }";
const HINT_NO_OAUTH: &str = "add an [oauth] section naming your authorization server, e.g. [oauth] issuer = \"https://auth.example.com\" (see docs/OAUTH.md)";
const HINT_LIMITS: &str = "see the [limits], [budgets] and [store] tables in docs/LIMITS.md";
const HINT_OAUTH: &str = "see the [oauth] section in docs/OAUTH.md";
const HINT_PUBLIC_URL: &str = "write the URL callers use to reach the endpoint, e.g. \"https://mcp.example.com/mcp\" (no query or fragment)";
const HINT_IDENTITY_SECRET: &str = "write identity_secret = \"<64 hex digits>\" (e.g. from `openssl rand -hex 32`), or identity_secret_env = \"VAR\" to read it from the environment; share it with the upstream";

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => parse(&src, &name),
        Err(e) => Err(ConfigError {
            file: name,
            problems: vec![Problem {
                line: 0,
                col: 0,
                message: format!("cannot read the file: {e}"),
                hint: "check the path given with --config".into(),
            }],
        }),
    }
}

/// Parses a configuration from TOML text; `file_name` is used in messages only.
pub fn parse(src: &str, file_name: &str) -> Result<Config, ConfigError> {
    let mut cx = Cx {
        src,
        problems: Vec::new(),
        l402_prices: Vec::new(),
        oauth_prices: Vec::new(),
    };
    let (root, syntax) = DeTable::parse_recoverable(src);
    if !syntax.is_empty() {
        for e in syntax {
            cx.problem(
                e.span(),
                e.message().to_string(),
                "fix the TOML syntax here",
            );
        }
        return Err(cx.into_error(file_name));
    }
    let root_span = root.span();
    let root = root.into_inner();
    let mut cfg = Config::default();
    for (key, value) in root.iter() {
        match key.get_ref().as_ref() {
            "server" => {
                if let Some(t) = cx.table(value, "[server]") {
                    cx.server(t, &mut cfg.server);
                }
            }
            "upstream" => {
                if let Some(t) = cx.table(value, "[upstream]") {
                    cx.upstream(t, value.span(), &mut cfg.upstream);
                }
            }
            "mount" => cfg.mounts = cx.mounts(value),
            "merge" => cfg.merge = cx.merge(value, &cfg.mounts),
            "pow" => {
                match PowConfig::deserialize_from(value) {
                    Ok(p) => cfg.pow = p,
                    Err(e) => cx.de_error(e, value.span(), "see the [pow] table in the configuration reference"),
                }
            }
            "tools" => {
                if let Some(t) = cx.table(value, "[tools]") {
                    cfg.tools = cx.prices(t, "tools");
                }
            }
            "methods" => {
                if let Some(t) = cx.table(value, "[methods]") {
                    cfg.methods = cx.prices(t, "methods");
                    for (k, v) in t.iter() {
                        let m: &str = k.get_ref();
                        if m == "tools/call" {
                            cx.problem(
                                Some(k.span()),
                                "tools/call cannot be priced under [methods]".into(),
                                "price tools under [tools.<name>] and [tools.default]",
                            );
                        } else if m.is_empty() || m.contains(char::is_whitespace) {
                            cx.problem(
                                Some(k.span()),
                                format!("{m:?} is not a JSON-RPC method name"),
                                "use the method as MCP names it, e.g. [methods.\"resources/read\"]",
                            );
                        }
                        let _ = v;
                    }
                }
            }
            "l402" => {
                if let Some(t) = cx.table(value, "[l402]") {
                    cx.l402(t, &mut cfg.l402);
                }
            }
            "lightning" => {
                if let Some(t) = cx.table(value, "[lightning]") {
                    cfg.lightning = cx.lightning(t, value.span());
                }
            }
            "limits" => match LimitsConfig::deserialize_from(value) {
                Ok(l) => cfg.limits = l,
                Err(e) => cx.de_error(e, value.span(), HINT_LIMITS),
            },
            "budgets" => match BudgetsConfig::deserialize_from(value) {
                Ok(b) => cfg.budgets = b,
                Err(e) => cx.de_error(e, value.span(), HINT_LIMITS),
            },
            "store" => match LimitsStoreConfig::deserialize_from(value) {
                Ok(st) => cfg.store = st,
                Err(e) => cx.de_error(e, value.span(), HINT_LIMITS),
            },
            "admin" => {
                if let Some(t) = cx.table(value, "[admin]") {
                    cfg.admin = cx.admin(t, value.span());
                }
            }
            "stdio" => {
                if let Some(t) = cx.table(value, "[stdio]") {
                    cx.stdio(t, &mut cfg.stdio);
                }
            }
            // After the loop: its defaults depend on [server].
            "oauth" => {}
            other => cx.problem(
                Some(key.span()),
                format!("unknown table `{other}`"),
                "the tables are [server], [upstream], [pow], [tools.<name>], [methods.\"<method>\"], [l402], [lightning], [oauth], [limits], [budgets], [store], [admin] and [stdio]",
            ),
        }
    }
    if let Some(value) = root.get("oauth") {
        if let Some(t) = cx.table(value, "[oauth]") {
            let public_url = cfg.public_url();
            cfg.oauth = cx.oauth(t, value.span(), &public_url);
        }
    } else {
        for span in std::mem::take(&mut cx.oauth_prices) {
            cx.problem(
                Some(span),
                "this price names oauth, but there is no [oauth] section".into(),
                HINT_NO_OAUTH,
            );
        }
    }
    if root.get("lightning").is_none() {
        for span in std::mem::take(&mut cx.l402_prices) {
            cx.problem(
                Some(span),
                "this price names l402, but there is no [lightning] section".into(),
                HINT_NO_LIGHTNING,
            );
        }
    }
    for p in cfg.limits.validate(&cfg.budgets, &cfg.store) {
        let span = span_of_path(&root, &p.path).unwrap_or(root_span.start..root_span.start);
        cx.problem(
            Some(span),
            format!("{}: {}", p.path, p.message),
            HINT_LIMITS,
        );
    }
    if let Some(var) = cfg
        .store
        .postgres_url_env
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        if std::env::var_os(var).is_none() {
            let path = "store.postgres_url_env";
            let span = span_of_path(&root, path).unwrap_or(root_span.start..root_span.start);
            cx.problem(
                Some(span),
                format!("{path}: the environment variable {var} is not set"),
                HINT_LIMITS,
            );
        }
    }
    if let Some(DeValue::Table(tools)) = root.get("tools").map(|v| v.get_ref()) {
        cx.merged_tool_keys(tools, &cfg);
    }
    if root.get("upstream").is_none() && cfg.mounts.is_empty() {
        cx.problem(
            Some(root_span.start..root_span.start),
            "no [upstream] table".into(),
            HINT_ONE_UPSTREAM,
        );
    }
    if cx.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(cx.into_error(file_name))
    }
}

/// What `turnpike check` points out without refusing the file (each a [`Problem`] whose message
/// starts with `warning:`, at the key's line:col): an admin listener on an address other than
/// loopback (the admin API and `/metrics` are meant for the machine itself).
pub fn warnings(src: &str, cfg: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(admin) = &cfg.admin else {
        return out;
    };
    let ip = admin.listen.ip();
    if !ip.is_loopback() {
        let (line, col) = DeTable::parse(src)
            .ok()
            .and_then(|root| span_of_path(root.get_ref(), "admin.listen"))
            .map_or((0, 0), |span| line_col(src, span.start));
        let what = if ip.is_unspecified() {
            "every address of the machine"
        } else {
            "an address other than loopback"
        };
        out.push(Problem {
            line,
            col,
            message: format!(
                "warning: the admin listener binds {} ({what}): /metrics, the dashboard and the admin API are reachable from the network",
                admin.listen
            ),
            hint: "bind it to loopback (listen = \"127.0.0.1:8403\") and reach it over SSH or a reverse proxy with its own authentication".into(),
        });
    }
    out
}

/// The place of a dotted path (`limits.tools.search.burst`) in the document: the deepest key
/// of it that is there.
fn span_of_path(root: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let segs: Vec<&str> = path.split('.').collect();
    let mut table = root;
    let mut found = None;
    let mut i = 0;
    while i < segs.len() {
        // A key may itself hold dots (a tool or method name): the longest match first.
        let hit = (i + 1..=segs.len())
            .rev()
            .find_map(|j| table.get(segs[i..j].join(".").as_str()).map(|v| (j, v)));
        let Some((j, v)) = hit else { break };
        found = Some(v.span());
        i = j;
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}

/// Deserializing one value of the parsed document.
trait FromDe: Sized {
    fn deserialize_from(v: &Spanned<DeValue<'_>>) -> Result<Self, toml::de::Error>;
}

impl<T: DeserializeOwned> FromDe for T {
    fn deserialize_from(v: &Spanned<DeValue<'_>>) -> Result<Self, toml::de::Error> {
        T::deserialize(ValueDeserializer::from(v.clone()))
    }
}

struct Cx<'s> {
    src: &'s str,
    problems: Vec<Problem>,
    /// Where prices name `l402` (each is an error when there is no `[lightning]`).
    l402_prices: Vec<Range<usize>>,
    /// Where prices name `oauth` (each is an error when there is no `[oauth]`).
    oauth_prices: Vec<Range<usize>>,
}

impl<'s> Cx<'s> {
    fn into_error(mut self, file: &str) -> ConfigError {
        self.problems.sort_by_key(|p| (p.line, p.col));
        ConfigError {
            file: file.into(),
            problems: self.problems,
        }
    }

    fn problem(&mut self, span: Option<Range<usize>>, message: String, hint: &str) {
        let (line, col) = span.map_or((0, 0), |s| line_col(self.src, s.start));
        self.problems.push(Problem {
            line,
            col,
            message,
            hint: hint.into(),
        });
    }

    fn de_error(&mut self, e: toml::de::Error, fallback: Range<usize>, hint: &str) {
        let span = e.span().unwrap_or(fallback);
        self.problem(Some(span), e.message().trim().to_string(), hint);
    }

    fn table<'a, 'i>(
        &mut self,
        v: &'a Spanned<DeValue<'i>>,
        what: &str,
    ) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.problem(
                    Some(v.span()),
                    format!("{what} must be a table, found {}", other.type_str()),
                    "write it as a [table] header followed by key = value lines",
                );
                None
            }
        }
    }

    /// Deserializes `table[key]` into `T`, recording a problem on failure.
    fn field<T: DeserializeOwned>(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        hint: &str,
    ) -> Option<(T, Range<usize>)> {
        let v = table.get(key)?;
        match T::deserialize_from(v) {
            Ok(x) => Some((x, v.span())),
            Err(e) => {
                self.de_error(e, v.span(), hint);
                None
            }
        }
    }

    /// A secret given inline (`keys.0`) or named by an environment variable (`keys.1`, read
    /// now, trimmed), with the span to report it at. `Ok(None)`: neither key (or a value that is
    /// not a string, recorded as a problem); `Err(())`: both keys (the problem says `both`), or
    /// a variable that is unset or empty.
    fn inline_or_env(
        &mut self,
        t: &DeTable<'_>,
        keys: (&str, &str),
        both: &str,
        hint: &str,
    ) -> Result<Option<(String, Range<usize>)>, ()> {
        let inline = self.field::<String>(t, keys.0, hint);
        let env = self.field::<String>(t, keys.1, hint);
        match (inline, env) {
            (Some(_), Some((_, s))) => {
                self.problem(Some(s), both.into(), hint);
                Err(())
            }
            (Some(v), None) => Ok(Some(v)),
            (None, Some((var, s))) => match std::env::var(&var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some((v.trim().to_owned(), s))),
                _ => {
                    self.problem(
                        Some(s),
                        format!("environment variable {var} is not set"),
                        hint,
                    );
                    Err(())
                }
            },
            (None, None) => Ok(None),
        }
    }

    fn unknown_keys(&mut self, table: &DeTable<'_>, section: &str, known: &[&str]) {
        for k in table.keys() {
            let name: &str = k.get_ref();
            if !known.contains(&name) {
                self.problem(
                    Some(k.span()),
                    format!("unknown key `{name}` in {section}"),
                    &format!("the keys of {section} are: {}", known.join(", ")),
                );
            }
        }
    }

    fn server(&mut self, t: &DeTable<'_>, s: &mut ServerConfig) {
        self.unknown_keys(
            t,
            "[server]",
            &[
                "listen",
                "path",
                "allowed_hosts",
                "allowed_origins",
                "challenge_mode",
                "max_body_bytes",
                "data_dir",
                "public_url",
                "header_read_timeout_secs",
                "body_read_timeout_secs",
                "shutdown_timeout_secs",
                "watch_config",
                "max_connections",
                "max_connections_per_address",
                "first_byte_timeout_secs",
                "connection_idle_timeout_secs",
                "http2_max_concurrent_streams",
                "http2_keepalive_secs",
            ],
        );
        const LISTEN: &str =
            "write an IP address and port, e.g. \"127.0.0.1:8402\" or \"[::1]:8402\"";
        if let Some((v, span)) = self.field::<String>(t, "listen", LISTEN) {
            match v.parse::<SocketAddr>() {
                Ok(a) => s.listen = a,
                Err(_) => self.problem(
                    Some(span),
                    format!("listen address {v:?} is not an IP address with a port"),
                    LISTEN,
                ),
            }
        }
        if let Some((v, span)) = self.field::<String>(t, "path", HINT_PATH) {
            if !v.starts_with('/') || v.contains(['?', '#', ' ']) {
                self.problem(
                    Some(span),
                    format!("path {v:?} is not an absolute path"),
                    HINT_PATH,
                );
            } else {
                s.path = v;
            }
        }
        self.hosts_and_origins(t, &mut s.allowed_hosts, &mut s.allowed_origins);
        const MODE: &str = "use \"auto\", \"http\" or \"in-band\"";
        if let Some((v, span)) = self.field::<String>(t, "challenge_mode", MODE) {
            match ChallengeMode::parse(&v) {
                Some(m) => s.challenge_mode = m,
                None => self.problem(Some(span), format!("unknown challenge_mode {v:?}"), MODE),
            }
        }
        if let Some((v, span)) = self.field::<u64>(t, "max_body_bytes", HINT_POSITIVE) {
            match usize::try_from(v) {
                Ok(n) if n >= 1 => s.max_body_bytes = n,
                _ => self.problem(
                    Some(span),
                    "max_body_bytes must be at least 1".into(),
                    HINT_POSITIVE,
                ),
            }
        }
        if let Some((v, _)) = self.field::<PathBuf>(t, "data_dir", "write a directory path") {
            s.data_dir = v;
        }
        if let Some((v, span)) = self.field::<String>(t, "public_url", HINT_PUBLIC_URL) {
            match check_public_url(&v) {
                Ok(()) => s.public_url = Some(v),
                Err(e) => self.problem(
                    Some(span),
                    format!("public_url {v:?}: {e}"),
                    HINT_PUBLIC_URL,
                ),
            }
        }
        if let Some((v, _)) = self.field::<bool>(t, "watch_config", "write true or false") {
            s.watch_config = v;
        }
        for (key, slot) in [
            ("header_read_timeout_secs", &mut s.header_read_timeout_secs),
            ("body_read_timeout_secs", &mut s.body_read_timeout_secs),
            ("shutdown_timeout_secs", &mut s.shutdown_timeout_secs),
            ("first_byte_timeout_secs", &mut s.first_byte_timeout_secs),
            (
                "connection_idle_timeout_secs",
                &mut s.connection_idle_timeout_secs,
            ),
            ("http2_keepalive_secs", &mut s.http2_keepalive_secs),
        ] {
            if let Some((v, span)) = self.field::<u64>(t, key, HINT_POSITIVE) {
                if v == 0 {
                    self.problem(
                        Some(span),
                        format!("{key} must be at least 1"),
                        HINT_POSITIVE,
                    );
                } else {
                    *slot = v;
                }
            }
        }
        for (key, slot) in [
            ("max_connections", &mut s.max_connections),
            (
                "max_connections_per_address",
                &mut s.max_connections_per_address,
            ),
        ] {
            if let Some((v, span)) = self.field::<u64>(t, key, HINT_POSITIVE) {
                match usize::try_from(v) {
                    Ok(n) if n >= 1 => *slot = n,
                    _ => self.problem(
                        Some(span),
                        format!("{key} must be at least 1"),
                        HINT_POSITIVE,
                    ),
                }
            }
        }
        if let Some((v, span)) = self.field::<u64>(t, "http2_max_concurrent_streams", HINT_POSITIVE)
        {
            match u32::try_from(v) {
                Ok(n) if n >= 1 => s.http2_max_concurrent_streams = n,
                _ => self.problem(
                    Some(span),
                    "http2_max_concurrent_streams must be a whole number from 1 to 4294967295"
                        .into(),
                    HINT_POSITIVE,
                ),
            }
        }
    }

    /// `allowed_hosts` and `allowed_origins` of `[server]` or `[admin]`.
    fn hosts_and_origins(
        &mut self,
        t: &DeTable<'_>,
        hosts: &mut Vec<String>,
        origins: &mut Vec<String>,
    ) {
        if let Some((v, span)) = self.field::<Vec<String>>(t, "allowed_hosts", HINT_HOSTS) {
            if v.is_empty() {
                self.problem(
                    Some(span.clone()),
                    "allowed_hosts is empty".into(),
                    HINT_HOSTS,
                );
            }
            for h in &v {
                if h.is_empty() || h.contains("://") || h.contains('/') {
                    self.problem(
                        Some(span.clone()),
                        format!("{h:?} is not a host name"),
                        "write host names without scheme or path, e.g. \"example.com\"",
                    );
                }
            }
            *hosts = v;
        }
        const ORIGINS: &str =
            "write origins as scheme://host[:port], e.g. \"https://app.example.com\", or \"null\"";
        if let Some((v, span)) = self.field::<Vec<String>>(t, "allowed_origins", ORIGINS) {
            for o in &v {
                if o != "null" && !(o.starts_with("http://") || o.starts_with("https://")) {
                    self.problem(
                        Some(span.clone()),
                        format!("{o:?} is not an origin"),
                        ORIGINS,
                    );
                }
            }
            *origins = v;
        }
    }

    /// `[admin]`: listen, token or token_env, metrics_public, allowed_hosts, allowed_origins.
    fn admin(&mut self, t: &DeTable<'_>, span: Range<usize>) -> Option<AdminConfig> {
        const HINT: &str = "write token_env = \"TURNPIKE_ADMIN_TOKEN\" (the variable holds the token, e.g. from `openssl rand -hex 24`) or token = \"<at least 16 characters>\"";
        const LISTEN: &str = "write an IP address and port, e.g. \"127.0.0.1:8403\"";
        self.unknown_keys(
            t,
            "[admin]",
            &[
                "listen",
                "token",
                "token_env",
                "metrics_public",
                "allowed_hosts",
                "allowed_origins",
            ],
        );
        let before = self.problems.len();
        let mut listen: SocketAddr = DEFAULT_ADMIN_LISTEN.parse().ok()?;
        if let Some((v, s)) = self.field::<String>(t, "listen", LISTEN) {
            match v.parse::<SocketAddr>() {
                Ok(a) => listen = a,
                Err(_) => self.problem(
                    Some(s),
                    format!("listen address {v:?} is not an IP address with a port"),
                    LISTEN,
                ),
            }
        }
        let metrics_public = self
            .field::<bool>(t, "metrics_public", "write true or false")
            .is_none_or(|(v, _)| v);
        let mut hosts = ServerConfig::default();
        self.hosts_and_origins(t, &mut hosts.allowed_hosts, &mut hosts.allowed_origins);
        let token = match self.inline_or_env(
            t,
            ("token", "token_env"),
            "give the admin token one way only: token or token_env",
            HINT,
        ) {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.problem(Some(span), "[admin] needs a token".into(), HINT);
                None
            }
            Err(()) => None,
        };
        if let Some((v, s)) = &token {
            if v.chars().count() < 16 {
                self.problem(
                    Some(s.clone()),
                    "the admin token is shorter than 16 characters".into(),
                    HINT,
                );
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(AdminConfig {
            listen,
            token: Secret::new(token?.0),
            metrics_public,
            allowed_hosts: hosts.allowed_hosts,
            allowed_origins: hosts.allowed_origins,
        })
    }

    fn upstream(&mut self, t: &DeTable<'_>, span: Range<usize>, u: &mut UpstreamConfig) {
        self.unknown_keys(
            t,
            "[upstream]",
            &[
                "url",
                "command",
                "env",
                "idle_timeout_secs",
                "response_timeout_secs",
                "stream_idle_timeout_secs",
                "era",
            ],
        );
        const ERA: &str = "use \"auto\", \"2025\" or \"2026-07-28\"";
        if let Some((v, vspan)) = self.field::<String>(t, "era", ERA) {
            match turnpike_era::EraSetting::parse(&v) {
                Some(e) => u.era = e,
                None => self.problem(Some(vspan), format!("unknown era {v:?}"), ERA),
            }
        }
        if let Some((v, vspan)) = self.field::<String>(t, "url", HINT_URL) {
            if let Err(e) = check_url(&v) {
                self.problem(Some(vspan), format!("upstream url {v:?}: {e}"), HINT_URL);
            }
            u.url = Some(v);
        }
        if let Some((v, vspan)) = self.field::<Vec<String>>(t, "command", HINT_COMMAND) {
            if v.first().is_none_or(|p| p.is_empty()) {
                self.problem(Some(vspan), "command is empty".into(), HINT_COMMAND);
            }
            u.command = Some(v);
        }
        if let Some((v, _)) = self.field::<BTreeMap<String, String>>(
            t,
            "env",
            "write env = { NAME = \"value\" } with string values",
        ) {
            u.env = v;
        }
        if let Some((v, vspan)) = self.field::<u64>(t, "idle_timeout_secs", HINT_POSITIVE) {
            if v == 0 {
                self.problem(
                    Some(vspan),
                    "idle_timeout_secs must be at least 1".into(),
                    HINT_POSITIVE,
                );
            } else {
                u.idle_timeout_secs = v;
            }
        }
        for key in ["response_timeout_secs", "stream_idle_timeout_secs"] {
            if let Some((v, vspan)) = self.field::<u64>(t, key, HINT_TIMEOUT) {
                if v == 0 || v > MAX_UPSTREAM_TIMEOUT_SECS {
                    self.problem(
                        Some(vspan),
                        format!("{key} must be between 1 and {MAX_UPSTREAM_TIMEOUT_SECS}"),
                        HINT_TIMEOUT,
                    );
                } else if key == "response_timeout_secs" {
                    u.response_timeout_secs = v;
                } else {
                    u.stream_idle_timeout_secs = v;
                }
            }
        }
        let has_url = t.get("url").is_some();
        let has_cmd = t.get("command").is_some();
        if has_url == has_cmd {
            let what = if has_url {
                "[upstream] sets both url and command"
            } else {
                "[upstream] sets neither url nor command"
            };
            self.problem(Some(span), what.into(), HINT_ONE_UPSTREAM);
        }
    }

    fn stdio(&mut self, t: &DeTable<'_>, s: &mut StdioSection) {
        const KEYS: [&str; 4] = [
            "max_sessions",
            "session_memory_mib",
            "max_sessions_per_caller",
            "spawns_per_minute_per_caller",
        ];
        self.unknown_keys(t, "[stdio]", &KEYS);
        let positive = |cx: &mut Self, key: &str, max: u64| -> Option<u64> {
            let (v, span) = cx.field::<u64>(t, key, HINT_POSITIVE)?;
            if v == 0 || v > max {
                cx.problem(
                    Some(span),
                    format!("[stdio] {key} must be between 1 and {max}"),
                    HINT_POSITIVE,
                );
                return None;
            }
            Some(v)
        };
        const MANY: u64 = 1 << 20;
        if let Some(v) = positive(self, KEYS[0], MANY) {
            s.max_sessions = usize::try_from(v).ok();
        }
        if let Some(v) = positive(self, KEYS[1], MANY) {
            s.session_memory_mib = v;
        }
        if let Some(v) = positive(self, KEYS[2], MANY).and_then(|v| usize::try_from(v).ok()) {
            s.max_sessions_per_caller = v;
        }
        if let Some(v) = positive(self, KEYS[3], MANY).and_then(|v| u32::try_from(v).ok()) {
            s.spawns_per_minute_per_caller = v;
        }
    }

    fn prices(&mut self, t: &DeTable<'_>, table: &str) -> BTreeMap<String, PriceConfig> {
        let mut out = BTreeMap::new();
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            let section = format!("[{table}.{}]", quote_key(name));
            let Some(pt) = self.table(v, &section) else {
                continue;
            };
            if let Some(p) = self.price(pt, &section, v.span()) {
                out.insert(name.to_owned(), p);
            }
        }
        out
    }

    fn price(&mut self, t: &DeTable<'_>, section: &str, span: Range<usize>) -> Option<PriceConfig> {
        let before = self.problems.len();
        for k in t.keys() {
            let name: &str = k.get_ref();
            match name {
                "free" | "pow" | "l402" | "oauth" => {}
                other => self.problem(
                    Some(k.span()),
                    format!("unknown rail or key `{other}` in {section}"),
                    HINT_PRICE,
                ),
            }
        }
        let free = self.field::<bool>(t, "free", HINT_PRICE);
        let pow = self.field::<u64>(t, "pow", HINT_EFFORT);
        let l402 = t.get("l402").and_then(|v| self.l402_price(v));
        let oauth = t.get("oauth").and_then(|v| self.oauth_price(v));
        if let Some((0, s)) = &pow {
            self.problem(
                Some(s.clone()),
                "pow effort must be at least 1".into(),
                HINT_EFFORT,
            );
        }
        let priced = pow.is_some() || l402.is_some() || oauth.is_some();
        match (&free, priced) {
            (Some((true, s)), true) => self.problem(
                Some(s.clone()),
                format!("{section} is both free and priced"),
                HINT_PRICE,
            ),
            (Some((false, s)), false) => self.problem(
                Some(s.clone()),
                format!("{section} says free = false but names no price"),
                HINT_PRICE,
            ),
            (None, false)
                if t.get("free").is_none()
                    && t.get("pow").is_none()
                    && t.get("l402").is_none()
                    && t.get("oauth").is_none()
                    && self.problems.len() == before =>
            {
                self.problem(Some(span), format!("{section} names no price"), HINT_PRICE)
            }
            _ => {}
        }
        if self.problems.len() > before {
            return None;
        }
        Some(PriceConfig {
            free: free.is_some_and(|(f, _)| f),
            pow: pow.map(|(p, _)| p),
            l402,
            oauth,
        })
    }

    /// `oauth = true` or `oauth = { scopes = ["a", "b"] }`.
    fn oauth_price(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Vec<String>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            scopes: Vec<String>,
        }
        self.oauth_prices.push(v.span());
        match v.get_ref() {
            DeValue::Boolean(true) => Some(Vec::new()),
            DeValue::Boolean(false) => {
                self.problem(
                    Some(v.span()),
                    "oauth = false offers nothing: remove the key instead".into(),
                    HINT_OAUTH_PRICE,
                );
                None
            }
            _ => match Raw::deserialize_from(v) {
                Ok(r) => {
                    let mut scopes: Vec<String> = Vec::new();
                    for s in r.scopes {
                        if !turnpike_oauth::config::is_scope_token(&s) {
                            self.problem(
                                Some(v.span()),
                                format!("{s:?} is not a scope (printable ASCII without spaces, '\"' or '\\')"),
                                HINT_OAUTH_PRICE,
                            );
                            return None;
                        }
                        if !scopes.contains(&s) {
                            scopes.push(s);
                        }
                    }
                    Some(scopes)
                }
                Err(e) => {
                    self.de_error(e, v.span(), HINT_OAUTH_PRICE);
                    None
                }
            },
        }
    }

    /// `[oauth]`: the rail's keys (checked by `turnpike_oauth`, each problem placed at its key)
    /// and the gateway's `forward_identity` / `identity_secret` / `identity_secret_env`.
    fn oauth(
        &mut self,
        t: &DeTable<'_>,
        span: Range<usize>,
        public_url: &str,
    ) -> Option<OAuthSection> {
        const OWN: &[&str] = &["forward_identity", "identity_secret", "identity_secret_env"];
        let before = self.problems.len();
        let mut known: Vec<&str> = OAUTH_RAIL_KEYS.to_vec();
        known.extend_from_slice(OWN);
        self.unknown_keys(t, "[oauth]", &known);
        let mut plain = toml::Table::new();
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            if OWN.contains(&name) || !OAUTH_RAIL_KEYS.contains(&name) {
                continue;
            }
            match toml::Value::deserialize_from(v) {
                Ok(val) => {
                    plain.insert(name.to_owned(), val);
                }
                Err(e) => self.de_error(e, v.span(), HINT_OAUTH),
            }
        }
        if t.get("issuer").is_none() {
            self.problem(
                Some(span.clone()),
                "[oauth] names no issuer".into(),
                "write issuer = \"https://auth.example.com\", exactly as the tokens carry it in `iss`",
            );
        }
        let rail = if t.get("issuer").is_none() {
            None
        } else {
            match OAuthConfig::deserialize(toml::Value::Table(plain.clone())) {
                Ok(c) => Some(c),
                Err(e) => {
                    // Find the key at fault: each one alone beside a placeholder issuer.
                    let mut placed = false;
                    for (k, v) in t.iter() {
                        let name: &str = k.get_ref();
                        let Some(val) = plain.get(name) else { continue };
                        let mut one = toml::Table::new();
                        one.insert("issuer".into(), toml::Value::String("https://x".into()));
                        one.insert(name.to_owned(), val.clone());
                        if let Err(e1) = OAuthConfig::deserialize(toml::Value::Table(one)) {
                            self.problem(
                                Some(v.span()),
                                format!("[oauth] {name}: {}", e1.message().trim()),
                                HINT_OAUTH,
                            );
                            placed = true;
                        }
                    }
                    if !placed {
                        self.problem(
                            Some(span.clone()),
                            format!("[oauth]: {}", e.message().trim()),
                            HINT_OAUTH,
                        );
                    }
                    None
                }
            }
        };
        let mut forward_identity = ForwardIdentity::None;
        const FWD: &str = "write forward_identity = \"none\" or \"signed\"";
        if let Some((v, vspan)) = self.field::<String>(t, "forward_identity", FWD) {
            match v.as_str() {
                "none" => {}
                "signed" => forward_identity = ForwardIdentity::Signed,
                other => self.problem(
                    Some(vspan),
                    format!("unknown forward_identity {other:?}"),
                    FWD,
                ),
            }
        }
        let mut identity_secret = None;
        let secret = self
            .inline_or_env(
                t,
                ("identity_secret", "identity_secret_env"),
                "give identity_secret one way only: inline or from identity_secret_env",
                HINT_IDENTITY_SECRET,
            )
            .ok()
            .flatten();
        if let Some((v, s)) = secret {
            if v.len() == 64 && v.bytes().all(|c| c.is_ascii_hexdigit()) {
                identity_secret = Some(Secret::new(v));
            } else {
                self.problem(
                    Some(s),
                    "identity_secret must be 64 hex digits".into(),
                    HINT_IDENTITY_SECRET,
                );
            }
        }
        if forward_identity == ForwardIdentity::Signed
            && identity_secret.is_none()
            && self.problems.len() == before
        {
            let s = t.get("forward_identity").map(|v| v.span());
            self.problem(
                s,
                "forward_identity = \"signed\" needs identity_secret".into(),
                HINT_IDENTITY_SECRET,
            );
        }
        let rail = rail?;
        // The rail's own checks, with the resource defaulted as the gateway will.
        if let Err(e) = rail.clone().with_default_resource(public_url).validate() {
            for p in e.problems {
                let mut path = p
                    .strip_prefix("oauth.")
                    .and_then(|r| r.split(':').next())
                    .unwrap_or("")
                    .split('.');
                let mut at = t.get(path.next().unwrap_or(""));
                // A key of a sub-table (`introspection.per_minute`) is placed at that key.
                if let (Some(v), Some(sub)) = (at, path.next()) {
                    if let DeValue::Table(inner) = v.get_ref() {
                        at = inner.get(sub).or(at);
                    }
                }
                let at = at.map(|v| v.span()).unwrap_or(span.clone());
                self.problem(Some(at), p, HINT_OAUTH);
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(OAuthSection {
            rail,
            forward_identity,
            identity_secret,
        })
    }

    /// `l402 = { msat = N | sat = N, mode = "…", bundle = N }`.
    fn l402_price(&mut self, v: &Spanned<DeValue<'_>>) -> Option<L402Price> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            msat: Option<u64>,
            sat: Option<u64>,
            mode: Option<String>,
            bundle: Option<u64>,
        }
        self.l402_prices.push(v.span());
        let raw = match Raw::deserialize_from(v) {
            Ok(r) => r,
            Err(e) => {
                self.de_error(e, v.span(), HINT_L402);
                return None;
            }
        };
        let here = Some(v.span());
        let (msat, unit) = match (raw.msat, raw.sat) {
            (Some(m), None) => (m, 1),
            (None, Some(s)) => match s.checked_mul(1000) {
                Some(m) => (m, 1000),
                None => {
                    self.problem(here, "l402 sat price is too large".into(), HINT_L402);
                    return None;
                }
            },
            (Some(_), Some(_)) => {
                self.problem(here, "l402 names both msat and sat".into(), HINT_L402);
                return None;
            }
            (None, None) => {
                self.problem(here, "l402 names no amount".into(), HINT_L402);
                return None;
            }
        };
        if msat == 0 {
            self.problem(
                here,
                "an l402 price must be at least 1 msat".into(),
                HINT_L402,
            );
            return None;
        }
        let mode = match raw.mode.as_deref() {
            None | Some("per_call") => BillingMode::PerCall,
            Some("balance") => BillingMode::Balance,
            Some("time_pass") => BillingMode::TimePass,
            Some(other) => {
                self.problem(here, format!("unknown l402 mode {other:?}"), HINT_L402);
                return None;
            }
        };
        let bundle = match (mode, raw.bundle) {
            (_, None) => 0,
            (BillingMode::PerCall, Some(_)) => {
                self.problem(
                    here,
                    "bundle has no meaning for a per_call price".into(),
                    HINT_L402,
                );
                return None;
            }
            (BillingMode::Balance, Some(b)) => match b.checked_mul(unit) {
                Some(b) if b >= msat => b,
                _ => {
                    self.problem(
                        here,
                        "a balance bundle must buy at least one call".into(),
                        HINT_L402,
                    );
                    return None;
                }
            },
            (BillingMode::TimePass, Some(0)) => {
                self.problem(here, "a time pass of 0 seconds".into(), HINT_L402);
                return None;
            }
            (BillingMode::TimePass, Some(secs)) => secs,
        };
        Some(L402Price { msat, mode, bundle })
    }

    /// `[l402]`: the rail's settings and `store`.
    fn l402(&mut self, t: &DeTable<'_>, out: &mut L402Section) {
        const KEYS: &[&str] = &[
            "location",
            "invoice_expiry_secs",
            "token_ttl_secs",
            "pass_secs",
            "memo",
            "confirm_settlement",
            "max_macaroon_bytes",
            "max_caveats",
            "invoices_per_minute_per_caller",
            "invoices_per_minute",
            "store",
        ];
        self.unknown_keys(t, "[l402]", KEYS);
        let mut rail = L402Config::default();
        // Each key on its own, so that a mistake is reported where it is.
        macro_rules! key {
            ($name:ident, $ty:ty) => {
                if let Some((v, span)) = self.field::<$ty>(t, stringify!($name), HINT_L402_TABLE) {
                    rail.$name = v;
                    let _ = span;
                }
            };
        }
        key!(location, String);
        key!(invoice_expiry_secs, u64);
        key!(token_ttl_secs, u64);
        key!(pass_secs, u64);
        key!(memo, String);
        key!(confirm_settlement, turnpike_l402::ConfirmSettlement);
        key!(max_macaroon_bytes, usize);
        key!(max_caveats, usize);
        // 0 turns that bound off.
        key!(invoices_per_minute_per_caller, u32);
        key!(invoices_per_minute, u32);
        for (name, v) in [
            ("invoice_expiry_secs", rail.invoice_expiry_secs),
            ("token_ttl_secs", rail.token_ttl_secs),
            ("pass_secs", rail.pass_secs),
            ("max_macaroon_bytes", rail.max_macaroon_bytes as u64),
            ("max_caveats", rail.max_caveats as u64),
        ] {
            if v == 0 {
                let span = t.get(name).map(|v| v.span());
                self.problem(
                    span,
                    format!("[l402] {name} must be at least 1"),
                    HINT_POSITIVE,
                );
            }
        }
        out.rail = rail;
        if let Some(v) = t.get("store") {
            const STORE: &str = "write store = \"sqlite\" (the default, under data_dir), \"memory\" (lost on restart: tests only) or { kind = \"sqlite\", path = \"l402.sqlite\", fsync_every_commit = false }";
            match v.get_ref() {
                DeValue::String(s) if s.as_ref() == "memory" => out.store = StoreConfig::Memory,
                DeValue::String(s) if s.as_ref() == "sqlite" => out.store = StoreConfig::default(),
                DeValue::String(s) => {
                    self.problem(Some(v.span()), format!("unknown store {s:?}"), STORE)
                }
                _ => match StoreConfig::deserialize_from(v) {
                    Ok(s) => out.store = s,
                    Err(e) => self.de_error(e, v.span(), STORE),
                },
            }
        }
    }

    /// `[lightning]`: `backend = "…"` and that backend's keys; `<secret>_env = "VAR"` reads a
    /// secret from the environment.
    fn lightning(&mut self, t: &DeTable<'_>, span: Range<usize>) -> Option<LightningConfig> {
        const HTTP: &[&str] = &[
            "timeout_secs",
            "lookup_retries",
            "tls_cert_path",
            "allow_plain_http",
        ];
        let Some((kind, kspan)) = self.field::<String>(t, "backend", HINT_LIGHTNING) else {
            if t.get("backend").is_none() {
                self.problem(
                    Some(span),
                    "[lightning] names no backend".into(),
                    HINT_LIGHTNING,
                );
            }
            return None;
        };
        // Own keys, then the secret and the `<name>_env` key that may give it from the
        // environment.
        type Keys = (&'static [&'static str], (&'static str, &'static str));
        let (own, (secret, env_key)): Keys = match kind.as_str() {
            "lnd" => (
                &["url", "macaroon_hex", "macaroon_path"],
                ("macaroon_hex", "macaroon_env"),
            ),
            "cln" => (
                &["url", "rune", "rune_path", "node_id"],
                ("rune", "rune_env"),
            ),
            "phoenixd" => (
                &["url", "password", "password_path"],
                ("password", "password_env"),
            ),
            "lnbits" => (
                &["url", "api_key", "api_key_path"],
                ("api_key", "api_key_env"),
            ),
            "dev" => (
                &["network", "key_hex", "custodial", "dev_wallet"],
                ("key_hex", "key_env"),
            ),
            // Nostr Wallet Connect: the connection URI carries the client's secret key.
            "nwc" => (&["uri", "uri_path", "timeout_secs"], ("uri", "uri_env")),
            other => {
                self.problem(
                    Some(kspan),
                    format!("unknown lightning backend {other:?}"),
                    HINT_LIGHTNING,
                );
                return None;
            }
        };
        let mut known: Vec<String> = vec!["backend".into()];
        known.extend(own.iter().map(|s| s.to_string()));
        known.push(env_key.to_owned());
        if kind != "dev" && kind != "nwc" {
            known.extend(HTTP.iter().map(|s| s.to_string()));
        }
        let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
        let before = self.problems.len();
        self.unknown_keys(t, &format!("[lightning] ({kind})"), &known_refs);
        // Everything but `backend`, `dev_wallet` and the `_env` key, as a plain TOML table.
        let mut plain = toml::Table::new();
        plain.insert("kind".into(), toml::Value::String(kind.clone()));
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            if name == "backend" || name == "dev_wallet" || name == env_key {
                continue;
            }
            if !known_refs.contains(&name) {
                continue;
            }
            match toml::Value::deserialize_from(v) {
                Ok(val) => {
                    plain.insert(name.to_owned(), val);
                }
                Err(e) => self.de_error(e, v.span(), HINT_LIGHTNING),
            }
        }
        if let Some((var, vspan)) =
            self.field::<String>(t, env_key, "write the environment variable's name")
        {
            let path_key = format!("{}_path", secret.trim_end_matches("_hex"));
            if plain.contains_key(secret) || t.get(path_key.as_str()).is_some() {
                self.problem(
                    Some(vspan),
                    format!("give {secret} one way only: inline, as a file or from {env_key}"),
                    HINT_LIGHTNING,
                );
            } else {
                match std::env::var(&var) {
                    Ok(val) if !val.trim().is_empty() => {
                        plain.insert(
                            secret.to_owned(),
                            toml::Value::String(val.trim().to_owned()),
                        );
                    }
                    _ => self.problem(
                        Some(vspan),
                        format!("environment variable {var} is not set"),
                        "export it before starting turnpike, or give the secret as a file (_path)",
                    ),
                }
            }
        }
        let url_span = t.get("url").map(|v| v.span());
        let dev_wallet = match t.get("dev_wallet") {
            Some(v) => self.dev_wallet(v),
            None => None,
        };
        if self.problems.len() > before {
            return None;
        }
        match BackendConfig::deserialize(toml::Value::Table(plain)) {
            Ok(backend) => {
                if let Some(url) = match &backend {
                    BackendConfig::Lnd(c) => Some(&c.url),
                    BackendConfig::Cln(c) => Some(&c.url),
                    BackendConfig::Phoenixd(c) => Some(&c.url),
                    BackendConfig::Lnbits(c) => Some(&c.url),
                    BackendConfig::Dev(_) => None,
                    // The connection URI holds a private key; it is checked by the backend.
                    BackendConfig::Nwc(_) => None,
                } {
                    if let Err(e) = check_url(url) {
                        self.problem(url_span, format!("lightning url {url:?}: {e}"), HINT_URL);
                        return None;
                    }
                }
                Some(LightningConfig {
                    backend,
                    dev_wallet,
                })
            }
            Err(e) => {
                self.problem(
                    Some(span),
                    format!("[lightning] ({kind}): {}", e.message().trim()),
                    HINT_LIGHTNING,
                );
                None
            }
        }
    }

    fn dev_wallet(&mut self, v: &Spanned<DeValue<'_>>) -> Option<DevWalletConfig> {
        let t = self.table(v, "[lightning.dev_wallet]")?;
        self.unknown_keys(t, "[lightning.dev_wallet]", &["listen", "preimage_base64"]);
        let mut w = DevWalletConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            preimage_base64: false,
        };
        const LISTEN: &str = "write a loopback address and port, e.g. \"127.0.0.1:0\"";
        if let Some((s, span)) = self.field::<String>(t, "listen", LISTEN) {
            match s.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_loopback() => w.listen = a,
                _ => {
                    self.problem(
                        Some(span),
                        format!("{s:?} is not a loopback address"),
                        LISTEN,
                    );
                    return None;
                }
            }
        }
        if let Some((b, _)) = self.field::<bool>(t, "preimage_base64", "write true or false") {
            w.preimage_base64 = b;
        }
        Some(w)
    }
}

fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

/// The keys of `[oauth]` that belong to [`turnpike_oauth::OAuthConfig`].
const OAUTH_RAIL_KEYS: &[&str] = &[
    "issuer",
    "resource",
    "endpoint_url",
    "resource_metadata_url",
    "algorithms",
    "jwks_uri",
    "jwks_cache_secs",
    "jwks_min_refresh_secs",
    "jwks_fetch_spacing_ms",
    "clock_skew_secs",
    "introspection",
    "require_dpop",
    "dpop_algorithms",
    "dpop_iat_window_secs",
    "dpop_nonce",
    "dpop_nonce_lifetime_secs",
    "dpop_nonce_secret",
    "scopes_supported",
    "implied_scopes",
    "resource_name",
    "resource_documentation",
    "require_at_jwt",
    "token_cache_entries",
    "http_timeout_secs",
    "allow_plain_http",
];

/// Checks `server.public_url`: an absolute http(s) URL with a host and a path, without query or
/// fragment.
pub fn check_public_url(u: &str) -> Result<(), &'static str> {
    let uri = check_url(u)?;
    if uri.query().is_some() || u.contains('#') {
        return Err("the URL must not have a query or fragment");
    }
    if u.contains('@') {
        return Err("the URL must not carry user information");
    }
    Ok(())
}

/// `[[mount]]` and `[merge]` (`mount.rs`).
impl Cx<'_> {
    fn mounts(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<MountConfig> {
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(
                Some(v.span()),
                "mount must be an array of tables".into(),
                "write each one as a [[mount]] table",
            );
            return Vec::new();
        };
        let mut out: Vec<MountConfig> = Vec::new();
        for item in items.iter() {
            let Some(t) = self.table(item, "[[mount]]") else {
                continue;
            };
            self.unknown_keys(
                t,
                "[[mount]]",
                &["path", "name", "upstream", "tools", "methods"],
            );
            let mut m = MountConfig::default();
            match self.field::<String>(t, "path", HINT_PATH) {
                Some((p, span)) if p.starts_with('/') && !p.contains(['?', '#', ' ']) => {
                    if out.iter().any(|o| o.path == p) {
                        self.problem(Some(span), format!("two mounts at {p:?}"), HINT_PATH);
                    }
                    m.path = p;
                }
                Some((p, span)) => self.problem(
                    Some(span),
                    format!("path {p:?} is not an absolute path"),
                    HINT_PATH,
                ),
                None => self.problem(
                    Some(item.span()),
                    "[[mount]] has no path".into(),
                    "write path = \"/name/mcp\"",
                ),
            }
            m.name = match self.field::<String>(t, "name", "write name = \"short-name\"") {
                Some((n, span)) => {
                    if n.is_empty() || n.contains('/') {
                        self.problem(
                            Some(span),
                            format!("mount name {n:?} is empty or has a `/`"),
                            "write name = \"short-name\" (it prefixes clashing tool names, and [tools.\"<mount>/<tool>\"] names one mount's tool)",
                        );
                    }
                    n
                }
                None => default_name(&m.path),
            };
            if out.iter().any(|o| o.name == m.name) {
                self.problem(
                    Some(item.span()),
                    format!("two mounts named {:?}", m.name),
                    "give each [[mount]] its own name = \"…\" (the merged endpoint tells their tools apart by it)",
                );
            }
            match t.get("upstream") {
                Some(u) => {
                    if let Some(ut) = self.table(u, "[[mount]] upstream") {
                        self.upstream(ut, u.span(), &mut m.upstream);
                    }
                }
                None => self.problem(
                    Some(item.span()),
                    "[[mount]] has no upstream".into(),
                    "write upstream = { url = \"http://…\" } or upstream = { command = [\"…\"] }",
                ),
            }
            if let Some(tv) = t.get("tools") {
                if let Some(tt) = self.table(tv, "[mount.tools]") {
                    m.tools = self.prices(tt, "mount.tools");
                }
            }
            if let Some(mv) = t.get("methods") {
                if let Some(mt) = self.table(mv, "[mount.methods]") {
                    m.methods = self.prices(mt, "mount.methods");
                }
            }
            out.push(m);
        }
        out
    }

    /// Top-level `[tools."<mount>/<name>"]` keys price one mount's tool on the merged endpoint:
    /// the mount must be one the endpoint merges, and the name not empty.
    fn merged_tool_keys(&mut self, tools: &DeTable<'_>, cfg: &Config) {
        const HINT: &str = "write [tools.\"<mount>/<tool>\"] with the name of a merged [[mount]], or [tools.<tool>] for the tool on every mount";
        for k in tools.keys() {
            let key: &str = k.get_ref();
            let Some((mount, tool)) = key.split_once('/') else {
                continue;
            };
            let merged = cfg.merge.as_ref().is_some_and(|m| {
                cfg.mounts.iter().any(|x| x.name == mount)
                    && (m.mounts.is_empty() || m.mounts.iter().any(|n| n == mount))
            });
            if !merged {
                self.problem(
                    Some(k.span()),
                    format!(
                        "[tools.{}] names mount {mount:?}, which no [merge] endpoint merges",
                        quote_key(key)
                    ),
                    HINT,
                );
            } else if tool.is_empty() {
                self.problem(
                    Some(k.span()),
                    format!("[tools.{}] names no tool", quote_key(key)),
                    HINT,
                );
            }
        }
    }

    fn merge(&mut self, v: &Spanned<DeValue<'_>>, _mounts: &[MountConfig]) -> Option<MergeConfig> {
        let t = self.table(v, "[merge]")?;
        self.unknown_keys(t, "[merge]", &["path", "mounts"]);
        let mut m = MergeConfig::default();
        match self.field::<String>(t, "path", HINT_PATH) {
            Some((p, _)) if p.starts_with('/') => m.path = p,
            Some((p, span)) => self.problem(
                Some(span),
                format!("path {p:?} is not an absolute path"),
                HINT_PATH,
            ),
            None => self.problem(
                Some(v.span()),
                "[merge] has no path".into(),
                "write path = \"/all/mcp\"",
            ),
        }
        if let Some((names, _)) =
            self.field::<Vec<String>>(t, "mounts", "write mounts = [\"name\", …]")
        {
            m.mounts = names;
        }
        Some(m)
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"
path = "/gate"
allowed_hosts = ["localhost"]
challenge_mode = "in-band"
max_body_bytes = 1000

[upstream]
url = "http://127.0.0.1:3001/mcp"

[pow]
expiry_secs = 60
subpuzzles = 2

[tools.default]
pow = 200000
[tools.echo]
free = true
[tools.longRunningOperation]
pow = 2000000
[methods."resources/read"]
pow = 100000
"#;

    #[test]
    fn nwc_backend_parses_and_refuses_http_keys() {
        let base = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[tools.default]\nl402 = { sat = 1 }\n[lightning]\nbackend = \"nwc\"\n";
        let uri = "uri = \"nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4?relay=wss%3A%2F%2Frelay.example&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c\"\n";
        let c = parse(&format!("{base}{uri}timeout_secs = 5\n"), "t.toml").unwrap();
        match c.lightning.as_ref().map(|l| &l.backend) {
            Some(BackendConfig::Nwc(n)) => {
                assert_eq!(n.timeout_secs, 5);
                assert!(n.uri.is_some());
            }
            other => panic!("{other:?}"),
        }
        let e = parse(&format!("{base}{uri}lookup_retries = 2\n"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("lookup_retries"), "{e}");
        let e = parse(
            &format!("{base}uri_env = \"TURNPIKE_TEST_UNSET_NWC_URI\"\n"),
            "t.toml",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("TURNPIKE_TEST_UNSET_NWC_URI is not set"),
            "{e}"
        );
    }

    #[test]
    fn upstream_time_limits() {
        let base = "[upstream]\nurl = \"http://127.0.0.1:1/mcp\"\n";
        let c = parse(base, "t.toml").unwrap();
        assert_eq!(c.upstream.response_timeout_secs, 60);
        assert_eq!(c.upstream.stream_idle_timeout_secs, 120);
        let c = parse(
            &format!("{base}response_timeout_secs = 5\nstream_idle_timeout_secs = 7\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.upstream.response_timeout_secs, 5);
        assert_eq!(c.upstream.stream_idle_timeout_secs, 7);
        let e = parse(
            &format!("{base}response_timeout_secs = 0\nstream_idle_timeout_secs = \"x\"\n"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.toml:3:25: response_timeout_secs must be between 1 and 86400"),
            "{e}"
        );
        assert!(e.contains("t.toml:4:28:"), "{e}");
        let e = parse(
            &format!("{base}stream_idle_timeout_secs = 86401\n"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.toml:3:28: stream_idle_timeout_secs must be"),
            "{e}"
        );
    }

    #[test]
    fn reference_config_parses() {
        let c = parse(GOOD, "t.toml").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.server.path, "/gate");
        assert_eq!(c.server.challenge_mode, ChallengeMode::InBand);
        assert_eq!(c.server.max_body_bytes, 1000);
        assert_eq!(c.server.allowed_origins, Vec::<String>::new());
        assert_eq!(c.upstream.url.as_deref(), Some("http://127.0.0.1:3001/mcp"));
        assert_eq!(c.pow.expiry_secs, 60);
        assert_eq!(c.pow.subpuzzles, 2);
        let p = c.policy();
        assert_eq!(p.default_tool.offers, vec![Offer::Pow { effort: 200000 }]);
        assert!(p.price("tools/call", Some("echo")).is_free());
        assert_eq!(
            p.price("tools/call", Some("longRunningOperation")).offers,
            vec![Offer::Pow { effort: 2000000 }]
        );
        assert_eq!(
            p.price("resources/read", Some("x")).offers,
            vec![Offer::Pow { effort: 100000 }]
        );
        c.validate().unwrap();
    }

    #[test]
    fn mount_names() {
        assert_eq!(default_name("/files/mcp"), "files");
        assert_eq!(default_name("/"), "mount");
    }

    #[test]
    fn defaults() {
        let c = parse("[upstream]\ncommand = [\"srv\", \"--stdio\"]\n", "t").unwrap();
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(
            c.upstream.command,
            Some(vec!["srv".into(), "--stdio".into()])
        );
        assert_eq!(c.upstream.idle_timeout_secs, 900);
        assert!(
            c.policy().price("tools/call", Some("x")).is_free(),
            "no tools table = free"
        );
    }

    #[test]
    fn mounts_and_merge() {
        let src = r#"[server]
path = "/mcp"

[[mount]]
path = "/a/mcp"
upstream = { url = "http://127.0.0.1:1/mcp", era = "2026-07-28" }
[mount.tools.default]
pow = 1000

[[mount]]
path = "/b/mcp"
name = "local"
upstream = { command = ["srv"] }

[merge]
path = "/all/mcp"
"#;
        let c = parse(src, "m.toml").unwrap();
        c.validate().unwrap();
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(c.mounts[0].name, "a");
        assert_eq!(c.mounts[0].upstream.era, turnpike_era::EraSetting::Modern);
        assert_eq!(c.mounts[0].tools["default"].pow, Some(1000));
        assert_eq!(c.mounts[1].name, "local");
        assert_eq!(c.mounts[1].upstream.command, Some(vec!["srv".to_owned()]));
        assert_eq!(c.merge.as_ref().unwrap().path, "/all/mcp");
        // Problems at their place.
        let bad = "[[mount]]\npath = \"rel\"\nupstream = { url = \"ftp://x\" }\nbogus = 1\n";
        let e = parse(bad, "b.toml").unwrap_err().to_string();
        assert!(
            e.contains("b.toml:2:8: path \"rel\" is not an absolute path"),
            "{e}"
        );
        assert!(e.contains("b.toml:3:20: upstream url"), "{e}");
        assert!(
            e.contains("b.toml:4:1: unknown key `bogus` in [[mount]]"),
            "{e}"
        );
    }

    #[test]
    fn merged_tool_keys_name_a_merged_mount() {
        let mounts = "[[mount]]\npath = \"/spy/mcp\"\nname = \"spy\"\nupstream = { url = \"http://x/mcp\" }\n[[mount]]\npath = \"/ev/mcp\"\nname = \"ev\"\nupstream = { command = [\"srv\"] }\n";
        let ok = format!("[tools.\"spy/echo\"]\npow = 5\n[tools.echo]\npow = 4\n{mounts}[merge]\npath = \"/all/mcp\"\n");
        let c = parse(&ok, "t.toml").unwrap();
        assert_eq!(c.tools["spy/echo"].pow, Some(5));
        // A mount the merged endpoint does not merge, no [merge] at all, no tool.
        let only_ev = format!("[tools.\"spy/echo\"]\npow = 5\n{mounts}[merge]\npath = \"/all/mcp\"\nmounts = [\"ev\"]\n");
        let e = parse(&only_ev, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("t.toml:1:8: [tools.\"spy/echo\"] names mount \"spy\", which no [merge] endpoint merges"),
            "{e}"
        );
        let no_merge = format!("[tools.\"spy/echo\"]\npow = 5\n{mounts}");
        assert!(parse(&no_merge, "t.toml").is_err());
        let no_tool = format!("[tools.\"ev/\"]\npow = 5\n{mounts}[merge]\npath = \"/all/mcp\"\n");
        let e = parse(&no_tool, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("t.toml:1:8: [tools.\"ev/\"] names no tool"),
            "{e}"
        );
        // Mount names: no `/`, and each its own.
        let slash =
            "[[mount]]\npath = \"/a/mcp\"\nname = \"a/b\"\nupstream = { url = \"http://x/mcp\" }\n";
        let e = parse(slash, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("t.toml:3:8: mount name \"a/b\" is empty or has a `/`"),
            "{e}"
        );
        let twice = "[[mount]]\npath = \"/a/mcp\"\nupstream = { url = \"http://x/mcp\" }\n[[mount]]\npath = \"/a/other\"\nupstream = { url = \"http://y/mcp\" }\n";
        let e = parse(twice, "t.toml").unwrap_err().to_string();
        assert!(e.contains("two mounts named \"a\""), "{e}");
    }

    #[test]
    fn upstream_era() {
        use turnpike_era::EraSetting;
        let c = parse("[upstream]\nurl = \"http://x/mcp\"\n", "t").unwrap();
        assert_eq!(c.upstream.era, EraSetting::Auto);
        let c = parse(
            "[upstream]\nurl = \"http://x/mcp\"\nera = \"2026-07-28\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.upstream.era, EraSetting::Modern);
        let c = parse("[upstream]\nurl = \"http://x/mcp\"\nera = \"2025\"\n", "t").unwrap();
        assert_eq!(c.upstream.era, EraSetting::Legacy);
        let e = parse(
            "[upstream]\nurl = \"http://x/mcp\"\nera = \"2024\"\n",
            "e.toml",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("e.toml:3:7: unknown era \"2024\""),
            "{e}"
        );
    }

    #[test]
    fn stdio_bounds() {
        let base = "[upstream]\ncommand = [\"srv\"]\n";
        let c = parse(base, "t").unwrap();
        assert_eq!(c.stdio, StdioSection::default());
        assert_eq!(c.stdio.max_sessions, None);
        assert_eq!(c.stdio.max_sessions_per_caller, 4);
        assert_eq!(c.stdio.spawns_per_minute_per_caller, 20);
        assert_eq!(c.stdio.session_memory_mib, 64);
        let (limits, _) = c.stdio.limits();
        assert!((8..=512).contains(&limits.max_sessions), "{limits:?}");
        let c = parse(
            &format!(
                "{base}[stdio]\nmax_sessions = 8\nmax_sessions_per_caller = 2\n\
                 spawns_per_minute_per_caller = 6\nsession_memory_mib = 32\n"
            ),
            "t",
        )
        .unwrap();
        let (limits, avail) = c.stdio.limits();
        assert_eq!(
            (limits.max_sessions, limits.max_sessions_per_caller),
            (8, 2)
        );
        assert_eq!(limits.spawns_per_minute_per_caller, 6);
        assert_eq!(avail, None, "a configured cap is not sized to memory");
        let e = parse(
            &format!(
                "{base}[stdio]\nmax_sessions = 0\nmax_sessions_per_caller = -1\nper_caller = 3\n"
            ),
            "s.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("s.toml:4:16: [stdio] max_sessions must be between 1 and"),
            "{e}"
        );
        assert!(e.contains("s.toml:5:27:"), "{e}");
        assert!(
            e.contains("s.toml:6:1: unknown key `per_caller` in [stdio]"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_with_its_place() {
        let src = r#"[server]
listen = "localhost"
path = "mcp"
challenge_mode = "sometimes"
colour = "blue"

[upstream]
url = "ftp://x/mcp"
command = ["a"]

[pow]
subpuzzles = 65

[tools.a]
pow = 0
[tools.b]
free = true
pow = 5
[tools.c]
l402 = { msat = 1000 }
[tools.d]
cost = 3
[tools.e]
free = false

[methods."tools/call"]
pow = 1
"#;
        let e = parse(src, "bad.toml").unwrap_err();
        let text = e.to_string();
        let expect = [
            "bad.toml:2:10: listen address \"localhost\"",
            "bad.toml:3:8: path \"mcp\"",
            "bad.toml:4:18: unknown challenge_mode",
            "bad.toml:5:1: unknown key `colour` in [server]",
            "bad.toml:7:1: [upstream] sets both url and command",
            "bad.toml:8:7: upstream url \"ftp://x/mcp\": the scheme must be http or https",
            "bad.toml:12:14: subpuzzles",
            "bad.toml:15:7: pow effort must be at least 1",
            "bad.toml:17:8: [tools.b] is both free and priced",
            "bad.toml:20:8: this price names l402, but there is no [lightning] section",
            "bad.toml:22:1: unknown rail or key `cost` in [tools.d]",
            "bad.toml:24:8: [tools.e] says free = false but names no price",
            "bad.toml:26:10: tools/call cannot be priced under [methods]",
        ];
        for x in expect {
            assert!(text.contains(x), "missing {x:?} in:\n{text}");
        }
        assert_eq!(e.problems.len(), expect.len(), "{text}");
        assert!(e.problems.iter().all(|p| !p.hint.is_empty()));
        assert!(text.contains("\n    hint: "));
    }

    #[test]
    fn invoice_rates_are_checked_with_their_place() {
        let cfg = parse(
            "[upstream]\nurl = \"http://a/mcp\"\n[l402]\ninvoices_per_minute_per_caller = 3\ninvoices_per_minute = 50\n",
            "i.toml",
        )
        .unwrap();
        assert_eq!(cfg.l402.rail.invoices_per_minute_per_caller, 3);
        assert_eq!(cfg.l402.rail.invoices_per_minute, 50);
        let cfg = parse("[upstream]\nurl = \"http://a/mcp\"\n", "i.toml").unwrap();
        assert_eq!(cfg.l402.rail.invoices_per_minute_per_caller, 20);
        assert_eq!(cfg.l402.rail.invoices_per_minute, 600);
        let e = parse(
            "[upstream]\nurl = \"http://a/mcp\"\n[l402]\ninvoices_per_minute_per_caller = -1\ninvoices_per_minute = \"many\"\n",
            "i.toml",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("i.toml:4:34:"), "{text}");
        assert!(text.contains("i.toml:5:23:"), "{text}");
        assert_eq!(e.problems.len(), 2, "{text}");
    }

    #[test]
    fn syntax_errors_have_places() {
        let e = parse("[server\nlisten = 1\n", "s.toml").unwrap_err();
        assert!(e.to_string().starts_with("s.toml:1:"), "{e}");
        let e = parse(
            "[upstream]\nurl = \"http://a/\"\nurl = \"http://b/\"\n",
            "d.toml",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("d.toml:3:"), "{e}");
    }

    #[test]
    fn type_errors_and_missing_upstream() {
        let e = parse("[server]\nmax_body_bytes = \"big\"\n", "t.toml").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("t.toml:2:18:"), "{text}");
        assert!(text.contains("no [upstream] table"), "{text}");
        let e = parse("server = 5\n[upstream]\nurl=\"http://x\"\n", "t.toml").unwrap_err();
        assert!(
            e.to_string()
                .contains("t.toml:1:10: [server] must be a table"),
            "{e}"
        );
        let e = parse("[upstream]\n", "t.toml").unwrap_err();
        assert!(
            e.to_string().contains("sets neither url nor command"),
            "{e}"
        );
    }

    #[test]
    fn validate_after_overrides() {
        let mut c = Config::default();
        assert!(c.validate().is_err());
        c.upstream.url = Some("http://127.0.0.1:1/mcp".into());
        c.validate().unwrap();
        c.upstream.command = Some(vec!["x".into()]);
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("both url and command"), "{e}");
    }

    #[test]
    fn oauth_prices_and_section() {
        let src = r#"[server]
listen = "127.0.0.1:9000"
[upstream]
url = "http://127.0.0.1:3001/mcp"
[tools.deploy]
oauth = { scopes = ["deploy:write", "deploy:write", "mcp:tools"] }
pow = 1000
[tools.read]
oauth = true
[oauth]
issuer = "http://127.0.0.1:4000"
scopes_supported = ["mcp:tools"]
forward_identity = "signed"
identity_secret = "0000000000000000000000000000000000000000000000000000000000000000"
"#;
        let c = parse(src, "o.toml").unwrap();
        c.validate().unwrap();
        assert_eq!(c.public_url(), "http://127.0.0.1:9000/mcp");
        let o = c.oauth_config().unwrap();
        assert_eq!(o.resource.as_deref(), Some("http://127.0.0.1:9000/mcp"));
        assert_eq!(
            c.oauth.as_ref().unwrap().forward_identity,
            ForwardIdentity::Signed
        );
        let p = c.policy();
        assert_eq!(
            p.price("tools/call", Some("deploy")).offers,
            vec![
                Offer::Pow { effort: 1000 },
                Offer::OAuth {
                    scopes: vec!["deploy:write".into(), "mcp:tools".into()]
                }
            ]
        );
        assert_eq!(
            p.price("tools/call", Some("read")).offers,
            vec![Offer::OAuth { scopes: vec![] }]
        );
    }

    #[test]
    fn oauth_mistakes_have_places() {
        let src = r#"[server]
public_url = "https://mcp.example.com/mcp?x=1"
[upstream]
url = "http://127.0.0.1:3001/mcp"
[tools.a]
oauth = { scopes = ["two words"] }
[tools.b]
oauth = false
[tools.c]
oauth = { scope = ["x"] }
[oauth]
issuer = "http://as.example.com"
clock_skew_secs = "soon"
colour = 1
forward_identity = "maybe"
"#;
        let e = parse(src, "o.toml").unwrap_err();
        let text = e.to_string();
        for x in [
            "o.toml:2:14: public_url",
            "o.toml:6:9: \"two words\" is not a scope",
            "o.toml:8:9: oauth = false",
            "o.toml:10:",
            "o.toml:13:19: [oauth] clock_skew_secs",
            "o.toml:14:1: unknown key `colour` in [oauth]",
            "o.toml:15:20: unknown forward_identity",
        ] {
            assert!(text.contains(x), "missing {x:?} in:\n{text}");
        }
        let src = "[upstream]\nurl = \"http://x/mcp\"\n[tools.a]\noauth = true\n";
        let e = parse(src, "n.toml").unwrap_err();
        assert!(
            e.to_string()
                .contains("n.toml:4:9: this price names oauth, but there is no [oauth] section"),
            "{e}"
        );
        assert!(
            e.to_string().contains("hint: add an [oauth] section"),
            "{e}"
        );
        let src = "[upstream]\nurl = \"http://x/mcp\"\n[oauth]\nissuer = \"http://as.example.com\"\nforward_identity = \"signed\"\n";
        let e = parse(src, "p.toml").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("p.toml:4:10: oauth.issuer: plain http"),
            "{text}"
        );
    }

    #[test]
    fn oauth_flood_bounds_are_checked_at_their_keys() {
        let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[oauth]
issuer = "https://as.example.com"
jwks_fetch_spacing_ms = 90000
[oauth.introspection]
client_id = "rs"
client_secret = "s"
per_address_per_minute = 0
max_in_flight = 5000
"#;
        let e = parse(src, "f.toml").unwrap_err();
        let text = e.to_string();
        for x in [
            "f.toml:5:25: oauth.jwks_fetch_spacing_ms: at most 60000",
            "f.toml:9:26: oauth.introspection.per_address_per_minute: must be at least 1",
            "f.toml:10:17: oauth.introspection.max_in_flight: must be 1 to 1024",
        ] {
            assert!(text.contains(x), "missing {x:?} in:\n{text}");
        }
        let ok = parse(
            "[upstream]\nurl = \"http://x/mcp\"\n[oauth]\nissuer = \"https://as.example.com\"\n\
             jwks_fetch_spacing_ms = 500\n[oauth.introspection]\nclient_id = \"rs\"\n\
             client_secret = \"s\"\nnegative_cache_secs = 10\nper_address_per_minute = 30\n\
             per_minute = 600\nmax_in_flight = 8\n",
            "g.toml",
        )
        .unwrap();
        let o = ok.oauth_config().unwrap();
        assert_eq!(o.jwks_fetch_spacing_ms, 500);
        let i = o.introspection.unwrap();
        assert_eq!(
            (
                i.negative_cache_secs,
                i.per_address_per_minute,
                i.per_minute,
                i.max_in_flight
            ),
            (10, 30, 600, 8)
        );
    }

    #[test]
    fn durable_store_postgres() {
        let ok = parse(
            r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[store]
backend = "redis"
redis_url = "redis://127.0.0.1:6379/0"
durable = "postgres"
postgres_url = "postgres://turnpike@127.0.0.1:5432/turnpike"
postgres_schema = "gw"
"#,
            "ok.toml",
        )
        .unwrap();
        assert_eq!(ok.store.durable, turnpike_limits::DurableBackend::Postgres);
        assert_eq!(ok.store.postgres_schema.as_deref(), Some("gw"));
        assert_eq!(
            Config::default().store.durable,
            turnpike_limits::DurableBackend::Embedded
        );
        let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[store]
durable = "postgres"
postgres_url_env = "TURNPIKE_TEST_UNSET_PG_URL"
postgres_schema = "No-Good"
"#;
        let text = parse(src, "bad.toml").unwrap_err().to_string();
        for x in [
            "bad.toml:6:19: store.postgres_schema: lower-case letters",
            "bad.toml:5:20: store.postgres_url_env: the environment variable TURNPIKE_TEST_UNSET_PG_URL is not set",
        ] {
            assert!(text.contains(x), "missing {x:?} in:\n{text}");
        }
        let src =
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[store]\ndurable = \"postgres\"\n";
        let text = parse(src, "bad.toml").unwrap_err().to_string();
        assert!(
            text.contains(
                "bad.toml:4:11: store.durable: durable = \"postgres\" needs postgres_url"
            ),
            "{text}"
        );
        let src = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[store]\ndurable = \"sql\"\n";
        let text = parse(src, "bad.toml").unwrap_err().to_string();
        assert!(text.contains("bad.toml:4:"), "{text}");
    }

    #[test]
    fn limits_budgets_and_store() {
        let ok = parse(
            r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[limits]
failure_mode = "open"
[limits.default]
burst = 80
rate = "40/s"
concurrency = 32
[limits.tools."search.v2"]
burst = 5
rate = "1/s"
[limits.rails.pow]
burst = 10
rate = "2/s"
[budgets]
calls_per_day = 10000
[store]
backend = "redis"
redis_url = "redis://127.0.0.1:6379/0"
"#,
            "ok.toml",
        )
        .unwrap();
        assert_eq!(ok.limits.default.burst, 80);
        assert_eq!(ok.limits.default.concurrency, Some(32));
        assert_eq!(ok.limits.tools["search.v2"].burst, 5);
        assert_eq!(ok.budgets.calls_per_day, Some(10000));
        assert_eq!(ok.store.backend, turnpike_limits::StoreBackend::Redis);
        // Defaults: on, agent-sized.
        let d = Config::default();
        assert!(d.limits.enabled);
        assert_eq!(d.limits.default.burst, 50);
        assert_eq!(d.limits.default.concurrency, Some(16));
        assert_eq!(d.store.backend, turnpike_limits::StoreBackend::Memory);

        // Values: each problem at its key.
        let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[limits.tools."search.v2"]
burst = 0
rate = "1/s"
[store]
backend = "redis"
"#;
        let e = parse(src, "bad.toml").unwrap_err();
        let text = e.to_string();
        for x in [
            "bad.toml:4:9: limits.tools.search.v2.burst: burst must be at least 1",
            "bad.toml:6:1: store.redis_url: the redis backend needs redis_url",
        ] {
            assert!(text.contains(x), "missing {x:?} in:\n{text}");
        }
        assert_eq!(e.problems.len(), 2, "{text}");
        // Types and syntax: where the bad value is.
        let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[limits.discovery]
burst = 5
rate = "often"
[budgets]
calls_a_day = 5
"#;
        let e = parse(src, "bad.toml").unwrap_err();
        let text = e.to_string();
        for x in [
            "bad.toml:5:8: a rate is written",
            "bad.toml:7:1: unknown field `calls_a_day`",
        ] {
            assert!(text.contains(x), "missing {x:?} in:\n{text}");
        }
    }

    #[test]
    fn connection_keys_and_admin_hosts() {
        let src = r#"[server]
max_connections = 500
max_connections_per_address = 8
first_byte_timeout_secs = 2
connection_idle_timeout_secs = 30
http2_max_concurrent_streams = 16
http2_keepalive_secs = 10

[upstream]
url = "http://127.0.0.1:3001/mcp"

[admin]
token = "0123456789abcdef"
allowed_hosts = ["admin.internal"]
allowed_origins = ["https://ops.example.com"]
"#;
        let c = parse(src, "t.toml").unwrap();
        assert_eq!(c.server.max_connections, 500);
        assert_eq!(c.server.max_connections_per_address, 8);
        assert_eq!(c.server.first_byte_timeout_secs, 2);
        assert_eq!(c.server.connection_idle_timeout_secs, 30);
        assert_eq!(c.server.http2_max_concurrent_streams, 16);
        assert_eq!(c.server.http2_keepalive_secs, 10);
        let admin = c.admin.as_ref().unwrap();
        assert_eq!(admin.allowed_hosts, vec!["admin.internal".to_string()]);
        assert_eq!(
            admin.allowed_origins,
            vec!["https://ops.example.com".to_string()]
        );
        assert!(warnings(src, &c).is_empty(), "loopback by default");
        // Defaults: loopback names for the admin listener too.
        let c = parse(
            "[upstream]\nurl = \"http://a/\"\n[admin]\ntoken = \"0123456789abcdef\"\n",
            "t",
        )
        .unwrap();
        let admin = c.admin.unwrap();
        assert_eq!(admin.allowed_hosts, ServerConfig::default().allowed_hosts);
        assert!(admin.allowed_origins.is_empty());

        let bad = r#"[server]
max_connections = 0
max_connections_per_address = -1
first_byte_timeout_secs = 0
connection_idle_timeout_secs = 0
http2_max_concurrent_streams = 5000000000
http2_keepalive_secs = 0

[upstream]
url = "http://127.0.0.1:3001/mcp"

[admin]
token = "0123456789abcdef"
allowed_hosts = []
allowed_origins = ["ops.example.com"]
"#;
        let e = parse(bad, "bad.toml").unwrap_err();
        let text = e.to_string();
        let expect = [
            "bad.toml:2:19: max_connections must be at least 1",
            "bad.toml:3:31: ",
            "bad.toml:4:27: first_byte_timeout_secs must be at least 1",
            "bad.toml:5:32: connection_idle_timeout_secs must be at least 1",
            "bad.toml:6:32: http2_max_concurrent_streams must be a whole number",
            "bad.toml:7:24: http2_keepalive_secs must be at least 1",
            "bad.toml:14:17: allowed_hosts is empty",
            "bad.toml:15:19: \"ops.example.com\" is not an origin",
        ];
        for x in expect {
            assert!(text.contains(x), "missing {x:?} in:\n{text}");
        }
        assert_eq!(e.problems.len(), expect.len(), "{text}");
    }

    #[test]
    fn an_admin_listener_off_loopback_is_a_warning_at_its_place() {
        for (listen, warned) in [
            ("0.0.0.0:8403", true),
            ("[::]:8403", true),
            ("10.1.2.3:8403", true),
            ("127.0.0.1:8403", false),
            ("[::1]:8403", false),
        ] {
            let src = format!(
                "[upstream]\nurl = \"http://a/\"\n\n[admin]\nlisten = \"{listen}\"\ntoken = \"0123456789abcdef\"\n"
            );
            let c = parse(&src, "t.toml").unwrap();
            let w = warnings(&src, &c);
            assert_eq!(w.len(), usize::from(warned), "{listen}: {w:?}");
            if let Some(p) = w.first() {
                assert_eq!((p.line, p.col), (5, 10));
                assert!(p.message.starts_with("warning: the admin listener binds"));
                assert!(!p.hint.is_empty());
            }
        }
    }

    #[test]
    fn challenge_budget_and_load_intervals_are_checked_at_their_line() {
        let d = Config::default();
        assert_eq!(d.limits.challenges.burst, 60);
        assert_eq!(d.pow.load.raise_interval_secs, 5);
        assert_eq!(d.pow.load.lower_interval_secs, 5);
        let src = r#"[upstream]
url = "http://127.0.0.1:3001/mcp"
[pow.load]
raise_interval_secs = 0
[limits.challenges]
burst = 0
rate = "5/s"
"#;
        let e = parse(src, "bad.toml").unwrap_err();
        let text = e.to_string();
        for x in [
            "bad.toml:4:23: ",
            "must be between 1 and 3600 seconds",
            "bad.toml:6:9: limits.challenges.burst: burst must be at least 1",
        ] {
            assert!(text.contains(x), "missing {x:?} in:\n{text}");
        }
        let ok = parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[pow.load]\nlower_interval_secs = 30\n\
             [limits.challenges]\nburst = 10\nrate = \"2/s\"\n",
            "ok.toml",
        )
        .unwrap();
        assert_eq!(ok.pow.load.lower_interval_secs, 30);
        assert_eq!(ok.limits.challenges.burst, 10);
    }

    #[test]
    fn load_reports_missing_file() {
        let e = load(Path::new("/nonexistent/turnpike.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/turnpike.toml: cannot read"),
            "{e}"
        );
    }
}
