//! The `evm` charge method: what its `request` holds and what its credential's `payload`
//! proves — an EIP-3009 `transferWithAuthorization` of the token to the gateway's payee,
//! signed by the payer (EIP-712), whose nonce is the challenge's own.
//!
//! The request, before canonical JSON and base64url:
//!
//! ```json
//! {"amount":"10000","currency":"0x<token, EIP-55>","description":"turnpike dear",
//!  "methodDetails":{"chainId":8453,"credentialTypes":["authorization"],"decimals":6},
//!  "recipient":"0x<payee, EIP-55>"}
//! ```
//!
//! The payload:
//!
//! ```json
//! {"type":"authorization","from":"0x…","to":"0x<payee>","value":"10000","validAfter":"0",
//!  "validBefore":"<Unix seconds>","nonce":"0x<keccak256(id ‖ realm)>","signature":"0x<65 bytes>"}
//! ```
//!
//! The EIP-712 domain is the token's (`name`, `version`, the chain id, the token's address);
//! the request does not carry the name and version: the payer knows its token. The gateway
//! reads them from `[x402] asset_name`/`asset_version`. The chain checks and the settlement are
//! turnpike-evm's ([`turnpike_evm::token::Token`]).

use serde_json::{json, Map, Value};
use turnpike_evm::evm::{self, Address, Authorization, Rsv};

/// The method identifier.
pub const METHOD: &str = "evm";
/// The intent.
pub const INTENT: &str = "charge";
/// The one credential type taken: an EIP-3009 authorization.
pub const CREDENTIAL_TYPE: &str = "authorization";

/// The request of one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmRequest {
    /// Atomic units of the token.
    pub amount: u128,
    /// The token contract.
    pub currency: Address,
    /// Who is paid.
    pub recipient: Address,
    /// The chain id.
    pub chain_id: u64,
    /// The token's decimals (for people: the payer shows `amount / 10^decimals`).
    pub decimals: u8,
    /// For people.
    pub description: String,
}

impl EvmRequest {
    /// The request object.
    pub fn to_json(&self) -> Value {
        json!({
            "amount": self.amount.to_string(),
            "currency": evm::checksum(&self.currency),
            "description": self.description,
            "methodDetails": {
                "chainId": self.chain_id,
                "credentialTypes": [CREDENTIAL_TYPE],
                "decimals": self.decimals,
            },
            "recipient": evm::checksum(&self.recipient),
        })
    }
}

/// The terms of a request this gateway wrote: amount, token, payee, chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// Atomic units.
    pub amount: u128,
    /// The token.
    pub currency: Address,
    /// The payee.
    pub recipient: Address,
    /// The chain id.
    pub chain_id: u64,
}

impl Terms {
    /// The terms of `request` (`None` when it is not an `evm` charge request taking
    /// authorizations).
    pub fn of(request: &Map<String, Value>) -> Option<Terms> {
        let amount = evm::parse_decimal(request.get("amount")?.as_str()?)?;
        let currency = evm::parse_address(request.get("currency")?.as_str()?)?;
        let recipient = evm::parse_address(request.get("recipient")?.as_str()?)?;
        let details = request.get("methodDetails")?.as_object()?;
        let chain_id = details.get("chainId")?.as_u64()?;
        let types = details.get("credentialTypes")?.as_array()?;
        if !types.iter().any(|t| t.as_str() == Some(CREDENTIAL_TYPE)) {
            return None;
        }
        Some(Terms {
            amount,
            currency,
            recipient,
            chain_id,
        })
    }
}

/// The EIP-3009 nonce a credential for the challenge `id` of `realm` must carry:
/// `keccak256(utf8(id ‖ realm))`. The authorization is thereby tied to one challenge.
pub fn challenge_nonce(id: &str, realm: &str) -> [u8; 32] {
    evm::keccak_all(&[id.as_bytes(), realm.as_bytes()])
}

/// The payer as a `did:pkh` source: `did:pkh:eip155:<chainId>:<address, EIP-55>`.
pub fn source_of(chain_id: u64, from: &Address) -> String {
    format!("did:pkh:eip155:{chain_id}:{}", evm::checksum(from))
}

/// A credential's payload read: the authorization and its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// What is authorized.
    pub authorization: Authorization,
    /// The payer's signature (65 bytes, `v` 27/28).
    pub signature: Rsv,
}

/// Reads a payload (`type` `authorization`, the seven fields as the method writes them).
pub fn payload(p: &Map<String, Value>) -> Result<Signed, &'static str> {
    let s = |k: &'static str| p.get(k).and_then(Value::as_str);
    if s("type") != Some(CREDENTIAL_TYPE) {
        return Err("payload.type is not \"authorization\"");
    }
    let address = |k: &'static str, why: &'static str| s(k).and_then(evm::parse_address).ok_or(why);
    let decimal = |k: &'static str, why: &'static str| s(k).and_then(evm::parse_decimal).ok_or(why);
    let authorization = Authorization {
        from: address("from", "payload.from is not an address")?,
        to: address("to", "payload.to is not an address")?,
        value: decimal("value", "payload.value is not a decimal amount")?,
        valid_after: decimal("validAfter", "payload.validAfter is not a decimal time")?,
        valid_before: decimal("validBefore", "payload.validBefore is not a decimal time")?,
        nonce: s("nonce")
            .and_then(evm::parse_b32)
            .ok_or("payload.nonce is not 32 bytes of hex")?,
    };
    let signature = s("signature")
        .and_then(evm::parse_signature)
        .ok_or("payload.signature is not a 65-byte signature")?;
    Ok(Signed {
        authorization,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = EvmRequest {
            amount: 10_000,
            currency: [0x83; 20],
            recipient: [0x20; 20],
            chain_id: 31337,
            decimals: 6,
            description: "turnpike dear".into(),
        };
        let v = r.to_json();
        assert_eq!(v["amount"], "10000");
        assert_eq!(
            v["methodDetails"]["credentialTypes"],
            json!(["authorization"])
        );
        let m = v.as_object().unwrap();
        assert_eq!(
            Terms::of(m),
            Some(Terms {
                amount: 10_000,
                currency: [0x83; 20],
                recipient: [0x20; 20],
                chain_id: 31337
            })
        );
        let mut bad = m.clone();
        bad["methodDetails"]["credentialTypes"] = json!(["hash"]);
        assert_eq!(Terms::of(&bad), None);
        let mut bad = m.clone();
        bad.insert("amount".into(), json!(10000));
        assert_eq!(Terms::of(&bad), None);
    }

    #[test]
    fn payloads() {
        let mut p = Map::new();
        for (k, v) in [
            ("type", "authorization"),
            ("from", "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"),
            ("to", "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
            ("value", "10000"),
            ("validAfter", "0"),
            ("validBefore", "1800000600"),
            ("nonce", &format!("0x{}", "22".repeat(32))),
            ("signature", &format!("0x{}1b", "11".repeat(64))),
        ] {
            p.insert(k.into(), v.into());
        }
        let s = payload(&p).unwrap();
        assert_eq!(s.authorization.value, 10_000);
        assert_eq!(s.authorization.nonce, [0x22; 32]);
        assert_eq!(s.signature.v, 27);
        let mut bad = p.clone();
        bad.insert("type".into(), "hash".into());
        assert!(payload(&bad).unwrap_err().contains("type"));
        let mut bad = p.clone();
        bad.insert("value".into(), "-1".into());
        assert!(payload(&bad).unwrap_err().contains("value"));
        let mut bad = p;
        bad.insert("signature".into(), "0x00".into());
        assert!(payload(&bad).unwrap_err().contains("signature"));
    }

    #[test]
    fn nonce_and_source() {
        // keccak256("") is the well-known empty hash; the nonce is over id then realm.
        assert_eq!(
            hex::encode(challenge_nonce("", "")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            challenge_nonce("ab", "c"),
            challenge_nonce("a", "bc"),
            "a plain concatenation, as the method defines it"
        );
        assert_eq!(
            source_of(8453, &[0x20; 20]),
            format!("did:pkh:eip155:8453:{}", evm::checksum(&[0x20; 20]))
        );
    }
}
