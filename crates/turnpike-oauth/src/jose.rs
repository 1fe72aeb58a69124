//! The JOSE pieces the rail needs, and nothing more: signature algorithms, public JSON Web Keys
//! (RFC 7517/7518, OKP keys of RFC 8037), compact JWS parsing (RFC 7515) with signature checks,
//! and JWK thumbprints (RFC 7638).
//!
//! Only asymmetric algorithms exist here: `none` and the HMAC family cannot even be named, so a
//! token that asks for them is refused before any key is looked at. An algorithm is checked
//! against the key's type and curve (an `ES256` token can only be checked with a P-256 key, an
//! `RS256` token only with an RSA key of at least 2048 bits, …), and against the key's own `alg`,
//! `use` and `key_ops` members where it has them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Largest compact JWS the rail parses (access tokens and DPoP proofs).
pub const MAX_JWS_LEN: usize = 16 * 1024;

/// An asymmetric JWS algorithm the rail can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 (salt of 32 bytes).
    PS256,
    /// RSASSA-PSS with SHA-384 (salt of 48 bytes).
    PS384,
    /// RSASSA-PSS with SHA-512 (salt of 64 bytes).
    PS512,
    /// EdDSA (RFC 8037); only Ed25519 keys are accepted.
    EdDSA,
    /// Ed25519, the fully-specified name (RFC 9864) for EdDSA over Ed25519.
    Ed25519,
}

impl Alg {
    /// Every algorithm the rail can verify.
    pub const ALL: [Alg; 9] = [
        Alg::ES256,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::EdDSA,
        Alg::Ed25519,
    ];

    /// The algorithm named `name` (the JWS `alg` value, case-sensitive), if the rail supports it.
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "ES256" => Alg::ES256,
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "EdDSA" => Alg::EdDSA,
            "Ed25519" => Alg::Ed25519,
            _ => return None,
        })
    }

    /// The JWS `alg` value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::EdDSA => "EdDSA",
            Alg::Ed25519 => "Ed25519",
        }
    }

    fn family(self) -> Family {
        match self {
            Alg::ES256 => Family::P256,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                Family::Rsa
            }
            Alg::EdDSA | Alg::Ed25519 => Family::Ed25519,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Alg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Alg::from_name(&s).ok_or_else(|| {
            let why = if s.eq_ignore_ascii_case("none") || s.to_ascii_uppercase().starts_with("HS")
            {
                "unsigned and symmetric algorithms are never accepted"
            } else {
                "not a supported asymmetric algorithm"
            };
            serde::de::Error::custom(format!(
                "algorithm {s:?}: {why} (supported: ES256, RS256, RS384, RS512, PS256, PS384, \
                 PS512, EdDSA, Ed25519)"
            ))
        })
    }
}

impl serde::Serialize for Alg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    P256,
    Rsa,
    Ed25519,
}

/// Why a JWK could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// Members missing or not base64url.
    #[error("the key is not a JSON object with the members its type needs")]
    Malformed,
    /// A key type or curve the rail does not verify with.
    #[error("key type {0:?} is not supported (EC P-256, RSA and OKP Ed25519 are)")]
    Unsupported(String),
    /// Private members where only a public key may be.
    #[error("the key holds private members")]
    Private,
    /// An RSA modulus outside 2048–4096 bits.
    #[error("RSA keys must have a modulus of 2048 to 4096 bits")]
    RsaSize,
    /// EC or Ed25519 coordinates that are not a valid point.
    #[error("the key's coordinates are not a point of its curve")]
    BadPoint,
}

/// The members of a JWK the rail reads. Unknown members are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawJwk {
    /// Key type: `EC`, `RSA`, `OKP` (others are skipped).
    #[serde(default)]
    pub kty: Option<String>,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Intended use (`sig` or `enc`).
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// Permitted operations.
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    /// The one algorithm the key is for, when it says.
    #[serde(default)]
    pub alg: Option<String>,
    /// Curve (`P-256`, `Ed25519`).
    #[serde(default)]
    pub crv: Option<String>,
    /// EC/OKP public coordinate.
    #[serde(default)]
    pub x: Option<String>,
    /// EC public coordinate.
    #[serde(default)]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default)]
    pub e: Option<String>,
    // Private members: their presence alone makes a DPoP key unacceptable.
    /// Private key member (EC, OKP, RSA): refused in DPoP proofs.
    #[serde(default)]
    pub d: Option<serde_json::Value>,
    /// RSA private member.
    #[serde(default)]
    pub p: Option<serde_json::Value>,
    /// RSA private member.
    #[serde(default)]
    pub q: Option<serde_json::Value>,
    /// RSA private member.
    #[serde(default)]
    pub dp: Option<serde_json::Value>,
    /// RSA private member.
    #[serde(default)]
    pub dq: Option<serde_json::Value>,
    /// RSA private member.
    #[serde(default)]
    pub qi: Option<serde_json::Value>,
    /// RSA private member.
    #[serde(default)]
    pub oth: Option<serde_json::Value>,
    /// Symmetric key value.
    #[serde(default)]
    pub k: Option<serde_json::Value>,
}

impl RawJwk {
    fn has_private_members(&self) -> bool {
        self.d.is_some()
            || self.p.is_some()
            || self.q.is_some()
            || self.dp.is_some()
            || self.dq.is_some()
            || self.qi.is_some()
            || self.oth.is_some()
            || self.k.is_some()
    }
}

/// A key's material in the form its verifier takes. Signatures are checked with ring (P-256
/// ECDSA and RSA, assembly-backed and constant-time where it matters) and ed25519-dalek's strict
/// verification (Ed25519: small-order keys and non-canonical signatures refused). P-256 points
/// are still checked on the curve when the key is read, so that a bad point is refused as
/// such, not as a failed signature later.
enum KeyMaterial {
    /// The uncompressed SEC1 point (`04 ‖ x ‖ y`).
    P256(Box<[u8; 65]>),
    /// The modulus (big-endian, no leading zero byte) and the public exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public key ready to check signatures, with the JWK metadata that limits its use.
pub struct PublicKey {
    material: KeyMaterial,
    /// The key's `kid`, if it has one.
    pub kid: Option<String>,
    /// The key's own `alg`, when it names one (then only that algorithm may use it).
    alg: Option<String>,
    /// The RFC 7638 canonical JSON of the key's required members, for the thumbprint.
    canonical: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kty = match self.material {
            KeyMaterial::P256(_) => "EC P-256",
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ed25519(_) => "OKP Ed25519",
        };
        f.debug_struct("PublicKey")
            .field("kty", &kty)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

fn b64(s: &str) -> Result<Vec<u8>, JwkError> {
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| JwkError::Malformed)
}

fn member(m: &Option<String>) -> Result<&str, JwkError> {
    m.as_deref().ok_or(JwkError::Malformed)
}

impl PublicKey {
    /// A verification key from a JWK. Private members are refused when `public_only` (DPoP
    /// proofs); in a JWKS they are ignored (only public parts are read).
    pub fn from_jwk(jwk: &RawJwk, public_only: bool) -> Result<PublicKey, JwkError> {
        if public_only && jwk.has_private_members() {
            return Err(JwkError::Private);
        }
        let kty = member(&jwk.kty)?;
        let (material, canonical) = match kty {
            "EC" => {
                let crv = member(&jwk.crv)?;
                if crv != "P-256" {
                    return Err(JwkError::Unsupported(format!("EC {crv}")));
                }
                let (xs, ys) = (member(&jwk.x)?, member(&jwk.y)?);
                let (x, y) = (b64(xs)?, b64(ys)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwkError::Malformed);
                }
                let mut sec1 = [0u8; 65];
                sec1[0] = 4;
                sec1[1..33].copy_from_slice(&x);
                sec1[33..].copy_from_slice(&y);
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .map_err(|_| JwkError::BadPoint)?;
                (
                    KeyMaterial::P256(Box::new(sec1)),
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{xs}","y":"{ys}"}}"#),
                )
            }
            "RSA" => {
                let (ns, es) = (member(&jwk.n)?, member(&jwk.e)?);
                let (n, e) = (b64(ns)?, b64(es)?);
                let n = without_leading_zeros(&n);
                let e = without_leading_zeros(&e);
                if !(2048..=4096).contains(&bit_length(n)) {
                    return Err(JwkError::RsaSize);
                }
                // An odd exponent of at least 3 and at most 33 bits (what ring verifies with;
                // every issuer uses 65537).
                let odd = e.last().is_some_and(|b| b & 1 == 1);
                if !odd || bit_length(e) < 2 || bit_length(e) > 33 {
                    return Err(JwkError::Malformed);
                }
                (
                    KeyMaterial::Rsa {
                        n: n.to_vec(),
                        e: e.to_vec(),
                    },
                    format!(r#"{{"e":"{es}","kty":"RSA","n":"{ns}"}}"#),
                )
            }
            "OKP" => {
                let crv = member(&jwk.crv)?;
                if crv != "Ed25519" {
                    return Err(JwkError::Unsupported(format!("OKP {crv}")));
                }
                let xs = member(&jwk.x)?;
                let x: [u8; 32] = b64(xs)?.try_into().map_err(|_| JwkError::Malformed)?;
                let key =
                    ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| JwkError::BadPoint)?;
                (
                    KeyMaterial::Ed25519(key),
                    format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{xs}"}}"#),
                )
            }
            other => return Err(JwkError::Unsupported(other.chars().take(16).collect())),
        };
        Ok(PublicKey {
            material,
            kid: jwk.kid.clone(),
            alg: jwk.alg.clone(),
            canonical,
        })
    }

    /// Whether this key may check a signature made with `alg`: the key type and curve fit the
    /// algorithm, and the key's own `alg`, when present, is `alg`.
    pub fn fits(&self, alg: Alg) -> bool {
        let family = match self.material {
            KeyMaterial::P256(_) => Family::P256,
            KeyMaterial::Rsa { .. } => Family::Rsa,
            KeyMaterial::Ed25519(_) => Family::Ed25519,
        };
        if family != alg.family() {
            return false;
        }
        match self.alg.as_deref() {
            None => true,
            // EdDSA and Ed25519 name the same signatures over an Ed25519 key.
            Some(a) if family == Family::Ed25519 => a == "EdDSA" || a == "Ed25519",
            Some(a) => a == alg.name(),
        }
    }

    /// Checks `sig` over `signing_input` with `alg`. Returns `false` when the key does not fit
    /// the algorithm or the signature does not verify.
    pub fn verify(&self, alg: Alg, signing_input: &[u8], sig: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match (&self.material, alg) {
            (KeyMaterial::P256(point), Alg::ES256) => {
                // RFC 7518 §3.4: R ‖ S, 32 bytes each.
                sig.len() == 64
                    && signature::UnparsedPublicKey::new(
                        &signature::ECDSA_P256_SHA256_FIXED,
                        &point[..],
                    )
                    .verify(signing_input, sig)
                    .is_ok()
            }
            (KeyMaterial::Ed25519(key), Alg::EdDSA | Alg::Ed25519) => {
                let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
                    return false;
                };
                key.verify_strict(signing_input, &ed25519_dalek::Signature::from_bytes(&bytes))
                    .is_ok()
            }
            (KeyMaterial::Rsa { n, e }, alg) => rsa_verify(n, e, alg, signing_input, sig),
            _ => false,
        }
    }

    /// The RFC 7638 SHA-256 thumbprint of the key, base64url without padding (what `cnf.jkt`
    /// holds).
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.canonical.as_bytes()))
    }
}

fn rsa_verify(n: &[u8], e: &[u8], alg: Alg, input: &[u8], sig: &[u8]) -> bool {
    // RFC 7518 §3.3: the signature is exactly as long as the modulus.
    if sig.len() != n.len() {
        return false;
    }
    // RFC 7518 §3.5: PSS with MGF1 over the same hash, the salt as long as the hash.
    let params: &signature::RsaParameters = match alg {
        Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return false,
    };
    signature::RsaPublicKeyComponents { n, e }
        .verify(params, input, sig)
        .is_ok()
}

/// `bytes` without its leading zero bytes (a big-endian integer's minimal form).
fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// The bit length of the big-endian integer `bytes` (no leading zero bytes).
fn bit_length(bytes: &[u8]) -> usize {
    bytes.first().map_or(0, |b| {
        (bytes.len() - 1) * 8 + (8 - b.leading_zeros() as usize)
    })
}

/// Why a compact JWS was refused before or at its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not three base64url parts.
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    /// The header is not a JSON object with `alg`.
    #[error("the JOSE header is not valid JSON")]
    BadHeader,
    /// The algorithm is not on the allow-list (or is `none`/HMAC).
    #[error("algorithm {0:?} is not accepted")]
    Alg(String),
    /// `crit` or `b64` present.
    #[error("the header has critical extensions this resource does not understand")]
    Crit,
}

/// The JOSE header members the rail reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    /// The signature algorithm.
    pub alg: String,
    /// The signing key's id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The media type of the whole JWS (`at+jwt`, `dpop+jwt`, …).
    #[serde(default)]
    pub typ: Option<String>,
    /// The public key (DPoP proofs).
    #[serde(default)]
    pub jwk: Option<RawJwk>,
    /// Critical extensions (refused).
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
    /// RFC 7797 unencoded payload (refused).
    #[serde(default)]
    pub b64: Option<serde_json::Value>,
}

/// A compact JWS split into its parts, its header parsed and its algorithm checked against an
/// allow-list; the signature is not yet checked.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The parsed JOSE header.
    pub header: Header,
    /// The checked algorithm.
    pub alg: Alg,
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The payload, still base64url-encoded.
    pub payload_b64: &'a str,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Splits and checks the frame of a compact JWS: three base64url parts, a JSON header whose
/// `alg` is in `allowed`, no `crit` and no unencoded payload.
pub fn parse_compact<'a>(s: &'a str, allowed: &[Alg]) -> Result<Jws<'a>, JwsError> {
    if s.len() > MAX_JWS_LEN {
        return Err(JwsError::Malformed);
    }
    let mut parts = s.splitn(4, '.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    if h.is_empty() || p.is_empty() || sig.is_empty() {
        return Err(JwsError::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h.as_bytes())
        .map_err(|_| JwsError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwsError::BadHeader)?;
    let alg = match Alg::from_name(&header.alg) {
        Some(a) if allowed.contains(&a) => a,
        _ => return Err(JwsError::Alg(header.alg.chars().take(32).collect())),
    };
    if header.crit.is_some() || header.b64.is_some() {
        return Err(JwsError::Crit);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig.as_bytes())
        .map_err(|_| JwsError::Malformed)?;
    // `h` and `p` are in `s`, with one '.' between them.
    let signing_input = &s[..h.len() + 1 + p.len()];
    Ok(Jws {
        header,
        alg,
        signing_input,
        payload_b64: p,
        signature,
    })
}

impl Jws<'_> {
    /// Checks the signature with `key`.
    pub fn verify_with(&self, key: &PublicKey) -> bool {
        key.verify(self.alg, self.signing_input.as_bytes(), &self.signature)
    }

    /// Decodes the payload.
    pub fn payload(&self) -> Result<Vec<u8>, JwsError> {
        URL_SAFE_NO_PAD
            .decode(self.payload_b64.as_bytes())
            .map_err(|_| JwsError::Malformed)
    }
}

/// Whether `s` is a compact JWS (three dot-separated parts whose first part is base64url of a
/// JSON object), as opposed to an opaque token. The payload and signature parts may be empty
/// or anything: such a token is still a JWT, to be refused as one.
pub fn looks_like_jws(s: &str) -> bool {
    // Three parts make a JWS (RFC 7515 §7.1) whatever the payload and signature hold: such a
    // token is checked as a JWT and refused there when malformed, never sent to introspection.
    let mut parts = s.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    h.starts_with("ey") && URL_SAFE_NO_PAD.decode(h.as_bytes()).is_ok()
}

/// base64url without padding of SHA-256 of `data` (DPoP `ath`).
pub fn sha256_b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_jwk() -> (p256::ecdsa::SigningKey, RawJwk) {
        let sk = p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let pt = sk.verifying_key().to_encoded_point(false);
        let jwk = RawJwk {
            kty: Some("EC".into()),
            crv: Some("P-256".into()),
            x: Some(URL_SAFE_NO_PAD.encode(pt.x().unwrap())),
            y: Some(URL_SAFE_NO_PAD.encode(pt.y().unwrap())),
            ..Default::default()
        };
        (sk, jwk)
    }

    fn sign_es256(sk: &p256::ecdsa::SigningKey, header: &str, payload: &str) -> String {
        use p256::ecdsa::signature::Signer;
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    #[test]
    fn names_round_trip_and_refuse_symmetric() {
        for a in Alg::ALL {
            assert_eq!(Alg::from_name(a.name()), Some(a));
        }
        for bad in ["none", "HS256", "HS512", "es256", "ES384", ""] {
            assert_eq!(Alg::from_name(bad), None, "{bad}");
        }
        let e = serde_json::from_str::<Alg>("\"HS256\"").unwrap_err();
        assert!(e.to_string().contains("never accepted"), "{e}");
        let e = serde_json::from_str::<Alg>("\"none\"").unwrap_err();
        assert!(e.to_string().contains("never accepted"), "{e}");
    }

    #[test]
    fn es256_signature_and_family_checks() {
        let (sk, jwk) = ec_jwk();
        let key = PublicKey::from_jwk(&jwk, true).unwrap();
        let t = sign_es256(&sk, r#"{"alg":"ES256"}"#, r#"{"a":1}"#);
        let jws = parse_compact(&t, &[Alg::ES256]).unwrap();
        assert!(jws.verify_with(&key));
        assert_eq!(jws.payload().unwrap(), br#"{"a":1}"#);
        // The same bytes claimed as another family's algorithm never verify with this key.
        assert!(!key.verify(Alg::RS256, jws.signing_input.as_bytes(), &jws.signature));
        assert!(!key.verify(Alg::EdDSA, jws.signing_input.as_bytes(), &jws.signature));
        // A tampered payload fails.
        let mut parts: Vec<&str> = t.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(r#"{"a":2}"#);
        parts[1] = &other;
        let t2 = parts.join(".");
        assert!(!parse_compact(&t2, &[Alg::ES256]).unwrap().verify_with(&key));
    }

    #[test]
    fn key_alg_member_limits_use() {
        let (_, mut jwk) = ec_jwk();
        jwk.alg = Some("ES256".into());
        assert!(PublicKey::from_jwk(&jwk, true).unwrap().fits(Alg::ES256));
        jwk.alg = Some("ES384".into());
        assert!(!PublicKey::from_jwk(&jwk, true).unwrap().fits(Alg::ES256));
    }

    #[test]
    fn frames_are_checked() {
        let (sk, _) = ec_jwk();
        let ok = sign_es256(&sk, r#"{"alg":"ES256"}"#, "{}");
        assert!(
            parse_compact(&ok, &[Alg::RS256]).is_err(),
            "alg not allowed"
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(
            parse_compact(&none, &Alg::ALL).unwrap_err(),
            JwsError::Malformed
        );
        let none_sig = format!("{none}AAAA");
        assert!(matches!(
            parse_compact(&none_sig, &Alg::ALL),
            Err(JwsError::Alg(_))
        ));
        let hs = sign_es256(&sk, r#"{"alg":"HS256"}"#, "{}");
        assert!(matches!(
            parse_compact(&hs, &Alg::ALL),
            Err(JwsError::Alg(_))
        ));
        let crit = sign_es256(&sk, r#"{"alg":"ES256","crit":["exp"],"exp":1}"#, "{}");
        assert_eq!(parse_compact(&crit, &Alg::ALL).unwrap_err(), JwsError::Crit);
        assert!(parse_compact("a.b", &Alg::ALL).is_err());
        assert!(parse_compact("a.b.c.d", &Alg::ALL).is_err());
        assert!(
            parse_compact(&format!("{ok}="), &Alg::ALL).is_err(),
            "padding"
        );
        assert!(looks_like_jws(&ok));
        assert!(!looks_like_jws("opaque-token_value"));
        // An empty signature (alg none or any other) is still a JWT, as are empty parts.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert!(looks_like_jws(&none));
        assert!(parse_compact(&none, &Alg::ALL).is_err());
        assert!(looks_like_jws(&format!(
            "{}..",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#)
        )));
        assert!(!looks_like_jws("a.b.c"), "a header that is no JSON object");
        assert!(!looks_like_jws(&format!("{ok}.x")), "four parts: not a JWS");
    }

    #[test]
    fn private_members_refused_for_dpop() {
        let (_, mut jwk) = ec_jwk();
        jwk.d = Some(serde_json::json!("AAAA"));
        assert_eq!(
            PublicKey::from_jwk(&jwk, true).unwrap_err(),
            JwkError::Private
        );
        assert!(PublicKey::from_jwk(&jwk, false).is_ok());
    }

    #[test]
    fn bad_points_and_sizes() {
        let (_, mut jwk) = ec_jwk();
        jwk.y = Some(URL_SAFE_NO_PAD.encode([1u8; 32]));
        assert!(PublicKey::from_jwk(&jwk, true).is_err());
        let small = RawJwk {
            kty: Some("RSA".into()),
            n: Some(URL_SAFE_NO_PAD.encode([0xffu8; 128])),
            e: Some("AQAB".into()),
            ..Default::default()
        };
        assert_eq!(
            PublicKey::from_jwk(&small, true).unwrap_err(),
            JwkError::RsaSize
        );
        let sym = RawJwk {
            kty: Some("oct".into()),
            ..Default::default()
        };
        assert!(matches!(
            PublicKey::from_jwk(&sym, false),
            Err(JwkError::Unsupported(_))
        ));
    }

    /// An RSA key made by the `rsa` crate (a second implementation), its JWK, and a signer.
    fn rsa_case(bits: usize) -> (rsa::RsaPrivateKey, RawJwk) {
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits).unwrap();
        let jwk = RawJwk {
            kty: Some("RSA".into()),
            n: Some(URL_SAFE_NO_PAD.encode(key.n().to_bytes_be())),
            e: Some(URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())),
            ..Default::default()
        };
        (key, jwk)
    }

    fn rsa_sign(key: &rsa::RsaPrivateKey, alg: Alg, input: &[u8]) -> Vec<u8> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
        use sha2::{Sha384, Sha512};
        let k = key.clone();
        let mut rng = rand_core::OsRng;
        match alg {
            Alg::RS256 => rsa::pkcs1v15::SigningKey::<Sha256>::new(k)
                .sign(input)
                .to_vec(),
            Alg::RS384 => rsa::pkcs1v15::SigningKey::<Sha384>::new(k)
                .sign(input)
                .to_vec(),
            Alg::RS512 => rsa::pkcs1v15::SigningKey::<Sha512>::new(k)
                .sign(input)
                .to_vec(),
            Alg::PS256 => rsa::pss::BlindedSigningKey::<Sha256>::new(k)
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            Alg::PS384 => rsa::pss::BlindedSigningKey::<Sha384>::new(k)
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            Alg::PS512 => rsa::pss::BlindedSigningKey::<Sha512>::new(k)
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            _ => unreachable!("not an RSA algorithm"),
        }
    }

    #[test]
    fn every_rsa_algorithm_verifies_signatures_made_elsewhere() {
        let (key, jwk) = rsa_case(2048);
        let public = PublicKey::from_jwk(&jwk, true).unwrap();
        let input = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9";
        for alg in [
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
        ] {
            let sig = rsa_sign(&key, alg, input);
            assert!(public.verify(alg, input, &sig), "{alg:?}");
            // Another message, a flipped bit, a truncated or padded signature: refused.
            assert!(
                !public.verify(alg, b"eyJhbGciOiJSUzI1NiJ9.e30", &sig),
                "{alg:?}"
            );
            let mut flipped = sig.clone();
            flipped[17] ^= 1;
            assert!(!public.verify(alg, input, &flipped), "{alg:?}");
            assert!(!public.verify(alg, input, &sig[1..]), "{alg:?}");
            let mut longer = vec![0u8];
            longer.extend_from_slice(&sig);
            assert!(!public.verify(alg, input, &longer), "{alg:?}");
        }
        // PKCS#1 v1.5 and PSS are not interchangeable, nor are the hashes.
        let rs = rsa_sign(&key, Alg::RS256, input);
        assert!(!public.verify(Alg::PS256, input, &rs));
        assert!(!public.verify(Alg::RS384, input, &rs));
        // An RSA key never checks an ES256 or EdDSA signature.
        assert!(!public.verify(Alg::ES256, input, &rs[..64]));
        assert!(!public.verify(Alg::EdDSA, input, &rs[..64]));
    }

    #[test]
    fn rsa_key_sizes_and_exponents() {
        let (_, small) = rsa_case(1024);
        assert_eq!(
            PublicKey::from_jwk(&small, true).unwrap_err(),
            JwkError::RsaSize
        );
        // A modulus written with a leading zero byte is the same key.
        let (key, mut jwk) = rsa_case(2048);
        let n = URL_SAFE_NO_PAD.decode(jwk.n.as_deref().unwrap()).unwrap();
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        jwk.n = Some(URL_SAFE_NO_PAD.encode(&padded));
        let public = PublicKey::from_jwk(&jwk, true).unwrap();
        let sig = rsa_sign(&key, Alg::RS256, b"a.b");
        assert!(public.verify(Alg::RS256, b"a.b", &sig));
        // An even or tiny exponent is no RSA public key.
        for e in [&[1u8][..], &[0x01, 0x00, 0x00][..], &[][..]] {
            jwk.e = Some(URL_SAFE_NO_PAD.encode(e));
            assert_eq!(
                PublicKey::from_jwk(&jwk, true).unwrap_err(),
                JwkError::Malformed,
                "{e:?}"
            );
        }
    }

    #[test]
    fn es256_needs_the_fixed_64_byte_form() {
        use p256::ecdsa::signature::Signer;
        let (sk, jwk) = ec_jwk();
        let public = PublicKey::from_jwk(&jwk, true).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign(b"a.b");
        assert!(public.verify(Alg::ES256, b"a.b", &sig.to_bytes()));
        // The DER form (what some libraries emit by mistake) is refused, as is a short one.
        assert!(!public.verify(Alg::ES256, b"a.b", sig.to_der().as_bytes()));
        assert!(!public.verify(Alg::ES256, b"a.b", &sig.to_bytes()[..63]));
        // A point off the curve is refused when the key is read.
        let mut off = jwk.clone();
        off.y = off.x.clone();
        assert_eq!(
            PublicKey::from_jwk(&off, true).unwrap_err(),
            JwkError::BadPoint
        );
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1.
        let jwk = RawJwk {
            kty: Some("RSA".into()),
            n: Some(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6\
                 tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v\
                 -65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08q\
                 NLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8aw\
                 apJzKnqDKgw"
                    .into(),
            ),
            e: Some("AQAB".into()),
            alg: Some("RS256".into()),
            kid: Some("2011-04-29".into()),
            ..Default::default()
        };
        let key = PublicKey::from_jwk(&jwk, true).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
