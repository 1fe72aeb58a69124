//! x402 verification cost before any chain call.
//!
//! - `offline`: what a payment costs before any state is touched — the `PAYMENT-SIGNATURE`
//!   header decoded (base64, JSON, every field), the offer's binding recomputed (HMAC-SHA256)
//!   and compared, the terms and times, the EIP-712 digest (Keccak-256) and the signer
//!   recovered (secp256k1) (target ≤ 100 µs);
//! - `recover`, `recover_k256`, `decode`: its parts — the signer's recovery as the rail does it
//!   and as k256's `recover_from_prehash` does it (which also verifies the key), and the
//!   header's decoding.
//!
//! Run: `cargo bench -p turnpike-x402 --bench verify`.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use k256::ecdsa::SigningKey;
use turnpike_core::CallFacts;
use turnpike_store::MemorySpentSet;
use turnpike_x402::chain::Node;
use turnpike_x402::rail::Settler;
use turnpike_x402::{payer, wire, PaymentPayload, X402Config, X402Rail};

fn config() -> X402Config {
    X402Config {
        max_timeout_secs: 300,
        ..X402Config::offline_example()
    }
}

fn bench(c: &mut Criterion) {
    let now = turnpike_core::unix_now();
    let rail = X402Rail::new(
        config(),
        [7; 32],
        "https://mcp.example.com/mcp".into(),
        Arc::new(MemorySpentSet::new()),
        Node::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap(),
        Settler::own(SigningKey::from_slice(&[3; 32]).unwrap()),
    )
    .unwrap();
    let call = CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now,
    };
    let offer = turnpike_x402::offer(10_000);
    let req = rail.requirements(&call, 10_000);
    let payer_key = SigningKey::from_slice(&[5; 32]).unwrap();
    let payment = payer::pay(&req, &payer_key, [9; 32], 0, now + 120).unwrap();
    let header = wire::b64(payment.to_string().as_bytes());
    assert!(rail
        .check(
            &call,
            &offer,
            &PaymentPayload::from_header(&header).unwrap()
        )
        .is_ok());
    let p = PaymentPayload::from_header(&header).unwrap();
    let digest = [7u8; 32];
    c.bench_function("recover", |b| {
        b.iter(|| {
            black_box(turnpike_x402::evm::recover(
                black_box(&digest),
                &p.signature,
            ))
        })
    });
    // For comparison: k256's recovery, which verifies the key it recovers.
    let sig = k256::ecdsa::Signature::from_scalars(p.signature.r, p.signature.s).unwrap();
    let recid = k256::ecdsa::RecoveryId::from_byte(p.signature.v - 27).unwrap();
    c.bench_function("recover_k256", |b| {
        b.iter(|| {
            black_box(
                k256::ecdsa::VerifyingKey::recover_from_prehash(black_box(&digest), &sig, recid)
                    .is_ok(),
            )
        })
    });
    c.bench_function("decode", |b| {
        b.iter(|| black_box(PaymentPayload::from_header(black_box(&header)).is_ok()))
    });
    c.bench_function("offline", |b| {
        b.iter(|| {
            let p = PaymentPayload::from_header(black_box(&header)).unwrap();
            black_box(rail.check(&call, &offer, &p).is_ok())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
