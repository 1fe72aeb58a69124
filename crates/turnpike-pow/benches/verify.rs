//! Verification cost: a full valid verification (tag, scope, 4 sub-puzzles, in-memory spent-set
//! insert) and the rejection paths (forged tag; genuine token with a wrong solution).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use turnpike_core::{CallFacts, Credential, Rail, Verdict};
use turnpike_pow::puzzle::check_nonce;
use turnpike_pow::PowCredential;
use turnpike_pow::{ChallengeToken, KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn call() -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [7; 32],
        caller: None,
        peer: None,
        now: 1_700_000_000,
    }
}

fn solve(t: &ChallengeToken) -> Vec<u64> {
    let target = t.target();
    (0..t.subpuzzles())
        .map(|i| {
            (0u64..)
                .find(|&n| check_nonce(t.raw(), i, n, target))
                .unwrap_or(0)
        })
        .collect()
}

const EFFORT: u64 = 64;

fn bench(c: &mut Criterion) {
    let rail = PowRail::new(
        PowConfig::default(),
        KeyRing::from_secrets(vec![(1, [1; 32])]).unwrap_or_else(|e| panic!("{e}")),
        Arc::new(MemorySpentSet::with_epoch_start(0)),
    );
    let facts = call();
    let offer = turnpike_pow::offer(EFFORT);
    let mut g = c.benchmark_group("verify");

    // Time moves one second every 1,000 verifications, so the spent set holds what a gateway
    // doing 1,000 passes a second holds (challenges live 300 s) instead of growing forever.
    let mut n = 0u64;
    let mut now_facts = facts.clone();
    g.bench_function("valid_k4", |b| {
        b.iter_batched(
            || {
                n += 1;
                now_facts.now = facts.now + n / 1000;
                let t = rail.mint(&now_facts, EFFORT);
                let cred = Credential::from(PowCredential {
                    challenge: t.encode(),
                    solution: solve(&t),
                });
                (cred, now_facts.clone())
            },
            |(cred, at)| {
                let v = block_on(rail.verify(&at, &offer, &cred));
                assert!(matches!(v, Verdict::Pass(_)));
                (v, cred, at)
            },
            BatchSize::SmallInput,
        )
    });

    let t = rail.mint(&facts, EFFORT);
    let mut forged = *t.raw();
    forged[100] ^= 1;
    let forged = Credential::from(PowCredential {
        challenge: base64_url(&forged),
        solution: solve(&t),
    });
    g.bench_function("reject_forged_tag", |b| {
        b.iter(|| {
            let v = block_on(rail.verify(&facts, &offer, black_box(&forged)));
            assert!(matches!(v, Verdict::Invalid(_)));
            v
        })
    });

    let t = rail.mint(&facts, 1 << 40);
    let wrong = Credential::from(PowCredential {
        challenge: t.encode(),
        solution: vec![0, 1, 2, 3],
    });
    let big_offer = turnpike_pow::offer(1 << 40);
    g.bench_function("reject_wrong_solution_k4", |b| {
        b.iter(|| {
            let v = block_on(rail.verify(&facts, &big_offer, black_box(&wrong)));
            assert!(matches!(v, Verdict::Invalid(_)));
            v
        })
    });

    let t = rail.mint(&facts, EFFORT);
    let replay = Credential::from(PowCredential {
        challenge: t.encode(),
        solution: solve(&t),
    });
    assert!(matches!(
        block_on(rail.verify(&facts, &offer, &replay)),
        Verdict::Pass(_)
    ));
    g.bench_function("reject_replay", |b| {
        b.iter(|| {
            let v = block_on(rail.verify(&facts, &offer, black_box(&replay)));
            assert!(matches!(v, Verdict::Stale(_)));
            v
        })
    });
    g.finish();
}

fn base64_url(raw: &[u8]) -> String {
    // A forged token re-encoded the same way the rail encodes real ones.
    let mut t = [0u8; turnpike_pow::puzzle::TOKEN_LEN];
    t.copy_from_slice(raw);
    match ChallengeToken::from_bytes(t) {
        Ok(tok) => tok.encode(),
        Err(e) => panic!("{e}"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
