//! State behind small traits.
//!
//! The hot path needs one thing from the store so far: a *spent set*, which records a
//! single-use credential (a solved puzzle, a per-call payment) as used until it expires, with an
//! atomic insert, so a credential is accepted at most once. [`MemorySpentSet`] is the embedded
//! default; [`RedisSpentSet`] (feature `redis`, on by default) shares the set between several
//! gateway instances, on one Redis or a Redis Cluster ([`RedisConn`], [`target`]).
//!
//! A set that loses its records (a restart, Redis run without persistence, a flush) would accept
//! again what it had recorded. So each set has an *epoch*: the time from which it holds every
//! record. [`SpentSet::insert_issued`] refuses a credential issued before the epoch began, as if
//! it were spent: it may have been, in a record that is gone. The in-memory set's epoch is its
//! creation (the process start); the Redis set keeps the start of its epoch in Redis, under a key
//! that goes when the data goes and is created again by the next spend, in the same atomic
//! script (one round trip).
//!
//! On a Redis Cluster a script may only touch keys of one hash slot. The Redis set keeps its
//! records in 256 buckets by a key's first byte, each in one slot (`{bb}`), and the limits keep
//! each caller's keys in the slot of the caller's bucket, [`cluster_bucket`]. A rail that chooses
//! its credentials' keys ([`SpentSet::caller_buckets`]) puts the bucket of the caller it issues a
//! credential to first, so that caller's limits and the credential's spend are one script.

#[cfg(feature = "redis")]
pub mod conn;
pub mod fuse;
#[cfg(feature = "redis")]
pub mod redis;
pub mod target;
#[cfg(feature = "redis")]
pub use crate::conn::RedisConn;
#[cfg(feature = "redis")]
pub use crate::redis::{RedisSpentSet, RedisSpentSetOptions};
pub use crate::target::{parse_target, RedisTarget};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use turnpike_core::{unix_now, BoxFuture};

/// Why a store operation failed. Callers fail closed on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The bucket of a caller on a Redis Cluster, `0..=255`, for its limits' scope string
/// (`Identity::scope_key`, as the limits are given it): the first byte of SHA-256 of
/// `"turnpike-bucket-v1" 0x00 scope`. On a cluster the limits tag every key of the caller with
/// `{bb}` (the bucket in two lower-case hex digits), the spent set's tag for the records whose
/// key begins with that byte: both in one hash slot. Not a secret (it names a slot).
pub fn cluster_bucket(identity_scope: &str) -> u8 {
    let mut h = Sha256::new();
    h.update(b"turnpike-bucket-v1\0");
    h.update(identity_scope.as_bytes());
    h.finalize()[0]
}

/// Records single-use keys until they expire.
pub trait SpentSet: Send + Sync {
    /// Records `key` as spent until `expires_at` (Unix seconds), atomically. Returns `true` if
    /// the key was new (the caller may accept the credential) and `false` if it was already
    /// spent and has not expired.
    fn insert(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Forgets `key`, atomically: the credential it recorded may be accepted once more (a call
    /// it paid for was refused by the upstream before being served). Returns `true` if the key
    /// was held and had not expired, `false` otherwise — so of several concurrent releases or
    /// takes of one key, one sees `true`. Sets that cannot forget answer `Ok(false)`: the
    /// credential stays spent.
    fn release(&self, _key: [u8; 32], _now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(false)))
    }

    /// [`SpentSet::insert`] for a credential issued at `issued_at` (Unix seconds): also `false`
    /// when the credential was issued before the set's current epoch began (a record of it may
    /// have been lost). Sets that can lose their records must override this; the default has no
    /// epoch.
    fn insert_issued(
        &self,
        key: [u8; 32],
        issued_at: u64,
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let _ = issued_at;
        self.insert(key, expires_at, now)
    }

    /// Whether the set keeps its records in buckets by a key's first byte, each bucket where the
    /// limits of the callers of that [`cluster_bucket`] are (a Redis Cluster: one hash slot per
    /// bucket). A rail that chooses its credentials' keys then begins the key of a credential
    /// issued to a caller with the caller's bucket, so that the caller's limits and the spend run
    /// as one script. The key must still be fixed by the credential alone. Default: `false`.
    fn caller_buckets(&self) -> bool {
        false
    }
}

/// The in-memory spent set: sharded hash maps, swept of expired keys as they grow. Its epoch
/// begins when it is created: a credential issued before (by an earlier process) is refused by
/// [`SpentSet::insert_issued`].
pub struct MemorySpentSet {
    shards: Box<[Mutex<Shard>]>,
    epoch_start: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<[u8; 32], u64>,
    /// The size at which the next sweep of expired keys runs.
    sweep_at: usize,
}

impl Default for MemorySpentSet {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySpentSet {
    /// An empty set whose epoch begins now (system clock).
    pub fn new() -> Self {
        Self::with_epoch_start(unix_now())
    }

    /// An empty set whose epoch began at `epoch_start` (Unix seconds), e.g. 0 for callers on a
    /// clock of their own.
    pub fn with_epoch_start(epoch_start: u64) -> Self {
        let shards = (0..64)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    sweep_at: 1024,
                })
            })
            .collect();
        MemorySpentSet {
            shards,
            epoch_start,
        }
    }

    /// When the set's epoch began (Unix seconds).
    pub fn epoch_start(&self) -> u64 {
        self.epoch_start
    }

    /// Records `key` as spent (synchronous form of [`SpentSet::insert`]).
    pub fn insert_now(&self, key: [u8; 32], expires_at: u64, now: u64) -> bool {
        let mut shard = self.shards[key[0] as usize % self.shards.len()].lock();
        if shard.map.len() >= shard.sweep_at {
            shard.map.retain(|_, exp| *exp > now);
            shard.sweep_at = (shard.map.len() * 2).max(1024);
        }
        // One hash of the key for the look-up and the insert.
        match shard.map.entry(key) {
            Entry::Occupied(held) if *held.get() > now => false,
            Entry::Occupied(mut expired) => {
                expired.insert(expires_at);
                true
            }
            Entry::Vacant(free) => {
                free.insert(expires_at);
                true
            }
        }
    }

    /// Forgets `key` (synchronous form of [`SpentSet::release`]).
    pub fn release_now(&self, key: [u8; 32], now: u64) -> bool {
        let mut shard = self.shards[key[0] as usize % self.shards.len()].lock();
        matches!(shard.map.remove(&key), Some(exp) if exp > now)
    }

    /// How many keys are held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SpentSet for MemorySpentSet {
    fn insert(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        // A call's pending limits check runs first (see [`fuse`]): a refused call spends nothing.
        Box::pin(async move {
            if let Some(pending) = fuse::pending_check() {
                if pending.before_spend(None).await == fuse::Before::Refused {
                    return Ok(false);
                }
            }
            Ok(self.insert_now(key, expires_at, now))
        })
    }

    fn release(&self, key: [u8; 32], now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let held = self.release_now(key, now);
        Box::pin(async move { Ok(held) })
    }

    fn insert_issued(
        &self,
        key: [u8; 32],
        issued_at: u64,
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            if let Some(pending) = fuse::pending_check() {
                if pending.before_spend(None).await == fuse::Before::Refused {
                    return Ok(false);
                }
            }
            Ok(issued_at >= self.epoch_start && self.insert_now(key, expires_at, now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_until_expiry() {
        let s = MemorySpentSet::new();
        assert!(s.insert_now([1; 32], 100, 10));
        assert!(!s.insert_now([1; 32], 100, 50));
        assert!(s.insert_now([2; 32], 100, 50));
        // After expiry the key may be recorded again (the credential itself has expired too, so
        // its rail refuses it before asking).
        assert!(s.insert_now([1; 32], 200, 100));
    }

    #[test]
    fn release_once() {
        let s = MemorySpentSet::new();
        assert!(s.insert_now([3; 32], 100, 10));
        assert!(s.release_now([3; 32], 20), "held: released");
        assert!(
            !s.release_now([3; 32], 20),
            "a second release finds nothing"
        );
        assert!(s.insert_now([3; 32], 100, 30), "accepted once more");
        assert!(!s.insert_now([3; 32], 100, 31));
        // An expired key counts as not held.
        assert!(!s.release_now([3; 32], 100));
        assert!(!s.release_now([9; 32], 0), "never held");
    }

    #[test]
    fn credentials_from_before_the_epoch_are_refused() {
        let s = MemorySpentSet::with_epoch_start(1000);
        let insert = |k: u8, issued: u64| {
            let mut f = s.insert_issued([k; 32], issued, 2000, 1500);
            let waker = std::task::Waker::noop();
            match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
                std::task::Poll::Ready(r) => r.unwrap(),
                std::task::Poll::Pending => unreachable!("the memory set answers at once"),
            }
        };
        assert!(!insert(1, 999), "issued before the epoch");
        assert!(insert(1, 1000));
        assert!(!insert(1, 1000), "spent");
        assert!(insert(2, 1400));
        let fresh = MemorySpentSet::new();
        assert!(fresh.epoch_start() + 5 >= unix_now());
    }

    #[test]
    fn cluster_buckets_are_fixed_and_spread() {
        // Fixed by the scope string alone (every instance computes the same).
        assert_eq!(
            cluster_bucket("anon:127.0.0.1"),
            cluster_bucket("anon:127.0.0.1")
        );
        let mut seen = [false; 256];
        for i in 0..4096u32 {
            seen[usize::from(cluster_bucket(&format!("anon:10.0.{}.{}", i >> 8, i & 255)))] = true;
        }
        assert!(
            seen.iter().filter(|s| **s).count() > 240,
            "spread over the buckets"
        );
        assert!(!MemorySpentSet::new().caller_buckets());
    }

    #[test]
    fn sweeps_bound_memory() {
        let s = MemorySpentSet::new();
        for i in 0..200_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            k[0] = (i % 64) as u8;
            k[4..8].copy_from_slice(&i.to_be_bytes());
            assert!(s.insert_now(k, u64::from(i) + 10, u64::from(i)));
        }
        assert!(
            s.len() < 200_000 / 4,
            "expired keys are swept, held {}",
            s.len()
        );
    }

    #[test]
    fn concurrent_inserts_accept_once() {
        let s = std::sync::Arc::new(MemorySpentSet::new());
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let s = s.clone();
                    sc.spawn(move || {
                        (0..1000)
                            .filter(|i| s.insert_now([(*i % 256) as u8; 32], 100, 0))
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 256);
    }
}
