//! `[stdio]` of the gateway's file: how many stdio children may live, in all and per caller.

use serde::{Deserialize, Deserializer};
use turnpike_core::conf::{hinted, KEY};

use super::budget::{
    memory_sized_max_sessions, StdioLimits, DEFAULT_MAX_SESSIONS_PER_CALLER,
    DEFAULT_SESSION_MEMORY_MIB, DEFAULT_SPAWNS_PER_MINUTE_PER_CALLER,
};

/// `[stdio]`: bounds on stdio children ([`super::StdioBudget`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdioSettings {
    /// Children alive at once; `None`: sized to memory ([`StdioSettings::limits`]).
    #[serde(deserialize_with = "some_bounded")]
    pub max_sessions: Option<usize>,
    /// The per-child memory estimate (MiB) the default `max_sessions` is computed with.
    /// Default 64.
    #[serde(deserialize_with = "bounded")]
    pub session_memory_mib: u64,
    /// Children one caller (address; IPv6 /64) may hold at once. Default 4.
    #[serde(deserialize_with = "bounded_usize")]
    pub max_sessions_per_caller: usize,
    /// Children one caller may start per minute. Default 20.
    #[serde(deserialize_with = "bounded_u32")]
    pub spawns_per_minute_per_caller: u32,
}

impl Default for StdioSettings {
    fn default() -> Self {
        StdioSettings {
            max_sessions: None,
            session_memory_mib: DEFAULT_SESSION_MEMORY_MIB,
            max_sessions_per_caller: DEFAULT_MAX_SESSIONS_PER_CALLER,
            spawns_per_minute_per_caller: DEFAULT_SPAWNS_PER_MINUTE_PER_CALLER,
        }
    }
}

impl StdioSettings {
    /// The limits in force, and the available memory (MiB) the global cap was sized from when
    /// `max_sessions` is not set (`None` when it is set, or when the memory cannot be read).
    pub fn limits(&self) -> (StdioLimits, Option<u64>) {
        let (max_sessions, avail) = match self.max_sessions {
            Some(n) => (n, None),
            None => memory_sized_max_sessions(self.session_memory_mib),
        };
        (
            StdioLimits {
                max_sessions,
                max_sessions_per_caller: self.max_sessions_per_caller,
                spawns_per_minute_per_caller: self.spawns_per_minute_per_caller,
            },
            avail,
        )
    }
}

/// The largest value any `[stdio]` key takes.
const MANY: u64 = 1 << 20;

fn bounded<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v == 0 || v > MANY {
        return Err(hinted(
            format!("[stdio] {KEY} must be between 1 and {MANY}"),
            "use a whole number of at least 1",
        ));
    }
    Ok(v)
}

fn bounded_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    // MANY fits every integer type used here.
    bounded(d).map(|v| v as usize)
}

fn bounded_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d).map(|v| v as u32)
}

fn some_bounded<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    bounded_usize(d).map(Some)
}
