//! Latency of one limit decision on Redis (one round trip): `Limiter::admit` for a tool call
//! with the default limits, sequentially and with 32 calls in flight.
//!
//! `cargo run --release -p turnpike-limits --example redis_latency -- redis://127.0.0.1:6379/0`

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_limits::{
    Admission, BudgetsConfig, CallInfo, CallKind, IdentityQuotaConfig, Limiter, LimitsConfig,
    RedisBackend, RedisOptions,
};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let backend = Arc::new(
        RedisBackend::new(
            &url,
            RedisOptions {
                key_prefix: "turnpike-latency".into(),
                ..RedisOptions::default()
            },
        )
        .expect("backend"),
    );
    let cfg = LimitsConfig {
        default: IdentityQuotaConfig {
            burst: 1_000_000,
            rate: "1000000/s".parse().expect("rate"),
            concurrency: Some(1_000),
        },
        ..LimitsConfig::default()
    };
    let budgets = BudgetsConfig {
        calls_per_day: Some(u64::MAX >> 12),
        msat_per_token_per_day: None,
    };
    let lim = Arc::new(Limiter::new(cfg, budgets, backend));
    let admit = |lim: Arc<Limiter>, i: u64| async move {
        let scope = format!("anon:10.0.{}.{}", (i >> 8) & 255, i & 255);
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&i.to_le_bytes());
        let call = CallInfo {
            scope: &scope,
            rail: None,
            kind: CallKind::Tool("search"),
            args_hash: Some(&h),
        };
        let t0 = Instant::now();
        let a = lim.admit(&call).await;
        let took = t0.elapsed();
        assert!(matches!(a, Admission::Allowed(_)), "{a:?}");
        drop(a);
        took
    };
    for i in 0..1000 {
        admit(lim.clone(), i).await;
    }
    let n = 20_000u64;
    let mut lat = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for i in 0..n {
        lat.push(admit(lim.clone(), i).await);
    }
    let wall = t0.elapsed();
    println!(
        "sequential: {n} admits, {:.0}/s, p50 {:?}, p99 {:?}",
        n as f64 / wall.as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let lim = lim.clone();
        tasks.push(tokio::spawn(async move {
            let mut v = Vec::new();
            for i in 0..n / 32 {
                v.push(admit(lim.clone(), w * 100_000 + i).await);
            }
            v
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let wall = t0.elapsed();
    println!(
        "32 in flight: {} admits, {:.0}/s, p50 {:?}, p99 {:?}",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
}
