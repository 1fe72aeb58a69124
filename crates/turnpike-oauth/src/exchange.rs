//! OAuth 2.0 Token Exchange (RFC 8693): the upstream's own token for a caller.
//!
//! The caller's token is never forwarded (the MCP specification forbids token passthrough). With
//! `[oauth.upstream_token.exchange]`, a call a token paid for is sent upstream with a token the
//! authorization server issued for the upstream instead: the gateway, authenticated as its own
//! client (HTTP Basic), posts to the token endpoint
//!
//! ```text
//! grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//! &subject_token=<the caller's access token>
//! &subject_token_type=urn:ietf:params:oauth:token-type:access_token
//! &requested_token_type=urn:ietf:params:oauth:token-type:access_token
//! [&audience=<audience>] [&resource=<resource>] [&scope=<scope>]
//! ```
//!
//! and sends the answer's `access_token` upstream as `Authorization: Bearer <token>`. Answers
//! are kept by SHA-256 of the caller's token (never the token itself) until the exchanged token
//! or the caller's expires, whichever is first, less a margin; the cache is bounded.
//!
//! What can go wrong ends the call, never with the caller's token forwarded: the server refusing
//! the exchange (`invalid_grant`, `invalid_target`, `invalid_scope`, `invalid_request`, …) is a
//! 403 naming its error code; the server unreachable, slow, answering something unusable, or
//! refusing the gateway's own client (`invalid_client`, `unauthorized_client`: the operator's
//! mistake) is a 503, fail closed; more than `max_in_flight` exchanges at once is a 503 with
//! `Retry-After`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::config::ExchangeConfig;
use crate::http::form_encode;
use crate::issuer::Issuer;

/// RFC 8693's grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's token type of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Largest token endpoint answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest exchanged token accepted (it goes in a header).
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// An exchanged token is not reused this close to its expiry.
const EXPIRY_MARGIN_SECS: u64 = 10;
/// How long an exchanged token with no `expires_in` is reused.
const DEFAULT_LIFETIME_SECS: u64 = 60;

/// A token for the upstream. Its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamToken(Arc<str>);

impl UpstreamToken {
    /// The token itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for UpstreamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamToken(<redacted>)")
    }
}

/// Why no token for the upstream could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The authorization server refused to exchange this caller's token: its `error` code
    /// (printable ASCII, at most 64 characters) — 403.
    Refused(String),
    /// The exchange could not be made (server unreachable or slow, an unusable answer, the
    /// gateway's own client refused): fail closed, 503. The text is for the log.
    Unavailable(String),
    /// `max_in_flight` exchanges are running: 503 with `Retry-After`.
    Busy,
}

#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    token_type: Option<String>,
    issued_token_type: Option<String>,
    expires_in: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
}

struct Cached {
    token: UpstreamToken,
    until: Instant,
}

/// The token exchange client of one `[oauth]` section.
pub struct Exchanger {
    endpoint: Option<String>,
    authorization: HeaderValue,
    /// The form's fixed tail: the requested type, audience, resource and scope.
    tail: String,
    cache_entries: usize,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    in_flight: Semaphore,
}

impl std::fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanger")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Exchanger {
    /// The client of `cfg` (already validated); its secret read from the environment when
    /// `client_secret_env` names it.
    pub fn new(cfg: &ExchangeConfig) -> Result<Exchanger, String> {
        let secret = match (&cfg.client_secret, &cfg.client_secret_env) {
            (Some(s), _) => zeroize::Zeroizing::new(s.expose().to_owned()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => zeroize::Zeroizing::new(v),
                _ => {
                    return Err(format!(
                        "client_secret_env: the environment variable {var} is not set"
                    ))
                }
            },
            (None, None) => return Err("no client secret".into()),
        };
        let basic = format!("{}:{}", form_encode(&cfg.client_id), form_encode(&secret));
        let mut authorization = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(basic)))
            .map_err(|_| "the client credentials do not fit a header".to_string())?;
        authorization.set_sensitive(true);
        let mut tail = format!("&requested_token_type={}", form_encode(ACCESS_TOKEN_TYPE));
        for (k, v) in [
            ("audience", &cfg.audience),
            ("resource", &cfg.resource),
            ("scope", &cfg.scope),
        ] {
            if let Some(v) = v {
                tail.push_str(&format!("&{k}={}", form_encode(v)));
            }
        }
        Ok(Exchanger {
            endpoint: cfg.token_endpoint.clone(),
            authorization,
            tail,
            cache_entries: cfg.cache_entries,
            cache: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(cfg.max_in_flight.max(1) as usize),
        })
    }

    /// How many exchanged tokens are kept now.
    pub fn cached(&self) -> usize {
        self.cache.lock().len()
    }

    /// The upstream's token for the caller's `subject` token, which expires at `subject_exp`
    /// (Unix seconds) when known; `now` is the current Unix time.
    pub async fn exchange(
        &self,
        issuer: &Issuer,
        subject: &str,
        subject_exp: Option<u64>,
        now: u64,
    ) -> Result<UpstreamToken, ExchangeError> {
        let key: [u8; 32] = Sha256::digest(subject.as_bytes()).into();
        if let Some(c) = self.cache.lock().get(&key) {
            if c.until > Instant::now() {
                return Ok(c.token.clone());
            }
        }
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| ExchangeError::Busy)?;
        let endpoint = self.endpoint(issuer).await?;
        let form = format!(
            "grant_type={}&subject_token={}&subject_token_type={}{}",
            form_encode(GRANT_TYPE),
            form_encode(subject),
            form_encode(ACCESS_TOKEN_TYPE),
            self.tail
        );
        let resp = issuer
            .http()
            .post_form(
                &endpoint,
                form,
                Some(self.authorization.clone()),
                MAX_ANSWER_BYTES,
            )
            .await
            .map_err(|e| ExchangeError::Unavailable(e.to_string()))?;
        let status = resp.status.as_u16();
        if !resp.status.is_success() {
            let code = serde_json::from_slice::<ErrorAnswer>(&resp.body)
                .ok()
                .and_then(|e| e.error)
                .filter(|c| {
                    !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic())
                });
            return Err(match (status, code) {
                (400..=499, Some(c)) if c == "invalid_client" || c == "unauthorized_client" => {
                    ExchangeError::Unavailable(format!(
                        "token exchange at {endpoint}: the authorization server refused the \
                         gateway's own client ({c}): check oauth.upstream_token.exchange's \
                         client_id and secret"
                    ))
                }
                (400..=499, Some(c)) => ExchangeError::Refused(c),
                (s, _) => ExchangeError::Unavailable(format!(
                    "token exchange at {endpoint} answered HTTP {s}"
                )),
            });
        }
        let unusable =
            |why: &str| ExchangeError::Unavailable(format!("token exchange at {endpoint}: {why}"));
        let answer: Answer = serde_json::from_slice(&resp.body)
            .map_err(|e| unusable(&format!("not a token response: {e}")))?;
        let token = answer
            .access_token
            .filter(|t| {
                !t.is_empty() && t.len() <= MAX_TOKEN_LEN && crate::credential::is_token68(t)
            })
            .ok_or_else(|| unusable("no usable access_token"))?;
        if !answer
            .token_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("Bearer"))
        {
            return Err(unusable("the issued token is not a Bearer token"));
        }
        if answer
            .issued_token_type
            .as_deref()
            .is_some_and(|t| t != ACCESS_TOKEN_TYPE && t != "urn:ietf:params:oauth:token-type:jwt")
        {
            return Err(unusable("the issued token is not an access token"));
        }
        let token = UpstreamToken(Arc::from(token));
        let lifetime = answer
            .expires_in
            .as_ref()
            .and_then(serde_json::Number::as_u64)
            .unwrap_or(DEFAULT_LIFETIME_SECS);
        let lifetime = match subject_exp {
            Some(exp) => lifetime.min(exp.saturating_sub(now)),
            None => lifetime,
        }
        .saturating_sub(EXPIRY_MARGIN_SECS);
        if self.cache_entries > 0 && lifetime > 0 {
            let t = Instant::now();
            let mut cache = self.cache.lock();
            if cache.len() >= self.cache_entries {
                cache.retain(|_, c| c.until > t);
                if cache.len() >= self.cache_entries {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Cached {
                    token: token.clone(),
                    until: t + Duration::from_secs(lifetime),
                },
            );
        }
        Ok(token)
    }

    async fn endpoint(&self, issuer: &Issuer) -> Result<String, ExchangeError> {
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => issuer
                .metadata()
                .await
                .map_err(ExchangeError::Unavailable)?
                .token_endpoint
                .clone()
                .ok_or_else(|| {
                    ExchangeError::Unavailable(format!(
                        "the metadata of {} has no token_endpoint; set \
                         oauth.upstream_token.exchange.token_endpoint",
                        issuer.issuer()
                    ))
                })?,
        };
        if !issuer.endpoint_allowed(&endpoint) {
            return Err(ExchangeError::Unavailable(format!(
                "token endpoint {endpoint:?} is not https (set oauth.allow_plain_http)"
            )));
        }
        Ok(endpoint)
    }
}
