//! turnpike's vocabulary.
//!
//! Everything the gate reasons about, as plain typed values with no I/O and no async runtime:
//!
//! - [`CallFacts`]: what one classified MCP message is (method, tool, hash of its arguments, …);
//! - [`Identity`]: who a caller turned out to be;
//! - [`Offer`] and [`Price`]: what a call costs on each rail, and [`Policy`], which maps calls to
//!   prices;
//! - [`Credential`]: what a caller presented, parsed at the edge;
//! - [`Challenge`]: what the gate asks for, in a form every delivery mode can render;
//! - [`Verdict`]: what a rail decided about a credential;
//! - [`RailId`]: which rail something belongs to, an open identifier each rail crate defines;
//! - [`Rail`]: the trait every rail (proof-of-work, L402, OAuth, …) implements;
//! - [`RailPlugin`]: what a rail does at the gateway's edge (credentials from the request
//!   through its [`CredentialReader`], its place among challenges and its in-band text, its
//!   binding to one request, its own answers);
//! - [`RailMeter`]: what a rail counts of its own, written into the gateway's metrics;
//! - [`decide`]: the decision engine that runs a call's price against the rails;
//! - [`unix_now`]: the wall clock, in whole seconds since the Unix epoch, and
//!   [`mac::hmac_sha256`], the keyed hash everything is tagged with.

pub mod call;
pub mod clock;
pub mod conf;
pub mod credential;
pub mod decision;
pub mod error_codes;
pub mod identity;
pub mod mac;
pub mod meter;
pub mod plugin;
pub mod policy;
pub mod rail;

pub use call::{ArgsHash, CallFacts};
pub use clock::unix_now;
pub use credential::{Credential, CredentialSource};
pub use decision::{decide, Decision};
pub use identity::Identity;
pub use meter::RailMeter;
pub use plugin::{
    BoundRail, CredentialReader, EdgeRequest, HeaderLines, InBandCall, InBandForm, InBandResult,
    PassNotes, RailAnswer, RailDocument, RailPlugin, UpstreamAuthorization,
};
pub use policy::{Offer, Policy, Price};
pub use rail::{About, BoxFuture, Challenge, Grant, Rail, RailId, Refusal, Verdict};

/// Compares two byte strings in constant time (for the length of the shorter one; lengths are
/// not secret). Use this for every comparison of secret material: tags, preimages, keys.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
