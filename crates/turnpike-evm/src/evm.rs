//! What the rail needs of Ethereum, written out: Keccak-256, addresses (EIP-55), the EIP-712
//! hash of an EIP-3009 `TransferWithAuthorization`, recovering its signer with secp256k1, the
//! ABI encoding of the token calls the rail makes, and a signed EIP-155 (legacy) transaction in
//! RLP. Pure functions, no I/O.

use k256::ecdsa::{SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

/// A 20-byte account or contract address.
pub type Address = [u8; 20];

/// Keccak-256 (the pre-standard padding Ethereum uses, not SHA3-256).
pub fn keccak(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// Keccak-256 over several pieces, as one message.
pub fn keccak_all(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Keccak256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Parses `0x` + 40 hex digits (any case: the checksum is not required, and a mixed-case
/// address is not checked against it).
pub fn parse_address(s: &str) -> Option<Address> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.len() != 40 {
        return None;
    }
    let mut a = [0u8; 20];
    hex::decode_to_slice(hex, &mut a).ok()?;
    Some(a)
}

/// Parses `0x` + 64 hex digits.
pub fn parse_b32(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("0x")?;
    if hex.len() != 64 {
        return None;
    }
    let mut a = [0u8; 32];
    hex::decode_to_slice(hex, &mut a).ok()?;
    Some(a)
}

/// An address in its EIP-55 mixed-case checksum form (`0x5aAeb6…`).
pub fn checksum(a: &Address) -> String {
    let lower = hex::encode(a);
    let hash = keccak(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The address of a public key: the last 20 bytes of Keccak-256 of its uncompressed point.
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    let h = keccak(&point.as_bytes()[1..]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&h[12..]);
    a
}

/// The address of the secp256k1 secret key `secret`, `None` when it is not a valid key.
pub fn address_of_secret(secret: &[u8; 32]) -> Option<Address> {
    SigningKey::from_slice(secret)
        .ok()
        .map(|k| address_of(k.verifying_key()))
}

/// A uint256 ABI word of `v`.
pub fn word_u128(v: u128) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[16..].copy_from_slice(&v.to_be_bytes());
    w
}

/// An address as an ABI word (left-padded).
pub fn word_address(a: &Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a);
    w
}

/// Parses an unsigned decimal integer with no sign, no leading zeros (but `0`) and no
/// spaces, up to 2^128 - 1.
pub fn parse_decimal(s: &str) -> Option<u128> {
    if s.is_empty() || s.len() > 39 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The type string EIP-3009 signs.
pub const TRANSFER_WITH_AUTHORIZATION: &str = "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";
const EIP712_DOMAIN: &str =
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";

/// An EIP-3009 authorization: what `transferWithAuthorization` moves, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization {
    /// The payer (the signer).
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// Atomic units of the token.
    pub value: u128,
    /// Valid strictly after this Unix time.
    pub valid_after: u128,
    /// Valid strictly before this Unix time.
    pub valid_before: u128,
    /// The payer's single-use nonce.
    pub nonce: [u8; 32],
}

/// The token's EIP-712 domain: its name and version, the chain, the token's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// `name` of the domain (e.g. `USD Coin`).
    pub name: String,
    /// `version` of the domain (e.g. `2`).
    pub version: String,
    /// The chain id.
    pub chain_id: u64,
    /// The token contract (`verifyingContract`).
    pub verifying_contract: Address,
}

impl Domain {
    /// The domain separator: `keccak256(abi.encode(typeHash, keccak(name), keccak(version),
    /// chainId, verifyingContract))`.
    pub fn separator(&self) -> [u8; 32] {
        keccak_all(&[
            &keccak(EIP712_DOMAIN.as_bytes()),
            &keccak(self.name.as_bytes()),
            &keccak(self.version.as_bytes()),
            &word_u128(u128::from(self.chain_id)),
            &word_address(&self.verifying_contract),
        ])
    }
}

impl Authorization {
    /// The struct hash of the authorization.
    pub fn struct_hash(&self) -> [u8; 32] {
        keccak_all(&[
            &keccak(TRANSFER_WITH_AUTHORIZATION.as_bytes()),
            &word_address(&self.from),
            &word_address(&self.to),
            &word_u128(self.value),
            &word_u128(self.valid_after),
            &word_u128(self.valid_before),
            &self.nonce,
        ])
    }

    /// The digest signed: `keccak256(0x19 0x01 ‖ domainSeparator ‖ structHash)`, with the
    /// domain's separator given (it is the same for every payment of one gateway).
    pub fn digest_with(&self, separator: &[u8; 32]) -> [u8; 32] {
        keccak_all(&[&[0x19, 0x01], separator, &self.struct_hash()])
    }
}

/// A 65-byte signature `r ‖ s ‖ v` split: `v` as 27/28.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsv {
    /// r.
    pub r: [u8; 32],
    /// s (at most n/2: EIP-2).
    pub s: [u8; 32],
    /// 27 or 28.
    pub v: u8,
}

/// Parses a `0x` + 130 hex digit signature; `v` of 0/1 is read as 27/28. Anything else
/// (a contract wallet's longer signature) is refused.
pub fn parse_signature(s: &str) -> Option<Rsv> {
    let hex = s.strip_prefix("0x")?;
    if hex.len() != 130 {
        return None;
    }
    let mut b = [0u8; 65];
    hex::decode_to_slice(hex, &mut b).ok()?;
    let v = match b[64] {
        0 | 27 => 27,
        1 | 28 => 28,
        _ => return None,
    };
    let mut r = [0u8; 32];
    let mut sv = [0u8; 32];
    r.copy_from_slice(&b[..32]);
    sv.copy_from_slice(&b[32..64]);
    Some(Rsv { r, s: sv, v })
}

/// The signer of `digest` under `sig`, or `None` when the signature is not a valid low-s
/// secp256k1 signature (`ecrecover` as tokens such as USDC call it, refusing high s).
///
/// The public key is computed once (SEC 1 §4.1.6): `R` is the curve point of x-coordinate `r`
/// whose y has the parity `v - 27` names, and `Q = r⁻¹(s·R − z·G)`, with `z` the digest read
/// as a scalar. A key recovered so verifies the signature by construction, so it is not
/// verified again (k256's `recover_from_prehash` does: a second double scalar multiplication).
pub fn recover(digest: &[u8; 32], sig: &Rsv) -> Option<Address> {
    use k256::elliptic_curve::ops::{LinearCombination, Reduce};
    use k256::elliptic_curve::point::DecompressPoint;
    use k256::elliptic_curve::scalar::IsHigh;
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    use k256::elliptic_curve::subtle::Choice;
    use k256::elliptic_curve::PrimeField;
    use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar, U256};

    if sig.v != 27 && sig.v != 28 {
        return None;
    }
    let r = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(sig.r)))?;
    let s = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(sig.s)))?;
    if bool::from(r.is_zero() | s.is_zero() | s.is_high()) {
        return None;
    }
    let big_r = Option::<AffinePoint>::from(AffinePoint::decompress(
        &FieldBytes::from(sig.r),
        Choice::from(sig.v - 27),
    ))?;
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(*digest));
    let r_inv = Option::<Scalar>::from(r.invert())?;
    let q = ProjectivePoint::lincomb(
        &ProjectivePoint::GENERATOR,
        &-(r_inv * z),
        &ProjectivePoint::from(big_r),
        &(r_inv * s),
    );
    let point = q.to_affine().to_encoded_point(false);
    let bytes = point.as_bytes();
    if bytes.len() != 65 {
        return None;
    }
    let h = keccak(&bytes[1..]);
    let mut a = [0u8; 20];
    a.copy_from_slice(&h[12..]);
    Some(a)
}

/// Signs `digest` with `key`: the low-s signature and `v` (27/28).
pub fn sign(key: &SigningKey, digest: &[u8; 32]) -> Option<Rsv> {
    let (sig, recid) = key.sign_prehash_recoverable(digest).ok()?;
    let (r, s) = sig.split_bytes();
    let mut rr = [0u8; 32];
    let mut ss = [0u8; 32];
    rr.copy_from_slice(&r);
    ss.copy_from_slice(&s);
    Some(Rsv {
        r: rr,
        s: ss,
        v: 27 + recid.to_byte(),
    })
}

/// The 4-byte selector of a function signature.
pub fn selector(signature: &str) -> [u8; 4] {
    let h = keccak(signature.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

/// Call data of `balanceOf(owner)`.
pub fn balance_of_call(owner: &Address) -> Vec<u8> {
    let mut d = selector("balanceOf(address)").to_vec();
    d.extend_from_slice(&word_address(owner));
    d
}

/// Call data of `authorizationState(authorizer, nonce)`.
pub fn authorization_state_call(authorizer: &Address, nonce: &[u8; 32]) -> Vec<u8> {
    let mut d = selector("authorizationState(address,bytes32)").to_vec();
    d.extend_from_slice(&word_address(authorizer));
    d.extend_from_slice(nonce);
    d
}

/// Call data of `transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, v,
/// r, s)`.
pub fn transfer_with_authorization_call(a: &Authorization, sig: &Rsv) -> Vec<u8> {
    let mut d = selector(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)",
    )
    .to_vec();
    for w in [
        word_address(&a.from),
        word_address(&a.to),
        word_u128(a.value),
        word_u128(a.valid_after),
        word_u128(a.valid_before),
        a.nonce,
        word_u128(u128::from(sig.v)),
        sig.r,
        sig.s,
    ] {
        d.extend_from_slice(&w);
    }
    d
}

/// Whether `receipt` (an `eth_getTransactionReceipt` answer) is of a transaction that
/// succeeded and executed authorization `a` on token `asset`: among its logs, emitted by
/// `asset`, EIP-3009's `AuthorizationUsed(a.from, a.nonce)` and the ERC-20
/// `Transfer(a.from, a.to, a.value)`. What a facilitator says it settled is checked this way.
pub fn receipt_executes(receipt: &serde_json::Value, asset: &Address, a: &Authorization) -> bool {
    let status = receipt
        .get("status")
        .and_then(serde_json::Value::as_str)
        .and_then(|q| q.strip_prefix("0x"))
        .and_then(|q| u8::from_str_radix(q, 16).ok());
    if status != Some(1) {
        return false;
    }
    let Some(logs) = receipt.get("logs").and_then(serde_json::Value::as_array) else {
        return false;
    };
    let used = keccak(b"AuthorizationUsed(address,bytes32)");
    let transfer = keccak(b"Transfer(address,address,uint256)");
    let word = |v: &serde_json::Value| -> Option<Vec<u8>> {
        hex::decode(v.as_str()?.strip_prefix("0x")?).ok()
    };
    let mut saw_used = false;
    let mut saw_transfer = false;
    for log in logs {
        let emitter = log.get("address").and_then(word);
        if emitter.as_deref() != Some(&asset[..]) {
            continue;
        }
        let topics: Vec<Vec<u8>> = log
            .get("topics")
            .and_then(serde_json::Value::as_array)
            .map(|t| t.iter().filter_map(word).collect())
            .unwrap_or_default();
        let data = log.get("data").and_then(word).unwrap_or_default();
        match topics.as_slice() {
            [t0, who, nonce] if t0[..] == used[..] => {
                saw_used |= who[..] == word_address(&a.from)[..] && nonce[..] == a.nonce[..];
            }
            [t0, from, to] if t0[..] == transfer[..] => {
                saw_transfer |= from[..] == word_address(&a.from)[..]
                    && to[..] == word_address(&a.to)[..]
                    && data[..] == word_u128(a.value)[..];
            }
            _ => {}
        }
    }
    saw_used && saw_transfer
}

/// Reads an ABI word answered by `eth_call` as an integer, `None` above 2^128 - 1.
pub fn word_to_u128(w: &[u8]) -> Option<u128> {
    if w.len() != 32 || w[..16].iter().any(|b| *b != 0) {
        return None;
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&w[16..]);
    Some(u128::from_be_bytes(b))
}

/// RLP, as much as a transaction needs.
pub mod rlp {
    /// An item: a byte string or a list.
    pub enum Item<'a> {
        /// A byte string.
        Bytes(&'a [u8]),
        /// An integer, as its minimal big-endian bytes.
        Uint(u128),
        /// A list of items.
        List(Vec<Item<'a>>),
    }

    fn header(out: &mut Vec<u8>, len: usize, short: u8, long: u8) {
        if len <= 55 {
            out.push(short + len as u8);
        } else {
            let be = (len as u64).to_be_bytes();
            let skip = be.iter().take_while(|b| **b == 0).count();
            out.push(long + (8 - skip) as u8);
            out.extend_from_slice(&be[skip..]);
        }
    }

    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        if b.len() == 1 && b[0] < 0x80 {
            out.push(b[0]);
        } else {
            header(out, b.len(), 0x80, 0xb7);
            out.extend_from_slice(b);
        }
    }

    /// The encoding of `item`.
    pub fn encode(item: &Item<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        match item {
            Item::Bytes(b) => bytes(&mut out, b),
            Item::Uint(v) => {
                let be = v.to_be_bytes();
                let skip = be.iter().take_while(|b| **b == 0).count();
                bytes(&mut out, &be[skip..]);
            }
            Item::List(items) => {
                let mut body = Vec::new();
                for i in items {
                    body.extend_from_slice(&encode(i));
                }
                header(&mut out, body.len(), 0xc0, 0xf7);
                out.extend_from_slice(&body);
            }
        }
        out
    }
}

/// A legacy transaction with EIP-155 replay protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTx {
    /// The sender's nonce.
    pub nonce: u128,
    /// Wei per gas.
    pub gas_price: u128,
    /// The gas limit.
    pub gas: u128,
    /// The contract called.
    pub to: Address,
    /// Wei sent (0 for a token call).
    pub value: u128,
    /// The call data.
    pub data: Vec<u8>,
    /// The chain id.
    pub chain_id: u64,
}

impl LegacyTx {
    /// The raw signed transaction (`eth_sendRawTransaction`'s argument) and its hash.
    pub fn sign(&self, key: &SigningKey) -> Option<(Vec<u8>, [u8; 32])> {
        use rlp::Item;
        let chain = u128::from(self.chain_id);
        // EIP-155: the signed message ends with (chain id, 0, 0) where the signature will go.
        let unsigned = self.rlp(Item::Uint(chain), Item::Uint(0), Item::Uint(0));
        let sig = sign(key, &keccak(&unsigned))?;
        let v = chain * 2 + 35 + u128::from(sig.v - 27);
        let raw = self.rlp(
            Item::Uint(v),
            Item::Bytes(strip(&sig.r)),
            Item::Bytes(strip(&sig.s)),
        );
        let hash = keccak(&raw);
        Some((raw, hash))
    }

    /// The RLP list of the transaction's fields followed by `v`, `r` and `s`.
    fn rlp<'a>(&'a self, v: rlp::Item<'a>, r: rlp::Item<'a>, s: rlp::Item<'a>) -> Vec<u8> {
        use rlp::Item;
        rlp::encode(&Item::List(vec![
            Item::Uint(self.nonce),
            Item::Uint(self.gas_price),
            Item::Uint(self.gas),
            Item::Bytes(&self.to),
            Item::Uint(self.value),
            Item::Bytes(&self.data),
            v,
            r,
            s,
        ]))
    }
}

/// A big-endian integer without its leading zero bytes (RLP's form of r and s).
fn strip(b: &[u8; 32]) -> &[u8] {
    let skip = b.iter().take_while(|x| **x == 0).count();
    &b[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_executes_exactly_its_authorization() {
        let asset: Address = [0xaa; 20];
        let a = Authorization {
            from: [0x11; 20],
            to: [0x22; 20],
            value: 10_000,
            valid_after: 0,
            valid_before: u128::MAX,
            nonce: [0x33; 32],
        };
        let h = |b: &[u8]| format!("0x{}", hex::encode(b));
        let receipt = |status: &str, emitter: Address, value: u128, nonce: [u8; 32]| {
            serde_json::json!({
                "status": status,
                "logs": [
                    {"address": h(&emitter), "data": "0x",
                     "topics": [h(&keccak(b"AuthorizationUsed(address,bytes32)")),
                                h(&word_address(&a.from)), h(&nonce)]},
                    {"address": h(&emitter), "data": h(&word_u128(value)),
                     "topics": [h(&keccak(b"Transfer(address,address,uint256)")),
                                h(&word_address(&a.from)), h(&word_address(&a.to))]},
                ]
            })
        };
        assert!(receipt_executes(
            &receipt("0x1", asset, a.value, a.nonce),
            &asset,
            &a
        ));
        assert!(!receipt_executes(
            &receipt("0x0", asset, a.value, a.nonce),
            &asset,
            &a
        ));
        assert!(!receipt_executes(
            &receipt("0x1", [0xbb; 20], a.value, a.nonce),
            &asset,
            &a
        ));
        assert!(!receipt_executes(
            &receipt("0x1", asset, a.value - 1, a.nonce),
            &asset,
            &a
        ));
        assert!(!receipt_executes(
            &receipt("0x1", asset, a.value, [0x44; 32]),
            &asset,
            &a
        ));
        assert!(!receipt_executes(
            &serde_json::json!({"status": "0x1", "logs": []}),
            &asset,
            &a
        ));
        assert!(!receipt_executes(
            &serde_json::json!({"status": "0x1"}),
            &asset,
            &a
        ));
    }

    #[test]
    fn keccak_and_selectors() {
        assert_eq!(
            hex::encode(keccak(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(hex::encode(selector("balanceOf(address)")), "70a08231");
        assert_eq!(
            hex::encode(selector("authorizationState(address,bytes32)")),
            "e94a0102"
        );
        assert_eq!(
            hex::encode(selector("transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)")),
            "e3ee160e"
        );
        // EIP-3009's published type hash.
        assert_eq!(
            hex::encode(keccak(TRANSFER_WITH_AUTHORIZATION.as_bytes())),
            "7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
        );
    }

    /// EIP-55's own examples.
    #[test]
    fn checksummed_addresses() {
        for a in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(checksum(&parse_address(a).unwrap()), a);
        }
        assert!(parse_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe").is_none());
        assert!(parse_address("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_none());
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(parse_decimal("10000"), Some(10000));
        assert_eq!(parse_decimal("0"), Some(0));
        for bad in ["", "01", "-1", "+1", "1 ", "1e3", "0x10", "1.0"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert_eq!(parse_decimal(&u128::MAX.to_string()), Some(u128::MAX));
        assert_eq!(
            parse_decimal("340282366920938463463374607431768211456"),
            None
        );
    }

    #[test]
    fn sign_and_recover() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let me = address_of(key.verifying_key());
        let d = keccak(b"message");
        let sig = sign(&key, &d).unwrap();
        assert_eq!(recover(&d, &sig), Some(me));
        // The high-s twin of the same signature is refused.
        let n = hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
            .unwrap();
        let mut high = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let v = i16::from(n[i]) - i16::from(sig.s[i]) - borrow;
            borrow = i16::from(v < 0);
            high[i] = (v + if v < 0 { 256 } else { 0 }) as u8;
        }
        let twin = Rsv {
            s: high,
            v: if sig.v == 27 { 28 } else { 27 },
            ..sig
        };
        assert_eq!(recover(&d, &twin), None);
        // Another digest recovers another address.
        assert_ne!(recover(&keccak(b"other"), &sig), Some(me));
    }

    /// The recovery agrees with k256's (which verifies the key it recovers) on many keys and
    /// digests.
    #[test]
    fn recovery_agrees_with_k256() {
        use k256::ecdsa::{RecoveryId, Signature};
        for i in 1u8..=40 {
            let key = SigningKey::from_slice(&[i; 32]).unwrap();
            let d = keccak(&[i, i.wrapping_mul(7)]);
            let sig = sign(&key, &d).unwrap();
            let theirs = VerifyingKey::recover_from_prehash(
                &d,
                &Signature::from_scalars(sig.r, sig.s).unwrap(),
                RecoveryId::from_byte(sig.v - 27).unwrap(),
            )
            .unwrap();
            assert_eq!(recover(&d, &sig), Some(address_of(&theirs)));
            assert_eq!(recover(&d, &sig), Some(address_of(key.verifying_key())));
        }
        let sig = sign(&SigningKey::from_slice(&[1; 32]).unwrap(), &[0; 32]).unwrap();
        assert_eq!(recover(&[0; 32], &Rsv { r: [0; 32], ..sig }), None);
        assert_eq!(recover(&[0; 32], &Rsv { s: [0; 32], ..sig }), None);
        assert_eq!(
            recover(
                &[0; 32],
                &Rsv {
                    r: [0xff; 32],
                    ..sig
                }
            ),
            None
        );
        assert_eq!(recover(&[0; 32], &Rsv { v: 29, ..sig }), None);
    }

    /// A transaction signed here decodes to the sender (the EIP-155 example of the EIP).
    #[test]
    fn eip155_example() {
        let key = SigningKey::from_slice(
            &hex::decode("4646464646464646464646464646464646464646464646464646464646464646")
                .unwrap(),
        )
        .unwrap();
        let tx = LegacyTx {
            nonce: 9,
            gas_price: 20_000_000_000,
            gas: 21000,
            to: parse_address("0x3535353535353535353535353535353535353535").unwrap(),
            value: 1_000_000_000_000_000_000,
            data: Vec::new(),
            chain_id: 1,
        };
        let (raw, _) = tx.sign(&key).unwrap();
        assert_eq!(
            hex::encode(raw),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
    }
}
