//! HMAC-SHA256, the one keyed hash turnpike tags things with (macaroon signatures, sealed
//! session state, DPoP nonces).

pub use hmac::Mac;

/// HMAC over SHA-256.
pub type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// An HMAC-SHA256 keyed with `key`, ready for [`Mac::update`]. Any key length is accepted (HMAC
/// hashes a key longer than the block and pads a shorter one).
pub fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2 (a key shorter than the block).
    #[test]
    fn rfc4231_case_2() {
        let mut m = hmac_sha256(b"Jefe");
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// RFC 4231, test case 6 (a 131-byte key, longer than the block).
    #[test]
    fn rfc4231_case_6() {
        let mut m = hmac_sha256(&[0xaa; 131]);
        m.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
