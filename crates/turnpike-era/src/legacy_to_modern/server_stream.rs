//! A legacy (2025) client's server stream (GET) and `resources/subscribe` in front of a
//! modern-only (2026-07-28) upstream, bridged to `subscriptions/listen`.
//!
//! - **GET** with a valid sealed session id opens one upstream `subscriptions/listen` (a POST
//!   with the session's `_meta` and the routing headers, like every forwarded request) whose
//!   filter asks for each list the upstream's `server/discover` capabilities mark
//!   `listChanged: true` (`toolsListChanged`, `promptsListChanged`, `resourcesListChanged`) and
//!   for the resource URIs this session subscribed to on this instance
//!   (`resourceSubscriptions`). Once the upstream acknowledged it, the client gets `200` and an
//!   SSE stream with each notification of the listen stream, its
//!   `io.modelcontextprotocol/subscriptionId` `_meta` key taken out; the acknowledgement itself
//!   is not passed on. A comment line every 30 s keeps idle connections open. When the upstream
//!   has neither list-changed notifications nor resource subscriptions, the GET gets `405` as
//!   before. When it offers subscriptions but nothing is subscribed yet and no list-changed
//!   kind applies, the stream is held open without an upstream listen until the first
//!   `resources/subscribe`.
//! - **One stream per session on an instance**: a new GET for the same session replaces the
//!   previous one, which ends (a client that reconnects after a cut the gateway has not noticed
//!   yet is not locked out).
//! - **`resources/subscribe` / `resources/unsubscribe`**: when the upstream's capabilities have
//!   `resources.subscribe: true`, the URI is recorded for the session (in memory, on this
//!   instance: at most [`MAX_URIS`] URIs of at most [`MAX_URI_LEN`] bytes per session,
//!   [`MAX_SESSIONS`](super::subscriptions::MAX_SESSIONS) sessions and
//!   [`MAX_TOTAL_BYTES`](super::subscriptions::MAX_TOTAL_BYTES) of URIs in all, least recently used
//!   session forgotten first) and the answer is `{}`. With a GET stream open, its upstream
//!   listen is opened again with the new filter first; the old one is read to its end of what
//!   already arrived and then closed once the new one is acknowledged, so no event is lost in the
//!   swap (one may come twice). The answer waits for that acknowledgement (at most 10 s). Without
//!   the capability: `-32601` "… does not support resource subscriptions".
//! - The upstream's listen ending (a graceful `subscriptions/listen` result, an error or a cut)
//!   ends the client's GET stream; a 2025 client opens it again. The client closing its GET
//!   drops the upstream listen (its connection closes: cancellation in the modern era).
//!   DELETE of the session ends the stream and forgets its subscriptions.
//! - Bounded: an upstream event over 256 KiB ends the stream; at most 16 messages wait for a slow
//!   client before the relay stops reading the upstream; an open stream counts as a session of
//!   the table above, so evicting its session ends it too. The `server/discover` before a GET or
//!   subscribe and each listen's acknowledgement get 30 s (then `502` for a GET; for a subscribe,
//!   an error), so nothing waits for ever.
//!
//! Subscriptions live on the instance that took them: a client whose next request reaches
//! another instance keeps its session (the id is sealed) but not its subscriptions.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use turnpike_mcp::sse::SseParser;

use super::discover::discover;
use super::session::Opened;
use super::subscriptions::{Refusal, MAX_URIS, MAX_URI_LEN};
use crate::seal::SessionKey;
use crate::wire;
use crate::{EraAdapter, METHOD_NOT_FOUND};
use turnpike_mcp::messages::{
    Envelope, ListKind, Notification, NotificationMeta, RequestMeta, ServerCapabilities,
    SubscriptionFilter,
};

/// How long the upstream has to acknowledge a `subscriptions/listen` (and to answer the
/// `server/discover` before it).
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a `resources/subscribe` waits for the open stream's new filter to be acknowledged.
const REFILTER_WAIT: Duration = Duration::from_secs(10);
/// How often an idle client stream gets a comment line.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// The largest upstream event taken on a listen stream (a larger one ends the stream).
const MAX_EVENT: usize = 256 * 1024;
/// Messages queued for a client before the relay stops reading the upstream.
const QUEUE: usize = 16;

/// The notification that acknowledges a `subscriptions/listen`.
const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";

/// The list-changed kinds of a filter the upstream's capabilities can serve.
fn list_changed_kinds(caps: &ServerCapabilities) -> SubscriptionFilter {
    let mut f = SubscriptionFilter::default();
    for kind in ListKind::ALL {
        f.set_list_changed(kind, caps.list_changed(kind));
    }
    f
}

/// The upstream's `server/discover` capabilities for a session (bounded in time).
async fn capabilities(
    a: &EraAdapter,
    uri: &Uri,
    opened: &Opened,
) -> Result<ServerCapabilities, String> {
    let caps = opened
        .meta
        .client_capabilities
        .clone()
        .unwrap_or_else(|| json!({}));
    let info = opened.meta.client_info.clone().unwrap_or(Value::Null);
    match tokio::time::timeout(ACK_TIMEOUT, discover(a, uri, &caps, &info)).await {
        Ok(Ok(d)) => Ok(ServerCapabilities::of(d.capabilities.as_ref())),
        Ok(Err(why)) => Err(why),
        Err(_) => Err(format!("no answer within {} s", ACK_TIMEOUT.as_secs())),
    }
}

/// `resources/subscribe` or `resources/unsubscribe` with id `id`.
pub(crate) async fn subscribe(
    a: &EraAdapter,
    uri: &Uri,
    opened: &Opened,
    id: Value,
    method: &str,
    body: &Value,
) -> Response<Body> {
    let error = |code: i64, msg: &str| {
        wire::json_response(
            StatusCode::OK,
            &turnpike_mcp::error_response(Some(&id), code, msg),
        )
    };
    let Some(target) = Envelope::of(body).param_str("uri") else {
        return error(
            turnpike_core::error_codes::INVALID_PARAMS,
            &format!("{method}: params.uri (a string) is required"),
        );
    };
    if target.is_empty() || target.len() > MAX_URI_LEN {
        return error(
            turnpike_core::error_codes::INVALID_PARAMS,
            &format!("{method}: params.uri must be 1 to {MAX_URI_LEN} bytes long"),
        );
    }
    let caps = match capabilities(a, uri, opened).await {
        Ok(c) => c,
        Err(why) => {
            return error(
                turnpike_core::error_codes::UPSTREAM_FAILED,
                &format!("the upstream (MCP 2026-07-28) did not answer server/discover: {why}"),
            )
        }
    };
    if !caps.can_subscribe() {
        return error(
            METHOD_NOT_FOUND,
            &format!(
                "{method}: this MCP 2026-07-28 server does not support resource subscriptions"
            ),
        );
    }
    let streams = &a.shared().legacy.streams;
    let changed = if method == "resources/subscribe" {
        match streams.add(opened.key, target) {
            Ok(c) => c,
            Err(Refusal::TooMany) => {
                return error(
                    turnpike_core::error_codes::INVALID_PARAMS,
                    &format!("{method}: at most {MAX_URIS} resource subscriptions per session"),
                )
            }
        }
    } else {
        streams.remove(opened.key, target)
    };
    if changed {
        if let Some(tx) = streams.refilter_of(&opened.key) {
            // The open stream listens again with the new filter; the answer waits for the
            // upstream's acknowledgement, so an update sent after it reaches the client.
            let (done, acked) = oneshot::channel();
            let _ = tokio::time::timeout(REFILTER_WAIT, async move {
                if tx.send(done).await.is_ok() {
                    let _ = acked.await;
                }
            })
            .await;
        }
    }
    wire::json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": {}}),
    )
}

/// Whether a GET's `Accept` allows an event stream (a missing header does).
fn accepts_sse(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values.filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|m| {
            let m = m.split(';').next().unwrap_or("").trim();
            m.eq_ignore_ascii_case("text/event-stream")
                || m == "*/*"
                || m.eq_ignore_ascii_case("text/*")
        })
    })
}

fn status_only(status: StatusCode, allow: Option<&'static str>) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    if let Some(a) = allow {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(a));
    }
    r
}

/// The `405` of a session with nothing to listen for.
pub(crate) fn no_stream() -> Response<Body> {
    status_only(StatusCode::METHOD_NOT_ALLOWED, Some("POST, DELETE"))
}

/// What it takes to open the session's upstream listen (again).
struct Ctx {
    adapter: EraAdapter,
    uri: Uri,
    headers: HeaderMap,
    extensions: http::Extensions,
    meta: RequestMeta,
    kinds: SubscriptionFilter,
    key: SessionKey,
    /// Whether the upstream takes resource subscriptions (else the URIs are left out).
    subscribe: bool,
}

impl Ctx {
    /// The `subscriptions/listen` filter: the list-changed kinds and the session's URIs.
    fn filter(&self) -> SubscriptionFilter {
        let mut f = self.kinds.clone();
        if self.subscribe {
            f.resource_subscriptions = self.adapter.shared().legacy.streams.uris(&self.key);
        }
        f
    }
}

/// An acknowledged upstream listen.
struct Listen {
    body: axum::body::BodyDataStream,
    parser: SseParser,
    id: Value,
}

/// Why a listen was not opened.
enum OpenError {
    /// The upstream answered with this HTTP error (passed on to the client as it is).
    Http(Response<Body>),
    /// The upstream refused `subscriptions/listen` with a JSON-RPC error.
    Refused(String),
    /// Anything else (unreachable, cut, no acknowledgement in time).
    Failed(String),
}

fn parse(data: Option<&str>) -> Option<Value> {
    data.and_then(|d| serde_json::from_str::<Value>(d).ok())
}

/// Opens an upstream `subscriptions/listen` with `filter` and reads up to its
/// acknowledgement.
async fn open(ctx: &Ctx, filter: SubscriptionFilter) -> Result<Listen, OpenError> {
    let id = json!(format!(
        "turnpike-listen-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
                      "params": {"_meta": ctx.meta.to_map(), "notifications": filter.into_value()}});
    let mut headers = ctx.headers.clone();
    crate::protocol::modern_headers(&mut headers, &body);
    let mut req = wire::post(&ctx.uri, headers, &body);
    *req.extensions_mut() = ctx.extensions.clone();
    let attempt = async {
        let resp = wire::send(&ctx.adapter.inner(), req).await;
        let status = resp.status();
        if matches!(status.as_u16(), 401 | 402 | 403 | 429) {
            return Err(OpenError::Http(resp));
        }
        if wire::media_type(resp.headers()) != "text/event-stream" {
            return Err(match wire::answer(resp, &id).await {
                Ok((_, v)) if Envelope::of(&v).error.is_some() => OpenError::Refused(
                    Envelope::of(&v)
                        .error_message()
                        .unwrap_or("an error")
                        .to_owned(),
                ),
                Ok(_) => {
                    OpenError::Failed("the upstream ended subscriptions/listen at once".into())
                }
                Err(why) => OpenError::Failed(why),
            });
        }
        if !status.is_success() {
            return Err(OpenError::Failed(format!(
                "the upstream answered HTTP {status}"
            )));
        }
        let mut body = resp.into_body().into_data_stream();
        let mut parser = SseParser::new();
        loop {
            while let Some(ev) = parser.next_event() {
                let Some(v) = parse(ev.data.as_deref()) else {
                    continue;
                };
                let e = Envelope::of(&v);
                if e.method == Some(ACKNOWLEDGED) {
                    let honoured = SubscriptionFilter::of(e.param("notifications"));
                    tracing::debug!(target: "turnpike::era", honoured = ?honoured, "subscriptions/listen acknowledged");
                    return Ok(Listen { body, parser, id });
                }
                if e.is_response_to(&id) {
                    return Err(match e.error_message() {
                        Some(m) => OpenError::Refused(m.to_owned()),
                        None => OpenError::Failed(
                            "the upstream ended subscriptions/listen before acknowledging it"
                                .into(),
                        ),
                    });
                }
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    parser.push(&chunk);
                    if parser.buffered() > MAX_EVENT {
                        return Err(OpenError::Failed(
                            "the upstream's event is too large".into(),
                        ));
                    }
                }
                _ => {
                    return Err(OpenError::Failed(
                        "the upstream's listen stream ended before its acknowledgement".into(),
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(ACK_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(OpenError::Failed(format!(
            "no acknowledgement of subscriptions/listen within {} s",
            ACK_TIMEOUT.as_secs()
        ))),
    }
}

/// GET of a legacy session: the server stream, bridged to `subscriptions/listen`.
pub(crate) async fn get(a: &EraAdapter, req: Request<Body>, opened: Opened) -> Response<Body> {
    if !accepts_sse(req.headers()) {
        return status_only(StatusCode::NOT_ACCEPTABLE, None);
    }
    let (parts, _) = req.into_parts();
    let caps = match capabilities(a, &parts.uri, &opened).await {
        Ok(c) => c,
        Err(why) => {
            return wire::json_response(
                StatusCode::BAD_GATEWAY,
                &turnpike_mcp::error_response(
                    None,
                    turnpike_core::error_codes::UPSTREAM_FAILED,
                    &format!("the upstream (MCP 2026-07-28) did not answer server/discover: {why}"),
                ),
            )
        }
    };
    let kinds = list_changed_kinds(&caps);
    let subscribe = caps.can_subscribe();
    if kinds.is_empty() && !subscribe {
        return no_stream();
    }
    let mut headers = parts.headers;
    headers.remove(turnpike_mcp::headers::SESSION_ID);
    headers.remove("last-event-id");
    headers.remove(header::ACCEPT);
    headers.remove(header::CONTENT_TYPE);
    headers.remove(header::CONTENT_LENGTH);
    let ctx = Ctx {
        adapter: a.clone(),
        uri: parts.uri,
        headers,
        extensions: parts.extensions,
        meta: (*opened.meta).clone(),
        kinds,
        key: opened.key,
        subscribe,
    };
    let streams = &a.shared().legacy.streams;
    let (refilter_tx, refilter_rx) = mpsc::channel(8);
    let end = CancellationToken::new();
    // Registered before the listen opens: a subscribe meanwhile asks this stream to listen
    // again, so its URI is not missed.
    let gen = streams.open_live(ctx.key, refilter_tx, end.clone());
    let first = ctx.filter();
    let listen = if first.is_empty() {
        None
    } else {
        match open(&ctx, first).await {
            Ok(l) => Some(l),
            Err(e) => {
                streams.close_live(&ctx.key, gen);
                return match e {
                    OpenError::Http(r) => r,
                    OpenError::Refused(why) => {
                        tracing::info!(target: "turnpike::era", %why, "the upstream refused subscriptions/listen; no server stream for the legacy client");
                        no_stream()
                    }
                    OpenError::Failed(why) => wire::json_response(
                        StatusCode::BAD_GATEWAY,
                        &turnpike_mcp::error_response(
                            None,
                            turnpike_core::error_codes::UPSTREAM_FAILED,
                            &format!("the upstream's subscriptions/listen failed: {why}"),
                        ),
                    ),
                };
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    tokio::spawn(async move {
        let key = ctx.key;
        let adapter = ctx.adapter.clone();
        relay(ctx, listen, refilter_rx, end, tx).await;
        adapter.shared().legacy.streams.close_live(&key, gen);
    });
    wire::sse_response(rx)
}

/// What a listen stream's buffered events asked for.
enum Flow {
    Go,
    /// The listen ended (its result or an error), or the client went away.
    Stop,
}

/// A listen stream's notification as a 2025 client gets it (`None`: not passed on): without
/// its subscription id, and without a `_meta` or `params` left empty by that.
fn for_legacy(v: Value) -> Option<Value> {
    let e = Envelope::of(&v);
    let method = e.method?;
    if method == ACKNOWLEDGED || e.id.is_some() {
        return None;
    }
    let Some(mut n) = Notification::of(&v) else {
        return Some(v);
    };
    let Some(mut params) = n.params() else {
        return Some(v);
    };
    if let Some(mut meta) = params.meta.as_ref().and_then(NotificationMeta::from_value) {
        meta.subscription_id = None;
        params.meta = (!meta.is_empty()).then(|| meta.into_value());
    }
    n.params = (!params.is_empty()).then(|| params.into_value());
    Some(n.into_value())
}

/// Sends the complete events the listen's parser holds to the client.
async fn drain_parsed(l: &mut Listen, tx: &mpsc::Sender<Bytes>, end: &CancellationToken) -> Flow {
    while let Some(ev) = l.parser.next_event() {
        if ev.raw.len() > MAX_EVENT {
            tracing::warn!(target: "turnpike::era", "an upstream listen event is too large; the legacy client's stream ends");
            return Flow::Stop;
        }
        let Some(v) = parse(ev.data.as_deref()) else {
            continue;
        };
        if Envelope::of(&v).is_response_to(&l.id) {
            // The upstream ended the subscription (gracefully or with an error).
            return Flow::Stop;
        }
        let Some(v) = for_legacy(v) else {
            continue;
        };
        let bytes = Bytes::from(format!("event: message\ndata: {v}\n\n"));
        let sent = tokio::select! {
            r = tx.send(bytes) => r.is_ok(),
            () = end.cancelled() => false,
        };
        if !sent {
            return Flow::Stop;
        }
    }
    if l.parser.buffered() > MAX_EVENT {
        tracing::warn!(target: "turnpike::era", "an upstream listen event is too large; the legacy client's stream ends");
        return Flow::Stop;
    }
    Flow::Go
}

async fn next_chunk(l: &mut Option<Listen>) -> Option<Result<Bytes, axum::Error>> {
    match l {
        Some(l) => l.body.next().await,
        None => std::future::pending().await,
    }
}

/// Relays the session's listen to the client until either side ends, opening it again when
/// the session's subscriptions change.
async fn relay(
    ctx: Ctx,
    mut listen: Option<Listen>,
    mut refilter: mpsc::Receiver<oneshot::Sender<()>>,
    end: CancellationToken,
    tx: mpsc::Sender<Bytes>,
) {
    if let Some(l) = listen.as_mut() {
        if let Flow::Stop = drain_parsed(l, &tx, &end).await {
            return;
        }
    }
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    loop {
        tokio::select! {
            biased;
            () = end.cancelled() => return,
            () = tx.closed() => return,
            asked = refilter.recv() => {
                let Some(first) = asked else { return };
                let mut waiting = vec![first];
                while let Ok(more) = refilter.try_recv() {
                    waiting.push(more);
                }
                let f = ctx.filter();
                if f.is_empty() {
                    listen = None;
                } else {
                    let opened = tokio::select! {
                        r = open(&ctx, f) => r,
                        () = end.cancelled() => return,
                        () = tx.closed() => return,
                    };
                    let mut new = match opened {
                        Ok(l) => l,
                        Err(OpenError::Refused(why) | OpenError::Failed(why)) => {
                            tracing::warn!(target: "turnpike::era", %why, "subscriptions/listen with the new filter failed; the legacy client's stream ends");
                            return;
                        }
                        Err(OpenError::Http(r)) => {
                            tracing::warn!(target: "turnpike::era", status = %r.status(), "subscriptions/listen with the new filter failed; the legacy client's stream ends");
                            return;
                        }
                    };
                    // What the old listen already received goes out before it is closed.
                    if let Some(mut old) = listen.take() {
                        while let Some(Some(Ok(chunk))) = old.body.next().now_or_never() {
                            old.parser.push(&chunk);
                            if let Flow::Stop = drain_parsed(&mut old, &tx, &end).await {
                                break;
                            }
                        }
                        let _ = drain_parsed(&mut old, &tx, &end).await;
                    }
                    if let Flow::Stop = drain_parsed(&mut new, &tx, &end).await {
                        return;
                    }
                    listen = Some(new);
                }
                for w in waiting {
                    let _ = w.send(());
                }
            }
            chunk = next_chunk(&mut listen) => {
                let Some(Ok(chunk)) = chunk else {
                    // The upstream's listen ended: so does the client's stream (it reconnects).
                    return;
                };
                let Some(l) = listen.as_mut() else { return };
                l.parser.push(&chunk);
                if let Flow::Stop = drain_parsed(l, &tx, &end).await {
                    return;
                }
            }
            _ = keepalive.tick() => {
                if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_mcp::messages::META_SUBSCRIPTION_ID;

    #[test]
    fn notifications_lose_the_subscription_id() {
        let v = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed",
            "params":{"_meta":{META_SUBSCRIPTION_ID: "x"}}});
        assert_eq!(
            for_legacy(v),
            Some(json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}))
        );
        let v = json!({"jsonrpc":"2.0","method":"notifications/resources/updated",
            "params":{"uri":"a://b","_meta":{META_SUBSCRIPTION_ID: 1, "k": 2}}});
        assert_eq!(
            for_legacy(v),
            Some(
                json!({"jsonrpc":"2.0","method":"notifications/resources/updated",
                "params":{"uri":"a://b","_meta":{"k": 2}}})
            )
        );
        let ack = json!({"jsonrpc":"2.0","method":ACKNOWLEDGED,"params":{"notifications":{}}});
        assert_eq!(for_legacy(ack), None);
        let req = json!({"jsonrpc":"2.0","id":1,"method":"roots/list"});
        assert_eq!(for_legacy(req), None);
        // Odd shapes pass as they came, but for an empty params, which goes.
        for odd in [
            json!({"jsonrpc":"2.0","method":"m","params":[1]}),
            json!({"jsonrpc":"2.0","method":"m","params":{"_meta":"x"}}),
            json!({"jsonrpc":"2.0","method":"m","params":{"_meta":{}, "a": 1}}),
        ] {
            let want = if odd["params"]["_meta"] == json!({}) {
                json!({"jsonrpc":"2.0","method":"m","params":{"a": 1}})
            } else {
                odd.clone()
            };
            assert_eq!(for_legacy(odd), Some(want));
        }
        assert_eq!(
            for_legacy(json!({"jsonrpc":"2.0","method":"m","params":{}})),
            Some(json!({"jsonrpc":"2.0","method":"m"}))
        );
    }

    #[test]
    fn filters_follow_the_capabilities() {
        let caps = ServerCapabilities::of(Some(
            &json!({"tools":{"listChanged":true},"prompts":{},"resources":{"listChanged":true,"subscribe":true}}),
        ));
        let mut f = list_changed_kinds(&caps);
        f.resource_subscriptions = vec!["a://1".into()];
        assert_eq!(
            f.into_value(),
            json!({"toolsListChanged":true,"resourcesListChanged":true,"resourceSubscriptions":["a://1"]})
        );
        assert!(caps.can_subscribe());
        let tools_only = ServerCapabilities::of(Some(&json!({"tools":{}})));
        assert!(list_changed_kinds(&tools_only).is_empty());
    }

    #[test]
    fn accept_headers() {
        let mut h = HeaderMap::new();
        assert!(accepts_sse(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!accepts_sse(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream;q=0.9"),
        );
        assert!(accepts_sse(&h));
    }
}
