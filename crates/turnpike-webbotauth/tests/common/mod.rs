//! What the tests that sign requests here share: a fixed clock and RFC 9421's
//! test-key-ed25519.

// Each test file includes this module and uses a part of it.
#![allow(dead_code, unreachable_pub)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use turnpike_webbotauth::Clock;

/// The tests' "now", Unix seconds.
pub const NOW: u64 = 1_800_000_000;

/// A clock stopped at [`NOW`].
pub struct At;
impl Clock for At {
    fn now(&self) -> u64 {
        NOW
    }
}

/// RFC 9421's test-key-ed25519 (Appendix B.1.4), its private part.
pub fn key() -> Ed25519KeyPair {
    let seed = URL_SAFE_NO_PAD
        .decode("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU")
        .expect("the RFC's key");
    Ed25519KeyPair::from_seed_unchecked(&seed).expect("the RFC's key")
}

/// Its public key.
pub fn public() -> [u8; 32] {
    key().public_key().as_ref().try_into().expect("32 bytes")
}
