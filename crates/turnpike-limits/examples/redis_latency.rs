//! Latency of one limit decision on Redis (one round trip): `Limiter::admit` for a tool call
//! with the default limits, sequentially and with 32 calls in flight. Then a call paid by a
//! single-use credential (a puzzle solution): the limits and the spend as two round trips
//! (`Limiter::admit`, then `RedisSpentSet::insert_issued`) and as one (`PendingAdmit` pending
//! while the spend runs), sequentially, with the Redis commands each sent (`INFO
//! commandstats`).
//!
//! `cargo run --release -p turnpike-limits --example redis_latency -- redis://127.0.0.1:6379/0`

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_limits::{
    Admission, BudgetsConfig, CallInfo, CallKind, IdentityQuotaConfig, Limiter, LimitsConfig,
    PendingAdmit, RedisBackend, RedisOptions,
};
use turnpike_store::fuse::with_pending_check;
use turnpike_store::{RedisSpentSet, RedisSpentSetOptions, SpentSet};

/// Commands the server ran since the last call (`INFO commandstats`, then `CONFIG RESETSTAT`):
/// `name calls` pairs.
async fn commands(url: &str) -> String {
    let client = redis::Client::open(url).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .expect("INFO");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .expect("RESETSTAT");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some(format!("{name} {calls}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

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

    // A paid call: limits, then the credential's spend.
    let set = RedisSpentSet::new(
        &url,
        RedisSpentSetOptions {
            key_prefix: "turnpike-latency:pow".into(),
            ..RedisSpentSetOptions::default()
        },
    )
    .expect("spent set");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let salt = now() << 24;
    let paid = |fused: bool, i: u64| {
        let (lim, set) = (lim.clone(), set.clone());
        async move {
            let scope = format!("anon:10.1.{}.{}", (i >> 8) & 255, i & 255);
            let h = [9u8; 32];
            let call = CallInfo {
                scope: &scope,
                rail: None,
                kind: CallKind::Tool("search"),
                args_hash: Some(&h),
            };
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(salt + i).to_be_bytes());
            k[8] = u8::from(fused);
            let t = now();
            let t0 = Instant::now();
            let (a, spent) = if fused {
                let pending = Arc::new(PendingAdmit::new(lim.clone(), &call));
                let spent =
                    with_pending_check(pending.clone(), set.insert_issued(k, t, t + 300, t))
                        .await
                        .expect("spend");
                (pending.admission().await, spent)
            } else {
                let a = lim.admit(&call).await;
                (a, set.insert_issued(k, t, t + 300, t).await.expect("spend"))
            };
            let took = t0.elapsed();
            assert!(matches!(a, Admission::Allowed(_)) && spent, "{a:?} {spent}");
            took
        }
    };
    for fused in [false, true] {
        for i in 0..1000 {
            paid(fused, i).await;
        }
    }
    for fused in [false, true] {
        let _ = commands(&url).await;
        let n = 10_000u64;
        let mut lat = Vec::with_capacity(n as usize);
        let t0 = Instant::now();
        for i in 0..n {
            lat.push(paid(fused, 10_000 + i).await);
        }
        let wall = t0.elapsed();
        println!(
            "paid call, {}: {n} calls, {:.0}/s, p50 {:?}, p99 {:?}; commands: {}",
            if fused {
                "limits and spend in one script"
            } else {
                "limits, then the spend"
            },
            n as f64 / wall.as_secs_f64(),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            commands(&url).await
        );
    }
}
