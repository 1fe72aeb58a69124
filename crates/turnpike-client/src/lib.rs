//! The caller's side of turnpike.
//!
//! So far: finding proof-of-work challenges in a server's answer ([`parse_challenges`]),
//! solving them on every core ([`solve`], [`solve_with`]), and rendering the credential for the
//! retried call ([`authorization_value`] for the `Authorization` header, [`meta_value`] /
//! [`attach_meta`] for `params._meta`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let www_authenticate = "PoW challenge=\"…\", algorithm=\"sha256\", effort=\"200000\"";
//! for c in turnpike_client::parse_challenges(www_authenticate) {
//!     let nonces = turnpike_client::solve(&c.token, 0, None)?;
//!     println!("{}", turnpike_client::authorization_value(&c.challenge, &nonces));
//! }
//! # Ok(()) }
//! ```
//!
//! Wallets, the OAuth client and the stdio bridge come later.

#![warn(missing_docs)]

pub mod parse;
pub mod render;
pub mod solve;

pub use parse::{parse_challenges, ParsedChallenge};
pub use render::{attach_meta, authorization_value, meta_value, solution_string};
pub use solve::{default_threads, solve, solve_with, SolveError, SolveOptions, Solved};
pub use turnpike_pow::puzzle::{Algorithm, ChallengeToken};
