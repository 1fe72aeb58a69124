//! What both translations know of the two eras: the protocol versions, turnpike's error code
//! for what cannot be translated, and the `_meta` and headers a modern request carries (the
//! `_meta` keys themselves are [`turnpike_mcp::messages`]'s).

use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use turnpike_mcp::messages::{Envelope, RequestMeta};

/// The first protocol revision of the modern era.
pub const MODERN_VERSION: &str = turnpike_mcp::headers::ROUTING_HEADERS_VERSION;

/// The legacy revisions the gateway speaks to legacy clients of a modern upstream, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// turnpike's JSON-RPC error for a feature that has no equivalent in the other era.
pub const NOT_TRANSLATABLE: i64 = -31601;

/// JSON-RPC "method not found".
pub use turnpike_core::error_codes::METHOD_NOT_FOUND;

/// The `_meta` a modern request carries for a client with `caps` and `info`.
pub fn modern_meta(caps: &Value, info: &Value) -> serde_json::Map<String, Value> {
    modern_request_meta(caps, info).into_map()
}

/// [`modern_meta`], typed.
pub(crate) fn modern_request_meta(caps: &Value, info: &Value) -> RequestMeta {
    RequestMeta {
        protocol_version: Some(json!(MODERN_VERSION)),
        client_capabilities: Some(caps.clone()),
        client_info: (!info.is_null()).then(|| info.clone()),
        ..RequestMeta::default()
    }
}

/// Headers of a modern request for `body` (its method and name mirrored).
pub fn modern_headers(headers: &mut HeaderMap, body: &Value) {
    headers.insert(
        turnpike_mcp::headers::PROTOCOL_VERSION,
        HeaderValue::from_static(MODERN_VERSION),
    );
    headers.remove(turnpike_mcp::headers::MCP_METHOD);
    headers.remove(turnpike_mcp::headers::MCP_NAME);
    let e = Envelope::of(body);
    let Some(method) = e.method else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(method) {
        headers.insert(turnpike_mcp::headers::MCP_METHOD, v);
    }
    let name = turnpike_mcp::classify::name_key(method).and_then(|k| e.param_str(k));
    if let Some(name) = name {
        if let Ok(v) = HeaderValue::from_str(&turnpike_mcp::headers::encode_header_value(name)) {
            headers.insert(turnpike_mcp::headers::MCP_NAME, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_headers_mirror_the_body() {
        let mut hm = HeaderMap::new();
        hm.insert("mcp-name", HeaderValue::from_static("stale"));
        let body =
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wetter-\u{e4}"}});
        modern_headers(&mut hm, &body);
        assert_eq!(hm["mcp-method"], "tools/call");
        assert_eq!(hm["mcp-protocol-version"], MODERN_VERSION);
        let name = hm["mcp-name"].to_str().unwrap();
        assert_eq!(
            turnpike_mcp::headers::decode_header_value(name).unwrap(),
            "wetter-\u{e4}"
        );
        let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
        modern_headers(&mut hm, &list);
        assert!(!hm.contains_key("mcp-name"));
    }
}
