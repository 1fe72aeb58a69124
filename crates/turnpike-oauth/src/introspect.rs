//! Opaque access tokens, through RFC 7662 token introspection, with a short cache.
//!
//! The cache is keyed by SHA-256 of the token (the token itself is never stored), holds an
//! answer at most `cache_secs` and never past the token's `exp`, remembers inactive tokens for
//! the same time (so a replayed junk token costs the issuer one request per interval), and is
//! bounded in size. At most a fixed number of introspection requests are in flight at once.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::IntrospectionConfig;
use crate::http::form_encode;
use crate::issuer::Issuer;
use crate::token::Claims;

/// Largest introspection answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most answers cached.
const MAX_CACHED: usize = 10_000;
/// Most introspection requests in flight.
const MAX_IN_FLIGHT: usize = 32;

/// What the authorization server said about a token.
#[derive(Debug, Clone)]
pub enum Introspected {
    /// The token is active; its claims.
    Active(Arc<Claims>),
    /// The token is not active (unknown, expired, revoked).
    Inactive,
}

struct Entry {
    answer: Introspected,
    until: Instant,
}

/// An RFC 7662 client with a cache.
pub struct Introspector {
    endpoint: Option<String>,
    authorization: HeaderValue,
    cache_for: Duration,
    cache: Mutex<HashMap<[u8; 32], Entry>>,
    in_flight: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    /// A client that authenticates as `cfg.client_id` with HTTP Basic (RFC 6749 §2.3.1).
    pub fn new(cfg: &IntrospectionConfig) -> Result<Self, String> {
        let basic = format!(
            "{}:{}",
            form_encode(&cfg.client_id),
            form_encode(cfg.client_secret.expose())
        );
        let mut authorization = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(basic)))
            .map_err(|_| "introspection credentials do not fit a header".to_string())?;
        authorization.set_sensitive(true);
        Ok(Introspector {
            endpoint: cfg.endpoint.clone(),
            authorization,
            cache_for: Duration::from_secs(cfg.cache_secs),
            cache: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    /// Asks about `token` (or answers from the cache). `now` is Unix seconds, for `exp`.
    pub async fn introspect(
        &self,
        issuer: &Issuer,
        token: &str,
        now: u64,
    ) -> Result<Introspected, String> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(e) = self.cache.lock().get(&key) {
            if e.until > Instant::now() {
                return Ok(e.answer.clone());
            }
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| "introspection is shutting down".to_string())?;
        // Another request may have answered while this one waited.
        if let Some(e) = self.cache.lock().get(&key) {
            if e.until > Instant::now() {
                return Ok(e.answer.clone());
            }
        }
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => issuer
                .metadata()
                .await?
                .introspection_endpoint
                .clone()
                .ok_or_else(|| {
                    format!(
                        "the metadata of {} has no introspection_endpoint; set \
                     oauth.introspection.endpoint",
                        issuer.issuer()
                    )
                })?,
        };
        if !issuer.endpoint_allowed(&endpoint) {
            return Err(format!(
                "introspection endpoint {endpoint:?} is not https (set oauth.allow_plain_http)"
            ));
        }
        issuer
            .stats()
            .introspections
            .fetch_add(1, Ordering::Relaxed);
        let form = format!("token={}&token_type_hint=access_token", form_encode(token));
        let resp = issuer
            .http()
            .post_form(
                &endpoint,
                form,
                Some(self.authorization.clone()),
                MAX_ANSWER_BYTES,
            )
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Err(format!(
                "introspection at {endpoint} answered HTTP {}",
                resp.status.as_u16()
            ));
        }
        let claims: Claims = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("introspection at {endpoint}: not a valid answer: {e}"))?;
        let answer = if claims.active == Some(true) {
            Introspected::Active(Arc::new(claims))
        } else {
            Introspected::Inactive
        };
        let mut cache_for = self.cache_for;
        if let Introspected::Active(c) = &answer {
            if let Some(exp) = c.exp.as_ref().and_then(serde_json::Number::as_u64) {
                cache_for = cache_for.min(Duration::from_secs(exp.saturating_sub(now)));
            }
        }
        if !cache_for.is_zero() {
            let mut cache = self.cache.lock();
            if cache.len() >= MAX_CACHED {
                let t = Instant::now();
                cache.retain(|_, e| e.until > t);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Entry {
                    answer: answer.clone(),
                    until: Instant::now() + cache_for,
                },
            );
        }
        Ok(answer)
    }
}
