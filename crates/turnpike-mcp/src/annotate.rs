//! Price annotation of `tools/list` results.

use serde_json::Value;

/// The `_meta` key under which each tool's price is published.
pub const META_PRICE: &str = "turnpike/price";

/// Sets `tool._meta["turnpike/price"] = price_of(tool.name)` on every tool of a `tools/list`
/// JSON-RPC response (`result.tools[*]`). Tools without a string name, or whose `_meta` is not
/// an object, are left alone. Returns whether anything was changed.
pub fn annotate_tools_list(response: &mut Value, price_of: &dyn Fn(&str) -> Value) -> bool {
    let Some(tools) = response
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let mut changed = false;
    for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let price = price_of(name);
        let meta = tool
            .entry("_meta")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(META_PRICE.to_owned(), price);
            changed = true;
        }
    }
    changed
}

/// Adds each of `names` to `result.capabilities.extensions` of a `server/discover` JSON-RPC
/// response (as `{}`; one the server already lists is left as it is). A result without a
/// `capabilities` object is left alone. Returns whether anything was changed.
pub fn advertise_extensions(response: &mut Value, names: &[&str]) -> bool {
    let Some(caps) = response
        .get_mut("result")
        .and_then(|r| r.get_mut("capabilities"))
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    let ext = caps
        .entry("extensions")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(ext) = ext.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for name in names {
        if !ext.contains_key(*name) {
            ext.insert((*name).to_owned(), Value::Object(serde_json::Map::new()));
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotates_each_tool() {
        let mut r = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"echo","inputSchema":{}},
            {"name":"dear","_meta":{"x":1}},
            {"name":5},
            {"name":"odd","_meta":"s"},
            "junk"
        ]}});
        let changed = annotate_tools_list(&mut r, &|n| json!({"free": n == "echo"}));
        assert!(changed);
        let tools = &r["result"]["tools"];
        assert_eq!(tools[0]["_meta"]["turnpike/price"], json!({"free":true}));
        assert_eq!(
            tools[1]["_meta"],
            json!({"x":1,"turnpike/price":{"free":false}})
        );
        assert_eq!(tools[2], json!({"name":5}));
        assert_eq!(tools[3]["_meta"], "s");
        assert_eq!(tools[4], "junk");
        let mut e = json!({"jsonrpc":"2.0","id":1,"error":{"code":1}});
        assert!(!annotate_tools_list(&mut e, &|_| json!(null)));
    }

    #[test]
    fn extensions_are_advertised_in_server_discover() {
        let mut v = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete",
            "supportedVersions": ["2026-07-28"], "capabilities": {"tools": {},
            "extensions": {"io.example/x": {"a": 1}}}}});
        assert!(advertise_extensions(
            &mut v,
            &["org.x402/payment", "io.example/x"]
        ));
        assert_eq!(
            v["result"]["capabilities"]["extensions"],
            json!({"io.example/x": {"a": 1}, "org.x402/payment": {}})
        );
        assert!(!advertise_extensions(&mut v, &["org.x402/payment"]));
        let mut bare = json!({"jsonrpc": "2.0", "id": 1, "result": {"capabilities": {}}});
        assert!(advertise_extensions(&mut bare, &["org.x402/payment"]));
        assert_eq!(
            bare["result"]["capabilities"]["extensions"]["org.x402/payment"],
            json!({})
        );
        let mut error = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "x"}});
        assert!(!advertise_extensions(&mut error, &["org.x402/payment"]));
    }
}
