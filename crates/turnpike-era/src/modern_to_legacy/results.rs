//! A legacy (2025) server's answers as a modern (2026-07-28) client expects them.

use serde_json::{json, Value};
use turnpike_mcp::messages::{DiscoverResult, InitializeResult};

use crate::protocol::MODERN_VERSION;
use crate::wire::Edit;
use turnpike_core::error_codes::{INVALID_PARAMS, RESOURCE_NOT_FOUND_2025};
use turnpike_mcp::messages::META_SERVER_INFO;

/// The `server/discover` result built from a legacy `initialize` result.
pub(crate) fn discover_result(id: &Value, init: &InitializeResult) -> Value {
    let init = init.clone();
    let result = DiscoverResult {
        result_type: Some(json!("complete")),
        supported_versions: Some(json!([MODERN_VERSION])),
        capabilities: Some(init.capabilities.unwrap_or_else(|| json!({}))),
        instructions: init.instructions.filter(Value::is_string),
        ttl_ms: Some(json!(0)),
        cache_scope: Some(json!("private")),
        meta: init.server_info.map(|si| json!({META_SERVER_INFO: si})),
        extra: serde_json::Map::new(),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result.into_value()})
}

/// Methods whose results carry cache hints in the modern era.
pub(crate) const CACHEABLE: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Rewrites one legacy answer for a modern client.
///
/// Every answer of every call passes here, so the members are added in place: the result
/// itself (a tool's content, a resource's text) is neither read into a type nor copied.
pub(crate) fn to_modern_result(v: &mut Value, cacheable: bool) -> Edit {
    let Some(result) = v.get_mut("result").and_then(Value::as_object_mut) else {
        // A resource that does not exist: -32002 in the 2025 revisions, -32602 (invalid
        // params) in 2026-07-28 (SEP-2164); `data` (the URI) is kept.
        if let Some(code) = v.pointer_mut("/error/code") {
            if code.as_i64() == Some(RESOURCE_NOT_FOUND_2025) {
                *code = json!(INVALID_PARAMS);
                return Edit::Changed;
            }
        }
        return Edit::Keep;
    };
    result
        .entry("resultType")
        .or_insert_with(|| json!("complete"));
    if cacheable {
        result.entry("ttlMs").or_insert_with(|| json!(0));
        result
            .entry("cacheScope")
            .or_insert_with(|| json!("private"));
    }
    Edit::Changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_not_found_takes_the_modern_code() {
        let mut v = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"Resource not found","data":{"uri":"x://y"}}});
        assert!(matches!(to_modern_result(&mut v, true), Edit::Changed));
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["uri"], "x://y");
        let mut v = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}});
        assert!(matches!(to_modern_result(&mut v, true), Edit::Keep));
    }

    /// -32042 is both MPP's "Payment Required" and 2025-11-25's URLElicitationRequiredError:
    /// a 2025 server's -32042 reaches the 2026-07-28 client as it was, whichever it is (only
    /// -32002 changes code).
    #[test]
    fn payment_required_passes_unchanged() {
        let payment = json!({"jsonrpc":"2.0","id":4,"error":{"code":-32042,"message":"Payment Required",
            "data":{"httpStatus":402,"challenges":[{"id":"x","realm":"r","method":"lightning",
            "intent":"charge","request":{"amount":"10","currency":"sat"}}]}}});
        let elicit = json!({"jsonrpc":"2.0","id":5,"error":{"code":-32042,"message":"URL elicitation required",
            "data":{"elicitations":[{"mode":"url","elicitationId":"e","url":"https://x/","message":"m"}]}}});
        for original in [payment, elicit] {
            let mut v = original.clone();
            assert!(matches!(to_modern_result(&mut v, false), Edit::Keep));
            assert_eq!(v, original);
        }
    }

    #[test]
    fn results_gain_modern_members() {
        let mut v = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[]}});
        to_modern_result(&mut v, true);
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["cacheScope"], "private");
        let mut v = json!({"jsonrpc":"2.0","id":1,"result":{"content":[]}});
        to_modern_result(&mut v, false);
        assert!(v["result"].get("ttlMs").is_none());
        let d = discover_result(
            &json!(3),
            &InitializeResult::from_value(
                &json!({"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}),
            ),
        );
        assert_eq!(d["result"]["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(d["result"]["_meta"][META_SERVER_INFO]["name"], "s");
    }
}
