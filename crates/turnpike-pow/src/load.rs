//! Load-driven effort: a global multiplier on proof-of-work effort that rises while the gateway
//! is busy with work that was paid for, and falls back when it calms down.
//!
//! The control loop, and what moves it:
//!
//! - **Inputs** are signals a caller must pay for: proof-of-work solutions that *passed*
//!   verification ([`EffortController::record_solution`]: each one cost its caller the puzzle's
//!   work, and the per-identity limits bound how many one caller gets through), and the
//!   upstream's own saturation ([`EffortController::record_upstream_overload`]: a paid call the
//!   upstream answered 429 or 503). Challenges issued, refused credentials and bare requests are
//!   **not** inputs: a flood that does no work cannot move the level.
//! - **Window**: each input is counted in a sliding one-second window of ten 100 ms buckets, each
//!   one `AtomicU64` packing the bucket's tick and its count, so counting takes no lock.
//! - **Busy / calm**: a second is busy when more than `calm_rps` solutions passed in it, or the
//!   upstream refused at least `max(1, calm_rps / 100)` paid calls; calm when fewer than
//!   `calm_rps / 2` solutions passed and the upstream refused none.
//! - **Rate caps**: the level is looked at once a second; it doubles at most once per
//!   `raise_interval_secs` (while busy) up to `max_multiplier`, and halves at most once per
//!   `lower_interval_secs` (while calm) down to 1. A quiet spell with nobody asking counts as
//!   calm, so after it the level has fallen as if a timer had run.
//! - **Output**: `base × multiplier`, but never above the ceiling because of the multiplier: an
//!   offer whose base effort is within the ceiling stays offered at any load, at most at the
//!   ceiling ([`EffortController::offered_effort`]). Only a base effort above the ceiling (the
//!   operator's price, or a per-identity escalation applied to it) withdraws proof-of-work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::LoadConfig;

/// A source of time in milliseconds, injectable for tests.
pub trait Clock: Send + Sync {
    /// Milliseconds since some fixed point (the Unix epoch for [`SystemClock`]).
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        ManualClock(AtomicU64::new(ms))
    }
    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    /// Sets the clock to `ms`.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const BUCKETS: usize = 10;
const BUCKET_MS: u64 = 100;
const PERIOD_MS: u64 = 1000;

/// A sliding one-second count: ten 100 ms buckets, each `tick << 32 | count` where
/// `tick = now_ms / 100` (low 32 bits). Counting is one compare-and-swap, no lock.
#[derive(Default)]
struct Window {
    buckets: [AtomicU64; BUCKETS],
}

impl Window {
    fn add(&self, now: u64) {
        let tick = now / BUCKET_MS;
        let tag = tick & 0xFFFF_FFFF;
        let b = &self.buckets[(tick % BUCKETS as u64) as usize];
        let mut cur = b.load(Ordering::Relaxed);
        loop {
            let next = if cur >> 32 == tag {
                if cur & 0xFFFF_FFFF == 0xFFFF_FFFF {
                    break;
                }
                cur + 1
            } else {
                (tag << 32) | 1
            };
            match b.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The count over the second that ends at `now`.
    fn sum(&self, now: u64) -> u64 {
        let tick = now / BUCKET_MS;
        let mut sum = 0u64;
        for back in 0..BUCKETS as u64 {
            let Some(t) = tick.checked_sub(back) else {
                break;
            };
            let v = self.buckets[(t % BUCKETS as u64) as usize].load(Ordering::Relaxed);
            if v >> 32 == t & 0xFFFF_FFFF {
                sum += v & 0xFFFF_FFFF;
            }
        }
        sum
    }
}

/// Turns paid load (verified solutions, upstream saturation) into a global effort multiplier.
/// See the module documentation for the control loop.
pub struct EffortController {
    cfg: LoadConfig,
    clock: Arc<dyn Clock>,
    /// Solutions that passed verification.
    solutions: Window,
    /// Paid calls the upstream answered 429 or 503.
    overloads: Window,
    multiplier: AtomicU64,
    /// When the next look at the level is due (ms); `0` before the first use.
    next_adjust_ms: AtomicU64,
    /// When the level last doubled (ms), and last halved; written only by the adjustment's
    /// single winner of each period.
    last_raise_ms: AtomicU64,
    last_lower_ms: AtomicU64,
}

impl std::fmt::Debug for EffortController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EffortController")
            .field("cfg", &self.cfg)
            .field("multiplier", &self.multiplier.load(Ordering::Relaxed))
            .finish()
    }
}

impl EffortController {
    /// A controller on the system clock.
    pub fn new(cfg: LoadConfig) -> Self {
        Self::with_clock(cfg, Arc::new(SystemClock))
    }

    /// A controller on the given clock.
    pub fn with_clock(cfg: LoadConfig, clock: Arc<dyn Clock>) -> Self {
        EffortController {
            cfg,
            clock,
            solutions: Window::default(),
            overloads: Window::default(),
            multiplier: AtomicU64::new(1),
            next_adjust_ms: AtomicU64::new(0),
            last_raise_ms: AtomicU64::new(0),
            last_lower_ms: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LoadConfig {
        &self.cfg
    }

    /// Counts one proof-of-work solution that passed verification (and adjusts the level if
    /// a second has passed).
    pub fn record_solution(&self) {
        let now = self.clock.now_ms();
        self.solutions.add(now);
        self.adjust(now);
    }

    /// Counts one paid call the upstream refused as overloaded (HTTP 429 or 503).
    pub fn record_upstream_overload(&self) {
        let now = self.clock.now_ms();
        self.overloads.add(now);
        self.adjust(now);
    }

    /// Solutions that passed verification in the last second.
    pub fn recent_rate(&self) -> u64 {
        self.solutions.sum(self.clock.now_ms())
    }

    /// Paid calls the upstream refused as overloaded in the last second.
    pub fn recent_overloads(&self) -> u64 {
        self.overloads.sum(self.clock.now_ms())
    }

    /// The current effort multiplier, `1..=max_multiplier` (adjusting it first if due).
    pub fn current_multiplier(&self) -> u64 {
        self.adjust(self.clock.now_ms());
        self.multiplier.load(Ordering::Relaxed)
    }

    /// The effort to offer for a base effort: `base × multiplier`, held at the ceiling; `None`
    /// only when the base effort itself exceeds the ceiling (proof-of-work is then not offered).
    /// The load never withdraws an offer the base price allows.
    pub fn offered_effort(&self, base: u64) -> Option<u64> {
        let base = base.max(1);
        if base > self.cfg.ceiling {
            return None;
        }
        Some(
            base.saturating_mul(self.current_multiplier())
                .min(self.cfg.ceiling),
        )
    }

    /// Runs the once-a-second look at the level if it is due. Exactly one caller wins each
    /// period.
    fn adjust(&self, now: u64) {
        let due = self.next_adjust_ms.load(Ordering::Relaxed);
        if due == 0 {
            // First use: start the periods now.
            let _ = self.next_adjust_ms.compare_exchange(
                0,
                now.saturating_add(PERIOD_MS).max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return;
        }
        if now < due {
            return;
        }
        if self
            .next_adjust_ms
            .compare_exchange(
                due,
                now.saturating_add(PERIOD_MS),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        let raise_ms = self.cfg.raise_interval_secs.max(1).saturating_mul(1000);
        let lower_ms = self.cfg.lower_interval_secs.max(1).saturating_mul(1000);
        let max = self.cfg.max_multiplier.max(1);
        let mut m = self.multiplier.load(Ordering::Relaxed).clamp(1, max);
        let last_raise = self.last_raise_ms.load(Ordering::Relaxed);
        let mut last_lower = self.last_lower_ms.load(Ordering::Relaxed);
        // The time that passed with no one here to look was calm (nothing was counted, or the
        // look would have run): the level falls as it would have, one halving per lower
        // interval of it.
        let steps = ((now - due) / lower_ms).min(63);
        if steps > 0 && m > 1 {
            m = (m >> steps).max(1);
            last_lower = now;
        }
        let solutions = self.solutions.sum(now);
        let overloads = self.overloads.sum(now);
        let overload_floor = (self.cfg.calm_rps / 100).max(1);
        let busy = solutions > self.cfg.calm_rps || overloads >= overload_floor;
        let calm = solutions.saturating_mul(2) < self.cfg.calm_rps && overloads == 0;
        if busy && m < max && now.saturating_sub(last_raise) >= raise_ms {
            m = m.saturating_mul(2).min(max);
            self.last_raise_ms.store(now, Ordering::Relaxed);
        } else if calm && m > 1 && now.saturating_sub(last_lower.max(last_raise)) >= lower_ms {
            m = (m / 2).max(1);
            last_lower = now;
        }
        self.last_lower_ms.store(last_lower, Ordering::Relaxed);
        self.multiplier.store(m, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller_with(cfg: LoadConfig) -> (EffortController, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        (EffortController::with_clock(cfg, clock.clone()), clock)
    }

    fn controller(calm: u64, max: u64, ceiling: u64) -> (EffortController, Arc<ManualClock>) {
        controller_with(LoadConfig {
            calm_rps: calm,
            max_multiplier: max,
            ceiling,
            raise_interval_secs: 1,
            lower_interval_secs: 1,
        })
    }

    /// `n` verified solutions (a multiple of 10) spread evenly over one second.
    fn second_of(c: &EffortController, clock: &ManualClock, n: u64) {
        for _ in 0..10 {
            for _ in 0..n / 10 {
                c.record_solution();
            }
            clock.advance(100);
        }
    }

    #[test]
    fn counts_a_sliding_second() {
        let (c, clock) = controller(100, 64, u64::MAX);
        for _ in 0..50 {
            c.record_solution();
        }
        assert_eq!(c.recent_rate(), 50);
        clock.advance(500);
        for _ in 0..20 {
            c.record_solution();
        }
        assert_eq!(c.recent_rate(), 70);
        clock.advance(600);
        assert_eq!(c.recent_rate(), 20, "the first 50 left the window");
        clock.advance(1000);
        assert_eq!(c.recent_rate(), 0);
    }

    #[test]
    fn bare_requests_do_not_move_it() {
        // Asking for the price (what issuing a challenge does) as fast as anyone can, for a
        // minute of the controller's time: the level stays at 1.
        let (c, clock) = controller(10, 64, u64::MAX);
        for _ in 0..600 {
            for _ in 0..1000 {
                assert_eq!(c.offered_effort(500), Some(500));
            }
            clock.advance(100);
        }
        assert_eq!(c.current_multiplier(), 1);
        assert_eq!(c.recent_rate(), 0);
    }

    #[test]
    fn raises_under_load_and_lowers_when_calm() {
        let (c, clock) = controller(100, 8, u64::MAX);
        assert_eq!(c.current_multiplier(), 1);
        second_of(&c, &clock, 300);
        c.record_solution();
        assert_eq!(c.current_multiplier(), 2);
        second_of(&c, &clock, 300);
        assert_eq!(c.current_multiplier(), 4);
        second_of(&c, &clock, 300);
        second_of(&c, &clock, 300);
        second_of(&c, &clock, 300);
        assert_eq!(c.current_multiplier(), 8, "capped at max_multiplier");
        // Between calm/2 and calm: unchanged.
        second_of(&c, &clock, 80);
        assert_eq!(c.current_multiplier(), 8);
        // Under calm/2: halves once a second.
        second_of(&c, &clock, 20);
        assert_eq!(c.current_multiplier(), 4);
        second_of(&c, &clock, 20);
        assert_eq!(c.current_multiplier(), 2);
        // A long quiet spell brings it back to 1 at once.
        clock.advance(60_000);
        assert_eq!(c.current_multiplier(), 1);
    }

    #[test]
    fn rise_and_fall_are_rate_capped() {
        let (c, clock) = controller_with(LoadConfig {
            calm_rps: 100,
            max_multiplier: 64,
            ceiling: u64::MAX,
            raise_interval_secs: 5,
            lower_interval_secs: 10,
        });
        c.current_multiplier();
        // Thirty seconds of verified solutions at a hundred times calm: one doubling per five
        // seconds at most (the first at once), so ×2^6 = 64 is not reached before 25 s.
        let mut levels = Vec::new();
        for _ in 0..30 {
            second_of(&c, &clock, 10_000);
            levels.push(c.current_multiplier());
        }
        for (s, m) in levels.iter().enumerate() {
            let bound = 1u64 << (s as u64 / 5 + 1).min(6);
            assert!(*m <= bound, "second {s}: ×{m} rose faster than ×{bound}");
        }
        assert_eq!(levels[0], 2, "the first doubling is not delayed");
        assert_eq!(*levels.last().unwrap(), 64);
        // Calm again: one halving per ten seconds at most.
        let mut falling = Vec::new();
        for _ in 0..25 {
            second_of(&c, &clock, 0);
            falling.push(c.current_multiplier());
        }
        assert!(falling[..9].iter().all(|m| *m >= 32), "{falling:?}");
        assert_eq!(falling[24], 16, "{falling:?}");
        // Idle (nobody asks) for a minute: six more halvings are due, and no more.
        clock.advance(60_000);
        assert_eq!(c.current_multiplier(), 1);
    }

    #[test]
    fn upstream_overload_raises_it() {
        let (c, clock) = controller(200, 64, u64::MAX);
        c.current_multiplier();
        clock.advance(1000);
        // Two overload answers to paid calls (the floor is max(1, 200 / 100)) in one second.
        c.record_upstream_overload();
        c.record_upstream_overload();
        assert_eq!(c.recent_overloads(), 2);
        clock.advance(1000);
        assert_eq!(c.current_multiplier(), 1, "outside the window by now");
        clock.advance(500);
        c.record_upstream_overload();
        c.record_upstream_overload();
        clock.advance(500);
        assert_eq!(c.current_multiplier(), 2);
    }

    #[test]
    fn ceiling_holds_the_offer_and_only_a_base_above_it_withdraws_it() {
        let (c, clock) = controller(10, 64, 1000);
        assert_eq!(c.offered_effort(400), Some(400));
        assert_eq!(c.offered_effort(0), Some(1), "effort is at least 1");
        second_of(&c, &clock, 100);
        c.record_solution();
        assert_eq!(c.current_multiplier(), 2);
        assert_eq!(c.offered_effort(400), Some(800));
        second_of(&c, &clock, 100);
        assert_eq!(c.current_multiplier(), 4);
        assert_eq!(c.offered_effort(400), Some(1000), "held at the ceiling");
        assert_eq!(
            c.offered_effort(1000),
            Some(1000),
            "a base at the ceiling stays"
        );
        assert_eq!(c.offered_effort(1001), None, "a base above it is withdrawn");
        assert_eq!(c.offered_effort(u64::MAX), None, "no overflow");
    }

    #[test]
    fn concurrent_counting_loses_nothing_within_a_bucket() {
        let (c, _clock) = controller(100, 64, u64::MAX);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        c.record_solution();
                    }
                });
            }
        });
        assert_eq!(c.recent_rate(), 40_000);
    }
}
