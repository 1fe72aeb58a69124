//! Price annotation of `tools/list` responses, in a JSON body or in an SSE stream.
//!
//! JSON bodies are read whole, annotated and re-serialised. SSE streams are passed on event by
//! event: only the event carrying the response with the request's id is rewritten; every event
//! before it is forwarded as soon as it is complete, and everything after it is forwarded as it
//! arrives, unparsed and byte for byte. An event before it of more than
//! [`MAX_PRICED_EVENT`] bytes is not passed on: the caller gets a JSON-RPC error (-31413) for
//! its request instead, and the stream ends.

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, Response};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use turnpike_mcp::sse::{write_event, SseParser, MAX_PRICED_EVENT};

/// Largest JSON `tools/list` response that is annotated (larger ones pass unchanged).
const MAX_JSON: usize = 64 * 1024 * 1024;

/// Annotates a `tools/list` response for request `id` with `price_of(tool name)`.
pub async fn tools_list_response(
    resp: Response<Body>,
    id: Value,
    price_of: impl Fn(&str) -> Value + Send + Sync + 'static,
) -> Response<Body> {
    tools_list_edit(resp, id, move |v| {
        turnpike_mcp::annotate_tools_list(v, &price_of)
    })
    .await
}

/// Rewrites the list response (`tools/list`, and `resources/list`, `prompts/list` with an
/// access policy) for request `id` with `edit` (which says whether it changed it): the items
/// filtered for the caller, the tools annotated with their prices.
pub async fn tools_list_edit(
    resp: Response<Body>,
    id: Value,
    edit: impl Fn(&mut Value) -> bool + Send + Sync + 'static,
) -> Response<Body> {
    let ct = turnpike_http::body::media_type(resp.headers());
    match ct.as_str() {
        "application/json" => annotate_json(resp, &edit).await,
        "text/event-stream" => annotate_sse(resp, id, edit),
        _ => resp,
    }
}

async fn annotate_json<F: Fn(&mut Value) -> bool + Sync>(
    resp: Response<Body>,
    edit: &F,
) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let bytes = match Limited::new(body, MAX_JSON).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return crate::respond::json_error(
                http::StatusCode::BAD_GATEWAY,
                None,
                turnpike_core::error_codes::UPSTREAM_FAILED,
                "the upstream's tools/list response could not be read",
            )
        }
    };
    crate::rewrite::json_body(parts, bytes, edit)
}

struct SseState<F> {
    upstream: axum::body::BodyDataStream,
    /// `None` once the response event has been rewritten: then bytes pass straight on.
    parser: Option<SseParser>,
    id: Value,
    edit: F,
    /// Set when the stream was given up (an event over [`MAX_PRICED_EVENT`]).
    ended: bool,
}

fn annotate_sse<F>(resp: Response<Body>, id: Value, edit: F) -> Response<Body>
where
    F: Fn(&mut Value) -> bool + Send + Sync + 'static,
{
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let state = SseState {
        upstream: body.into_data_stream(),
        parser: Some(SseParser::with_max_event(MAX_PRICED_EVENT)),
        id,
        edit,
        ended: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.ended {
                return None;
            }
            let Some(chunk) = st.upstream.next().await else {
                // End of stream: pass on an unfinished tail as it was.
                let tail = st.parser.take().map(SseParser::finish).unwrap_or_default();
                if tail.is_empty() {
                    return None;
                }
                return Some((Ok(Bytes::from(tail)), st));
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return Some((Err(e), st)),
            };
            let Some(parser) = st.parser.as_mut() else {
                return Some((Ok(chunk), st));
            };
            parser.push(&chunk);
            let mut out = Vec::new();
            let mut done = false;
            loop {
                let ev = match parser.try_next_event() {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(e) => {
                        // Not passed on, and not cut: the caller gets an error for its request.
                        st.parser = None;
                        st.ended = true;
                        write_event(
                            &mut out,
                            &crate::settle::too_large_event(
                                &st.id,
                                e.limit,
                                "the tools/list answer was not passed on",
                            ),
                        );
                        return Some((Ok(Bytes::from(out)), st));
                    }
                };
                if done {
                    out.extend_from_slice(&ev.raw);
                    continue;
                }
                done = crate::rewrite::response_event(&mut out, ev, &st.id, &st.edit);
            }
            if done {
                if let Some(p) = st.parser.take() {
                    out.extend_from_slice(&p.finish());
                }
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), st));
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn price(n: &str) -> Value {
        json!({"free": n == "echo"})
    }

    #[tokio::test]
    async fn json_body() {
        let body =
            json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"x"}]}});
        let mut r = Response::new(Body::from(body.to_string()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let out = tools_list_response(r, json!(1), price).await;
        let len: usize = out.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let bytes = out.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), len);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["result"]["tools"][0]["_meta"]["turnpike/price"],
            json!({"free":true})
        );
        assert_eq!(
            v["result"]["tools"][1]["_meta"]["turnpike/price"],
            json!({"free":false})
        );
    }

    #[tokio::test]
    async fn sse_only_the_response_event_changes() {
        let resp_json = json!({"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"}]}});
        let before = "id: 0\r\nretry: 3000\r\ndata:\r\n\r\n: ping\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"id\":7}\n\n";
        let after = "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\ndata: partial";
        let full = format!("{before}event: message\nid: 5\ndata: {resp_json}\n\n{after}");
        // Deliver in awkward pieces.
        let pieces: Vec<Result<Bytes, std::io::Error>> = full
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut r = Response::new(Body::from_stream(futures_util::stream::iter(pieces)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let out = tools_list_response(r, json!(7), price).await;
        let text = String::from_utf8(out.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        assert!(text.starts_with(before), "{text}");
        assert!(text.ends_with(after), "{text}");
        let mid = &text[before.len()..text.len() - after.len()];
        assert!(mid.starts_with("event: message\nid: 5\ndata: "), "{mid}");
        let data = mid
            .trim_start_matches("event: message\nid: 5\ndata: ")
            .trim_end();
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            v["result"]["tools"][0]["_meta"]["turnpike/price"],
            json!({"free":true})
        );
    }

    #[tokio::test]
    async fn sse_event_over_the_limit_is_an_error() {
        let mut pieces: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b": ping\n\n")),
            Ok(Bytes::from_static(
                b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"",
            )),
        ];
        let mib = Bytes::from(vec![b'n'; 1024 * 1024]);
        pieces.extend((0..=MAX_PRICED_EVENT / (1024 * 1024)).map(|_| Ok(mib.clone())));
        pieces.push(Ok(Bytes::from_static(b"\"}]}}\n\n")));
        let mut r = Response::new(Body::from_stream(futures_util::stream::iter(pieces)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let out = tools_list_response(r, json!(7), price).await;
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert!(body.len() < 4096, "{} bytes passed on", body.len());
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.starts_with(": ping\n\n"), "{text}");
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["id"], json!(7));
        assert_eq!(
            v["error"]["code"],
            json!(turnpike_core::error_codes::TOO_LARGE)
        );
    }

    #[tokio::test]
    async fn other_content_passes() {
        let mut r = Response::new(Body::from("plain"));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let out = tools_list_response(r, json!(1), price).await;
        assert_eq!(out.into_body().collect().await.unwrap().to_bytes(), "plain");
    }
}
