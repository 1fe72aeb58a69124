//! The authorization server as the rail sees it: its metadata (RFC 8414, or OpenID Connect
//! Discovery), and its signing keys (JWKS), cached.
//!
//! Keys are fetched when a JWT first needs them, again when the cache is older than
//! `jwks_cache_secs`, and again when a token names a key id the cache does not hold (the issuer
//! rotated its keys). Every fetch is single-flight: callers that asked while a fetch was under
//! way, or queued behind one, use the key set it brought, so a key set fetched after a token was
//! presented decides that token. Two bounds keep a flood of made-up key ids cheap for the issuer,
//! and neither turns a genuine key away:
//!
//! - per key id: a key id that a key set fetched after it was asked for did not hold is refused
//!   without a fetch for `jwks_min_refresh_secs` (a bounded table of such ids);
//! - in all: two fetches of the key set start at least `jwks_fetch_spacing_ms` apart. A token
//!   with an unknown key id waits for the next fetch rather than being refused.
//!
//! A failed fetch (the issuer down) is retried at most once per `jwks_min_refresh_secs`;
//! meanwhile keys held are still used, and a lookup without keys is unavailable. The metadata
//! is fetched once and kept; its failures have their own back-off, so whatever asked for the
//! metadata first (an introspection, say) never delays a key fetch.

use parking_lot::RwLock;
use serde::Deserialize;
use sha2::{Digest, Sha256};
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
    /// When the fetch that brought the set started (a set fetched after a token was presented
    /// is fresh for it).
    fetched: Instant,
    /// SHA-256 of the document, to tell a changed set from the same one fetched again.
    digest: [u8; 32],
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
            fetched: Instant::now(),
            digest: Sha256::digest(doc).into(),
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
    /// The issuer has no such key (in a key set fetched after the lookup began, or the key id
    /// was refused that way moments ago).
    Unknown,
    /// No keys could be loaded at all.
    Unavailable(String),
}

enum Refresh {
    Done,
    RateLimited,
    Failed(String),
}

/// Most key ids remembered as unknown (the per-key-id bound).
const MAX_UNKNOWN_KIDS: usize = 4096;

#[derive(Default)]
struct FetchState {
    /// When the last key fetch started (for `jwks_fetch_spacing_ms`).
    last_fetch: Option<Instant>,
    /// When the last key fetch failed, if it did (for the back-off).
    last_failure: Option<Instant>,
}

/// The issuer's metadata and keys, fetched lazily, cached and refreshed under bounds.
pub struct Issuer {
    issuer: String,
    issuer_url: Url,
    jwks_uri: Option<String>,
    allow_plain_http: bool,
    http: HttpClient,
    ttl: Duration,
    min_refresh: Duration,
    spacing: Duration,
    metadata: RwLock<Option<Arc<AsMetadata>>>,
    /// The metadata fetch: single-flight, with the time of its last failure.
    metadata_fetch: tokio::sync::Mutex<Option<Instant>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    generation: AtomicU64,
    fetch: tokio::sync::Mutex<FetchState>,
    /// Key ids a fresh key set did not hold, with when that set was fetched.
    unknown_kids: parking_lot::Mutex<HashMap<String, Instant>>,
    stats: Arc<Stats>,
}

impl Issuer {
    /// An issuer client. Nothing is fetched until first use. `min_refresh` bounds repeated
    /// fetches for one unknown key id and retries after a failure; `spacing` is the least time
    /// between two key fetches, whatever asks.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        issuer: &str,
        jwks_uri: Option<String>,
        allow_plain_http: bool,
        http: HttpClient,
        ttl: Duration,
        min_refresh: Duration,
        spacing: Duration,
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
            spacing,
            metadata: RwLock::new(None),
            metadata_fetch: tokio::sync::Mutex::new(None),
            keys: RwLock::new(None),
            generation: AtomicU64::new(0),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            unknown_kids: parking_lot::Mutex::new(HashMap::new()),
            stats,
        })
    }

    /// The configured issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A number that changes whenever the keys change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Installs keys from a JWKS document (replacing any cached ones).
    pub fn install_keys(&self, doc: &[u8]) -> Result<usize, String> {
        let ks = KeySet::from_jwks(doc)?;
        let n = ks.len();
        self.install(ks);
        Ok(n)
    }

    /// Puts `ks` in force. The generation (and with it the verified-token cache) changes only
    /// when the document differs from the one held: a refetch of the same keys keeps it.
    fn install(&self, ks: KeySet) {
        let mut held = self.keys.write();
        let same = held.as_ref().is_some_and(|h| h.digest == ks.digest);
        *held = Some(Arc::new(ks));
        drop(held);
        if !same {
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.unknown_kids.lock().clear();
        }
    }

    /// Keys for a token signed with `alg` under key id `kid`.
    pub async fn keys_for(&self, kid: Option<&str>, alg: Alg) -> KeyLookup {
        let asked = Instant::now();
        let snapshot = self.keys.read().clone();
        if let Some(ks) = &snapshot {
            let found = ks.candidates(kid, alg);
            if !found.is_empty() {
                if ks.fetched.elapsed() < self.ttl {
                    return KeyLookup::Found(found);
                }
                // Stale keys that still fit are refreshed by whoever gets there first, while
                // everyone else goes on with them (an issuer outage stalls at most that one
                // call, and no call waits for the spacing).
                if let Ok(st) = self.fetch.try_lock() {
                    if let Refresh::Failed(e) = self.refresh_locked(st, asked, false).await {
                        tracing::warn!(issuer = %self.issuer, error = %e, "JWKS refresh failed; keeping the keys held");
                    }
                    let current = self.keys.read().clone();
                    let now_found = current.map_or_else(Vec::new, |ks| ks.candidates(kid, alg));
                    if !now_found.is_empty() {
                        return KeyLookup::Found(now_found);
                    }
                    return KeyLookup::Unknown;
                }
                return KeyLookup::Found(found);
            }
            // An unknown key id: refused at once if a key set fetched after it was last asked
            // for did not hold it, moments ago.
            if self.recently_unknown(kid.unwrap_or("")) {
                return KeyLookup::Unknown;
            }
        }
        let st = self.fetch.lock().await;
        let outcome = self.refresh_locked(st, asked, true).await;
        let current = self.keys.read().clone();
        let Some(ks) = current else {
            return KeyLookup::Unavailable(match outcome {
                Refresh::Failed(e) => e,
                _ => "the issuer's keys could not be loaded (retrying later)".into(),
            });
        };
        if let Refresh::Failed(e) = &outcome {
            tracing::warn!(issuer = %self.issuer, error = %e, "JWKS refresh failed; keeping the keys held");
        }
        let found = ks.candidates(kid, alg);
        if !found.is_empty() {
            return KeyLookup::Found(found);
        }
        if ks.fetched >= asked {
            self.remember_unknown(kid.unwrap_or(""), ks.fetched);
        }
        KeyLookup::Unknown
    }

    fn recently_unknown(&self, kid: &str) -> bool {
        self.unknown_kids
            .lock()
            .get(kid)
            .is_some_and(|t| t.elapsed() < self.min_refresh)
    }

    fn remember_unknown(&self, kid: &str, at: Instant) {
        if self.min_refresh.is_zero() || kid.len() > 256 {
            return;
        }
        let mut map = self.unknown_kids.lock();
        if map.len() >= MAX_UNKNOWN_KIDS && !map.contains_key(kid) {
            map.retain(|_, t| t.elapsed() < self.min_refresh);
            if map.len() >= MAX_UNKNOWN_KIDS {
                // Full of live entries: the spacing still bounds the fetches.
                return;
            }
        }
        map.insert(kid.to_string(), at);
    }

    /// Fetches metadata (when needed) and keys now, for a fail-fast start. Not rate-limited.
    pub async fn warm_up(&self) -> Result<usize, String> {
        let mut st = self.fetch.lock().await;
        let started = Instant::now();
        st.last_fetch = Some(started);
        match self.fetch_keys(started).await {
            Ok(ks) => {
                st.last_failure = None;
                let n = ks.len();
                self.install(ks);
                Ok(n)
            }
            Err(e) => {
                st.last_failure = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// The issuer's metadata, fetched once and kept. Single-flight; after a failed attempt
    /// the next one waits `jwks_min_refresh_secs`.
    pub async fn metadata(&self) -> Result<Arc<AsMetadata>, String> {
        if let Some(m) = self.metadata.read().clone() {
            return Ok(m);
        }
        let mut failed = self.metadata_fetch.lock().await;
        if let Some(m) = self.metadata.read().clone() {
            return Ok(m);
        }
        if failed.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Err("the issuer's metadata could not be loaded (retrying later)".into());
        }
        match self.fetch_metadata().await {
            Ok(m) => {
                *failed = None;
                Ok(m)
            }
            Err(e) => {
                *failed = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Fetches the keys unless a fetch that started after `asked` already brought them. With
    /// `wait`, waits for the spacing to pass; without, gives up when it has not.
    async fn refresh_locked(
        &self,
        mut st: tokio::sync::MutexGuard<'_, FetchState>,
        asked: Instant,
        wait: bool,
    ) -> Refresh {
        if self
            .keys
            .read()
            .as_ref()
            .is_some_and(|ks| ks.fetched >= asked)
        {
            // Another caller fetched after this one asked: use its result.
            return Refresh::Done;
        }
        if st
            .last_failure
            .is_some_and(|t| t.elapsed() < self.min_refresh)
        {
            return Refresh::RateLimited;
        }
        if let Some(last) = st.last_fetch {
            let next = last + self.spacing;
            if next > Instant::now() {
                if !wait {
                    return Refresh::RateLimited;
                }
                tokio::time::sleep_until(next.into()).await;
            }
        }
        let started = Instant::now();
        st.last_fetch = Some(started);
        match self.fetch_keys(started).await {
            Ok(ks) => {
                tracing::debug!(issuer = %self.issuer, keys = ks.len(), "JWKS loaded");
                st.last_failure = None;
                self.install(ks);
                Refresh::Done
            }
            Err(e) => {
                st.last_failure = Some(Instant::now());
                Refresh::Failed(e)
            }
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

    async fn fetch_keys(&self, started: Instant) -> Result<KeySet, String> {
        let jwks_uri = match &self.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let meta = self.metadata().await?;
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
        let mut ks = KeySet::from_jwks(&resp.body).map_err(|e| format!("{jwks_uri}: {e}"))?;
        ks.fetched = started;
        Ok(ks)
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
