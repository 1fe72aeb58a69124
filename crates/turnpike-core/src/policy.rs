//! Prices and the policy that maps calls to them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::RailKind;

/// How an L402 token pays for calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BillingMode {
    /// One invoice, one call: the credential is spent by the call it pays for.
    #[default]
    PerCall,
    /// The invoice buys credit; each call debits its price.
    Balance,
    /// The invoice buys unlimited calls until a deadline.
    TimePass,
}

/// One accepted way through for a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rail", rename_all = "snake_case")]
pub enum Offer {
    /// Proof-of-work of about `effort` expected SHA-256 evaluations (before load scaling).
    Pow {
        /// Expected SHA-256 evaluations.
        effort: u64,
    },
    /// A Lightning payment of `msat` millisatoshis per call, billed as `mode`.
    L402 {
        /// Millisatoshis per call.
        msat: u64,
        /// How the payment is billed.
        #[serde(default)]
        mode: BillingMode,
        /// For [`BillingMode::Balance`]: msat bought per invoice; for
        /// [`BillingMode::TimePass`]: seconds the pass lasts. Ignored for per-call billing.
        #[serde(default)]
        bundle: u64,
    },
    /// An OAuth access token carrying every one of `scopes`.
    #[serde(rename = "oauth")]
    OAuth {
        /// Scopes the token must carry.
        scopes: Vec<String>,
    },
}

impl Offer {
    /// The offer as `tools/list` publishes it when its rail adds nothing: `{"rail": "pow",
    /// "effort": N}`; `{"rail": "l402", "msat": N, "mode": …}` with `bundle` (msat of credit per
    /// invoice, or seconds of a pass) unless billed per call; `{"rail": "oauth", "scopes": […]}`.
    pub fn published(&self) -> serde_json::Value {
        match self {
            Offer::Pow { effort } => serde_json::json!({"rail": "pow", "effort": effort}),
            Offer::L402 { msat, mode, bundle } => {
                let mut o = serde_json::json!({"rail": "l402", "msat": msat, "mode": mode});
                if *mode != BillingMode::PerCall && *bundle > 0 {
                    o["bundle"] = serde_json::json!(bundle);
                }
                o
            }
            Offer::OAuth { .. } => serde_json::to_value(self).unwrap_or_default(),
        }
    }

    /// The rail this offer is made on.
    pub fn rail(&self) -> RailKind {
        match self {
            Offer::Pow { .. } => RailKind::Pow,
            Offer::L402 { .. } => RailKind::L402,
            Offer::OAuth { .. } => RailKind::OAuth,
        }
    }
}

/// What a call costs: every accepted way through. An empty price means the call is free.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Price {
    /// The accepted ways through, in the order they are offered.
    pub offers: Vec<Offer>,
}

impl Price {
    /// A call that needs nothing.
    pub fn free() -> Self {
        Price { offers: Vec::new() }
    }
    /// Whether the call needs nothing.
    pub fn is_free(&self) -> bool {
        self.offers.is_empty()
    }
    /// The offer made on `rail`, if any.
    pub fn offer(&self, rail: RailKind) -> Option<&Offer> {
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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
        static FREE: Price = Price { offers: Vec::new() };
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

    #[test]
    fn published_offers() {
        use serde_json::json;
        assert_eq!(
            Offer::Pow { effort: 7 }.published(),
            json!({"rail": "pow", "effort": 7})
        );
        let l402 = |mode, bundle| Offer::L402 {
            msat: 1000,
            mode,
            bundle,
        };
        assert_eq!(
            l402(BillingMode::PerCall, 5).published(),
            json!({"rail": "l402", "msat": 1000, "mode": "per_call"})
        );
        assert_eq!(
            l402(BillingMode::Balance, 5000).published(),
            json!({"rail": "l402", "msat": 1000, "mode": "balance", "bundle": 5000})
        );
        assert_eq!(
            l402(BillingMode::TimePass, 0).published(),
            json!({"rail": "l402", "msat": 1000, "mode": "time_pass"})
        );
        assert_eq!(
            Offer::OAuth {
                scopes: vec!["a".into()]
            }
            .published(),
            json!({"rail": "oauth", "scopes": ["a"]})
        );
    }

    #[test]
    fn prices_resolve() {
        let mut p = Policy {
            default_tool: Price {
                offers: vec![Offer::Pow { effort: 10 }],
            },
            ..Default::default()
        };
        p.tools.insert("free".into(), Price::free());
        p.tools.insert(
            "dear".into(),
            Price {
                offers: vec![Offer::Pow { effort: 1000 }],
            },
        );
        assert!(p.price("tools/call", Some("free")).is_free());
        assert_eq!(
            p.price("tools/call", Some("dear")).offer(RailKind::Pow),
            Some(&Offer::Pow { effort: 1000 })
        );
        assert_eq!(
            p.price("tools/call", Some("other")).offers,
            vec![Offer::Pow { effort: 10 }]
        );
        assert_eq!(
            p.price("tools/call", None).offers,
            vec![Offer::Pow { effort: 10 }],
            "a call with no tool name is still priced"
        );
        for m in DEFAULT_FREE_METHODS {
            assert!(p.price(m, None).is_free());
        }
        assert!(p.price("notifications/initialized", None).is_free());
        assert!(p.price("resources/read", Some("file:///x")).is_free());
    }
}
