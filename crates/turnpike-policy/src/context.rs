//! The variables a rule sees: `identity`, `call` and `now`, built from plain fields so that
//! the gateway fills them from whatever it knows of the caller.
//!
//! JSON taken from the request (`call.arguments`) or the upstream (`call.annotations`) is
//! converted within bounds: at most [`MAX_JSON_VALUES`] values and [`MAX_JSON_DEPTH`] levels.
//! A value past either bound is given as `null`, so that a rule reading into it fails (and a
//! failing rule refuses, see [`crate::Rule`]).

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::Value;
use serde_json::Value as Json;

/// The most JSON values (every scalar, list and object counts one) converted for one variable.
pub const MAX_JSON_VALUES: usize = 4096;

/// The deepest JSON nesting converted.
pub const MAX_JSON_DEPTH: usize = 32;

/// A verified agent (Web Bot Auth): its key directory and key id.
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    /// The key directory the agent's key was found in.
    pub directory: &'a str,
    /// The key's id (its JWK thumbprint).
    pub key_id: &'a str,
}

/// Who calls, as the rules see it (`identity`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// `identity.kind`: `anonymous`, `oauth`, `l402`, `agent` or another rail's name.
    pub kind: &'a str,
    /// `identity.id`: the identity's scope key (what limits key on).
    pub id: &'a str,
    /// `identity.claims`: the OAuth token's claims the gateway keeps, when known (else `{}`).
    pub claims: Option<&'a serde_json::Map<String, Json>>,
    /// `identity.scopes`: the OAuth token's scopes (else `[]`).
    pub scopes: &'a [String],
    /// `identity.caveats`: an L402 token's caveats, condition → value, when known (else `{}`).
    pub caveats: &'a [(String, String)],
    /// `identity.agent`: `{directory, key_id}` of a verified agent (else `null`).
    pub agent: Option<Agent<'a>>,
    /// `identity.address`: the caller's network address, when known (else `null`).
    pub address: Option<&'a str>,
}

/// What is called, as the rules see it (`call`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CallView<'a> {
    /// `call.method`: the JSON-RPC method.
    pub method: &'a str,
    /// `call.tool`: the tool's name for `tools/call` (the resource URI or prompt name for
    /// `resources/read`, `prompts/get`), else `null`.
    pub tool: Option<&'a str>,
    /// `call.arguments`: the call's arguments (else `null`).
    pub arguments: Option<&'a Json>,
    /// `call.annotations`: the tool's annotations from the upstream's `tools/list`, when known
    /// (else `{}`).
    pub annotations: Option<&'a Json>,
}

fn key(k: &str) -> Key {
    Key::String(Arc::new(k.to_owned()))
}

fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_owned()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let m: HashMap<Key, Value> = entries.into_iter().map(|(k, v)| (key(k), v)).collect();
    Value::Map(Map { map: Arc::new(m) })
}

fn empty_map() -> Value {
    Value::Map(Map {
        map: Arc::new(HashMap::new()),
    })
}

/// The `identity` variable.
pub fn identity_value(c: &Caller<'_>) -> Value {
    let claims = c.claims.map_or_else(empty_map, |m| {
        let mut budget = MAX_JSON_VALUES;
        json_object(m, 1, &mut budget).unwrap_or(Value::Null)
    });
    let scopes = Value::List(Arc::new(c.scopes.iter().map(|s| string(s)).collect()));
    let caveats: HashMap<Key, Value> = c.caveats.iter().map(|(k, v)| (key(k), string(v))).collect();
    let agent = c.agent.map_or(Value::Null, |a| {
        map(vec![
            ("directory", string(a.directory)),
            ("key_id", string(a.key_id)),
        ])
    });
    map(vec![
        ("kind", string(c.kind)),
        ("id", string(c.id)),
        ("claims", claims),
        ("scopes", scopes),
        (
            "caveats",
            Value::Map(Map {
                map: Arc::new(caveats),
            }),
        ),
        ("agent", agent),
        ("address", c.address.map_or(Value::Null, string)),
    ])
}

/// The `call` variable.
pub fn call_value(c: &CallView<'_>) -> Value {
    let arguments = c.arguments.map_or(Value::Null, json_value);
    let annotations = match c.annotations {
        Some(Json::Object(_)) => c.annotations.map_or(Value::Null, json_value),
        _ => empty_map(),
    };
    map(vec![
        ("method", string(c.method)),
        ("tool", c.tool.map_or(Value::Null, string)),
        ("arguments", arguments),
        ("annotations", annotations),
    ])
}

/// `j` as a CEL value, within [`MAX_JSON_VALUES`] and [`MAX_JSON_DEPTH`] (past them: `null`).
pub fn json_value(j: &Json) -> Value {
    let mut budget = MAX_JSON_VALUES;
    convert(j, 0, &mut budget).unwrap_or(Value::Null)
}

fn convert(j: &Json, depth: usize, budget: &mut usize) -> Option<Value> {
    *budget = budget.checked_sub(1)?;
    if depth > MAX_JSON_DEPTH {
        return None;
    }
    Some(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => string(s),
        Json::Array(a) => {
            let mut out = Vec::with_capacity(a.len().min(*budget));
            for x in a {
                out.push(convert(x, depth + 1, budget)?);
            }
            Value::List(Arc::new(out))
        }
        Json::Object(o) => json_object(o, depth + 1, budget)?,
    })
}

fn json_object(
    o: &serde_json::Map<String, Json>,
    depth: usize,
    budget: &mut usize,
) -> Option<Value> {
    let mut m = HashMap::with_capacity(o.len().min(*budget));
    for (k, v) in o {
        m.insert(key(k), convert(v, depth, budget)?);
    }
    Some(Value::Map(Map { map: Arc::new(m) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_within_bounds() {
        let small =
            json!({"a": [1, -2, 3.5, "x", true, null], "b": {"c": 18446744073709551615u64}});
        let Value::Map(m) = json_value(&small) else {
            panic!("a map")
        };
        assert_eq!(m.map.len(), 2);
        let wide = Json::Array((0..MAX_JSON_VALUES).map(|i| json!(i)).collect());
        assert_eq!(json_value(&wide), Value::Null, "one value too many");
        let fits = Json::Array((0..MAX_JSON_VALUES - 1).map(|i| json!(i)).collect());
        assert!(matches!(json_value(&fits), Value::List(_)));
        let mut deep = json!(1);
        for _ in 0..=MAX_JSON_DEPTH {
            deep = json!([deep]);
        }
        assert_eq!(json_value(&deep), Value::Null);
    }
}
