//! A legacy (2025) client in front of a modern-only (2026-07-28) upstream.
//!
//! - `initialize` is answered by the gateway: the capabilities, server info and instructions
//!   come from the upstream's `server/discover` (kept for its `ttlMs` when its `cacheScope` is
//!   `public`; a `private` result is never kept), the protocol version is the client's when the
//!   gateway speaks it, else 2025-11-25. The session id is sealed and self-contained
//!   ([`crate::seal`]): the client's capabilities and info travel in it, so any instance with
//!   the same key routes it, also after a restart.
//! - Every later request must carry that id (`400` without, `404` when it does not verify or has
//!   expired, so the client starts again). It is forwarded without the id, with
//!   `MCP-Protocol-Version: 2026-07-28`, `Mcp-Method` / `Mcp-Name` mirroring the body, and the
//!   session's protocol version, capabilities and client info (and a log level set by
//!   `logging/setLevel` on this instance) in `params._meta`.
//! - Results pass unparsed (a 2025 result allows extra members, so `resultType`, `ttlMs` and
//!   `cacheScope` may stay); only an `input_required` answer is handled: for a session that
//!   declared elicitation, sampling or roots its requests are put to the client and the request
//!   retried upstream with the answers ([`super::input`]); otherwise it becomes error
//!   [`crate::NOT_TRANSLATABLE`] naming what the server asked for. An upstream 4xx that
//!   carries a JSON-RPC error becomes that error in an HTTP 200, so the client does not take it
//!   for a lost session.
//! - `ping` is answered here; `notifications/initialized` is absorbed; `notifications/cancelled`
//!   closes the stream of the request it names (cancellation in the modern era); a JSON-RPC
//!   response is the client's answer to an input request the gateway sent it, or dropped.
//! - GET (the legacy server stream) and `resources/subscribe`/`unsubscribe` are bridged to the
//!   upstream's `subscriptions/listen` ([`super::server_stream`]); a GET gets `405` (which the
//!   transport spec lets a server answer when it offers no stream) when the upstream has no
//!   notification to offer. DELETE of a valid id gets `200`, ends the session's stream and
//!   subscriptions, and the id is remembered as ended on this instance.

use axum::body::Body;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use turnpike_mcp::messages::{
    set_id, set_request_meta, ClientCapabilities, Envelope, ErrorObject, InitializeParams,
    InitializeResult, InputRequiredResult, RequestMeta,
};

use super::discover::discover;
use super::session::{bounded_insert, id_key, session, MAX_TRACKED};
use crate::protocol::EraErrorData;
use crate::seal::SessionClaims;
use crate::wire::{self, Edit, OnAbandon};
use crate::{EraAdapter, LEGACY_VERSIONS, NOT_TRANSLATABLE};

/// GET, DELETE and other methods.
pub(crate) async fn not_post(a: &EraAdapter, req: Request<Body>) -> Response<Body> {
    let opened = match session(a, req.headers(), None) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match *req.method() {
        Method::GET => super::server_stream::get(a, req, opened).await,
        Method::DELETE => {
            let key = opened.key;
            let st = &a.shared().legacy;
            {
                let mut ended = st.ended.lock();
                if ended.len() >= MAX_TRACKED {
                    ended.clear();
                }
                ended.insert(key);
            }
            st.levels.lock().remove(&key);
            st.opened.lock().remove(&key);
            st.streams.forget(&key);
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::OK;
            r
        }
        _ => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
    }
}

/// A POST from a legacy client.
pub(crate) async fn post(
    a: &EraAdapter,
    parts: http::request::Parts,
    mut body: Value,
) -> Response<Body> {
    let envelope = Envelope::of(&body);
    let id = envelope.id.cloned();
    let Some(method) = envelope.method.map(str::to_owned) else {
        // A client's answer to a request the gateway sent it for an input_required result
        // (anything else is dropped: a modern server sends no requests).
        return match session(a, &parts.headers, None) {
            Ok(s) => {
                super::input::deliver(&a.shared().legacy, s.key, body);
                wire::accepted()
            }
            Err(r) => *r,
        };
    };
    if method == "initialize" {
        return initialize(a, &parts, &body).await;
    }
    let opened = match session(a, &parts.headers, id.as_ref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let key = opened.key;
    let st = &a.shared().legacy;
    let Some(id) = id else {
        // Notifications.
        if method == "notifications/cancelled" {
            let target = Envelope::of(&body).param("requestId").map(id_key);
            if let Some(t) = target {
                if let Some(tok) = st.inflight.lock().remove(&(key, t)) {
                    tok.cancel();
                }
            }
        }
        return wire::accepted();
    };
    match method.as_str() {
        "ping" => {
            return wire::json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            )
        }
        "logging/setLevel" => {
            let level = Envelope::of(&body)
                .param("level")
                .cloned()
                .unwrap_or(Value::Null);
            bounded_insert(&mut st.levels.lock(), key, level);
            return wire::json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            );
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            return super::server_stream::subscribe(a, &parts.uri, &opened, id, &method, &body)
                .await
        }
        _ => {}
    }
    // Forward as a modern request.
    let mut meta = (*opened.meta).clone();
    if let Some(level) = st.levels.lock().get(&key).cloned() {
        if !level.is_null() {
            meta.log_level = Some(level);
        }
    }
    set_meta(&mut body, meta);
    let mut headers = parts.headers.clone();
    headers.remove(turnpike_mcp::headers::SESSION_ID);
    crate::protocol::modern_headers(&mut headers, &body);
    let mut req = wire::post(&parts.uri, headers.clone(), &body);
    let extensions = parts.extensions.clone();
    *req.extensions_mut() = parts.extensions;
    let token = CancellationToken::new();
    let ikey = (key, id_key(&id));
    bounded_insert(&mut st.inflight.lock(), ikey.clone(), token.clone());
    let shared = a.clone();
    let untrack = OnAbandon::new(move || {
        shared.shared().legacy.inflight.lock().remove(&ikey);
    });
    // Cancelled before the upstream even answered (a modern server may hold its response head
    // until the first message): the upstream request is dropped, which closes its connection,
    // and the client's stream ends without an answer.
    let resp = tokio::select! {
        r = wire::send(&a.inner(), req) => r,
        () = token.cancelled() => {
            drop(untrack);
            let mut r = Response::new(Body::empty());
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            return r;
        }
    };
    let caps = ClientCapabilities::of(
        opened
            .meta
            .client_capabilities
            .as_ref()
            .unwrap_or(&Value::Null),
    );
    if caps.answers_any() && resp.status().is_success() {
        // The client can answer elicitation, sampling or roots requests: an input_required
        // result is bridged (see `super::input`).
        let retry = super::input::Retry {
            adapter: a.clone(),
            uri: parts.uri.clone(),
            headers,
            extensions,
            body,
            key,
            caps,
        };
        return super::input::respond(retry, resp, id, untrack, token).await;
    }
    legacy_response(resp, id, untrack, Some(token)).await
}

/// Turns a modern upstream's answer into what a legacy client expects.
async fn legacy_response(
    resp: Response<Body>,
    id: Value,
    untrack: OnAbandon,
    cancel: Option<CancellationToken>,
) -> Response<Body> {
    let status = resp.status();
    if status.is_client_error()
        && !matches!(status.as_u16(), 401 | 402 | 403 | 429)
        && wire::media_type(resp.headers()) == "application/json"
    {
        // A JSON-RPC error in a 4xx (unsupported version, unknown method, bad params): a legacy
        // client would read 404 as a lost session. The error travels in a 200.
        return match wire::answer(resp, &id).await {
            Ok((_, mut v)) if Envelope::of(&v).error.is_some() => {
                set_id(&mut v, id.clone());
                wire::json_response(StatusCode::OK, &v)
            }
            _ => wire::json_response(
                status,
                &turnpike_mcp::error_response(
                    Some(&id),
                    -32600,
                    &format!("the upstream refused the request (HTTP {status})"),
                ),
            ),
        };
    }
    // The tracking entry goes when the stream ends either way.
    let mut untrack = Some(untrack);
    let final_id = id.clone();
    let edit = move |v: &mut Value| {
        if Envelope::of(v).is_response_to(&final_id) {
            untrack.take();
            return to_legacy_result(v);
        }
        Edit::Keep
    };
    // Only an input_required answer needs rewriting: the modern-only members (`resultType`,
    // `ttlMs`, `cacheScope`) may stay, since a 2025 result allows extra members; everything
    // else passes unparsed.
    wire::rewrite(
        resp,
        edit,
        Some(id),
        OnAbandon::none(),
        cancel,
        Some("input_required"),
    )
}

/// Rewrites one modern answer for a legacy client.
pub(crate) fn to_legacy_result(v: &mut Value) -> Edit {
    if let Some(input) = InputRequiredResult::of(v) {
        let asked = input.methods();
        let what = if asked.is_empty() {
            "more input".to_owned()
        } else {
            asked.join(", ")
        };
        let id = Envelope::of(v).id.cloned();
        *v = ErrorObject::new(
            NOT_TRANSLATABLE,
            format!("the server needs {what} from the client to finish this request (an MCP 2026-07-28 input_required result), and this client's session did not declare the capability to answer it"),
        )
        .with_data(EraErrorData::input_required(asked))
        .response(id.as_ref());
        return Edit::Changed;
    }
    Edit::Keep
}

/// Answers `initialize` from the upstream's `server/discover`.
async fn initialize(a: &EraAdapter, parts: &http::request::Parts, body: &Value) -> Response<Body> {
    let id = Envelope::of(body).id.cloned().unwrap_or(Value::Null);
    let params = InitializeParams::of(body);
    let requested = params
        .protocol_version
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = if LEGACY_VERSIONS.contains(&requested) {
        requested
    } else {
        LEGACY_VERSIONS[0]
    };
    let caps = params
        .capabilities
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let info = params.client_info.clone().unwrap_or(Value::Null);
    let discover = match discover(a, &parts.uri, &caps, &info).await {
        Ok(d) => d,
        Err(why) => {
            return wire::json_response(
                StatusCode::BAD_GATEWAY,
                &turnpike_mcp::error_response(
                    Some(&id),
                    turnpike_core::error_codes::UPSTREAM_FAILED,
                    &format!("the upstream (MCP 2026-07-28) did not answer server/discover: {why}"),
                ),
            )
        }
    };
    let claims = SessionClaims {
        v: version.to_owned(),
        caps,
        info,
        iat: turnpike_core::unix_now(),
        n: SessionClaims::nonce(),
    };
    let sid = match a.shared().legacy.sealer.seal(&claims) {
        Ok(s) => s,
        Err(_) => {
            return wire::json_response(
                StatusCode::BAD_REQUEST,
                &turnpike_mcp::error_response(
                    Some(&id),
                    turnpike_core::error_codes::INVALID_PARAMS,
                    "the client's capabilities and info are too large for a session",
                ),
            )
        }
    };
    let server_info = discover
        .server_info()
        .cloned()
        .unwrap_or_else(|| json!({"name": "turnpike", "version": env!("CARGO_PKG_VERSION")}));
    let result = InitializeResult {
        protocol_version: Some(json!(version)),
        capabilities: Some(discover.capabilities.unwrap_or_else(|| json!({}))),
        server_info: Some(server_info),
        instructions: discover.instructions.filter(Value::is_string),
        extra: serde_json::Map::new(),
    };
    let result = serde_json::to_value(result).unwrap_or_else(|_| json!({}));
    let mut r = wire::json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    );
    if let Ok(v) = HeaderValue::from_str(&sid) {
        r.headers_mut().insert(turnpike_mcp::headers::SESSION_ID, v);
    }
    r
}

/// Puts the session's `meta` into the request's `params._meta`, over what the client sent there
/// (its progress token, extensions' keys): keys of the same names are replaced. `params` and
/// `_meta` are made when missing or not objects. Only `_meta` is read and written: the call's
/// arguments are not copied on their way upstream.
pub(crate) fn set_meta(body: &mut Value, meta: RequestMeta) {
    let sent = RequestMeta::of(body).unwrap_or_default();
    set_request_meta(body, Some(sent.overlay(meta)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_results_pass() {
        let mut v = json!({"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","ttlMs":0,"cacheScope":"private","tools":[]}});
        assert!(matches!(to_legacy_result(&mut v), Edit::Keep));
        let mut v = json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}});
        assert!(matches!(to_legacy_result(&mut v), Edit::Keep));
    }

    /// -32042 is both MPP's "Payment Required" and 2025-11-25's URLElicitationRequiredError;
    /// neither is an `input_required` result, and both reach the 2025 client as they were.
    #[test]
    fn payment_required_is_not_url_elicitation() {
        let payment = json!({"jsonrpc":"2.0","id":4,"error":{"code":-32042,"message":"Payment Required",
            "data":{"httpStatus":402,"challenges":[{"id":"x","realm":"r","method":"lightning",
            "intent":"charge","request":{"amount":"10","currency":"sat"}}]}}});
        let elicit = json!({"jsonrpc":"2.0","id":5,"error":{"code":-32042,"message":"URL elicitation required",
            "data":{"elicitations":[{"mode":"url","elicitationId":"e","url":"https://x/","message":"m"}]}}});
        for original in [payment, elicit] {
            let mut v = original.clone();
            assert!(matches!(to_legacy_result(&mut v), Edit::Keep));
            assert_eq!(v, original);
        }
    }

    #[test]
    fn input_required_is_a_clear_error() {
        let mut v = json!({"jsonrpc":"2.0","id":"a","result":{"resultType":"input_required",
            "inputRequests":{"r1":{"method":"elicitation/create","params":{}}}}});
        assert!(matches!(to_legacy_result(&mut v), Edit::Changed));
        assert_eq!(v["id"], "a");
        assert_eq!(v["error"]["code"], NOT_TRANSLATABLE);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("elicitation/create"));
    }

    #[test]
    fn meta_is_merged() {
        let mut b = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":5}}});
        set_meta(
            &mut b,
            crate::protocol::modern_request_meta(&json!({"sampling":{}}), &Value::Null),
        );
        assert_eq!(b["params"]["_meta"]["progressToken"], 5);
        assert_eq!(
            b["params"]["_meta"][turnpike_mcp::messages::META_PROTOCOL_VERSION],
            "2026-07-28"
        );
        assert_eq!(
            b["params"]["_meta"][turnpike_mcp::messages::META_CLIENT_CAPABILITIES],
            json!({"sampling":{}})
        );
        let mut b = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
        set_meta(
            &mut b,
            crate::protocol::modern_request_meta(&json!({}), &json!({"name":"c"})),
        );
        assert_eq!(
            b["params"]["_meta"][turnpike_mcp::messages::META_CLIENT_INFO]["name"],
            "c"
        );
    }
}
