//! Members a rail adds to a paid call's `result._meta` ([`turnpike_core::PassNotes::result_meta`]:
//! the MPP rail's payment receipt), in a JSON body or in an SSE stream.
//!
//! JSON bodies up to [`MAX_JSON`] are read whole, the response with the request's id given the
//! members when it is a result (an error gets none), and re-serialised; a larger body passes
//! unchanged (what was read, then the rest as it comes), and so does one cut short. SSE streams are passed on event by event: only the event carrying the result with
//! the request's id is rewritten; every event before it is forwarded as soon as it is complete,
//! and everything after it as it arrives, byte for byte. When more than
//! [`MAX_PRICED_EVENT`] bytes are held before that event is complete, the stream is passed on
//! unchanged from there (the receipt is left out, never the answer).

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use turnpike_mcp::sse::{SseParser, MAX_PRICED_EVENT};

/// Largest JSON answer given the members (larger ones pass unchanged).
const MAX_JSON: usize = 16 * 1024 * 1024;

/// Members for `result._meta`, by key.
pub type Members = Vec<(&'static str, Value)>;

/// Adds `members` to the `_meta` of the result answering request `id` in `resp`.
pub async fn add(resp: Response<Body>, id: Value, members: Members) -> Response<Body> {
    if members.is_empty() {
        return resp;
    }
    let ct = turnpike_http::body::media_type(resp.headers());
    match ct.as_str() {
        "application/json" => add_json(resp, &id, &members).await,
        "text/event-stream" => add_sse(resp, id, members),
        _ => resp,
    }
}

/// Puts `members` in `v.result._meta` when `v` is the result for `id`.
fn edit(v: &mut Value, id: &Value, members: &Members) -> bool {
    if v.get("id") != Some(id) || v.get("method").is_some() {
        return false;
    }
    let Some(result) = v.get_mut("result").and_then(Value::as_object_mut) else {
        return false;
    };
    let meta = result
        .entry("_meta")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return false;
    };
    for (k, m) in members {
        meta.insert((*k).to_string(), m.clone());
    }
    true
}

async fn add_json(resp: Response<Body>, id: &Value, members: &Members) -> Response<Body> {
    let (parts, mut body) = resp.into_parts();
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
                if buf.len() > MAX_JSON {
                    // Too large to rewrite: what was read, then the rest, unchanged.
                    let head = buf.freeze();
                    let rest = body.into_data_stream();
                    let stream =
                        futures_util::stream::once(async move { Ok::<Bytes, axum::Error>(head) })
                            .chain(rest);
                    return Response::from_parts(parts, Body::from_stream(stream));
                }
            }
            Err(e) => {
                // Cut short: what was read, then the error, as the upstream sent them.
                let head = buf.freeze();
                let stream = futures_util::stream::iter([Ok(head), Err(e)]);
                return Response::from_parts(parts, Body::from_stream(stream));
            }
        }
    }
    crate::rewrite::json_body(parts, buf.freeze(), |v| edit(v, id, members))
}

struct SseState {
    upstream: axum::body::BodyDataStream,
    /// `None` once the result event has been rewritten (or given up): bytes pass straight on.
    parser: Option<SseParser>,
    id: Value,
    members: Members,
}

fn add_sse(resp: Response<Body>, id: Value, members: Members) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let state = SseState {
        upstream: body.into_data_stream(),
        parser: Some(SseParser::new()),
        id,
        members,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            let Some(chunk) = st.upstream.next().await else {
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
            if parser.buffered() > MAX_PRICED_EVENT {
                // Too much held: everything not yet passed on goes on unchanged.
                let held = st.parser.take().map(SseParser::finish).unwrap_or_default();
                return Some((Ok(Bytes::from(held)), st));
            }
            let mut out = Vec::new();
            let mut done = false;
            while let Some(ev) = parser.next_event() {
                if done {
                    out.extend_from_slice(&ev.raw);
                    continue;
                }
                let (id, members) = (&st.id, &st.members);
                done = crate::rewrite::response_event(&mut out, ev, id, |v| edit(v, id, members));
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

    fn members() -> Members {
        vec![("org.paymentauth/receipt", json!({"status":"success"}))]
    }

    async fn text(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_result_gets_members() {
        let body = json!({"jsonrpc":"2.0","id":1,"result":{"content":[],"_meta":{"a":1}}});
        let mut r = Response::new(Body::from(body.to_string()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(body.to_string().len()),
        );
        let out = add(r, json!(1), members()).await;
        let v: Value = serde_json::from_str(&text(out).await).unwrap();
        assert_eq!(v["result"]["_meta"]["a"], 1);
        assert_eq!(
            v["result"]["_meta"]["org.paymentauth/receipt"]["status"],
            "success"
        );
        // An error, or another id: unchanged.
        for body in [
            json!({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}),
            json!({"jsonrpc":"2.0","id":2,"result":{}}),
        ] {
            let mut r = Response::new(Body::from(body.to_string()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            assert_eq!(
                text(add(r, json!(1), members()).await).await,
                body.to_string()
            );
        }
    }

    #[tokio::test]
    async fn sse_only_the_result_event_changes() {
        let before =
            ": ping\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        let after = "data: after\n\n";
        let full = format!(
            "{before}event: message\ndata: {}\n\n{after}",
            json!({"jsonrpc":"2.0","id":"a","result":{"content":[]}})
        );
        let pieces: Vec<Result<Bytes, std::io::Error>> = full
            .as_bytes()
            .chunks(5)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut r = Response::new(Body::from_stream(futures_util::stream::iter(pieces)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let t = text(add(r, json!("a"), members()).await).await;
        assert!(t.starts_with(before), "{t}");
        assert!(t.ends_with(after), "{t}");
        let data = t[before.len()..t.len() - after.len()]
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            v["result"]["_meta"]["org.paymentauth/receipt"]["status"],
            "success"
        );
    }
}
