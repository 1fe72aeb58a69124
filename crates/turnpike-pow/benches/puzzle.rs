//! The puzzle's inner loop: one nonce checked three ways.
//!
//! - `midstate_compress256`: [`PuzzleHasher`] (SHA-256 state after the first 64 bytes, then
//!   `sha2::compress256` over the two final blocks) — what the solver and verifier use;
//! - `cloned_sha256_state`: a `Sha256` fed the first 64 bytes, cloned per nonce, then fed the
//!   remaining 56 bytes and finalized;
//! - `full_sha256`: hashing all 120 bytes from scratch ([`check_nonce`]).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use turnpike_pow::puzzle::{check_nonce, PuzzleHasher, TOKEN_LEN};

fn bench(c: &mut Criterion) {
    let raw: [u8; TOKEN_LEN] = core::array::from_fn(|i| i as u8);
    let mut g = c.benchmark_group("nonce");
    g.throughput(Throughput::Elements(1));

    let mut h = PuzzleHasher::new(&raw);
    h.set_subpuzzle(1);
    let mut n = 0u64;
    g.bench_function("midstate_compress256", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(h.prefix(black_box(n)))
        })
    });

    let mut base = Sha256::new();
    base.update(&raw[..64]);
    let mut tail = [0u8; 56];
    tail[..47].copy_from_slice(&raw[64..]);
    tail[47] = 1;
    let mut n = 0u64;
    g.bench_function("cloned_sha256_state", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            tail[48..].copy_from_slice(&black_box(n).to_be_bytes());
            let d = base.clone().chain_update(tail).finalize();
            black_box(u64::from_be_bytes(d[..8].try_into().unwrap_or_default()))
        })
    });

    let mut n = 0u64;
    g.bench_function("full_sha256", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(check_nonce(&raw, 1, black_box(n), u64::MAX / 2))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
