//! The Equi-X variant of the puzzle (algorithm 2).
//!
//! Equi-X is Tor's asymmetric, memory-hard client puzzle: finding a solution for a challenge
//! string takes a few milliseconds and some memory, checking one takes microseconds. The
//! verifier and solver are in the `equix` crate (LGPL-3.0-only), which this crate uses only
//! when built with its `equix` feature; without it the constants and encodings below still
//! exist, but tokens of algorithm 2 are never minted and never pass.
//!
//! Sub-puzzle `i` of a token is solved by a `u64` nonce `n` and an Equi-X solution `S` (16
//! bytes, as `equix::Solution::to_bytes` packs it) such that
//! - `S` is an Equi-X solution of the challenge string `C = raw || u8(i) || u64_be(n)`, and
//! - the first 8 bytes of `SHA-256(C || S)`, big-endian, are below
//!   [`target_for`](crate::puzzle::target_for)`(effort, k)`.
//!
//! The token's `effort` counts Equi-X solutions examined (not hashes). A credential carries three
//! numbers per sub-puzzle: `n`, then `S[0..8]` and `S[8..16]` each read as a big-endian `u64`,
//! so `solution="n0,s0hi,s0lo,n1,s1hi,s1lo,…"` (at most 21 sub-puzzles fit the 64-number limit
//! of a credential).

use sha2::{Digest, Sha256};

use crate::puzzle::{ChallengeToken, MESSAGE_LEN, TOKEN_LEN};

/// Equi-X solutions examined per second on the reference core: about 300 solve attempts a
/// second, each yielding about two solutions on average (measured side by side with the
/// SHA-256 solver, `examples/hashrate.rs` of turnpike-client). A price in hashes takes
/// `hashes / reference_hashrate` seconds; its Equi-X challenge asks for as many solutions as
/// this rate examines in that time.
/// `expected_seconds` of an Equi-X challenge is `effort / EQUIX_REFERENCE_RATE`.
pub const EQUIX_REFERENCE_RATE: u64 = 600;

/// The most sub-puzzles an Equi-X challenge carries (3 numbers each within the 64-number limit
/// of a credential).
pub const MAX_EQUIX_SUBPUZZLES: u8 = 21;

/// Numbers a credential carries per Equi-X sub-puzzle: the nonce and the two halves of the
/// solution.
pub const NUMBERS_PER_SUBPUZZLE: usize = 3;

/// Converts an effort in SHA-256 hashes (the unit of prices and `[tools]` config) into Equi-X
/// solutions that take the same time on the reference core:
/// `ceil(hashes × EQUIX_REFERENCE_RATE / reference_hashrate)`, at least 1.
pub fn effort_from_hashes(hashes: u64, reference_hashrate: u64) -> u64 {
    let num = u128::from(hashes) * u128::from(EQUIX_REFERENCE_RATE);
    let e = num.div_ceil(u128::from(reference_hashrate.max(1)));
    u64::try_from(e).unwrap_or(u64::MAX).max(1)
}

/// The Equi-X challenge string of sub-puzzle `i` with nonce `n`: `raw || u8(i) || u64_be(n)`.
pub fn challenge_bytes(raw: &[u8; TOKEN_LEN], i: u8, n: u64) -> [u8; MESSAGE_LEN] {
    let mut c = [0u8; MESSAGE_LEN];
    c[..TOKEN_LEN].copy_from_slice(raw);
    c[TOKEN_LEN] = i;
    c[TOKEN_LEN + 1..].copy_from_slice(&n.to_be_bytes());
    c
}

/// The two numbers a credential carries for a 16-byte solution.
pub fn split_solution(s: &[u8; 16]) -> (u64, u64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&s[..8]);
    lo.copy_from_slice(&s[8..]);
    (u64::from_be_bytes(hi), u64::from_be_bytes(lo))
}

/// The 16 solution bytes from the two numbers a credential carries.
pub fn join_solution(hi: u64, lo: u64) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&hi.to_be_bytes());
    s[8..].copy_from_slice(&lo.to_be_bytes());
    s
}

/// The first 8 bytes of `SHA-256(C || S)`, big-endian.
pub fn solution_prefix(challenge: &[u8; MESSAGE_LEN], solution: &[u8; 16]) -> u64 {
    let d = Sha256::new()
        .chain_update(challenge)
        .chain_update(solution)
        .finalize();
    let mut p = [0u8; 8];
    p.copy_from_slice(&d[..8]);
    u64::from_be_bytes(p)
}

/// Whether `(n, solution)` solves sub-puzzle `i` of the token `raw` under `target`. The cheap
/// SHA-256 check runs before the Equi-X verification.
#[cfg(feature = "equix")]
pub fn check_subpuzzle(
    raw: &[u8; TOKEN_LEN],
    i: u8,
    n: u64,
    solution: &[u8; 16],
    target: u64,
) -> bool {
    let c = challenge_bytes(raw, i, n);
    if solution_prefix(&c, solution) >= target {
        return false;
    }
    let Ok(s) = ::equix::Solution::try_from_bytes(solution) else {
        return false;
    };
    ::equix::verify(&c, &s).is_ok()
}

/// Reusable solver memory for [`try_nonce`] (about 1.8 MB, on the heap).
#[cfg(feature = "equix")]
pub struct Scratch(::equix::SolverMemory);

#[cfg(feature = "equix")]
impl Scratch {
    /// Allocates solver memory.
    pub fn new() -> Self {
        Scratch(::equix::SolverMemory::new())
    }
}

#[cfg(feature = "equix")]
impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "equix")]
impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

/// Solves the Equi-X challenge of sub-puzzle `i` with nonce `n` and returns the first solution
/// whose SHA-256 check passes under `target` (if any), with the number of solutions examined.
/// A challenge string for which Equi-X builds no program has no solution.
#[cfg(feature = "equix")]
pub fn try_nonce(
    raw: &[u8; TOKEN_LEN],
    i: u8,
    n: u64,
    target: u64,
    scratch: &mut Scratch,
) -> (Option<[u8; 16]>, u64) {
    let c = challenge_bytes(raw, i, n);
    let Ok(eq) = ::equix::EquiX::new(&c) else {
        return (None, 0);
    };
    let mut examined = 0;
    for s in eq.solve_with_memory(&mut scratch.0) {
        examined += 1;
        let bytes = s.to_bytes();
        if solution_prefix(&c, &bytes) < target {
            return (Some(bytes), examined);
        }
    }
    (None, examined)
}

/// Whether `numbers` (three per sub-puzzle) solve every sub-puzzle of an Equi-X token.
pub(crate) fn solution_holds(token: &ChallengeToken, numbers: &[u64]) -> bool {
    let k = usize::from(token.subpuzzles());
    if numbers.len() != k * NUMBERS_PER_SUBPUZZLE {
        return false;
    }
    #[cfg(feature = "equix")]
    {
        let target = token.target();
        numbers
            .chunks_exact(NUMBERS_PER_SUBPUZZLE)
            .zip(0u8..)
            .all(|(c, i)| match c {
                [n, hi, lo] => {
                    check_subpuzzle(token.raw(), i, *n, &join_solution(*hi, *lo), target)
                }
                _ => false,
            })
    }
    #[cfg(not(feature = "equix"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effort_mapping() {
        // 8 MH at 8 MH/s is one second, which is EQUIX_REFERENCE_RATE solutions.
        assert_eq!(
            effort_from_hashes(8_000_000, 8_000_000),
            EQUIX_REFERENCE_RATE
        );
        assert_eq!(effort_from_hashes(1, 8_000_000), 1);
        assert_eq!(effort_from_hashes(0, 8_000_000), 1);
        assert_eq!(effort_from_hashes(u64::MAX, 1), u64::MAX);
        assert_eq!(effort_from_hashes(10, 0), 10 * EQUIX_REFERENCE_RATE);
    }

    #[test]
    fn solution_numbers_round_trip() {
        let s: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        let (hi, lo) = split_solution(&s);
        assert_eq!(join_solution(hi, lo), s);
    }
}

#[cfg(all(test, feature = "equix"))]
mod equix_rail_tests {
    use super::*;
    use crate::load::ManualClock;
    use crate::PowCredential;
    use crate::{KeyRing, PowConfig, PowRail};
    use std::sync::Arc;
    use turnpike_core::{CallFacts, Credential, Rail, Verdict};
    use turnpike_store::MemorySpentSet;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("never waits"),
        }
    }

    fn solve(token: &ChallengeToken) -> Vec<u64> {
        let mut scratch = Scratch::new();
        let mut out = Vec::new();
        for i in 0..token.subpuzzles() {
            let (n, s) = (0u64..)
                .find_map(|n| {
                    try_nonce(token.raw(), i, n, token.target(), &mut scratch)
                        .0
                        .map(|s| (n, s))
                })
                .unwrap();
            let (hi, lo) = split_solution(&s);
            out.extend([n, hi, lo]);
        }
        out
    }

    #[test]
    fn equix_challenges_round_trip() {
        let cfg = PowConfig {
            algorithm: crate::Algorithm::Equix,
            ..PowConfig::default()
        };
        let rail = PowRail::with_clock(
            cfg,
            KeyRing::from_secrets(vec![(1, [3; 32])]).unwrap(),
            Arc::new(MemorySpentSet::with_epoch_start(0)),
            Arc::new(ManualClock::new(0)),
        );
        let call = CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some("echo".into()),
            args_hash: [1; 32],
            caller: None,
            peer: None,
            now: 1_700_000_000,
        };
        // 200,000 hashes at 8 MH/s = 25 ms = 15 Equi-X solutions.
        let offer = crate::offer(200_000);
        let ch = block_on(rail.challenge(&call, &offer)).unwrap();
        assert!(ch.www_authenticate.contains("algorithm=\"equix\""));
        assert_eq!(ch.details["effort"], 15);
        assert_eq!(ch.details["expected_seconds"], 0.025);
        let token = ChallengeToken::decode(ch.details["challenge"].as_str().unwrap()).unwrap();
        assert_eq!(token.algorithm(), crate::Algorithm::Equix);
        let sol = solve(&token);
        assert_eq!(sol.len(), 12);
        let cred = |solution: Vec<u64>| {
            Credential::from(PowCredential {
                challenge: token.encode(),
                solution,
            })
        };
        // Wrong: a nonce count of the SHA-256 form; a tampered solution half.
        let v = block_on(rail.verify(&call, &offer, &cred(sol[..4].to_vec())));
        assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");
        let mut bad = sol.clone();
        bad[1] ^= 1;
        let v = block_on(rail.verify(&call, &offer, &cred(bad)));
        assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");
        let v = block_on(rail.verify(&call, &offer, &cred(sol.clone())));
        assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
        let v = block_on(rail.verify(&call, &offer, &cred(sol)));
        assert!(matches!(v, Verdict::Stale(_)), "{v:?}");
    }
}
