//! Opaque access tokens, through RFC 7662 token introspection, with a short cache.
//!
//! The cache is keyed by SHA-256 of the token (the token itself is never stored), holds an
//! active answer at most `cache_secs` and never past the token's `exp`, remembers inactive
//! tokens for `negative_cache_secs` (so a replayed junk token costs the issuer one request per
//! interval), and is bounded in size.
//!
//! Every token the cache does not answer costs the authorization server a request, so those
//! are bounded: per caller address (`per_address_per_minute`, IPv6 by /64) and in all
//! (`per_minute`), each a token bucket that refills continuously, and at most `max_in_flight`
//! at once. A caller over a bound is told to come back later (the rail fails closed with 503);
//! the cache still answers it, and other callers are not affected by its bucket.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
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
/// Most caller addresses with a bucket of their own (idle, full buckets are dropped first).
const MAX_ADDRESSES: usize = 16_384;

/// A token bucket of `per_minute` requests, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(per_minute),
            at: now,
        }
    }

    fn refill(&mut self, per_minute: u32, now: Instant) {
        let cap = f64::from(per_minute);
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * cap / 60.0).min(cap);
        self.at = now;
    }

    fn take(&mut self, per_minute: u32, now: Instant) -> bool {
        self.refill(per_minute, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The key of a caller's bucket: an IPv4 address, or the /64 of an IPv6 one.
fn address_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64 << 64) | (1 << 32),
        },
    }
}

/// The per-address and global bounds on introspection requests.
struct Bounds {
    per_address: u32,
    per_minute: u32,
    addresses: HashMap<u128, Bucket>,
    global: Bucket,
}

impl Bounds {
    /// Takes one request from `peer`'s bucket and the global one, or says which is empty.
    fn admit(&mut self, peer: Option<IpAddr>, now: Instant) -> Result<(), &'static str> {
        if let Some(ip) = peer {
            let key = address_key(ip);
            if !self.addresses.contains_key(&key) && self.addresses.len() >= MAX_ADDRESSES {
                let (cap, per) = (f64::from(self.per_address), self.per_address);
                self.addresses.retain(|_, b| {
                    b.refill(per, now);
                    b.tokens < cap
                });
                if self.addresses.len() >= MAX_ADDRESSES {
                    return Err("too many callers are having tokens introspected");
                }
            }
            let per = self.per_address;
            let b = self
                .addresses
                .entry(key)
                .or_insert_with(|| Bucket::full(per, now));
            if !b.take(per, now) {
                return Err("too many unknown tokens from this address");
            }
        }
        if !self.global.take(self.per_minute, now) {
            if let Some(b) = peer.and_then(|ip| self.addresses.get_mut(&address_key(ip))) {
                b.tokens += 1.0;
            }
            return Err("too many unknown tokens");
        }
        Ok(())
    }
}

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
    negative_for: Duration,
    cache: Mutex<HashMap<[u8; 32], Entry>>,
    bounds: Mutex<Bounds>,
    in_flight: tokio::sync::Semaphore,
}

/// Why a token could not be introspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectError {
    /// The authorization server could not be reached or answered something unusable.
    Unavailable(String),
    /// A bound on introspection requests (this caller's, or all of them) is reached.
    Busy(&'static str),
}

impl std::fmt::Display for IntrospectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntrospectError::Unavailable(e) => f.write_str(e),
            IntrospectError::Busy(e) => write!(f, "introspection refused: {e}"),
        }
    }
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
            negative_for: Duration::from_secs(cfg.negative_cache_secs),
            cache: Mutex::new(HashMap::new()),
            bounds: Mutex::new(Bounds {
                per_address: cfg.per_address_per_minute.max(1),
                per_minute: cfg.per_minute.max(1),
                addresses: HashMap::new(),
                global: Bucket::full(cfg.per_minute.max(1), Instant::now()),
            }),
            in_flight: tokio::sync::Semaphore::new(cfg.max_in_flight.max(1) as usize),
        })
    }

    /// Asks about `token` (or answers from the cache) for a caller at `peer`. `now` is Unix
    /// seconds, for `exp`.
    pub async fn introspect(
        &self,
        issuer: &Issuer,
        token: &str,
        now: u64,
        peer: Option<IpAddr>,
    ) -> Result<Introspected, IntrospectError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(e) = self.cache.lock().get(&key) {
            if e.until > Instant::now() {
                return Ok(e.answer.clone());
            }
        }
        self.bounds
            .lock()
            .admit(peer, Instant::now())
            .map_err(IntrospectError::Busy)?;
        let _permit =
            self.in_flight.acquire().await.map_err(|_| {
                IntrospectError::Unavailable("introspection is shutting down".into())
            })?;
        // Another request may have answered while this one waited.
        if let Some(e) = self.cache.lock().get(&key) {
            if e.until > Instant::now() {
                return Ok(e.answer.clone());
            }
        }
        self.ask(issuer, token, key, now)
            .await
            .map_err(IntrospectError::Unavailable)
    }

    async fn ask(
        &self,
        issuer: &Issuer,
        token: &str,
        key: [u8; 32],
        now: u64,
    ) -> Result<Introspected, String> {
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
        let mut cache_for = match answer {
            Introspected::Active(_) => self.cache_for,
            Introspected::Inactive => self.negative_for,
        };
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
