//! The HTTP upstream: a streaming reverse proxy to one MCP server's Streamable HTTP endpoint.
//!
//! - Every request goes to the upstream URL's scheme, authority and path (the gateway's own
//!   endpoint path maps to it), with the request's query string kept.
//! - `Host` is rewritten to the upstream's authority; hop-by-hop headers (`Connection` and the
//!   headers it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`,
//!   `Upgrade`, `Proxy-Authenticate`, `Proxy-Authorization`) are dropped in both directions;
//!   every end-to-end header (`Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`,
//!   `Content-Type`, `Accept`, `traceparent`, `tracestate`, …) passes, and the status is kept.
//! - Bodies stream in both directions: an SSE response passes on event by event as the
//!   upstream writes it, never buffered whole.
//! - Connections are HTTP/1.1, kept between calls by the upstream's own pool ([`crate::pool`]),
//!   with `TCP_NODELAY` set; `https` uses rustls (ring) with the Mozilla root certificates.
//! - When the upstream cannot be reached the caller gets HTTP 502 with JSON-RPC error -31502,
//!   carrying the request's id when the gate passed it along ([`JsonRpcId`]).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::BoxFuture;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{
    header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
};
use tower_service::Service;
use turnpike_core::error_codes;
use turnpike_http::JsonRpcId;

use crate::pool::Pool;
use crate::{error_chain, UpstreamError};

/// A Streamable HTTP MCP server to forward to. Cheap to clone: clones share the connection
/// pool.
#[derive(Clone)]
pub struct HttpUpstream {
    pool: Arc<Pool>,
    target: Arc<Target>,
}

struct Target {
    scheme: Scheme,
    authority: Authority,
    path: String,
    /// `path` as a request target (origin form), built once.
    path_uri: Uri,
    host: HeaderValue,
    /// The upstream URL as configured, for logs.
    url: String,
    /// When a failure was last logged at warn (ms since `UNIX_EPOCH`), and how many failures
    /// were logged at debug since: one request may reach the upstream more than once (an era
    /// probe, a retry), and a dead upstream fails every call.
    warned_ms: AtomicU64,
    quiet: AtomicU64,
}

/// At most one warning per upstream in this long; the failures between are counted.
const WARN_EVERY_MS: u64 = 10_000;

impl Target {
    fn failed(&self, err: &(dyn std::error::Error + 'static)) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.warned_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY_MS;
        let chain = error_chain(err);
        if due
            && self
                .warned_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let quiet = self.quiet.swap(0, Ordering::Relaxed);
            tracing::warn!(
                target: "turnpike::upstream",
                upstream = %self.url,
                error = %chain,
                failures_since_last_warning = quiet,
                "upstream request failed; the caller got 502"
            );
        } else {
            self.quiet.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                target: "turnpike::upstream",
                upstream = %self.url,
                error = %chain,
                "upstream request failed; the caller got 502"
            );
        }
    }
}

/// Tries to reach the upstream at `url` within `timeout`: resolves its host and opens a TCP
/// connection (nothing is sent). `Err` says why, for a warning at start.
pub async fn probe(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    let uri = check_url(url).map_err(str::to_owned)?;
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let attempt = async {
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let mut last = format!("{host} resolves to no address");
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("cannot connect to {a}: {e}"),
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HttpUpstream({}://{}{})",
            self.target.scheme, self.target.authority, self.target.path
        )
    }
}

impl HttpUpstream {
    /// An upstream at `url` (`http://` or `https://`, absolute).
    pub fn new(url: &str) -> Result<HttpUpstream, UpstreamError> {
        let uri =
            check_url(url).map_err(|e| UpstreamError(format!("upstream url {url:?}: {e}")))?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(UpstreamError(format!(
                "upstream url {url:?} is not absolute"
            )));
        };
        let path = parts
            .path_and_query
            .map(|p| p.path().to_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| UpstreamError(format!("upstream url {url:?} has a bad host")))?;

        let tls =
            turnpike_https::tls_config().map_err(|e| UpstreamError(format!("TLS setup: {e}")))?;
        let connector = turnpike_https::connector(tls, &turnpike_https::Options::default());
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError(format!("upstream url {url:?}: {e}")))?;
        let path_uri = Uri::try_from(path.as_str())
            .map_err(|e| UpstreamError(format!("upstream url {url:?}: {e}")))?;
        Ok(HttpUpstream {
            pool: Pool::new(connector, origin),
            target: Arc::new(Target {
                scheme,
                authority,
                path,
                path_uri,
                host,
                url: url.to_owned(),
                warned_ms: AtomicU64::new(0),
                quiet: AtomicU64::new(0),
            }),
        })
    }

    /// The request target upstream, in origin form: the upstream's path with the request's
    /// query.
    fn upstream_uri(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let pq = match uri.query() {
            Some(q) => PathAndQuery::try_from(format!("{}?{q}", self.target.path))?,
            None => return Ok(self.target.path_uri.clone()),
        };
        Ok(Uri::from(pq))
    }
}

impl Service<Request<Body>> for HttpUpstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let uri = self.upstream_uri(&parts.uri);
        let id = parts.extensions.remove::<JsonRpcId>().map(|i| i.0);
        let pool = self.pool.clone();
        let host = self.target.host.clone();
        let target = self.target.clone();
        Box::pin(async move {
            let Ok(uri) = uri else {
                return Ok(unreachable(
                    id.as_ref(),
                    "the request target could not be mapped upstream",
                ));
            };
            parts.uri = uri;
            parts.version = Version::HTTP_11;
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.insert(header::HOST, host);
            match pool.send(Request::from_parts(parts, body)).await {
                Ok(mut resp) => {
                    strip_hop_by_hop(resp.headers_mut());
                    Ok(resp)
                }
                Err(e) => {
                    target.failed(&e);
                    Ok(unreachable(
                        id.as_ref(),
                        "the upstream MCP server could not be reached",
                    ))
                }
            }
        })
    }
}

fn unreachable(id: Option<&serde_json::Value>, message: &str) -> Response<Body> {
    turnpike_http::reply::json_error(
        StatusCode::BAD_GATEWAY,
        id,
        error_codes::UPSTREAM_FAILED,
        message,
    )
}

/// `Keep-Alive` (RFC 9112 §9.3 names it hop-by-hop; `http` has no constant for it).
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection`, the non-standard `Connection` some clients still send.
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether `n` is hop-by-hop whatever `Connection` says.
fn always_hop_by_hop(n: &HeaderName) -> bool {
    *n == header::CONNECTION
        || *n == header::TE
        || *n == header::TRAILER
        || *n == header::TRANSFER_ENCODING
        || *n == header::UPGRADE
        || *n == header::PROXY_AUTHENTICATE
        || *n == header::PROXY_AUTHORIZATION
        || *n == KEEP_ALIVE
        || *n == PROXY_CONNECTION
}

/// Removes hop-by-hop headers, including those named by `Connection`. Most messages carry
/// none: one pass over the names finds that, and nothing is looked up or removed.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if !h.keys().any(always_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        &header::CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
    ] {
        h.remove(n);
    }
}

/// Checks an upstream URL: absolute, http or https, with a host.
pub use turnpike_conf::check_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_says_why() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = format!("http://{}/mcp", l.local_addr().unwrap());
        let t = std::time::Duration::from_secs(5);
        assert_eq!(probe(&up, t).await, Ok(()));
        // Port 1 on loopback: nothing listens there.
        let e = probe("http://127.0.0.1:1/mcp", t).await.unwrap_err();
        assert!(e.starts_with("cannot connect to 127.0.0.1:1: "), "{e}");
        assert!(e.to_lowercase().contains("refused"), "{e}");
        let e = probe("http://no-such-host.invalid/mcp", t)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("cannot resolve no-such-host.invalid") || e.starts_with("no answer"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_failed_request_names_its_cause() {
        let u = HttpUpstream::new("http://127.0.0.1:1/mcp").unwrap();
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = u.upstream_uri(&Uri::from_static("/mcp")).unwrap();
        let e = u.pool.send(req).await.unwrap_err();
        let chain = error_chain(&e);
        assert!(chain.starts_with("cannot connect: "), "{chain}");
        assert!(chain.to_lowercase().contains("refused"), "{chain}");
    }

    #[test]
    fn maps_uris() {
        let u = HttpUpstream::new("http://127.0.0.1:3001/mcp").unwrap();
        assert_eq!(
            u.upstream_uri(&Uri::from_static("/gate?x=1")).unwrap(),
            "/mcp?x=1"
        );
        assert_eq!(
            u.upstream_uri(&Uri::from_static("http://gw.example/gate"))
                .unwrap(),
            "/mcp"
        );
        assert_eq!(u.target.host, "127.0.0.1:3001");
        let u = HttpUpstream::new("https://example.com").unwrap();
        assert_eq!(u.upstream_uri(&Uri::from_static("/mcp")).unwrap(), "/");
        assert_eq!(u.target.host, "example.com");
        assert!(HttpUpstream::new("ftp://x/").is_err());
        assert!(HttpUpstream::new("/relative").is_err());
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("mcp-session-id", HeaderValue::from_static("s"));
        h.insert("traceparent", HeaderValue::from_static("00-ab-cd-01"));
        h.insert("last-event-id", HeaderValue::from_static("4"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["last-event-id", "mcp-session-id", "traceparent"]);

        // Each hop-by-hop name alone is found and removed; other headers stay as they were.
        for name in [
            "connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authenticate",
            "proxy-authorization",
            "keep-alive",
            "proxy-connection",
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h.insert("content-type", HeaderValue::from_static("application/json"));
            strip_hop_by_hop(&mut h);
            let names: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
            assert_eq!(names, ["content-type"], "{name}");
        }
    }
}
