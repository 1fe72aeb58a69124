//! One Web Bot Auth verification with the key directory cached: parsing both signature
//! fields and Signature-Agent, the profile's checks, the signature base and the Ed25519
//! check (the nonce guard accepts every nonce, so the same request verifies each round).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use turnpike_webbotauth::sf::{parse_dictionary, Member};
use turnpike_webbotauth::{
    ed25519_thumbprint, signature_base, Clock, KeyDirectory, NonceGuard, NonceRefused, Policy,
    RequestParts, Verifier,
};

const NOW: u64 = 1_800_000_000;
const AGENT: &str = "https://agent.example/.well-known/http-message-signatures-directory";

struct Fixed;
impl Clock for Fixed {
    fn now(&self) -> u64 {
        NOW
    }
}

struct AcceptAll;
impl NonceGuard for AcceptAll {
    fn spend(&self, _: &str, _: &str, _: u64, _: u64) -> Result<(), NonceRefused> {
        Ok(())
    }
}

fn signed_request(key: &Ed25519KeyPair, keyid: &str) -> Option<Request<()>> {
    let input = format!(
        r#"sig1=("@authority" "signature-agent");created={};keyid="{keyid}";alg="ed25519";expires={};nonce="{}";tag="web-bot-auth""#,
        NOW - 5,
        NOW + 295,
        STANDARD.encode([9u8; 64]),
    );
    let unsigned = Request::get("https://shop.example/tools/list?page=2")
        .header("signature-agent", format!("\"{AGENT}\""))
        .body(())
        .ok()?;
    let dict = parse_dictionary(input.as_bytes()).ok()?;
    let Some(Member::InnerList(list)) = dict.get("sig1") else {
        return None;
    };
    let base = signature_base(&RequestParts::from_request(&unsigned, "https"), list).ok()?;
    let sig = key.sign(&base);
    let (mut parts, body) = unsigned.into_parts();
    parts.headers.insert("signature-input", input.parse().ok()?);
    parts.headers.insert(
        "signature",
        format!("sig1=:{}:", STANDARD.encode(sig.as_ref()))
            .parse()
            .ok()?,
    );
    Some(Request::from_parts(parts, body))
}

fn bench(c: &mut Criterion) {
    let Ok(key) = Ed25519KeyPair::from_seed_unchecked(&[42u8; 32]) else {
        return;
    };
    let Ok(public) = <[u8; 32]>::try_from(key.public_key().as_ref()) else {
        return;
    };
    let mut verifier = Verifier::new(Policy::default(), Arc::new(Fixed), Arc::new(AcceptAll));
    verifier.set_directory(AGENT, KeyDirectory::from_ed25519(&[public]));
    let Some(req) = signed_request(&key, &ed25519_thumbprint(&public)) else {
        return;
    };
    assert!(
        verifier.verify(&req, "https").is_ok(),
        "the bench request must verify"
    );
    c.bench_function("verify web-bot-auth request (directory cached)", |b| {
        b.iter(|| verifier.verify(std::hint::black_box(&req), "https"))
    });
    // The Ed25519 check alone, for comparison.
    let base = [7u8; 120];
    let sig = key.sign(&base);
    let unparsed = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
    c.bench_function("ed25519 verify alone (ring)", |b| {
        b.iter(|| unparsed.verify(std::hint::black_box(&base), sig.as_ref()))
    });
    if let (Ok(vk), Ok(ds)) = (
        ed25519_dalek::VerifyingKey::from_bytes(&public),
        ed25519_dalek::Signature::from_slice(sig.as_ref()),
    ) {
        c.bench_function("ed25519 verify alone (ed25519-dalek)", |b| {
            b.iter(|| vk.verify_strict(std::hint::black_box(&base), &ds))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
