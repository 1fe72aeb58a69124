//! Shared pieces of the gateway tests: a recording rmcp server on 127.0.0.1:0, the gateway in
//! front of it, and a small raw HTTP client.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub(crate) mod chain;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt;

/// A fixed proof-of-work key for the tests.
pub(crate) const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// Delay between the progress steps of the `slow` tool.
pub(crate) const SLOW_STEP: Duration = Duration::from_millis(150);

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Every request the upstream saw.
pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct EchoArgs {
    pub(crate) text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct DearArgs {
    pub(crate) n: i64,
}

#[derive(Clone)]
pub(crate) struct Tools {
    tool_router: ToolRouter<Self>,
}

impl Tools {
    /// The tools, for tests that build their own rmcp service.
    pub(crate) fn new_for_tests() -> Self {
        Self::new()
    }
}

#[tool_router]
impl Tools {
    fn new() -> Self {
        Tools {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Returns its text.", annotations(read_only_hint = true))]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(text)])
    }

    #[tool(description = "A priced tool.")]
    async fn dear(&self, Parameters(DearArgs { n }): Parameters<DearArgs>) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(format!("dear {n}"))])
    }

    #[tool(description = "Three progress steps, then done.")]
    async fn slow(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let token = ctx.meta.get_progress_token();
        for step in 1..=3u32 {
            tokio::time::sleep(SLOW_STEP).await;
            if let Some(token) = &token {
                let p =
                    ProgressNotificationParam::new(token.clone(), f64::from(step)).with_total(3.0);
                let _ = ctx.peer.notify_progress(p).await;
            }
        }
        CallToolResult::success(vec![ContentBlock::text("done")])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Starts the recording rmcp server (stateless; JSON responses when `json`, else SSE) and
/// returns its address and what it saw.
pub(crate) async fn start_upstream(json: bool) -> (SocketAddr, Log) {
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(json)
            .with_sse_keep_alive(None),
    );
    let log: Log = Arc::default();
    let seen = log.clone();
    let recorder = tower::service_fn(move |req: Request<Body>| {
        let mcp = mcp.clone();
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            seen.lock().push(Seen {
                method: parts.method.clone(),
                headers: parts.headers.clone(),
                body: bytes.clone(),
            });
            let resp = mcp
                .oneshot(Request::from_parts(parts, Body::from(bytes)))
                .await?;
            Ok::<_, Infallible>(resp.map(Body::new))
        }
    });
    let app = axum::Router::new().route_service("/mcp", recorder);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, log)
}

/// A data directory of this test process's own under the system's temp dir, so that no test
/// writes into the source tree (the default `turnpike-data` is relative to the working
/// directory).
#[allow(dead_code)]
pub(crate) fn scratch_data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("turnpike-gateway-tests-{}", std::process::id()))
}

/// The gateway's config text in front of `upstream`, with `server_extra` lines in `[server]`
/// (a `data_dir` in the process's scratch directory unless `server_extra` names one).
pub(crate) fn config_text(upstream: SocketAddr, server_extra: &str) -> String {
    let data_dir = if server_extra.contains("data_dir") {
        String::new()
    } else {
        format!("data_dir = \"{}\"", scratch_data_dir().display())
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
path = "/mcp"
max_body_bytes = 65536
{data_dir}
{server_extra}

[upstream]
url = "http://{upstream}/mcp"

[pow]
subpuzzles = 2
keys = [{{ id = 7, secret = "{KEY_HEX}" }}]

[tools.default]
pow = 3000
[tools.echo]
free = true
[tools.slow]
free = true
"#
    )
}

/// Starts the gateway with `config` on 127.0.0.1:0; returns its address.
pub(crate) async fn start_gateway_with(config: &str) -> SocketAddr {
    let cfg = turnpike_gateway::parse(config, "test.toml").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        turnpike_gateway::serve_listener(listener, cfg, std::future::pending())
            .await
            .unwrap();
    });
    addr
}

/// Serves `cfg` on `listener` until the test ends; returns, once it is ready, the live gate and
/// the admin listener's address (when `[admin]` has one).
#[allow(dead_code)] // not every test file that shares this module starts a gateway this way
pub(crate) async fn serve_ready(
    listener: tokio::net::TcpListener,
    cfg: turnpike_gateway::Config,
) -> (
    std::sync::Arc<turnpike_gateway::reload::LiveGate>,
    Option<SocketAddr>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = parking_lot::Mutex::new(Some(tx));
    let opts = turnpike_gateway::ServeOptions {
        on_ready: Some(std::sync::Arc::new(move |live: &_, admin| {
            if let Some(tx) = tx.lock().take() {
                let _ = tx.send((std::sync::Arc::clone(live), admin));
            }
        })),
        ..turnpike_gateway::ServeOptions::default()
    };
    tokio::spawn(async move {
        turnpike_gateway::serve_listener_with(listener, cfg, std::future::pending(), opts)
            .await
            .unwrap();
    });
    rx.await.unwrap()
}

/// An upstream (SSE unless `json`) and the gateway in front of it.
pub(crate) async fn setup(json: bool, server_extra: &str) -> (SocketAddr, Log) {
    let (up, log) = start_upstream(json).await;
    let gw = start_gateway_with(&config_text(up, server_extra)).await;
    (gw, log)
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON: the body itself, or the data of the last SSE event carrying JSON.
    pub(crate) fn json(&self) -> Value {
        if let Ok(v) = serde_json::from_slice(&self.body) {
            return v;
        }
        let text = String::from_utf8_lossy(&self.body);
        let mut last = Value::Null;
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                if let Ok(v) = serde_json::from_str::<Value>(d.trim()) {
                    last = v;
                }
            }
        }
        last
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A request to the gateway at `addr` with sensible MCP headers plus `headers` (which replace
/// the defaults of the same name; a value of "" removes the header).
pub(crate) fn request(
    addr: SocketAddr,
    method: Method,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}/mcp"))
        .body(Full::new(body.into()))
        .unwrap();
    let h = req.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "accept",
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    let mut replaced = std::collections::HashSet::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
        if replaced.insert(name.clone()) {
            h.remove(&name);
        }
        if !v.is_empty() {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
    }
    req
}

/// Sends a request and reads the whole reply.
pub(crate) async fn send(req: Request<Full<Bytes>>) -> Reply {
    let resp = client().request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// POSTs a JSON body to the gateway.
pub(crate) async fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &Value) -> Reply {
    send(request(addr, Method::POST, headers, body.to_string())).await
}

/// Sends a request and returns the response with its body unread.
pub(crate) async fn send_streaming(
    req: Request<Full<Bytes>>,
) -> http::Response<hyper::body::Incoming> {
    client().request(req).await.unwrap()
}

/// A `tools/call` request.
pub(crate) fn call(id: i64, tool: &str, args: Value) -> Value {
    serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
}

/// How many `tools/call` requests the upstream recorded in `log`.
pub(crate) fn tool_calls(log: &Log) -> usize {
    log.lock()
        .iter()
        .filter(|s| String::from_utf8_lossy(&s.body).contains("tools/call"))
        .count()
}

/// A `[store]` section on the Redis at `url` (2 s timeout), to append to a gateway's config.
pub(crate) fn redis_store(url: &str) -> String {
    format!("\n[store]\nbackend = \"redis\"\nredis_url = \"{url}\"\ntimeout_ms = 2000\n")
}

/// Posts `n` calls at once with the one paid `header` (name, value), the `i`th to
/// `gateways[i % len]` with body `body(i)`: how many were answered 200; any answer but 200 or
/// 402 fails the test.
pub(crate) async fn accepted_of_concurrent(
    gateways: &[SocketAddr],
    header: (&str, &str),
    n: usize,
    body: impl Fn(usize) -> Value,
) -> usize {
    let mut tasks = Vec::new();
    for i in 0..n {
        let gw = gateways[i % gateways.len()];
        let (name, value) = (header.0.to_string(), header.1.to_string());
        let body = body(i);
        tasks.push(tokio::spawn(async move {
            post(gw, &[(&name, &value)], &body).await.status.as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => {}
            s => panic!("status {s}"),
        }
    }
    ok
}

/// The `[server]` (with `server_extra` lines), `[upstream]` and `[pow]` sections of a gateway's
/// config: on 127.0.0.1:0 at `/mcp`, `data_dir` as given, in front of `upstream`.
pub(crate) fn config_head(upstream: SocketAddr, data_dir: &str, server_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
path = "/mcp"
data_dir = "{data_dir}"
{server_extra}
[upstream]
url = "http://{upstream}/mcp"

[pow]
subpuzzles = 2
keys = [{{ id = 7, secret = "{KEY_HEX}" }}]
"#
    )
}

/// A listener that takes connections and closes them at once: a server that is down.
pub(crate) async fn dead_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    addr
}

/// Solves the first challenge found in `text` (a 402 body, in-band result or
/// WWW-Authenticate value); returns the token and the nonces.
pub(crate) fn solve(text: &str) -> (String, Vec<u64>) {
    let parsed = turnpike_client::parse_challenges(text);
    let first = parsed.first().expect("a challenge");
    let nonces = turnpike_client::solve(&first.token, 1, None).unwrap();
    (first.challenge.clone(), nonces)
}

/// Pays `invoice` through the dev Lightning backend's wallet in `data_dir` (LND REST
/// `SendPaymentSync`, as `dev-wallet.json` describes it); returns the preimage as hex.
pub(crate) async fn pay(data_dir: &std::path::Path, invoice: &str) -> String {
    use base64::Engine;
    let w: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("dev-wallet.json")).unwrap()).unwrap();
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "{}/v1/channels/transactions",
            w["url"].as_str().unwrap()
        ))
        .header(
            "grpc-metadata-macaroon",
            w["macaroon_hex"].as_str().unwrap(),
        )
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::json!({"payment_request": invoice}).to_string(),
        )))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["payment_error"], "");
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(v["payment_preimage"].as_str().unwrap())
            .unwrap(),
    )
}
