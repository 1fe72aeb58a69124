//! Macaroons in the libmacaroons V2 binary format, as go-macaroon (and so Aperture) and
//! pymacaroons read and write them.
//!
//! Binary layout (all lengths are unsigned LEB128 varints, as Go's `binary.PutUvarint`):
//!
//! ```text
//! macaroon  = 0x02 header caveat* EOS signature
//! header    = [field(1, location)] field(2, identifier) EOS
//! caveat    = [field(1, location)] field(2, caveat id) [field(4, verification id)] EOS
//! signature = field(6, 32 bytes)
//! field(t, data) = varint(t) varint(len(data)) data ;  EOS = the single byte 0x00
//! ```
//!
//! Field types within a section are strictly increasing. A first-party caveat has no location
//! and no verification id. The signature chain is `sig0 = HMAC-SHA256(derive(root key),
//! identifier)`, then `sig = HMAC-SHA256(sig, caveat id)` for each first-party caveat, where
//! `derive(k) = HMAC-SHA256(key = "macaroons-key-generator", k)`.
//!
//! On the wire macaroons travel as standard padded base64 ([`Macaroon::to_base64`]); decoding
//! accepts standard or URL-safe, padded or not ([`Macaroon::from_base64`]).
//!
//! Decoding is strict and bounded (see [`Limits`]): every malformed input is a typed
//! [`MacaroonError`], never a panic.

use base64::Engine;
use turnpike_core::mac::{hmac_sha256, Mac};

const VERSION_V2: u8 = 2;
const FIELD_EOS: u64 = 0;
const FIELD_LOCATION: u64 = 1;
const FIELD_IDENTIFIER: u64 = 2;
const FIELD_VID: u64 = 4;
const FIELD_SIGNATURE: u64 = 6;

/// The key-derivation constant of libmacaroons.
pub const KEY_GENERATOR: &[u8] = b"macaroons-key-generator";

/// Bounds on what [`Macaroon::decode`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded macaroon, in bytes (before base64).
    pub max_bytes: usize,
    /// Most caveats.
    pub max_caveats: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4096,
            max_caveats: 32,
        }
    }
}

/// Why bytes are not an acceptable macaroon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacaroonError {
    /// Not base64 (standard or URL-safe).
    #[error("macaroon is not base64")]
    Base64,
    /// Longer than the limit.
    #[error("macaroon is larger than {0} bytes")]
    TooLarge(usize),
    /// More caveats than the limit.
    #[error("macaroon has more than {0} caveats")]
    TooManyCaveats(usize),
    /// Not version 2.
    #[error("macaroon is not in the V2 binary format")]
    Version,
    /// Ends inside a field.
    #[error("macaroon is truncated")]
    Truncated,
    /// A field length that does not decode.
    #[error("macaroon has a malformed length")]
    Varint,
    /// Fields out of the V2 order.
    #[error("macaroon fields are out of order or unexpected")]
    FieldOrder,
    /// No identifier field.
    #[error("macaroon has no identifier")]
    NoIdentifier,
    /// A location that is not UTF-8.
    #[error("macaroon location is not UTF-8")]
    Location,
    /// A signature of another length.
    #[error("macaroon signature is not 32 bytes")]
    SignatureLength,
    /// Bytes after the signature.
    #[error("macaroon has bytes after its signature")]
    TrailingBytes,
}

/// One caveat. First-party caveats have neither `location` nor `verification_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caveat {
    /// Where a third-party caveat is discharged (none for first-party caveats).
    pub location: Option<String>,
    /// The caveat's text (`key=value` for first-party caveats).
    pub id: Vec<u8>,
    /// The encrypted verification key of a third-party caveat.
    pub verification_id: Option<Vec<u8>>,
}

impl Caveat {
    /// A first-party caveat with this predicate.
    pub fn first_party(id: impl Into<Vec<u8>>) -> Self {
        Caveat {
            location: None,
            id: id.into(),
            verification_id: None,
        }
    }

    /// Whether this is a first-party caveat.
    pub fn is_first_party(&self) -> bool {
        self.verification_id.is_none() && self.location.is_none()
    }
}

/// A macaroon: location hint, identifier, caveats and the chained signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Macaroon {
    location: String,
    identifier: Vec<u8>,
    caveats: Vec<Caveat>,
    signature: [u8; 32],
}

/// A macaroon's signature is a bearer secret: `Debug` shows everything else.
impl std::fmt::Debug for Macaroon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Macaroon")
            .field("location", &self.location)
            .field("identifier", &hex::encode(&self.identifier))
            .field("caveats", &self.caveats)
            .finish_non_exhaustive()
    }
}

/// `HMAC-SHA256(key = "macaroons-key-generator", root_key)`: the key the signature chain
/// starts from.
pub fn derive_key(root_key: &[u8]) -> [u8; 32] {
    hmac(KEY_GENERATOR, root_key)
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = hmac_sha256(key);
    m.update(msg);
    m.finalize().into_bytes().into()
}

impl Macaroon {
    /// Mints a macaroon with no caveats.
    pub fn new(
        root_key: &[u8],
        identifier: impl Into<Vec<u8>>,
        location: impl Into<String>,
    ) -> Self {
        let identifier = identifier.into();
        let signature = hmac(&derive_key(root_key), &identifier);
        Macaroon {
            location: location.into(),
            identifier,
            caveats: Vec::new(),
            signature,
        }
    }

    /// Adds a first-party caveat (anyone holding the macaroon can; caveats only narrow).
    pub fn add_first_party_caveat(&mut self, predicate: impl Into<Vec<u8>>) {
        let id = predicate.into();
        self.signature = hmac(&self.signature, &id);
        self.caveats.push(Caveat::first_party(id));
    }

    /// The location hint (not covered by the signature).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The identifier.
    pub fn identifier(&self) -> &[u8] {
        &self.identifier
    }

    /// The caveats, in order.
    pub fn caveats(&self) -> &[Caveat] {
        &self.caveats
    }

    /// The signature.
    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }

    /// The signature the chain gives for `root_key`. Third-party caveats make it unverifiable
    /// here (no discharge macaroons are supported): `None` then.
    pub fn expected_signature(&self, root_key: &[u8]) -> Option<[u8; 32]> {
        let mut sig = hmac(&derive_key(root_key), &self.identifier);
        for c in &self.caveats {
            if !c.is_first_party() {
                return None;
            }
            sig = hmac(&sig, &c.id);
        }
        Some(sig)
    }

    /// Whether the signature chain holds for `root_key` (compared in constant time).
    pub fn verify_signature(&self, root_key: &[u8]) -> bool {
        match self.expected_signature(root_key) {
            Some(sig) => turnpike_core::ct_eq(&sig, &self.signature),
            None => false,
        }
    }

    /// The V2 binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.identifier.len() + self.caveats.iter().map(|c| c.id.len() + 4).sum::<usize>(),
        );
        out.push(VERSION_V2);
        if !self.location.is_empty() {
            put_field(&mut out, FIELD_LOCATION, self.location.as_bytes());
        }
        put_field(&mut out, FIELD_IDENTIFIER, &self.identifier);
        out.push(0);
        for c in &self.caveats {
            if let Some(l) = &c.location {
                put_field(&mut out, FIELD_LOCATION, l.as_bytes());
            }
            put_field(&mut out, FIELD_IDENTIFIER, &c.id);
            if let Some(v) = &c.verification_id {
                put_field(&mut out, FIELD_VID, v);
            }
            out.push(0);
        }
        out.push(0);
        put_field(&mut out, FIELD_SIGNATURE, &self.signature);
        out
    }

    /// Standard padded base64 of the V2 encoding (the form L402 challenges carry).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.encode())
    }

    /// Decodes base64 (standard or URL-safe alphabet, padded or not) and then the V2 binary.
    pub fn from_base64(s: &str, limits: Limits) -> Result<Self, MacaroonError> {
        let bytes = decode_base64(s.trim(), limits.max_bytes)?;
        Self::decode(&bytes, limits)
    }

    /// Decodes the V2 binary format, strictly.
    pub fn decode(b: &[u8], limits: Limits) -> Result<Self, MacaroonError> {
        if b.len() > limits.max_bytes {
            return Err(MacaroonError::TooLarge(limits.max_bytes));
        }
        let mut r = Reader { b, pos: 0 };
        if r.byte()? != VERSION_V2 {
            return Err(MacaroonError::Version);
        }
        let header = r.section()?;
        let (location, identifier) = match header.as_slice() {
            [(FIELD_LOCATION, loc), (FIELD_IDENTIFIER, id)] => (
                std::str::from_utf8(loc)
                    .map_err(|_| MacaroonError::Location)?
                    .to_string(),
                id.to_vec(),
            ),
            [(FIELD_IDENTIFIER, id)] => (String::new(), id.to_vec()),
            [] | [(FIELD_LOCATION, _)] => return Err(MacaroonError::NoIdentifier),
            _ => return Err(MacaroonError::FieldOrder),
        };
        let mut caveats = Vec::new();
        loop {
            let section = r.section()?;
            if section.is_empty() {
                break;
            }
            if caveats.len() == limits.max_caveats {
                return Err(MacaroonError::TooManyCaveats(limits.max_caveats));
            }
            let mut it = section.into_iter().peekable();
            let location = match it.peek() {
                Some((FIELD_LOCATION, loc)) => {
                    let l = std::str::from_utf8(loc)
                        .map_err(|_| MacaroonError::Location)?
                        .to_string();
                    it.next();
                    Some(l)
                }
                _ => None,
            };
            let id = match it.next() {
                Some((FIELD_IDENTIFIER, id)) => id.to_vec(),
                _ => return Err(MacaroonError::NoIdentifier),
            };
            let verification_id = match it.next() {
                Some((FIELD_VID, v)) => Some(v.to_vec()),
                None => None,
                Some(_) => return Err(MacaroonError::FieldOrder),
            };
            if it.next().is_some() {
                return Err(MacaroonError::FieldOrder);
            }
            if verification_id.is_none() && location.is_some() {
                // A location is only meaningful on a third-party caveat.
                return Err(MacaroonError::FieldOrder);
            }
            caveats.push(Caveat {
                location,
                id,
                verification_id,
            });
        }
        let (t, sig) = r.field()?.ok_or(MacaroonError::FieldOrder)?;
        if t != FIELD_SIGNATURE {
            return Err(MacaroonError::FieldOrder);
        }
        let signature: [u8; 32] = sig.try_into().map_err(|_| MacaroonError::SignatureLength)?;
        if r.pos != b.len() {
            return Err(MacaroonError::TrailingBytes);
        }
        Ok(Macaroon {
            location,
            identifier,
            caveats,
            signature,
        })
    }
}

/// Decodes base64 in any of the four common forms, bounded before decoding.
pub fn decode_base64(s: &str, max_bytes: usize) -> Result<Vec<u8>, MacaroonError> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    if s.len() > max_bytes.saturating_mul(4) / 3 + 4 {
        return Err(MacaroonError::TooLarge(max_bytes));
    }
    let unpadded = s.trim_end_matches('=');
    if s.len() - unpadded.len() > 2 {
        return Err(MacaroonError::Base64);
    }
    let url_safe = unpadded.contains(['-', '_']);
    let std = unpadded.contains(['+', '/']);
    let r = match (url_safe, std) {
        (true, true) => return Err(MacaroonError::Base64),
        (true, false) => URL_SAFE_NO_PAD.decode(unpadded),
        (false, _) => STANDARD_NO_PAD.decode(unpadded),
    };
    r.map_err(|_| MacaroonError::Base64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_field(out: &mut Vec<u8>, t: u64, data: &[u8]) {
    put_varint(out, t);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, MacaroonError> {
        let v = *self.b.get(self.pos).ok_or(MacaroonError::Truncated)?;
        self.pos += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, MacaroonError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let byte = self.byte()?;
            let low = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(MacaroonError::Varint);
            }
            v |= low << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    // Non-minimal encoding (Go's Uvarint accepts it, but nothing writes it).
                    return Err(MacaroonError::Varint);
                }
                return Ok(v);
            }
        }
        Err(MacaroonError::Varint)
    }

    /// One field, or `None` for EOS.
    fn field(&mut self) -> Result<Option<(u64, &'a [u8])>, MacaroonError> {
        let t = self.varint()?;
        if t == FIELD_EOS {
            return Ok(None);
        }
        let len = usize::try_from(self.varint()?).map_err(|_| MacaroonError::Varint)?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.b.len())
            .ok_or(MacaroonError::Truncated)?;
        let data = &self.b[self.pos..end];
        self.pos = end;
        Ok(Some((t, data)))
    }

    /// Fields up to the next EOS, with strictly increasing types.
    fn section(&mut self) -> Result<Vec<(u64, &'a [u8])>, MacaroonError> {
        let mut out: Vec<(u64, &'a [u8])> = Vec::new();
        while let Some((t, d)) = self.field()? {
            if out.last().is_some_and(|&(prev, _)| t <= prev) {
                return Err(MacaroonError::FieldOrder);
            }
            if !matches!(t, FIELD_LOCATION | FIELD_IDENTIFIER | FIELD_VID) {
                return Err(MacaroonError::FieldOrder);
            }
            out.push((t, d));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Macaroon {
        let mut m = Macaroon::new(b"root key", b"id-1".to_vec(), "turnpike");
        m.add_first_party_caveat("a=1");
        m.add_first_party_caveat("b=2");
        m
    }

    #[test]
    fn round_trip_and_chain() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(bytes[0], 2);
        let d = Macaroon::decode(&bytes, Limits::default()).unwrap();
        assert_eq!(d, m);
        assert!(d.verify_signature(b"root key"));
        assert!(!d.verify_signature(b"other key"));
        let b64 = m.to_base64();
        assert!(b64.ends_with('=') || b64.len() % 4 == 0);
        for form in [
            b64.clone(),
            b64.trim_end_matches('=').to_string(),
            b64.replace('+', "-").replace('/', "_"),
        ] {
            assert_eq!(Macaroon::from_base64(&form, Limits::default()).unwrap(), m);
        }
    }

    /// The exact bytes, worked by hand from the format: version, location, identifier, EOS,
    /// two caveats each ended by EOS, the EOS ending the caveats, the signature.
    #[test]
    fn exact_layout() {
        let m = sample();
        let mut want = vec![2u8, 1, 8];
        want.extend_from_slice(b"turnpike");
        want.extend_from_slice(&[2, 4]);
        want.extend_from_slice(b"id-1");
        want.push(0);
        want.extend_from_slice(&[2, 3]);
        want.extend_from_slice(b"a=1");
        want.push(0);
        want.extend_from_slice(&[2, 3]);
        want.extend_from_slice(b"b=2");
        want.push(0);
        want.push(0);
        want.extend_from_slice(&[6, 32]);
        want.extend_from_slice(m.signature());
        assert_eq!(m.encode(), want);
        // The chain, computed step by step.
        let k = hmac(KEY_GENERATOR, b"root key");
        let s0 = hmac(&k, b"id-1");
        let s1 = hmac(&s0, b"a=1");
        assert_eq!(&hmac(&s1, b"b=2"), m.signature());
    }

    #[test]
    fn long_fields_use_multibyte_varints() {
        let mut m = Macaroon::new(b"k", vec![7u8; 300], "");
        m.add_first_party_caveat(vec![b'x'; 200]);
        let bytes = m.encode();
        assert_eq!(
            &bytes[..4],
            &[2, 2, 0xac, 0x02],
            "300 = 0xac 0x02, no location"
        );
        assert_eq!(Macaroon::decode(&bytes, Limits::default()).unwrap(), m);
    }

    #[test]
    fn rejects_malformed_input() {
        let good = sample().encode();
        let l = Limits::default();
        // Every truncation fails with an error, never a panic.
        for cut in 0..good.len() {
            assert!(Macaroon::decode(&good[..cut], l).is_err(), "cut {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            Macaroon::decode(&trailing, l),
            Err(MacaroonError::TrailingBytes)
        );
        let mut v1 = good.clone();
        v1[0] = b'0';
        assert_eq!(Macaroon::decode(&v1, l), Err(MacaroonError::Version));
        // Identifier before location: out of order.
        let swapped = [2u8, 2, 1, b'i', 1, 1, b'l', 0, 0, 6, 32]
            .iter()
            .copied()
            .chain([0u8; 32])
            .collect::<Vec<_>>();
        assert_eq!(
            Macaroon::decode(&swapped, l),
            Err(MacaroonError::FieldOrder)
        );
        // A 31-byte signature.
        let mut short = good[..good.len() - 34].to_vec();
        short.extend_from_slice(&[6, 31]);
        short.extend_from_slice(&[0; 31]);
        assert_eq!(
            Macaroon::decode(&short, l),
            Err(MacaroonError::SignatureLength)
        );
        // Limits.
        let tight = Limits {
            max_bytes: 4096,
            max_caveats: 1,
        };
        assert_eq!(
            Macaroon::decode(&good, tight),
            Err(MacaroonError::TooManyCaveats(1))
        );
        assert!(matches!(
            Macaroon::decode(
                &good,
                Limits {
                    max_bytes: 10,
                    max_caveats: 32
                }
            ),
            Err(MacaroonError::TooLarge(10))
        ));
        // Overlong varint.
        let overlong = [
            2u8, 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ];
        assert_eq!(Macaroon::decode(&overlong, l), Err(MacaroonError::Varint));
        // Huge declared length.
        let huge = [2u8, 2, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(Macaroon::decode(&huge, l), Err(MacaroonError::Truncated));
        // Base64 garbage.
        assert_eq!(Macaroon::from_base64("!!!", l), Err(MacaroonError::Base64));
        assert_eq!(
            Macaroon::from_base64("AgE+-w==", l),
            Err(MacaroonError::Base64),
            "mixed alphabets"
        );
    }

    #[test]
    fn third_party_caveats_decode_but_never_verify() {
        let mut m = sample();
        m.caveats.push(Caveat {
            location: Some("https://auth.example".into()),
            id: b"tp".to_vec(),
            verification_id: Some(vec![1; 48]),
        });
        let d = Macaroon::decode(&m.encode(), Limits::default()).unwrap();
        assert_eq!(d.caveats().len(), 3);
        assert!(!d.caveats()[2].is_first_party());
        assert!(!d.verify_signature(b"root key"));
    }

    #[test]
    fn fuzz_like_mutations_never_panic() {
        let good = sample().encode();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = good.clone();
            let i = (x as usize) % b.len();
            b[i] = (x >> 32) as u8;
            if x & 1 == 0 {
                b.truncate((x as usize >> 8) % (b.len() + 1));
            }
            let _ = Macaroon::decode(&b, Limits::default());
        }
    }
}
