//! Macaroon V2 binary decoding (`turnpike_l402::Macaroon::decode`), the base64 forms, the L402
//! identifier and the caveat fold (`turnpike_l402::caveat::Constraints`).
//!
//! Decoding is strict (minimal varints, ordered fields, no trailing bytes), so a macaroon that
//! decodes must encode back to the very same bytes: there is one encoding per macaroon.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_l402::caveat::Constraints;
use turnpike_l402::{Identifier, Limits, Macaroon};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Macaroon::decode(data, Limits::default()) {
        assert_eq!(m.encode(), data, "decode/encode round trip");
        let _ = Identifier::decode(m.identifier());
        let _ = Constraints::from_caveats(m.caveats());
        assert!(!m.verify_signature(&[0u8; 32]) || m.expected_signature(&[0u8; 32]).is_some());
        let b64 = m.to_base64();
        let again = Macaroon::from_base64(&b64, Limits::default()).expect("own base64 decodes");
        assert_eq!(again.encode(), data);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Macaroon::from_base64(s, Limits::default());
        let _ = turnpike_l402::macaroon::decode_base64(s, 4096);
    }
    let _ = Identifier::decode(data);
    let mut c = Constraints::default();
    for pred in data.split(|&b| b == b'\n') {
        if c.add(pred).is_err() {
            break;
        }
    }
    let _ = c.mode();
});
