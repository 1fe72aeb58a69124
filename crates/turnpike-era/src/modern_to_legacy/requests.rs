//! A modern (2026-07-28) client in front of a legacy-only (2025) upstream — an HTTP server of
//! the session era, or a stdio server (the stdio upstream is session-shaped).
//!
//! - The gateway runs `initialize` upstream on the callers' behalf and keeps the session in a
//!   per-gateway pool, one session per distinct set of client capabilities (the upstream's
//!   behaviour may depend on them), at most `pool_size` (the oldest is deleted upstream when
//!   full). A session the upstream has forgotten (`404`) is started again and the request sent
//!   once more.
//! - `server/discover` is answered from that session's `initialize` result: `supportedVersions`
//!   `["2026-07-28"]`, the capabilities, instructions and server info, `ttlMs: 0` and
//!   `cacheScope: "private"` (the gateway cannot vouch for more).
//! - Requests go on with the pooled `Mcp-Session-Id`, the session's `MCP-Protocol-Version`,
//!   without `Mcp-Method`/`Mcp-Name` (checked against the body by the gate before) and without
//!   the `io.modelcontextprotocol/*` request `_meta` keys; other headers, `Mcp-Param-*`
//!   included, pass untouched.
//! - Answers gain `resultType: "complete"`; list and read results also `ttlMs: 0` and
//!   `cacheScope: "private"` unless the upstream set them.
//! - Cancellation: a client that closes its stream before the answer makes the gateway send
//!   `notifications/cancelled` for that request to the upstream session.
//! - A server-to-client request the upstream sends during a call (sampling, elicitation, roots)
//!   cannot reach a modern client as a request. For a client that declared the matching
//!   capability it becomes an `input_required` result and the client's retry is answered from
//!   the same upstream call ([`super::server_requests`]); otherwise the gateway answers it upstream with
//!   error [`crate::NOT_TRANSLATABLE`] at once (the tool sees a refusal, nothing hangs) and the
//!   client never sees it. `inputResponses` without a `requestState` answer nothing the
//!   gateway asked: they are dropped and the request is served as a new one.
//! - `subscriptions/listen` is bridged to the pooled session's GET stream ([`super::listen`]).

use std::sync::Arc;

use axum::body::Body;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use serde_json::{json, Value};

use super::pool::{pool_key, session, session_headers, PooledSession};
use super::results::{discover_result, to_modern_result, CACHEABLE};
use super::server_requests;
use crate::protocol::EraErrorData;
use crate::wire::{self, Edit, OnAbandon};
use crate::EraAdapter;
use turnpike_mcp::messages::{
    set_id, set_params, set_request_meta, Envelope, ErrorObject, RequestMeta, RetryParams,
    SubscriptionFilter, INPUT_RESPONSES, REQUEST_STATE,
};

use turnpike_core::error_codes::{METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY};

/// Takes the modern request `_meta` keys out of `body`: (capabilities, client info).
pub(crate) fn take_modern_meta(body: &mut Value) -> (Value, Value) {
    let Some(meta) = RequestMeta::of(body) else {
        return (json!({}), Value::Null);
    };
    let caps = meta
        .client_capabilities
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let info = meta.client_info.unwrap_or(Value::Null);
    // What a 2025 server understands of it: the progress token and extensions' keys (the
    // `io.modelcontextprotocol/*` keys are the modern era's). Only `_meta` is rewritten: the
    // call's arguments are not copied on their way upstream.
    let rest = RequestMeta {
        progress_token: meta.progress_token,
        extra: meta.extra,
        ..RequestMeta::default()
    };
    set_request_meta(body, (!rest.is_empty()).then_some(rest));
    (caps, info)
}

fn error(status: StatusCode, id: Option<&Value>, code: i64, msg: &str) -> Response<Body> {
    let error = ErrorObject::new(code, msg).with_data(EraErrorData::plain());
    wire::json_response(status, &error.response(id))
}

/// A POST from a modern client (already checked by [`super::checks`]).
pub(crate) async fn post(
    a: &EraAdapter,
    parts: http::request::Parts,
    body: Value,
) -> Response<Body> {
    with_error_status(translate(a, parts, body).await).await
}

/// The HTTP status MCP 2026-07-28 gives a JSON answer that is one of these errors, which a
/// 2025 server sends with `200`: method not found → `404`; a missing client capability →
/// `400`.
fn status_for_error(code: i64) -> Option<StatusCode> {
    match code {
        METHOD_NOT_FOUND => Some(StatusCode::NOT_FOUND),
        MISSING_REQUIRED_CLIENT_CAPABILITY => Some(StatusCode::BAD_REQUEST),
        _ => None,
    }
}

/// How long an SSE answer is held back to see whether its first message is such an error.
const ERROR_PEEK: std::time::Duration = std::time::Duration::from_secs(5);

/// The most of an SSE answer held back while looking for its first message.
const ERROR_PEEK_BYTES: usize = 1 << 20;

/// An answer whose first JSON-RPC message is an error with a status of its own
/// ([`status_for_error`]) gets that status. A JSON answer is read whole (as the translation
/// already does); only a body containing `"error"` is parsed. An SSE answer is held back until
/// its first JSON-RPC message (at most [`ERROR_PEEK`], [`ERROR_PEEK_BYTES`]): when that is
/// such an error it is answered alone as JSON, otherwise the stream goes on unchanged, the
/// held-back bytes first.
async fn with_error_status(resp: Response<Body>) -> Response<Body> {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    match wire::media_type(resp.headers()).as_str() {
        "application/json" => {
            let (mut parts, body) = resp.into_parts();
            let bytes = match http_body_util::BodyExt::collect(http_body_util::Limited::new(
                body,
                wire::MAX_READ,
            ))
            .await
            {
                Ok(c) => c.to_bytes(),
                Err(_) => return Response::from_parts(parts, Body::empty()),
            };
            if let Some(status) = error_status(&bytes) {
                parts.status = status;
            }
            Response::from_parts(parts, Body::from(bytes))
        }
        "text/event-stream" => {
            let (parts, body) = resp.into_parts();
            let mut upstream = body.into_data_stream();
            let mut parser = turnpike_mcp::sse::SseParser::new();
            let mut held: Vec<u8> = Vec::new();
            let mut failed = None;
            let deadline = tokio::time::Instant::now() + ERROR_PEEK;
            'peek: while held.len() < ERROR_PEEK_BYTES {
                let chunk = match tokio::time::timeout_at(deadline, upstream.next()).await {
                    Ok(Some(Ok(c))) => c,
                    Ok(Some(Err(e))) => {
                        failed = Some(e);
                        break;
                    }
                    Ok(None) | Err(_) => break,
                };
                held.extend_from_slice(&chunk);
                parser.push(&chunk);
                while let Some(ev) = parser.next_event() {
                    let Some(data) = ev.data else { continue };
                    if !data.trim_start().starts_with('{') {
                        continue;
                    }
                    if let Some(status) = error_status(data.as_bytes()) {
                        let mut parts = parts;
                        parts.status = status;
                        parts.headers.insert(
                            http::header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        parts.headers.remove(http::header::CONTENT_LENGTH);
                        return Response::from_parts(parts, Body::from(data));
                    }
                    break 'peek;
                }
            }
            let head = futures_util::stream::once(async move { Ok(bytes::Bytes::from(held)) });
            let tail = futures_util::stream::iter(failed.map(Err));
            Response::from_parts(parts, Body::from_stream(head.chain(tail).chain(upstream)))
        }
        _ => resp,
    }
}

/// The status of a JSON-RPC message that is an error answer with a status of its own.
fn error_status(bytes: &[u8]) -> Option<StatusCode> {
    if !bytes.windows(7).any(|w| w == b"\"error\"") {
        return None;
    }
    let v = serde_json::from_slice::<Value>(bytes).ok()?;
    let e = Envelope::of(&v);
    if e.has_method {
        return None;
    }
    e.error_code().and_then(status_for_error)
}

async fn translate(a: &EraAdapter, parts: http::request::Parts, mut body: Value) -> Response<Body> {
    let envelope = Envelope::of(&body);
    let id = envelope.id.cloned();
    let Some(method) = envelope.method.map(str::to_owned) else {
        return wire::accepted();
    };
    let Some(id) = id else {
        // Modern clients send no notifications over HTTP that a legacy session needs.
        return wire::accepted();
    };
    let (caps, info) = take_modern_meta(&mut body);
    let envelope = Envelope::of(&body);
    if envelope.param(REQUEST_STATE).is_some() {
        return server_requests::resume(a, id, &caps, &body).await;
    }
    if envelope.param(INPUT_RESPONSES).is_some() {
        // Answers to nothing this gateway asked: ignored, as MCP 2026-07-28 says a server
        // should treat input it does not recognise; the request is a new one.
        if let Some(mut p) = RetryParams::of(&body) {
            p.input_responses = None;
            set_params(&mut body, Some(p.into_value()));
        }
    }
    let mut s = match session(a, &parts.uri, &caps, &info, &parts.extensions).await {
        Ok(s) => s,
        Err(why) => return no_session(&id, &why),
    };
    if method == "subscriptions/listen" {
        let filter = SubscriptionFilter::of(Envelope::of(&body).param("notifications"));
        return super::listen::listen(a, &parts.uri, id, filter, s).await;
    }
    if method == "server/discover" {
        return wire::json_response(StatusCode::OK, &discover_result(&id, &s.init));
    }
    // A client that can answer the upstream's requests: the call gets an upstream id of its
    // own, as it may wait in the shared session for the client's retry.
    let asks = server_requests::wants(&caps);
    let upstream_id = if asks {
        let u = server_requests::upstream_id();
        set_id(&mut body, u.clone());
        u
    } else {
        id.clone()
    };
    let mut resp = forward(a, &parts, &body, &s).await;
    if resp.status() == StatusCode::NOT_FOUND && s.id.is_some() {
        // The upstream forgot the session: start another and try once more.
        a.shared().modern.forget(&pool_key(&caps), &s);
        s = match session(a, &parts.uri, &caps, &info, &parts.extensions).await {
            Ok(s) => s,
            Err(why) => return no_session(&id, &why),
        };
        resp = forward(a, &parts, &body, &s).await;
    }
    if asks {
        return server_requests::respond(
            a,
            &parts.uri,
            resp,
            id,
            upstream_id,
            &method,
            s,
            caps,
            body,
        );
    }
    modern_response(a, &parts.uri, resp, id, &method, s)
}

/// The answer when no upstream session could be started.
fn no_session(id: &Value, why: &str) -> Response<Body> {
    error(
        StatusCode::BAD_GATEWAY,
        Some(id),
        turnpike_core::error_codes::UPSTREAM_FAILED,
        &format!("the upstream (MCP 2025) could not start a session: {why}"),
    )
}

async fn forward(
    a: &EraAdapter,
    parts: &http::request::Parts,
    body: &Value,
    s: &PooledSession,
) -> Response<Body> {
    let headers = session_headers(parts.headers.clone(), s);
    let mut req = wire::post(&parts.uri, headers, body);
    if let Some(id) = parts.extensions.get::<turnpike_http::JsonRpcId>() {
        req.extensions_mut().insert(id.clone());
    }
    wire::send(&a.inner(), req).await
}

fn modern_response(
    a: &EraAdapter,
    uri: &Uri,
    resp: Response<Body>,
    id: Value,
    method: &str,
    s: Arc<PooledSession>,
) -> Response<Body> {
    let cacheable = CACHEABLE.contains(&method);
    let final_id = id.clone();
    let inner = a.inner();
    let uri2 = uri.clone();
    let s2 = s.clone();
    let edit = move |v: &mut Value| {
        let e = Envelope::of(v);
        if !e.has_method {
            if e.id == Some(&final_id) {
                return to_modern_result(v, cacheable);
            }
            return Edit::Keep;
        }
        if let Some(req_id) = e.id {
            // A server-to-client request from a client that declared none of the capabilities
            // to answer it: refused upstream at once, never shown to the client.
            let refusal = server_requests::refusal(req_id, e.method.unwrap_or(""));
            let inner = inner.clone();
            let uri = uri2.clone();
            let headers = session_headers(HeaderMap::new(), &s2);
            tokio::spawn(async move {
                let _ = wire::send(&inner, wire::post(&uri, headers, &refusal)).await;
            });
            return Edit::Drop;
        }
        Edit::Keep
    };
    let inner = a.inner();
    let uri = uri.clone();
    let cancel_id = id.clone();
    let abandon = OnAbandon::new(move || {
        let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": cancel_id, "reason": "the client closed its stream"}});
        let headers = session_headers(HeaderMap::new(), &s);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = wire::send(&inner, wire::post(&uri, headers, &note)).await;
            });
        }
    });
    wire::rewrite(resp, edit, Some(id), abandon, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_mcp::messages::{
        META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION,
    };

    #[test]
    fn meta_taken_out() {
        let mut b = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
            META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {"elicitation":{}}, META_CLIENT_INFO: {"name":"x"}}}});
        let (caps, info) = take_modern_meta(&mut b);
        assert_eq!(caps, json!({"elicitation":{}}));
        assert_eq!(info["name"], "x");
        assert_eq!(
            b,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}})
        );
        let mut b = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":"p", META_PROTOCOL_VERSION: "2026-07-28"}}});
        take_modern_meta(&mut b);
        assert_eq!(b["params"]["_meta"], json!({"progressToken":"p"}));
    }

    #[test]
    fn error_answers_get_their_status() {
        let e = |code: i64| {
            format!(r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":{code},"message":"m"}}}}"#)
        };
        assert_eq!(
            error_status(e(-32601).as_bytes()),
            Some(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            error_status(e(-32021).as_bytes()),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(error_status(e(-32603).as_bytes()), None);
        // A result that merely mentions "error", and a server request, keep their status.
        assert_eq!(
            error_status(br#"{"jsonrpc":"2.0","id":1,"result":{"text":"\"error\""}}"#),
            None
        );
        assert_eq!(
            error_status(
                br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"error":{"code":-32601}}}"#
            ),
            None
        );
    }
}
