//! The fixture over Streamable HTTP, stateful and stateless, spoken to with raw HTTP/1.1.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnpike_fixture::HttpOptions;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every JSON-RPC message in the body: the body itself when JSON, else each SSE `data:`.
    fn messages(&self) -> Vec<Value> {
        if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return vec![serde_json::from_str(&self.body).unwrap()];
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }
}

async fn start(opts: HttpOptions) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(turnpike_fixture::serve_http(
        listener,
        "/mcp",
        opts,
        std::future::pending(),
    ));
    addr
}

/// One POST with `Connection: close`; reads the whole (possibly chunked) reply.
async fn post(addr: SocketAddr, extra: &[(&str, &str)], body: &Value) -> Reply {
    post_as(addr, &addr.to_string(), extra, body).await
}

async fn post_as(addr: SocketAddr, host: &str, extra: &[(&str, &str)], body: &Value) -> Reply {
    let body = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
}

fn text_of(msg: &Value) -> &str {
    msg["result"]["content"][0]["text"].as_str().unwrap()
}

#[tokio::test]
async fn stateless_json_answers_each_post_with_one_json_body() {
    let addr = start(HttpOptions::fast()).await;
    let r = post(addr, &[], &call(1, "echo", json!({"text":"hello"}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("mcp-session-id").is_none());
    let m = r.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["id"], 1);
    assert_eq!(text_of(&m[0]), "hello");

    let r = post(addr, &[], &call(2, "add", json!({"a": 40, "b": 2}))).await;
    assert_eq!(text_of(&r.messages()[0]), "42");

    let r = post(addr, &[], &call(3, "add", json!({"a": i64::MAX, "b": 1}))).await;
    let m = &r.messages()[0];
    assert_eq!(
        m["result"]["isError"], true,
        "overflow is a tool error: {m}"
    );
}

#[tokio::test]
async fn slow_streams_progress_then_returns() {
    let addr = start(HttpOptions::fast()).await;
    let body = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{
        "name":"slow","arguments":{"steps":3,"delay_ms":10},"_meta":{"progressToken":"tok"}}});
    let r = post(addr, &[], &body).await;
    assert_eq!(r.status, 200);
    let msgs = r.messages();
    let progress: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{msgs:?}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["params"]["progressToken"], "tok");
        assert_eq!(p["params"]["progress"], json!((i + 1) as f64));
        assert_eq!(p["params"]["total"], json!(3.0));
    }
    let last = msgs.last().unwrap();
    assert_eq!(last["id"], 9);
    assert_eq!(text_of(last), "done");

    // Without a progress token: no notifications, just the result.
    let r = post(
        addr,
        &[],
        &call(10, "slow", json!({"steps":2,"delay_ms":5})),
    )
    .await;
    let msgs = r.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(text_of(&msgs[0]), "done");

    // Too long a call is refused up front.
    let r = post(
        addr,
        &[],
        &call(11, "slow", json!({"steps":10000,"delay_ms":1000})),
    )
    .await;
    assert!(r.messages()[0]["error"]["code"].is_i64());
}

#[tokio::test]
async fn whoami_reports_the_headers_received() {
    let addr = start(HttpOptions::fast()).await;
    let r = post(
        addr,
        &[("X-Probe", "one"), ("X-Probe", "two")],
        &call(1, "whoami", json!({})),
    )
    .await;
    let m = &r.messages()[0];
    let sc = &m["result"]["structuredContent"];
    assert_eq!(sc["transport"], "http");
    assert_eq!(sc["headers"]["x-probe"], json!(["one", "two"]));
    assert_eq!(sc["headers"]["host"], json!([addr.to_string()]));
    // The text content carries the same object.
    let text: Value = serde_json::from_str(text_of(m)).unwrap();
    assert_eq!(&text, sc);
}

#[tokio::test]
async fn stateful_mode_needs_a_session() {
    let addr = start(HttpOptions::default()).await;
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let r = post(addr, &[], &init).await;
    assert_eq!(r.status, 200);
    let sid = r.header("mcp-session-id").unwrap().to_string();
    let m = r.messages();
    assert_eq!(m[0]["result"]["serverInfo"]["name"], "turnpike-fixture");

    let hdrs = [
        ("Mcp-Session-Id", sid.as_str()),
        ("MCP-Protocol-Version", "2025-06-18"),
    ];
    let r = post(
        addr,
        &hdrs,
        &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    assert_eq!(r.status, 202);
    let r = post(
        addr,
        &hdrs,
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let tools = r.messages()[0]["result"]["tools"].clone();
    let mut names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["add", "echo", "slow", "whoami"]);

    let r = post(addr, &hdrs, &call(3, "echo", json!({"text":"in session"}))).await;
    assert_eq!(text_of(&r.messages()[0]), "in session");
}

#[tokio::test]
async fn foreign_host_is_refused_by_default() {
    let addr = start(HttpOptions::fast()).await;
    let r = post_as(
        addr,
        "evil.example",
        &[],
        &call(1, "echo", json!({"text":"x"})),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post_as(
        addr,
        "localhost:1",
        &[],
        &call(1, "echo", json!({"text":"x"})),
    )
    .await;
    assert_eq!(r.status, 200, "loopback names pass whatever the port");
}
