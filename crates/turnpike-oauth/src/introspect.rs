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
//! at once. A caller over a bound is told when to come back (the rail answers 429 with
//! `Retry-After` for the caller's own bound, 503 with `Retry-After` for the bound in all); the
//! cache still answers it, and other callers are not affected by its bucket.

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

    /// How long until the bucket holds one request again (zero when it holds one now).
    fn wait(&self, per_minute: u32) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing * 60.0 / f64::from(per_minute.max(1)))
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
    /// Takes one request from `peer`'s bucket and the global one, or says which bound is
    /// reached and when it admits a request again.
    fn admit(&mut self, peer: Option<IpAddr>, now: Instant) -> Result<(), Busy> {
        if let Some(ip) = peer {
            let key = address_key(ip);
            if !self.addresses.contains_key(&key) && self.addresses.len() >= MAX_ADDRESSES {
                let (cap, per) = (f64::from(self.per_address), self.per_address);
                // The soonest a kept bucket is full again (and so may be dropped).
                let mut soonest = f64::INFINITY;
                self.addresses.retain(|_, b| {
                    b.refill(per, now);
                    soonest = soonest.min((cap - b.tokens) * 60.0 / cap);
                    b.tokens < cap
                });
                if self.addresses.len() >= MAX_ADDRESSES {
                    return Err(Busy {
                        own: false,
                        retry_after: whole_seconds(Duration::from_secs_f64(soonest.min(60.0))),
                        reason: "too many callers are having tokens introspected",
                    });
                }
            }
            let per = self.per_address;
            let b = self
                .addresses
                .entry(key)
                .or_insert_with(|| Bucket::full(per, now));
            if !b.take(per, now) {
                return Err(Busy {
                    own: true,
                    retry_after: whole_seconds(b.wait(per)),
                    reason: "too many unknown tokens from this address",
                });
            }
        }
        if !self.global.take(self.per_minute, now) {
            if let Some(b) = peer.and_then(|ip| self.addresses.get_mut(&address_key(ip))) {
                b.tokens += 1.0;
            }
            return Err(Busy {
                own: false,
                retry_after: whole_seconds(self.global.wait(self.per_minute)),
                reason: "too many unknown tokens",
            });
        }
        Ok(())
    }
}

/// A duration in whole seconds, rounded up, at least 1 (a `Retry-After` value).
fn whole_seconds(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// A bound on introspection requests is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// Whether it is the caller's own per-address bound (else the bound in all).
    pub own: bool,
    /// Seconds until the bound admits a request again: rounded up, at least 1.
    pub retry_after: u64,
    /// Which bound, in a few words.
    pub reason: &'static str,
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
    Busy(Busy),
}

impl std::fmt::Display for IntrospectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntrospectError::Unavailable(e) => f.write_str(e),
            IntrospectError::Busy(b) => write!(
                f,
                "introspection refused: {} (retry after {} s)",
                b.reason, b.retry_after
            ),
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
        let claims = crate::token::parse_claims(&resp.body)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn bounds(per_address: u32, per_minute: u32, now: Instant) -> Bounds {
        Bounds {
            per_address,
            per_minute,
            addresses: HashMap::new(),
            global: Bucket::full(per_minute, now),
        }
    }

    #[test]
    fn a_refusal_says_which_bound_and_when_to_come_back() {
        let t0 = Instant::now();
        let a = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        let b = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        // 2 a minute per address: one request every 30 s; 3 a minute in all: every 20 s.
        let mut bs = bounds(2, 3, t0);
        assert!(bs.admit(a, t0).is_ok());
        assert!(bs.admit(a, t0).is_ok());
        let own = bs.admit(a, t0).unwrap_err();
        assert!(own.own);
        assert_eq!(own.retry_after, 30);
        // 10.5 s later: 19.5 s to go, rounded up.
        let own = bs.admit(a, t0 + Duration::from_millis(10_500)).unwrap_err();
        assert_eq!((own.own, own.retry_after), (true, 20));
        // Another address still gets the last request in all, then the bound in all holds.
        assert!(bs.admit(b, t0).is_ok());
        let all = bs.admit(b, t0 + Duration::from_secs(1)).unwrap_err();
        assert!(!all.own);
        // One request in all refills in 20 s; 1 s has gone (of which 1/20 refilled).
        assert_eq!(all.retry_after, 19);
        // The refused address was not charged for the request the global bound refused.
        let t = t0 + Duration::from_secs(21);
        assert!(bs.admit(b, t).is_ok());
        // Never less than a second, even when the bucket is a hair short.
        let mut bs = bounds(60, 60, t0);
        for _ in 0..60 {
            assert!(bs.admit(a, t0).is_ok());
        }
        let own = bs.admit(a, t0 + Duration::from_millis(999)).unwrap_err();
        assert_eq!(own.retry_after, 1);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
    }
}
