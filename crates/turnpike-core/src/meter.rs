//! What a rail counts of its own: the [`RailMeter`] trait.
//!
//! The gateway's metrics count every call by rail without knowing any rail: the `rail` label
//! of its series takes the name of each rail the gateway runs or recognises, and each rail may
//! add series of its own (proof-of-work: puzzles issued and solved, the effort; L402: invoices,
//! payments, money charged) through the meter its [`crate::RailPlugin::meter`] returns. The
//! metrics hand each meter its rail's challenges and granted calls as they are recorded, ask
//! it to write its series into the Prometheus text exposition, and take its figures into the
//! dashboard's samples and summary. A meter counts with relaxed atomics: it is on the request
//! path.

use std::fmt::Write as _;

use serde_json::Value;

use crate::Challenge;

/// A rail's own series and figures (see the module doc). Every method but [`RailMeter::render`]
/// has a default for a rail that counts nothing of that kind.
pub trait RailMeter: Send + Sync {
    /// One of this rail's challenges was issued (to a call answered with challenges).
    fn challenge_issued(&self, _challenge: &Challenge) {}

    /// A call this rail granted was recorded; `charged_msat` is what it charged for it
    /// ([`crate::Rail::charged_msat`]).
    fn call_granted(&self, _charged_msat: u64) {}

    /// Writes the rail's series into `out`, in the Prometheus text format (0.0.4): each with
    /// its `# HELP` and `# TYPE` lines ([`write_series`]), named `turnpike_<rail>_…`.
    fn render(&self, out: &mut String);

    /// The rail's running totals and gauges for each of the dashboard's history samples, by
    /// name (unique among every rail's: prefix them with the rail's name where in doubt).
    fn figures(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// The rail's part of the dashboard's summary: a key (the rail's name) and its figures.
    fn summary(&self) -> Option<(&'static str, Value)> {
        None
    }
}

/// Writes one series without labels: its `# HELP` and `# TYPE` lines (`kind`: `counter` or
/// `gauge`) and `name value`.
pub fn write_series(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Millisatoshis as the satoshis a `_sats_total` series shows (msat/1000, fractions kept).
pub fn sats(msat: u64) -> f64 {
    msat as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_written_whole() {
        let mut out = String::new();
        write_series(&mut out, "turnpike_x_total", "counter", "Things.", 3);
        write_series(
            &mut out,
            "turnpike_x_sats_total",
            "counter",
            "Sats.",
            sats(2_500),
        );
        write_series(
            &mut out,
            "turnpike_y_sats_total",
            "counter",
            "Sats.",
            sats(2_000),
        );
        assert_eq!(
            out,
            "# HELP turnpike_x_total Things.\n# TYPE turnpike_x_total counter\nturnpike_x_total 3\n\
             # HELP turnpike_x_sats_total Sats.\n# TYPE turnpike_x_sats_total counter\nturnpike_x_sats_total 2.5\n\
             # HELP turnpike_y_sats_total Sats.\n# TYPE turnpike_y_sats_total counter\nturnpike_y_sats_total 2\n"
        );
    }
}
