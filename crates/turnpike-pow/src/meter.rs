//! What the proof-of-work rail counts of its own ([`turnpike_core::RailMeter`]): puzzles issued
//! and solved, the effort of the last one issued, and the load multiplier in force.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use turnpike_core::meter::write_series;
use turnpike_core::{Challenge, RailMeter};

use crate::rail::PowRail;

/// The rail's counters (its meter reads the load multiplier from the controller).
#[derive(Debug, Default)]
pub(crate) struct PowCounters {
    issued: AtomicU64,
    solved: AtomicU64,
    last_effort: AtomicU64,
}

/// `turnpike_pow_puzzles_issued_total`, `turnpike_pow_puzzles_solved_total`,
/// `turnpike_pow_effort` and `turnpike_pow_effort_multiplier`; the history's `pow_multiplier`.
impl RailMeter for PowRail {
    fn challenge_issued(&self, challenge: &Challenge) {
        let c = self.counters();
        c.issued.fetch_add(1, Relaxed);
        if let Some(e) = challenge
            .details
            .get("effort")
            .and_then(serde_json::Value::as_u64)
        {
            c.last_effort.store(e, Relaxed);
        }
    }

    fn call_granted(&self, _charged_msat: u64) {
        self.counters().solved.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String) {
        let c = self.counters();
        write_series(
            out,
            "turnpike_pow_puzzles_issued_total",
            "counter",
            "Proof-of-work challenges issued.",
            c.issued.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_pow_puzzles_solved_total",
            "counter",
            "Calls passed with a valid proof-of-work solution.",
            c.solved.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_pow_effort",
            "gauge",
            "Effort (expected hashes) of the last proof-of-work challenge issued.",
            c.last_effort.load(Relaxed),
        );
        write_series(
            out,
            "turnpike_pow_effort_multiplier",
            "gauge",
            "The load multiplier applied to proof-of-work prices now.",
            self.current_multiplier(),
        );
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        vec![("pow_multiplier", self.current_multiplier())]
    }
}
