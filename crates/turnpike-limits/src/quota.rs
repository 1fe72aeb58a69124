//! Rates, quotas and the GCRA arithmetic every backend shares.
//!
//! The generic cell rate algorithm keeps one number per cell: the *theoretical arrival time*
//! (TAT), the moment at which the cell would be empty again if calls kept coming at exactly the
//! sustained rate. With the emission interval `T = period / count` and the tolerance
//! `τ = T × burst`, a call arriving at `now` is allowed when `max(TAT, now) + T − τ ≤ now`, and
//! then sets `TAT = max(TAT, now) + T`. A cell whose TAT lies in the past is a full bucket, the
//! same as no cell at all, which is why idle cells can simply expire.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Nanoseconds in a second.
pub(crate) const NANOS: u64 = 1_000_000_000;

/// The largest tolerance a cell may have: ten years.
pub(crate) const MAX_TOLERANCE_NANOS: u64 = 10 * 366 * 86_400 * NANOS;

/// A sustained rate: `count` calls per `per`.
///
/// Written as `"<count>/<period>"`, where the period is a unit (`s`, `sec`, `second`, `m`,
/// `min`, `minute`, `h`, `hour`, `d`, `day`) optionally preceded by a number (`"5/10s"`,
/// `"100/15min"`): `"20/s"`, `"60/min"`, `"5000/day"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    per: Duration,
}

/// Why a rate or quota was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("a rate is written \"<count>/<period>\", e.g. \"20/s\", \"60/min\" or \"5/10s\": {0}")]
    /// Not written `<count>/<period>`.
    BadRate(String),
    #[error("the count of a rate must be at least 1")]
    /// A count of 0.
    ZeroCount,
    #[error("the period of a rate must be between 1 ms and 366 days")]
    /// A period under 1 ms or over 366 days.
    BadPeriod,
    #[error("burst must be at least 1")]
    /// A burst of 0.
    ZeroBurst,
}

impl Rate {
    /// `count` calls per `per`. The count must be at least 1 and the period between 1 ms and
    /// 366 days.
    pub fn new(count: u32, per: Duration) -> Result<Rate, QuotaError> {
        if count == 0 {
            return Err(QuotaError::ZeroCount);
        }
        if per < Duration::from_millis(1) || per > Duration::from_secs(366 * 86_400) {
            return Err(QuotaError::BadPeriod);
        }
        Ok(Rate { count, per })
    }

    /// `count` calls per `per`, with the count raised to 1 and the period brought into range.
    pub fn clamped(count: u32, per: Duration) -> Rate {
        Rate {
            count: count.max(1),
            per: per.clamp(Duration::from_millis(1), Duration::from_secs(366 * 86_400)),
        }
    }

    /// `count` calls per second.
    pub fn per_second(count: u32) -> Result<Rate, QuotaError> {
        Rate::new(count, Duration::from_secs(1))
    }

    /// The number of calls per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The emission interval `T`: the time one call's worth of quota takes to come back, in
    /// nanoseconds (at least 1).
    pub fn interval_nanos(&self) -> u64 {
        let per = u64::try_from(self.per.as_nanos()).unwrap_or(u64::MAX);
        (per / u64::from(self.count)).max(1)
    }

    /// Calls per second, as a float (for display and metrics).
    pub fn per_second_f64(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = QuotaError;

    fn from_str(s: &str) -> Result<Rate, QuotaError> {
        let bad = || QuotaError::BadRate(s.to_string());
        let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let split = period.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = period.split_at(split);
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse().map_err(|_| bad())?
        };
        let unit_secs: u64 = match unit.trim() {
            "ms" => {
                return Rate::new(count, Duration::from_millis(n));
            }
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3_600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(bad()),
        };
        let secs = n.checked_mul(unit_secs).ok_or(QuotaError::BadPeriod)?;
        Rate::new(count, Duration::from_secs(secs))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.per.as_millis();
        let (n, unit) = if ms % 86_400_000 == 0 {
            (ms / 86_400_000, "day")
        } else if ms % 3_600_000 == 0 {
            (ms / 3_600_000, "h")
        } else if ms % 60_000 == 0 {
            (ms / 60_000, "min")
        } else if ms % 1000 == 0 {
            (ms / 1000, "s")
        } else {
            (ms, "ms")
        };
        if n == 1 {
            write!(f, "{}/{unit}", self.count)
        } else {
            write!(f, "{}/{n}{unit}", self.count)
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A GCRA quota: up to `burst` calls at once, refilled at `rate`.
///
/// Over any stretch of time `d`, a cell under this quota allows at most
/// `burst + floor(d × rate)` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quota {
    /// Calls allowed back to back on a full bucket (≥ 1).
    pub burst: u32,
    /// The sustained rate.
    pub rate: Rate,
}

impl Quota {
    /// A quota of `burst` at `rate`; the burst must be at least 1.
    pub fn new(burst: u32, rate: Rate) -> Result<Quota, QuotaError> {
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        Ok(Quota { burst, rate })
    }

    /// A quota of `burst` calls refilled at `per_second` calls per second.
    pub fn per_second(burst: u32, per_second: u32) -> Result<Quota, QuotaError> {
        Quota::new(burst, Rate::per_second(per_second)?)
    }

    /// The emission interval `T` in nanoseconds.
    pub fn interval_nanos(&self) -> u64 {
        self.rate.interval_nanos()
    }

    /// The tolerance `τ = T × burst` in nanoseconds: how far ahead of `now` the TAT may run
    /// (at most ten years, so that every backend holds it exactly).
    pub fn tolerance_nanos(&self) -> u64 {
        self.interval_nanos()
            .saturating_mul(u64::from(self.burst.max(1)))
            .min(MAX_TOLERANCE_NANOS)
    }

    /// The window advertised in `RateLimit-Policy` (`w`): the whole seconds a full burst takes
    /// to come back, rounded up (at least 1). A caller that sends at most `burst` calls per
    /// window never exceeds the sustained rate.
    pub fn window_secs(&self) -> u64 {
        self.tolerance_nanos().div_ceil(NANOS).max(1)
    }
}

/// What one GCRA cell said about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether this cell lets the call through.
    pub allowed: bool,
    /// The quota's burst (`q` of `RateLimit-Policy`).
    pub limit: u32,
    /// Calls that could still be made right now (after this one, when it was counted).
    pub remaining: u32,
    /// When denied: how long until one call fits again. Zero when allowed.
    pub retry_after: Duration,
    /// How long until the cell is full again (its whole burst available).
    pub reset: Duration,
}

impl RateDecision {
    /// The `t` parameter of the `RateLimit` field, in whole seconds rounded up: the time until
    /// the bucket is full again while calls are allowed (so `r` calls per `t` never exceeds the
    /// policy), and the retry delay when denied (so `Retry-After` is never earlier than the end
    /// of the effective window).
    pub fn effective_window_secs(&self) -> u64 {
        if self.allowed {
            ceil_secs(self.reset)
        } else {
            ceil_secs(self.retry_after).max(1)
        }
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The outcome of one GCRA step, before it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// The TAT to store if the whole check is allowed.
    pub new_tat: u64,
    /// The decision as reported when the whole check is allowed (this call counted).
    pub counted: RateDecision,
    /// The decision as reported when the whole check is refused (nothing counted).
    pub uncounted: RateDecision,
}

/// One GCRA step for a cell whose stored TAT is `tat` (0 = no cell), at `now`, in any unit
/// (nanoseconds in memory, microseconds in Redis), with interval `t` and tolerance `tau` in the
/// same unit. `unit_nanos` converts the unit to nanoseconds for the reported durations.
pub(crate) fn gcra_step(tat: u64, now: u64, t: u64, tau: u64, burst: u32, unit_nanos: u64) -> Step {
    let t = t.max(1);
    let tat0 = tat.max(now);
    let new_tat = tat0.saturating_add(t);
    let allow_at = new_tat.saturating_sub(tau);
    let dur = |units: u64| Duration::from_nanos(units.saturating_mul(unit_nanos));
    let rem = |tat: u64| {
        let room = now.saturating_add(tau).saturating_sub(tat);
        u32::try_from(room / t).unwrap_or(u32::MAX).min(burst)
    };
    if now >= allow_at {
        let counted = RateDecision {
            allowed: true,
            limit: burst,
            remaining: rem(new_tat),
            retry_after: Duration::ZERO,
            reset: dur(new_tat - now),
        };
        let uncounted = RateDecision {
            remaining: rem(tat0),
            reset: dur(tat0 - now),
            ..counted
        };
        Step {
            new_tat,
            counted,
            uncounted,
        }
    } else {
        let d = RateDecision {
            allowed: false,
            limit: burst,
            remaining: 0,
            retry_after: dur(allow_at - now),
            reset: dur(tat0 - now),
        };
        Step {
            new_tat,
            counted: d,
            uncounted: d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let cases = [
            ("20/s", 20, 1_000),
            ("60/min", 60, 60_000),
            ("60/m", 60, 60_000),
            ("1000/h", 1000, 3_600_000),
            ("5000/day", 5000, 86_400_000),
            ("5/10s", 5, 10_000),
            (" 3 / 15min ", 3, 900_000),
            ("7/250ms", 7, 250),
        ];
        for (s, count, ms) in cases {
            let r: Rate = s.parse().unwrap();
            assert_eq!(r.count(), count, "{s}");
            assert_eq!(r.per(), Duration::from_millis(ms), "{s}");
            let again: Rate = r.to_string().parse().unwrap();
            assert_eq!(again, r, "{s} prints as {r}");
        }
        assert_eq!("20/s".parse::<Rate>().unwrap().to_string(), "20/s");
        assert_eq!("5/10s".parse::<Rate>().unwrap().to_string(), "5/10s");
        for bad in [
            "",
            "20",
            "/s",
            "0/s",
            "20/",
            "20/fortnight",
            "x/s",
            "20/0s",
            "-1/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} must not parse");
        }
        assert_eq!(
            Quota::new(0, "1/s".parse().unwrap()),
            Err(QuotaError::ZeroBurst)
        );
    }

    #[test]
    fn window_rounds_up() {
        let q = Quota::per_second(50, 20).unwrap();
        assert_eq!(q.interval_nanos(), 50_000_000);
        assert_eq!(q.window_secs(), 3, "50 calls at 20/s come back in 2.5 s");
        let q = Quota::new(60, "60/min".parse().unwrap()).unwrap();
        assert_eq!(q.window_secs(), 60);
    }

    #[test]
    fn step_math() {
        // burst 3, one call per 10 units.
        let (t, tau) = (10, 30);
        let s = gcra_step(0, 1000, t, tau, 3, 1);
        assert!(s.counted.allowed);
        assert_eq!(s.counted.remaining, 2);
        assert_eq!(s.uncounted.remaining, 3);
        assert_eq!(s.new_tat, 1010);
        let s = gcra_step(1020, 1000, t, tau, 3, 1);
        assert!(s.counted.allowed);
        assert_eq!(s.counted.remaining, 0);
        let s = gcra_step(1030, 1000, t, tau, 3, 1);
        assert!(!s.counted.allowed);
        assert_eq!(s.counted.retry_after, Duration::from_nanos(10));
        assert_eq!(s.counted.reset, Duration::from_nanos(30));
        assert_eq!(s.counted.effective_window_secs(), 1);
    }
}
