//! A call's limits check and its credential's spend in one Redis round trip
//! ([`PendingAdmit`] pending while a spent set records the credential): one `EVALSHA` for both
//! on one server; the limits still decide first (a refused call spends nothing, and its
//! credential passes once the limits allow it); a credential is still accepted once; the same
//! order with the in-memory backend and set, and on a Redis Cluster: one `EVALSHA` there too
//! when the credential's key begins with the caller's bucket (`cluster_bucket`, as the
//! proof-of-work rail's keys do), two round trips with the same answers when it does not.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_limits::{
    Admission, BudgetsConfig, CallInfo, CallKind, LimitBackend, Limiter, LimitsConfig,
    MemoryBackend, PendingAdmit, RedisBackend, RedisOptions,
};
use turnpike_store::fuse::with_pending_check;
use turnpike_store::{MemorySpentSet, RedisSpentSet, RedisSpentSetOptions, SpentSet};
use turnpike_testkit::redis::{RedisCluster, RedisServer};

fn salt() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key(i: u8, salt: u64) -> [u8; 32] {
    let mut k = [i; 32];
    k[8..16].copy_from_slice(&salt.to_be_bytes());
    k
}

/// A limiter of 2 calls of `dear` per hour, loop brake off.
fn limiter(backend: Arc<dyn LimitBackend>) -> Arc<Limiter> {
    let cfg: LimitsConfig =
        toml::from_str("[tools.dear]\nburst = 2\nrate = \"1/h\"\n[loop_brake]\nenabled = false\n")
            .unwrap();
    Arc::new(Limiter::new(cfg, BudgetsConfig::default(), backend))
}

/// One paid call: the limits pending while `set` spends `k`. The admission and whether the
/// credential was accepted.
async fn paid_call(
    lim: &Arc<Limiter>,
    set: &dyn SpentSet,
    scope: &str,
    k: [u8; 32],
) -> (bool, bool) {
    let h = [7u8; 32];
    let call = CallInfo {
        scope,
        rail: Some(turnpike_core::RailId::new("pow")),
        kind: CallKind::Tool("dear"),
        args_hash: Some(&h),
    };
    let pending = Arc::new(PendingAdmit::new(lim.clone(), &call));
    let t = now();
    let spent = with_pending_check(pending.clone(), set.insert_issued(k, t, t + 300, t))
        .await
        .unwrap();
    assert!(pending.has_run(), "the spend ran the pending check");
    let allowed = matches!(pending.admission().await, Admission::Allowed(_));
    (allowed, spent)
}

/// The answers every backend gives: limits first, a refused call spends nothing.
async fn limits_first(lim: Arc<Limiter>, set: Arc<dyn SpentSet>) {
    let s = salt();
    let scope = format!("anon:fused-{s:x}");
    assert_eq!(
        paid_call(&lim, &*set, &scope, key(1, s)).await,
        (true, true)
    );
    // The same credential again: the limits count the call, the spend refuses it.
    assert_eq!(
        paid_call(&lim, &*set, &scope, key(1, s)).await,
        (true, false)
    );
    // Over the limit: refused, and the fresh credential is not spent...
    assert_eq!(
        paid_call(&lim, &*set, &scope, key(2, s)).await,
        (false, false)
    );
    // ...so it still passes where the limits allow (another identity here).
    let other = format!("anon:fused-other-{s:x}");
    assert_eq!(
        paid_call(&lim, &*set, &other, key(2, s)).await,
        (true, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limits_first() {
    let set: Arc<dyn SpentSet> = Arc::new(MemorySpentSet::with_epoch_start(0));
    limits_first(limiter(Arc::new(MemoryBackend::new())), set).await;
}

fn redis_limiter(url: &str) -> Arc<Limiter> {
    limiter(Arc::new(
        RedisBackend::new(
            url,
            RedisOptions {
                timeout: Duration::from_millis(500),
                ..RedisOptions::default()
            },
        )
        .unwrap(),
    ))
}

fn redis_set(url: &str) -> RedisSpentSet {
    RedisSpentSet::new(
        url,
        RedisSpentSetOptions {
            timeout: Duration::from_millis(500),
            ..RedisSpentSetOptions::default()
        },
    )
    .unwrap()
}

async fn epoch_open(set: &RedisSpentSet) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while set.epoch_start().await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the epoch was not opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_first_in_one_script() {
    let server = RedisServer::start();
    let set = redis_set(&server.url());
    epoch_open(&set).await;
    let lim = redis_limiter(&server.url());
    limits_first(lim.clone(), Arc::new(set.clone())).await;

    // One round trip per paid call: the limits script carries the spend.
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .unwrap();
    let s = salt();
    for i in 0..10u8 {
        let scope = format!("anon:fused-rt-{s:x}-{i}");
        assert_eq!(paid_call(&lim, &set, &scope, key(i, s)).await, (true, true));
    }
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    let calls = |name: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .and_then(|l| l.split([':', ',']).find_map(|kv| kv.strip_prefix("calls=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(calls("evalsha"), 10, "one script per paid call: {info}");
    assert_eq!(calls("eval"), 0, "{info}");
}

/// Scripts the servers at `ports` ran (`EVALSHA` and `EVAL` calls that were executed: those
/// refused before running — `NOSCRIPT`, a redirection — are not counted), summed.
async fn scripts_run(ports: &[u16]) -> u64 {
    let mut total = 0;
    for port in ports {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .unwrap();
        for name in ["evalsha", "eval"] {
            let Some(line) = info
                .lines()
                .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            else {
                continue;
            };
            let field = |f: &str| -> u64 {
                line.split([':', ','])
                    .find_map(|kv| kv.strip_prefix(&format!("{f}=")))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            total += field("calls") - field("failed_calls") - field("rejected_calls");
        }
    }
    total
}

/// On a cluster, a credential whose key begins with the caller's bucket is spent in the
/// caller's limits script: one script per paid call, summed over the masters. A credential
/// issued to another caller (its key in another bucket) is still accepted once, in two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_one_script_in_the_callers_bucket() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let set = redis_set(&cluster.url());
    epoch_open(&set).await;
    let lim = redis_limiter(&cluster.url());
    let s = salt();
    let in_bucket = |scope: &str, i: u8| {
        let mut k = key(i, s);
        k[0] = turnpike_store::cluster_bucket(scope);
        k
    };
    // Every master has run both scripts once (the first call of a script on a master is
    // answered NOSCRIPT, then loaded).
    for i in 0..64u8 {
        let scope = format!("anon:warm-{s:x}-{i}");
        assert_eq!(
            paid_call(&lim, &set, &scope, in_bucket(&scope, i)).await,
            (true, true)
        );
    }
    let before = scripts_run(&cluster.ports()).await;
    for i in 0..10u8 {
        let scope = format!("anon:fused-cluster-{s:x}-{i}");
        assert_eq!(
            paid_call(&lim, &set, &scope, in_bucket(&scope, 100 + i)).await,
            (true, true)
        );
    }
    assert_eq!(
        scripts_run(&cluster.ports()).await - before,
        10,
        "one script per paid call"
    );
    // Issued to one caller, presented by another: spent once, in two round trips.
    let (a, b) = (format!("anon:a-{s:x}"), format!("anon:b-{s:x}"));
    let mut k = in_bucket(&a, 200);
    if turnpike_store::cluster_bucket(&b) == k[0] {
        k[0] = k[0].wrapping_add(1);
    }
    let before = scripts_run(&cluster.ports()).await;
    assert_eq!(paid_call(&lim, &set, &b, k).await, (true, true));
    assert_eq!(scripts_run(&cluster.ports()).await - before, 2);
    assert_eq!(paid_call(&lim, &set, &a, k).await, (true, false), "once");
    assert_eq!(paid_call(&lim, &set, &b, k).await, (true, false), "once");
}

/// On a cluster every key of a caller carries the caller's bucket as its hash tag, and two
/// callers of one bucket keep limits of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_keys_in_the_callers_bucket() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let lim = redis_limiter(&cluster.url());
    let s = salt();
    // Two callers in one bucket.
    let first = format!("anon:same-{s:x}-0");
    let bucket = turnpike_store::cluster_bucket(&first);
    let second = (1..)
        .map(|i| format!("anon:same-{s:x}-{i}"))
        .find(|sc| turnpike_store::cluster_bucket(sc) == bucket)
        .unwrap();
    let h = [7u8; 32];
    let admit = |scope: &str| {
        let lim = lim.clone();
        let scope = scope.to_string();
        async move {
            let call = CallInfo {
                scope: &scope,
                rail: None,
                kind: CallKind::Tool("dear"),
                args_hash: Some(&h),
            };
            matches!(lim.admit(&call).await, Admission::Allowed(_))
        }
    };
    for scope in [&first, &second] {
        assert!(
            admit(scope).await && admit(scope).await,
            "a burst of 2 each"
        );
        assert!(!admit(scope).await, "then refused");
    }
    let mut keys = Vec::new();
    for port in cluster.ports() {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let mut found: Vec<String> = redis::cmd("KEYS")
            .arg("turnpike:*")
            .query_async(&mut c)
            .await
            .unwrap();
        keys.append(&mut found);
    }
    let tag = format!("turnpike:{{{bucket:02x}}}:");
    assert!(keys.len() >= 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(&tag)), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("anon:")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_limits_first() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let set = redis_set(&cluster.url());
    epoch_open(&set).await;
    limits_first(redis_limiter(&cluster.url()), Arc::new(set)).await;
}

/// A limits store that is away fails the call closed and spends nothing; `failure_mode =
/// "open"` lets the limits through but the spend still fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_fails_closed_and_spends_nothing() {
    let mut server = RedisServer::start();
    let set = redis_set(&server.url());
    epoch_open(&set).await;
    let lim = redis_limiter(&server.url());
    let s = salt();
    let scope = format!("anon:fused-away-{s:x}");
    server.kill();
    let (allowed, spent) = paid_call(&lim, &set, &scope, key(1, s)).await;
    assert!(!allowed && !spent, "closed: refused, nothing spent");
    let open: LimitsConfig = toml::from_str("failure_mode = \"open\"").unwrap();
    let open = Arc::new(Limiter::new(
        open,
        BudgetsConfig::default(),
        Arc::new(
            RedisBackend::new(
                &server.url(),
                RedisOptions {
                    timeout: Duration::from_millis(500),
                    ..RedisOptions::default()
                },
            )
            .unwrap(),
        ),
    ));
    let h = [7u8; 32];
    let call = CallInfo {
        scope: &scope,
        rail: None,
        kind: CallKind::Tool("dear"),
        args_hash: Some(&h),
    };
    let pending = Arc::new(PendingAdmit::new(open, &call));
    let t = now();
    let r = with_pending_check(pending.clone(), set.insert_issued(key(1, s), t, t + 300, t)).await;
    assert!(r.is_err(), "the spend fails closed: {r:?}");
    assert!(matches!(pending.admission().await, Admission::Allowed(_)));
}
