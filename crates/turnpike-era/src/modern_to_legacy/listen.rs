//! `subscriptions/listen` (2026-07-28) for a modern client in front of a legacy (2025)
//! upstream, bridged to the pooled upstream session's GET stream.
//!
//! - The pooled session (the one for the client's capabilities) gets one GET stream, opened by
//!   its first listener and read by a task that fans its notifications out to every listener
//!   of that session; server requests on it are refused upstream (as on a request stream).
//! - The filter is honoured as far as the upstream's `initialize` capabilities allow:
//!   `toolsListChanged` / `promptsListChanged` / `resourcesListChanged` when the matching
//!   capability has `listChanged: true`, and each URI of `resourceSubscriptions` that a
//!   `resources/subscribe` upstream accepts (when the capability has `subscribe: true`).
//! - The response is an SSE stream: `notifications/subscriptions/acknowledged` first (the
//!   honoured filter), then each requested notification with
//!   `_meta["io.modelcontextprotocol/subscriptionId"]` set to the listen request's id. It stays
//!   open until the client closes it; the upstream subscriptions stay for the session's life.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use turnpike_mcp::sse::SseParser;

use super::pool::{session_headers, PooledSession};
use crate::protocol::NOT_TRANSLATABLE;
use crate::wire;
use crate::EraAdapter;
use turnpike_mcp::messages::{
    Envelope, ListKind, Notification, NotificationMeta, ServerCapabilities, SubscriptionFilter,
    META_SUBSCRIPTION_ID,
};

/// Notifications queued per listener before the oldest are dropped.
const QUEUE: usize = 256;

/// Answers `subscriptions/listen` with id `id` and `filter` (its `params.notifications`).
pub(crate) async fn listen(
    a: &EraAdapter,
    uri: &Uri,
    id: Value,
    filter: SubscriptionFilter,
    s: Arc<PooledSession>,
) -> Response<Body> {
    let caps = ServerCapabilities::of(s.init.capabilities.as_ref());
    let mut honoured = SubscriptionFilter::default();
    for kind in ListKind::ALL {
        honoured.set_list_changed(kind, filter.list_changed(kind) && caps.list_changed(kind));
    }
    let mut uris = Vec::new();
    if caps.can_subscribe() {
        for (i, u) in filter.resource_subscriptions.iter().enumerate() {
            let rid = json!(format!("turnpike-subscribe-{i}"));
            let body = json!({"jsonrpc": "2.0", "id": rid, "method": "resources/subscribe",
                              "params": {"uri": u}});
            let resp = wire::send(
                &a.inner(),
                wire::post(uri, session_headers(HeaderMap::new(), &s), &body),
            )
            .await;
            if let Ok((_, v)) = wire::answer(resp, &rid).await {
                if Envelope::of(&v).result.is_some() {
                    uris.push(u.clone());
                }
            }
        }
        honoured.resource_subscriptions = uris;
    }
    let rx = if honoured.is_empty() {
        None
    } else {
        events(a, uri, &s).await
    };
    if rx.is_none() {
        honoured = SubscriptionFilter::default();
    }
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": honoured.clone().into_value(), "_meta": {META_SUBSCRIPTION_ID: id}}});
    let mut first = Vec::new();
    push_event(&mut first, &ack);
    let state = (Some(Bytes::from(first)), rx, id, honoured);
    let stream = futures_util::stream::unfold(state, |(first, rx, id, honoured)| async move {
        if let Some(b) = first {
            return Some((
                Ok::<_, std::convert::Infallible>(b),
                (None, rx, id, honoured),
            ));
        }
        let mut rx = rx?;
        loop {
            let v = match rx.recv().await {
                Ok(v) => v,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if !honoured.covers(&v) {
                continue;
            }
            let v = with_subscription_id(v, &id);
            let mut out = Vec::new();
            push_event(&mut out, &v);
            return Some((Ok(Bytes::from(out)), (None, Some(rx), id, honoured)));
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Notification `v` with `_meta["io.modelcontextprotocol/subscriptionId"]` set to `id`
/// (`params` made when missing or not an object; a `_meta` that is not an object is left as
/// it is, and so is a message that is not a notification).
fn with_subscription_id(v: Value, id: &Value) -> Value {
    let Some(mut n) = Notification::of(&v) else {
        return v;
    };
    let mut params = n.params().unwrap_or_default();
    let mut meta = match &params.meta {
        None => NotificationMeta::default(),
        Some(m) => match NotificationMeta::from_value(m) {
            Some(m) => m,
            None => return v,
        },
    };
    meta.subscription_id = Some(id.clone());
    params.meta = Some(meta.into_value());
    n.params = Some(params.into_value());
    n.into_value()
}

fn push_event(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// A receiver of the session's GET-stream notifications, opening the stream if needed.
async fn events(
    a: &EraAdapter,
    uri: &Uri,
    s: &Arc<PooledSession>,
) -> Option<broadcast::Receiver<Value>> {
    let mut slot = s.events.lock().await;
    if let Some(tx) = slot.as_ref() {
        return Some(tx.subscribe());
    }
    let mut get = Request::new(Body::empty());
    *get.method_mut() = Method::GET;
    *get.uri_mut() = uri.clone();
    *get.headers_mut() = session_headers(HeaderMap::new(), s);
    get.headers_mut().insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    let resp = wire::send(&a.inner(), get).await;
    if !resp.status().is_success() || wire::media_type(resp.headers()) != "text/event-stream" {
        tracing::debug!(target: "turnpike::era", status = %resp.status(), "the upstream session offers no GET stream");
        return None;
    }
    let (tx, rx) = broadcast::channel(QUEUE);
    *slot = Some(tx.clone());
    let inner = a.inner();
    let uri = uri.clone();
    let s = s.clone();
    tokio::spawn(async move {
        let mut body = resp.into_body().into_data_stream();
        let mut parser = SseParser::new();
        while let Some(Ok(chunk)) = body.next().await {
            parser.push(&chunk);
            while let Some(ev) = parser.next_event() {
                let Some(v) = ev
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                else {
                    continue;
                };
                let e = Envelope::of(&v);
                match (e.has_method, e.id) {
                    (true, Some(req_id)) => {
                        let refusal = turnpike_mcp::error_response(
                            Some(req_id),
                            NOT_TRANSLATABLE,
                            &format!("the client speaks MCP 2026-07-28 and cannot receive {} as a request", e.method.unwrap_or("")),
                        );
                        let _ = wire::send(
                            &inner,
                            wire::post(&uri, session_headers(HeaderMap::new(), &s), &refusal),
                        )
                        .await;
                    }
                    (true, None) => {
                        let _ = tx.send(v);
                    }
                    _ => {}
                }
            }
        }
        // The stream ended: the next listener opens another.
        s.events.lock().await.take();
    });
    Some(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_carry_the_subscription_id() {
        let id = json!("L1");
        let n = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": "a://1", "_meta": {"k": 1}}});
        assert_eq!(
            with_subscription_id(n, &id),
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                "params": {"uri": "a://1", "_meta": {"k": 1, META_SUBSCRIPTION_ID: "L1"}}})
        );
        let bare = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        assert_eq!(
            with_subscription_id(bare, &id)["params"],
            json!({"_meta": {META_SUBSCRIPTION_ID: "L1"}})
        );
        // params that are not an object are replaced, as a notification's params are an object.
        let odd = json!({"jsonrpc": "2.0", "method": "m", "params": [1]});
        assert_eq!(
            with_subscription_id(odd, &id)["params"],
            json!({"_meta": {META_SUBSCRIPTION_ID: "L1"}})
        );
        // A _meta that is not an object is left as it came.
        let odd_meta = json!({"jsonrpc": "2.0", "method": "m", "params": {"_meta": 3}});
        assert_eq!(with_subscription_id(odd_meta.clone(), &id), odd_meta);
    }
}
