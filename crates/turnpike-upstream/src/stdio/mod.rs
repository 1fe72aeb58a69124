//! The stdio upstream: an MCP server that speaks over stdin/stdout, made to look like a
//! Streamable HTTP server so that the gate can stand in front of it.
//!
//! [`StdioUpstream`] is a tower [`Service`] over `http::Request<axum::body::Body>` that answers
//! the way an MCP server on the Streamable HTTP transport (revision 2025-11-25) does, and keeps
//! **one child process per MCP session** behind it. Child and gateway talk the MCP stdio
//! transport: one JSON-RPC message per line on the child's stdin and stdout; whatever the child
//! writes to stderr is forwarded to `tracing` (debug level, target
//! `turnpike::upstream::stdio`, lines cut to 2 KiB) and never reaches a client.
//!
//! # Sessions
//!
//! - `POST` of an `initialize` request without `Mcp-Session-Id` starts a child (the configured
//!   command, arguments, extra environment and working directory), writes the request to it and
//!   answers with the child's response plus a fresh `Mcp-Session-Id`: 256 bits from a CSPRNG
//!   (`rand`'s thread-local generator, seeded by the operating system), base64url (visible
//!   ASCII). If the
//!   child answers with a JSON-RPC error, or exits first, the session is ended at once and no id
//!   is given (a child that exits or cannot be started yields HTTP 502 with error -31502).
//! - Every later request must carry the id: without it → `400`; with an id that is unknown or
//!   whose session has ended → `404` with a JSON-RPC error body, on which MCP clients start a
//!   new session with a new `initialize` (and get a new child). Session ids are compared in
//!   constant time.
//! - `DELETE` with the id ends the session: the child's stdin is closed; if the child has not
//!   exited a second later its process group gets SIGTERM, and a second after that SIGKILL.
//!   Its pending requests are answered with error -31502; the id then gets `404`.
//! - A session with no request in flight for `idle_timeout` (default 15 minutes; zero means
//!   never) is ended the same way. An open GET stream alone does not keep a session alive.
//!
//! # Bounds
//!
//! Every child is a process of tens of megabytes that an anonymous `initialize` can start, so
//! children are bounded by a [`StdioBudget`], which every stdio upstream of a gateway shares
//! (`[upstream] command` and every stdio `[[mount]]` draw on one budget, configured under
//! `[stdio]`):
//!
//! - **Per caller.** A caller is its address (an IPv6 address by its /64), read from the
//!   request's [`PeerAddr`](turnpike_http::PeerAddr) (or axum's `ConnectInfo`), whatever credential
//!   it carries: sessions are opened by a free `initialize`, before any rail names a caller.
//!   A caller holds at most `max_sessions_per_caller` children (default 4) and starts at most
//!   `spawns_per_minute_per_caller` (default 20, as a burst, then one every `60/n` s), so
//!   cycling `initialize`/`DELETE` does not start children without end. Past either, its
//!   `initialize` gets `429` with `Retry-After` and JSON-RPC error -31429 naming the limit;
//!   other callers are unaffected. The era adapter's pooled sessions for 2026-07-28 clients
//!   count against the address whose request started them. A request without an address (the
//!   gateway's own, e.g. the era probe) is bound by the global cap alone.
//! - **In all.** At most `max_sessions` children live at once. A slot is taken before a child
//!   is started and given back only when the child has been reaped, so the cap bounds
//!   processes, not only sessions. By default the cap is sized to memory: half of
//!   `MemAvailable` at start divided by `session_memory_mib` (default 64 MiB per child),
//!   clamped to 8–512 ([`memory_sized_max_sessions`]). When every slot is taken, an idle
//!   session (no request in flight) is ended to make room, one of the caller holding the most
//!   children first and, among those, the one idle longest; its client gets `404` on its next
//!   request and starts anew. Only when no session is idle is an `initialize` refused: `503`
//!   with `Retry-After` and JSON-RPC error -31503 naming `[stdio] max_sessions`.
//!
//! # Messages
//!
//! - `POST` of a JSON-RPC request: the message is written to the child as one line. If the
//!   client's `Accept` lists `text/event-stream`, the answer is an SSE stream (`event: message`,
//!   one JSON-RPC message per event) that carries, event by event as the child writes them,
//!   every message that belongs to the request, then the child's response, and then ends:
//!   progress notifications whose `progressToken` is the request's
//!   `params._meta.progressToken`, and other server-to-client requests and notifications
//!   written while this request is the only one in flight. Otherwise the answer is
//!   `application/json` with the response alone. A client's `notifications/cancelled` for a
//!   request in flight ends that request's stream without a response (a JSON answer gets error
//!   -31502 saying the request was cancelled).
//! - `POST` of a notification or of a JSON-RPC response (a client's answer to a sampling,
//!   elicitation or roots request): written to the child; `202 Accepted` with no body.
//! - Server messages that belong to no request (several requests in flight, none in flight,
//!   or a `…/list_changed` or `notifications/resources/updated` notification) go to the
//!   session's GET stream if one is open, else to the most recent request stream still open,
//!   else into a buffer of the 64 most recent, which the next GET stream receives first.
//! - `GET` with `Accept: text/event-stream` opens that stream (one per session: a second one
//!   gets `409` while the first is open; `406` without a suitable `Accept`). It carries
//!   server requests and notifications and ends when the session ends.
//! - Every SSE stream gets a keep-alive comment after 25 s of silence. Event ids and
//!   `Last-Event-ID` resumption are not offered: a stream cut by the network is not replayed.
//! - Other HTTP methods get `405` with `Allow: GET, POST, DELETE`.
//!
//! # Failures
//!
//! When a child exits, crashes or closes its stdout, every request in flight in its session is
//! answered at once, on its SSE stream or as its JSON body, with JSON-RPC error -31502
//! (`turnpike_core::error_codes::UPSTREAM_FAILED`) saying that the upstream process exited and
//! with which status (e.g. `the upstream process exited (signal: 9 (SIGKILL))`). The session
//! ends (its id gets `404`) and the next `initialize` starts a fresh child. Lines on the
//! child's stdout that are not JSON-RPC objects are logged and skipped.
//!
//! Everything is bounded: request bodies (16 MiB), lines from the child (16 MiB; longer lines
//! are skipped), stderr lines kept for the log, the queue to the child's stdin, each stream's
//! queue (a client that does not read its stream loses progress notifications rather than
//! stalling the session), the buffer for the GET stream, and requests in flight per session
//! (1024).
//!
//! Each child leads a process group of its own (on Unix), and the whole group is signalled,
//! so a server started through a wrapper (`npx`, `sh -c`) ends with it, and whatever a child
//! leaves behind in its group when it exits is killed. Children are ended by
//! [`StdioUpstream::shutdown`], when the last clone of the upstream is dropped, and, when the
//! runtime that runs the gateway stops, at once with SIGKILL (`kill_on_drop` and a guard that
//! kills the group). Signals from a terminal (Ctrl-C) reach the gateway, not its children.
//!
//! # Protocol revisions
//!
//! The transport spoken is that of the session-based revisions (up to 2025-11-25). A stdio
//! server needs a session, so a stateless 2026-07-28 request (a `POST` without
//! `Mcp-Session-Id` whose method is not `initialize`, with `MCP-Protocol-Version` 2026-07-28 or
//! later) gets `400` with a JSON-RPC error saying that this upstream needs a session and the
//! client should `initialize`; clients that speak both eras fall back to `initialize` on that
//! answer. Translating the stateless era onto a child is not done yet.

mod budget;
mod lines;
mod session;
mod settings;
mod wire;

pub use self::budget::{
    memory_sized_max_sessions, StdioBudget, StdioLimits, DEFAULT_MAX_SESSIONS_PER_CALLER,
    DEFAULT_SESSION_MEMORY_MIB, DEFAULT_SPAWNS_PER_MINUTE_PER_CALLER,
};
pub use self::settings::StdioSettings;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tower_service::Service;
use turnpike_core::error_codes::{
    INVALID_REQUEST, PARSE_ERROR, RATE_LIMITED, TOO_LARGE, UNAVAILABLE, UPSTREAM_FAILED,
};

use self::budget::Refusal;
use self::session::{GetError, RegisterError, Registry, Session};
use self::wire::{
    accepted, accepts, await_final, error_response, get_stream, is_json_content_type,
    is_stateless_era, json_response, post_stream, single_message, MCP_SESSION_ID,
};

/// The largest request body the stdio upstream reads.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Silence after which an SSE stream gets a keep-alive comment.
const KEEPALIVE: Duration = Duration::from_secs(25);
/// The SSE media type.
const SSE: &str = "text/event-stream";

/// How to run a stdio MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioConfig {
    /// The program and its arguments, e.g. `["npx", "-y", "@modelcontextprotocol/server-everything"]`.
    /// The program is looked up on `PATH` as usual.
    pub command: Vec<String>,
    /// Variables added to (or replacing ones in) the environment the child inherits.
    pub env: BTreeMap<String, String>,
    /// The child's working directory; the gateway's own when `None`.
    pub cwd: Option<PathBuf>,
    /// A session with no request in flight for this long is ended and its child stopped.
    /// Zero means sessions never time out. Default: 15 minutes.
    pub idle_timeout: Duration,
}

impl Default for StdioConfig {
    fn default() -> Self {
        StdioConfig {
            command: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            idle_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl StdioConfig {
    /// A configuration that runs `command` (program first, then arguments) with the defaults
    /// for everything else.
    pub fn new<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StdioConfig {
            command: command.into_iter().map(Into::into).collect(),
            ..StdioConfig::default()
        }
    }
}

/// A stdio MCP server behind a Streamable HTTP face, one child process per MCP session. See
/// the [module documentation](self) for the behaviour.
///
/// Clones share the sessions. Children are ended by [`StdioUpstream::shutdown`] or when the
/// last clone is dropped. Must be called from within a Tokio runtime.
#[derive(Clone)]
pub struct StdioUpstream {
    inner: Arc<Inner>,
}

struct Inner {
    config: StdioConfig,
    registry: Arc<Registry>,
    budget: StdioBudget,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.registry.end_all("the gateway stopped");
    }
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream")
            .field("command", &self.inner.config.command)
            .field("sessions", &self.inner.registry.len())
            .finish()
    }
}

impl StdioUpstream {
    /// An upstream that runs `config.command` for each MCP session, with a budget of its own
    /// with the default limits ([`StdioLimits::default`]). Nothing is started until the first
    /// `initialize`.
    pub fn new(config: StdioConfig) -> StdioUpstream {
        StdioUpstream::with_budget(config, StdioBudget::new(StdioLimits::default()))
    }

    /// An upstream that runs `config.command` for each MCP session, its children bounded by
    /// `budget` (shared with every other upstream given a clone of it).
    pub fn with_budget(config: StdioConfig, budget: StdioBudget) -> StdioUpstream {
        StdioUpstream {
            inner: Arc::new(Inner {
                config,
                registry: Arc::new(Registry::new()),
                budget,
            }),
        }
    }

    /// The budget this upstream's children count against.
    pub fn budget(&self) -> &StdioBudget {
        &self.inner.budget
    }

    /// The configuration this upstream runs with.
    pub fn config(&self) -> &StdioConfig {
        &self.inner.config
    }

    /// Ends every session: requests in flight get error -31502, streams end, and each child's
    /// stdin is closed; a child still running a second later gets SIGTERM (its process group
    /// does), and SIGKILL a second after that. Returns without waiting for that. New sessions
    /// can still be started afterwards.
    pub fn shutdown(&self) {
        self.inner.registry.end_all("the gateway is shutting down");
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// The process id of the child behind the session with this id, if the session is open.
    pub fn child_pid(&self, session_id: &str) -> Option<u32> {
        self.inner.registry.lookup(session_id)?.pid
    }
}

impl Service<Request<Body>> for StdioUpstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { Ok(inner.handle(req).await) })
    }
}

/// What a request's `Mcp-Session-Id` names.
enum Named {
    /// No header.
    Nothing,
    /// An open session.
    Open(Arc<Session>),
    /// A session that does not exist or has ended.
    Unknown,
}

/// What a POSTed message is.
enum Kind {
    /// A request, with its id and method.
    Request(Value, String),
    /// A notification, with its method.
    Notification(String),
    /// A response to a server-to-client request.
    Response,
}

/// Sorts a JSON-RPC message; `None` when it is none of the three kinds.
fn classify(msg: &Value) -> Option<Kind> {
    let obj = msg.as_object()?;
    let id = obj.get("id");
    match (obj.get("method"), id) {
        (Some(Value::String(m)), Some(id @ (Value::String(_) | Value::Number(_)))) => {
            Some(Kind::Request(id.clone(), m.clone()))
        }
        (Some(Value::String(m)), None) => Some(Kind::Notification(m.clone())),
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
            Some(Kind::Response)
        }
        _ => None,
    }
}

/// The key a caller's children are counted under: its address (IPv4 as it is, IPv6 by its
/// /64, an IPv4-mapped IPv6 address as the IPv4 one), as `anon:<prefix>`; `None` when the
/// request carries no address (the gateway's own requests).
pub fn caller_key(ext: &http::Extensions) -> Option<String> {
    let ip = turnpike_http::peer_ip(ext)?;
    Some(turnpike_core::Identity::anonymous(ip).scope_key())
}

/// A new session id: 32 bytes from a CSPRNG, base64url without padding (43 characters).
fn new_session_id() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The answer to an `initialize` the budget refused: 429 for the caller's own limits, 503 when
/// the whole gateway is full; `Retry-After` either way.
fn refused(refusal: &Refusal, id: Value) -> Response<Body> {
    let (status, code, retry) = match refusal {
        Refusal::CallerHolds { retry_after, .. } | Refusal::CallerRate { retry_after, .. } => {
            (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED, *retry_after)
        }
        Refusal::Full { retry_after, .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, *retry_after)
        }
    };
    tracing::debug!(target: "turnpike::upstream::stdio", ?refusal, "initialize refused");
    let mut resp = error_response(status, id, code, &StdioBudget::describe(refusal));
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry.max(1)));
    resp
}

fn unknown_session(id: Value) -> Response<Body> {
    error_response(
        StatusCode::NOT_FOUND,
        id,
        INVALID_REQUEST,
        "unknown or ended MCP session: start a new one with initialize, without Mcp-Session-Id",
    )
}

fn missing_session(id: Value) -> Response<Body> {
    error_response(
        StatusCode::BAD_REQUEST,
        id,
        INVALID_REQUEST,
        "missing Mcp-Session-Id header: start a session with initialize first",
    )
}

/// Ends a session that is being initialized unless disarmed, e.g. when the client goes away
/// before the child has answered `initialize`.
struct InitGuard {
    session: Option<Arc<Session>>,
    registry: Arc<Registry>,
}

impl InitGuard {
    fn disarm(mut self) {
        self.session = None;
    }
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.registry.end(&s, "initialize did not complete");
        }
    }
}

impl Inner {
    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        match *req.method() {
            Method::POST => self.post(req).await,
            Method::GET => self.get(req.headers()),
            Method::DELETE => self.delete(req.headers()),
            _ => {
                let mut resp = error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Value::Null,
                    INVALID_REQUEST,
                    "method not allowed: the MCP endpoint takes POST, GET and DELETE",
                );
                resp.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                resp
            }
        }
    }

    /// The session a request names in `Mcp-Session-Id`, if it names one that is open.
    fn session_of(&self, headers: &HeaderMap) -> Named {
        let Some(value) = headers.get(MCP_SESSION_ID) else {
            return Named::Nothing;
        };
        match value
            .to_str()
            .ok()
            .and_then(|v| self.registry.lookup(v.trim()))
            .filter(|s| !s.is_closed())
        {
            Some(session) => {
                session.touch();
                Named::Open(session)
            }
            None => Named::Unknown,
        }
    }

    async fn post(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if let Some(ct) = parts.headers.get(CONTENT_TYPE) {
            if !is_json_content_type(ct) {
                return error_response(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Value::Null,
                    INVALID_REQUEST,
                    "the request body must be application/json",
                );
            }
        }
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Value::Null,
                    TOO_LARGE,
                    "the request body is too large",
                );
            }
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    INVALID_REQUEST,
                    "the request body could not be read",
                );
            }
        };
        let msg: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    PARSE_ERROR,
                    "the request body is not valid JSON",
                );
            }
        };
        if msg.is_array() {
            return error_response(
                StatusCode::BAD_REQUEST,
                Value::Null,
                INVALID_REQUEST,
                "batch requests are not accepted",
            );
        }
        let Some(kind) = classify(&msg) else {
            return error_response(
                StatusCode::BAD_REQUEST,
                msg.get("id").cloned().unwrap_or(Value::Null),
                INVALID_REQUEST,
                "the body is not a JSON-RPC request, notification or response",
            );
        };
        // One line for the child: compact JSON has no raw newline in it.
        let mut line = serde_json::to_vec(&msg).unwrap_or_default();
        line.push(b'\n');
        let line = Bytes::from(line);
        let rpc_id = match &kind {
            Kind::Request(id, _) => id.clone(),
            _ => Value::Null,
        };
        let headers = &parts.headers;
        let caller = caller_key(&parts.extensions);
        let session = match self.session_of(headers) {
            Named::Open(s) => s,
            Named::Unknown => return unknown_session(rpc_id),
            Named::Nothing => {
                return match kind {
                    Kind::Request(id, method) if method == "initialize" => {
                        self.initialize(headers, caller.as_deref(), id, line).await
                    }
                    _ if is_stateless_era(headers) => error_response(
                        StatusCode::BAD_REQUEST,
                        rpc_id,
                        INVALID_REQUEST,
                        "this upstream is a stdio MCP server that needs a session: send \
                         initialize first (stateless 2026-07-28 requests are not supported by \
                         it yet)",
                    ),
                    _ => missing_session(rpc_id),
                }
            }
        };
        match kind {
            Kind::Request(id, _) => self.request(session, headers, id, &msg, line).await,
            Kind::Notification(method) => {
                if method == "notifications/cancelled" {
                    if let Some(rid) = msg.pointer("/params/requestId") {
                        session.forget(rid);
                    }
                }
                Self::deliver(&session, line).await
            }
            Kind::Response => Self::deliver(&session, line).await,
        }
    }

    /// Writes a notification or response to the child: 202, or 404 if the session ended.
    async fn deliver(session: &Session, line: Bytes) -> Response<Body> {
        if session.is_closed() || session.send(line).await.is_err() {
            return unknown_session(Value::Null);
        }
        accepted()
    }

    /// Starts a session: a new child, the `initialize` request, and its answer with the id.
    async fn initialize(
        &self,
        headers: &HeaderMap,
        caller: Option<&str>,
        id: Value,
        line: Bytes,
    ) -> Response<Body> {
        let sse = accepts(headers, SSE, false);
        let slot = match self.budget.acquire(caller).await {
            Ok(slot) => slot,
            Err(refusal) => return refused(&refusal, id),
        };
        let slot_id = slot.id();
        let serial = self.registry.next_serial();
        let session = match Session::spawn(
            &self.config,
            new_session_id(),
            serial,
            Arc::downgrade(&self.registry),
            slot,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "turnpike::upstream::stdio", command = ?self.config.command, error = %e, "cannot start the upstream process");
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    id,
                    UPSTREAM_FAILED,
                    &format!("the upstream process could not be started: {e}"),
                );
            }
        };
        if !self.registry.insert(Arc::clone(&session)) {
            session.terminate("session id collision");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                UNAVAILABLE,
                "could not open a session; try again",
            );
        }
        let guard = InitGuard {
            session: Some(Arc::clone(&session)),
            registry: Arc::clone(&self.registry),
        };
        session.touch();
        let ticket = match session.register(&id, None, false) {
            Ok(t) => t,
            Err(e) => {
                let message = match e {
                    RegisterError::Ended(m) => m,
                    _ => "the upstream session could not take the request".to_owned(),
                };
                return error_response(StatusCode::BAD_GATEWAY, id, UPSTREAM_FAILED, &message);
            }
        };
        // Reclaimable once idle; the initialize now in flight keeps it from being idle.
        self.budget.attach(
            slot_id,
            Arc::new(session::Reclaim::new(&session, &self.registry)),
        );
        let _ = session.send(line).await;
        let fin = await_final(&id, ticket.done).await;
        if fin.synthetic {
            return json_response(StatusCode::BAD_GATEWAY, fin.body);
        }
        let succeeded = serde_json::from_slice::<Value>(&fin.body)
            .ok()
            .is_some_and(|v| v.get("result").is_some());
        if !succeeded {
            // Dropping the guard ends the session: the child refused to initialize.
            return single_message(fin.body, sse);
        }
        let Ok(value) = HeaderValue::from_str(session.id()) else {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                id,
                UPSTREAM_FAILED,
                "could not issue a session id",
            );
        };
        guard.disarm();
        tracing::debug!(target: "turnpike::upstream::stdio", session = serial, pid = session.pid, "session initialized");
        let mut resp = single_message(fin.body, sse);
        resp.headers_mut().insert(MCP_SESSION_ID, value);
        resp
    }

    /// Forwards a request within a session and answers with its response, streamed or whole.
    async fn request(
        &self,
        session: Arc<Session>,
        headers: &HeaderMap,
        id: Value,
        msg: &Value,
        line: Bytes,
    ) -> Response<Body> {
        let sse = accepts(headers, SSE, false);
        let progress = msg.pointer("/params/_meta/progressToken");
        let ticket = match session.register(&id, progress, sse) {
            Ok(t) => t,
            Err(RegisterError::Ended(_)) => return unknown_session(id),
            Err(RegisterError::Duplicate) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    id,
                    INVALID_REQUEST,
                    "a request with this id is already in flight in this session",
                )
            }
            Err(RegisterError::Busy) => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    id,
                    UNAVAILABLE,
                    "too many requests in flight in this session; try again later",
                )
            }
        };
        // If the child is gone the send fails, and the session's end answers the ticket.
        let _ = session.send(line).await;
        match ticket.events {
            Some(events) => post_stream(events, ticket.done, KEEPALIVE),
            None => json_response(StatusCode::OK, await_final(&id, ticket.done).await.body),
        }
    }

    fn get(&self, headers: &HeaderMap) -> Response<Body> {
        let session = match self.session_of(headers) {
            Named::Open(s) => s,
            Named::Nothing => return missing_session(Value::Null),
            Named::Unknown => return unknown_session(Value::Null),
        };
        if !accepts(headers, SSE, true) {
            return error_response(
                StatusCode::NOT_ACCEPTABLE,
                Value::Null,
                INVALID_REQUEST,
                "a GET stream is text/event-stream: list it in Accept",
            );
        }
        match session.open_get() {
            Ok(rx) => get_stream(rx, KEEPALIVE),
            Err(GetError::Ended) => unknown_session(Value::Null),
            Err(GetError::Busy) => error_response(
                StatusCode::CONFLICT,
                Value::Null,
                INVALID_REQUEST,
                "a GET stream is already open for this session",
            ),
        }
    }

    fn delete(&self, headers: &HeaderMap) -> Response<Body> {
        let session = match self.session_of(headers) {
            Named::Open(s) => s,
            Named::Nothing => return missing_session(Value::Null),
            Named::Unknown => return unknown_session(Value::Null),
        };
        self.registry
            .end(&session, "the session was ended by the client (DELETE)");
        tracing::debug!(target: "turnpike::upstream::stdio", session = session.serial, "session deleted by the client");
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::OK;
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_long_random_and_visible_ascii() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c)));
    }

    #[test]
    fn classification() {
        let k = |v: Value| classify(&v);
        assert!(matches!(
            k(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            Some(Kind::Request(_, m)) if m == "ping"
        ));
        assert!(matches!(
            k(serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"})),
            Some(Kind::Notification(_))
        ));
        assert!(matches!(
            k(serde_json::json!({"jsonrpc":"2.0","id":0,"result":{}})),
            Some(Kind::Response)
        ));
        assert!(k(serde_json::json!({"jsonrpc":"2.0","id":null,"method":"x"})).is_none());
        assert!(k(serde_json::json!({"jsonrpc":"2.0","id":1})).is_none());
        assert!(k(serde_json::json!("text")).is_none());
    }

    #[test]
    fn config_defaults() {
        let c = StdioConfig::new(["node", "server.js"]);
        assert_eq!(c.command, vec!["node", "server.js"]);
        assert_eq!(c.idle_timeout, Duration::from_secs(900));
    }
}
