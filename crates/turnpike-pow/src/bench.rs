//! Measuring this machine's hash rate on the puzzle, for calibrating `reference_hashrate`.
//!
//! The loop is the solver's: one [`PuzzleHasher`] per thread (the token's first block hashed
//! once), two SHA-256 compressions per nonce. `turnpike check --measure-hashrate` prints what it
//! finds next to the configured reference rate.

use std::time::{Duration, Instant};

use crate::puzzle::{PuzzleHasher, TOKEN_LEN};

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HashRate {
    /// Threads that hashed at once.
    pub threads: usize,
    /// Hashes per second of one thread (the slowest one's share when several ran at once: the
    /// mean of the per-thread rates).
    pub per_thread: f64,
    /// Hashes per second of all the threads together.
    pub total: f64,
}

/// Hashes on `threads` threads (at least 1) for about `duration` each, and reports the rates.
/// The nonces are checked against a target so that the work cannot be optimised away.
pub fn measure(threads: usize, duration: Duration) -> HashRate {
    let threads = threads.max(1);
    let rates: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut token = [0x5a; TOKEN_LEN];
                    token[0] = t as u8;
                    let mut h = PuzzleHasher::new(&token);
                    h.set_subpuzzle(0);
                    let start = Instant::now();
                    let mut n = 0u64;
                    let mut below = 0u64;
                    while start.elapsed() < duration {
                        for _ in 0..4096 {
                            if h.prefix(n) < u64::MAX / 2 {
                                below += 1;
                            }
                            n += 1;
                        }
                    }
                    std::hint::black_box(below);
                    n as f64 / start.elapsed().as_secs_f64()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0.0))
            .collect()
    });
    let total: f64 = rates.iter().sum();
    HashRate {
        threads,
        per_thread: total / threads as f64,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_hashes_on_every_thread() {
        let r = measure(2, Duration::from_millis(30));
        assert_eq!(r.threads, 2);
        assert!(r.per_thread > 0.0 && r.total >= r.per_thread, "{r:?}");
        assert!((r.total - 2.0 * r.per_thread).abs() < 1e-6 * r.total);
        assert_eq!(measure(0, Duration::from_millis(5)).threads, 1);
    }
}
