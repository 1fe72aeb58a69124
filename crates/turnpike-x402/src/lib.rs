//! The x402 rail of turnpike: x402 version 2, the `exact` scheme on an EVM chain, paid with an
//! EIP-3009 `transferWithAuthorization` signed by the payer.
//!
//! - [`wire`]: the protocol on the wire — `PAYMENT-REQUIRED` (the offer), `PAYMENT-SIGNATURE`
//!   or `_meta["x402/payment"]` (the payment), `PAYMENT-RESPONSE` or
//!   `_meta["x402/payment-response"]` (the settlement);
//! - [`evm`], [`chain`], [`token`], [`spend`]: turnpike-evm's, re-exported — Keccak-256,
//!   EIP-712 and signer recovery, the node and the facilitator, the shared token (bounds on
//!   payments checked, chain state, settlement) and the spend log, which MPP's `evm` method
//!   uses too without importing this rail;
//! - [`rail`]: [`X402Rail`], the [`turnpike_core::Rail`] and [`turnpike_core::RailPlugin`]:
//!   offers bound to one call by an HMAC, payments checked offline, their nonces spent once,
//!   settled before the call is forwarded;
//! - [`payer`]: the payer's side, a signed `PaymentPayload` for an offer;
//! - [`conf`]: `[x402]` and the price key `x402 = { amount = "N" }`.
//!
//! The wire format, byte by byte, is in `docs/X402.md`.

pub mod conf;
pub mod payer;
pub mod rail;
pub mod wire;

pub use turnpike_evm::{chain, evm, spend, token};

pub use rail::{X402Config, X402Credentials, X402Rail};
pub use wire::{PaymentPayload, PaymentRequired, PaymentRequirements, SettlementResponse};

use serde_json::{Map, Value};
use turnpike_core::{Offer, RailId};

/// The x402 rail's identifier: `x402` in configuration, in prices and in metrics.
pub const RAIL: RailId = RailId::new("x402");

/// An x402 offer: `amount` atomic units of the configured asset per call, scheme `exact`.
/// Published as `{"rail": "x402", "scheme": "exact", "amount": "N"}` (with the network, the
/// asset and `payTo` added by the running rail).
pub fn offer(amount: u128) -> Offer {
    let mut terms = Map::new();
    terms.insert("scheme".into(), Value::from(wire::SCHEME));
    terms.insert("amount".into(), Value::from(amount.to_string()));
    Offer::new(RAIL, terms)
}

/// The atomic units an x402 offer asks per call (`None` for another rail's offer).
pub fn amount(offer: &Offer) -> Option<u128> {
    if offer.rail() != RAIL {
        return None;
    }
    offer
        .terms()
        .get("amount")
        .and_then(Value::as_str)
        .and_then(evm::parse_decimal)
}
