//! The proof-of-work rail's configuration: the `[pow]` and `[pow.load]` tables of the gateway's
//! config file.
//!
//! ```toml
//! [pow]
//! expiry_secs = 300
//! subpuzzles = 4
//! reference_hashrate = 8000000
//! key_rotation_secs = 86400
//! # algorithm = "sha256"          # or "equix" (needs the `equix` feature)
//! # keys = [{ id = 1, secret = "<64 hex>" }]
//! [pow.load]
//! calm_rps = 200
//! max_multiplier = 64
//! ceiling = 10000000000
//! raise_interval_secs = 5
//! lower_interval_secs = 5
//! ```
//!
//! Every field is optional (defaults above); unknown fields are refused. Range errors are raised
//! while deserializing, so a TOML loader reports them with their line and column.

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use crate::keys::MAX_EXPIRY_SECS;
use crate::puzzle::{Algorithm, MAX_SUBPUZZLES};

/// The default `reference_hashrate`: hashes per second of one thread of the native solver on
/// an x86-64 core with SHA extensions.
pub const DEFAULT_REFERENCE_HASHRATE: u64 = 8_000_000;

/// The `[pow]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowConfig {
    /// Seconds a challenge stays valid (1..=86400). Default 300.
    #[serde(deserialize_with = "de_expiry")]
    pub expiry_secs: u64,
    /// Sub-puzzles per challenge (1..=64): more narrows the spread of solve times. Default 4.
    #[serde(deserialize_with = "de_subpuzzles")]
    pub subpuzzles: u8,
    /// Hashes per second of the reference solver that `expected_seconds` (and the price's
    /// meaning in time) is computed for (at least 1). Default 8,000,000: one thread of the
    /// native solver on an x86-64 core with SHA extensions, measured at 6.5–9.4 MH/s
    /// (`turnpike check --measure-hashrate` measures a machine). A caller with N such threads
    /// solves in about `expected_seconds / N`; plain Python or a browser is 4–10× slower.
    #[serde(deserialize_with = "de_positive")]
    pub reference_hashrate: u64,
    /// Seconds after which a generated key is replaced (0 never rotates). Default 86400.
    pub key_rotation_secs: u64,
    /// Fixed keys (e.g. shared by several instances); when empty, keys are generated and
    /// persisted in the data directory. The last key tags new challenges.
    #[serde(deserialize_with = "de_keys")]
    pub keys: Vec<KeySpec>,
    /// The puzzle algorithm of new challenges: `"sha256"` (default) or `"equix"` (only in builds
    /// with the `equix` feature; a config naming it elsewhere is refused).
    #[serde(deserialize_with = "de_algorithm")]
    pub algorithm: Algorithm,
    /// Load-driven effort (`[pow.load]`).
    pub load: LoadConfig,
}

impl Default for PowConfig {
    fn default() -> Self {
        PowConfig {
            expiry_secs: 300,
            subpuzzles: 4,
            reference_hashrate: DEFAULT_REFERENCE_HASHRATE,
            key_rotation_secs: 86_400,
            keys: Vec::new(),
            algorithm: Algorithm::Sha256,
            load: LoadConfig::default(),
        }
    }
}

/// The `[pow.load]` table: effort rises with the global rate of paid work (solutions that
/// passed, the upstream's own overload answers); challenges issued do not count.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadConfig {
    /// Verified solutions per second under which effort is not raised. Above it (or when the
    /// upstream refuses paid calls as overloaded) the multiplier doubles, at most once per
    /// `raise_interval_secs`; under half of it, it halves, at most once per
    /// `lower_interval_secs`. Default 200.
    #[serde(deserialize_with = "de_positive")]
    pub calm_rps: u64,
    /// The largest effort multiplier (at least 1). Default 64.
    #[serde(deserialize_with = "de_positive")]
    pub max_multiplier: u64,
    /// Effort above which proof-of-work is not offered (only the other rails are). The load
    /// multiplier never pushes an offer past it: a loaded offer is held at the ceiling. Default
    /// 10,000,000,000.
    #[serde(deserialize_with = "de_positive")]
    pub ceiling: u64,
    /// Seconds between two doublings of the multiplier, at least (1..=3600). Default 5.
    #[serde(deserialize_with = "de_interval")]
    pub raise_interval_secs: u64,
    /// Seconds between two halvings of the multiplier, at least (1..=3600). Default 5.
    #[serde(deserialize_with = "de_interval")]
    pub lower_interval_secs: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            calm_rps: 200,
            max_multiplier: 64,
            ceiling: 10_000_000_000,
            raise_interval_secs: 5,
            lower_interval_secs: 5,
        }
    }
}

/// One fixed key: `{ id = 1, secret = "<64 hex>" }`. Its `Debug` form hides the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The key id carried in tokens.
    pub id: u32,
    /// The 32-byte HMAC secret, written as 64 hex digits.
    #[serde(deserialize_with = "de_secret")]
    pub secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySpec {{ id: {}, secret: <redacted> }}", self.id)
    }
}

/// A configuration value out of range (for configs built in code; deserialization reports the
/// same problems itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[pow] {field}: {reason}")]
pub struct ConfigError {
    /// The offending field, e.g. `subpuzzles` or `load.calm_rps`.
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl PowConfig {
    /// Checks every range; returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut bad = |field, reason: &str| {
            errs.push(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        if !(1..=MAX_EXPIRY_SECS).contains(&self.expiry_secs) {
            bad("expiry_secs", EXPIRY_RANGE);
        }
        if !(1..=MAX_SUBPUZZLES).contains(&self.subpuzzles) {
            bad("subpuzzles", SUBPUZZLE_RANGE);
        }
        if self.reference_hashrate == 0 {
            bad("reference_hashrate", POSITIVE);
        }
        if let Err(e) = check_keys(&self.keys) {
            bad("keys", &e);
        }
        if let Err(e) = check_algorithm(self.algorithm) {
            bad("algorithm", &e);
        }
        if self.load.calm_rps == 0 {
            bad("load.calm_rps", POSITIVE);
        }
        if self.load.max_multiplier == 0 {
            bad("load.max_multiplier", POSITIVE);
        }
        if self.load.ceiling == 0 {
            bad("load.ceiling", POSITIVE);
        }
        if !(1..=MAX_INTERVAL_SECS).contains(&self.load.raise_interval_secs) {
            bad("load.raise_interval_secs", INTERVAL_RANGE);
        }
        if !(1..=MAX_INTERVAL_SECS).contains(&self.load.lower_interval_secs) {
            bad("load.lower_interval_secs", INTERVAL_RANGE);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

const EXPIRY_RANGE: &str = "must be between 1 and 86400 seconds";
const SUBPUZZLE_RANGE: &str = "must be between 1 and 64";
const POSITIVE: &str = "must be at least 1";
const MAX_INTERVAL_SECS: u64 = 3600;
const INTERVAL_RANGE: &str = "must be between 1 and 3600 seconds";

fn de_interval<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if (1..=MAX_INTERVAL_SECS).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(INTERVAL_RANGE))
    }
}

fn de_expiry<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if (1..=MAX_EXPIRY_SECS).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "expiry_secs {EXPIRY_RANGE}"
        )))
    }
}

fn de_subpuzzles<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let v = u64::deserialize(d)?;
    match u8::try_from(v) {
        Ok(k) if (1..=MAX_SUBPUZZLES).contains(&k) => Ok(k),
        _ => Err(serde::de::Error::custom(format!(
            "subpuzzles {SUBPUZZLE_RANGE}"
        ))),
    }
}

fn de_positive<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v >= 1 {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(POSITIVE))
    }
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<[u8; 32]>, D::Error> {
    let s = Zeroizing::new(String::deserialize(d)?);
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(s.as_bytes(), &mut out[..]).map_err(|_| {
        serde::de::Error::custom(
            "secret must be 64 hex digits (32 random bytes, e.g. from `openssl rand -hex 32`)",
        )
    })?;
    Ok(out)
}

fn check_keys(keys: &[KeySpec]) -> Result<(), String> {
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].iter().any(|o| o.id == k.id) {
            return Err(format!("key id {} appears twice", k.id));
        }
    }
    Ok(())
}

fn de_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeySpec>, D::Error> {
    let keys = Vec::<KeySpec>::deserialize(d)?;
    check_keys(&keys).map_err(serde::de::Error::custom)?;
    Ok(keys)
}

fn check_algorithm(a: Algorithm) -> Result<(), String> {
    match a {
        Algorithm::Sha256 => Ok(()),
        Algorithm::Equix if cfg!(feature = "equix") => Ok(()),
        Algorithm::Equix => Err(
            "\"equix\" needs turnpike built with the `equix` feature (LGPL-3.0); use \"sha256\""
                .into(),
        ),
    }
}

fn de_algorithm<'de, D: Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
    let s = String::deserialize(d)?;
    let a = match s.as_str() {
        "sha256" => Algorithm::Sha256,
        "equix" => Algorithm::Equix,
        other => {
            return Err(serde::de::Error::custom(format!(
                "unknown algorithm {other:?}; expected \"sha256\" or \"equix\""
            )))
        }
    };
    check_algorithm(a).map_err(serde::de::Error::custom)?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PowConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = PowConfig::default();
        assert_eq!(c.expiry_secs, 300);
        assert_eq!(c.subpuzzles, 4);
        assert_eq!(c.reference_hashrate, 8_000_000);
        assert_eq!(c.key_rotation_secs, 86_400);
        assert_eq!(c.load.calm_rps, 200);
        assert_eq!(c.load.max_multiplier, 64);
        assert_eq!(c.load.ceiling, 10_000_000_000);
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.validate().is_ok());
        assert_eq!(parse("{}").unwrap(), c);
    }

    #[test]
    fn reads_the_reference_schema() {
        let c = parse(
            r#"{"expiry_secs":60,"subpuzzles":8,"reference_hashrate":1000,"key_rotation_secs":0,
                "keys":[{"id":3,"secret":"0101010101010101010101010101010101010101010101010101010101010101"}],
                "load":{"calm_rps":5,"max_multiplier":8,"ceiling":99}}"#,
        )
        .unwrap();
        assert_eq!(c.expiry_secs, 60);
        assert_eq!(c.subpuzzles, 8);
        assert_eq!(c.keys.len(), 1);
        assert_eq!(*c.keys[0].secret, [1u8; 32]);
        assert_eq!(
            c.load,
            LoadConfig {
                calm_rps: 5,
                max_multiplier: 8,
                ceiling: 99,
                ..LoadConfig::default()
            }
        );
        assert!(!format!("{c:?}").contains("0101"), "Debug hides secrets");
        // Partial tables keep the other defaults.
        let c = parse(r#"{"load":{"calm_rps":7}}"#).unwrap();
        assert_eq!(c.load.calm_rps, 7);
        assert_eq!(c.load.max_multiplier, 64);
    }

    #[test]
    fn refuses_bad_values() {
        for (json, needle) in [
            (r#"{"subpuzzles":0}"#, "subpuzzles"),
            (r#"{"subpuzzles":65}"#, "subpuzzles"),
            (r#"{"subpuzzles":300}"#, "subpuzzles"),
            (r#"{"expiry_secs":0}"#, "expiry_secs"),
            (r#"{"expiry_secs":86401}"#, "expiry_secs"),
            (r#"{"reference_hashrate":0}"#, "at least 1"),
            (r#"{"load":{"ceiling":0}}"#, "at least 1"),
            (
                r#"{"load":{"raise_interval_secs":0}}"#,
                "between 1 and 3600",
            ),
            (
                r#"{"load":{"lower_interval_secs":3601}}"#,
                "between 1 and 3600",
            ),
            (r#"{"load":{"calmrps":1}}"#, "unknown field"),
            (r#"{"expiry":1}"#, "unknown field"),
            (r#"{"keys":[{"id":1,"secret":"abc"}]}"#, "64 hex"),
            (
                r#"{"keys":[{"id":1,"secret":"0101010101010101010101010101010101010101010101010101010101010101"},{"id":1,"secret":"0101010101010101010101010101010101010101010101010101010101010101"}]}"#,
                "twice",
            ),
            (r#"{"algorithm":"md5"}"#, "unknown algorithm"),
        ] {
            let e = parse(json).expect_err(json);
            assert!(e.contains(needle), "{json}: {e}");
        }
        let equix = parse(r#"{"algorithm":"equix"}"#);
        assert_eq!(equix.is_ok(), cfg!(feature = "equix"), "{equix:?}");
        let c = PowConfig {
            subpuzzles: 0,
            expiry_secs: 0,
            ..Default::default()
        };
        let errs = c.validate().unwrap_err();
        assert_eq!(errs.len(), 2);
    }
}
