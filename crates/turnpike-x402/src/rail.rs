//! [`X402Rail`]: x402's `exact` scheme on an EVM chain (EIP-3009) as a turnpike rail.
//!
//! An offer for a call priced `x402 = { amount = "N" }` is one `PaymentRequirements` (scheme
//! `exact`, the configured network, asset, `payTo`, `amount` N, `maxTimeoutSeconds`, and in
//! `extra` the token's EIP-712 `name` and `version` and the gateway's binding
//! `turnpikeBinding = "<iat>.<exp>.<mac>"`: HMAC-SHA256 under `data_dir/x402.key` of the call's
//! scope digest (tool, arguments, resource), the network, asset, `payTo`, the amount and the
//! two times). Nothing is stored.
//!
//! A payment (`PAYMENT-SIGNATURE`, or `_meta["x402/payment"]`) is checked offline first
//! ([`X402Rail::check`]): version 2, scheme, network, asset, `payTo` and amount equal to the
//! offer's, the binding recomputed for *this* call and compared in constant time and not
//! expired, the authorization's `to` and `value` equal to `payTo` and the price, its validity
//! window open now (and not longer than the offer allows), and the EIP-712 signature of
//! `TransferWithAuthorization` under the token's domain recovering to `from`. The client's
//! signature does not cover the binding (it signs the authorization only); the binding ties the
//! *offer* to one call, and the authorization's nonce, spent once, ties the money to one
//! payment: the nonce `(chainId, asset, from, nonce)` goes into the `x402` spent set (memory or
//! Redis, so two gateways on one Redis take a payment once) before anything else happens, and
//! the token refuses a second `transferWithAuthorization` with it. A payment made for another
//! call fails the binding; a payment presented twice fails the spent set.
//!
//! Then the chain (`[x402] rpc_url`): the payer's balance covers the value and the nonce is
//! unused on the token (`authorizationState`). Then the payment is settled **before the call is
//! forwarded**: by the gateway's own key (an EIP-155 transaction calling
//! `transferWithAuthorization`, sent and waited for until its receipt says status 1), or by a
//! facilitator (`POST {facilitator_url}/settle`). Settling first means the upstream never runs
//! for money that did not arrive (an authorization can be front-run, or the payer's balance
//! moved, between a check and a later settlement); its cost is that a call the upstream then
//! fails has still been paid for. A settlement that fails is counted
//! (`turnpike_x402_settlements_total{outcome}`) and logged, never silent; when nothing can have
//! moved (the transfer reverted or was never sent) the nonce is released from the spent set, so
//! the payer may present the same authorization again. Every settlement attempted is a line of
//! the spend log ([`crate::spend`]), whose newest lines the meter gives the admin summary.
//!
//! Payments checked are bounded before anything is recovered or asked ([`X402Config`]
//! `checks_per_minute_per_caller`, `checks_per_minute`): past a caller's own bound the call is
//! answered 429, past all callers' 503, each with `Retry-After` (the bound rail's own answer).
//! In band, the offer is x402's MCP transport ([`in_band_result`]): a tool result whose
//! `structuredContent` is the `PaymentRequired`, or the `org.x402/payment` extension's
//! `payment_required` result for a 2026-07-28 client that advertises it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};
use turnpike_core::credential::CredentialParseError;
use turnpike_core::mac::{hmac_sha256, Mac};
use turnpike_core::meter::write_series;
use turnpike_core::plugin::Parsed;
use turnpike_core::{
    BoundRail, BoxFuture, CallFacts, Challenge, Credential, CredentialReader, EdgeRequest, Grant,
    InBandCall, InBandResult, Offer, PassNotes, Rail, RailAnswer, RailId, RailMeter, RailPlugin,
    Refusal, Verdict,
};
use turnpike_store::SpentSet;
use zeroize::Zeroizing;

use crate::chain::Node;
use crate::evm::{self, Address, Authorization};
use crate::spend::{Settlements, SpendLog};
pub use crate::token::{
    chain_id_of, parse_key, Settler, X402Config, CHECKS, SETTLE_MARGIN_SECS, SKEW_SECS,
};
use crate::token::{ChainState, Held, Paying, SettleError, Token};
use crate::wire::{
    self, PaymentPayload, PaymentRequired, PaymentRequirements, Resource, SettlementResponse,
    BINDING_KEY, META_PAYMENT, SCHEME, X402_VERSION,
};
use crate::RAIL;

/// The file under the data directory that holds the binding key (64 hex digits).
pub const KEY_FILE: &str = "x402.key";

/// What a payment that passed the offline checks pays with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The spent set's key of the authorization's nonce.
    pub spent_key: [u8; 32],
    /// When the offer was made (Unix seconds).
    pub issued_at: u64,
    /// Until when the authorization can be settled.
    pub valid_before: u64,
}

/// What checking and settling one payment came to.
struct Attempt {
    verdict: Verdict,
    /// The settlement, on a pass.
    settled: Option<SettlementResponse>,
    /// The bound on payments checked that held it back, and for how long.
    held: Option<Held>,
}

impl Attempt {
    fn refused(verdict: Verdict) -> Self {
        Attempt {
            verdict,
            settled: None,
            held: None,
        }
    }
}

/// Settlement counts, by outcome, and the spend log.
#[derive(Debug, Default)]
pub struct X402Meter {
    settlements: Settlements,
    offers: AtomicU64,
    /// Every settlement attempted ([`crate::spend`]), the token's.
    log: Arc<SpendLog>,
    /// The meter of a rail that is off (its series at zero, no summary).
    off: bool,
}

impl X402Meter {
    /// A meter summing up settlements from `log`.
    pub fn with_log(log: Arc<SpendLog>) -> Self {
        X402Meter {
            log,
            ..X402Meter::default()
        }
    }

    /// The meter of a rail that is off: its series at zero, nothing in the admin summary.
    pub fn off() -> Self {
        X402Meter {
            off: true,
            ..X402Meter::default()
        }
    }

    /// The spend log (the token's).
    pub fn log(&self) -> &SpendLog {
        &self.log
    }
}

impl RailMeter for X402Meter {
    fn challenge_issued(&self, _challenge: &Challenge) {
        self.offers.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String) {
        write_series(
            out,
            "turnpike_x402_offers_total",
            "counter",
            "x402 payment requirements offered (one per challenge offering x402).",
            self.offers.load(Relaxed),
        );
        self.settlements.render(
            out,
            "turnpike_x402_settlements_total",
            "x402 settlements by outcome: settled, refused (the transfer reverted or would), failed (node or facilitator unreachable, or the outcome unknown).",
        );
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        let (settled, _, failed) = self.settlements.counts();
        vec![("x402_settled", settled), ("x402_settle_failures", failed)]
    }

    /// `x402`: offers made, settlements by outcome, and the newest settlements of the spend
    /// log (newest first).
    fn summary(&self) -> Option<(&'static str, Value)> {
        if self.off {
            return None;
        }
        let (settled, refused, failed) = self.settlements.counts();
        Some((
            RAIL.as_str(),
            serde_json::json!({
                "offers": self.offers.load(Relaxed),
                "settled": settled,
                "refused": refused,
                "failed": failed,
                "payments": self.log.recent(),
            }),
        ))
    }
}

/// The rail. See the module docs.
pub struct X402Rail {
    cfg: X402Config,
    asset: Address,
    pay_to: Address,
    key: Zeroizing<[u8; 32]>,
    resource_url: String,
    spent: Arc<dyn SpentSet>,
    /// The chain, the token, the bounds on payments checked and the settlement, shared with
    /// the other rails that take payments in the token.
    token: Arc<Token>,
    meter: Arc<X402Meter>,
}

fn stale(reason: &str) -> Verdict {
    Verdict::Stale(Refusal::new(RAIL, reason))
}

fn unavailable(reason: &str) -> Verdict {
    Verdict::Unavailable(Refusal::new(RAIL, reason))
}

/// The grant's receipt: `x402:<transaction>`.
const RECEIPT_PREFIX: &str = "x402:";

impl X402Rail {
    /// A rail over `cfg` (already checked: see [`crate::conf`]), binding offers with `key`,
    /// nonces spent in `spent`, asking `node`, settling with `settler`.
    pub fn new(
        cfg: X402Config,
        key: [u8; 32],
        resource_url: String,
        spent: Arc<dyn SpentSet>,
        node: Node,
        settler: Settler,
    ) -> Result<Self, String> {
        let token = Arc::new(Token::new(&cfg, node, settler)?);
        Ok(X402Rail::with_token(cfg, key, resource_url, spent, token))
    }

    /// A rail over `cfg` taking payments in `token` (built from the same `cfg`).
    pub fn with_token(
        cfg: X402Config,
        key: [u8; 32],
        resource_url: String,
        spent: Arc<dyn SpentSet>,
        token: Arc<Token>,
    ) -> Self {
        let meter = Arc::new(X402Meter::with_log(token.spend_log().clone()));
        X402Rail {
            cfg,
            asset: token.asset(),
            pay_to: token.pay_to(),
            key: Zeroizing::new(key),
            resource_url,
            spent,
            token,
            meter,
        }
    }

    /// The binding key in `dir/x402.key` (64 hex digits), created with mode 0600 when missing.
    pub fn load_or_create_key(dir: &Path) -> std::io::Result<[u8; 32]> {
        match load_key(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_key(dir),
            r => r,
        }
    }

    /// The settling account, when the gateway settles itself.
    pub fn settler_address(&self) -> Option<Address> {
        self.token.settler_address()
    }

    /// The binding of an offer for `call`: HMAC-SHA256 over the call's scope digest, the
    /// network, asset, `payTo`, the amount, and when the offer was made and expires.
    pub fn binding(&self, scope: &[u8; 32], amount: &str, iat: u64, exp: u64) -> String {
        let mut mac = hmac_sha256(&self.key[..]);
        mac.update(b"turnpike-x402-binding-v1");
        for part in [
            hex::encode(scope).as_bytes(),
            self.cfg.network.as_bytes(),
            hex::encode(self.asset).as_bytes(),
            hex::encode(self.pay_to).as_bytes(),
            amount.as_bytes(),
            iat.to_string().as_bytes(),
            exp.to_string().as_bytes(),
        ] {
            mac.update(b"|");
            mac.update(part);
        }
        let tag = mac.finalize().into_bytes();
        use base64::Engine;
        format!(
            "{iat}.{exp}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The requirements offered for `call` at `amount` (pure: no I/O).
    pub fn requirements(&self, call: &CallFacts, amount: u128) -> PaymentRequirements {
        let amount = amount.to_string();
        let exp = call.now.saturating_add(self.cfg.max_timeout_secs);
        let mut extra = Map::new();
        extra.insert("name".into(), self.cfg.asset_name.clone().into());
        extra.insert("version".into(), self.cfg.asset_version.clone().into());
        extra.insert(
            BINDING_KEY.into(),
            self.binding(&call.scope_digest(), &amount, call.now, exp)
                .into(),
        );
        PaymentRequirements {
            scheme: SCHEME.into(),
            network: self.cfg.network.clone(),
            amount,
            asset: evm::checksum(&self.asset),
            pay_to: evm::checksum(&self.pay_to),
            max_timeout_seconds: i64::try_from(self.cfg.max_timeout_secs).unwrap_or(i64::MAX),
            extra,
        }
    }

    /// The `PaymentRequired` for `call` at `amount`.
    pub fn payment_required(&self, call: &CallFacts, amount: u128) -> PaymentRequired {
        let what = match &call.name {
            Some(n) => format!("{} {n}", call.method),
            None => call.method.clone(),
        };
        PaymentRequired {
            x402_version: X402_VERSION,
            error: Some("PAYMENT-SIGNATURE header is required".into()),
            resource: Resource {
                url: self.resource_url.clone(),
                description: what,
                mime_type: "application/json".into(),
            },
            accepts: vec![self.requirements(call, amount)],
        }
    }

    /// The offline checks of `p` for `call` under `offer` (see the module docs).
    pub fn check(
        &self,
        call: &CallFacts,
        offer: &Offer,
        p: &PaymentPayload,
    ) -> Result<Checked, Verdict> {
        let price = crate::amount(offer).ok_or_else(|| stale("this call has no x402 price"))?;
        if p.x402_version != X402_VERSION {
            return Err(stale("this gateway takes x402Version 2 only"));
        }
        let a = &p.accepted;
        if a.scheme != SCHEME {
            return Err(stale("this gateway takes the exact scheme only"));
        }
        if a.network != self.cfg.network {
            return Err(stale("the payment is for another network"));
        }
        if evm::parse_address(&a.asset) != Some(self.asset) {
            return Err(stale("the payment is in another asset"));
        }
        if evm::parse_address(&a.pay_to) != Some(self.pay_to) {
            return Err(stale("the payment's payTo is not this gateway's"));
        }
        if evm::parse_decimal(&a.amount) != Some(price) {
            return Err(stale("the payment's amount is not this call's price"));
        }
        let binding = a
            .extra
            .get(BINDING_KEY)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                stale("the payment does not carry this gateway's offer (extra.turnpikeBinding)")
            })?;
        let mut parts = binding.splitn(3, '.');
        let iat = parts.next().and_then(|s| s.parse::<u64>().ok());
        let exp = parts.next().and_then(|s| s.parse::<u64>().ok());
        let (Some(iat), Some(exp)) = (iat, exp) else {
            return Err(stale("the offer's binding is malformed"));
        };
        let want = self.binding(&call.scope_digest(), &a.amount, iat, exp);
        if !turnpike_core::ct_eq(want.as_bytes(), binding.as_bytes()) {
            return Err(stale(
                "the offer was made for another call (tool, arguments or resource), or not here",
            ));
        }
        if call.now > exp {
            return Err(stale("the offer has expired"));
        }
        let auth = &p.authorization;
        if auth.to != self.pay_to {
            return Err(stale("the authorization pays someone other than payTo"));
        }
        if auth.value != price {
            return Err(stale("the authorization's value is not this call's price"));
        }
        let now = u128::from(call.now);
        if auth.valid_after >= now + u128::from(SKEW_SECS) {
            return Err(stale("the authorization is not valid yet"));
        }
        if auth.valid_before <= now + u128::from(SETTLE_MARGIN_SECS) {
            return Err(stale("the authorization has expired"));
        }
        let longest = now + u128::from(self.cfg.max_timeout_secs) + u128::from(SKEW_SECS);
        if auth.valid_before > longest {
            return Err(stale(
                "the authorization stays valid longer than maxTimeoutSeconds allows",
            ));
        }
        if !self.token.signed_by_payer(auth, &p.signature) {
            return Err(stale(
                "the signature is not the payer's (EIP-712 TransferWithAuthorization)",
            ));
        }
        Ok(Checked {
            spent_key: self.spent_key(auth),
            issued_at: iat,
            valid_before: u64::try_from(auth.valid_before).unwrap_or(u64::MAX),
        })
    }

    /// The spent set's key of an authorization: SHA-256 over the chain, the token, the payer
    /// and the nonce.
    pub fn spent_key(&self, a: &Authorization) -> [u8; 32] {
        self.token.spent_key(a)
    }

    async fn release_nonce(&self, key: [u8; 32]) {
        if let Err(e) = self.spent.release(key, turnpike_core::unix_now()).await {
            tracing::warn!(error = %e, "x402: could not release an authorization's nonce");
        }
    }

    /// Checks, spends and settles one payment: the verdict, the settlement on a pass, and
    /// the bound that held it back, if one did.
    async fn check_and_settle(
        &self,
        call: &CallFacts,
        offer: &Offer,
        credential: &Credential,
    ) -> Attempt {
        let Some(p) = credential.payload::<PaymentPayload>() else {
            return Attempt::refused(Verdict::Invalid(Refusal::new(RAIL, "not an x402 payment")));
        };
        // Bounded before the signer is recovered or the node asked: per caller address (IPv6 by
        // its /64) and in all, with MPP's evm payments (one shared `Token`). Over the caller's
        // own bound: 429; over the whole's: 503; each with when to come back, nothing checked.
        if let Err(held) = self.token.admit_check(call) {
            return Attempt {
                verdict: unavailable(&held.reason("x402")),
                settled: None,
                held: Some(held),
            };
        }
        let (v, settled) = self.spend_and_settle(call, offer, p).await;
        Attempt {
            verdict: v,
            settled,
            held: None,
        }
    }

    /// [`X402Rail::check_and_settle`] past the bounds: the offline checks, the nonce spent,
    /// the chain asked, the payment settled and written to the spend log.
    async fn spend_and_settle(
        &self,
        call: &CallFacts,
        offer: &Offer,
        p: &PaymentPayload,
    ) -> (Verdict, Option<SettlementResponse>) {
        let checked = match self.check(call, offer, p) {
            Ok(c) => c,
            Err(v) => return (v, None),
        };
        match self
            .spent
            .insert_issued(
                checked.spent_key,
                checked.issued_at,
                checked.valid_before.saturating_add(SKEW_SECS),
                call.now,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return (stale("this authorization has already been used"), None),
            Err(e) => {
                tracing::warn!(error = %e, "x402: spent set unavailable");
                return (unavailable("the spent set cannot be reached"), None);
            }
        }
        let auth = &p.authorization;
        // The chain: the payer can pay, and the nonce is unused there.
        match self.token.state(auth).await {
            Ok(ChainState::Used) => {
                return (
                    stale("this authorization has already been used on chain"),
                    None,
                )
            }
            Ok(ChainState::Short) => {
                self.release_nonce(checked.spent_key).await;
                return (
                    stale("the payer's balance does not cover the payment"),
                    None,
                );
            }
            Ok(ChainState::Payable) => {}
            Err(e) => {
                tracing::warn!(error = %e, "x402: the chain cannot be asked");
                self.release_nonce(checked.spent_key).await;
                return (
                    unavailable("the payment cannot be checked on chain right now"),
                    None,
                );
            }
        }
        let payer = evm::checksum(&auth.from);
        let accepted = serde_json::to_value(&p.accepted).unwrap_or(Value::Null);
        let paying = Paying {
            call,
            rail: RAIL.as_str(),
            method: SCHEME,
        };
        match self
            .token
            .settle(&paying, auth, &p.signature, Some((&p.raw, &accepted)))
            .await
        {
            Ok(tx) => {
                self.meter.settlements.settled();
                tracing::info!(transaction = %tx, payer = %payer, value = %auth.value, tool = call.name.as_deref().unwrap_or(""), "x402: settled");
                let response = SettlementResponse {
                    success: true,
                    error_reason: None,
                    transaction: tx.clone(),
                    network: self.token.network().to_string(),
                    payer: Some(payer),
                };
                (
                    Verdict::Pass(Grant {
                        rail: RAIL,
                        identity: call.caller.clone(),
                        receipt: Some(format!("{RECEIPT_PREFIX}{tx}")),
                        about: None,
                    }),
                    Some(response),
                )
            }
            Err(SettleError::Refused(why)) => {
                self.meter.settlements.refused();
                tracing::warn!(reason = %why, payer = %payer, value = %auth.value, tool = call.name.as_deref().unwrap_or(""), "x402: settlement refused; the call is not forwarded");
                self.release_nonce(checked.spent_key).await;
                (
                    stale(&format!("the payment could not be settled: {why}")),
                    None,
                )
            }
            Err(SettleError::Down(why)) => {
                self.meter.settlements.failed();
                tracing::warn!(reason = %why, payer = %payer, value = %auth.value, tool = call.name.as_deref().unwrap_or(""), "x402: settlement failed; the call is not forwarded");
                self.release_nonce(checked.spent_key).await;
                (unavailable("the payment cannot be settled right now"), None)
            }
            Err(SettleError::Unknown(why)) => {
                self.meter.settlements.failed();
                tracing::error!(reason = %why, payer = %payer, value = %auth.value, tool = call.name.as_deref().unwrap_or(""), "x402: settlement outcome unknown; the authorization stays spent and the call is not forwarded");
                (
                    unavailable("the payment's settlement could not be confirmed"),
                    None,
                )
            }
        }
    }
}

fn load_key(dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not 64 hex digits", path.display()),
                )
            })?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            std::fs::create_dir_all(dir)?;
            turnpike_fs::create_private(&path, hex::encode(key).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The `PaymentRequired` of a challenge (its details without `rail`).
fn payment_required_of(c: &Challenge) -> Value {
    let mut d = c.details.clone();
    if let Some(o) = d.as_object_mut() {
        o.remove("rail");
    }
    d
}

impl Rail for X402Rail {
    fn kind(&self) -> RailId {
        RAIL
    }

    fn challenge<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        Box::pin(async move {
            let amount = crate::amount(offer).filter(|a| *a > 0)?;
            let pr = self.payment_required(call, amount);
            let mut details = serde_json::to_value(&pr).ok()?;
            details
                .as_object_mut()?
                .insert("rail".into(), Value::from(RAIL.as_str()));
            Some(Challenge {
                rail: RAIL,
                www_authenticate: String::new(),
                details,
            })
        })
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move { self.check_and_settle(call, offer, credential).await.verdict })
    }

    /// Settled before forwarding: nothing to release (the money has moved).
    fn needs_outcome(&self, _grant: &Grant) -> bool {
        false
    }

    /// A payment pays for its round.
    fn pays_for_round(&self, _grant: &Grant) -> bool {
        true
    }

    /// The offer with the chain, the token and who is paid.
    fn published_offer(&self, offer: &Offer) -> Option<Value> {
        let mut v = offer.published();
        if let Some(o) = v.as_object_mut() {
            o.insert("network".into(), self.cfg.network.clone().into());
            o.insert("asset".into(), evm::checksum(&self.asset).into());
            o.insert("payTo".into(), evm::checksum(&self.pay_to).into());
        }
        Some(v)
    }
}

impl RailPlugin for X402Rail {
    fn id(&self) -> RailId {
        RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        &X402Credentials
    }

    /// After L402 (whose clients read only the first `WWW-Authenticate` line; x402 has none),
    /// before MPP.
    fn challenge_order(&self) -> u8 {
        3
    }

    /// A payment that does not parse is answered 402 with a fresh offer, as x402 answers a
    /// failed payment.
    fn malformed_is_stale(&self) -> bool {
        true
    }

    /// `PAYMENT-REQUIRED`: base64 of the `PaymentRequired` JSON.
    fn challenge_headers(&self, challenge: &Challenge) -> Vec<(&'static str, String)> {
        let pr = payment_required_of(challenge);
        vec![(
            wire::REQUIRED_HEADER,
            wire::b64(&serde_json::to_vec(&pr).unwrap_or_default()),
        )]
    }

    fn in_band_text(&self, challenge: &Challenge, _first: bool) -> String {
        in_band_text(challenge)
    }

    /// `org.x402/payment`, in `server/discover`'s `capabilities.extensions`.
    fn mcp_extensions(&self) -> &'static [&'static str] {
        &[wire::MCP_EXTENSION]
    }

    /// x402's MCP transport: see [`in_band_result`].
    fn in_band_result(
        &self,
        call: &InBandCall<'_>,
        challenges: &[&Challenge],
        refusals: &[&Refusal],
    ) -> Option<InBandResult> {
        in_band_result(call, challenges, refusals)
    }

    fn bind(
        self: Arc<Self>,
        _req: &EdgeRequest<'_>,
        _offer: &Offer,
        credentials: &[Credential],
        _malformed: Option<&CredentialParseError>,
    ) -> Option<Box<dyn BoundRail>> {
        if !credentials.iter().any(|c| c.rail() == RAIL) {
            return None;
        }
        Some(Box::new(Bound(Arc::new(PaidView {
            rail: self,
            settled: Mutex::new(None),
            held: Mutex::new(None),
        }))))
    }

    fn meter(self: Arc<Self>) -> Option<Arc<dyn RailMeter>> {
        Some(self.meter.clone())
    }
}

/// What to do, in band: sign the authorization, retry with it in `_meta`.
pub fn in_band_text(challenge: &Challenge) -> String {
    let pr = payment_required_of(challenge);
    format!(
        "Pay (x402, exact scheme on {network}): sign an EIP-3009 TransferWithAuthorization of \
         {amount} atomic units of {asset} to {pay_to} with an x402 client, then retry this same \
         call with the same arguments and add params._meta[\"{META_PAYMENT}\"] = <the \
         PaymentPayload, with `accepted` the requirements below, unchanged> (over HTTP, the \
         header `PAYMENT-SIGNATURE: <base64 of that JSON>` works too). PaymentRequired: {pr} ",
        network = pr
            .pointer("/accepts/0/network")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        amount = pr
            .pointer("/accepts/0/amount")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        asset = pr
            .pointer("/accepts/0/asset")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        pay_to = pr
            .pointer("/accepts/0/payTo")
            .and_then(Value::as_str)
            .unwrap_or("?"),
    )
}

/// The `error` of an in-band `PaymentRequired`: why the payment presented was refused, else
/// where the payment goes.
fn in_band_error(refusals: &[&Refusal]) -> String {
    if refusals.is_empty() {
        return format!("params._meta[\"{META_PAYMENT}\"] is required");
    }
    refusals
        .iter()
        .map(|r| r.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The offer in band, as x402's MCP transport says: for a 2026-07-28 request whose client
/// advertised the `org.x402/payment` extension, a `tools/call`, `resources/read` or
/// `prompts/get` is answered `{"resultType": "payment_required", "paymentRequired":
/// <PaymentRequired>}`; otherwise a `tools/call` is answered a tool result with `isError: true`,
/// the `PaymentRequired` as `structuredContent` and its JSON text as `content[0].text`. Its
/// `error` is why a payment presented was refused, else that `_meta["x402/payment"]` is
/// required. Beside other rails' challenges, the `PaymentRequired`'s members go into the
/// shared result's `structuredContent`, where x402 clients look first.
pub fn in_band_result(
    call: &InBandCall<'_>,
    challenges: &[&Challenge],
    refusals: &[&Refusal],
) -> Option<InBandResult> {
    let mut pr = payment_required_of(challenges.first()?);
    pr.as_object_mut()?
        .insert("error".into(), Value::from(in_band_error(refusals)));
    let structured: Vec<(String, Value)> = pr
        .as_object()?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let result =
        if call.advertises(wire::MCP_EXTENSION) && wire::EXTENSION_METHODS.contains(&call.method) {
            serde_json::json!({
                "resultType": wire::RESULT_PAYMENT_REQUIRED,
                "paymentRequired": pr,
            })
        } else if call.method == "tools/call" {
            serde_json::json!({
                "isError": true,
                "structuredContent": pr,
                "content": [{"type": "text", "text": pr.to_string()}],
            })
        } else {
            return None;
        };
    Some(InBandResult { result, structured })
}

/// The rail seen by one request: verifies in its place and keeps the settlement, or the bound
/// that held the payment back.
struct PaidView {
    rail: Arc<X402Rail>,
    settled: Mutex<Option<SettlementResponse>>,
    held: Mutex<Option<Held>>,
}

impl Rail for PaidView {
    fn kind(&self) -> RailId {
        RAIL
    }

    fn challenge<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        self.rail.challenge(call, offer)
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let a = self.rail.check_and_settle(call, offer, credential).await;
            if a.settled.is_some() {
                *self.settled.lock() = a.settled;
            }
            if a.held.is_some() {
                *self.held.lock() = a.held;
            }
            a.verdict
        })
    }

    fn needs_outcome(&self, _grant: &Grant) -> bool {
        false
    }

    fn pays_for_round(&self, _grant: &Grant) -> bool {
        true
    }
}

struct Bound(Arc<PaidView>);

impl BoundRail for Bound {
    fn rail(&self) -> Arc<dyn Rail> {
        self.0.clone()
    }

    /// `PAYMENT-RESPONSE` on the paid response, and the settlement in
    /// `result._meta["x402/payment-response"]`.
    fn passed(&self) -> PassNotes {
        let mut notes = PassNotes::default();
        if let Some(r) = self.0.settled.lock().as_ref() {
            notes
                .success_headers
                .push((wire::RESPONSE_HEADER, r.header()));
            notes.result_meta.push((wire::META_RESPONSE, r.to_json()));
        }
        notes
    }

    /// A payment held back by a bound on payments checked (the token's, shared with MPP's
    /// `evm` method): past the caller's own, 429 (its own rate); past the whole's, 503; each
    /// with `Retry-After` ([`Held::answer`]).
    fn answer(&self, _offer: &Offer) -> Option<RailAnswer> {
        self.0.held.lock().map(|h| h.answer("x402"))
    }
}

/// How x402 payments are read: the `PAYMENT-SIGNATURE` header and
/// `params._meta["x402/payment"]`. The running rail reads through it, and it stands alone where
/// the rail is off (the payment is refused as for a call that does not accept x402, and the
/// header and key are stripped before forwarding).
pub struct X402Credentials;

fn malformed(e: wire::WireError) -> CredentialParseError {
    CredentialParseError::Malformed {
        scheme: "x402",
        reason: e.to_string(),
    }
}

impl RailPlugin for X402Credentials {
    fn id(&self) -> RailId {
        RAIL
    }

    /// The rail's series at zero where it is off.
    fn meter(self: Arc<Self>) -> Option<Arc<dyn RailMeter>> {
        Some(Arc::new(X402Meter::off()))
    }

    fn malformed_is_stale(&self) -> bool {
        true
    }

    fn reader(&self) -> &dyn CredentialReader {
        self
    }
}

impl CredentialReader for X402Credentials {
    fn credential_headers(&self) -> &'static [&'static str] {
        &[wire::SIGNATURE_HEADER]
    }

    fn parse_header(&self, name: &str, value: &str) -> Option<Parsed> {
        if name != wire::SIGNATURE_HEADER {
            return None;
        }
        Some(
            PaymentPayload::from_header(value)
                .map(|p| Credential::new(RAIL, p))
                .map_err(malformed),
        )
    }

    fn meta_keys(&self) -> &'static [&'static str] {
        &[META_PAYMENT]
    }

    fn parse_meta(&self, key: &str, value: &Value) -> Option<Parsed> {
        if key != META_PAYMENT {
            return None;
        }
        let text = value.to_string();
        if text.len() > wire::MAX_HEADER {
            return Some(Err(malformed(wire::WireError::TooLarge)));
        }
        Some(
            PaymentPayload::from_json(value.clone())
                .map(|p| Credential::new(RAIL, p))
                .map_err(malformed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payer;
    use k256::ecdsa::SigningKey;
    use sha2::Digest;
    use std::time::Duration;
    use turnpike_lightning::invoice_limit::Over;
    use turnpike_store::MemorySpentSet;

    pub(crate) fn config() -> X402Config {
        X402Config::offline_example()
    }

    fn rail(key: [u8; 32]) -> X402Rail {
        X402Rail::new(
            config(),
            key,
            "https://mcp.example.com/mcp".into(),
            Arc::new(MemorySpentSet::new()),
            Node::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap(),
            Settler::own(SigningKey::from_slice(&[3; 32]).unwrap()),
        )
        .unwrap()
    }

    fn call(name: &str, args: u8, now: u64) -> CallFacts {
        CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some(name.into()),
            args_hash: [args; 32],
            caller: None,
            peer: None,
            now,
        }
    }

    fn payment(req: &PaymentRequirements, valid_before: u64) -> PaymentPayload {
        let key = SigningKey::from_slice(&[0x11; 32]).unwrap();
        PaymentPayload::from_json(payer::pay(req, &key, [0x22; 32], 0, valid_before).unwrap())
            .unwrap()
    }

    fn reason(r: Result<Checked, Verdict>) -> String {
        match r {
            Err(Verdict::Stale(r)) => r.reason,
            other => panic!("{other:?}"),
        }
    }

    /// A flood of payments from one address is held back before any signer is recovered or the
    /// node asked (`CHECKS.per_caller` a minute), while another address is still checked.
    #[tokio::test]
    async fn payments_checked_are_bounded_per_address() {
        let r = rail([0x42; 32]);
        let now = 1_800_000_000;
        let mut c = call("echo", 1, now);
        let req = r.requirements(&c, 10_000);
        // Made for another price: refused offline, after the bound is taken.
        let p = Credential::new(RAIL, payment(&req, now + 60));
        let cheap = crate::offer(9_999);
        c.peer = Some("127.0.0.7".parse().unwrap());
        for _ in 0..CHECKS.per_caller {
            let a = r.check_and_settle(&c, &cheap, &p).await;
            assert!(matches!(a.verdict, Verdict::Stale(_)), "{:?}", a.verdict);
            assert!(a.held.is_none());
        }
        let a = r.check_and_settle(&c, &cheap, &p).await;
        match a.verdict {
            Verdict::Unavailable(r) => {
                assert!(r.reason.contains("from this address"), "{r:?}")
            }
            other => panic!("{other:?}"),
        }
        let Held { over, wait } = a.held.unwrap();
        assert_eq!(over, Over::Caller);
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        c.peer = Some("127.0.0.8".parse().unwrap());
        let a = r.check_and_settle(&c, &cheap, &p).await;
        assert!(matches!(a.verdict, Verdict::Stale(_)), "{:?}", a.verdict);
    }

    /// The configured bounds: past the caller's own (`checks_per_minute_per_caller`) the bound
    /// answer is 429, past the whole's (`checks_per_minute`) 503, each with `Retry-After`.
    #[tokio::test]
    async fn configured_bounds_answer_429_for_a_caller_and_503_for_all() {
        let mut cfg = config();
        cfg.checks_per_minute_per_caller = 2;
        cfg.checks_per_minute = 3;
        let r = Arc::new(
            X402Rail::new(
                cfg,
                [0x42; 32],
                "https://mcp.example.com/mcp".into(),
                Arc::new(MemorySpentSet::new()),
                Node::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap(),
                Settler::own(SigningKey::from_slice(&[3; 32]).unwrap()),
            )
            .unwrap(),
        );
        let now = 1_800_000_000;
        let mut c = call("echo", 1, now);
        let req = r.requirements(&c, 10_000);
        let p = Credential::new(RAIL, payment(&req, now + 60));
        let cheap = crate::offer(9_999);
        let req_edge = |peer: &str| {
            let mut c = call("echo", 1, now);
            c.peer = Some(peer.parse().unwrap());
            c
        };
        let answer = |c: &CallFacts| {
            let r = r.clone();
            let p = p.clone();
            let cheap = cheap.clone();
            let c = c.clone();
            async move {
                let view = PaidView {
                    rail: r,
                    settled: Mutex::new(None),
                    held: Mutex::new(None),
                };
                let _ = view.verify(&c, &cheap, &p).await;
                Bound(Arc::new(view)).answer(&cheap)
            }
        };
        c.peer = Some("10.0.0.1".parse().unwrap());
        assert!(answer(&c).await.is_none());
        assert!(answer(&c).await.is_none());
        let a = answer(&c).await.unwrap();
        assert_eq!(a.status, 429);
        assert_eq!(a.headers, [("retry-after", "30".to_string())]);
        assert_eq!(a.data, [("retry_after", Value::from(30u64))]);
        assert!(answer(&req_edge("10.0.0.2")).await.is_none());
        let a = answer(&req_edge("10.0.0.3")).await.unwrap();
        assert_eq!(a.status, 503);
        let secs: u64 = a.headers[0].1.parse().unwrap();
        assert!((1..=20).contains(&secs), "{secs}");
    }

    /// The MCP transport's forms: the tool result (`isError`, the `PaymentRequired` as
    /// `structuredContent` and as the JSON text of `content[0]`), the `payment_required` result
    /// of the `org.x402/payment` extension (2026-07-28, advertised), and the members given to a
    /// shared result; nothing for a method the transport does not cover.
    #[tokio::test]
    async fn the_mcp_transport_forms() {
        let r = rail([0x42; 32]);
        let c = call("dear", 1, 1_800_000_000);
        let ch = r.challenge(&c, &crate::offer(10_000)).await.unwrap();
        let none: [String; 0] = [];
        let tools = InBandCall {
            method: "tools/call",
            modern: false,
            extensions: &none,
        };
        let out = in_band_result(&tools, &[&ch], &[]).unwrap();
        let pr = &out.result["structuredContent"];
        assert_eq!(out.result["isError"], true);
        assert_eq!(pr["x402Version"], 2);
        assert_eq!(pr["error"], "params._meta[\"x402/payment\"] is required");
        assert_eq!(pr["accepts"], ch.details["accepts"]);
        assert!(pr.get("rail").is_none());
        let text = out.result["content"][0]["text"].as_str().unwrap();
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), *pr);
        assert_eq!(out.result["content"][0]["type"], "text");
        assert!(out.result.get("resultType").is_none());
        let keys: Vec<&str> = out.structured.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["accepts", "error", "resource", "x402Version"]);
        // A refusal is the error.
        let why = Refusal::new(RAIL, "this authorization has already been used");
        let out = in_band_result(&tools, &[&ch], &[&why]).unwrap();
        assert_eq!(
            out.result["structuredContent"]["error"],
            "this authorization has already been used"
        );
        // The extension, advertised on 2026-07-28: payment_required, for the three methods.
        let ext = [wire::MCP_EXTENSION.to_string()];
        for method in wire::EXTENSION_METHODS {
            let call = InBandCall {
                method,
                modern: true,
                extensions: &ext,
            };
            let out = in_band_result(&call, &[&ch], &[]).unwrap();
            assert_eq!(out.result["resultType"], "payment_required");
            assert_eq!(
                out.result["paymentRequired"]["accepts"],
                ch.details["accepts"]
            );
            assert!(out.result.get("isError").is_none());
        }
        // Advertised under an older revision, or not advertised: the tool result.
        for (modern, extensions) in [(false, &ext[..]), (true, &none[..])] {
            let call = InBandCall {
                method: "tools/call",
                modern,
                extensions,
            };
            let out = in_band_result(&call, &[&ch], &[]).unwrap();
            assert_eq!(out.result["isError"], true);
        }
        // Another method without the extension: no form of x402's own.
        let call = InBandCall {
            method: "resources/read",
            modern: true,
            extensions: &none,
        };
        assert!(in_band_result(&call, &[&ch], &[]).is_none());
    }

    #[test]
    fn a_payment_is_bound_to_its_call_terms_and_time() {
        let r = rail([0x42; 32]);
        let now = 1_800_000_000;
        let offer = crate::offer(10_000);
        let c = call("echo", 1, now);
        let req = r.requirements(&c, 10_000);
        let p = payment(&req, now + 60);
        let ok = r.check(&c, &offer, &p).unwrap();
        assert_eq!(ok.issued_at, now);
        assert_eq!(ok.valid_before, now + 60);
        // Another tool, other arguments, another price.
        assert!(reason(r.check(&call("add", 1, now), &offer, &p)).contains("another call"));
        assert!(reason(r.check(&call("echo", 2, now), &offer, &p)).contains("another call"));
        assert!(reason(r.check(&c, &crate::offer(10_001), &p)).contains("amount"));
        // Another gateway's key.
        assert!(reason(rail([0x43; 32]).check(&c, &offer, &p)).contains("another call"));
        // Late: the offer, then the authorization.
        assert!(reason(r.check(&call("echo", 1, now + 58), &offer, &p)).contains("expired"));
        assert!(reason(r.check(&call("echo", 1, now + 61), &offer, &p)).contains("expired"));
        // Valid for too long.
        let long = payment(&req, now + 60 + 61 + 60);
        assert!(reason(r.check(&c, &offer, &long)).contains("longer"));
        // Terms altered after signing: the echoed offer, then the authorization.
        let mut q = p.clone();
        q.accepted.pay_to = "0x0000000000000000000000000000000000000001".into();
        assert!(reason(r.check(&c, &offer, &q)).contains("payTo"));
        let mut q = p.clone();
        q.accepted.extra.insert(BINDING_KEY.into(), "1.2.x".into());
        assert!(reason(r.check(&c, &offer, &q)).contains("another call"));
        let mut q = p.clone();
        q.authorization.nonce = [0x23; 32];
        assert!(reason(r.check(&c, &offer, &q)).contains("signature"));
        let mut q = p.clone();
        q.authorization.from = [1; 20];
        assert!(reason(r.check(&c, &offer, &q)).contains("signature"));
        // The spent-set key names chain, token, payer and nonce.
        let mut q = p.clone();
        q.authorization.nonce = [0x23; 32];
        assert_ne!(r.spent_key(&q.authorization), ok.spent_key);
    }

    /// The worked example of docs/X402.md §8, byte for byte.
    #[test]
    fn worked_example_of_the_document() {
        let r = rail([0x42; 32]);
        let now = 1_800_000_000;
        let c = CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some("dear".into()),
            args_hash: sha2::Sha256::digest(br#"{"n":1}"#).into(),
            caller: None,
            peer: None,
            now,
        };
        let pr = r.payment_required(&c, 10_000);
        let json = serde_json::to_string(&pr).unwrap();
        let key = SigningKey::from_slice(&[0x11; 32]).unwrap();
        let pay = payer::pay(&pr.accepts[0], &key, [0x22; 32], 0, now + 60).unwrap();
        let p = PaymentPayload::from_json(pay.clone()).unwrap();
        let digest = p.authorization.digest_with(&r.token.separator());
        assert!(r.check(&c, &crate::offer(10_000), &p).is_ok());
        let out = [
            ("offer", json.clone()),
            ("header", pr.header()),
            ("separator", hex::encode(r.token.separator())),
            ("struct", hex::encode(p.authorization.struct_hash())),
            ("digest", hex::encode(digest)),
            ("payment", pay.to_string()),
            ("signature_header", wire::b64(pay.to_string().as_bytes())),
        ];
        for (k, v) in &out {
            println!("{k}: {v}");
        }
        let expected = include_str!("../../../docs/X402.md");
        for (k, v) in &out {
            assert!(
                expected.contains(v.as_str()),
                "docs/X402.md §8 lacks the {k}: {v}"
            );
        }
    }

    #[test]
    fn keys_and_networks() {
        assert_eq!(chain_id_of("eip155:8453"), Some(8453));
        for bad in ["eip155:", "eip155:0", "eip155:01", "solana:x", "eip155:-1"] {
            assert_eq!(chain_id_of(bad), None, "{bad}");
        }
        assert!(parse_key(&format!("0x{}\n", "11".repeat(32))).is_some());
        assert!(parse_key(&"11".repeat(31)).is_none());
        assert!(parse_key(&"00".repeat(32)).is_none());
    }
}
