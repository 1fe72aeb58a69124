//! A legacy (2025) server's requests to a modern (2026-07-28) client, as multi-round-trip
//! requests.
//!
//! A 2025 server asks its client for something (`elicitation/create`,
//! `sampling/createMessage`, `roots/list`) by sending a JSON-RPC request on the stream of the
//! call it is working on, and waits. A 2026-07-28 client never receives requests: the server
//! ends the call with `{"resultType": "input_required", "inputRequests": {<key>: {"method",
//! "params"}}, "requestState": "…"}` and the client sends the same request again with
//! `params.inputResponses` (`{<key>: <result>}`) and `params.requestState` echoed.
//!
//! For a modern client that declared the matching capability in its request's
//! `_meta["io.modelcontextprotocol/clientCapabilities"]` (`elicitation`, `sampling`, `roots`):
//!
//! 1. the request goes upstream, in the pooled session ([`super::requests`]), under an id
//!    of the gateway's own (`turnpike-call-<n>`, unique in the process), so that calls of
//!    different clients sharing the session cannot collide while one waits;
//! 2. the upstream's stream is relayed as usual (progress and other notifications pass, the
//!    answer gets the client's id and `resultType: "complete"`) until the upstream sends such a
//!    request. The requests that arrive with it (until the stream has been quiet for 2 ms, at
//!    most 20 ms) become the `inputRequests` of an `input_required` result, the last event of
//!    the client's stream. The upstream's stream stays open, held by a *pending exchange* in this
//!    instance's memory, unread;
//! 3. the `requestState` is sealed (HMAC-SHA256 under a key of this instance, checked in
//!    constant time) and names the pending exchange, the pooled session (a digest of the
//!    client's capabilities and the upstream session id), a digest of the request's method and
//!    parameters (without `_meta`, `inputResponses` and `requestState`) and an expiry;
//! 4. a retry with that state and `inputResponses` takes the exchange (once: a second retry
//!    with the same state is refused), sends each answer upstream as the JSON-RPC response to
//!    the upstream's request, and relays the rest of the upstream's stream as the answer to
//!    the retry (progress tokens of the first request are renamed to the retry's). Another
//!    request from the upstream starts another round. Answers missing from `inputResponses`
//!    are asked again (an `input_required` result naming only them), as the spec says a server
//!    should; `inputResponses` without a `requestState` answer nothing asked and are dropped
//!    (the request is served as a new one).
//!
//! Never a hang: a request whose capability the client did not declare is refused upstream
//! with [`NOT_TRANSLATABLE`] (the tool sees a refusal; a `ping` is answered); a state that
//! does not verify, has expired, belongs to another request or capability set, or names no
//! pending exchange here (completed, cancelled, or held by another instance) gets JSON-RPC
//! error -32602 and nothing goes upstream; an exchange not retried within [`INPUT_WAIT`] is
//! cancelled upstream (`notifications/cancelled`) and dropped; at most [`MAX_PENDING`]
//! exchanges wait on one instance (the oldest is cancelled). Clients that declared none of the
//! three capabilities take the unchanged path, and nothing is parsed beyond what that path
//! parses already.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use turnpike_core::mac::{hmac_sha256, HmacSha256, Mac};
use turnpike_mcp::messages::{
    set_id, ClientCapabilities, Envelope, ErrorObject, InputKind, InputRequest,
    InputRequiredResult, Params, RequestMeta, RetryParams, INPUT_RESPONSES, REQUEST_STATE,
};
use turnpike_mcp::sse::{write_event, SseParser};

use super::pool::{pool_key, session_headers, PooledSession};
use super::results::{to_modern_result, CACHEABLE};
use crate::protocol::{EraErrorData, NOT_TRANSLATABLE};
use crate::wire;
use crate::EraAdapter;
use turnpike_upstream::BoxUpstream;

/// How long a pending exchange waits for the client's retry before it is cancelled upstream.
pub(crate) const INPUT_WAIT: Duration = Duration::from_secs(300);
/// The most pending exchanges on one instance; one more cancels the oldest.
pub(crate) const MAX_PENDING: usize = 1024;
/// After a server's request, how long the stream must stay quiet before the round is closed
/// (requests arriving meanwhile join it), and the longest a round is held open for more.
const GATHER_QUIET: Duration = Duration::from_millis(2);
const GATHER_MAX: Duration = Duration::from_millis(20);

// The answer to a `requestState` that cannot be taken: JSON-RPC "invalid params".
use turnpike_core::error_codes::INVALID_PARAMS;

const DOMAIN: &[u8] = b"turnpike-request-state-v1.";
const PREFIX: &str = "tps1.";
/// seq (8) | nonce (8) | session tag (16) | request tag (16) | expiry (8).
const PAYLOAD_LEN: usize = 56;

type Tag = [u8; 16];

/// Whether a client with `caps` could answer any request of a 2025 server (then its requests
/// take the translated path).
pub(crate) fn wants(caps: &Value) -> bool {
    ClientCapabilities::of(caps).answers_any()
}

/// A fresh upstream id for a request on the translated path: unique in this process (the
/// pooled sessions are this process's), so calls of clients sharing a session never collide.
pub(crate) fn upstream_id() -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut s = String::with_capacity(32);
    s.push_str("turnpike-call-");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{n}"));
    Value::String(s)
}

/// What an upstream's request gets when the client cannot take it: an error naming why (a
/// `ping` is answered here).
pub(crate) fn refusal(req_id: &Value, method: &str) -> Value {
    if method == "ping" {
        return json!({"jsonrpc": "2.0", "id": req_id, "result": {}});
    }
    let why = match InputKind::of_method(method) {
        Some(kind) => format!(
            "the client speaks MCP 2026-07-28 and did not declare the {} capability, so {method} cannot be put to it",
            kind.capability()
        ),
        None => format!(
            "the client speaks MCP 2026-07-28 and cannot receive {method} as a request"
        ),
    };
    turnpike_mcp::error_response(Some(req_id), NOT_TRANSLATABLE, &why)
}

/// Per-adapter state: the pending exchanges of this instance.
pub(crate) struct State {
    inner: Arc<Inner>,
}

struct Inner {
    key: [u8; 32],
    seq: AtomicU64,
    wait_ms: AtomicU64,
    max: AtomicUsize,
    map: Mutex<BTreeMap<u64, Parked>>,
}

impl State {
    pub(crate) fn new() -> State {
        State {
            inner: Arc::new(Inner {
                key: rand::random(),
                seq: AtomicU64::new(1),
                wait_ms: AtomicU64::new(INPUT_WAIT.as_millis() as u64),
                max: AtomicUsize::new(MAX_PENDING),
                map: Mutex::new(BTreeMap::new()),
            }),
        }
    }
}

impl State {
    /// How long a pending exchange waits for the client's retry.
    pub(crate) fn set_wait(&self, wait: Duration) {
        self.inner
            .wait_ms
            .store(wait.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// The most pending exchanges kept.
    pub(crate) fn set_max(&self, max: usize) {
        self.inner.max.store(max.max(1), Ordering::Relaxed);
    }

    /// How many exchanges wait for a client's retry.
    pub(crate) fn len(&self) -> usize {
        self.inner.map.lock().len()
    }
}

/// One upstream request put to the client.
struct Asked {
    key: String,
    method: String,
    params: Value,
    /// The upstream's id for it.
    id: Value,
}

/// A call in progress upstream on the translated path.
struct Exchange {
    inner: BoxUpstream,
    uri: Uri,
    session: Arc<PooledSession>,
    /// The client's capabilities, as its pooled session is keyed by them.
    caps: Value,
    /// What of them says which upstream requests the client answers.
    answers: ClientCapabilities,
    /// The request as sent upstream (for its digest, computed only if the upstream asks;
    /// dropped then).
    request: Value,
    /// The request's progress token, once the request is dropped.
    first_token: Option<Value>,
    upstream_id: Value,
    cacheable: bool,
    body: axum::body::BodyDataStream,
    parser: SseParser,
    /// Keys issued so far (numbering the next).
    issued: usize,
    /// Set once the upstream answered or its stream ended: nothing to cancel.
    finished: bool,
    /// Why the call is cancelled if it is dropped unfinished.
    reason: &'static str,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": self.upstream_id, "reason": self.reason}});
        let req = wire::post(
            &self.uri,
            session_headers(HeaderMap::new(), &self.session),
            &note,
        );
        let send = wire::send(&self.inner, req);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = send.await;
            });
        }
    }
}

impl Exchange {
    fn refuse(&self, req_id: &Value, method: &str) {
        let refusal = refusal(req_id, method);
        let req = wire::post(
            &self.uri,
            session_headers(HeaderMap::new(), &self.session),
            &refusal,
        );
        tokio::spawn(wire::send(&self.inner, req));
    }

    fn session_tag(&self) -> Tag {
        session_tag(&self.caps, &self.session)
    }
}

/// An exchange waiting for the client's retry.
struct Parked {
    nonce: u64,
    session: Tag,
    request: Tag,
    asked: Vec<Asked>,
    ex: Exchange,
}

fn session_tag(caps: &Value, s: &PooledSession) -> Tag {
    let mut h = Sha256::new();
    h.update(pool_key(caps).as_bytes());
    h.update([0]);
    if let Some(id) = &s.id {
        h.update(id.as_bytes());
    }
    truncate(h.finalize().as_slice())
}

fn truncate(d: &[u8]) -> Tag {
    let mut t = [0u8; 16];
    t.copy_from_slice(&d[..16]);
    t
}

/// A digest of a request's method and parameters, without `_meta`, `inputResponses` and
/// `requestState` (keys sorted, so the client's key order does not matter).
fn request_tag(body: &Value) -> Tag {
    let mut h = Sha256::new();
    let e = Envelope::of(body);
    match e.method {
        Some(m) => canon_str(&mut h, m),
        None => canon(&mut h, &Value::Null),
    }
    if let Some(p) = e.params.and_then(Value::as_object) {
        let mut keys: Vec<&String> = p
            .keys()
            .filter(|&k| k != "_meta" && k != INPUT_RESPONSES && k != REQUEST_STATE)
            .collect();
        keys.sort();
        h.update(b"{");
        for k in keys {
            canon_str(&mut h, k);
            canon(&mut h, &p[k]);
        }
        h.update(b"}");
    }
    truncate(h.finalize().as_slice())
}

fn canon_str(h: &mut Sha256, s: &str) {
    h.update(b"s");
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

fn canon(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            canon_str(h, &n.to_string());
        }
        Value::String(s) => canon_str(h, s),
        Value::Array(a) => {
            h.update(b"[");
            for x in a {
                canon(h, x);
            }
            h.update(b"]");
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                canon_str(h, k);
                canon(h, &o[k]);
            }
            h.update(b"}");
        }
    }
}

/// What a sealed `requestState` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claims {
    seq: u64,
    nonce: u64,
    session: Tag,
    request: Tag,
    exp: u64,
}

/// Why a `requestState` was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Invalid,
    Expired,
}

impl Inner {
    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = hmac_sha256(&self.key);
        mac.update(DOMAIN);
        mac.update(payload);
        mac
    }

    fn seal(&self, c: &Claims) -> String {
        let mut p = Vec::with_capacity(PAYLOAD_LEN);
        p.extend_from_slice(&c.seq.to_be_bytes());
        p.extend_from_slice(&c.nonce.to_be_bytes());
        p.extend_from_slice(&c.session);
        p.extend_from_slice(&c.request);
        p.extend_from_slice(&c.exp.to_be_bytes());
        let tag = self.mac(&p).finalize().into_bytes();
        format!("{PREFIX}{}.{}", B64.encode(&p), B64.encode(tag))
    }

    fn open(&self, s: &str, now: u64) -> Result<Claims, Refused> {
        if s.len() > 256 {
            return Err(Refused::Invalid);
        }
        let rest = s.strip_prefix(PREFIX).ok_or(Refused::Invalid)?;
        let (p, tag) = rest.split_once('.').ok_or(Refused::Invalid)?;
        let p = B64.decode(p).map_err(|_| Refused::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| Refused::Invalid)?;
        self.mac(&p)
            .verify_slice(&tag)
            .map_err(|_| Refused::Invalid)?;
        if p.len() != PAYLOAD_LEN {
            return Err(Refused::Invalid);
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let c = Claims {
            seq: u64_at(0),
            nonce: u64_at(8),
            session: truncate(&p[16..32]),
            request: truncate(&p[32..48]),
            exp: u64_at(48),
        };
        if now > c.exp {
            return Err(Refused::Expired);
        }
        Ok(c)
    }

    fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms.load(Ordering::Relaxed))
    }

    /// Keeps `ex` until the client's retry, asking `asked`; the `requestState` for it.
    fn park(self: &Arc<Self>, mut ex: Exchange, asked: Vec<Asked>, request: Tag) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let nonce: u64 = rand::random();
        let wait = self.wait();
        let claims = Claims {
            seq,
            nonce,
            session: ex.session_tag(),
            request,
            exp: turnpike_core::unix_now() + wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        };
        let state = self.seal(&claims);
        ex.reason = "the client did not retry the request with the input it was asked for";
        let evicted = {
            let mut map = self.map.lock();
            map.insert(
                seq,
                Parked {
                    nonce,
                    session: claims.session,
                    request,
                    asked,
                    ex,
                },
            );
            let max = self.max.load(Ordering::Relaxed);
            let mut out = Vec::new();
            while map.len() > max {
                match map.pop_first() {
                    Some((_, p)) => out.push(p),
                    None => break,
                }
            }
            out
        };
        for mut p in evicted {
            p.ex.reason = "too many requests were waiting for their clients' input";
            tracing::debug!(target: "turnpike::era", "a pending input exchange was evicted");
            drop(p);
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(inner) = weak.upgrade() else { return };
            let taken = {
                let mut map = inner.map.lock();
                if map.get(&seq).is_some_and(|p| p.nonce == nonce) {
                    map.remove(&seq)
                } else {
                    None
                }
            };
            if taken.is_some() {
                tracing::debug!(target: "turnpike::era", "a pending input exchange timed out; cancelled upstream");
            }
        });
        state
    }
}

/// The params of an upstream request as an input request: without the upstream's progress
/// token (a modern client answers with a result, never with progress).
fn input_params(params: Option<&Value>) -> Value {
    let Some(p) = params else {
        return Value::Null;
    };
    let Some(mut params) = Params::from_value(p) else {
        return p.clone();
    };
    if let Some(mut meta) = params.meta.as_ref().and_then(RequestMeta::from_value) {
        meta.progress_token = None;
        params.meta = (!meta.is_empty()).then(|| Value::Object(meta.into_map()));
    }
    params.into_value()
}

/// The `inputRequests` of an `input_required` answer for `asked`.
fn input_requests(asked: &[Asked]) -> Map<String, Value> {
    asked
        .iter()
        .map(|a| {
            let r = InputRequest {
                method: Some(json!(a.method)),
                params: (!a.params.is_null()).then(|| a.params.clone()),
                extra: Map::new(),
            };
            (
                a.key.clone(),
                serde_json::to_value(r).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// An `input_required` answer.
fn input_required(id: &Value, reqs: Map<String, Value>, state: &str) -> Value {
    let result = InputRequiredResult {
        result_type: Some(json!(InputRequiredResult::RESULT_TYPE)),
        input_requests: Some(Value::Object(reqs)),
        request_state: Some(json!(state)),
        extra: Map::new(),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn push_event(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn sse_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.remove(header::CONTENT_LENGTH);
    // The pooled session is the gateway's, not the client's.
    h.remove(turnpike_mcp::headers::SESSION_ID);
}

/// The first upstream answer to a request on the translated path (`body` as sent upstream,
/// with `upstream_id`); `id` is the client's.
#[allow(clippy::too_many_arguments)]
pub(crate) fn respond(
    a: &EraAdapter,
    uri: &Uri,
    resp: Response<Body>,
    id: Value,
    upstream_id: Value,
    method: &str,
    session: Arc<PooledSession>,
    caps: Value,
    body: Value,
) -> Response<Body> {
    let cacheable = CACHEABLE.contains(&method);
    let (mut parts, stream) = resp.into_parts();
    match wire::media_type(&parts.headers).as_str() {
        "application/json" => {
            // No request can come this way: the answer, with the client's id.
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(turnpike_mcp::headers::SESSION_ID);
            let fut = async move {
                let bytes = match Limited::new(stream, wire::MAX_READ).collect().await {
                    Ok(c) => c.to_bytes(),
                    Err(_) => return Ok::<_, Infallible>(Bytes::new()),
                };
                let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
                    return Ok(bytes);
                };
                if Envelope::of(&v).id == Some(&upstream_id) {
                    set_id(&mut v, id);
                }
                to_modern_result(&mut v, cacheable);
                Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
            };
            Response::from_parts(parts, Body::from_stream(futures_util::stream::once(fut)))
        }
        "text/event-stream" => {
            let ex = Exchange {
                inner: a.inner(),
                uri: uri.clone(),
                session,
                answers: ClientCapabilities::of(&caps),
                caps,
                request: body,
                first_token: None,
                upstream_id,
                cacheable,
                body: stream.into_data_stream(),
                parser: SseParser::new(),
                issued: 0,
                finished: false,
                reason: "the client closed its stream",
            };
            sse_headers(&mut parts.headers);
            let relay = Relay {
                ex: Some(ex),
                client_id: id,
                tokens: None,
                request_tag: None,
                state: a.shared().pending.inner.clone(),
                done: false,
            };
            Response::from_parts(parts, relay.into_body())
        }
        _ => Response::from_parts(parts, stream),
    }
}

/// Relays an exchange's upstream stream to one client response.
struct Relay {
    ex: Option<Exchange>,
    client_id: Value,
    /// (the first request's progress token, this response's): renamed on the way.
    tokens: Option<(Value, Value)>,
    /// The request's digest, once known (from the retry).
    request_tag: Option<Tag>,
    state: Arc<Inner>,
    done: bool,
}

/// What [`drain`] saw.
enum Seen {
    More,
    Final,
}

impl Relay {
    fn into_body(self) -> Body {
        let stream = futures_util::stream::unfold(self, |mut r| async move {
            if r.done {
                return None;
            }
            let out = r.step().await;
            if out.is_empty() {
                return None;
            }
            Some((Ok::<_, Infallible>(Bytes::from(out)), r))
        });
        Body::from_stream(stream)
    }

    /// Reads on until there is something for the client; sets `done` at the end.
    async fn step(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut asked = Vec::new();
        loop {
            let Some(ex) = self.ex.as_mut() else {
                self.done = true;
                return out;
            };
            let next = ex.body.next().await;
            let Some(Ok(chunk)) = next else {
                self.end_without_answer(&mut out, None);
                return out;
            };
            if let Seen::Final = self.feed(&chunk, &mut out, &mut asked) {
                return out;
            }
            if !asked.is_empty() {
                // Take the requests that arrive with it (a server often sends a round's
                // requests together, in separate writes): until the stream has been quiet for
                // GATHER_QUIET, at most GATHER_MAX; then hand the stream over.
                let until = tokio::time::Instant::now() + GATHER_MAX;
                while let Some(ex) = self.ex.as_mut() {
                    let quiet = (tokio::time::Instant::now() + GATHER_QUIET).min(until);
                    let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(quiet, ex.body.next()).await
                    else {
                        break;
                    };
                    if let Seen::Final = self.feed(&chunk, &mut out, &mut asked) {
                        return out;
                    }
                }
                self.park(asked, &mut out);
                return out;
            }
            if !out.is_empty() {
                return out;
            }
        }
    }

    /// Ends the client's response with an error: the upstream's stream ended (`why` None), or
    /// is given up (the call is cancelled upstream).
    fn end_without_answer(&mut self, out: &mut Vec<u8>, why: Option<&str>) {
        if let Some(mut ex) = self.ex.take() {
            ex.finished = why.is_none();
            ex.reason = "the gateway gave up the call's stream";
        }
        self.done = true;
        push_event(
            out,
            &turnpike_mcp::error_response(
                Some(&self.client_id),
                turnpike_core::error_codes::UPSTREAM_FAILED,
                why.unwrap_or("the upstream's stream ended without an answer"),
            ),
        );
    }

    /// Parses one chunk's events: relays, renames, collects the upstream's requests, or ends
    /// with the answer.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>, asked: &mut Vec<Asked>) -> Seen {
        let Some(ex) = self.ex.as_mut() else {
            return Seen::Final;
        };
        ex.parser.push(chunk);
        if ex.parser.buffered() > wire::MAX_READ {
            self.end_without_answer(out, Some("the upstream sent an event too large to relay"));
            return Seen::Final;
        }
        while let Some(mut ev) = ex.parser.next_event() {
            let Some(mut v) = ev
                .data
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
            else {
                out.extend_from_slice(&ev.raw);
                continue;
            };
            let e = Envelope::of(&v);
            match (e.method, e.id) {
                (Some(m), Some(rid)) => {
                    match InputKind::of_method(m).filter(|&k| ex.answers.declares(k)) {
                        Some(kind) => {
                            ex.issued += 1;
                            asked.push(Asked {
                                key: format!("{}-{}", kind.capability(), ex.issued),
                                method: m.to_owned(),
                                params: input_params(e.params),
                                id: rid.clone(),
                            });
                        }
                        None => ex.refuse(rid, m),
                    }
                }
                (Some("notifications/progress"), None) => {
                    // The token is renamed in place (a call may send many of these); an
                    // event that needs no renaming is relayed as its raw bytes.
                    let renamed = match (&self.tokens, v.pointer_mut("/params/progressToken")) {
                        (Some((from, to)), Some(t)) if t == from => {
                            *t = to.clone();
                            true
                        }
                        _ => false,
                    };
                    if renamed {
                        ev.data = Some(v.to_string());
                        write_event(out, &ev);
                    } else {
                        out.extend_from_slice(&ev.raw);
                    }
                }
                (None, Some(rid)) if *rid == ex.upstream_id => {
                    set_id(&mut v, self.client_id.clone());
                    to_modern_result(&mut v, ex.cacheable);
                    ev.data = Some(v.to_string());
                    write_event(out, &ev);
                    ex.finished = true;
                    self.ex = None;
                    self.done = true;
                    return Seen::Final;
                }
                _ => out.extend_from_slice(&ev.raw),
            }
        }
        Seen::More
    }

    /// Ends the client's response with an `input_required` result and parks the exchange.
    fn park(&mut self, asked: Vec<Asked>, out: &mut Vec<u8>) {
        self.done = true;
        let Some(mut ex) = self.ex.take() else { return };
        let request = match self.request_tag {
            Some(t) => t,
            None => {
                let t = request_tag(&ex.request);
                ex.first_token = Envelope::of(&ex.request).progress_token().cloned();
                ex.request = Value::Null;
                t
            }
        };
        let reqs = input_requests(&asked);
        let state = self.state.park(ex, asked, request);
        push_event(out, &input_required(&self.client_id, reqs, &state));
    }
}

fn invalid(id: &Value, msg: &str) -> Response<Body> {
    let error = ErrorObject::new(INVALID_PARAMS, msg).with_data(EraErrorData::plain());
    wire::json_response(StatusCode::OK, &error.response(Some(id)))
}

/// A modern client's retry carrying `params.requestState` (and `inputResponses`): the pending
/// exchange it names continues. `body` is the retry without the modern `_meta` keys.
pub(crate) async fn resume(
    a: &EraAdapter,
    id: Value,
    caps: &Value,
    body: &Value,
) -> Response<Body> {
    let inner = a.shared().pending.inner.clone();
    let retry = RetryParams::of(body).unwrap_or_default();
    let Some(state) = retry.request_state() else {
        return invalid(&id, "requestState must be the string this server returned");
    };
    let claims = match inner.open(state, turnpike_core::unix_now()) {
        Ok(c) => c,
        Err(Refused::Invalid) => {
            return invalid(
                &id,
                "requestState was not issued by this gateway instance or was altered; send the request again without inputResponses and requestState",
            )
        }
        Err(Refused::Expired) => {
            return invalid(
                &id,
                "requestState has expired: the request waiting for this input was cancelled; send the request again without inputResponses and requestState",
            )
        }
    };
    let request = request_tag(body);
    if !turnpike_core::ct_eq(&request, &claims.request) {
        return invalid(
            &id,
            "requestState belongs to another request (its method, name or arguments differ); a retry must repeat the original request",
        );
    }
    let empty = Map::new();
    let responses = match &retry.input_responses {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return invalid(&id, "inputResponses must be an object"),
    };
    let parked = {
        let mut map = inner.map.lock();
        let Some(p) = map.get(&claims.seq).filter(|p| p.nonce == claims.nonce) else {
            drop(map);
            return invalid(
                &id,
                "no request is waiting for this requestState on this gateway instance: it was answered already, was cancelled, or waits on another instance; send the request again without inputResponses and requestState",
            );
        };
        let session = session_tag(caps, &p.ex.session);
        if !turnpike_core::ct_eq(&session, &claims.session)
            || !turnpike_core::ct_eq(&session, &p.session)
        {
            drop(map);
            return invalid(
                &id,
                "requestState belongs to a request made with other client capabilities",
            );
        }
        if !turnpike_core::ct_eq(&request, &p.request) {
            drop(map);
            return invalid(&id, "requestState belongs to another request");
        }
        for asked in &p.asked {
            if let Some(r) = responses.get(&asked.key) {
                if !r.is_object() {
                    let msg = format!(
                        "inputResponses[{:?}] must be the client's result object for {}",
                        asked.key, asked.method
                    );
                    drop(map);
                    return invalid(&id, &msg);
                }
            }
        }
        map.remove(&claims.seq)
    };
    let Some(Parked { asked, mut ex, .. }) = parked else {
        return invalid(&id, "no request is waiting for this requestState");
    };
    ex.reason = "the client closed its stream";
    let (answered, missing): (Vec<Asked>, Vec<Asked>) = asked
        .into_iter()
        .partition(|q| responses.contains_key(&q.key));
    for q in &answered {
        let msg = json!({"jsonrpc": "2.0", "id": q.id, "result": responses[&q.key]});
        let req = wire::post(
            &ex.uri,
            session_headers(HeaderMap::new(), &ex.session),
            &msg,
        );
        let resp = wire::send(&ex.inner, req).await;
        if !resp.status().is_success() {
            tracing::debug!(target: "turnpike::era", status = %resp.status(), "the upstream did not take an input response");
        }
    }
    if !missing.is_empty() {
        // Asked again, as the spec says a server should when answers are missing.
        let reqs = input_requests(&missing);
        let state = inner.park(ex, missing, request);
        return wire::json_response(StatusCode::OK, &input_required(&id, reqs, &state));
    }
    let retry_token = Envelope::of(body).progress_token().cloned();
    let tokens = match (ex.first_token.clone(), retry_token) {
        (Some(f), Some(r)) if f != r => Some((f, r)),
        _ => None,
    };
    let relay = Relay {
        ex: Some(ex),
        client_id: id,
        tokens,
        request_tag: Some(request),
        state: inner,
        done: false,
    };
    let mut r = Response::new(relay.into_body());
    sse_headers(r.headers_mut());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Arc<Inner> {
        State::new().inner
    }

    #[test]
    fn state_round_trip_and_tamper() {
        let i = inner();
        let c = Claims {
            seq: 7,
            nonce: 9,
            session: [1; 16],
            request: [2; 16],
            exp: 1_000,
        };
        let s = i.seal(&c);
        assert!(s.starts_with(PREFIX));
        assert_eq!(i.open(&s, 999), Ok(c));
        assert_eq!(i.open(&s, 1_001), Err(Refused::Expired));
        // Another instance's key.
        assert_eq!(inner().open(&s, 999), Err(Refused::Invalid));
        // Any changed character breaks it.
        for pos in [PREFIX.len(), s.len() / 2, s.len() - 1] {
            let mut b = s.clone().into_bytes();
            b[pos] = if b[pos] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(b).unwrap();
            assert_eq!(i.open(&t, 999), Err(Refused::Invalid), "{t}");
        }
        for bad in ["", "tps1.", "tps1.a.b", "x", &"A".repeat(300)] {
            assert_eq!(i.open(bad, 999), Err(Refused::Invalid));
        }
    }

    #[test]
    fn request_digest_ignores_meta_and_order() {
        let a = json!({"method":"tools/call","params":{"name":"x","arguments":{"a":1,"b":[true,null]},"_meta":{"progressToken":1}}});
        let b = json!({"method":"tools/call","params":{"arguments":{"b":[true,null],"a":1},"name":"x","requestState":"s","inputResponses":{}}});
        assert_eq!(request_tag(&a), request_tag(&b));
        let c = json!({"method":"tools/call","params":{"name":"x","arguments":{"a":2,"b":[true,null]}}});
        assert_ne!(request_tag(&a), request_tag(&c));
        let d = json!({"method":"prompts/get","params":{"name":"x","arguments":{"a":1,"b":[true,null]}}});
        assert_ne!(request_tag(&a), request_tag(&d));
        // Strings cannot be confused with their splits.
        let e = json!({"method":"m","params":{"ab":"c"}});
        let f = json!({"method":"m","params":{"a":"bc"}});
        assert_ne!(request_tag(&e), request_tag(&f));
    }

    #[test]
    fn input_params_lose_the_progress_token() {
        assert_eq!(input_params(None), Value::Null);
        assert_eq!(
            input_params(Some(
                &json!({"message": "m", "_meta": {"progressToken": 1}})
            )),
            json!({"message": "m"})
        );
        assert_eq!(
            input_params(Some(&json!({"_meta": {"progressToken": 1, "k": null}}))),
            json!({"_meta": {"k": null}})
        );
        assert_eq!(
            input_params(Some(&json!({"_meta": {}}))),
            json!({}),
            "an empty _meta goes"
        );
        for odd in [json!([1]), json!({"_meta": 2}), json!("x")] {
            assert_eq!(input_params(Some(&odd)), odd);
        }
    }

    #[test]
    fn capabilities() {
        assert!(wants(&json!({"elicitation":{}})));
        assert!(wants(&json!({"roots":{"listChanged":true}})));
        assert!(!wants(&json!({"experimental":{}})));
        assert!(!wants(&json!({"sampling":null})));
        let r = refusal(&json!(3), "sampling/createMessage");
        assert_eq!(r["error"]["code"], NOT_TRANSLATABLE);
        assert!(r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sampling capability"));
        assert_eq!(refusal(&json!(4), "ping")["result"], json!({}));
        assert_eq!(refusal(&json!(5), "x/y")["error"]["code"], NOT_TRANSLATABLE);
    }
}
