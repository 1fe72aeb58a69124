//! The variables a rule sees: `identity`, `call` and `now`, built from plain fields so that
//! the gateway fills them from whatever it knows of the caller.
//!
//! JSON taken from the request (`call.arguments`) or the upstream (`call.annotations`) is
//! converted within bounds: at most [`MAX_JSON_VALUES`] values and [`MAX_JSON_DEPTH`] levels.
//! A value past either bound is given as `null`, so that a rule reading into it fails (and a
//! failing rule refuses, see [`crate::Rule`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::CowVal;
use cel::context::VariableResolver;
use cel::Context;
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

/// A boxed CEL value, as the context holds its variables.
pub type Val = Box<dyn cel::common::value::Val + 'static>;

fn key(k: &str) -> CelMapKey<'static> {
    CelMapKey::from(k.to_owned())
}

fn string(s: &str) -> Val {
    Box::new(CelString::from(s.to_owned()))
}

fn null() -> Val {
    Box::new(CelNull)
}

fn map(entries: Vec<(&str, Val)>) -> Val {
    let m: HashMap<CelMapKey<'static>, Val> =
        entries.into_iter().map(|(k, v)| (key(k), v)).collect();
    Box::new(CelMap::from(m))
}

fn empty_map() -> Val {
    Box::new(CelMap::from(HashMap::new()))
}

/// The `identity` variable.
pub fn identity_value(c: &Caller<'_>) -> Val {
    let claims = c.claims.map_or_else(empty_map, |m| {
        let mut budget = MAX_JSON_VALUES;
        json_object(m, 1, &mut budget).unwrap_or_else(null)
    });
    let scopes: Vec<Val> = c.scopes.iter().map(|s| string(s)).collect();
    let caveats: HashMap<CelMapKey<'static>, Val> =
        c.caveats.iter().map(|(k, v)| (key(k), string(v))).collect();
    let agent = c.agent.map_or_else(null, |a| {
        map(vec![
            ("directory", string(a.directory)),
            ("key_id", string(a.key_id)),
        ])
    });
    map(vec![
        ("kind", string(c.kind)),
        ("id", string(c.id)),
        ("claims", claims),
        ("scopes", Box::new(CelList::from(scopes))),
        ("caveats", Box::new(CelMap::from(caveats))),
        ("agent", agent),
        ("address", c.address.map_or_else(null, string)),
    ])
}

/// The `call` variable.
pub fn call_value(c: &CallView<'_>) -> Val {
    map(vec![
        ("method", string(c.method)),
        ("tool", c.tool.map_or_else(null, string)),
        ("arguments", c.arguments.map_or_else(null, json_value)),
        ("annotations", annotations_value(c.annotations)),
    ])
}

/// `null`, to lend.
static NULL: CelNull = CelNull;

/// The `call` variable resolved on access, without building it: `call.method` and `call.tool`
/// are lent from the call, `call.arguments` and `call.annotations` converted (within bounds)
/// the first time a rule reads them, and `call` as a whole built only for a rule that reads it
/// so (`size(call)`, `call[k]`). What a rule reads is what [`call_value`] would give.
pub struct CallVars<'a> {
    view: CallView<'a>,
    method: CelString<'a>,
    tool: Option<CelString<'a>>,
    arguments: OnceLock<Val>,
    annotations: OnceLock<Val>,
    whole: OnceLock<Val>,
}

impl<'a> CallVars<'a> {
    /// The variables of `view`; nothing is converted yet.
    pub fn new(view: CallView<'a>) -> Self {
        CallVars {
            method: CelString::from(view.method),
            tool: view.tool.map(CelString::from),
            view,
            arguments: OnceLock::new(),
            annotations: OnceLock::new(),
            whole: OnceLock::new(),
        }
    }

    /// A scope under `parent` (the caller's) in which `call` is these variables.
    pub fn scope<'s>(&'s self, parent: &'s Context<'s, 's>) -> Context<'s, 's> {
        let mut ctx = parent.new_inner_scope();
        ctx.set_variable_resolver(self);
        ctx
    }
}

impl VariableResolver for CallVars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let v: &'b (dyn cel::common::value::Val + 'b) = match variable {
            "call.method" => &self.method,
            "call.tool" => match &self.tool {
                Some(t) => t,
                None => &NULL,
            },
            "call.arguments" => self
                .arguments
                .get_or_init(|| self.view.arguments.map_or_else(null, json_value))
                .as_ref(),
            "call.annotations" => self
                .annotations
                .get_or_init(|| annotations_value(self.view.annotations))
                .as_ref(),
            "call" => self.whole.get_or_init(|| call_value(&self.view)).as_ref(),
            _ => return None,
        };
        Some(CowVal::Borrowed(v))
    }
}

fn annotations_value(a: Option<&Json>) -> Val {
    match a {
        Some(a @ Json::Object(_)) => json_value(a),
        _ => empty_map(),
    }
}

/// `j` as a CEL value, within [`MAX_JSON_VALUES`] and [`MAX_JSON_DEPTH`] (past them: `null`).
pub fn json_value(j: &Json) -> Val {
    let mut budget = MAX_JSON_VALUES;
    convert(j, 0, &mut budget).unwrap_or_else(null)
}

fn convert(j: &Json, depth: usize, budget: &mut usize) -> Option<Val> {
    *budget = budget.checked_sub(1)?;
    if depth > MAX_JSON_DEPTH {
        return None;
    }
    Some(match j {
        Json::Null => null(),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Json::String(s) => string(s),
        Json::Array(a) => {
            let mut out: Vec<Val> = Vec::with_capacity(a.len().min(*budget));
            for x in a {
                out.push(convert(x, depth + 1, budget)?);
            }
            Box::new(CelList::from(out))
        }
        Json::Object(o) => json_object(o, depth + 1, budget)?,
    })
}

fn json_object(o: &serde_json::Map<String, Json>, depth: usize, budget: &mut usize) -> Option<Val> {
    let mut m: HashMap<CelMapKey<'static>, Val> = HashMap::with_capacity(o.len().min(*budget));
    for (k, v) in o {
        m.insert(key(k), convert(v, depth, budget)?);
    }
    Some(Box::new(CelMap::from(m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_within_bounds() {
        let is_null = |v: &Val| v.downcast_ref::<CelNull>().is_some();
        let small =
            json!({"a": [1, -2, 3.5, "x", true, null], "b": {"c": 18446744073709551615u64}});
        assert!(!is_null(&json_value(&small)));
        let wide = Json::Array((0..MAX_JSON_VALUES).map(|i| json!(i)).collect());
        assert!(is_null(&json_value(&wide)), "one value too many");
        let fits = Json::Array((0..MAX_JSON_VALUES - 1).map(|i| json!(i)).collect());
        assert!(!is_null(&json_value(&fits)));
        let mut deep = json!(1);
        for _ in 0..=MAX_JSON_DEPTH {
            deep = json!([deep]);
        }
        assert!(is_null(&json_value(&deep)));
    }
}
