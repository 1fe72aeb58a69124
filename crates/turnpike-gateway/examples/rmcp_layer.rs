//! A Rust MCP server gated in-process: rmcp's own Streamable HTTP service wrapped in
//! [`TurnpikeLayer`], served with axum. No separate gateway process.
//!
//! ```sh
//! cargo run -p turnpike-gateway --example rmcp_layer            # listens on 127.0.0.1:8403
//! curl -si http://127.0.0.1:8403/mcp -H 'content-type: application/json' \
//!   -H 'accept: application/json, text/event-stream' \
//!   -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"forecast","arguments":{"city":"Oslo"}}}'
//! # → 402 with a PoW challenge; solve it (`turnpike solve`) and retry with the Authorization
//! #   header it prints. The free tool `hello` passes straight through.
//! ```

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ServerHandler};
use serde::Deserialize;
use tower::ServiceBuilder;
use turnpike_core::{Policy, Price};
use turnpike_gateway::{Gate, GateOptions, Rails, TurnpikeLayer};
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CityArgs {
    city: String,
}

#[derive(Clone)]
struct Weather {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Weather {
    fn new() -> Self {
        Weather {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Says hello (free).")]
    async fn hello(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text("hello")])
    }

    #[tool(description = "Tomorrow's weather for a city (costs proof-of-work).")]
    async fn forecast(
        &self,
        Parameters(CityArgs { city }): Parameters<CityArgs>,
    ) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(format!("{city}: sunny, 21 °C"))])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Weather {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8403".into());

    // The MCP server, exactly as rmcp serves it.
    let mcp = StreamableHttpService::new(
        || Ok(Weather::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );

    // The gate: `forecast` costs 500,000 expected hashes, everything else is free.
    let mut policy = Policy::default();
    policy.tools.insert(
        "forecast".into(),
        Price::of(vec![turnpike_pow::offer(500_000)]),
    );
    let keys = KeyRing::from_secrets(vec![(1, rand::random::<[u8; 32]>())])?;
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

    let app = axum::Router::new().route_service(
        "/mcp",
        ServiceBuilder::new()
            .layer(TurnpikeLayer::new(gate))
            .service(mcp),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("gated MCP server on http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
