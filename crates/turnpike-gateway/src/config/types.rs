//! The configuration's data: what [`super::parse`] builds. The sections other crates own are
//! their types ([`LimitsConfig`], [`StdioSection`], …; the rails' tables in [`Config::rails`],
//! each of its rail's type); the gateway's own (`[server]`, `[upstream]`, `[admin]`, prices,
//! mounts) are here, with the readers of their values in [`read`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use turnpike_conf::{check_url, Sections};
use turnpike_core::conf::{positive_u64, positive_usize};
use turnpike_core::{Offer, Policy, Price, RailId};
use turnpike_http::conns::ConnRules;
use turnpike_limits::{
    BudgetsConfig, IdentityQuotaConfig, LimitsConfig, StoreConfig as LimitsStoreConfig,
};
use turnpike_oauth::Secret;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[upstream]`.
    pub upstream: UpstreamConfig,
    /// `[tools.<name>]`; the entry named `default` prices every tool not named.
    pub tools: BTreeMap<String, PriceConfig>,
    /// `[methods."<method>"]`: prices of methods other than `tools/call`.
    pub methods: BTreeMap<String, PriceConfig>,
    /// The rails' tables (`[pow]`, `[l402]`, `[lightning]`, `[oauth]`, …), each read by its
    /// rail ([`crate::registry`]) as a type of its own and found with its crate's accessor
    /// (`turnpike_pow::conf::section`, …). A rail with a table it needs (`[lightning]`,
    /// `[oauth]`) is on when that table is here.
    pub rails: Sections,
    /// `[oauth]`'s keys of the gateway's own: what the upstream learns of the caller. `None`
    /// without `[oauth]`.
    pub identity: Option<IdentityConfig>,
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
    /// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP (owned by `turnpike-telemetry`).
    /// `None`: off, and the call path does no tracing work.
    pub telemetry: Option<TelemetrySection>,
    /// `[[policy]]`, then each price's `policy = "<expr>"`: access rules in CEL, in the order
    /// they are evaluated (docs/POLICY.md).
    pub policy_rules: Vec<turnpike_policy::RuleSpec>,
    /// `[classes.<name>]`: price/limit classes a `[[policy]]` rule with `action = "class"`
    /// puts callers in (docs/POLICY.md "Classes").
    pub classes: BTreeMap<String, ClassConfig>,
}

/// One `[classes.<name>]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassConfig {
    /// `[classes.<name>.limits]`: the bucket that replaces `[limits.rails.*]` and
    /// `[limits.default]` for the class's calls (`None`: those apply).
    pub limits: Option<IdentityQuotaConfig>,
    /// `[classes.<name>.tools.<tool>]`: prices replacing `[tools.<tool>]` (`default`:
    /// `[tools.default]`).
    pub tools: BTreeMap<String, PriceConfig>,
    /// `[classes.<name>.methods."<method>"]`: prices replacing `[methods."<method>"]`.
    pub methods: BTreeMap<String, PriceConfig>,
}

/// `[telemetry]`: where spans are exported (owned by `turnpike-telemetry`).
pub type TelemetrySection = turnpike_telemetry::TelemetryConfig;

/// `[stdio]`: how many stdio children may live, in all and per caller (owned by
/// `turnpike-upstream`).
pub type StdioSection = turnpike_upstream::stdio::StdioSettings;

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

/// `[oauth]`'s keys of the gateway's own (the rest of the table is the OAuth rail's).
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityConfig {
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8402`.
    #[serde(deserialize_with = "read::listen")]
    pub listen: SocketAddr,
    /// The endpoint path. Default `/mcp`.
    #[serde(deserialize_with = "read::path")]
    pub path: String,
    /// Host header values accepted, port ignored (`"*"` accepts any). Default localhost,
    /// 127.0.0.1 and [::1].
    #[serde(deserialize_with = "read::hosts")]
    pub allowed_hosts: Vec<String>,
    /// Origins accepted besides `http(s)://<allowed host>[:port]`. Default none.
    #[serde(deserialize_with = "read::origins")]
    pub allowed_origins: Vec<String>,
    /// How challenges are delivered. Default auto.
    #[serde(deserialize_with = "read::challenge_mode")]
    pub challenge_mode: ChallengeMode,
    /// Largest accepted POST body. Default 4 MiB.
    #[serde(deserialize_with = "positive_usize")]
    pub max_body_bytes: usize,
    /// Where keys are persisted. Default `turnpike-data`.
    pub data_dir: PathBuf,
    /// The public URL of the endpoint, as callers reach it (behind a proxy, its https URL).
    /// Default `http://<listen><path>`. The OAuth resource identifier and the DPoP `htu` of
    /// every call derive from it.
    #[serde(deserialize_with = "read::public_url")]
    pub public_url: Option<String>,
    /// Seconds a client has to send its request head. Default 10.
    #[serde(deserialize_with = "positive_u64")]
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send its request body. Default 30.
    #[serde(deserialize_with = "positive_u64")]
    pub body_read_timeout_secs: u64,
    /// Seconds in-flight calls and streams get to finish after a shutdown signal. Default 10.
    #[serde(deserialize_with = "positive_u64")]
    pub shutdown_timeout_secs: u64,
    /// Whether the configuration file is watched and reloaded when it changes. Default true.
    pub watch_config: bool,
    /// Open connections in all (each listener counts its own); a connection beyond it is
    /// closed at once. Lowered at start to fit the open-file limit. Default 10000.
    #[serde(deserialize_with = "positive_usize")]
    pub max_connections: usize,
    /// Open connections from one address (an IPv6 address counts as its /64); a connection
    /// beyond it is closed at once. Default 128.
    #[serde(deserialize_with = "positive_usize")]
    pub max_connections_per_address: usize,
    /// Seconds a new connection has to send the start of its request (enough bytes to tell
    /// HTTP/1 from HTTP/2). Default 5.
    #[serde(deserialize_with = "positive_u64")]
    pub first_byte_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in progress (HTTP/1 keep-alive,
    /// HTTP/2 with no open stream or still in its handshake). Default 60.
    #[serde(deserialize_with = "positive_u64")]
    pub connection_idle_timeout_secs: u64,
    /// Streams one HTTP/2 connection may have open at once. Default 100.
    #[serde(deserialize_with = "read::streams")]
    pub http2_max_concurrent_streams: u32,
    /// Seconds between HTTP/2 keep-alive pings, and how long the answer may take. Default 30.
    #[serde(deserialize_with = "positive_u64")]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// An MCP server's Streamable HTTP endpoint (`http://` or `https://`).
    #[serde(deserialize_with = "read::upstream_url")]
    pub url: Option<String>,
    /// A stdio MCP server: program and arguments.
    #[serde(deserialize_with = "read::command")]
    pub command: Option<Vec<String>>,
    /// Environment for the stdio child.
    pub env: BTreeMap<String, String>,
    /// Seconds after which an idle session's child is ended. Default 900.
    #[serde(deserialize_with = "positive_u64")]
    pub idle_timeout_secs: u64,
    /// Seconds the upstream has to send a call's response head; then 504 and the call is
    /// cancelled upstream ([`crate::deadline`]). Default 60.
    #[serde(deserialize_with = "read::upstream_timeout")]
    pub response_timeout_secs: u64,
    /// Longest silence, in seconds, within a streamed answer before the call's response; then
    /// a last JSON-RPC error event and the call is cancelled upstream. Default 120.
    #[serde(deserialize_with = "read::upstream_timeout")]
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

/// The price of one tool or method: `free = true`, or any of the rails' offers (several: the
/// caller chooses).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceConfig {
    /// The call is free.
    pub free: bool,
    /// The offers, one per rail, in the order the rails are registered ([`crate::registry`]).
    pub offers: Vec<Offer>,
    /// `policy = "<CEL expression>"` of a `[tools.<name>]`: the tool may be called only when
    /// it holds (an access rule ahead of `[[policy]]`, docs/POLICY.md).
    pub policy: Option<String>,
    /// `mode = "shadow"`: a dry run ([`Price::shadow`]).
    pub shadow: bool,
}

impl PriceConfig {
    /// A price of `offers`.
    pub fn of(offers: Vec<Offer>) -> Self {
        PriceConfig {
            free: false,
            offers,
            policy: None,
            shadow: false,
        }
    }

    /// The free price.
    pub fn free() -> Self {
        PriceConfig {
            free: true,
            offers: Vec::new(),
            policy: None,
            shadow: false,
        }
    }

    /// The price as the policy holds it.
    pub fn to_price(&self) -> Price {
        if self.free {
            return Price::free();
        }
        Price {
            offers: self.offers.clone(),
            shadow: self.shadow,
        }
    }

    /// The offer on `rail`, if any.
    pub fn offer(&self, rail: RailId) -> Option<&Offer> {
        self.offers.iter().find(|o| o.rail() == rail)
    }

    /// Sets the offer on `offer`'s rail (replacing the one there), in the rails' order.
    pub fn set_offer(&mut self, offer: Offer) {
        let rank = |r: RailId| {
            crate::registry::RAIL_CONFS
                .iter()
                .position(|c| c.id() == r)
                .unwrap_or(usize::MAX)
        };
        self.offers.retain(|o| o.rail() != offer.rail());
        let at = self
            .offers
            .iter()
            .position(|o| rank(o.rail()) > rank(offer.rail()))
            .unwrap_or(self.offers.len());
        self.offers.insert(at, offer);
    }
}

impl Config {
    /// Whether any price (of `[tools]` or `[methods]`) names `rail`.
    pub fn uses(&self, rail: RailId) -> bool {
        self.tools
            .values()
            .chain(self.methods.values())
            .any(|p| !p.free && p.offer(rail).is_some())
    }

    /// The public URL of the endpoint: `server.public_url`, else `http://<listen><path>`.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.clone(),
            None => format!("http://{}{}", self.server.listen, self.server.path),
        }
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
}

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

/// The readers of the gateway's own values (`deserialize_with`), each refusing what the key
/// cannot be with a message and a hint.
pub(super) mod read {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer};
    use turnpike_core::conf::hinted;

    use super::{check_public_url, check_url, ChallengeMode};
    use crate::config::hints::*;

    pub(crate) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        const LISTEN: &str =
            "write an IP address and port, e.g. \"127.0.0.1:8402\" or \"[::1]:8402\"";
        let v = String::deserialize(d)?;
        v.parse().map_err(|_| {
            hinted(
                format!("listen address {v:?} is not an IP address with a port"),
                LISTEN,
            )
        })
    }

    pub(crate) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let v = String::deserialize(d)?;
        if !v.starts_with('/') || v.contains(['?', '#', ' ']) {
            return Err(hinted(
                format!("path {v:?} is not an absolute path"),
                HINT_PATH,
            ));
        }
        Ok(v)
    }

    pub(crate) fn hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        if v.is_empty() {
            return Err(hinted("allowed_hosts is empty", HINT_HOSTS));
        }
        if let Some(h) = v
            .iter()
            .find(|h| h.is_empty() || h.contains("://") || h.contains('/'))
        {
            return Err(hinted(
                format!("{h:?} is not a host name"),
                "write host names without scheme or path, e.g. \"example.com\"",
            ));
        }
        Ok(v)
    }

    pub(crate) fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        const ORIGINS: &str =
            "write origins as scheme://host[:port], e.g. \"https://app.example.com\", or \"null\"";
        let v = Vec::<String>::deserialize(d)?;
        if let Some(o) = v
            .iter()
            .find(|o| *o != "null" && !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(hinted(format!("{o:?} is not an origin"), ORIGINS));
        }
        Ok(v)
    }

    pub(crate) fn challenge_mode<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<ChallengeMode, D::Error> {
        let v = String::deserialize(d)?;
        ChallengeMode::parse(&v).ok_or_else(|| {
            hinted(
                format!("unknown challenge_mode {v:?}"),
                "use \"auto\", \"http\" or \"in-band\"",
            )
        })
    }

    pub(crate) fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = String::deserialize(d)?;
        match check_public_url(&v) {
            Ok(()) => Ok(Some(v)),
            Err(e) => Err(hinted(format!("public_url {v:?}: {e}"), HINT_PUBLIC_URL)),
        }
    }

    pub(crate) fn streams<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        match u32::try_from(u64::deserialize(d)?) {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(hinted(
                "http2_max_concurrent_streams must be a whole number from 1 to 4294967295",
                HINT_POSITIVE,
            )),
        }
    }

    pub(crate) fn upstream_url<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        let v = String::deserialize(d)?;
        match check_url(&v) {
            Ok(_) => Ok(Some(v)),
            Err(e) => Err(hinted(format!("upstream url {v:?}: {e}"), HINT_URL)),
        }
    }

    pub(crate) fn command<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<String>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        if v.first().is_none_or(|p| p.is_empty()) {
            return Err(hinted("command is empty", HINT_COMMAND));
        }
        Ok(Some(v))
    }

    pub(crate) fn upstream_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let v = u64::deserialize(d)?;
        if v == 0 || v > MAX_UPSTREAM_TIMEOUT_SECS {
            return Err(hinted(
                format!(
                    "{} must be between 1 and {MAX_UPSTREAM_TIMEOUT_SECS}",
                    turnpike_core::conf::KEY
                ),
                HINT_TIMEOUT,
            ));
        }
        Ok(v)
    }
}
