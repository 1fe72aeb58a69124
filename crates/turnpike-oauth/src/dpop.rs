//! DPoP proofs (RFC 9449 §4.3) as a resource server checks them, and server-provided nonces
//! (§9).
//!
//! A proof passes when: it is a compact JWS with `typ: dpop+jwt`, an accepted asymmetric `alg`
//! and a public `jwk` (no private members) whose type fits the algorithm; its signature verifies
//! with that key; it carries `jti`, `htm`, `htu`, `iat` and `ath`; `htm` is the request method and
//! `htu` the request URL without query and fragment (both compared in normal form); `iat` lies in
//! the window; `ath` is the hash of the presented token; the key's thumbprint is the token's
//! `cnf.jkt`; its nonce is current when nonces are on; the `content_digest` of the MCP DPoP
//! profile, when the proof has one and the body's hash is known, matches; and its `jti` has not
//! been seen (recorded in the spent set until the proof could no longer pass anyway).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use turnpike_core::mac::Mac;

use crate::jose::{parse_compact, sha256_b64, Alg, PublicKey};
use crate::url::Url;

/// Largest DPoP proof accepted.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// What a proof is checked against.
pub struct ProofContext<'a> {
    /// The request method (`POST`).
    pub method: &'a str,
    /// The request URL in normal form, without query and fragment.
    pub htu: &'a str,
    /// The access token presented with the proof.
    pub token: &'a str,
    /// The thumbprint the token is bound to.
    pub jkt: &'a str,
    /// SHA-256 of the request body, when the gateway knows it.
    pub body_sha256: Option<[u8; 32]>,
    /// Now, in Unix seconds.
    pub now: u64,
}

/// A proof that passed every check but the single-use one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// The spent-set key for the proof's `jti` (bound to the key's thumbprint).
    pub replay_key: [u8; 32],
    /// Until when the `jti` must be remembered.
    pub remember_until: u64,
    /// The proof's `iat` (a proof made before the spent set's epoch is refused).
    pub issued_at: u64,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// `invalid_dpop_proof`, with a reason safe to show.
    Invalid(&'static str),
    /// `use_dpop_nonce`: the proof lacks a current server nonce.
    UseNonce(&'static str),
}

#[derive(Deserialize)]
struct ProofClaims {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    htm: Option<String>,
    #[serde(default)]
    htu: Option<String>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    content_digest: Option<String>,
}

/// Checks DPoP proofs.
pub struct ProofChecker {
    /// Accepted proof algorithms.
    pub algs: Vec<Alg>,
    /// How old `iat` may be.
    pub window: u64,
    /// How far in the future `iat` may be.
    pub skew: u64,
    /// Server nonces, when on.
    pub nonces: Option<NonceIssuer>,
}

impl ProofChecker {
    /// Runs every check but the single-use one (the caller records `jti` last, once the whole
    /// request has passed).
    pub fn check(&self, proof: &str, cx: &ProofContext<'_>) -> Result<CheckedProof, ProofError> {
        use ProofError::{Invalid, UseNonce};
        if proof.is_empty() {
            return Err(Invalid("the request has no DPoP proof"));
        }
        if proof.len() > MAX_PROOF_LEN {
            return Err(Invalid("the DPoP proof is too large"));
        }
        let jws = parse_compact(proof, &self.algs)
            .map_err(|_| Invalid("the DPoP proof is not a JWS with an accepted algorithm"))?;
        if !jws
            .header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
        {
            return Err(Invalid("the DPoP proof's typ is not dpop+jwt"));
        }
        let jwk = jws
            .header
            .jwk
            .as_ref()
            .ok_or(Invalid("the DPoP proof has no jwk"))?;
        let key = PublicKey::from_jwk(jwk, true)
            .map_err(|_| Invalid("the DPoP proof's jwk is not an acceptable public key"))?;
        if !key.fits(jws.alg) {
            return Err(Invalid("the DPoP proof's jwk does not fit its alg"));
        }
        if !jws.verify_with(&key) {
            return Err(Invalid("the DPoP proof's signature does not verify"));
        }
        let payload = jws
            .payload()
            .map_err(|_| Invalid("the DPoP proof's payload is not base64url"))?;
        let claims: ProofClaims = serde_json::from_slice(&payload)
            .map_err(|_| Invalid("the DPoP proof's payload is not valid JSON claims"))?;
        let jti = claims
            .jti
            .as_deref()
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or(Invalid("the DPoP proof has no usable jti"))?;
        let htm = claims
            .htm
            .as_deref()
            .ok_or(Invalid("the DPoP proof has no htm"))?;
        if htm != cx.method {
            return Err(Invalid("the DPoP proof is for another HTTP method"));
        }
        let htu = claims
            .htu
            .as_deref()
            .ok_or(Invalid("the DPoP proof has no htu"))?;
        let htu_ok = Url::parse(htu).is_some_and(|u| u.normalized() == cx.htu);
        if !htu_ok {
            return Err(Invalid("the DPoP proof is for another URL"));
        }
        let iat = claims
            .iat
            .as_ref()
            .and_then(crate::token::seconds)
            .ok_or(Invalid("the DPoP proof has no iat"))?;
        let ath = claims
            .ath
            .as_deref()
            .ok_or(Invalid("the DPoP proof has no ath"))?;
        if !turnpike_core::ct_eq(ath.as_bytes(), sha256_b64(cx.token.as_bytes()).as_bytes()) {
            return Err(Invalid("the DPoP proof is for another access token (ath)"));
        }
        if !turnpike_core::ct_eq(key.thumbprint().as_bytes(), cx.jkt.as_bytes()) {
            return Err(Invalid("the DPoP key is not the one the token is bound to"));
        }
        if let Some(n) = &self.nonces {
            match claims.nonce.as_deref() {
                None => return Err(UseNonce("this resource requires a nonce in DPoP proofs")),
                Some(v) if !n.accepts(v, cx.now) => {
                    return Err(UseNonce("the DPoP nonce is not current"))
                }
                Some(_) => {}
            }
        }
        if iat > cx.now.saturating_add(self.skew) {
            return Err(Invalid("the DPoP proof was made in the future"));
        }
        if iat.saturating_add(self.window) < cx.now {
            return Err(Invalid("the DPoP proof is too old"));
        }
        if let (Some(digest), Some(body)) = (claims.content_digest.as_deref(), cx.body_sha256) {
            let want = format!("sha-256=:{}:", STANDARD.encode(body));
            if digest != want {
                return Err(Invalid("the DPoP proof is for another request body"));
            }
        }
        let mut h = Sha256::new();
        h.update(b"turnpike-dpop-jti\0");
        h.update(cx.jkt.as_bytes());
        h.update([0]);
        h.update(jti.as_bytes());
        Ok(CheckedProof {
            replay_key: h.finalize().into(),
            remember_until: iat.saturating_add(self.window).saturating_add(1),
            issued_at: iat,
        })
    }
}

/// Server nonces without server state: `base64url(u64_be(period) || HMAC(key, period)[..16])`,
/// where `period = now / lifetime`. The current and the previous period's nonces are accepted.
pub struct NonceIssuer {
    key: zeroize::Zeroizing<[u8; 32]>,
    lifetime: u64,
}

impl NonceIssuer {
    /// Nonces keyed by `key`, each current for `lifetime` seconds.
    pub fn new(key: [u8; 32], lifetime: u64) -> Self {
        NonceIssuer {
            key: zeroize::Zeroizing::new(key),
            lifetime: lifetime.max(1),
        }
    }

    fn tag(&self, period: u64) -> [u8; 16] {
        let mut mac = turnpike_core::mac::hmac_sha256(&self.key[..]);
        mac.update(b"turnpike-dpop-nonce\0");
        mac.update(&period.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The nonce current at `now`.
    pub fn current(&self, now: u64) -> String {
        let period = now / self.lifetime;
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&period.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(period));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` is this or the previous period's nonce.
    pub fn accepts(&self, nonce: &str, now: u64) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce.as_bytes()) else {
            return false;
        };
        let Ok(raw) = <[u8; 24]>::try_from(raw.as_slice()) else {
            return false;
        };
        let mut p = [0u8; 8];
        p.copy_from_slice(&raw[..8]);
        let period = u64::from_be_bytes(p);
        let cur = now / self.lifetime;
        if period != cur && period.saturating_add(1) != cur {
            return false;
        }
        turnpike_core::ct_eq(&raw[8..], &self.tag(period))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_rotate() {
        let n = NonceIssuer::new([9; 32], 100);
        let a = n.current(1000);
        assert!(n.accepts(&a, 1000));
        assert!(n.accepts(&a, 1099));
        assert!(
            n.accepts(&a, 1199),
            "the previous period's nonce still passes"
        );
        assert!(!n.accepts(&a, 1200));
        assert!(!n.accepts(&a, 999), "not before its period");
        assert_ne!(n.current(1100), a);
        let other = NonceIssuer::new([8; 32], 100);
        assert!(!other.accepts(&a, 1000), "another key's nonce");
        assert!(!n.accepts("garbage", 1000));
        let mut forged = URL_SAFE_NO_PAD.decode(&a).unwrap();
        forged[23] ^= 1;
        assert!(!n.accepts(&URL_SAFE_NO_PAD.encode(forged), 1000));
    }
}
