//! The sealed session of a legacy (2025) client: the per-adapter state of this direction, and
//! the session a request names (verified once, then remembered with its request `_meta`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::seal::{session_key, SealError, Sealer, SessionKey};
use crate::wire;
use crate::EraAdapter;

/// The most requests in flight tracked for cancellation, and the most ended sessions and log
/// levels remembered (oldest forgotten first when full).
pub(crate) const MAX_TRACKED: usize = 16 * 1024;

/// Per-adapter state for legacy clients.
pub(crate) struct State {
    pub(crate) sealer: Sealer,
    /// The upstream's `server/discover` result, while fresh.
    pub(crate) discover: super::discover::Cache,
    pub(crate) inflight: Mutex<HashMap<(SessionKey, String), CancellationToken>>,
    pub(crate) ended: Mutex<HashSet<SessionKey>>,
    pub(crate) levels: Mutex<HashMap<SessionKey, Value>>,
    /// Sessions already opened on this instance: the request `_meta` they carry, built once
    /// (the id itself was verified when it was first seen; the expiry is kept with it).
    pub(crate) opened: Mutex<HashMap<SessionKey, (u64, SessionMeta)>>,
    /// Requests sent to legacy clients for an `input_required` result, by the gateway-issued
    /// id, waiting for the client's response (accepted only from the same session).
    pub(crate) asked: Mutex<HashMap<String, (SessionKey, oneshot::Sender<Value>)>>,
    /// Resource subscriptions and GET streams of sessions on this instance.
    pub(crate) streams: super::subscriptions::Streams,
}

/// The request `_meta` of a session, built once.
pub(crate) type SessionMeta = Arc<turnpike_mcp::messages::RequestMeta>;

impl State {
    pub(crate) fn new(sealer: Sealer) -> State {
        State {
            sealer,
            discover: super::discover::Cache::default(),
            inflight: Mutex::new(HashMap::new()),
            ended: Mutex::new(HashSet::new()),
            levels: Mutex::new(HashMap::new()),
            opened: Mutex::new(HashMap::new()),
            asked: Mutex::new(HashMap::new()),
            streams: super::subscriptions::Streams::default(),
        }
    }
}

pub(crate) fn bounded_insert<K: std::hash::Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    k: K,
    v: V,
) {
    if map.len() >= MAX_TRACKED && !map.contains_key(&k) {
        if let Some(first) = map.keys().next().cloned() {
            map.remove(&first);
        }
    }
    map.insert(k, v);
}

/// A verified session: its key and the request `_meta` it carries.
pub(crate) struct Opened {
    pub(crate) key: SessionKey,
    pub(crate) meta: SessionMeta,
}

/// The session of a request, or the answer to send instead.
pub(crate) fn session(
    a: &EraAdapter,
    headers: &HeaderMap,
    id: Option<&Value>,
) -> Result<Opened, Box<Response<Body>>> {
    let Some(sid) = headers
        .get(turnpike_mcp::headers::SESSION_ID)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Box::new(wire::json_response(
            StatusCode::BAD_REQUEST,
            &turnpike_mcp::error_response(
                id,
                -32600,
                "Bad Request: no Mcp-Session-Id; start a session with initialize",
            ),
        )));
    };
    let st = &a.shared().legacy;
    let not_found = |why: &str| {
        Box::new(wire::json_response(
            StatusCode::NOT_FOUND,
            &turnpike_mcp::error_response(
                id,
                -32001,
                &format!("Session not found ({why}); initialize again"),
            ),
        ))
    };
    let key = session_key(sid);
    if st.ended.lock().contains(&key) {
        return Err(not_found("ended"));
    }
    let now = turnpike_core::unix_now();
    if let Some((expires, meta)) = st.opened.lock().get(&key) {
        if now <= *expires {
            return Ok(Opened {
                key,
                meta: meta.clone(),
            });
        }
    }
    match st.sealer.open_at(sid, now) {
        Ok(c) => {
            let meta = Arc::new(crate::protocol::modern_request_meta(&c.caps, &c.info));
            let expires = c.iat.saturating_add(st.sealer.ttl_secs());
            bounded_insert(&mut st.opened.lock(), key, (expires, meta.clone()));
            Ok(Opened { key, meta })
        }
        Err(SealError::Expired) => Err(not_found("expired")),
        Err(_) => Err(not_found("unknown")),
    }
}

/// A request id as a map key (numbers and strings kept apart).
pub(crate) fn id_key(v: &Value) -> String {
    v.to_string()
}
