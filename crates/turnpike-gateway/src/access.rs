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
use turnpike_core::{error_codes, About, Identity};
use turnpike_policy::{CallView, Caller, Policy};

use crate::config::ChallengeMode;
use crate::respond::json_error;

/// The most tools whose annotations are kept per upstream.
pub const MAX_ANNOTATED_TOOLS: usize = 4096;

/// The largest annotations object kept for one tool (its JSON text, bytes).
pub const MAX_ANNOTATIONS_BYTES: usize = 4096;

/// Who calls, as the rules see it: owned, so that a `tools/list` answer can be filtered after
/// the call has moved on. What the credential says of the caller (scopes, claims, caveats) is
/// shared with the rail that verified it, not copied.
#[derive(Debug, Clone)]
pub struct Who {
    kind: String,
    id: String,
    about: Option<Arc<About>>,
    /// An OAuth identity's `iss`, `sub` and `client_id`, when its rail kept no claims.
    named: Option<Map<String, Value>>,
    /// A verified agent's key directory and key id.
    agent: Option<(String, String)>,
    address: Option<String>,
}

impl Who {
    /// `identity`, with what its credential says of it (`about`: scopes, claims, caveats),
    /// calling from `peer`. An OAuth identity whose rail kept no claims has its `iss`, `sub`
    /// and `client_id` as claims.
    pub fn new(identity: &Identity, about: Option<Arc<About>>, peer: Option<IpAddr>) -> Who {
        let named = match identity {
            Identity::OAuth {
                issuer,
                subject,
                client_id,
            } if about.as_ref().is_none_or(|a| a.claims.is_none()) => {
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
        let agent = match identity {
            Identity::Agent { directory, key_id } => Some((directory.clone(), key_id.clone())),
            _ => None,
        };
        Who {
            kind: identity.kind().to_owned(),
            id: identity.scope_key(),
            about,
            named,
            agent,
            address: peer.map(|p| p.to_string()),
        }
    }

    /// The rules' view.
    pub fn caller(&self) -> Caller<'_> {
        let about = self.about.as_deref();
        Caller {
            kind: &self.kind,
            id: &self.id,
            claims: about
                .and_then(|a| a.claims.as_deref())
                .or(self.named.as_ref()),
            scopes: about.map_or(&[], |a| &a.scopes),
            caveats: about.map_or(&[], |a| &a.caveats),
            agent: self
                .agent
                .as_ref()
                .map(|(directory, key_id)| turnpike_policy::Agent { directory, key_id }),
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

    /// Keeps the annotations of `tools` (a `tools/list` result's, or one page of it): each
    /// listed tool's replace those it had (none: forgotten); others are kept while there is
    /// room.
    pub fn remember(&self, tools: &[Value]) {
        let mut m: HashMap<String, Value> = (**self.0.read()).clone();
        for t in tools {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                continue;
            };
            let a = t
                .get("annotations")
                .filter(|a| a.is_object() && a.to_string().len() <= MAX_ANNOTATIONS_BYTES);
            match a {
                Some(a) if m.len() < MAX_ANNOTATED_TOOLS || m.contains_key(name) => {
                    m.insert(name.to_owned(), a.clone());
                }
                Some(_) => {}
                None => {
                    m.remove(name);
                }
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

/// A list method whose answer is filtered per caller: where its items are, what names each,
/// and the call each item is judged as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListKind {
    /// The member of `result` holding the items.
    pub items: &'static str,
    /// The member of an item that names it.
    pub name: &'static str,
    /// The method an item is judged as a call of.
    pub judged_as: &'static str,
}

/// The list methods filtered per caller (`tools/list`, `resources/list`, `prompts/list`).
pub fn list_kind(method: &str) -> Option<ListKind> {
    let (items, name, judged_as) = match method {
        "tools/list" => ("tools", "name", "tools/call"),
        "resources/list" => ("resources", "uri", "resources/read"),
        "prompts/list" => ("prompts", "name", "prompts/get"),
        _ => return None,
    };
    Some(ListKind {
        items,
        name,
        judged_as,
    })
}

/// Filters the items of a list response `v` to those `filter`'s caller may call (a tool's
/// annotations remembered in `cache`); whether `v` changed.
pub fn filter_list(
    v: &mut Value,
    kind: ListKind,
    filter: &ListFilter,
    cache: &Annotations,
) -> bool {
    let Some(items) = v
        .get_mut("result")
        .and_then(|r| r.get_mut(kind.items))
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    if kind.items == "tools" {
        cache.remember(items);
    }
    let scope = filter.policy.scope(&filter.who.caller(), filter.now);
    let mut lister = scope.lister_for(kind.judged_as);
    let before = items.len();
    items.retain(|t| {
        let name = t.get(kind.name).and_then(Value::as_str).unwrap_or("");
        lister.may_list(name, t.get("annotations").filter(|_| kind.items == "tools"))
    });
    items.len() != before
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

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_policy::{Action, Rule, RuleSpec};

    fn deny(name: &str, when: &str) -> Rule {
        Rule::compile(RuleSpec::enforce(name, when, Action::Deny)).unwrap()
    }

    /// Resources and prompts are filtered as their `resources/read` and `prompts/get` would
    /// be judged; tools by `tools/call`, their annotations remembered.
    #[test]
    fn lists_of_tools_resources_and_prompts_are_filtered() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let filter = ListFilter {
            policy: Arc::new(Policy::new(vec![
                deny(
                    "secrets",
                    "call.method == 'resources/read' && call.tool.startsWith('secret:')",
                ),
                deny("admin", "call.method == 'prompts/get' && call.tool == 'admin'"),
                deny(
                    "writes",
                    "call.method == 'tools/call' && !(has(call.annotations.readOnlyHint) && call.annotations.readOnlyHint)",
                ),
            ])),
            who: Who::new(&Identity::anonymous(ip), None, Some(ip)),
            now: 0,
        };
        let cache = Annotations::default();
        let mut v = json!({"jsonrpc": "2.0", "id": 1, "result": {"resources": [
            {"uri": "file:///a", "name": "a"}, {"uri": "secret:x", "name": "x"}]}});
        assert!(filter_list(
            &mut v,
            list_kind("resources/list").unwrap(),
            &filter,
            &cache
        ));
        assert_eq!(
            v["result"]["resources"],
            json!([{"uri": "file:///a", "name": "a"}])
        );
        let mut v = json!({"jsonrpc": "2.0", "id": 2, "result": {"prompts": [
            {"name": "admin"}, {"name": "greet"}]}});
        assert!(filter_list(
            &mut v,
            list_kind("prompts/list").unwrap(),
            &filter,
            &cache
        ));
        assert_eq!(v["result"]["prompts"], json!([{"name": "greet"}]));
        let mut v = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": [
            {"name": "read", "annotations": {"readOnlyHint": true}}, {"name": "write"}]}});
        assert!(filter_list(
            &mut v,
            list_kind("tools/list").unwrap(),
            &filter,
            &cache
        ));
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
        assert_eq!(cache.get("read"), Some(json!({"readOnlyHint": true})));
        assert_eq!(cache.get("write"), None);
        // A later page keeps what an earlier one said; a tool listed again without
        // annotations loses them.
        cache.remember(&[json!({"name": "other", "annotations": {"title": "o"}})]);
        assert_eq!(cache.get("read"), Some(json!({"readOnlyHint": true})));
        cache.remember(&[json!({"name": "read"})]);
        assert_eq!(cache.get("read"), None);
        assert_eq!(cache.get("other"), Some(json!({"title": "o"})));
        assert!(list_kind("resources/templates/list").is_none());
    }

    /// A verified agent is `identity.kind == "agent"` with its directory and key id.
    #[test]
    fn an_agent_is_seen_with_its_directory_and_key() {
        let who = Who::new(
            &Identity::Agent {
                directory: "https://agents.example/keys".into(),
                key_id: "k1".into(),
            },
            None,
            None,
        );
        let policy = Policy::new(vec![deny(
            "agents",
            "identity.kind == 'agent' && identity.agent.directory == 'https://agents.example/keys' && identity.agent.key_id == 'k1'",
        )]);
        let call = CallView {
            method: "tools/call",
            tool: Some("x"),
            ..CallView::default()
        };
        assert!(policy
            .scope(&who.caller(), 0)
            .judge(&call)
            .refused
            .is_some());
    }
}
