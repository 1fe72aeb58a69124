//! MPP verification cost.
//!
//! - `offline`: what a credential costs before any state is touched — the `Authorization`
//!   token decoded (base64url, JSON), the challenge id recomputed (HMAC-SHA256 over the seven
//!   slots) and compared, the expiry, the call's scope digest, the request decoded and the
//!   preimage hashed (target ≤ 10 µs);
//! - `rail`: the whole rail verification with the in-memory spent set (a fresh payment each
//!   iteration);
//! - `evm_offline`: the `evm` method's offline checks from the `Authorization` token — decoded,
//!   the challenge id recomputed and compared, expiry and scope, the request's terms, the
//!   payload read, the challenge's nonce (Keccak-256) and the payer's EIP-712 signature
//!   recovered (secp256k1, k256): what a credential costs before the spent set or the chain.
//!
//! Run: `cargo bench -p turnpike-mpp --bench verify` (`-- evm` for the `evm` method alone).

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::sync::Arc;

use serde_json::Map;
use turnpike_core::{CallFacts, Credential, Rail, Verdict};
use turnpike_lightning::dev::DevBackend;
use turnpike_mpp::rail::EvmConfig;
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

/// An `evm` rail on USDC on Base (a node that is never asked), and a credential for `call`
/// signed by the key `0x11…11`, as its `Authorization` token.
fn evm_rail_and_token(call: &CallFacts) -> (MppRail, String) {
    use turnpike_evm::evm as x;
    let cfg = turnpike_evm::token::X402Config::offline_example();
    let node =
        turnpike_evm::chain::Node::new(&cfg.rpc_url, std::time::Duration::from_secs(1)).unwrap();
    let settler = turnpike_evm::token::Settler::own(
        turnpike_evm::token::parse_key(&"03".repeat(32)).unwrap(),
    );
    let token = Arc::new(turnpike_evm::token::Token::new(&cfg, node, settler).unwrap());
    let rail = MppRail::with_methods(
        MppConfig {
            evm: Some(EvmConfig { decimals: 6 }),
            ..MppConfig::default()
        },
        "mcp.example.com".into(),
        [7; 32],
        None,
        Some(token.clone()),
        Arc::new(MemorySpentSet::new()),
    );
    let c = rail.issue_evm(call, 10_000).unwrap();
    let key = turnpike_evm::token::parse_key(&"11".repeat(32)).unwrap();
    let from = x::address_of(key.verifying_key());
    let valid_before = turnpike_mpp::wire::parse_rfc3339(c.expires.as_deref().unwrap()).unwrap();
    let a = x::Authorization {
        from,
        to: token.pay_to(),
        value: 10_000,
        valid_after: 0,
        valid_before: u128::from(valid_before),
        nonce: turnpike_mpp::evm::challenge_nonce(&c.id, &c.realm),
    };
    let sig = x::sign(&key, &a.digest_with(&token.separator())).unwrap();
    let mut bytes = sig.r.to_vec();
    bytes.extend_from_slice(&sig.s);
    bytes.push(sig.v);
    let mut payload = Map::new();
    for (k, v) in [
        ("type", "authorization".to_string()),
        ("from", x::checksum(&from)),
        ("to", x::checksum(&a.to)),
        ("value", "10000".into()),
        ("validAfter", "0".into()),
        ("validBefore", valid_before.to_string()),
        ("nonce", format!("0x{}", hex::encode(a.nonce))),
        ("signature", format!("0x{}", hex::encode(bytes))),
    ] {
        payload.insert(k.into(), v.into());
    }
    let cred = PaymentCredential {
        challenge: c,
        source: None,
        payload,
    };
    let token = cred
        .authorization()
        .strip_prefix("Payment ")
        .unwrap()
        .to_owned();
    (rail, token)
}

fn bench_evm(c: &mut Criterion) {
    let facts = call(turnpike_core::unix_now());
    let (rail, token) = evm_rail_and_token(&facts);
    let offer = turnpike_mpp::offers(None, Some(10_000)).remove(0);
    println!("evm credential token: {} bytes", token.len());
    c.bench_function("evm_offline", |b| {
        b.iter(|| {
            let cred = PaymentCredential::from_token(black_box(&token)).unwrap();
            rail.check_evm(&facts, &offer, &cred).unwrap()
        })
    });
}

criterion_group!(benches, bench, bench_evm);
criterion_main!(benches);
