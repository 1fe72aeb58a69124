//! Credentials carried in `params._meta`: their removal before forwarding.
//!
//! A caller that cannot set HTTP headers (most MCP clients) retries a call with its credential in
//! the request's `params._meta`, under a `turnpike/*` key each rail names and parses itself
//! (e.g. `{"_meta": {"turnpike/pow": {"challenge": "<token>", "solution": "<n0>,<n1>,…"}}}`).
//! A rail may also read a key of a standard of its own (the `Payment` scheme's
//! `org.paymentauth/credential`). Every `turnpike/*` key and every such key is removed before
//! the message is forwarded ([`strip_turnpike_meta`], [`strip_meta`]), so the upstream never
//! sees a credential.

use serde_json::Value;

/// The prefix of every `_meta` key turnpike reads and strips.
pub const META_PREFIX: &str = "turnpike/";

/// Removes every `turnpike/*` key from `message.params._meta`, and `_meta` itself when that
/// leaves it empty. Returns whether anything was removed (so the caller re-serialises the body
/// only when it changed).
pub fn strip_turnpike_meta(message: &mut Value) -> bool {
    strip_meta(message, &[])
}

/// [`strip_turnpike_meta`], and also the keys `also` (credential keys rails read outside
/// `turnpike/`).
pub fn strip_meta(message: &mut Value, also: &[&str]) -> bool {
    let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) else {
        return false;
    };
    let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) else {
        return false;
    };
    let before = meta.len();
    meta.retain(|k, _| !k.starts_with(META_PREFIX) && !also.contains(&k.as_str()));
    if meta.len() == before {
        return false;
    }
    if meta.is_empty() {
        params.remove("_meta");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strip() {
        let mut v = json!({"params":{"name":"t","_meta":{"turnpike/pow":{},"turnpike/x":1,"progressToken":1}}});
        assert!(strip_turnpike_meta(&mut v));
        assert_eq!(
            v,
            json!({"params":{"name":"t","_meta":{"progressToken":1}}})
        );
        assert!(!strip_turnpike_meta(&mut v), "nothing left to strip");
        let mut v = json!({"params":{"name":"t","_meta":{"turnpike/pow":{}}}});
        assert!(strip_turnpike_meta(&mut v));
        assert_eq!(v, json!({"params":{"name":"t"}}));
        let mut v = json!({"params":{"name":"t","_meta":{"turnpikex":1}}});
        assert!(!strip_turnpike_meta(&mut v));
        let mut v = json!({"params":[1]});
        assert!(!strip_turnpike_meta(&mut v));
        let mut v = json!({"params":{"_meta":{"org.paymentauth/credential":{},"k":1}}});
        assert!(!strip_turnpike_meta(&mut v));
        assert!(strip_meta(&mut v, &["org.paymentauth/credential"]));
        assert_eq!(v, json!({"params":{"_meta":{"k":1}}}));
    }
}
