//! Settling a granted call once the upstream's answer is known.
//!
//! A rail that needs the outcome (the L402 rail refunds a prepaid balance debit when the
//! upstream failed) says so ([`Rail::needs_outcome`]). For those grants the gateway reads the
//! JSON-RPC outcome, not just the HTTP status:
//!
//! | upstream answer | outcome |
//! |---|---|
//! | non-2xx status (the upstream refused the call, could not be reached, or sent no head in time) | refused: failed, and a single-use credential released |
//! | the body cannot be read (transport failure, stream cut) | failed |
//! | a JSON-RPC **error** response to the call (`{"error": …}`) | failed |
//! | a JSON body that is not JSON, or an SSE stream that ends without the call's response | failed |
//! | a JSON-RPC **result**, including a tool result with `isError: true` | succeeded |
//!
//! A tool result with `isError: true` is the tool's own answer (the upstream ran the call and
//! reported, say, a bad argument); it is charged like any other answer. Only a call that never
//! got an answer is refunded.
//!
//! JSON bodies are read whole (they are whole anyway) and passed on unchanged; SSE streams pass
//! through event by event, watched for the response with the call's id. A stream the caller
//! drops before the response arrived counts as failed.
//!
//! Grants whose rail does not need the outcome ([`Rail::needs_outcome`]: a puzzle solution, a
//! per-call token, a time pass, a token) are settled with the HTTP status alone, without
//! touching the body.
//!
//! A call the upstream *refused* — an HTTP error status before any JSON-RPC answer (`400
//! Missing session ID`, 404, 5xx, or the gateway's own 502/504 when it could not connect or no
//! head came in time) — was not served: after `settle(grant, false)` the rail's
//! [`Rail::release`] makes a per-call token or puzzle solution usable again, so the caller
//! retries with the very same credential. A JSON-RPC error *response* is an answer: it refunds
//! a balance debit but releases nothing.
//!
//! When the call's debit was also counted against its token's daily msat budget, the rail is
//! wrapped in [`WithSpend`], so that a failed call gives back both the debit and the spend.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::Response;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use turnpike_core::{
    BoxFuture, CallFacts, Challenge, Credential, Grant, Offer, Rail, RailId, Verdict,
};
use turnpike_limits::{Limiter, SpendReceipt};
use turnpike_mcp::sse::{write_event, SseEvent, SseParser, MAX_PRICED_EVENT};

/// A rail whose settlement of a failed call also refunds the call's daily msat budget spend
/// (`budgets.msat_per_token_per_day`). Everything else is the rail's.
pub struct WithSpend {
    rail: Arc<dyn Rail>,
    limiter: Arc<Limiter>,
    receipt: SpendReceipt,
}

impl WithSpend {
    /// `rail`, refunding `receipt` through `limiter` when the call fails.
    pub fn wrap(
        rail: Arc<dyn Rail>,
        limiter: Arc<Limiter>,
        receipt: SpendReceipt,
    ) -> Arc<dyn Rail> {
        Arc::new(WithSpend {
            rail,
            limiter,
            receipt,
        })
    }
}

impl Rail for WithSpend {
    fn kind(&self) -> RailId {
        self.rail.kind()
    }

    fn challenge<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        self.rail.challenge(call, offer)
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        self.rail.verify(call, offer, credential)
    }

    fn release<'a>(&'a self, grant: &'a Grant) -> BoxFuture<'a, ()> {
        self.rail.release(grant)
    }

    fn needs_outcome(&self, _grant: &Grant) -> bool {
        // A failed call gives its daily msat spend back.
        true
    }

    fn identity_is_address(&self) -> bool {
        self.rail.identity_is_address()
    }

    fn scaled_offer(&self, offer: &Offer, multiplier: u32) -> Option<Offer> {
        self.rail.scaled_offer(offer, multiplier)
    }

    fn published_offer(&self, offer: &Offer) -> Option<Value> {
        self.rail.published_offer(offer)
    }

    fn issue_wait(&self, call: &CallFacts) -> Option<(std::time::Duration, &'static str)> {
        self.rail.issue_wait(call)
    }

    fn charged_msat(&self, grant: &Grant, offer: &Offer) -> u64 {
        self.rail.charged_msat(grant, offer)
    }

    fn pays_for_round(&self, grant: &Grant) -> bool {
        self.rail.pays_for_round(grant)
    }

    fn upstream_overloaded(&self) {
        self.rail.upstream_overloaded()
    }

    fn settle<'a>(&'a self, grant: &'a Grant, upstream_ok: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.rail.settle(grant, upstream_ok).await;
            if !upstream_ok {
                if let Err(e) = self.limiter.refund_msat(&self.receipt).await {
                    tracing::warn!(target: "turnpike::limits", error = %e, "msat budget refund failed");
                }
            }
        })
    }
}

/// Largest JSON response read to learn a call's outcome (larger ones count as answered).
const MAX_JSON: usize = 64 * 1024 * 1024;

/// Settles `grant` with `rail` according to `resp`, the upstream's answer to request `id`;
/// returns the response to send on.
pub async fn after_upstream(
    resp: Response<Body>,
    rail: Arc<dyn Rail>,
    grant: Grant,
    id: Option<Value>,
) -> Response<Body> {
    if !resp.status().is_success() {
        // Refused before any answer: nothing was served.
        rail.settle(&grant, false).await;
        rail.release(&grant).await;
        return resp;
    }
    if !rail.needs_outcome(&grant) {
        rail.settle(&grant, true).await;
        return resp;
    }
    match turnpike_http::body::media_type(resp.headers()).as_str() {
        "application/json" => {
            let (parts, body) = resp.into_parts();
            match Limited::new(body, MAX_JSON).collect().await {
                Ok(c) => {
                    let bytes = c.to_bytes();
                    let ok = match serde_json::from_slice::<Value>(&bytes) {
                        Ok(v) => is_success(&v),
                        Err(_) => false,
                    };
                    rail.settle(&grant, ok).await;
                    Response::from_parts(parts, Body::from(bytes))
                }
                Err(_) => {
                    rail.settle(&grant, false).await;
                    crate::respond::json_error(
                        http::StatusCode::BAD_GATEWAY,
                        id.as_ref(),
                        turnpike_core::error_codes::UPSTREAM_FAILED,
                        "the upstream's answer could not be read",
                    )
                }
            }
        }
        "text/event-stream" => match id {
            Some(id) => watch_sse(resp, rail, grant, id),
            None => {
                rail.settle(&grant, true).await;
                resp
            }
        },
        // Any other 2xx answer (e.g. 202 with no body): the status is all there is.
        _ => {
            rail.settle(&grant, true).await;
            resp
        }
    }
}

/// Whether a JSON-RPC response reports success (a result, not an error).
fn is_success(v: &Value) -> bool {
    v.get("error").is_none() && v.get("result").is_some()
}

/// Settles exactly once: with the outcome when it is known, else as failed when dropped.
struct Settler {
    rail: Arc<dyn Rail>,
    grant: Option<Grant>,
}

impl Settler {
    fn settle(&mut self, ok: bool) {
        if let Some(grant) = self.grant.take() {
            let rail = self.rail.clone();
            tokio::spawn(async move { rail.settle(&grant, ok).await });
        }
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        if self.grant.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            self.settle(false);
        }
    }
}

struct Watch {
    upstream: axum::body::BodyDataStream,
    /// `None` once the outcome is known (or the stream is given up): bytes then pass straight on.
    parser: Option<SseParser>,
    id: Value,
    settler: Settler,
    ended: bool,
}

/// While the call's outcome is unknown, the stream is passed on event by event (an SSE client
/// acts on complete events only), each event at most [`MAX_PRICED_EVENT`] bytes: a larger one
/// is not passed on; the call is settled as failed (refunded) and the caller gets a JSON-RPC
/// error event for its id instead, which ends the stream.
fn watch_sse(resp: Response<Body>, rail: Arc<dyn Rail>, grant: Grant, id: Value) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let state = Watch {
        upstream: body.into_data_stream(),
        parser: Some(SseParser::with_max_event(MAX_PRICED_EVENT)),
        id,
        settler: Settler {
            rail,
            grant: Some(grant),
        },
        ended: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            let chunk = match st.upstream.next().await {
                None => {
                    // Ended without the response: the call got no answer.
                    st.settler.settle(false);
                    st.ended = true;
                    let tail = st.parser.take().map(SseParser::finish).unwrap_or_default();
                    if tail.is_empty() {
                        return None;
                    }
                    return Some((Ok(Bytes::from(tail)), st));
                }
                Some(Err(e)) => {
                    st.settler.settle(false);
                    return Some((Err(e), st));
                }
                Some(Ok(c)) => c,
            };
            let Some(parser) = st.parser.as_mut() else {
                return Some((Ok(chunk), st));
            };
            parser.push(&chunk);
            let mut out = Vec::new();
            let mut answered = false;
            loop {
                match parser.try_next_event() {
                    Ok(Some(ev)) => {
                        out.extend_from_slice(&ev.raw);
                        let Some(v) = ev
                            .data
                            .as_deref()
                            .and_then(|d| serde_json::from_str::<Value>(d).ok())
                        else {
                            continue;
                        };
                        if v.get("id") == Some(&st.id) && v.get("method").is_none() {
                            st.settler.settle(is_success(&v));
                            answered = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        st.settler.settle(false);
                        st.parser = None;
                        st.ended = true;
                        tracing::warn!(target: "turnpike::settle", limit = e.limit, "upstream SSE event too large on a paid call: refunded");
                        write_event(
                            &mut out,
                            &too_large_event(&st.id, e.limit, "the call was not charged"),
                        );
                        return Some((Ok(Bytes::from(out)), st));
                    }
                }
            }
            if answered {
                if let Some(p) = st.parser.take() {
                    out.extend_from_slice(&p.finish());
                }
            }
            if !out.is_empty() {
                return Some((Ok::<Bytes, axum::Error>(Bytes::from(out)), st));
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The SSE event that answers call `id` when the upstream's answer had an event over `limit`
/// bytes; `outcome` says what became of the call.
pub(crate) fn too_large_event(id: &Value, limit: usize, outcome: &str) -> SseEvent {
    let message = format!(
        "the upstream's answer has an SSE event over {} MiB, more than the gateway parses; {outcome}",
        limit / (1024 * 1024)
    );
    SseEvent {
        event: Some("message".into()),
        data: Some(
            turnpike_mcp::error_response(Some(id), turnpike_core::error_codes::TOO_LARGE, &message)
                .to_string(),
        ),
        ..SseEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A rail that records how each call was settled.
    struct Recorder(tokio::sync::mpsc::UnboundedSender<bool>);

    impl Rail for Recorder {
        fn kind(&self) -> RailId {
            turnpike_l402::RAIL
        }
        fn challenge<'a>(
            &'a self,
            _: &'a CallFacts,
            _: &'a Offer,
        ) -> BoxFuture<'a, Option<Challenge>> {
            Box::pin(async { None })
        }
        fn verify<'a>(
            &'a self,
            _: &'a CallFacts,
            _: &'a Offer,
            _: &'a Credential,
        ) -> BoxFuture<'a, Verdict> {
            Box::pin(async {
                Verdict::Invalid(turnpike_core::Refusal::new(turnpike_l402::RAIL, "unused"))
            })
        }
        fn settle<'a>(&'a self, _: &'a Grant, upstream_ok: bool) -> BoxFuture<'a, ()> {
            let _ = self.0.send(upstream_ok);
            Box::pin(async {})
        }
    }

    fn sse(chunks: Vec<Vec<u8>>) -> Response<Body> {
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            chunks.into_iter().map(|c| Ok(Bytes::from(c))).collect();
        let mut r = Response::new(Body::from_stream(futures_util::stream::iter(pieces)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        r
    }

    fn paid() -> Grant {
        Grant {
            rail: turnpike_l402::RAIL,
            identity: None,
            receipt: Some("debit".into()),
            about: None,
        }
    }

    async fn settled(rx: &mut tokio::sync::mpsc::UnboundedReceiver<bool>) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("settled within the deadline")
            .expect("settled")
    }

    #[tokio::test]
    async fn sse_answer_passes_unchanged_and_settles_once() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n: after\n\ndata: tail".to_vec();
        let chunks = stream.chunks(5).map(<[u8]>::to_vec).collect();
        let out = after_upstream(sse(chunks), Arc::new(Recorder(tx)), paid(), Some(json!(3))).await;
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), stream.as_slice(), "byte for byte");
        assert!(settled(&mut rx).await);
        assert!(rx.try_recv().is_err(), "settled once");
    }

    #[tokio::test]
    async fn sse_event_over_the_limit_is_refused_and_refunded() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let progress =
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n".to_vec();
        let mut chunks = vec![
            progress.clone(),
            b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":\"".to_vec(),
        ];
        let mib = vec![b'x'; 1024 * 1024];
        // One byte more than the limit, then the end of the event (never reached).
        chunks.extend(std::iter::repeat_n(
            mib,
            MAX_PRICED_EVENT / (1024 * 1024) + 1,
        ));
        chunks.push(b"\"}\n\n".to_vec());
        let out = after_upstream(sse(chunks), Arc::new(Recorder(tx)), paid(), Some(json!(3))).await;
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert!(!settled(&mut rx).await, "refunded");
        assert!(
            body.len() < 4096,
            "the large event is not passed on: {} bytes",
            body.len()
        );
        let mut p = SseParser::new();
        p.push(&body);
        let first = p.next_event().unwrap();
        assert_eq!(first.raw, progress, "events before it pass unchanged");
        let err: Value =
            serde_json::from_str(p.next_event().unwrap().data.as_deref().unwrap()).unwrap();
        assert_eq!(err["id"], json!(3));
        assert_eq!(
            err["error"]["code"],
            json!(turnpike_core::error_codes::TOO_LARGE)
        );
        assert!(
            err["error"]["message"].as_str().unwrap().contains("64 MiB"),
            "{err}"
        );
        assert!(p.next_event().is_none());
        assert_eq!(p.finish(), Vec::<u8>::new());
    }

    #[tokio::test]
    async fn sse_stream_ending_without_the_answer_refunds_and_keeps_the_tail() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = b"data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"res".to_vec();
        let chunks = stream.chunks(7).map(<[u8]>::to_vec).collect();
        let out = after_upstream(sse(chunks), Arc::new(Recorder(tx)), paid(), Some(json!(3))).await;
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), stream.as_slice());
        assert!(!settled(&mut rx).await);
    }

    #[test]
    fn outcomes() {
        assert!(is_success(&json!({"jsonrpc":"2.0","id":1,"result":{}})));
        assert!(
            is_success(&json!({"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[]}})),
            "a tool-level error is an answer"
        );
        assert!(!is_success(
            &json!({"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}})
        ));
        assert!(!is_success(&json!({"jsonrpc":"2.0","id":1})));
    }
}
