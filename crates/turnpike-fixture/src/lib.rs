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
//! - `confirm {rounds, ask}` exists in modern-only mode ([`EraMode::Modern`]) only, answered
//!   by the era filter as a stateless MCP 2026-07-28 server does ([`confirm`]): it asks the
//!   client for input with `input_required` results (`ask`: `elicitation`, the default,
//!   `sampling`, or `both` for one request of each per round) for `rounds` rounds (1–8), then
//!   returns every answer the client gave.
//!
//! With [`Fixture::with_conformance`] (`--conformance`) it also carries what the server
//! scenarios of the MCP conformance suite (`@modelcontextprotocol/conformance` 0.2.0) expect,
//! so that the suite run through a gateway measures the gateway, not the fixture
//! (details in [`conformance`]):
//! - the suite's content tools (`test_simple_text`, `test_image_content`, …, progress and
//!   logging), `json_schema_2020_12_tool`, `test_header_param` (an `x-mcp-header` parameter),
//!   `test_reconnection`, `test_missing_capability` (-32021 without the sampling capability),
//!   `test_streaming_elicitation`, `test_logging_tool` (logs only when `_meta` asks for a
//!   level);
//! - resources `test://static-text`, `test://static-binary`, `test://watched-resource` and the
//!   template `test://template/{id}/data` (an unknown URI: resource-not-found with `data.uri`,
//!   -32602 in 2026-07-28), with `ttlMs` / `cacheScope` hints; prompts `test_simple_prompt`,
//!   `test_prompt_with_arguments`, `test_prompt_with_embedded_resource`,
//!   `test_prompt_with_image`; `completion/complete`; `logging/setLevel`;
//! - change notifications: `test_trigger_tool_change`, `test_trigger_prompt_change` and
//!   `test_trigger_resource_change` announce `list_changed` (and `resources/updated` for
//!   `test://watched-resource`) to every `subscriptions/listen` stream that asked for it
//!   (2026-07-28) and to every `initialize` session of the service (2025; resource updates
//!   only after `resources/subscribe`);
//! - the tools that need input from the client: `test_sampling`, `test_elicitation`,
//!   `test_elicitation_sep1034_defaults`, `test_elicitation_sep1330_enums`,
//!   `test_input_required_result_{elicitation, sampling, list_roots, request_state,
//!   multiple_inputs, multi_round, tampered_state, capabilities}` and the prompt
//!   `test_input_required_result_prompt`. A 2026-07-28 request gets `input_required` results;
//!   a 2025 session gets the same questions as `elicitation/create`, `sampling/createMessage`
//!   and `roots/list` requests (a round's requests together, each naming its 2026-07-28 key
//!   in `params._meta["turnpike-fixture/inputKey"]`), and the same final result;
//! - the tasks extension (SEP-2663, `io.modelcontextprotocol/tasks`, advertised): `greet`
//!   (never a task), `slow_compute {seconds, label}`, `failing_job` (task only: -32021 to a
//!   2026-07-28 client without the extension), `protocol_error_job`, `confirm_delete
//!   {filename}` and `multi_input` (input asked inside the task, answered with `tasks/update`),
//!   `test_tool_with_task` (input_required first, then a task), and `tasks/get`,
//!   `tasks/update`, `tasks/cancel` over one task store per service. Tasks exist for
//!   2026-07-28 requests that declare the extension only; otherwise these tools answer at once
//!   (asking their questions the era's way).
//!
//! Served over Streamable HTTP ([`http_service`], [`router`], [`serve_http`]) or stdio
//! ([`serve_stdio`]). rmcp serves both MCP eras on one endpoint; [`EraMode`] makes the HTTP
//! fixture a legacy-only (2025) or modern-only (2026-07-28) server, the way servers of one era
//! answer the other, so that era translation in front of it can be tested.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{
    InputResponses as InputResponsesArg, RequestState as RequestStateArg,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, Implementation, ProgressNotificationParam,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::task_manager::{TaskExit, TaskOptions};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub mod conformance;

use conformance::{Change, Flow, Hub, Outcome, Subscriptions};

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
    conformance: bool,
    hub: Arc<Hub>,
    subscriptions: Subscriptions,
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

/// The longest `slow_compute` accepts, in seconds.
pub const TASK_MAX_SECONDS: u64 = 120;

/// Arguments of `greet`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GreetArgs {
    /// Who to greet.
    pub name: String,
}

/// Arguments of `slow_compute`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SlowComputeArgs {
    /// How long to work, in seconds (at most 120).
    #[serde(default)]
    pub seconds: u64,
    /// A label to report back.
    #[serde(default)]
    pub label: String,
}

/// Arguments of `confirm_delete`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ConfirmDeleteArgs {
    /// The file to (pretend to) delete.
    pub filename: String,
}

/// Arguments of `test_sampling`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SamplingArgs {
    /// The prompt to send to the client's model.
    pub prompt: String,
}

/// Arguments of `test_elicitation`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ElicitationArgs {
    /// The message to show the user.
    pub message: String,
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
        // Without the conformance surface the hub is never used: one for the whole process, so
        // that a stateless request (a fresh value each) allocates no channel or task store.
        static IDLE: std::sync::OnceLock<Arc<Hub>> = std::sync::OnceLock::new();
        Fixture {
            tool_router: Self::tool_router(),
            conformance: false,
            hub: IDLE.get_or_init(Arc::default).clone(),
            subscriptions: Subscriptions::default(),
        }
    }

    /// A server value that also carries what the conformance suite's server scenarios expect
    /// (see [`conformance`]), with a change hub of its own.
    pub fn with_conformance() -> Self {
        Self::with_conformance_hub(Arc::default())
    }

    /// Like [`Fixture::with_conformance`], announcing list changes and resource updates through
    /// `hub`, which every session of one service shares.
    pub fn with_conformance_hub(hub: Arc<Hub>) -> Self {
        Fixture {
            tool_router: Self::tool_router() + Self::conformance_router(),
            conformance: true,
            hub,
            subscriptions: Subscriptions::default(),
        }
    }

    /// Runs a tool [`Flow`] in the era of the request (see [`conformance::run_flow`]).
    async fn tool_flow(
        &self,
        ctx: &RequestContext<RoleServer>,
        responses: Option<rmcp::model::InputResponses>,
        state: Option<String>,
        flow: &Flow<'_, CallToolResult>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(
            match conformance::run_flow(ctx, &self.hub, responses, state, flow).await? {
                Outcome::Done(r) => r.into(),
                Outcome::Input(i) => i.into(),
            },
        )
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

use conformance::PNG_1X1;
/// A tiny WAV header with no samples (base64), for the conformance audio tool.
const WAV_EMPTY: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";

/// The tools the MCP conformance suite's server scenarios call (its `test_*` names), added by
/// [`Fixture::with_conformance`] so the suite measures a gateway in front of the fixture rather
/// than the fixture's gaps. The ones that ask the client for input run a [`conformance`] flow
/// in the era of the request.
#[tool_router(router = conformance_router)]
impl Fixture {
    #[tool(description = "Returns simple text (conformance).")]
    async fn test_simple_text(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(
            "This is a simple text response for testing.",
        )])
    }

    #[tool(description = "Returns an image (conformance).")]
    async fn test_image_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::image(PNG_1X1, "image/png")])
    }

    #[tool(description = "Returns audio (conformance).")]
    async fn test_audio_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::audio(WAV_EMPTY, "audio/wav")])
    }

    #[tool(description = "Returns an embedded resource (conformance).")]
    async fn test_embedded_resource(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::resource(
            rmcp::model::ResourceContents::TextResourceContents {
                uri: "test://embedded-resource".into(),
                mime_type: Some("text/plain".into()),
                text: "This is an embedded resource content.".into(),
                meta: None,
            },
        )])
    }

    #[tool(description = "Returns text, an image and a resource (conformance).")]
    async fn test_multiple_content_types(&self) -> CallToolResult {
        CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG_1X1, "image/png"),
            ContentBlock::resource(rmcp::model::ResourceContents::TextResourceContents {
                uri: "test://mixed-content-resource".into(),
                mime_type: Some("application/json".into()),
                text: r#"{"test":"data","value":123}"#.into(),
                meta: None,
            }),
        ])
    }

    #[tool(description = "Always fails (conformance).")]
    async fn test_error_handling(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(
            "This tool intentionally returns an error for testing",
        )])
    }

    #[tool(description = "Sends three progress notifications (conformance).")]
    async fn test_tool_with_progress(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        if let Some(token) = ctx.meta.get_progress_token() {
            for (i, p) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let param = ProgressNotificationParam::new(token.clone(), p).with_total(100.0);
                let _ = ctx.peer.notify_progress(param).await;
            }
        }
        CallToolResult::success(vec![ContentBlock::text("Progress complete")])
    }

    #[tool(description = "Sends three log messages (conformance).")]
    #[allow(deprecated)] // logging: the conformance suite still tests it
    async fn test_tool_with_logging(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        for (i, m) in [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let param = rmcp::model::LoggingMessageNotificationParam::new(
                rmcp::model::LoggingLevel::Info,
                serde_json::json!(m),
            );
            let _ = ctx.peer.notify_logging_message(param).await;
        }
        CallToolResult::success(vec![ContentBlock::text("Logging complete")])
    }

    #[tool(
        description = "Asks the client's model for a completion of `prompt` and returns it (sampling/createMessage in a 2025 session, input_required in 2026-07-28)."
    )]
    async fn test_sampling(
        &self,
        Parameters(SamplingArgs { prompt }): Parameters<SamplingArgs>,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let flow = conformance::flow_sampling_prompt(&prompt);
        self.tool_flow(&ctx, responses, state, &flow).await
    }

    #[tool(
        description = "Asks the user for a response to `message` and reports it (elicitation/create in a 2025 session, input_required in 2026-07-28)."
    )]
    async fn test_elicitation(
        &self,
        Parameters(ElicitationArgs { message }): Parameters<ElicitationArgs>,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let flow = conformance::flow_elicit_report(
            conformance::elicitation_request(&message),
            "User response",
        );
        self.tool_flow(&ctx, responses, state, &flow).await
    }

    #[tool(
        description = "Asks the user to fill a form with a default for every primitive type (SEP-1034) and reports the answer."
    )]
    async fn test_elicitation_sep1034_defaults(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let flow = conformance::flow_elicit_report(
            conformance::sep1034_request(),
            "Elicitation completed",
        );
        self.tool_flow(&ctx, responses, state, &flow).await
    }

    #[tool(
        description = "Asks the user to pick from the five enum shapes of SEP-1330 and reports the answer."
    )]
    async fn test_elicitation_sep1330_enums(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let flow = conformance::flow_elicit_report(
            conformance::sep1330_request(),
            "Elicitation completed",
        );
        self.tool_flow(&ctx, responses, state, &flow).await
    }

    #[tool(
        description = "Asks the user's name (key user_name) and greets them: input_required in 2026-07-28, elicitation/create in a 2025 session."
    )]
    async fn test_input_required_result_elicitation(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tool_flow(&ctx, responses, state, &conformance::flow_elicitation)
            .await
    }

    #[tool(
        description = "Asks the client's model a question (key sample_request) and returns the answer: input_required in 2026-07-28, sampling/createMessage in a 2025 session."
    )]
    async fn test_input_required_result_sampling(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tool_flow(&ctx, responses, state, &conformance::flow_sampling)
            .await
    }

    #[tool(
        description = "Asks for the client's roots (key roots_request) and counts them: input_required in 2026-07-28, roots/list in a 2025 session."
    )]
    async fn test_input_required_result_list_roots(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tool_flow(&ctx, responses, state, &conformance::flow_list_roots)
            .await
    }

    #[tool(
        description = "Asks for a confirmation (key confirm) with a requestState, and answers state-ok when both come back."
    )]
    async fn test_input_required_result_request_state(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tool_flow(&ctx, responses, state, &conformance::flow_request_state)
            .await
    }

    #[tool(
        description = "Asks a name (user_name), a greeting from the client's model (greeting) and the client's roots (client_roots) in one round."
    )]
    async fn test_input_required_result_multiple_inputs(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tool_flow(&ctx, responses, state, &conformance::flow_multiple_inputs)
            .await
    }

    #[tool(
        description = "Two rounds: a name (step1), then a favourite colour (step2), each with a new requestState."
    )]
    async fn test_input_required_result_multi_round(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tool_flow(&ctx, responses, state, &conformance::flow_multi_round)
            .await
    }

    #[tool(
        description = "Asks for a confirmation with a sealed requestState; an altered requestState is refused with -32602 (2026-07-28 only: a 2025 session has no requestState)."
    )]
    async fn test_input_required_result_tampered_state(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tool_flow(&ctx, responses, state, &conformance::flow_tampered_state)
            .await
    }

    #[tool(
        description = "Asks only for what the client declared (elicit_input with elicitation, sample_input with sampling), then lists the keys answered."
    )]
    async fn test_input_required_result_capabilities(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tool_flow(&ctx, responses, state, &conformance::flow_capabilities)
            .await
    }

    #[tool(
        description = "Needs the client's sampling capability: without it, fails with MissingRequiredClientCapabilityError (-32021)."
    )]
    async fn test_missing_capability(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let caps = ctx.client_capabilities().unwrap_or_default();
        if caps.sampling.is_none() {
            let needed = conformance::model(serde_json::json!({"sampling": {}}))?;
            return Err(ErrorData::missing_required_client_capability(needed));
        }
        Ok(CallToolResult::success(vec![ContentBlock::text("Success")]))
    }

    #[tool(
        description = "Sends a progress notification on the response stream (when the request has a progressToken), then answers."
    )]
    async fn test_streaming_elicitation(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        if let Some(token) = ctx.meta.get_progress_token() {
            let param = ProgressNotificationParam::new(token, 50.0).with_total(100.0);
            let _ = ctx.peer.notify_progress(param).await;
        }
        CallToolResult::success(vec![ContentBlock::text("Streaming complete")])
    }

    #[tool(
        description = "Logs one message, only when the request's _meta asks for a log level (io.modelcontextprotocol/logLevel)."
    )]
    #[allow(deprecated)] // logging: the conformance suite still tests it
    async fn test_logging_tool(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        if let Some(level) = ctx.meta.log_level() {
            let param = rmcp::model::LoggingMessageNotificationParam::new(
                level,
                serde_json::json!("Diagnostic trace logging activated"),
            );
            let _ = ctx.peer.notify_logging_message(param).await;
        }
        CallToolResult::success(vec![ContentBlock::text("Logging evaluated")])
    }

    #[tool(
        description = "Announces notifications/tools/list_changed to every subscriptions/listen stream and 2025 session of this server."
    )]
    async fn test_trigger_tool_change(&self) -> CallToolResult {
        self.hub.announce(Change::Tools);
        CallToolResult::success(vec![ContentBlock::text("Mutation triggered")])
    }

    #[tool(
        description = "Announces notifications/prompts/list_changed to every subscriptions/listen stream and 2025 session of this server."
    )]
    async fn test_trigger_prompt_change(&self) -> CallToolResult {
        self.hub.announce(Change::Prompts);
        CallToolResult::success(vec![ContentBlock::text("Mutation triggered")])
    }

    #[tool(
        description = "Announces notifications/resources/list_changed, and notifications/resources/updated for test://watched-resource to its subscribers (resources/subscribe in 2025, subscriptions/listen in 2026-07-28)."
    )]
    async fn test_trigger_resource_change(&self) -> CallToolResult {
        self.hub.announce(Change::Resources);
        self.hub
            .announce(Change::Updated(conformance::WATCHED_RESOURCE.to_owned()));
        CallToolResult::success(vec![ContentBlock::text("Mutation triggered")])
    }

    #[tool(description = "Greets `name` (always answered at once, never as a task).")]
    async fn greet(&self, Parameters(GreetArgs { name }): Parameters<GreetArgs>) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(format!("Hello, {name}!"))])
    }

    #[tool(
        description = "Waits `seconds` (at most 120), then reports `label`. A task (SEP-2663) when the client declared the tasks extension, else answered at once after the wait."
    )]
    async fn slow_compute(
        &self,
        Parameters(SlowComputeArgs { seconds, label }): Parameters<SlowComputeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if seconds > TASK_MAX_SECONDS {
            return Err(ErrorData::invalid_params(
                format!("seconds must be at most {TASK_MAX_SECONDS}"),
                None,
            ));
        }
        let done = move || {
            CallToolResult::success(vec![ContentBlock::text(format!(
                "Computed {label} after {seconds}s"
            ))])
        };
        if !conformance::tasks_allowed(&ctx) {
            tokio::select! {
                _ = ctx.ct.cancelled() => {
                    return Ok(CallToolResult::error(vec![ContentBlock::text("cancelled")]).into());
                }
                _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            }
            return Ok(done().into());
        }
        let task = self.hub.tasks().spawn(TaskOptions::new(), move |t| {
            Box::pin(async move {
                tokio::select! {
                    _ = t.cancelled() => Err(TaskExit::Cancelled),
                    _ = tokio::time::sleep(Duration::from_secs(seconds)) => Ok(done()),
                }
            })
        });
        Ok(rmcp::model::CreateTaskResult::new(task).into())
    }

    #[tool(
        description = "Runs only as a task (-32021 without the tasks extension); the task completes with a tool error (isError)."
    )]
    async fn failing_job(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let failed =
            || CallToolResult::error(vec![ContentBlock::text("failing_job failed on purpose")]);
        if !conformance::is_modern(&ctx) {
            return Ok(failed().into());
        }
        if !conformance::tasks_allowed(&ctx) {
            return Err(conformance::tasks_required());
        }
        let task = self.hub.tasks().spawn(TaskOptions::new(), move |_| {
            Box::pin(async move { Ok(failed()) })
        });
        Ok(rmcp::model::CreateTaskResult::new(task).into())
    }

    #[tool(
        description = "Fails with a JSON-RPC internal error: as a task (status failed, error inlined) when the client declared the tasks extension, else as the call's error."
    )]
    async fn protocol_error_job(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let error = || ErrorData::internal_error("protocol_error_job failed on purpose", None);
        if !conformance::tasks_allowed(&ctx) {
            return Err(error());
        }
        let task = self.hub.tasks().spawn(TaskOptions::new(), move |_| {
            Box::pin(async move { Err(TaskExit::Error(error())) })
        });
        Ok(rmcp::model::CreateTaskResult::new(task).into())
    }

    #[tool(
        description = "Asks the user to confirm deleting `filename` (key confirm), then reports it: inside a task (tasks/update) with the tasks extension, else input_required (2026-07-28) or elicitation/create (2025). Deletes nothing."
    )]
    async fn confirm_delete(
        &self,
        Parameters(ConfirmDeleteArgs { filename }): Parameters<ConfirmDeleteArgs>,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let question = conformance::confirm_request_for(&format!("Delete {filename}?"));
        let report = {
            let filename = filename.clone();
            move |answer: &serde_json::Value| {
                let verb = if conformance::confirmed(answer) {
                    "Deleted"
                } else {
                    "Kept"
                };
                CallToolResult::success(vec![ContentBlock::text(format!("{verb} {filename}"))])
            }
        };
        if conformance::tasks_allowed(&ctx) {
            let request = conformance::input_request(question)?;
            let task = self.hub.tasks().spawn(TaskOptions::new(), move |t| {
                Box::pin(async move {
                    let answer = t.request_input("confirm", request).await?;
                    Ok(report(&answer))
                })
            });
            return Ok(rmcp::model::CreateTaskResult::new(task).into());
        }
        let flow = move |r: &conformance::Round<'_>| match r.responses.get("confirm") {
            Some(a) => conformance::Step::Done(report(a)),
            None => {
                let mut ask = serde_json::Map::new();
                ask.insert("confirm".into(), question.clone());
                conformance::Step::Ask(ask, None)
            }
        };
        self.tool_flow(&ctx, responses, state, &flow).await
    }

    #[tool(
        description = "Asks two questions at once (keys first and second) and reports both names: inside a task with the tasks extension (either may be answered first), else input_required (2026-07-28) or elicitation/create (2025)."
    )]
    async fn multi_input(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let first = conformance::confirm_request_for("First: your name?");
        let second = conformance::confirm_request_for("Second: your name?");
        let report = |a: &serde_json::Value, b: &serde_json::Value| {
            CallToolResult::success(vec![ContentBlock::text(format!(
                "Got {} and {}",
                conformance::elicited(Some(a), "name"),
                conformance::elicited(Some(b), "name")
            ))])
        };
        if conformance::tasks_allowed(&ctx) {
            let (r1, r2) = (
                conformance::input_request(first)?,
                conformance::input_request(second)?,
            );
            let task = self.hub.tasks().spawn(TaskOptions::new(), move |t| {
                Box::pin(async move {
                    let (a, b) = tokio::try_join!(
                        t.request_input("first", r1),
                        t.request_input("second", r2)
                    )?;
                    Ok(report(&a, &b))
                })
            });
            return Ok(rmcp::model::CreateTaskResult::new(task).into());
        }
        let flow = move |r: &conformance::Round<'_>| match (
            r.responses.get("first"),
            r.responses.get("second"),
        ) {
            (Some(a), Some(b)) => conformance::Step::Done(report(a, b)),
            _ => {
                let mut ask = serde_json::Map::new();
                ask.insert("first".into(), first.clone());
                ask.insert("second".into(), second.clone());
                conformance::Step::Ask(ask, None)
            }
        };
        self.tool_flow(&ctx, responses, state, &flow).await
    }

    #[tool(
        description = "Asks the user's name (key user_name) with input_required, then answers with a task that greets them (2026-07-28 with the tasks extension; -32021 without it). In a 2025 session: elicitation/create, then the greeting at once."
    )]
    async fn test_tool_with_task(
        &self,
        InputResponsesArg(responses): InputResponsesArg,
        RequestStateArg(state): RequestStateArg,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let modern = conformance::is_modern(&ctx);
        if modern && !conformance::tasks_allowed(&ctx) {
            return Err(conformance::tasks_required());
        }
        let outcome = conformance::run_flow(
            &ctx,
            &self.hub,
            responses,
            state,
            &conformance::flow_elicitation,
        )
        .await?;
        let done = match outcome {
            Outcome::Input(i) => return Ok(i.into()),
            Outcome::Done(done) => done,
        };
        if !modern {
            return Ok(done.into());
        }
        let task = self.hub.tasks().spawn(TaskOptions::new(), move |_| {
            Box::pin(async move { Ok(done) })
        });
        Ok(rmcp::model::CreateTaskResult::new(task).into())
    }

    #[tool(
        description = "SSE polling probe (SEP-1699): waits 100 ms and answers on the same stream. It does not close the stream first (rmcp can close a request's stream, LocalSessionHandle::close_sse_stream, but does not tell a handler which HTTP request it serves), so the resume path is not exercised."
    )]
    async fn test_reconnection(&self) -> CallToolResult {
        tokio::time::sleep(Duration::from_millis(100)).await;
        CallToolResult::success(vec![ContentBlock::text(
            "Reconnection test completed (the stream was not closed)",
        )])
    }

    #[tool(
        description = "Returns `region`, which 2026-07-28 clients also send in the Mcp-Param-Region header (SEP-2243 x-mcp-header; rmcp refuses a header that does not match the body).",
        input_schema = conformance::header_param_schema()
    )]
    async fn test_header_param(
        &self,
        Parameters(args): Parameters<serde_json::Map<String, serde_json::Value>>,
    ) -> CallToolResult {
        let region = args
            .get("region")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        CallToolResult::success(vec![ContentBlock::text(format!("region: {region}"))])
    }

    #[tool(
        description = "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
        input_schema = conformance::json_schema_2020_12()
    )]
    async fn json_schema_2020_12_tool(
        &self,
        Parameters(args): Parameters<serde_json::Map<String, serde_json::Value>>,
    ) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(format!(
            "JSON Schema 2020-12 tool called with: {}",
            serde_json::Value::Object(args)
        ))])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        #[allow(deprecated)] // logging: the conformance suite still tests it
        let caps = if self.conformance {
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_logging()
                .enable_completions()
                .enable_tasks()
                .build()
        } else {
            ServerCapabilities::builder().enable_tools().build()
        };
        ServerConfig::new(caps)
            .with_server_info(Implementation::new(
                "turnpike-fixture",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "A test server: echo, add, slow (streams progress), whoami (shows the HTTP headers received).",
            )
    }

    #[allow(deprecated)] // logging: the conformance suite still tests it
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if self.conformance {
            tokio::spawn(forward_changes(
                self.hub.changes(),
                context.peer,
                self.subscriptions.clone(),
            ));
        }
    }

    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        self.only_conformance("resources/list")?;
        conformance::result(conformance::resources())
    }

    async fn list_resource_templates(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        self.only_conformance("resources/templates/list")?;
        conformance::result(conformance::resource_templates())
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        self.only_conformance("resources/read")?;
        match conformance::read(&request.uri) {
            Some(v) => Ok(rmcp::model::ReadResourceResponse::Complete(
                conformance::result(v)?,
            )),
            None => Err(ErrorData::resource_not_found(
                format!("Resource not found: {}", request.uri),
                Some(serde_json::json!({"uri": request.uri})),
            )),
        }
    }

    #[allow(deprecated)] // resources/subscribe: the 2025 revisions' way
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.only_conformance("resources/subscribe")?;
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.insert(request.uri);
        }
        Ok(())
    }

    #[allow(deprecated)] // resources/unsubscribe: the 2025 revisions' way
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.only_conformance("resources/unsubscribe")?;
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.remove(&request.uri);
        }
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        self.only_conformance("prompts/list")?;
        conformance::result(conformance::prompts())
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        self.only_conformance("prompts/get")?;
        if request.name == "test_input_required_result_prompt" {
            return Ok(
                match conformance::run_flow(
                    &context,
                    &self.hub,
                    request.input_responses,
                    request.request_state,
                    &conformance::flow_prompt,
                )
                .await?
                {
                    Outcome::Done(v) => {
                        rmcp::model::GetPromptResponse::Complete(conformance::result(v)?)
                    }
                    Outcome::Input(i) => i.into(),
                },
            );
        }
        let args = request.arguments.unwrap_or_default();
        match conformance::prompt(&request.name, &args)? {
            Some(v) => Ok(rmcp::model::GetPromptResponse::Complete(
                conformance::result(v)?,
            )),
            None => Err(ErrorData::invalid_params(
                format!("no prompt named {:?}", request.name),
                None,
            )),
        }
    }

    async fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        self.only_conformance("completion/complete")?;
        conformance::result(conformance::complete(
            &request.argument.name,
            &request.argument.value,
        ))
    }

    async fn get_task(
        &self,
        request: rmcp::model::GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetTaskResult, ErrorData> {
        Ok(rmcp::model::GetTaskResult::new(
            self.hub.tasks().get_task(&request.task_id)?,
        ))
    }

    async fn update_task(
        &self,
        request: rmcp::model::UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.hub
            .tasks()
            .update_task(&request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: rmcp::model::CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.hub.tasks().cancel_task(&request.task_id)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        // rmcp narrows this to what the capabilities advertise.
        self.conformance.then(|| requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.hub.changes();
        loop {
            let change = tokio::select! {
                _ = context.cancelled() => return Ok(()),
                change = changes.recv() => change,
            };
            let sink = context.sink();
            // A notification outside the accepted filter is refused by the sink: skipped.
            let sent = match change {
                Ok(Change::Tools) => sink.notify_tool_list_changed().await,
                Ok(Change::Prompts) => sink.notify_prompt_list_changed().await,
                Ok(Change::Resources) => sink.notify_resource_list_changed().await,
                Ok(Change::Updated(uri)) => sink.notify_resource_updated(uri).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            };
            if let Err(rmcp::service::SubscriptionSendError::SubscriptionClosed) = sent {
                return Ok(());
            }
        }
    }
}

impl Fixture {
    /// Resources, prompts and completion exist in conformance mode only.
    fn only_conformance(&self, method: &'static str) -> Result<(), ErrorData> {
        if self.conformance {
            Ok(())
        } else {
            Err(ErrorData::new(
                rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                method,
                None,
            ))
        }
    }
}

/// Sends the hub's changes to the client of one 2025 session (resource updates only for the
/// URIs it subscribed to) until the session ends.
async fn forward_changes(
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    peer: rmcp::Peer<RoleServer>,
    subscriptions: Subscriptions,
) {
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            // Wake now and then to notice a session that ended while nothing changed.
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                if peer.is_transport_closed() {
                    return;
                }
                continue;
            }
        };
        let sent = match change {
            Ok(Change::Tools) => peer.notify_tool_list_changed().await,
            Ok(Change::Prompts) => peer.notify_prompt_list_changed().await,
            Ok(Change::Resources) => peer.notify_resource_list_changed().await,
            Ok(Change::Updated(uri)) => {
                let subscribed = subscriptions
                    .lock()
                    .map(|s| s.contains(&uri))
                    .unwrap_or(false);
                if !subscribed {
                    continue;
                }
                peer.notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(
                    uri,
                ))
                .await
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if sent.is_err() && peer.is_transport_closed() {
            return;
        }
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
    /// Which MCP era(s) the endpoint speaks. Default: both.
    pub era: EraMode,
    /// Carry the conformance suite's tools too ([`Fixture::with_conformance`]).
    pub conformance: bool,
}

/// Which MCP era(s) the HTTP fixture speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EraMode {
    /// Both (rmcp's own behaviour): `initialize` sessions and stateless 2026-07-28 requests.
    #[default]
    Both,
    /// The 2025 revisions only: a POST declaring `MCP-Protocol-Version` 2026-07-28 or later, a
    /// `server/discover`, or any request other than `initialize` without a session gets `400`
    /// with a JSON-RPC error, as a server of that era answers.
    Legacy,
    /// 2026-07-28 only: a POST without `MCP-Protocol-Version` 2026-07-28 or later (an
    /// `initialize`, a session request) gets `400` with `UnsupportedProtocolVersionError`
    /// (-32022, listing the supported versions); GET and DELETE get `405`.
    Modern,
}

impl EraMode {
    /// `both`, `2025` or `2026-07-28`.
    pub fn parse(s: &str) -> Option<EraMode> {
        match s {
            "both" => Some(EraMode::Both),
            "2025" | "legacy" => Some(EraMode::Legacy),
            "2026-07-28" | "modern" => Some(EraMode::Modern),
            _ => None,
        }
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            stateless: false,
            json_response: false,
            allowed_hosts: None,
            cancel: CancellationToken::new(),
            era: EraMode::Both,
            conformance: false,
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
    let conformance = opts.conformance;
    let hub: Arc<Hub> = Arc::default();
    StreamableHttpService::new(
        move || {
            Ok(if conformance {
                Fixture::with_conformance_hub(hub.clone())
            } else {
                Fixture::new()
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// An axum router serving the fixture at `path` (e.g. `/mcp`).
pub fn router(path: &str, opts: &HttpOptions) -> axum::Router {
    let r = axum::Router::new().route_service(path, http_service(opts));
    match opts.era {
        EraMode::Both => r,
        era => r.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                era_filter(era, req, next)
            },
        )),
    }
}

const MODERN: &str = "2026-07-28";

fn refuse(
    status: http::StatusCode,
    id: serde_json::Value,
    code: i64,
    msg: &str,
    data: Option<serde_json::Value>,
) -> axum::response::Response {
    let mut err = serde_json::json!({"code": code, "message": msg});
    if let Some(d) = data {
        err["data"] = d;
    }
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": err});
    let mut r = axum::response::Response::new(axum::body::Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The most rounds `confirm` asks for.
pub const CONFIRM_MAX_ROUNDS: u64 = 8;

/// The `confirm` tool of the modern-only fixture: the JSON-RPC answer to a `tools/call` with
/// `params`. Stateless, as the 2026-07-28 revision wants: what it collected so far travels in
/// `requestState` (JSON: `{"round": n, "answers": [...]}`), the client's answers to the last
/// round in `params.inputResponses` (keyed `confirm` and `sample`).
pub fn confirm(id: &serde_json::Value, params: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    let args = params.get("arguments").cloned().unwrap_or(Value::Null);
    let rounds = args
        .get("rounds")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, CONFIRM_MAX_ROUNDS);
    let ask = args
        .get("ask")
        .and_then(Value::as_str)
        .unwrap_or("elicitation");
    let keys: &[&str] = match ask {
        "sampling" => &["sample"],
        "both" => &["confirm", "sample"],
        _ => &["confirm"],
    };
    let mut state: Value = params
        .get("requestState")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| json!({"round": 0, "answers": []}));
    let round = state.get("round").and_then(Value::as_u64).unwrap_or(0);
    let mut answers = state
        .get("answers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if round > 0 {
        let Some(responses) = params.get("inputResponses").and_then(Value::as_object) else {
            return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602,
                "message": "confirm: requestState without inputResponses"}});
        };
        for k in keys {
            let Some(r) = responses.get(*k) else {
                return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602,
                    "message": format!("confirm: no input response {k:?}")}});
            };
            answers.push(json!({"round": round, "key": k, "response": r}));
        }
    }
    if round >= rounds {
        let text = serde_json::to_string(&answers).unwrap_or_default();
        return json!({"jsonrpc": "2.0", "id": id, "result": {
            "resultType": "complete",
            "content": [{"type": "text", "text": text}],
            "structuredContent": {"answers": answers},
            "isError": false,
        }});
    }
    let next = round + 1;
    let mut requests = serde_json::Map::new();
    for k in keys {
        let r = if *k == "sample" {
            json!({"method": "sampling/createMessage", "params": {
                "messages": [{"role": "user", "content": {"type": "text", "text": format!("round {next}: say something")}}],
                "maxTokens": 16,
            }})
        } else {
            json!({"method": "elicitation/create", "params": {
                "message": format!("round {next}: confirm?"),
                "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}, "note": {"type": "string"}}, "required": ["ok"]},
            }})
        };
        requests.insert((*k).to_owned(), r);
    }
    state = json!({"round": next, "answers": answers});
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "resultType": "input_required",
        "inputRequests": requests,
        "requestState": state.to_string(),
    }})
}

/// Keeps one era out (see [`EraMode`]).
async fn era_filter(
    era: EraMode,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let version = req
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let modern_header = version.as_str() >= MODERN;
    if req.method() != http::Method::POST {
        if era == EraMode::Modern {
            let mut r = axum::response::Response::new(axum::body::Body::empty());
            *r.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
            return r;
        }
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return refuse(
            http::StatusCode::BAD_REQUEST,
            serde_json::Value::Null,
            -32600,
            "body unreadable",
            None,
        );
    };
    let msg: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let id = msg.get("id").cloned().unwrap_or(serde_json::Value::Null);
    let method = msg
        .get("method")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if era == EraMode::Modern
        && modern_header
        && method == "tools/call"
        && msg
            .pointer("/params/name")
            .and_then(serde_json::Value::as_str)
            == Some("confirm")
    {
        let v = confirm(&id, msg.get("params").unwrap_or(&serde_json::Value::Null));
        let mut r = axum::response::Response::new(axum::body::Body::from(v.to_string()));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return r;
    }
    match era {
        EraMode::Modern if !modern_header => {
            return refuse(
                http::StatusCode::BAD_REQUEST,
                id,
                -32022,
                "Unsupported protocol version: this server speaks MCP 2026-07-28 only",
                Some(serde_json::json!({"supported": [MODERN], "requested": version})),
            );
        }
        EraMode::Legacy if modern_header || method == "server/discover" => {
            return refuse(
                http::StatusCode::BAD_REQUEST,
                id,
                -32600,
                "Bad Request: Unsupported protocol version",
                None,
            );
        }
        EraMode::Legacy
            if method != "initialize" && !parts.headers.contains_key("mcp-session-id") =>
        {
            return refuse(
                http::StatusCode::BAD_REQUEST,
                id,
                -32600,
                "Bad Request: No valid session ID provided",
                None,
            );
        }
        _ => {}
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
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
    serve_stdio_with(Fixture::new()).await
}

/// Serves `fixture` over this process's stdin/stdout until the client closes it.
pub async fn serve_stdio_with(fixture: Fixture) -> Result<(), FixtureError> {
    let running = fixture
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| FixtureError::Mcp(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| FixtureError::Mcp(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn confirm_asks_then_answers() {
        let id = json!(7);
        let first = confirm(&id, &json!({"name": "confirm", "arguments": {"rounds": 2}}));
        let r = &first["result"];
        assert_eq!(r["resultType"], "input_required");
        assert_eq!(
            r["inputRequests"]["confirm"]["method"],
            "elicitation/create"
        );
        let state = r["requestState"].clone();
        let second = confirm(
            &id,
            &json!({"name": "confirm", "arguments": {"rounds": 2}, "requestState": state,
                "inputResponses": {"confirm": {"action": "accept", "content": {"ok": true}}}}),
        );
        assert_eq!(second["result"]["resultType"], "input_required");
        let third = confirm(
            &id,
            &json!({"name": "confirm", "arguments": {"rounds": 2},
                "requestState": second["result"]["requestState"],
                "inputResponses": {"confirm": {"action": "decline"}}}),
        );
        let answers = &third["result"]["structuredContent"]["answers"];
        assert_eq!(answers[0]["response"]["content"]["ok"], true);
        assert_eq!(answers[1]["response"]["action"], "decline");
        assert_eq!(third["id"], 7);
        let missing = confirm(
            &id,
            &json!({"name": "confirm", "requestState": state, "inputResponses": {}}),
        );
        assert_eq!(missing["error"]["code"], -32602);
    }
}
