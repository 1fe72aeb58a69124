//! The gateway's rate limits over real HTTP, in front of a real rmcp server: the 429 and its
//! header fields, `RateLimit` on successful responses, discovery kept apart from tool calls,
//! the in-flight cap, the loop brake.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};
use support::*;

/// The test config in front of a fresh upstream (`json` responses unless SSE is needed), with
/// `extra` tables appended.
async fn gateway(json: bool, extra: &str) -> std::net::SocketAddr {
    let (up, _log) = start_upstream(json).await;
    start_gateway_with(&format!("{}\n{extra}", config_text(up, ""))).await
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_exhaustion_is_a_429_with_exact_fields() {
    let gw = gateway(
        true,
        r#"
[limits.tools.echo]
burst = 3
rate = "1/min"
"#,
    )
    .await;
    for i in 0..3 {
        let r = post(gw, &[], &call(i, "echo", json!({"text": format!("t{i}")}))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            header(&r, "ratelimit-policy"),
            r#""tool:echo";q=3;w=180, "concurrency";q=16;qu="concurrent-requests""#
        );
        let remaining = 2 - i;
        let rl = header(&r, "ratelimit");
        assert!(
            rl.starts_with(&format!("\"tool:echo\";r={remaining};t=")),
            "{rl}"
        );
        assert!(rl.ends_with(", \"concurrency\";r=15"), "{rl}");
    }
    let r = post(gw, &[], &call(9, "echo", json!({"text": "t9"}))).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(header(&r, "content-type"), "application/json");
    // The fourth call fits one emission interval (60 s) after the burst.
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert_eq!(
        header(&r, "ratelimit-policy"),
        r#""tool:echo";q=3;w=180, "concurrency";q=16;qu="concurrent-requests""#
    );
    assert_eq!(
        header(&r, "ratelimit"),
        format!("\"tool:echo\";r=0;t={retry}, \"concurrency\";r=16")
    );
    let v = r.json();
    assert_eq!(v["id"], 9);
    assert_eq!(v["error"]["code"], -31429);
    let data = &v["error"]["data"];
    assert_eq!(data["retry_after"], retry);
    assert_eq!(data["reason"], "rate");
    assert_eq!(data["policy"], "tool:echo");
    assert_eq!(data["limits"][0]["policy"], "tool:echo");
    assert_eq!(data["limits"][0]["quota"], 3);
    assert_eq!(data["limits"][0]["remaining"], 0);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("after {retry} s")));

    // In band (an MCP client mid-session): HTTP 200, an isError result saying when to retry,
    // and the same fields.
    let r = post(
        gw,
        &[("mcp-protocol-version", "2025-11-25")],
        &call(10, "echo", json!({"text": "t10"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 59);
    assert!(header(&r, "ratelimit").starts_with("\"tool:echo\";r=0;"));
    let v = r.json();
    assert_eq!(v["result"]["isError"], true);
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("retry"), "{text}");
    assert_eq!(
        v["result"]["structuredContent"]["turnpike"]["rate_limit"]["reason"],
        "rate"
    );
    // A forced HTTP delivery keeps the 429.
    let r = post(
        gw,
        &[
            ("mcp-protocol-version", "2025-11-25"),
            ("turnpike-challenge", "http"),
        ],
        &call(11, "echo", json!({"text": "t11"})),
    )
    .await;
    assert_eq!(r.status, 429);

    // Another tool has its own bucket (the default: burst 50).
    let r = post(
        gw,
        &[],
        &json!({"jsonrpc":"2.0","id":12,"method":"tools/call",
        "params":{"name":"slow","arguments":{}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(header(&r, "ratelimit").starts_with("\"tool:slow\";r=49;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_has_its_own_budget() {
    let gw = gateway(
        true,
        r#"
[limits.tools.echo]
burst = 2
rate = "1/min"
[limits.discovery]
burst = 5
rate = "1/min"
"#,
    )
    .await;
    for i in 0..5 {
        let method = if i % 2 == 0 { "ping" } else { "tools/list" };
        let r = post(gw, &[], &json!({"jsonrpc":"2.0","id":i,"method":method})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(header(&r, "ratelimit-policy").starts_with("\"discovery\";q=5;"));
    }
    let r = post(gw, &[], &json!({"jsonrpc":"2.0","id":6,"method":"ping"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["data"]["policy"], "discovery");
    // The reconnect storm did not touch the tool budget.
    for i in 0..2 {
        let r = post(
            gw,
            &[],
            &call(20 + i, "echo", json!({"text": format!("{i}")})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = post(gw, &[], &call(30, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["data"]["policy"], "tool:echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_cap_holds_until_the_body_ends() {
    let gw = gateway(
        false,
        r#"
[limits.default]
burst = 50
rate = "20/s"
concurrency = 1
"#,
    )
    .await;
    let slow = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"slow","arguments":{},"_meta":{"progressToken":"p"}}});
    // The slow call streams its answer (SSE): its slot is held while the body streams.
    let resp = send_streaming(request(
        gw,
        Method::POST,
        &[("accept", "application/json, text/event-stream")],
        slow.to_string(),
    ))
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("ratelimit"));
    let r = post(gw, &[], &call(2, "echo", json!({"text": "meanwhile"}))).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["data"]["reason"], "concurrency");
    assert_eq!(v["error"]["data"]["retry_after"], 1);
    assert_eq!(header(&r, "retry-after"), "1");
    // Read the slow body to its end: the slot comes back.
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("done"));
    let mut ok = false;
    for _ in 0..50 {
        let r = post(gw, &[], &call(3, "echo", json!({"text": "after"}))).await;
        if r.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot was given back once the body ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_brake_slows_identical_calls_only() {
    let gw = gateway(
        true,
        r#"
[limits.loop_brake]
tools = ["echo"]
max_repeats = 3
window_secs = 60
"#,
    )
    .await;
    // echo is free: watched only because `tools` opts it in.
    let same = call(1, "echo", json!({"text": "again"}));
    for _ in 0..3 {
        assert_eq!(post(gw, &[], &same).await.status, 200);
    }
    let r = post(gw, &[], &same).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let v: Value = r.json();
    assert_eq!(v["error"]["data"]["reason"], "loop_brake");
    assert_eq!(v["error"]["data"]["policy"], "repeat");
    let retry = v["error"]["data"]["retry_after"].as_u64().unwrap();
    assert!(
        (19..=20).contains(&retry),
        "one per window/max_repeats: {retry}"
    );
    assert!(header(&r, "ratelimit-policy").contains("\"repeat\";q=3;w=60"));
    // Other arguments are not braked.
    let r = post(gw, &[], &call(2, "echo", json!({"text": "different"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The default brake watches calls that cost something: a free polling tool (same arguments,
/// or none at all) called 30 times within a minute from one address passes; a tool priced in
/// proof-of-work looping identical arguments is braked after 10, each call paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_brake_lets_polling_through_and_brakes_a_paid_loop() {
    let gw = gateway(true, "").await;
    let poll = call(1, "echo", json!({"text": "status?"}));
    for i in 0..30 {
        let r = post(gw, &[], &poll).await;
        assert_eq!(r.status, 200, "poll {i}: {}", r.text());
        assert!(!header(&r, "ratelimit-policy").contains("repeat"));
    }
    // slow takes no arguments; ten at a time (under the in-flight cap of 16).
    let none = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"slow","arguments":{}}});
    for round in 0..3 {
        let replies = futures_util::future::join_all((0..10).map(|_| post(gw, &[], &none))).await;
        for r in replies {
            assert_eq!(r.status, 200, "round {round}: {}", r.text());
        }
    }

    let dear = call(3, "dear", json!({"n": 7}));
    for i in 0..11 {
        let r = post(gw, &[], &dear).await;
        assert_eq!(r.status, 402, "a challenge: {}", r.text());
        let (token, nonces) = solve(&r.text());
        let auth = turnpike_client::authorization_value(&token, &nonces);
        let r = paid(gw, &auth, &dear).await;
        if i < 10 {
            assert_eq!(r.status, 200, "paid call {i}: {}", r.text());
            continue;
        }
        assert_eq!(r.status, 429, "the 11th identical paid call: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["data"]["reason"], "loop_brake");
        assert_eq!(v["error"]["data"]["policy"], "repeat");
        assert!(header(&r, "ratelimit-policy").contains("\"repeat\";q=10;w=60"));
    }
    // Other arguments are a different call.
    let other = call(4, "dear", json!({"n": 8}));
    let r = post(gw, &[], &other).await;
    let (token, nonces) = solve(&r.text());
    let r = paid(
        gw,
        &turnpike_client::authorization_value(&token, &nonces),
        &other,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_off_adds_nothing() {
    let gw = gateway(true, "[limits]\nenabled = false\n").await;
    for i in 0..15 {
        let r = post(gw, &[], &call(i, "echo", json!({"text": "same"}))).await;
        assert_eq!(r.status, 200);
        assert!(!r.headers.contains_key("ratelimit"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_fails_closed_or_open() {
    // A Redis nobody listens on: closed → 503 / -31503; open → through, without fields.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = format!("[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/0\"\ntimeout_ms = 100\n");
    let gw = gateway(true, &store).await;
    let r = post(gw, &[], &call(1, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -31503);
    let gw = gateway(true, &format!("{store}[limits]\nfailure_mode = \"open\"\n")).await;
    let r = post(gw, &[], &call(1, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.headers.contains_key("ratelimit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_puzzle_solution_is_not_spent() {
    let gw = gateway(
        true,
        r#"
[limits.tools.dear]
burst = 1
rate = "4/s"
[limits.loop_brake]
enabled = false
"#,
    )
    .await;
    let req = call(1, "dear", json!({"n": 1}));
    let mut solved = Vec::new();
    for _ in 0..2 {
        let r = post(gw, &[], &req).await;
        assert_eq!(r.status, 402, "a challenge does not count: {}", r.text());
        let (token, nonces) = solve(&r.text());
        solved.push(turnpike_client::authorization_value(&token, &nonces));
    }
    let r = paid(gw, &solved[0], &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The burst is used: the second solution is refused by the limit before it is verified…
    let r = paid(gw, &solved[1], &req).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["policy"], "tool:dear");
    // …so it is still good once the limit allows (one call per 250 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = paid(gw, &solved[1], &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "dear 1");
}

async fn paid(gw: std::net::SocketAddr, auth: &str, req: &Value) -> Reply {
    post(
        gw,
        &[("authorization", auth), ("turnpike-challenge", "http")],
        req,
    )
    .await
}

const ADMIN_TOKEN: &str = "limits-test-admin-token-0123456789";

/// A gateway with `extra` and an admin listener: its address and the admin's.
async fn gateway_with_admin(extra: &str) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let (up, _log) = start_upstream(true).await;
    let text = format!(
        "{}\n{extra}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n",
        config_text(up, "")
    );
    let cfg = turnpike_gateway::parse(&text, "t.toml").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let (_, admin) = support::serve_ready(listener, cfg).await;
    (gw, admin.unwrap())
}

/// One series of the gateway's metrics text (0 when absent).
async fn series(admin: std::net::SocketAddr, name: &str) -> u64 {
    let req = http::Request::get(format!("http://{admin}/metrics"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let text = send(req).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// `[limits] mode = "shadow"`: the same traffic that enforcing refuses 429 is let through, and
/// counted, call for call, as what the limits would have refused; a puzzle solution used over a
/// limit in shadow mode is spent like any other (a dry run never makes a credential reusable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_limits_refuse_nothing_and_count_what_enforcing_refuses() {
    let limits = r#"
[limits.tools.echo]
burst = 3
rate = "1/min"
[limits.tools.dear]
burst = 1
rate = "1/min"
[limits.loop_brake]
enabled = false
"#;
    let (enforcing, enforcing_admin) = gateway_with_admin(limits).await;
    let (shadow, shadow_admin) = gateway_with_admin(&limits.replace(
        "[limits.tools.echo]",
        "[limits]\nmode = \"shadow\"\n[limits.tools.echo]",
    ))
    .await;
    let mut refused = 0u64;
    for i in 0..10 {
        let req = call(i, "echo", json!({"text": format!("t{i}")}));
        let r = post(enforcing, &[], &req).await;
        match r.status.as_u16() {
            200 => {}
            429 => refused += 1,
            s => panic!("{s}: {}", r.text()),
        }
        let r = post(shadow, &[], &req).await;
        assert_eq!(r.status, 200, "shadow mode refused: {}", r.text());
        assert_eq!(r.json()["result"]["content"][0]["text"], format!("t{i}"));
    }
    assert_eq!(refused, 7);
    assert_eq!(
        series(
            enforcing_admin,
            "turnpike_limit_hits_total{source=\"gateway\"}"
        )
        .await,
        refused
    );
    assert_eq!(
        series(enforcing_admin, "turnpike_limit_would_refuse_total").await,
        0
    );
    assert_eq!(
        series(shadow_admin, "turnpike_limit_would_refuse_total").await,
        refused
    );
    assert_eq!(
        series(
            shadow_admin,
            "turnpike_limit_hits_total{source=\"gateway\"}"
        )
        .await,
        0
    );

    // Puzzle-paid calls over the limit: let through, and each solution spent.
    let req = call(20, "dear", json!({"n": 1}));
    let mut solved = Vec::new();
    for _ in 0..2 {
        let r = post(shadow, &[], &req).await;
        assert_eq!(r.status, 402, "{}", r.text());
        let (token, nonces) = solve(&r.text());
        solved.push(turnpike_client::authorization_value(&token, &nonces));
    }
    for s in &solved {
        let r = paid(shadow, s, &req).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        series(shadow_admin, "turnpike_limit_would_refuse_total").await,
        refused + 1
    );
    let r = paid(shadow, &solved[1], &req).await;
    assert_ne!(
        r.status, 200,
        "a solution used over a shadow limit stays spent"
    );
}
