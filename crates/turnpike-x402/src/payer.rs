//! The payer's side of the `exact` scheme (EIP-3009): a `PaymentPayload` for one
//! `PaymentRequirements`, signed with a secp256k1 key. The rail's tests and benchmark pay with
//! it; a client could too.

use k256::ecdsa::SigningKey;
use serde_json::{json, Value};

use crate::evm::{self, Authorization, Domain};
use crate::rail::chain_id_of;
use crate::wire::{PaymentRequirements, X402_VERSION};

/// The payment of `req` by `key`, valid after `valid_after` until `valid_before`, with `nonce`
/// (a client takes 0 and now + `maxTimeoutSeconds`): the JSON of
/// the `PaymentPayload` (`accepted` is `req`, echoed). `None` when `req` is not an EVM `exact`
/// offer this function can sign (network, addresses, amount, `extra.name`/`version`).
pub fn pay(
    req: &PaymentRequirements,
    key: &SigningKey,
    nonce: [u8; 32],
    valid_after: u64,
    valid_before: u64,
) -> Option<Value> {
    let chain_id = chain_id_of(&req.network)?;
    let asset = evm::parse_address(&req.asset)?;
    let to = evm::parse_address(&req.pay_to)?;
    let value = evm::parse_decimal(&req.amount)?;
    let name = req.extra.get("name")?.as_str()?;
    let version = req.extra.get("version")?.as_str()?;
    let from = evm::address_of(key.verifying_key());
    let auth = Authorization {
        from,
        to,
        value,
        valid_after: u128::from(valid_after),
        valid_before: u128::from(valid_before),
        nonce,
    };
    let domain = Domain {
        name: name.to_string(),
        version: version.to_string(),
        chain_id,
        verifying_contract: asset,
    };
    let sig = evm::sign(key, &auth.digest_with(&domain.separator()))?;
    let mut sig_bytes = Vec::with_capacity(65);
    sig_bytes.extend_from_slice(&sig.r);
    sig_bytes.extend_from_slice(&sig.s);
    sig_bytes.push(sig.v);
    Some(json!({
        "x402Version": X402_VERSION,
        "accepted": req,
        "payload": {
            "signature": format!("0x{}", hex::encode(sig_bytes)),
            "authorization": {
                "from": evm::checksum(&from),
                "to": evm::checksum(&to),
                "value": value.to_string(),
                "validAfter": valid_after.to_string(),
                "validBefore": valid_before.to_string(),
                "nonce": format!("0x{}", hex::encode(nonce)),
            }
        }
    }))
}
