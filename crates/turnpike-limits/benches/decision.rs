//! How long one in-memory limit decision takes.
//!
//! `cargo bench -p turnpike-limits --bench decision`

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use turnpike_limits::{
    Admission, BudgetsConfig, CallInfo, CallKind, Check, Class, ConcurrencyCheck, LimitBackend,
    Limiter, LimitsConfig, LoopBrake, LoopCheck, MemoryBackend, Quota, RateCheck,
};

/// The memory backend's futures are ready at once: one poll finishes them.
fn now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("memory futures never wait"),
    }
}

fn decision(c: &mut Criterion) {
    let m = MemoryBackend::new();
    let roomy = Quota::per_second(1_000_000, 1_000_000_000).unwrap();
    let class = Class::Tool("search");
    c.bench_function("memory/check_rate (one cell, hot)", |b| {
        b.iter(|| black_box(m.check_rate(black_box("oauth:issuer:subject:client"), &class, &roomy)))
    });

    let scopes: Vec<String> = (0..1_000_000u32)
        .map(|i| format!("anon:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let mut i = 0usize;
    c.bench_function("memory/check_rate (1M identities, round robin)", |b| {
        b.iter(|| {
            i = (i + 1) % scopes.len();
            black_box(m.check_rate(&scopes[i], &class, &roomy))
        })
    });

    let brake = LoopBrake {
        max_repeats: u32::MAX / 2,
        window: Duration::from_secs(1),
        strike_decay: Duration::from_secs(60),
        max_multiplier: 16,
    };
    let rates = [
        RateCheck {
            class,
            quota: roomy,
        },
        RateCheck {
            class: Class::AllTools,
            quota: roomy,
        },
    ];
    let check = Check {
        scope: "oauth:issuer:subject:client",
        rates: &rates,
        loop_brake: Some(LoopCheck {
            tool: "search",
            args_hash: [7; 32],
            brake,
        }),
        daily_cap: Some(u64::MAX),
        concurrency: Some(ConcurrencyCheck {
            max: 1_000,
            lease: Duration::from_secs(60),
        }),
    };
    c.bench_function(
        "memory/check (2 cells, loop brake, daily, in-flight)",
        |b| {
            b.iter(|| {
                let o = m.check_now(black_box(&check)).unwrap();
                if let Some(l) = o.lease {
                    m.release(l);
                }
            })
        },
    );

    let backend: Arc<dyn LimitBackend> = Arc::new(MemoryBackend::new());
    let cfg: LimitsConfig = LimitsConfig {
        default: turnpike_limits::IdentityQuotaConfig {
            burst: 1_000_000,
            rate: "1000000/s".parse().unwrap(),
            concurrency: Some(1_000),
        },
        ..LimitsConfig::default()
    };
    let lim = Limiter::new(cfg, BudgetsConfig::default(), backend);
    let h = [3u8; 32];
    let call = CallInfo {
        scope: "oauth:issuer:subject:client",
        rail: Some(turnpike_core::RailId::new("oauth")),
        kind: CallKind::Tool("search"),
        args_hash: Some(&h),
    };
    let mut n = 0u32;
    c.bench_function(
        "limiter/admit (tool call, defaults, headers not rendered)",
        |b| {
            b.iter(|| {
                // Vary the arguments so the loop brake does not engage.
                n = n.wrapping_add(1);
                let mut h = h;
                h[..4].copy_from_slice(&n.to_le_bytes());
                let call = CallInfo {
                    args_hash: Some(&h),
                    ..call
                };
                match now(lim.admit(black_box(&call))) {
                    Admission::Allowed(a) => black_box(a),
                    other => panic!("{other:?}"),
                }
            })
        },
    );
}

criterion_group!(benches, decision);
criterion_main!(benches);
