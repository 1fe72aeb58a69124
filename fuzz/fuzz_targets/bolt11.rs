//! BOLT11 invoice decoding (`turnpike_lightning::bolt11::decode`): bech32 with its checksum,
//! tagged fields, the amount, and signature recovery. Invoices come from Lightning backends
//! (a compromised or faulty node is an attacker here) and are checked before they are offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_lightning::bolt11::{bech32_decode, bech32_encode, bytes_to_words, decode, words_to_bytes};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        let w: Vec<u8> = data.iter().map(|b| b & 31).collect();
        let _ = words_to_bytes(&w);
        let _ = bytes_to_words(data);
        return;
    };
    if let Ok(inv) = decode(s) {
        let _ = inv.expires_at();
        let _ = inv.network.prefix();
    }
    if let Ok((hrp, words)) = bech32_decode(s) {
        assert!(words.iter().all(|w| *w < 32));
        // What decodes encodes back to the same text, in lower case.
        assert_eq!(bech32_encode(&hrp, &words), s.to_ascii_lowercase());
    }
});
