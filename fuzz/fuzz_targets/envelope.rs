//! The JSON-RPC envelope and the classifier: `turnpike_mcp::parse_message`, `classify`,
//! `call_name`, the canonical arguments hash, `_meta` credentials and their stripping.
//!
//! Besides "no panic", it checks what the gate relies on: a message it accepted re-parses from
//! its own serialisation to the same call (method, name, arguments hash), and stripping the
//! `turnpike/*` credentials out of `_meta` never changes which call it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_mcp::{call_name, classify, parse_message, strip_turnpike_meta};

fuzz_target!(|data: &[u8]| {
    let Ok(mut msg) = parse_message(data) else {
        return;
    };
    let facts = classify(&msg, "/mcp", None, 0);
    let digest = facts.scope_digest();
    let _ = call_name(&msg);
    if let Some(pow) = msg
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(turnpike_pow::credential::META_POW))
    {
        let _ = turnpike_pow::credential::parse_pow_meta(pow);
    }

    let text = serde_json::to_vec(msg.value()).expect("a Value serialises");
    let again = parse_message(&text).expect("an accepted message re-parses from its serialisation");
    assert_eq!(again.kind(), msg.kind());
    let f2 = classify(&again, "/mcp", None, 0);
    assert_eq!(f2.method, facts.method);
    assert_eq!(f2.name, facts.name);
    assert_eq!(f2.args_hash, facts.args_hash);

    strip_turnpike_meta(msg.value_mut());
    let stripped = serde_json::to_vec(msg.value()).expect("a Value serialises");
    let m3 = parse_message(&stripped).expect("a stripped message still parses");
    assert_eq!(m3.kind(), msg.kind());
    assert_eq!(classify(&m3, "/mcp", None, 0).scope_digest(), digest);
    if let Some(meta) = m3
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.as_object())
    {
        assert!(
            !meta.keys().any(|k| k.starts_with("turnpike/")),
            "a turnpike/ credential survived stripping"
        );
    }
});
