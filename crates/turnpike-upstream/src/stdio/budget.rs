//! How many stdio children may live, in all and per caller, and how fast one caller may start
//! them: the [`StdioBudget`] that every stdio upstream of a gateway shares.
//!
//! A slot is taken before a child is started and given back only once the child has been
//! reaped, so the count of slots bounds the count of live child processes, not only of open
//! sessions. When every slot is taken, an idle session (no request in flight) is ended to make
//! room: one of the caller holding the most slots, the one idle longest among those.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The per-child memory estimate (MiB) the default global cap is computed with.
pub const DEFAULT_SESSION_MEMORY_MIB: u64 = 64;
/// The default number of children one caller may hold.
pub const DEFAULT_MAX_SESSIONS_PER_CALLER: usize = 4;
/// The default number of children one caller may start per minute (burst of as many).
pub const DEFAULT_SPAWNS_PER_MINUTE_PER_CALLER: u32 = 20;
/// The memory-sized default global cap is clamped to this range.
pub(super) const AUTO_MAX_SESSIONS_RANGE: (usize, usize) = (8, 512);
/// The default global cap where the available memory cannot be read.
pub(super) const FALLBACK_MAX_SESSIONS: usize = 64;
/// How long an `initialize` waits for the child of a reclaimed idle session to exit.
const RECLAIM_WAIT: Duration = Duration::from_secs(5);
/// `Retry-After` for a caller that holds its share, and for a full gateway.
const RETRY_HELD_SECS: u64 = 10;
const RETRY_FULL_SECS: u64 = 5;
/// Callers remembered for the spawn rate before the ones whose bucket is full are forgotten.
const RATE_ENTRIES: usize = 4096;

/// The bounds on stdio children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioLimits {
    /// Children alive at once, every stdio upstream of the gateway together.
    pub max_sessions: usize,
    /// Children one caller may hold at once.
    pub max_sessions_per_caller: usize,
    /// Children one caller may start per minute (a burst of as many, then one every
    /// `60 / n` seconds).
    pub spawns_per_minute_per_caller: u32,
}

impl Default for StdioLimits {
    /// The per-caller defaults and the memory-sized global cap ([`memory_sized_max_sessions`]
    /// with [`DEFAULT_SESSION_MEMORY_MIB`]).
    fn default() -> Self {
        StdioLimits {
            max_sessions: memory_sized_max_sessions(DEFAULT_SESSION_MEMORY_MIB).0,
            max_sessions_per_caller: DEFAULT_MAX_SESSIONS_PER_CALLER,
            spawns_per_minute_per_caller: DEFAULT_SPAWNS_PER_MINUTE_PER_CALLER,
        }
    }
}

/// The default global cap: half of the memory available now (`MemAvailable` in
/// `/proc/meminfo`) divided by `per_child_mib`, clamped to [`AUTO_MAX_SESSIONS_RANGE`];
/// [`FALLBACK_MAX_SESSIONS`] where that cannot be read. Returns the cap and the available MiB
/// it was computed from.
pub fn memory_sized_max_sessions(per_child_mib: u64) -> (usize, Option<u64>) {
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_available_mib(&s));
    match avail {
        Some(mib) => (sessions_for_memory(mib, per_child_mib), Some(mib)),
        None => (FALLBACK_MAX_SESSIONS, None),
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in MiB.
fn mem_available_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `avail_mib / 2 / per_child_mib`, clamped.
fn sessions_for_memory(avail_mib: u64, per_child_mib: u64) -> usize {
    let n = avail_mib / 2 / per_child_mib.max(1);
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    n.clamp(AUTO_MAX_SESSIONS_RANGE.0, AUTO_MAX_SESSIONS_RANGE.1)
}

/// Why a new session was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The caller holds `max_sessions_per_caller` children.
    CallerHolds { limit: usize, retry_after: u64 },
    /// The caller started `spawns_per_minute_per_caller` children within the last minute.
    CallerRate { limit: u32, retry_after: u64 },
    /// Every slot is taken and no session is idle.
    Full { limit: usize, retry_after: u64 },
}

/// One slot: given back when dropped (after the child is reaped).
pub(crate) struct Slot {
    budget: Weak<Inner>,
    id: u64,
}

impl Slot {
    /// The slot's number, for [`StdioBudget::attach`].
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.budget.upgrade() {
            inner.release(self.id);
        }
    }
}

/// What a taken slot is for.
struct Held {
    /// The caller's key; `None` for the gateway's own sessions (no caller address).
    caller: Option<Arc<str>>,
    /// The session once it is open (reclaimable from then on).
    session: Option<Arc<dyn Reclaimable>>,
    /// Ended to make room; its slot is on its way back.
    reclaimed: bool,
}

#[derive(Default)]
struct State {
    held: HashMap<u64, Held>,
    per_caller: HashMap<Arc<str>, usize>,
    /// Theoretical arrival time of each caller's next spawn (GCRA).
    rate: HashMap<Arc<str>, Instant>,
    /// Slots of reclaimed sessions not yet given back.
    reclaiming: usize,
    next_id: u64,
}

struct Inner {
    limits: StdioLimits,
    state: Mutex<State>,
    freed: Notify,
}

/// The bounds on stdio children, shared by every stdio upstream given a clone (see the
/// [module documentation](self)). Cheap to clone.
#[derive(Clone)]
pub struct StdioBudget {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StdioBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioBudget")
            .field("limits", &self.inner.limits)
            .field("live", &self.live())
            .finish()
    }
}

impl StdioBudget {
    /// A budget with these limits (each at least 1).
    pub fn new(limits: StdioLimits) -> StdioBudget {
        let limits = StdioLimits {
            max_sessions: limits.max_sessions.max(1),
            max_sessions_per_caller: limits.max_sessions_per_caller.max(1),
            spawns_per_minute_per_caller: limits.spawns_per_minute_per_caller.max(1),
        };
        StdioBudget {
            inner: Arc::new(Inner {
                limits,
                state: Mutex::new(State::default()),
                freed: Notify::new(),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> StdioLimits {
        self.inner.limits
    }

    /// Slots taken: children alive or being started.
    pub fn live(&self) -> usize {
        self.inner.state.lock().held.len()
    }

    /// Slots taken by the caller with this key (see [`caller_key`](super::caller_key)).
    pub fn held_by(&self, caller: &str) -> usize {
        self.inner
            .state
            .lock()
            .per_caller
            .get(caller)
            .copied()
            .unwrap_or(0)
    }

    /// Takes a slot for a new child of `caller` (`None`: the gateway's own, bound by the
    /// global cap alone). When every slot is taken, ends an idle session to make room and
    /// waits (a few seconds at most) for its child to exit.
    pub(crate) async fn acquire(&self, caller: Option<&str>) -> Result<Slot, Refusal> {
        let caller: Option<Arc<str>> = caller.map(Arc::from);
        let deadline = Instant::now() + RECLAIM_WAIT;
        loop {
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let victim = match self.try_take(caller.as_ref()) {
                Ok(slot) => return Ok(slot),
                Err(Step::Refused(r)) => return Err(r),
                Err(Step::Wait) => None,
                Err(Step::Reclaim(v)) => Some(v),
            };
            if let Some(session) = victim {
                tracing::info!(target: "turnpike::upstream::stdio", session = session.serial(), "ending an idle session to make room: every stdio slot is taken ([stdio] max_sessions)");
                let message = "the session was idle and was ended to make room for another (the \
                               gateway's stdio sessions are at their limit); initialize a new one";
                session.end(message);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(self.full());
            }
        }
    }

    fn full(&self) -> Refusal {
        Refusal::Full {
            limit: self.inner.limits.max_sessions,
            retry_after: RETRY_FULL_SECS,
        }
    }

    /// One attempt under the lock.
    fn try_take(&self, caller: Option<&Arc<str>>) -> Result<Slot, Step> {
        let limits = self.inner.limits;
        let now = Instant::now();
        let mut st = self.inner.state.lock();
        let interval = Duration::from_secs(60) / limits.spawns_per_minute_per_caller;
        let tolerance = interval * (limits.spawns_per_minute_per_caller - 1);
        if let Some(c) = caller {
            let holds = st.per_caller.get(c).copied().unwrap_or(0);
            if holds >= limits.max_sessions_per_caller {
                return Err(Step::Refused(Refusal::CallerHolds {
                    limit: limits.max_sessions_per_caller,
                    retry_after: RETRY_HELD_SECS,
                }));
            }
            if let Some(tat) = st.rate.get(c) {
                let allowed_from = tat.checked_sub(tolerance).unwrap_or(now);
                if allowed_from > now {
                    let wait = allowed_from - now;
                    return Err(Step::Refused(Refusal::CallerRate {
                        limit: limits.spawns_per_minute_per_caller,
                        retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                    }));
                }
            }
        }
        if st.held.len() >= limits.max_sessions {
            if st.held.len() - st.reclaiming.min(st.held.len()) < limits.max_sessions {
                // A reclaimed child is on its way out: wait for it rather than end another.
                return Err(Step::Wait);
            }
            return match pick_victim(&mut st) {
                Some(v) => Err(Step::Reclaim(v)),
                None => Err(Step::Refused(self.full())),
            };
        }
        if let Some(c) = caller {
            let tat = st.rate.get(c).copied().unwrap_or(now).max(now) + interval;
            if st.rate.len() >= RATE_ENTRIES && !st.rate.contains_key(c) {
                st.rate.retain(|_, t| *t > now);
            }
            st.rate.insert(Arc::clone(c), tat);
            *st.per_caller.entry(Arc::clone(c)).or_insert(0) += 1;
        }
        st.next_id += 1;
        let id = st.next_id;
        st.held.insert(
            id,
            Held {
                caller: caller.cloned(),
                session: None,
                reclaimed: false,
            },
        );
        Ok(Slot {
            budget: Arc::downgrade(&self.inner),
            id,
        })
    }

    /// Makes the session that slot `id` was taken for reclaimable (once it has answered
    /// `initialize`). Nothing happens if the slot has been given back already.
    pub(crate) fn attach(&self, id: u64, session: Arc<dyn Reclaimable>) {
        if let Some(h) = self.inner.state.lock().held.get_mut(&id) {
            h.session = Some(session);
        }
    }

    /// The budget of a refusal message: which key bounds what.
    pub(crate) fn describe(refusal: &Refusal) -> String {
        match refusal {
            Refusal::CallerHolds { limit, .. } => format!(
                "this caller already holds {limit} stdio sessions, its limit \
                 ([stdio] max_sessions_per_caller); end one (DELETE) or let one idle out, then \
                 initialize again"
            ),
            Refusal::CallerRate { limit, .. } => format!(
                "this caller started {limit} stdio sessions within a minute, its limit \
                 ([stdio] spawns_per_minute_per_caller); try again later"
            ),
            Refusal::Full { limit, .. } => format!(
                "the gateway is at its limit of {limit} stdio sessions ([stdio] max_sessions) \
                 and none is idle; try again later"
            ),
        }
    }
}

enum Step {
    Refused(Refusal),
    /// Wait for a reclaimed slot.
    Wait,
    /// End this idle session, then wait for its slot.
    Reclaim(Victim),
}

type Victim = Arc<dyn Reclaimable>;

/// A session as the budget sees it once it is open: one it may end to make room when it is
/// idle. (The session module implements it, over weak references: the budget keeps no
/// session alive.)
pub(crate) trait Reclaimable: Send + Sync {
    /// The session's serial number, for the log (0 once it is gone).
    fn serial(&self) -> u64;
    /// Whether the session has ended (or is gone).
    fn is_closed(&self) -> bool;
    /// Since when the session has had nothing in flight; `None` while it is busy.
    fn idle_since(&self) -> Option<Instant>;
    /// Ends the session; its clients get `message`.
    fn end(&self, message: &str);
}

/// The idle session to end: of the caller holding the most slots (the gateway's own sessions
/// count as one caller), idle longest among those. Marks it reclaimed.
fn pick_victim(st: &mut State) -> Option<Victim> {
    let own = st.held.values().filter(|h| h.caller.is_none()).count();
    let mut best: Option<(usize, Instant, u64, Victim)> = None;
    for (&id, h) in &st.held {
        if h.reclaimed {
            continue;
        }
        let Some(session) = &h.session else {
            continue;
        };
        if session.is_closed() {
            continue;
        }
        let Some(since) = session.idle_since() else {
            continue;
        };
        let holds = match &h.caller {
            Some(c) => st.per_caller.get(c).copied().unwrap_or(0),
            None => own,
        };
        let better = match &best {
            None => true,
            Some((bh, bs, _, _)) => holds > *bh || (holds == *bh && since < *bs),
        };
        if better {
            best = Some((holds, since, id, session.clone()));
        }
    }
    let (_, _, id, victim) = best?;
    if let Some(h) = st.held.get_mut(&id) {
        h.reclaimed = true;
        st.reclaiming += 1;
    }
    Some(victim)
}

impl Inner {
    fn release(&self, id: u64) {
        {
            let mut st = self.state.lock();
            let Some(h) = st.held.remove(&id) else {
                return;
            };
            if h.reclaimed {
                st.reclaiming = st.reclaiming.saturating_sub(1);
            }
            if let Some(c) = h.caller {
                if let Some(n) = st.per_caller.get_mut(&c) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        st.per_caller.remove(&c);
                    }
                }
            }
        }
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per: usize, rate: u32) -> StdioLimits {
        StdioLimits {
            max_sessions: max,
            max_sessions_per_caller: per,
            spawns_per_minute_per_caller: rate,
        }
    }

    #[test]
    fn memory_formula() {
        let info = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8388608 kB\n";
        assert_eq!(mem_available_mib(info), Some(8192));
        assert_eq!(mem_available_mib("MemTotal: 1 kB\n"), None);
        assert_eq!(sessions_for_memory(8192, 64), 64);
        assert_eq!(sessions_for_memory(100, 64), 8, "clamped up");
        assert_eq!(sessions_for_memory(1 << 30, 64), 512, "clamped down");
        assert_eq!(
            sessions_for_memory(8192, 0),
            512,
            "a zero estimate is taken as 1"
        );
    }

    #[tokio::test]
    async fn per_caller_and_global_caps() {
        let b = StdioBudget::new(limits(3, 2, 1000));
        let a1 = b.acquire(Some("a")).await.unwrap();
        let _a2 = b.acquire(Some("a")).await.unwrap();
        assert!(matches!(
            b.acquire(Some("a")).await,
            Err(Refusal::CallerHolds { limit: 2, .. })
        ));
        assert_eq!(b.held_by("a"), 2);
        let _b1 = b.acquire(Some("b")).await.unwrap();
        // Full, and nothing is reclaimable (no session attached): refused at once.
        let started = std::time::Instant::now();
        assert!(matches!(
            b.acquire(Some("c")).await,
            Err(Refusal::Full { limit: 3, .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        // The gateway's own sessions are bound by the global cap only.
        drop(a1);
        assert_eq!(b.held_by("a"), 1);
        let _own = b.acquire(None).await.unwrap();
        assert_eq!(b.live(), 3);
    }

    #[tokio::test]
    async fn spawn_rate_per_caller() {
        let b = StdioBudget::new(limits(100, 100, 3));
        for _ in 0..3 {
            drop(b.acquire(Some("a")).await.unwrap());
        }
        match b.acquire(Some("a")).await {
            Err(Refusal::CallerRate {
                limit: 3,
                retry_after,
            }) => {
                assert!((1..=20).contains(&retry_after), "{retry_after}");
            }
            Err(other) => panic!("expected the rate refusal, got {other:?}"),
            Ok(_) => panic!("expected the rate refusal, got a slot"),
        }
        assert!(
            b.acquire(Some("b")).await.is_ok(),
            "other callers unaffected"
        );
    }
}
