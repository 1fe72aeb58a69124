//! L402 verification cost.
//!
//! - `offline`: decode (base64 and V2), identifier, preimage check, HMAC chain, caveats — what
//!   a credential costs before any state is touched (target ≤ 10 µs);
//! - `rail/time_pass_memory`: the whole rail verification with the in-memory store;
//! - `rail/balance_sqlite`: the whole rail verification with a SQLite file store, including
//!   the atomic debit (one write transaction) per call.
//!
//! Run: `cargo bench -p turnpike-l402 --bench verify`.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;

use turnpike_core::{CallFacts, Credential, Offer, Verdict};
use turnpike_l402::macaroon::decode_base64;
use turnpike_l402::BillingMode;
use turnpike_l402::{
    check_token, decode_token, Durability, Identifier, L402Config, L402Rail, Limits, Macaroon,
    MemoryStore, SqliteStore,
};
use turnpike_lightning::dev::DevBackend;
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

fn offline(c: &mut Criterion) {
    use sha2::{Digest, Sha256};
    let root = [7u8; 32];
    let preimage = [9u8; 32];
    let id = Identifier {
        payment_hash: Sha256::digest(preimage).into(),
        token_id: [1; 32],
    };
    let mut m = Macaroon::new(&root, id.encode().to_vec(), "turnpike");
    for cav in [
        "turnpike/resource=/mcp",
        "turnpike/methods=tools/call",
        "turnpike/tools=echo",
        "turnpike/mode=per_call",
        "turnpike/expires=1900000000",
    ] {
        m.add_first_party_caveat(cav);
    }
    let b64 = m.to_base64();
    let facts = call(1_800_000_000);
    let bytes = decode_base64(&b64, 4096).unwrap();
    let (mac, _) = decode_token(&bytes, &preimage, Limits::default()).unwrap();
    c.bench_function("offline/decode_only", |b| {
        b.iter(|| decode_token(black_box(&bytes), &preimage, Limits::default()).unwrap())
    });
    c.bench_function("offline/hmac_chain_only", |b| {
        b.iter(|| black_box(&mac).verify_signature(&root))
    });
    c.bench_function("offline", |b| {
        b.iter(|| {
            let bytes = decode_base64(black_box(&b64), 4096).unwrap();
            let (mac, _id) = decode_token(&bytes, &preimage, Limits::default()).unwrap();
            check_token(&mac, &root, &facts, BillingMode::PerCall, &preimage).unwrap()
        })
    });
}

fn rail(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let facts = call(now);

    // Time pass, in-memory store: the full rail path without a write.
    let dev = Arc::new(DevBackend::regtest());
    let mem = L402Rail::new(
        L402Config::default(),
        dev.clone(),
        Arc::new(MemoryStore::new()),
        Arc::new(MemorySpentSet::new()),
    );
    let pass = turnpike_l402::offer(1000, BillingMode::TimePass, 86_400);
    let cred = rt.block_on(buy(&mem, &dev, &facts, &pass));
    c.bench_function("rail/time_pass_memory", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(matches!(
                mem.check(&facts, &pass, &cred).await,
                Verdict::Pass(_)
            ));
        })
    });

    // Balance, SQLite file store: root key and token reads, then the debit transaction.
    let dir = std::env::temp_dir().join(format!("turnpike-l402-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("l402.sqlite"), Durability::Normal).unwrap();
    let sql = L402Rail::new(
        L402Config::default(),
        dev.clone(),
        Arc::new(store),
        Arc::new(MemorySpentSet::new()),
    );
    let balance = turnpike_l402::offer(1, BillingMode::Balance, 1_000_000_000_000);
    let cred = rt.block_on(buy(&sql, &dev, &facts, &balance));
    c.bench_function("rail/balance_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(matches!(
                sql.check(&facts, &balance, &cred).await,
                Verdict::Pass(_)
            ));
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

async fn buy(rail: &L402Rail, dev: &DevBackend, facts: &CallFacts, offer: &Offer) -> Credential {
    let ch = rail.mint(facts, offer).await.unwrap();
    let mac = ch.details["macaroon"].as_str().unwrap();
    let pre = dev.pay(ch.details["invoice"].as_str().unwrap()).unwrap();
    Credential::from(turnpike_l402::L402Credential {
        macaroon: decode_base64(mac, 4096).unwrap(),
        preimage: pre.to_vec(),
    })
}

criterion_group!(benches, offline, rail);
criterion_main!(benches);
