//! The MPP rail of turnpike: the `Payment` HTTP authentication scheme
//! (draft-httpauth-payment-01) with the Lightning and the `evm` `charge` methods.
//!
//! - [`wire`]: the scheme on the wire — the challenge (`WWW-Authenticate: Payment id=…,
//!   realm=…, method=…, intent=…, request=…, expires=…, opaque=…`), the credential
//!   (`Authorization: Payment <base64url JSON>` or `_meta["org.paymentauth/credential"]`), the
//!   receipt (`Payment-Receipt`, `_meta["org.paymentauth/receipt"]`), the HMAC-SHA256 challenge
//!   binding, JSON canonicalization (RFC 8785) and RFC 3339 times;
//! - [`charge`]: the Lightning `charge` method — the request (amount in sats, a BOLT11 invoice
//!   the gateway created, its payment hash) and the payload (the preimage);
//! - [`evm`]: the `evm` charge method — the request (amount in a token's atomic units, the
//!   token, the payee, the chain) and the payload (an EIP-3009 authorization signed by the
//!   payer, its nonce the challenge's own), checked, spent and settled through
//!   [`turnpike_evm::token::Token`];
//! - [`rail`]: [`MppRail`], the [`turnpike_core::Rail`] and [`turnpike_core::RailPlugin`]:
//!   stateless challenges bound to one call, verified offline and spent once;
//! - [`conf`]: `[mpp]` and the price key `mpp = { sat = N }`.
//!
//! A 402 writes nothing: the challenge id is an HMAC over the challenge's fields under a key in
//! the data directory, and the call's scope travels in `opaque` under the same HMAC. The scheme
//! and its MCP binding are specified in `docs/MPP.md`.

pub mod charge;
pub mod conf;
pub mod evm;
pub mod rail;
pub mod wire;

pub use rail::{MppConfig, MppCredentials, MppRail};
pub use wire::{PaymentChallenge, PaymentCredential, PaymentReceipt, WireError};

use serde_json::{Map, Value};
use turnpike_core::{Offer, RailId};

/// The MPP rail's identifier: `mpp` in configuration, in prices and in metrics.
pub const RAIL: RailId = RailId::new("mpp");

/// An MPP offer: `sats` satoshis per call, paid with the Lightning `charge` method. Published
/// as `{"rail": "mpp", "method": "lightning", "intent": "charge", "sats": N}`.
pub fn offer(sats: u64) -> Offer {
    offers(Some(sats), None).remove(0)
}

/// The offers of one MPP price: one per method it names (Lightning first), each carrying the
/// terms of every method (`sats`, and `amount`: the `evm` method's atomic units as a decimal
/// string), its `method` saying which it challenges with. `[]` when it names none.
pub fn offers(sats: Option<u64>, evm_amount: Option<u128>) -> Vec<Offer> {
    let mut terms = Map::new();
    terms.insert("intent".into(), Value::from(charge::INTENT));
    if let Some(s) = sats {
        terms.insert("sats".into(), Value::from(s));
    }
    if let Some(a) = evm_amount {
        terms.insert("amount".into(), Value::from(a.to_string()));
    }
    let mut out = Vec::new();
    for (method, on) in [
        (charge::METHOD, sats.is_some()),
        (evm::METHOD, evm_amount.is_some()),
    ] {
        if on {
            let mut t = terms.clone();
            t.insert("method".into(), Value::from(method));
            out.push(Offer::new(RAIL, t));
        }
    }
    out
}

/// The satoshis an MPP offer asks per call with the Lightning method (`None` for another
/// rail's offer, or an MPP price without it).
pub fn sats(offer: &Offer) -> Option<u64> {
    (offer.rail() == RAIL)
        .then(|| offer.u64_term("sats"))
        .flatten()
}

/// The atomic units of the token an MPP offer asks per call with the `evm` method.
pub fn evm_amount(offer: &Offer) -> Option<u128> {
    if offer.rail() != RAIL {
        return None;
    }
    offer
        .term("amount")
        .and_then(Value::as_str)
        .and_then(turnpike_evm::evm::parse_decimal)
}

/// The method an MPP offer challenges with (`lightning` when it says none).
pub fn method(offer: &Offer) -> &str {
    offer
        .term("method")
        .and_then(Value::as_str)
        .unwrap_or(charge::METHOD)
}
