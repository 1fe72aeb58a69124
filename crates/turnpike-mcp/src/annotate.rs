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
}
