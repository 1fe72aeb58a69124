//! What the MCP conformance suite's server scenarios expect of a server, carried by
//! [`Fixture::with_conformance`](crate::Fixture::with_conformance): resources, prompts,
//! completion, list-changed and resource-updated notifications, and the tools that ask the
//! client for input.
//!
//! # Asking the client for input, in either era
//!
//! Every tool (and the one prompt) that needs an answer from the client is written once, as a
//! [`Flow`]: given the answers collected so far and the state of the previous round, it either
//! finishes or names the requests it still needs ([`Step::Ask`]). How those requests reach the
//! client depends on the era of the request being served:
//!
//! - **2026-07-28** (a request declaring that version): one round per request. The tool answers
//!   `resultType: "input_required"` with the `inputRequests` and `requestState`; the client
//!   retries with `inputResponses` and the echoed `requestState`.
//! - **2025** (an `initialize` session): the fixture sends the requests to the client itself
//!   (`elicitation/create`, `sampling/createMessage`, `roots/list`; all of a round's requests
//!   at once, on the call's stream, each with its key in
//!   `params._meta["turnpike-fixture/inputKey"]`), keeps the state between rounds in memory,
//!   and returns the final result in one response.
//!
//! So the final result is the same in both eras: a gateway that turns a legacy server's
//! server-to-client requests into `input_required` results can be checked against the modern
//! answers. What cannot be the same: a legacy server has no `requestState`, so the
//! tampered-state check of `test_input_required_result_tampered_state` only exists in the
//! modern era.

use std::collections::BTreeSet;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use rmcp::model::{
    CallToolResult, ClientCapabilities, ContentBlock, InputRequest, InputRequests,
    InputRequiredResult, InputResponses, ServerRequest,
};
use rmcp::service::RequestContext;
use rmcp::task_manager::TaskManager;
use rmcp::{ErrorData, RoleServer};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

/// The URI of the resource that `test_trigger_resource_change` reports as updated.
pub const WATCHED_RESOURCE: &str = "test://watched-resource";

/// The content of the watched resource.
pub const WATCHED_RESOURCE_TEXT: &str = "Watched resource content";

/// The first protocol revision that answers `input_required` instead of sending requests.
const MODERN: &str = "2026-07-28";

/// The most rounds a flow runs in a 2025 session before the fixture gives up.
const LEGACY_MAX_ROUNDS: usize = 8;

/// A change the fixture announces: to `subscriptions/listen` streams (2026-07-28) and to every
/// `initialize` session (2025) served by the same HTTP service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/prompts/list_changed`.
    Prompts,
    /// `notifications/resources/list_changed`.
    Resources,
    /// `notifications/resources/updated` for this URI (to subscribers of it only).
    Updated(String),
}

/// State shared by every session and stateless request of one fixture service: the change
/// channel, and the key that signs `requestState`.
pub struct Hub {
    changes: broadcast::Sender<Change>,
    key: std::collections::hash_map::RandomState,
    nonce: AtomicU64,
    tasks: TaskManager,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("listeners", &self.changes.receiver_count())
            .finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            changes: broadcast::channel(64).0,
            key: std::collections::hash_map::RandomState::new(),
            nonce: AtomicU64::new(1),
            tasks: TaskManager::new(),
        }
    }
}

impl Hub {
    /// The tasks (SEP-2663) of every session and stateless request of the service.
    pub fn tasks(&self) -> &TaskManager {
        &self.tasks
    }

    /// Announces a change; nobody listening is fine.
    pub fn announce(&self, change: Change) {
        let _ = self.changes.send(change);
    }

    /// A receiver of every change announced from now on.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// A number not handed out before by this hub.
    fn nonce(&self) -> u64 {
        self.nonce.fetch_add(1, Ordering::Relaxed)
    }

    fn mac(&self, data: &str) -> String {
        let mut h = self.key.build_hasher();
        h.write(data.as_bytes());
        format!("{:016x}", h.finish())
    }

    /// `payload` as a string that [`Hub::open`] accepts back only unchanged (keyed per process;
    /// enough to detect tampering in tests, not a cryptographic seal).
    pub fn seal(&self, payload: &Value) -> String {
        let data = payload.to_string();
        let mac = self.mac(&data);
        json!({"data": data, "mac": mac}).to_string()
    }

    /// The payload sealed by [`Hub::seal`], or `None` if `sealed` was altered.
    pub fn open(&self, sealed: &str) -> Option<Value> {
        let outer: Value = serde_json::from_str(sealed).ok()?;
        let data = outer.get("data")?.as_str()?;
        let given = outer.get("mac")?.as_str()?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            self.mac(data).as_bytes(),
        )) {
            return None;
        }
        serde_json::from_str(data).ok()
    }
}

/// One round of a [`Flow`]: what the client has answered and what the server said last time.
pub struct Round<'a> {
    /// The answers to the previous round's requests, by key (empty in the first round).
    pub responses: &'a Map<String, Value>,
    /// The `requestState` of the previous round.
    pub state: Option<&'a str>,
    /// What the client declared it can do.
    pub caps: &'a ClientCapabilities,
    /// The service's shared state (for nonces and sealing).
    pub hub: &'a Hub,
}

/// What a [`Flow`] does in one round.
#[derive(Debug)]
pub enum Step<T> {
    /// Finished with this result.
    Done(T),
    /// Needs these requests answered (`key → {method, params}`), then another round with this
    /// state.
    Ask(Map<String, Value>, Option<String>),
    /// A JSON-RPC error.
    Fail(ErrorData),
}

/// A request handler that may need input from the client, written once for both eras.
pub type Flow<'f, T> = dyn Fn(&Round<'_>) -> Step<T> + Send + Sync + 'f;

/// The outcome of [`run_flow`]: finished, or (2026-07-28 only) waiting for the client.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The final result.
    Done(T),
    /// `input_required`.
    Input(InputRequiredResult),
}

/// Whether the request being served speaks 2026-07-28 or later.
pub fn is_modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version().is_some_and(|v| v.as_str() >= MODERN)
}

/// Whether the request may be answered with a task: a 2026-07-28 request from a client that
/// declared the tasks extension (in the request's `_meta` or its session).
pub fn tasks_allowed(ctx: &RequestContext<RoleServer>) -> bool {
    is_modern(ctx)
        && ctx
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks())
}

/// The -32021 error of a tool that runs only as a task, to a client without the extension.
pub fn tasks_required() -> ErrorData {
    let mut caps = ClientCapabilities::default();
    let mut ext = rmcp::model::ExtensionCapabilities::new();
    ext.insert(rmcp::model::TASKS_EXTENSION_ID.to_owned(), Map::new());
    caps.extensions = Some(ext);
    ErrorData::missing_required_client_capability(caps)
}

/// The `elicitation/create` request of `confirm_delete` and `multi_input`.
pub fn confirm_request_for(message: &str) -> Value {
    elicit(
        message,
        json!({"type": "object", "properties": {
            "name": {"type": "string"}, "confirm": {"type": "boolean"}
        }, "required": ["confirm"]}),
    )
}

/// Whether an elicitation answer said yes (`accept` with `confirm` not false).
pub fn confirmed(answer: &Value) -> bool {
    answer.get("action").and_then(Value::as_str) == Some("accept")
        && answer.pointer("/content/confirm") != Some(&json!(false))
}

/// Runs `flow` for the request in `ctx`: one round answered with `input_required` for a
/// 2026-07-28 request, every round through server-to-client requests for a 2025 session.
pub async fn run_flow<T>(
    ctx: &RequestContext<RoleServer>,
    hub: &Hub,
    responses: Option<InputResponses>,
    state: Option<String>,
    flow: &Flow<'_, T>,
) -> Result<Outcome<T>, ErrorData> {
    let caps = ctx.client_capabilities().unwrap_or_default();
    if is_modern(ctx) {
        // An answer that is not an object answers nothing: asked again.
        let responses: Map<String, Value> = responses
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| v.is_object())
            .collect();
        let round = Round {
            responses: &responses,
            state: state.as_deref(),
            caps: &caps,
            hub,
        };
        return match flow(&round) {
            Step::Done(t) => Ok(Outcome::Done(t)),
            Step::Fail(e) => Err(e),
            Step::Ask(requests, state) => Ok(Outcome::Input(input_required(requests, state)?)),
        };
    }
    let mut responses = Map::new();
    let mut state: Option<String> = None;
    for _ in 0..LEGACY_MAX_ROUNDS {
        let round = Round {
            responses: &responses,
            state: state.as_deref(),
            caps: &caps,
            hub,
        };
        match flow(&round) {
            Step::Done(t) => return Ok(Outcome::Done(t)),
            Step::Fail(e) => return Err(e),
            Step::Ask(requests, next) => {
                // All of a round's requests at once, as a 2026-07-28 round asks them, so that a
                // gateway translating them can gather them into one input_required result.
                // Polled in this task (not spawned): rmcp ties a request to the call's stream
                // through a task-local.
                let mut asking: Vec<Asking<'_>> = Vec::new();
                for (key, request) in requests {
                    let request = legacy_request(&key, request)?;
                    let peer = &ctx.peer;
                    asking.push(Box::pin(
                        async move { (key, ask_peer(peer, request).await) },
                    ));
                }
                let mut answers = Map::new();
                for (key, answer) in join_all(asking).await {
                    answers.insert(key, answer?);
                }
                responses = answers;
                state = next;
            }
        }
    }
    Err(ErrorData::internal_error(
        format!("the flow did not finish in {LEGACY_MAX_ROUNDS} rounds"),
        None,
    ))
}

/// One request to the client of a 2025 session, under way: its key and, once done, the answer.
type Asking<'a> = Pin<Box<dyn Future<Output = (String, Result<Value, ErrorData>)> + Send + 'a>>;

/// Runs `futures` concurrently in the calling task; their outputs in the same order.
async fn join_all<T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut running: Vec<Option<Pin<Box<dyn Future<Output = T> + Send + '_>>>> =
        futures.into_iter().map(Some).collect();
    let mut done: Vec<Option<T>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in running.iter_mut().zip(done.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// `{method, params}` as the typed request rmcp sends or embeds.
pub fn input_request(request: Value) -> Result<InputRequest, ErrorData> {
    serde_json::from_value(request)
        .map_err(|e| ErrorData::internal_error(format!("bad input request: {e}"), None))
}

/// The `input_required` result asking for `requests`.
pub fn input_required(
    requests: Map<String, Value>,
    state: Option<String>,
) -> Result<InputRequiredResult, ErrorData> {
    let mut typed = InputRequests::new();
    for (key, request) in requests {
        typed.insert(key, input_request(request)?);
    }
    Ok(InputRequiredResult::new(Some(typed), state))
}

/// The `_meta` key under which a request sent in a 2025 session names its `inputRequests` key
/// of the 2026-07-28 variant, so that a gateway turning the request into an `input_required`
/// result can keep the key.
pub const INPUT_KEY_META: &str = "turnpike-fixture/inputKey";

/// `{method, params}` as the typed request sent to the client of a 2025 session, its key in
/// `params._meta[`[`INPUT_KEY_META`]`]`.
pub fn legacy_request(key: &str, mut request: Value) -> Result<ServerRequest, ErrorData> {
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(o) = request.as_object_mut() {
        let params = o.entry("params").or_insert_with(|| json!({}));
        if let Some(p) = params.as_object_mut() {
            let meta = p.entry("_meta").or_insert_with(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.insert(INPUT_KEY_META.to_owned(), json!(key));
            }
        }
    }
    Ok(match input_request(request)? {
        InputRequest::CreateMessage(r) => ServerRequest::CreateMessageRequest(r),
        InputRequest::Elicitation(r) => ServerRequest::ElicitRequest(r),
        InputRequest::ListRoots(r) => ServerRequest::ListRootsRequest(r),
        _ => {
            return Err(ErrorData::internal_error(
                format!("cannot send {method} to the client"),
                None,
            ))
        }
    })
}

/// Sends one request to the client of a 2025 session; its answer as JSON.
async fn ask_peer(
    peer: &rmcp::Peer<RoleServer>,
    request: ServerRequest,
) -> Result<Value, ErrorData> {
    let method = serde_json::to_value(&request)
        .ok()
        .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let answer = peer.send_request(request).await.map_err(|e| {
        ErrorData::internal_error(format!("the client did not answer {method}: {e}"), None)
    })?;
    serde_json::to_value(answer)
        .map_err(|e| ErrorData::internal_error(format!("unreadable answer: {e}"), None))
}

/// An `elicitation/create` request for an object of string `fields` (all required).
pub fn elicit_strings(message: &str, fields: &[&str]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|f| ((*f).to_owned(), json!({"type": "string"})))
        .collect();
    elicit(
        message,
        json!({"type": "object", "properties": properties, "required": fields}),
    )
}

/// An `elicitation/create` request with this schema.
pub fn elicit(message: &str, schema: Value) -> Value {
    json!({"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}})
}

/// A `sampling/createMessage` request with one user message.
pub fn sample(text: &str, max_tokens: u32) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        "maxTokens": max_tokens,
    }})
}

/// A `roots/list` request.
pub fn list_roots() -> Value {
    json!({"method": "roots/list"})
}

/// `content.<field>` of an elicitation answer, or `"unknown"`.
pub fn elicited<'a>(answer: Option<&'a Value>, field: &str) -> &'a str {
    answer
        .and_then(|a| a.pointer(&format!("/content/{field}")))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
}

/// The text of a sampling answer (`content.text`, or the first text block of a content list).
pub fn sampled(answer: Option<&Value>) -> Option<&str> {
    let content = answer?.get("content")?;
    content
        .get("text")
        .or_else(|| content.get(0).and_then(|c| c.get("text")))
        .and_then(Value::as_str)
}

/// The number of roots in a `roots/list` answer.
pub fn root_count(answer: Option<&Value>) -> usize {
    answer
        .and_then(|a| a.get("roots"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

fn text(t: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(t.into())])
}

fn state_kind(state: Option<&str>) -> Option<Value> {
    state.and_then(|s| serde_json::from_str(s).ok())
}

/// `test_input_required_result_elicitation`: asks for a name (`user_name`), greets it.
pub fn flow_elicitation(r: &Round<'_>) -> Step<CallToolResult> {
    match r.responses.get("user_name") {
        Some(a) => Step::Done(text(format!("Hello, {}!", elicited(Some(a), "name")))),
        None => Step::Ask(
            one("user_name", elicit_strings("What is your name?", &["name"])),
            None,
        ),
    }
}

/// `test_input_required_result_sampling`: asks the client's model a question
/// (`sample_request`), returns its answer.
pub fn flow_sampling(r: &Round<'_>) -> Step<CallToolResult> {
    match r.responses.get("sample_request") {
        Some(a) => Step::Done(text(format!(
            "Sampling result: {}",
            sampled(Some(a)).unwrap_or("no response")
        ))),
        None => Step::Ask(
            one(
                "sample_request",
                sample("What is the capital of France?", 100),
            ),
            None,
        ),
    }
}

/// `test_input_required_result_list_roots`: asks for the client's roots (`roots_request`),
/// counts them.
pub fn flow_list_roots(r: &Round<'_>) -> Step<CallToolResult> {
    match r.responses.get("roots_request") {
        Some(a) => Step::Done(text(format!("Found {} root(s)", root_count(Some(a))))),
        None => Step::Ask(one("roots_request", list_roots()), None),
    }
}

fn confirm_request() -> Value {
    elicit(
        "Please confirm",
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}),
    )
}

/// `test_input_required_result_request_state`: asks for a confirmation (`confirm`) with a
/// `requestState`; finishes with `state-ok` when the state comes back and the answer is yes.
pub fn flow_request_state(r: &Round<'_>) -> Step<CallToolResult> {
    let state = state_kind(r.state);
    if let (Some(state), Some(answer)) = (&state, r.responses.get("confirm")) {
        if state["kind"] == "request-state" && answer.pointer("/content/ok") == Some(&json!(true)) {
            return Step::Done(text("state-ok: requestState validated"));
        }
    }
    Step::Ask(
        one("confirm", confirm_request()),
        Some(json!({"kind": "request-state", "nonce": r.hub.nonce()}).to_string()),
    )
}

/// `test_input_required_result_multiple_inputs`: a name (`user_name`), a greeting from the
/// client's model (`greeting`) and the client's roots (`client_roots`), in one round.
pub fn flow_multiple_inputs(r: &Round<'_>) -> Step<CallToolResult> {
    let state = state_kind(r.state);
    let (name, greeting, roots) = (
        r.responses.get("user_name"),
        r.responses.get("greeting"),
        r.responses.get("client_roots"),
    );
    if let (Some(state), Some(_), Some(g), Some(_)) = (&state, name, greeting, roots) {
        if state["kind"] == "multiple-inputs" {
            return Step::Done(text(format!(
                "Name: {}; Greeting: {}; Roots: {}",
                elicited(name, "name"),
                sampled(Some(g)).unwrap_or("Hello there!"),
                root_count(roots)
            )));
        }
    }
    let mut requests = Map::new();
    requests.insert(
        "user_name".into(),
        elicit_strings("What is your name?", &["name"]),
    );
    requests.insert("greeting".into(), sample("Generate a greeting", 50));
    requests.insert("client_roots".into(), list_roots());
    Step::Ask(
        requests,
        Some(json!({"kind": "multiple-inputs", "nonce": r.hub.nonce()}).to_string()),
    )
}

/// `test_input_required_result_multi_round`: a name (`step1`), then a colour (`step2`), each
/// round with a new `requestState`.
pub fn flow_multi_round(r: &Round<'_>) -> Step<CallToolResult> {
    let state = state_kind(r.state).unwrap_or(Value::Null);
    let round = state.get("round").and_then(Value::as_u64);
    if round == Some(1) {
        if let Some(a) = r.responses.get("step1") {
            return Step::Ask(
                one(
                    "step2",
                    elicit_strings("Step 2: What is your favorite color?", &["color"]),
                ),
                Some(
                    json!({"round": 2, "name": elicited(Some(a), "name"), "nonce": r.hub.nonce()})
                        .to_string(),
                ),
            );
        }
    }
    if round == Some(2) {
        if let Some(a) = r.responses.get("step2") {
            let name = state
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("friend");
            return Step::Done(text(format!(
                "Multi-round complete for {name} who likes {}",
                elicited(Some(a), "color")
            )));
        }
    }
    Step::Ask(
        one(
            "step1",
            elicit_strings("Step 1: What is your name?", &["name"]),
        ),
        Some(json!({"round": 1, "nonce": r.hub.nonce()}).to_string()),
    )
}

/// `test_input_required_result_tampered_state`: a confirmation with a sealed `requestState`;
/// a state that does not open is refused with -32602.
pub fn flow_tampered_state(r: &Round<'_>) -> Step<CallToolResult> {
    if let Some(sealed) = r.state {
        let Some(state) = r.hub.open(sealed) else {
            return Step::Fail(ErrorData::invalid_params(
                "requestState integrity check failed",
                None,
            ));
        };
        if state["kind"] == "tamper-test" && r.responses.contains_key("confirm") {
            return Step::Done(text("integrity-ok: state verified"));
        }
    }
    Step::Ask(
        one("confirm", confirm_request()),
        Some(
            r.hub
                .seal(&json!({"kind": "tamper-test", "nonce": r.hub.nonce()})),
        ),
    )
}

/// `test_input_required_result_capabilities`: asks only what the client declared it can
/// answer (`elicit_input` with elicitation, `sample_input` with sampling).
pub fn flow_capabilities(r: &Round<'_>) -> Step<CallToolResult> {
    if !r.responses.is_empty() {
        let keys: Vec<&str> = r.responses.keys().map(String::as_str).collect();
        return Step::Done(text(format!(
            "capabilities-ok: received {}",
            keys.join(",")
        )));
    }
    let mut requests = Map::new();
    if r.caps.elicitation.is_some() {
        requests.insert(
            "elicit_input".into(),
            elicit_strings("Elicitation input", &["value"]),
        );
    }
    if r.caps.sampling.is_some() {
        requests.insert("sample_input".into(), sample("Sample request", 50));
    }
    if requests.is_empty() {
        return Step::Done(text("No supported capabilities declared"));
    }
    Step::Ask(
        requests,
        Some(
            r.hub
                .seal(&json!({"kind": "capabilities-test", "nonce": r.hub.nonce()})),
        ),
    )
}

/// `test_sampling {prompt}`: sends `prompt` to the client's model, returns its answer.
pub fn flow_sampling_prompt(prompt: &str) -> impl Fn(&Round<'_>) -> Step<CallToolResult> + '_ {
    move |r| match r.responses.get("sample") {
        Some(a) => Step::Done(text(format!(
            "LLM response: {}",
            sampled(Some(a)).unwrap_or("No response")
        ))),
        None => Step::Ask(one("sample", sample(prompt, 100)), None),
    }
}

/// An elicitation tool of the 2025 suite: asks with `request`, reports the answer as
/// `{prefix}: action=…, content=…`.
pub fn flow_elicit_report(
    request: Value,
    prefix: &'static str,
) -> impl Fn(&Round<'_>) -> Step<CallToolResult> {
    move |r| match r.responses.get("elicit") {
        Some(a) => {
            let action = a.get("action").and_then(Value::as_str).unwrap_or("unknown");
            let content = a.get("content").cloned().unwrap_or_else(|| json!({}));
            Step::Done(text(format!(
                "{prefix}: action={action}, content={content}"
            )))
        }
        None => Step::Ask(one("elicit", request.clone()), None),
    }
}

/// The request of `test_elicitation {message}`.
pub fn elicitation_request(message: &str) -> Value {
    elicit(
        message,
        json!({"type": "object", "properties": {
            "response": {"type": "string", "description": "User's response"}
        }, "required": ["response"]}),
    )
}

/// The request of `test_elicitation_sep1034_defaults`: a default for every primitive type.
pub fn sep1034_request() -> Value {
    elicit(
        "Please review and update the form fields with defaults",
        json!({"type": "object", "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status",
                "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": true}
        }, "required": []}),
    )
}

/// The request of `test_elicitation_sep1330_enums`: the five enum shapes of SEP-1330.
pub fn sep1330_request() -> Value {
    elicit(
        "Please select options from the enum fields",
        json!({"type": "object", "properties": {
            "untitledSingle": {"type": "string", "description": "Select one option",
                "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "description": "Select one option with titles",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}
                ]},
            "legacyEnum": {"type": "string", "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "description": "Select multiple options",
                "minItems": 1, "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "description": "Select multiple options with titles",
                "minItems": 1, "maxItems": 3,
                "items": {"anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"}
                ]}}
        }, "required": []}),
    )
}

/// The prompt `test_input_required_result_prompt`: asks what context to use
/// (`user_context`), returns a message with it.
pub fn flow_prompt(r: &Round<'_>) -> Step<Value> {
    match r.responses.get("user_context") {
        Some(a) => Step::Done(json!({"messages": [{"role": "user", "content": {
            "type": "text", "text": format!("Prompt with context: {}", elicited(Some(a), "context"))
        }}]})),
        None => Step::Ask(
            one(
                "user_context",
                elicit_strings("What context should the prompt use?", &["context"]),
            ),
            None,
        ),
    }
}

fn one(key: &str, request: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.to_owned(), request);
    m
}

/// Builds an rmcp model value from JSON written in this module (a mistake there is a bug of
/// the fixture, reported as an internal error).
pub fn model<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ErrorData> {
    serde_json::from_value(v)
        .map_err(|e| ErrorData::internal_error(format!("fixture model value: {e}"), None))
}

/// A complete 2026-07-28 result built from JSON written in this module: `resultType:
/// "complete"` added (rmcp leaves it out for 2025 peers).
pub fn result<T: serde::de::DeserializeOwned>(mut v: Value) -> Result<T, ErrorData> {
    if let Value::Object(m) = &mut v {
        m.entry("resultType").or_insert_with(|| json!("complete"));
    }
    model(v)
}

/// A 1×1 PNG (base64), for images and the binary resource.
pub const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// `resources/list`: the static text and binary resources and the watched resource.
pub fn resources() -> Value {
    json!({
        "resources": [
            {"uri": "test://static-text", "name": "static-text", "title": "Static Text Resource",
             "description": "A static text resource for testing", "mimeType": "text/plain"},
            {"uri": "test://static-binary", "name": "static-binary",
             "title": "Static Binary Resource",
             "description": "A static binary resource (image) for testing",
             "mimeType": "image/png"},
            {"uri": WATCHED_RESOURCE, "name": "watched-resource", "title": "Watched Resource",
             "description": "A resource whose updates are announced by test_trigger_resource_change",
             "mimeType": "text/plain"}
        ],
        "ttlMs": 300000,
        "cacheScope": "public"
    })
}

/// `resources/templates/list`: `test://template/{id}/data`.
pub fn resource_templates() -> Value {
    json!({
        "resourceTemplates": [
            {"uriTemplate": "test://template/{id}/data", "name": "template",
             "title": "Resource Template",
             "description": "A resource template with parameter substitution",
             "mimeType": "application/json"}
        ],
        "ttlMs": 300000,
        "cacheScope": "public"
    })
}

/// `resources/read` of `uri`: its contents, or `None` when there is no such resource.
pub fn read(uri: &str) -> Option<Value> {
    let content = match uri {
        "test://static-text" => json!({"uri": uri, "mimeType": "text/plain",
            "text": "This is the content of the static text resource."}),
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG_1X1}),
        WATCHED_RESOURCE => {
            json!({"uri": uri, "mimeType": "text/plain", "text": WATCHED_RESOURCE_TEXT})
        }
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            let body =
                json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            json!({"uri": uri, "mimeType": "application/json", "text": body.to_string()})
        }
    };
    Some(json!({"contents": [content], "ttlMs": 300000, "cacheScope": "private"}))
}

/// `prompts/list`.
pub fn prompts() -> Value {
    json!({
        "prompts": [
            {"name": "test_simple_prompt", "title": "Simple Test Prompt",
             "description": "A simple prompt without arguments"},
            {"name": "test_prompt_with_arguments", "title": "Prompt With Arguments",
             "description": "A prompt with required arguments",
             "arguments": [
                {"name": "arg1", "description": "First test argument", "required": true},
                {"name": "arg2", "description": "Second test argument", "required": true}
             ]},
            {"name": "test_prompt_with_embedded_resource",
             "title": "Prompt With Embedded Resource",
             "description": "A prompt that includes an embedded resource",
             "arguments": [
                {"name": "resourceUri", "description": "URI of the resource to embed",
                 "required": true}
             ]},
            {"name": "test_prompt_with_image", "title": "Prompt With Image",
             "description": "A prompt that includes image content"},
            {"name": "test_input_required_result_prompt",
             "description": "A prompt that asks the client what context to use (input_required in 2026-07-28, elicitation/create in 2025)"}
        ],
        "ttlMs": 300000,
        "cacheScope": "public"
    })
}

/// `prompts/get` of the prompts that need no input: the result, `Ok(None)` for an unknown
/// name, or an error for a missing argument.
pub fn prompt(name: &str, args: &Map<String, Value>) -> Result<Option<Value>, ErrorData> {
    let arg = |k: &str| -> Result<String, ErrorData> {
        args.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ErrorData::invalid_params(format!("missing argument {k:?}"), None))
    };
    let user = |content: Value| json!({"role": "user", "content": content});
    let v = match name {
        "test_simple_prompt" => json!({"messages": [user(json!({"type": "text",
            "text": "This is a simple prompt for testing."}))]}),
        "test_prompt_with_arguments" => {
            let (a1, a2) = (arg("arg1")?, arg("arg2")?);
            json!({"messages": [user(json!({"type": "text",
                "text": format!("Prompt with arguments: arg1='{a1}', arg2='{a2}'")}))]})
        }
        "test_prompt_with_embedded_resource" => {
            let uri = arg("resourceUri")?;
            json!({"messages": [
                user(json!({"type": "resource", "resource": {"uri": uri, "mimeType": "text/plain",
                    "text": "Embedded resource content for testing."}})),
                user(json!({"type": "text", "text": "Please process the embedded resource above."}))
            ]})
        }
        "test_prompt_with_image" => json!({"messages": [
            user(json!({"type": "image", "data": PNG_1X1, "mimeType": "image/png"})),
            user(json!({"type": "text", "text": "Please analyze the image above."}))
        ]}),
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// `completion/complete`: candidate values for a prompt argument or template variable that
/// start with what was typed (the first ten; `total` counts them all).
pub fn complete(argument: &str, typed: &str) -> Value {
    let candidates: &[&str] = match argument {
        "id" => &["1", "2", "3", "42", "123"],
        "resourceUri" => &[
            "test://static-text",
            "test://static-binary",
            WATCHED_RESOURCE,
        ],
        _ => &["test", "testValue1", "testValue2", "hello", "world"],
    };
    let all: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(typed))
        .collect();
    let values: Vec<&str> = all.iter().copied().take(10).collect();
    json!({"completion": {"values": values, "total": all.len(), "hasMore": all.len() > values.len()}})
}

/// The input schema of `json_schema_2020_12_tool` (SEP-1613 / SEP-2106 keywords kept as is).
pub fn json_schema_2020_12() -> Arc<Map<String, Value>> {
    let v = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "addressDef", "type": "object", "properties": {
            "street": {"type": "string"}, "city": {"type": "string"}}}},
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"}
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false
    });
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(Map::new()),
    }
}

/// The input schema of `test_header_param`: one string, `region`, that 2026-07-28 clients
/// also send as the `Mcp-Param-Region` header (SEP-2243 `x-mcp-header`).
pub fn header_param_schema() -> Arc<Map<String, Value>> {
    match json!({
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region",
            "description": "Any text; sent in the Mcp-Param-Region header too"}},
        "required": ["region"]
    }) {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(Map::new()),
    }
}

/// The resource URIs one 2025 session subscribed to.
pub type Subscriptions = Arc<Mutex<BTreeSet<String>>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn round<'a>(
        responses: &'a Map<String, Value>,
        state: Option<&'a str>,
        caps: &'a ClientCapabilities,
        hub: &'a Hub,
    ) -> Round<'a> {
        Round {
            responses,
            state,
            caps,
            hub,
        }
    }

    #[test]
    fn every_asked_request_is_a_valid_input_request() {
        for r in [
            elicit_strings("x", &["a"]),
            sample("x", 5),
            list_roots(),
            sep1034_request(),
            sep1330_request(),
            elicitation_request("m"),
        ] {
            let typed = input_request(r.clone()).unwrap();
            let back = serde_json::to_value(&typed).unwrap();
            assert_eq!(back["method"], r["method"]);
        }
    }

    #[test]
    fn legacy_requests_carry_their_key() {
        for r in [elicit_strings("x", &["a"]), sample("x", 5), list_roots()] {
            let method = r["method"].clone();
            let sent = serde_json::to_value(legacy_request("k1", r).unwrap()).unwrap();
            assert_eq!(sent["method"], method);
            assert_eq!(sent["params"]["_meta"][INPUT_KEY_META], "k1", "{sent}");
        }
    }

    #[test]
    fn multi_round_carries_the_name_through_its_state() {
        let hub = Hub::default();
        let caps = ClientCapabilities::default();
        let empty = Map::new();
        let Step::Ask(req, Some(s1)) = flow_multi_round(&round(&empty, None, &caps, &hub)) else {
            panic!("round 1 must ask");
        };
        assert!(req.contains_key("step1"));
        let a1 = one(
            "step1",
            json!({"action": "accept", "content": {"name": "Alice"}}),
        );
        let Step::Ask(req, Some(s2)) = flow_multi_round(&round(&a1, Some(&s1), &caps, &hub)) else {
            panic!("round 2 must ask");
        };
        assert!(req.contains_key("step2"));
        assert_ne!(s1, s2);
        let a2 = one(
            "step2",
            json!({"action": "accept", "content": {"color": "blue"}}),
        );
        let Step::Done(r) = flow_multi_round(&round(&a2, Some(&s2), &caps, &hub)) else {
            panic!("round 3 must finish");
        };
        assert_eq!(
            r.content[0].as_text().unwrap().text,
            "Multi-round complete for Alice who likes blue"
        );
    }

    #[test]
    fn sealed_state_opens_only_unchanged() {
        let hub = Hub::default();
        let s = hub.seal(&json!({"kind": "k"}));
        assert_eq!(hub.open(&s).unwrap()["kind"], "k");
        assert!(hub.open(&format!("{s}-TAMPERED")).is_none());
        let forged = s.replace("\\\"k\\\"", "\\\"x\\\"");
        assert_ne!(forged, s);
        assert!(hub.open(&forged).is_none());
        assert!(Hub::default().open(&s).is_none());
    }

    #[test]
    fn tampered_state_is_refused() {
        let hub = Hub::default();
        let caps = ClientCapabilities::default();
        let empty = Map::new();
        let Step::Ask(_, Some(s)) = flow_tampered_state(&round(&empty, None, &caps, &hub)) else {
            panic!("must ask");
        };
        let yes = one(
            "confirm",
            json!({"action": "accept", "content": {"ok": true}}),
        );
        assert!(matches!(
            flow_tampered_state(&round(&yes, Some(&s), &caps, &hub)),
            Step::Done(_)
        ));
        let bad = format!("{s}-TAMPERED");
        let Step::Fail(e) = flow_tampered_state(&round(&yes, Some(&bad), &caps, &hub)) else {
            panic!("must refuse");
        };
        assert_eq!(e.code.0, -32602);
    }

    #[test]
    fn capabilities_flow_asks_only_what_was_declared() {
        let hub = Hub::default();
        let empty = Map::new();
        let caps: ClientCapabilities = serde_json::from_value(json!({"sampling": {}})).unwrap();
        let Step::Ask(req, _) = flow_capabilities(&round(&empty, None, &caps, &hub)) else {
            panic!("must ask");
        };
        assert_eq!(req.keys().collect::<Vec<_>>(), ["sample_input"]);
        let none = ClientCapabilities::default();
        assert!(matches!(
            flow_capabilities(&round(&empty, None, &none, &hub)),
            Step::Done(_)
        ));
    }

    #[test]
    fn resources_read_and_template_substitution() {
        assert!(read("test://static-binary").unwrap()["contents"][0]["blob"].is_string());
        let t = read("test://template/123/data").unwrap();
        assert!(t["contents"][0]["text"].as_str().unwrap().contains("123"));
        assert!(read("test://nonexistent").is_none());
        assert!(read("test://template//data").is_none());
        let _: rmcp::model::ListResourcesResult = model(resources()).unwrap();
        let _: rmcp::model::ListResourceTemplatesResult = model(resource_templates()).unwrap();
        let _: rmcp::model::ReadResourceResult = model(t).unwrap();
        let _: rmcp::model::ListPromptsResult = model(prompts()).unwrap();
    }

    #[test]
    fn prompts_substitute_their_arguments() {
        let mut args = Map::new();
        args.insert("arg1".into(), json!("v1"));
        args.insert("arg2".into(), json!("v2"));
        let p = prompt("test_prompt_with_arguments", &args)
            .unwrap()
            .unwrap();
        let p: rmcp::model::GetPromptResult = model(p).unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v["messages"][0]["content"]["text"],
            "Prompt with arguments: arg1='v1', arg2='v2'"
        );
        assert!(prompt("test_prompt_with_arguments", &Map::new()).is_err());
        assert!(prompt("nope", &Map::new()).unwrap().is_none());
        for name in [
            "test_simple_prompt",
            "test_prompt_with_image",
            "test_prompt_with_embedded_resource",
        ] {
            let mut a = Map::new();
            a.insert("resourceUri".into(), json!("test://x"));
            let _: rmcp::model::GetPromptResult =
                model(prompt(name, &a).unwrap().unwrap()).unwrap();
        }
    }

    #[test]
    fn completion_filters_by_prefix() {
        let c = complete("arg1", "test");
        assert_eq!(
            c["completion"]["values"],
            json!(["test", "testValue1", "testValue2"])
        );
        let _: rmcp::model::CompleteResult = model(c).unwrap();
    }
}
