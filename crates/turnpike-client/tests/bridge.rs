//! The stdio bridge against a loopback Streamable HTTP server that records what it receives:
//! the 2025 session (Mcp-Session-Id and MCP-Protocol-Version after initialize, SSE answers with
//! a notification before the reply, the GET stream, DELETE at the end) and 2026-07-28 requests
//! (routing headers mirroring the body, no session).

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use turnpike_client::bridge::{self, BridgeOptions};
use turnpike_client::{Client, ClientConfig};

#[derive(Default)]
struct Seen {
    /// (HTTP method, JSON-RPC method, session id, protocol version, mcp-method, mcp-name)
    requests: Mutex<Vec<[String; 6]>>,
}

fn h(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn on_post(State(s): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let method = msg["method"].as_str().unwrap_or("").to_string();
    s.requests.lock().push([
        "POST".into(),
        method.clone(),
        h(&headers, "mcp-session-id"),
        h(&headers, "mcp-protocol-version"),
        h(&headers, "mcp-method"),
        h(&headers, "mcp-name"),
    ]);
    let id = msg["id"].clone();
    match method.as_str() {
        "initialize" => (
            [
                ("content-type", "application/json"),
                ("mcp-session-id", "s-1"),
            ],
            json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-11-25",
                "capabilities": {}, "serverInfo": {"name": "t", "version": "0"}}})
            .to_string(),
        )
            .into_response(),
        "tools/call" => {
            let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": "p", "progress": 1}});
            let result = json!({"jsonrpc": "2.0", "id": id,
                "result": {"content": [{"type": "text", "text": "done"}]}});
            (
                [("content-type", "text/event-stream")],
                format!("data: {progress}\n\ndata: {result}\n\n"),
            )
                .into_response()
        }
        _ if msg.get("id").is_none() => StatusCode::ACCEPTED.into_response(),
        _ => (
            [("content-type", "application/json")],
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}})
                .to_string(),
        )
            .into_response(),
    }
}

async fn on_get(State(s): State<Arc<Seen>>, headers: HeaderMap) -> Response {
    s.requests.lock().push([
        "GET".into(),
        String::new(),
        h(&headers, "mcp-session-id"),
        h(&headers, "mcp-protocol-version"),
        String::new(),
        String::new(),
    ]);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
    // One event, then the stream stays open.
    let stream = futures_util::stream::once(async move {
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("id: 1\ndata: {note}\n\n")))
    })
    .chain(futures_util::stream::pending());
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn on_delete(State(s): State<Arc<Seen>>, headers: HeaderMap) -> StatusCode {
    s.requests.lock().push([
        "DELETE".into(),
        String::new(),
        h(&headers, "mcp-session-id"),
        String::new(),
        String::new(),
        String::new(),
    ]);
    StatusCode::OK
}

use futures_util::StreamExt;

async fn next_msg(lines: &mut tokio::io::Lines<BufReader<tokio::io::DuplexStream>>) -> Value {
    let l = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("a line");
    serde_json::from_str::<Value>(&l).unwrap()
}

#[tokio::test]
async fn both_eras_through_the_bridge() {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/mcp", post(on_post).get(on_get).delete(on_delete))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    let dir = std::env::temp_dir().join(format!(
        "turnpike-bridge-test-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 6]>())
    ));
    let client = Arc::new(Client::new(ClientConfig::new(dir.clone())).unwrap());
    let (mut host_w, bridge_r) = tokio::io::duplex(1 << 16);
    let (bridge_w, host_r) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(bridge::run(
        client,
        BridgeOptions {
            url,
            headers: Default::default(),
            get_stream: true,
        },
        BufReader::new(bridge_r),
        bridge_w,
    ));
    let mut lines = BufReader::new(host_r).lines();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "h", "version": "0"}}});
    host_w
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    let r = next_msg(&mut lines).await;
    assert_eq!(r["id"], 1);
    assert_eq!(r["result"]["protocolVersion"], "2025-11-25");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "t", "arguments": {}, "_meta": {"progressToken": "p"}}});
    host_w
        .write_all(format!("{initialized}\n{call}\n").as_bytes())
        .await
        .unwrap();
    // The progress notification, the reply and the GET stream's notification, in some order
    // (the progress always before its reply).
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(next_msg(&mut lines).await);
    }
    let pos = |f: &dyn Fn(&Value) -> bool| got.iter().position(f).expect("present");
    let progress = pos(&|v| v["method"] == "notifications/progress");
    let reply = pos(&|v| v["id"] == 2);
    let _listed = pos(&|v| v["method"] == "notifications/tools/list_changed");
    assert!(progress < reply);
    assert_eq!(got[reply]["result"]["content"][0]["text"], "done");
    // A 2026-07-28 request: routing headers, no session.
    let modern = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "tool é", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    host_w
        .write_all(format!("{modern}\n").as_bytes())
        .await
        .unwrap();
    loop {
        let v = next_msg(&mut lines).await;
        if v["id"] == 3 {
            break;
        }
    }
    drop(host_w);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the bridge ends when its input closes")
        .unwrap()
        .unwrap();
    let reqs = seen.requests.lock().clone();
    let find = |m: &str, rpc: &str| {
        reqs.iter()
            .find(|r| r[0] == m && r[1] == rpc)
            .unwrap_or_else(|| panic!("{m} {rpc} in {reqs:?}"))
            .clone()
    };
    let init = find("POST", "initialize");
    assert_eq!(init[2], "", "no session id before initialize");
    let n = find("POST", "notifications/initialized");
    assert_eq!((n[2].as_str(), n[3].as_str()), ("s-1", "2025-11-25"));
    let calls: Vec<_> = reqs.iter().filter(|r| r[1] == "tools/call").collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (
            calls[0][2].as_str(),
            calls[0][3].as_str(),
            calls[0][4].as_str()
        ),
        ("s-1", "2025-11-25", "")
    );
    assert_eq!(
        (
            calls[1][2].as_str(),
            calls[1][3].as_str(),
            calls[1][4].as_str(),
            calls[1][5].as_str()
        ),
        ("", "2026-07-28", "tools/call", "=?base64?dG9vbCDDqQ==?=")
    );
    let get = find("GET", "");
    assert_eq!(get[2], "s-1");
    assert_eq!(find("DELETE", "")[2], "s-1");
    let _ = std::fs::remove_dir_all(&dir);
}
