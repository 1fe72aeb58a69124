//! Upstream time limits, and cancelling a call nobody waits for any more.
//!
//! A forwarded JSON-RPC request (a POST with an id) is bounded twice (`[upstream]`):
//!
//! - `response_timeout_secs` (default 60): the time to the upstream's response head. On expiry
//!   the caller gets HTTP 504 with JSON-RPC error -31504, and the call counts as refused by the
//!   upstream (a balance debit is refunded, a single-use credential released:
//!   [`crate::settle`]).
//! - `stream_idle_timeout_secs` (default 120): within a streamed (SSE) answer, the longest
//!   silence — no JSON-RPC message, keep-alive comments not counted — before the call's own
//!   response. On expiry the caller gets a last SSE event, the JSON-RPC error -31504 for the
//!   call, and the stream ends (the call counts as failed: a balance debit is refunded). Other
//!   answers (JSON) whose body stalls that long are cut.
//!
//! Whenever the gateway stops waiting for a call the upstream may still be running — either
//! limit expired, or the caller went away (closed its connection before the head, or dropped
//! the stream before the call's response) — the upstream is sent `notifications/cancelled` for
//! the request's id, as a POST through the same upstream service with the request's
//! `Mcp-Session-Id` and `MCP-Protocol-Version` (an HTTP upstream gets it in the same session;
//! the stdio upstream writes it to the session's child). A caller that went away before the
//! head has its balance debit refunded ([`PendingCall`]); one that dropped the stream, by the
//! settlement watch. GET streams (a session's server stream) are not bounded.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use serde_json::{json, Value};
use tower::{Service, ServiceExt};
use turnpike_core::{error_codes, Grant, Rail};
use turnpike_mcp::sse::SseParser;

/// How long a `notifications/cancelled` POST may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers of the original request the cancellation carries.
static CARRIED: [HeaderName; 5] = [
    HeaderName::from_static("mcp-session-id"),
    HeaderName::from_static("mcp-protocol-version"),
    header::HOST,
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("traceparent"),
];

/// The first value of each of [`CARRIED`] in `headers`, found in one walk over the request's
/// few fields (five hashed lookups cost more).
fn carried(headers: &http::HeaderMap) -> [Option<HeaderValue>; 5] {
    let mut out: [Option<HeaderValue>; 5] = Default::default();
    for (name, value) in headers {
        if let Some(i) = CARRIED.iter().position(|c| c == name) {
            out[i].get_or_insert_with(|| value.clone());
        }
    }
    out
}

/// A service a cancellation can be sent through: any service a request is forwarded to.
pub trait CancelService: Send + 'static {
    /// Sends `req` and waits for the response head; its status, or `None` when it failed.
    fn send(self, req: Request<Body>) -> BoxFuture<'static, Option<StatusCode>>;
}

impl<S, B> CancelService for S
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    fn send(self, req: Request<Body>) -> BoxFuture<'static, Option<StatusCode>> {
        Box::pin(async move { self.oneshot(req).await.ok().map(|r| r.status()) })
    }
}

/// What a cancellation of one forwarded request needs from it, kept cheaply while the call
/// runs: its target, the few header values it carries on, and its JSON-RPC id. The request is
/// built only when a cancellation is sent.
pub struct CancelTarget {
    uri: Uri,
    carried: [Option<HeaderValue>; 5],
    id: Value,
}

impl CancelTarget {
    /// The target of a cancellation of the request with JSON-RPC `id` whose head is `parts`.
    pub fn new(parts: &http::request::Parts, id: Value) -> CancelTarget {
        CancelTarget {
            uri: parts.uri.clone(),
            carried: carried(&parts.headers),
            id,
        }
    }

    /// The `notifications/cancelled` POST.
    fn request(self, reason: &'static str) -> Request<Body> {
        let body = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": self.id, "reason": reason},
        })
        .to_string();
        let mut req = Request::new(Body::from(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.uri;
        let headers = req.headers_mut();
        for (name, value) in CARRIED.iter().zip(self.carried) {
            if let Some(v) = value {
                headers.insert(name.clone(), v);
            }
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        req
    }
}

/// Sends `notifications/cancelled` for one forwarded request, at most once, through the
/// service the request went to.
pub struct Canceller<S: CancelService> {
    svc: S,
    target: CancelTarget,
}

impl<S: CancelService> Canceller<S> {
    /// A canceller for `target` through `svc` (the service the request was sent to).
    pub fn new(svc: S, target: CancelTarget) -> Canceller<S> {
        Canceller { svc, target }
    }

    /// Sends the cancellation in the background (needs a Tokio runtime; without one, nothing).
    pub fn fire(self, reason: &'static str) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let req = self.target.request(reason);
        let sent = self.svc.send(req);
        rt.spawn(async move {
            match tokio::time::timeout(CANCEL_TIMEOUT, sent).await {
                Ok(Some(status)) => tracing::debug!(
                    target: "turnpike::upstream",
                    status = status.as_u16(),
                    reason,
                    "upstream call cancelled"
                ),
                _ => tracing::warn!(
                    target: "turnpike::upstream",
                    reason,
                    "the upstream could not be sent notifications/cancelled"
                ),
            }
        });
    }
}

/// The rail and grant a call is settled with.
pub type Settlement = (Arc<dyn Rail>, Grant);

/// A forwarded call waiting for its response head: owns the service the request goes to. If
/// the wait is abandoned (the caller closed its connection, so the request's future is
/// dropped), the upstream is sent `notifications/cancelled` and the grant is settled as failed
/// (a balance debit refunded).
pub struct PendingCall<S: CancelService> {
    svc: Option<S>,
    target: Option<CancelTarget>,
    settle: Option<Settlement>,
}

impl<S: CancelService> PendingCall<S> {
    /// A guard over `svc`, the cancellation `target` and the grant `settle` would settle.
    pub fn new(svc: S, target: Option<CancelTarget>, settle: Option<Settlement>) -> PendingCall<S> {
        PendingCall {
            svc: Some(svc),
            target,
            settle,
        }
    }

    /// The service the request is sent through.
    pub fn service(&mut self) -> &mut S {
        // Present until disarm or drop, which consume the guard.
        match &mut self.svc {
            Some(s) => s,
            None => unreachable!("the service is taken only when the guard is consumed"),
        }
    }

    /// The head arrived (or the gateway answers in its place): nothing to undo. Gives back the
    /// canceller, to watch the body, and the grant to settle.
    pub fn disarm(mut self) -> (Option<Canceller<S>>, Option<Settlement>) {
        let cancel = match (self.svc.take(), self.target.take()) {
            (Some(svc), Some(target)) => Some(Canceller::new(svc, target)),
            _ => None,
        };
        (cancel, self.settle.take())
    }
}

impl<S: CancelService> Drop for PendingCall<S> {
    fn drop(&mut self) {
        if let (Some(svc), Some(target)) = (self.svc.take(), self.target.take()) {
            Canceller::new(svc, target).fire("the client went away");
        }
        if let Some((rail, grant)) = self.settle.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { rail.settle(&grant, false).await });
            }
        }
    }
}

/// The gateway's answer when the head did not come in time.
pub fn head_timeout(id: Option<&Value>, limit: Duration) -> Response<Body> {
    crate::respond::json_error(
        StatusCode::GATEWAY_TIMEOUT,
        id,
        error_codes::UPSTREAM_TIMEOUT,
        &format!(
            "the upstream MCP server did not answer within {} s",
            limit.as_secs()
        ),
    )
}

/// Bounds the body of `resp`, the upstream's answer to request `id`, by `idle`. An SSE answer
/// is watched for the call's response: until it passes, silence longer than `idle` ends the
/// stream with a JSON-RPC error event for `id` (and the upstream is sent the cancellation), and
/// a caller that drops the stream cancels the call too. Any other body is cut after `idle`
/// without data.
pub fn bound_body<S: CancelService>(
    resp: Response<Body>,
    id: Value,
    idle: Duration,
    cancel: Option<Canceller<S>>,
) -> Response<Body> {
    let sse = turnpike_http::body::has_media_type(resp.headers(), "text/event-stream");
    let (parts, body) = resp.into_parts();
    if !sse {
        // A whole answer keeps its size (and so its Content-Length).
        let body = IdleBody {
            inner: body,
            idle,
            timer: None,
        };
        return Response::from_parts(parts, Body::new(body));
    }
    let upstream = body.into_data_stream();
    let state = Watch {
        upstream,
        parser: SseParser::new(),
        id,
        idle,
        deadline: tokio::time::Instant::now() + idle,
        cancel,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let next = if st.cancel.is_some() {
                match tokio::time::timeout_at(st.deadline, st.upstream.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        // Silent too long before the call's response.
                        if let Some(c) = st.cancel.take() {
                            c.fire("the upstream went silent");
                        }
                        st.done = true;
                        let ev = timeout_event(&st.id, st.idle);
                        return Some((Ok(ev), st));
                    }
                }
            } else {
                // The response passed: the rest of the stream is whatever the upstream adds.
                st.upstream.next().await
            };
            return match next {
                None => {
                    // Ended by the upstream: nothing left to cancel.
                    drop(st.cancel.take());
                    None
                }
                Some(Err(e)) => {
                    if let Some(c) = st.cancel.take() {
                        c.fire("the upstream stream failed");
                    }
                    st.done = true;
                    Some((Err(e), st))
                }
                Some(Ok(chunk)) => {
                    if st.cancel.is_some() {
                        st.parser.push(&chunk);
                        while let Some(ev) = st.parser.next_event() {
                            let Some(v) = ev
                                .data
                                .as_deref()
                                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                            else {
                                continue;
                            };
                            st.deadline = tokio::time::Instant::now() + st.idle;
                            if v.get("id") == Some(&st.id) && v.get("method").is_none() {
                                st.cancel = None;
                                break;
                            }
                        }
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    Some((Ok(chunk), st))
                }
            };
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The SSE event that ends a stream whose upstream went silent.
fn timeout_event(id: &Value, idle: Duration) -> Bytes {
    let msg = turnpike_mcp::error_response(
        Some(id),
        error_codes::UPSTREAM_TIMEOUT,
        &format!(
            "the upstream MCP server sent nothing for {} s; the call was cancelled",
            idle.as_secs()
        ),
    );
    Bytes::from(format!("event: message\ndata: {msg}\n\n"))
}

struct Watch<S: CancelService> {
    upstream: axum::body::BodyDataStream,
    parser: SseParser,
    id: Value,
    idle: Duration,
    deadline: tokio::time::Instant,
    /// Present until the call's response passed (or the call was cancelled); dropped with the
    /// stream before that (the caller went away), it cancels the call.
    cancel: Option<Canceller<S>>,
    done: bool,
}

impl<S: CancelService> Drop for Watch<S> {
    fn drop(&mut self) {
        if let Some(c) = self.cancel.take() {
            c.fire("the client went away");
        }
    }
}

#[derive(Debug)]
struct IdleTimeout;

/// A body that fails with [`IdleTimeout`] when no frame arrives for `idle`; everything else,
/// its size hint included, is the inner body's. The timer is armed only when the body first has
/// to wait (an answer already received whole never starts one).
struct IdleBody {
    inner: Body,
    idle: Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // The wait starts again at the next Pending.
                this.timer = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(IdleTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream's answer stalled")
    }
}

impl std::error::Error for IdleTimeout {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancellation_carries_the_first_value_of_each_carried_header_only() {
        let req = Request::builder()
            .method(http::Method::POST)
            .uri("http://up.example/mcp")
            .header("Mcp-Session-Id", "s1")
            .header("mcp-session-id", "s2")
            .header(header::HOST, "up.example")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .header(header::AUTHORIZATION, "Bearer secret")
            .header("x-other", "1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let sent = CancelTarget::new(&parts, json!(7)).request("timeout");
        let h = sent.headers();
        assert_eq!(
            h.get_all("mcp-session-id").iter().collect::<Vec<_>>(),
            ["s1"]
        );
        assert_eq!(h["host"], "up.example");
        assert!(h.contains_key("traceparent"));
        assert!(!h.contains_key("mcp-protocol-version"));
        assert!(!h.contains_key("x-request-id"));
        assert!(!h.contains_key(header::AUTHORIZATION));
        assert!(!h.contains_key("x-other"));
        assert_eq!(sent.uri(), "http://up.example/mcp");
    }
}
