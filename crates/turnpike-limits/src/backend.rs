//! The backend trait: where limit state lives, and what one call's check asks of it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use turnpike_core::BoxFuture;
use turnpike_store::fuse::{RedisSpend, SpendCode};

use crate::quota::{gcra_step, Quota, RateDecision, NANOS};

/// What a rate cell counts, besides the identity: the second half of its key.
///
/// Discovery traffic, each tool, all tools together and each other method are separate
/// classes, so a reconnect storm of `initialize` and `tools/list` never eats the tool budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class<'a> {
    /// `initialize`, `ping`, `server/discover`, the list methods, notifications.
    Discovery,
    /// Every tool call together (`*`).
    AllTools,
    /// Calls of one tool, by name.
    Tool(&'a str),
    /// Calls of one other method (e.g. `resources/read`), by method name.
    Method(&'a str),
    /// Challenges issued to the identity (priced calls that came with no credential), on their
    /// own budget so the paid retry that follows is not charged twice.
    Challenge,
}

impl Class<'_> {
    /// A label naming the class unambiguously: `discovery`, `*`, `tool:<name>`,
    /// `method:<name>`.
    pub fn label(&self) -> Cow<'_, str> {
        match self {
            Class::Discovery => Cow::Borrowed("discovery"),
            Class::AllTools => Cow::Borrowed("*"),
            Class::Tool(n) => Cow::Owned(format!("tool:{n}")),
            Class::Method(n) => Cow::Owned(format!("method:{n}")),
            Class::Challenge => Cow::Borrowed("challenge"),
        }
    }

    /// A small integer tag and the name, for hashing without allocating.
    pub(crate) fn parts(&self) -> (u8, &str) {
        match self {
            Class::Discovery => (1, ""),
            Class::AllTools => (2, ""),
            Class::Tool(n) => (3, n),
            Class::Method(n) => (4, n),
            Class::Challenge => (5, ""),
        }
    }
}

/// One GCRA cell to check: the identity's cell for `class`, under `quota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCheck<'a> {
    /// The class (second half of the key; the identity is [`Check::scope`]).
    pub class: Class<'a>,
    /// The quota for this cell.
    pub quota: Quota,
}

/// The loop brake's settings.
///
/// The same identity calling the same tool with the same arguments is counted in a GCRA cell of
/// burst `max_repeats` refilled at `max_repeats` per `window`: `max_repeats` identical calls go
/// through back to back, after that one per `window / max_repeats`. Every refusal adds a
/// *strike* to the identity that decays after `strike_decay`; the identity's effort multiplier is
/// `2^strikes`, capped at `max_multiplier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopBrake {
    /// Identical calls allowed back to back (≥ 1).
    pub max_repeats: u32,
    /// The window over which `max_repeats` identical calls come back.
    pub window: Duration,
    /// How long one strike lasts.
    pub strike_decay: Duration,
    /// The largest effort multiplier (≥ 1).
    pub max_multiplier: u32,
}

impl LoopBrake {
    /// The brake as a GCRA quota.
    pub fn quota(&self) -> Quota {
        Quota {
            burst: self.max_repeats.max(1),
            rate: crate::Rate::clamped(self.max_repeats, self.window),
        }
    }

    /// The multiplier for a strike cell whose TAT lies `strike_ahead` in the future.
    pub fn multiplier_for(&self, strike_ahead: Duration) -> u32 {
        let decay = self.strike_decay.as_nanos().max(1);
        let strikes = strike_ahead.as_nanos().div_ceil(decay);
        let strikes = u32::try_from(strikes).unwrap_or(u32::MAX).min(31);
        (1u32 << strikes).min(self.max_multiplier.max(1))
    }
}

/// The loop-brake part of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopCheck<'a> {
    /// The tool (or method) called.
    pub tool: &'a str,
    /// SHA-256 of the call's canonical arguments.
    pub args_hash: [u8; 32],
    /// The brake's settings.
    pub brake: LoopBrake,
}

/// The in-flight part of a check: at most `max` calls of the identity at once. A slot is held
/// by a [`Lease`] until released; shared backends also drop a slot after `lease` in case the
/// instance holding it died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyCheck {
    /// Calls in flight at once (≥ 1).
    pub max: u32,
    /// The longest a slot is held without being released.
    pub lease: Duration,
}

/// Every limit on one call of one identity, checked and counted at once: nothing is counted
/// unless every part allows the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check<'a> {
    /// The identity: [`turnpike_core::Identity::scope_key`].
    pub scope: &'a str,
    /// GCRA cells (at most [`MAX_RATES`]).
    pub rates: &'a [RateCheck<'a>],
    /// The loop brake, for calls that have a tool and arguments.
    pub loop_brake: Option<LoopCheck<'a>>,
    /// Calls per identity per UTC day.
    pub daily_cap: Option<u64>,
    /// The in-flight cap.
    pub concurrency: Option<ConcurrencyCheck>,
}

/// The most GCRA cells one check may name.
pub const MAX_RATES: usize = 8;

/// What refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The GCRA cell at this index of [`Check::rates`].
    Rate(usize),
    /// The loop brake.
    LoopBrake,
    /// The daily call budget.
    Daily,
    /// The in-flight cap.
    Concurrency,
}

/// The daily budget's state after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyStatus {
    /// Calls counted today (this one included when it was allowed).
    pub used: u64,
    /// The cap.
    pub cap: u64,
    /// Time until the next UTC midnight, when the count starts again.
    pub reset: Duration,
}

/// The in-flight cap's state after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyStatus {
    /// Calls in flight (this one included when it was allowed).
    pub in_flight: u32,
    /// The cap.
    pub max: u32,
}

/// What a backend said about one [`Check`].
#[derive(Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether the call may go through (and was counted everywhere).
    pub allowed: bool,
    /// What refused it, when refused: the part with the longest retry delay.
    pub denied_by: Option<Denial>,
    /// When refused: how long until the call would fit.
    pub retry_after: Duration,
    /// One decision per [`Check::rates`] entry, in order.
    pub rates: Vec<RateDecision>,
    /// The loop brake's cell, when checked.
    pub loop_brake: Option<RateDecision>,
    /// The identity's effort multiplier (1 unless the loop brake has struck).
    pub effort_multiplier: u32,
    /// The daily budget, when checked.
    pub daily: Option<DailyStatus>,
    /// The in-flight cap, when checked.
    pub concurrency: Option<ConcurrencyStatus>,
    /// The in-flight slot taken, when allowed under a concurrency cap. Release it when the call
    /// ends (wrap it in an [`InFlight`] guard).
    pub lease: Option<Lease>,
}

/// The retry hint given when the in-flight cap refuses a call: slots free up when calls end,
/// which no one can predict.
pub const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// One held in-flight slot. Give it back with [`LimitBackend::release`], or let an [`InFlight`]
/// guard do it.
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    pub(crate) inner: LeaseInner,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LeaseInner {
    Memory {
        shard: usize,
        cell: u64,
    },
    #[cfg(feature = "redis")]
    Redis {
        key: String,
        member: String,
    },
}

/// A spend against a daily cap, as recorded (for a refund).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendReceipt {
    /// The budget's key.
    pub key: String,
    /// The UTC day (days since the Unix epoch) the amount was counted on.
    pub day: u64,
    /// The amount.
    pub amount: u64,
}

/// What [`LimitBackend::spend`] said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendOutcome {
    /// Whether the amount fit under the cap (and was counted).
    pub accepted: bool,
    /// The amount counted today (this one included when accepted).
    pub spent: u64,
    /// The cap.
    pub cap: u64,
    /// Time until the next UTC midnight.
    pub reset: Duration,
    /// The record of the spend, when accepted.
    pub receipt: Option<SpendReceipt>,
}

/// Why a backend could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The backend is unreachable or answered nonsense; the limiter applies its failure mode.
    #[error("limits backend unavailable: {0}")]
    Unavailable(String),
    /// The request itself is out of range (e.g. too many cells, an amount too large).
    #[error("invalid limits request: {0}")]
    Invalid(String),
}

/// The answer of [`LimitBackend::check_and_spend`]: the check's outcome, and the spend's
/// answer when it was attempted (the check allowed the call).
pub type CheckAndSpend<'a> = BoxFuture<'a, Result<(CheckOutcome, Option<SpendCode>), LimitError>>;

/// Where limit state lives: in this process ([`crate::MemoryBackend`]) or shared by several
/// gateway instances ([`crate::RedisBackend`]). Every method is one round trip at most.
pub trait LimitBackend: Send + Sync + 'static {
    /// A short name for logs and metrics (`memory`, `redis`).
    fn name(&self) -> &'static str;

    /// Checks and counts every part of `check` at once: either every cell counts the call, or
    /// none does (a loop-brake refusal still records its strike).
    fn check<'a>(&'a self, check: &'a Check<'a>)
        -> BoxFuture<'a, Result<CheckOutcome, LimitError>>;

    /// [`LimitBackend::check`], and then, only if it allowed the call, `spend`, atomically in
    /// the same round trip (the spend's answer is `None` when it was not attempted). `None`
    /// when this backend cannot run the spend with the check: it is not on the spend's Redis,
    /// or (Redis Cluster) the spend's keys are not in the check's hash slot.
    fn check_and_spend<'a>(
        &'a self,
        check: &'a Check<'a>,
        spend: &'a RedisSpend,
    ) -> Option<CheckAndSpend<'a>> {
        let _ = (check, spend);
        None
    }

    /// Gives an in-flight slot back. Never waits: shared backends send the release in the
    /// background (and the slot expires with its lease if that fails).
    fn release(&self, lease: Lease);

    /// The identity's current effort multiplier under `brake` (1 when it has no strikes).
    fn effort_multiplier<'a>(
        &'a self,
        scope: &'a str,
        brake: &'a LoopBrake,
    ) -> BoxFuture<'a, Result<u32, LimitError>>;

    /// Counts `amount` against the daily `cap` of `key`, atomically: refused (and not counted)
    /// when today's total would exceed the cap.
    fn spend<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        cap: u64,
    ) -> BoxFuture<'a, Result<SpendOutcome, LimitError>>;

    /// Takes back an accepted spend (e.g. the upstream failed). A receipt from an earlier day
    /// changes nothing.
    fn refund<'a>(&'a self, receipt: &'a SpendReceipt) -> BoxFuture<'a, Result<(), LimitError>>;
}

/// Holds an in-flight slot for as long as it lives, and gives it back when dropped.
pub struct InFlight {
    backend: Arc<dyn LimitBackend>,
    lease: Option<Lease>,
}

impl InFlight {
    /// Guards `lease`, taken from `backend`.
    pub fn new(backend: Arc<dyn LimitBackend>, lease: Lease) -> InFlight {
        InFlight {
            backend,
            lease: Some(lease),
        }
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("backend", &self.backend.name())
            .finish()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.backend.release(lease);
        }
    }
}

/// Builds the reported outcome from raw cell state, the same way for every backend.
///
/// `tats` are the rate cells' TATs relative to now (`max(TAT, now) − now`) in `unit_nanos`
/// units, `loop_tat` likewise, `strike_ahead` the strike cell's lead; `allowed` is the
/// backend's verdict (the backend decided with the same arithmetic), `used`/`in_flight` the
/// counters after the check, `day_secs` the seconds into the current UTC day.
pub(crate) struct Raw<'r> {
    pub allowed: bool,
    pub unit_nanos: u64,
    pub tats: &'r [u64],
    pub loop_tat: u64,
    pub strike_ahead: u64,
    pub used: u64,
    pub in_flight: u32,
    pub secs_into_day: u64,
}

/// A quota's interval and tolerance in units of `unit_nanos` nanoseconds (interval ≥ 1).
pub(crate) fn cell_units(q: &Quota, unit_nanos: u64) -> (u64, u64) {
    let t = (q.interval_nanos() / unit_nanos.max(1)).max(1);
    let max_tau = crate::quota::MAX_TOLERANCE_NANOS / unit_nanos.max(1);
    (t, t.saturating_mul(u64::from(q.burst.max(1))).min(max_tau))
}

pub(crate) fn outcome(check: &Check<'_>, raw: Raw<'_>, lease: Option<Lease>) -> CheckOutcome {
    let u = raw.unit_nanos;
    let mut denied_by = None;
    let mut retry_after = Duration::ZERO;
    let mut deny = |d: Denial, r: Duration| {
        if denied_by.is_none() || r > retry_after {
            denied_by = Some(d);
            retry_after = r;
        }
    };
    let decide = |tat: u64, q: &Quota| {
        let (t, tau) = cell_units(q, u);
        let s = gcra_step(tat, 0, t, tau, q.burst, u);
        if raw.allowed {
            s.counted
        } else {
            s.uncounted
        }
    };
    let mut rates = Vec::with_capacity(check.rates.len());
    for (i, (rc, tat)) in check.rates.iter().zip(raw.tats).enumerate() {
        let d = decide(*tat, &rc.quota);
        if !d.allowed {
            deny(Denial::Rate(i), d.retry_after);
        }
        rates.push(d);
    }
    let loop_brake = check.loop_brake.as_ref().map(|l| {
        let d = decide(raw.loop_tat, &l.brake.quota());
        if !d.allowed {
            deny(Denial::LoopBrake, d.retry_after);
        }
        d
    });
    let to_day_end = Duration::from_secs(86_400 - raw.secs_into_day.min(86_399));
    let daily = check.daily_cap.map(|cap| {
        if !raw.allowed && raw.used >= cap {
            deny(Denial::Daily, to_day_end);
        }
        DailyStatus {
            used: raw.used,
            cap,
            reset: to_day_end,
        }
    });
    let concurrency = check.concurrency.map(|c| {
        if !raw.allowed && raw.in_flight >= c.max {
            deny(Denial::Concurrency, CONCURRENCY_RETRY);
        }
        ConcurrencyStatus {
            in_flight: raw.in_flight,
            max: c.max,
        }
    });
    let effort_multiplier = check
        .loop_brake
        .as_ref()
        .map(|l| {
            l.brake
                .multiplier_for(Duration::from_nanos(raw.strike_ahead.saturating_mul(u)))
        })
        .unwrap_or(1);
    if raw.allowed {
        denied_by = None;
        retry_after = Duration::ZERO;
    } else if denied_by.is_none() {
        // The backend refused on a boundary its own arithmetic saw; report the smallest delay.
        denied_by = Some(Denial::Rate(0));
        retry_after = Duration::from_nanos(u.max(NANOS / 1000));
    }
    CheckOutcome {
        allowed: raw.allowed,
        denied_by,
        retry_after,
        rates,
        loop_brake,
        effort_multiplier,
        daily,
        concurrency,
        lease,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_doubles_per_strike() {
        let b = LoopBrake {
            max_repeats: 3,
            window: Duration::from_secs(60),
            strike_decay: Duration::from_secs(60),
            max_multiplier: 16,
        };
        assert_eq!(b.multiplier_for(Duration::ZERO), 1);
        assert_eq!(b.multiplier_for(Duration::from_secs(1)), 2);
        assert_eq!(b.multiplier_for(Duration::from_secs(61)), 4);
        assert_eq!(b.multiplier_for(Duration::from_secs(10_000)), 16);
        assert_eq!(b.quota().burst, 3);
        assert_eq!(b.quota().interval_nanos(), 20 * NANOS);
    }

    #[test]
    fn labels_are_unambiguous() {
        assert_eq!(Class::Tool("x").label(), "tool:x");
        assert_eq!(Class::Method("x").label(), "method:x");
        assert_ne!(Class::Tool("discovery").label(), Class::Discovery.label());
        assert_ne!(Class::Tool("challenge").label(), Class::Challenge.label());
    }
}
