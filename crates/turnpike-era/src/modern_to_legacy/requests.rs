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

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::wire::{self, Edit, OnAbandon};
use crate::{
    EraAdapter, LEGACY_VERSIONS, META_CAPS, META_CLIENT_INFO, META_LOG_LEVEL, META_SERVER_INFO,
    META_VERSION, MODERN_VERSION,
};
use turnpike_upstream::BoxUpstream;

use turnpike_core::error_codes::{
    INVALID_PARAMS, METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY, RESOURCE_NOT_FOUND_2025,
};

/// One upstream session held for modern clients.
#[derive(Debug)]
pub struct PooledSession {
    /// The upstream's `Mcp-Session-Id` (`None` for a server that gives none).
    pub id: Option<HeaderValue>,
    /// The negotiated protocol version.
    pub version: HeaderValue,
    /// The upstream's `initialize` result.
    pub init: Value,
    /// The notifications of the session's GET stream, once a `subscriptions/listen` opened it
    /// ([`super::listen`]).
    pub events: tokio::sync::Mutex<Option<tokio::sync::broadcast::Sender<Value>>>,
}

/// Per-adapter state for modern clients.
pub struct State {
    pool_size: usize,
    pool: Mutex<VecDeque<(String, Arc<PooledSession>)>>,
    /// Serialises session starts, so a burst of first requests starts one session.
    starting: tokio::sync::Mutex<()>,
    /// Upstream calls waiting for a client's retry with the input they asked for.
    pub(crate) mrtr: super::server_requests::State,
}

impl State {
    pub(crate) fn new(pool_size: usize) -> State {
        State {
            pool_size: pool_size.max(1),
            pool: Mutex::new(VecDeque::new()),
            starting: tokio::sync::Mutex::new(()),
            mrtr: super::server_requests::State::new(),
        }
    }

    fn get(&self, key: &str) -> Option<Arc<PooledSession>> {
        self.pool
            .lock()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
    }

    fn forget(&self, key: &str, s: &Arc<PooledSession>) {
        self.pool
            .lock()
            .retain(|(k, x)| !(k == key && Arc::ptr_eq(x, s)));
    }

    /// How many sessions are pooled.
    pub fn len(&self) -> usize {
        self.pool.lock().len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The pool key of a client: its capabilities, serialised (serde_json keeps key order stable).
pub(crate) fn pool_key(caps: &Value) -> String {
    caps.to_string()
}

/// A pooled session for `caps`, started when there is none; `ext` are the extensions of the
/// client request that needs it.
async fn session(
    a: &EraAdapter,
    uri: &Uri,
    caps: &Value,
    info: &Value,
    ext: &http::Extensions,
) -> Result<Arc<PooledSession>, String> {
    let st = &a.shared().modern;
    let key = pool_key(caps);
    if let Some(s) = st.get(&key) {
        return Ok(s);
    }
    let _g = st.starting.lock().await;
    if let Some(s) = st.get(&key) {
        return Ok(s);
    }
    let s = Arc::new(start_session(a.inner(), uri, caps, info, ext).await?);
    let evicted = {
        let mut pool = st.pool.lock();
        pool.push_back((key, s.clone()));
        if pool.len() > st.pool_size {
            pool.pop_front()
        } else {
            None
        }
    };
    if let Some((_, old)) = evicted {
        end_session(a.inner(), uri, &old).await;
    }
    Ok(s)
}

async fn start_session(
    inner: BoxUpstream,
    uri: &Uri,
    caps: &Value,
    info: &Value,
    ext: &http::Extensions,
) -> Result<PooledSession, String> {
    let client_info = if info.is_object() {
        info.clone()
    } else {
        json!({"name": "turnpike", "version": env!("CARGO_PKG_VERSION")})
    };
    let req_id = json!("turnpike-init");
    let init = json!({
        "jsonrpc": "2.0", "id": req_id, "method": "initialize",
        "params": {"protocolVersion": LEGACY_VERSIONS[0], "capabilities": caps, "clientInfo": client_info},
    });
    let mut req = wire::post(uri, HeaderMap::new(), &init);
    carry_caller(ext, req.extensions_mut());
    let resp = wire::send(&inner, req).await;
    let status = resp.status();
    let (headers, v) = wire::answer(resp, &req_id).await?;
    let Some(result) = v.get("result").cloned().filter(|_| status.is_success()) else {
        let msg = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no result");
        return Err(format!("initialize failed: {msg}"));
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or_else(|| HeaderValue::from_static("2025-11-25"));
    let id = headers.get(turnpike_mcp::headers::SESSION_ID).cloned();
    let s = PooledSession {
        id,
        version,
        init: result,
        events: tokio::sync::Mutex::new(None),
    };
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let _ = wire::send(
        &inner,
        wire::post(uri, session_headers(HeaderMap::new(), &s), &note),
    )
    .await;
    tracing::debug!(target: "turnpike::era", "pooled an upstream session for modern clients");
    Ok(s)
}

/// The address of the client whose request starts a pooled session goes with its `initialize`,
/// so that a stdio upstream counts the child against that client (its `[stdio]` per-caller
/// bounds), not against no one.
fn carry_caller(from: &http::Extensions, to: &mut http::Extensions) {
    if let Some(p) = from.get::<turnpike_http::PeerAddr>() {
        to.insert(*p);
    }
    if let Some(c) = from.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        to.insert(*c);
    }
}

async fn end_session(inner: BoxUpstream, uri: &Uri, s: &PooledSession) {
    let Some(id) = &s.id else { return };
    let mut del = Request::new(Body::empty());
    *del.method_mut() = Method::DELETE;
    *del.uri_mut() = uri.clone();
    del.headers_mut()
        .insert(turnpike_mcp::headers::SESSION_ID, id.clone());
    let _ = wire::send(&inner, del).await;
}

/// `h` for a request in pooled session `s`: its id and protocol version, no routing headers.
pub fn session_headers(mut h: HeaderMap, s: &PooledSession) -> HeaderMap {
    h.remove(turnpike_mcp::headers::MCP_METHOD);
    h.remove(turnpike_mcp::headers::MCP_NAME);
    h.insert(turnpike_mcp::headers::PROTOCOL_VERSION, s.version.clone());
    match &s.id {
        Some(id) => {
            h.insert(turnpike_mcp::headers::SESSION_ID, id.clone());
        }
        None => {
            h.remove(turnpike_mcp::headers::SESSION_ID);
        }
    }
    h
}

/// Takes the modern request `_meta` keys out of `body`: (capabilities, client info).
pub fn take_modern_meta(body: &mut Value) -> (Value, Value) {
    let Some(meta) = body
        .get_mut("params")
        .and_then(|p| p.get_mut("_meta"))
        .and_then(Value::as_object_mut)
    else {
        return (json!({}), Value::Null);
    };
    let caps = meta
        .remove(META_CAPS)
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let info = meta.remove(META_CLIENT_INFO).unwrap_or(Value::Null);
    meta.remove(META_VERSION);
    meta.remove(META_LOG_LEVEL);
    let empty = meta.is_empty();
    if empty {
        if let Some(p) = body.get_mut("params").and_then(Value::as_object_mut) {
            p.remove("_meta");
        }
    }
    (caps, info)
}

fn error(status: StatusCode, id: Option<&Value>, code: i64, msg: &str) -> Response<Body> {
    let mut v = wire::error_value(id, code, msg);
    v["error"]["data"] = json!({"turnpike": "era-translation"});
    wire::json_response(status, &v)
}

/// A POST from a modern client (already checked by [`super::checks`]).
pub async fn post(a: &EraAdapter, parts: http::request::Parts, body: Value) -> Response<Body> {
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
    if v.get("method").is_some() {
        return None;
    }
    v.pointer("/error/code")
        .and_then(Value::as_i64)
        .and_then(status_for_error)
}

async fn translate(a: &EraAdapter, parts: http::request::Parts, mut body: Value) -> Response<Body> {
    let id = body.get("id").cloned();
    let Some(method) = body
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return wire::accepted();
    };
    let Some(id) = id else {
        // Modern clients send no notifications over HTTP that a legacy session needs.
        return wire::accepted();
    };
    let (caps, info) = take_modern_meta(&mut body);
    let params = body.get("params");
    if params.is_some_and(|p| p.get("requestState").is_some()) {
        return super::server_requests::resume(a, id, &caps, &body).await;
    }
    if params.is_some_and(|p| p.get("inputResponses").is_some()) {
        // Answers to nothing this gateway asked: ignored, as MCP 2026-07-28 says a server
        // should treat input it does not recognise; the request is a new one.
        if let Some(p) = body.get_mut("params").and_then(Value::as_object_mut) {
            p.remove("inputResponses");
        }
    }
    let mut s = match session(a, &parts.uri, &caps, &info, &parts.extensions).await {
        Ok(s) => s,
        Err(why) => return no_session(&id, &why),
    };
    if method == "subscriptions/listen" {
        let filter = body
            .pointer("/params/notifications")
            .cloned()
            .unwrap_or_else(|| json!({}));
        return super::listen::listen(a, &parts.uri, id, filter, s).await;
    }
    if method == "server/discover" {
        return wire::json_response(StatusCode::OK, &discover_result(&id, &s.init));
    }
    // A client that can answer the upstream's requests: the call gets an upstream id of its
    // own, as it may wait in the shared session for the client's retry.
    let asks = super::server_requests::wants(&caps);
    let upstream_id = if asks {
        let u = super::server_requests::upstream_id();
        body["id"] = u.clone();
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
        return super::server_requests::respond(
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

/// The `server/discover` result built from a legacy `initialize` result.
pub fn discover_result(id: &Value, init: &Value) -> Value {
    let mut result = serde_json::Map::new();
    result.insert("resultType".into(), json!("complete"));
    result.insert("supportedVersions".into(), json!([MODERN_VERSION]));
    result.insert(
        "capabilities".into(),
        init.get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    if let Some(i) = init.get("instructions").filter(|i| i.is_string()) {
        result.insert("instructions".into(), i.clone());
    }
    result.insert("ttlMs".into(), json!(0));
    result.insert("cacheScope".into(), json!("private"));
    if let Some(si) = init.get("serverInfo") {
        result.insert("_meta".into(), json!({META_SERVER_INFO: si}));
    }
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Methods whose results carry cache hints in the modern era.
pub(crate) const CACHEABLE: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Rewrites one legacy answer for a modern client.
pub fn to_modern_result(v: &mut Value, cacheable: bool) -> Edit {
    let Some(result) = v.get_mut("result").and_then(Value::as_object_mut) else {
        // A resource that does not exist: -32002 in the 2025 revisions, -32602 (invalid
        // params) in 2026-07-28 (SEP-2164); `data` (the URI) is kept.
        if let Some(code) = v.pointer_mut("/error/code") {
            if code.as_i64() == Some(RESOURCE_NOT_FOUND_2025) {
                *code = json!(INVALID_PARAMS);
                return Edit::Changed;
            }
        }
        return Edit::Keep;
    };
    result
        .entry("resultType")
        .or_insert_with(|| json!("complete"));
    if cacheable {
        result.entry("ttlMs").or_insert_with(|| json!(0));
        result
            .entry("cacheScope")
            .or_insert_with(|| json!("private"));
    }
    Edit::Changed
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
        if v.get("method").is_none() {
            if v.get("id") == Some(&final_id) {
                return to_modern_result(v, cacheable);
            }
            return Edit::Keep;
        }
        if let Some(req_id) = v.get("id").cloned() {
            // A server-to-client request from a client that declared none of the capabilities
            // to answer it: refused upstream at once, never shown to the client.
            let what = v.get("method").and_then(Value::as_str).unwrap_or("");
            let refusal = super::server_requests::refusal(&req_id, what);
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

    #[test]
    fn meta_taken_out() {
        let mut b = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{
            META_VERSION: "2026-07-28", META_CAPS: {"elicitation":{}}, META_CLIENT_INFO: {"name":"x"}}}});
        let (caps, info) = take_modern_meta(&mut b);
        assert_eq!(caps, json!({"elicitation":{}}));
        assert_eq!(info["name"], "x");
        assert_eq!(
            b,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}})
        );
        let mut b = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":"p", META_VERSION: "2026-07-28"}}});
        take_modern_meta(&mut b);
        assert_eq!(b["params"]["_meta"], json!({"progressToken":"p"}));
    }

    #[test]
    fn resource_not_found_takes_the_modern_code() {
        let mut v = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"Resource not found","data":{"uri":"x://y"}}});
        assert!(matches!(to_modern_result(&mut v, true), Edit::Changed));
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["uri"], "x://y");
        let mut v = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}});
        assert!(matches!(to_modern_result(&mut v, true), Edit::Keep));
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

    #[test]
    fn results_gain_modern_members() {
        let mut v = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[]}});
        to_modern_result(&mut v, true);
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["cacheScope"], "private");
        let mut v = json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}});
        to_modern_result(&mut v, false);
        assert!(v["result"].get("ttlMs").is_none());
        let d = discover_result(
            &json!(3),
            &json!({"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}),
        );
        assert_eq!(d["result"]["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(d["result"]["_meta"][META_SERVER_INFO]["name"], "s");
    }
}
