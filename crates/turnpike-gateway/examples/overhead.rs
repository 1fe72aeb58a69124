//! Measures what the gate adds to a call: the same sequential `tools/call` requests, over one
//! keep-alive connection, straight at an rmcp server and through the gateway in front of it
//! (one process, loopback). Prints p50 and p99 of both and the difference.
//!
//! ```sh
//! cargo run --release -p turnpike-gateway --example overhead [-- N]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ServerHandler};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    text: String,
}

#[derive(Clone)]
struct Echo {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Echo {
    fn new() -> Self {
        Echo {
            tool_router: Self::tool_router(),
        }
    }
    #[tool(description = "Returns its text.")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(text)])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

async fn measure(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    body: &Bytes,
    n: usize,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let req = http::Request::post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(body.clone()))
            .unwrap_or_default();
        let t = Instant::now();
        let Ok(resp) = client.request(req).await else {
            continue;
        };
        let ok = resp.status().is_success();
        let _ = resp.into_body().collect().await;
        if ok {
            out.push(t.elapsed());
        }
    }
    out.sort();
    out
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let mcp = StreamableHttpService::new(
        || Ok(Echo::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    );
    let app = axum::Router::new().route_service("/mcp", mcp);
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let up_addr = up.local_addr()?;
    tokio::spawn(async move {
        use axum::serve::ListenerExt;
        let up = up.tap_io(|t| {
            let _ = t.set_nodelay(true);
        });
        let _ = axum::serve(up, app).await;
    });

    let cfg = turnpike_gateway::parse(
        &format!(
            "[upstream]\nurl = \"http://{up_addr}/mcp\"\n[pow]\nkeys = [{{ id = 1, secret = \"{}\" }}]\n[tools.default]\npow = 1000\n[tools.echo]\nfree = true\n",
            "11".repeat(32)
        ),
        "overhead.toml",
    )?;
    let gw = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gw_addr = gw.local_addr()?;
    tokio::spawn(turnpike_gateway::serve_listener(
        gw,
        cfg,
        std::future::pending(),
    ));

    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).build(http);
    let body = Bytes::from(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#,
    );
    let direct_url = format!("http://{up_addr}/mcp");
    let gate_url = format!("http://{gw_addr}/mcp");
    // Warm up both paths, then interleave rounds so both see the same machine load.
    measure(&client, &direct_url, &body, 500).await;
    measure(&client, &gate_url, &body, 500).await;
    let (mut direct, mut gated) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        direct.extend(measure(&client, &direct_url, &body, n / 5).await);
        gated.extend(measure(&client, &gate_url, &body, n / 5).await);
    }
    direct.sort();
    gated.sort();
    let (d50, g50) = (pct(&direct, 0.5), pct(&gated, 0.5));
    println!(
        "direct  p50 {:>8.1?}  p99 {:>8.1?}  ({} calls)",
        d50,
        pct(&direct, 0.99),
        direct.len()
    );
    println!(
        "gateway p50 {:>8.1?}  p99 {:>8.1?}  ({} calls)",
        g50,
        pct(&gated, 0.99),
        gated.len()
    );
    println!(
        "added at p50: {:.1?}",
        g50.checked_sub(d50).unwrap_or_default()
    );
    Ok(())
}
