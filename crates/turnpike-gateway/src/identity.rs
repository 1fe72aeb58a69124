//! The signed statement of who the caller is, for the upstream (`[oauth] forward_identity =
//! "signed"`).
//!
//! The caller's token never goes upstream. With `forward_identity = "signed"` the gateway adds,
//! to every call a token paid for, one header:
//!
//! ```text
//! Turnpike-Identity: v1.<payload>.<tag>
//! payload = base64url (no padding) of the JSON object
//!           {"iss": <token issuer>, "sub": <subject>, "client_id": <client id, when known>,
//!            "aud": <this resource>, "scope": "<granted scopes, space-separated>",
//!            "iat": <unix seconds>, "exp": <iat + 60>}
//! tag     = base64url (no padding) of HMAC-SHA256(key = identity_secret (32 bytes from its 64
//!           hex digits), message = "v1." || payload)
//! ```
//!
//! The upstream recomputes the tag over the exact bytes `v1.<payload>` with the shared secret,
//! compares in constant time, decodes the payload and checks `exp` (and `aud`). A caller cannot
//! forge the header: the gateway removes every `Turnpike-*` header a caller sends.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use turnpike_core::mac::Mac;
use turnpike_core::Identity;

/// The header name (lower case, as HTTP/2 wants it).
pub const IDENTITY_HEADER: &str = "turnpike-identity";

/// How long a statement is valid after it is made.
pub const IDENTITY_TTL_SECS: u64 = 60;

/// Signs statements about callers with the operator's key.
#[derive(Clone)]
pub struct IdentitySigner {
    key: [u8; 32],
    resource: String,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl IdentitySigner {
    /// A signer from the 64 hex digits of `identity_secret`, naming `resource` in `aud`.
    /// `None` when the secret is not 64 hex digits.
    pub fn from_hex(secret_hex: &str, resource: &str) -> Option<Self> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(secret_hex, &mut key).ok()?;
        Some(IdentitySigner {
            key,
            resource: resource.to_owned(),
        })
    }

    /// The header value for `identity` with `scopes`, made at `now`. `None` for identities
    /// that are not OAuth ones.
    pub fn sign(&self, identity: &Identity, scopes: &[String], now: u64) -> Option<String> {
        let Identity::OAuth {
            issuer,
            subject,
            client_id,
        } = identity
        else {
            return None;
        };
        let mut claims = json!({
            "iss": issuer,
            "sub": subject,
            "aud": self.resource,
            "scope": scopes.join(" "),
            "iat": now,
            "exp": now.saturating_add(IDENTITY_TTL_SECS),
        });
        if let Some(c) = client_id {
            claims["client_id"] = json!(c);
        }
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("v1.{payload}");
        let tag = URL_SAFE_NO_PAD.encode(self.tag(signed.as_bytes()));
        Some(format!("{signed}.{tag}"))
    }

    /// Checks a header value made by [`IdentitySigner::sign`] (what an upstream written in Rust
    /// does) and returns its claims when the tag holds and it has not expired at `now`.
    pub fn verify(&self, value: &str, now: u64) -> Option<Value> {
        let (signed, tag) = value.rsplit_once('.')?;
        let payload = signed.strip_prefix("v1.")?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !turnpike_core::ct_eq(&self.tag(signed.as_bytes()), &tag) {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let exp = claims.get("exp").and_then(Value::as_u64)?;
        (now < exp && claims.get("aud").and_then(Value::as_str) == Some(&self.resource))
            .then_some(claims)
    }

    fn tag(&self, msg: &[u8]) -> [u8; 32] {
        let mut mac = turnpike_core::mac::hmac_sha256(&self.key);
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let s = IdentitySigner::from_hex(&"ab".repeat(32), "https://mcp.example.com/mcp").unwrap();
        let id = Identity::OAuth {
            issuer: "https://as".into(),
            subject: "agent".into(),
            client_id: Some("agent".into()),
        };
        let v = s.sign(&id, &["a".into(), "b".into()], 1000).unwrap();
        let c = s.verify(&v, 1030).unwrap();
        assert_eq!(c["sub"], "agent");
        assert_eq!(c["scope"], "a b");
        assert_eq!(c["exp"], 1060);
        assert!(s.verify(&v, 1060).is_none(), "expired");
        let mut forged = v.clone();
        forged.pop();
        forged.push(if v.ends_with('A') { 'B' } else { 'A' });
        assert!(s.verify(&forged, 1030).is_none());
        let other =
            IdentitySigner::from_hex(&"cd".repeat(32), "https://mcp.example.com/mcp").unwrap();
        assert!(other.verify(&v, 1030).is_none());
        assert!(s
            .sign(
                &Identity::L402 {
                    token_id: "x".into()
                },
                &[],
                0
            )
            .is_none());
        assert!(IdentitySigner::from_hex("zz", "r").is_none());
    }
}
