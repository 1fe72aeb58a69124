//! [`PowRail`]: the proof-of-work rail, implementing [`turnpike_core::Rail`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;
use turnpike_core::{
    ct_eq, BoxFuture, CallFacts, Challenge, Credential, CredentialReader, EdgeRequest, Grant,
    Identity, Offer, Rail, RailId, RailMeter, RailPlugin, Refusal, Verdict,
};
use turnpike_store::SpentSet;

use crate::config::PowConfig;
use crate::credential::{effort, parse_pow_meta, parse_pow_params, PowCredential, META_POW, RAIL};
use crate::keys::{KeyRing, CLOCK_SKEW_SECS};
use crate::load::{Clock, EffortController, SystemClock};
use crate::meter::PowCounters;
use crate::puzzle::{Algorithm, ChallengeToken, PuzzleHasher, TokenFields, MAX_SUBPUZZLES};

/// What proof-of-work costs for a base effort right now: for `tools/list` annotations and
/// quotes. Asking does not count as a priced request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quote {
    /// The effort a challenge would carry now (base effort × load multiplier, converted to the
    /// configured algorithm's unit).
    pub effort: u64,
    /// Seconds the puzzle should take on the reference core.
    pub expected_seconds: f64,
}

/// The proof-of-work rail: mints challenges bound to one call, verifies solutions once.
///
/// Nothing is stored when a challenge is issued: the challenge carries everything under an
/// HMAC tag. A solution is recorded in the spent set (keyed by the tag, until the challenge
/// expires) when it passes; on a set that buckets its records by caller (a Redis Cluster) the
/// challenge's nonce begins with its caller's bucket, and so does the key.
pub struct PowRail {
    cfg: PowConfig,
    keys: RwLock<KeyRing>,
    /// When the key ring is next due for rotation (Unix seconds); `u64::MAX` for never.
    next_rotation: AtomicU64,
    spent: Arc<dyn SpentSet>,
    load: EffortController,
    /// What it counts for the metrics ([`crate::meter`]).
    counters: PowCounters,
}

impl std::fmt::Debug for PowRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowRail")
            .field("cfg", &self.cfg)
            .field("keys", &*self.keys.read())
            .field("load", &self.load)
            .finish()
    }
}

/// Rounds to microseconds, for `expected_seconds`.
fn round_seconds(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e6).round() / 1e6
    } else {
        0.0
    }
}

impl PowRail {
    /// A rail with the given configuration, keys and spent set, on the system clock.
    ///
    /// Out-of-range values in `cfg` are clamped (check them with [`PowConfig::validate`]);
    /// `algorithm = equix` in a build without the `equix` feature falls back to SHA-256.
    pub fn new(cfg: PowConfig, keys: KeyRing, spent: Arc<dyn SpentSet>) -> PowRail {
        Self::with_clock(cfg, keys, spent, Arc::new(SystemClock))
    }

    /// [`PowRail::new`] with the load controller on the given clock (tests, simulations).
    pub fn with_clock(
        mut cfg: PowConfig,
        keys: KeyRing,
        spent: Arc<dyn SpentSet>,
        clock: Arc<dyn Clock>,
    ) -> PowRail {
        cfg.subpuzzles = cfg.subpuzzles.clamp(1, MAX_SUBPUZZLES);
        cfg.reference_hashrate = cfg.reference_hashrate.max(1);
        cfg.expiry_secs = cfg.expiry_secs.clamp(1, crate::keys::MAX_EXPIRY_SECS);
        if !cfg!(feature = "equix") {
            cfg.algorithm = Algorithm::Sha256;
        }
        let next_rotation = keys.next_rotation_at().unwrap_or(u64::MAX);
        PowRail {
            load: EffortController::with_clock(cfg.load.clone(), clock),
            cfg,
            keys: RwLock::new(keys),
            next_rotation: AtomicU64::new(next_rotation),
            spent,
            counters: PowCounters::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PowConfig {
        &self.cfg
    }

    /// The load controller.
    pub fn controller(&self) -> &EffortController {
        &self.load
    }

    /// The current load multiplier on effort, `1..=max_multiplier`.
    pub fn current_multiplier(&self) -> u64 {
        self.load.current_multiplier()
    }

    /// The ids of the keys that verify challenges (the last one tags new ones).
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.read().ids()
    }

    /// What a challenge for `base_effort` would cost now, or `None` when proof-of-work is not
    /// offered (above the ceiling). Does not count as a priced request.
    pub fn quote(&self, base_effort: u64) -> Option<Quote> {
        let effort = self.load.offered_effort(base_effort)?;
        let effort = self.token_effort(effort);
        Some(Quote {
            effort,
            expected_seconds: self.expected_seconds(effort),
        })
    }

    /// Seconds a token of `effort` should take on the reference core (rounded to µs).
    pub fn expected_seconds(&self, effort: u64) -> f64 {
        let rate = match self.cfg.algorithm {
            Algorithm::Sha256 => self.cfg.reference_hashrate,
            Algorithm::Equix => crate::equix::EQUIX_REFERENCE_RATE,
        };
        round_seconds(effort as f64 / rate.max(1) as f64)
    }

    /// The effort carried by a token for an effort in SHA-256 hashes, in the configured
    /// algorithm's unit.
    fn token_effort(&self, hashes: u64) -> u64 {
        match self.cfg.algorithm {
            Algorithm::Sha256 => hashes.max(1),
            Algorithm::Equix => {
                crate::equix::effort_from_hashes(hashes, self.cfg.reference_hashrate)
            }
        }
    }

    /// Mints a challenge token for `call` with `effort` in SHA-256 hashes (converted for
    /// Equi-X), at time `call.now`, without the load multiplier or the ceiling and without
    /// counting a request. [`Rail::challenge`] is the normal way in.
    pub fn mint(&self, call: &CallFacts, effort: u64) -> ChallengeToken {
        self.rotate_if_due(call.now);
        let effort = self.token_effort(effort);
        let max_k = match self.cfg.algorithm {
            Algorithm::Sha256 => MAX_SUBPUZZLES,
            Algorithm::Equix => crate::equix::MAX_EQUIX_SUBPUZZLES,
        };
        let k = u64::from(self.cfg.subpuzzles.min(max_k)).min(effort);
        let fields = TokenFields {
            algorithm: self.cfg.algorithm,
            key_id: 0,
            issued_at: call.now,
            expires_at: call.now.saturating_add(self.cfg.expiry_secs),
            effort,
            // 1 <= k <= 64: the config is clamped and effort >= 1.
            subpuzzles: u8::try_from(k).unwrap_or(1),
            scope: call.scope_digest(),
            nonce: self.nonce_for(call),
        };
        let keys = self.keys.read();
        let key_id = keys.current_id();
        let fields = TokenFields { key_id, ..fields };
        ChallengeToken::assemble(&fields, |signed| keys.tag_current(signed).1)
    }

    /// A fresh nonce for a challenge to `call`: 16 random bytes; when the spent set buckets its
    /// records by caller ([`SpentSet::caller_buckets`], a Redis Cluster) and the caller is
    /// known, the first byte is the caller's bucket instead ([`caller_bucket`]), so the
    /// solution's record ([`PowRail::spent_key`]) lands in the hash slot of the caller's limits.
    fn nonce_for(&self, call: &CallFacts) -> [u8; 16] {
        let mut nonce: [u8; 16] = rand::random();
        if self.spent.caller_buckets() {
            if let Some(bucket) = caller_bucket(call) {
                nonce[0] = bucket;
            }
        }
        nonce
    }

    /// The spent-set key of `token`'s solution, fixed by the token alone (whoever presents it):
    /// the tag; when the spent set buckets its records by caller, the nonce's first byte (the
    /// bucket of the caller the challenge was issued to) followed by the tag's first 31 bytes,
    /// so the record is in that caller's bucket.
    fn spent_key(&self, token: &ChallengeToken) -> [u8; 32] {
        let tag = token.tag();
        if !self.spent.caller_buckets() {
            return tag;
        }
        let mut key = [0u8; 32];
        key[0] = token.nonce()[0];
        key[1..].copy_from_slice(&tag[..31]);
        key
    }

    /// Renders a minted token as a [`Challenge`]: the `WWW-Authenticate` value and the JSON
    /// details, exactly as the wire format specifies.
    pub fn render(&self, token: &ChallengeToken) -> Challenge {
        use std::fmt::Write as _;
        let tok = token.encode();
        let alg = token.algorithm().as_str();
        let effort = token.effort();
        let k = token.subpuzzles();
        let target = format!("{:016x}", token.target());
        let expires = token.expires_at();
        let secs = self.expected_seconds(effort);
        let mut www = String::with_capacity(320);
        www.push_str("PoW challenge=\"");
        www.push_str(&tok);
        www.push_str("\", algorithm=\"");
        www.push_str(alg);
        // Writing to a String cannot fail.
        let _ = write!(
            www,
            "\", effort=\"{effort}\", subpuzzles=\"{k}\", target=\"{target}\", \
             expires=\"{expires}\", expected_seconds=\"{secs}\""
        );
        let mut d = serde_json::Map::new();
        d.insert("rail".into(), Value::from("pow"));
        d.insert("scheme".into(), Value::from("PoW"));
        d.insert("algorithm".into(), Value::from(alg));
        d.insert("effort".into(), Value::from(effort));
        d.insert("subpuzzles".into(), Value::from(k));
        d.insert("target".into(), Value::String(target));
        d.insert("expires".into(), Value::from(expires));
        d.insert("expected_seconds".into(), Value::from(secs));
        d.insert("www_authenticate".into(), Value::String(www.clone()));
        d.insert("challenge".into(), Value::String(tok));
        Challenge {
            rail: RAIL,
            www_authenticate: www,
            details: Value::Object(d),
        }
    }

    /// Rotates the key ring if it is due (persisted rings only). A failed save keeps the
    /// current key and retries a minute later.
    fn rotate_if_due(&self, now: u64) {
        if now < self.next_rotation.load(Ordering::Relaxed) {
            return;
        }
        let mut keys = self.keys.write();
        let next = match keys.rotate_if_due(now) {
            Ok(_) => keys.next_rotation_at().unwrap_or(u64::MAX),
            Err(_) => now.saturating_add(60),
        };
        self.next_rotation.store(next, Ordering::Relaxed);
    }

    /// Every check of the verification order except the spent-set insert. On success returns
    /// the spent-set key ([`PowRail::spent_key`]: the tag, or on a bucketed set the bucket and
    /// the tag), the challenge's issue time and its expiry.
    pub fn precheck(
        &self,
        call: &CallFacts,
        base_effort: u64,
        cred: &PowCredential,
    ) -> Result<([u8; 32], u64, u64), Verdict> {
        let invalid = |r: &str| Verdict::Invalid(Refusal::new(RAIL, r));
        let stale = |r: &str| Verdict::Stale(Refusal::new(RAIL, r));
        let token = ChallengeToken::decode(&cred.challenge)
            .map_err(|e| invalid(&format!("malformed challenge: {e}")))?;
        {
            let keys = self.keys.read();
            let Some(tag) = keys.tag_with(token.key_id(), &token.signed_bytes()) else {
                return Err(invalid("challenge was not issued here (unknown key)"));
            };
            if !ct_eq(&tag, &token.tag()) {
                return Err(invalid("challenge was not issued here"));
            }
        }
        if token.issued_at() > call.now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(invalid("challenge issued in the future"));
        }
        if call.now >= token.expires_at() {
            return Err(stale("expired"));
        }
        if !ct_eq(&token.scope(), &call.scope_digest()) {
            return Err(stale("bound to another call"));
        }
        let min_effort = match token.algorithm() {
            Algorithm::Sha256 => base_effort.max(1),
            Algorithm::Equix => {
                crate::equix::effort_from_hashes(base_effort, self.cfg.reference_hashrate)
            }
        };
        if token.effort() < min_effort {
            return Err(stale("effort below this call's price"));
        }
        if !solution_holds(&token, &cred.solution) {
            return Err(invalid("wrong solution"));
        }
        Ok((
            self.spent_key(&token),
            token.issued_at(),
            token.expires_at(),
        ))
    }
}

/// The bucket ([`turnpike_store::cluster_bucket`]) of the caller of `call`, by the scope string
/// the gateway's limits key it on: its identity when known before any credential
/// (`CallFacts::caller`), else its address (`Identity::anonymous`, as the limits of a call
/// paid by a puzzle are keyed); `None` when neither is known.
fn caller_bucket(call: &CallFacts) -> Option<u8> {
    let scope = match (&call.caller, call.peer) {
        (Some(identity), _) => identity.scope_key(),
        (None, Some(peer)) => Identity::anonymous(peer).scope_key(),
        (None, None) => return None,
    };
    Some(turnpike_store::cluster_bucket(&scope))
}

/// Whether `nonces` solve every sub-puzzle of `token`. The count is checked first, so a long
/// list costs nothing.
fn solution_holds(token: &ChallengeToken, nonces: &[u64]) -> bool {
    let k = usize::from(token.subpuzzles());
    match token.algorithm() {
        Algorithm::Sha256 => {
            if nonces.len() != k {
                return false;
            }
            let target = token.target();
            let mut h = PuzzleHasher::new(token.raw());
            nonces
                .iter()
                .zip(0u8..)
                .all(|(&n, i)| h.check(i, n, target))
        }
        Algorithm::Equix => crate::equix::solution_holds(token, nonces),
    }
}

impl Rail for PowRail {
    fn kind(&self) -> RailId {
        RAIL
    }

    fn challenge<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        // Issuing a challenge is not load: it costs the caller nothing, so it must not move
        // the price others pay (the caller's own limits count it instead).
        let out = effort(offer)
            .and_then(|effort| self.load.offered_effort(effort))
            .map(|e| self.render(&self.mint(call, e)));
        Box::pin(std::future::ready(out))
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let Some(cred) = credential.payload::<PowCredential>() else {
                return Verdict::Invalid(Refusal::new(RAIL, "not a proof-of-work credential"));
            };
            let Some(effort) = effort(offer) else {
                return Verdict::Stale(Refusal::new(
                    RAIL,
                    "this call does not accept proof-of-work",
                ));
            };
            let (key, issued_at, expires_at) = match self.precheck(call, effort, cred) {
                Ok(v) => v,
                Err(v) => return v,
            };
            // A challenge issued before the spent set's epoch counts as spent: its record may
            // have been lost with the set's data.
            match self
                .spent
                .insert_issued(key, issued_at, expires_at, call.now)
                .await
            {
                Ok(true) => {
                    // Only work that was done and accepted counts as load.
                    self.load.record_solution();
                    Verdict::Pass(Grant {
                        rail: RAIL,
                        identity: call.caller.clone(),
                        receipt: Some(spent_receipt(&key)),
                        about: None,
                    })
                }
                Ok(false) => Verdict::Stale(Refusal::new(RAIL, "already used")),
                Err(_) => Verdict::Unavailable(Refusal::new(
                    RAIL,
                    "the spent-puzzle store is unavailable",
                )),
            }
        })
    }

    /// A solution names nobody: the caller is its address whatever the verdict.
    fn identity_is_address(&self) -> bool {
        true
    }

    /// Effort times the multiplier.
    fn scaled_offer(&self, offer: &Offer, multiplier: u32) -> Option<Offer> {
        match effort(offer) {
            Some(effort) if multiplier > 1 => Some(crate::credential::offer(
                effort.saturating_mul(u64::from(multiplier)),
            )),
            _ => None,
        }
    }

    /// Quoted at the current load, with the time the puzzle should take; `None` above the
    /// ceiling.
    fn published_offer(&self, offer: &Offer) -> Option<serde_json::Value> {
        match effort(offer) {
            Some(effort) => self.quote(effort).map(|q| {
                serde_json::json!({"rail": "pow", "effort": q.effort, "expected_seconds": q.expected_seconds})
            }),
            None => Some(offer.published()),
        }
    }

    /// Work done pays for the round.
    fn pays_for_round(&self, _grant: &Grant) -> bool {
        true
    }

    /// A paid call the upstream refused as overloaded: load the effort controller may act on.
    fn upstream_overloaded(&self) {
        self.load.record_upstream_overload();
    }

    /// A solution is settled by the HTTP status alone (released when the upstream refused the
    /// call); nothing depends on the JSON-RPC outcome, so the answer is never read.
    fn needs_outcome(&self, _grant: &Grant) -> bool {
        false
    }

    /// The upstream refused the call before serving it: the solution is taken out of the
    /// spent set, so the same solution passes once more (until its challenge expires).
    fn release<'a>(&'a self, grant: &'a Grant) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(tag) = spent_tag(grant) else {
                return;
            };
            let now = turnpike_core::unix_now();
            // A store that cannot release leaves the solution spent (the safe side).
            let _ = self.spent.release(tag, now).await;
        })
    }
}

/// At the edge: its credentials read by [`PowCredentials`]; its challenge after L402's (a way
/// through without paying), its in-band words.
impl RailPlugin for PowRail {
    fn id(&self) -> RailId {
        RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        &PowCredentials
    }

    fn challenge_order(&self) -> u8 {
        10
    }

    fn in_band_text(&self, challenge: &Challenge, first: bool) -> String {
        in_band_text(challenge, first)
    }

    fn meter(self: Arc<Self>) -> Option<Arc<dyn RailMeter>> {
        Some(self)
    }
}

/// What it counts for the gateway's metrics ([`crate::meter`]): `turnpike_pow_*`, and the
/// history's `pow_multiplier`.
impl RailMeter for PowRail {
    fn challenge_issued(&self, challenge: &Challenge) {
        self.counters.issued(challenge);
    }

    fn call_granted(&self, _charged_msat: u64) {
        self.counters.solved();
    }

    fn render(&self, out: &mut String) {
        self.counters.render(out, self.current_multiplier());
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        vec![("pow_multiplier", self.current_multiplier())]
    }
}

/// How proof-of-work solutions are read: `Authorization: PoW …` and
/// `params._meta["turnpike/pow"]`.
pub struct PowCredentials;

impl CredentialReader for PowCredentials {
    fn parse_authorization(
        &self,
        scheme: &str,
        params: &str,
        _req: &EdgeRequest<'_>,
    ) -> Option<turnpike_core::plugin::Parsed> {
        scheme
            .eq_ignore_ascii_case("PoW")
            .then(|| parse_pow_params(params).map(Credential::from))
    }

    fn meta_keys(&self) -> &'static [&'static str] {
        &[META_POW]
    }

    fn parse_meta(&self, key: &str, value: &Value) -> Option<turnpike_core::plugin::Parsed> {
        (key == META_POW).then(|| parse_pow_meta(value).map(Credential::from))
    }
}

/// The in-band words for a proof-of-work challenge: which puzzle, how long it takes, how to
/// retry; after a paid way, "Or, without paying".
pub fn in_band_text(challenge: &Challenge, first: bool) -> String {
    let d = &challenge.details;
    let token = d.get("challenge").and_then(Value::as_str).unwrap_or("");
    let secs = d
        .get("expected_seconds")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let k = d.get("subpuzzles").and_then(Value::as_u64).unwrap_or(1);
    let lead = if first { "" } else { "Or, without paying: " };
    format!(
        "{lead}Proof-of-work: solve challenge \"{token}\" ({k} SHA-256 sub-puzzles, about \
         {secs:.3} s on one CPU core; the parameters are in \
         structuredContent.turnpike.challenges), e.g. with `turnpike solve`, then \
         retry this same call with the same arguments and add \
         params._meta[\"turnpike/pow\"] = {{\"challenge\": \"{token}\", \
         \"solution\": \"<n0>,<n1>,...\"}} (one decimal nonce per sub-puzzle). "
    )
}

/// Prefix of the receipt a pass leaves in its grant: `pow-spent:<hex spent-set key>`, so that
/// [`Rail::release`] can make the solution usable again.
const SPENT_RECEIPT: &str = "pow-spent:";

/// The receipt naming spent-set key `tag`, built in one allocation.
fn spent_receipt(tag: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut r = String::with_capacity(SPENT_RECEIPT.len() + 64);
    r.push_str(SPENT_RECEIPT);
    for b in tag {
        r.push(char::from(HEX[usize::from(b >> 4)]));
        r.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    r
}

/// The spent-set key a proof-of-work grant's receipt names.
fn spent_tag(grant: &Grant) -> Option<[u8; 32]> {
    if grant.rail != RAIL {
        return None;
    }
    let hex_tag = grant.receipt.as_deref()?.strip_prefix(SPENT_RECEIPT)?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(hex_tag, &mut tag).ok()?;
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::ManualClock;
    use crate::puzzle::{TOKEN_LEN, TOKEN_STR_LEN};
    use turnpike_core::Identity;
    use turnpike_store::{MemorySpentSet, StoreError};

    const NOW: u64 = 1_700_000_000;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the rail's futures never wait here"),
        }
    }

    fn call(tool: &str, args: u8) -> CallFacts {
        CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some(tool.into()),
            args_hash: [args; 32],
            caller: None,
            peer: Some("127.0.0.1".parse().unwrap()),
            now: NOW,
        }
    }

    fn rail_with(cfg: PowConfig, spent: Arc<dyn SpentSet>) -> PowRail {
        let keys = KeyRing::from_secrets(vec![(1, [1; 32]), (2, [2; 32])]).unwrap();
        PowRail::with_clock(cfg, keys, spent, Arc::new(ManualClock::new(5_000)))
    }

    fn rail() -> PowRail {
        rail_with(
            PowConfig::default(),
            Arc::new(MemorySpentSet::with_epoch_start(0)),
        )
    }

    fn brute(token: &ChallengeToken) -> Vec<u64> {
        let target = token.target();
        (0..token.subpuzzles())
            .map(|i| {
                (0u64..)
                    .find(|&n| crate::puzzle::check_nonce(token.raw(), i, n, target))
                    .unwrap()
            })
            .collect()
    }

    fn cred(token: &str, solution: Vec<u64>) -> Credential {
        Credential::from(PowCredential {
            challenge: token.to_string(),
            solution,
        })
    }

    fn offer(effort: u64) -> Offer {
        crate::offer(effort)
    }

    fn challenge_token(r: &PowRail, c: &CallFacts, effort: u64) -> (Challenge, ChallengeToken) {
        let ch = block_on(r.challenge(c, &offer(effort))).expect("offered");
        let tok = ch.details["challenge"].as_str().unwrap().to_string();
        (ch, ChallengeToken::decode(&tok).unwrap())
    }

    fn verdict(r: &PowRail, c: &CallFacts, effort: u64, cr: &Credential) -> Verdict {
        block_on(r.verify(c, &offer(effort), cr))
    }

    fn reason(v: &Verdict) -> String {
        match v {
            Verdict::Stale(r) | Verdict::Invalid(r) | Verdict::Unavailable(r) => r.reason.clone(),
            Verdict::Pass(_) => "pass".into(),
        }
    }

    #[test]
    fn a_challenge_issued_before_the_spent_sets_epoch_is_refused() {
        // A spent set whose records begin after the challenge was issued (a restart, or Redis
        // that lost its data): the solution may have been spent in the lost records.
        let later = rail_with(
            PowConfig::default(),
            Arc::new(MemorySpentSet::with_epoch_start(NOW + 1)),
        );
        let c = call("echo", 1);
        let (_, t) = challenge_token(&later, &c, 1000);
        let v = verdict(&later, &c, 1000, &cred(&t.encode(), brute(&t)));
        assert!(matches!(v, Verdict::Stale(_)), "{v:?}");
        assert_eq!(reason(&v), "already used");
        // From the epoch's first second on, challenges pass (once).
        let r = rail_with(
            PowConfig::default(),
            Arc::new(MemorySpentSet::with_epoch_start(NOW)),
        );
        let (_, t) = challenge_token(&r, &c, 1000);
        let cr = cred(&t.encode(), brute(&t));
        assert!(matches!(verdict(&r, &c, 1000, &cr), Verdict::Pass(_)));
        assert_eq!(reason(&verdict(&r, &c, 1000, &cr)), "already used");
    }

    /// A memory set that says it buckets its records by caller, as the Redis set does on a
    /// cluster; it records the keys it was given.
    struct Bucketed {
        set: MemorySpentSet,
        keys: parking_lot::Mutex<Vec<[u8; 32]>>,
    }

    impl SpentSet for Bucketed {
        fn insert(
            &self,
            key: [u8; 32],
            expires_at: u64,
            now: u64,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            self.keys.lock().push(key);
            self.set.insert(key, expires_at, now)
        }
        fn insert_issued(
            &self,
            key: [u8; 32],
            issued_at: u64,
            expires_at: u64,
            now: u64,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            self.keys.lock().push(key);
            self.set.insert_issued(key, issued_at, expires_at, now)
        }
        fn caller_buckets(&self) -> bool {
            true
        }
    }

    #[test]
    fn on_a_bucketed_set_the_nonce_and_the_record_are_in_the_callers_bucket() {
        let set = Arc::new(Bucketed {
            set: MemorySpentSet::with_epoch_start(0),
            keys: parking_lot::Mutex::new(Vec::new()),
        });
        let r = rail_with(PowConfig::default(), set.clone());
        let c = call("echo", 1);
        let bucket = turnpike_store::cluster_bucket("anon:127.0.0.1");
        let (_, t) = challenge_token(&r, &c, 1000);
        assert_eq!(
            t.nonce()[0],
            bucket,
            "the nonce begins with the caller's bucket"
        );
        let (_, t2) = challenge_token(&r, &c, 1000);
        assert_eq!(t2.nonce()[0], bucket);
        assert_ne!(t.nonce()[1..], t2.nonce()[1..], "the rest stays random");
        let cr = cred(&t.encode(), brute(&t));
        assert!(matches!(verdict(&r, &c, 1000, &cr), Verdict::Pass(_)));
        let key = set.keys.lock()[0];
        assert_eq!(key[0], bucket, "recorded in the caller's bucket");
        assert_eq!(key[1..], t.tag()[..31]);
        // The same solution from another address (the challenge is bound to the call, not to
        // the address): the same record, so it is refused.
        let mut other = call("echo", 1);
        other.peer = Some("10.9.8.7".parse().unwrap());
        assert_eq!(reason(&verdict(&r, &other, 1000, &cr)), "already used");
        assert_eq!(
            set.keys.lock()[1],
            key,
            "the record is the credential's alone"
        );
        // A caller known before any credential is bucketed by its identity.
        let mut known = call("echo", 2);
        known.caller = Some(Identity::L402 {
            token_id: "ab".repeat(32),
        });
        let (_, t) = challenge_token(&r, &known, 1000);
        let want = turnpike_store::cluster_bucket(&format!("l402:{}", "ab".repeat(32)));
        assert_eq!(t.nonce()[0], want);
        // An unbucketed set keys by the tag, nonces stay random.
        let plain = rail();
        let (_, t) = challenge_token(&plain, &c, 1000);
        let cr = cred(&t.encode(), brute(&t));
        let Verdict::Pass(g) = verdict(&plain, &c, 1000, &cr) else {
            panic!("passes")
        };
        assert_eq!(spent_tag(&g), Some(t.tag()));
    }

    #[test]
    fn challenge_format() {
        let r = rail();
        let c = call("echo", 1);
        let (ch, t) = challenge_token(&r, &c, 1000);
        assert_eq!(ch.rail, RAIL);
        assert_eq!(t.effort(), 1000);
        assert_eq!(t.subpuzzles(), 4);
        assert_eq!(t.issued_at(), NOW);
        assert_eq!(t.expires_at(), NOW + 300);
        assert_eq!(t.key_id(), 2, "the last key is current");
        assert_eq!(t.scope(), c.scope_digest());
        let tok = t.encode();
        assert_eq!(tok.len(), TOKEN_STR_LEN);
        let want = format!(
            "PoW challenge=\"{tok}\", algorithm=\"sha256\", effort=\"1000\", subpuzzles=\"4\", \
             target=\"{:016x}\", expires=\"{}\", expected_seconds=\"0.000125\"",
            u64::MAX / 250,
            NOW + 300
        );
        assert_eq!(ch.www_authenticate, want);
        let d = &ch.details;
        assert_eq!(d["rail"], "pow");
        assert_eq!(d["scheme"], "PoW");
        assert_eq!(d["challenge"], tok.as_str());
        assert_eq!(d["algorithm"], "sha256");
        assert_eq!(d["effort"], 1000);
        assert_eq!(d["subpuzzles"], 4);
        assert_eq!(d["target"], format!("{:016x}", u64::MAX / 250));
        assert_eq!(d["expires"], NOW + 300);
        assert_eq!(d["expected_seconds"], 0.000125);
        assert_eq!(d["www_authenticate"], want.as_str());
        // The core's credential parser reads what a client sends back.
        let back = parse_pow_params(&format!("challenge=\"{tok}\", solution=\"1,2,3,4\"")).unwrap();
        assert_eq!(back.challenge, tok);
        // Two challenges for the same call differ (random nonce).
        let (_, t2) = challenge_token(&r, &c, 1000);
        assert_ne!(t.tag(), t2.tag());
        // k never exceeds the effort.
        let (_, t3) = challenge_token(&r, &c, 2);
        assert_eq!(t3.subpuzzles(), 2);
        // Other offers get no challenge from this rail.
        assert!(
            block_on(r.challenge(&c, &Offer::new(RailId::new("oauth"), Default::default())))
                .is_none()
        );
    }

    #[test]
    fn valid_solution_passes_once() {
        let r = rail();
        let mut c = call("echo", 1);
        c.caller = Some(Identity::anonymous("10.0.0.1".parse().unwrap()));
        let (_, t) = challenge_token(&r, &c, 2000);
        let sol = brute(&t);
        let cr = cred(&t.encode(), sol);
        match verdict(&r, &c, 2000, &cr) {
            Verdict::Pass(g) => {
                assert_eq!(g.rail, RAIL);
                assert_eq!(g.identity, c.caller);
                assert!(spent_tag(&g).is_some(), "the receipt names the solution");
            }
            v => panic!("{v:?}"),
        }
        let v = verdict(&r, &c, 2000, &cr);
        assert!(matches!(v, Verdict::Stale(_)), "{v:?}");
        assert_eq!(reason(&v), "already used");
    }

    #[test]
    fn a_released_solution_passes_once_more() {
        let r = rail();
        let c = call("echo", 1);
        let (_, t) = challenge_token(&r, &c, 2000);
        let cr = cred(&t.encode(), brute(&t));
        let Verdict::Pass(g) = verdict(&r, &c, 2000, &cr) else {
            panic!("first use passes")
        };
        assert_eq!(reason(&verdict(&r, &c, 2000, &cr)), "already used");
        block_on(r.release(&g));
        let Verdict::Pass(g2) = verdict(&r, &c, 2000, &cr) else {
            panic!("released: passes again")
        };
        assert_eq!(g2, g);
        assert_eq!(reason(&verdict(&r, &c, 2000, &cr)), "already used");
        // A grant of another rail, or a receipt that names nothing, releases nothing.
        let mut other = g2.clone();
        other.rail = RailId::new("l402");
        block_on(r.release(&other));
        other = g2.clone();
        other.receipt = Some("pow-spent:zz".into());
        block_on(r.release(&other));
        assert_eq!(reason(&verdict(&r, &c, 2000, &cr)), "already used");
    }

    #[test]
    fn spent_receipts_name_the_tag() {
        let tag: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let r = spent_receipt(&tag);
        assert_eq!(r, format!("{SPENT_RECEIPT}{}", hex::encode(tag)));
        let g = Grant {
            rail: RAIL,
            identity: None,
            receipt: Some(r),
            about: None,
        };
        assert_eq!(spent_tag(&g), Some(tag));
    }

    #[test]
    fn bound_to_the_call() {
        let r = rail();
        let c = call("echo", 1);
        let (_, t) = challenge_token(&r, &c, 500);
        let cr = cred(&t.encode(), brute(&t));
        for other in [
            call("echo", 2),
            call("add", 1),
            CallFacts {
                resource: "/other".into(),
                ..call("echo", 1)
            },
            CallFacts {
                caller: Some(Identity::L402 {
                    token_id: "ab".into(),
                }),
                ..call("echo", 1)
            },
        ] {
            let v = verdict(&r, &other, 500, &cr);
            assert!(matches!(v, Verdict::Stale(_)), "{v:?}");
            assert_eq!(reason(&v), "bound to another call");
        }
        // Refusals elsewhere did not spend it.
        assert!(matches!(verdict(&r, &c, 500, &cr), Verdict::Pass(_)));
    }

    #[test]
    fn expiry_and_clock_skew() {
        let r = rail();
        let c = call("echo", 1);
        let (_, t) = challenge_token(&r, &c, 100);
        let cr = cred(&t.encode(), brute(&t));
        let at = |now| CallFacts { now, ..c.clone() };
        let v = verdict(&r, &at(NOW + 300), 100, &cr);
        assert_eq!(
            (matches!(v, Verdict::Stale(_)), reason(&v).as_str()),
            (true, "expired")
        );
        let v = verdict(&r, &at(u64::MAX), 100, &cr);
        assert_eq!(reason(&v), "expired");
        // Issued more than 60 s in the future of the verifier's clock: forged or broken clock.
        let v = verdict(&r, &at(NOW - 61), 100, &cr);
        assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");
        assert_eq!(reason(&v), "challenge issued in the future");
        // Within the skew it passes.
        assert!(matches!(
            verdict(&r, &at(NOW - 60), 100, &cr),
            Verdict::Pass(_)
        ));
    }

    #[test]
    fn effort_below_the_price_is_stale() {
        let r = rail();
        let c = call("echo", 1);
        let (_, t) = challenge_token(&r, &c, 100);
        let cr = cred(&t.encode(), brute(&t));
        let v = verdict(&r, &c, 101, &cr);
        assert!(matches!(v, Verdict::Stale(_)), "{v:?}");
        assert_eq!(reason(&v), "effort below this call's price");
        // A cheaper price accepts a dearer token.
        assert!(matches!(verdict(&r, &c, 50, &cr), Verdict::Pass(_)));
    }

    #[test]
    fn wrong_solutions_are_invalid() {
        let r = rail();
        let c = call("echo", 1);
        let (_, t) = challenge_token(&r, &c, 20_000);
        let tok = t.encode();
        let good = brute(&t);
        let mut cases: Vec<Vec<u64>> = vec![
            vec![],
            good[..3].to_vec(),
            [good.clone(), vec![0]].concat(),
            vec![0; 1_000_000],
            good.iter().rev().copied().collect(),
        ];
        for j in 0..4 {
            let mut bad = good.clone();
            // The next nonce that fails this sub-puzzle.
            bad[j] = (good[j] + 1..)
                .find(|&n| !crate::puzzle::check_nonce(t.raw(), j as u8, n, t.target()))
                .unwrap();
            cases.push(bad);
        }
        for sol in cases {
            if sol == good {
                continue;
            }
            let v = verdict(&r, &c, 20_000, &cred(&tok, sol.clone()));
            assert!(
                matches!(v, Verdict::Invalid(_)),
                "{:?}: {v:?}",
                &sol[..sol.len().min(5)]
            );
            assert_eq!(reason(&v), "wrong solution");
        }
        assert!(matches!(
            verdict(&r, &c, 20_000, &cred(&tok, good)),
            Verdict::Pass(_)
        ));
    }

    #[test]
    fn tampering_anywhere_is_invalid() {
        let r = rail();
        let c = call("echo", 1);
        let (_, t) = challenge_token(&r, &c, 64);
        let sol = brute(&t);
        for at in 0..TOKEN_LEN {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut raw = *t.raw();
                raw[at] ^= flip;
                let s =
                    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
                let v = verdict(&r, &c, 64, &cred(&s, sol.clone()));
                assert!(
                    matches!(v, Verdict::Invalid(_)),
                    "byte {at} ^ {flip:#x}: {v:?}"
                );
            }
        }
        // Character-level tampering of the string too.
        let s = t.encode();
        for at in 0..s.len() {
            let mut b = s.clone().into_bytes();
            b[at] = if b[at] == b'A' { b'B' } else { b'A' };
            let v = verdict(
                &r,
                &c,
                64,
                &cred(std::str::from_utf8(&b).unwrap(), sol.clone()),
            );
            assert!(matches!(v, Verdict::Invalid(_)), "char {at}: {v:?}");
        }
        // The untouched token still passes.
        assert!(matches!(
            verdict(&r, &c, 64, &cred(&s, sol)),
            Verdict::Pass(_)
        ));
    }

    #[test]
    fn unknown_key_and_foreign_gateway() {
        let r = rail();
        let c = call("echo", 1);
        let other = PowRail::new(
            PowConfig::default(),
            KeyRing::from_secrets(vec![(2, [9; 32])]).unwrap(),
            Arc::new(MemorySpentSet::with_epoch_start(0)),
        );
        let (_, t) = challenge_token(&other, &c, 64);
        let cr = cred(&t.encode(), brute(&t));
        let v = verdict(&r, &c, 64, &cr);
        assert_eq!(reason(&v), "challenge was not issued here");
        assert!(matches!(v, Verdict::Invalid(_)));
        let stranger = PowRail::new(
            PowConfig::default(),
            KeyRing::from_secrets(vec![(77, [1; 32])]).unwrap(),
            Arc::new(MemorySpentSet::with_epoch_start(0)),
        );
        let (_, t) = challenge_token(&stranger, &c, 64);
        let v = verdict(&r, &c, 64, &cred(&t.encode(), brute(&t)));
        assert!(matches!(v, Verdict::Invalid(_)));
        assert_eq!(reason(&v), "challenge was not issued here (unknown key)");
        // Challenges tagged by a retired (non-current) key still verify.
        let old = PowRail::new(
            PowConfig::default(),
            KeyRing::from_secrets(vec![(1, [1; 32])]).unwrap(),
            Arc::new(MemorySpentSet::with_epoch_start(0)),
        );
        let (_, t) = challenge_token(&old, &c, 64);
        assert!(matches!(
            verdict(&r, &c, 64, &cred(&t.encode(), brute(&t))),
            Verdict::Pass(_)
        ));
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, RngCore};
        let r = rail();
        let c = call("echo", 1);
        let (_, t) = challenge_token(&r, &c, 64);
        let good = t.encode();
        let mut rng = rand::rng();
        let mut inputs: Vec<String> = vec![
            String::new(),
            "=".repeat(148),
            format!("{good}="),
            format!("{good}A"),
            good[..147].to_string(),
            good.replace('-', "+").replace('_', "/"),
            "\u{0}".repeat(148),
            "é".repeat(74),
            "A".repeat(1 << 20),
        ];
        for _ in 0..2000 {
            let mut raw = [0u8; TOKEN_LEN];
            rng.fill_bytes(&mut raw);
            raw[0] = 1;
            raw[1] = rng.random_range(0..4);
            inputs.push(base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                raw,
            ));
        }
        let sols: Vec<Vec<u64>> = vec![
            vec![],
            vec![u64::MAX; 4],
            vec![0; 64],
            vec![u64::MAX; 1_000_000],
            (0..4).map(|_| rng.random()).collect(),
        ];
        for s in &inputs {
            for sol in &sols {
                let v = verdict(&r, &c, 64, &cred(s, sol.clone()));
                assert!(!matches!(v, Verdict::Pass(_)), "{v:?}");
            }
        }
        // Huge and zero prices.
        let sol = brute(&t);
        let v = verdict(&r, &c, u64::MAX, &cred(&good, sol.clone()));
        assert!(matches!(v, Verdict::Stale(_)));
        assert!(matches!(
            verdict(&r, &c, 0, &cred(&good, sol)),
            Verdict::Pass(_)
        ));
        // A credential of another rail, and an offer of another rail.
        let bearer = Credential::new(RailId::new("oauth"), String::from("x"));
        assert!(matches!(verdict(&r, &c, 1, &bearer), Verdict::Invalid(_)));
        let v = block_on(r.verify(
            &c,
            &Offer::new(RailId::new("oauth"), Default::default()),
            &cred(&good, vec![]),
        ));
        assert!(matches!(v, Verdict::Stale(_)));
        // Minting with absurd efforts does not panic either.
        let _ = r.mint(&c, u64::MAX);
        let _ = r.mint(&c, 0);
        assert!(block_on(r.challenge(&c, &offer(u64::MAX))).is_none());
    }

    struct DownStore;
    impl SpentSet for DownStore {
        fn insert(&self, _: [u8; 32], _: u64, _: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
            Box::pin(async { Err(StoreError::Unavailable("down".into())) })
        }
    }

    #[test]
    fn store_errors_fail_closed() {
        let r = rail_with(PowConfig::default(), Arc::new(DownStore));
        let c = call("echo", 1);
        let (_, t) = challenge_token(&r, &c, 64);
        let v = verdict(&r, &c, 64, &cred(&t.encode(), brute(&t)));
        assert!(matches!(v, Verdict::Unavailable(_)), "{v:?}");
        // Forged credentials are refused before the store is asked.
        let v = verdict(&r, &c, 64, &cred(&t.encode(), vec![]));
        assert!(matches!(v, Verdict::Invalid(_)));
    }

    #[test]
    fn only_verified_solutions_raise_effort_and_the_ceiling_holds_it() {
        let clock = Arc::new(ManualClock::new(10_000));
        let cfg = PowConfig {
            load: crate::LoadConfig {
                calm_rps: 10,
                max_multiplier: 64,
                ceiling: 4_000,
                raise_interval_secs: 1,
                lower_interval_secs: 1,
            },
            ..PowConfig::default()
        };
        let r = PowRail::with_clock(
            cfg,
            KeyRing::from_secrets(vec![(1, [1; 32])]).unwrap(),
            Arc::new(MemorySpentSet::with_epoch_start(0)),
            clock.clone(),
        );
        let c = call("echo", 1);
        assert_eq!(r.quote(1000).unwrap().effort, 1000);
        // Three seconds of challenges (and of refused credentials) at a hundred times calm:
        // nothing moves.
        for _ in 0..3 {
            for _ in 0..100 {
                let (_, t) = challenge_token(&r, &c, 1000);
                let v = verdict(&r, &c, 1000, &cred(&t.encode(), vec![0; 4]));
                assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");
                clock.advance(10);
            }
        }
        assert_eq!(
            r.current_multiplier(),
            1,
            "bare requests do not move the level"
        );
        assert_eq!(r.quote(1000).unwrap().effort, 1000);
        // Verified solutions at five times calm: the level doubles once a second.
        let mut efforts = Vec::new();
        for _ in 0..4 {
            for _ in 0..50 {
                let (_, t) = challenge_token(&r, &c, 10);
                let v = verdict(&r, &c, 10, &cred(&t.encode(), brute(&t)));
                assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
                clock.advance(20);
            }
            efforts.push(r.quote(1000).map(|q| q.effort));
        }
        assert_eq!(r.current_multiplier(), 16);
        // Held at the ceiling, never withdrawn by the load.
        assert_eq!(
            efforts,
            vec![Some(2000), Some(4000), Some(4000), Some(4000)]
        );
        let (_, t) = challenge_token(&r, &c, 1000);
        assert_eq!(
            t.effort(),
            4000,
            "a loaded challenge is held at the ceiling"
        );
        // Only a base price above the ceiling withdraws proof-of-work.
        assert!(block_on(r.challenge(&c, &offer(4001))).is_none());
        assert!(r.quote(4001).is_none());
        // A calm minute later effort is back to base.
        clock.advance(60_000);
        assert_eq!(r.current_multiplier(), 1);
        let (_, t) = challenge_token(&r, &c, 1000);
        assert_eq!(t.effort(), 1000);
        assert_eq!(r.quote(1000).unwrap().expected_seconds, 0.000125);
    }

    #[test]
    fn rotates_persisted_keys_while_running() {
        let dir = std::env::temp_dir().join(format!(
            "turnpike-pow-rail-rotate-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let keys = KeyRing::load_or_generate_at(&dir, 100, 360, NOW).unwrap();
        let r = rail_with_keys(keys);
        let c = call("echo", 1);
        let (_, t1) = challenge_token(&r, &c, 16);
        assert_eq!(t1.key_id(), 1);
        let later = CallFacts {
            now: NOW + 100,
            ..c.clone()
        };
        let (_, t2) = challenge_token(&r, &later, 16);
        assert_eq!(t2.key_id(), 2);
        assert_eq!(r.key_ids(), vec![1, 2]);
        // The challenge from before the rotation still verifies.
        assert!(matches!(
            verdict(&r, &later, 16, &cred(&t1.encode(), brute(&t1))),
            Verdict::Pass(_)
        ));
        let reloaded = KeyRing::load_or_generate_at(&dir, 100, 360, NOW + 101).unwrap();
        assert_eq!(reloaded.ids(), vec![1, 2]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn rail_with_keys(keys: KeyRing) -> PowRail {
        PowRail::with_clock(
            PowConfig::default(),
            keys,
            Arc::new(MemorySpentSet::with_epoch_start(0)),
            Arc::new(ManualClock::new(0)),
        )
    }
}
