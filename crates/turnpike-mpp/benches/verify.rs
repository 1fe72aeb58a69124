//! MPP verification cost.
//!
//! - `offline`: what a credential costs before any state is touched — the `Authorization`
//!   token decoded (base64url, JSON), the challenge id recomputed (HMAC-SHA256 over the seven
//!   slots) and compared, the expiry, the call's scope digest, the request decoded and the
//!   preimage hashed (target ≤ 10 µs);
//! - `rail`: the whole rail verification with the in-memory spent set (a fresh payment each
//!   iteration).
//!
//! Run: `cargo bench -p turnpike-mpp --bench verify`.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::sync::Arc;

use serde_json::Map;
use turnpike_core::{CallFacts, Credential, Rail, Verdict};
use turnpike_lightning::dev::DevBackend;
use turnpike_mpp::{MppConfig, MppRail, PaymentChallenge, PaymentCredential};
use turnpike_store::MemorySpentSet;

fn call(now: u64) -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now,
    }
}

/// A paid credential for `call`, as its `Authorization` token.
fn paid(
    rt: &tokio::runtime::Runtime,
    rail: &MppRail,
    dev: &DevBackend,
    call: &CallFacts,
) -> String {
    let offer = turnpike_mpp::offer(10);
    let c = rt.block_on(rail.mint(call, &offer)).unwrap();
    let ch = PaymentChallenge::parse_header(&c.www_authenticate).unwrap();
    let invoice = c.details["request"]["methodDetails"]["invoice"]
        .as_str()
        .unwrap();
    let preimage = dev.pay(invoice).unwrap();
    let mut payload = Map::new();
    payload.insert("preimage".into(), hex::encode(preimage).into());
    let cred = PaymentCredential {
        challenge: ch,
        source: None,
        payload,
    };
    cred.authorization()
        .strip_prefix("Payment ")
        .unwrap()
        .to_owned()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dev = Arc::new(DevBackend::regtest());
    let cfg = MppConfig {
        invoices_per_minute_per_caller: 0,
        invoices_per_minute: 0,
        ..MppConfig::default()
    };
    let rail = MppRail::new(
        cfg,
        "mcp.example.com".into(),
        [7; 32],
        dev.clone(),
        Arc::new(MemorySpentSet::new()),
    );
    let now = turnpike_core::unix_now();
    let facts = call(now);
    let offer = turnpike_mpp::offer(10);
    let token = paid(&rt, &rail, &dev, &facts);
    println!("credential token: {} bytes", token.len());
    c.bench_function("offline", |b| {
        b.iter(|| {
            let cred = PaymentCredential::from_token(black_box(&token)).unwrap();
            rail.check(&facts, &offer, &cred).unwrap()
        })
    });
    c.bench_function("rail", |b| {
        b.iter_batched(
            || {
                let cred = PaymentCredential::from_token(&paid(&rt, &rail, &dev, &facts)).unwrap();
                Credential::new(turnpike_mpp::RAIL, cred)
            },
            |cred| {
                let v = rt.block_on(rail.verify(&facts, &offer, &cred));
                assert!(matches!(v, Verdict::Pass(_)));
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
