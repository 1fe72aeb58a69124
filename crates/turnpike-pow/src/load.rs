//! Load-driven effort: a global multiplier on proof-of-work effort that rises while the gateway
//! is busy and falls back when it calms down.
//!
//! Every priced request (a challenge issued, a solution verified) is counted in a sliding
//! one-second window of ten 100 ms buckets, each one `AtomicU64` that packs the bucket's tick
//! and its count, so counting takes no lock. Once a second the multiplier is adjusted: above
//! `calm_rps` it doubles (up to `max_multiplier`), under `calm_rps / 2` it halves (down to 1).
//! A second in which nothing was counted is a calm second, so after a quiet spell the
//! multiplier has fallen as if a timer had run.

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

/// Counts priced requests and turns the recent rate into an effort multiplier.
pub struct EffortController {
    cfg: LoadConfig,
    clock: Arc<dyn Clock>,
    /// Each bucket: `tick << 32 | count`, where `tick = now_ms / 100` (low 32 bits).
    buckets: [AtomicU64; BUCKETS],
    multiplier: AtomicU64,
    /// When the next adjustment is due (ms); `0` before the first request.
    next_adjust_ms: AtomicU64,
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
            buckets: Default::default(),
            multiplier: AtomicU64::new(1),
            next_adjust_ms: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LoadConfig {
        &self.cfg
    }

    /// Counts one priced request (and adjusts the multiplier if a second has passed).
    pub fn record(&self) {
        let now = self.clock.now_ms();
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
        self.adjust(now);
    }

    /// Priced requests counted in the last second.
    pub fn recent_rate(&self) -> u64 {
        self.rate_at(self.clock.now_ms())
    }

    fn rate_at(&self, now: u64) -> u64 {
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

    /// The current effort multiplier, `1..=max_multiplier` (adjusting it first if due).
    pub fn current_multiplier(&self) -> u64 {
        self.adjust(self.clock.now_ms());
        self.multiplier.load(Ordering::Relaxed)
    }

    /// The effort to offer for a base effort: `base × multiplier`, or `None` when that exceeds
    /// the ceiling (proof-of-work is then not offered).
    pub fn offered_effort(&self, base: u64) -> Option<u64> {
        let e = base.max(1).saturating_mul(self.current_multiplier());
        (e <= self.cfg.ceiling).then_some(e)
    }

    /// Runs the once-a-second adjustment if it is due. Exactly one caller wins each period.
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
        // Whole periods that passed with no one here to adjust were calm (nothing was counted,
        // or the adjustment would have run): halve once for each of them.
        let idle_periods = (now - due) / PERIOD_MS;
        let rate = self.rate_at(now);
        let max = self.cfg.max_multiplier.max(1);
        let mut m = self.multiplier.load(Ordering::Relaxed).clamp(1, max);
        m = (m >> idle_periods.min(63)).max(1);
        if rate > self.cfg.calm_rps {
            m = m.saturating_mul(2).min(max);
        } else if rate.saturating_mul(2) < self.cfg.calm_rps {
            m = (m / 2).max(1);
        }
        self.multiplier.store(m, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(calm: u64, max: u64, ceiling: u64) -> (EffortController, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let c = EffortController::with_clock(
            LoadConfig {
                calm_rps: calm,
                max_multiplier: max,
                ceiling,
            },
            clock.clone(),
        );
        (c, clock)
    }

    /// `n` requests (a multiple of 10) spread evenly over one second.
    fn second_of(c: &EffortController, clock: &ManualClock, n: u64) {
        for _ in 0..10 {
            for _ in 0..n / 10 {
                c.record();
            }
            clock.advance(100);
        }
    }

    #[test]
    fn counts_a_sliding_second() {
        let (c, clock) = controller(100, 64, u64::MAX);
        for _ in 0..50 {
            c.record();
        }
        assert_eq!(c.recent_rate(), 50);
        clock.advance(500);
        for _ in 0..20 {
            c.record();
        }
        assert_eq!(c.recent_rate(), 70);
        clock.advance(600);
        assert_eq!(c.recent_rate(), 20, "the first 50 left the window");
        clock.advance(1000);
        assert_eq!(c.recent_rate(), 0);
    }

    #[test]
    fn raises_under_load_and_lowers_when_calm() {
        let (c, clock) = controller(100, 8, u64::MAX);
        assert_eq!(c.current_multiplier(), 1);
        second_of(&c, &clock, 300);
        c.record();
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
    fn ceiling_withdraws_the_offer() {
        let (c, clock) = controller(10, 64, 1000);
        assert_eq!(c.offered_effort(400), Some(400));
        assert_eq!(c.offered_effort(0), Some(1), "effort is at least 1");
        second_of(&c, &clock, 100);
        c.record();
        assert_eq!(c.current_multiplier(), 2);
        assert_eq!(c.offered_effort(400), Some(800));
        second_of(&c, &clock, 100);
        assert_eq!(c.offered_effort(400), None, "1600 is above the ceiling");
        assert_eq!(c.offered_effort(250), Some(1000));
        assert_eq!(c.offered_effort(u64::MAX), None, "no overflow");
    }

    #[test]
    fn concurrent_counting_loses_nothing_within_a_bucket() {
        let (c, _clock) = controller(100, 64, u64::MAX);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        c.record();
                    }
                });
            }
        });
        assert_eq!(c.recent_rate(), 40_000);
    }
}
