//! Multi-round calls are paid once.
//!
//! In MCP 2026-07-28 a server that needs more from the client answers `tools/call` (or
//! `prompts/get`, `resources/read`) with `resultType: "input_required"` and a `requestState`,
//! and the client sends the same request again with `inputResponses` and that `requestState`.
//! Each retry is a new request through the gate; priced like a fresh call, one logical call
//! would cost a puzzle or a payment per round.
//!
//! So when a call the caller *paid for* (proof of work or L402; not OAuth, which proves who
//! the caller is rather than paying, and is checked on every request) is answered
//! `input_required`, the gate remembers the answer's `requestState` (its SHA-256, never the
//! value) with the request it belongs to: the method, the name and the canonical hash of the
//! arguments. The retry carrying that `requestState` for the same method, name and arguments
//! passes without a charge, once; its own `input_required` answer is remembered the same way,
//! for the next round.
//!
//! What this is not: a credential that outlives the call. An entry is single-use, expires after
//! [`TTL`], and the table holds at most [`MAX_ENTRIES`] (the oldest go first). It lives in
//! this process: a retry that lands on another instance, or after a restart or reload, is
//! priced as a new call (over-charging, never a free call). A `requestState` is only as
//! secret as the upstream's answer it came in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::Response;
use serde_json::Value;
use sha2::{Digest, Sha256};

use turnpike_era::wire::{self, Edit, OnAbandon};

/// How long a remembered `requestState` may be used.
pub const TTL: Duration = Duration::from_secs(600);

/// The most remembered states per process.
pub const MAX_ENTRIES: usize = 65_536;

/// The longest `requestState` remembered (a longer one is priced as usual).
pub const MAX_STATE_BYTES: usize = 64 * 1024;

/// Methods whose answer may be `input_required`.
pub const METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];

type Key = [u8; 32];

/// The remembered states of paid calls (see the module docs).
#[derive(Debug, Default)]
pub struct Continuations {
    inner: parking_lot::Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, (Key, Instant)>,
    order: VecDeque<Key>,
}

/// What a state is bound to: the method, the name (the tool, prompt or resource:
/// [`turnpike_mcp::call_name`]) and the canonical hash of the arguments
/// ([`turnpike_mcp::canonical::arguments_hash`], which the gate computes for every request).
pub fn binding(method: &str, name: Option<&str>, args_hash: &[u8; 32]) -> Option<Key> {
    if !METHODS.contains(&method) {
        return None;
    }
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(name.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(args_hash);
    Some(h.finalize().into())
}

fn state_key(state: &str) -> Key {
    let mut h = Sha256::new();
    h.update(b"turnpike-continuation\0");
    h.update(state.as_bytes());
    h.finalize().into()
}

/// The `requestState` a request carries, if any.
pub fn request_state(params: Option<&Value>) -> Option<&str> {
    params
        .and_then(|p| p.get("requestState"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= MAX_STATE_BYTES)
}

impl Continuations {
    /// An empty table.
    pub fn new() -> Continuations {
        Continuations::default()
    }

    /// Remembers `state`, answered to a paid request with `binding`.
    pub fn record(&self, state: &str, binding: Key) {
        if state.is_empty() || state.len() > MAX_STATE_BYTES {
            return;
        }
        let now = Instant::now();
        let key = state_key(state);
        let mut g = self.inner.lock();
        // Expired entries at the front go first; then the oldest while full.
        while let Some(front) = g.order.front().copied() {
            let expired = g.map.get(&front).is_none_or(|(_, at)| *at <= now);
            if expired || g.map.len() >= MAX_ENTRIES {
                g.order.pop_front();
                g.map.remove(&front);
            } else {
                break;
            }
        }
        if g.map.insert(key, (binding, now + TTL)).is_none() {
            g.order.push_back(key);
        }
    }

    /// Whether `state` was remembered for a request with `binding` and is still good; a match
    /// is used up. A state remembered for another request stays (it is not this caller's to
    /// spend).
    pub fn take(&self, state: &str, binding: &Key) -> bool {
        let key = state_key(state);
        let mut g = self.inner.lock();
        match g.map.get(&key) {
            Some((b, at)) if b == binding && *at > Instant::now() => {
                g.map.remove(&key);
                true
            }
            _ => false,
        }
    }

    /// How many states are remembered (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Passes `resp` on unchanged, remembering the `requestState` of an `input_required` answer to
/// `id` (see the module docs). Only messages that contain `input_required` are parsed.
pub fn watch(
    resp: Response<Body>,
    table: Arc<Continuations>,
    binding: Key,
    id: Value,
) -> Response<Body> {
    if !resp.status().is_success() {
        return resp;
    }
    let edit = move |v: &mut Value| {
        if v.get("method").is_none()
            && v.get("id") == Some(&id)
            && v.pointer("/result/resultType").and_then(Value::as_str) == Some("input_required")
        {
            if let Some(state) = v.pointer("/result/requestState").and_then(Value::as_str) {
                table.record(state, binding);
            }
        }
        Edit::Keep
    };
    wire::rewrite(
        resp,
        edit,
        None,
        OnAbandon::none(),
        None,
        Some("input_required"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(args: Value) -> Key {
        let params = json!({"name": "t", "arguments": args});
        let hash = turnpike_mcp::canonical::arguments_hash(Some(&params));
        binding("tools/call", Some("t"), &hash).unwrap()
    }

    #[test]
    fn a_state_is_good_once_for_its_own_request() {
        let t = Continuations::new();
        t.record("s1", b(json!({"x": 1})));
        // Another tool, other arguments, another method: not this state's request.
        assert!(!t.take("s1", &b(json!({"x": 2}))));
        let hash = turnpike_mcp::canonical::arguments_hash(Some(&json!({"arguments": {"x": 1}})));
        let other = binding("tools/call", Some("u"), &hash).unwrap();
        assert!(!t.take("s1", &other));
        assert!(!t.take("s2", &b(json!({"x": 1}))));
        // Key order does not matter; the match is used up.
        t.record("s3", b(json!({"a": 1, "b": 2})));
        assert!(t.take("s3", &b(json!({"b": 2, "a": 1}))));
        assert!(!t.take("s3", &b(json!({"a": 1, "b": 2}))));
        assert!(t.take("s1", &b(json!({"x": 1}))));
        assert!(t.is_empty());
    }

    #[test]
    fn only_calls_that_can_ask_are_bound() {
        assert!(binding("tools/list", None, &[0; 32]).is_none());
        assert!(binding("resources/read", Some("x://y"), &[0; 32]).is_some());
        assert_eq!(request_state(Some(&json!({"requestState": ""}))), None);
        assert_eq!(request_state(Some(&json!({"requestState": 5}))), None);
        assert_eq!(
            request_state(Some(&json!({"requestState": "s"}))),
            Some("s")
        );
        let long = "x".repeat(MAX_STATE_BYTES + 1);
        assert_eq!(request_state(Some(&json!({"requestState": long}))), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let t = Continuations::new();
        for i in 0..MAX_ENTRIES + 10 {
            t.record(&format!("s{i}"), b(json!({})));
        }
        assert_eq!(t.len(), MAX_ENTRIES);
        // The oldest went first.
        assert!(!t.take("s0", &b(json!({}))));
        assert!(t.take(&format!("s{}", MAX_ENTRIES + 9), &b(json!({}))));
    }

    #[tokio::test]
    async fn input_required_answers_are_remembered() {
        use http_body_util::BodyExt;
        let t = Arc::new(Continuations::new());
        let body = json!({"jsonrpc": "2.0", "id": 7, "result": {"resultType": "input_required",
            "inputRequests": {}, "requestState": "st"}});
        let resp = Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(format!("event: message\ndata: {body}\n\n")))
            .unwrap();
        let out = watch(resp, t.clone(), b(json!({})), json!(7));
        let bytes = out.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&bytes).contains("\"requestState\":\"st\""));
        assert!(t.take("st", &b(json!({}))));
        // An answer to another id, or a complete result, is not remembered.
        let resp = Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let out = watch(resp, t.clone(), b(json!({})), json!(8));
        out.into_body().collect().await.unwrap();
        assert!(t.is_empty());
    }
}
