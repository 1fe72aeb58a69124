//! Latency of one limit decision on Redis (one round trip): `Limiter::admit` for a tool call
//! with the default limits, sequentially and with 32 calls in flight. Then a call paid by a
//! single-use credential (a puzzle solution): the limits and the spend as two round trips
//! (`Limiter::admit`, then `RedisSpentSet::insert_issued`) and as one (`PendingAdmit` pending
//! while the spend runs), sequentially, with the Redis commands each sent (`INFO
//! commandstats`, summed over the masters on a cluster).
//!
//! The credential's key begins with the caller's bucket (`turnpike_store::cluster_bucket`), as
//! the proof-of-work rail's keys do on a cluster. On a Redis Cluster (`redis+cluster://…`) a
//! third line: the check pending while a credential issued to another caller is spent (its key
//! in another bucket, so another slot: the limits and the spend apart, two round trips).
//!
//! `cargo run --release -p turnpike-limits --example redis_latency -- redis://127.0.0.1:6379/0`
//! `cargo run --release -p turnpike-limits --example redis_latency -- redis+cluster://127.0.0.1:7001,127.0.0.1:7002`

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

/// The servers whose commands are counted: the one server, or every master of a cluster
/// (`CLUSTER NODES` asked of the first node given).
async fn servers(url: &str) -> Vec<String> {
    let nodes = match turnpike_store::parse_target(url).expect("a Redis URL") {
        turnpike_store::RedisTarget::Single(u) => return vec![u],
        turnpike_store::RedisTarget::Cluster(nodes) => nodes,
    };
    let client = redis::Client::open(nodes[0].as_str()).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await
        .expect("CLUSTER NODES");
    text.lines()
        .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("master")))
        .filter_map(|l| l.split(' ').nth(1)?.split('@').next())
        .map(|addr| format!("redis://{addr}"))
        .collect()
}

/// Commands the servers ran since the last call (`INFO commandstats` of each, summed, then
/// `CONFIG RESETSTAT`): `name calls` pairs.
async fn commands(servers: &[String]) -> String {
    let mut calls: std::collections::BTreeMap<String, u64> = Default::default();
    for url in servers {
        let client = redis::Client::open(url.as_str()).expect("client");
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
        for l in info.lines() {
            let Some((name, rest)) = l.strip_prefix("cmdstat_").and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let n = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            *calls.entry(name.to_string()).or_default() += n;
        }
    }
    calls
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a paid call's limits and spend are sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Paid {
    /// `Limiter::admit`, then the spend.
    Apart,
    /// The check pending while the spend runs, the key in the caller's bucket.
    Pending,
    /// The check pending, the key in another caller's bucket.
    OtherBucket,
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
    let paid = |mode: Paid, i: u64| {
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
            k[8] = mode as u8;
            k[0] = turnpike_store::cluster_bucket(&scope);
            if mode == Paid::OtherBucket {
                k[0] = k[0].wrapping_add(1);
            }
            let t = now();
            let t0 = Instant::now();
            let (a, spent) = if mode != Paid::Apart {
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
    let modes: &[Paid] = if url.starts_with(turnpike_store::target::CLUSTER_SCHEME) {
        &[Paid::Apart, Paid::Pending, Paid::OtherBucket]
    } else {
        &[Paid::Apart, Paid::Pending]
    };
    for &mode in modes {
        for i in 0..1000 {
            paid(mode, i).await;
        }
    }
    let servers = servers(&url).await;
    for &mode in modes {
        let _ = commands(&servers).await;
        let n = 10_000u64;
        let mut lat = Vec::with_capacity(n as usize);
        let t0 = Instant::now();
        for i in 0..n {
            lat.push(paid(mode, 10_000 + i).await);
        }
        let wall = t0.elapsed();
        println!(
            "paid call, {}: {n} calls, {:.0}/s, p50 {:?}, p99 {:?}; commands: {}",
            match mode {
                Paid::Apart => "limits, then the spend",
                Paid::Pending => "limits pending while the spend runs",
                Paid::OtherBucket => "pending, the spend in another caller's bucket",
            },
            n as f64 / wall.as_secs_f64(),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            commands(&servers).await
        );
    }
}
