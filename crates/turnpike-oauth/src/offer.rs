//! The OAuth rail's identifier and its offers.

use serde_json::Value;
use turnpike_core::{Offer, RailId};

/// The OAuth rail's identifier: `oauth` on the wire, in configuration and in metrics.
pub const RAIL: RailId = RailId::new("oauth");

/// An OAuth offer: an access token carrying every one of `scopes`. Published as
/// `{"rail": "oauth", "scopes": […]}`.
pub fn offer(scopes: Vec<String>) -> Offer {
    let mut terms = serde_json::Map::new();
    terms.insert(
        "scopes".into(),
        Value::Array(scopes.into_iter().map(Value::String).collect()),
    );
    Offer::new(RAIL, terms)
}

/// The scopes an OAuth offer needs; `None` for an offer on another rail.
pub fn scopes(offer: &Offer) -> Option<Vec<String>> {
    if offer.rail() != RAIL {
        return None;
    }
    Some(
        offer
            .term("scopes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn published_offer() {
        assert_eq!(
            offer(vec!["a".into()]).published(),
            json!({"rail": "oauth", "scopes": ["a"]})
        );
        assert_eq!(scopes(&offer(vec!["a".into()])), Some(vec!["a".to_owned()]));
    }
}
