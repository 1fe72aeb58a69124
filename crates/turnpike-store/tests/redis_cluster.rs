//! The Redis spent set on a real three-master Redis Cluster of the test's own
//! ([`RedisCluster`]: redis-server children on free loopback ports, made a cluster by the
//! test): a key is accepted exactly once across two clients; every script touches one slot
//! (record and epoch share their bucket's hash tag); a master killed under load fails its
//! inserts closed, comes back empty and refuses what was spent before it went, and nothing is
//! accepted twice. Skipped, saying so, only when redis-server is not installed.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use turnpike_store::target::key_slot;
use turnpike_store::{RedisSpentSet, RedisSpentSetOptions, SpentSet, StoreError};
use turnpike_testkit::redis::RedisCluster;

fn cluster_set(cluster: &RedisCluster) -> RedisSpentSet {
    RedisSpentSet::new(
        &cluster.url(),
        RedisSpentSetOptions {
            timeout: Duration::from_millis(500),
            ..RedisSpentSetOptions::default()
        },
    )
    .unwrap()
}

/// A key whose first byte (its bucket) varies with `i`, unique for `(i, salt)`.
fn key(i: u32, salt: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = (i.wrapping_mul(149) % 256) as u8;
    k[1..5].copy_from_slice(&i.to_be_bytes());
    k[5..13].copy_from_slice(&salt.to_be_bytes());
    k
}

/// The record key the set uses for `k` under the default prefix.
fn record_key(k: &[u8; 32]) -> String {
    let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
    format!("turnpike:{{{:02x}}}:spent:{hex}", k[0])
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

/// Waits until the set's epoch is open in every bucket.
async fn epoch_open(set: &RedisSpentSet) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while set.epoch_start().await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the epoch was not opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_accepts_once_across_two_clients() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (a, b) = (cluster_set(&cluster), cluster_set(&cluster));
    epoch_open(&a).await;
    let (a, b): (Arc<dyn SpentSet>, Arc<dyn SpentSet>) = (Arc::new(a), Arc::new(b));
    let s = salt();
    let t = now();
    let mut tasks = Vec::new();
    for attempt in 0..6 {
        for i in 0..64 {
            let set = if attempt % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            };
            tasks.push(tokio::spawn(async move {
                (
                    i,
                    set.insert_issued(key(i, s), t, t + 300, t).await.unwrap(),
                )
            }));
        }
    }
    let mut wins = [0u32; 64];
    for task in tasks {
        let (i, won) = task.await.unwrap();
        wins[i as usize] += u32::from(won);
    }
    assert_eq!(wins, [1; 64], "every key accepted exactly once");
    // The keys went to every master.
    let nodes: std::collections::HashSet<usize> = (0..64)
        .map(|i| cluster.node_of(&record_key(&key(i, s))))
        .collect();
    assert_eq!(nodes.len(), 3, "records on all three masters");
    // A release is found once, and the key accepted once more.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let set = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            set.release(key(5, s), t).await.unwrap()
        }));
    }
    let mut released = 0;
    for task in tasks {
        released += u32::from(task.await.unwrap());
    }
    assert_eq!(released, 1);
    assert!(b.insert_issued(key(5, s), t, t + 300, t).await.unwrap());
    assert!(!a.insert_issued(key(5, s), t, t + 300, t).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keys_live_in_their_buckets_slot() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let set = cluster_set(&cluster);
    epoch_open(&set).await;
    let s = salt();
    let t = now();
    for i in 0..32 {
        assert!(set.insert_issued(key(i, s), t, t + 300, t).await.unwrap());
    }
    let client = redis::cluster::ClusterClient::new(
        cluster
            .ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut c = client.get_async_connection().await.unwrap();
    for i in 0..32 {
        let k = key(i, s);
        let record = record_key(&k);
        let epoch = format!("turnpike:{{{:02x}}}:epoch", k[0]);
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&record)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(ttl > 300_000, "the record {record} is held ({ttl} ms)");
        let e: Option<u64> = redis::cmd("GET")
            .arg(&epoch)
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(
            e.is_some_and(|e| e <= t),
            "the bucket's epoch {epoch}: {e:?}"
        );
        assert_eq!(
            cluster.slot_of(&record),
            cluster.slot_of(&epoch),
            "one script, one slot"
        );
        assert_eq!(cluster.slot_of(&record), key_slot(&record));
        assert_eq!(cluster.node_of(&record), cluster.node_of(&epoch));
    }
}

/// What one load task saw.
#[derive(Default)]
struct Seen {
    accepted: AtomicU32,
    refused: AtomicU32,
    unavailable: AtomicU32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_fails_closed_then_recovers_and_nothing_is_accepted_twice() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let (a, b) = (cluster_set(&cluster), cluster_set(&cluster));
    epoch_open(&a).await;
    let sets: [Arc<dyn SpentSet>; 2] = [Arc::new(a), Arc::new(b)];
    let s = salt();
    let t0 = now();
    // Spent before anything happens: 96 keys over every bucket range.
    for i in 0..96 {
        assert!(sets[(i % 2) as usize]
            .insert_issued(key(i, s), t0, t0 + 600, t0)
            .await
            .unwrap());
    }
    let victim = 1;
    let on_victim: Vec<u32> = (0..96)
        .filter(|&i| cluster.node_of(&record_key(&key(i, s))) == victim)
        .collect();
    assert!(!on_victim.is_empty());

    // Load: four tasks, each spending fresh keys and replaying the spent ones, through both
    // clients, until told to stop. Every acceptance is counted per key.
    let wins: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..4u32 {
        let (sets, wins, seen, stop) = (sets.clone(), wins.clone(), seen.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Odd rounds replay an old key, even ones spend a fresh one.
                let i = if n % 2 == 1 {
                    n % 96
                } else {
                    1000 + w * 1_000_000 + n
                };
                let issued = if i < 96 { t0 } else { now() };
                let set = &sets[(n % 2) as usize];
                match set
                    .insert_issued(key(i, s), issued, issued + 600, now())
                    .await
                {
                    Ok(true) => {
                        seen.accepted.fetch_add(1, Ordering::Relaxed);
                        *wins.lock().entry(i).or_default() += 1;
                    }
                    Ok(false) => {
                        seen.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(StoreError::Unavailable(_)) => {
                        seen.unavailable.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }));
    }
    // Under load, the master goes away: inserts fail closed (unavailable) until it is back.
    let wait_for = |what: &'static str, f: Box<dyn Fn() -> bool + Send>| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let s0 = seen.accepted.load(Ordering::Relaxed);
    {
        let seen = seen.clone();
        wait_for(
            "load is being accepted before the kill",
            Box::new(move || seen.accepted.load(Ordering::Relaxed) > s0 + 20),
        )
        .await;
    }
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.kill_node(victim);
        cluster
    })
    .await
    .unwrap();
    let u0 = seen.unavailable.load(Ordering::Relaxed);
    {
        let seen = seen.clone();
        wait_for(
            "inserts fail closed while a master is down",
            Box::new(move || seen.unavailable.load(Ordering::Relaxed) > u0 + 10),
        )
        .await;
    }
    // The killed master comes back on its ports, empty, and rejoins with its slots.
    cluster = tokio::task::spawn_blocking(move || {
        cluster.restart_node(victim);
        cluster
    })
    .await
    .unwrap();
    let a0 = seen.accepted.load(Ordering::Relaxed);
    {
        let seen = seen.clone();
        wait_for(
            "fresh keys are accepted again after the master came back",
            Box::new(move || seen.accepted.load(Ordering::Relaxed) > a0 + 20),
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    // Keys spent before the loss on the restarted master: their records are gone, but they
    // were issued before its buckets' new epochs, so they stay refused.
    for &i in &on_victim {
        let deadline = Instant::now() + Duration::from_secs(10);
        let replay = loop {
            match sets[0].insert_issued(key(i, s), t0, t0 + 600, now()).await {
                Ok(v) => break v,
                Err(_) => {
                    assert!(Instant::now() < deadline, "the cluster did not answer");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert!(
            !replay,
            "key {i}, spent before its master was lost, refused after"
        );
    }
    let wins = wins.lock();
    let twice: Vec<_> = wins.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "accepted twice: {twice:?}");
    assert!(
        (0..96).all(|i| !wins.contains_key(&i)),
        "no key spent before the load was accepted again"
    );
    assert!(cluster.is_up());
}
