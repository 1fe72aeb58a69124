//! The gate as a tower layer directly in front of rmcp's own service, in process.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};
use turnpike_core::{Policy, Price};
use turnpike_gateway::{Gate, GateOptions, Rails, TurnpikeLayer};
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

fn request(body: &Value, auth: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn layer_gates_an_rmcp_service() {
    let mcp = StreamableHttpService::new(
        || Ok(support::Tools::new_for_tests()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    );
    let mut policy = Policy::default();
    policy
        .tools
        .insert("dear".into(), Price::of(vec![turnpike_pow::offer(500)]));
    let keys = KeyRing::from_secrets(vec![(1, [9; 32])]).unwrap();
    let pow = Arc::new(PowRail::new(
        PowConfig::default(),
        keys,
        Arc::new(MemorySpentSet::new()),
    ));
    let gate = Arc::new(Gate::with_rails(
        GateOptions::default(),
        policy,
        Rails::only(pow),
    ));
    let svc = ServiceBuilder::new()
        .layer(TurnpikeLayer::new(gate))
        .service(mcp);

    let free = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}});
    let r = svc.clone().oneshot(request(&free, None)).await.unwrap();
    assert_eq!(r.status(), 200);

    let dear = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"dear","arguments":{"n":2}}});
    let r = svc.clone().oneshot(request(&dear, None)).await.unwrap();
    assert_eq!(r.status(), 402);
    let text =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let (token, nonces) = support::solve(&text);
    let auth = turnpike_client::authorization_value(&token, &nonces);
    let r = svc
        .clone()
        .oneshot(request(&dear, Some(&auth)))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "dear 2");
}
