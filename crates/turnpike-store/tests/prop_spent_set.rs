//! Property: a single-use key is accepted at most once while it is remembered.
//!
//! Random sequences of inserts (few distinct keys, so repeats are common; time moving forward by
//! random steps; random lifetimes) against a model: a key is accepted exactly when it is new or
//! its previous acceptance has expired. Large enough runs push the shards past their sweep
//! threshold, so the sweep is exercised too. A second property races threads on one key.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use turnpike_store::{MemorySpentSet, SpentSet};

fn key(i: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    // Spread the keys over a few shards, and make several share one.
    k[0] = i % 3;
    k[1] = i;
    k
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn accepted_at_most_once_while_remembered(
        ops in proptest::collection::vec((0u8..12, 1u64..50, 0u64..8), 1..400)
    ) {
        let set = MemorySpentSet::new();
        let mut model: HashMap<u8, u64> = HashMap::new();
        let mut now = 1_000u64;
        for (k, ttl, dt) in ops {
            now += dt;
            let expected = model.get(&k).is_none_or(|&exp| exp <= now);
            let got = set.insert_now(key(k), now + ttl, now);
            prop_assert_eq!(got, expected, "key {} at {}", k, now);
            if got {
                model.insert(k, now + ttl);
            }
        }
    }

    #[test]
    fn sweeping_never_forgets_a_live_key(live in 1u8..40, filler in 1100usize..2500) {
        // Fill one shard past its sweep threshold with short-lived keys, then check that every
        // long-lived key inserted before the sweep is still refused.
        let set = MemorySpentSet::new();
        let now = 10u64;
        for i in 0..live {
            prop_assert!(set.insert_now(key(i * 3), 1_000_000, now));
        }
        for i in 0..filler {
            let mut k = [0u8; 32];
            k[0] = 0;
            k[2..10].copy_from_slice(&(i as u64).to_be_bytes());
            k[10] = 0xff;
            prop_assert!(set.insert_now(k, now + 1, now));
        }
        // Time passes: the filler expires and the next insert sweeps the shard.
        for i in 0..live {
            prop_assert!(!set.insert_now(key(i * 3), 1_000_000, now + 5), "live key {} forgotten", i);
        }
    }

    #[test]
    fn one_winner_among_racing_threads(threads in 2usize..8, k in 0u8..255) {
        let set = Arc::new(MemorySpentSet::new());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let wins: usize = rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..threads {
                let set = set.clone();
                tasks.push(tokio::spawn(async move {
                    set.insert(key(k), 2_000, 1_000).await.expect("memory never fails")
                }));
            }
            let mut wins = 0;
            for t in tasks {
                if t.await.expect("task") {
                    wins += 1;
                }
            }
            wins
        });
        prop_assert_eq!(wins, 1);
    }
}
