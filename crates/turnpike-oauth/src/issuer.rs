//! The authorization server as the rail sees it: its metadata (RFC 8414, or OpenID Connect
//! Discovery), and its signing keys (JWKS), cached.
//!
//! Keys are fetched on first use, again when the cache is older than `jwks_cache_secs`, and
//! again when a token names a key id the cache does not hold (the issuer rotated its keys). Every
//! fetch is single-flight (concurrent callers wait for the one fetch under way and use its
//! result) and rate-limited: at most one attempt per `jwks_min_refresh_secs`, whatever asks, so a
//! flood of tokens with made-up key ids, or a down issuer, costs the issuer one request per
//! interval.

use parking_lot::RwLock;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::HttpClient;
use crate::jose::{Alg, PublicKey, RawJwk};
use crate::url::{issuer_metadata_urls, Url};

/// Largest metadata or JWKS document read.
const MAX_DOC_BYTES: usize = 512 * 1024;
/// Most keys taken from one JWKS.
const MAX_KEYS: usize = 100;

/// Counters of requests made to the authorization server (for tests and metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Metadata documents fetched (each candidate URL tried counts).
    pub metadata_fetches: AtomicU64,
    /// JWKS documents fetched.
    pub jwks_fetches: AtomicU64,
    /// Introspection requests sent.
    pub introspections: AtomicU64,
}

/// The authorization server metadata fields the rail uses.
#[derive(Debug, Clone, Deserialize)]
pub struct AsMetadata {
    /// The issuer identifier (checked to equal the configured one).
    pub issuer: String,
    /// The JWKS URL.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The token endpoint.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The RFC 7662 introspection endpoint.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// DPoP algorithms the issuer accepts (RFC 9449 §5.1).
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
}

/// The issuer's signing keys at one moment.
pub struct KeySet {
    by_kid: HashMap<String, Vec<Arc<PublicKey>>>,
    all: Vec<Arc<PublicKey>>,
    loaded: Instant,
}

impl KeySet {
    /// Keys from a JWKS document. Keys that cannot sign (`use` other than `sig`, `key_ops`
    /// without `verify`) or whose type is not supported are skipped.
    pub fn from_jwks(doc: &[u8]) -> Result<KeySet, String> {
        #[derive(Deserialize)]
        struct Jwks {
            keys: Vec<serde_json::Value>,
        }
        let jwks: Jwks =
            serde_json::from_slice(doc).map_err(|e| format!("the JWKS is not valid: {e}"))?;
        let mut by_kid: HashMap<String, Vec<Arc<PublicKey>>> = HashMap::new();
        let mut all = Vec::new();
        for v in jwks.keys.into_iter().take(MAX_KEYS) {
            let Ok(raw) = serde_json::from_value::<RawJwk>(v) else {
                continue;
            };
            if raw.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            if raw
                .key_ops
                .as_ref()
                .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
            {
                continue;
            }
            match PublicKey::from_jwk(&raw, false) {
                Ok(k) => {
                    let k = Arc::new(k);
                    if let Some(kid) = &k.kid {
                        by_kid.entry(kid.clone()).or_default().push(k.clone());
                    }
                    all.push(k);
                }
                Err(e) => tracing::debug!(kid = ?raw.kid, error = %e, "JWKS key skipped"),
            }
        }
        Ok(KeySet {
            by_kid,
            all,
            loaded: Instant::now(),
        })
    }

    /// Keys that may check a signature by `alg`: those with key id `kid`, or, for a token
    /// without one, every key.
    fn candidates(&self, kid: Option<&str>, alg: Alg) -> Vec<Arc<PublicKey>> {
        let pool: &[Arc<PublicKey>] = match kid {
            Some(kid) => self.by_kid.get(kid).map_or(&[], Vec::as_slice),
            None => &self.all,
        };
        pool.iter().filter(|k| k.fits(alg)).cloned().collect()
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// What a key lookup found.
pub enum KeyLookup {
    /// Keys that fit the token's key id and algorithm.
    Found(Vec<Arc<PublicKey>>),
    /// The issuer has no such key (even after a refresh, or a refresh was not allowed yet).
    Unknown,
    /// No keys could be loaded at all.
    Unavailable(String),
}

enum Refresh {
    Done,
    RateLimited,
    Failed(String),
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
}

/// The issuer's metadata and keys, fetched lazily, cached and refreshed under a rate limit.
pub struct Issuer {
    issuer: String,
    issuer_url: Url,
    jwks_uri: Option<String>,
    allow_plain_http: bool,
    http: HttpClient,
    ttl: Duration,
    min_refresh: Duration,
    metadata: RwLock<Option<Arc<AsMetadata>>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    generation: AtomicU64,
    fetch: tokio::sync::Mutex<FetchState>,
    stats: Arc<Stats>,
}

impl Issuer {
    /// An issuer client. Nothing is fetched until first use.
    pub fn new(
        issuer: &str,
        jwks_uri: Option<String>,
        allow_plain_http: bool,
        http: HttpClient,
        ttl: Duration,
        min_refresh: Duration,
        stats: Arc<Stats>,
    ) -> Result<Issuer, String> {
        let issuer_url = Url::parse(issuer).ok_or_else(|| format!("issuer {issuer:?}"))?;
        Ok(Issuer {
            issuer: issuer.to_string(),
            issuer_url,
            jwks_uri,
            allow_plain_http,
            http,
            ttl,
            min_refresh,
            metadata: RwLock::new(None),
            keys: RwLock::new(None),
            generation: AtomicU64::new(0),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            stats,
        })
    }

    /// The configured issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A number that changes whenever the key set is replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Installs keys from a JWKS document (replacing any cached ones).
    pub fn install_keys(&self, doc: &[u8]) -> Result<usize, String> {
        let ks = KeySet::from_jwks(doc)?;
        let n = ks.len();
        *self.keys.write() = Some(Arc::new(ks));
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(n)
    }

    /// Keys for a token signed with `alg` under key id `kid`.
    pub async fn keys_for(&self, kid: Option<&str>, alg: Alg) -> KeyLookup {
        let seen = self.generation.load(Ordering::SeqCst);
        let snapshot = self.keys.read().clone();
        if let Some(ks) = &snapshot {
            let found = ks.candidates(kid, alg);
            let fresh = ks.loaded.elapsed() < self.ttl;
            if fresh && !found.is_empty() {
                return KeyLookup::Found(found);
            }
            // Stale keys that still fit are refreshed by whoever gets there first, while
            // everyone else goes on with them (an issuer outage stalls at most that one call);
            // an unknown key waits for the refresh (single-flight, rate-limited).
            let outcome = if found.is_empty() {
                self.refresh(seen).await
            } else {
                match self.fetch.try_lock() {
                    Ok(st) => self.refresh_locked(st, seen).await,
                    Err(_) => return KeyLookup::Found(found),
                }
            };
            match outcome {
                Refresh::Done => {}
                Refresh::RateLimited => {}
                Refresh::Failed(e) => {
                    tracing::warn!(issuer = %self.issuer, error = %e, "JWKS refresh failed; keeping the keys held");
                }
            }
            let current = self.keys.read().clone();
            let found = current.map_or_else(Vec::new, |ks| ks.candidates(kid, alg));
            return if found.is_empty() {
                KeyLookup::Unknown
            } else {
                KeyLookup::Found(found)
            };
        }
        match self.refresh(seen).await {
            Refresh::Done => {}
            Refresh::RateLimited => {
                return KeyLookup::Unavailable(
                    "the issuer's keys could not be loaded (retrying later)".into(),
                )
            }
            Refresh::Failed(e) => return KeyLookup::Unavailable(e),
        }
        let current = self.keys.read().clone();
        match current {
            None => KeyLookup::Unavailable("the issuer's keys could not be loaded".into()),
            Some(ks) => {
                let found = ks.candidates(kid, alg);
                if found.is_empty() {
                    KeyLookup::Unknown
                } else {
                    KeyLookup::Found(found)
                }
            }
        }
    }

    /// Fetches metadata (when needed) and keys now, for a fail-fast start. Not rate-limited.
    pub async fn warm_up(&self) -> Result<usize, String> {
        let mut st = self.fetch.lock().await;
        st.last_attempt = Some(Instant::now());
        let ks = self.fetch_keys().await?;
        let n = ks.len();
        *self.keys.write() = Some(Arc::new(ks));
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(n)
    }

    /// The issuer's metadata, fetched once (under the same rate limit as keys).
    pub async fn metadata(&self) -> Result<Arc<AsMetadata>, String> {
        if let Some(m) = self.metadata.read().clone() {
            return Ok(m);
        }
        let mut st = self.fetch.lock().await;
        if let Some(m) = self.metadata.read().clone() {
            return Ok(m);
        }
        if st
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.min_refresh)
        {
            return Err("the issuer's metadata could not be loaded (retrying later)".into());
        }
        st.last_attempt = Some(Instant::now());
        self.fetch_metadata().await
    }

    async fn refresh(&self, seen_generation: u64) -> Refresh {
        let st = self.fetch.lock().await;
        self.refresh_locked(st, seen_generation).await
    }

    async fn refresh_locked(
        &self,
        mut st: tokio::sync::MutexGuard<'_, FetchState>,
        seen_generation: u64,
    ) -> Refresh {
        if self.generation.load(Ordering::SeqCst) != seen_generation {
            // Another caller refreshed while this one waited: use its result.
            return Refresh::Done;
        }
        if st
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.min_refresh)
        {
            return Refresh::RateLimited;
        }
        st.last_attempt = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(ks) => {
                tracing::debug!(issuer = %self.issuer, keys = ks.len(), "JWKS loaded");
                *self.keys.write() = Some(Arc::new(ks));
                self.generation.fetch_add(1, Ordering::SeqCst);
                Refresh::Done
            }
            Err(e) => Refresh::Failed(e),
        }
    }

    fn url_allowed(&self, url: &str) -> bool {
        Url::parse(url).is_some_and(|u| {
            !u.has_fragment && (u.scheme == "https" || u.is_loopback() || self.allow_plain_http)
        })
    }

    async fn fetch_metadata(&self) -> Result<Arc<AsMetadata>, String> {
        let mut errors = Vec::new();
        for url in issuer_metadata_urls(&self.issuer_url) {
            self.stats.metadata_fetches.fetch_add(1, Ordering::Relaxed);
            let resp = match self.http.get(&url, MAX_DOC_BYTES).await {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            if !resp.status.is_success() {
                errors.push(format!("{url}: HTTP {}", resp.status.as_u16()));
                continue;
            }
            let meta: AsMetadata = match serde_json::from_slice(&resp.body) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(format!("{url}: not a metadata document: {e}"));
                    continue;
                }
            };
            // RFC 8414 §3.3: the issuer in the document must be the one it was fetched for.
            if meta.issuer != self.issuer {
                errors.push(format!(
                    "{url}: names issuer {:?}, not {:?}",
                    meta.issuer, self.issuer
                ));
                continue;
            }
            let meta = Arc::new(meta);
            *self.metadata.write() = Some(meta.clone());
            return Ok(meta);
        }
        Err(format!(
            "no authorization server metadata for {}: {}",
            self.issuer,
            errors.join("; ")
        ))
    }

    async fn fetch_keys(&self) -> Result<KeySet, String> {
        let jwks_uri = match &self.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let held = self.metadata.read().clone();
                let meta = match held {
                    Some(m) => m,
                    None => self.fetch_metadata().await?,
                };
                meta.jwks_uri
                    .clone()
                    .ok_or_else(|| format!("the metadata of {} has no jwks_uri", self.issuer))?
            }
        };
        if !self.url_allowed(&jwks_uri) {
            return Err(format!(
                "jwks_uri {jwks_uri:?} is not https (set oauth.allow_plain_http to allow it)"
            ));
        }
        self.stats.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .get(&jwks_uri, MAX_DOC_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Err(format!("{jwks_uri}: HTTP {}", resp.status.as_u16()));
        }
        KeySet::from_jwks(&resp.body).map_err(|e| format!("{jwks_uri}: {e}"))
    }

    /// Whether `url` may be called (https, loopback, or plain http allowed).
    pub fn endpoint_allowed(&self, url: &str) -> bool {
        self.url_allowed(url)
    }

    /// Request counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The HTTP client.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }
}
