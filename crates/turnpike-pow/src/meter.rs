//! What the proof-of-work rail counts of its own for the gateway's metrics: puzzles issued and
//! solved, the effort of the last one issued, and (read from the load controller when written)
//! the load multiplier in force. [`crate::PowRail`] is its own [`turnpike_core::RailMeter`]
//! over these counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use turnpike_core::meter::write_series;
use turnpike_core::Challenge;

/// The rail's counters.
#[derive(Debug, Default)]
pub(crate) struct PowCounters {
    issued: AtomicU64,
    solved: AtomicU64,
    last_effort: AtomicU64,
}

impl PowCounters {
    /// One of the rail's challenges was issued: counted, and its effort kept.
    pub(crate) fn issued(&self, challenge: &Challenge) {
        self.issued.fetch_add(1, Relaxed);
        if let Some(e) = challenge
            .details
            .get("effort")
            .and_then(serde_json::Value::as_u64)
        {
            self.last_effort.store(e, Relaxed);
        }
    }

    /// A call passed with a solution.
    pub(crate) fn solved(&self) {
        self.solved.fetch_add(1, Relaxed);
    }

    /// `turnpike_pow_puzzles_issued_total`, `turnpike_pow_puzzles_solved_total`,
    /// `turnpike_pow_effort` and `turnpike_pow_effort_multiplier` (`multiplier`: now).
    pub(crate) fn render(&self, out: &mut String, multiplier: u64) {
        write_series(
            out,
            "turnpike_pow_puzzles_issued_total",
            "counter",
            "Proof-of-work challenges issued.",
            self.issued.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_pow_puzzles_solved_total",
            "counter",
            "Calls passed with a valid proof-of-work solution.",
            self.solved.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_pow_effort",
            "gauge",
            "Effort (expected hashes) of the last proof-of-work challenge issued.",
            self.last_effort.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_pow_effort_multiplier",
            "gauge",
            "The load multiplier applied to proof-of-work prices now.",
            multiplier,
        );
    }
}
