//! Shared helpers for the stdio upstream tests: the upstream behind a small axum server on
//! 127.0.0.1:0, a real HTTP client, an SSE reader, and process checks.
//!
//! Included by the `stdio_*` test files with `#[path]`; compiled on its own it has no tests.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::serve::{Listener, ListenerExt};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use turnpike_gateway::upstream::stdio::{StdioBudget, StdioConfig, StdioUpstream};

/// Both media types, as MCP clients send them.
pub(crate) const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// JSON only.
pub(crate) const ACCEPT_JSON: &str = "application/json";

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `server-everything`'s entry point under `<repo>/.deps`. Panics (the test fails) when it is
/// not installed.
pub(crate) fn server_everything() -> PathBuf {
    let path = repo_root()
        .join(".deps/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test, which installs the test peers (or: npm install \
         --prefix {}/.deps @modelcontextprotocol/server-everything@2026.8.31)",
        path.display(),
        repo_root().display()
    );
    path
}

/// A config that runs `server-everything` in its default stdio mode.
pub(crate) fn everything_config() -> StdioConfig {
    StdioConfig::new([
        "node".to_owned(),
        server_everything().to_string_lossy().into_owned(),
    ])
}

/// A response read whole.
#[derive(Debug)]
pub(crate) struct Whole {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Whole {
    /// The body as JSON (panics if it is not).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `Mcp-Session-Id` header, if any.
    pub(crate) fn session_id(&self) -> Option<String> {
        self.headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The content type.
    pub(crate) fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The single JSON-RPC message in the body, whether it came as JSON or as one SSE event.
    pub(crate) fn message(&self) -> Value {
        if self.content_type().starts_with("text/event-stream") {
            let events = parse_sse(&self.body);
            assert_eq!(events.len(), 1, "expected one event, got {events:?}");
            events.into_iter().next().unwrap()
        } else {
            self.json()
        }
    }
}

/// Every `data:` payload in a complete SSE body, as JSON.
pub(crate) fn parse_sse(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).unwrap())
        })
        .collect()
}

/// An SSE stream read event by event as it arrives.
pub(crate) struct Sse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    body: Incoming,
    buf: Vec<u8>,
}

impl Sse {
    /// The next event's JSON, skipping comments; `None` when the stream ends. Panics after
    /// `wait` without one.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        tokio::time::timeout(wait, self.next())
            .await
            .unwrap_or_else(|_| panic!("no SSE event within {wait:?}"))
    }

    /// The next event's JSON, skipping comments; `None` when the stream ends.
    pub(crate) async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = find(&self.buf, b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                let events = parse_sse(&raw);
                if let Some(v) = events.into_iter().next() {
                    return Some(v);
                }
                continue;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => panic!("SSE body error: {e}"),
                None => {
                    assert!(
                        self.buf.iter().all(u8::is_ascii_whitespace),
                        "stream ended inside an event: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                    return None;
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The upstream behind an axum server on 127.0.0.1:0, and a client for it.
pub(crate) struct Gateway {
    pub(crate) upstream: StdioUpstream,
    pub(crate) url: String,
    client: Client<HttpConnector, Full<Bytes>>,
    server: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Serves a new [`StdioUpstream`] for `config` at `http://127.0.0.1:<port>/mcp`.
    pub(crate) async fn start(config: StdioConfig) -> Gateway {
        Gateway::start_with(StdioUpstream::new(config)).await
    }

    /// Serves a new [`StdioUpstream`] for `config` whose children count against `budget`.
    pub(crate) async fn start_with_budget(config: StdioConfig, budget: StdioBudget) -> Gateway {
        Gateway::start_with(StdioUpstream::with_budget(config, budget)).await
    }

    async fn start_with(upstream: StdioUpstream) -> Gateway {
        let app = axum::Router::new().route_service("/mcp", upstream.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Gateway {
            upstream,
            url: format!("http://{addr}/mcp"),
            client,
            server,
        }
    }

    /// Stops serving and drops this handle to the upstream.
    pub(crate) async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
    }

    fn request(
        &self,
        method: Method,
        session: Option<&str>,
        accept: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(&self.url)
            .header("accept", accept)
            .header("host", "127.0.0.1");
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        if let Some(s) = session {
            b = b
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let bytes = body
            .map(|v| Bytes::from(serde_json::to_vec(v).unwrap()))
            .unwrap_or_default();
        b.body(Full::new(bytes)).unwrap()
    }

    /// Sends a request and reads the whole response (within 30 s).
    pub(crate) async fn send(
        &self,
        method: Method,
        session: Option<&str>,
        accept: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Whole {
        let req = self.request(method, session, accept, body, extra);
        let resp = tokio::time::timeout(Duration::from_secs(30), async {
            let resp = self.client.request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Whole {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
        .await;
        resp.expect("no complete response within 30 s")
    }

    /// POSTs a JSON-RPC message and reads the whole response.
    pub(crate) async fn post(&self, session: Option<&str>, accept: &str, body: &Value) -> Whole {
        self.send(Method::POST, session, accept, Some(body), &[])
            .await
    }

    /// POSTs a JSON-RPC message and returns the response as an SSE stream once its head
    /// arrives (within 10 s).
    pub(crate) async fn post_sse(&self, session: Option<&str>, body: &Value) -> Sse {
        let req = self.request(Method::POST, session, ACCEPT_BOTH, Some(body), &[]);
        self.open_sse(req).await
    }

    /// Opens the session's GET stream.
    pub(crate) async fn get_sse(&self, session: &str) -> Sse {
        let req = self.request(Method::GET, Some(session), "text/event-stream", None, &[]);
        self.open_sse(req).await
    }

    async fn open_sse(&self, req: Request<Full<Bytes>>) -> Sse {
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("no response head within 10 s")
            .unwrap();
        let (parts, body) = resp.into_parts();
        Sse {
            status: parts.status,
            headers: parts.headers,
            body,
            buf: Vec::new(),
        }
    }

    /// DELETEs the session.
    pub(crate) async fn delete(&self, session: &str) -> Whole {
        self.send(Method::DELETE, Some(session), ACCEPT_BOTH, None, &[])
            .await
    }

    /// `initialize` (with the given client capabilities) then `notifications/initialized`;
    /// returns the session id.
    pub(crate) async fn open_session(&self, capabilities: Value) -> String {
        let init = self
            .post(None, ACCEPT_BOTH, &initialize(1, capabilities))
            .await;
        assert_eq!(init.status, StatusCode::OK, "initialize: {init:?}");
        let sid = init
            .session_id()
            .expect("initialize must issue a session id");
        assert!(init.message()["result"]["protocolVersion"].is_string());
        let note = self.post(Some(&sid), ACCEPT_BOTH, &initialized()).await;
        assert_eq!(note.status, StatusCode::ACCEPTED);
        sid
    }
}

/// An `initialize` request.
pub(crate) fn initialize(id: u64, capabilities: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": {"name": "turnpike-tests", "version": "0"}
    }})
}

/// The `notifications/initialized` notification.
pub(crate) fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

/// A `tools/call` request.
pub(crate) fn tool_call(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
}

/// Whether a process is alive (present and not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.trim().chars().next());
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// Waits until `pid` is gone; panics after `wait`.
pub(crate) async fn wait_gone(pid: u32, wait: Duration) {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < wait,
            "process {pid} still alive after {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds; panics after `wait`.
pub(crate) async fn wait_until(what: &str, wait: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < wait, "{what}: not within {wait:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGKILL to `pid`.
pub(crate) fn kill9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
