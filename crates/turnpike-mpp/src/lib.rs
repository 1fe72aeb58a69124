//! The MPP rail of turnpike: the `Payment` HTTP authentication scheme
//! (draft-httpauth-payment-01) with the Lightning `charge` method.
//!
//! - [`wire`]: the scheme on the wire — the challenge (`WWW-Authenticate: Payment id=…,
//!   realm=…, method=…, intent=…, request=…, expires=…, opaque=…`), the credential
//!   (`Authorization: Payment <base64url JSON>` or `_meta["org.paymentauth/credential"]`), the
//!   receipt (`Payment-Receipt`, `_meta["org.paymentauth/receipt"]`), the HMAC-SHA256 challenge
//!   binding, JSON canonicalization (RFC 8785) and RFC 3339 times;
//! - [`charge`]: the Lightning `charge` method — the request (amount in sats, a BOLT11 invoice
//!   the gateway created, its payment hash) and the payload (the preimage);
//! - [`rail`]: [`MppRail`], the [`turnpike_core::Rail`] and [`turnpike_core::RailPlugin`]:
//!   stateless challenges bound to one call, verified offline and spent once;
//! - [`conf`]: `[mpp]` and the price key `mpp = { sat = N }`.
//!
//! A 402 writes nothing: the challenge id is an HMAC over the challenge's fields under a key in
//! the data directory, and the call's scope travels in `opaque` under the same HMAC. The scheme
//! and its MCP binding are specified in `docs/MPP.md`.

pub mod charge;
pub mod conf;
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
    let mut terms = Map::new();
    terms.insert("method".into(), Value::from(charge::METHOD));
    terms.insert("intent".into(), Value::from(charge::INTENT));
    terms.insert("sats".into(), Value::from(sats));
    Offer::new(RAIL, terms)
}

/// The satoshis an MPP offer asks per call (`None` for another rail's offer).
pub fn sats(offer: &Offer) -> Option<u64> {
    (offer.rail() == RAIL)
        .then(|| offer.u64_term("sats"))
        .flatten()
}
