//! The spent-set suite, against the in-memory set and a real Redis (a redis-server of the
//! test's own on a free loopback port): a key is accepted exactly once across two independent
//! clients under concurrent attempts, and the Redis set fails closed while Redis is down and
//! recovers by itself after a restart.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_store::{MemorySpentSet, RedisSpentSet, RedisSpentSetOptions, SpentSet, StoreError};
use turnpike_testkit::redis::RedisServer;

fn redis_set(server: &RedisServer) -> Arc<dyn SpentSet> {
    Arc::new(
        RedisSpentSet::new(
            &server.url(),
            RedisSpentSetOptions {
                timeout: Duration::from_millis(500),
                ..RedisSpentSetOptions::default()
            },
        )
        .unwrap(),
    )
}

fn key(i: u32, salt: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_be_bytes());
    k[4..12].copy_from_slice(&salt.to_be_bytes());
    k
}

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

/// 16 keys, each attempted 8 times at once, half through each client: 16 wins.
async fn accepted_exactly_once(a: Arc<dyn SpentSet>, b: Arc<dyn SpentSet>) {
    let s = salt();
    let t = now();
    let mut tasks = Vec::new();
    for attempt in 0..8 {
        for i in 0..16 {
            let set = if attempt % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            };
            tasks.push(tokio::spawn(async move {
                (i, set.insert(key(i, s), t + 300, t).await.unwrap())
            }));
        }
    }
    let mut wins = [0u32; 16];
    for task in tasks {
        let (i, won) = task.await.unwrap();
        wins[i as usize] += u32::from(won);
    }
    assert_eq!(wins, [1; 16], "every key accepted exactly once");
    // Still spent for both clients afterwards.
    assert!(!a.insert(key(3, s), t + 300, t).await.unwrap());
    assert!(!b.insert(key(3, s), t + 300, t).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_accepts_once() {
    let m: Arc<dyn SpentSet> = Arc::new(MemorySpentSet::new());
    accepted_exactly_once(m.clone(), m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_accepts_once_across_two_clients() {
    let server = RedisServer::start();
    accepted_exactly_once(redis_set(&server), redis_set(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_expire_after_expiry_plus_grace() {
    let server = RedisServer::start();
    let set = RedisSpentSet::new(
        &server.url(),
        RedisSpentSetOptions {
            skew_grace: Duration::from_millis(200),
            ..RedisSpentSetOptions::default()
        },
    )
    .unwrap();
    let t = now();
    let k = key(1, salt());
    // Already expired by the caller's clock: recorded for the grace only.
    assert!(set.insert(k, t, t).await.unwrap());
    assert!(!set.insert(k, t, t).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(set.insert(k, t, t).await.unwrap(), "gone after the grace");
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("turnpike:spent:*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].len(), "turnpike:spent:".len() + 64);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 200, "{ttl}");
    // An absurd expiry is bounded, not an error.
    assert!(set.insert(key(2, salt()), u64::MAX, t).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_then_recovers() {
    let mut server = RedisServer::start();
    let set = redis_set(&server);
    let s = salt();
    let t = now();
    assert!(set.insert(key(0, s), t + 60, t).await.unwrap());
    server.kill();
    for i in 1..4 {
        let t0 = Instant::now();
        match set.insert(key(i, s), t + 60, t).await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("must fail closed while Redis is down: {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
    server.restart();
    let t0 = Instant::now();
    loop {
        match set.insert(key(9, s), t + 60, t).await {
            Ok(true) => break,
            Ok(false) => panic!("a fresh key on a fresh server is new"),
            Err(_) => {
                assert!(t0.elapsed() < Duration::from_secs(15), "no recovery");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(!set.insert(key(9, s), t + 60, t).await.unwrap());
}

/// A spent key released (the call it paid for was refused upstream) is accepted once more;
/// of 8 concurrent releases through two clients exactly one finds it, and of 8 concurrent
/// inserts afterwards exactly one wins again.
async fn released_exactly_once(a: Arc<dyn SpentSet>, b: Arc<dyn SpentSet>) {
    let s = salt();
    let t = now();
    assert!(a.insert(key(1, s), t + 300, t).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let set = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            set.release(key(1, s), t).await.unwrap()
        }));
    }
    let mut released = 0;
    for task in tasks {
        released += u32::from(task.await.unwrap());
    }
    assert_eq!(released, 1, "one release finds the key");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let set = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            set.insert(key(1, s), t + 300, t).await.unwrap()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += u32::from(task.await.unwrap());
    }
    assert_eq!(wins, 1, "the released key is accepted exactly once more");
    assert!(!b.release(key(2, s), t).await.unwrap(), "never held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_releases_once() {
    let m: Arc<dyn SpentSet> = Arc::new(MemorySpentSet::new());
    released_exactly_once(m.clone(), m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_releases_once_across_two_clients() {
    let server = RedisServer::start();
    released_exactly_once(redis_set(&server), redis_set(&server)).await;
}

/// Until `deadline`, spends fresh keys issued now until one is accepted (right after Redis lost
/// its data, credentials issued up to the second after the loss was seen are refused once).
async fn fresh_accepted(set: &Arc<dyn SpentSet>, s: u64, deadline: Instant) -> u32 {
    for i in 100u32.. {
        assert!(Instant::now() < deadline, "no fresh key accepted in time");
        let t = now();
        match set.insert_issued(key(i, s), t, t + 300, t).await {
            Ok(true) => return i,
            Ok(false) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_lost_its_data_refuses_what_was_spent_before() {
    let mut server = RedisServer::start();
    let set = redis_set(&server);
    let redis = RedisSpentSet::new(&server.url(), RedisSpentSetOptions::default()).unwrap();
    // The set opens its epoch when created: a credential issued from then on passes once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.epoch_start().await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the epoch was not opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = salt();
    let t = now();
    assert!(set.insert_issued(key(1, s), t, t + 300, t).await.unwrap());
    assert!(!set.insert_issued(key(1, s), t, t + 300, t).await.unwrap());
    // Issued before the epoch began: refused, never recorded.
    let before = redis.epoch_start().await.unwrap().unwrap() - 1;
    assert!(!set
        .insert_issued(key(2, s), before, t + 300, t)
        .await
        .unwrap());

    // Redis is killed and comes back empty on the same port (nothing persisted).
    server.restart();
    // The spent credential is presented again: its record is gone, but it was issued before
    // the new epoch, so it is refused (retried only while Redis is not answering yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    let replay = loop {
        match set.insert_issued(key(1, s), t, t + 300, now()).await {
            Ok(v) => break v,
            Err(StoreError::Unavailable(_)) => {
                assert!(Instant::now() < deadline, "Redis did not come back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(
        !replay,
        "a credential spent before the loss is refused after it"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let epoch = loop {
        // This second client reconnects on its first use after the restart.
        if let Ok(Some(e)) = redis.epoch_start().await {
            break e;
        }
        assert!(Instant::now() < deadline, "no epoch after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        epoch > t,
        "the new epoch ({epoch}) begins after the spend ({t})"
    );
    // A credential issued after the loss is accepted, once.
    let i = fresh_accepted(&set, s, Instant::now() + Duration::from_secs(10)).await;
    let t = now();
    assert!(!set.insert_issued(key(i, s), t, t + 300, t).await.unwrap());
    // The plain insert (no issue time) is unaffected by the epoch.
    assert!(set.insert(key(999, s), t + 300, t).await.unwrap());
}
