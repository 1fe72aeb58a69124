//! The key directories the `agent` rail allows, fetched with turnpike-https, bounded, cached and
//! refreshed under bounds.
//!
//! Only the directories the configuration lists are ever fetched: a request naming another is
//! refused before anything leaves the gateway. Each directory is fetched when a signature first
//! needs it, again when the copy held is older than `directory_cache_secs`, and again when a
//! signature names a key id the copy does not hold (the agent rotated its keys). Every fetch
//! of one directory is single-flight: callers that asked while a fetch was under way, or
//! queued behind one, use what it brought. Two bounds keep a flood of made-up key ids cheap for
//! the agent's server: a directory is fetched at most once per `directory_min_refresh_secs` for
//! unknown key ids (and after a failure), and a stale copy is refreshed by one caller while the
//! others go on with it. A directory that cannot be loaded and of which no copy is held makes
//! its signatures unverifiable: the rail fails closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use parking_lot::RwLock;
use turnpike_https::HttpsClient;

use crate::directory::{KeyDirectory, MAX_DIRECTORY_LEN};

/// The media type of a key directory (draft-meunier-http-message-signatures-directory).
pub const DIRECTORY_MEDIA_TYPE: &str = "application/http-message-signatures-directory+json";

/// What a key lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The directory holds the key: here is the directory.
    Found(Arc<KeyDirectory>),
    /// A directory fetched since the key was asked for does not hold it.
    Unknown,
    /// The directory could not be loaded and no copy is held.
    Unavailable(String),
}

/// The bounds on fetching directories.
#[derive(Debug, Clone, Copy)]
pub struct FetchBounds {
    /// How long a fetched directory is used before it is fetched again.
    pub ttl: Duration,
    /// The least time between two fetches of one directory for unknown key ids, and before a
    /// retry after a failure.
    pub min_refresh: Duration,
    /// The deadline of one fetch (connecting, sending, the whole answer).
    pub timeout: Duration,
}

#[derive(Default)]
struct FetchState {
    last_fetch: Option<Instant>,
    last_failure: Option<(Instant, String)>,
}

struct Held {
    dir: Arc<KeyDirectory>,
    fetched: Instant,
}

/// One allowed directory: its URL, the copy held, and its single-flight fetch.
struct Entry {
    url: String,
    held: RwLock<Option<Held>>,
    fetch: tokio::sync::Mutex<FetchState>,
}

/// The allowed key directories and their cached copies.
pub struct Directories {
    entries: Vec<Entry>,
    bounds: FetchBounds,
    client: HttpsClient<Empty<Bytes>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Directories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directories")
            .field("urls", &self.urls())
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Directories {
    /// The directories at `urls` (none fetched yet).
    pub fn new(urls: &[String], bounds: FetchBounds) -> Result<Self, String> {
        let client = turnpike_https::client(&turnpike_https::Options {
            connect_timeout: Some(bounds.timeout),
            pool_idle_timeout: Some(Duration::from_secs(30)),
            http2: false,
        })
        .map_err(|e| format!("tls: {e}"))?;
        Ok(Self {
            entries: urls
                .iter()
                .map(|u| Entry {
                    url: u.clone(),
                    held: RwLock::new(None),
                    fetch: tokio::sync::Mutex::new(FetchState::default()),
                })
                .collect(),
            bounds,
            client,
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The allowed directories' URLs, in order.
    pub fn urls(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.url.as_str()).collect()
    }

    /// Whether `url` is one of the allowed directories.
    pub fn allows(&self, url: &str) -> bool {
        self.entries.iter().any(|e| e.url == url)
    }

    /// Fetches made so far (successful or not).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The directory at `url` (which must be allowed) if it holds `keyid`.
    pub async fn lookup(&self, url: &str, keyid: &str) -> Lookup {
        let Some(entry) = self.entries.iter().find(|e| e.url == url) else {
            return Lookup::Unknown;
        };
        let asked = Instant::now();
        let snapshot = entry
            .held
            .read()
            .as_ref()
            .map(|h| (h.dir.clone(), h.fetched));
        if let Some((dir, fetched)) = &snapshot {
            if dir.key(keyid).is_some() {
                if fetched.elapsed() < self.bounds.ttl {
                    return Lookup::Found(dir.clone());
                }
                // Stale: whoever gets there first refreshes it; the others go on with it.
                if let Ok(st) = entry.fetch.try_lock() {
                    self.refresh(entry, st, asked, false).await;
                    return match current(entry) {
                        Some(d) if d.key(keyid).is_some() => Lookup::Found(d),
                        _ => Lookup::Unknown,
                    };
                }
                return Lookup::Found(dir.clone());
            }
            // An unknown key id: refused at once when the copy held is recent enough.
            if fetched.elapsed() < self.bounds.min_refresh {
                return Lookup::Unknown;
            }
        }
        let st = entry.fetch.lock().await;
        let failure = self.refresh(entry, st, asked, true).await;
        match current(entry) {
            Some(d) if d.key(keyid).is_some() => Lookup::Found(d),
            Some(_) => Lookup::Unknown,
            None => Lookup::Unavailable(failure.unwrap_or_else(|| {
                format!("the key directory {url} could not be loaded (retrying later)")
            })),
        }
    }

    /// Fetches the directory unless a fetch that started after `asked` brought it, or the
    /// bounds forbid it now; the failure, if the fetch (or the last one) failed.
    async fn refresh(
        &self,
        entry: &Entry,
        mut st: tokio::sync::MutexGuard<'_, FetchState>,
        asked: Instant,
        wait: bool,
    ) -> Option<String> {
        if entry
            .held
            .read()
            .as_ref()
            .is_some_and(|h| h.fetched >= asked)
        {
            return None;
        }
        if let Some((at, why)) = &st.last_failure {
            if at.elapsed() < self.bounds.min_refresh {
                return Some(why.clone());
            }
        }
        if let Some(last) = st.last_fetch {
            let next = last + self.bounds.min_refresh;
            if next > Instant::now() {
                if !wait || entry.held.read().is_some() {
                    return None;
                }
                tokio::time::sleep_until(next.into()).await;
            }
        }
        let started = Instant::now();
        st.last_fetch = Some(started);
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetch(&entry.url).await {
            Ok(dir) => {
                st.last_failure = None;
                *entry.held.write() = Some(Held {
                    dir: Arc::new(dir),
                    fetched: started,
                });
                None
            }
            Err(e) => {
                tracing::warn!(directory = %entry.url, error = %e, "key directory fetch failed");
                st.last_failure = Some((Instant::now(), e.clone()));
                Some(e)
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<KeyDirectory, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: bad URL: {e}"))?;
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(
                header::ACCEPT,
                HeaderValue::from_static(
                    "application/http-message-signatures-directory+json, application/json",
                ),
            )
            .body(Empty::new())
            .map_err(|e| format!("{url}: request: {e}"))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{url}: {}", turnpike_https::error_chain(&e)))?;
            if resp.status() != StatusCode::OK {
                return Err(format!("{url}: HTTP {}", resp.status().as_u16()));
            }
            let body = Limited::new(resp.into_body(), MAX_DIRECTORY_LEN)
                .collect()
                .await
                .map_err(|e| format!("{url}: reading the directory: {e}"))?
                .to_bytes();
            KeyDirectory::from_json(&body).map_err(|e| format!("{url}: {e}"))
        };
        tokio::time::timeout(self.bounds.timeout, fut)
            .await
            .map_err(|_| {
                format!(
                    "{url}: no answer within {} ms",
                    self.bounds.timeout.as_millis()
                )
            })?
    }
}

fn current(entry: &Entry) -> Option<Arc<KeyDirectory>> {
    entry.held.read().as_ref().map(|h| h.dir.clone())
}
