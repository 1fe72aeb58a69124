//! The state the L402 rail keeps, behind small traits (to move to `turnpike-store` once a
//! second user appears):
//!
//! - [`RootKeyStore`]: the master secret every token's root key is derived from (one per
//!   store, shared by every instance on it), and the random root keys stored per token before
//!   root keys were derived (still read, so those tokens keep verifying);
//! - [`TokenStore`]: the tokens whose payment was seen (payment hash, billing mode, amount,
//!   credit, expiry, when paid). A token is written on its first paid use, never when it is
//!   offered: a 402 writes nothing;
//! - [`BalanceStore`]: prepaid balances with an atomic debit per call and a refund per debit;
//! - [`Ledger`]: the money trail — one row per payment, debit, refund, adjustment and
//!   revocation (and, in stores that predate derived root keys, the `invoice` rows written then).
//!
//! Every operation that moves money writes its ledger row in the same atomic step as the change
//! it records (in SQLite: the same transaction, row first). [`MemoryStore`] keeps everything in
//! process memory (tests, demos, a single short-lived process); [`crate::sqlite::SqliteStore`]
//! survives restarts; `crate::postgres::PostgresStore` (feature `postgres`) is shared by several
//! instances. The `contract` test module is run against all three.

use parking_lot::Mutex;
use std::collections::HashMap;
use turnpike_core::BoxFuture;

use crate::offer::BillingMode;
pub use turnpike_store::StoreError;
use zeroize::Zeroizing;

/// A token's root key. Wiped from memory on drop.
pub type RootKey = Zeroizing<[u8; 32]>;

/// What was issued with one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's id (the identifier's last 32 bytes).
    pub token_id: [u8; 32],
    /// The payment hash of the invoice that pays for it.
    pub payment_hash: [u8; 32],
    /// How the token is billed.
    pub mode: BillingMode,
    /// What the invoice asks for.
    pub amount_msat: u64,
    /// What a balance token may spend in total (0 for the other modes).
    pub credit_msat: u64,
    /// When the token stops being valid (the pass's end, for a time pass).
    pub expires_at: u64,
    /// When the token was minted (Unix seconds).
    pub created_at: u64,
    /// When the payment was confirmed (first accepted use), if it was.
    pub paid_at: Option<u64>,
}

/// What an operator's balance adjustment did: the new `(credit, spent)`, `None` when the token
/// has no balance, or why it was refused.
pub type AdjustOutcome = Result<Option<(u64, u64)>, String>;

/// The result of a debit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebitOutcome {
    /// The amount was taken; `debit_id` names it for a refund.
    Debited {
        /// The debit's id.
        debit_id: u64,
        /// What is left after it.
        remaining_msat: u64,
    },
    /// Not enough left (nothing was taken).
    Insufficient {
        /// What is left.
        remaining_msat: u64,
    },
    /// The token has no balance (not a balance token, or its payment is not confirmed).
    NoBalance,
}

/// Kinds of ledger rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    /// An invoice was issued with a token (amount = invoice amount).
    Invoice,
    /// A token's payment was confirmed (amount = invoice amount).
    Payment,
    /// A call was debited from a balance.
    Debit,
    /// A debit was refunded (the upstream failed).
    Refund,
    /// An operator changed a balance's credit (amount = the size of the change; reference:
    /// `+N` or `-N`, then the operator's note).
    Adjustment,
    /// An operator revoked the token (amount 0).
    Revocation,
}

impl LedgerKind {
    /// Lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Invoice => "invoice",
            LedgerKind::Payment => "payment",
            LedgerKind::Debit => "debit",
            LedgerKind::Refund => "refund",
            LedgerKind::Adjustment => "adjustment",
            LedgerKind::Revocation => "revocation",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "invoice" => LedgerKind::Invoice,
            "payment" => LedgerKind::Payment,
            "debit" => LedgerKind::Debit,
            "refund" => LedgerKind::Refund,
            "adjustment" => LedgerKind::Adjustment,
            "revocation" => LedgerKind::Revocation,
            _ => return None,
        })
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Row id, increasing.
    pub id: u64,
    /// Unix seconds.
    pub at: u64,
    /// The token the row is about.
    pub token_id: [u8; 32],
    /// What happened.
    pub kind: LedgerKind,
    /// Millisatoshis moved.
    pub amount_msat: u64,
    /// The payment hash (hex) for invoice and payment rows; the debit id for refund rows.
    pub reference: Option<String>,
}

/// Root keys: the master secret they are derived from, and the ones stored per token before.
pub trait RootKeyStore: Send + Sync {
    /// The master secret root keys are derived from: made once (random) when the store is
    /// created and kept with its state, so every instance sharing the store derives the same
    /// keys. Never logged.
    fn master_key(&self) -> BoxFuture<'_, Result<RootKey, StoreError>>;

    /// The stored root key of a token issued with one ([`TokenStore::issue`]), if any.
    fn root_key(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<RootKey>, StoreError>>;
    /// Whether the store can be reached now (cheap: no round trip when a connection is open).
    /// The rail offers no token while it cannot, so nothing is sold that could not be honoured.
    fn available(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Issued tokens.
pub trait TokenStore: Send + Sync {
    /// Records a new unpaid token with a stored root key, and its invoice in the ledger,
    /// atomically: how tokens were minted before root keys were derived. The rail no longer
    /// calls it; it stays so stores and tools can hold (and tests can make) such tokens.
    fn issue(
        &self,
        record: TokenRecord,
        root_key: RootKey,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The record of a token.
    fn token(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>, StoreError>>;

    /// Marks a token's payment confirmed at `now`: writes the payment row and, for a balance
    /// token, opens its balance with the token's credit — once. Returns `true` the first time,
    /// `false` when it was already confirmed; an unknown token is an error.
    fn confirm_payment(
        &self,
        token_id: [u8; 32],
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Records the payment of a token at `now`, once, in one atomic step: the token's row
    /// (`record`, paid at `now`), its payment row and, for a balance token, its balance. A token
    /// already recorded (issued with a stored root key, unpaid) is confirmed as
    /// [`TokenStore::confirm_payment`] does. Returns `true` the first time, `false` when its
    /// payment was already recorded.
    fn pay(&self, record: TokenRecord, now: u64) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Deletes what unpaid tokens issued with a stored root key left behind once they expired
    /// (before `now`): their root key, their row and their `invoice` ledger row. Paid tokens and
    /// revocations stay. Returns how many tokens were purged.
    fn purge_unpaid(&self, _now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(std::future::ready(Ok(0)))
    }
}

/// Prepaid balances.
pub trait BalanceStore: Send + Sync {
    /// Takes `amount_msat` from the token's balance if what has been spent plus the amount stays
    /// within both the credit bought and `limit_msat` (a credit caveat); atomically, with its
    /// ledger row.
    fn debit(
        &self,
        token_id: [u8; 32],
        amount_msat: u64,
        limit_msat: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<DebitOutcome, StoreError>>;

    /// Gives a debit back, once. Returns whether it was refunded now.
    fn refund(&self, debit_id: u64, now: u64) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// `(credit, spent)` of a token's balance.
    fn balance(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<(u64, u64)>, StoreError>>;

    /// An operator's change to a balance's credit by `delta_msat`, with its ledger row
    /// ([`LedgerKind::Adjustment`]), atomically. Refused (`Ok(Err(..))`) when the credit would
    /// fall below zero. `Ok(Ok(None))`: the token has no balance. Stores that cannot do this
    /// answer [`StoreError::Unavailable`].
    fn adjust(
        &self,
        _token_id: [u8; 32],
        _delta_msat: i64,
        _note: String,
        _now: u64,
    ) -> BoxFuture<'_, Result<AdjustOutcome, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "this store cannot adjust balances".into(),
        ))))
    }
}

/// The money trail.
pub trait Ledger: Send + Sync {
    /// Every row about one token, oldest first.
    fn entries(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>>;

    /// Up to `limit` rows with ids above `after_id`, oldest first (an export page). Stores
    /// that cannot list answer [`StoreError::Unavailable`].
    fn page(
        &self,
        _after_id: u64,
        _limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "this store cannot list its ledger".into(),
        ))))
    }

    /// The `limit` newest rows, newest first.
    fn recent(&self, _limit: usize) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "this store cannot list its ledger".into(),
        ))))
    }

    /// Revokes a token: it expires now (every later use is refused as expired), with a
    /// [`LedgerKind::Revocation`] row. A token never used has no row yet: one is written that
    /// only says "expired now" (payment hash all zero, [`REVOKED_HASH`]), so the token is
    /// refused when it comes. Returns whether a token was revoked (always, for stores that
    /// write such rows).
    fn revoke(&self, _token_id: [u8; 32], _now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "this store cannot revoke tokens".into(),
        ))))
    }
}

/// The payment hash of a row written by revoking a token that had none.
pub const REVOKED_HASH: [u8; 32] = [0; 32];

/// The row revoking an unknown token writes: expired at `now`, nothing paid.
pub fn revoked_record(token_id: [u8; 32], now: u64) -> TokenRecord {
    TokenRecord {
        token_id,
        payment_hash: REVOKED_HASH,
        mode: BillingMode::PerCall,
        amount_msat: 0,
        credit_msat: 0,
        expires_at: now,
        created_at: now,
        paid_at: None,
    }
}

/// Everything the L402 rail needs from its state.
pub trait L402Store: RootKeyStore + TokenStore + BalanceStore + Ledger {}
impl<T: RootKeyStore + TokenStore + BalanceStore + Ledger> L402Store for T {}

#[derive(Default)]
struct Inner {
    keys: HashMap<[u8; 32], RootKey>,
    tokens: HashMap<[u8; 32], TokenRecord>,
    /// token id → (credit, spent)
    balances: HashMap<[u8; 32], (u64, u64)>,
    /// debit id → (token id, amount, refunded)
    debits: HashMap<u64, ([u8; 32], u64, bool)>,
    ledger: Vec<LedgerEntry>,
}

impl Inner {
    fn log(
        &mut self,
        at: u64,
        token_id: [u8; 32],
        kind: LedgerKind,
        amount_msat: u64,
        reference: Option<String>,
    ) -> u64 {
        let id = self.ledger.len() as u64 + 1;
        self.ledger.push(LedgerEntry {
            id,
            at,
            token_id,
            kind,
            amount_msat,
            reference,
        });
        id
    }
}

/// All L402 state in process memory, behind one lock. Lost on exit (its master secret too: the
/// tokens it sold are worthless after a restart).
pub struct MemoryStore {
    inner: Mutex<Inner>,
    master: RootKey,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Mutex::default(),
            master: Zeroizing::new(rand::random()),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Inner {
    /// [`TokenStore::confirm_payment`] under the lock.
    fn confirm(&mut self, token_id: [u8; 32], now: u64) -> Result<bool, StoreError> {
        let Some(rec) = self.tokens.get(&token_id).cloned() else {
            return Err(StoreError::Unavailable("unknown token".into()));
        };
        if rec.paid_at.is_some() {
            return Ok(false);
        }
        self.log(
            now,
            token_id,
            LedgerKind::Payment,
            rec.amount_msat,
            Some(hex::encode(rec.payment_hash)),
        );
        if let Some(r) = self.tokens.get_mut(&token_id) {
            r.paid_at = Some(now);
        }
        if rec.mode == BillingMode::Balance {
            self.balances.insert(token_id, (rec.credit_msat, 0));
        }
        Ok(true)
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl RootKeyStore for MemoryStore {
    fn master_key(&self) -> BoxFuture<'_, Result<RootKey, StoreError>> {
        ready(Ok(self.master.clone()))
    }

    fn root_key(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<RootKey>, StoreError>> {
        ready(Ok(self.inner.lock().keys.get(&token_id).cloned()))
    }
}

impl TokenStore for MemoryStore {
    fn issue(
        &self,
        record: TokenRecord,
        root_key: RootKey,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut g = self.inner.lock();
        if g.tokens.contains_key(&record.token_id) {
            return ready(Err(StoreError::Unavailable(
                "token id already issued".into(),
            )));
        }
        g.log(
            record.created_at,
            record.token_id,
            LedgerKind::Invoice,
            record.amount_msat,
            Some(hex::encode(record.payment_hash)),
        );
        g.keys.insert(record.token_id, root_key);
        g.tokens.insert(record.token_id, record);
        ready(Ok(()))
    }

    fn token(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>, StoreError>> {
        ready(Ok(self.inner.lock().tokens.get(&token_id).cloned()))
    }

    fn confirm_payment(
        &self,
        token_id: [u8; 32],
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        ready(self.inner.lock().confirm(token_id, now))
    }

    fn pay(&self, record: TokenRecord, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut g = self.inner.lock();
        let token_id = record.token_id;
        let stored = g.tokens.entry(token_id).or_insert(TokenRecord {
            paid_at: None,
            ..record.clone()
        });
        if stored.payment_hash != record.payment_hash {
            return ready(Ok(false));
        }
        ready(g.confirm(token_id, now))
    }

    fn purge_unpaid(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut g = self.inner.lock();
        let gone: Vec<[u8; 32]> = g
            .tokens
            .values()
            .filter(|r| r.paid_at.is_none() && r.expires_at < now && r.payment_hash != REVOKED_HASH)
            .map(|r| r.token_id)
            .collect();
        for id in &gone {
            g.tokens.remove(id);
            g.keys.remove(id);
        }
        g.ledger
            .retain(|e| !(e.kind == LedgerKind::Invoice && gone.contains(&e.token_id)));
        ready(Ok(gone.len() as u64))
    }
}

impl BalanceStore for MemoryStore {
    fn debit(
        &self,
        token_id: [u8; 32],
        amount_msat: u64,
        limit_msat: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<DebitOutcome, StoreError>> {
        let mut g = self.inner.lock();
        let Some(&(credit, spent)) = g.balances.get(&token_id) else {
            return ready(Ok(DebitOutcome::NoBalance));
        };
        let cap = credit.min(limit_msat);
        let remaining = cap.saturating_sub(spent);
        if amount_msat > remaining {
            return ready(Ok(DebitOutcome::Insufficient {
                remaining_msat: remaining,
            }));
        }
        let debit_id = g.log(now, token_id, LedgerKind::Debit, amount_msat, None);
        g.balances.insert(token_id, (credit, spent + amount_msat));
        g.debits.insert(debit_id, (token_id, amount_msat, false));
        ready(Ok(DebitOutcome::Debited {
            debit_id,
            remaining_msat: remaining - amount_msat,
        }))
    }

    fn refund(&self, debit_id: u64, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut g = self.inner.lock();
        let Some(&(token_id, amount, refunded)) = g.debits.get(&debit_id) else {
            return ready(Ok(false));
        };
        if refunded {
            return ready(Ok(false));
        }
        g.log(
            now,
            token_id,
            LedgerKind::Refund,
            amount,
            Some(debit_id.to_string()),
        );
        g.debits.insert(debit_id, (token_id, amount, true));
        if let Some(b) = g.balances.get_mut(&token_id) {
            b.1 = b.1.saturating_sub(amount);
        }
        ready(Ok(true))
    }

    fn balance(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<(u64, u64)>, StoreError>> {
        ready(Ok(self.inner.lock().balances.get(&token_id).copied()))
    }

    fn adjust(
        &self,
        token_id: [u8; 32],
        delta_msat: i64,
        note: String,
        now: u64,
    ) -> BoxFuture<'_, Result<AdjustOutcome, StoreError>> {
        let mut g = self.inner.lock();
        let Some(&(credit, spent)) = g.balances.get(&token_id) else {
            return ready(Ok(Ok(None)));
        };
        let Some(new) = credit.checked_add_signed(delta_msat) else {
            return ready(Ok(Err("the credit would fall below zero".into())));
        };
        g.log(
            now,
            token_id,
            LedgerKind::Adjustment,
            delta_msat.unsigned_abs(),
            Some(adjustment_reference(delta_msat, &note)),
        );
        g.balances.insert(token_id, (new, spent));
        ready(Ok(Ok(Some((new, spent)))))
    }
}

/// The reference of an adjustment row: the signed change, then the note.
pub fn adjustment_reference(delta_msat: i64, note: &str) -> String {
    let note: String = note.chars().filter(|c| !c.is_control()).take(200).collect();
    if note.is_empty() {
        format!("{delta_msat:+}")
    } else {
        format!("{delta_msat:+} {note}")
    }
}

impl Ledger for MemoryStore {
    fn entries(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        ready(Ok(self
            .inner
            .lock()
            .ledger
            .iter()
            .filter(|e| e.token_id == token_id)
            .cloned()
            .collect()))
    }

    fn page(
        &self,
        after_id: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        let g = self.inner.lock();
        ready(Ok(g
            .ledger
            .iter()
            .filter(|e| e.id > after_id)
            .take(limit)
            .cloned()
            .collect()))
    }

    fn recent(&self, limit: usize) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        let g = self.inner.lock();
        ready(Ok(g.ledger.iter().rev().take(limit).cloned().collect()))
    }

    fn revoke(&self, token_id: [u8; 32], now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut g = self.inner.lock();
        let rec = g
            .tokens
            .entry(token_id)
            .or_insert_with(|| revoked_record(token_id, now));
        rec.expires_at = rec.expires_at.min(now);
        g.log(now, token_id, LedgerKind::Revocation, 0, None);
        ready(Ok(true))
    }
}

/// A store that fails every call (to test failing closed).
#[derive(Debug, Default, Clone, Copy)]
pub struct DownStore;

fn down<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, StoreError>> {
    ready(Err(StoreError::Unavailable("store is down".into())))
}

impl RootKeyStore for DownStore {
    fn master_key(&self) -> BoxFuture<'_, Result<RootKey, StoreError>> {
        down()
    }
    fn available(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        down()
    }
    fn root_key(&self, _: [u8; 32]) -> BoxFuture<'_, Result<Option<RootKey>, StoreError>> {
        down()
    }
}
impl TokenStore for DownStore {
    fn issue(&self, _: TokenRecord, _: RootKey) -> BoxFuture<'_, Result<(), StoreError>> {
        down()
    }
    fn token(&self, _: [u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>, StoreError>> {
        down()
    }
    fn confirm_payment(&self, _: [u8; 32], _: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        down()
    }
    fn pay(&self, _: TokenRecord, _: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        down()
    }
}
impl BalanceStore for DownStore {
    fn debit(
        &self,
        _: [u8; 32],
        _: u64,
        _: u64,
        _: u64,
    ) -> BoxFuture<'_, Result<DebitOutcome, StoreError>> {
        down()
    }
    fn refund(&self, _: u64, _: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        down()
    }
    fn balance(&self, _: [u8; 32]) -> BoxFuture<'_, Result<Option<(u64, u64)>, StoreError>> {
        down()
    }
}
impl Ledger for DownStore {
    fn entries(&self, _: [u8; 32]) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        down()
    }
}

/// The behaviour every [`L402Store`] must have; the memory, SQLite and PostgreSQL stores all
/// run it.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    pub(crate) fn record(id: u8, mode: BillingMode, credit: u64) -> TokenRecord {
        TokenRecord {
            token_id: [id; 32],
            payment_hash: [id ^ 0xff; 32],
            mode,
            amount_msat: 5000,
            credit_msat: credit,
            expires_at: 10_000,
            created_at: 100,
            paid_at: None,
        }
    }

    pub(crate) async fn run(s: &dyn L402Store) {
        let rec = record(1, BillingMode::Balance, 3000);
        s.issue(rec.clone(), Zeroizing::new([9; 32])).await.unwrap();
        assert!(s.issue(rec.clone(), Zeroizing::new([9; 32])).await.is_err());
        assert_eq!(*s.root_key([1; 32]).await.unwrap().unwrap(), [9; 32]);
        assert!(s.root_key([2; 32]).await.unwrap().is_none());
        assert_eq!(s.token([1; 32]).await.unwrap(), Some(rec.clone()));
        // No balance before the payment is confirmed.
        assert_eq!(
            s.debit([1; 32], 1000, u64::MAX, 200).await.unwrap(),
            DebitOutcome::NoBalance
        );
        assert!(s.confirm_payment([1; 32], 150).await.unwrap());
        assert!(!s.confirm_payment([1; 32], 151).await.unwrap(), "once");
        assert!(s.confirm_payment([2; 32], 151).await.is_err());
        assert_eq!(s.token([1; 32]).await.unwrap().unwrap().paid_at, Some(150));
        assert_eq!(s.balance([1; 32]).await.unwrap(), Some((3000, 0)));
        let DebitOutcome::Debited {
            debit_id,
            remaining_msat,
        } = s.debit([1; 32], 1000, u64::MAX, 200).await.unwrap()
        else {
            panic!("debit")
        };
        assert_eq!(remaining_msat, 2000);
        // A credit caveat below the bought credit caps spending.
        assert_eq!(
            s.debit([1; 32], 1000, 1500, 201).await.unwrap(),
            DebitOutcome::Insufficient {
                remaining_msat: 500
            }
        );
        assert!(matches!(
            s.debit([1; 32], 2000, u64::MAX, 202).await.unwrap(),
            DebitOutcome::Debited {
                remaining_msat: 0,
                ..
            }
        ));
        assert_eq!(
            s.debit([1; 32], 1, u64::MAX, 203).await.unwrap(),
            DebitOutcome::Insufficient { remaining_msat: 0 }
        );
        assert!(s.refund(debit_id, 204).await.unwrap());
        assert!(!s.refund(debit_id, 205).await.unwrap(), "refund once");
        assert!(!s.refund(999_999, 205).await.unwrap());
        assert_eq!(s.balance([1; 32]).await.unwrap(), Some((3000, 2000)));
        let kinds: Vec<_> = s
            .entries([1; 32])
            .await
            .unwrap()
            .iter()
            .map(|e| (e.kind, e.amount_msat))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (LedgerKind::Invoice, 5000),
                (LedgerKind::Payment, 5000),
                (LedgerKind::Debit, 1000),
                (LedgerKind::Debit, 2000),
                (LedgerKind::Refund, 1000),
            ]
        );
        let entries = s.entries([1; 32]).await.unwrap();
        assert_eq!(entries[4].reference, Some(debit_id.to_string()));
        assert_eq!(entries[0].reference, Some(hex::encode([0xfe; 32])));
        // A per-call token gets no balance.
        s.issue(record(3, BillingMode::PerCall, 0), Zeroizing::new([1; 32]))
            .await
            .unwrap();
        assert!(s.confirm_payment([3; 32], 300).await.unwrap());
        assert_eq!(s.balance([3; 32]).await.unwrap(), None);
        assert_eq!(
            s.debit([3; 32], 1, u64::MAX, 301).await.unwrap(),
            DebitOutcome::NoBalance
        );
    }

    /// Many debits at once on one balance never spend more than it holds.
    /// Two stores on one database (two processes' worth) debit one 20-call balance with 60
    /// concurrent calls, alternating: exactly 20 pass and the balance ends spent. The debit ids.
    pub(crate) async fn two_stores_share_one_balance(
        a: std::sync::Arc<dyn L402Store>,
        b: std::sync::Arc<dyn L402Store>,
    ) -> Vec<u64> {
        a.issue(
            record(5, BillingMode::Balance, 20_000),
            Zeroizing::new([1; 32]),
        )
        .await
        .unwrap();
        b.confirm_payment([5; 32], 1).await.unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(60));
        let mut tasks = Vec::new();
        for i in 0..60 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let bar = barrier.clone();
            tasks.push(tokio::spawn(async move {
                bar.wait().await;
                s.debit([5; 32], 1000, u64::MAX, 2).await.unwrap()
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            if let DebitOutcome::Debited { debit_id, .. } = t.await.unwrap() {
                ids.push(debit_id);
            }
        }
        assert_eq!(ids.len(), 20);
        assert_eq!(b.balance([5; 32]).await.unwrap(), Some((20_000, 20_000)));
        ids
    }

    pub(crate) async fn concurrent_debits(s: std::sync::Arc<dyn L402Store>) {
        let rec = record(7, BillingMode::Balance, 10_000);
        s.issue(rec, Zeroizing::new([1; 32])).await.unwrap();
        s.confirm_payment([7; 32], 1).await.unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let s = s.clone();
            let b = barrier.clone();
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                s.debit([7; 32], 1000, u64::MAX, 2).await.unwrap()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), DebitOutcome::Debited { .. }) {
                ok += 1;
            }
        }
        assert_eq!(ok, 10, "exactly the balance is spent");
        assert_eq!(s.balance([7; 32]).await.unwrap(), Some((10_000, 10_000)));
        let debits = s
            .entries([7; 32])
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == LedgerKind::Debit)
            .count();
        assert_eq!(debits, 10, "one ledger row per debit that happened");
    }

    /// The operator's calls: listing the ledger, adjusting a balance, revoking a token.
    pub(crate) async fn admin(s: &dyn L402Store) {
        let tok = record(7, BillingMode::Balance, 10_000);
        s.issue(tok.clone(), Zeroizing::new([7; 32])).await.unwrap();
        s.confirm_payment(tok.token_id, 200).await.unwrap();
        assert_eq!(
            s.adjust(tok.token_id, 2500, "top-up".into(), 300)
                .await
                .unwrap(),
            Ok(Some((12_500, 0)))
        );
        assert!(s
            .adjust(tok.token_id, -20_000, String::new(), 301)
            .await
            .unwrap()
            .is_err());
        assert_eq!(
            s.adjust([9; 32], 1, String::new(), 302).await.unwrap(),
            Ok(None)
        );
        assert!(s.revoke(tok.token_id, 400).await.unwrap());
        assert_eq!(
            s.token(tok.token_id).await.unwrap().unwrap().expires_at,
            400
        );
        // A token never used has no row: revoking it writes one that says "expired".
        assert!(s.revoke([9; 32], 401).await.unwrap());
        assert_eq!(
            s.token([9; 32]).await.unwrap(),
            Some(revoked_record([9; 32], 401))
        );
        let all = s.page(0, 100).await.unwrap();
        let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                LedgerKind::Invoice,
                LedgerKind::Payment,
                LedgerKind::Adjustment,
                LedgerKind::Revocation,
                LedgerKind::Revocation
            ]
        );
        assert_eq!(all[2].amount_msat, 2500);
        assert_eq!(all[2].reference.as_deref(), Some("+2500 top-up"));
        assert_eq!(s.page(all[1].id, 1).await.unwrap(), all[2..3].to_vec());
        let recent = s.recent(2).await.unwrap();
        assert_eq!(recent, vec![all[4].clone(), all[3].clone()]);
    }

    /// Tokens are written when their payment is seen: `pay` writes the row, the payment row
    /// and the balance once; a stored (older) token is confirmed; expired unpaid older tokens
    /// are purged, paid ones and revocations stay. The master secret is stable.
    pub(crate) async fn paid_on_first_use(s: &dyn L402Store) {
        let m1 = s.master_key().await.unwrap();
        let m2 = s.master_key().await.unwrap();
        assert_eq!(*m1, *m2);
        assert_ne!(*m1, [0; 32]);
        let bal = record(11, BillingMode::Balance, 4000);
        assert_eq!(s.token(bal.token_id).await.unwrap(), None);
        assert!(s.pay(bal.clone(), 500).await.unwrap());
        assert!(!s.pay(bal.clone(), 501).await.unwrap(), "once");
        let stored = s.token(bal.token_id).await.unwrap().unwrap();
        assert_eq!(
            stored,
            TokenRecord {
                paid_at: Some(500),
                ..bal.clone()
            }
        );
        assert_eq!(s.balance(bal.token_id).await.unwrap(), Some((4000, 0)));
        let rows: Vec<_> = s
            .entries(bal.token_id)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.kind, e.amount_msat, e.reference.clone()))
            .collect();
        assert_eq!(
            rows,
            vec![(
                LedgerKind::Payment,
                5000,
                Some(hex::encode(bal.payment_hash))
            )]
        );
        // A per-call token: a row, a payment row, no balance.
        let one = record(12, BillingMode::PerCall, 0);
        assert!(s.pay(one.clone(), 600).await.unwrap());
        assert_eq!(s.balance(one.token_id).await.unwrap(), None);
        assert!(!s.pay(one.clone(), 601).await.unwrap());
        // An older token, issued with a stored root key: `pay` confirms it.
        let old = record(13, BillingMode::PerCall, 0);
        s.issue(old.clone(), Zeroizing::new([3; 32])).await.unwrap();
        assert!(s.pay(old.clone(), 700).await.unwrap());
        assert!(!s.pay(old.clone(), 701).await.unwrap());
        assert_eq!(
            s.token(old.token_id).await.unwrap().unwrap().paid_at,
            Some(700)
        );
        // Older unpaid tokens: purged once expired (the records expire at 10 000).
        let unpaid = record(14, BillingMode::PerCall, 0);
        s.issue(unpaid.clone(), Zeroizing::new([4; 32]))
            .await
            .unwrap();
        assert!(s.revoke([15; 32], 800).await.unwrap());
        assert_eq!(s.purge_unpaid(9_999).await.unwrap(), 0, "not yet expired");
        assert_eq!(s.purge_unpaid(10_001).await.unwrap(), 1);
        assert_eq!(s.token(unpaid.token_id).await.unwrap(), None);
        assert!(s.root_key(unpaid.token_id).await.unwrap().is_none());
        assert!(s.entries(unpaid.token_id).await.unwrap().is_empty());
        assert!(s.token(old.token_id).await.unwrap().is_some(), "paid stays");
        assert_eq!(s.entries(old.token_id).await.unwrap().len(), 2);
        assert!(s.root_key(old.token_id).await.unwrap().is_some());
        assert!(
            s.token([15; 32]).await.unwrap().is_some(),
            "revocation stays"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_contract() {
        contract::run(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn memory_store_paid_on_first_use() {
        contract::paid_on_first_use(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn memory_store_admin() {
        contract::admin(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn sqlite_store_admin() {
        contract::admin(&crate::SqliteStore::open_in_memory().unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_store_concurrent_debits() {
        contract::concurrent_debits(std::sync::Arc::new(MemoryStore::new())).await;
    }
}
