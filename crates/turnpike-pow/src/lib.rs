//! The proof-of-work rail of turnpike.
//!
//! - [`puzzle`]: the 111-byte challenge token (codec, effort → target, the hash a solution must
//!   satisfy), shared by the verifier here and the solver in `turnpike-client`;
//! - [`KeyRing`]: the HMAC keys that tag challenges, generated, persisted and rotated, or given;
//! - [`PowConfig`] / [`LoadConfig`]: the `[pow]` and `[pow.load]` config tables;
//! - [`EffortController`]: the global load multiplier on effort and the ceiling above which
//!   proof-of-work is not offered;
//! - [`PowRail`]: the [`turnpike_core::Rail`] that mints challenges bound to one call and
//!   verifies solutions exactly once, and counts its puzzles for the gateway's metrics (its
//!   [`turnpike_core::RailMeter`]: `turnpike_pow_*`);
//! - [`bench`]: this machine's hash rate on the puzzle, to calibrate `reference_hashrate`.
//!
//! Challenges are stateless: everything the verifier needs is inside the token under an HMAC
//! tag, and nothing the client computes is trusted — every hash is recomputed from the token
//! bytes and the nonces. The scheme is specified in `docs/POW.md`.
//!
//! The optional `equix` feature (LGPL-3.0 dependency) adds Equi-X puzzles ([`equix`]).

#![warn(missing_docs)]

pub mod bench;
pub mod conf;
pub mod config;
pub mod credential;
pub mod equix;
pub mod keys;
pub mod load;
mod meter;
pub mod puzzle;
pub mod rail;

pub use config::{ConfigError, KeySpec, LoadConfig, PowConfig};
pub use credential::{effort, offer, PowCredential, META_POW, RAIL};
pub use keys::{KeyError, KeyRing};
pub use load::{Clock, EffortController, ManualClock, SystemClock};
pub use puzzle::{check_nonce, target_for, Algorithm, ChallengeToken, PuzzleHasher, TokenError};
pub use rail::{PowCredentials, PowRail, Quote};

impl KeyRing {
    /// The key ring a [`PowConfig`] asks for: its fixed `keys` when given (the last one
    /// current), else keys generated and persisted in `data_dir` (see
    /// [`KeyRing::load_or_generate`]), rotated every `key_rotation_secs` and kept
    /// `expiry_secs` + 60 s after retirement.
    pub fn for_config(cfg: &PowConfig, data_dir: &std::path::Path) -> Result<KeyRing, KeyError> {
        if cfg.keys.is_empty() {
            let now = turnpike_core::unix_now();
            KeyRing::load_or_generate_at(
                data_dir,
                cfg.key_rotation_secs,
                cfg.expiry_secs.saturating_add(keys::CLOCK_SKEW_SECS),
                now,
            )
        } else {
            KeyRing::from_secrets(cfg.keys.iter().map(|k| (k.id, *k.secret)).collect())
        }
    }
}
