//! The `Rail` trait, and what rails say back.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

use crate::{CallFacts, Credential, Identity, Offer};

/// A boxed future, so that rails can be used as trait objects without an async runtime here.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The three ways through the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RailKind {
    /// Proof-of-work.
    Pow,
    /// L402 Lightning payments.
    L402,
    /// OAuth 2.1 access tokens.
    #[serde(rename = "oauth")]
    OAuth,
}

impl RailKind {
    /// The lower-case label used on the wire and in metrics: `pow`, `l402`, `oauth`.
    pub fn as_str(self) -> &'static str {
        match self {
            RailKind::Pow => "pow",
            RailKind::L402 => "l402",
            RailKind::OAuth => "oauth",
        }
    }
}

impl std::fmt::Display for RailKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gate asks of a caller on one rail, in a form every delivery mode can render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// The rail this challenge is for.
    pub rail: RailKind,
    /// The `WWW-Authenticate` challenge: scheme and parameters, e.g. `PoW challenge="…", …`.
    pub www_authenticate: String,
    /// The same data as JSON, for JSON-RPC error bodies and in-band results. Always an object
    /// with at least `"rail"`.
    pub details: serde_json::Value,
}

/// Why a credential was not accepted. The reason is safe to show the caller: it never contains
/// the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The rail that refused.
    pub rail: RailKind,
    /// Why, in words safe to show the caller.
    pub reason: String,
}

impl Refusal {
    /// A refusal by `rail` for `reason`.
    pub fn new(rail: RailKind, reason: impl Into<String>) -> Self {
        Refusal {
            rail,
            reason: reason.into(),
        }
    }
}

/// What a rail grants when a credential passes.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The rail that granted the call.
    pub rail: RailKind,
    /// Who the caller is, where the credential says so.
    pub identity: Option<Identity>,
    /// An opaque note the rail needs to settle the call afterwards (e.g. a debit to refund).
    pub receipt: Option<String>,
}

/// A rail's decision about one credential for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The credential pays for this call.
    Pass(Grant),
    /// The credential is genuine but cannot pay for this call (spent, expired, used up, or for
    /// another call): the caller gets a fresh challenge (HTTP 402).
    Stale(Refusal),
    /// The credential is forged or malformed (HTTP 401).
    Invalid(Refusal),
    /// The rail cannot decide now (its backend is down). The gate fails closed (HTTP 503).
    Unavailable(Refusal),
}

/// One way through the gate. The proof-of-work, L402 and OAuth crates each implement it; the
/// gateway composes rails through this trait alone.
pub trait Rail: Send + Sync {
    /// Which rail this is.
    fn kind(&self) -> RailKind;

    /// The challenge to offer for `call` under `offer`, or `None` when this rail cannot be
    /// offered right now (e.g. proof-of-work above its effort ceiling, Lightning down).
    fn challenge<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>>;

    /// Checks `credential` for `call` under `offer`. A pass may consume the credential (a
    /// single-use solution or payment is recorded as spent before this returns).
    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict>;

    /// Called once the upstream has answered a call this rail granted, with whether it
    /// succeeded. Rails that debit balances refund here. The default does nothing.
    fn settle<'a>(&'a self, _grant: &'a Grant, _upstream_ok: bool) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Whether settling `grant` needs the call's JSON-RPC outcome (a result or an error), not
    /// only the HTTP status: a rail that refunds a debit when the call failed says yes, and the
    /// gateway then reads the answer's body as it passes. Releasing a single-use credential
    /// needs the status alone. The default: the grant carries a receipt.
    fn needs_outcome(&self, grant: &Grant) -> bool {
        grant.receipt.is_some()
    }

    /// Called after `settle(grant, false)` when the upstream refused the call before serving
    /// it (an HTTP error status, no connection, no response head in time): nothing was served,
    /// so a single-use credential the grant consumed may be accepted once more. Rails that
    /// consume one (a puzzle solution, a per-call payment) name it in the grant's receipt and
    /// make it usable again here; replays while the call was in flight were refused all the
    /// same. The default does nothing.
    fn release<'a>(&'a self, _grant: &'a Grant) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
