//! What both translations know of the two eras: the protocol versions, turnpike's error code
//! for what cannot be translated, and the `_meta` and headers a modern request carries (the
//! `_meta` keys themselves are [`turnpike_mcp::messages`]'s).

use http::{HeaderMap, HeaderValue};
use serde::Serialize;
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

/// The `data` of the errors the translation itself answers with: `{"turnpike":
/// "era-translation"}`, and, for an `input_required` result a 2025 client cannot answer, the
/// methods it asked for (`inputRequired`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct EraErrorData {
    turnpike: &'static str,
    #[serde(rename = "inputRequired", skip_serializing_if = "Option::is_none")]
    input_required: Option<Vec<String>>,
}

impl EraErrorData {
    const SOURCE: &'static str = "era-translation";

    /// `{"turnpike": "era-translation"}`.
    pub(crate) fn plain() -> Value {
        EraErrorData {
            turnpike: Self::SOURCE,
            input_required: None,
        }
        .into_value()
    }

    /// With the methods an `input_required` result asked for.
    pub(crate) fn input_required(asked: Vec<String>) -> Value {
        EraErrorData {
            turnpike: Self::SOURCE,
            input_required: Some(asked),
        }
        .into_value()
    }

    fn into_value(self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

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

    #[test]
    fn era_error_data() {
        assert_eq!(
            EraErrorData::plain(),
            json!({"turnpike": "era-translation"})
        );
        assert_eq!(
            EraErrorData::input_required(vec!["roots/list".into()]),
            json!({"turnpike": "era-translation", "inputRequired": ["roots/list"]})
        );
        assert_eq!(
            EraErrorData::input_required(Vec::new()),
            json!({"turnpike": "era-translation", "inputRequired": []})
        );
    }
}
