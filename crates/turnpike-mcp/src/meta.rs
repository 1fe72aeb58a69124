//! Credentials carried in `params._meta`, and their removal before forwarding.
//!
//! A caller that cannot set HTTP headers (most MCP clients) retries a call with its credential in
//! the request's `params._meta`, under a `turnpike/*` key:
//!
//! ```json
//! {"_meta": {"turnpike/pow": {"challenge": "<token>", "solution": "<n0>,<n1>,…"}}}
//! ```
//!
//! The solution may also be a JSON array of integers. Every `turnpike/*` key is removed before
//! the message is forwarded ([`strip_turnpike_meta`]), so the upstream never sees a credential.

use serde_json::Value;
use turnpike_core::credential::{parse_nonce_list, CredentialParseError};
use turnpike_core::{Credential, PowCredential};

/// The `_meta` key of a proof-of-work credential.
pub const META_POW: &str = "turnpike/pow";
/// The prefix of every `_meta` key turnpike reads and strips.
pub const META_PREFIX: &str = "turnpike/";

/// The credentials in a message's `params._meta`, each parsed or refused. Keys under
/// `turnpike/` that name no known rail are ignored (and still stripped before forwarding).
pub fn meta_credentials(msg: &crate::Message) -> Vec<Result<Credential, CredentialParseError>> {
    let Some(meta) = msg
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(v) = meta.get(META_POW) {
        out.push(parse_pow_meta(v).map(Credential::Pow));
    }
    out
}

fn parse_pow_meta(v: &Value) -> Result<PowCredential, CredentialParseError> {
    let bad = |reason: &str| CredentialParseError::Malformed {
        scheme: "PoW",
        reason: reason.to_owned(),
    };
    let obj = v
        .as_object()
        .ok_or_else(|| bad("turnpike/pow must be an object"))?;
    let challenge = obj
        .get("challenge")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing challenge"))?
        .to_owned();
    let solution = match obj.get("solution") {
        Some(Value::String(s)) => parse_nonce_list(s),
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= 64 => {
            items.iter().map(Value::as_u64).collect()
        }
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n]),
        _ => None,
    }
    .ok_or_else(|| bad("solution must be comma-separated decimal nonces or an array of them"))?;
    Ok(PowCredential {
        challenge,
        solution,
    })
}

/// Removes every `turnpike/*` key from `message.params._meta`, and `_meta` itself when that
/// leaves it empty. Returns whether anything was removed (so the caller re-serialises the body
/// only when it changed).
pub fn strip_turnpike_meta(message: &mut Value) -> bool {
    let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) else {
        return false;
    };
    let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) else {
        return false;
    };
    let before = meta.len();
    meta.retain(|k, _| !k.starts_with(META_PREFIX));
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
    use crate::parse_message;
    use serde_json::json;

    fn msg(v: Value) -> crate::Message {
        parse_message(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn pow_in_meta() {
        let m = msg(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t",
            "_meta":{"turnpike/pow":{"challenge":"AAA","solution":"1, 2,3"}}}}),
        );
        let creds = meta_credentials(&m);
        assert_eq!(creds.len(), 1);
        match &creds[0] {
            Ok(Credential::Pow(p)) => {
                assert_eq!(p.challenge, "AAA");
                assert_eq!(p.solution, vec![1, 2, 3]);
            }
            other => panic!("{other:?}"),
        }
        let m = msg(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t",
            "_meta":{"turnpike/pow":{"challenge":"AAA","solution":[5, 18446744073709551615u64]}}}}),
        );
        assert!(
            matches!(&meta_credentials(&m)[0], Ok(Credential::Pow(p)) if p.solution == vec![5, u64::MAX])
        );
    }

    #[test]
    fn malformed_meta_is_an_error_not_a_panic() {
        for bad in [
            json!("x"),
            json!({"solution":"1"}),
            json!({"challenge":"A"}),
            json!({"challenge":"A","solution":"-1"}),
            json!({"challenge":"A","solution":[-1]}),
            json!({"challenge":"A","solution":[]}),
            json!({"challenge":"A","solution":[1.5]}),
            json!({"challenge":7,"solution":"1"}),
        ] {
            let m = msg(
                json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"turnpike/pow":bad}}}),
            );
            let creds = meta_credentials(&m);
            assert_eq!(creds.len(), 1);
            assert!(creds[0].is_err(), "{bad}");
        }
        let m = msg(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":"x"}}),
        );
        assert!(meta_credentials(&m).is_empty());
        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}));
        assert!(meta_credentials(&m).is_empty());
    }

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
    }
}
