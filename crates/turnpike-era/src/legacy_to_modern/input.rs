//! An MCP 2026-07-28 `input_required` result answered by a legacy (2025) client.
//!
//! A modern server that needs something from the client answers a request with
//! `{"resultType": "input_required", "inputRequests": {<key>: {"method", "params"}, …},
//! "requestState": "…"}` and expects the same request again with `params.inputResponses`
//! (`{<key>: <the client's result>, …}`) and `params.requestState` echoed. A 2025 client
//! answers server requests instead. So, for a session that declared the capability:
//!
//! 1. the answer to the client's POST becomes an SSE stream (if it was JSON);
//! 2. each input request goes to the client on that stream as a JSON-RPC request whose id the
//!    gateway issues (`turnpike-input-<128 random bits>`), remembered with the session it
//!    belongs to;
//! 3. the client's response arrives as a POST of its own with the session id ([`deliver`]);
//!    one with a foreign session or an unknown id is dropped;
//! 4. with every answer in, the original request is sent upstream again with
//!    `inputResponses` and `requestState`, and its answer streamed on (another
//!    `input_required` starts another round, at most [`MAX_ROUNDS`]).
//!
//! A method the session did not declare (`elicitation/create` → `elicitation`,
//! `sampling/createMessage` → `sampling`, `roots/list` → `roots`) or cannot be forwarded,
//! a client answering with an error, a client silent for [`INPUT_TIMEOUT`], too many rounds:
//! each ends the request with a JSON-RPC error. A client closing its stream or cancelling the
//! request ends the exchange (and the upstream stream) at once.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use turnpike_mcp::messages::{
    set_id, set_params, ClientCapabilities, Envelope, InputKind, InputRequiredResult, RetryParams,
};
use turnpike_mcp::sse::SseParser;

use super::session::State;
use crate::seal::SessionKey;
use crate::wire::{self, OnAbandon};
use crate::{EraAdapter, NOT_TRANSLATABLE};

/// How long the gateway waits for a client to answer one round of input requests.
pub(crate) const INPUT_TIMEOUT: Duration = Duration::from_secs(300);
/// The most `input_required` rounds one request may take.
pub(crate) const MAX_ROUNDS: usize = 16;
/// The most input requests in one round.
const MAX_REQUESTS: usize = 32;
/// The most input requests outstanding on this instance, all sessions together.
const MAX_OUTSTANDING: usize = 16 * 1024;
/// The JSON-RPC error code for a client that did not answer in time.
const TIMED_OUT: i64 = -32001;

/// What it takes to send the client's request upstream again.
pub(crate) struct Retry {
    pub(crate) adapter: EraAdapter,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) extensions: http::Extensions,
    /// The request as forwarded (with the session's `_meta`).
    pub(crate) body: Value,
    pub(crate) key: SessionKey,
    /// The capabilities the session declared.
    pub(crate) caps: ClientCapabilities,
}

/// Hands a client's JSON-RPC response to the exchange waiting for it, if it is one the
/// gateway asked this session for.
pub(crate) fn deliver(st: &State, key: SessionKey, msg: Value) {
    let Some(id) = Envelope::of(&msg).id.and_then(Value::as_str) else {
        return;
    };
    let mut asked = st.asked.lock();
    if asked.get(id).is_some_and(|(k, _)| *k == key) {
        if let Some((_, tx)) = asked.remove(id) {
            let _ = tx.send(msg);
        }
    }
}

fn is_input_required(v: &Value, id: &Value) -> bool {
    Envelope::of(v).is_response_to(id) && InputRequiredResult::of(v).is_some()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The upstream's first answer to a request of a session that can answer input requests.
pub(crate) async fn respond(
    retry: Retry,
    resp: Response<Body>,
    id: Value,
    untrack: OnAbandon,
    cancel: CancellationToken,
) -> Response<Body> {
    match wire::media_type(resp.headers()).as_str() {
        "application/json" => {
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let bytes = match Limited::new(body, wire::MAX_READ).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return wire::json_response(
                        StatusCode::BAD_GATEWAY,
                        &turnpike_mcp::error_response(
                            Some(&id),
                            turnpike_core::error_codes::UPSTREAM_FAILED,
                            "the upstream's answer could not be read",
                        ),
                    )
                }
            };
            if contains(&bytes, b"input_required") {
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    if is_input_required(&v, &id) {
                        return stream(retry, Source::Final(v), id, untrack, cancel);
                    }
                }
            }
            Response::from_parts(parts, Body::from(bytes))
        }
        "text/event-stream" => stream(retry, Source::Stream(resp), id, untrack, cancel),
        _ => resp,
    }
}

/// Where the next answer comes from.
enum Source {
    /// Read already.
    Final(Value),
    /// An SSE stream still to read.
    Stream(Response<Body>),
}

/// An SSE response fed by a task that relays the upstream and runs the input rounds.
fn stream(
    retry: Retry,
    first: Source,
    id: Value,
    untrack: OnAbandon,
    cancel: CancellationToken,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let _untrack = untrack;
        run(retry, first, id, tx, cancel).await;
    });
    wire::sse_response(rx)
}

async fn send_event(tx: &mpsc::Sender<Bytes>, v: &Value) -> bool {
    tx.send(Bytes::from(format!("event: message\ndata: {v}\n\n")))
        .await
        .is_ok()
}

async fn run(
    retry: Retry,
    first: Source,
    id: Value,
    tx: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
) {
    let mut source = first;
    let mut rounds = 0usize;
    loop {
        let answer = match source {
            Source::Final(v) => Some(v),
            Source::Stream(resp) => relay(resp, &id, &tx, &cancel).await,
        };
        let Some(answer) = answer else {
            return;
        };
        if !is_input_required(&answer, &id) {
            send_event(&tx, &answer).await;
            return;
        }
        rounds += 1;
        if rounds > MAX_ROUNDS {
            let e = turnpike_mcp::error_response(
                Some(&id),
                NOT_TRANSLATABLE,
                &format!("the server asked for input more than {MAX_ROUNDS} times for one request; turnpike gave up"),
            );
            send_event(&tx, &e).await;
            return;
        }
        let result = InputRequiredResult::of(&answer).unwrap_or_default();
        let responses = match ask(&retry, &result, &id, &tx, &cancel).await {
            Ok(r) => r,
            Err(Some(e)) => {
                send_event(&tx, &e).await;
                return;
            }
            Err(None) => return,
        };
        let body = retry_body(&retry.body, responses, result.request_state.as_ref());
        let mut req = wire::post(&retry.uri, retry.headers.clone(), &body);
        *req.extensions_mut() = retry.extensions.clone();
        let resp = tokio::select! {
            r = wire::send(&retry.adapter.inner(), req) => r,
            () = cancel.cancelled() => return,
            () = tx.closed() => return,
        };
        let status = resp.status();
        source = match wire::media_type(resp.headers()).as_str() {
            "text/event-stream" if status.is_success() => Source::Stream(resp),
            _ => match wire::answer(resp, &id).await {
                Ok((_, mut v)) => {
                    set_id(&mut v, id.clone());
                    Source::Final(v)
                }
                Err(why) => Source::Final(turnpike_mcp::error_response(
                    Some(&id),
                    turnpike_core::error_codes::UPSTREAM_FAILED,
                    &format!("the upstream failed on the retry with the client's input: {why}"),
                )),
            },
        };
    }
}

/// The request again, with the client's answers and the server's state.
fn retry_body(original: &Value, responses: Map<String, Value>, state: Option<&Value>) -> Value {
    let mut body = original.clone();
    if let Some(mut params) = RetryParams::of(&body) {
        params.input_responses = Some(Value::Object(responses));
        params.request_state = state.filter(|s| !s.is_null()).cloned();
        set_params(&mut body, Some(params.into_value()));
    }
    body
}

/// Relays an upstream SSE stream to the client until the answer to `id`: an `input_required`
/// answer is returned, not relayed. `None`: the stream ended (its answer relayed, or none) or
/// the client went away.
async fn relay(
    resp: Response<Body>,
    id: &Value,
    tx: &mpsc::Sender<Bytes>,
    cancel: &CancellationToken,
) -> Option<Value> {
    let mut upstream = resp.into_body().into_data_stream();
    let mut parser = SseParser::new();
    loop {
        let next = tokio::select! {
            n = upstream.next() => n,
            () = cancel.cancelled() => return None,
            () = tx.closed() => return None,
        };
        let Some(Ok(chunk)) = next else {
            let tail = parser.finish();
            if !tail.is_empty() {
                let _ = tx.send(Bytes::from(tail)).await;
            }
            return None;
        };
        parser.push(&chunk);
        if parser.buffered() > wire::MAX_READ {
            return None;
        }
        while let Some(ev) = parser.next_event() {
            if ev
                .data
                .as_deref()
                .is_some_and(|d| d.contains("input_required"))
            {
                if let Some(v) = ev
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                {
                    if is_input_required(&v, id) {
                        return Some(v);
                    }
                }
            }
            if tx.send(Bytes::from(ev.raw)).await.is_err() {
                return None;
            }
        }
    }
}

/// Removes the exchange's outstanding requests when it ends, however it ends.
struct Asked<'a> {
    st: &'a State,
    ids: Vec<String>,
}

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        let mut asked = self.st.asked.lock();
        for id in &self.ids {
            asked.remove(id);
        }
    }
}

/// One round: sends the input requests to the client and collects its answers by key.
/// `Err(Some(error))`: the request ends with that error; `Err(None)`: the client went away.
async fn ask(
    retry: &Retry,
    result: &InputRequiredResult,
    id: &Value,
    tx: &mpsc::Sender<Bytes>,
    cancel: &CancellationToken,
) -> Result<Map<String, Value>, Option<Value>> {
    let fail =
        |code: i64, msg: String| Err(Some(turnpike_mcp::error_response(Some(id), code, &msg)));
    let requests = result.requests();
    if requests.len() > MAX_REQUESTS {
        return fail(
            NOT_TRANSLATABLE,
            format!(
                "the server asked for {} inputs at once; turnpike forwards at most {MAX_REQUESTS}",
                requests.len()
            ),
        );
    }
    let mut methods = Vec::with_capacity(requests.len());
    for (k, r) in &requests {
        let method = r.method().unwrap_or("");
        match InputKind::of_method(method) {
            None => {
                return fail(
                    NOT_TRANSLATABLE,
                    format!("the server asked for input {k:?} with {method:?}, which turnpike cannot forward to a 2025-era client"),
                )
            }
            Some(kind) if !retry.caps.declares(kind) => {
                let cap = kind.capability();
                return fail(
                    NOT_TRANSLATABLE,
                    format!("the server needs {method} from the client to finish this request (an MCP 2026-07-28 input_required result), and this client's session did not declare the {cap} capability"),
                )
            }
            Some(kind) => methods.push(kind.method()),
        }
    }
    let st = &retry.adapter.shared().legacy;
    if st.asked.lock().len() + requests.len() > MAX_OUTSTANDING {
        return fail(
            NOT_TRANSLATABLE,
            "too many input requests are waiting for clients on this gateway; try again later"
                .to_owned(),
        );
    }
    let mut guard = Asked {
        st,
        ids: Vec::with_capacity(requests.len()),
    };
    let mut waits = Vec::with_capacity(requests.len());
    for ((k, r), method) in requests.iter().zip(methods) {
        let gid = format!("turnpike-input-{:032x}", rand::random::<u128>());
        let (otx, orx) = oneshot::channel();
        st.asked.lock().insert(gid.clone(), (retry.key, otx));
        guard.ids.push(gid.clone());
        let params = r
            .params
            .clone()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let msg = json!({"jsonrpc": "2.0", "id": gid, "method": method, "params": params});
        if !send_event(tx, &msg).await {
            return Err(None);
        }
        waits.push((k.clone(), method, orx));
    }
    let deadline = tokio::time::Instant::now() + INPUT_TIMEOUT;
    let mut responses = Map::new();
    for (k, method, orx) in waits {
        let got = tokio::select! {
            r = tokio::time::timeout_at(deadline, orx) => r,
            () = cancel.cancelled() => return Err(None),
            () = tx.closed() => return Err(None),
        };
        let msg = match got {
            Ok(Ok(m)) => m,
            Ok(Err(_)) | Err(_) => {
                return fail(
                    TIMED_OUT,
                    format!(
                        "the client did not answer {method} within {} s",
                        INPUT_TIMEOUT.as_secs()
                    ),
                )
            }
        };
        let answer = Envelope::of(&msg);
        if let Some(r) = answer.result {
            responses.insert(k, r.clone());
        } else {
            let code = answer.error_code().unwrap_or(-32603);
            let why = answer.error_message().unwrap_or("no result");
            return fail(
                code,
                format!("the client answered {method} with an error: {why}"),
            );
        }
    }
    Ok(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_carries_responses_and_state() {
        let b = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"confirm","requestState":"old"}});
        let mut m = Map::new();
        m.insert(
            "ok".into(),
            json!({"action":"accept","content":{"ok":true}}),
        );
        let r = retry_body(&b, m.clone(), Some(&json!("s1")));
        assert_eq!(r["params"]["inputResponses"]["ok"]["action"], "accept");
        assert_eq!(r["params"]["requestState"], "s1");
        assert_eq!(r["params"]["name"], "confirm");
        let r = retry_body(&b, m, None);
        assert!(r["params"].get("requestState").is_none());
    }

    #[test]
    fn detection() {
        let v = json!({"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required"}});
        assert!(is_input_required(&v, &json!(1)));
        assert!(!is_input_required(&v, &json!(2)));
    }
}
