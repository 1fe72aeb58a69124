//! The `[oauth]` configuration.
//!
//! ```toml
//! [oauth]
//! issuer = "https://auth.example.com"            # exactly as in the tokens' `iss`
//! resource = "https://mcp.example.com/mcp"       # default: the gateway's public endpoint URL
//! algorithms = ["ES256", "RS256", "EdDSA", "PS256"]
//! scopes_supported = ["mcp:tools"]
//! resource_name = "Example MCP server"
//! clock_skew_secs = 60
//! jwks_cache_secs = 300
//! jwks_min_refresh_secs = 30
//! jwks_fetch_spacing_ms = 1000
//! require_dpop = false
//! dpop_iat_window_secs = 300
//! dpop_nonce = false
//! token_cache_entries = 10000
//! [oauth.introspection]                           # only for opaque tokens
//! client_id = "turnpike"
//! client_secret = "…"
//! # endpoint = "https://auth.example.com/introspect"   # default: from the issuer's metadata
//! cache_secs = 60
//! negative_cache_secs = 30
//! per_address_per_minute = 60
//! per_minute = 1200
//! max_in_flight = 32
//! [oauth.implied_scopes]                          # broader scopes that imply narrower ones
//! "mcp:admin" = ["mcp:tools", "mcp:read"]
//! [oauth.upstream_token.exchange]                 # RFC 8693: a token of the upstream's own
//! client_id = "turnpike"
//! client_secret_env = "TURNPIKE_EXCHANGE_SECRET"  # or client_secret = "…"
//! audience = "https://tools.internal.example"     # and/or resource = "https://…"
//! # scope = "tools:run"
//! # token_endpoint = "https://auth.example.com/token"  # default: from the issuer's metadata
//! cache_entries = 10000
//! max_in_flight = 32
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::jose::Alg;
use crate::url::Url;

/// A secret string from the configuration: zeroed on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(zeroize::Zeroizing::new(s.into()))
    }
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The OAuth rail's settings. Every field but `issuer` has a default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier, exactly as its tokens carry it in `iss`
    /// and its metadata in `issuer`. Its metadata is discovered from it (RFC 8414, then OpenID
    /// Connect Discovery).
    pub issuer: String,
    /// The resource identifier (RFC 8707, RFC 9728 `resource`): tokens must name it in `aud`.
    /// Default: the gateway's public URL of the MCP endpoint (see
    /// [`OAuthConfig::with_default_resource`]).
    #[serde(default)]
    pub resource: Option<String>,
    /// The public URL of the MCP endpoint, for DPoP `htu` checks when the gateway does not pass
    /// the request URL. Default: `resource`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Where the protected-resource metadata is published. Default: the path-inserted
    /// well-known URL of `resource` (`https://host/.well-known/oauth-protected-resource/path`).
    #[serde(default)]
    pub resource_metadata_url: Option<String>,
    /// Accepted token signature algorithms (asymmetric only; `none` and `HS*` cannot be named).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Alg>,
    /// The issuer's JWKS URL. Default: `jwks_uri` from the issuer's metadata.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// How long fetched keys are used before they are fetched again.
    #[serde(default = "default_jwks_cache_secs")]
    pub jwks_cache_secs: u64,
    /// How long a key id that a freshly fetched key set did not hold is refused without
    /// another fetch (per key id), and the least time before a failed fetch of the keys or the
    /// metadata is tried again.
    #[serde(default = "default_jwks_min_refresh_secs")]
    pub jwks_min_refresh_secs: u64,
    /// The least time between two fetches of the key set, whatever asks (in all): a flood of
    /// tokens naming made-up key ids costs the issuer at most one fetch per this interval. A
    /// token with an unknown key id waits for the next fetch instead of being refused.
    #[serde(default = "default_jwks_fetch_spacing_ms")]
    pub jwks_fetch_spacing_ms: u64,
    /// Tolerated clock difference for `exp`, `nbf` and `iat`.
    #[serde(default = "default_clock_skew_secs")]
    pub clock_skew_secs: u64,
    /// Token introspection (RFC 7662) for tokens that are not JWTs.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// Accept only DPoP-bound tokens (RFC 9449), presented with the `DPoP` scheme and a proof.
    /// Bound tokens (`cnf.jkt`) need a proof either way.
    #[serde(default)]
    pub require_dpop: bool,
    /// Accepted DPoP proof algorithms. Empty turns DPoP off (bound tokens are then refused).
    #[serde(default = "default_dpop_algorithms")]
    pub dpop_algorithms: Vec<Alg>,
    /// How old a DPoP proof's `iat` may be (its jti is remembered this long).
    #[serde(default = "default_dpop_iat_window_secs")]
    pub dpop_iat_window_secs: u64,
    /// Demand server nonces in DPoP proofs (RFC 9449 §9): proofs without a current nonce get
    /// `401 error="use_dpop_nonce"` and a `DPoP-Nonce` header.
    #[serde(default)]
    pub dpop_nonce: bool,
    /// How long one DPoP nonce stays current (the previous one is accepted too).
    #[serde(default = "default_dpop_nonce_lifetime_secs")]
    pub dpop_nonce_lifetime_secs: u64,
    /// 64 hex digits keying DPoP nonces; set the same value on every gateway instance behind one
    /// load balancer. Default: random per process.
    #[serde(default)]
    pub dpop_nonce_secret: Option<Secret>,
    /// Scopes published in the protected-resource metadata, and challenged for when a call names
    /// none of its own.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Scope hierarchy: a granted scope (key) implies the listed ones (transitively).
    #[serde(default)]
    pub implied_scopes: BTreeMap<String, Vec<String>>,
    /// Human-readable name of the resource (RFC 9728 `resource_name`).
    #[serde(default)]
    pub resource_name: Option<String>,
    /// URL of the resource's documentation (RFC 9728 `resource_documentation`).
    #[serde(default)]
    pub resource_documentation: Option<String>,
    /// Demand the RFC 9068 access-token type (`typ: at+jwt`) on JWTs. Off by default because
    /// several issuers send plain `JWT`; other types (e.g. `dpop+jwt`) are refused either way.
    #[serde(default)]
    pub require_at_jwt: bool,
    /// How many verified JWTs are remembered (by their SHA-256) so that repeated calls with one
    /// token skip the signature check; 0 turns this off. Entries are forgotten when the
    /// issuer's keys are refetched, and never outlive the token.
    #[serde(default = "default_token_cache_entries")]
    pub token_cache_entries: usize,
    /// Deadline for each request to the issuer.
    #[serde(default = "default_http_timeout_secs")]
    pub http_timeout_secs: u64,
    /// Allow plain `http` URLs for the issuer and its endpoints on hosts other than loopback.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// What the upstream is sent for a call a token paid for. Unset: no `Authorization` at all
    /// (the caller's token is never forwarded).
    #[serde(default)]
    pub upstream_token: Option<UpstreamTokenConfig>,
}

/// `[oauth.upstream_token]`: the token the upstream gets for a caller.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTokenConfig {
    /// Exchange the caller's token at the authorization server (RFC 8693) for one whose
    /// audience is the upstream.
    pub exchange: ExchangeConfig,
}

/// `[oauth.upstream_token.exchange]`: an RFC 8693 token exchange.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The token endpoint. Default: `token_endpoint` from the issuer's metadata.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The gateway's client id at the authorization server (HTTP Basic authentication).
    pub client_id: String,
    /// Its secret (or `client_secret_env`).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// The environment variable holding its secret, read at start.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// The `audience` parameter: the upstream as the authorization server names it.
    #[serde(default)]
    pub audience: Option<String>,
    /// The `resource` parameter (RFC 8707): the upstream's URL.
    #[serde(default)]
    pub resource: Option<String>,
    /// The `scope` parameter: the scopes asked for the upstream's token (space-separated).
    #[serde(default)]
    pub scope: Option<String>,
    /// How many exchanged tokens are kept (by SHA-256 of the caller's token), each until it or
    /// the caller's token expires; 0 exchanges on every call.
    #[serde(default = "default_exchange_cache_entries")]
    pub cache_entries: usize,
    /// Exchanges in flight at once; past it a call is answered 503 with `Retry-After`.
    #[serde(default = "default_exchange_max_in_flight")]
    pub max_in_flight: u32,
}

fn default_exchange_cache_entries() -> usize {
    10_000
}
fn default_exchange_max_in_flight() -> u32 {
    32
}

/// Credentials and settings for RFC 7662 token introspection.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint. Default: `introspection_endpoint` from the issuer's metadata.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// This resource server's client id at the authorization server.
    pub client_id: String,
    /// Its secret (sent with HTTP Basic authentication).
    pub client_secret: Secret,
    /// How long an active answer is reused (never past the token's `exp`).
    #[serde(default = "default_introspection_cache_secs")]
    pub cache_secs: u64,
    /// How long an inactive answer (an unknown, expired or revoked token) is reused.
    #[serde(default = "default_introspection_negative_cache_secs")]
    pub negative_cache_secs: u64,
    /// Introspection requests (answers not in the cache) one caller address may cause per
    /// minute; an IPv6 address counts by its /64. Over it: 429 with `Retry-After`.
    #[serde(default = "default_introspection_per_address_per_minute")]
    pub per_address_per_minute: u32,
    /// Introspection requests the gateway sends per minute in all. Over it: 503 with
    /// `Retry-After`.
    #[serde(default = "default_introspection_per_minute")]
    pub per_minute: u32,
    /// Introspection requests in flight at once.
    #[serde(default = "default_introspection_max_in_flight")]
    pub max_in_flight: u32,
}

impl IntrospectionConfig {
    /// Settings for the client `client_id` with every default.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        IntrospectionConfig {
            endpoint: None,
            client_id: client_id.into(),
            client_secret,
            cache_secs: default_introspection_cache_secs(),
            negative_cache_secs: default_introspection_negative_cache_secs(),
            per_address_per_minute: default_introspection_per_address_per_minute(),
            per_minute: default_introspection_per_minute(),
            max_in_flight: default_introspection_max_in_flight(),
        }
    }
}

fn default_algorithms() -> Vec<Alg> {
    vec![Alg::ES256, Alg::RS256, Alg::EdDSA, Alg::PS256]
}
fn default_dpop_algorithms() -> Vec<Alg> {
    vec![Alg::ES256, Alg::EdDSA, Alg::Ed25519, Alg::PS256, Alg::RS256]
}
fn default_jwks_cache_secs() -> u64 {
    300
}
fn default_jwks_min_refresh_secs() -> u64 {
    30
}
fn default_jwks_fetch_spacing_ms() -> u64 {
    1000
}
fn default_introspection_negative_cache_secs() -> u64 {
    30
}
fn default_introspection_per_address_per_minute() -> u32 {
    60
}
fn default_introspection_per_minute() -> u32 {
    1200
}
fn default_introspection_max_in_flight() -> u32 {
    32
}
fn default_clock_skew_secs() -> u64 {
    60
}
fn default_dpop_iat_window_secs() -> u64 {
    300
}
fn default_dpop_nonce_lifetime_secs() -> u64 {
    300
}
fn default_token_cache_entries() -> usize {
    10_000
}
fn default_http_timeout_secs() -> u64 {
    5
}
fn default_introspection_cache_secs() -> u64 {
    60
}

/// What is wrong with an [`OAuthConfig`]: every problem, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid [oauth] configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    /// One line per problem, each starting with the field (`oauth.issuer: …`).
    pub problems: Vec<String>,
}

impl OAuthConfig {
    /// A configuration for `issuer` with every default.
    pub fn new(issuer: impl Into<String>) -> Self {
        OAuthConfig {
            issuer: issuer.into(),
            resource: None,
            endpoint_url: None,
            resource_metadata_url: None,
            algorithms: default_algorithms(),
            jwks_uri: None,
            jwks_cache_secs: default_jwks_cache_secs(),
            jwks_min_refresh_secs: default_jwks_min_refresh_secs(),
            jwks_fetch_spacing_ms: default_jwks_fetch_spacing_ms(),
            clock_skew_secs: default_clock_skew_secs(),
            introspection: None,
            require_dpop: false,
            dpop_algorithms: default_dpop_algorithms(),
            dpop_iat_window_secs: default_dpop_iat_window_secs(),
            dpop_nonce: false,
            dpop_nonce_lifetime_secs: default_dpop_nonce_lifetime_secs(),
            dpop_nonce_secret: None,
            scopes_supported: Vec::new(),
            implied_scopes: BTreeMap::new(),
            resource_name: None,
            resource_documentation: None,
            require_at_jwt: false,
            token_cache_entries: default_token_cache_entries(),
            http_timeout_secs: default_http_timeout_secs(),
            allow_plain_http: false,
            upstream_token: None,
        }
    }

    /// Sets `resource` to `url` when the file left it out (the gateway passes its public URL of
    /// the MCP endpoint).
    pub fn with_default_resource(mut self, url: &str) -> Self {
        if self.resource.is_none() {
            self.resource = Some(url.to_string());
        }
        self
    }

    /// Whether DPoP proofs can be checked at all.
    pub fn dpop_enabled(&self) -> bool {
        !self.dpop_algorithms.is_empty()
    }

    /// Checks every field; returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        let plain_ok = self.allow_plain_http;
        let url_problems = std::cell::RefCell::new(Vec::new());
        let url = |field: &str, value: &str, must_be_secure: bool| {
            let mut p = url_problems.borrow_mut();
            match Url::parse(value) {
                None => p.push(format!(
                    "oauth.{field}: {value:?} is not an absolute http(s) URL without userinfo"
                )),
                Some(u) => {
                    if u.has_fragment {
                        p.push(format!("oauth.{field}: must not have a fragment"));
                    }
                    if must_be_secure && u.scheme == "http" && !u.is_loopback() && !plain_ok {
                        p.push(format!(
                            "oauth.{field}: plain http to a non-loopback host; use https, or \
                             set oauth.allow_plain_http = true"
                        ));
                    }
                }
            }
        };
        url("issuer", &self.issuer, true);
        if Url::parse(&self.issuer).is_some_and(|u| u.has_query) {
            p.push("oauth.issuer: must not have a query (RFC 8414 §2)".into());
        }
        match &self.resource {
            None => p.push(
                "oauth.resource: not set, and the gateway gave no public URL to default to".into(),
            ),
            Some(r) => {
                url("resource", r, false);
                if Url::parse(r).is_some_and(|u| u.has_query) {
                    p.push("oauth.resource: must not have a query".into());
                }
            }
        }
        if let Some(e) = &self.endpoint_url {
            url("endpoint_url", e, false);
        }
        if let Some(m) = &self.resource_metadata_url {
            url("resource_metadata_url", m, false);
        }
        if let Some(j) = &self.jwks_uri {
            url("jwks_uri", j, true);
        }
        if let Some(d) = &self.resource_documentation {
            url("resource_documentation", d, false);
        }
        if let Some(i) = &self.introspection {
            if let Some(e) = &i.endpoint {
                url("introspection.endpoint", e, true);
            }
            if i.client_id.is_empty() {
                p.push("oauth.introspection.client_id: must not be empty".into());
            }
            if i.client_secret.expose().is_empty() {
                p.push("oauth.introspection.client_secret: must not be empty".into());
            }
            if i.negative_cache_secs > 3600 {
                p.push("oauth.introspection.negative_cache_secs: at most 3600".into());
            }
            if i.per_address_per_minute == 0 {
                p.push("oauth.introspection.per_address_per_minute: must be at least 1".into());
            }
            if i.per_minute < i.per_address_per_minute {
                p.push(
                    "oauth.introspection.per_minute: must be at least per_address_per_minute"
                        .into(),
                );
            }
            if i.max_in_flight == 0 || i.max_in_flight > 1024 {
                p.push("oauth.introspection.max_in_flight: must be 1 to 1024".into());
            }
        }
        if let Some(UpstreamTokenConfig { exchange: x }) = &self.upstream_token {
            let at = "oauth.upstream_token.exchange";
            if let Some(e) = &x.token_endpoint {
                url("upstream_token.exchange.token_endpoint", e, true);
            }
            if x.client_id.is_empty() {
                p.push(format!("{at}.client_id: must not be empty"));
            }
            match (&x.client_secret, &x.client_secret_env) {
                (Some(_), Some(_)) => p.push(format!(
                    "{at}: set client_secret or client_secret_env, not both"
                )),
                (None, None) => p.push(format!(
                    "{at}: set client_secret or client_secret_env (the gateway's own client \
                     secret at the authorization server)"
                )),
                (Some(s), None) if s.expose().is_empty() => {
                    p.push(format!("{at}.client_secret: must not be empty"))
                }
                _ => {}
            }
            if x.audience.is_none() && x.resource.is_none() {
                p.push(format!(
                    "{at}: name the upstream with audience and/or resource (RFC 8693 §2.1)"
                ));
            }
            if let Some(r) = &x.resource {
                url("upstream_token.exchange.resource", r, false);
            }
            if x.max_in_flight == 0 || x.max_in_flight > 1024 {
                p.push(format!("{at}.max_in_flight: must be 1 to 1024"));
            }
        }
        if self.algorithms.is_empty() {
            p.push("oauth.algorithms: list at least one algorithm".into());
        }
        if self.jwks_fetch_spacing_ms > 60_000 {
            p.push("oauth.jwks_fetch_spacing_ms: at most 60000".into());
        }
        if self.jwks_cache_secs == 0 {
            p.push("oauth.jwks_cache_secs: must be at least 1".into());
        }
        if self.http_timeout_secs == 0 || self.http_timeout_secs > 120 {
            p.push("oauth.http_timeout_secs: must be 1 to 120".into());
        }
        if self.clock_skew_secs > 3600 {
            p.push("oauth.clock_skew_secs: at most 3600".into());
        }
        if self.dpop_iat_window_secs == 0 || self.dpop_iat_window_secs > 3600 {
            p.push("oauth.dpop_iat_window_secs: must be 1 to 3600".into());
        }
        if self.dpop_nonce_lifetime_secs == 0 || self.dpop_nonce_lifetime_secs > 86400 {
            p.push("oauth.dpop_nonce_lifetime_secs: must be 1 to 86400".into());
        }
        if self.require_dpop && !self.dpop_enabled() {
            p.push("oauth.require_dpop: needs at least one of oauth.dpop_algorithms".into());
        }
        if let Some(s) = &self.dpop_nonce_secret {
            let ok = s.expose().len() == 64 && s.expose().bytes().all(|c| c.is_ascii_hexdigit());
            if !ok {
                p.push("oauth.dpop_nonce_secret: must be 64 hex digits".into());
            }
        }
        let scopes = self
            .scopes_supported
            .iter()
            .map(|s| ("scopes_supported", s))
            .chain(self.implied_scopes.iter().flat_map(|(k, v)| {
                std::iter::once(("implied_scopes", k))
                    .chain(v.iter().map(|s| ("implied_scopes", s)))
            }));
        for (field, s) in scopes {
            if !is_scope_token(s) {
                p.push(format!(
                    "oauth.{field}: {s:?} is not a scope token (printable ASCII without space, \
                     '\"' or '\\\\')"
                ));
            }
        }
        if let Some(n) = &self.resource_name {
            if n.chars().any(char::is_control) {
                p.push("oauth.resource_name: must not hold control characters".into());
            }
        }
        let mut all = url_problems.into_inner();
        all.append(&mut p);
        let p = all;
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
    }
}

/// RFC 6749 §3.3 `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|c| c == 0x21 || (0x23..=0x5b).contains(&c) || (0x5d..=0x7e).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c: OAuthConfig = serde_json::from_str(r#"{"issuer":"https://as.example"}"#).unwrap();
        assert_eq!(c.algorithms, default_algorithms());
        assert_eq!(c.clock_skew_secs, 60);
        assert!(!c.require_dpop);
        assert_eq!(c, OAuthConfig::new("https://as.example"));
        let e = serde_json::from_str::<OAuthConfig>(r#"{"issuer":"x","isuer":"y"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = serde_json::from_str::<OAuthConfig>(r#"{"issuer":"x","algorithms":["HS256"]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("never accepted"), "{e}");
    }

    #[test]
    fn validation_lists_every_problem() {
        let mut c = OAuthConfig::new("http://as.example/x?y=1");
        c.algorithms.clear();
        c.scopes_supported = vec!["ok".into(), "two words".into()];
        c.dpop_nonce_secret = Some(Secret::new("abc"));
        let e = c.validate().unwrap_err();
        let all = e.problems.join("\n");
        for needle in [
            "oauth.issuer: plain http",
            "oauth.issuer: must not have a query",
            "oauth.resource: not set",
            "oauth.algorithms",
            "\"two words\"",
            "oauth.dpop_nonce_secret",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        let c = OAuthConfig::new("http://127.0.0.1:9000/as")
            .with_default_resource("https://mcp.example.com/mcp");
        c.validate().unwrap();
        assert_eq!(c.resource.as_deref(), Some("https://mcp.example.com/mcp"));
        let c = c.with_default_resource("https://other/");
        assert_eq!(
            c.resource.as_deref(),
            Some("https://mcp.example.com/mcp"),
            "an explicit resource wins"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let i = IntrospectionConfig::new("rs", s);
        assert!(!format!("{i:?}").contains("hunter2"));
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("mcp:tools"));
        assert!(is_scope_token("https://x.example/read"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }
}
