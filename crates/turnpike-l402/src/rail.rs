//! [`L402Rail`]: the L402 rail, implementing [`turnpike_core::Rail`].
//!
//! **Challenge.** For a call priced `crate::offer(msat, mode, bundle)` the rail asks its
//! Lightning backend for an invoice (within the caller's and the process's invoice rates:
//! [`crate::invoice_limit`]), mints a macaroon whose identifier names the invoice's payment
//! hash and a fresh token id, and answers
//! `WWW-Authenticate: L402 macaroon="<padded base64>", invoice="<bolt11>"`. Nothing is
//! written: the token's root key is derived, HMAC-SHA256(master, `"turnpike-l402-root"` ‖
//! token id) ([`derive_root_key`]), from the store's master secret, and everything its record
//! will hold is in its caveats (`amount_msat` included). The store learns of a token when it is
//! first used with a valid preimage (step 8).
//!
//! | mode | invoice amount | caveats minted (besides resource, method, mode) | a call |
//! |---|---|---|---|
//! | `per_call` | `msat` | `tools=<tool>`, `expires=now+token_ttl_secs`, `amount_msat` | spends the token (single use) |
//! | `balance` | `max(bundle, msat)` | `credit_msat=<amount>`, `expires=now+token_ttl_secs`, `amount_msat` | debits `msat` atomically; refunded if the upstream fails |
//! | `time_pass` | `msat` | `tools=<tool>`, `expires=now+bundle` (or `pass_secs`), `amount_msat` | passes until expiry |
//!
//! **Verification** (the first failing step decides):
//! 1. the macaroon decodes (V2, within limits) and its identifier is a version-0 L402 identifier
//!    — else *Invalid*;
//! 2. SHA-256(preimage) equals the payment hash (constant time) — else *Invalid*;
//! 3. the root key: the derived one; when the chain does not hold for it, the root key stored
//!    for the token id by older versions, if any (store down: *Unavailable*);
//! 4. the HMAC chain holds for that root key — else *Invalid*;
//! 5. every caveat is one turnpike knows — else *Invalid*;
//! 6. the caveats allow this call (resource, method, tool, mode, expiry) — else *Stale*
//!    (the caller gets a fresh 402 and can buy a fitting token);
//! 7. the token's record — the stored one once its payment was seen, else the one its first
//!    caveats describe (a token with none: *Invalid*) — is not expired or revoked, is for this
//!    mode, and paid at least this call's price (per call, time pass) — else *Stale*;
//! 8. with a custodial backend (or `confirm_settlement = "always"`), the first use of a token
//!    asks the backend whether the invoice was settled; the answer is recorded, so this happens
//!    once per token (backend down: *Unavailable*; not settled: *Invalid*); the first use
//!    writes the token's row, its payment ledger row and (balance) its balance, atomically;
//! 9. billing: per call — the token's first accepted use is its only one: its payment is
//!    recorded in the store (durable, atomic) and its id goes into the spent set (either already
//!    there: *Stale* "already used"); balance — an atomic debit (not enough left: *Stale* "balance used up");
//!    time pass — nothing more.
//!
//! A pass grants `Identity::L402 { token_id }` (hex). A balance debit's id and amount travel
//! in the grant's receipt (`l402-debit:<id>:<msat>`; [`debited_msat`] reads the amount), and
//! `settle(grant, false)` refunds it. A per-call pass names its token in the receipt
//! (`l402-use:<token id>:<expiry>`): when the upstream refused the call before serving it,
//! `release(grant)` puts a release mark in the spent set, and the token's next use takes that
//! mark atomically and passes once more (concurrent replays are refused as before).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use turnpike_core::conf::{hinted, KEY};
use turnpike_core::{
    About, BoxFuture, CallFacts, Challenge, Credential, CredentialReader, EdgeRequest, Grant,
    Identity, Offer, Rail, RailId, RailMeter, RailPlugin, Refusal, Verdict,
};

use crate::credential::L402Credential;
use crate::offer::BillingMode;
use turnpike_lightning::{BackendConfig, InvoiceState, LightningBackend};
use turnpike_store::SpentSet;
use zeroize::Zeroizing;

use crate::caveat::{self, mode_str, Constraints};
use crate::identifier::Identifier;
use crate::invoice_limit::{InvoiceLimiter, InvoiceRates};
use crate::macaroon::{Limits, Macaroon};
use crate::meter::L402Meter;
use crate::sqlite::{Durability, SqliteStore};
use crate::store::{DebitOutcome, L402Store, MemoryStore, RootKey, TokenRecord};

/// When the rail asks the backend whether a token's invoice was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmSettlement {
    /// When the backend is custodial (someone else could know the preimage). The default.
    #[default]
    Custodial,
    /// For every token (one lookup per token, on its first use).
    Always,
    /// Never: the preimage is the proof.
    Never,
}

/// The rail's settings (the gateway's `[l402]` table, less `store`: see [`StoreConfig::setting`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct L402Config {
    /// The macaroon location hint.
    pub location: String,
    /// How long an invoice can be paid.
    #[serde(deserialize_with = "positive_u64")]
    pub invoice_expiry_secs: u64,
    /// How long a per-call or balance token stays valid after it is minted.
    #[serde(deserialize_with = "positive_u64")]
    pub token_ttl_secs: u64,
    /// Length of a time pass when the offer's `bundle` is 0.
    #[serde(deserialize_with = "positive_u64")]
    pub pass_secs: u64,
    /// The invoice description: this text, a space, then the tool (or method) name.
    pub memo: String,
    /// When to confirm settlement with the backend.
    pub confirm_settlement: ConfirmSettlement,
    /// Largest macaroon accepted, in bytes.
    #[serde(deserialize_with = "positive_usize")]
    pub max_macaroon_bytes: usize,
    /// Most caveats accepted on a macaroon.
    #[serde(deserialize_with = "positive_usize")]
    pub max_caveats: usize,
    /// Invoices a minute one caller (its identity, else its address) can be offered (0: no
    /// bound); over it the call gets no L402 challenge.
    pub invoices_per_minute_per_caller: u32,
    /// Invoices a minute this process offers in all (0: no bound).
    pub invoices_per_minute: u32,
}

impl Default for L402Config {
    fn default() -> Self {
        L402Config {
            location: "turnpike".into(),
            invoice_expiry_secs: 600,
            token_ttl_secs: 86_400,
            pass_secs: 3600,
            memo: "turnpike".into(),
            confirm_settlement: ConfirmSettlement::Custodial,
            max_macaroon_bytes: Limits::default().max_bytes,
            max_caveats: Limits::default().max_caveats,
            invoices_per_minute_per_caller: 20,
            invoices_per_minute: 600,
        }
    }
}

/// Where the rail keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// In process memory: lost on restart (tokens sold are then worthless). Tests and demos.
    Memory,
    /// A SQLite file; a relative `path` is under the gateway's data directory.
    Sqlite {
        /// The database file (default `l402.sqlite`).
        #[serde(default = "default_sqlite_path")]
        path: std::path::PathBuf,
        /// `synchronous = FULL` (an fsync per commit) instead of `NORMAL`.
        #[serde(default)]
        fsync_every_commit: bool,
    },
}

const HINT_POSITIVE: &str = "use a whole number of at least 1";

fn positive_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(hinted(
            format!("[l402] {KEY} must be at least 1"),
            HINT_POSITIVE,
        )),
        v => Ok(v),
    }
}

fn positive_usize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(hinted(
            format!("[l402] {KEY} must be at least 1"),
            HINT_POSITIVE,
        )),
        v => Ok(v),
    }
}

impl StoreConfig {
    /// `[l402] store` as the gateway's file gives it: `"sqlite"` (the default), `"memory"`, or
    /// a table (`{ kind = "sqlite", path = "l402.sqlite", fsync_every_commit = false }`).
    pub fn setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<StoreConfig, D::Error> {
        const HINT: &str = "write store = \"sqlite\" (the default, under data_dir), \"memory\" (lost on restart: tests only) or { kind = \"sqlite\", path = \"l402.sqlite\", fsync_every_commit = false }";
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StoreConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"sqlite\", \"memory\" or a table")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<StoreConfig, E> {
                match s {
                    "memory" => Ok(StoreConfig::Memory),
                    "sqlite" => Ok(StoreConfig::default()),
                    other => Err(hinted(format!("unknown store {other:?}"), HINT)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<StoreConfig, A::Error> {
                StoreConfig::deserialize(serde::de::value::MapAccessDeserializer::new(m))
            }
        }
        d.deserialize_any(V)
    }
}

fn default_sqlite_path() -> std::path::PathBuf {
    "l402.sqlite".into()
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Sqlite {
            path: default_sqlite_path(),
            fsync_every_commit: false,
        }
    }
}

/// Everything needed to build the rail from configuration (the gateway's `[l402]` table).
///
/// ```toml
/// [l402]
/// invoice_expiry_secs = 600
/// token_ttl_secs = 86400
/// [l402.backend]
/// kind = "lnd"
/// url = "https://127.0.0.1:8080"
/// macaroon_path = "/var/lib/lnd/invoice.macaroon"
/// tls_cert_path = "/var/lib/lnd/tls.cert"
/// [l402.store]
/// kind = "sqlite"
/// path = "l402.sqlite"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L402Settings {
    /// The rail's own settings (flattened: they sit at the table's top level).
    #[serde(flatten)]
    pub rail: L402Config,
    /// The Lightning backend invoices are created on.
    pub backend: BackendConfig,
    /// Where tokens, balances and the ledger are kept.
    #[serde(default)]
    pub store: StoreConfig,
}

/// Why the rail could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Creating the Lightning backend failed.
    #[error(transparent)]
    Backend(#[from] turnpike_lightning::LightningError),
    /// Opening the store failed.
    #[error(transparent)]
    Store(#[from] turnpike_store::StoreError),
}

/// The L402 rail. See the module docs.
pub struct L402Rail {
    cfg: L402Config,
    limits: Limits,
    backend: Arc<dyn LightningBackend>,
    store: Arc<dyn L402Store>,
    spent: Arc<dyn SpentSet>,
    /// The store's master secret, read once.
    master: tokio::sync::OnceCell<RootKey>,
    invoices: InvoiceLimiter,
    /// What it counts for the metrics: payments recorded (tokens seen paid) and their sum,
    /// invoices issued, calls charged.
    meter: Arc<L402Meter>,
}

/// The domain-separation prefix of a derived root key.
const ROOT_KEY_LABEL: &[u8] = b"turnpike-l402-root";

/// A token's root key: HMAC-SHA256(`master`, `"turnpike-l402-root"` ‖ `token_id`).
pub fn derive_root_key(master: &[u8; 32], token_id: &[u8; 32]) -> RootKey {
    use turnpike_core::mac::Mac;
    let mut mac = turnpike_core::mac::hmac_sha256(master);
    mac.update(ROOT_KEY_LABEL);
    mac.update(token_id);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The record a token minted with a derived root key describes: its identifier's payment hash
/// and token id, and the first `mode`, `amount_msat`, `expires` and `credit_msat` caveats (the
/// minter's: a holder can only append). `now` stands for when it was created (it is recorded
/// when its payment is seen). `None` when a caveat the minter always writes is missing.
pub fn minted_record(mac: &Macaroon, id: &Identifier, now: u64) -> Option<TokenRecord> {
    let (mut mode, mut amount, mut expires, mut credit) = (None, None, None, None);
    for cav in mac.caveats() {
        let Ok(text) = std::str::from_utf8(&cav.id) else {
            continue;
        };
        let Some((key, value)) = text.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            caveat::MODE if mode.is_none() => mode = Some(caveat::parse_mode(value)?),
            caveat::AMOUNT_MSAT if amount.is_none() => amount = Some(value.parse().ok()?),
            caveat::EXPIRES if expires.is_none() => expires = Some(value.parse().ok()?),
            caveat::CREDIT_MSAT if credit.is_none() => credit = Some(value.parse().ok()?),
            _ => {}
        }
    }
    let mode = mode?;
    Some(TokenRecord {
        token_id: id.token_id,
        payment_hash: id.payment_hash,
        mode,
        amount_msat: amount?,
        credit_msat: if mode == BillingMode::Balance {
            credit?
        } else {
            0
        },
        expires_at: expires?,
        created_at: now,
        paid_at: None,
    })
}

/// The key a caller's invoices are counted under: its identity where one is known, else its
/// address (an unknown address is one shared caller).
fn invoice_key(call: &CallFacts) -> String {
    match (&call.caller, call.peer) {
        (Some(id), _) => id.scope_key(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "-".into(),
    }
}

/// Prefix of the receipt a balance debit leaves in its grant.
/// A balance debit's receipt: `l402-debit:<debit id>:<msat>`.
const DEBIT_RECEIPT: &str = "l402-debit:";

/// The debit id and amount a grant's receipt names (`l402-debit:<id>:<msat>`; the amount may be
/// absent in receipts minted before it was recorded).
fn parse_debit(grant: &Grant) -> Option<(u64, Option<u64>)> {
    if grant.rail != crate::offer::RAIL {
        return None;
    }
    let rest = grant.receipt.as_deref()?.strip_prefix(DEBIT_RECEIPT)?;
    let (id, msat) = match rest.split_once(':') {
        Some((id, m)) => (id, Some(m.parse::<u64>().ok()?)),
        None => (rest, None),
    };
    Some((id.parse().ok()?, msat))
}

/// The millisatoshis an L402 grant took from a prepaid balance (`None` for other grants:
/// per-call and time-pass tokens were paid for by their own invoice). The gateway counts this
/// against `budgets.msat_per_token_per_day`.
pub fn debited_msat(grant: &Grant) -> Option<u64> {
    parse_debit(grant).and_then(|(_, m)| m)
}

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal::new(crate::offer::RAIL, reason)
}

impl L402Rail {
    /// A rail over a backend, a store and the spent set that makes per-call tokens single-use.
    pub fn new(
        cfg: L402Config,
        backend: Arc<dyn LightningBackend>,
        store: Arc<dyn L402Store>,
        spent: Arc<dyn SpentSet>,
    ) -> Self {
        let limits = Limits {
            max_bytes: cfg.max_macaroon_bytes,
            max_caveats: cfg.max_caveats,
        };
        let invoices = InvoiceLimiter::new(InvoiceRates {
            per_caller: cfg.invoices_per_minute_per_caller,
            global: cfg.invoices_per_minute,
        });
        L402Rail {
            cfg,
            limits,
            backend,
            store,
            spent,
            master: tokio::sync::OnceCell::new(),
            invoices,
            meter: Arc::default(),
        }
    }

    /// The store's master secret (read once; store down: an error).
    async fn master(&self) -> Result<&RootKey, turnpike_store::StoreError> {
        self.master
            .get_or_try_init(|| self.store.master_key())
            .await
    }

    /// Whether a fresh invoice could be offered to `call`'s caller now, without taking one:
    /// `Err(wait)` when the caller (or the whole process) is over its invoice rate. The gateway
    /// asks after a call got no challenge at all, to answer 429 rather than 503.
    pub fn invoice_wait(&self, call: &CallFacts) -> Result<(), std::time::Duration> {
        self.invoices.check(&invoice_key(call))
    }

    /// Builds the rail from its settings: connects the backend and opens the store (a relative
    /// SQLite path is taken under `data_dir`).
    pub fn from_settings(
        settings: &L402Settings,
        data_dir: &Path,
        spent: Arc<dyn SpentSet>,
    ) -> Result<Self, BuildError> {
        let backend = turnpike_lightning::connect(&settings.backend)?;
        let store: Arc<dyn L402Store> = match &settings.store {
            StoreConfig::Memory => Arc::new(MemoryStore::new()),
            StoreConfig::Sqlite {
                path,
                fsync_every_commit,
            } => {
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    data_dir.join(path)
                };
                Arc::new(SqliteStore::open(
                    &path,
                    if *fsync_every_commit {
                        Durability::Full
                    } else {
                        Durability::Normal
                    },
                )?)
            }
        };
        Ok(Self::new(settings.rail.clone(), backend, store, spent))
    }

    /// The store (for the admin API and tests).
    pub fn store(&self) -> &Arc<dyn L402Store> {
        &self.store
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn LightningBackend> {
        &self.backend
    }

    /// Mints a token and invoice for `call` under `offer`. `None` when the offer is not an L402
    /// offer or the backend or store cannot be used now.
    pub async fn mint(&self, call: &CallFacts, offer: &Offer) -> Option<Challenge> {
        let crate::offer::L402Terms { msat, mode, bundle } = crate::offer::terms(offer)?;
        let now = call.now;
        let (amount, credit, expires) = match mode {
            BillingMode::PerCall => (msat, 0, now.saturating_add(self.cfg.token_ttl_secs)),
            BillingMode::Balance => {
                let a = bundle.max(msat);
                (a, a, now.saturating_add(self.cfg.token_ttl_secs))
            }
            BillingMode::TimePass => {
                let secs = if bundle == 0 {
                    self.cfg.pass_secs
                } else {
                    bundle
                };
                (msat, 0, now.saturating_add(secs))
            }
        };
        if amount == 0 {
            return None;
        }
        // A token sold while the store is away could not be honoured: none is offered.
        let master = match self.store.available().await {
            Ok(()) => self.master().await,
            Err(e) => Err(e),
        };
        let master = match master {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "L402: the token store cannot be reached; not offering L402");
                return None;
            }
        };
        if let Err(wait) = self.invoices.take(&invoice_key(call)) {
            tracing::debug!(
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "L402: invoice rate reached; not offering L402"
            );
            return None;
        }
        let what = call.name.as_deref().unwrap_or(&call.method);
        let memo: String = format!("{} {}", self.cfg.memo, what)
            .chars()
            .take(200)
            .collect();
        let invoice = match self
            .backend
            .create_invoice(amount, &memo, self.cfg.invoice_expiry_secs)
            .await
        {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(backend = self.backend.name(), error = %e, "L402: cannot create an invoice; not offering L402");
                return None;
            }
        };
        let id = Identifier::random(invoice.payment_hash);
        let root_key = derive_root_key(master, &id.token_id);
        let mut mac = Macaroon::new(&root_key[..], id.encode().to_vec(), &self.cfg.location);
        mac.add_first_party_caveat(format!("{}={}", caveat::RESOURCE, call.resource));
        mac.add_first_party_caveat(format!("{}={}", caveat::METHODS, call.method));
        if mode != BillingMode::Balance && call.method == "tools/call" {
            if let Some(tool) = &call.name {
                mac.add_first_party_caveat(format!("{}={}", caveat::TOOLS, tool));
            }
        }
        mac.add_first_party_caveat(format!("{}={}", caveat::MODE, mode_str(mode)));
        mac.add_first_party_caveat(format!("{}={}", caveat::EXPIRES, expires));
        if mode == BillingMode::Balance {
            mac.add_first_party_caveat(format!("{}={}", caveat::CREDIT_MSAT, credit));
        }
        mac.add_first_party_caveat(format!("{}={}", caveat::AMOUNT_MSAT, invoice.amount_msat));
        let mac_b64 = mac.to_base64();
        let www = format!(
            "L402 macaroon=\"{mac_b64}\", invoice=\"{}\"",
            invoice.bolt11
        );
        let details = serde_json::json!({
            "rail": "l402",
            "scheme": "L402",
            "macaroon": mac_b64,
            "invoice": invoice.bolt11,
            "amount_msat": invoice.amount_msat,
            "mode": mode_str(mode),
            "expires": expires,
            "www_authenticate": www,
        });
        Some(Challenge {
            rail: crate::offer::RAIL,
            www_authenticate: www,
            details,
        })
    }

    /// Verifies a credential for `call` under `offer`. See the module docs for the order.
    pub async fn check(&self, call: &CallFacts, offer: &Offer, cred: &Credential) -> Verdict {
        let Some(L402Credential { macaroon, preimage }) = cred.payload::<L402Credential>() else {
            return Verdict::Invalid(refuse("not an L402 credential"));
        };
        let Some(crate::offer::L402Terms { msat, mode, .. }) = crate::offer::terms(offer) else {
            return Verdict::Stale(refuse("this call does not accept L402"));
        };
        let (mac, id) = match decode_token(macaroon, preimage, self.limits) {
            Ok(t) => t,
            Err(v) => return v,
        };
        let root_key = match self.master().await {
            Ok(m) => derive_root_key(m, &id.token_id),
            Err(e) => return Verdict::Unavailable(refuse(format!("token store: {e}"))),
        };
        let root_key = if mac.verify_signature(&root_key[..]) {
            root_key
        } else {
            // Minted before root keys were derived: its key is stored.
            match self.store.root_key(id.token_id).await {
                Ok(Some(k)) => k,
                Ok(None) => return Verdict::Invalid(refuse("macaroon signature does not verify")),
                Err(e) => return Verdict::Unavailable(refuse(format!("token store: {e}"))),
            }
        };
        let constraints = match check_token(&mac, &root_key, call, mode, preimage) {
            Ok(c) => c,
            Err(v) => return v,
        };
        let record = match self.store.token(id.token_id).await {
            Ok(Some(r)) => r,
            Ok(None) => match minted_record(&mac, &id, call.now) {
                Some(r) => r,
                None => return Verdict::Invalid(refuse("token does not say what it paid")),
            },
            Err(e) => return Verdict::Unavailable(refuse(format!("token store: {e}"))),
        };
        // Expiry first: a revoked token's row may be all the store knows of it.
        if call.now >= record.expires_at {
            return Verdict::Stale(refuse("token expired"));
        }
        if record.payment_hash != id.payment_hash {
            // The store and the macaroon were not minted together.
            return Verdict::Invalid(refuse("token does not match its record"));
        }
        if record.mode != mode {
            return Verdict::Stale(refuse("token is for another billing mode"));
        }
        if mode != BillingMode::Balance && record.amount_msat < msat {
            return Verdict::Stale(refuse("token paid less than this call costs"));
        }
        // A per-call token is confirmed by the call it pays for: once confirmed, it is spent
        // (durably, in the store, as well as in the spent set).
        let newly_confirmed = if record.paid_at.is_none() {
            match self.confirm(&record, preimage, call.now).await {
                Ok(newly) => newly,
                Err(v) => return v,
            }
        } else {
            false
        };
        let identity = Some(Identity::L402 {
            token_id: id.token_id_hex(),
        });
        let about = Some(Arc::new(About {
            caveats: caveat::for_policy(mac.caveats()),
            ..About::default()
        }));
        if mode == BillingMode::PerCall && !newly_confirmed {
            // Used before: it passes again only when that use was released (the upstream
            // refused the call before serving it), and then once.
            return match self
                .spent
                .release(released_key(&id.token_id), call.now)
                .await
            {
                Ok(true) => Verdict::Pass(Grant {
                    rail: crate::offer::RAIL,
                    identity,
                    receipt: Some(use_receipt(&id.token_id, record.expires_at)),
                    about: about.clone(),
                }),
                Ok(false) => Verdict::Stale(refuse("token already used")),
                Err(e) => Verdict::Unavailable(refuse(format!("spent set: {e}"))),
            };
        }
        match mode {
            BillingMode::PerCall => {
                match self
                    .spent
                    .insert(id.token_id, record.expires_at, call.now)
                    .await
                {
                    Ok(true) => Verdict::Pass(Grant {
                        rail: crate::offer::RAIL,
                        identity,
                        receipt: Some(use_receipt(&id.token_id, record.expires_at)),
                        about: about.clone(),
                    }),
                    Ok(false) => Verdict::Stale(refuse("token already used")),
                    Err(e) => Verdict::Unavailable(refuse(format!("spent set: {e}"))),
                }
            }
            BillingMode::Balance => {
                let limit = constraints.credit_msat.unwrap_or(u64::MAX);
                match self.store.debit(id.token_id, msat, limit, call.now).await {
                    Ok(DebitOutcome::Debited { debit_id, .. }) => Verdict::Pass(Grant {
                        rail: crate::offer::RAIL,
                        identity,
                        receipt: Some(format!("{DEBIT_RECEIPT}{debit_id}:{msat}")),
                        about: about.clone(),
                    }),
                    Ok(DebitOutcome::Insufficient { .. }) => {
                        Verdict::Stale(refuse("balance used up"))
                    }
                    Ok(DebitOutcome::NoBalance) => {
                        Verdict::Unavailable(refuse("balance not found for a paid token"))
                    }
                    Err(e) => Verdict::Unavailable(refuse(format!("balance store: {e}"))),
                }
            }
            BillingMode::TimePass => Verdict::Pass(Grant {
                rail: crate::offer::RAIL,
                identity,
                receipt: None,
                about: about.clone(),
            }),
        }
    }

    /// Records a token's payment (confirming it with the backend first where required).
    /// Returns whether this call recorded it (`false`: a concurrent call did), or the verdict
    /// to give when the token must not pass.
    async fn confirm(
        &self,
        record: &TokenRecord,
        preimage: &[u8],
        now: u64,
    ) -> Result<bool, Verdict> {
        let ask = match self.cfg.confirm_settlement {
            ConfirmSettlement::Always => true,
            ConfirmSettlement::Custodial => self.backend.is_custodial(),
            ConfirmSettlement::Never => false,
        };
        if ask {
            match self.backend.lookup_invoice(&record.payment_hash).await {
                Ok(InvoiceState::Settled { preimage: reported }) => {
                    if let Some(r) = reported {
                        if !turnpike_core::ct_eq(&r, preimage) {
                            return Err(Verdict::Invalid(refuse(
                                "preimage differs from the one the backend reports",
                            )));
                        }
                    }
                }
                Ok(InvoiceState::Open) => {
                    return Err(Verdict::Invalid(refuse("invoice is not paid")))
                }
                Ok(InvoiceState::Expired) => {
                    return Err(Verdict::Invalid(refuse("invoice expired unpaid")))
                }
                Err(e) => {
                    tracing::warn!(backend = self.backend.name(), error = %e, "L402: cannot confirm a payment");
                    return Err(Verdict::Unavailable(refuse(
                        "cannot confirm the payment with the lightning backend",
                    )));
                }
            }
        }
        let recorded = self
            .store
            .pay(record.clone(), now)
            .await
            .map_err(|e| Verdict::Unavailable(refuse(format!("token store: {e}"))))?;
        if recorded {
            self.meter.payment(record.amount_msat);
        }
        Ok(recorded)
    }

    /// The payments this rail has recorded since it was built (each token's invoice, once, at
    /// its first use) and their sum in millisatoshis: the money received, as opposed to the
    /// invoices offered.
    pub fn payments(&self) -> (u64, u64) {
        self.meter.payments()
    }

    /// Makes a per-call token usable once more after the upstream refused the call it paid
    /// for: a release mark goes into the spent set (until the token expires), which the next
    /// use takes atomically. The token stays spent in the store; a spent set that forgets (the
    /// in-memory one across a restart) leaves it spent.
    pub async fn release_use(&self, grant: &Grant) {
        let Some((token_id, expires_at)) = parse_use(grant) else {
            return;
        };
        let now = turnpike_core::unix_now();
        if let Err(e) = self
            .spent
            .insert(released_key(&token_id), expires_at, now)
            .await
        {
            tracing::warn!(error = %e, "L402: cannot release a per-call token");
        }
    }

    /// Refunds a balance debit when the upstream failed.
    pub async fn refund(&self, grant: &Grant, upstream_ok: bool) {
        if upstream_ok || grant.rail != crate::offer::RAIL {
            return;
        }
        let Some((id, _)) = parse_debit(grant) else {
            return;
        };
        let now = turnpike_core::unix_now();
        if let Err(e) = self.store.refund(id, now).await {
            tracing::warn!(error = %e, debit_id = id, "L402: refund failed");
        }
    }
}

/// Verification steps 1 and 2, which need no state: decodes the macaroon (within `limits`) and
/// its L402 identifier, and checks that SHA-256(`preimage`) is the payment hash (in constant
/// time). The error is the verdict to give.
pub fn decode_token(
    macaroon: &[u8],
    preimage: &[u8],
    limits: Limits,
) -> Result<(Macaroon, Identifier), Verdict> {
    let mac = Macaroon::decode(macaroon, limits)
        .map_err(|e| Verdict::Invalid(refuse(format!("malformed macaroon: {e}"))))?;
    let id = Identifier::decode(mac.identifier())
        .map_err(|e| Verdict::Invalid(refuse(format!("not an L402 token: {e}"))))?;
    let hash: [u8; 32] = Sha256::digest(preimage).into();
    if preimage.len() != 32 || !turnpike_core::ct_eq(&hash, &id.payment_hash) {
        return Err(Verdict::Invalid(refuse(
            "preimage does not match the payment hash",
        )));
    }
    Ok((mac, id))
}

/// Verification steps 4 to 6, given the token's root key: the HMAC chain, then the caveats
/// (all known, all satisfied by `call` billed as `mode`). Returns the folded caveats.
pub fn check_token(
    mac: &Macaroon,
    root_key: &[u8; 32],
    call: &CallFacts,
    mode: BillingMode,
    preimage: &[u8],
) -> Result<Constraints, Verdict> {
    if !mac.verify_signature(root_key) {
        return Err(Verdict::Invalid(refuse(
            "macaroon signature does not verify",
        )));
    }
    let constraints = Constraints::from_caveats(mac.caveats())
        .map_err(|e| Verdict::Invalid(refuse(format!("unsupported caveat: {e}"))))?;
    constraints
        .check(call, mode, preimage)
        .map_err(|why| match why {
            caveat::Unsatisfied::Preimage | caveat::Unsatisfied::NoMode => {
                Verdict::Invalid(refuse(why.to_string()))
            }
            _ => Verdict::Stale(refuse(why.to_string())),
        })?;
    Ok(constraints)
}

impl Rail for L402Rail {
    fn kind(&self) -> RailId {
        crate::offer::RAIL
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
        Box::pin(self.check(call, offer, credential))
    }

    fn settle<'a>(&'a self, grant: &'a Grant, upstream_ok: bool) -> BoxFuture<'a, ()> {
        Box::pin(self.refund(grant, upstream_ok))
    }

    fn release<'a>(&'a self, grant: &'a Grant) -> BoxFuture<'a, ()> {
        Box::pin(self.release_use(grant))
    }

    /// Only a balance debit depends on the JSON-RPC outcome (refunded when the call failed); a
    /// per-call use is released on the HTTP status alone.
    fn needs_outcome(&self, grant: &Grant) -> bool {
        parse_debit(grant).is_some()
    }

    /// A caller over its invoice rate waits (`l402_invoices`): 429, not 503.
    fn issue_wait(&self, call: &CallFacts) -> Option<(std::time::Duration, &'static str)> {
        self.invoice_wait(call)
            .err()
            .map(|wait| (wait, "l402_invoices"))
    }

    /// The price of the call, for a per-call token or a balance debit; a time pass charges
    /// nothing per call.
    fn charged_msat(&self, grant: &Grant, offer: &Offer) -> u64 {
        match crate::offer::terms(offer) {
            Some(t) if grant.rail == crate::offer::RAIL && t.mode != BillingMode::TimePass => {
                t.msat
            }
            _ => 0,
        }
    }

    /// A payment pays for the round.
    fn pays_for_round(&self, _grant: &Grant) -> bool {
        true
    }

    /// A balance debit's amount ([`debited_msat`]).
    fn debited_msat(&self, grant: &Grant) -> Option<u64> {
        debited_msat(grant)
    }
}

/// At the edge: its credentials read by [`L402Credentials`]; its challenge first (L402 clients
/// read only the first), its in-band words.
impl RailPlugin for L402Rail {
    fn id(&self) -> RailId {
        crate::offer::RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        &L402Credentials
    }

    fn challenge_order(&self) -> u8 {
        0
    }

    fn in_band_text(&self, challenge: &Challenge, _first: bool) -> String {
        in_band_text(challenge)
    }

    fn meter(self: Arc<Self>) -> Option<Arc<dyn RailMeter>> {
        Some(self.meter.clone())
    }
}

/// How L402 credentials are read: `Authorization: L402 …` (or `LSAT`), the `Macaroon` header
/// and `params._meta["turnpike/l402"]`. The running rail reads through it, and it is registered
/// alone where the rail is off (no `[lightning]`): the credentials are read, and refused as for
/// a call that does not accept L402, and the `Macaroon` header is stripped.
pub struct L402Credentials;

impl RailPlugin for L402Credentials {
    fn id(&self) -> RailId {
        crate::offer::RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        self
    }

    /// Its series at zero: they are there whether the rail runs or not.
    fn meter(self: Arc<Self>) -> Option<Arc<dyn RailMeter>> {
        Some(Arc::new(L402Meter::default()))
    }
}

impl CredentialReader for L402Credentials {
    fn parse_authorization(
        &self,
        scheme: &str,
        params: &str,
        _req: &EdgeRequest<'_>,
    ) -> Option<turnpike_core::plugin::Parsed> {
        crate::credential::parse_authorization(scheme, params)
    }

    fn credential_headers(&self) -> &'static [&'static str] {
        &[crate::credential::MACAROON_HEADER]
    }

    /// Every line of the one header it reads: `Macaroon`.
    fn parse_header(&self, _name: &str, value: &str) -> Option<turnpike_core::plugin::Parsed> {
        Some(crate::credential::parse_macaroon_header(value))
    }

    fn meta_keys(&self) -> &'static [&'static str] {
        &[crate::credential::META_L402]
    }

    /// The one key it reads: `turnpike/l402`.
    fn parse_meta(
        &self,
        _key: &str,
        value: &serde_json::Value,
    ) -> Option<turnpike_core::plugin::Parsed> {
        Some(crate::credential::parse_meta(value))
    }
}

/// The in-band words for an L402 challenge: the invoice, what it buys, and how to retry with
/// the macaroon and the payment's preimage.
pub fn in_band_text(challenge: &Challenge) -> String {
    use serde_json::Value;
    let d = &challenge.details;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let msat = d.get("amount_msat").and_then(Value::as_u64).unwrap_or(0);
    let amount = if msat % 1000 == 0 {
        format!("{} sat", msat / 1000)
    } else {
        format!("{msat} msat")
    };
    let mode = match s("mode").as_str() {
        "balance" => "it buys prepaid credit; later calls debit it until it is used up",
        "time_pass" => "it buys unlimited calls of this tool until the pass expires",
        _ => "it pays for this one call",
    };
    format!(
        "Pay (L402): pay the Lightning invoice {} ({amount}; {mode}) with a Lightning \
         wallet, which gives you the payment's preimage (64 hex digits). Then retry this \
         same call with the same arguments and add params._meta[\"turnpike/l402\"] = \
         {{\"macaroon\": \"{}\", \"preimage\": \"<preimage hex>\"}} (over HTTP, the \
         header `Authorization: L402 <macaroon>:<preimage hex>` works too). ",
        s("invoice"),
        s("macaroon"),
    )
}

/// Prefix of the receipt a per-call pass leaves in its grant:
/// `l402-use:<hex token id>:<token expiry>`, so that [`Rail::release`] can release the use.
const USE_RECEIPT: &str = "l402-use:";

fn use_receipt(token_id: &[u8; 32], expires_at: u64) -> String {
    format!("{USE_RECEIPT}{}:{expires_at}", hex::encode(token_id))
}

/// The token id and expiry a per-call grant's receipt names.
fn parse_use(grant: &Grant) -> Option<([u8; 32], u64)> {
    if grant.rail != crate::offer::RAIL {
        return None;
    }
    let rest = grant.receipt.as_deref()?.strip_prefix(USE_RECEIPT)?;
    let (id_hex, expires) = rest.split_once(':')?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(id_hex, &mut id).ok()?;
    Some((id, expires.parse().ok()?))
}

/// The spent-set key that marks a per-call token's use as released (distinct from the token
/// id, which stays in the set).
fn released_key(token_id: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"turnpike-l402-released-use\0");
    h.update(token_id);
    h.finalize().into()
}

#[cfg(test)]
mod receipt_tests {
    use super::*;

    fn grant(rail: turnpike_core::RailId, receipt: Option<&str>) -> Grant {
        Grant {
            rail,
            identity: None,
            receipt: receipt.map(str::to_owned),
            about: None,
        }
    }

    #[test]
    fn debit_receipts_carry_the_amount() {
        let g = grant(crate::offer::RAIL, Some("l402-debit:42:1500"));
        assert_eq!(parse_debit(&g), Some((42, Some(1500))));
        assert_eq!(debited_msat(&g), Some(1500));
        // Older receipts: the id alone.
        let g = grant(crate::offer::RAIL, Some("l402-debit:42"));
        assert_eq!(parse_debit(&g), Some((42, None)));
        assert_eq!(debited_msat(&g), None);
        for bad in ["l402-debit:x:1", "l402-debit:1:y", "other:1:2", ""] {
            assert_eq!(
                parse_debit(&grant(crate::offer::RAIL, Some(bad))),
                None,
                "{bad}"
            );
        }
        assert_eq!(debited_msat(&grant(crate::offer::RAIL, None)), None);
        assert_eq!(
            debited_msat(&grant(
                turnpike_core::RailId::new("pow"),
                Some("l402-debit:1:2")
            )),
            None
        );
    }
}
