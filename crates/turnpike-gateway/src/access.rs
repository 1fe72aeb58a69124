//! The access policy at the gate (`[[policy]]`, [`turnpike_policy`]): who the caller is as
//! the rules see it, the tools' annotations last listed by the upstream, the answer to a
//! refused call, and the filtering of `tools/list` to what the caller may call.
//!
//! A call the rules refuse is answered 403 with JSON-RPC error -31403 and the rule's reason
//! (in band, an `isError` result, when challenges are delivered in band), except a
//! `tools/call` of a tool the caller's `tools/list` leaves out: that gets the answer to an
//! unknown tool (-32602, as the merged endpoint gives), so that a hidden tool is not revealed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use http::{Response, StatusCode};
use parking_lot::RwLock;
use serde_json::{json, Map, Value};
use turnpike_core::{error_codes, Identity};
use turnpike_policy::{CallView, Caller, Policy};

use crate::config::ChallengeMode;
use crate::respond::json_error;

/// The most tools whose annotations are kept per upstream.
pub const MAX_ANNOTATED_TOOLS: usize = 4096;

/// The largest annotations object kept for one tool (its JSON text, bytes).
pub const MAX_ANNOTATIONS_BYTES: usize = 4096;

/// Who calls, as the rules see it: owned, so that a `tools/list` answer can be filtered after
/// the call has moved on.
#[derive(Debug, Clone)]
pub struct Who {
    kind: String,
    id: String,
    claims: Option<Map<String, Value>>,
    scopes: Vec<String>,
    address: Option<String>,
}

impl Who {
    /// `identity` with its `scopes`, calling from `peer`. The claims the gateway keeps of an
    /// OAuth token (`iss`, `sub`, `client_id`) are its claims.
    pub fn new(identity: &Identity, scopes: Vec<String>, peer: Option<IpAddr>) -> Who {
        let claims = match identity {
            Identity::OAuth {
                issuer,
                subject,
                client_id,
            } => {
                let mut m = Map::new();
                m.insert("iss".into(), Value::from(issuer.as_str()));
                m.insert("sub".into(), Value::from(subject.as_str()));
                if let Some(c) = client_id {
                    m.insert("client_id".into(), Value::from(c.as_str()));
                }
                Some(m)
            }
            _ => None,
        };
        Who {
            kind: identity.kind().to_owned(),
            id: identity.scope_key(),
            claims,
            scopes,
            address: peer.map(|p| p.to_string()),
        }
    }

    /// The rules' view.
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            kind: &self.kind,
            id: &self.id,
            claims: self.claims.as_ref(),
            scopes: &self.scopes,
            caveats: &[],
            agent: None,
            address: self.address.as_deref(),
        }
    }
}

/// The annotations of each tool the upstream listed last (`call.annotations` of a
/// `tools/call`), within [`MAX_ANNOTATED_TOOLS`] and [`MAX_ANNOTATIONS_BYTES`].
#[derive(Debug, Default)]
pub struct Annotations(RwLock<Arc<HashMap<String, Value>>>);

impl Annotations {
    /// The annotations of `tool`, when it was listed with some.
    pub fn get(&self, tool: &str) -> Option<Value> {
        self.0.read().get(tool).cloned()
    }

    /// Keeps the annotations of `tools` (a `tools/list` result's), in place of those before.
    pub fn remember(&self, tools: &[Value]) {
        let mut m = HashMap::new();
        for t in tools.iter().take(MAX_ANNOTATED_TOOLS) {
            let (Some(name), Some(a)) = (
                t.get("name").and_then(Value::as_str),
                t.get("annotations").filter(|a| a.is_object()),
            ) else {
                continue;
            };
            if a.to_string().len() <= MAX_ANNOTATIONS_BYTES {
                m.insert(name.to_owned(), a.clone());
            }
        }
        *self.0.write() = Arc::new(m);
    }
}

/// What one `tools/list` answer is filtered by: the rules and the caller.
pub struct ListFilter {
    /// The rules.
    pub policy: Arc<Policy>,
    /// The caller.
    pub who: Who,
    /// Unix seconds (`now`).
    pub now: i64,
}

/// Filters the tools of a `tools/list` response `v` to those `filter`'s caller may call, and
/// remembers their annotations in `cache`; whether `v` changed.
pub fn filter_tools_list(v: &mut Value, filter: &ListFilter, cache: &Annotations) -> bool {
    let Some(tools) = v
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    cache.remember(tools);
    let scope = filter.policy.scope(&filter.who.caller(), filter.now);
    let mut lister = scope.lister();
    let before = tools.len();
    tools.retain(|t| {
        let name = t.get("name").and_then(Value::as_str).unwrap_or("");
        lister.may_list(name, t.get("annotations"))
    });
    tools.len() != before
}

/// The answer to a call the rules refused: the unknown-tool answer for a hidden tool, else 403
/// / -31403 with `reason` (an `isError` result for `tools/call` in band).
pub fn refused(
    mode: ChallengeMode,
    call: &CallView<'_>,
    id: Option<&Value>,
    reason: &str,
    hidden: bool,
) -> Response<Body> {
    if hidden {
        return unknown_tool(id, call.tool.unwrap_or(""));
    }
    if mode == ChallengeMode::InBand && call.method == "tools/call" {
        let body = json!({
            "jsonrpc": "2.0",
            "id": id.cloned().unwrap_or(Value::Null),
            "result": {
                "isError": true,
                "content": [{"type": "text", "text": reason}],
                "structuredContent": {"turnpike": {"policy": {"reason": reason}}},
            }
        });
        return crate::respond::json_response(StatusCode::OK, &body);
    }
    json_error(StatusCode::FORBIDDEN, id, error_codes::FORBIDDEN, reason)
}

/// The answer to a `tools/call` of a tool that is not offered (the merged endpoint's too).
pub fn unknown_tool(id: Option<&Value>, name: &str) -> Response<Body> {
    json_error(
        StatusCode::OK,
        id,
        error_codes::INVALID_PARAMS,
        &format!("unknown tool: {name:?} is not offered here"),
    )
}
