//! The state the L402 rail keeps, behind small traits (to move to `turnpike-store` once a
//! second user appears):
//!
//! - [`RootKeyStore`]: one random root key per token, by token id;
//! - [`TokenStore`]: what was issued (payment hash, billing mode, amount, credit, expiry) and
//!   whether its payment was confirmed;
//! - [`BalanceStore`]: prepaid balances with an atomic debit per call and a refund per debit;
//! - [`Ledger`]: the money trail — one row per invoice, payment, debit and refund.
//!
//! Every operation that moves money writes its ledger row in the same atomic step as the change
//! it records (in SQLite: the same transaction, row first). [`MemoryStore`] keeps everything in
//! process memory (tests, demos, a single short-lived process); [`crate::sqlite::SqliteStore`]
//! survives restarts; `crate::postgres::PostgresStore` (feature `postgres`) is shared by several
//! instances. The `contract` test module is run against all three.

use parking_lot::Mutex;
use std::collections::HashMap;
use turnpike_core::{BillingMode, BoxFuture};
pub use turnpike_store::StoreError;
use zeroize::Zeroizing;

/// A token's root key. Wiped from memory on drop.
pub type RootKey = Zeroizing<[u8; 32]>;

/// What was issued with one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_id: [u8; 32],
    pub payment_hash: [u8; 32],
    pub mode: BillingMode,
    /// What the invoice asks for.
    pub amount_msat: u64,
    /// What a balance token may spend in total (0 for the other modes).
    pub credit_msat: u64,
    /// When the token stops being valid (the pass's end, for a time pass).
    pub expires_at: u64,
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
    Debited { debit_id: u64, remaining_msat: u64 },
    /// Not enough left (nothing was taken).
    Insufficient { remaining_msat: u64 },
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
    pub token_id: [u8; 32],
    pub kind: LedgerKind,
    pub amount_msat: u64,
    /// The payment hash (hex) for invoice and payment rows; the debit id for refund rows.
    pub reference: Option<String>,
}

/// Root keys by token id.
pub trait RootKeyStore: Send + Sync {
    /// The root key of a token, if it was issued here.
    fn root_key(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<RootKey>, StoreError>>;
}

/// Issued tokens.
pub trait TokenStore: Send + Sync {
    /// Records a new token with its root key, and the invoice in the ledger, atomically.
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
    /// [`LedgerKind::Revocation`] row. `false` when the token is unknown.
    fn revoke(&self, _token_id: [u8; 32], _now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "this store cannot revoke tokens".into(),
        ))))
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

/// All L402 state in process memory, behind one lock. Lost on exit.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl RootKeyStore for MemoryStore {
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
        let mut g = self.inner.lock();
        let Some(rec) = g.tokens.get(&token_id).cloned() else {
            return ready(Err(StoreError::Unavailable("unknown token".into())));
        };
        if rec.paid_at.is_some() {
            return ready(Ok(false));
        }
        g.log(
            now,
            token_id,
            LedgerKind::Payment,
            rec.amount_msat,
            Some(hex::encode(rec.payment_hash)),
        );
        if let Some(r) = g.tokens.get_mut(&token_id) {
            r.paid_at = Some(now);
        }
        if rec.mode == BillingMode::Balance {
            g.balances.insert(token_id, (rec.credit_msat, 0));
        }
        ready(Ok(true))
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
        let Some(rec) = g.tokens.get_mut(&token_id) else {
            return ready(Ok(false));
        };
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

    pub fn record(id: u8, mode: BillingMode, credit: u64) -> TokenRecord {
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

    pub async fn run(s: &dyn L402Store) {
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
    pub async fn two_stores_share_one_balance(
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

    pub async fn concurrent_debits(s: std::sync::Arc<dyn L402Store>) {
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
    pub async fn admin(s: &dyn L402Store) {
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
        assert!(!s.revoke([9; 32], 400).await.unwrap());
        assert_eq!(
            s.token(tok.token_id).await.unwrap().unwrap().expires_at,
            400
        );
        let all = s.page(0, 100).await.unwrap();
        let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                LedgerKind::Invoice,
                LedgerKind::Payment,
                LedgerKind::Adjustment,
                LedgerKind::Revocation
            ]
        );
        assert_eq!(all[2].amount_msat, 2500);
        assert_eq!(all[2].reference.as_deref(), Some("+2500 top-up"));
        assert_eq!(s.page(all[1].id, 1).await.unwrap(), all[2..3].to_vec());
        let recent = s.recent(2).await.unwrap();
        assert_eq!(recent, vec![all[3].clone(), all[2].clone()]);
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
