//! The client capabilities that answer a server's requests for input, the same in both
//! directions of the translation: a 2026-07-28 `input_required` result put to a 2025 client,
//! and a 2025 server's requests put to a 2026-07-28 client.

use serde_json::Value;

/// The capability a client declares to answer `method`.
pub(crate) fn capability_for(method: &str) -> Option<&'static str> {
    match method {
        "elicitation/create" => Some("elicitation"),
        "sampling/createMessage" => Some("sampling"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Whether `caps` declares `cap`.
pub(crate) fn declared(caps: &Value, cap: &str) -> bool {
    caps.get(cap).is_some_and(|v| !v.is_null())
}

/// Whether a session with `caps` could answer any input request.
pub(crate) fn can_answer_any(caps: &Value) -> bool {
    ["elicitation", "sampling", "roots"]
        .iter()
        .any(|c| declared(caps, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn capabilities() {
        assert!(can_answer_any(&json!({"elicitation":{}})));
        assert!(!can_answer_any(&json!({})));
        assert!(!can_answer_any(&Value::Null));
        assert!(!can_answer_any(&json!({"sampling":null})));
        assert_eq!(capability_for("sampling/createMessage"), Some("sampling"));
        assert_eq!(capability_for("tools/call"), None);
    }
}
