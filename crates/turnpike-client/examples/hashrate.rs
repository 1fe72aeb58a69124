//! Measures the solver against the raw SHA-256 rate of this machine.
//!
//! ```text
//! cargo run --release -p turnpike-client --example hashrate [SECONDS]
//! ```
//!
//! Prints: plain SHA-256 of 120-byte messages on one core (what the puzzle's messages are), the
//! solver on one thread, and the solver on every core. The solver hashes with a precomputed
//! midstate (two compressions per nonce instead of three), so it should beat the raw rate.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use turnpike_client::{default_threads, solve_with, SolveError, SolveOptions};
use turnpike_core::CallFacts;
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

fn raw_rate(secs: f64) -> f64 {
    let mut msg = [0x5au8; 120];
    let mut best = 0u64;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..10_000 {
            msg[112..].copy_from_slice(&n.to_be_bytes());
            let d = Sha256::digest(msg);
            best = best.max(u64::from(d[0]));
            n += 1;
        }
    }
    std::hint::black_box(best);
    n as f64 / start.elapsed().as_secs_f64()
}

fn solver_rate(rail: &PowRail, threads: usize, secs: f64, raw: f64) -> f64 {
    let facts = CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("bench".into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now: 1_700_000_000,
    };
    // An effort no one finishes: the run ends at the hash budget.
    let token = rail.mint(&facts, u64::MAX / 2);
    let budget = (raw * secs * threads as f64) as u64;
    let start = Instant::now();
    let r = solve_with(
        &token,
        &SolveOptions {
            threads,
            max_hashes: Some(budget),
            progress_interval: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let elapsed = start.elapsed().as_secs_f64();
    match r {
        Err(SolveError::HashLimit { hashes, .. }) => hashes as f64 / elapsed,
        other => panic!("unexpected: {other:?}"),
    }
}

/// Equi-X solutions examined per second on one thread (builds with the `equix` feature).
#[cfg(feature = "equix")]
fn equix_rate(secs: f64) -> f64 {
    let cfg = PowConfig {
        algorithm: turnpike_pow::Algorithm::Equix,
        ..PowConfig::default()
    };
    let rail = PowRail::new(
        cfg,
        KeyRing::from_secrets(vec![(1, [1; 32])]).expect("one key"),
        Arc::new(MemorySpentSet::with_epoch_start(0)),
    );
    let facts = CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("bench".into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now: 1_700_000_000,
    };
    let token = rail.mint(&facts, u64::MAX / 2);
    let budget = (secs * 300.0) as u64;
    let start = Instant::now();
    match solve_with(
        &token,
        &SolveOptions {
            threads: 1,
            max_hashes: Some(budget),
            ..Default::default()
        },
    ) {
        Err(SolveError::HashLimit { hashes, .. }) => hashes as f64 / start.elapsed().as_secs_f64(),
        other => panic!("unexpected: {other:?}"),
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rail = PowRail::new(
        PowConfig::default(),
        KeyRing::from_secrets(vec![(1, [1; 32])]).expect("one key"),
        Arc::new(MemorySpentSet::with_epoch_start(0)),
    );
    let cores = default_threads();
    let raw = raw_rate(secs);
    println!(
        "raw SHA-256, 120-byte messages, 1 core: {:>8.2} MH/s",
        raw / 1e6
    );
    let one = solver_rate(&rail, 1, secs, raw);
    println!(
        "solver, 1 thread:                       {:>8.2} MH/s ({:.0}% of raw)",
        one / 1e6,
        100.0 * one / raw
    );
    let all = solver_rate(&rail, cores, secs, raw);
    println!(
        "solver, {cores} threads:                      {:>8.2} MH/s ({:.2}x one thread)",
        all / 1e6,
        all / one
    );
    #[cfg(feature = "equix")]
    println!(
        "Equi-X, 1 thread:                       {:>8.0} solutions/s",
        equix_rate(secs)
    );
}
