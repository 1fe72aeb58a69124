//! The upstream sessions a modern (2026-07-28) client's requests go in: the gateway runs
//! `initialize` upstream on the callers' behalf and keeps one session per distinct set of
//! client capabilities, at most `pool_size` (the oldest is deleted upstream when full).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::wire;
use crate::{EraAdapter, LEGACY_VERSIONS};
use turnpike_mcp::messages::{Envelope, InitializeParams, InitializeResult};
use turnpike_upstream::BoxUpstream;

/// One upstream session held for modern clients.
#[derive(Debug)]
pub(crate) struct PooledSession {
    /// The upstream's `Mcp-Session-Id` (`None` for a server that gives none).
    pub(crate) id: Option<HeaderValue>,
    /// The negotiated protocol version.
    pub(crate) version: HeaderValue,
    /// The upstream's `initialize` result.
    pub(crate) init: InitializeResult,
    /// The notifications of the session's GET stream, once a `subscriptions/listen` opened it
    /// ([`super::listen`]).
    pub(crate) events: tokio::sync::Mutex<Option<tokio::sync::broadcast::Sender<Value>>>,
}

/// Per-adapter state for modern clients.
pub(crate) struct State {
    pool_size: usize,
    pool: Mutex<VecDeque<(String, Arc<PooledSession>)>>,
    /// Serialises session starts, so a burst of first requests starts one session.
    starting: tokio::sync::Mutex<()>,
}

impl State {
    pub(crate) fn new(pool_size: usize) -> State {
        State {
            pool_size: pool_size.max(1),
            pool: Mutex::new(VecDeque::new()),
            starting: tokio::sync::Mutex::new(()),
        }
    }

    fn get(&self, key: &str) -> Option<Arc<PooledSession>> {
        self.pool
            .lock()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
    }

    pub(crate) fn forget(&self, key: &str, s: &Arc<PooledSession>) {
        self.pool
            .lock()
            .retain(|(k, x)| !(k == key && Arc::ptr_eq(x, s)));
    }
}

/// The pool key of a client: its capabilities, serialised (serde_json keeps key order stable).
pub(crate) fn pool_key(caps: &Value) -> String {
    caps.to_string()
}

/// A pooled session for `caps`, started when there is none; `ext` are the extensions of the
/// client request that needs it.
pub(crate) async fn session(
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
    let params = InitializeParams {
        protocol_version: Some(json!(LEGACY_VERSIONS[0])),
        capabilities: Some(caps.clone()),
        client_info: Some(client_info),
        extra: serde_json::Map::new(),
    };
    let init = json!({
        "jsonrpc": "2.0", "id": req_id, "method": "initialize", "params": params,
    });
    let mut req = wire::post(uri, HeaderMap::new(), &init);
    carry_caller(ext, req.extensions_mut());
    let resp = wire::send(&inner, req).await;
    let status = resp.status();
    let (headers, v) = wire::answer(resp, &req_id).await?;
    let answer = Envelope::of(&v);
    let Some(result) = answer.result.filter(|_| status.is_success()) else {
        let msg = answer.error_message().unwrap_or("no result");
        return Err(format!("initialize failed: {msg}"));
    };
    let result = InitializeResult::from_value(result);
    let version = result
        .protocol_version
        .as_ref()
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
pub(crate) fn session_headers(mut h: HeaderMap, s: &PooledSession) -> HeaderMap {
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
