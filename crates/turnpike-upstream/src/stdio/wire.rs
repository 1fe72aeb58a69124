//! The HTTP side of the stdio upstream: response builders, SSE framing and header reading.

use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// The last message a POST waits for: the child's response, or one the session made up when
/// the child could not answer.
#[derive(Debug)]
pub(crate) struct Final {
    /// The JSON-RPC response, one line of JSON.
    pub(crate) body: Bytes,
    /// True when the gateway wrote this response because the session ended first.
    pub(crate) synthetic: bool,
}

/// The `Mcp-Session-Id` header.
pub(crate) const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// The `MCP-Protocol-Version` header.
pub(crate) const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A response whose body is a JSON-RPC error.
pub(crate) fn error_response(
    status: StatusCode,
    id: Value,
    code: i64,
    message: &str,
) -> Response<Body> {
    let body = serde_json::to_vec(&turnpike_mcp::error_response(Some(&id), code, message))
        .unwrap_or_default();
    json_response(status, body)
}

/// `202 Accepted` with no body, for notifications and responses the child was given.
pub(crate) fn accepted() -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp
}

/// One SSE event of type `message` carrying one JSON-RPC message. `json` must be a single line
/// (callers pass serde_json's compact output or a line read from the child with no CR in it).
pub(crate) fn sse_event(json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 24);
    out.put_slice(b"event: message\ndata: ");
    out.put_slice(json);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// An SSE comment that keeps an idle stream alive and lets a dead peer be noticed.
const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// A `200 OK` SSE response around `body`.
fn sse_response(body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The answer for a request whose response channel was dropped without an answer, which
/// happens only when the client cancelled it (ending a session answers every pending request).
fn lost_response(id: &Value) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&turnpike_mcp::error_response(
            Some(id),
            turnpike_core::error_codes::UPSTREAM_FAILED,
            "the request was cancelled before the upstream answered",
        ))
        .unwrap_or_default(),
    )
}

/// What a request's stream is waiting for.
struct PostStream {
    /// Messages that belong to the request; `None` once they are all sent.
    events: Option<mpsc::Receiver<Bytes>>,
    /// The response; `None` once sent.
    done: Option<oneshot::Receiver<Final>>,
}

/// One step of a request's stream.
enum Step {
    Event(Bytes),
    EventsOver,
    Keepalive,
    Response(Option<Final>),
}

/// The SSE body of a POSTed request: every event as it comes, then the response, then the end,
/// with a keep-alive comment after `keepalive` of silence. A request the client cancelled ends
/// without a response.
pub(crate) fn post_stream(
    events: mpsc::Receiver<Bytes>,
    done: oneshot::Receiver<Final>,
    keepalive: Duration,
) -> Response<Body> {
    let start = PostStream {
        events: Some(events),
        done: Some(done),
    };
    let s = stream::unfold(start, move |mut st| async move {
        loop {
            let step = if let Some(rx) = st.events.as_mut() {
                tokio::select! {
                    m = rx.recv() => m.map_or(Step::EventsOver, Step::Event),
                    () = tokio::time::sleep(keepalive) => Step::Keepalive,
                }
            } else {
                let done = st.done.as_mut()?;
                tokio::select! {
                    r = done => Step::Response(r.ok()),
                    () = tokio::time::sleep(keepalive) => Step::Keepalive,
                }
            };
            let chunk = match step {
                Step::Event(m) => sse_event(&m),
                Step::EventsOver => {
                    st.events = None;
                    continue;
                }
                Step::Keepalive => Bytes::from_static(KEEPALIVE),
                Step::Response(fin) => {
                    st.done = None;
                    sse_event(&fin?.body)
                }
            };
            return Some((Ok::<_, std::convert::Infallible>(chunk), st));
        }
    });
    sse_response(Body::from_stream(s))
}

/// A single JSON-RPC message as a whole response: SSE with one event or a JSON body.
pub(crate) fn single_message(msg: Bytes, sse: bool) -> Response<Body> {
    if sse {
        sse_response(Body::from(sse_event(&msg)))
    } else {
        json_response(StatusCode::OK, msg)
    }
}

/// Waits for the response of a request answered as a whole.
pub(crate) async fn await_final(id: &Value, done: oneshot::Receiver<Final>) -> Final {
    done.await.unwrap_or_else(|_| Final {
        body: lost_response(id),
        synthetic: true,
    })
}

/// The SSE body of a session's GET stream: messages as they come, a keep-alive comment after
/// `keepalive` of silence, and the end when the session ends (the sender is dropped).
pub(crate) fn get_stream(rx: mpsc::Receiver<Bytes>, keepalive: Duration) -> Response<Body> {
    let s = stream::unfold(Some(rx), move |rx| async move {
        let mut rx = rx?;
        tokio::select! {
            msg = rx.recv() => msg.map(|m| (Ok::<_, std::convert::Infallible>(sse_event(&m)), Some(rx))),
            () = tokio::time::sleep(keepalive) => Some((Ok(Bytes::from_static(KEEPALIVE)), Some(rx))),
        }
    });
    sse_response(Body::from_stream(s))
}

/// Whether the `Accept` headers list `media_type` (or, when `wildcards`, a range covering it)
/// with a non-zero quality.
pub(crate) fn accepts(headers: &HeaderMap, media_type: &str, wildcards: bool) -> bool {
    let (main, _) = media_type.split_once('/').unwrap_or((media_type, ""));
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let mt = parts.next().unwrap_or("").trim();
            let zero_q = parts.any(|p| {
                let p = p.trim();
                p.get(..2).is_some_and(|k| k.eq_ignore_ascii_case("q="))
                    && p.get(2..)
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
            });
            if zero_q {
                return false;
            }
            mt.eq_ignore_ascii_case(media_type)
                || (wildcards
                    && (mt == "*/*"
                        || mt
                            .split_once('/')
                            .is_some_and(|(m, s)| s == "*" && m.eq_ignore_ascii_case(main))))
        })
}

/// Whether a `Content-Type` value names JSON (`application/json`, parameters allowed).
pub(crate) fn is_json_content_type(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|mt| mt.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether an `MCP-Protocol-Version` value is a dated revision on or after `2026-07-28`, the
/// first stateless revision.
pub(crate) fn is_stateless_era(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let v = v.trim();
    let shape_ok = v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shape_ok && v >= "2026-07-28"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn accept_parsing() {
        let sse = "text/event-stream";
        assert!(accepts(
            &accept("application/json, text/event-stream"),
            sse,
            false
        ));
        assert!(accepts(&accept("Text/Event-Stream;q=0.5"), sse, false));
        assert!(!accepts(&accept("text/event-stream;q=0"), sse, false));
        assert!(!accepts(&accept("application/json"), sse, false));
        assert!(!accepts(&accept("*/*"), sse, false));
        assert!(accepts(&accept("*/*"), sse, true));
        assert!(accepts(&accept("text/*"), sse, true));
        assert!(!accepts(&accept("image/*"), sse, true));
        assert!(!accepts(&HeaderMap::new(), sse, true));
    }

    #[test]
    fn stateless_era_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_stateless_era(&h));
        h.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static("2025-11-25"));
        assert!(!is_stateless_era(&h));
        h.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static("2026-07-28"));
        assert!(is_stateless_era(&h));
        h.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static("2027-01-01"));
        assert!(is_stateless_era(&h));
        h.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static("draft"));
        assert!(!is_stateless_era(&h));
    }

    #[test]
    fn content_type() {
        assert!(is_json_content_type(&HeaderValue::from_static(
            "application/json; charset=utf-8"
        )));
        assert!(!is_json_content_type(&HeaderValue::from_static(
            "text/plain"
        )));
    }

    #[test]
    fn sse_framing() {
        assert_eq!(
            &sse_event(br#"{"a":1}"#)[..],
            b"event: message\ndata: {\"a\":1}\n\n"
        );
    }
}
