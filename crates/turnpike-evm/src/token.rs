//! [`Token`]: what every EIP-3009 payment the gateway takes shares, whichever protocol carries
//! it (x402's `exact` scheme, MPP's `evm` charge method): the chain, the token and its EIP-712
//! domain, who is paid, the bounds on payments checked (per caller address and in all,
//! `[x402] checks_per_minute_per_caller` and `checks_per_minute`, and their answers: 429 past a
//! caller's own, 503 past all callers'), the signer's recovery, the spent-set key of an
//! authorization, the chain's state of a payer (balance, nonce), the settlement (the gateway's
//! own key, or a facilitator) and the spend log every settlement attempted is written to
//! ([`crate::spend`], naming the rail and the method that carried it).
//!
//! One `Token` is built from `[x402]` and shared by the rails that take payments in it
//! ([`crate::conf::shared_token`]), so that the settling account has one sender, the bounds
//! count every payment and the spend log holds every settlement.

use std::sync::Arc;
use std::time::Duration;

use k256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use turnpike_core::{CallFacts, Identity, RailAnswer};
use turnpike_lightning::invoice_limit::{InvoiceLimiter, InvoiceRates, Over};
use zeroize::Zeroizing;

use crate::chain::{ChainError, Facilitator, Node};
use crate::evm::{self, Address, Authorization, Domain, Rsv};
use crate::spend::{PaymentRecord, SpendLog};

/// The default bounds on payments checked: one caller address may have 120 checked a minute
/// (each costs a signer recovery and, when it is well formed, calls to the node), all callers
/// together 3,000 (`[x402] checks_per_minute_per_caller`, `checks_per_minute`).
pub const CHECKS: InvoiceRates = InvoiceRates {
    per_caller: 120,
    global: 3000,
};

/// Seconds of clock difference allowed between the gateway, the client and the chain.
pub const SKEW_SECS: u64 = 60;

/// An authorization must stay valid this long after it is presented, to be settled in time.
pub const SETTLE_MARGIN_SECS: u64 = 3;

/// The key under which the one [`Token`] of a build is shared ([`turnpike_conf::Services`]).
pub const SHARED_KEY: &str = "x402-token";

/// The gateway's `[x402]` table: the chain, the token, who is paid and how payments are
/// settled (the x402 rail's settings, and the token of MPP's `evm` method).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X402Config {
    /// The chain, as CAIP-2: `eip155:<chainId>` (`eip155:8453` is Base).
    pub network: String,
    /// The JSON-RPC endpoint of a node of that chain.
    pub rpc_url: String,
    /// The token contract (EIP-3009), `0x` + 40 hex digits.
    pub asset: String,
    /// The token's EIP-712 domain name (`USD Coin` for USDC on Base).
    pub asset_name: String,
    /// The token's EIP-712 domain version (`2` for USDC).
    pub asset_version: String,
    /// Who is paid, `0x` + 40 hex digits.
    pub pay_to: String,
    /// How long an offer may be paid, and the longest an authorization may stay valid, in
    /// seconds.
    #[serde(
        default = "default_max_timeout",
        deserialize_with = "turnpike_core::conf::positive_u64"
    )]
    pub max_timeout_secs: u64,
    /// Settle through this facilitator (`POST <url>/settle`) instead of the gateway's own key.
    #[serde(default)]
    pub facilitator_url: Option<String>,
    /// The file holding the settling account's secp256k1 key (64 hex digits, `0x` allowed).
    #[serde(default)]
    pub settle_key_file: Option<String>,
    /// The environment variable holding that key.
    #[serde(default)]
    pub settle_key_env: Option<String>,
    /// The deadline of each request to the node or the facilitator, in milliseconds.
    #[serde(
        default = "default_rpc_timeout",
        deserialize_with = "turnpike_core::conf::positive_u64"
    )]
    pub rpc_timeout_ms: u64,
    /// How long a settlement transaction is waited for, in seconds.
    #[serde(
        default = "default_settle_timeout",
        deserialize_with = "turnpike_core::conf::positive_u64"
    )]
    pub settle_timeout_secs: u64,
    /// Payments one caller address (IPv6 by its /64) may have checked per minute, a burst of
    /// as many, x402's and MPP `evm`'s together; past it: 429 with `Retry-After`.
    #[serde(
        default = "default_checks_per_caller",
        deserialize_with = "turnpike_core::conf::positive_u64"
    )]
    pub checks_per_minute_per_caller: u64,
    /// Payments all callers together may have checked per minute, in this process (x402's and
    /// MPP `evm`'s together); past it: 503 with `Retry-After`.
    #[serde(
        default = "default_checks",
        deserialize_with = "turnpike_core::conf::positive_u64"
    )]
    pub checks_per_minute: u64,
}

impl X402Config {
    /// An offline example, for tests and benchmarks that check payments without a chain: USDC
    /// on Base (`USD Coin`, version 2) paid to the payee of docs/X402.md's example, offers
    /// valid 60 s, settled by the gateway's own key (from `UNUSED`, a variable never set)
    /// through a node at 127.0.0.1:9 that nothing answers.
    pub fn offline_example() -> Self {
        X402Config {
            network: "eip155:8453".into(),
            rpc_url: "http://127.0.0.1:9".into(),
            asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into(),
            asset_name: "USD Coin".into(),
            asset_version: "2".into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_secs: 60,
            facilitator_url: None,
            settle_key_file: None,
            settle_key_env: Some("UNUSED".into()),
            rpc_timeout_ms: 1000,
            settle_timeout_secs: 10,
            checks_per_minute_per_caller: 120,
            checks_per_minute: 3000,
        }
    }

    /// The bounds on payments checked ([`CHECKS`] unless configured).
    pub fn check_rates(&self) -> InvoiceRates {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        InvoiceRates {
            per_caller: clamp(self.checks_per_minute_per_caller),
            global: clamp(self.checks_per_minute),
        }
    }
}

fn default_checks_per_caller() -> u64 {
    u64::from(CHECKS.per_caller)
}
fn default_checks() -> u64 {
    u64::from(CHECKS.global)
}
fn default_max_timeout() -> u64 {
    300
}
fn default_rpc_timeout() -> u64 {
    5000
}
fn default_settle_timeout() -> u64 {
    60
}

/// The chain id of a CAIP-2 `eip155:<id>` network.
pub fn chain_id_of(network: &str) -> Option<u64> {
    let id = network.strip_prefix("eip155:")?;
    if id.is_empty()
        || (id.len() > 1 && id.starts_with('0'))
        || !id.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    id.parse().ok().filter(|v| *v > 0)
}

/// Reads a hex secp256k1 key (`0x` allowed, surrounding space ignored).
pub fn parse_key(text: &str) -> Option<SigningKey> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    if t.len() != 64 {
        return None;
    }
    let mut b = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(t, &mut b[..]).ok()?;
    SigningKey::from_slice(&b[..]).ok()
}

/// Who settles payments.
pub enum Settler {
    /// The gateway's own account: it sends `transferWithAuthorization` and pays the gas.
    Own {
        /// The account's key (never logged).
        key: SigningKey,
        /// Its address.
        address: Address,
        /// Held from reading the account's nonce to sending, so that concurrent settlements
        /// get consecutive nonces.
        sending: tokio::sync::Mutex<()>,
    },
    /// A facilitator.
    Facilitator(Facilitator),
}

impl std::fmt::Debug for Settler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Settler::Own { address, .. } => write!(f, "Own({})", evm::checksum(address)),
            Settler::Facilitator(x) => write!(f, "{x:?}"),
        }
    }
}

impl Settler {
    /// The gateway's own account, with `key`.
    pub fn own(key: SigningKey) -> Self {
        let address = evm::address_of(key.verifying_key());
        Settler::Own {
            key,
            address,
            sending: tokio::sync::Mutex::new(()),
        }
    }
}

/// Why a settlement did not happen.
#[derive(Debug)]
pub enum SettleError {
    /// Refused: nothing moved (the transfer would revert, or reverted).
    Refused(String),
    /// The node or facilitator could not be reached before anything was sent.
    Down(String),
    /// Sent, but its outcome is not known.
    Unknown(String),
}

/// What the chain says of an authorization before it is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainState {
    /// The payer's balance covers it and its nonce is unused on the token.
    Payable,
    /// Its nonce was already used on the token.
    Used,
    /// The payer's balance does not cover it.
    Short,
}

/// A payment held back by a bound on payments checked ([`Token::admit_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Which bound: the caller's own, or all callers'.
    pub over: Over,
    /// How long until a payment fits.
    pub wait: Duration,
}

impl Held {
    /// Whole seconds to wait, at least one.
    pub fn retry_secs(&self) -> u64 {
        (self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0)).max(1)
    }

    /// The refusal's reason, naming the payments (`what`: `x402`, `evm`).
    pub fn reason(&self, what: &str) -> String {
        let whose = match self.over {
            Over::Caller => "from this address",
            Over::All => "from all callers",
        };
        format!(
            "too many {what} payments to check {whose}; retry in {} s",
            self.retry_secs()
        )
    }

    /// The answer of a call so held back: past the caller's own bound, 429 (its own rate);
    /// past all callers', 503; each with `Retry-After` (and `data.retry_after`).
    pub fn answer(&self, what: &str) -> RailAnswer {
        let secs = self.retry_secs();
        let (status, message) = match self.over {
            Over::Caller => (
                429,
                format!(
                    "too many {what} payments to check from this address: retry after Retry-After"
                ),
            ),
            Over::All => (
                503,
                format!("too many {what} payments to check right now: retry after Retry-After"),
            ),
        };
        RailAnswer {
            status,
            message,
            www_authenticate: Vec::new(),
            headers: vec![("retry-after", secs.to_string())],
            data: vec![("retry_after", Value::from(secs))],
        }
    }
}

/// Whom a settlement is for, as its spend-log line names it.
#[derive(Debug, Clone, Copy)]
pub struct Paying<'a> {
    /// The call paid for (its method and tool).
    pub call: &'a CallFacts,
    /// The rail that took the payment (`x402`, `mpp`).
    pub rail: &'static str,
    /// Its method: x402's scheme (`exact`), MPP's charge method (`evm`).
    pub method: &'static str,
}

/// The token payments are taken in, and how they are settled. See the module docs.
pub struct Token {
    network: String,
    asset_name: String,
    asset_version: String,
    chain_id: u64,
    asset: Address,
    pay_to: Address,
    separator: [u8; 32],
    node: Node,
    settler: Settler,
    settle_timeout: Duration,
    checks: InvoiceLimiter,
    log: Arc<SpendLog>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Token({} {} to {}, {:?})",
            self.network,
            evm::checksum(&self.asset),
            evm::checksum(&self.pay_to),
            self.settler
        )
    }
}

impl Token {
    /// The token of `cfg` (already checked: see [`crate::conf`]), asking `node`, settling with
    /// `settler`, its spend log in memory only ([`Token::with_spend_log`]).
    pub fn new(cfg: &X402Config, node: Node, settler: Settler) -> Result<Self, String> {
        let chain_id = chain_id_of(&cfg.network)
            .ok_or_else(|| format!("network {:?} is not eip155:<chainId>", cfg.network))?;
        let asset = evm::parse_address(&cfg.asset)
            .ok_or_else(|| format!("asset {:?} is not an address", cfg.asset))?;
        let pay_to = evm::parse_address(&cfg.pay_to)
            .ok_or_else(|| format!("pay_to {:?} is not an address", cfg.pay_to))?;
        let separator = Domain {
            name: cfg.asset_name.clone(),
            version: cfg.asset_version.clone(),
            chain_id,
            verifying_contract: asset,
        }
        .separator();
        Ok(Token {
            network: cfg.network.clone(),
            asset_name: cfg.asset_name.clone(),
            asset_version: cfg.asset_version.clone(),
            chain_id,
            asset,
            pay_to,
            separator,
            node,
            settler,
            settle_timeout: Duration::from_secs(cfg.settle_timeout_secs),
            checks: InvoiceLimiter::new(cfg.check_rates()),
            log: Arc::new(SpendLog::memory()),
        })
    }

    /// The token of `cfg`, with its node (`rpc_url`) and its settler (the facilitator, or the
    /// key of `settle_key_file`/`settle_key_env`).
    pub fn from_config(cfg: &X402Config) -> Result<Self, String> {
        let timeout = Duration::from_millis(cfg.rpc_timeout_ms);
        let node = Node::new(&cfg.rpc_url, timeout)?;
        let settler = if let Some(url) = &cfg.facilitator_url {
            Settler::Facilitator(Facilitator::new(url, timeout)?)
        } else {
            let text = if let Some(path) = &cfg.settle_key_file {
                zeroize::Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("settle_key_file {path}: {e}"))?,
                )
            } else if let Some(var) = &cfg.settle_key_env {
                zeroize::Zeroizing::new(
                    std::env::var(var)
                        .map_err(|_| format!("settle_key_env: the variable {var} is not set"))?,
                )
            } else {
                return Err("no way to settle payments".into());
            };
            let key = parse_key(&text)
                .ok_or("the settlement key is not 64 hex digits of a secp256k1 key")?;
            Settler::own(key)
        };
        Token::new(cfg, node, settler)
    }

    /// The token writing every settlement it attempts to `log` ([`crate::spend`]).
    pub fn with_spend_log(mut self, log: SpendLog) -> Self {
        self.log = Arc::new(log);
        self
    }

    /// The spend log.
    pub fn spend_log(&self) -> &Arc<SpendLog> {
        &self.log
    }

    /// The chain as CAIP-2 (`eip155:<chainId>`).
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The token contract.
    pub fn asset(&self) -> Address {
        self.asset
    }

    /// The EIP-712 domain separator of the token.
    pub fn separator(&self) -> [u8; 32] {
        self.separator
    }

    /// Who is paid.
    pub fn pay_to(&self) -> Address {
        self.pay_to
    }

    /// The settling account, when the gateway settles itself.
    pub fn settler_address(&self) -> Option<Address> {
        match &self.settler {
            Settler::Own { address, .. } => Some(*address),
            Settler::Facilitator(_) => None,
        }
    }

    /// Whether payments are settled by a facilitator (x402's `/settle`).
    pub fn settles_through_facilitator(&self) -> bool {
        matches!(self.settler, Settler::Facilitator(_))
    }

    /// One more payment to check from `call`'s address (IPv6 by its /64), and in all: `Err`
    /// with the bound reached (the caller's own when it is over it) and the wait. Taken before
    /// the signer is recovered or the node asked.
    pub fn admit_check(&self, call: &CallFacts) -> Result<(), Held> {
        let caller = call.peer.map_or_else(
            || "unknown".to_owned(),
            |ip| Identity::anonymous(ip).scope_key(),
        );
        self.checks
            .take_or_say(&caller)
            .map_err(|(wait, over)| Held { over, wait })
    }

    /// Whether `sig` is `a.from`'s EIP-712 signature of `a` under the token's domain.
    pub fn signed_by_payer(&self, a: &Authorization, sig: &Rsv) -> bool {
        let digest = a.digest_with(&self.separator);
        evm::recover(&digest, sig) == Some(a.from)
    }

    /// The spent set's key of an authorization: SHA-256 over the chain, the token, the payer
    /// and the nonce.
    pub fn spent_key(&self, a: &Authorization) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(b"turnpike-x402-nonce\0");
        h.update(self.chain_id.to_be_bytes());
        h.update(self.asset);
        h.update(a.from);
        h.update(a.nonce);
        h.finalize().into()
    }

    /// `a` signed `sig` as an x402 `exact` payment, for a facilitator's `/settle`: the
    /// `PaymentPayload` (version 2) and its `accepted` requirements (the token, its domain,
    /// `payTo`, the amount `a.value`, `maxTimeoutSeconds` `max_timeout_secs`). What another
    /// protocol's EIP-3009 payment (MPP's `evm` method) is settled through a facilitator as.
    pub fn as_x402(&self, a: &Authorization, sig: &Rsv, max_timeout_secs: u64) -> (Value, Value) {
        let accepted = serde_json::json!({
            "scheme": crate::EXACT,
            "network": self.network,
            "amount": a.value.to_string(),
            "asset": evm::checksum(&self.asset),
            "payTo": evm::checksum(&self.pay_to),
            "maxTimeoutSeconds": max_timeout_secs,
            "extra": {"name": self.asset_name, "version": self.asset_version},
        });
        let mut signature = sig.r.to_vec();
        signature.extend_from_slice(&sig.s);
        signature.push(sig.v);
        let payment = serde_json::json!({
            "x402Version": crate::X402_VERSION,
            "accepted": accepted,
            "payload": {
                "authorization": {
                    "from": evm::checksum(&a.from),
                    "to": evm::checksum(&a.to),
                    "value": a.value.to_string(),
                    "validAfter": a.valid_after.to_string(),
                    "validBefore": a.valid_before.to_string(),
                    "nonce": format!("0x{}", hex::encode(a.nonce)),
                },
                "signature": format!("0x{}", hex::encode(signature)),
            },
        });
        (payment, accepted)
    }

    /// What the chain says of `a`: the payer's balance and the nonce's state on the token.
    pub async fn state(&self, a: &Authorization) -> Result<ChainState, ChainError> {
        let balance = self.node.balance_of(&self.asset, &a.from).await?;
        let used = self
            .node
            .authorization_used(&self.asset, &a.from, &a.nonce)
            .await?;
        Ok(if used {
            ChainState::Used
        } else if balance < a.value {
            ChainState::Short
        } else {
            ChainState::Payable
        })
    }

    /// Settles `a` signed `sig` for `paying`: the transaction hash. With a facilitator, `x402`
    /// is the payment as sent and its accepted requirements (`None`: nothing the facilitator
    /// can settle, refused). Whatever comes of it is a line of the spend log.
    pub async fn settle(
        &self,
        paying: &Paying<'_>,
        a: &Authorization,
        sig: &Rsv,
        x402: Option<(&Value, &Value)>,
    ) -> Result<String, SettleError> {
        let outcome = self.settle_unlogged(a, sig, x402).await;
        self.log.record(self.payment_record(paying, a, &outcome));
        outcome
    }

    /// The spend log's line for a settlement of `a` for `paying` that came to `outcome`.
    fn payment_record(
        &self,
        paying: &Paying<'_>,
        a: &Authorization,
        outcome: &Result<String, SettleError>,
    ) -> PaymentRecord {
        let (outcome, transaction, reason) = match outcome {
            Ok(tx) => ("settled", Some(tx.clone()), None),
            Err(SettleError::Refused(why)) => ("refused", None, Some(why.clone())),
            Err(SettleError::Down(why)) => ("failed", None, Some(why.clone())),
            Err(SettleError::Unknown(why)) => ("unknown", None, Some(why.clone())),
        };
        PaymentRecord {
            at: turnpike_core::unix_now(),
            outcome,
            rail: paying.rail,
            payment_method: paying.method,
            transaction,
            payer: evm::checksum(&a.from),
            amount: a.value.to_string(),
            asset: evm::checksum(&self.asset),
            network: self.network.clone(),
            pay_to: evm::checksum(&self.pay_to),
            tool: paying.call.name.clone(),
            method: paying.call.method.clone(),
            reason,
        }
    }

    async fn settle_unlogged(
        &self,
        a: &Authorization,
        sig: &Rsv,
        x402: Option<(&Value, &Value)>,
    ) -> Result<String, SettleError> {
        match &self.settler {
            Settler::Facilitator(f) => {
                let Some((payment, accepted)) = x402 else {
                    return Err(SettleError::Refused(
                        "this payment cannot be settled through the facilitator".into(),
                    ));
                };
                match f.settle(payment, accepted).await {
                    // What the facilitator says it settled is believed once the chain shows it.
                    Ok(r) if r.success && !r.transaction.is_empty() => {
                        self.confirm(&r.transaction, a).await?;
                        Ok(r.transaction)
                    }
                    Ok(r) => Err(SettleError::Refused(format!(
                        "the facilitator refused it ({})",
                        r.error_reason.as_deref().unwrap_or("no reason given")
                    ))),
                    // A facilitator that did not answer may still have settled.
                    Err(e) => Err(SettleError::Unknown(e.to_string())),
                }
            }
            Settler::Own {
                key,
                address,
                sending,
            } => {
                let data = evm::transfer_with_authorization_call(a, sig);
                let gas = match self.node.estimate_gas(address, &self.asset, &data).await {
                    Ok(g) => g,
                    Err(ChainError::Rpc(why)) => return Err(SettleError::Refused(why)),
                    Err(e) => return Err(SettleError::Down(e.to_string())),
                };
                let tx_hash = {
                    let _one = sending.lock().await;
                    let nonce = self
                        .node
                        .pending_nonce(address)
                        .await
                        .map_err(|e| SettleError::Down(e.to_string()))?;
                    let gas_price = self
                        .node
                        .quantity("eth_gasPrice", serde_json::json!([]))
                        .await
                        .map_err(|e| SettleError::Down(e.to_string()))?;
                    let tx = evm::LegacyTx {
                        nonce,
                        gas_price,
                        gas: gas.saturating_mul(5) / 4 + 10_000,
                        to: self.asset,
                        value: 0,
                        data,
                        chain_id: self.chain_id,
                    };
                    let (raw, hash) = tx
                        .sign(key)
                        .ok_or_else(|| SettleError::Down("cannot sign the transaction".into()))?;
                    match self.node.send_raw(&raw).await {
                        Ok(_) => {}
                        Err(ChainError::Rpc(why)) => return Err(SettleError::Refused(why)),
                        Err(e) => return Err(SettleError::Unknown(e.to_string())),
                    }
                    format!("0x{}", hex::encode(hash))
                };
                self.wait_receipt(&tx_hash).await?;
                Ok(tx_hash)
            }
        }
    }

    /// Waits for the receipt of `hash`, a transaction a facilitator says settled `a`: `Ok`
    /// when it executed `a` on this token ([`evm::receipt_executes`]); unknown when it was
    /// mined and did not (a facilitator that lies, or settled another payment: the payment
    /// stays spent) or is not seen within the settlement deadline.
    async fn confirm(&self, hash: &str, a: &Authorization) -> Result<(), SettleError> {
        let deadline = tokio::time::Instant::now() + self.settle_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            if let Ok(Some(r)) = self.node.receipt(hash).await {
                if evm::receipt_executes(&r, &self.asset, a) {
                    return Ok(());
                }
                // Whether anything of this payment moved is not known: it stays spent.
                return Err(SettleError::Unknown(format!(
                    "the facilitator's transaction {hash} does not carry this payment"
                )));
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(SettleError::Unknown(format!(
                    "the facilitator's transaction {hash} is not seen on chain within {} s",
                    self.settle_timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Waits for `hash`'s receipt: `Ok` on status 1.
    async fn wait_receipt(&self, hash: &str) -> Result<(), SettleError> {
        let deadline = tokio::time::Instant::now() + self.settle_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.node.receipt_status(hash).await {
                Ok(Some(true)) => return Ok(()),
                Ok(Some(false)) => {
                    return Err(SettleError::Refused(format!("transaction {hash} reverted")))
                }
                Ok(None) | Err(_) => {}
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(SettleError::Unknown(format!(
                    "transaction {hash} not mined within {} s",
                    self.settle_timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}
