//! The Lightning `charge` method (draft-lightning-charge-00): what its `request` holds and what
//! its credential's `payload` proves.
//!
//! The request, before canonical JSON and base64url:
//!
//! ```json
//! {"amount":"10","currency":"sat","description":"turnpike echo",
//!  "methodDetails":{"invoice":"lnbcrt100n1…","network":"regtest","paymentHash":"<64 hex>"}}
//! ```
//!
//! The payload: `{"preimage": "<64 lower-case hex>"}`. The invoice is the authority for the
//! payer; the gateway, which wrote the request and bound it under its HMAC, reads the payment
//! hash from `methodDetails.paymentHash` and checks that the preimage hashes to it.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The method identifier.
pub const METHOD: &str = "lightning";
/// The intent.
pub const INTENT: &str = "charge";
/// The currency of `amount`.
pub const CURRENCY: &str = "sat";

/// The request of one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Satoshis the invoice asks for.
    pub sats: u64,
    /// The invoice memo, for people.
    pub description: String,
    /// The BOLT11 invoice.
    pub invoice: String,
    /// Its payment hash.
    pub payment_hash: [u8; 32],
    /// `mainnet`, `regtest` or `signet`, from the invoice's prefix.
    pub network: &'static str,
}

impl ChargeRequest {
    /// The request object.
    pub fn to_json(&self) -> Value {
        json!({
            "amount": self.sats.to_string(),
            "currency": CURRENCY,
            "description": self.description,
            "methodDetails": {
                "invoice": self.invoice,
                "paymentHash": hex::encode(self.payment_hash),
                "network": self.network,
            }
        })
    }

    /// The amount and payment hash of a request this gateway wrote (`None` when it is not one).
    pub fn terms(request: &Map<String, Value>) -> Option<(u64, [u8; 32])> {
        if request.get("currency")?.as_str()? != CURRENCY {
            return None;
        }
        let amount = request.get("amount")?.as_str()?;
        if amount.is_empty() || amount.len() > 20 || !amount.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let sats: u64 = amount.parse().ok()?;
        let hash = request.get("methodDetails")?.get("paymentHash")?.as_str()?;
        Some((sats, hex32(hash)?))
    }
}

/// The network a BOLT11 invoice's human-readable prefix names (`lnbc` mainnet, `lnbcrt`
/// regtest, `lntbs` signet), as the method spells it; `None` for others (testnet).
pub fn network_of(invoice: &str) -> Option<&'static str> {
    let lower = invoice.get(..6)?.to_ascii_lowercase();
    if lower.starts_with("lnbcrt") {
        Some("regtest")
    } else if lower.starts_with("lntbs") {
        Some("signet")
    } else if lower.starts_with("lnbc") {
        Some("mainnet")
    } else {
        None
    }
}

/// 64 lower-case hex digits as 32 bytes (the method writes hashes and preimages in lower case).
pub fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// The preimage of a credential's payload (`{"preimage": "<64 lower-case hex>"}`).
pub fn preimage(payload: &Map<String, Value>) -> Option<[u8; 32]> {
    hex32(payload.get("preimage")?.as_str()?)
}

/// Whether `preimage` hashes to `payment_hash` (compared in constant time).
pub fn pays(preimage: &[u8; 32], payment_hash: &[u8; 32]) -> bool {
    let h: [u8; 32] = Sha256::digest(preimage).into();
    turnpike_core::ct_eq(&h, payment_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = ChargeRequest {
            sats: 100,
            description: "Weather report for 94107".into(),
            invoice: "lnbc1u1p...".into(),
            payment_hash: [0xbc; 32],
            network: "mainnet",
        };
        let v = r.to_json();
        assert_eq!(v["amount"], "100");
        assert_eq!(v["currency"], "sat");
        assert_eq!(v["methodDetails"]["network"], "mainnet");
        let m = v.as_object().unwrap();
        assert_eq!(ChargeRequest::terms(m), Some((100, [0xbc; 32])));
        let mut bad = m.clone();
        bad.insert("currency".into(), "BTC".into());
        assert_eq!(ChargeRequest::terms(&bad), None);
        let mut bad = m.clone();
        bad.insert("amount".into(), "-1".into());
        assert_eq!(ChargeRequest::terms(&bad), None);
        let mut bad = m.clone();
        bad.insert("amount".into(), Value::from(100));
        assert_eq!(ChargeRequest::terms(&bad), None);
    }

    #[test]
    fn preimages() {
        let p = [0xabu8; 32];
        let h: [u8; 32] = Sha256::digest(p).into();
        assert!(pays(&p, &h));
        assert!(!pays(&[8; 32], &h));
        let mut payload = Map::new();
        payload.insert("preimage".into(), hex::encode(p).into());
        assert_eq!(preimage(&payload), Some(p));
        payload.insert("preimage".into(), hex::encode(p).to_uppercase().into());
        assert_eq!(preimage(&payload), None, "the method writes lower case");
        payload.insert("preimage".into(), "00".into());
        assert_eq!(preimage(&payload), None);
    }

    #[test]
    fn networks() {
        assert_eq!(network_of("lnbcrt10n1pabc"), Some("regtest"));
        assert_eq!(network_of("LNBC10N1PABC"), Some("mainnet"));
        assert_eq!(network_of("lntbs10n1pabc"), Some("signet"));
        assert_eq!(network_of("lntb10n1pabc"), None);
        assert_eq!(network_of("ln"), None);
    }
}
