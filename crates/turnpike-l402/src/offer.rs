//! The L402 rail's identifier, its offers and how they bill.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use turnpike_core::{Offer, RailId};

/// The L402 rail's identifier: `l402` on the wire, in configuration and in metrics.
pub const RAIL: RailId = RailId::new("l402");

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

/// The wire name of a billing mode (`per_call`, `balance`, `time_pass`).
pub fn mode_str(mode: BillingMode) -> &'static str {
    match mode {
        BillingMode::PerCall => "per_call",
        BillingMode::Balance => "balance",
        BillingMode::TimePass => "time_pass",
    }
}

pub(crate) fn parse_mode(s: &str) -> Option<BillingMode> {
    Some(match s {
        "per_call" => BillingMode::PerCall,
        "balance" => BillingMode::Balance,
        "time_pass" => BillingMode::TimePass,
        _ => return None,
    })
}

/// The terms of an L402 offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L402Terms {
    /// Millisatoshis per call.
    pub msat: u64,
    /// How the payment is billed.
    pub mode: BillingMode,
    /// For [`BillingMode::Balance`]: msat bought per invoice; for [`BillingMode::TimePass`]:
    /// seconds the pass lasts. Ignored (and not kept) for per-call billing.
    pub bundle: u64,
}

/// An L402 offer: a Lightning payment of `msat` millisatoshis per call, billed as `mode`, with
/// `bundle` (msat of credit per invoice, or seconds of a pass) unless billed per call. Published
/// as `{"rail": "l402", "msat": N, "mode": …}` with `bundle` when it matters.
pub fn offer(msat: u64, mode: BillingMode, bundle: u64) -> Offer {
    let mut terms = serde_json::Map::new();
    terms.insert("msat".into(), Value::from(msat));
    terms.insert("mode".into(), Value::from(mode_str(mode)));
    if mode != BillingMode::PerCall && bundle > 0 {
        terms.insert("bundle".into(), Value::from(bundle));
    }
    Offer::new(RAIL, terms)
}

/// The terms of an L402 offer; `None` for an offer on another rail.
pub fn terms(offer: &Offer) -> Option<L402Terms> {
    if offer.rail() != RAIL {
        return None;
    }
    let mode = match offer.term("mode").and_then(Value::as_str) {
        Some(m) => parse_mode(m)?,
        None => BillingMode::PerCall,
    };
    Some(L402Terms {
        msat: offer.u64_term("msat")?,
        mode,
        bundle: offer.u64_term("bundle").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn published_offers() {
        assert_eq!(
            offer(1000, BillingMode::PerCall, 5).published(),
            json!({"rail": "l402", "msat": 1000, "mode": "per_call"})
        );
        assert_eq!(
            offer(1000, BillingMode::Balance, 5000).published(),
            json!({"rail": "l402", "msat": 1000, "mode": "balance", "bundle": 5000})
        );
        assert_eq!(
            offer(1000, BillingMode::TimePass, 0).published(),
            json!({"rail": "l402", "msat": 1000, "mode": "time_pass"})
        );
        assert_eq!(
            terms(&offer(1000, BillingMode::Balance, 5000)),
            Some(L402Terms {
                msat: 1000,
                mode: BillingMode::Balance,
                bundle: 5000
            })
        );
        assert_eq!(terms(&offer(1, BillingMode::PerCall, 9)).unwrap().bundle, 0);
    }
}
