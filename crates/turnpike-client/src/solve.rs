//! The multi-core proof-of-work solver.
//!
//! Every thread keeps its own [`PuzzleHasher`] (the SHA-256 state after the token's first 64
//! bytes, computed once), so each nonce costs two SHA-256 compressions. Threads take chunks of
//! nonces of the first unsolved sub-puzzle from a shared counter, so all threads work on one
//! sub-puzzle until it is solved and then move on together: no thread idles while work is left.
//! The calling thread only waits, reports progress and collects the result.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use turnpike_pow::puzzle::{Algorithm, ChallengeToken, PuzzleHasher};

/// Nonces a thread takes at a time (about half a millisecond of work on one core).
const CHUNK: u64 = 1 << 14;

/// The most worker threads a solve starts.
pub const MAX_THREADS: usize = 512;

/// Why a solve stopped without a solution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolveError {
    /// The cancel flag was raised.
    #[error("cancelled after {hashes} hashes")]
    Cancelled {
        /// Hashes done before stopping.
        hashes: u64,
    },
    /// The hash budget ran out.
    #[error("gave up after {hashes} hashes (limit {limit})")]
    HashLimit {
        /// Hashes done before stopping.
        hashes: u64,
        /// The budget given.
        limit: u64,
    },
    /// The token's algorithm is not supported by this build.
    #[error("the {0} puzzle algorithm needs turnpike built with the `equix` feature")]
    Unsupported(Algorithm),
    /// Every nonce was tried without success (practically impossible unless the effort is
    /// near 2^64).
    #[error("no solution exists in the whole nonce space")]
    Exhausted,
}

/// How to run a solve.
#[derive(Clone, Copy)]
pub struct SolveOptions<'a> {
    /// Worker threads; 0 means one per available core. At most [`MAX_THREADS`].
    pub threads: usize,
    /// Called on the calling thread with the number of hashes done so far, every
    /// `progress_interval` and once at the end.
    pub progress: Option<&'a dyn Fn(u64)>,
    /// How often `progress` is called.
    pub progress_interval: Duration,
    /// Raised by someone else to stop the solve ([`SolveError::Cancelled`]).
    pub cancel: Option<&'a AtomicBool>,
    /// Give up after about this many hashes ([`SolveError::HashLimit`]); checked after every
    /// chunk, so a solve may overshoot by `threads × 16384` hashes.
    pub max_hashes: Option<u64>,
}

impl Default for SolveOptions<'_> {
    fn default() -> Self {
        SolveOptions {
            threads: 0,
            progress: None,
            progress_interval: Duration::from_millis(250),
            cancel: None,
            max_hashes: None,
        }
    }
}

impl std::fmt::Debug for SolveOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolveOptions")
            .field("threads", &self.threads)
            .field("progress", &self.progress.is_some())
            .field("progress_interval", &self.progress_interval)
            .field("cancel", &self.cancel.is_some())
            .field("max_hashes", &self.max_hashes)
            .finish()
    }
}

/// A solution and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solved {
    /// The credential's numbers: one nonce per sub-puzzle for SHA-256; nonce and two solution
    /// halves per sub-puzzle for Equi-X.
    pub nonces: Vec<u64>,
    /// Hashes (SHA-256) or solutions (Equi-X) examined over all threads.
    pub hashes: u64,
    /// Wall-clock time of the solve.
    pub elapsed: Duration,
}

/// Solves `token` on `threads` threads (0 = all cores), reporting hashes done to `progress`
/// (on the calling thread, four times a second). Returns one number per sub-puzzle (three for
/// Equi-X), ready for [`authorization_value`](crate::authorization_value).
pub fn solve(
    token: &ChallengeToken,
    threads: usize,
    progress: Option<&dyn Fn(u64)>,
) -> Result<Vec<u64>, SolveError> {
    solve_with(
        token,
        &SolveOptions {
            threads,
            progress,
            ..SolveOptions::default()
        },
    )
    .map(|s| s.nonces)
}

/// The number of threads `threads = 0` stands for: the available parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// What the workers share.
struct Shared<'a> {
    k: usize,
    found: Vec<AtomicBool>,
    /// For Equi-X: `[n, hi, lo]` per sub-puzzle; for SHA-256 only the first is used.
    answer: Vec<[AtomicU64; 3]>,
    next: Vec<AtomicU64>,
    remaining: AtomicUsize,
    hashes: AtomicU64,
    stop: AtomicBool,
    exhausted: AtomicBool,
    limited: AtomicBool,
    cancel: Option<&'a AtomicBool>,
    max_hashes: Option<u64>,
}

impl Shared<'_> {
    /// The first sub-puzzle at or after `i` that is still open.
    fn open_from(&self, mut i: usize) -> Option<usize> {
        while i < self.k && self.found[i].load(Ordering::Acquire) {
            i += 1;
        }
        (i < self.k).then_some(i)
    }

    /// Whether the workers should stop (solved, cancelled, out of budget).
    fn should_stop(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            self.stop.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Adds `done` hashes; stops everyone if the budget is spent.
    fn count(&self, done: u64) {
        let total = self.hashes.fetch_add(done, Ordering::Relaxed) + done;
        if self.max_hashes.is_some_and(|m| total >= m) {
            self.limited.store(true, Ordering::Relaxed);
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Records an answer for sub-puzzle `i` (first finder counts; any answer is valid).
    fn record(&self, i: usize, answer: [u64; 3]) {
        for (slot, v) in self.answer[i].iter().zip(answer) {
            slot.store(v, Ordering::Relaxed);
        }
        if !self.found[i].swap(true, Ordering::AcqRel)
            && self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Takes the next chunk start of sub-puzzle `i`, or stops everyone when the nonce space is
    /// used up.
    fn take(&self, i: usize, size: u64) -> Option<u64> {
        let c = self.next[i].fetch_add(1, Ordering::Relaxed);
        let start = c.checked_mul(size);
        if start.is_none() {
            self.exhausted.store(true, Ordering::Relaxed);
            self.stop.store(true, Ordering::Relaxed);
        }
        start
    }
}

fn sha256_worker(shared: &Shared<'_>, token: &ChallengeToken) {
    let target = token.target();
    let mut h = PuzzleHasher::new(token.raw());
    let mut i = 0;
    while !shared.should_stop() {
        let Some(open) = shared.open_from(i) else {
            return;
        };
        i = open;
        let Some(start) = shared.take(i, CHUNK) else {
            return;
        };
        // `i < k <= 64`, so it fits a byte.
        h.set_subpuzzle(i as u8);
        let mut hit = None;
        let mut done = 0u64;
        for n in start..=start.saturating_add(CHUNK - 1) {
            done += 1;
            if h.prefix(n) < target {
                hit = Some(n);
                break;
            }
        }
        if let Some(n) = hit {
            shared.record(i, [n, 0, 0]);
        }
        shared.count(done);
    }
}

#[cfg(feature = "equix")]
fn equix_worker(shared: &Shared<'_>, token: &ChallengeToken) {
    use turnpike_pow::equix;
    let target = token.target();
    let mut scratch = equix::Scratch::new();
    let mut i = 0;
    while !shared.should_stop() {
        let Some(open) = shared.open_from(i) else {
            return;
        };
        i = open;
        let Some(n) = shared.take(i, 1) else {
            return;
        };
        let (hit, examined) = equix::try_nonce(token.raw(), i as u8, n, target, &mut scratch);
        if let Some(s) = hit {
            let (hi, lo) = equix::split_solution(&s);
            shared.record(i, [n, hi, lo]);
        }
        shared.count(examined);
    }
}

/// [`solve`] with every option: cancel flag, hash budget, progress interval.
pub fn solve_with(token: &ChallengeToken, opts: &SolveOptions<'_>) -> Result<Solved, SolveError> {
    let algorithm = token.algorithm();
    if algorithm == Algorithm::Equix && !cfg!(feature = "equix") {
        return Err(SolveError::Unsupported(algorithm));
    }
    let started = Instant::now();
    let k = usize::from(token.subpuzzles());
    let shared = Shared {
        k,
        found: (0..k).map(|_| AtomicBool::new(false)).collect(),
        answer: (0..k).map(|_| Default::default()).collect(),
        next: (0..k).map(|_| AtomicU64::new(0)).collect(),
        remaining: AtomicUsize::new(k),
        hashes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        exhausted: AtomicBool::new(false),
        limited: AtomicBool::new(false),
        cancel: opts.cancel,
        max_hashes: opts.max_hashes,
    };
    let threads = if opts.threads == 0 {
        default_threads()
    } else {
        opts.threads
    }
    .min(MAX_THREADS);
    let interval = opts.progress_interval.max(Duration::from_millis(1));
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let shared = &shared;
            s.spawn(move || {
                // Dropping the sender when the worker ends tells the caller.
                let _tx = tx;
                match algorithm {
                    Algorithm::Sha256 => sha256_worker(shared, token),
                    #[cfg(feature = "equix")]
                    Algorithm::Equix => equix_worker(shared, token),
                    #[cfg(not(feature = "equix"))]
                    Algorithm::Equix => {}
                }
            });
        }
        drop(tx);
        loop {
            match rx.recv_timeout(interval) {
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) | Ok(()) => {
                    if let Some(p) = opts.progress {
                        p(shared.hashes.load(Ordering::Relaxed));
                    }
                }
            }
        }
    });
    let hashes = shared.hashes.load(Ordering::Relaxed);
    if let Some(p) = opts.progress {
        p(hashes);
    }
    if shared.remaining.load(Ordering::Acquire) == 0 {
        let nonces = shared
            .answer
            .iter()
            .flat_map(|a| {
                let vals = a.each_ref().map(|v| v.load(Ordering::Relaxed));
                let take = if algorithm == Algorithm::Sha256 { 1 } else { 3 };
                vals.into_iter().take(take)
            })
            .collect();
        return Ok(Solved {
            nonces,
            hashes,
            elapsed: started.elapsed(),
        });
    }
    if shared.limited.load(Ordering::Relaxed) {
        return Err(SolveError::HashLimit {
            hashes,
            limit: opts.max_hashes.unwrap_or(0),
        });
    }
    if shared.exhausted.load(Ordering::Relaxed) {
        return Err(SolveError::Exhausted);
    }
    Err(SolveError::Cancelled { hashes })
}
