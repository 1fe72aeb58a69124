//! A 2025 server's requests to a 2026-07-28 client, translated into `input_required` results
//! and retries (multi round-trip requests), against a real rmcp server over real HTTP.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Sampling and roots are deprecated in MCP 2026-07-28 (SEP-2577); a 2025 server still sends
// them, which is what is translated here.
#![allow(deprecated)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use http_body_util::BodyExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequest, CreateMessageRequestParams, ElicitRequest,
    ProgressNotificationParam, SamplingMessage, ServerCapabilities, ServerConfig, ServerRequest,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tower::{Service, ServiceExt};
use turnpike_gateway::era::{EraAdapter, EraOptions, EraSetting};
use turnpike_gateway::serve::BoxUpstream;
use turnpike_gateway::upstream::http::HttpUpstream;
use turnpike_gateway::upstream::stdio::{StdioConfig, StdioUpstream};

#[derive(Default)]
struct Seen {
    /// Tool calls cancelled while waiting for the client.
    cancelled: AtomicUsize,
}

#[derive(Clone)]
struct Server {
    seen: Arc<Seen>,
    tool_router: ToolRouter<Self>,
}

fn elicit(message: &str) -> ServerRequest {
    let params = serde_json::from_value(json!({"mode": "form", "message": message,
        "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}))
    .unwrap();
    ServerRequest::ElicitRequest(ElicitRequest::new(params))
}

fn sample(question: &str) -> ServerRequest {
    ServerRequest::CreateMessageRequest(CreateMessageRequest::new(CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(question)],
        50,
    )))
}

impl Server {
    /// Sends `req` to the client and waits for its answer, or for the call's cancellation.
    async fn ask(
        &self,
        ctx: &RequestContext<RoleServer>,
        req: ServerRequest,
    ) -> Result<Value, String> {
        tokio::select! {
            r = ctx.peer.send_request(req) => r
                .map(|r| serde_json::to_value(r).unwrap())
                .map_err(|e| format!("refused: {e}")),
            () = ctx.ct.cancelled() => {
                self.seen.cancelled.fetch_add(1, Ordering::SeqCst);
                Err("cancelled".into())
            }
        }
    }

    fn answer(r: Result<Value, String>) -> CallToolResult {
        match r {
            Ok(v) => CallToolResult::success(vec![ContentBlock::text(v.to_string())]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e)]),
        }
    }
}

#[tool_router]
impl Server {
    #[tool(description = "Reports progress, then asks the client for a name (elicitation).")]
    async fn greet(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        if let Some(t) = ctx.meta.get_progress_token() {
            let _ = ctx
                .peer
                .notify_progress(ProgressNotificationParam::new(t, 1.0))
                .await;
        }
        Self::answer(self.ask(&ctx, elicit("name?")).await)
    }

    #[tool(description = "Asks for two names, one after the other.")]
    async fn twice(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let first = match self.ask(&ctx, elicit("first?")).await {
            Ok(v) => v,
            Err(e) => return Self::answer(Err(e)),
        };
        let second = self.ask(&ctx, elicit("second?")).await;
        Self::answer(second.map(|s| json!([first, s])))
    }

    #[tool(description = "Asks the client's model a question (sampling).")]
    async fn capital(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        Self::answer(self.ask(&ctx, sample("capital of France?")).await)
    }

    #[tool(description = "Lists the client's roots.")]
    async fn roots(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let req = ServerRequest::ListRootsRequest(Default::default());
        Self::answer(self.ask(&ctx, req).await)
    }

    #[tool(description = "Asks for a name, then works until cancelled (at most 60 s).")]
    async fn slow(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        if let Err(e) = self.ask(&ctx, elicit("name?")).await {
            return Self::answer(Err(e));
        }
        tokio::select! {
            () = ctx.ct.cancelled() => {
                self.seen.cancelled.fetch_add(1, Ordering::SeqCst);
                Self::answer(Err("cancelled".into()))
            }
            () = tokio::time::sleep(Duration::from_secs(60)) => Self::answer(Ok(json!("done"))),
        }
    }

    #[tool(description = "Asks for a name and a sampling at once.")]
    async fn both(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let (a, b) = tokio::join!(
            self.ask(&ctx, elicit("name?")),
            self.ask(&ctx, sample("capital of France?"))
        );
        match (a, b) {
            (Ok(a), Ok(b)) => Self::answer(Ok(json!([a, b]))),
            (Err(e), _) | (_, Err(e)) => Self::answer(Err(e)),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// An rmcp server on a loopback port; its URL and what it saw.
async fn rmcp_server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let svc = StreamableHttpService::new(
        move || {
            Ok(Server {
                seen: s2.clone(),
                tool_router: Server::tool_router(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().route_service("/mcp", svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/mcp"), seen)
}

/// A gateway era adapter in front of `url`, configured as a 2025 upstream.
fn adapter(url: &str) -> (EraAdapter, BoxUpstream) {
    let raw = tower::util::BoxCloneService::new(HttpUpstream::new(url).unwrap());
    let era = EraAdapter::new(
        raw,
        EraOptions {
            setting: EraSetting::Legacy,
            ..EraOptions::default()
        },
    );
    (era.clone(), era.boxed())
}

fn meta(caps: &Value) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientCapabilities": caps,
           "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}})
}

fn call_tool(id: Value, tool: &str, caps: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {}, "_meta": meta(caps)}})
}

/// `first` again as a retry with `id`, `responses` and `state`.
fn retry(first: &Value, id: Value, responses: Value, state: &str) -> Value {
    let mut b = first.clone();
    b["id"] = id;
    b["params"]["inputResponses"] = responses;
    b["params"]["requestState"] = json!(state);
    b
}

/// Sends `body` as a modern client and reads the whole answer: its content type and messages.
async fn send(svc: &BoxUpstream, body: &Value) -> (String, Vec<Value>) {
    let mut svc = svc.clone();
    let name = body.pointer("/params/name").and_then(Value::as_str);
    let mut b = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", body["method"].as_str().unwrap());
    if let Some(n) = name {
        b = b.header("mcp-name", n);
    }
    let req = b.body(Body::from(body.to_string())).unwrap();
    let work = async move {
        let r: Result<Response<Body>, Infallible> = svc.ready().await.unwrap().call(req).await;
        let resp = r.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let msgs = if ct.starts_with("application/json") {
            vec![serde_json::from_str(&text).unwrap()]
        } else {
            text.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .collect()
        };
        (ct, msgs)
    };
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .expect("the gateway answers, never hangs")
}

/// The answer to `id` among `msgs` (the last message).
fn answer_to<'a>(msgs: &'a [Value], id: &Value) -> &'a Value {
    let last = msgs.last().expect("some message");
    assert_eq!(&last["id"], id, "the answer comes last: {msgs:?}");
    last
}

/// The single input request of an `input_required` answer: (key, request, state).
fn single_input(answer: &Value) -> (String, Value, String) {
    let r = &answer["result"];
    assert_eq!(r["resultType"], "input_required", "{answer}");
    let reqs = r["inputRequests"].as_object().unwrap();
    assert_eq!(reqs.len(), 1, "{answer}");
    let (k, v) = reqs.iter().next().unwrap();
    (
        k.clone(),
        v.clone(),
        r["requestState"].as_str().unwrap().to_owned(),
    )
}

fn tool_text(answer: &Value) -> String {
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn error_of(msgs: &[Value], id: &Value) -> (i64, String) {
    let a = answer_to(msgs, id);
    (
        a["error"]["code"].as_i64().expect("an error"),
        a["error"]["message"].as_str().unwrap().to_owned(),
    )
}

async fn eventually(what: impl Fn() -> bool) -> bool {
    for _ in 0..400 {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    what()
}

fn elicit_caps() -> Value {
    json!({"elicitation": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_becomes_input_required_and_the_retry_gets_the_answer() {
    let (url, _seen) = rmcp_server().await;
    let (era, svc) = adapter(&url);
    let mut first = call_tool(json!(1), "greet", &elicit_caps());
    first["params"]["_meta"]["progressToken"] = json!("p1");
    let (ct, msgs) = send(&svc, &first).await;
    assert_eq!(ct, "text/event-stream");
    let progress = msgs
        .iter()
        .position(|m| m["method"] == "notifications/progress")
        .expect("the progress sent before the question stays on the first stream");
    assert_eq!(msgs[progress]["params"]["progressToken"], "p1");
    assert!(msgs.iter().all(|m| m.get("id").is_none() || m["id"] == 1));
    let (key, req, state) = single_input(answer_to(&msgs, &json!(1)));
    assert_eq!(req["method"], "elicitation/create");
    assert_eq!(req["params"]["message"], "name?");
    assert_eq!(req["params"]["requestedSchema"]["type"], "object");
    assert_eq!(era.pending_inputs(), 1);

    let mut again = retry(
        &first,
        json!(2),
        json!({key.as_str(): {"action": "accept", "content": {"name": "octocat"}}}),
        &state,
    );
    again["params"]["_meta"]["progressToken"] = json!("p2");
    let (ct, msgs) = send(&svc, &again).await;
    assert_eq!(ct, "text/event-stream");
    let done = answer_to(&msgs, &json!(2));
    let text: Value = serde_json::from_str(&tool_text(done)).unwrap();
    assert_eq!(text["action"], "accept");
    assert_eq!(text["content"]["name"], "octocat");
    assert_ne!(done["result"]["isError"], true);
    assert_eq!(era.pending_inputs(), 0);

    // The same state again, after the call completed: refused, nothing asked upstream.
    let (_, msgs) = send(
        &svc,
        &retry(
            &first,
            json!(3),
            again["params"]["inputResponses"].clone(),
            &state,
        ),
    )
    .await;
    let (code, msg) = error_of(&msgs, &json!(3));
    assert_eq!(code, -32602);
    assert!(msg.contains("no request is waiting"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_questions_take_two_rounds() {
    let (url, _seen) = rmcp_server().await;
    let (_era, svc) = adapter(&url);
    let first = call_tool(json!("a"), "twice", &elicit_caps());
    let (_, msgs) = send(&svc, &first).await;
    let (k1, r1, s1) = single_input(answer_to(&msgs, &json!("a")));
    assert_eq!(r1["params"]["message"], "first?");
    let b = retry(
        &first,
        json!("b"),
        json!({k1.as_str(): {"action": "accept", "content": {"name": "one"}}}),
        &s1,
    );
    let (_, msgs) = send(&svc, &b).await;
    let (k2, r2, s2) = single_input(answer_to(&msgs, &json!("b")));
    assert_eq!(r2["params"]["message"], "second?");
    assert_ne!(k1, k2, "keys are unique within the request");
    assert_ne!(s1, s2);
    // The first round's state is spent.
    let (_, msgs) = send(
        &svc,
        &retry(
            &first,
            json!("x"),
            json!({k1.as_str(): {"action": "decline"}}),
            &s1,
        ),
    )
    .await;
    assert_eq!(error_of(&msgs, &json!("x")).0, -32602);
    let c = retry(
        &first,
        json!("c"),
        json!({k2.as_str(): {"action": "accept", "content": {"name": "two"}}}),
        &s2,
    );
    let (_, msgs) = send(&svc, &c).await;
    let text: Value = serde_json::from_str(&tool_text(answer_to(&msgs, &json!("c")))).unwrap();
    assert_eq!(text[0]["content"]["name"], "one");
    assert_eq!(text[1]["content"]["name"], "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_and_roots_are_asked_too() {
    let (url, _seen) = rmcp_server().await;
    let (_era, svc) = adapter(&url);
    let caps = json!({"sampling": {}, "roots": {"listChanged": false}});

    let first = call_tool(json!(1), "capital", &caps);
    let (_, msgs) = send(&svc, &first).await;
    let (key, req, state) = single_input(answer_to(&msgs, &json!(1)));
    assert_eq!(req["method"], "sampling/createMessage");
    assert_eq!(req["params"]["maxTokens"], 50);
    assert!(
        req["params"].get("_meta").is_none(),
        "the upstream's progress token is not passed on: {req}"
    );
    let result = json!({"role": "assistant", "content": {"type": "text", "text": "Paris"},
                        "model": "m-1", "stopReason": "endTurn"});
    let (_, msgs) = send(
        &svc,
        &retry(&first, json!(2), json!({key.as_str(): result}), &state),
    )
    .await;
    let text: Value = serde_json::from_str(&tool_text(answer_to(&msgs, &json!(2)))).unwrap();
    assert_eq!(text["model"], "m-1");
    assert!(text.to_string().contains("Paris"), "{text}");

    let first = call_tool(json!(3), "roots", &caps);
    let (_, msgs) = send(&svc, &first).await;
    let (key, req, state) = single_input(answer_to(&msgs, &json!(3)));
    assert_eq!(req["method"], "roots/list");
    let result = json!({"roots": [{"uri": "file:///srv/project", "name": "project"}]});
    let (_, msgs) = send(
        &svc,
        &retry(&first, json!(4), json!({key.as_str(): result}), &state),
    )
    .await;
    let text: Value = serde_json::from_str(&tool_text(answer_to(&msgs, &json!(4)))).unwrap();
    assert_eq!(text["roots"][0]["uri"], "file:///srv/project");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_asked_together_are_all_answered() {
    let (url, _seen) = rmcp_server().await;
    let (era, svc) = adapter(&url);
    let first = call_tool(
        json!(1),
        "both",
        &json!({"elicitation": {}, "sampling": {}}),
    );
    let (_, mut msgs) = send(&svc, &first).await;
    let mut id = 1;
    // One round when both requests arrive within the gathering window (the usual case), else
    // two: either way each is answered.
    let mut methods = Vec::new();
    loop {
        let a = answer_to(&msgs, &json!(id)).clone();
        if a["result"]["resultType"] == "complete" {
            let text: Value = serde_json::from_str(&tool_text(&a)).unwrap();
            assert_eq!(text[0]["content"]["name"], "both");
            assert_eq!(text[1]["model"], "m-2");
            break;
        }
        assert!(id < 4, "at most two rounds: {a}");
        let r = &a["result"];
        assert_eq!(r["resultType"], "input_required", "{a}");
        let mut responses = serde_json::Map::new();
        for (k, q) in r["inputRequests"].as_object().unwrap() {
            let m = q["method"].as_str().unwrap().to_owned();
            let result = match m.as_str() {
                "elicitation/create" => json!({"action": "accept", "content": {"name": "both"}}),
                _ => json!({"role": "assistant", "content": {"type": "text", "text": "Paris"},
                            "model": "m-2"}),
            };
            methods.push(m);
            responses.insert(k.clone(), result);
        }
        id += 1;
        let state = r["requestState"].as_str().unwrap().to_owned();
        msgs = send(
            &svc,
            &retry(&first, json!(id), Value::Object(responses), &state),
        )
        .await
        .1;
    }
    methods.sort();
    assert_eq!(methods, ["elicitation/create", "sampling/createMessage"]);
    assert_eq!(era.pending_inputs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_foreign_states_are_refused_and_the_genuine_one_still_works() {
    let (url, _seen) = rmcp_server().await;
    let (era, svc) = adapter(&url);
    let first = call_tool(json!(1), "greet", &elicit_caps());
    let (_, msgs) = send(&svc, &first).await;
    let (key, _, state) = single_input(answer_to(&msgs, &json!(1)));
    let good = json!({key.as_str(): {"action": "accept", "content": {"name": "real"}}});

    // A changed character.
    let mut bytes = state.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).unwrap();
    let (_, msgs) = send(&svc, &retry(&first, json!(2), good.clone(), &forged)).await;
    let (code, msg) = error_of(&msgs, &json!(2));
    assert_eq!(code, -32602);
    assert!(msg.contains("altered"), "{msg}");

    // The state with another request (other arguments, another tool).
    let mut other = retry(&first, json!(3), good.clone(), &state);
    other["params"]["arguments"] = json!({"n": 2});
    let (_, msgs) = send(&svc, &other).await;
    let (code, msg) = error_of(&msgs, &json!(3));
    assert_eq!(code, -32602);
    assert!(msg.contains("another request"), "{msg}");
    let mut other = retry(&first, json!(4), good.clone(), &state);
    other["params"]["name"] = json!("twice");
    let (_, msgs) = send(&svc, &other).await;
    assert_eq!(error_of(&msgs, &json!(4)).0, -32602);

    // The state from a client with other capabilities.
    let mut other = retry(&first, json!(5), good.clone(), &state);
    other["params"]["_meta"] = meta(&json!({"elicitation": {}, "roots": {}}));
    let (_, msgs) = send(&svc, &other).await;
    let (code, msg) = error_of(&msgs, &json!(5));
    assert_eq!(code, -32602);
    assert!(msg.contains("capabilities"), "{msg}");

    // A state another instance issued (its exchange lives there).
    let (_era2, svc2) = adapter(&url);
    let (_, msgs) = send(&svc2, &first).await;
    let (_, _, state2) = single_input(answer_to(&msgs, &json!(1)));
    let (_, msgs) = send(&svc, &retry(&first, json!(6), good.clone(), &state2)).await;
    let (code, msg) = error_of(&msgs, &json!(6));
    assert_eq!(code, -32602);
    assert!(msg.contains("this gateway instance"), "{msg}");

    // inputResponses without any state answer nothing: dropped, the call starts anew (and
    // asks again, in an exchange of its own).
    let mut bare = first.clone();
    bare["id"] = json!(7);
    bare["params"]["inputResponses"] = good.clone();
    let (_, msgs) = send(&svc, &bare).await;
    let (_, _, fresh) = single_input(answer_to(&msgs, &json!(7)));
    assert_ne!(fresh, state);
    assert_eq!(era.pending_inputs(), 2);

    // None of these took the exchange.
    let (_, msgs) = send(&svc, &retry(&first, json!(8), good, &state)).await;
    let text: Value = serde_json::from_str(&tool_text(answer_to(&msgs, &json!(8)))).unwrap();
    assert_eq!(text["content"]["name"], "real");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_answer_is_asked_again() {
    let (url, _seen) = rmcp_server().await;
    let (_era, svc) = adapter(&url);
    let first = call_tool(json!(1), "greet", &elicit_caps());
    let (_, msgs) = send(&svc, &first).await;
    let (key, _, state) = single_input(answer_to(&msgs, &json!(1)));
    let (ct, msgs) = send(
        &svc,
        &retry(&first, json!(2), json!({"unrelated": {}}), &state),
    )
    .await;
    assert_eq!(ct, "application/json");
    let (key2, req, state2) = single_input(answer_to(&msgs, &json!(2)));
    assert_eq!(key2, key, "the same question, under its key");
    assert_eq!(req["params"]["message"], "name?");
    // A response that is not a result object is refused, naming the key; the exchange stays.
    let (_, msgs) = send(
        &svc,
        &retry(&first, json!(3), json!({key.as_str(): "yes"}), &state2),
    )
    .await;
    let (code, msg) = error_of(&msgs, &json!(3));
    assert_eq!(code, -32602);
    assert!(msg.contains(&key), "{msg}");
    let ok = json!({key.as_str(): {"action": "decline"}});
    let (_, msgs) = send(&svc, &retry(&first, json!(4), ok, &state2)).await;
    let text: Value = serde_json::from_str(&tool_text(answer_to(&msgs, &json!(4)))).unwrap();
    assert_eq!(text["action"], "decline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_capability_the_tool_sees_a_refusal() {
    let (url, _seen) = rmcp_server().await;
    let (era, svc) = adapter(&url);
    // Sampling declared, elicitation asked: refused upstream, never shown to the client.
    for (id, caps) in [(1, json!({"sampling": {}})), (2, json!({}))] {
        let (_, msgs) = send(&svc, &call_tool(json!(id), "greet", &caps)).await;
        assert!(
            msgs.iter()
                .all(|m| m.get("method").is_none() || m["method"] == "notifications/progress"),
            "the client never sees the server's request: {msgs:?}"
        );
        let a = answer_to(&msgs, &json!(id));
        assert_eq!(a["result"]["resultType"], "complete");
        assert_eq!(a["result"]["isError"], true, "{a}");
        let text = a["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("refused") && text.contains("elicitation capability"),
            "{text}"
        );
    }
    assert_eq!(era.pending_inputs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_retries_gets_the_call_cancelled_upstream() {
    let (url, seen) = rmcp_server().await;
    let (era, svc) = adapter(&url);
    era.set_input_wait(Duration::from_millis(300));
    let first = call_tool(json!(1), "greet", &elicit_caps());
    let (_, msgs) = send(&svc, &first).await;
    let (key, _, state) = single_input(answer_to(&msgs, &json!(1)));
    assert!(
        eventually(|| seen.cancelled.load(Ordering::SeqCst) == 1).await,
        "the waiting tool call was cancelled upstream"
    );
    assert_eq!(era.pending_inputs(), 0);
    let (_, msgs) = send(
        &svc,
        &retry(
            &first,
            json!(2),
            json!({key.as_str(): {"action": "decline"}}),
            &state,
        ),
    )
    .await;
    assert_eq!(error_of(&msgs, &json!(2)).0, -32602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_pending_exchange_gives_way_when_full() {
    let (url, seen) = rmcp_server().await;
    let (era, svc) = adapter(&url);
    era.set_max_pending_inputs(1);
    let one = call_tool(json!(1), "greet", &elicit_caps());
    let (_, msgs) = send(&svc, &one).await;
    let (k1, _, s1) = single_input(answer_to(&msgs, &json!(1)));
    let two = call_tool(json!(2), "greet", &elicit_caps());
    let (_, msgs) = send(&svc, &two).await;
    let (k2, _, s2) = single_input(answer_to(&msgs, &json!(2)));
    assert!(
        eventually(|| seen.cancelled.load(Ordering::SeqCst) == 1).await,
        "the first call was cancelled upstream"
    );
    assert_eq!(era.pending_inputs(), 1);
    let (_, msgs) = send(
        &svc,
        &retry(
            &one,
            json!(3),
            json!({k1.as_str(): {"action": "decline"}}),
            &s1,
        ),
    )
    .await;
    assert_eq!(error_of(&msgs, &json!(3)).0, -32602);
    let (_, msgs) = send(
        &svc,
        &retry(
            &two,
            json!(4),
            json!({k2.as_str(): {"action": "cancel"}}),
            &s2,
        ),
    )
    .await;
    let text: Value = serde_json::from_str(&tool_text(answer_to(&msgs, &json!(4)))).unwrap();
    assert_eq!(text["action"], "cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_retrys_stream_cancels_the_call_upstream() {
    let (url, seen) = rmcp_server().await;
    let (era, mut svc) = adapter(&url);
    let first = call_tool(json!(1), "slow", &elicit_caps());
    let (_, msgs) = send(&svc, &first).await;
    let (key, _, state) = single_input(answer_to(&msgs, &json!(1)));
    let again = retry(
        &first,
        json!(2),
        json!({key.as_str(): {"action": "accept", "content": {"name": "x"}}}),
        &state,
    );
    let req = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .body(Body::from(again.to_string()))
        .unwrap();
    let r: Result<Response<Body>, Infallible> = svc.ready().await.unwrap().call(req).await;
    let resp = r.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().get("mcp-session-id").is_none());
    assert_eq!(era.pending_inputs(), 0);
    // The client goes away while the tool works on.
    drop(resp);
    assert!(
        eventually(|| seen.cancelled.load(Ordering::SeqCst) == 1).await,
        "the legacy upstream got notifications/cancelled for the abandoned call"
    );
}

/// A 2025 stdio server, inline in Python: each `tools/call` asks the client for a name
/// (`elicitation/create`) and answers with what the client said (or with the refusal).
const STDIO_SERVER: &str = r#"
import json, sys
def send(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
waiting, n = {}, 0
for line in sys.stdin:
    if not line.strip():
        continue
    m = json.loads(line)
    meth, i = m.get("method"), m.get("id")
    if meth is None and i in waiting:
        call = waiting.pop(i)
        if "result" in m:
            send({"jsonrpc": "2.0", "id": call, "result": {"content": [
                {"type": "text", "text": json.dumps(m["result"])}]}})
        else:
            send({"jsonrpc": "2.0", "id": call, "result": {"isError": True, "content": [
                {"type": "text", "text": "refused: " + m["error"]["message"]}]}})
    elif i is None:
        continue
    elif meth == "initialize":
        send({"jsonrpc": "2.0", "id": i, "result": {"protocolVersion": "2025-11-25",
              "capabilities": {"tools": {}}, "serverInfo": {"name": "inline", "version": "0"}}})
    elif meth == "tools/call":
        n += 1
        waiting["q%d" % n] = i
        send({"jsonrpc": "2.0", "id": "q%d" % n, "method": "elicitation/create",
              "params": {"message": "name?", "requestedSchema": {"type": "object",
                         "properties": {"name": {"type": "string"}}}}})
    else:
        send({"jsonrpc": "2.0", "id": i, "result": {}})
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_servers_question_is_asked_the_same_way() {
    let raw = tower::util::BoxCloneService::new(StdioUpstream::new(StdioConfig::new([
        "python3",
        "-u",
        "-c",
        STDIO_SERVER,
    ])));
    let era = EraAdapter::new(
        raw,
        EraOptions {
            setting: EraSetting::Legacy,
            ..EraOptions::default()
        },
    );
    let svc = era.clone().boxed();
    let first = call_tool(json!(1), "greet", &elicit_caps());
    let (_, msgs) = send(&svc, &first).await;
    let (key, req, state) = single_input(answer_to(&msgs, &json!(1)));
    assert_eq!(req["method"], "elicitation/create");
    let good = json!({key.as_str(): {"action": "accept", "content": {"name": "piped"}}});
    let (_, msgs) = send(&svc, &retry(&first, json!(2), good, &state)).await;
    let text: Value = serde_json::from_str(&tool_text(answer_to(&msgs, &json!(2)))).unwrap();
    assert_eq!(text["content"]["name"], "piped");
    assert_eq!(era.pending_inputs(), 0);

    // Without the capability: refused, and the refusal reaches the server.
    let (_, msgs) = send(&svc, &call_tool(json!(3), "greet", &json!({}))).await;
    let a = answer_to(&msgs, &json!(3));
    assert_eq!(a["result"]["isError"], true, "{a}");
    let text = a["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("elicitation capability"), "{text}");
}

/// An upstream that answers every POST at once with a result carrying the request's id, as
/// JSON or as one SSE event.
fn instant_upstream(sse: bool) -> BoxUpstream {
    tower::util::BoxCloneService::new(tower::service_fn(move |req: Request<Body>| async move {
        let bytes = req.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let mut result = json!({"content": [{"type": "text", "text": "hello"}], "isError": false});
        if v.get("method").and_then(Value::as_str) == Some("initialize") {
            result = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                             "serverInfo": {"name": "instant", "version": "1"}});
        }
        let msg = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        let (body, ct) = if sse && v.get("method").and_then(Value::as_str) != Some("initialize") {
            (
                format!("event: message\ndata: {msg}\n\n"),
                "text/event-stream",
            )
        } else {
            (msg, "application/json")
        };
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert("content-type", ct.parse().unwrap());
        r.headers_mut()
            .insert("mcp-session-id", "upstream-session".parse().unwrap());
        Ok::<_, Infallible>(r)
    }))
}

/// What the asking path costs per message over the plain one: a modern client declaring
/// `sampling` (its calls take the path where the upstream's requests become `input_required`
/// results) against one declaring an unknown capability of the same size (the plain path), the
/// same `tools/call` to an upstream that answers at once, as JSON or SSE; median of five
/// interleaved rounds. A measurement, not a check:
/// `cargo nextest run --release -p turnpike-gateway --test era_mrtr cost --run-ignored only --no-capture`
#[tokio::test(flavor = "current_thread")]
#[ignore = "a measurement; run it in release mode"]
async fn cost_of_the_asking_path() {
    const N: usize = 20_000;
    for sse in [false, true] {
        let adapter = || {
            EraAdapter::new(
                instant_upstream(sse),
                EraOptions {
                    setting: EraSetting::Legacy,
                    ..EraOptions::default()
                },
            )
            .boxed()
        };
        let (plain, asking) = (adapter(), adapter());
        async fn run(svc: &BoxUpstream, caps: &Value, n: usize) -> f64 {
            let start = std::time::Instant::now();
            for i in 0..n {
                let body = call_tool(json!(i), "echo", caps).to_string();
                let req = Request::builder()
                    .method("POST")
                    .uri("/mcp")
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .body(Body::from(body))
                    .unwrap();
                let mut svc = svc.clone();
                let r: Result<Response<Body>, Infallible> =
                    svc.ready().await.unwrap().call(req).await;
                let bytes = r.unwrap().into_body().collect().await.unwrap().to_bytes();
                assert!(bytes.windows(8).any(|w| w == b"complete"));
            }
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        }
        // Capabilities of the same size, so that only the path differs.
        let (none, sampling) = (json!({"xampling": {}}), json!({"sampling": {}}));
        run(&plain, &none, 2_000).await;
        run(&asking, &sampling, 2_000).await;
        let mut d = Vec::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let x = run(&plain, &none, N).await;
            let y = run(&asking, &sampling, N).await;
            a.push(x);
            b.push(y);
            d.push(y - x);
        }
        for v in [&mut a, &mut b, &mut d] {
            v.sort_by(|p, q| p.total_cmp(q));
        }
        println!(
            "upstream answering {}: plain path {:.2} µs/msg, asking path {:.2} µs/msg, difference {:.2} µs/msg (median of 5 rounds of {N})",
            if sse { "SSE" } else { "JSON" },
            a[2],
            b[2],
            d[2]
        );
    }
}
