//! DPoP proofs and the JOSE layer under them (`turnpike_oauth::dpop`, `turnpike_oauth::jose`):
//! compact JWS framing, the JOSE header, JWKs of every key type, and every claim check.
//!
//! The first byte picks what the rest is:
//! - 0: a whole `DPoP` header value, checked as the resource server checks it;
//! - 1: a JWK (JSON), turned into a verification key (public-only and JWKS modes);
//! - 2: the claims of a proof, which the harness signs (ES256, fixed key) so the fuzzer reaches
//!   the checks behind the signature: `jti`, `htm`, `htu`, `iat`, `ath`, nonce, content digest.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use turnpike_oauth::dpop::{NonceIssuer, ProofChecker, ProofContext};
use turnpike_oauth::jose::{looks_like_jws, parse_compact, sha256_b64, Alg, PublicKey, RawJwk};

const NOW: u64 = 1_767_225_600;
const TOKEN: &str = "access-token";

fn checker(nonces: bool) -> ProofChecker {
    ProofChecker {
        algs: vec![Alg::ES256, Alg::EdDSA, Alg::RS256, Alg::PS256],
        window: 300,
        skew: 60,
        nonces: nonces.then(|| NonceIssuer::new([7u8; 32], 300)),
    }
}

fn signed(payload: &[u8], key: &SigningKey) -> (String, String) {
    let point = key.verifying_key().to_encoded_point(false);
    let x = URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed"));
    let y = URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed"));
    let header = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}}}"#
    );
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.as_bytes()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig: Signature = key.sign(input.as_bytes());
    let jwk: RawJwk = serde_json::from_str(&format!(
        r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#
    ))
    .expect("a JWK");
    let jkt = PublicKey::from_jwk(&jwk, true).expect("a key").thumbprint();
    (
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes())),
        jkt,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(proof) = std::str::from_utf8(rest) else {
                return;
            };
            let _ = looks_like_jws(proof);
            let _ = parse_compact(proof, &[Alg::ES256, Alg::RS256, Alg::EdDSA, Alg::PS256]);
            let cx = ProofContext {
                method: "POST",
                htu: "https://mcp.example.com/mcp",
                token: TOKEN,
                jkt: "",
                body_sha256: None,
                now: NOW,
            };
            let _ = checker(mode & 4 != 0).check(proof, &cx);
        }
        1 => {
            if let Ok(jwk) = serde_json::from_slice::<RawJwk>(rest) {
                for public_only in [true, false] {
                    if let Ok(k) = PublicKey::from_jwk(&jwk, public_only) {
                        let _ = k.thumbprint();
                        for alg in [Alg::ES256, Alg::RS256, Alg::PS256, Alg::EdDSA] {
                            if k.fits(alg) {
                                assert!(!k.verify(alg, b"x", &[0u8; 64]));
                            }
                        }
                    }
                }
            }
        }
        _ => {
            let key = SigningKey::from_slice(&[0x11; 32]).expect("a P-256 scalar");
            let (proof, jkt) = signed(rest, &key);
            let _ = sha256_b64(TOKEN.as_bytes());
            let cx = ProofContext {
                method: "POST",
                htu: "https://mcp.example.com/mcp",
                token: TOKEN,
                jkt: &jkt,
                body_sha256: (mode & 8 != 0).then_some([3u8; 32]),
                now: NOW,
            };
            let _ = checker(mode & 4 != 0).check(&proof, &cx);
        }
    }
});
