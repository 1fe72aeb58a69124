//! JWT access-token verification with the issuer's key cached, per algorithm.
//!
//! For each of ES256, RS256 (2048-bit), PS256 (2048-bit) and EdDSA (Ed25519):
//! - `signature/<alg>`: the signature check alone (`PublicKey::verify` on the signing input);
//! - `verify_detailed/<alg>`: the whole first check of a Bearer token the way the gateway asks
//!   for it (parse, header, key lookup, signature, claims, audience, times, scopes, identity),
//!   with the verified-token cache off;
//! - `verify_detailed_cached/<alg>`: the same token again, from the verified-token cache.
//!
//! The difference is the crate's own work around the signature check; `own_work/*` measures
//! its two parts alone (frame and header; payload, claims and their checks), which is steadier
//! on a busy machine. Plus `dpop_proof/ES256`: a DPoP proof's checks (all but recording its jti).
//!
//! Run: `cargo bench -p turnpike-oauth --bench verify`

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use turnpike_core::Credential;
use turnpike_oauth::dpop::{ProofChecker, ProofContext};
use turnpike_oauth::jose::{parse_compact, Alg, PublicKey, RawJwk};
use turnpike_oauth::token::{Claims, Expectations};
use turnpike_oauth::{OAuthConfig, OAuthOutcome, OAuthRail};

const ISSUER: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_900_000_000;

fn b64(d: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

fn input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(serde_json::to_vec(header).unwrap()),
        b64(serde_json::to_vec(claims).unwrap())
    )
}

/// Claims shaped like oidc-provider's JWT access tokens.
fn claims() -> Value {
    json!({
        "jti": "Vq3pYq1lX0tZf2wq8Kk1uXo6nH9mRr2cT5sY7aB4dE0",
        "sub": "agent-secret",
        "iat": NOW - 10,
        "exp": NOW + 600,
        "scope": "mcp:tools mcp:read",
        "client_id": "agent-secret",
        "iss": ISSUER,
        "aud": RESOURCE,
    })
}

struct Case {
    alg: Alg,
    jwk: Value,
    token: String,
}

fn es256() -> (Case, p256::ecdsa::SigningKey) {
    use p256::ecdsa::signature::Signer;
    let sk = p256::ecdsa::SigningKey::from_bytes(&[0x42; 32].into()).unwrap();
    let pt = sk.verifying_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "es", "x": b64(pt.x().unwrap()),
                     "y": b64(pt.y().unwrap())});
    let i = input(
        &json!({"alg": "ES256", "kid": "es", "typ": "at+jwt"}),
        &claims(),
    );
    let sig: p256::ecdsa::Signature = sk.sign(i.as_bytes());
    let token = format!("{i}.{}", b64(sig.to_bytes()));
    (
        Case {
            alg: Alg::ES256,
            jwk,
            token,
        },
        sk,
    )
}

fn eddsa() -> Case {
    use ed25519_dalek::Signer;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[0x24; 32]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed",
                     "x": b64(sk.verifying_key().to_bytes())});
    let i = input(
        &json!({"alg": "EdDSA", "kid": "ed", "typ": "at+jwt"}),
        &claims(),
    );
    let token = format!("{i}.{}", b64(sk.sign(i.as_bytes()).to_bytes()));
    Case {
        alg: Alg::EdDSA,
        jwk,
        token,
    }
}

fn rsa_cases() -> (Case, Case) {
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let jwk = json!({"kty": "RSA", "kid": "rs", "n": b64(key.n().to_bytes_be()),
                     "e": b64(key.e().to_bytes_be())});
    let i = input(
        &json!({"alg": "RS256", "kid": "rs", "typ": "at+jwt"}),
        &claims(),
    );
    let sig = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone()).sign(i.as_bytes());
    let rs = Case {
        alg: Alg::RS256,
        jwk: jwk.clone(),
        token: format!("{i}.{}", b64(sig.to_bytes())),
    };
    let i = input(
        &json!({"alg": "PS256", "kid": "rs", "typ": "at+jwt"}),
        &claims(),
    );
    let sig = rsa::pss::BlindedSigningKey::<Sha256>::new(key)
        .sign_with_rng(&mut rand_core::OsRng, i.as_bytes());
    let ps = Case {
        alg: Alg::PS256,
        jwk,
        token: format!("{i}.{}", b64(sig.to_bytes())),
    };
    (rs, ps)
}

/// Polls a future that never waits (keys are cached) to completion.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("verification waited although the keys are cached"),
    }
}

fn bench(c: &mut Criterion) {
    let (es, es_key) = es256();
    let (rs, ps) = rsa_cases();
    let ed = eddsa();
    let cases = [es, rs, ps, ed];
    let mut cfg = OAuthConfig::new(ISSUER).with_default_resource(RESOURCE);
    cfg.algorithms = vec![Alg::ES256, Alg::RS256, Alg::PS256, Alg::EdDSA];
    let mut uncached = cfg.clone();
    uncached.token_cache_entries = 0;
    let spent = Arc::new(turnpike_store::MemorySpentSet::new());
    let rail = OAuthRail::new(uncached, spent.clone()).unwrap();
    let cached = OAuthRail::new(cfg, spent).unwrap();
    let jwks = json!({"keys": cases.iter().map(|c| c.jwk.clone()).collect::<Vec<_>>()});
    // Keys installed "just now", so the key cache is fresh for the whole run.
    rail.preload_jwks(jwks.to_string().as_bytes()).unwrap();
    cached.preload_jwks(jwks.to_string().as_bytes()).unwrap();
    let needed = vec!["mcp:tools".to_string()];

    let mut g = c.benchmark_group("signature");
    for case in &cases {
        let raw: RawJwk = serde_json::from_value(case.jwk.clone()).unwrap();
        let key = PublicKey::from_jwk(&raw, false).unwrap();
        let jws = parse_compact(&case.token, &[case.alg]).unwrap();
        assert!(jws.verify_with(&key));
        let signing_input = jws.signing_input.as_bytes().to_vec();
        let sig = jws.signature.clone();
        g.bench_function(case.alg.name(), |b| {
            b.iter(|| black_box(key.verify(case.alg, black_box(&signing_input), &sig)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("verify_detailed");
    for case in &cases {
        let cred = Credential::from(turnpike_oauth::BearerCredential {
            token: case.token.clone(),
            dpop: None,
        });
        let o = ready(rail.verify_detailed(&cred, &needed, None, NOW));
        assert!(matches!(o, OAuthOutcome::Pass(_)), "{}: {o:?}", case.alg);
        g.bench_function(case.alg.name(), |b| {
            b.iter(|| {
                black_box(ready(rail.verify_detailed(
                    black_box(&cred),
                    &needed,
                    None,
                    NOW,
                )))
            })
        });
    }
    g.finish();

    // The same token again: served from the verified-token cache (SHA-256 of the token, a map
    // lookup, the time checks, scopes and identity; no signature check).
    let mut g = c.benchmark_group("verify_detailed_cached");
    for case in &cases {
        let cred = Credential::from(turnpike_oauth::BearerCredential {
            token: case.token.clone(),
            dpop: None,
        });
        let o = ready(cached.verify_detailed(&cred, &needed, None, NOW));
        assert!(matches!(o, OAuthOutcome::Pass(_)), "{}: {o:?}", case.alg);
        g.bench_function(case.alg.name(), |b| {
            b.iter(|| {
                black_box(ready(cached.verify_detailed(
                    black_box(&cred),
                    &needed,
                    None,
                    NOW,
                )))
            })
        });
    }
    g.finish();

    // The crate's own steps around the signature, measured alone (ES256 token): the frame and
    // header, then the payload, its claims and every claim check.
    let mut g = c.benchmark_group("own_work");
    let algs = [Alg::ES256, Alg::RS256, Alg::PS256, Alg::EdDSA];
    let token = cases[0].token.clone();
    g.bench_function("parse_header", |b| {
        b.iter(|| black_box(parse_compact(black_box(&token), &algs).map(|j| j.alg)))
    });
    let jws = parse_compact(&token, &algs).unwrap();
    let exp = Expectations {
        issuer: ISSUER,
        resource: RESOURCE,
        skew: 60,
        require_exp: true,
        require_aud: true,
        require_iss: true,
    };
    g.bench_function("payload_and_claims", |b| {
        b.iter(|| {
            let payload = black_box(&jws).payload().unwrap();
            let claims: Claims = serde_json::from_slice(&payload).unwrap();
            black_box(claims.check(&exp, NOW))
        })
    });
    g.finish();

    // A DPoP proof (ES256 key) for an ES256 token: every check but the jti record.
    let token = &cases[0].token;
    let pt = es_key.verifying_key().to_encoded_point(false);
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "x": b64(pt.x().unwrap()), "y": b64(pt.y().unwrap())});
    let jkt = b64(Sha256::digest(
        format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        )
        .as_bytes(),
    ));
    let i = input(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        &json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": RESOURCE, "iat": NOW,
                "ath": b64(Sha256::digest(token.as_bytes()))}),
    );
    let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&es_key, i.as_bytes());
    let proof = format!("{i}.{}", b64(sig.to_bytes()));
    let checker = ProofChecker {
        algs: vec![Alg::ES256],
        window: 300,
        skew: 60,
        nonces: None,
    };
    let cx = ProofContext {
        method: "POST",
        htu: RESOURCE,
        token,
        jkt: &jkt,
        body_sha256: None,
        now: NOW,
    };
    checker.check(&proof, &cx).unwrap();
    let mut g = c.benchmark_group("dpop_proof");
    g.bench_function("ES256", |b| {
        b.iter(|| black_box(checker.check(black_box(&proof), &cx)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
