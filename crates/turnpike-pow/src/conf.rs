//! The proof-of-work rail in the gateway's configuration file: the `[pow]` table and the price
//! key `pow = <effort>` ([`PowConf`], registered with the gateway).

use std::sync::Arc;

use turnpike_conf::{
    fields, Build, BuildError, Built, Cx, DeValue, Host, RailConf, Section, Sections, Spanned,
};
use turnpike_core::{Offer, RailId};

use crate::config::{LoadConfig, PowConfig, DEFAULT_REFERENCE_HASHRATE};
use crate::credential::{effort, offer, RAIL};

/// The table this rail owns.
pub const TABLE: &str = "pow";

const HINT_POW: &str = "see the [pow] table in the configuration reference";
const HINT_EFFORT: &str = "an effort is a number of expected hashes, at least 1 (e.g. 200000)";

/// The configuration side of the proof-of-work rail: `[pow]` (always on, defaults when left
/// out) and `pow = <effort>` in a price.
pub struct PowConf;

/// `[pow]` of a configuration's rail sections (its defaults when the file leaves it out).
pub fn section(sections: &Sections) -> PowConfig {
    sections
        .get::<PowConfig>(TABLE)
        .cloned()
        .unwrap_or_default()
}

/// Expected solve time of `effort` at `rate` hashes a second, rounded for people.
pub fn expected_time(effort: u64, rate: u64) -> String {
    let s = effort as f64 / rate.max(1) as f64;
    if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.1} s")
    }
}

impl RailConf for PowConf {
    fn id(&self) -> RailId {
        RAIL
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn defaults(&self, out: &mut Sections) {
        out.set(TABLE, PowConfig::default());
    }

    /// The rail from `[pow]`: its keys given, else loaded from or generated into `data_dir`
    /// (retired keys live only as long as a challenge they tagged can: expiry plus clock skew);
    /// its solutions single-use through the `pow` spent set.
    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError> {
        let pow = section(build.sections);
        let keys = crate::KeyRing::for_config(&pow, build.data_dir)
            .map_err(|e| BuildError(format!("proof-of-work keys: {e}")))?;
        let spent = build.services.spent_set("pow")?;
        Ok(Built::new(Arc::new(crate::PowRail::new(pow, keys, spent))))
    }

    fn read(
        &self,
        cx: &mut Cx<'_>,
        _name: &str,
        value: &Spanned<DeValue<'_>>,
        _host: &Host<'_>,
        out: &mut Sections,
    ) {
        let s = Section {
            serde_words: true,
            ..Section::new("[pow]", HINT_POW)
        };
        if let Some(p) = cx.section::<PowConfig>(value, s) {
            out.set(TABLE, p);
        }
    }

    fn price_hint(&self) -> Option<(&'static str, &'static str)> {
        Some(("pow = <effort>", "pow = 200000"))
    }

    fn price(&self, cx: &mut Cx<'_>, value: &Spanned<DeValue<'_>>) -> Option<Offer> {
        let e = cx.value::<u64>(value, HINT_EFFORT)?;
        if e == 0 {
            cx.problem(
                Some(value.span()),
                "pow effort must be at least 1".into(),
                HINT_EFFORT,
            );
        }
        // Priced all the same (a price both free and priced is a problem of its own).
        Some(offer(e))
    }

    fn offer_problem(&self, offer: &Offer) -> Option<(String, &'static str)> {
        (effort(offer) == Some(0)).then(|| ("pow = 0".to_string(), HINT_EFFORT))
    }

    fn validate(&self, sections: &Sections, _host: &Host<'_>) -> Vec<(String, &'static str)> {
        match section(sections).validate() {
            Ok(()) => Vec::new(),
            Err(errs) => errs
                .into_iter()
                .map(|e| (e.to_string(), HINT_POW))
                .collect(),
        }
    }

    fn reference_keys(&self) -> Vec<(String, Vec<&'static str>)> {
        vec![
            ("pow".into(), fields::<PowConfig>()),
            ("pow.load".into(), fields::<LoadConfig>()),
        ]
    }

    fn describe(&self, offer: &Offer, sections: &Sections) -> String {
        let rate = sections
            .get::<PowConfig>(TABLE)
            .map_or(DEFAULT_REFERENCE_HASHRATE, |p| p.reference_hashrate);
        let e = effort(offer).unwrap_or(0);
        format!("pow {e} (~{})", expected_time(e, rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_times_read_well() {
        assert_eq!(expected_time(200_000, 8_000_000), "25 ms");
        assert_eq!(expected_time(1, 8_000_000), "0 µs");
        assert_eq!(expected_time(100_000_000, 8_000_000), "12.5 s");
    }
}
