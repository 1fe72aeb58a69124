//! The key directory an agent publishes at `/.well-known/http-message-signatures-directory`:
//! a JWK set (`{"keys": [...]}`) whose Ed25519 keys (`kty: OKP`, `crv: Ed25519`) are named by
//! their RFC 7638 JWK SHA-256 thumbprint, the `keyid` a signature carries.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The largest directory document read, in bytes.
pub const MAX_DIRECTORY_LEN: usize = 64 * 1024;
/// The most keys a directory may list.
pub const MAX_DIRECTORY_KEYS: usize = 64;

/// Why a key directory was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The document is larger than [`MAX_DIRECTORY_LEN`].
    #[error("key directory is {0} bytes, more than the {MAX_DIRECTORY_LEN} allowed")]
    TooLarge(usize),
    /// The document is not a JSON object with a `keys` array.
    #[error("key directory is not a JWK set: {0}")]
    NotJwkSet(String),
    /// More than [`MAX_DIRECTORY_KEYS`] keys.
    #[error("key directory lists more than {MAX_DIRECTORY_KEYS} keys")]
    TooManyKeys,
    /// An Ed25519 key's `x` is not 32 bytes of unpadded base64url.
    #[error("key {0} of the directory has an `x` that is not 32 bytes of base64url")]
    BadKey(usize),
    /// A key carries its private part.
    #[error("key {0} of the directory carries a private key (`d`)")]
    PrivateKey(usize),
    /// No Ed25519 key at all.
    #[error("key directory has no Ed25519 key")]
    NoEd25519Key,
}

/// One Ed25519 key of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryKey {
    /// The JWK SHA-256 thumbprint (base64url, unpadded): the `keyid`.
    pub thumbprint: String,
    /// The raw public key.
    pub public: [u8; 32],
}

/// The Ed25519 keys of one directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyDirectory {
    keys: Vec<DirectoryKey>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    d: Option<serde::de::IgnoredAny>,
}

impl KeyDirectory {
    /// Reads a directory document. Keys of other types (RSA, EC, other curves) are skipped;
    /// a malformed Ed25519 key or one with its private part refuses the whole document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DirectoryError> {
        if bytes.len() > MAX_DIRECTORY_LEN {
            return Err(DirectoryError::TooLarge(bytes.len()));
        }
        let set: JwkSet =
            serde_json::from_slice(bytes).map_err(|e| DirectoryError::NotJwkSet(e.to_string()))?;
        if set.keys.len() > MAX_DIRECTORY_KEYS {
            return Err(DirectoryError::TooManyKeys);
        }
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if jwk.kty.as_deref() != Some("OKP") || jwk.crv.as_deref() != Some("Ed25519") {
                continue;
            }
            if jwk.d.is_some() {
                return Err(DirectoryError::PrivateKey(i));
            }
            let x = jwk.x.as_deref().ok_or(DirectoryError::BadKey(i))?;
            let public = decode_x(x).ok_or(DirectoryError::BadKey(i))?;
            keys.push(DirectoryKey {
                thumbprint: ed25519_thumbprint(&public),
                public,
            });
        }
        if keys.is_empty() {
            return Err(DirectoryError::NoEd25519Key);
        }
        Ok(Self { keys })
    }

    /// A directory of the given raw Ed25519 public keys.
    pub fn from_ed25519(publics: &[[u8; 32]]) -> Self {
        Self {
            keys: publics
                .iter()
                .map(|p| DirectoryKey {
                    thumbprint: ed25519_thumbprint(p),
                    public: *p,
                })
                .collect(),
        }
    }

    /// The key named by `keyid`, if listed.
    pub fn key(&self, keyid: &str) -> Option<&DirectoryKey> {
        self.keys.iter().find(|k| k.thumbprint == keyid)
    }

    /// Every key.
    pub fn keys(&self) -> &[DirectoryKey] {
        &self.keys
    }
}

fn decode_x(x: &str) -> Option<[u8; 32]> {
    if x.len() != 43 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(x).ok()?.try_into().ok()
}

/// The RFC 7638 JWK SHA-256 thumbprint of an Ed25519 public key: SHA-256 over
/// `{"crv":"Ed25519","kty":"OKP","x":"<base64url>"}`, base64url without padding.
pub fn ed25519_thumbprint(public: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9421 B.1.4's test-key-ed25519, as a directory; its thumbprint as the web-bot-auth
    /// npm package computes it.
    #[test]
    fn rfc_test_key_thumbprint() {
        let dir = KeyDirectory::from_json(
            br#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"},
                 {"kty":"OKP","crv":"Ed25519","kid":"test-key-ed25519",
                  "x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}],"purpose":"rag"}"#,
        )
        .unwrap();
        assert_eq!(dir.keys().len(), 1);
        assert_eq!(
            dir.keys()[0].thumbprint,
            "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U"
        );
        assert!(dir
            .key("poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U")
            .is_some());
    }

    #[test]
    fn bad_directories_are_refused() {
        assert!(matches!(
            KeyDirectory::from_json(b"[]"),
            Err(DirectoryError::NotJwkSet(_))
        ));
        assert_eq!(
            KeyDirectory::from_json(br#"{"keys":[]}"#),
            Err(DirectoryError::NoEd25519Key)
        );
        assert_eq!(
            KeyDirectory::from_json(br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}"#),
            Err(DirectoryError::BadKey(0))
        );
        assert_eq!(
            KeyDirectory::from_json(
                br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs","d":"n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU"}]}"#
            ),
            Err(DirectoryError::PrivateKey(0))
        );
        let big = vec![b' '; MAX_DIRECTORY_LEN + 1];
        assert_eq!(
            KeyDirectory::from_json(&big),
            Err(DirectoryError::TooLarge(MAX_DIRECTORY_LEN + 1))
        );
    }
}
