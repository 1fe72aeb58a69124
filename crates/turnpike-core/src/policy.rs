//! Prices and the policy that maps calls to them.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::RailId;

/// One accepted way through for a call: a rail and its terms. The terms belong to the rail
/// (proof-of-work's `effort`, L402's `msat` and billing mode, OAuth's `scopes`, …): the core
/// keeps them as a JSON object and does not read them; each rail crate builds its offers and
/// reads their terms (e.g. `turnpike_pow::offer`, `turnpike_pow::effort`).
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    rail: RailId,
    terms: Map<String, Value>,
}

impl Offer {
    /// An offer on `rail` with `terms` (a key named `rail` among them is ignored).
    pub fn new(rail: RailId, mut terms: Map<String, Value>) -> Offer {
        terms.remove("rail");
        Offer { rail, terms }
    }

    /// The rail this offer is made on.
    pub fn rail(&self) -> RailId {
        self.rail
    }

    /// The rail's terms.
    pub fn terms(&self) -> &Map<String, Value> {
        &self.terms
    }

    /// One term, by name.
    pub fn term(&self, key: &str) -> Option<&Value> {
        self.terms.get(key)
    }

    /// One term as an unsigned integer (absent or of another type: `None`).
    pub fn u64_term(&self, key: &str) -> Option<u64> {
        self.terms.get(key).and_then(Value::as_u64)
    }

    /// The offer as `tools/list` publishes it when its rail adds nothing: `{"rail": <id>}` with
    /// its terms beside it, e.g. `{"rail": "pow", "effort": N}`.
    pub fn published(&self) -> Value {
        let mut o = self.terms.clone();
        o.insert("rail".into(), Value::from(self.rail.as_str()));
        Value::Object(o)
    }
}

impl Serialize for Offer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.published().serialize(s)
    }
}

/// What a call costs: every accepted way through. An empty price means the call is free.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Price {
    /// The accepted ways through, in the order they are offered.
    pub offers: Vec<Offer>,
    /// A dry run (`mode = "shadow"`): the price is published and a credential that passes pays
    /// it, but a call that would be refused for want of one goes on free (the gateway logs and
    /// counts it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl Price {
    /// A call that needs nothing.
    pub fn free() -> Self {
        Price {
            offers: Vec::new(),
            shadow: false,
        }
    }

    /// A price of `offers`, enforced.
    pub fn of(offers: Vec<Offer>) -> Self {
        Price {
            offers,
            shadow: false,
        }
    }
    /// Whether the call needs nothing.
    pub fn is_free(&self) -> bool {
        self.offers.is_empty()
    }
    /// The offer made on `rail`, if any.
    pub fn offer(&self, rail: RailId) -> Option<&Offer> {
        self.offers.iter().find(|o| o.rail() == rail)
    }
}

/// Methods that are free unless the operator prices them: the handshake, liveness, discovery
/// and every list method. Notifications (`notifications/*`) and JSON-RPC responses are always
/// free.
pub const DEFAULT_FREE_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
];

/// Maps each call to its price.
///
/// - `tools/call` of a named tool costs that tool's price, of any other tool `default_tool`;
/// - a method in `methods` costs that price (e.g. `resources/read`, `prompts/get`);
/// - everything else is free: the list methods, `initialize`, `ping`, notifications, responses,
///   and any method the operator did not price.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Policy {
    /// Price per tool name.
    pub tools: BTreeMap<String, Price>,
    /// Price of tools not named in `tools`.
    pub default_tool: Price,
    /// Price per method other than `tools/call` (e.g. `resources/read`).
    pub methods: BTreeMap<String, Price>,
}

impl Policy {
    /// The price of a call with this method and name (tool name for `tools/call`).
    pub fn price(&self, method: &str, name: Option<&str>) -> &Price {
        static FREE: Price = Price {
            offers: Vec::new(),
            shadow: false,
        };
        if method == "tools/call" {
            return name
                .and_then(|n| self.tools.get(n))
                .unwrap_or(&self.default_tool);
        }
        if method.starts_with("notifications/") {
            return &FREE;
        }
        self.methods.get(method).unwrap_or(&FREE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOY: RailId = RailId::new("toy");

    fn toy(n: u64) -> Offer {
        let mut terms = Map::new();
        terms.insert("n".into(), json!(n));
        Offer::new(TOY, terms)
    }

    #[test]
    fn published_offers() {
        assert_eq!(toy(7).published(), json!({"rail": "toy", "n": 7}));
        assert_eq!(serde_json::to_value(toy(7)).unwrap(), toy(7).published());
        assert_eq!(toy(7).u64_term("n"), Some(7));
        let mut terms = Map::new();
        terms.insert("rail".into(), json!("other"));
        assert_eq!(
            Offer::new(TOY, terms).published(),
            json!({"rail": "toy"}),
            "the rail is the offer's own, never a term"
        );
    }

    #[test]
    fn prices_resolve() {
        let mut p = Policy {
            default_tool: Price::of(vec![toy(10)]),
            ..Default::default()
        };
        p.tools.insert("free".into(), Price::free());
        p.tools.insert("dear".into(), Price::of(vec![toy(1000)]));
        assert!(p.price("tools/call", Some("free")).is_free());
        assert_eq!(
            p.price("tools/call", Some("dear")).offer(TOY),
            Some(&toy(1000))
        );
        assert_eq!(p.price("tools/call", Some("other")).offers, vec![toy(10)]);
        assert_eq!(
            p.price("tools/call", None).offers,
            vec![toy(10)],
            "a call with no tool name is still priced"
        );
        for m in DEFAULT_FREE_METHODS {
            assert!(p.price(m, None).is_free());
        }
        assert!(p.price("notifications/initialized", None).is_free());
        assert!(p.price("resources/read", Some("file:///x")).is_free());
    }
}
