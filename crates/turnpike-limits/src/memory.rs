//! The in-memory backend: sharded maps of small cells, swept as they grow.
//!
//! Each identity's cells live in one shard (chosen by a keyed hash of its scope key), so a whole
//! check takes one uncontended lock. Cells are keyed by a 64-bit keyed hash of (identity, kind,
//! class), not by the strings themselves: a rate cell costs 16 bytes of payload (key and TAT)
//! plus the map's control byte and slack. A GCRA cell whose TAT has passed is a full bucket, the
//! same as no cell, so sweeping drops it without changing any decision; daily counters from
//! earlier days and in-flight counters at zero go too. Memory is bounded by the identities active
//! within one burst-refill time, however many come and go.

use foldhash::fast::RandomState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use turnpike_core::BoxFuture;

use crate::backend::{
    cell_units, outcome, Check, CheckOutcome, Class, Lease, LeaseInner, LimitBackend, LimitError,
    LoopBrake, Raw, SpendOutcome, SpendReceipt, MAX_RATES,
};
use crate::quota::{gcra_step, Quota, RateDecision, NANOS};

/// A source of wall-clock time in nanoseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Now, in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
}

/// The system clock, read monotonically: the wall time at construction plus the monotonic time
/// since, so a wall-clock step never runs a cell backwards.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    base_unix: u64,
    base: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        let base_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        SystemClock {
            base_unix,
            base: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_nanos(&self) -> u64 {
        let e = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.base_unix.saturating_add(e)
    }
}

/// A clock that moves only when told to (for tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `unix_nanos`.
    pub fn new(unix_nanos: u64) -> ManualClock {
        ManualClock(AtomicU64::new(unix_nanos))
    }
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(n, Ordering::SeqCst);
    }
    /// Sets the clock to `unix_nanos`.
    pub fn set(&self, unix_nanos: u64) {
        self.0.store(unix_nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock> Clock for Arc<C> {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}

/// Keys are already keyed hashes: the map uses them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

#[derive(Clone, Copy)]
struct Counter {
    day: u32,
    used: u64,
}

const MIN_SWEEP: usize = 1024;

#[derive(Default)]
struct Shard {
    /// GCRA cells (rate, loop brake, strikes): TAT in Unix nanoseconds.
    cells: Map<u64>,
    /// Daily counters (calls per identity, spend per key).
    counters: Map<Counter>,
    /// In-flight calls per identity.
    inflight: Map<u32>,
    /// The size of `cells` or `counters` at which the next sweep runs.
    sweep_at: usize,
}

impl Shard {
    fn maybe_sweep(&mut self, now: u64, today: u32) {
        if self.cells.len().max(self.counters.len()) >= self.sweep_at {
            self.sweep(now, today);
        }
    }

    fn sweep(&mut self, now: u64, today: u32) {
        self.cells.retain(|_, tat| *tat > now);
        self.counters.retain(|_, c| c.day >= today);
        if self.cells.capacity() > 4 * self.cells.len() + MIN_SWEEP {
            self.cells.shrink_to(2 * self.cells.len());
        }
        if self.counters.capacity() > 4 * self.counters.len() + MIN_SWEEP {
            self.counters.shrink_to(2 * self.counters.len());
        }
        self.sweep_at = (2 * self.cells.len().max(self.counters.len())).max(MIN_SWEEP);
    }
}

/// One shard on its own cache line, so neighbouring locks do not share one.
#[repr(align(64))]
struct Padded(Mutex<Shard>);

/// Key kinds, hashed into every cell key so kinds never collide.
const KIND_RATE: u8 = 1;
const KIND_LOOP: u8 = 2;
const KIND_STRIKE: u8 = 3;
const KIND_DAILY: u8 = 4;
const KIND_CONC: u8 = 5;
const KIND_SPEND: u8 = 6;

/// The in-memory limits backend (the embedded default).
pub struct MemoryBackend {
    shards: Box<[Padded]>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl MemoryBackend {
    /// A backend on the system clock.
    pub fn new() -> MemoryBackend {
        Self::with_clock(Arc::new(SystemClock::default()))
    }

    /// A backend on `clock` (tests inject a [`ManualClock`]).
    pub fn with_clock(clock: Arc<dyn Clock>) -> MemoryBackend {
        let shards = (0..64)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    sweep_at: MIN_SWEEP,
                    ..Shard::default()
                }))
            })
            .collect();
        MemoryBackend {
            shards,
            hasher: RandomState::default(),
            clock,
        }
    }

    fn scope_hash(&self, scope: &str) -> u64 {
        self.hasher.hash_one(scope)
    }

    fn shard_of(&self, scope_hash: u64) -> usize {
        // High bits pick the shard; the map uses the whole cell key.
        (scope_hash >> 58) as usize % self.shards.len()
    }

    fn rate_key(&self, scope_hash: u64, class: &Class<'_>) -> u64 {
        let (tag, name) = class.parts();
        self.hasher.hash_one((scope_hash, KIND_RATE, tag, name))
    }

    fn now(&self) -> (u64, u32, u64) {
        let now = self.clock.now_nanos();
        let secs = now / NANOS;
        (
            now,
            u32::try_from(secs / 86_400).unwrap_or(u32::MAX),
            secs % 86_400,
        )
    }

    /// Checks and counts one GCRA cell: the identity `scope`'s cell for `class` under `quota`.
    /// The fast path for a single limit (what the decision benchmark measures).
    pub fn check_rate(&self, scope: &str, class: &Class<'_>, quota: &Quota) -> RateDecision {
        let now = self.clock.now_nanos();
        let hs = self.scope_hash(scope);
        let key = self.rate_key(hs, class);
        let (t, tau) = cell_units(quota, 1);
        let mut shard = self.shards[self.shard_of(hs)].0.lock();
        if shard.cells.len() >= shard.sweep_at {
            let today = u32::try_from(now / NANOS / 86_400).unwrap_or(u32::MAX);
            shard.sweep(now, today);
        }
        let tat = shard.cells.get(&key).copied().unwrap_or(0);
        let step = gcra_step(tat, now, t, tau, quota.burst, 1);
        if step.counted.allowed {
            shard.cells.insert(key, step.new_tat);
        }
        step.counted
    }

    /// The synchronous form of [`LimitBackend::check`].
    pub fn check_now(&self, check: &Check<'_>) -> Result<CheckOutcome, LimitError> {
        let n = check.rates.len();
        if n > MAX_RATES {
            return Err(LimitError::Invalid(format!(
                "{n} rate cells in one check (at most {MAX_RATES})"
            )));
        }
        let (now, today, secs_into_day) = self.now();
        let hs = self.scope_hash(check.scope);
        let si = self.shard_of(hs);
        let mut keys = [0u64; MAX_RATES];
        for (k, rc) in keys.iter_mut().zip(check.rates) {
            *k = self.rate_key(hs, &rc.class);
        }
        let loop_key = check
            .loop_brake
            .as_ref()
            .map(|l| self.hasher.hash_one((hs, KIND_LOOP, l.tool, l.args_hash)));
        let strike_key = self.hasher.hash_one((hs, KIND_STRIKE));
        let daily_key = self.hasher.hash_one((hs, KIND_DAILY));
        let conc_key = self.hasher.hash_one((hs, KIND_CONC));

        let mut shard = self.shards[si].0.lock();
        shard.maybe_sweep(now, today);
        let tat_of = |s: &Shard, k: u64| s.cells.get(&k).copied().unwrap_or(0).max(now);
        let mut ok = true;
        let mut tats = [0u64; MAX_RATES];
        for i in 0..n {
            let tat = tat_of(&shard, keys[i]);
            let (t, tau) = cell_units(&check.rates[i].quota, 1);
            tats[i] = tat;
            if tat + t - now > tau {
                ok = false;
            }
        }
        let mut loop_tat = now;
        let mut loop_ok = true;
        if let (Some(l), Some(k)) = (&check.loop_brake, loop_key) {
            loop_tat = tat_of(&shard, k);
            let (t, tau) = cell_units(&l.brake.quota(), 1);
            if loop_tat + t - now > tau {
                ok = false;
                loop_ok = false;
            }
        }
        let mut used = 0;
        if let Some(cap) = check.daily_cap {
            used = match shard.counters.get(&daily_key) {
                Some(c) if c.day == today => c.used,
                _ => 0,
            };
            if used.saturating_add(1) > cap {
                ok = false;
            }
        }
        let mut in_flight = 0;
        if let Some(c) = &check.concurrency {
            in_flight = shard.inflight.get(&conc_key).copied().unwrap_or(0);
            if in_flight >= c.max {
                ok = false;
            }
        }
        let mut lease = None;
        if ok {
            for i in 0..n {
                let (t, _) = cell_units(&check.rates[i].quota, 1);
                shard.cells.insert(keys[i], tats[i] + t);
            }
            if let (Some(l), Some(k)) = (&check.loop_brake, loop_key) {
                let (t, _) = cell_units(&l.brake.quota(), 1);
                shard.cells.insert(k, loop_tat + t);
            }
            if check.daily_cap.is_some() {
                used += 1;
                shard
                    .counters
                    .insert(daily_key, Counter { day: today, used });
            }
            if check.concurrency.is_some() {
                in_flight += 1;
                shard.inflight.insert(conc_key, in_flight);
                lease = Some(Lease {
                    inner: LeaseInner::Memory {
                        shard: si,
                        cell: conc_key,
                    },
                });
            }
        }
        let mut strike_ahead = 0;
        if let Some(l) = &check.loop_brake {
            let mut st = tat_of(&shard, strike_key);
            if !loop_ok {
                st = st.saturating_add(nanos(l.brake.strike_decay));
                shard.cells.insert(strike_key, st);
            }
            strike_ahead = st - now;
        }
        drop(shard);
        let mut rel = [0u64; MAX_RATES];
        for i in 0..n {
            rel[i] = tats[i] - now;
        }
        Ok(outcome(
            check,
            Raw {
                allowed: ok,
                unit_nanos: 1,
                tats: &rel[..n],
                loop_tat: loop_tat - now,
                strike_ahead,
                used,
                in_flight,
                secs_into_day,
            },
            lease,
        ))
    }

    /// The synchronous form of [`LimitBackend::effort_multiplier`].
    pub fn effort_multiplier_now(&self, scope: &str, brake: &LoopBrake) -> u32 {
        let now = self.clock.now_nanos();
        let hs = self.scope_hash(scope);
        let key = self.hasher.hash_one((hs, KIND_STRIKE));
        let st = self.shards[self.shard_of(hs)]
            .0
            .lock()
            .cells
            .get(&key)
            .copied()
            .unwrap_or(0);
        brake.multiplier_for(Duration::from_nanos(st.saturating_sub(now)))
    }

    /// The synchronous form of [`LimitBackend::spend`].
    pub fn spend_now(&self, key: &str, amount: u64, cap: u64) -> SpendOutcome {
        let (_, today, secs_into_day) = self.now();
        let h = self.hasher.hash_one((KIND_SPEND, key));
        let mut shard = self.shards[self.shard_of(h)].0.lock();
        let used = match shard.counters.get(&h) {
            Some(c) if c.day == today => c.used,
            _ => 0,
        };
        let reset = Duration::from_secs(86_400 - secs_into_day);
        match used.checked_add(amount).filter(|t| *t <= cap) {
            Some(total) => {
                shard.counters.insert(
                    h,
                    Counter {
                        day: today,
                        used: total,
                    },
                );
                SpendOutcome {
                    accepted: true,
                    spent: total,
                    cap,
                    reset,
                    receipt: Some(SpendReceipt {
                        key: key.to_string(),
                        day: u64::from(today),
                        amount,
                    }),
                }
            }
            None => SpendOutcome {
                accepted: false,
                spent: used,
                cap,
                reset,
                receipt: None,
            },
        }
    }

    /// The synchronous form of [`LimitBackend::refund`].
    pub fn refund_now(&self, receipt: &SpendReceipt) {
        let h = self.hasher.hash_one((KIND_SPEND, receipt.key.as_str()));
        let mut shard = self.shards[self.shard_of(h)].0.lock();
        if let Some(c) = shard.counters.get_mut(&h) {
            if u64::from(c.day) == receipt.day {
                c.used = c.used.saturating_sub(receipt.amount);
            }
        }
    }

    /// Sweeps every shard now: drops full buckets, old counters, and spare map capacity. The
    /// backend also sweeps a shard by itself whenever it doubles; call this periodically to
    /// give memory back after a crowd has gone.
    pub fn sweep(&self) {
        let (now, today, _) = self.now();
        for s in self.shards.iter() {
            s.0.lock().sweep(now, today);
        }
    }

    /// Cells and counters held (stale ones included until swept).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.0.lock();
                s.cells.len() + s.counters.len() + s.inflight.len()
            })
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the maps' tables (capacity × entry size, plus control bytes): the
    /// backend's own estimate of its memory.
    pub fn table_bytes(&self) -> usize {
        fn bytes<V>(m: &Map<V>) -> usize {
            m.capacity() * (std::mem::size_of::<(u64, V)>() + 1)
        }
        self.shards
            .iter()
            .map(|s| {
                let s = s.0.lock();
                bytes(&s.cells) + bytes(&s.counters) + bytes(&s.inflight)
            })
            .sum()
    }

    fn release_now(&self, shard: usize, cell: u64) {
        let Some(s) = self.shards.get(shard) else {
            return;
        };
        let mut s = s.0.lock();
        if let Some(n) = s.inflight.get_mut(&cell) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.inflight.remove(&cell);
            }
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl LimitBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn check<'a>(
        &'a self,
        check: &'a Check<'a>,
    ) -> BoxFuture<'a, Result<CheckOutcome, LimitError>> {
        let r = self.check_now(check);
        Box::pin(async move { r })
    }

    fn release(&self, lease: Lease) {
        #[allow(irrefutable_let_patterns)]
        if let LeaseInner::Memory { shard, cell } = lease.inner {
            self.release_now(shard, cell);
        }
    }

    fn effort_multiplier<'a>(
        &'a self,
        scope: &'a str,
        brake: &'a LoopBrake,
    ) -> BoxFuture<'a, Result<u32, LimitError>> {
        let m = self.effort_multiplier_now(scope, brake);
        Box::pin(async move { Ok(m) })
    }

    fn spend<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        cap: u64,
    ) -> BoxFuture<'a, Result<SpendOutcome, LimitError>> {
        let r = self.spend_now(key, amount, cap);
        Box::pin(async move { Ok(r) })
    }

    fn refund<'a>(&'a self, receipt: &'a SpendReceipt) -> BoxFuture<'a, Result<(), LimitError>> {
        self.refund_now(receipt);
        Box::pin(async { Ok(()) })
    }
}
