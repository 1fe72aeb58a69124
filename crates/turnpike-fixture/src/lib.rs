//! A small, fast MCP server used as turnpike's demo upstream, benchmark upstream and test
//! fixture.
//!
//! Tools:
//! - `echo {text}` returns `text`;
//! - `add {a, b}` returns the sum of two integers;
//! - `slow {steps, delay_ms}` sends a `notifications/progress` every `delay_ms` milliseconds
//!   for `steps` steps (when the request carries a `progressToken`), then returns `"done"`;
//! - `whoami` returns the HTTP request headers the server received, as a JSON object, so tests
//!   can prove what a gateway in front of it forwarded (and what it stripped).
//!
//! Served over Streamable HTTP ([`http_service`], [`router`], [`serve_http`]) or stdio
//! ([`serve_stdio`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The longest `slow` call the fixture accepts: steps × delay_ms is capped at this many
/// milliseconds, so a test cannot tie the server up for long.
pub const SLOW_MAX_TOTAL_MS: u64 = 120_000;

/// The most steps `slow` accepts.
pub const SLOW_MAX_STEPS: u32 = 10_000;

/// Why the fixture could not serve.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Socket or stdio trouble.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The MCP session could not start or ended with an error.
    #[error("mcp: {0}")]
    Mcp(String),
}

/// The fixture MCP server: one value per session (HTTP) or per process (stdio).
#[derive(Clone)]
pub struct Fixture {
    tool_router: ToolRouter<Self>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// Arguments of `echo`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Arguments of `add`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// The first addend.
    pub a: i64,
    /// The second addend.
    pub b: i64,
}

/// Arguments of `slow`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SlowArgs {
    /// How many progress steps to take (default 5, at most 10000).
    #[serde(default = "default_steps")]
    pub steps: u32,
    /// Milliseconds between steps (default 100).
    #[serde(default = "default_delay_ms")]
    pub delay_ms: u64,
}

fn default_steps() -> u32 {
    5
}

fn default_delay_ms() -> u64 {
    100
}

#[tool_router]
impl Fixture {
    /// A fresh server value.
    pub fn new() -> Self {
        Fixture {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Returns the text it is given.")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(text)])
    }

    #[tool(description = "Adds two integers and returns the sum.")]
    async fn add(
        &self,
        Parameters(AddArgs { a, b }): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        match a.checked_add(b) {
            Some(sum) => Ok(CallToolResult::success(vec![ContentBlock::text(
                sum.to_string(),
            )])),
            None => Ok(CallToolResult::error(vec![ContentBlock::text(
                "the sum does not fit in a 64-bit signed integer",
            )])),
        }
    }

    #[tool(
        description = "Takes `steps` steps of `delay_ms` milliseconds each, sending a progress notification after each step when the request carries a progressToken, then returns \"done\"."
    )]
    async fn slow(
        &self,
        Parameters(args): Parameters<SlowArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.steps > SLOW_MAX_STEPS
            || u64::from(args.steps).saturating_mul(args.delay_ms) > SLOW_MAX_TOTAL_MS
        {
            return Err(ErrorData::invalid_params(
                format!(
                    "steps must be at most {SLOW_MAX_STEPS} and steps × delay_ms at most {SLOW_MAX_TOTAL_MS}"
                ),
                None,
            ));
        }
        let token = ctx.meta.get_progress_token();
        for step in 1..=args.steps {
            tokio::select! {
                _ = ctx.ct.cancelled() => {
                    return Ok(CallToolResult::error(vec![ContentBlock::text("cancelled")]));
                }
                _ = tokio::time::sleep(Duration::from_millis(args.delay_ms)) => {}
            }
            if let Some(token) = &token {
                let param = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(args.steps))
                    .with_message(format!("step {step} of {}", args.steps));
                // A client that went away cannot be told; the call still finishes.
                let _ = ctx.peer.notify_progress(param).await;
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text("done")]))
    }

    #[tool(
        description = "Returns the HTTP request headers this server received, as a JSON object of lower-case name to list of values (empty over stdio)."
    )]
    async fn whoami(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let headers = ctx
            .extensions
            .get::<http::request::Parts>()
            .map(|parts| headers_json(&parts.headers));
        let transport = if headers.is_some() { "http" } else { "stdio" };
        let body = serde_json::json!({
            "transport": transport,
            "headers": headers.unwrap_or_else(|| serde_json::json!({})),
        });
        let mut result = CallToolResult::success(vec![ContentBlock::text(body.to_string())]);
        result.structured_content = Some(body);
        Ok(result)
    }
}

/// Renders headers as `{"name": ["value", …]}` (values that are not UTF-8 are shown lossily).
fn headers_json(headers: &http::HeaderMap) -> serde_json::Value {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        map.entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    serde_json::json!(map)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "turnpike-fixture",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "A test server: echo, add, slow (streams progress), whoami (shows the HTTP headers received).",
            )
    }
}

/// How the Streamable HTTP service behaves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Stateless mode: no `Mcp-Session-Id`, no `initialize` needed before a call; each POST is
    /// served on its own. Off by default (stateful sessions).
    pub stateless: bool,
    /// In stateless mode, answer simple calls with one `application/json` body instead of an
    /// SSE stream (calls that send notifications still stream).
    pub json_response: bool,
    /// `Host` values accepted (rmcp's DNS-rebinding guard). `None` keeps rmcp's loopback
    /// default (`localhost`, `127.0.0.1`, `::1`); an empty list accepts any host.
    pub allowed_hosts: Option<Vec<String>>,
    /// Cancelled to end every session (e.g. at shutdown).
    pub cancel: CancellationToken,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            stateless: false,
            json_response: false,
            allowed_hosts: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl HttpOptions {
    /// Stateless, JSON-response mode: one POST, one JSON body. The fast path for benchmarks.
    pub fn fast() -> Self {
        HttpOptions {
            stateless: true,
            json_response: true,
            ..Default::default()
        }
    }
}

/// The concrete type of the fixture's Streamable HTTP service.
pub type FixtureHttpService = StreamableHttpService<Fixture, LocalSessionManager>;

/// The fixture as a tower `Service` speaking MCP Streamable HTTP (the path is not checked:
/// mount it where you like).
pub fn http_service(opts: &HttpOptions) -> FixtureHttpService {
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(!opts.stateless)
        .with_json_response(opts.json_response)
        .with_cancellation_token(opts.cancel.clone());
    if let Some(hosts) = &opts.allowed_hosts {
        config = if hosts.is_empty() {
            config.disable_allowed_hosts()
        } else {
            config.with_allowed_hosts(hosts.clone())
        };
    }
    StreamableHttpService::new(
        || Ok(Fixture::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// An axum router serving the fixture at `path` (e.g. `/mcp`).
pub fn router(path: &str, opts: &HttpOptions) -> axum::Router {
    axum::Router::new().route_service(path, http_service(opts))
}

/// Serves the fixture at `path` on `listener` (with `TCP_NODELAY` on every connection) until
/// `shutdown` completes.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    path: &str,
    opts: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FixtureError> {
    use axum::serve::ListenerExt;
    let cancel = opts.cancel.clone();
    let app = router(path, &opts);
    let listener = listener.tap_io(|tcp| {
        // Without NODELAY a streamed response stalls on delayed ACKs; failure only costs speed.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            cancel.cancel();
        })
        .await?;
    Ok(())
}

/// Serves one MCP session over this process's stdin/stdout until the client closes it.
pub async fn serve_stdio() -> Result<(), FixtureError> {
    let running = Fixture::new()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| FixtureError::Mcp(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| FixtureError::Mcp(e.to_string()))?;
    Ok(())
}
