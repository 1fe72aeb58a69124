//! Proof-of-work challenge and solution decoding: the 148-character token
//! (`ChallengeToken::decode`), its 111 bytes (`from_bytes`), the target arithmetic, the nonce
//! check, and the `Authorization: PoW` parameters.
//!
//! Decoding is strict base64url without padding, so a token that decodes encodes back to the
//! same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_pow::credential::{parse_nonce_list, parse_pow_params};
use turnpike_pow::puzzle::{subpuzzle_effort, TOKEN_LEN};
use turnpike_pow::{check_nonce, target_for, ChallengeToken};

fn exercise(t: &ChallengeToken, nonces: &[u64]) {
    let target = t.target();
    assert_eq!(target, target_for(t.effort(), t.subpuzzles()));
    let _ = subpuzzle_effort(t.effort(), t.subpuzzles());
    let _ = t.signed_bytes();
    for (i, n) in nonces.iter().take(64).enumerate() {
        let _ = check_nonce(t.raw(), i as u8, *n, target);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() >= TOKEN_LEN {
        let mut raw = [0u8; TOKEN_LEN];
        raw.copy_from_slice(&data[..TOKEN_LEN]);
        if let Ok(t) = ChallengeToken::from_bytes(raw) {
            let enc = t.encode();
            let back = ChallengeToken::decode(&enc).expect("own encoding decodes");
            assert_eq!(back.raw(), &raw);
            let nonces: Vec<u64> = data[TOKEN_LEN..]
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                .collect();
            exercise(&t, &nonces);
        }
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = ChallengeToken::decode(s) {
        assert_eq!(t.encode(), s, "one text per token");
        exercise(&t, &[0, 1, u64::MAX]);
    }
    if let Ok(cred) = parse_pow_params(s) {
        assert!(cred.solution.len() <= 64);
        if let Ok(t) = ChallengeToken::decode(&cred.challenge) {
            exercise(&t, &cred.solution);
        }
    }
    let _ = parse_nonce_list(s);
});
