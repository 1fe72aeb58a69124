//! The agent's side: signing a request with an Ed25519 key under the Web Bot Auth profile
//! (`tag="web-bot-auth"`, `keyid` the key's JWK thumbprint, `created`, `expires`, a random
//! `nonce`), covering `@authority` and, when the request names its key directory,
//! `signature-agent`; and the key directory entry that publishes the key.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::base::{signature_base, BaseError, RequestParts};
use crate::directory::ed25519_thumbprint;
use crate::sf::{serialize_bare, serialize_inner_list, BareItem, InnerList, Item, Params};
use crate::verifier::TAG;

/// The label of the signature this signer writes.
pub const LABEL: &str = "sig1";

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an Ed25519 private key in a form this signer reads.
    #[error("not an Ed25519 private key (PKCS#8 PEM or DER, a JWK with `d`, or a 32-byte seed in base64url or hex)")]
    Unreadable,
}

/// The header fields a signature adds to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields {
    /// `Signature-Input`.
    pub signature_input: String,
    /// `Signature`.
    pub signature: String,
}

/// An agent's Ed25519 signing key.
pub struct Signer {
    pair: Ed25519KeyPair,
    public: [u8; 32],
    keyid: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer of the 32-byte Ed25519 seed `seed`.
    pub fn from_seed(seed: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| KeyError::Unreadable)?;
        Ok(Self::of(pair))
    }

    /// A signer with a fresh random key, and its 32-byte seed (to be kept secret).
    pub fn generate() -> Result<(Self, [u8; 32]), KeyError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::Unreadable)?;
        Ok((Self::from_seed(&seed)?, seed))
    }

    /// Reads a private key file's text: PKCS#8 PEM (`openssl genpkey -algorithm ed25519`), an
    /// OKP JWK with its `d`, or the 32-byte seed in base64url or hex.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("-----BEGIN PRIVATE KEY-----") {
            let body: String = rest
                .split("-----END PRIVATE KEY-----")
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let der = STANDARD.decode(body).map_err(|_| KeyError::Unreadable)?;
            return Self::from_pkcs8(&der);
        }
        if t.starts_with('{') {
            let jwk: serde_json::Value =
                serde_json::from_str(t).map_err(|_| KeyError::Unreadable)?;
            let ok = jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519";
            let d = jwk["d"]
                .as_str()
                .filter(|_| ok)
                .ok_or(KeyError::Unreadable)?;
            let seed = URL_SAFE_NO_PAD
                .decode(d)
                .map_err(|_| KeyError::Unreadable)?;
            return Self::from_seed(&seed);
        }
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let seed: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| KeyError::Unreadable)?;
            return Self::from_seed(&seed);
        }
        let seed = URL_SAFE_NO_PAD
            .decode(t.trim_end_matches('='))
            .map_err(|_| KeyError::Unreadable)?;
        Self::from_seed(&seed)
    }

    /// Reads a PKCS#8 (v1 or v2) Ed25519 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| KeyError::Unreadable)?;
        Ok(Self::of(pair))
    }

    fn of(pair: Ed25519KeyPair) -> Self {
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Self {
            keyid: ed25519_thumbprint(&public),
            pair,
            public,
        }
    }

    /// The key's id: its JWK SHA-256 thumbprint.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The raw public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The public key as a JWK (what a key directory lists).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "kid": self.keyid,
            "x": URL_SAFE_NO_PAD.encode(self.public),
        })
    }

    /// A key directory listing this key alone (`{"keys": [<jwk>]}`).
    pub fn directory(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk()] })
    }

    /// The value of `Signature-Agent` naming the directory at `url` (an RFC 8941 string).
    pub fn signature_agent(url: &str) -> Option<String> {
        if !url.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return None;
        }
        let mut out = String::new();
        serialize_bare(&mut out, &BareItem::String(url.to_owned()));
        Some(out)
    }

    /// Signs `req`, valid from `created` to `expires` (seconds since the epoch), with a fresh
    /// random nonce. The signature covers `@authority`, and `signature-agent` when the request
    /// carries that field (set it before signing).
    pub fn sign(
        &self,
        req: &RequestParts<'_>,
        created: u64,
        expires: u64,
    ) -> Result<SignedFields, BaseError> {
        let mut nonce = [0u8; 32];
        // A nonce that could not be drawn is left out rather than repeated.
        let nonce = SystemRandom::new()
            .fill(&mut nonce)
            .ok()
            .map(|()| STANDARD.encode(nonce));
        self.sign_with(req, created, expires, nonce.as_deref())
    }

    /// [`Signer::sign`] with a given nonce (or none).
    pub fn sign_with(
        &self,
        req: &RequestParts<'_>,
        created: u64,
        expires: u64,
        nonce: Option<&str>,
    ) -> Result<SignedFields, BaseError> {
        let bare = |s: &str| Item {
            bare: BareItem::String(s.to_owned()),
            params: Params::default(),
        };
        let mut items = vec![bare("@authority")];
        if req.headers.contains_key("signature-agent") {
            items.push(bare("signature-agent"));
        }
        let int = |v: u64| BareItem::Integer(i64::try_from(v).unwrap_or(i64::MAX));
        let mut params = vec![
            ("created".to_owned(), int(created)),
            ("expires".to_owned(), int(expires)),
            ("keyid".to_owned(), BareItem::String(self.keyid.clone())),
            ("alg".to_owned(), BareItem::String("ed25519".into())),
        ];
        if let Some(n) = nonce {
            params.push(("nonce".to_owned(), BareItem::String(n.to_owned())));
        }
        params.push(("tag".to_owned(), BareItem::String(TAG.into())));
        let covered = InnerList {
            items,
            params: Params::from_pairs(params),
        };
        let base = signature_base(req, &covered)?;
        let sig = self.pair.sign(&base);
        let mut input = format!("{LABEL}=");
        serialize_inner_list(&mut input, &covered);
        Ok(SignedFields {
            signature_input: input,
            signature: format!("{LABEL}=:{}:", STANDARD.encode(sig.as_ref())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::KeyDirectory;
    use crate::verifier::{MemoryNonces, Policy, Verifier};
    use std::sync::Arc;

    struct At(u64);
    impl crate::verifier::Clock for At {
        fn now(&self) -> u64 {
            self.0
        }
    }

    /// What this signer writes verifies, with and without `Signature-Agent`; the directory it
    /// prints is one the verifier reads.
    #[test]
    fn signs_what_the_verifier_accepts() {
        let (signer, seed) = Signer::generate().unwrap();
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Signer::from_text(&hex).unwrap().keyid(), signer.keyid());
        let dir = KeyDirectory::from_json(signer.directory().to_string().as_bytes()).unwrap();
        let url = "https://agent.example/.well-known/http-message-signatures-directory";
        for with_agent in [true, false] {
            let mut req = http::Request::builder()
                .method("POST")
                .uri("/mcp")
                .header("host", "gw.example:8443");
            if with_agent {
                req = req.header("signature-agent", Signer::signature_agent(url).unwrap());
            }
            let mut req = req.body(()).unwrap();
            let fields = signer
                .sign(&RequestParts::from_request(&req, "https"), 1000, 1300)
                .unwrap();
            let h = req.headers_mut();
            h.insert("signature-input", fields.signature_input.parse().unwrap());
            h.insert("signature", fields.signature.parse().unwrap());
            let mut v = Verifier::new(
                Policy::default(),
                Arc::new(At(1010)),
                Arc::new(MemoryNonces::new(8)),
            );
            v.set_directory(url, dir.clone());
            let ok = v.verify(&req, "https").unwrap();
            assert_eq!(ok.keyid, signer.keyid());
            assert!(ok.nonce.is_some());
        }
    }
}
