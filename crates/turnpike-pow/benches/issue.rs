//! Issuing cost: one challenge minted and rendered (`WWW-Authenticate` value and JSON details),
//! as `Rail::challenge` does it, load accounting included.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use turnpike_core::{CallFacts, Rail};
use turnpike_pow::{KeyRing, PowConfig, PowRail};
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

fn bench(c: &mut Criterion) {
    let rail = PowRail::new(
        PowConfig {
            load: turnpike_pow::LoadConfig {
                calm_rps: u64::MAX,
                ..Default::default()
            },
            ..PowConfig::default()
        },
        KeyRing::from_secrets(vec![(1, [1; 32])]).unwrap_or_else(|e| panic!("{e}")),
        Arc::new(MemorySpentSet::with_epoch_start(0)),
    );
    let facts = CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [7; 32],
        caller: None,
        peer: None,
        now: 1_700_000_000,
    };
    let offer = turnpike_pow::offer(200_000);
    let mut g = c.benchmark_group("issue");
    g.bench_function("challenge", |b| {
        b.iter(|| block_on(rail.challenge(black_box(&facts), black_box(&offer))))
    });
    g.bench_function("mint_only", |b| {
        b.iter(|| rail.mint(black_box(&facts), 200_000))
    });
    let token = rail.mint(&facts, 200_000);
    g.bench_function("render_only", |b| b.iter(|| rail.render(black_box(&token))));
    g.bench_function("scope_digest", |b| {
        b.iter(|| black_box(&facts).scope_digest())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
