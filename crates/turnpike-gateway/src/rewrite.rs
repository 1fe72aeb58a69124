//! Rewriting the one JSON-RPC response of a request inside an upstream answer, for the
//! modules that add to it ([`crate::annotate`]: prices in `tools/list`; [`crate::result_meta`]:
//! a rail's members in `result._meta`). Each keeps its own bounds and reading of the body;
//! the rewriting itself is here once.

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderValue, Response};
use serde_json::Value;
use turnpike_mcp::sse::{write_event, SseEvent};

/// The answer from a whole JSON body: `edit` applied to it when it parses, re-serialised with
/// its `Content-Length`; the body as it came when it does not parse or `edit` changes nothing
/// (returns `false`).
pub(crate) fn json_body(
    mut parts: http::response::Parts,
    bytes: Bytes,
    edit: impl FnOnce(&mut Value) -> bool,
) -> Response<Body> {
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if !edit(&mut v) {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let out = serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec());
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(parts, Body::from(out))
}

/// Writes SSE event `ev` to `out`: rewritten by `edit` when its data is the response (not a
/// request or notification) with JSON-RPC id `id` and `edit` changed it, else byte for byte.
/// Returns whether `ev` carried that response (after which the stream passes on unparsed).
pub(crate) fn response_event(
    out: &mut Vec<u8>,
    mut ev: SseEvent,
    id: &Value,
    edit: impl FnOnce(&mut Value) -> bool,
) -> bool {
    let parsed = ev
        .data
        .as_deref()
        .and_then(|d| serde_json::from_str::<Value>(d).ok());
    match parsed {
        Some(mut v) if v.get("id") == Some(id) && v.get("method").is_none() => {
            if edit(&mut v) {
                ev.data = Some(v.to_string());
                write_event(out, &ev);
            } else {
                out.extend_from_slice(&ev.raw);
            }
            true
        }
        _ => {
            out.extend_from_slice(&ev.raw);
            false
        }
    }
}
