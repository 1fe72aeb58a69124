//! Era translation against a real rmcp server over real HTTP: what the end-to-end tests cannot
//! see from a client — cancellation reaching the upstream in both directions, and a server's
//! request mid-call refused upstream instead of hanging.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Sampling is deprecated in MCP 2026-07-28 (SEP-2577), which is the point: a 2025 server still
// sends it, and the gateway must refuse it on a modern client's behalf.
#![allow(deprecated)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequestParams, SamplingMessage, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tower::{Service, ServiceExt};
use turnpike_gateway::era::{EraAdapter, EraOptions, EraSetting};
use turnpike_gateway::serve::BoxUpstream;
use turnpike_gateway::upstream::http::HttpUpstream;

#[derive(Default)]
struct Seen {
    started: AtomicUsize,
    cancelled: AtomicBool,
}

#[derive(Clone)]
struct Server {
    seen: Arc<Seen>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Server {
    #[tool(description = "Waits until cancelled (at most 60 s).")]
    async fn wait(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        self.seen.started.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            () = ctx.ct.cancelled() => {
                self.seen.cancelled.store(true, Ordering::SeqCst);
                CallToolResult::error(vec![ContentBlock::text("cancelled")])
            }
            () = tokio::time::sleep(Duration::from_secs(60)) => {
                CallToolResult::success(vec![ContentBlock::text("waited")])
            }
        }
    }

    #[tool(description = "Announces that the tool list changed.")]
    async fn change(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let _ = ctx.peer.notify_tool_list_changed().await;
        CallToolResult::success(vec![ContentBlock::text("changed")])
    }

    #[tool(description = "Asks the client for a sampling.")]
    async fn ask(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text("hi")], 10);
        match ctx.peer.create_message(params).await {
            Ok(_) => CallToolResult::success(vec![ContentBlock::text("sampled")]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("refused: {e}"))]),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }
}

/// An rmcp server (both eras) on a loopback port; its URL and what it saw.
async fn rmcp_server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let svc = StreamableHttpService::new(
        move || {
            Ok(Server {
                seen: s2.clone(),
                tool_router: Server::tool_router(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().route_service("/mcp", svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/mcp"), seen)
}

fn adapter(url: &str, setting: EraSetting) -> BoxUpstream {
    let raw = tower::util::BoxCloneService::new(HttpUpstream::new(url).unwrap());
    EraAdapter::new(
        raw,
        EraOptions {
            setting,
            ..EraOptions::default()
        },
    )
    .boxed()
}

fn post(body: &Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

async fn call(svc: &mut BoxUpstream, req: Request<Body>) -> Response<Body> {
    let r: Result<Response<Body>, Infallible> = svc.ready().await.unwrap().call(req).await;
    r.unwrap()
}

/// Waits (bounded, generously) for `what` to become true.
async fn eventually(what: impl Fn() -> bool) -> bool {
    for _ in 0..400 {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    what()
}

fn modern_meta(caps: Value) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientCapabilities": caps})
}

const MODERN: [(&str, &str); 1] = [("mcp-protocol-version", "2026-07-28")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_client_closing_its_stream_cancels_upstream() {
    let (url, seen) = rmcp_server().await;
    let mut svc = adapter(&url, EraSetting::Legacy);
    let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"wait","arguments":{},"_meta": modern_meta(json!({}))}});
    let resp = call(&mut svc, post(&body, &MODERN)).await;
    assert_eq!(resp.status(), 200);
    assert!(eventually(|| seen.started.load(Ordering::SeqCst) == 1).await);
    // The client goes away mid-call.
    drop(resp);
    assert!(
        eventually(|| seen.cancelled.load(Ordering::SeqCst)).await,
        "the legacy upstream got notifications/cancelled for the abandoned request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_request_to_a_modern_client_is_refused_upstream() {
    // A client that declared no sampling capability: the server's sampling request cannot be
    // put to it (with the capability it becomes input_required: tests/era_mrtr.rs).
    let (url, _seen) = rmcp_server().await;
    let mut svc = adapter(&url, EraSetting::Legacy);
    let body = json!({"jsonrpc":"2.0","id":"s","method":"tools/call",
        "params":{"name":"ask","arguments":{},"_meta": modern_meta(json!({}))}});
    let resp = call(&mut svc, post(&body, &MODERN)).await;
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let messages: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .collect();
    assert!(
        messages.iter().all(|m| m.get("method").is_none()),
        "the client never sees the server's request: {text}"
    );
    let last = messages.iter().find(|v| v["id"] == "s").expect("an answer");
    assert_eq!(last["result"]["resultType"], "complete");
    assert_eq!(last["result"]["isError"], true, "{last}");
    let msg = last["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        msg.contains("refused") && msg.contains("2026-07-28"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_cancel_notification_closes_the_modern_stream() {
    let (url, seen) = rmcp_server().await;
    let mut svc = adapter(&url, EraSetting::Modern);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let resp = call(&mut svc, post(&init, &[])).await;
    assert_eq!(resp.status(), 200);
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(sid.starts_with("v1."), "a sealed session id");
    let legacy = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let body = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"wait","arguments":{}}});
    // The call is in flight (the upstream may not even have sent its response head yet).
    let mut svc2 = svc.clone();
    let owned: Vec<(String, String)> = legacy
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let pending = tokio::spawn(async move {
        let h: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let resp = call(&mut svc2, post(&body, &h)).await;
        let status = resp.status();
        let mut stream = resp.into_body().into_data_stream();
        let mut all = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            all.extend_from_slice(&chunk);
        }
        (status, all)
    });
    assert!(eventually(|| seen.started.load(Ordering::SeqCst) == 1).await);
    let cancel =
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}});
    let r = call(&mut svc, post(&cancel, &legacy)).await;
    assert_eq!(r.status(), 202);
    // The client's stream ends without an answer…
    let (status, rest) = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the call ends once cancelled")
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        !String::from_utf8_lossy(&rest).contains("\"id\":9"),
        "no answer after cancellation"
    );
    // …and the modern upstream, whose stream the gateway closed, cancelled the call.
    assert!(
        eventually(|| seen.cancelled.load(Ordering::SeqCst)).await,
        "the modern upstream saw the disconnect as cancellation"
    );
}

/// The next JSON-RPC message of an SSE body stream.
async fn next_message(
    stream: &mut (impl futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin),
    buf: &mut String,
) -> Option<Value> {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                return Some(v);
            }
            continue;
        }
        let chunk = stream.next().await?.ok()?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_listen_bridges_a_legacy_servers_list_changed() {
    let (url, _seen) = rmcp_server().await;
    let mut svc = adapter(&url, EraSetting::Legacy);
    let listen = json!({"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen",
        "params":{"_meta": modern_meta(json!({})),
                  "notifications":{"toolsListChanged":true,"promptsListChanged":true}}});
    let resp = call(&mut svc, post(&listen, &MODERN)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();
    let ack = tokio::time::timeout(Duration::from_secs(10), next_message(&mut stream, &mut buf))
        .await
        .unwrap()
        .expect("an acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "only what the server can send is honoured: {ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );
    // A call in the same (pooled) upstream session changes the tool list.
    let change = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"change","arguments":{},"_meta": modern_meta(json!({}))}});
    let r = call(&mut svc, post(&change, &MODERN)).await;
    assert_eq!(r.status(), 200);
    let _ = r.into_body().collect().await;
    let note = tokio::time::timeout(Duration::from_secs(10), next_message(&mut stream, &mut buf))
        .await
        .expect("the notification arrives")
        .expect("a notification");
    assert_eq!(note["method"], "notifications/tools/list_changed");
    assert_eq!(
        note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "sub-1"
    );
}

/// A stateless MCP 2026-07-28 server whose one tool asks for an elicitation with an
/// `input_required` result and then answers with what it was given; counts its `tools/call`s.
async fn modern_asking_server() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: axum::Json<Value>| {
            let calls = c2.clone();
            async move {
                let id = body.get("id").cloned().unwrap_or(Value::Null);
                let result = match body.get("method").and_then(Value::as_str) {
                    Some("server/discover") => json!({"supportedVersions": ["2026-07-28"],
                        "capabilities": {"tools": {}}}),
                    Some("tools/call") => {
                        calls.fetch_add(1, Ordering::SeqCst);
                        match body.pointer("/params/inputResponses/ok") {
                            Some(r) => json!({"resultType": "complete",
                                "content": [{"type": "text", "text": r.to_string()}],
                                "state": body.pointer("/params/requestState")}),
                            None => json!({"resultType": "input_required", "requestState": "s-1",
                                "inputRequests": {"ok": {"method": "elicitation/create",
                                    "params": {"message": "sure?", "requestedSchema": {"type": "object"}}}}}),
                        }
                    }
                    _ => json!({}),
                };
                axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/mcp"), calls)
}

async fn legacy_session(svc: &mut BoxUpstream, caps: Value) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":caps,"clientInfo":{"name":"t","version":"1"}}});
    let resp = call(svc, post(&init, &[])).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_required_becomes_a_request_to_the_legacy_client() {
    let (url, calls) = modern_asking_server().await;
    let mut svc = adapter(&url, EraSetting::Modern);
    let sid = legacy_session(&mut svc, json!({"elicitation": {}})).await;
    let legacy = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let body =
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x","arguments":{}}});
    let resp = call(&mut svc, post(&body, &legacy)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();
    let asked = tokio::time::timeout(Duration::from_secs(10), next_message(&mut stream, &mut buf))
        .await
        .unwrap()
        .expect("a request to the client");
    assert_eq!(asked["method"], "elicitation/create");
    assert_eq!(asked["params"]["message"], "sure?");
    let gid = asked["id"].as_str().unwrap().to_owned();
    // An answer to an id the gateway never issued is dropped; the real one is taken.
    let stray = json!({"jsonrpc":"2.0","id":"turnpike-input-0","result":{"action":"decline"}});
    assert_eq!(call(&mut svc, post(&stray, &legacy)).await.status(), 202);
    let answer = json!({"jsonrpc":"2.0","id":gid,"result":{"action":"accept","content":{"y":1}}});
    assert_eq!(call(&mut svc, post(&answer, &legacy)).await.status(), 202);
    let done = tokio::time::timeout(Duration::from_secs(10), next_message(&mut stream, &mut buf))
        .await
        .unwrap()
        .expect("the final answer");
    assert_eq!(done["id"], 4);
    let text: Value =
        serde_json::from_str(done["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        text,
        json!({"action":"accept","content":{"y":1}}),
        "the retry carried the client's answer"
    );
    assert_eq!(done["result"]["state"], "s-1", "requestState echoed");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The same id is not taken twice.
    assert_eq!(call(&mut svc, post(&answer, &legacy)).await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_the_client_is_asked_ends_the_call() {
    let (url, calls) = modern_asking_server().await;
    let mut svc = adapter(&url, EraSetting::Modern);
    let sid = legacy_session(&mut svc, json!({"elicitation": {}})).await;
    let legacy = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let body = json!({"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"x","arguments":{}}});
    let resp = call(&mut svc, post(&body, &legacy)).await;
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();
    let asked = tokio::time::timeout(Duration::from_secs(10), next_message(&mut stream, &mut buf))
        .await
        .unwrap()
        .expect("a request to the client");
    let cancel =
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c"}});
    assert_eq!(call(&mut svc, post(&cancel, &legacy)).await.status(), 202);
    let rest = tokio::time::timeout(Duration::from_secs(10), next_message(&mut stream, &mut buf))
        .await
        .expect("the stream ends once cancelled");
    assert!(rest.is_none(), "no answer after cancellation: {rest:?}");
    // A late answer goes nowhere, and the upstream is not asked again.
    let answer = json!({"jsonrpc":"2.0","id":asked["id"],"result":{"action":"accept"}});
    assert_eq!(call(&mut svc, post(&answer, &legacy)).await.status(), 202);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The body of a response, parsed: JSON, or the last JSON-RPC message of an SSE stream.
async fn last_message(resp: Response<Body>) -> Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .rev()
            .filter_map(|l| l.strip_prefix("data: "))
            .find_map(|d| serde_json::from_str::<Value>(d).ok())
            .unwrap_or_else(|| panic!("no message in {text}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_errors_get_their_http_status_in_front_of_a_legacy_server() {
    let (url, _seen) = rmcp_server().await;
    let mut svc = adapter(&url, EraSetting::Legacy);
    let meta = modern_meta(json!({}));

    // A method the 2025 server does not have: its -32601 (sent with 200) becomes 404.
    let body = json!({"jsonrpc":"2.0","id":"u","method":"x/unknown","params":{"_meta": meta}});
    let resp = call(&mut svc, post(&body, &MODERN)).await;
    assert_eq!(resp.status(), 404);
    let v = last_message(resp).await;
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!("u"), json!(-32601))
    );

    // Methods 2026-07-28 removed are refused here, before the upstream.
    for m in [
        "ping",
        "initialize",
        "logging/setLevel",
        "resources/subscribe",
    ] {
        let body = json!({"jsonrpc":"2.0","id":"r","method":m,"params":{"_meta": meta}});
        let resp = call(&mut svc, post(&body, &MODERN)).await;
        assert_eq!(resp.status(), 404, "{m}");
        assert_eq!(last_message(resp).await["error"]["code"], -32601, "{m}");
    }

    // Malformed _meta and an unsupported version are the gateway's to refuse.
    let body = json!({"jsonrpc":"2.0","id":"m","method":"tools/list","params":{}});
    let resp = call(&mut svc, post(&body, &MODERN)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(last_message(resp).await["error"]["code"], -32602);
    let body = json!({"jsonrpc":"2.0","id":"v","method":"tools/list","params":{"_meta":{
        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let resp = call(
        &mut svc,
        post(&body, &[("mcp-protocol-version", "2099-01-01")]),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v = last_message(resp).await;
    assert_eq!(v["error"]["code"], -32022);
    assert_eq!(
        v["error"]["data"],
        json!({"supported": ["2026-07-28"], "requested": "2099-01-01"})
    );

    // A plain result keeps 200 and its stream.
    let body = json!({"jsonrpc":"2.0","id":"t","method":"tools/list","params":{"_meta": meta}});
    let resp = call(&mut svc, post(&body, &MODERN)).await;
    assert_eq!(resp.status(), 200);
    let v = last_message(resp).await;
    assert_eq!(v["result"]["resultType"], "complete");
}
