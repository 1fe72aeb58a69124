//! What the gateway checks of a modern (2026-07-28) client's request before translating it for
//! a legacy (2025) upstream.
//!
//! In front of a legacy upstream the gateway is the modern server the client talks to, so it
//! answers the way MCP 2026-07-28 requires a server to (basic/transports/streamable-http,
//! "Server Validation"; schema `UnsupportedProtocolVersionError`), before anything reaches the
//! upstream:
//!
//! - a request without `params._meta`, or whose `_meta` lacks
//!   `io.modelcontextprotocol/protocolVersion` (a string) or
//!   `io.modelcontextprotocol/clientCapabilities` (an object): HTTP 400, JSON-RPC -32602;
//!   `clientInfo` is optional;
//! - a protocol version other than 2026-07-28: HTTP 400, -32022 with
//!   `data: {supported: ["2026-07-28"], requested}`;
//! - a method that MCP 2026-07-28 removed (`initialize`, `ping`, `logging/setLevel`,
//!   `resources/subscribe`, `resources/unsubscribe`): HTTP 404, -32601.
//!
//! The `MCP-Protocol-Version` header has already been compared with the `_meta` version by the
//! gate ([`turnpike_mcp::check_routing_headers`]). Every error keeps the request's id.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use turnpike_mcp::messages::RequestMeta;

use turnpike_core::error_codes::{INVALID_PARAMS, UNSUPPORTED_PROTOCOL_VERSION};

use crate::protocol::{METHOD_NOT_FOUND, MODERN_VERSION};
use crate::wire;
use turnpike_mcp::messages::{
    Envelope, ErrorObject, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION,
};

/// Methods of the 2025 revisions that MCP 2026-07-28 removed.
pub(crate) const REMOVED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// `Some(the error response)` when the modern request `body` must be refused here.
/// Notifications (no `id`) and responses pass: they are answered `202` later anyway.
pub(crate) fn check(body: &Value) -> Option<Response<Body>> {
    let e = Envelope::of(body);
    let id = e.id?;
    let method = e.method?;
    let refuse = |status: StatusCode, code: i64, msg: &str, data: Option<Value>| {
        let error = ErrorObject {
            code,
            message: msg.to_owned(),
            data,
        };
        Some(wire::json_response(status, &error.response(Some(id))))
    };
    let Some(meta) = RequestMeta::of(body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            INVALID_PARAMS,
            "MCP 2026-07-28 requests must carry params._meta with the protocol version and the client's capabilities",
            None,
        );
    };
    let Some(version) = meta.version() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            INVALID_PARAMS,
            &format!("params._meta lacks \"{META_PROTOCOL_VERSION}\" (a string)"),
            None,
        );
    };
    if !meta
        .client_capabilities
        .as_ref()
        .is_some_and(Value::is_object)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            INVALID_PARAMS,
            &format!("params._meta lacks \"{META_CLIENT_CAPABILITIES}\" (an object)"),
            None,
        );
    }
    if version != MODERN_VERSION {
        return refuse(
            StatusCode::BAD_REQUEST,
            UNSUPPORTED_PROTOCOL_VERSION,
            &format!(
                "unsupported protocol version {version:?}; this server speaks {MODERN_VERSION}"
            ),
            Some(json!({"supported": [MODERN_VERSION], "requested": version})),
        );
    }
    if REMOVED_METHODS.contains(&method) {
        return refuse(
            StatusCode::NOT_FOUND,
            METHOD_NOT_FOUND,
            &format!("method not found: {method} does not exist in MCP {MODERN_VERSION}"),
            None,
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn meta() -> Value {
        json!({META_PROTOCOL_VERSION: MODERN_VERSION, META_CLIENT_CAPABILITIES: {}})
    }

    async fn refused(body: Value) -> (StatusCode, Value) {
        let r = check(&body).expect("refused");
        let status = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&b).unwrap())
    }

    #[tokio::test]
    async fn well_formed_requests_pass() {
        for m in ["tools/list", "server/discover", "tools/call", "x/unknown"] {
            let b = json!({"jsonrpc": "2.0", "id": 1, "method": m, "params": {"_meta": meta()}});
            assert!(check(&b).is_none(), "{m}");
        }
        // Notifications and responses are not checked here.
        assert!(check(&json!({"jsonrpc": "2.0", "method": "notifications/x"})).is_none());
        assert!(check(&json!({"jsonrpc": "2.0", "id": 1, "result": {}})).is_none());
    }

    #[tokio::test]
    async fn malformed_meta_is_invalid_params() {
        for params in [
            json!({}),
            json!({"_meta": []}),
            json!({"_meta": {META_CLIENT_CAPABILITIES: {}}}),
            json!({"_meta": {META_PROTOCOL_VERSION: 20260728, META_CLIENT_CAPABILITIES: {}}}),
            json!({"_meta": {META_PROTOCOL_VERSION: MODERN_VERSION}}),
            json!({"_meta": {META_PROTOCOL_VERSION: MODERN_VERSION, META_CLIENT_CAPABILITIES: "all"}}),
        ] {
            let (s, v) = refused(
                json!({"jsonrpc": "2.0", "id": 7, "method": "server/discover", "params": params}),
            )
            .await;
            assert_eq!(s, StatusCode::BAD_REQUEST);
            assert_eq!(v["error"]["code"], INVALID_PARAMS);
            assert_eq!(v["id"], 7);
        }
    }

    #[tokio::test]
    async fn other_versions_are_unsupported() {
        let (s, v) = refused(json!({"jsonrpc": "2.0", "id": "a", "method": "tools/list",
            "params": {"_meta": {META_PROTOCOL_VERSION: "v999.0.0", META_CLIENT_CAPABILITIES: {}}}}))
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(
            v["error"]["data"],
            json!({"supported": [MODERN_VERSION], "requested": "v999.0.0"})
        );
        assert_eq!(v["id"], "a");
    }

    #[tokio::test]
    async fn removed_methods_are_not_found() {
        for m in REMOVED_METHODS {
            let (s, v) = refused(
                json!({"jsonrpc": "2.0", "id": 3, "method": m, "params": {"_meta": meta()}}),
            )
            .await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{m}");
            assert_eq!(v["error"]["code"], METHOD_NOT_FOUND);
            assert_eq!(v["id"], 3);
        }
    }
}
