//! Upstream time limits, cancellation and paying only for calls the upstream accepted, through
//! the real gateway on loopback: a hung HTTP upstream (no head, or an SSE head then silence),
//! a caller that goes away mid-call, and the Python SDK's stateful server answering
//! `400 Missing session ID` to calls without a session.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use futures_util::StreamExt as _;
use http::Response;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the test upstream was sent: every JSON body, in order.
type Bodies = Arc<parking_lot::Mutex<Vec<Value>>>;

/// The longest a test upstream holds a call it never answers (the gateway lets go sooner).
const HOLD: Duration = Duration::from_secs(30);

/// An MCP-shaped HTTP upstream that records every body and answers `tools/call` by tool name:
/// `hang` — never (no head); `silent` — an SSE head and one progress event, then nothing;
/// anything else — a JSON result. Notifications get 202.
async fn start_hung_upstream() -> (SocketAddr, Bodies) {
    let bodies: Bodies = Arc::default();
    let seen = bodies.clone();
    let handler = move |body: Bytes| {
        let seen = seen.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock().push(v.clone());
            let Some(id) = v.get("id").cloned() else {
                return Response::builder().status(202).body(Body::empty()).unwrap();
            };
            match v.pointer("/params/name").and_then(Value::as_str) {
                Some("hang") => {
                    tokio::time::sleep(HOLD).await;
                    Response::builder().status(500).body(Body::empty()).unwrap()
                }
                Some("silent") => {
                    let first = format!(
                        "event: message\ndata: {}\n\n",
                        json!({"jsonrpc":"2.0","method":"notifications/progress",
                               "params":{"progressToken":1,"progress":1}})
                    );
                    let stream = futures_util::stream::once(async move {
                        Ok::<_, std::io::Error>(Bytes::from(first))
                    })
                    .chain(futures_util::stream::once(async {
                        tokio::time::sleep(HOLD).await;
                        Ok(Bytes::new())
                    }));
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from_stream(stream))
                        .unwrap()
                }
                _ => Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(
                        json!({"jsonrpc":"2.0","id":id,"result":{"content":[
                            {"type":"text","text":"ok"}]}})
                        .to_string(),
                    ))
                    .unwrap(),
            }
        }
    };
    let app = axum::Router::new().route("/mcp", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, bodies)
}

fn data_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "turnpike-upstream-time-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every tool on an L402 balance (1000 msat a call, 3000 msat of credit), and proof-of-work
/// 3000 or 1000 msat per call on `echo`; the dev Lightning backend and its wallet.
fn config(upstream: SocketAddr, dir: &Path, response: u64, idle: u64) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
path = "/mcp"
data_dir = "{dir}"

[upstream]
url = "http://{upstream}/mcp"
era = "2025"
response_timeout_secs = {response}
stream_idle_timeout_secs = {idle}

[pow]
subpuzzles = 2
keys = [{{ id = 7, secret = "{KEY_HEX}" }}]

[tools.default]
l402 = {{ msat = 1000, mode = "balance", bundle = 3000 }}
[tools.echo]
pow = 3000
l402 = {{ msat = 1000 }}

[l402]
store = "memory"

[lightning]
backend = "dev"
[lightning.dev_wallet]
listen = "127.0.0.1:0"
"#,
        dir = dir.display()
    )
}

/// The first `WWW-Authenticate` line's L402 challenge, paid: the `Authorization` value.
async fn buy(gw: SocketAddr, dir: &Path, body: &Value, headers: &[(&str, &str)]) -> String {
    let r = post(gw, headers, body).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let line = r.headers.get_all("www-authenticate").iter().next().unwrap();
    let line = line.to_str().unwrap();
    let rest = line.strip_prefix("L402 macaroon=\"").unwrap();
    let (mac, rest) = rest.split_once("\", invoice=\"").unwrap();
    let inv = rest.strip_suffix('"').unwrap();
    let pre = pay(dir, inv).await;
    format!("L402 {mac}:{pre}")
}

/// Waits (bounded) until the upstream was sent `notifications/cancelled` for `id`.
async fn cancelled(bodies: &Bodies, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = bodies.lock().iter().any(|b| {
            b["method"] == "notifications/cancelled" && b["params"]["requestId"] == json!(id)
        });
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no notifications/cancelled for {id}: {:?}",
            bodies.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The balance behind `auth` still holds exactly three calls (3000 msat of credit, 1000 a
/// call): three answered calls, then 402. Polls (bounded) while a refund may still be landing.
async fn balance_holds_three_calls(gw: SocketAddr, auth: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = 0;
    let mut id = 1000;
    while answered < 3 {
        id += 1;
        let r = post(gw, &[("authorization", auth)], &call(id, "ok", json!({}))).await;
        match r.status.as_u16() {
            200 => answered += 1,
            402 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            s => panic!("call {id}: {s} after {answered} answered: {}", r.text()),
        }
    }
    let r = post(
        gw,
        &[("authorization", auth)],
        &call(id + 1, "ok", json!({})),
    )
    .await;
    assert_eq!(r.status, 402, "a fourth call is not covered: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_gets_504_cancel_and_the_debit_back() {
    let (up, bodies) = start_hung_upstream().await;
    let dir = data_dir();
    let gw = start_gateway_with(&config(up, &dir, 1, 1)).await;
    let auth = buy(gw, &dir, &call(1, "hang", json!({})), &[]).await;
    // Three calls that never get a head: each a 504 within the limit, cancelled upstream, and
    // refunded (else the balance would be gone after three).
    for id in 1..=3 {
        let started = Instant::now();
        let r = post(
            gw,
            &[("authorization", &auth)],
            &call(id, "hang", json!({})),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(r.status, 504, "{}", r.text());
        let v = r.json();
        assert_eq!(v["id"], json!(id));
        assert_eq!(v["error"]["code"], json!(-31504), "{v}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "{took:?}"
        );
        cancelled(&bodies, id).await;
    }
    // A head, then silence: the stream ends with the call's JSON-RPC error event.
    let started = Instant::now();
    let r = post(
        gw,
        &[("authorization", &auth)],
        &call(9, "silent", json!({})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = r.text();
    assert!(text.contains("notifications/progress"), "{text}");
    let last = r.json();
    assert_eq!(last["id"], json!(9), "{text}");
    assert_eq!(last["error"]["code"], json!(-31504), "{text}");
    cancelled(&bodies, 9).await;
    balance_holds_three_calls(gw, &auth).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `body` with `auth` over a raw connection and returns it once the upstream has the call.
async fn start_call(
    gw: SocketAddr,
    bodies: &Bodies,
    auth: &str,
    body: &Value,
    id: i64,
) -> tokio::net::TcpStream {
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {gw}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nauthorization: {auth}\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bodies.lock().iter().any(|b| b["id"] == json!(id)) {
        assert!(
            Instant::now() < deadline,
            "the upstream never got call {id}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_is_refunded_and_the_call_cancelled() {
    let (up, bodies) = start_hung_upstream().await;
    let dir = data_dir();
    // Limits far away: only the caller's leaving ends these calls.
    let gw = start_gateway_with(&config(up, &dir, 60, 60)).await;
    let auth = buy(gw, &dir, &call(1, "hang", json!({})), &[]).await;
    // Before the head.
    let s = start_call(gw, &bodies, &auth, &call(21, "hang", json!({})), 21).await;
    drop(s);
    cancelled(&bodies, 21).await;
    // After an SSE head, before the call's response.
    let mut s = start_call(gw, &bodies, &auth, &call(22, "silent", json!({})), 22).await;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("notifications/progress") {
        assert!(Instant::now() < deadline, "no progress event");
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    drop(s);
    cancelled(&bodies, 22).await;
    balance_holds_three_calls(gw, &auth).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Python SDK's stateful server on 127.0.0.1:0 (it reports its port); ends with the guard.
struct PyServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_stateful_upstream() -> PyServer {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join(".venv/bin/python");
    assert!(py.exists(), "needs {} with the mcp SDK", py.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/stateful_upstream.py");
    let mut child = Command::new(py)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port: u16 = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port from the server: {line:?}"));
    PyServer {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// `initialize` and `notifications/initialized` through the gateway: the session id.
async fn open_session(gw: SocketAddr) -> String {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},
        "clientInfo":{"name":"t","version":"1"}}});
    let r = post(gw, &[], &init).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = r.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let r = post(
        gw,
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    sid
}

/// A credential spent on a call the stateful upstream refused (`400 Missing session ID`)
/// works on the retry that carries a session, once; a tool's error result consumes one.
async fn refused_then_retried(gw: SocketAddr, dir: &Path, pow: bool) {
    let body = call(5, "echo", json!({"text": "hi"}));
    let auth = if pow {
        let r = post(gw, &[], &body).await;
        assert_eq!(r.status, 402, "{}", r.text());
        let (token, nonces) = solve(&r.text());
        turnpike_client::authorization_value(&token, &nonces)
    } else {
        buy(gw, dir, &body, &[]).await
    };
    // No session: the upstream refuses the request itself.
    let r = post(gw, &[("authorization", &auth)], &body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Missing session ID"), "{}", r.text());
    // The same credential, now with a session: served.
    let sid = open_session(gw).await;
    let with = [
        ("authorization", auth.as_str()),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let r = post(gw, &with, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "echo hi");
    // Served calls consume it (refused in band: the request carries a session).
    let r = post(gw, &with, &body).await;
    assert!(r.text().contains("already used"), "{}", r.text());
    assert!(!r.text().contains("echo hi"), "{}", r.text());
    // A tool's error result is an answer: it consumes the credential too.
    let bad = call(6, "echo", json!({"wrong": 1}));
    let auth = if pow {
        let r = post(gw, &[], &bad).await;
        let (token, nonces) = solve(&r.text());
        turnpike_client::authorization_value(&token, &nonces)
    } else {
        buy(gw, dir, &bad, &[]).await
    };
    let with = [
        ("authorization", auth.as_str()),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let r = post(gw, &with, &bad).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["isError"], json!(true), "{}", r.text());
    let r = post(gw, &with, &bad).await;
    assert!(r.text().contains("already used"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_upstream_refusal_does_not_spend_the_credential() {
    let py = start_stateful_upstream();
    let dir = data_dir();
    let gw = start_gateway_with(&config(py.addr, &dir, 30, 30)).await;
    refused_then_retried(gw, &dir, true).await;
    refused_then_retried(gw, &dir, false).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stdio MCP server in a few lines of Python: every line it reads is appended to the file
/// named by its first argument; `initialize` and `tools/call` are answered, except a call to
/// `hang`, which never is.
const STDIO_SERVER: &str = r#"
import json, sys
log = open(sys.argv[1], "a")
for line in sys.stdin:
    if not line.strip():
        continue
    log.write(line); log.flush()
    m = json.loads(line)
    i = m.get("id")
    if i is None or "method" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
             "serverInfo": {"name": "inline", "version": "0"}}
    elif m["method"] == "tools/call" and m["params"].get("name") == "hang":
        continue
    else:
        r = {"content": [{"type": "text", "text": "ok"}]}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": i, "result": r}) + "\n")
    sys.stdout.flush()
"#;

/// Waits (bounded) until the stdio child read `notifications/cancelled` for `id`.
async fn child_cancelled(log: &Path, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let seen = text.lines().any(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| {
                v["method"] == "notifications/cancelled" && v["params"]["requestId"] == json!(id)
            })
        });
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "child never got the cancellation of {id}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Solves the challenge in `r` (HTTP 402 or in band): the `Authorization` value.
fn pow_auth(r: &Reply) -> String {
    let (token, nonces) = solve(&r.text());
    turnpike_client::authorization_value(&token, &nonces)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_upstream_is_bounded_cancelled_and_refusals_cost_nothing() {
    let dir = data_dir();
    let log = dir.join("child.log");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join(".venv/bin/python");
    let cmd = serde_json::to_string(&vec![
        py.display().to_string(),
        "-c".into(),
        STDIO_SERVER.into(),
        log.display().to_string(),
    ])
    .unwrap();
    let gw = start_gateway_with(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
path = "/mcp"
data_dir = "{dir}"

[upstream]
command = {cmd}
era = "2025"
response_timeout_secs = 1
stream_idle_timeout_secs = 1

[pow]
subpuzzles = 2
keys = [{{ id = 7, secret = "{KEY_HEX}" }}]

[tools.default]
pow = 3000
"#,
        dir = dir.display()
    ))
    .await;
    // Without a session the stdio upstream refuses the call: the solution is not spent.
    let ok = call(1, "ok", json!({}));
    let auth = pow_auth(&post(gw, &[], &ok).await);
    let r = post(gw, &[("authorization", &auth)], &ok).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let sid = open_session(gw).await;
    let s = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let with = |auth: &str, accept: &'static str| {
        vec![
            ("authorization", auth.to_owned()),
            ("accept", accept.to_owned()),
            ("mcp-session-id", sid.clone()),
            ("mcp-protocol-version", "2025-06-18".to_owned()),
        ]
    };
    let send_with = |h: Vec<(&'static str, String)>, body: Value| async move {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post(gw, &h, &body).await
    };
    let r = send_with(
        with(&auth, "application/json, text/event-stream"),
        ok.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "ok");
    // A call the child never answers, JSON only: 504 within the limit, the child is sent the
    // cancellation, and the solution is released (the same one passes again, to the same end).
    let hang = call(2, "hang", json!({}));
    let auth = pow_auth(&post(gw, &s, &hang).await);
    for round in 0..2 {
        let started = Instant::now();
        let r = send_with(with(&auth, "application/json"), hang.clone()).await;
        assert_eq!(r.status, 504, "round {round}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], json!(-31504));
        assert!(started.elapsed() < Duration::from_secs(5));
        child_cancelled(&log, 2).await;
    }
    // Streamed: the head comes at once, then silence: a last error event, and the cancellation.
    let hang = call(3, "hang", json!({}));
    let auth = pow_auth(&post(gw, &s, &hang).await);
    let r = send_with(with(&auth, "application/json, text/event-stream"), hang).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], json!(3), "{}", r.text());
    assert_eq!(r.json()["error"]["code"], json!(-31504), "{}", r.text());
    child_cancelled(&log, 3).await;
    let _ = std::fs::remove_dir_all(&dir);
}
