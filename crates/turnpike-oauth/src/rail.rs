//! [`OAuthRail`]: the OAuth 2.1 resource-server rail.

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use turnpike_core::{
    About, BoxFuture, CallFacts, Challenge, Credential, Identity, Offer, Rail, RailId, Verdict,
};
use turnpike_store::SpentSet;

use crate::cache::VerifiedTokens;
use crate::config::{ConfigError, OAuthConfig};
use crate::credential::{is_token68, BearerCredential};
use crate::dpop::{NonceIssuer, ProofChecker, ProofContext, ProofError};
use crate::exchange::{ExchangeError, Exchanger};
use crate::http::HttpClient;
use crate::introspect::{Busy, IntrospectError, Introspected, Introspector};
use crate::issuer::{Issuer, KeyLookup, Stats};
use crate::jose::{looks_like_jws, parse_compact, Alg, JwsError, MAX_JWS_LEN};
use crate::outcome::{quote, Accepted, AuthResponse, ErrorCode, OAuthOutcome, Rejection, Scheme};
use crate::token::{Expectations, TokenInfo};
use crate::url::{resource_metadata_paths, resource_metadata_url, Url};

/// Most keys tried for a token without a key id.
const MAX_KEYS_TRIED: usize = 4;

/// Why a rail could not be built or warmed up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The issuer could not be reached or answered something unusable.
    #[error("authorization server: {0}")]
    Issuer(String),
    /// A JWKS document could not be read.
    #[error("JWKS: {0}")]
    Jwks(String),
}

/// The HTTP facts of one request that DPoP proofs are checked against (core's [`CallFacts`]
/// has no HTTP). Without it the rail assumes `POST` to the configured endpoint URL, which is
/// what every priced MCP call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpContext {
    /// The request method, e.g. `POST`.
    pub method: String,
    /// The absolute URL the caller used (its public form, as the caller saw it); query and
    /// fragment are ignored.
    pub url: String,
    /// SHA-256 of the request body, for the `content_digest` claim of the MCP DPoP profile.
    pub body_sha256: Option<[u8; 32]>,
}

impl HttpContext {
    /// Facts for a request with `method` to `url`.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        HttpContext {
            method: method.into(),
            url: url.into(),
            body_sha256: None,
        }
    }

    /// Adds the hash of the request body.
    pub fn with_body(mut self, body: &[u8]) -> Self {
        use sha2::Digest;
        self.body_sha256 = Some(sha2::Sha256::digest(body).into());
        self
    }
}

/// A snapshot of the requests the rail made to its authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IssuerStats {
    /// Metadata documents requested (each candidate URL tried counts).
    pub metadata_fetches: u64,
    /// JWKS documents requested.
    pub jwks_fetches: u64,
    /// Introspection requests sent.
    pub introspections: u64,
}

/// The OAuth 2.1 resource-server rail.
///
/// Verifies access tokens issued by one authorization server for this resource: JWTs against
/// the issuer's keys (discovered and cached), other tokens by introspection; DPoP proofs where
/// tokens are bound; the scopes each call needs. Implements [`Rail`]; the gateway gets richer
/// answers (403 step-up, DPoP nonces, error codes) from [`OAuthRail::verify_detailed`] or a
/// [`ScopedOAuthRail`].
pub struct OAuthRail {
    cfg: OAuthConfig,
    resource: String,
    metadata_url: String,
    metadata_paths: Vec<String>,
    endpoint_htu: String,
    issuer: Issuer,
    introspector: Option<Introspector>,
    proofs: ProofChecker,
    spent: Arc<dyn SpentSet>,
    implied: BTreeMap<String, BTreeSet<String>>,
    verified: VerifiedTokens,
    stats: Arc<Stats>,
    exchanger: Option<Exchanger>,
}

impl std::fmt::Debug for OAuthRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthRail")
            .field("issuer", &self.cfg.issuer)
            .field("resource", &self.resource)
            .field("require_dpop", &self.cfg.require_dpop)
            .finish_non_exhaustive()
    }
}

impl OAuthRail {
    /// A rail from a configuration (whose `resource` must be set: see
    /// [`OAuthConfig::with_default_resource`]). `spent` records DPoP proof ids (`jti`) as used.
    /// Nothing is fetched yet; see [`OAuthRail::warm_up`].
    pub fn new(cfg: OAuthConfig, spent: Arc<dyn SpentSet>) -> Result<OAuthRail, OAuthError> {
        cfg.validate()?;
        let bad = |p: String| OAuthError::Config(ConfigError { problems: vec![p] });
        let resource = cfg.resource.clone().unwrap_or_default();
        let resource_url =
            Url::parse(&resource).ok_or_else(|| bad("oauth.resource: not a URL".into()))?;
        let metadata_url = cfg
            .resource_metadata_url
            .clone()
            .unwrap_or_else(|| resource_metadata_url(&resource_url));
        let metadata_paths = resource_metadata_paths(&resource_url);
        let endpoint = cfg.endpoint_url.as_deref().unwrap_or(&resource);
        let endpoint_htu = Url::parse(endpoint)
            .ok_or_else(|| bad("oauth.endpoint_url: not a URL".into()))?
            .normalized();
        let http = HttpClient::new(Duration::from_secs(cfg.http_timeout_secs))
            .map_err(OAuthError::Issuer)?;
        let stats = Arc::new(Stats::default());
        let issuer = Issuer::new(
            &cfg.issuer,
            cfg.jwks_uri.clone(),
            cfg.allow_plain_http,
            http,
            Duration::from_secs(cfg.jwks_cache_secs),
            Duration::from_secs(cfg.jwks_min_refresh_secs),
            Duration::from_millis(cfg.jwks_fetch_spacing_ms),
            stats.clone(),
        )
        .map_err(|e| bad(format!("oauth.issuer: {e}")))?;
        let introspector = match &cfg.introspection {
            Some(i) => {
                Some(Introspector::new(i).map_err(|e| bad(format!("oauth.introspection: {e}")))?)
            }
            None => None,
        };
        let nonces = cfg.dpop_nonce.then(|| {
            let key = match &cfg.dpop_nonce_secret {
                Some(s) => {
                    let mut k = [0u8; 32];
                    // Validated above: 64 hex digits.
                    let _ = hex::decode_to_slice(s.expose(), &mut k);
                    k
                }
                None => {
                    use rand::RngCore;
                    let mut k = [0u8; 32];
                    rand::rng().fill_bytes(&mut k);
                    k
                }
            };
            NonceIssuer::new(key, cfg.dpop_nonce_lifetime_secs)
        });
        let proofs = ProofChecker {
            algs: cfg.dpop_algorithms.clone(),
            window: cfg.dpop_iat_window_secs,
            skew: cfg.clock_skew_secs,
            nonces,
        };
        let exchanger = match &cfg.upstream_token {
            Some(u) => Some(
                Exchanger::new(&u.exchange)
                    .map_err(|e| bad(format!("oauth.upstream_token.exchange: {e}")))?,
            ),
            None => None,
        };
        let implied = close_implied(&cfg.implied_scopes);
        let verified = VerifiedTokens::new(cfg.token_cache_entries);
        Ok(OAuthRail {
            resource,
            metadata_url,
            metadata_paths,
            endpoint_htu,
            issuer,
            introspector,
            proofs,
            spent,
            implied,
            verified,
            stats,
            exchanger,
            cfg,
        })
    }

    /// Fetches the issuer's metadata and keys now, so that a misconfiguration shows at start
    /// rather than on the first call. Returns how many usable keys the issuer has.
    pub async fn warm_up(&self) -> Result<usize, OAuthError> {
        self.issuer.warm_up().await.map_err(OAuthError::Issuer)
    }

    /// Installs the issuer's keys from a JWKS document, as if just fetched (for offline use,
    /// tests and benchmarks). Returns how many usable keys it holds.
    pub fn preload_jwks(&self, jwks: &[u8]) -> Result<usize, OAuthError> {
        self.issuer.install_keys(jwks).map_err(OAuthError::Jwks)
    }

    /// The configuration in force.
    pub fn config(&self) -> &OAuthConfig {
        &self.cfg
    }

    /// The resource identifier tokens must be for.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The URL of the protected-resource metadata (the `resource_metadata` challenge parameter).
    pub fn resource_metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The paths at which the gateway serves [`OAuthRail::metadata_document`]: the path-inserted
    /// form (`/.well-known/oauth-protected-resource/<path>`) and the root form
    /// (`/.well-known/oauth-protected-resource`).
    pub fn metadata_paths(&self) -> &[String] {
        &self.metadata_paths
    }

    /// The protected-resource metadata document (RFC 9728 §2), to serve as `application/json`
    /// at [`OAuthRail::metadata_paths`].
    pub fn metadata_document(&self) -> Value {
        let mut doc = serde_json::Map::new();
        doc.insert("resource".into(), json!(self.resource));
        doc.insert("authorization_servers".into(), json!([self.cfg.issuer]));
        if !self.cfg.scopes_supported.is_empty() {
            doc.insert("scopes_supported".into(), json!(self.cfg.scopes_supported));
        }
        doc.insert("bearer_methods_supported".into(), json!(["header"]));
        if let Some(n) = &self.cfg.resource_name {
            doc.insert("resource_name".into(), json!(n));
        }
        if let Some(d) = &self.cfg.resource_documentation {
            doc.insert("resource_documentation".into(), json!(d));
        }
        if self.cfg.dpop_enabled() {
            doc.insert(
                "dpop_signing_alg_values_supported".into(),
                json!(self.dpop_alg_names()),
            );
            doc.insert(
                "dpop_bound_access_tokens_required".into(),
                json!(self.cfg.require_dpop),
            );
        }
        Value::Object(doc)
    }

    /// The requests made to the issuer so far.
    pub fn issuer_stats(&self) -> IssuerStats {
        IssuerStats {
            metadata_fetches: self.stats.metadata_fetches.load(Ordering::Relaxed),
            jwks_fetches: self.stats.jwks_fetches.load(Ordering::Relaxed),
            introspections: self.stats.introspections.load(Ordering::Relaxed),
        }
    }

    /// The DPoP nonce current at `now`, when nonces are on (for a `DPoP-Nonce` header).
    pub fn current_dpop_nonce(&self, now: u64) -> Option<String> {
        self.proofs.nonces.as_ref().map(|n| n.current(now))
    }

    /// A view of this rail for one request: DPoP proofs are checked against `http`, and the
    /// detailed outcome of the last verification is kept for the gateway to read
    /// ([`ScopedOAuthRail::outcome`]).
    pub fn scoped(self: &Arc<Self>, http: HttpContext) -> ScopedOAuthRail {
        ScopedOAuthRail {
            rail: self.clone(),
            http,
            last: Mutex::new(None),
        }
    }

    fn dpop_alg_names(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.cfg.dpop_algorithms.iter().map(|a| a.name()).collect();
        v.dedup();
        v
    }

    /// The scopes a challenge names for a call needing `needed`: those, or when the call names
    /// none, `scopes_supported`.
    fn challenge_scope(&self, needed: &[String]) -> String {
        if needed.is_empty() {
            self.cfg.scopes_supported.join(" ")
        } else {
            needed.join(" ")
        }
    }

    fn bearer_challenge(&self, scope: &str, error: Option<(ErrorCode, &str)>) -> String {
        let mut s = String::from("Bearer ");
        if let Some((code, desc)) = error {
            s.push_str(&format!(
                "error=\"{}\", error_description={}, ",
                code.as_str(),
                quote(desc)
            ));
        }
        s.push_str(&format!("resource_metadata={}", quote(&self.metadata_url)));
        if !scope.is_empty() {
            s.push_str(&format!(", scope={}", quote(scope)));
        }
        s
    }

    fn dpop_challenge(&self, scope: Option<&str>, error: Option<(ErrorCode, &str)>) -> String {
        let mut s = String::from("DPoP ");
        if let Some((code, desc)) = error {
            s.push_str(&format!(
                "error=\"{}\", error_description={}, ",
                code.as_str(),
                quote(desc)
            ));
        }
        if let Some(scope) = scope {
            s.push_str(&format!(
                "resource_metadata={}, ",
                quote(&self.metadata_url)
            ));
            if !scope.is_empty() {
                s.push_str(&format!("scope={}, ", quote(scope)));
            }
        }
        s.push_str(&format!("algs={}", quote(&self.dpop_alg_names().join(" "))));
        s
    }

    /// The challenge for a call needing `needed` scopes:
    /// `Bearer resource_metadata="…", scope="…"`, followed (in the same value) by
    /// `DPoP algs="…"` when DPoP is on. The details are
    /// `{"rail":"oauth","scheme":"Bearer","resource":…,"resource_metadata":…,"scope":…,
    ///   "authorization_servers":[…],"dpop_algs":[…],"www_authenticate":…}`.
    pub fn challenge_for(&self, needed: &[String]) -> Challenge {
        let scope = self.challenge_scope(needed);
        let bearer = self.bearer_challenge(&scope, None);
        let www = if self.cfg.dpop_enabled() {
            format!("{bearer}, {}", self.dpop_challenge(None, None))
        } else {
            bearer
        };
        let mut details = json!({
            "rail": "oauth",
            "scheme": "Bearer",
            "resource": self.resource,
            "resource_metadata": self.metadata_url,
            "authorization_servers": [self.cfg.issuer],
            "www_authenticate": www,
        });
        if !scope.is_empty() {
            details["scope"] = json!(scope);
        }
        if self.cfg.dpop_enabled() {
            details["dpop_algs"] = json!(self.dpop_alg_names());
            details["dpop_required"] = json!(self.cfg.require_dpop);
        }
        Challenge {
            rail: crate::offer::RAIL,
            www_authenticate: www,
            details,
        }
    }

    /// How to answer `outcome` for a call needing `needed` scopes: status, `WWW-Authenticate`
    /// lines (the one carrying the error first) and `DPoP-Nonce`. `None` for a pass.
    ///
    /// - `invalid_request` → 400; `invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce` → 401
    ///   (the error in the challenge of the scheme the token came under);
    /// - `insufficient_scope` → 403 naming every scope the call needs;
    /// - issuer unreachable → 503, no challenge;
    /// - an introspection bound reached → 429 (the caller's own) or 503 (the bound in all),
    ///   with `Retry-After`, no challenge.
    pub fn response_for(&self, outcome: &OAuthOutcome, needed: &[String]) -> Option<AuthResponse> {
        let scope = self.challenge_scope(needed);
        match outcome {
            OAuthOutcome::Pass(_) => None,
            OAuthOutcome::Rejected(r) => {
                let err = Some((r.code, r.description));
                let mut lines = Vec::new();
                match r.scheme {
                    Scheme::DPoP if self.cfg.dpop_enabled() => {
                        lines.push(self.dpop_challenge(Some(&scope), err));
                        lines.push(self.bearer_challenge(&scope, None));
                    }
                    _ => {
                        lines.push(self.bearer_challenge(&scope, err));
                        if self.cfg.dpop_enabled() {
                            lines.push(self.dpop_challenge(None, None));
                        }
                    }
                }
                Some(AuthResponse {
                    status: r.code.status(),
                    www_authenticate: lines,
                    dpop_nonce: r.dpop_nonce.clone(),
                    error: Some(r.code),
                    description: format!("The access token was refused: {}.", r.description),
                    retry_after: None,
                    exchange_error: None,
                })
            }
            OAuthOutcome::InsufficientScope {
                needed: all,
                scheme,
                ..
            } => {
                let scope = all.join(" ");
                let desc = "the token lacks scopes this call needs";
                let err = Some((ErrorCode::InsufficientScope, desc));
                let line = match scheme {
                    Scheme::DPoP if self.cfg.dpop_enabled() => {
                        self.dpop_challenge(Some(&scope), err)
                    }
                    _ => self.bearer_challenge(&scope, err),
                };
                Some(AuthResponse {
                    status: 403,
                    www_authenticate: vec![line],
                    dpop_nonce: None,
                    error: Some(ErrorCode::InsufficientScope),
                    description: format!(
                        "This call needs an access token with the scopes \"{scope}\"."
                    ),
                    retry_after: None,
                    exchange_error: None,
                })
            }
            OAuthOutcome::Unavailable(_) => Some(AuthResponse {
                status: 503,
                www_authenticate: Vec::new(),
                dpop_nonce: None,
                error: None,
                description: "The authorization server cannot be reached to check the token."
                    .into(),
                retry_after: None,
                exchange_error: None,
            }),
            OAuthOutcome::Busy { own, retry_after } => Some(AuthResponse {
                status: if *own { 429 } else { 503 },
                www_authenticate: Vec::new(),
                dpop_nonce: None,
                error: None,
                description: if *own {
                    format!(
                        "Too many unknown tokens from this address to check; retry after \
                         {retry_after} s."
                    )
                } else {
                    format!("Too many unknown tokens to check; retry after {retry_after} s.")
                },
                retry_after: Some(*retry_after),
                exchange_error: None,
            }),
            OAuthOutcome::ExchangeRefused { code, .. } => Some(AuthResponse {
                status: 403,
                www_authenticate: Vec::new(),
                dpop_nonce: None,
                error: None,
                description: format!(
                    "The authorization server refused to exchange the access token for one the \
                     upstream accepts ({code}); the call was not forwarded."
                ),
                retry_after: None,
                exchange_error: Some(code.clone()),
            }),
        }
    }

    /// Checks one OAuth credential for a call needing `needed` scopes, at time `now` (Unix
    /// seconds, e.g. `CallFacts::now`). `http` gives the request's method and URL for DPoP;
    /// without it, `POST` to the configured endpoint URL is assumed.
    ///
    /// The steps: the token (a JWT checked against the issuer's keys, or an opaque token
    /// introspected), its claims (issuer, audience, times), the key binding (a bound token needs
    /// the `DPoP` scheme and a valid proof; with `require_dpop` every token must be bound), the
    /// scopes, and last the proof's single use.
    pub async fn verify_detailed(
        &self,
        credential: &Credential,
        needed: &[String],
        http: Option<&HttpContext>,
        now: u64,
    ) -> OAuthOutcome {
        self.verify_from(credential, needed, http, None, now).await
    }

    /// [`OAuthRail::verify_detailed`] for a caller at `peer` (its network address), which the
    /// introspection bounds count against.
    pub async fn verify_from(
        &self,
        credential: &Credential,
        needed: &[String],
        http: Option<&HttpContext>,
        peer: Option<IpAddr>,
        now: u64,
    ) -> OAuthOutcome {
        let Some(BearerCredential { token, dpop }) = credential.payload::<BearerCredential>()
        else {
            return reject(
                ErrorCode::InvalidRequest,
                "not an OAuth credential",
                Scheme::Bearer,
            );
        };
        let scheme = if dpop.is_some() {
            Scheme::DPoP
        } else {
            Scheme::Bearer
        };
        if token.is_empty() || token.len() > MAX_JWS_LEN || !is_token68(token) {
            return reject(ErrorCode::InvalidRequest, "the token is malformed", scheme);
        }
        let info = match self.validate_token(token, now, peer).await {
            Ok(i) => i,
            Err(TokenError::Invalid(d)) => return reject(ErrorCode::InvalidToken, d, scheme),
            Err(TokenError::Unavailable(e)) => {
                tracing::warn!(issuer = %self.cfg.issuer, error = %e, "token check failed: issuer unavailable");
                return OAuthOutcome::Unavailable(e);
            }
            Err(TokenError::Busy(b)) => {
                tracing::debug!(issuer = %self.cfg.issuer, reason = b.reason, retry_after = b.retry_after, "token check held back: introspection bound reached");
                return OAuthOutcome::Busy {
                    own: b.own,
                    retry_after: b.retry_after,
                };
            }
        };
        let identity = Identity::OAuth {
            issuer: info.issuer.clone(),
            subject: info.subject.clone(),
            client_id: info.client_id.clone(),
        };
        // Key binding (RFC 9449 §7).
        let mut checked = None;
        match (&info.jkt, dpop) {
            (Some(_), None) => {
                return reject(
                    ErrorCode::InvalidToken,
                    "the token is DPoP-bound: present it with the DPoP scheme and a proof",
                    scheme,
                )
            }
            (None, Some(_)) => {
                return reject(
                    ErrorCode::InvalidToken,
                    "the token is not DPoP-bound",
                    scheme,
                )
            }
            (None, None) if self.cfg.require_dpop => {
                return reject(
                    ErrorCode::InvalidToken,
                    "this resource accepts DPoP-bound tokens only",
                    scheme,
                )
            }
            (None, None) => {}
            (Some(jkt), Some(proof)) => {
                if !self.cfg.dpop_enabled() {
                    return reject(
                        ErrorCode::InvalidToken,
                        "this resource does not accept DPoP-bound tokens",
                        scheme,
                    );
                }
                let (method, htu) = match http {
                    Some(h) => match Url::parse(&h.url) {
                        Some(u) => (h.method.as_str(), u.normalized()),
                        None => {
                            return reject(
                                ErrorCode::InvalidDpopProof,
                                "the request URL cannot be checked",
                                scheme,
                            )
                        }
                    },
                    None => ("POST", self.endpoint_htu.clone()),
                };
                let cx = ProofContext {
                    method,
                    htu: &htu,
                    token,
                    jkt,
                    body_sha256: http.and_then(|h| h.body_sha256),
                    now,
                };
                match self.proofs.check(proof, &cx) {
                    Ok(c) => checked = Some(c),
                    Err(ProofError::Invalid(d)) => {
                        return reject(ErrorCode::InvalidDpopProof, d, scheme)
                    }
                    Err(ProofError::UseNonce(d)) => {
                        return OAuthOutcome::Rejected(Rejection {
                            code: ErrorCode::UseDpopNonce,
                            description: d,
                            scheme,
                            dpop_nonce: self.current_dpop_nonce(now),
                        })
                    }
                }
            }
        }
        // Scopes.
        let missing = self.missing_scopes(&info.scopes, needed);
        if !missing.is_empty() {
            let mut all: Vec<String> = Vec::with_capacity(needed.len());
            for n in needed {
                if !all.contains(n) {
                    all.push(n.clone());
                }
            }
            return OAuthOutcome::InsufficientScope {
                needed: all,
                missing,
                scheme,
                identity,
            };
        }
        // Single use of the proof, last.
        let dpop_bound = checked.is_some();
        if let Some(c) = checked {
            match self
                .spent
                .insert_issued(c.replay_key, c.issued_at, c.remember_until, now)
                .await
            {
                Ok(true) => {}
                Ok(false) => return reject(
                    ErrorCode::InvalidDpopProof,
                    "the DPoP proof was already used (jti), or predates the record of used ones",
                    scheme,
                ),
                Err(e) => return OAuthOutcome::Unavailable(e.to_string()),
            }
        }
        // The upstream's own token for this caller, last: only a call that passed every check
        // costs the authorization server an exchange.
        let upstream_token = match &self.exchanger {
            None => None,
            Some(x) => match x.exchange(&self.issuer, token, info.expires_at, now).await {
                Ok(t) => Some(t),
                Err(ExchangeError::Refused(code)) => {
                    tracing::info!(issuer = %self.cfg.issuer, error = %code, "token exchange refused");
                    return OAuthOutcome::ExchangeRefused { code, identity };
                }
                Err(ExchangeError::Unavailable(e)) => {
                    tracing::warn!(issuer = %self.cfg.issuer, error = %e, "token exchange failed: failing closed");
                    return OAuthOutcome::Unavailable(e);
                }
                Err(ExchangeError::Busy) => {
                    return OAuthOutcome::Busy {
                        own: false,
                        retry_after: 1,
                    }
                }
            },
        };
        OAuthOutcome::Pass(Accepted {
            identity,
            token: info,
            dpop_bound,
            dpop_nonce: if dpop_bound {
                self.current_dpop_nonce(now)
            } else {
                None
            },
            upstream_token,
        })
    }

    fn missing_scopes(&self, granted: &[String], needed: &[String]) -> Vec<String> {
        let mut missing: Vec<String> = Vec::new();
        for n in needed {
            let has = granted
                .iter()
                .any(|g| g == n || self.implied.get(g).is_some_and(|set| set.contains(n)));
            if !has && !missing.contains(n) {
                missing.push(n.clone());
            }
        }
        missing
    }

    async fn validate_token(
        &self,
        token: &str,
        now: u64,
        peer: Option<IpAddr>,
    ) -> Result<TokenInfo, TokenError> {
        if looks_like_jws(token) {
            return self.validate_jwt(token, now).await;
        }
        let Some(introspector) = &self.introspector else {
            return Err(TokenError::Invalid(
                "the token is not a JWT and this resource does not introspect tokens",
            ));
        };
        let answer = introspector
            .introspect(&self.issuer, token, now, peer)
            .await
            .map_err(|e| match e {
                IntrospectError::Busy(b) => TokenError::Busy(b),
                e => TokenError::Unavailable(e.to_string()),
            })?;
        let claims = match answer {
            Introspected::Active(c) => c,
            Introspected::Inactive => return Err(TokenError::Invalid("the token is not active")),
        };
        let exp = Expectations {
            issuer: &self.cfg.issuer,
            resource: &self.resource,
            skew: self.cfg.clock_skew_secs,
            require_exp: false,
            require_aud: true,
            require_iss: false,
        };
        let info = claims.check(&exp, now).map_err(TokenError::Invalid)?;
        let dpop_type = claims
            .token_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("DPoP"));
        if dpop_type && info.jkt.is_none() {
            return Err(TokenError::Invalid(
                "the token is DPoP-bound but its key is unknown",
            ));
        }
        Ok(info)
    }

    async fn validate_jwt(&self, token: &str, now: u64) -> Result<TokenInfo, TokenError> {
        if !self.verified.enabled() {
            return self.verify_jwt(token, now).await.map(|(info, _)| info);
        }
        let key: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        let generation = self.issuer.generation();
        if let Some(info) = self.verified.get(&key, generation, now) {
            return Ok(info);
        }
        let (info, from) = self.verify_jwt(token, now).await?;
        if let Some(exp) = info.expires_at {
            let until = exp.saturating_add(self.cfg.clock_skew_secs);
            self.verified
                .put(key, info.clone(), generation, from, until);
        }
        Ok(info)
    }

    /// Checks a JWT; returns its facts and the earliest time it is acceptable (`nbf`/`iat`
    /// minus skew).
    async fn verify_jwt(&self, token: &str, now: u64) -> Result<(TokenInfo, u64), TokenError> {
        let jws = parse_compact(token, &self.cfg.algorithms).map_err(|e| {
            TokenError::Invalid(match e {
                JwsError::Alg(_) => "the token's signature algorithm is not accepted",
                JwsError::Crit => "the token has critical header extensions",
                JwsError::Malformed | JwsError::BadHeader => "the token is not a well-formed JWT",
            })
        })?;
        if let Some(typ) = jws.header.typ.as_deref() {
            let t = typ.to_ascii_lowercase();
            let at = t == "at+jwt" || t == "application/at+jwt";
            if !(at || (t == "jwt" && !self.cfg.require_at_jwt)) {
                return Err(TokenError::Invalid(
                    "the token's type is not an access token",
                ));
            }
        } else if self.cfg.require_at_jwt {
            return Err(TokenError::Invalid(
                "the token's type is not an access token",
            ));
        }
        let keys = match self
            .issuer
            .keys_for(jws.header.kid.as_deref(), jws.alg)
            .await
        {
            KeyLookup::Found(k) => k,
            KeyLookup::Unknown => {
                return Err(TokenError::Invalid(
                    "the token was not signed by a key of the issuer",
                ))
            }
            KeyLookup::Unavailable(e) => return Err(TokenError::Unavailable(e)),
        };
        if !keys.iter().take(MAX_KEYS_TRIED).any(|k| jws.verify_with(k)) {
            return Err(TokenError::Invalid("the token's signature does not verify"));
        }
        let payload = jws
            .payload()
            .map_err(|_| TokenError::Invalid("the token is not a well-formed JWT"))?;
        let claims = crate::token::parse_claims(&payload)
            .map_err(|_| TokenError::Invalid("the token's claims are not valid JSON"))?;
        let exp = Expectations {
            issuer: &self.cfg.issuer,
            resource: &self.resource,
            skew: self.cfg.clock_skew_secs,
            require_exp: true,
            require_aud: true,
            require_iss: true,
        };
        let info = claims.check(&exp, now).map_err(TokenError::Invalid)?;
        let earliest = [&claims.nbf, &claims.iat]
            .into_iter()
            .flatten()
            .filter_map(crate::token::seconds)
            .max()
            .unwrap_or(0)
            .saturating_sub(self.cfg.clock_skew_secs);
        Ok((info, earliest))
    }

    fn needed_scopes(offer: &Offer) -> Option<Vec<String>> {
        crate::offer::scopes(offer)
    }

    async fn verify_with(
        &self,
        offer: &Offer,
        credential: &Credential,
        http: Option<&HttpContext>,
        call: &CallFacts,
    ) -> OAuthOutcome {
        match Self::needed_scopes(offer) {
            Some(needed) => {
                self.verify_from(credential, &needed, http, call.peer, call.now)
                    .await
            }
            None => reject(
                ErrorCode::InvalidRequest,
                "this call does not accept OAuth tokens",
                Scheme::Bearer,
            ),
        }
    }
}

enum TokenError {
    Invalid(&'static str),
    Unavailable(String),
    /// An introspection bound is reached.
    Busy(Busy),
}

fn reject(code: ErrorCode, description: &'static str, scheme: Scheme) -> OAuthOutcome {
    OAuthOutcome::Rejected(Rejection {
        code,
        description,
        scheme,
        dpop_nonce: None,
    })
}

/// The transitive closure of the scope hierarchy.
fn close_implied(map: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for root in map.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = map
            .get(root)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        while let Some(s) = stack.pop() {
            if s != root && seen.insert(s.clone()) {
                if let Some(next) = map.get(s) {
                    stack.extend(next.iter());
                }
            }
        }
        out.insert(root.clone(), seen);
    }
    out
}

impl Rail for OAuthRail {
    fn kind(&self) -> RailId {
        crate::offer::RAIL
    }

    fn challenge<'a>(
        &'a self,
        _call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        let c = Self::needed_scopes(offer).map(|s| self.challenge_for(&s));
        Box::pin(async move { c })
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            self.verify_with(offer, credential, None, call)
                .await
                .to_verdict()
        })
    }

    /// A bearer token's identity and scopes, checked as for a call needing no scope. A token
    /// presented with a DPoP proof is not checked here: the proof's single use would be spent.
    fn identify<'a>(
        &'a self,
        call: &'a CallFacts,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Option<(Identity, About)>> {
        Box::pin(async move {
            let bearer = credential.payload::<BearerCredential>()?;
            if bearer.dpop.is_some() {
                return None;
            }
            match self
                .verify_from(credential, &[], None, call.peer, call.now)
                .await
            {
                OAuthOutcome::Pass(a) => Some((
                    a.identity,
                    About {
                        scopes: a.token.scopes,
                        claims: a.token.claims,
                        caveats: Vec::new(),
                    },
                )),
                _ => None,
            }
        })
    }
}

/// The OAuth rail seen from one request: it checks DPoP proofs against that request's
/// [`HttpContext`] and keeps the detailed outcome of its last verification, so the gateway can
/// run core's `decide` over it and still answer 403 `insufficient_scope`, the right
/// `WWW-Authenticate` error and `DPoP-Nonce`.
pub struct ScopedOAuthRail {
    rail: Arc<OAuthRail>,
    http: HttpContext,
    last: Mutex<Option<OAuthOutcome>>,
}

impl ScopedOAuthRail {
    /// The detailed outcome of the last OAuth credential verified through this view, if any.
    pub fn outcome(&self) -> Option<OAuthOutcome> {
        self.last.lock().clone()
    }

    /// The rail behind this view.
    pub fn rail(&self) -> &Arc<OAuthRail> {
        &self.rail
    }
}

impl Rail for ScopedOAuthRail {
    fn kind(&self) -> RailId {
        crate::offer::RAIL
    }

    fn challenge<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        self.rail.challenge(call, offer)
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let outcome = self
                .rail
                .verify_with(offer, credential, Some(&self.http), call)
                .await;
            let verdict = outcome.to_verdict();
            *self.last.lock() = Some(outcome);
            verdict
        })
    }
}

/// The algorithms accepted by default, for documentation and tests.
pub const DEFAULT_ALGORITHMS: [Alg; 4] = [Alg::ES256, Alg::RS256, Alg::EdDSA, Alg::PS256];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implied_scopes_close_transitively() {
        let mut m = BTreeMap::new();
        m.insert("admin".to_string(), vec!["write".to_string()]);
        m.insert(
            "write".to_string(),
            vec!["read".to_string(), "admin".to_string()],
        );
        let c = close_implied(&m);
        assert_eq!(
            c["admin"].iter().cloned().collect::<Vec<_>>(),
            vec!["read", "write"]
        );
        assert!(c["write"].contains("admin"), "cycles are harmless");
    }
}
