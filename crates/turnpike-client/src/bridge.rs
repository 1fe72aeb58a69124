//! The stdio bridge behind `turnpike connect`: a local MCP server on stdin/stdout (one JSON-RPC
//! message a line) that forwards every message to a remote Streamable HTTP endpoint through a
//! [`Client`], so every challenge on the way is answered before the host sees the reply.
//!
//! Both protocol eras:
//! - **2025 (sessions)**: the `Mcp-Session-Id` the server gives on `initialize` is sent on every
//!   later request, with `MCP-Protocol-Version` = the negotiated version; SSE replies are read
//!   event by event (progress and server requests reach the host as they arrive); a GET stream is
//!   opened for server-initiated messages; the session is deleted when the host closes stdin.
//! - **2026-07-28 (stateless)**: a request whose `params._meta` carries
//!   `io.modelcontextprotocol/protocolVersion` is sent with that `MCP-Protocol-Version` and the
//!   `Mcp-Method` / `Mcp-Name` routing headers mirroring its body.
//!
//! Requests run concurrently (a slow tool does not hold up the others); `initialize`,
//! notifications and responses are forwarded in order. A call that cannot be got through (over
//! budget, no usable rail, a dishonest challenge, a wallet error) gets an answer the agent can
//! show: a `tools/call` result with `isError: true` and the reason as text, or a JSON-RPC error
//! for other methods.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use turnpike_mcp::messages::META_PROTOCOL_VERSION;

use crate::{Client, ClientError};

/// Largest line read from stdin.
const MAX_LINE: usize = 32 << 20;
/// JSON-RPC error code for a call the client could not get through (turnpike's "credential
/// required").
pub const CODE_NOT_THROUGH: i64 = -31402;

/// What to bridge to.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// The remote endpoint URL.
    pub url: String,
    /// Extra headers sent with every request (e.g. `Turnpike-Challenge: http`).
    pub headers: HeaderMap,
    /// Open the GET stream for server-initiated messages (2025 era).
    pub get_stream: bool,
}

struct State {
    client: Arc<Client>,
    opts: BridgeOptions,
    session: Mutex<Option<HeaderValue>>,
    protocol: Mutex<Option<HeaderValue>>,
    get_started: AtomicBool,
    get_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    out: mpsc::UnboundedSender<Value>,
}

/// Runs the bridge on this process's stdin and stdout until stdin closes.
pub async fn run_stdio(client: Arc<Client>, opts: BridgeOptions) -> Result<(), ClientError> {
    run(
        client,
        opts,
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    )
    .await
}

/// Runs the bridge on any line reader and writer.
pub async fn run<R, W>(
    client: Arc<Client>,
    opts: BridgeOptions,
    input: R,
    output: W,
) -> Result<(), ClientError>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(write_out(rx, output));
    let st = Arc::new(State {
        client,
        opts,
        session: Mutex::new(None),
        protocol: Mutex::new(None),
        get_started: AtomicBool::new(false),
        get_task: Mutex::new(None),
        out: tx,
    });
    let mut lines = input.lines();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("reading stdin: {e}");
                break;
            }
        };
        if line.len() > MAX_LINE {
            let _ = st
                .out
                .send(error(&Value::Null, -32600, "message too large"));
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                let _ = st
                    .out
                    .send(error(&Value::Null, -32600, "not a JSON-RPC object"));
                continue;
            }
            Err(e) => {
                let _ = st
                    .out
                    .send(error(&Value::Null, -32700, &format!("parse error: {e}")));
                continue;
            }
        };
        let is_request = msg.get("method").is_some() && msg.get("id").is_some();
        let in_order = !is_request
            || matches!(
                msg.get("method").and_then(Value::as_str),
                Some("initialize") | Some("server/discover")
            );
        let body = Bytes::from(line.to_string());
        if in_order {
            forward(&st, msg, body).await;
        } else {
            let st = st.clone();
            tasks.spawn(async move { forward(&st, msg, body).await });
        }
        // Reap finished tasks as we go.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    // End the session.
    let sid = st.session.lock().clone();
    if let Some(sid) = sid {
        let mut req = Request::builder()
            .method(Method::DELETE)
            .uri(&st.opts.url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        req.headers_mut().insert("mcp-session-id", sid);
        if let Some(p) = st.protocol.lock().clone() {
            req.headers_mut().insert("mcp-protocol-version", p);
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), st.client.transport().send(req)).await;
    }
    let get_task = st.get_task.lock().take();
    if let Some(t) = get_task {
        t.abort();
        let _ = t.await;
    }
    drop(st);
    let _ = writer.await;
    Ok(())
}

async fn write_out<W: AsyncWrite + Unpin>(mut rx: mpsc::UnboundedReceiver<Value>, mut out: W) {
    while let Some(v) = rx.recv().await {
        let mut s = v.to_string();
        s.push('\n');
        if out.write_all(s.as_bytes()).await.is_err() {
            return;
        }
        // Write everything that is already queued before flushing once.
        while let Ok(v) = rx.try_recv() {
            let mut s = v.to_string();
            s.push('\n');
            if out.write_all(s.as_bytes()).await.is_err() {
                return;
            }
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    turnpike_mcp::error_response(Some(id), code, message)
}

/// The headers for one message: era, session, routing.
fn headers_for(st: &State, msg: &Value) -> HeaderMap {
    let mut h = st.opts.headers.clone();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    let modern = msg
        .pointer("/params/_meta")
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str)
        .and_then(|v| HeaderValue::from_str(v).ok());
    let method = msg.get("method").and_then(Value::as_str);
    match modern {
        Some(v) => {
            let is_modern = v
                .to_str()
                .is_ok_and(|s| s >= turnpike_mcp::headers::ROUTING_HEADERS_VERSION);
            h.insert(HeaderName::from_static("mcp-protocol-version"), v);
            if is_modern {
                if let Some(m) = method.and_then(|m| HeaderValue::from_str(m).ok()) {
                    h.insert(HeaderName::from_static("mcp-method"), m);
                }
                let name = crate::CallInfo::of("", msg).name;
                if let Some(n) = name.and_then(|n| {
                    HeaderValue::from_str(&turnpike_mcp::headers::encode_header_value(&n)).ok()
                }) {
                    h.insert(HeaderName::from_static("mcp-name"), n);
                }
            }
        }
        None => {
            if method != Some("initialize") {
                if let Some(p) = st.protocol.lock().clone() {
                    h.insert(HeaderName::from_static("mcp-protocol-version"), p);
                }
            }
            if let Some(s) = st.session.lock().clone() {
                h.insert(HeaderName::from_static("mcp-session-id"), s);
            }
        }
    }
    h
}

/// Forwards one message and writes its answer.
async fn forward(st: &Arc<State>, msg: Value, body: Bytes) {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let is_request = method.is_some() && msg.get("id").is_some();
    let headers = headers_for(st, &msg);
    let out = st.out.clone();
    let on_message = move |v: Value| {
        let _ = out.send(v);
    };
    let result = st
        .client
        .post(&st.opts.url, &headers, body, &on_message)
        .await;
    let reply = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(method = method.as_deref().unwrap_or(""), "{e}");
            if is_request {
                let _ = st.out.send(not_through(&msg, &id, &e));
            }
            return;
        }
    };
    if method.as_deref() == Some("initialize") && reply.status.is_success() {
        if let Some(sid) = reply.headers.get("mcp-session-id") {
            *st.session.lock() = Some(sid.clone());
        }
        if let Some(v) = reply
            .message
            .as_ref()
            .and_then(|m| m.pointer("/result/protocolVersion"))
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            *st.protocol.lock() = Some(v);
        }
        if st.opts.get_stream && !st.get_started.swap(true, Ordering::AcqRel) {
            let st2 = st.clone();
            *st.get_task.lock() = Some(tokio::spawn(async move { get_stream(st2).await }));
        }
    }
    if !is_request {
        if !reply.status.is_success() {
            tracing::warn!(
                status = reply.status.as_u16(),
                "the remote refused a notification or response"
            );
        }
        return;
    }
    match reply.message {
        Some(Value::Object(mut m)) if m.contains_key("result") || m.contains_key("error") => {
            if m.get("id").is_none_or(Value::is_null) {
                m.insert("id".into(), id);
            }
            let _ = st.out.send(Value::Object(m));
        }
        _ => {
            let snippet: String = reply
                .other_body
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).chars().take(200).collect())
                .unwrap_or_default();
            let code = if reply.status == StatusCode::NOT_FOUND {
                -32001
            } else {
                -32603
            };
            let _ = st.out.send(error(
                &id,
                code,
                &format!(
                    "the remote server answered HTTP {} without a JSON-RPC reply{}{}",
                    reply.status.as_u16(),
                    if snippet.is_empty() { "" } else { ": " },
                    snippet
                ),
            ));
        }
    }
}

/// The answer for a call the client could not get through.
fn not_through(msg: &Value, id: &Value, e: &ClientError) -> Value {
    let text = format!("turnpike connect: {e}");
    if msg.get("method").and_then(Value::as_str) == Some("tools/call") {
        let mut result = json!({
            "isError": true,
            "content": [{"type": "text", "text": text}],
        });
        if msg
            .pointer("/params/_meta")
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .is_some()
        {
            result["resultType"] = Value::from("complete");
        }
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    } else {
        let code = match e {
            // The remote could not be reached or read: turnpike's "upstream failed".
            ClientError::Http(_) => -31502,
            _ => CODE_NOT_THROUGH,
        };
        error(id, code, &text)
    }
}

/// The GET stream of a 2025 session: server-initiated messages to the host.
async fn get_stream(st: Arc<State>) {
    let mut failures = 0u32;
    let mut last_event: Option<String> = None;
    while failures < 5 {
        let Some(sid) = st.session.lock().clone() else {
            return;
        };
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(&st.opts.url)
            .header(header::ACCEPT, "text/event-stream")
            .header("mcp-session-id", sid);
        if let Some(p) = st.protocol.lock().clone() {
            b = b.header("mcp-protocol-version", p);
        }
        if let Some(l) = last_event
            .as_deref()
            .and_then(|l| HeaderValue::from_str(l).ok())
        {
            b = b.header("last-event-id", l);
        }
        for (k, v) in &st.opts.headers {
            b = b.header(k, v);
        }
        let Ok(req) = b.body(Full::new(Bytes::new())) else {
            return;
        };
        let resp = match st.client.transport().send(req).await {
            Ok(r) => r,
            Err(_) => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500 << failures.min(4))).await;
                continue;
            }
        };
        if !resp.status().is_success() {
            // 405: the server offers no stream; 404: the session is gone.
            return;
        }
        let mut body = resp.into_body();
        let mut parser = turnpike_mcp::sse::SseParser::new();
        let mut got_any = false;
        loop {
            while let Some(ev) = parser.next_event() {
                if let Some(id) = ev.id {
                    last_event = Some(id);
                }
                if let Some(v) = ev.data.and_then(|d| serde_json::from_str::<Value>(&d).ok()) {
                    got_any = true;
                    let _ = st.out.send(v);
                }
            }
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        parser.push(&d);
                    }
                }
                _ => break,
            }
        }
        failures = if got_any { 0 } else { failures + 1 };
        tokio::time::sleep(Duration::from_millis(250 << failures.min(4))).await;
    }
}
