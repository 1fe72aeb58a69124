//! [`InvoiceLimiter`]: how many invoices a rail creates, per caller and in all.
//!
//! Every L402 or MPP challenge asks the Lightning node for an invoice, so an anonymous caller could
//! make the node hold as many open invoices as it can send requests. Two GCRA buckets bound
//! that: one per caller (its identity, or its address when it has none), `per_caller` invoices
//! a minute with a burst of as many, and one for the whole process, `global` a minute with a
//! burst of as many. An invoice is created only when both have room, and then both are
//! charged; a caller over either gets no invoice and is told when one would fit.
//!
//! The state is one timestamp per caller with room not yet refilled; a caller whose bucket is
//! full again is forgotten. At most `global` invoices fit in a minute, so the table holds at
//! most about that many callers (twice it, bursts included); it is pruned when it reaches
//! [`InvoiceLimiter::capacity`], and a caller that does not fit even then is refused.
//! The buckets are per process: several instances each apply their own.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Invoices per minute, per caller and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvoiceRates {
    /// Invoices one caller may ask for per minute.
    pub per_caller: u32,
    /// Invoices all callers together may ask for per minute.
    pub global: u32,
}

/// Which bound holds a caller back ([`InvoiceLimiter::take_or_say`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The caller's own rate.
    Caller,
    /// The whole's: every caller together.
    All,
}

/// The two buckets. See the module docs.
pub struct InvoiceLimiter {
    /// Nanoseconds between two invoices, per caller and in all (`None`: that bucket is off).
    caller_interval: Option<u64>,
    global_interval: Option<u64>,
    /// Burst tolerance (nanoseconds ahead of now a bucket's clock may run).
    caller_tau: u64,
    global_tau: u64,
    cap: usize,
    state: Mutex<State>,
    epoch: Instant,
}

struct State {
    /// Caller → the time (ns since `epoch`) its bucket is full again.
    callers: HashMap<String, u64>,
    global: u64,
}

const MINUTE_NS: u64 = 60_000_000_000;

fn interval(per_minute: u32) -> Option<u64> {
    (per_minute > 0).then(|| MINUTE_NS / u64::from(per_minute))
}

impl InvoiceLimiter {
    /// Buckets for `rates`; a rate of 0 turns that bucket off (no bound).
    pub fn new(rates: InvoiceRates) -> Self {
        let caller_interval = interval(rates.per_caller);
        let global_interval = interval(rates.global);
        InvoiceLimiter {
            caller_interval,
            global_interval,
            caller_tau: caller_interval
                .map_or(0, |i| i.saturating_mul(u64::from(rates.per_caller) - 1)),
            global_tau: global_interval
                .map_or(0, |i| i.saturating_mul(u64::from(rates.global) - 1)),
            cap: global_interval
                .map_or(usize::MAX, |i| (2 * MINUTE_NS / i.max(1)) as usize)
                .clamp(1024, 1 << 20),
            state: Mutex::new(State {
                callers: HashMap::new(),
                global: 0,
            }),
            epoch: Instant::now(),
        }
    }

    /// Most callers tracked at once.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Charges one invoice to `caller` and to the whole, or says how long until one fits.
    pub fn take(&self, caller: &str) -> Result<(), Duration> {
        self.decide(caller, true).map_err(|(d, _)| d)
    }

    /// [`InvoiceLimiter::take`], saying which bound holds the caller back: its own rate
    /// ([`Over::Caller`]) when it is over it, else the whole's ([`Over::All`]: the global
    /// bucket, or a table of callers that is full).
    pub fn take_or_say(&self, caller: &str) -> Result<(), (Duration, Over)> {
        self.decide(caller, true)
    }

    /// Whether an invoice for `caller` would fit now (nothing charged); else how long until.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        self.decide(caller, false).map_err(|(d, _)| d)
    }

    fn decide(&self, caller: &str, charge: bool) -> Result<(), (Duration, Over)> {
        let now = self.now_ns();
        let mut st = self.state.lock();
        let caller_tat = match self.caller_interval {
            Some(_) => st.callers.get(caller).copied().unwrap_or(0).max(now),
            None => now,
        };
        let mut caller_wait = 0u64;
        if self.caller_interval.is_some() && caller_tat - now > self.caller_tau {
            caller_wait = caller_tat - now - self.caller_tau;
        }
        let global_tat = st.global.max(now);
        let mut global_wait = 0u64;
        if self.global_interval.is_some() && global_tat - now > self.global_tau {
            global_wait = global_tat - now - self.global_tau;
        }
        // Told when both would have room; blamed on its own rate when it is over it.
        let wait = Duration::from_nanos(caller_wait.max(global_wait));
        if caller_wait > 0 {
            return Err((wait, Over::Caller));
        }
        if global_wait > 0 {
            return Err((wait, Over::All));
        }
        if !charge {
            return Ok(());
        }
        if let Some(i) = self.caller_interval {
            if !st.callers.contains_key(caller) && st.callers.len() >= self.capacity() {
                st.callers.retain(|_, &mut tat| tat > now);
                if st.callers.len() >= self.capacity() {
                    return Err((Duration::from_nanos(i), Over::All));
                }
            }
            st.callers.insert(caller.to_owned(), caller_tat + i);
        }
        if let Some(i) = self.global_interval {
            st.global = global_tat + i;
        }
        Ok(())
    }

    /// Callers tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.state.lock().callers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_caller_then_global() {
        let l = InvoiceLimiter::new(InvoiceRates {
            per_caller: 3,
            global: 5,
        });
        for _ in 0..3 {
            assert_eq!(l.take("a"), Ok(()));
        }
        let wait = l.take("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(l.check("a").is_err());
        // Another caller still gets its invoices, up to the global bound.
        assert_eq!(l.check("b"), Ok(()));
        assert_eq!(l.take("b"), Ok(()));
        assert_eq!(l.take("b"), Ok(()));
        let wait = l.take("c").unwrap_err();
        assert!(wait <= Duration::from_secs(12), "{wait:?}");
        assert_eq!(l.tracked(), 2);
    }

    #[test]
    fn says_which_bound_holds_a_caller_back() {
        let l = InvoiceLimiter::new(InvoiceRates {
            per_caller: 2,
            global: 3,
        });
        assert_eq!(l.take_or_say("a"), Ok(()));
        assert_eq!(l.take_or_say("a"), Ok(()));
        assert_eq!(l.take_or_say("a").map_err(|(_, o)| o), Err(Over::Caller));
        assert_eq!(l.take_or_say("b"), Ok(()));
        let (wait, over) = l.take_or_say("c").unwrap_err();
        assert_eq!(over, Over::All);
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Over both: its own rate is named.
        assert_eq!(l.take_or_say("a").map_err(|(_, o)| o), Err(Over::Caller));
    }

    #[test]
    fn zero_turns_a_bucket_off() {
        let l = InvoiceLimiter::new(InvoiceRates {
            per_caller: 0,
            global: 0,
        });
        for _ in 0..10_000 {
            assert_eq!(l.take("a"), Ok(()));
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut l = InvoiceLimiter::new(InvoiceRates {
            per_caller: 1,
            global: 0,
        });
        l.cap = 50;
        let mut refused = 0;
        for i in 0..80 {
            if l.take(&format!("10.0.0.{i}")).is_err() {
                refused += 1;
            }
        }
        assert_eq!(l.tracked(), 50);
        assert_eq!(
            refused, 30,
            "callers beyond the table are refused, not tracked"
        );
    }
}
