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
//! - Connections are pooled, with `TCP_NODELAY` set; `https` uses rustls (ring) with the
//!   Mozilla root certificates.
//! - When the upstream cannot be reached the caller gets HTTP 502 with JSON-RPC error -31502,
//!   carrying the request's id when the gate passed it along ([`JsonRpcId`]).

use std::convert::Infallible;
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
use turnpike_https::HttpsClient;

use turnpike_http::JsonRpcId;

use crate::UpstreamError;

/// A Streamable HTTP MCP server to forward to. Cheap to clone: clones share the connection
/// pool.
#[derive(Clone)]
pub struct HttpUpstream {
    client: HttpsClient<Body>,
    target: Arc<Target>,
}

struct Target {
    scheme: Scheme,
    authority: Authority,
    path: String,
    host: HeaderValue,
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

        let client = turnpike_https::client(&turnpike_https::Options::default())
            .map_err(|e| UpstreamError(format!("TLS setup: {e}")))?;
        Ok(HttpUpstream {
            client,
            target: Arc::new(Target {
                scheme,
                authority,
                path,
                host,
            }),
        })
    }

    fn upstream_uri(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let pq = match uri.query() {
            Some(q) => format!("{}?{q}", self.target.path),
            None => self.target.path.clone(),
        };
        Uri::builder()
            .scheme(self.target.scheme.clone())
            .authority(self.target.authority.clone())
            .path_and_query(PathAndQuery::try_from(pq)?)
            .build()
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
        let client = self.client.clone();
        let host = self.target.host.clone();
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
            match client.request(Request::from_parts(parts, body)).await {
                Ok(resp) => {
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    Ok(Response::from_parts(parts, Body::new(body)))
                }
                Err(e) => {
                    tracing::warn!(target: "turnpike::upstream", error = %e, "upstream request failed");
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

/// Removes hop-by-hop headers, including those named by `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
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
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

/// Checks an upstream URL: absolute, http or https, with a host.
pub fn check_url(u: &str) -> Result<http::Uri, &'static str> {
    let uri: http::Uri = u.parse().map_err(|_| "not a valid URL")?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(_) => return Err("the scheme must be http or https"),
        None => return Err("the URL must be absolute (http://… or https://…)"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host");
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_uris() {
        let u = HttpUpstream::new("http://127.0.0.1:3001/mcp").unwrap();
        assert_eq!(
            u.upstream_uri(&Uri::from_static("/gate?x=1")).unwrap(),
            "http://127.0.0.1:3001/mcp?x=1"
        );
        assert_eq!(
            u.upstream_uri(&Uri::from_static("/gate")).unwrap(),
            "http://127.0.0.1:3001/mcp"
        );
        let u = HttpUpstream::new("https://example.com").unwrap();
        assert_eq!(
            u.upstream_uri(&Uri::from_static("/mcp")).unwrap(),
            "https://example.com/"
        );
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
    }
}
