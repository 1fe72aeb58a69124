//! The `Rail` trait, and what rails say back.

use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{CallFacts, Credential, Identity, Offer};

/// A boxed future, so that rails can be used as trait objects without an async runtime here.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which rail something belongs to: an open identifier, the rail's lower-case name as it
/// appears on the wire, in configuration and in metrics (`pow`, `l402`, `oauth`, …). Each rail
/// crate defines its own (e.g. `turnpike_pow::RAIL`); nothing here lists them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RailId(&'static str);

impl RailId {
    /// The rail named `name` (lower case, as on the wire).
    pub const fn new(name: &'static str) -> RailId {
        RailId(name)
    }

    /// The lower-case label used on the wire and in metrics.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for RailId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Debug for RailId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RailId({})", self.0)
    }
}

impl Serialize for RailId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// What the gate asks of a caller on one rail, in a form every delivery mode can render.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Challenge {
    /// The rail this challenge is for.
    pub rail: RailId,
    /// The `WWW-Authenticate` challenge: scheme and parameters, e.g. `PoW challenge="…", …`.
    pub www_authenticate: String,
    /// The same data as JSON, for JSON-RPC error bodies and in-band results. Always an object
    /// with at least `"rail"`.
    pub details: serde_json::Value,
}

/// Why a credential was not accepted. The reason is safe to show the caller: it never contains
/// the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The rail that refused.
    pub rail: RailId,
    /// Why, in words safe to show the caller.
    pub reason: String,
}

impl Refusal {
    /// A refusal by `rail` for `reason`.
    pub fn new(rail: RailId, reason: impl Into<String>) -> Self {
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
    pub rail: RailId,
    /// Who the caller is, where the credential says so.
    pub identity: Option<Identity>,
    /// An opaque note the rail needs to settle the call afterwards (e.g. a debit to refund).
    pub receipt: Option<String>,
    /// What the credential says of the caller beyond its identity (an OAuth token's scopes
    /// and claims, an L402 token's caveats), for the access policy; shared, not copied per
    /// use.
    pub about: Option<Arc<About>>,
}

/// What a credential says of its holder beyond the identity, as the access policy reads it
/// (`identity.scopes`, `identity.claims`, `identity.caveats`). Each rail fills what it knows
/// and bounds it: an OAuth token's claims are kept within [`About::MAX_CLAIMS_BYTES`] by the
/// OAuth rail, an L402 token's caveats are bounded by the macaroon's own size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct About {
    /// The scopes the credential grants (an OAuth token's).
    pub scopes: Vec<String>,
    /// The credential's claims (an OAuth token's, as verified: the JWT's payload or the
    /// introspection answer), when the rail keeps them.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// The credential's caveats, condition → value, each condition once (an L402 token's
    /// first-party caveats).
    pub caveats: Vec<(String, String)>,
}

impl About {
    /// The most JSON text of claims a rail keeps for one credential (it is multiplied by the
    /// verified-token caches): past it, only a few claims that say who the holder is are kept.
    pub const MAX_CLAIMS_BYTES: usize = 8192;
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
    fn kind(&self) -> RailId;

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

    /// Whether a call presenting only this rail's credentials is known by the caller's address
    /// whatever the verdict (a puzzle solution names nobody). The gateway then runs the
    /// address's limits before the credentials are verified, so that a limited caller keeps a
    /// single-use credential for its retry. The default: no.
    fn identity_is_address(&self) -> bool {
        false
    }

    /// `offer` made dearer for a caller whose limits asked for `multiplier` times the work
    /// (the loop brake's strikes), or `None` when this rail's price does not scale so (the
    /// default) or nothing changes.
    fn scaled_offer(&self, _offer: &Offer, _multiplier: u32) -> Option<Offer> {
        None
    }

    /// What `offer` costs now, as `tools/list` publishes it (one element of
    /// `_meta["turnpike/price"].offers`), or `None` when it cannot be offered now. The default:
    /// the offer as priced ([`Offer::published`]).
    fn published_offer(&self, offer: &Offer) -> Option<serde_json::Value> {
        Some(offer.published())
    }

    /// When this rail could offer `call` no challenge: how long its caller must wait before it
    /// can (the caller is over the rail's own issuing rate), with the name of that limit, so
    /// that the caller gets 429 rather than 503. The default: `None`, waiting is not why.
    fn issue_wait(&self, _call: &CallFacts) -> Option<(std::time::Duration, &'static str)> {
        None
    }

    /// Millisatoshis `grant` charged for a call priced `offer`, for the call's log line and
    /// metrics. The default: nothing.
    fn charged_msat(&self, _grant: &Grant, _offer: &Offer) -> u64 {
        0
    }

    /// Millisatoshis `grant` took from a prepaid balance (not paid by an invoice of its own):
    /// the gateway counts them against the daily msat cap of the grant's identity
    /// (`budgets.msat_per_token_per_day`), refusing the call over it. The default: none.
    fn debited_msat(&self, _grant: &Grant) -> Option<u64> {
        None
    }

    /// Whether `grant` paid for its round of a multi-round call, so that the next round (the
    /// answer to an `input_required` result) is not priced again. The default: no (a rail
    /// that proves who calls is checked every round).
    fn pays_for_round(&self, _grant: &Grant) -> bool {
        false
    }

    /// The upstream answered a granted call as overloaded (429 or 503): a rail whose price
    /// follows load may count it. The default does nothing.
    fn upstream_overloaded(&self) {}

    /// Who presents `credential`, for a call that spends nothing (a free method such as
    /// `tools/list`, or a free tool), so that the access policy knows the caller: the verified
    /// identity with what the credential says of it (as a pass's [`Grant::about`]), or `None`. Checking must spend nothing: a rail whose
    /// credentials are single-use (puzzle solutions, per-call payments, proofs that are
    /// recorded as used) answers `None` rather than consume one. The default: `None`.
    fn identify<'a>(
        &'a self,
        _call: &'a CallFacts,
        _credential: &'a Credential,
    ) -> BoxFuture<'a, Option<(Identity, About)>> {
        Box::pin(async { None })
    }
}
