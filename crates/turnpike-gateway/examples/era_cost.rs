//! What era translation costs per message, on top of plain proxying.
//!
//! The same `tools/call` request goes N times to an in-process upstream that answers at once
//! (a canned JSON-RPC result with the request's id): once straight (what the proxy path does
//! anyway: one request in, one response body out), and once through the [`EraAdapter`] that
//! translates it — a 2025 client with a sealed session in front of a 2026-07-28 upstream
//! (session opened, `_meta` and routing headers added, the result's modern members removed),
//! and a 2026-07-28 client in front of a 2025 upstream (pooled session, `_meta` taken out,
//! `resultType` added). Five interleaved rounds of N messages each; the figure is the median
//! over rounds of (translated − straight) mean time per message.
//!
//! ```sh
//! cargo run --release -p turnpike-gateway --example era_cost [-- N]
//! ```

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Body;
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::{Service, ServiceExt};
use turnpike_gateway::era::{EraAdapter, EraOptions, EraSetting, Sealer, SessionClaims};
use turnpike_gateway::serve::BoxUpstream;

/// An upstream that answers every POST with a result carrying the request's id (and, for
/// `initialize`, a session id).
fn instant_upstream(modern: bool) -> BoxUpstream {
    tower::util::BoxCloneService::new(tower::service_fn(move |req: Request<Body>| async move {
        let bytes = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let mut result = json!({"content": [{"type": "text", "text": "hello"}], "isError": false});
        if modern {
            result["resultType"] = json!("complete");
        }
        if v.get("method").and_then(Value::as_str) == Some("initialize") {
            result = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                             "serverInfo": {"name": "instant", "version": "1"}});
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r.headers_mut()
            .insert("mcp-session-id", "upstream-session".parse().unwrap());
        Ok::<_, Infallible>(r)
    }))
}

fn call_body(i: u64, modern: bool) -> Vec<u8> {
    let mut params = json!({"name": "echo", "arguments": {"text": "hello"}});
    if modern {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        });
    }
    serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params}),
    )
    .unwrap()
}

fn request(body: Vec<u8>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body)).unwrap()
}

async fn run(svc: &mut BoxUpstream, n: u64, modern: bool, headers: &[(&str, &str)]) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(request(call_body(i, modern), headers))
            .await
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.len() > 20);
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Median over `rounds` interleaved rounds of (translated − straight) µs per message; also the
/// median straight and translated times.
async fn compare(
    straight: &mut BoxUpstream,
    adapted: &mut BoxUpstream,
    n: u64,
    modern: bool,
    headers: &[(&str, &str)],
) -> (f64, f64, f64) {
    run(straight, 2_000, modern, headers).await;
    run(adapted, 2_000, modern, headers).await;
    let (mut a, mut b, mut d) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let x = run(straight, n, modern, headers).await;
        let y = run(adapted, n, modern, headers).await;
        a.push(x);
        b.push(y);
        d.push(y - x);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|p, q| p.total_cmp(q));
        v[v.len() / 2]
    };
    (med(&mut a), med(&mut b), med(&mut d))
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // A 2025 client (sealed session) → a 2026-07-28 upstream.
        let sealer = Sealer::new([9; 32], 3600);
        let sid = sealer
            .seal(&SessionClaims {
                v: "2025-11-25".into(),
                caps: json!({"sampling": {}, "roots": {"listChanged": true}}),
                info: json!({"name": "bench", "version": "1"}),
                iat: turnpike_core::unix_now(),
                n: SessionClaims::nonce(),
            })
            .unwrap();
        let legacy_headers = [
            ("mcp-session-id", sid.as_str()),
            ("mcp-protocol-version", "2025-11-25"),
        ];
        let mut straight = instant_upstream(true);
        let mut adapted = EraAdapter::new(
            instant_upstream(true),
            EraOptions {
                setting: EraSetting::Modern,
                sealer,
                ..EraOptions::default()
            },
        )
        .boxed();
        let (a, b, d) = compare(&mut straight, &mut adapted, n, false, &legacy_headers).await;
        println!("2025 client -> 2026-07-28 upstream: straight {a:.2} µs/msg, translated {b:.2} µs/msg, translation {d:.2} µs/msg (median of 5 rounds of {n})");

        // A 2026-07-28 client → a 2025 upstream (pooled session).
        let modern_headers = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ];
        let mut straight = instant_upstream(false);
        let mut adapted = EraAdapter::new(
            instant_upstream(false),
            EraOptions {
                setting: EraSetting::Legacy,
                ..EraOptions::default()
            },
        )
        .boxed();
        let (a, b, d) = compare(&mut straight, &mut adapted, n, true, &modern_headers).await;
        println!("2026-07-28 client -> 2025 upstream: straight {a:.2} µs/msg, translated {b:.2} µs/msg, translation {d:.2} µs/msg (median of 5 rounds of {n})");
    });
}
