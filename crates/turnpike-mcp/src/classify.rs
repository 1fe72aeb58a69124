//! Classification: which call a message is.

use std::net::IpAddr;

use serde_json::Value;
use turnpike_core::CallFacts;

use crate::canonical::arguments_hash;
use crate::Message;

/// Methods whose object is named by `params.name`.
pub const NAME_FROM_NAME: &[&str] = &["tools/call", "prompts/get"];
/// Methods whose object is named by `params.uri`.
pub const NAME_FROM_URI: &[&str] = &[
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Which `params` member names the object `method` acts on: `"name"` for `tools/call` and
/// `prompts/get`, `"uri"` for `resources/read`, `resources/subscribe` and
/// `resources/unsubscribe`, `None` for every other method.
pub fn name_key(method: &str) -> Option<&'static str> {
    if NAME_FROM_NAME.contains(&method) {
        Some("name")
    } else if NAME_FROM_URI.contains(&method) {
        Some("uri")
    } else {
        None
    }
}

/// The object a message acts on (see [`name_key`]), when the member is a string.
pub fn call_name(msg: &Message) -> Option<&str> {
    let key = name_key(msg.method()?)?;
    msg.params()?.get(key).and_then(Value::as_str)
}

/// Classifies a request or notification into the facts the policy and the rails reason about.
///
/// `resource` is the protected resource (the mount path), `peer` the caller's address and `now`
/// the arrival time in Unix seconds. A response (no method) classifies with an empty method.
/// The arguments hash is [`arguments_hash`] of `params` (the empty object when absent).
pub fn classify(msg: &Message, resource: &str, peer: Option<IpAddr>, now: u64) -> CallFacts {
    classify_named(msg, call_name(msg), resource, peer, now, true)
}

/// [`classify`] of a message whose [`call_name`] the caller has already looked up; without
/// `hashed` the arguments hash is left all zero, for a call nothing binds to its arguments: one
/// that costs nothing, is not the next round of a paid call and is not watched by the loop
/// brake (the canonical form and its SHA-256 are most of what classifying costs).
pub fn classify_named(
    msg: &Message,
    name: Option<&str>,
    resource: &str,
    peer: Option<IpAddr>,
    now: u64,
    hashed: bool,
) -> CallFacts {
    CallFacts {
        resource: resource.to_owned(),
        method: msg.method().unwrap_or("").to_owned(),
        name: name.map(str::to_owned),
        args_hash: if hashed {
            arguments_hash(msg.params())
        } else {
            [0; 32]
        },
        caller: None,
        peer,
        now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::args_hash;
    use crate::parse_message;
    use serde_json::json;

    fn msg(v: Value) -> Message {
        parse_message(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn names_per_method() {
        let m = msg(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1}}}),
        );
        let f = classify(&m, "/mcp", None, 5);
        assert_eq!(f.resource, "/mcp");
        assert_eq!(f.method, "tools/call");
        assert_eq!(f.name.as_deref(), Some("echo"));
        assert_eq!(f.args_hash, args_hash(&json!({"a":1})));
        assert_eq!(f.now, 5);

        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}));
        assert_eq!(classify(&m, "/", None, 0).name.as_deref(), Some("p"));
        assert_eq!(classify(&m, "/", None, 0).args_hash, args_hash(&json!({})));

        for method in [
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
        ] {
            let m = msg(
                json!({"jsonrpc":"2.0","id":1,"method":method,"params":{"uri":"file:///x","name":"n"}}),
            );
            assert_eq!(call_name(&m), Some("file:///x"), "{method}");
        }
        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"n"}}));
        assert_eq!(call_name(&m), None);
        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}));
        assert_eq!(call_name(&m), None, "a non-string name is no name");
        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"tools/call"}));
        assert_eq!(call_name(&m), None);
    }

    #[test]
    fn unhashed_differs_only_in_the_hash() {
        let m = msg(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1}}}),
        );
        let peer = Some("10.0.0.1".parse().unwrap());
        let mut hashed = classify(&m, "/mcp", peer, 5);
        let unhashed = classify_named(&m, call_name(&m), "/mcp", peer, 5, false);
        assert_eq!(unhashed.args_hash, [0; 32]);
        hashed.args_hash = [0; 32];
        assert_eq!(hashed, unhashed);
    }

    #[test]
    fn meta_is_not_part_of_the_arguments() {
        let a = msg(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"x":1}}}),
        );
        let b = msg(
            json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"x":1},"_meta":{"turnpike/pow":{}, "progressToken": 3}}}),
        );
        assert_eq!(
            classify(&a, "/mcp", None, 0).scope_digest(),
            classify(&b, "/mcp", None, 9).scope_digest()
        );
    }
}
