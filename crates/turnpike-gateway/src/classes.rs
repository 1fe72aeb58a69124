//! Price/limit classes at the gate: `[classes.<name>]` built for the pipeline, and the pick of
//! a call's class by the `[[policy]]` rules with `action = "class"` (docs/POLICY.md
//! "Classes").
//!
//! A class is picked in step 4 (price), before the rails, on the caller known then: an
//! identity a rail verifies without spending anything ([`turnpike_core::Rail::identify`]: an
//! OAuth bearer token), else the caller's address. Its prices replace the gateway's for the
//! tools and methods it names; its limits bucket replaces `[limits.rails.*]` and
//! `[limits.default]` in step 7, counted on the identity the class was picked on. Classes are
//! configuration: nothing is kept per caller.

use std::collections::BTreeMap;

use turnpike_core::Policy;
use turnpike_limits::IdentityQuotaConfig;

use crate::config::Config;

/// One class, ready for the pipeline.
#[derive(Debug)]
pub struct GateClass {
    /// Its name.
    pub name: String,
    /// What calls cost in it: the gateway's prices with the class's own in their place.
    pub prices: Policy,
    /// Its limits bucket (`None`: the gateway's).
    pub limits: Option<IdentityQuotaConfig>,
}

/// Every class of a gate, by name.
#[derive(Debug, Default)]
pub struct Classes(BTreeMap<String, GateClass>);

impl Classes {
    /// The classes of `cfg` (`[classes.<name>]`), each priced over `cfg`'s prices (a mount's
    /// configuration: its own).
    pub fn from_config(cfg: &Config) -> Classes {
        Classes(
            cfg.classes
                .iter()
                .filter_map(|(name, c)| {
                    Some((
                        name.clone(),
                        GateClass {
                            name: name.clone(),
                            prices: cfg.class_policy(name)?,
                            limits: c.limits,
                        },
                    ))
                })
                .collect(),
        )
    }

    /// The class named `name`.
    pub fn get(&self, name: &str) -> Option<&GateClass> {
        self.0.get(name)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tools the classes price by name (for the metrics' tool label).
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.0
            .values()
            .flat_map(|c| c.prices.tools.keys().map(String::as_str))
    }
}
