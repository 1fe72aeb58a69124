//! Small pieces of Streamable HTTP both translations share: building requests to the
//! upstream, reading one JSON-RPC answer out of a JSON or SSE response, and rewriting the
//! messages of a response as it streams.

use std::convert::Infallible;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use turnpike_mcp::messages::Envelope;
use turnpike_mcp::sse::{write_event, SseParser};

use turnpike_upstream::BoxUpstream;

/// Largest upstream answer read whole (discover, initialize, a JSON body being rewritten).
pub const MAX_READ: usize = 64 * 1024 * 1024;

/// The `Accept` the gateway sends upstream.
pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

pub use turnpike_http::body::media_type;

/// A POST of `body` to the upstream with `headers` (content type, accept and length set).
pub fn post(uri: &Uri, mut headers: HeaderMap, body: &Value) -> Request<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if !headers.contains_key(header::ACCEPT) {
        headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
    }
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let mut req = Request::new(Body::from(bytes));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers;
    req
}

/// Sends one request to the upstream (the future owns a clone of the service).
pub fn send(
    inner: &BoxUpstream,
    req: Request<Body>,
) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
    let svc = inner.clone();
    async move {
        match svc.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }
}

/// Reads a response until the JSON-RPC answer to `id` (a JSON body, or the matching event of
/// an SSE stream). `Err` says why there is none.
pub async fn answer(resp: Response<Body>, id: &Value) -> Result<(HeaderMap, Value), String> {
    let (parts, body) = resp.into_parts();
    let status = parts.status;
    match media_type(&parts.headers).as_str() {
        "application/json" => {
            let bytes = Limited::new(body, MAX_READ)
                .collect()
                .await
                .map_err(|_| "the upstream's answer could not be read".to_owned())?
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|_| format!("the upstream answered HTTP {status} without JSON"))?;
            let e = Envelope::of(&v);
            if e.id == Some(id) || e.error.is_some() {
                Ok((parts.headers, v))
            } else {
                Err(format!(
                    "the upstream answered HTTP {status} with another id"
                ))
            }
        }
        "text/event-stream" => {
            let mut stream = body.into_data_stream();
            let mut parser = SseParser::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|_| "the upstream's stream broke off".to_owned())?;
                parser.push(&chunk);
                if parser.buffered() > MAX_READ {
                    return Err("the upstream's event is too large".into());
                }
                while let Some(ev) = parser.next_event() {
                    let Some(v) = ev
                        .data
                        .as_deref()
                        .and_then(|d| serde_json::from_str::<Value>(d).ok())
                    else {
                        continue;
                    };
                    if Envelope::of(&v).is_response_to(id) {
                        return Ok((parts.headers, v));
                    }
                }
            }
            Err("the upstream's stream ended without an answer".into())
        }
        _ => Err(format!(
            "the upstream answered HTTP {status} without a JSON-RPC message"
        )),
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    turnpike_http::reply::json_response(status, v)
}

/// `202 Accepted`, no body.
pub fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// What a rewriter does with one message.
pub enum Edit {
    /// Passed on byte for byte.
    Keep,
    /// Re-serialised (the closure changed it).
    Changed,
    /// Not passed on.
    Drop,
}

/// Runs when a rewritten stream is dropped before its final answer went through (the client
/// went away, or the stream was cancelled): the translation's cancellation hook.
pub struct OnAbandon(Option<Box<dyn FnOnce() + Send>>);

impl OnAbandon {
    /// A hook.
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        OnAbandon(Some(Box::new(f)))
    }
    /// No hook.
    pub fn none() -> Self {
        OnAbandon(None)
    }
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for OnAbandon {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Rewrites every JSON-RPC message of a response with `edit`, for a JSON body (read whole) or
/// an SSE stream (event by event as it arrives; events that are not JSON pass unchanged).
/// The answer to `final_id` disarms `abandon`; `cancel`, when fired, ends the stream early.
/// With `only_if`, a message whose text does not contain that string is passed on byte for
/// byte without being parsed (and so neither edited nor seen as the final answer).
pub fn rewrite<F>(
    resp: Response<Body>,
    mut edit: F,
    final_id: Option<Value>,
    mut abandon: OnAbandon,
    cancel: Option<CancellationToken>,
    only_if: Option<&'static str>,
) -> Response<Body>
where
    F: FnMut(&mut Value) -> Edit + Send + 'static,
{
    let (mut parts, body) = resp.into_parts();
    let is_final = move |v: &Value| {
        final_id
            .as_ref()
            .is_some_and(|id| Envelope::of(v).is_response_to(id))
    };
    match media_type(&parts.headers).as_str() {
        "application/json" => {
            parts.headers.remove(header::CONTENT_LENGTH);
            let fut = async move {
                let bytes = match Limited::new(body, MAX_READ).collect().await {
                    Ok(c) => c.to_bytes(),
                    Err(_) => return Ok::<_, Infallible>(Bytes::new()),
                };
                if only_if.is_some_and(|n| !contains(&bytes, n.as_bytes())) {
                    return Ok(bytes);
                }
                let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
                    abandon.disarm();
                    return Ok(bytes);
                };
                if is_final(&v) {
                    abandon.disarm();
                }
                Ok(match edit(&mut v) {
                    Edit::Keep => bytes,
                    Edit::Changed => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
                    Edit::Drop => Bytes::new(),
                })
            };
            let stream = futures_util::stream::once(fut);
            Response::from_parts(parts, Body::from_stream(stream))
        }
        "text/event-stream" => {
            parts.headers.remove(header::CONTENT_LENGTH);
            struct St<F> {
                upstream: axum::body::BodyDataStream,
                parser: SseParser,
                edit: F,
                abandon: OnAbandon,
                cancel: Option<CancellationToken>,
                done: bool,
            }
            let st = St {
                upstream: body.into_data_stream(),
                parser: SseParser::new(),
                edit,
                abandon,
                cancel,
                done: false,
            };
            let stream = futures_util::stream::unfold(st, move |mut st| {
                let is_final = is_final.clone();
                async move {
                    loop {
                        if st.done {
                            return None;
                        }
                        let next = match &st.cancel {
                            Some(c) => tokio::select! {
                                n = st.upstream.next() => n,
                                () = c.cancelled() => None,
                            },
                            None => st.upstream.next().await,
                        };
                        let Some(chunk) = next else {
                            st.done = true;
                            let tail = std::mem::take(&mut st.parser).finish();
                            if tail.is_empty() {
                                return None;
                            }
                            return Some((Ok::<_, axum::Error>(Bytes::from(tail)), st));
                        };
                        let chunk = match chunk {
                            Ok(c) => c,
                            Err(e) => return Some((Err(e), st)),
                        };
                        st.parser.push(&chunk);
                        let mut out = Vec::new();
                        while let Some(mut ev) = st.parser.next_event() {
                            if only_if
                                .is_some_and(|n| !ev.data.as_deref().is_some_and(|d| d.contains(n)))
                            {
                                out.extend_from_slice(&ev.raw);
                                continue;
                            }
                            let parsed = ev
                                .data
                                .as_deref()
                                .and_then(|d| serde_json::from_str::<Value>(d).ok());
                            let Some(mut v) = parsed else {
                                out.extend_from_slice(&ev.raw);
                                continue;
                            };
                            if is_final(&v) {
                                st.abandon.disarm();
                            }
                            match (st.edit)(&mut v) {
                                Edit::Keep => out.extend_from_slice(&ev.raw),
                                Edit::Changed => {
                                    ev.data = Some(v.to_string());
                                    write_event(&mut out, &ev);
                                }
                                Edit::Drop => {}
                            }
                        }
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), st));
                        }
                    }
                }
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
        _ => {
            abandon.disarm();
            Response::from_parts(parts, body)
        }
    }
}

/// A `200` SSE response whose body is what arrives on `rx` (ending when every sender is gone).
pub fn sse_response(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    r
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
