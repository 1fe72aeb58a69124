//! The operator's side in process: `/metrics` moves as calls happen, request ids and trace
//! context reach the upstream, the admin token is required, and a reload under load keeps every
//! in-flight call while refusing what needs a restart.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use support::{call, post, send, solve};
use turnpike_gateway::reload::{LiveGate, ReloadError};

const TOKEN: &str = "test-admin-token-0123456789";

fn config(upstream: SocketAddr, default_pow: u64) -> String {
    support::config_text(upstream, "").replace(
        "[tools.default]\npow = 3000",
        &format!("[tools.default]\npow = {default_pow}\n[tools.dear]\npow = {default_pow}"),
    ) + &format!(
        "\n[limits]\nenabled = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nmetrics_public = false\n"
    )
}

struct Running {
    gw: SocketAddr,
    admin: SocketAddr,
    live: Arc<LiveGate>,
    log: support::Log,
    upstream: SocketAddr,
}

async fn start(default_pow: u64) -> Running {
    let (upstream, log) = support::start_upstream(true).await;
    let cfg = turnpike_gateway::parse(&config(upstream, default_pow), "t.toml").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let (live, admin) = support::serve_ready(listener, cfg).await;
    Running {
        gw,
        admin: admin.unwrap(),
        live,
        log,
        upstream,
    }
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> support::Reply {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    send(b.body(Full::new(Bytes::new())).unwrap()).await
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_trace_context_reaches_the_upstream() {
    let r = start(3000).await;
    assert_eq!(
        get(r.admin, "/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let before = get(r.admin, "/metrics", Some(TOKEN)).await.text();

    // Challenged, then solved.
    let first = post(r.gw, &[], &call(1, "dear", json!({"n": 2}))).await;
    assert_eq!(first.status, StatusCode::PAYMENT_REQUIRED);
    let (challenge, nonces) = solve(&first.text());
    let nonces: Vec<String> = nonces.iter().map(u64::to_string).collect();
    let auth = format!(
        "PoW challenge=\"{challenge}\", solution=\"{}\"",
        nonces.join(",")
    );
    let paid = post(
        r.gw,
        &[("authorization", &auth)],
        &call(2, "dear", json!({"n": 2})),
    )
    .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text());
    // Free, the trace context in _meta only.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let body = json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"traceparent":tp}}});
    let free = post(r.gw, &[("x-request-id", "abc-123")], &body).await;
    assert_eq!(free.status, StatusCode::OK);
    assert_eq!(free.headers["x-request-id"], "abc-123");
    let seen = r.log.lock().last().cloned().unwrap();
    assert_eq!(seen.headers["traceparent"], tp);
    assert_eq!(seen.headers["x-request-id"], "abc-123");
    // The solution went nowhere near the upstream.
    assert!(!r
        .log
        .lock()
        .iter()
        .any(|s| s.headers.contains_key("authorization")));

    let after = get(r.admin, "/metrics", Some(TOKEN)).await.text();
    let d = |name: &str| series(&after, name) - series(&before, name);
    let calls = |tool: &str, rail: &str, outcome: &str| {
        format!("turnpike_calls_total{{method=\"tools/call\",tool=\"{tool}\",rail=\"{rail}\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(d(&calls("dear", "none", "challenged")), 1.0, "{after}");
    assert_eq!(d(&calls("dear", "pow", "passed")), 1.0);
    assert_eq!(d(&calls("echo", "none", "passed")), 1.0);
    assert_eq!(d("turnpike_pow_puzzles_issued_total"), 1.0);
    assert_eq!(d("turnpike_pow_puzzles_solved_total"), 1.0);
    assert_eq!(d("turnpike_upstream_duration_seconds_count"), 2.0);
    assert!(series(&after, "turnpike_pow_effort") >= 3000.0);
    assert_eq!(series(&after, "turnpike_calls_in_flight"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token() {
    let r = start(3000).await;
    assert_eq!(
        get(r.admin, "/admin/api/summary", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
    assert_eq!(
        get(r.admin, "/admin/api/summary", Some(&wrong))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let ok = get(r.admin, "/admin/api/summary", Some(TOKEN)).await;
    assert_eq!(ok.status, StatusCode::OK);
    let v: Value = ok.json();
    assert_eq!(v["rails"], json!(["pow"]));
    assert_eq!(v["ledger"], Value::Null, "no L402 rail, no ledger");
    // The page is public and carries no data.
    let page = get(r.admin, "/admin/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("dashboard.js"));
    // No L402 rail: ledger calls say so.
    let ledger = get(r.admin, "/admin/api/ledger", Some(TOKEN)).await;
    assert_eq!(ledger.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_keeps_in_flight_calls_and_refuses_restart_changes() {
    let r = start(3000).await;
    // Slow calls in flight across the reloads.
    let mut calls = Vec::new();
    for i in 0..8 {
        let gw = r.gw;
        calls.push(tokio::spawn(async move {
            post(gw, &[], &call(100 + i, "slow", json!({}))).await
        }));
    }
    // Every one of them has reached the upstream (and is inside the old gate) before the swap.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while r
        .log
        .lock()
        .iter()
        .filter(|s| String::from_utf8_lossy(&s.body).contains("\"slow\""))
        .count()
        < 8
    {
        assert!(
            std::time::Instant::now() < deadline,
            "slow calls never reached the upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before = r.live.gate();
    let new = turnpike_gateway::parse(&config(r.upstream, 5000), "t.toml").unwrap();
    let changed = r.live.apply(new).unwrap();
    assert!(changed.contains(&"[tools]"), "{changed:?}");
    assert!(
        !Arc::ptr_eq(&before, &r.live.gate()),
        "a new gate is in force"
    );
    assert!(
        Arc::ptr_eq(&before.rails().all[0], &r.live.gate().rails().all[0]),
        "the rails are carried over"
    );
    // Changing the upstream needs a restart: refused, the new prices stay.
    let other = config(r.upstream, 7000).replace(&r.upstream.to_string(), "127.0.0.1:9");
    match r
        .live
        .apply(turnpike_gateway::parse(&other, "t.toml").unwrap())
    {
        Err(ReloadError::NeedsRestart(what)) => assert_eq!(what, vec!["[upstream]"]),
        other => panic!("restart-only change accepted: {other:?}"),
    }
    let challenge = post(r.gw, &[], &call(1, "dear", json!({"n": 1}))).await;
    assert!(
        challenge.text().contains("\"effort\":5000"),
        "{}",
        challenge.text()
    );
    for c in calls {
        let reply = c.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(reply.text().contains("done"), "{}", reply.text());
    }
}
