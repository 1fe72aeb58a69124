//! Rendering a solved challenge as a credential.

/// The nonces as the credential's `solution` value: decimal, comma-separated.
pub fn solution_string(nonces: &[u64]) -> String {
    let mut s = String::with_capacity(nonces.len() * 12);
    for (j, n) in nonces.iter().enumerate() {
        if j > 0 {
            s.push(',');
        }
        s.push_str(&n.to_string());
    }
    s
}

/// Quotes `s` as an RFC 9110 quoted-string.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The `Authorization` header value for a solved challenge:
/// `PoW challenge="<token>", solution="<n0>,<n1>,…"`.
pub fn authorization_value(challenge: &str, nonces: &[u64]) -> String {
    format!(
        "PoW challenge={}, solution={}",
        quoted(challenge),
        quoted(&solution_string(nonces))
    )
}

/// The `_meta` entries that carry a solved challenge in the request body:
/// `{"turnpike/pow": {"challenge": "<token>", "solution": "<n0>,<n1>,…"}}`, to be merged into
/// the retried request's `params._meta`.
pub fn meta_value(challenge: &str, nonces: &[u64]) -> serde_json::Value {
    let mut meta = serde_json::Map::new();
    meta.insert(
        turnpike_pow::META_POW.to_owned(),
        serde_json::json!({
            "challenge": challenge,
            "solution": solution_string(nonces),
        }),
    );
    serde_json::Value::Object(meta)
}

/// Puts the solved challenge into a JSON-RPC request's `params._meta` (creating `params` and
/// `_meta` as needed). Returns `false`, changing nothing, when `params` or `_meta` exists but
/// is not an object.
pub fn attach_meta(request: &mut serde_json::Value, challenge: &str, nonces: &[u64]) -> bool {
    let Some(req) = request.as_object_mut() else {
        return false;
    };
    let params = req.entry("params").or_insert_with(|| serde_json::json!({}));
    let Some(params) = params.as_object_mut() else {
        return false;
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| serde_json::json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return false;
    };
    if let serde_json::Value::Object(m) = meta_value(challenge, nonces) {
        meta.extend(m);
    }
    true
}
