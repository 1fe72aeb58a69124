//! [`MppRail`]: the `Payment` scheme's Lightning `charge` method as a turnpike rail.
//!
//! A challenge for a call priced `mpp = { sat = N }`:
//!
//! 1. the caller's invoice rate is checked (per caller and in all, as L402's);
//! 2. the Lightning backend creates an invoice for N sat, payable a little longer than the
//!    challenge lives;
//! 3. the challenge is written: `realm` from `[mpp]`, `method="lightning"`, `intent="charge"`,
//!    `request` the method's request (amount, currency, the invoice, its payment hash, its
//!    network), `expires` (now + `expiry_secs`, never later than the invoice), `opaque` the
//!    call's scope digest and the issue time, and `id` the HMAC-SHA256 of those seven slots
//!    under the rail's key. Nothing is stored.
//!
//! A credential is checked offline ([`MppRail::check`]): method and intent, realm, the id
//! recomputed and compared in constant time (so every field it covers is the gateway's own),
//! not expired, the scope equal to this call's (tool, arguments, resource), the amount at
//! least the price, and the preimage hashing to the payment hash. Then, with a custodial
//! backend, the invoice's settlement is confirmed with it, and the payment hash is recorded in
//! the `mpp` spent set until the challenge expires (memory, or Redis across instances): a
//! second use is refused. A call the upstream refused before serving it releases the payment
//! hash again.
//!
//! Every refusal is a fresh challenge (402), as the draft asks; a credential that does not
//! parse is refused before the rail sees it (401, as for every rail).
//!
//! The `evm` method (a price `mpp = { evm = "U" }`, `[mpp] evm`): the challenge carries no
//! invoice, only the request (amount, the `[x402]` token, chain and payee), under the same HMAC;
//! nothing is created or stored. A credential ([`MppRail::check_evm`]) passes the same
//! challenge checks, then its request's terms against the token's and the price, then the
//! EIP-3009 authorization: payee, value, the challenge's own nonce (keccak256 of id and realm),
//! its validity window, and the payer's EIP-712 signature. The payment is bounded per address
//! and in all before the signer is recovered, spent once in the `mpp` spent set, checked on
//! chain (balance, nonce) and settled before the call is forwarded (by the gateway's own key,
//! or by `[x402]`'s facilitator as the x402 `exact` payment it also is), all through
//! turnpike-evm's [`Token`]; the receipt's reference is the transaction.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use turnpike_core::conf::positive_u64;
use turnpike_core::credential::CredentialParseError;
use turnpike_core::plugin::Parsed;
use turnpike_core::{
    BoundRail, BoxFuture, CallFacts, Challenge, Credential, CredentialReader, EdgeRequest, Grant,
    InBandForm, Offer, PassNotes, Rail, RailAnswer, RailId, RailMeter, RailPlugin, Refusal,
    Verdict,
};
use turnpike_lightning::invoice_limit::{InvoiceLimiter, InvoiceRates};
use turnpike_lightning::{InvoiceState, LightningBackend};
use turnpike_store::SpentSet;
use zeroize::Zeroizing;

use turnpike_evm::spend::Settlements;
use turnpike_evm::token::{ChainState, Held, Paying, SettleError, Token};
use turnpike_evm::token::{SETTLE_MARGIN_SECS, SKEW_SECS};

use crate::charge::{self, ChargeRequest};
use crate::evm;
use crate::wire::{self, PaymentChallenge, PaymentCredential, PaymentReceipt, META_CREDENTIAL};
use crate::RAIL;

/// The file under the data directory that holds the challenge-binding key (64 hex digits).
pub const KEY_FILE: &str = "mpp.key";

/// Seconds an invoice outlives the challenge that carries it, so a payment made just before the
/// challenge expires still settles.
const INVOICE_SLACK_SECS: u64 = 60;

/// The rail's settings: the gateway's `[mpp]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MppConfig {
    /// The protection space named in every challenge (default: the host of the public URL).
    pub realm: Option<String>,
    /// How long a challenge can be paid and presented, in seconds.
    #[serde(deserialize_with = "positive_u64")]
    pub expiry_secs: u64,
    /// The invoice description: this text, a space, then the tool (or method) name.
    pub memo: String,
    /// Invoices a minute one caller (its identity, else its address) can be offered (0: no
    /// bound); over it the call gets no MPP challenge.
    pub invoices_per_minute_per_caller: u32,
    /// Invoices a minute this process offers in all (0: no bound).
    pub invoices_per_minute: u32,
    /// The `evm` charge method, on the chain, token and payee of `[x402]`: `evm = { decimals =
    /// 6 }` (absent: the method is not offered).
    pub evm: Option<EvmConfig>,
}

/// `[mpp] evm = { … }`: the `evm` charge method's own settings (the chain, the token, its
/// EIP-712 domain, who is paid and how payments are settled are `[x402]`'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmConfig {
    /// The token's decimals, told to the payer (`methodDetails.decimals`): 6 for USDC.
    pub decimals: u8,
}

impl Default for MppConfig {
    fn default() -> Self {
        MppConfig {
            realm: None,
            expiry_secs: 600,
            memo: "turnpike".into(),
            invoices_per_minute_per_caller: 20,
            invoices_per_minute: 600,
            evm: None,
        }
    }
}

/// The realm a public URL gives: its `host[:port]` (`mcp.example.com`).
pub fn realm_of(public_url: &str) -> String {
    let rest = public_url.split_once("://").map_or(public_url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    host.to_string()
}

/// What a Lightning credential that passed the offline checks pays with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The invoice's payment hash (what is spent).
    pub payment_hash: [u8; 32],
    /// When the challenge was issued (Unix seconds).
    pub issued_at: u64,
    /// When it expires (Unix seconds).
    pub expires_at: u64,
}

/// What an `evm` credential that passed the offline checks pays with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmChecked {
    /// The authorization and its signature.
    pub signed: evm::Signed,
    /// The spent set's key of the authorization.
    pub spent_key: [u8; 32],
    /// When the challenge was issued (Unix seconds).
    pub issued_at: u64,
}

/// The fields every method's challenge shares, once checked: when it was issued and expires,
/// and its request.
struct Common {
    issued_at: u64,
    expires_at: u64,
    request: Map<String, Value>,
}

/// The `evm` method's settlements, by outcome (`turnpike_mpp_evm_settlements_total`).
#[derive(Debug, Default)]
pub struct MppMeter {
    settlements: Settlements,
}

impl RailMeter for MppMeter {
    fn render(&self, out: &mut String) {
        self.settlements.render(
            out,
            "turnpike_mpp_evm_settlements_total",
            "MPP evm payments by settlement outcome: settled, refused (the transfer reverted or would, or the facilitator refused it), failed (node or facilitator unreachable, or the outcome unknown).",
        );
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        let (settled, _, failed) = self.settlements.counts();
        vec![
            ("mpp_evm_settled", settled),
            ("mpp_evm_settle_failures", failed),
        ]
    }
}

/// The rail. See the module docs.
pub struct MppRail {
    cfg: MppConfig,
    realm: String,
    key: Zeroizing<[u8; 32]>,
    /// The Lightning node of `[lightning]` (none: the Lightning method is not offered).
    backend: Option<Arc<dyn LightningBackend>>,
    /// The token of `[x402]`, when `[mpp] evm` offers the `evm` method.
    token: Option<Arc<Token>>,
    spent: Arc<dyn SpentSet>,
    invoices: InvoiceLimiter,
    meter: Arc<MppMeter>,
}

/// Who an invoice is counted against: the caller's identity, else its address.
fn invoice_key(call: &CallFacts) -> String {
    match (&call.caller, call.peer) {
        (Some(id), _) => id.scope_key(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "-".into(),
    }
}

/// The grant's receipt: `mpp:<payment hash hex>` (what [`Rail::release`] forgets).
const RECEIPT_PREFIX: &str = "mpp:";

/// The grant's receipt of a settled `evm` payment: `mpp-evm:<transaction hash>` (never
/// released: the money has moved).
const EVM_RECEIPT_PREFIX: &str = "mpp-evm:";

fn unavailable(reason: &str) -> Verdict {
    Verdict::Unavailable(Refusal::new(RAIL, reason))
}

fn stale(reason: &str) -> Verdict {
    Verdict::Stale(Refusal::new(RAIL, reason))
}

impl MppRail {
    /// A rail with `key` binding its challenges, invoices from `backend`, spent payments in
    /// `spent`.
    pub fn new(
        cfg: MppConfig,
        realm: String,
        key: [u8; 32],
        backend: Arc<dyn LightningBackend>,
        spent: Arc<dyn SpentSet>,
    ) -> Self {
        MppRail::with_methods(cfg, realm, key, Some(backend), None, spent)
    }

    /// A rail with `key` binding its challenges, the Lightning method on `backend` and the
    /// `evm` method on `token` (each when given), spent payments in `spent`.
    pub fn with_methods(
        cfg: MppConfig,
        realm: String,
        key: [u8; 32],
        backend: Option<Arc<dyn LightningBackend>>,
        token: Option<Arc<Token>>,
        spent: Arc<dyn SpentSet>,
    ) -> Self {
        let invoices = InvoiceLimiter::new(InvoiceRates {
            per_caller: cfg.invoices_per_minute_per_caller,
            global: cfg.invoices_per_minute,
        });
        MppRail {
            cfg,
            realm,
            key: Zeroizing::new(key),
            backend,
            token,
            spent,
            invoices,
            meter: Arc::new(MppMeter::default()),
        }
    }

    /// The binding key in `dir/mpp.key` (64 hex digits), created with mode 0600 when missing.
    /// Instances on one directory agree on one key (the file appears whole; a loser of the race
    /// reads the winner's). Instances on different machines share the file.
    pub fn load_or_create_key(dir: &Path) -> std::io::Result<[u8; 32]> {
        match load_key(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_key(dir),
            r => r,
        }
    }

    /// The realm its challenges name.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The challenge for `call` at `sats`, carrying `invoice` (pure: no I/O).
    pub fn issue(
        &self,
        call: &CallFacts,
        sats: u64,
        invoice: &turnpike_lightning::Invoice,
        memo: &str,
    ) -> Option<PaymentChallenge> {
        let network = charge::network_of(&invoice.bolt11)?;
        let request = ChargeRequest {
            sats,
            description: memo.to_string(),
            invoice: invoice.bolt11.clone(),
            payment_hash: invoice.payment_hash,
            network,
        };
        let expires_at = call
            .now
            .saturating_add(self.cfg.expiry_secs)
            .min(invoice.expires_at);
        Some(self.seal(
            call,
            charge::METHOD,
            charge::INTENT,
            &request.to_json(),
            expires_at,
        ))
    }

    /// The challenge for `call` under `offer`, in the offer's method; `None` when the offer is
    /// not this rail's or its method cannot be offered now.
    pub async fn mint(&self, call: &CallFacts, offer: &Offer) -> Option<Challenge> {
        let c = match crate::method(offer) {
            evm::METHOD => self.issue_evm(call, crate::evm_amount(offer)?)?,
            _ => self.mint_lightning(call, offer).await?,
        };
        Some(Challenge {
            rail: RAIL,
            www_authenticate: c.header(),
            details: challenge_details(&c),
        })
    }

    /// The `evm` challenge for `call` at `amount` atomic units (pure: no I/O); `None` when the
    /// method is not offered.
    pub fn issue_evm(&self, call: &CallFacts, amount: u128) -> Option<PaymentChallenge> {
        let token = self.token.as_ref()?;
        let decimals = self.cfg.evm.as_ref()?.decimals;
        if amount == 0 {
            return None;
        }
        let what = call.name.as_deref().unwrap_or(&call.method);
        let description: String = format!("{} {}", self.cfg.memo, what)
            .chars()
            .take(200)
            .collect();
        let request = evm::EvmRequest {
            amount,
            currency: token.asset(),
            recipient: token.pay_to(),
            chain_id: token.chain_id(),
            decimals,
            description,
        };
        let expires_at = call.now.saturating_add(self.cfg.expiry_secs);
        Some(self.seal(
            call,
            evm::METHOD,
            evm::INTENT,
            &request.to_json(),
            expires_at,
        ))
    }

    /// A challenge of `method`/`intent` for `call` carrying `request`, expiring at
    /// `expires_at`: `opaque` the call's scope and the issue time, `id` the HMAC of the seven
    /// slots.
    fn seal(
        &self,
        call: &CallFacts,
        method: &str,
        intent: &str,
        request: &Value,
        expires_at: u64,
    ) -> PaymentChallenge {
        let mut opaque = Map::new();
        opaque.insert("iat".into(), call.now.to_string().into());
        opaque.insert("scope".into(), hex::encode(call.scope_digest()).into());
        let mut c = PaymentChallenge {
            id: String::new(),
            realm: self.realm.clone(),
            method: method.into(),
            intent: intent.into(),
            request: wire::encode_json(request),
            expires: Some(wire::rfc3339(expires_at)),
            digest: None,
            opaque: Some(wire::encode_json(&Value::Object(opaque))),
            description: None,
        };
        c.id = wire::binding_id(&self.key[..], &c);
        c
    }

    /// Creates the invoice and writes the Lightning challenge for `call` under `offer`; `None`
    /// when the offer asks no sats, there is no Lightning node, the caller is over its invoice
    /// rate, or the backend fails.
    async fn mint_lightning(&self, call: &CallFacts, offer: &Offer) -> Option<PaymentChallenge> {
        let backend = self.backend.as_ref()?;
        let sats = crate::sats(offer).filter(|s| *s > 0)?;
        let msat = sats.checked_mul(1000)?;
        if let Err(wait) = self.invoices.take(&invoice_key(call)) {
            tracing::debug!(
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "MPP: invoice rate reached; not offering MPP"
            );
            return None;
        }
        let what = call.name.as_deref().unwrap_or(&call.method);
        let memo: String = format!("{} {}", self.cfg.memo, what)
            .chars()
            .take(200)
            .collect();
        let expiry = self.cfg.expiry_secs.saturating_add(INVOICE_SLACK_SECS);
        let invoice = match backend.create_invoice(msat, &memo, expiry).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "MPP: the Lightning backend could not create an invoice; not offering MPP");
                return None;
            }
        };
        if invoice.amount_msat < msat {
            tracing::warn!("MPP: the backend's invoice asks less than the price; not offering MPP");
            return None;
        }
        self.issue(call, sats, &invoice, &memo)
    }

    /// The checks every method's credential passes, offline: the id recomputed and compared in
    /// constant time (so every field it covers is the gateway's own), the realm, the expiry,
    /// the scope (this call's tool, arguments and resource), the issue time, the request.
    fn check_common(&self, call: &CallFacts, c: &PaymentChallenge) -> Result<Common, Verdict> {
        let id = wire::binding_id(&self.key[..], c);
        if !turnpike_core::ct_eq(id.as_bytes(), c.id.as_bytes()) {
            return Err(stale(
                "the challenge was not issued here, or was altered (its id does not match)",
            ));
        }
        if c.realm != self.realm {
            return Err(stale("the challenge was issued for another realm"));
        }
        let expires_at = c
            .expires
            .as_deref()
            .and_then(wire::parse_rfc3339)
            .ok_or_else(|| stale("the challenge has no usable expiry"))?;
        if call.now >= expires_at {
            return Err(stale("the challenge has expired"));
        }
        let opaque = c.opaque_json().ok().flatten().unwrap_or_default();
        let scope = opaque.get("scope").and_then(Value::as_str).unwrap_or("");
        let want = hex::encode(call.scope_digest());
        if !turnpike_core::ct_eq(scope.as_bytes(), want.as_bytes()) {
            return Err(stale(
                "the challenge was issued for another call (tool, arguments or resource)",
            ));
        }
        let issued_at = opaque
            .get("iat")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| stale("the challenge has no issue time"))?;
        let request = c
            .request_json()
            .map_err(|_| stale("the challenge's request does not decode"))?;
        Ok(Common {
            issued_at,
            expires_at,
            request,
        })
    }

    /// The offline checks of one Lightning credential for `call` under `offer` (see the module
    /// docs): the payment it makes, or the refusal.
    pub fn check(
        &self,
        call: &CallFacts,
        offer: &Offer,
        cred: &PaymentCredential,
    ) -> Result<Checked, Verdict> {
        let c = &cred.challenge;
        if c.method != charge::METHOD || c.intent != charge::INTENT {
            return Err(stale(
                "this gateway takes the lightning and evm charge methods only",
            ));
        }
        let Common {
            issued_at,
            expires_at,
            request,
        } = self.check_common(call, c)?;
        let (paid_sats, payment_hash) = ChargeRequest::terms(&request)
            .ok_or_else(|| stale("the challenge's request is not a lightning charge"))?;
        if paid_sats < crate::sats(offer).unwrap_or(u64::MAX) {
            return Err(stale("the payment is less than this call's price"));
        }
        let preimage = charge::preimage(&cred.payload)
            .ok_or_else(|| stale("payload.preimage is not 64 lower-case hex digits"))?;
        if !charge::pays(&preimage, &payment_hash) {
            return Err(stale(
                "the preimage does not match the challenge's invoice (not paid)",
            ));
        }
        Ok(Checked {
            payment_hash,
            issued_at,
            expires_at,
        })
    }

    /// The offline checks of one `evm` credential for `call` under `offer`: the challenge's
    /// (as for every method), its request's terms against the token's and the price, then the
    /// authorization: payee, value, the challenge's nonce, its validity window, the payer's
    /// `source` and last the payer's EIP-712 signature.
    pub fn check_evm(
        &self,
        call: &CallFacts,
        offer: &Offer,
        cred: &PaymentCredential,
    ) -> Result<EvmChecked, Verdict> {
        let c = &cred.challenge;
        let Some(token) = self.token.as_ref() else {
            return Err(stale("this gateway does not take the evm method"));
        };
        if c.intent != evm::INTENT {
            return Err(stale("this gateway takes the charge intent only"));
        }
        let Common {
            issued_at,
            expires_at,
            request,
        } = self.check_common(call, c)?;
        let terms = evm::Terms::of(&request)
            .ok_or_else(|| stale("the challenge's request is not an evm charge"))?;
        if terms.chain_id != token.chain_id()
            || terms.currency != token.asset()
            || terms.recipient != token.pay_to()
        {
            return Err(stale(
                "the challenge names another chain, token or recipient than this gateway's",
            ));
        }
        if terms.amount < crate::evm_amount(offer).unwrap_or(u128::MAX) {
            return Err(stale("the payment is less than this call's price"));
        }
        let signed = evm::payload(&cred.payload)
            .map_err(|why| stale(&format!("malformed payload: {why}")))?;
        let a = &signed.authorization;
        if a.to != token.pay_to() {
            return Err(stale(
                "the authorization pays someone other than the recipient",
            ));
        }
        if a.value != terms.amount {
            return Err(stale(
                "the authorization's value is not the challenge's amount",
            ));
        }
        if a.nonce != evm::challenge_nonce(&c.id, &c.realm) {
            return Err(stale(
                "the authorization's nonce is not this challenge's (keccak256 of id and realm)",
            ));
        }
        let now = u128::from(call.now);
        if a.valid_after > now {
            return Err(stale("the authorization is not valid yet"));
        }
        if a.valid_before <= now + u128::from(SETTLE_MARGIN_SECS) {
            return Err(stale("the authorization has expired"));
        }
        if a.valid_before > u128::from(expires_at) + u128::from(SKEW_SECS) {
            return Err(stale(
                "the authorization stays valid longer than the challenge",
            ));
        }
        if let Some(source) = cred.source.as_deref() {
            if source != evm::source_of(token.chain_id(), &a.from) {
                return Err(stale(
                    "the credential's source is not the authorization's payer",
                ));
            }
        }
        if !token.signed_by_payer(a, &signed.signature) {
            return Err(stale(
                "the signature is not the payer's (EIP-712 TransferWithAuthorization)",
            ));
        }
        Ok(EvmChecked {
            spent_key: token.spent_key(a),
            signed,
            issued_at,
        })
    }

    /// Checks, spends and settles one `evm` credential: the verdict (the transaction in the
    /// grant's receipt on a pass), and the bound that held it back, if one did. Bounded per
    /// caller address and in all before the signer is recovered (the token's bounds, shared
    /// with x402); the authorization spent once in the `mpp` spent set; the payer's balance
    /// and the nonce's state asked of the chain; settled before the call is forwarded.
    async fn check_and_settle_evm(
        &self,
        call: &CallFacts,
        offer: &Offer,
        cred: &PaymentCredential,
    ) -> (Verdict, Option<Held>) {
        let Some(token) = self.token.as_ref() else {
            return (stale("this gateway does not take the evm method"), None);
        };
        if let Err(held) = token.admit_check(call) {
            return (unavailable(&held.reason(evm::METHOD)), Some(held));
        }
        (
            self.spend_and_settle_evm(call, offer, cred, token).await,
            None,
        )
    }

    /// [`MppRail::check_and_settle_evm`] past the bounds.
    async fn spend_and_settle_evm(
        &self,
        call: &CallFacts,
        offer: &Offer,
        cred: &PaymentCredential,
        token: &Token,
    ) -> Verdict {
        let checked = match self.check_evm(call, offer, cred) {
            Ok(c) => c,
            Err(v) => return v,
        };
        let a = &checked.signed.authorization;
        let until = u64::try_from(a.valid_before)
            .unwrap_or(u64::MAX)
            .saturating_add(SKEW_SECS);
        match self
            .spent
            .insert_issued(checked.spent_key, checked.issued_at, until, call.now)
            .await
        {
            Ok(true) => {}
            Ok(false) => return stale("this payment has already been used"),
            Err(e) => {
                tracing::warn!(error = %e, "MPP: spent set unavailable");
                return unavailable("the spent set cannot be reached");
            }
        }
        let release = |why: &'static str| async move {
            if let Err(e) = self
                .spent
                .release(checked.spent_key, turnpike_core::unix_now())
                .await
            {
                tracing::warn!(error = %e, "MPP: could not release an authorization ({why})");
            }
        };
        match token.state(a).await {
            Ok(ChainState::Payable) => {}
            Ok(ChainState::Used) => {
                return stale("this payment has already been used on chain");
            }
            Ok(ChainState::Short) => {
                release("balance").await;
                return stale("the payer's balance does not cover the payment");
            }
            Err(e) => {
                tracing::warn!(error = %e, "MPP: the chain cannot be asked");
                release("chain").await;
                return unavailable("the payment cannot be checked on chain right now");
            }
        }
        let payer = turnpike_evm::evm::checksum(&a.from);
        // Through a facilitator, the authorization goes as the x402 `exact` payment it is.
        let x402 = token
            .settles_through_facilitator()
            .then(|| token.as_x402(a, &checked.signed.signature, self.cfg.expiry_secs));
        let x402 = x402.as_ref().map(|(payment, accepted)| (payment, accepted));
        let paying = Paying {
            call,
            rail: RAIL.as_str(),
            method: evm::METHOD,
        };
        match token
            .settle(&paying, a, &checked.signed.signature, x402)
            .await
        {
            Ok(tx) => {
                self.meter.settlements.settled();
                tracing::info!(transaction = %tx, payer = %payer, value = %a.value, "MPP: evm payment settled");
                Verdict::Pass(Grant {
                    rail: RAIL,
                    identity: call.caller.clone(),
                    receipt: Some(format!("{EVM_RECEIPT_PREFIX}{tx}")),
                    about: None,
                })
            }
            Err(SettleError::Refused(why)) => {
                self.meter.settlements.refused();
                tracing::warn!(reason = %why, payer = %payer, "MPP: evm settlement refused; the call is not forwarded");
                release("refused").await;
                stale(&format!("the payment could not be settled: {why}"))
            }
            Err(SettleError::Down(why)) => {
                self.meter.settlements.failed();
                tracing::warn!(reason = %why, payer = %payer, "MPP: evm settlement failed; the call is not forwarded");
                release("down").await;
                unavailable("the payment cannot be settled right now")
            }
            Err(SettleError::Unknown(why)) => {
                self.meter.settlements.failed();
                tracing::error!(reason = %why, payer = %payer, "MPP: evm settlement outcome unknown; the authorization stays spent and the call is not forwarded");
                unavailable("the payment's settlement could not be confirmed")
            }
        }
    }

    async fn check_and_spend(
        &self,
        call: &CallFacts,
        offer: &Offer,
        credential: &Credential,
    ) -> Verdict {
        self.check_and_spend_held(call, offer, credential).await.0
    }

    /// [`MppRail::check_and_spend`], with the bound on `evm` payments checked that held the
    /// credential back, if one did.
    async fn check_and_spend_held(
        &self,
        call: &CallFacts,
        offer: &Offer,
        credential: &Credential,
    ) -> (Verdict, Option<Held>) {
        let Some(cred) = credential.payload::<PaymentCredential>() else {
            return (
                Verdict::Invalid(Refusal::new(RAIL, "not an MPP credential")),
                None,
            );
        };
        if cred.challenge.method == evm::METHOD {
            return self.check_and_settle_evm(call, offer, cred).await;
        }
        (
            self.check_and_spend_lightning(call, offer, cred).await,
            None,
        )
    }

    async fn check_and_spend_lightning(
        &self,
        call: &CallFacts,
        offer: &Offer,
        cred: &PaymentCredential,
    ) -> Verdict {
        let Some(backend) = self.backend.as_ref() else {
            return stale("this gateway does not take the lightning method");
        };
        let checked = match self.check(call, offer, cred) {
            Ok(c) => c,
            Err(v) => return v,
        };
        // A custodial service knows its preimages before anyone pays: ask it.
        if backend.is_custodial() {
            match backend.lookup_invoice(&checked.payment_hash).await {
                Ok(InvoiceState::Settled { .. }) => {}
                Ok(_) => return stale("the invoice has not been paid"),
                Err(e) => {
                    tracing::warn!(error = %e, "MPP: cannot confirm settlement");
                    return Verdict::Unavailable(Refusal::new(
                        RAIL,
                        "payment settlement cannot be confirmed right now",
                    ));
                }
            }
        }
        match self
            .spent
            .insert_issued(
                checked.payment_hash,
                checked.issued_at,
                checked.expires_at,
                call.now,
            )
            .await
        {
            Ok(true) => Verdict::Pass(Grant {
                rail: RAIL,
                identity: call.caller.clone(),
                receipt: Some(format!(
                    "{RECEIPT_PREFIX}{}",
                    hex::encode(checked.payment_hash)
                )),
                about: None,
            }),
            Ok(false) => stale("this payment has already been used"),
            Err(e) => {
                tracing::warn!(error = %e, "MPP: spent set unavailable");
                Verdict::Unavailable(Refusal::new(RAIL, "the spent set cannot be reached"))
            }
        }
    }

    async fn release_payment(&self, grant: &Grant) {
        let Some(hash) = grant
            .receipt
            .as_deref()
            .and_then(|r| r.strip_prefix(RECEIPT_PREFIX))
            .and_then(charge::hex32)
        else {
            return;
        };
        if let Err(e) = self.spent.release(hash, turnpike_core::unix_now()).await {
            tracing::warn!(error = %e, "MPP: could not release a payment");
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

/// The challenge as JSON-RPC bodies carry it: the transport draft's challenge object (`request`
/// as native JSON) with `"rail": "mpp"` beside it.
pub fn challenge_details(c: &PaymentChallenge) -> Value {
    let mut v = c.to_json();
    if let Some(o) = v.as_object_mut() {
        o.insert("rail".into(), Value::from(RAIL.as_str()));
    }
    v
}

/// The receipt for a credential that paid, settled `now`: its reference is the payment hash
/// (Lightning), or the settlement's transaction hash (`evm`, from the grant's receipt).
pub fn receipt_for(cred: &PaymentCredential, grant: &Grant, now: u64) -> Option<PaymentReceipt> {
    if let Some(tx) = grant
        .receipt
        .as_deref()
        .and_then(|r| r.strip_prefix(EVM_RECEIPT_PREFIX))
    {
        return Some(PaymentReceipt {
            method: evm::METHOD.into(),
            challenge_id: cred.challenge.id.clone(),
            reference: tx.to_string(),
            timestamp: wire::rfc3339(now),
        });
    }
    let request = cred.challenge.request_json().ok()?;
    let (_, hash) = ChargeRequest::terms(&request)?;
    Some(PaymentReceipt {
        method: charge::METHOD.into(),
        challenge_id: cred.challenge.id.clone(),
        reference: hex::encode(hash),
        timestamp: wire::rfc3339(now),
    })
}

impl Rail for MppRail {
    fn kind(&self) -> RailId {
        RAIL
    }

    fn challenge<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
    ) -> BoxFuture<'a, Option<Challenge>> {
        Box::pin(self.mint(call, offer))
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallFacts,
        offer: &'a Offer,
        credential: &'a Credential,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(self.check_and_spend(call, offer, credential))
    }

    fn release<'a>(&'a self, grant: &'a Grant) -> BoxFuture<'a, ()> {
        Box::pin(self.release_payment(grant))
    }

    /// A payment is released on the HTTP status alone; the answer is never buffered.
    fn needs_outcome(&self, _grant: &Grant) -> bool {
        false
    }

    /// A caller over its invoice rate waits (`mpp_invoices`): 429, not 503.
    fn issue_wait(&self, call: &CallFacts) -> Option<(std::time::Duration, &'static str)> {
        self.backend.as_ref()?;
        self.invoices
            .check(&invoice_key(call))
            .err()
            .map(|wait| (wait, "mpp_invoices"))
    }

    fn charged_msat(&self, grant: &Grant, offer: &Offer) -> u64 {
        let evm_paid = grant
            .receipt
            .as_deref()
            .is_some_and(|r| r.starts_with(EVM_RECEIPT_PREFIX));
        if grant.rail != RAIL || evm_paid {
            return 0;
        }
        crate::sats(offer).map_or(0, |s| s.saturating_mul(1000))
    }

    /// A payment pays for its round.
    fn pays_for_round(&self, _grant: &Grant) -> bool {
        true
    }
}

impl RailPlugin for MppRail {
    fn id(&self) -> RailId {
        RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        &MppCredentials
    }

    /// After L402 (whose clients read only the first challenge), before proof-of-work.
    fn challenge_order(&self) -> u8 {
        5
    }

    /// Every credential failure is a 402 with a fresh challenge, as the draft asks.
    fn malformed_is_stale(&self) -> bool {
        true
    }

    /// A challenge carries a single-use invoice: never cached.
    fn challenge_headers(&self, _challenge: &Challenge) -> Vec<(&'static str, String)> {
        vec![("cache-control", "no-store".into())]
    }

    fn in_band_text(&self, challenge: &Challenge, _first: bool) -> String {
        in_band_text(challenge)
    }

    /// The MPP transport's forms: JSON-RPC error -32042 "Payment Required" (-32043 "Payment
    /// Verification Failed" after a refused credential) with `data.challenges` (the challenge
    /// objects, `request` as JSON) and `data.httpStatus` 402; beside other rails' challenges,
    /// the same data in `result._meta["org.paymentauth/payment-required"]`.
    fn in_band_form(&self, challenges: &[&Challenge], refusals: &[&Refusal]) -> Option<InBandForm> {
        in_band_form(challenges, refusals)
    }

    fn meter(self: Arc<Self>) -> Option<Arc<dyn RailMeter>> {
        Some(self.meter.clone())
    }

    /// A view that remembers which credential paid, for the receipt.
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
            paid: Mutex::new(None),
            held: Mutex::new(None),
        }))))
    }
}

/// The rail seen by one request: verifies in its place and keeps the receipt of the credential
/// that passed, or the bound on `evm` payments checked that held one back.
struct PaidView {
    rail: Arc<MppRail>,
    paid: Mutex<Option<PaymentReceipt>>,
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
            let (v, held) = self
                .rail
                .check_and_spend_held(call, offer, credential)
                .await;
            if held.is_some() {
                *self.held.lock() = held;
            }
            if let Verdict::Pass(grant) = &v {
                if let Some(cred) = credential.payload::<PaymentCredential>() {
                    *self.paid.lock() = receipt_for(cred, grant, call.now);
                }
            }
            v
        })
    }
}

struct Bound(Arc<PaidView>);

impl BoundRail for Bound {
    fn rail(&self) -> Arc<dyn Rail> {
        self.0.clone()
    }

    /// `Payment-Receipt` on the paid response, and the receipt for `result._meta`.
    fn passed(&self) -> PassNotes {
        let mut notes = PassNotes::default();
        if let Some(r) = self.0.paid.lock().as_ref() {
            notes
                .success_headers
                .push((wire::RECEIPT_HEADER, r.header()));
            notes
                .success_headers
                .push(("cache-control", "private".into()));
            notes.result_meta.push((wire::META_RECEIPT, r.to_json()));
        }
        notes
    }

    /// An `evm` payment held back by the bounds on payments checked (`[x402]`'s, shared with
    /// the x402 rail): past the caller's own, 429; past all callers', 503; each with
    /// `Retry-After`, as x402 answers.
    fn answer(&self, _offer: &Offer) -> Option<RailAnswer> {
        self.0.held.lock().map(|h| h.answer(evm::METHOD))
    }
}

/// The rail's in-band forms ([`RailPlugin::in_band_form`]).
pub fn in_band_form(challenges: &[&Challenge], refusals: &[&Refusal]) -> Option<InBandForm> {
    if challenges.is_empty() {
        return None;
    }
    let objects: Vec<Value> = challenges
        .iter()
        .map(|c| {
            let mut d = c.details.clone();
            if let Some(o) = d.as_object_mut() {
                o.remove("rail");
            }
            d
        })
        .collect();
    let (code, message, problem) = if refusals.is_empty() {
        (
            wire::PAYMENT_REQUIRED_CODE,
            "Payment Required",
            serde_json::json!({
                "type": "https://paymentauth.org/problems/payment-required",
                "title": "Payment Required",
                "status": 402,
                "detail": "Payment required for access.",
            }),
        )
    } else {
        let detail: Vec<&str> = refusals.iter().map(|r| r.reason.as_str()).collect();
        (
            wire::VERIFICATION_FAILED_CODE,
            "Payment Verification Failed",
            serde_json::json!({
                "type": "https://paymentauth.org/problems/verification-failed",
                "title": "Payment Verification Failed",
                "status": 402,
                "detail": detail.join("; "),
            }),
        )
    };
    let mut data = serde_json::json!({
        "httpStatus": 402,
        "challenges": objects,
        "problem": problem,
    });
    if !refusals.is_empty() {
        data["failure"] = serde_json::json!({
            "reason": "verification-failed",
            "detail": data["problem"]["detail"].clone(),
        });
    }
    let meta = serde_json::json!({"httpStatus": 402, "challenges": data["challenges"].clone()});
    Some(InBandForm {
        code,
        message: message.into(),
        data,
        result_meta: (wire::META_PAYMENT_REQUIRED, meta),
    })
}

/// What to do, in band: pay the invoice, retry with the credential in `_meta`.
pub fn in_band_text(challenge: &Challenge) -> String {
    let d = &challenge.details;
    if d.get("method").and_then(Value::as_str) == Some(evm::METHOD) {
        let r = |p: &str| {
            d.pointer(p).map_or_else(
                || "?".to_string(),
                |v| v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        };
        return format!(
            "Pay (MPP, Payment scheme, evm charge): sign an EIP-3009 TransferWithAuthorization \
             (EIP-712, the token's own domain) of {amount} atomic units of the token {currency} \
             on chain {chain} to {recipient}, validAfter 0, validBefore at most this \
             challenge's expiry, nonce keccak256(id ‖ realm) of this challenge. Then retry this \
             same call with the same arguments and add params._meta[\"{META_CREDENTIAL}\"] = \
             {{\"challenge\": <this challenge object, unchanged>, \"payload\": {{\"type\": \
             \"authorization\", \"from\", \"to\", \"value\", \"validAfter\", \"validBefore\", \
             \"nonce\", \"signature\"}}}} (an MPP client's evm method does this). ",
            amount = r("/request/amount"),
            currency = r("/request/currency"),
            chain = r("/request/methodDetails/chainId"),
            recipient = r("/request/recipient"),
        );
    }
    let invoice = d
        .pointer("/request/methodDetails/invoice")
        .and_then(Value::as_str)
        .unwrap_or("");
    let amount = d
        .pointer("/request/amount")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!(
        "Pay (MPP, Payment scheme, lightning charge): pay the Lightning invoice {invoice} \
         ({amount} sat) with a Lightning wallet, which gives you the payment's preimage (64 hex \
         digits). Then retry this same call with the same arguments and add \
         params._meta[\"{META_CREDENTIAL}\"] = {{\"challenge\": <this challenge object, \
         unchanged>, \"payload\": {{\"preimage\": \"<preimage hex>\"}}}} (over HTTP, the header \
         `Authorization: Payment <base64url of that JSON, request base64url-encoded>` works \
         too). "
    )
}

/// How MPP credentials are read: `Authorization: Payment <token>` and
/// `params._meta["org.paymentauth/credential"]`. The running rail reads through it, and it is
/// registered alone where the rail is off: the credentials are read and refused as for a call
/// that does not accept MPP, and the `_meta` key is stripped before forwarding.
pub struct MppCredentials;

fn malformed(e: wire::WireError) -> CredentialParseError {
    CredentialParseError::Malformed {
        scheme: wire::SCHEME,
        reason: e.to_string(),
    }
}

impl RailPlugin for MppCredentials {
    fn id(&self) -> RailId {
        RAIL
    }

    /// The rail's series at zero where it is off.
    fn meter(self: Arc<Self>) -> Option<Arc<dyn RailMeter>> {
        Some(Arc::new(MppMeter::default()))
    }

    fn malformed_is_stale(&self) -> bool {
        true
    }

    fn reader(&self) -> &dyn CredentialReader {
        self
    }
}

impl CredentialReader for MppCredentials {
    fn parse_authorization(
        &self,
        scheme: &str,
        params: &str,
        _req: &EdgeRequest<'_>,
    ) -> Option<Parsed> {
        if !scheme.eq_ignore_ascii_case(wire::SCHEME) {
            return None;
        }
        Some(
            PaymentCredential::from_token(params)
                .map(|c| Credential::new(RAIL, c))
                .map_err(malformed),
        )
    }

    fn meta_keys(&self) -> &'static [&'static str] {
        &[META_CREDENTIAL]
    }

    fn parse_meta(&self, key: &str, value: &Value) -> Option<Parsed> {
        if key != META_CREDENTIAL {
            return None;
        }
        Some(
            PaymentCredential::from_meta(value)
                .map(|c| Credential::new(RAIL, c))
                .map_err(malformed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use turnpike_lightning::dev::DevBackend;
    use turnpike_store::MemorySpentSet;

    fn call(name: &str, args: u8, now: u64) -> CallFacts {
        CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some(name.into()),
            args_hash: [args; 32],
            caller: None,
            peer: Some("127.0.0.1".parse().unwrap()),
            now,
        }
    }

    fn rail() -> (Arc<MppRail>, Arc<DevBackend>) {
        let dev = Arc::new(DevBackend::regtest());
        let rail = MppRail::new(
            MppConfig::default(),
            "api.example.com".into(),
            [9; 32],
            dev.clone(),
            Arc::new(MemorySpentSet::new()),
        );
        (Arc::new(rail), dev)
    }

    /// Pays the challenge's invoice with the dev node and writes the credential.
    fn pay(dev: &DevBackend, c: &Challenge) -> PaymentCredential {
        let wa = c.www_authenticate.clone();
        let ch = PaymentChallenge::parse_header(&wa).unwrap();
        let invoice = c.details["request"]["methodDetails"]["invoice"]
            .as_str()
            .unwrap();
        let preimage = dev.pay(invoice).unwrap();
        let mut payload = Map::new();
        payload.insert("preimage".into(), hex::encode(preimage).into());
        PaymentCredential {
            challenge: ch,
            source: None,
            payload,
        }
    }

    fn verdict(r: &MppRail, call: &CallFacts, offer: &Offer, c: PaymentCredential) -> Verdict {
        let cred = Credential::new(RAIL, c);
        futures_lite(r.check_and_spend(call, offer, &cred))
    }

    fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn challenge_pays_once() {
        let (r, dev) = rail();
        let now = turnpike_core::unix_now();
        let call = call("echo", 1, now);
        let offer = crate::offer(10);
        let c = futures_lite(r.mint(&call, &offer)).unwrap();
        assert!(c.www_authenticate.starts_with("Payment id=\""));
        assert_eq!(c.details["method"], "lightning");
        assert_eq!(c.details["request"]["amount"], "10");
        assert_eq!(c.details["request"]["currency"], "sat");
        assert_eq!(c.details["request"]["methodDetails"]["network"], "regtest");
        let cred = pay(&dev, &c);
        // Through the header form and back.
        let header = cred.authorization();
        let (_, token) = header.split_once(' ').unwrap();
        let cred = PaymentCredential::from_token(token).unwrap();
        assert!(matches!(
            verdict(&r, &call, &offer, cred.clone()),
            Verdict::Pass(_)
        ));
        match verdict(&r, &call, &offer, cred) {
            Verdict::Stale(why) => assert!(why.reason.contains("already been used"), "{why:?}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn bound_to_tool_arguments_price_and_time() {
        let (r, dev) = rail();
        let now = turnpike_core::unix_now();
        let offer = crate::offer(10);
        let c = futures_lite(r.mint(&call("echo", 1, now), &offer)).unwrap();
        let cred = pay(&dev, &c);
        let reason = |v: Verdict| match v {
            Verdict::Stale(r) => r.reason,
            v => panic!("{v:?}"),
        };
        assert!(
            reason(verdict(&r, &call("add", 1, now), &offer, cred.clone()))
                .contains("another call")
        );
        assert!(
            reason(verdict(&r, &call("echo", 2, now), &offer, cred.clone()))
                .contains("another call")
        );
        assert!(reason(verdict(
            &r,
            &call("echo", 1, now),
            &crate::offer(11),
            cred.clone()
        ))
        .contains("less than"));
        assert!(reason(verdict(
            &r,
            &call("echo", 1, now + 601),
            &offer,
            cred.clone()
        ))
        .contains("expired"));
        // A field the id covers, altered.
        let mut forged = cred.clone();
        forged.challenge.expires = Some(wire::rfc3339(now + 100_000));
        assert!(reason(verdict(&r, &call("echo", 1, now), &offer, forged)).contains("id"));
        // Another key's challenge.
        let (other, _) = rail();
        let other = MppRail::new(
            MppConfig::default(),
            "api.example.com".into(),
            [8; 32],
            other.backend.clone().unwrap(),
            Arc::new(MemorySpentSet::new()),
        );
        assert!(
            reason(verdict(&other, &call("echo", 1, now), &offer, cred.clone())).contains("id")
        );
        // A preimage of another invoice.
        let c2 = futures_lite(r.mint(&call("echo", 1, now), &offer)).unwrap();
        let cred2 = pay(&dev, &c2);
        let mut swapped = cred.clone();
        swapped.payload = cred2.payload.clone();
        assert!(reason(verdict(&r, &call("echo", 1, now), &offer, swapped)).contains("preimage"));
        // Nothing above spent it.
        assert!(matches!(
            verdict(&r, &call("echo", 1, now), &offer, cred),
            Verdict::Pass(_)
        ));
    }

    /// The worked example of docs/MPP.md §9, byte for byte.
    #[test]
    fn worked_example_of_the_document() {
        use sha2::Digest;
        let (r, _) = rail();
        let rail = MppRail::new(
            MppConfig::default(),
            "mcp.example.com".into(),
            [0x42; 32],
            r.backend.clone().unwrap(),
            Arc::new(MemorySpentSet::new()),
        );
        let preimage = [0x11u8; 32];
        let invoice = turnpike_lightning::Invoice {
            bolt11: "lnbcrt100n1pexample".into(),
            payment_hash: sha2::Sha256::digest(preimage).into(),
            amount_msat: 10_000,
            expires_at: 1_800_000_660,
        };
        let call = CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some("dear".into()),
            args_hash: sha2::Sha256::digest(br#"{"n":1}"#).into(),
            caller: None,
            peer: None,
            now: 1_800_000_000,
        };
        let c = rail.issue(&call, 10, &invoice, "turnpike dear").unwrap();
        let request =
            String::from_utf8(wire::b64url_decode(&c.request, 4096, "r").unwrap()).unwrap();
        let opaque = String::from_utf8(
            wire::b64url_decode(c.opaque.as_deref().unwrap(), 4096, "o").unwrap(),
        )
        .unwrap();
        let mut payload = Map::new();
        payload.insert("preimage".into(), hex::encode(preimage).into());
        let cred = PaymentCredential {
            challenge: c.clone(),
            source: None,
            payload,
        };
        let grant = Grant {
            rail: RAIL,
            identity: None,
            receipt: None,
            about: None,
        };
        let receipt = receipt_for(&cred, &grant, 1_800_000_042).unwrap();
        let offer = crate::offer(10);
        assert!(rail.check(&call, &offer, &cred).is_ok());
        assert_eq!(c.expires.as_deref(), Some("2027-01-15T08:10:00Z"));
        assert_eq!(request, EXAMPLE_REQUEST);
        assert_eq!(
            opaque,
            r#"{"iat":"1800000000","scope":"b720127466de3fbb3c95d092730bee82afbc71b3c809d3a2d100844350172c46"}"#
        );
        assert_eq!(c.header(), EXAMPLE_HEADER);
        assert_eq!(cred.authorization(), EXAMPLE_AUTHORIZATION);
        assert_eq!(receipt.header(), EXAMPLE_RECEIPT);
    }

    const EXAMPLE_REQUEST: &str = r#"{"amount":"10","currency":"sat","description":"turnpike dear","methodDetails":{"invoice":"lnbcrt100n1pexample","network":"regtest","paymentHash":"02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc"}}"#;
    const EXAMPLE_HEADER: &str = r#"Payment id="3BEVGzA3hjXJSDwA9Fo8nyvSEFn0j6psoSo8Y-oZEYM", realm="mcp.example.com", method="lightning", intent="charge", request="eyJhbW91bnQiOiIxMCIsImN1cnJlbmN5Ijoic2F0IiwiZGVzY3JpcHRpb24iOiJ0dXJucGlrZSBkZWFyIiwibWV0aG9kRGV0YWlscyI6eyJpbnZvaWNlIjoibG5iY3J0MTAwbjFwZXhhbXBsZSIsIm5ldHdvcmsiOiJyZWd0ZXN0IiwicGF5bWVudEhhc2giOiIwMmQ0NDlhMzFmYmIyNjdjOGYzNTJlOTk2OGE3OWUzZTVmYzk1YzFiYmVhYTUwMmZkNjQ1NGViZGU1YTRiZWRjIn19", expires="2027-01-15T08:10:00Z", opaque="eyJpYXQiOiIxODAwMDAwMDAwIiwic2NvcGUiOiJiNzIwMTI3NDY2ZGUzZmJiM2M5NWQwOTI3MzBiZWU4MmFmYmM3MWIzYzgwOWQzYTJkMTAwODQ0MzUwMTcyYzQ2In0""#;
    const EXAMPLE_AUTHORIZATION: &str = r#"Payment eyJjaGFsbGVuZ2UiOnsiZXhwaXJlcyI6IjIwMjctMDEtMTVUMDg6MTA6MDBaIiwiaWQiOiIzQkVWR3pBM2hqWEpTRHdBOUZvOG55dlNFRm4wajZwc29TbzhZLW9aRVlNIiwiaW50ZW50IjoiY2hhcmdlIiwibWV0aG9kIjoibGlnaHRuaW5nIiwib3BhcXVlIjoiZXlKcFlYUWlPaUl4T0RBd01EQXdNREF3SWl3aWMyTnZjR1VpT2lKaU56SXdNVEkzTkRZMlpHVXpabUppTTJNNU5XUXdPVEkzTXpCaVpXVTRNbUZtWW1NM01XSXpZemd3T1dRellUSmtNVEF3T0RRME16VXdNVGN5WXpRMkluMCIsInJlYWxtIjoibWNwLmV4YW1wbGUuY29tIiwicmVxdWVzdCI6ImV5SmhiVzkxYm5RaU9pSXhNQ0lzSW1OMWNuSmxibU41SWpvaWMyRjBJaXdpWkdWelkzSnBjSFJwYjI0aU9pSjBkWEp1Y0dsclpTQmtaV0Z5SWl3aWJXVjBhRzlrUkdWMFlXbHNjeUk2ZXlKcGJuWnZhV05sSWpvaWJHNWlZM0owTVRBd2JqRndaWGhoYlhCc1pTSXNJbTVsZEhkdmNtc2lPaUp5WldkMFpYTjBJaXdpY0dGNWJXVnVkRWhoYzJnaU9pSXdNbVEwTkRsaE16Rm1ZbUl5Tmpkak9HWXpOVEpsT1RrMk9HRTNPV1V6WlRWbVl6azFZekZpWW1WaFlUVXdNbVprTmpRMU5HVmlaR1UxWVRSaVpXUmpJbjE5In0sInBheWxvYWQiOnsicHJlaW1hZ2UiOiIxMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTExIn19"#;
    const EXAMPLE_RECEIPT: &str = r#"eyJjaGFsbGVuZ2VJZCI6IjNCRVZHekEzaGpYSlNEd0E5Rm84bnl2U0VGbjBqNnBzb1NvOFktb1pFWU0iLCJtZXRob2QiOiJsaWdodG5pbmciLCJyZWZlcmVuY2UiOiIwMmQ0NDlhMzFmYmIyNjdjOGYzNTJlOTk2OGE3OWUzZTVmYzk1YzFiYmVhYTUwMmZkNjQ1NGViZGU1YTRiZWRjIiwic3RhdHVzIjoic3VjY2VzcyIsInRpbWVzdGFtcCI6IjIwMjctMDEtMTVUMDg6MDA6NDJaIn0"#;

    /// USDC on Base, paid to the payee of docs/X402.md's example; settled by a node that is not
    /// there (the offline checks never ask it).
    fn evm_rail(key: [u8; 32]) -> MppRail {
        let cfg = turnpike_evm::token::X402Config::offline_example();
        let node =
            turnpike_evm::chain::Node::new("http://127.0.0.1:9", std::time::Duration::from_secs(1))
                .unwrap();
        let settler = turnpike_evm::token::Settler::own(
            turnpike_evm::token::parse_key(&"03".repeat(32)).unwrap(),
        );
        let token = Token::new(&cfg, node, settler).unwrap();
        MppRail::with_methods(
            MppConfig {
                evm: Some(EvmConfig { decimals: 6 }),
                ..MppConfig::default()
            },
            "mcp.example.com".into(),
            key,
            None,
            Some(Arc::new(token)),
            Arc::new(MemorySpentSet::new()),
        )
    }

    /// The payload `key_hex` signs for `c`, as the method writes it: value the request's
    /// amount, validAfter 0, validBefore the challenge's expiry, the challenge's nonce.
    fn evm_payload(c: &PaymentChallenge, key_hex: &str) -> Map<String, Value> {
        use turnpike_evm::evm as x;
        let key = turnpike_evm::token::parse_key(key_hex).unwrap();
        let from = x::address_of(key.verifying_key());
        let req = c.request_json().unwrap();
        let terms = evm::Terms::of(&req).unwrap();
        let valid_before = wire::parse_rfc3339(c.expires.as_deref().unwrap()).unwrap();
        let a = x::Authorization {
            from,
            to: terms.recipient,
            value: terms.amount,
            valid_after: 0,
            valid_before: u128::from(valid_before),
            nonce: evm::challenge_nonce(&c.id, &c.realm),
        };
        let separator = x::Domain {
            name: "USD Coin".into(),
            version: "2".into(),
            chain_id: terms.chain_id,
            verifying_contract: terms.currency,
        }
        .separator();
        let sig = x::sign(&key, &a.digest_with(&separator)).unwrap();
        let mut bytes = sig.r.to_vec();
        bytes.extend_from_slice(&sig.s);
        bytes.push(sig.v);
        let mut p = Map::new();
        for (k, v) in [
            ("type", "authorization".to_string()),
            ("from", x::checksum(&from)),
            ("to", x::checksum(&a.to)),
            ("value", a.value.to_string()),
            ("validAfter", "0".into()),
            ("validBefore", valid_before.to_string()),
            ("nonce", format!("0x{}", hex::encode(a.nonce))),
            ("signature", format!("0x{}", hex::encode(bytes))),
        ] {
            p.insert(k.into(), v.into());
        }
        p
    }

    fn evm_call(name: &str, now: u64) -> CallFacts {
        use sha2::Digest;
        CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some(name.into()),
            args_hash: sha2::Sha256::digest(br#"{"n":1}"#).into(),
            caller: None,
            peer: None,
            now,
        }
    }

    /// An evm credential is bound to its challenge, its call, the price and the payer: every
    /// field altered is refused offline, with the reason.
    #[test]
    fn evm_credentials_are_checked_offline() {
        let r = evm_rail([0x42; 32]);
        let now = 1_800_000_000;
        let offer = crate::offers(None, Some(10_000)).remove(0);
        let c = r.issue_evm(&evm_call("dear", now), 10_000).unwrap();
        let payer = "11".repeat(32);
        let cred = PaymentCredential {
            challenge: c.clone(),
            source: None,
            payload: evm_payload(&c, &payer),
        };
        let ok = |cred: &PaymentCredential, call: &CallFacts, offer: &Offer| {
            r.check_evm(call, offer, cred).map(|_| ())
        };
        let reason = |res: Result<(), Verdict>| match res {
            Err(Verdict::Stale(r)) => r.reason,
            other => panic!("{other:?}"),
        };
        let call = evm_call("dear", now);
        assert_eq!(ok(&cred, &call, &offer), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = cred.clone();
            c.payload.insert(k.into(), v);
            c
        };
        for (k, v, why) in [
            ("value", json!("9999"), "value"),
            (
                "to",
                json!("0x0000000000000000000000000000000000000001"),
                "someone other",
            ),
            ("nonce", json!(format!("0x{}", "22".repeat(32))), "nonce"),
            ("validBefore", json!("1800000100"), "signature"),
            (
                "validBefore",
                json!("1800009999"),
                "longer than the challenge",
            ),
            ("validAfter", json!("1800000500"), "not valid yet"),
            ("type", json!("hash"), "authorization"),
        ] {
            assert!(
                reason(ok(&with(k, v), &call, &offer)).contains(why),
                "{k}: {why}"
            );
        }
        // Another key's signature of the same authorization.
        let theirs = evm_payload(&c, &"33".repeat(32));
        let forged = with("signature", theirs["signature"].clone());
        assert!(reason(ok(&forged, &call, &offer)).contains("not the payer's"));
        // A source that is not the payer.
        let mut other = cred.clone();
        other.source =
            Some("did:pkh:eip155:8453:0x0000000000000000000000000000000000000001".into());
        assert!(reason(ok(&other, &call, &offer)).contains("source"));
        let mut same = cred.clone();
        same.source = Some(format!(
            "did:pkh:eip155:8453:{}",
            cred.payload["from"].as_str().unwrap()
        ));
        assert_eq!(ok(&same, &call, &offer), Ok(()));
        // Another tool, a higher price, after the expiry.
        assert!(reason(ok(&cred, &evm_call("echo", now), &offer)).contains("another call"));
        let dearer = crate::offers(None, Some(10_001)).remove(0);
        assert!(reason(ok(&cred, &call, &dearer)).contains("less than"));
        assert!(reason(ok(&cred, &evm_call("dear", now + 600), &offer)).contains("expired"));
        // A challenge of another key.
        let other_key = evm_rail([0x43; 32]);
        assert!(reason(other_key.check_evm(&call, &offer, &cred).map(|_| ())).contains("id"));
    }

    /// The worked example of docs/MPP.md's evm method, byte for byte.
    #[test]
    fn worked_example_of_the_evm_method() {
        let r = evm_rail([0x42; 32]);
        let call = evm_call("dear", 1_800_000_000);
        let c = r.issue_evm(&call, 10_000).unwrap();
        let request =
            String::from_utf8(wire::b64url_decode(&c.request, 4096, "r").unwrap()).unwrap();
        let payload = evm_payload(&c, &"11".repeat(32));
        let cred = PaymentCredential {
            challenge: c.clone(),
            source: Some(format!(
                "did:pkh:eip155:8453:{}",
                payload["from"].as_str().unwrap()
            )),
            payload,
        };
        let offer = crate::offers(None, Some(10_000)).remove(0);
        assert!(r.check_evm(&call, &offer, &cred).is_ok());
        let grant = Grant {
            rail: RAIL,
            identity: None,
            receipt: Some(format!("{EVM_RECEIPT_PREFIX}0x{}", "ab".repeat(32))),
            about: None,
        };
        let receipt = receipt_for(&cred, &grant, 1_800_000_042).unwrap();
        let text = in_band_text(&Challenge {
            rail: RAIL,
            www_authenticate: c.header(),
            details: challenge_details(&c),
        });
        assert!(
            text.contains("of 10000 atomic units of the token 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 on chain 8453 to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
            "{text}"
        );
        let nonce = hex::encode(evm::challenge_nonce(&c.id, &c.realm));
        let doc = include_str!("../../../docs/MPP.md");
        let mut missing = Vec::new();
        for (what, value) in [
            ("request", request.clone()),
            ("header", c.header()),
            ("nonce", nonce.clone()),
            ("credential", wire::jcs(&cred.to_json())),
            ("authorization", cred.authorization()),
            ("receipt", receipt.header()),
        ] {
            if !doc.contains(&value) {
                missing.push(format!("{what}\t{value}"));
            }
        }
        assert!(
            missing.is_empty(),
            "docs/MPP.md lacks:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn realm_from_public_url() {
        assert_eq!(realm_of("https://mcp.example.com/mcp"), "mcp.example.com");
        assert_eq!(realm_of("http://127.0.0.1:3000/mcp?x"), "127.0.0.1:3000");
        assert_eq!(realm_of("https://u:p@h.example/x"), "h.example");
    }
}
