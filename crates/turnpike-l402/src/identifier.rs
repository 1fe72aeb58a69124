//! The L402 macaroon identifier, laid out as Aperture lays it out:
//!
//! ```text
//! offset size field
//! 0      2    version, u16 big-endian = 0
//! 2      32   payment hash (SHA-256 of the invoice preimage)
//! 34     32   token id (random; names the token's root key and state)
//! total 66 bytes
//! ```

/// The only identifier version defined.
pub const VERSION: u16 = 0;
/// Encoded length of a version-0 identifier.
pub const LEN: usize = 66;

/// A decoded L402 identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// The hash of the invoice that pays for the token.
    pub payment_hash: [u8; 32],
    /// The token's id.
    pub token_id: [u8; 32],
}

/// Why bytes are not an L402 identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier is {0} bytes, not 66")]
    /// Not 66 bytes long.
    Length(usize),
    #[error("identifier version {0} is not supported")]
    /// A version other than 0.
    Version(u16),
}

impl Identifier {
    /// A fresh identifier for `payment_hash` with a random token id.
    pub fn random(payment_hash: [u8; 32]) -> Self {
        Identifier {
            payment_hash,
            token_id: rand::random(),
        }
    }

    /// The 66-byte encoding.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[..2].copy_from_slice(&VERSION.to_be_bytes());
        out[2..34].copy_from_slice(&self.payment_hash);
        out[34..].copy_from_slice(&self.token_id);
        out
    }

    /// Decodes the 66-byte encoding (version 0 only).
    pub fn decode(b: &[u8]) -> Result<Self, IdentifierError> {
        let b: &[u8; LEN] = b.try_into().map_err(|_| IdentifierError::Length(b.len()))?;
        let version = u16::from_be_bytes([b[0], b[1]]);
        if version != VERSION {
            return Err(IdentifierError::Version(version));
        }
        let mut payment_hash = [0u8; 32];
        payment_hash.copy_from_slice(&b[2..34]);
        let mut token_id = [0u8; 32];
        token_id.copy_from_slice(&b[34..]);
        Ok(Identifier {
            payment_hash,
            token_id,
        })
    }

    /// The token id as lower-case hex (what [`turnpike_core::Identity::L402`] carries).
    pub fn token_id_hex(&self) -> String {
        hex::encode(self.token_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let id = Identifier {
            payment_hash: [0xaa; 32],
            token_id: [0xbb; 32],
        };
        let b = id.encode();
        assert_eq!(&b[..2], &[0, 0]);
        assert_eq!(&b[2..34], &[0xaa; 32]);
        assert_eq!(&b[34..], &[0xbb; 32]);
        assert_eq!(Identifier::decode(&b), Ok(id));
        assert_eq!(
            Identifier::decode(&b[..65]),
            Err(IdentifierError::Length(65))
        );
        let mut v1 = b;
        v1[1] = 1;
        assert_eq!(Identifier::decode(&v1), Err(IdentifierError::Version(1)));
        assert_ne!(
            Identifier::random([0; 32]).token_id,
            Identifier::random([0; 32]).token_id
        );
    }
}
