//! Instructions per JWT verification, counted by valgrind's callgrind: a figure a busy machine
//! does not move (the criterion bench `verify` times the same work).
//!
//! For ES256, RS256 (2048-bit), PS256 (2048-bit) and EdDSA, three measurements, each the
//! difference between two callgrind runs of the same program, one making N verifications and
//! one making none, divided by N (set-up, the keys' and the rail's, is the same in both and
//! cancels; the keys and tokens are made beforehand, outside callgrind, and handed to both):
//! - `signature`: the signature check alone (`PublicKey::verify`);
//! - `uncached`: the whole first check of a Bearer token (frame, header, key lookup, signature,
//!   claims, audience, times, scopes, identity), verified-token cache off;
//! - `cached`: the same token again, from the verified-token cache;
//!
//! plus `dpop`: a DPoP proof's checks (ES256 proof; all but recording its jti), and `key`: a
//! P-256 JWK read into a key (what a proof's `jwk` costs on every call: base64url, the point
//! checked on the curve with the p256 crate, the thumbprint's canonical JSON).
//!
//! Run: `cargo run --release -p turnpike-oauth --example verify_count [N]` (N = 200 by
//! default; needs valgrind). With `--inner …` it is the measured program itself.
//!
//! Valgrind's CPU offers no AVX-512, so ring runs its AVX2 (or older) code paths here.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use turnpike_core::Credential;
use turnpike_oauth::dpop::{ProofChecker, ProofContext};
use turnpike_oauth::jose::{parse_compact, Alg, PublicKey, RawJwk};
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

/// Claims shaped like oidc-provider's JWT access tokens (as in the bench).
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

/// A signed token of `alg` and the JWK that verifies it; the P-256 key too, for DPoP.
fn case(alg: Alg) -> (Value, String, Option<p256::ecdsa::SigningKey>) {
    match alg {
        Alg::ES256 => {
            use p256::ecdsa::signature::Signer;
            let sk = p256::ecdsa::SigningKey::from_bytes(&[0x42; 32].into()).unwrap();
            let pt = sk.verifying_key().to_encoded_point(false);
            let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k", "x": b64(pt.x().unwrap()),
                             "y": b64(pt.y().unwrap())});
            let i = input(
                &json!({"alg": "ES256", "kid": "k", "typ": "at+jwt"}),
                &claims(),
            );
            let sig: p256::ecdsa::Signature = sk.sign(i.as_bytes());
            (jwk, format!("{i}.{}", b64(sig.to_bytes())), Some(sk))
        }
        Alg::EdDSA => {
            use ed25519_dalek::Signer;
            let sk = ed25519_dalek::SigningKey::from_bytes(&[0x24; 32]);
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k",
                             "x": b64(sk.verifying_key().to_bytes())});
            let i = input(
                &json!({"alg": "EdDSA", "kid": "k", "typ": "at+jwt"}),
                &claims(),
            );
            let sig = b64(sk.sign(i.as_bytes()).to_bytes());
            (jwk, format!("{i}.{sig}"), None)
        }
        Alg::RS256 | Alg::PS256 => {
            use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
            let jwk = json!({"kty": "RSA", "kid": "k", "n": b64(key.n().to_bytes_be()),
                             "e": b64(key.e().to_bytes_be())});
            let i = input(
                &json!({"alg": alg.name(), "kid": "k", "typ": "at+jwt"}),
                &claims(),
            );
            let sig = if alg == Alg::RS256 {
                rsa::pkcs1v15::SigningKey::<Sha256>::new(key)
                    .sign(i.as_bytes())
                    .to_vec()
            } else {
                rsa::pss::BlindedSigningKey::<Sha256>::new(key)
                    .sign_with_rng(&mut rand_core::OsRng, i.as_bytes())
                    .to_vec()
            };
            (jwk, format!("{i}.{}", b64(sig)), None)
        }
        other => panic!("{other} is not measured here"),
    }
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

/// `n` runs of `f`, each result kept from the optimiser.
fn repeat<T>(n: u64, mut f: impl FnMut() -> T) {
    for _ in 0..n {
        black_box(f());
    }
}

/// What one measured run gets: the key, a token it signed, and for DPoP a proof and the
/// thumbprint of its key.
struct Inputs {
    jwk: Value,
    token: String,
    proof: String,
    jkt: String,
}

/// The inputs for `alg`, made outside callgrind.
fn inputs(alg: Alg) -> Inputs {
    let (jwk, token, sk) = case(alg);
    let (proof, jkt) = match sk {
        Some(sk) => {
            let pt = sk.verifying_key().to_encoded_point(false);
            let (x, y) = (b64(pt.x().unwrap()), b64(pt.y().unwrap()));
            let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            let jkt = b64(Sha256::digest(canonical.as_bytes()));
            let i = input(
                &json!({"typ": "dpop+jwt", "alg": "ES256",
                        "jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": y}}),
                &json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": RESOURCE, "iat": NOW,
                        "ath": b64(Sha256::digest(token.as_bytes()))}),
            );
            let sig: p256::ecdsa::Signature =
                p256::ecdsa::signature::Signer::sign(&sk, i.as_bytes());
            (format!("{i}.{}", b64(sig.to_bytes())), jkt)
        }
        None => (String::new(), String::new()),
    };
    Inputs {
        jwk,
        token,
        proof,
        jkt,
    }
}

/// The measured program: set-up, one verification to check the inputs, then `n` more.
fn inner(alg: Alg, phase: &str, n: u64, x: &Inputs) {
    let cfg = {
        let mut c = OAuthConfig::new(ISSUER).with_default_resource(RESOURCE);
        c.algorithms = vec![alg];
        c.token_cache_entries = if phase == "cached" { 10_000 } else { 0 };
        c
    };
    let rail = OAuthRail::new(cfg, Arc::new(turnpike_store::MemorySpentSet::new())).unwrap();
    rail.preload_jwks(json!({"keys": [x.jwk]}).to_string().as_bytes())
        .unwrap();
    let needed = vec!["mcp:tools".to_string()];
    let cred = Credential::from(turnpike_oauth::BearerCredential {
        token: x.token.clone(),
        dpop: None,
    });
    let o = ready(rail.verify_detailed(&cred, &needed, None, NOW));
    assert!(matches!(o, OAuthOutcome::Pass(_)), "{alg}: {o:?}");
    match phase {
        "signature" => {
            let raw: RawJwk = serde_json::from_value(x.jwk.clone()).unwrap();
            let key = PublicKey::from_jwk(&raw, false).unwrap();
            let jws = parse_compact(&x.token, &[alg]).unwrap();
            let signing_input = jws.signing_input.as_bytes();
            assert!(key.verify(alg, signing_input, &jws.signature));
            repeat(n, || {
                key.verify(alg, black_box(signing_input), &jws.signature)
            });
        }
        "key" => {
            let raw: RawJwk = serde_json::from_value(x.jwk.clone()).unwrap();
            repeat(n, || PublicKey::from_jwk(black_box(&raw), true).is_ok());
        }
        "uncached" | "cached" => repeat(n, || {
            matches!(
                ready(rail.verify_detailed(black_box(&cred), &needed, None, NOW)),
                OAuthOutcome::Pass(_)
            )
        }),
        "dpop" => {
            let checker = ProofChecker {
                algs: vec![Alg::ES256],
                window: 300,
                skew: 60,
                nonces: None,
            };
            let cx = ProofContext {
                method: "POST",
                htu: RESOURCE,
                token: &x.token,
                jkt: &x.jkt,
                body_sha256: None,
                now: NOW,
            };
            checker.check(&x.proof, &cx).unwrap();
            repeat(n, || checker.check(black_box(&x.proof), &cx).is_ok());
        }
        other => panic!("unknown phase {other}"),
    }
}

/// Instructions of one callgrind run of `--inner` making `n` verifications.
fn total(exe: &std::path::Path, alg: Alg, phase: &str, n: u64, x: &Inputs) -> u64 {
    let out = std::env::temp_dir().join(format!(
        "turnpike-verify-count.{}.{alg}.{phase}.{n}",
        std::process::id()
    ));
    let status = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            &format!("--callgrind-out-file={}", out.display()),
        ])
        .arg(exe)
        .args(["--inner", alg.name(), phase, &n.to_string()])
        .args([&x.jwk.to_string(), &x.token, &x.proof, &x.jkt])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("valgrind could not be started (is it installed?)");
    assert!(status.success(), "callgrind run of {alg} {phase} failed");
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("no totals in the callgrind output")
}

/// Instructions per verification: (N verifications − none) / N.
fn count(exe: &std::path::Path, alg: Alg, phase: &str, n: u64, x: &Inputs) -> u64 {
    total(exe, alg, phase, n, x).saturating_sub(total(exe, alg, phase, 0, x)) / n
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--inner") {
        let alg = Alg::from_name(&args[2]).expect("an algorithm");
        let x = Inputs {
            jwk: serde_json::from_str(&args[5]).expect("a JWK"),
            token: args[6].clone(),
            proof: args[7].clone(),
            jkt: args[8].clone(),
        };
        inner(alg, &args[3], args[4].parse().expect("a count"), &x);
        return;
    }
    let n: u64 = args.get(1).map_or(200, |s| s.parse().expect("N: a count"));
    assert!(n > 0, "N must be at least 1");
    let exe = std::env::current_exe().unwrap();
    println!("instructions per verification (callgrind, N = {n} each)");
    println!(
        "{:<6} {:>12} {:>12} {:>12} {:>12}",
        "alg", "signature", "uncached", "around it", "cached"
    );
    for alg in [Alg::ES256, Alg::RS256, Alg::PS256, Alg::EdDSA] {
        let x = inputs(alg);
        let sig = count(&exe, alg, "signature", n, &x);
        let full = count(&exe, alg, "uncached", n, &x);
        let cached = count(&exe, alg, "cached", n, &x);
        println!(
            "{:<6} {sig:>12} {full:>12} {:>12} {cached:>12}",
            alg.name(),
            full.saturating_sub(sig)
        );
    }
    let dpop = count(&exe, Alg::ES256, "dpop", n, &inputs(Alg::ES256));
    println!("DPoP proof (ES256), every check but the jti record: {dpop}");
    let key = count(&exe, Alg::ES256, "key", n, &inputs(Alg::ES256));
    println!("a P-256 JWK read into a key (as a proof's jwk is): {key}");
}
