//! The real gate in front of a real rmcp server, over real HTTP.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::Method;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::*;

const MCP_SESSION: (&str, &str) = ("mcp-protocol-version", "2025-11-25");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_calls_pass_untouched() {
    let (gw, log) = setup(true, "").await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"text":"hi"},"name":"echo"}}"#;
    let r = send(request(gw, Method::POST, &[], body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "hi");
    let seen = log.lock().last().cloned().unwrap();
    assert_eq!(
        seen.body,
        body.as_bytes(),
        "the upstream got the exact bytes"
    );
    let host = log_host(&seen);
    assert!(
        host.starts_with("127.0.0.1:") && host != gw.to_string(),
        "Host is rewritten to the upstream's: {host}"
    );

    let r = post(gw, &[], &json!({"jsonrpc":"2.0","id":2,"method":"ping"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], json!({}));
    // A notification passes free (202 from the upstream).
    let r = post(
        gw,
        &[],
        &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
}

fn log_host(seen: &Seen) -> String {
    seen.headers["host"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priced_call_gets_402_with_the_exact_shape() {
    let (gw, log) = setup(true, "").await;
    let before = log.lock().len();
    let r = post(gw, &[], &call(5, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 402);
    assert_eq!(r.headers["content-type"], "application/json");
    let www: Vec<_> = r.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(www.len(), 1);
    let www = www[0].to_str().unwrap();
    assert!(www.starts_with("PoW challenge=\""), "{www}");
    for p in [
        "algorithm=\"sha256\"",
        "effort=\"3000\"",
        "subpuzzles=\"2\"",
        "target=\"",
        "expires=\"",
        "expected_seconds=\"",
    ] {
        assert!(www.contains(p), "{p} in {www}");
    }
    let v = r.json();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 5);
    assert_eq!(v["error"]["code"], -31402);
    assert!(v["error"]["message"].as_str().unwrap().len() > 10);
    let c = &v["error"]["data"]["challenges"][0];
    assert_eq!(c["rail"], "pow");
    assert_eq!(c["scheme"], "PoW");
    assert_eq!(c["algorithm"], "sha256");
    assert_eq!(c["effort"], 3000);
    assert_eq!(c["subpuzzles"], 2);
    assert_eq!(c["target"].as_str().unwrap().len(), 16);
    assert!(c["expires"].as_u64().unwrap() > 0);
    assert!(c["expected_seconds"].is_number());
    assert_eq!(c["www_authenticate"], www);
    assert!(www.contains(c["challenge"].as_str().unwrap()));
    assert_eq!(v["error"]["data"]["refusals"], json!([]));
    assert_eq!(
        log.lock().len(),
        before,
        "a refused call never reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_band_mode_for_mcp_clients() {
    let (gw, _log) = setup(true, "").await;
    let r = post(gw, &[MCP_SESSION], &call(9, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let v = r.json();
    assert_eq!(v["id"], 9);
    assert_eq!(v["result"]["isError"], true);
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("turnpike/pow"), "{text}");
    let c = &v["result"]["structuredContent"]["turnpike"]["challenges"][0];
    assert_eq!(c["rail"], "pow");
    // The override header wins over auto.
    let r = post(
        gw,
        &[MCP_SESSION, ("turnpike-challenge", "http")],
        &call(9, "dear", json!({"n": 1})),
    )
    .await;
    assert_eq!(r.status, 402);
    // A configured in-band mode applies without session headers.
    let (gw2, _) = setup(true, "challenge_mode = \"in-band\"").await;
    let r = post(gw2, &[], &call(1, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["isError"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solve_retry_replay_rebind_tamper() {
    let (gw, log) = setup(true, "").await;
    let req = call(1, "dear", json!({"n": 5}));
    let r = post(gw, &[], &req).await;
    assert_eq!(r.status, 402);
    let (token, nonces) = solve(&r.text());
    let auth = turnpike_client::authorization_value(&token, &nonces);

    // Solved: the upstream answers, and never sees the credential.
    let r = post(
        gw,
        &[("authorization", &auth), ("turnpike-challenge", "http")],
        &req,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "dear 5");
    let seen = log.lock().last().cloned().unwrap();
    assert!(seen.headers.get("authorization").is_none());
    assert!(seen.headers.get("turnpike-challenge").is_none());

    // Replay: refused as already used, with a fresh challenge.
    let r = post(gw, &[("authorization", &auth)], &req).await;
    assert_eq!(r.status, 402);
    let v = r.json();
    assert_eq!(v["error"]["data"]["refusals"][0]["rail"], "pow");
    assert!(
        v["error"]["data"]["refusals"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{v}"
    );
    assert_eq!(
        v["error"]["data"]["challenges"].as_array().unwrap().len(),
        1
    );

    // Other arguments: the solution is bound to the call it was issued for.
    let r = post(gw, &[], &req).await;
    let (token, nonces) = solve(&r.text());
    let auth = turnpike_client::authorization_value(&token, &nonces);
    let r = post(
        gw,
        &[("authorization", &auth)],
        &call(1, "dear", json!({"n": 6})),
    )
    .await;
    assert_eq!(r.status, 402);
    assert!(
        r.json()["error"]["data"]["refusals"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("another call"),
        "{}",
        r.text()
    );

    // Tampered token: 401.
    let mut bad = token.clone().into_bytes();
    bad[20] = if bad[20] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let auth = turnpike_client::authorization_value(&bad, &nonces);
    let r = post(gw, &[("authorization", &auth)], &req).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -31401);
    assert!(r.headers.get("www-authenticate").is_some());
    // Malformed credential: 401 too.
    let r = post(gw, &[("authorization", "PoW challenge=\"x\"")], &req).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_credentials_are_stripped() {
    let (gw, log) = setup(true, "").await;
    let mut req = call(3, "dear", json!({"n": 8}));
    let r = post(gw, &[MCP_SESSION], &req).await;
    assert_eq!(r.status, 200);
    let (token, nonces) = solve(&r.text());
    req["params"]["_meta"] = json!({"progressToken": "p1"});
    assert!(turnpike_client::attach_meta(&mut req, &token, &nonces));
    let r = post(gw, &[MCP_SESSION], &req).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        "dear 8",
        "{}",
        r.text()
    );
    let seen = log.lock().last().cloned().unwrap();
    let up: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(up["params"]["_meta"], json!({"progressToken": "p1"}));
    assert!(!String::from_utf8_lossy(&seen.body).contains("turnpike/"));
    assert_eq!(
        seen.headers["content-length"].to_str().unwrap(),
        seen.body.len().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_and_transport_errors() {
    let (gw, log) = setup(true, "").await;
    let before = log.lock().len();
    let batch = json!([{"jsonrpc":"2.0","id":1,"method":"ping"}]);
    let r = post(gw, &[], &batch).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32600);
    assert_eq!(
        r.json()["error"]["message"],
        "batch requests are not accepted"
    );

    let r = send(request(gw, Method::POST, &[], "{not json")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32700);

    let dup =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"dear"}}"#;
    let r = send(request(gw, Method::POST, &[], dup)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32600);

    let big = json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"y".repeat(70_000)}});
    let r = post(gw, &[], &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], -31413);

    let r = post(
        gw,
        &[("content-type", "text/plain")],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status, 415);
    let r = post(
        gw,
        &[("content-type", "")],
        &json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(log.lock().len(), before, "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_origin_rules() {
    let (gw, log) = setup(true, "").await;
    let before = log.lock().len();
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    let r = post(gw, &[("host", "evil.example")], &ping).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], -31403);
    let r = post(gw, &[("origin", "https://evil.example")], &ping).await;
    assert_eq!(r.status, 403);
    let r = send(request(
        gw,
        Method::GET,
        &[("host", "evil.example"), ("accept", "text/event-stream")],
        "",
    ))
    .await;
    assert_eq!(r.status, 403, "GET is Host-checked too");
    assert_eq!(log.lock().len(), before);
    let r = post(
        gw,
        &[
            ("host", "localhost:1234"),
            ("origin", "http://localhost:3000"),
        ],
        &ping,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_headers_of_2026_07_28() {
    let (gw, log) = setup(true, "").await;
    let before = log.lock().len();
    let v = ("mcp-protocol-version", "2026-07-28");
    let req = call(1, "echo", json!({"text": "x"}));
    let r = post(
        gw,
        &[v, ("mcp-method", "tools/call"), ("mcp-name", "dear")],
        &req,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32020);
    assert_eq!(r.json()["id"], 1);
    let r = post(
        gw,
        &[v, ("mcp-method", "tools/list"), ("mcp-name", "echo")],
        &req,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = post(gw, &[v, ("mcp-name", "echo")], &req).await;
    assert_eq!(r.status, 400, "Mcp-Method is required");
    assert_eq!(log.lock().len(), before);
    // Under 2025-11-25 the headers are not checked.
    let r = post(gw, &[MCP_SESSION, ("mcp-method", "tools/list")], &req).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_is_annotated_json_and_sse() {
    for json_mode in [true, false] {
        let (gw, _log) = setup(json_mode, "").await;
        let r = post(
            gw,
            &[],
            &json!({"jsonrpc":"2.0","id":"l","method":"tools/list"}),
        )
        .await;
        assert_eq!(r.status, 200);
        let v = r.json();
        let tools = v["result"]["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 3, "{v}");
        for t in tools {
            let price = &t["_meta"]["turnpike/price"];
            match t["name"].as_str().unwrap() {
                "echo" | "slow" => assert_eq!(price, &json!({"free": true, "offers": []})),
                "dear" => {
                    assert_eq!(price["free"], false);
                    assert_eq!(price["offers"][0]["rail"], "pow");
                    assert_eq!(price["offers"][0]["effort"], 3000);
                    assert!(price["offers"][0]["expected_seconds"].is_number());
                }
                other => panic!("unexpected tool {other}"),
            }
        }
        if !json_mode {
            assert!(r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_progress_streams_through_event_by_event() {
    let (gw, _log) = setup(false, "").await;
    let req = json!({"jsonrpc":"2.0","id":4,"method":"tools/call",
        "params":{"name":"slow","arguments":{},"_meta":{"progressToken":"t"}}});
    let started = Instant::now();
    let resp = send_streaming(request(gw, Method::POST, &[], req.to_string())).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut arrivals: Vec<(Duration, Value)> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        buf.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(i) = buf.find("\n\n") {
            let event: String = buf.drain(..i + 2).collect();
            for line in event.lines() {
                if let Some(d) = line.strip_prefix("data:") {
                    if let Ok(v) = serde_json::from_str::<Value>(d.trim()) {
                        arrivals.push((started.elapsed(), v));
                    }
                }
            }
        }
    }
    let progress: Vec<_> = arrivals
        .iter()
        .filter(|(_, v)| v["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{arrivals:?}");
    let (final_at, final_msg) = arrivals.last().unwrap();
    assert_eq!(final_msg["id"], 4);
    assert_eq!(final_msg["result"]["content"][0]["text"], "done");
    // Each progress event arrived on its own, about one step apart, before the result.
    let first = progress[0].0;
    assert!(first < *final_at);
    assert!(
        *final_at - first >= SLOW_STEP * 2 - Duration::from_millis(30),
        "events were buffered: {arrivals:?}"
    );
    assert!(
        progress[1].0 - progress[0].0 >= SLOW_STEP - Duration::from_millis(40),
        "{arrivals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_pass_and_unreachable_upstream_is_502() {
    let (gw, log) = setup(false, "").await;
    let r = send(request(
        gw,
        Method::DELETE,
        &[("authorization", "Bearer secret")],
        "",
    ))
    .await;
    assert_ne!(r.status, 403);
    let seen = log.lock().last().cloned().unwrap();
    assert_eq!(seen.method, Method::DELETE);
    assert!(
        seen.headers.get("authorization").is_none(),
        "credentials never go upstream"
    );

    // Nothing listens on the upstream port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap();
    drop(dead);
    let gw = start_gateway_with(&config_text(port, "")).await;
    let r = post(gw, &[], &json!({"jsonrpc":"2.0","id":1,"method":"ping"})).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], -31502);
    assert_eq!(r.json()["id"], 1, "the error carries the request's id");
    // Paths other than the endpoint are not served.
    let mut req = request(gw, Method::POST, &[], "{}");
    *req.uri_mut() = format!("http://{gw}/other").parse().unwrap();
    assert_eq!(send(req).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_ceiling_fails_closed_with_503() {
    let (up, log) = start_upstream(true).await;
    let text = config_text(up, "").replace(
        "[tools.default]",
        "[pow.load]\nceiling = 100\n[tools.default]",
    );
    let gw = start_gateway_with(&text).await;
    let r = post(gw, &[], &call(1, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -31503);
    assert!(r.headers.get("www-authenticate").is_none());
    assert!(log.lock().is_empty(), "nothing was forwarded");
    // tools/list still answers, offering nothing for the priced tool.
    let r = post(
        gw,
        &[],
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let tools = r.json()["result"]["tools"].as_array().cloned().unwrap();
    let dear = tools.iter().find(|t| t["name"] == "dear").unwrap();
    assert_eq!(
        dear["_meta"]["turnpike/price"],
        json!({"free": false, "offers": []})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, _log) = start_upstream(true).await;
    let text = config_text(
        up,
        "header_read_timeout_secs = 1\nbody_read_timeout_secs = 1",
    );
    let gw = start_gateway_with(&text).await;

    // A request head that never finishes: the connection is closed after the timeout.
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the gateway kept a half-sent head open");
    assert!(started.elapsed() >= Duration::from_millis(800));

    // A body that never finishes: 408.
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer within the time limit")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}
