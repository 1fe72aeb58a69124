//! The limits configuration, as the gateway's TOML file holds it (`[limits]`, `[budgets]`,
//! `[store]`). The gateway embeds these types in its own config; see docs/LIMITS.md.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend::LoopBrake;
use crate::quota::{Quota, Rate};

/// What the limiter does when its backend cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Refuse the call (HTTP 503, JSON-RPC -31503). The default.
    #[default]
    Closed,
    /// Let the call through unlimited (and log it). Payments never fail open.
    Open,
}

/// Whether the limits refuse calls, or only count what they would refuse (a dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// A call over a limit is refused (429). The default.
    #[default]
    Enforce,
    /// A call over a limit is let through, logged and counted as one the limits would have
    /// refused: to size limits on live traffic before they refuse anyone.
    Shadow,
}

/// A GCRA quota as written in the config: `burst = 50`, `rate = "20/s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Calls allowed back to back.
    pub burst: u32,
    /// The sustained rate, e.g. `"20/s"`, `"600/min"`.
    pub rate: Rate,
}

impl QuotaConfig {
    /// The quota, with a burst of 0 raised to 1 (validation reports it).
    pub fn quota(&self) -> Quota {
        Quota {
            burst: self.burst.max(1),
            rate: self.rate,
        }
    }
}

/// A per-identity quota with its in-flight cap: `[limits.default]` and `[limits.rails.*]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityQuotaConfig {
    /// Calls of one tool allowed back to back.
    pub burst: u32,
    /// The sustained rate per tool.
    pub rate: Rate,
    /// Calls of the identity in flight at once (all tools and methods together). Omitted in a
    /// rail table: the default's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// The loop brake as written in the config (`[limits.loop_brake]`).
///
/// Which calls it watches: by default only calls that cost their caller something — let through
/// by proof-of-work or L402 — because that is where a runaway loop burns work or money. Free
/// calls (a polling status tool, an argument-less `list_*`, `resources/read` of one resource)
/// repeat identically by design, and anonymous callers behind one address share one identity;
/// the rate limits still bound them. `rails`, `tools` and `exempt_tools` change the choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopBrakeConfig {
    /// Whether the brake is on (default true).
    pub enabled: bool,
    /// The calls it watches, by the rail that let them through (a rail's name, or `free`;
    /// default `["pow", "l402"]`: calls that cost something).
    pub rails: Vec<RailClass>,
    /// Tools (or methods, e.g. `resources/read`) watched whatever rail let them through
    /// (default none).
    pub tools: Vec<String>,
    /// Tools (or methods) never watched, e.g. a priced tool meant to be polled (default none).
    pub exempt_tools: Vec<String>,
    /// Identical calls (same identity, tool and arguments) allowed back to back (default 10).
    pub max_repeats: u32,
    /// Seconds over which `max_repeats` identical calls come back (default 60).
    pub window_secs: u64,
    /// Seconds one strike (one braked call) raises the identity's effort multiplier for
    /// (default 60).
    pub strike_decay_secs: u64,
    /// The largest effort multiplier (default 16).
    pub max_multiplier: u32,
}

impl Default for LoopBrakeConfig {
    fn default() -> Self {
        LoopBrakeConfig {
            enabled: true,
            rails: vec![RailClass::named("pow"), RailClass::named("l402")],
            tools: Vec::new(),
            exempt_tools: Vec::new(),
            max_repeats: 10,
            window_secs: 60,
            strike_decay_secs: 60,
            max_multiplier: 16,
        }
    }
}

impl LoopBrakeConfig {
    /// The brake, or `None` when disabled.
    pub fn brake(&self) -> Option<LoopBrake> {
        self.enabled.then(|| LoopBrake {
            max_repeats: self.max_repeats.max(1),
            window: Duration::from_secs(self.window_secs.clamp(1, 366 * 86_400)),
            strike_decay: Duration::from_secs(self.strike_decay_secs.max(1)),
            max_multiplier: self.max_multiplier.max(1),
        })
    }

    /// Whether the brake watches a call of `name` (a tool, or another method) let through by
    /// `rail` (`None`: a free call): never for `exempt_tools`, always for `tools`, else by
    /// `rails`.
    pub fn watches(&self, name: &str, rail: Option<turnpike_core::RailId>) -> bool {
        if self.exempt_tools.iter().any(|t| t == name) {
            return false;
        }
        self.tools.iter().any(|t| t == name) || self.rails.contains(&RailClass::from(rail))
    }
}

/// Which rail let a call through, for per-rail limits (`[limits.rails.<name>]`) and the loop
/// brake's `rails`: the rail's name ([`turnpike_core::RailId::as_str`]), or `free` for a call
/// no rail was needed for. Any name is read; [`LimitsConfig::unknown_rails`] reports those no
/// registered rail has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RailClass(Cow<'static, str>);

impl RailClass {
    /// A free call's class (no rail was needed): `free`.
    pub const FREE: RailClass = RailClass(Cow::Borrowed(FREE));

    /// The class of the rail named `name`.
    pub const fn named(name: &'static str) -> RailClass {
        RailClass(Cow::Borrowed(name))
    }

    /// The name, as in `[limits.rails.<name>]`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The class name of a free call.
const FREE: &str = "free";

/// By the rail's name (`None`, a free call: `free`). Allocates nothing.
impl From<Option<turnpike_core::RailId>> for RailClass {
    fn from(r: Option<turnpike_core::RailId>) -> RailClass {
        RailClass::named(r.map_or(FREE, turnpike_core::RailId::as_str))
    }
}

/// How OAuth identities are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthKey {
    /// Issuer, subject and client id: two agents (clients) of one person have separate limits.
    #[default]
    Client,
    /// Issuer and subject: every client of one person shares the person's limits.
    Subject,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Whether limits apply at all (default true).
    pub enabled: bool,
    /// What to do when the backend is down (default `closed`).
    pub failure_mode: FailureMode,
    /// `enforce` (default) or `shadow`: every decision is made, but a call over a limit is let
    /// through and counted instead of refused.
    pub mode: LimitMode,
    /// Whether OAuth callers are limited per client (default) or per subject.
    pub oauth_per: OAuthKey,
    /// Per identity and tool, for tools and rails not named below; and the identity's in-flight
    /// cap. Default: burst 50, 20/s, 16 in flight.
    pub default: IdentityQuotaConfig,
    /// Per identity, discovery traffic (initialize, ping, server/discover, the list methods,
    /// notifications). Default: burst 60, 10/s.
    pub discovery: QuotaConfig,
    /// Per identity, challenges issued (a priced call with no credential is answered with a
    /// challenge only within it, else 429). Its own budget: the paid retry that follows counts
    /// against the tool's quota, not this one. Default: burst 60, 20/s.
    pub challenges: QuotaConfig,
    /// Per identity, all tool calls together (the `*` class). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_tools: Option<QuotaConfig>,
    /// Per identity and tool, by tool name.
    pub tools: BTreeMap<String, QuotaConfig>,
    /// Per identity and method, for methods other than tools/call (e.g. `resources/read`).
    pub methods: BTreeMap<String, QuotaConfig>,
    /// Per rail that let the call through (by the rail's name, or `free`): replaces `default`
    /// for that rail's calls (a tool's own table still wins).
    pub rails: BTreeMap<RailClass, IdentityQuotaConfig>,
    /// The loop brake.
    pub loop_brake: LoopBrakeConfig,
    /// Seconds an in-flight slot is held at most on a shared backend, in case the instance that
    /// took it dies (default 900).
    pub lease_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            failure_mode: FailureMode::Closed,
            mode: LimitMode::Enforce,
            oauth_per: OAuthKey::Client,
            default: IdentityQuotaConfig {
                burst: 50,
                rate: Rate::clamped(20, Duration::from_secs(1)),
                concurrency: Some(16),
            },
            discovery: QuotaConfig {
                burst: 60,
                rate: Rate::clamped(10, Duration::from_secs(1)),
            },
            challenges: QuotaConfig {
                burst: 60,
                rate: Rate::clamped(20, Duration::from_secs(1)),
            },
            all_tools: None,
            tools: BTreeMap::new(),
            methods: BTreeMap::new(),
            rails: BTreeMap::new(),
            loop_brake: LoopBrakeConfig::default(),
            lease_secs: 900,
        }
    }
}

/// `[budgets]`: daily caps, counted per UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Calls (tools/call and other priced methods) per identity per day. None: no cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_day: Option<u64>,
    /// Millisatoshis spent per L402 token per day. None: no cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msat_per_token_per_day: Option<u64>,
}

/// Which backend holds the hot state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// In this process (the default; one instance).
    #[default]
    Memory,
    /// Redis (several instances share limits and spent sets).
    Redis,
}

/// `[store]`: where hot shared state lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `memory` (default) or `redis`.
    pub backend: StoreBackend,
    /// `redis://host:port/db` (one server) or `redis+cluster://host:port,host:port` (a Redis
    /// Cluster, by some of its nodes), required for the Redis backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (default `turnpike`).
    pub key_prefix: String,
    /// Longest wait for one Redis operation, in milliseconds (default 250).
    pub timeout_ms: u64,
    /// Where the durable state (L402 root keys, tokens, balances, ledger) lives: `embedded`
    /// (default: `[l402] store`, SQLite under `data_dir`) or `postgres` (shared by instances).
    pub durable: DurableBackend,
    /// `postgres://user@host:port/db` (a secret when it carries a password: prefer
    /// `postgres_url_env`). Exactly one of the two with `durable = "postgres"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url: Option<String>,
    /// The environment variable holding the PostgreSQL URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url_env: Option<String>,
    /// The schema turnpike's tables live in (created when missing; default `public`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_schema: Option<String>,
    /// Connections per instance (default 8; each pipelines its statements).
    pub postgres_pool: u32,
    /// Longest wait for one PostgreSQL statement, in milliseconds (default 2000); the server's
    /// `statement_timeout` is ¾ of it, and making a connection may take `max(this, 2 s)`.
    pub postgres_timeout_ms: u64,
}

/// Which backend holds the durable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurableBackend {
    /// The L402 rail's own store (`[l402] store`: SQLite by default). One instance.
    #[default]
    Embedded,
    /// PostgreSQL (several instances share balances, tokens and the ledger).
    Postgres,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Memory,
            redis_url: None,
            key_prefix: "turnpike".into(),
            timeout_ms: 250,
            durable: DurableBackend::Embedded,
            postgres_url: None,
            postgres_url_env: None,
            postgres_schema: None,
            postgres_pool: 8,
            postgres_timeout_ms: 2000,
        }
    }
}

/// Whether `s` is a plain SQL identifier turnpike accepts as a schema name: lower-case ASCII
/// letters, digits and `_`, starting with a letter or `_`, at most 63 bytes.
pub fn valid_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// One problem in the limits configuration: where (a dotted path) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigProblem {
    /// E.g. `limits.tools.search.burst`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        path: path.into(),
        message: message.into(),
    }
}

impl LimitsConfig {
    /// Every problem the config has (empty when it is fine). Types and rate syntax are checked
    /// while parsing; this checks values.
    pub fn validate(&self, budgets: &BudgetsConfig, store: &StoreConfig) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut burst = |path: String, b: u32| {
            if b == 0 {
                out.push(problem(path, "burst must be at least 1"));
            }
        };
        burst("limits.default.burst".into(), self.default.burst);
        burst("limits.discovery.burst".into(), self.discovery.burst);
        burst("limits.challenges.burst".into(), self.challenges.burst);
        if let Some(a) = &self.all_tools {
            burst("limits.all_tools.burst".into(), a.burst);
        }
        for (n, q) in &self.tools {
            burst(format!("limits.tools.{n}.burst"), q.burst);
        }
        for (n, q) in &self.methods {
            burst(format!("limits.methods.{n}.burst"), q.burst);
        }
        for (r, q) in &self.rails {
            burst(format!("limits.rails.{}.burst", r.as_str()), q.burst);
        }
        if self.default.concurrency == Some(0) {
            out.push(problem(
                "limits.default.concurrency",
                "must be at least 1 (omit it for no in-flight cap)",
            ));
        }
        for (r, q) in &self.rails {
            if q.concurrency == Some(0) {
                out.push(problem(
                    format!("limits.rails.{}.concurrency", r.as_str()),
                    "must be at least 1",
                ));
            }
        }
        let lb = &self.loop_brake;
        if lb.enabled {
            if lb.max_repeats == 0 {
                out.push(problem(
                    "limits.loop_brake.max_repeats",
                    "must be at least 1",
                ));
            }
            if lb.window_secs == 0 || lb.window_secs > 366 * 86_400 {
                out.push(problem(
                    "limits.loop_brake.window_secs",
                    "must be between 1 and 31622400 seconds",
                ));
            }
            if lb.strike_decay_secs == 0 {
                out.push(problem(
                    "limits.loop_brake.strike_decay_secs",
                    "must be at least 1",
                ));
            }
            if lb.max_multiplier == 0 {
                out.push(problem(
                    "limits.loop_brake.max_multiplier",
                    "must be at least 1 (1 means the brake never raises effort)",
                ));
            }
            for t in &lb.tools {
                if lb.exempt_tools.contains(t) {
                    out.push(problem(
                        "limits.loop_brake.exempt_tools",
                        format!("{t:?} is in both tools and exempt_tools; keep it in one"),
                    ));
                }
            }
        }
        if self.lease_secs == 0 {
            out.push(problem("limits.lease_secs", "must be at least 1"));
        }
        if budgets.calls_per_day == Some(0) {
            out.push(problem(
                "budgets.calls_per_day",
                "0 would refuse every call; omit it for no cap",
            ));
        }
        if let Some(m) = budgets.msat_per_token_per_day {
            if m > 1 << 53 {
                out.push(problem(
                    "budgets.msat_per_token_per_day",
                    "must be at most 9007199254740992",
                ));
            }
        }
        match (store.backend, &store.redis_url) {
            (StoreBackend::Redis, None) => out.push(problem(
                "store.redis_url",
                "the redis backend needs redis_url = \"redis://127.0.0.1:6379/0\"",
            )),
            (_, Some(u)) => {
                if let Err(e) = turnpike_store::parse_target(u) {
                    out.push(problem("store.redis_url", e));
                }
            }
            _ => {}
        }
        if store.timeout_ms == 0 {
            out.push(problem("store.timeout_ms", "must be at least 1"));
        }
        let url_ok = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
        match (&store.postgres_url, &store.postgres_url_env) {
            (Some(_), Some(_)) => out.push(problem(
                "store.postgres_url_env",
                "give the PostgreSQL URL one way only: postgres_url or postgres_url_env",
            )),
            (Some(u), None) if !url_ok(u) => out.push(problem(
                "store.postgres_url",
                "must start with postgres:// (e.g. \"postgres://turnpike@127.0.0.1:5432/turnpike\")",
            )),
            (None, Some(v)) if v.is_empty() => out.push(problem(
                "store.postgres_url_env",
                "name an environment variable",
            )),
            (None, None) if store.durable == DurableBackend::Postgres => out.push(problem(
                "store.durable",
                "durable = \"postgres\" needs postgres_url = \"postgres://…\" or postgres_url_env = \"VAR\"",
            )),
            _ => {}
        }
        if let Some(s) = &store.postgres_schema {
            if !valid_schema_name(s) {
                out.push(problem(
                    "store.postgres_schema",
                    "lower-case letters, digits and _ only (at most 63, not starting with a digit)",
                ));
            }
        }
        if store.postgres_pool == 0 || store.postgres_pool > 256 {
            out.push(problem("store.postgres_pool", "must be 1 to 256"));
        }
        if store.postgres_timeout_ms == 0 {
            out.push(problem("store.postgres_timeout_ms", "must be at least 1"));
        }
        out
    }
}

impl LimitsConfig {
    /// The rail names this configuration uses that are neither one of `rails` (the rails the
    /// gateway knows, by name) nor `free`: a table `[limits.rails.<name>]` (path
    /// `limits.rails.<name>`) or an entry of `[limits.loop_brake] rails` (path
    /// `limits.loop_brake.rails`; [`ConfigProblem::message`] names the entry), each with the
    /// list of the names that are known.
    pub fn unknown_rails(&self, rails: &[&str]) -> Vec<UnknownRail> {
        let known = |name: &str| name == FREE || rails.contains(&name);
        let list = || {
            let mut names: Vec<String> = rails.iter().map(|r| format!("`{r}`")).collect();
            names.push(format!("`{FREE}`"));
            names.join(", ")
        };
        let mut out = Vec::new();
        for r in self.rails.keys().filter(|r| !known(r.as_str())) {
            out.push(UnknownRail {
                name: r.as_str().to_owned(),
                problem: problem(
                    format!("limits.rails.{}", r.as_str()),
                    format!("unknown rail `{}`, expected one of {}", r.as_str(), list()),
                ),
            });
        }
        for r in self.loop_brake.rails.iter().filter(|r| !known(r.as_str())) {
            out.push(UnknownRail {
                name: r.as_str().to_owned(),
                problem: problem(
                    "limits.loop_brake.rails",
                    format!("unknown rail `{}`, expected one of {}", r.as_str(), list()),
                ),
            });
        }
        out
    }
}

/// A rail name in the limits configuration that no rail has ([`LimitsConfig::unknown_rails`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRail {
    /// The name as written.
    pub name: String,
    /// Where (the table, or the loop brake's list) and what.
    pub problem: ConfigProblem,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        limits: LimitsConfig,
        #[serde(default)]
        budgets: BudgetsConfig,
        #[serde(default)]
        store: StoreConfig,
    }

    #[test]
    fn parses_the_documented_schema() {
        let f: File = toml::from_str(
            r#"
            [limits]
            failure_mode = "open"
            [limits.default]
            burst = 50
            rate = "20/s"
            concurrency = 16
            [limits.discovery]
            burst = 100
            rate = "600/min"
            [limits.all_tools]
            burst = 200
            rate = "50/s"
            [limits.tools.search]
            burst = 5
            rate = "1/s"
            [limits.methods."resources/read"]
            burst = 20
            rate = "5/s"
            [limits.rails.pow]
            burst = 10
            rate = "2/s"
            [limits.rails.oauth]
            burst = 100
            rate = "50/s"
            concurrency = 64
            [limits.loop_brake]
            max_repeats = 5
            window_secs = 30
            [budgets]
            calls_per_day = 10000
            msat_per_token_per_day = 5000000
            [store]
            backend = "redis"
            redis_url = "redis://127.0.0.1:6379/0"
            "#,
        )
        .unwrap();
        assert_eq!(f.limits.failure_mode, FailureMode::Open);
        assert_eq!(f.limits.tools["search"].quota().burst, 5);
        assert_eq!(
            f.limits.rails[&RailClass::named("oauth")].concurrency,
            Some(64)
        );
        assert_eq!(f.limits.discovery.rate.per(), Duration::from_secs(60));
        assert_eq!(f.limits.loop_brake.max_repeats, 5);
        assert!(f.limits.loop_brake.enabled);
        assert_eq!(f.budgets.calls_per_day, Some(10_000));
        assert_eq!(f.store.backend, StoreBackend::Redis);
        assert!(f.limits.validate(&f.budgets, &f.store).is_empty());
        assert!(f.limits.unknown_rails(&["pow", "l402", "oauth"]).is_empty());
    }

    /// A rail's class is its name: any registered rail has one, and a name no rail has is
    /// reported with the names that are known.
    #[test]
    fn rail_classes_are_rail_names() {
        let f: File = toml::from_str(
            r#"
            [limits.rails.x402]
            burst = 3
            rate = "1/s"
            [limits.rails.free]
            burst = 7
            rate = "1/s"
            [limits.loop_brake]
            rails = ["pow", "x402", "mpp"]
            "#,
        )
        .unwrap();
        let x402 = turnpike_core::RailId::new("x402");
        assert_eq!(RailClass::from(Some(x402)), RailClass::named("x402"));
        assert_eq!(RailClass::from(None), RailClass::FREE);
        assert_eq!(f.limits.rails[&RailClass::from(Some(x402))].burst, 3);
        assert_eq!(f.limits.rails[&RailClass::FREE].burst, 7);
        assert!(f.limits.loop_brake.watches("t", Some(x402)));
        assert!(!f.limits.loop_brake.watches("t", None));
        assert!(f.limits.unknown_rails(&["pow", "x402"]).len() == 1);
        let unknown = f.limits.unknown_rails(&["pow", "l402", "oauth"]);
        let found: Vec<_> = unknown
            .iter()
            .map(|u| (u.name.as_str(), u.problem.path.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("x402", "limits.rails.x402"),
                ("x402", "limits.loop_brake.rails"),
                ("mpp", "limits.loop_brake.rails")
            ]
        );
        assert_eq!(
            unknown[0].problem.message,
            "unknown rail `x402`, expected one of `pow`, `l402`, `oauth`, `free`"
        );
        // Serialised as the name it was read from.
        let text = toml::to_string(&f.limits.loop_brake).unwrap();
        assert!(text.contains(r#"rails = ["pow", "x402", "mpp"]"#), "{text}");
    }

    #[test]
    fn defaults_and_problems() {
        let f: File = toml::from_str("").unwrap();
        assert_eq!(f.limits, LimitsConfig::default());
        assert!(f.limits.validate(&f.budgets, &f.store).is_empty());
        let bad: Result<File, _> =
            toml::from_str("[limits.default]\nburst = 5\nrate = \"5/fortnight\"");
        assert!(bad.is_err());
        let bad: Result<File, _> =
            toml::from_str("[limits.tools.x]\nburst = 5\nrate = \"1/s\"\nconcurrency = 3");
        assert!(bad.is_err(), "concurrency is per identity, not per tool");
        let f: File = toml::from_str(
            "[limits.tools.x]\nburst = 0\nrate = \"1/s\"\n[store]\nbackend = \"redis\"\n[budgets]\ncalls_per_day = 0",
        )
        .unwrap();
        let p = f.limits.validate(&f.budgets, &f.store);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "limits.tools.x.burst",
                "budgets.calls_per_day",
                "store.redis_url"
            ]
        );
        // A Redis Cluster by its nodes; a bad node list says what is wrong.
        let store = |url: &str| {
            let f: File = toml::from_str(&format!(
                "[store]\nbackend = \"redis\"\nredis_url = \"{url}\""
            ))
            .unwrap();
            f.limits.validate(&f.budgets, &f.store)
        };
        assert!(store("redis+cluster://10.0.0.1:7000,10.0.0.2:7000").is_empty());
        let p = store("redis+cluster://10.0.0.1,10.0.0.2:7000");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "store.redis_url");
        assert!(p[0].message.contains("needs a port"), "{}", p[0].message);
        let p = store("redis+cluster://10.0.0.1:7000/2");
        assert!(p[0].message.contains("database 0"), "{}", p[0].message);
        let p = store("rediss://10.0.0.1:7000");
        assert!(
            p[0].message.contains("redis+cluster://"),
            "{}",
            p[0].message
        );
        let f: File = toml::from_str(
            "[store]\ndurable = \"postgres\"\npostgres_schema = \"Bad-Name\"\npostgres_pool = 0",
        )
        .unwrap();
        let p = f.limits.validate(&f.budgets, &f.store);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "store.durable",
                "store.postgres_schema",
                "store.postgres_pool"
            ]
        );
        let f: File = toml::from_str(
            "[store]\ndurable = \"postgres\"\npostgres_url_env = \"TURNPIKE_PG\"\npostgres_schema = \"turnpike\"",
        )
        .unwrap();
        assert!(f.limits.validate(&f.budgets, &f.store).is_empty());
        assert_eq!(f.store.durable, DurableBackend::Postgres);
        assert_eq!(f.store.postgres_timeout_ms, 2000);
    }
}
