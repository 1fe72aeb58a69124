//! The `--conformance` fixture to 2026-07-28 requests over HTTP (modern-only mode):
//! `input_required` rounds, resource-not-found, missing capabilities, and change notifications
//! on `subscriptions/listen` streams.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turnpike_fixture::{EraMode, HttpOptions};

async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = HttpOptions {
        era: EraMode::Modern,
        conformance: true,
        ..Default::default()
    };
    tokio::spawn(turnpike_fixture::serve_http(
        listener,
        "/mcp",
        opts,
        std::future::pending(),
    ));
    addr
}

/// A 2026-07-28 request: `_meta` and the standard headers filled in.
fn request(id: u64, method: &str, mut params: Value, caps: Value) -> (String, Vec<u8>) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    });
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .or_else(|| params.get("taskId"))
        .and_then(Value::as_str)
        .map(|n| format!("Mcp-Name: {n}\r\n"))
        .unwrap_or_default();
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: {method}\r\n{name}Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    (head, body.into_bytes())
}

/// One request; the HTTP status and the JSON-RPC message answering `id`.
async fn rpc(addr: SocketAddr, id: u64, method: &str, params: Value, caps: Value) -> (u16, Value) {
    let (head, body) = request(id, method, params, caps);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let msg = messages(&raw)
        .into_iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no answer to {id} in {raw}"));
    (status, msg)
}

/// Every JSON object found on its own in `raw` (SSE `data:` lines, chunked or plain bodies).
fn messages(raw: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for line in raw.lines() {
        let line = line.trim().strip_prefix("data:").unwrap_or(line).trim();
        if line.starts_with('{') {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                out.push(v);
            }
        }
    }
    out
}

fn call(name: &str) -> Value {
    json!({"name": name, "arguments": {}})
}

#[tokio::test]
async fn multi_round_answers_input_required_until_done() {
    let addr = start().await;
    let (_, r1) = rpc(
        addr,
        1,
        "tools/call",
        call("test_input_required_result_multi_round"),
        json!({}),
    )
    .await;
    let r1 = &r1["result"];
    assert_eq!(r1["resultType"], "input_required", "{r1}");
    assert_eq!(r1["inputRequests"]["step1"]["method"], "elicitation/create");
    let mut p = call("test_input_required_result_multi_round");
    p["inputResponses"] = json!({"step1": {"action": "accept", "content": {"name": "Alice"}}});
    p["requestState"] = r1["requestState"].clone();
    let (_, r2) = rpc(addr, 2, "tools/call", p, json!({})).await;
    let r2 = &r2["result"];
    assert_eq!(r2["resultType"], "input_required", "{r2}");
    assert_ne!(r2["requestState"], r1["requestState"]);
    let mut p = call("test_input_required_result_multi_round");
    p["inputResponses"] = json!({"step2": {"action": "accept", "content": {"color": "blue"}}});
    p["requestState"] = r2["requestState"].clone();
    let (_, r3) = rpc(addr, 3, "tools/call", p, json!({})).await;
    assert_eq!(r3["result"]["resultType"], "complete", "{r3}");
    assert_eq!(
        r3["result"]["content"][0]["text"],
        "Multi-round complete for Alice who likes blue"
    );

    // An answer that is not an object is asked for again.
    let mut p = call("test_input_required_result_elicitation");
    p["inputResponses"] = json!({"user_name": 12345});
    let (_, r) = rpc(addr, 4, "tools/call", p, json!({})).await;
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
}

#[tokio::test]
async fn errors_carry_the_codes_the_suite_expects() {
    let addr = start().await;
    let uri = "test://nonexistent-resource-for-conformance-testing";
    let (_, r) = rpc(addr, 1, "resources/read", json!({"uri": uri}), json!({})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert_eq!(r["error"]["data"]["uri"], uri);

    let (status, r) = rpc(
        addr,
        2,
        "tools/call",
        call("test_missing_capability"),
        json!({}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(r["error"]["code"], -32021, "{r}");
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"]["sampling"],
        json!({})
    );
    let (_, r) = rpc(
        addr,
        3,
        "tools/call",
        call("test_missing_capability"),
        json!({"sampling": {}}),
    )
    .await;
    assert_eq!(r["result"]["content"][0]["text"], "Success", "{r}");

    let (_, r) = rpc(addr, 4, "resources/list", json!({}), json!({})).await;
    assert_eq!(r["result"]["ttlMs"], 300000, "{r}");
    assert_eq!(r["result"]["cacheScope"], "public");
}

/// Opens a `subscriptions/listen` stream, fires `triggers` once it is acknowledged, and
/// returns every message that arrived on it until `last` did.
async fn listen(addr: SocketAddr, filter: Value, triggers: &[&str], last: &str) -> Vec<Value> {
    let (head, body) = request(
        99,
        "subscriptions/listen",
        json!({"notifications": filter}),
        json!({}),
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut raw = String::new();
    let mut buf = [0u8; 4096];
    let mut fired = false;
    let read = async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "listen stream ended: {raw}");
            raw.push_str(&String::from_utf8_lossy(&buf[..n]));
            if !fired && raw.contains("notifications/subscriptions/acknowledged") {
                fired = true;
                for (i, t) in triggers.iter().enumerate() {
                    let (_, r) = rpc(addr, 10 + i as u64, "tools/call", call(t), json!({})).await;
                    assert_eq!(r["result"]["content"][0]["text"], "Mutation triggered");
                }
            }
            if fired && raw.contains(last) {
                return messages(&raw);
            }
        }
    };
    // A guard against a hang, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the listen stream did not deliver in time")
}

#[tokio::test]
async fn listen_streams_get_the_changes_they_asked_for() {
    let addr = start().await;
    let got = listen(
        addr,
        json!({"toolsListChanged": true}),
        &["test_trigger_tool_change"],
        "notifications/tools/list_changed",
    )
    .await;
    assert_eq!(got[0]["method"], "notifications/subscriptions/acknowledged");
    for m in &got {
        assert_eq!(
            m["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 99,
            "{m}"
        );
    }

    // Filtered to prompts: the tool change (announced first) never arrives.
    let got = listen(
        addr,
        json!({"promptsListChanged": true}),
        &["test_trigger_tool_change", "test_trigger_prompt_change"],
        "notifications/prompts/list_changed",
    )
    .await;
    let methods: Vec<&str> = got.iter().filter_map(|m| m["method"].as_str()).collect();
    assert_eq!(
        methods,
        [
            "notifications/subscriptions/acknowledged",
            "notifications/prompts/list_changed"
        ]
    );

    // Resource updates go to the streams subscribed to that URI.
    let got = listen(
        addr,
        json!({"resourceSubscriptions": ["test://watched-resource"]}),
        &["test_trigger_resource_change"],
        "notifications/resources/updated",
    )
    .await;
    let update = got
        .iter()
        .find(|m| m["method"] == "notifications/resources/updated")
        .unwrap();
    assert_eq!(update["params"]["uri"], "test://watched-resource");
}

/// Polls `tasks/get` until the task's status is none of `passing` (bounded, not timed).
async fn settle(addr: SocketAddr, id: u64, task: &str, caps: &Value, passing: &[&str]) -> Value {
    for i in 0..400 {
        let (_, r) = rpc(
            addr,
            id + i,
            "tasks/get",
            json!({"taskId": task}),
            caps.clone(),
        )
        .await;
        assert!(r["result"].is_object(), "{r}");
        if !passing.iter().any(|p| r["result"]["status"] == *p) {
            return r["result"].clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("task {task} stayed in {passing:?}");
}

#[tokio::test]
async fn task_tools_run_as_tasks_for_clients_that_declared_the_extension() {
    let addr = start().await;
    let caps = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}, "elicitation": {}});

    let (_, r) = rpc(addr, 1, "tools/call", call("failing_job"), json!({})).await;
    assert_eq!(r["error"]["code"], -32021, "{r}");
    let mut p = call("slow_compute");
    p["arguments"] = json!({"seconds": 0, "label": "x"});
    let (_, r) = rpc(addr, 2, "tools/call", p.clone(), json!({})).await;
    assert_eq!(
        r["result"]["content"][0]["text"], "Computed x after 0s",
        "{r}"
    );

    let (_, r) = rpc(addr, 3, "tools/call", p, caps.clone()).await;
    assert_eq!(r["result"]["resultType"], "task", "{r}");
    let task = r["result"]["taskId"].as_str().unwrap().to_owned();
    let done = settle(addr, 100, &task, &caps, &["working"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "Computed x after 0s");

    let mut p = call("confirm_delete");
    p["arguments"] = json!({"filename": "a.txt"});
    let (_, r) = rpc(addr, 4, "tools/call", p, caps.clone()).await;
    let task = r["result"]["taskId"].as_str().unwrap().to_owned();
    let waiting = settle(addr, 1000, &task, &caps, &["working"]).await;
    assert_eq!(waiting["status"], "input_required", "{waiting}");
    assert_eq!(
        waiting["inputRequests"]["confirm"]["method"],
        "elicitation/create"
    );
    let (_, ack) = rpc(
        addr,
        5,
        "tasks/update",
        json!({"taskId": task, "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}}),
        caps.clone(),
    )
    .await;
    assert!(ack["result"].is_object(), "{ack}");
    let done = settle(addr, 2000, &task, &caps, &["working", "input_required"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["content"][0]["text"], "Deleted a.txt");
}

/// Reads `s` until `want` returns something from the messages so far (bounded by a guard).
async fn read_until<T>(
    s: &mut TcpStream,
    raw: &mut String,
    want: impl Fn(&[Value]) -> Option<T>,
) -> T {
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if let Some(t) = want(&messages(raw)) {
                return t;
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended: {raw}");
            raw.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    match tokio::time::timeout(Duration::from_secs(20), read).await {
        Ok(t) => t,
        Err(_) => panic!("the stream did not deliver in time: {raw}"),
    }
}

/// A POST that expects no stream back (a notification or an answer): sends it and waits for
/// the status line, so the server has read it before the connection closes.
async fn legacy_send(addr: SocketAddr, sid: &str, body: &Value) {
    let mut s = legacy_post(addr, Some(sid), body).await;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "no answer to {body}");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
}

/// One raw POST of a 2025 session (no `Connection: close`: the stream is read as it comes).
async fn legacy_post(addr: SocketAddr, sid: Option<&str>, body: &Value) -> TcpStream {
    let body = body.to_string();
    let sid = sid
        .map(|s| format!("Mcp-Session-Id: {s}\r\nMCP-Protocol-Version: 2025-11-25\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{sid}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn legacy_only_server_asks_on_the_calls_stream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = HttpOptions {
        era: EraMode::Legacy,
        conformance: true,
        ..Default::default()
    };
    tokio::spawn(turnpike_fixture::serve_http(
        listener,
        "/mcp",
        opts,
        std::future::pending(),
    ));

    let mut s = legacy_post(
        addr,
        None,
        &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{"elicitation":{},"sampling":{},"roots":{}},
            "clientInfo":{"name":"t","version":"1"}}}),
    )
    .await;
    let mut raw = String::new();
    read_until(&mut s, &mut raw, |m| {
        m.iter().find(|m| m["id"] == 1).cloned()
    })
    .await;
    let sid = raw
        .lines()
        .find_map(|l| {
            l.strip_prefix("mcp-session-id:")
                .or_else(|| l.strip_prefix("Mcp-Session-Id:"))
        })
        .map(|v| v.trim().to_owned())
        .expect("a session id");
    drop(
        legacy_post(
            addr,
            Some(&sid),
            &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        )
        .await,
    );

    // The round's three requests all come on the call's own stream before any is answered
    // (sent together, as one 2026-07-28 round asks them); each answer is a POST.
    let mut call = legacy_post(
        addr,
        Some(&sid),
        &json!({"jsonrpc":"2.0","id":"call","method":"tools/call",
            "params":{"name":"test_input_required_result_multiple_inputs","arguments":{}}}),
    )
    .await;
    let mut raw = String::new();
    let asked = read_until(&mut call, &mut raw, |m| {
        let asked: Vec<Value> = m
            .iter()
            .filter(|m| m.get("method").is_some())
            .cloned()
            .collect();
        (asked.len() == 3).then_some(asked)
    })
    .await;
    let mut keys: Vec<&str> = asked
        .iter()
        .map(|a| {
            a["params"]["_meta"]["turnpike-fixture/inputKey"]
                .as_str()
                .unwrap()
        })
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["client_roots", "greeting", "user_name"]);
    for a in &asked {
        let answer = match a["method"].as_str().unwrap() {
            "elicitation/create" => json!({"action":"accept","content":{"name":"Alice"}}),
            "sampling/createMessage" => json!({"role":"assistant",
                "content":{"type":"text","text":"Hello there!"},"model":"m","stopReason":"endTurn"}),
            _ => json!({"roots":[{"uri":"file:///test/root","name":"Test Root"}]}),
        };
        legacy_send(
            addr,
            &sid,
            &json!({"jsonrpc":"2.0","id":a["id"],"result":answer}),
        )
        .await;
    }
    let done = read_until(&mut call, &mut raw, |m| {
        m.iter().find(|m| m["id"] == "call").cloned()
    })
    .await;
    assert_eq!(
        done["result"]["content"][0]["text"], "Name: Alice; Greeting: Hello there!; Roots: 1",
        "{done}"
    );
}
