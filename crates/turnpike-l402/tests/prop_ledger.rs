//! Properties of the L402 state, on the memory store and the SQLite store alike:
//!
//! - a balance never goes negative: whatever sequence of debits (any amount, any credit caveat
//!   limit) and refunds (known, unknown, repeated), `spent <= credit` always, each outcome is the
//!   one a simple model predicts, and a refund is paid back once;
//! - no ledger row is lost or duplicated: the rows are exactly the invoice, one payment, one
//!   debit row per accepted debit and one refund row per accepted refund (naming its debit), and
//!   debits minus refunds equal what the balance says was spent.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use turnpike_l402::store::{DebitOutcome, L402Store, LedgerKind, TokenRecord};
use turnpike_l402::BillingMode;
use turnpike_l402::{MemoryStore, SqliteStore};
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
enum Op {
    Debit { amount: u64, limit: u64 },
    Refund(usize),
    RefundUnknown(u64),
    ConfirmAgain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..3_000, prop_oneof![Just(u64::MAX), 0u64..20_000])
            .prop_map(|(amount, limit)| Op::Debit { amount, limit }),
        1 => (prop_oneof![Just(u64::MAX), Just(i64::MAX as u64), 20_000u64..u64::MAX])
            .prop_map(|amount| Op::Debit { amount, limit: u64::MAX }),
        3 => (0usize..64).prop_map(Op::Refund),
        1 => (1_000_000u64..u64::MAX).prop_map(Op::RefundUnknown),
        1 => Just(Op::ConfirmAgain),
    ]
}

fn record(credit: u64) -> TokenRecord {
    TokenRecord {
        token_id: [7; 32],
        payment_hash: [8; 32],
        mode: BillingMode::Balance,
        amount_msat: credit,
        credit_msat: credit,
        expires_at: 1_000_000,
        created_at: 100,
        paid_at: None,
    }
}

async fn check(store: &dyn L402Store, credit: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let id = [7u8; 32];
    store
        .issue(record(credit), Zeroizing::new([1; 32]))
        .await
        .map_err(|e| TestCaseError::fail(format!("issue: {e}")))?;
    prop_assert_eq!(
        store.debit(id, 1, u64::MAX, 101).await.ok(),
        Some(DebitOutcome::NoBalance),
        "no balance before the payment is confirmed"
    );
    prop_assert_eq!(store.confirm_payment(id, 102).await.ok(), Some(true));

    let mut spent = 0u64;
    let mut debits: Vec<(u64, u64)> = Vec::new(); // (debit id, amount)
    let mut refunded: HashMap<u64, bool> = HashMap::new();
    let mut now = 200u64;
    for op in ops {
        now += 1;
        match *op {
            Op::Debit { amount, limit } => {
                let cap = credit.min(limit);
                let remaining = cap.saturating_sub(spent);
                let got = store.debit(id, amount, limit, now).await;
                let got = match got {
                    Ok(g) => g,
                    // The SQLite store stores amounts as i64: an amount beyond that is refused
                    // as an error, and nothing may have changed.
                    Err(_) if amount > i64::MAX as u64 => continue,
                    Err(e) => return Err(TestCaseError::fail(format!("debit: {e}"))),
                };
                if amount <= remaining {
                    let DebitOutcome::Debited {
                        debit_id,
                        remaining_msat,
                    } = got
                    else {
                        return Err(TestCaseError::fail(format!(
                            "expected a debit, got {got:?}"
                        )));
                    };
                    prop_assert_eq!(remaining_msat, remaining - amount);
                    prop_assert!(!refunded.contains_key(&debit_id), "debit id reused");
                    spent += amount;
                    debits.push((debit_id, amount));
                    refunded.insert(debit_id, false);
                } else {
                    prop_assert_eq!(
                        got,
                        DebitOutcome::Insufficient {
                            remaining_msat: remaining
                        }
                    );
                }
            }
            Op::Refund(i) => {
                let Some(&(debit_id, amount)) = debits.get(i % debits.len().max(1)) else {
                    continue;
                };
                let first = !refunded[&debit_id];
                let got = store.refund(debit_id, now).await.ok();
                prop_assert_eq!(got, Some(first), "a debit is refunded once");
                if first {
                    spent -= amount;
                    refunded.insert(debit_id, true);
                }
            }
            Op::RefundUnknown(debit_id) => {
                if !refunded.contains_key(&debit_id) {
                    match store.refund(debit_id, now).await {
                        Ok(r) => prop_assert!(!r, "refunded an unknown debit {}", debit_id),
                        // The SQLite store keeps ids as i64 and refuses larger ones as an error
                        // (debit ids come from the store's own receipts, never from callers).
                        Err(_) => prop_assert!(debit_id > i64::MAX as u64),
                    }
                }
            }
            Op::ConfirmAgain => {
                prop_assert_eq!(store.confirm_payment(id, now).await.ok(), Some(false));
            }
        }
        let (c, s) = store
            .balance(id)
            .await
            .map_err(|e| TestCaseError::fail(format!("balance: {e}")))?
            .ok_or_else(|| TestCaseError::fail("balance missing"))?;
        prop_assert_eq!(c, credit);
        prop_assert_eq!(s, spent);
        prop_assert!(s <= c, "the balance went negative: spent {} of {}", s, c);
    }

    // The ledger: nothing lost, nothing doubled.
    let rows = store
        .entries(id)
        .await
        .map_err(|e| TestCaseError::fail(format!("entries: {e}")))?;
    prop_assert!(
        rows.windows(2).all(|w| w[0].id < w[1].id),
        "row ids increase"
    );
    let count = |k: LedgerKind| rows.iter().filter(|r| r.kind == k).count();
    prop_assert_eq!(count(LedgerKind::Invoice), 1);
    prop_assert_eq!(count(LedgerKind::Payment), 1);
    prop_assert_eq!(count(LedgerKind::Debit), debits.len());
    let n_refunded = refunded.values().filter(|r| **r).count();
    prop_assert_eq!(count(LedgerKind::Refund), n_refunded);
    let debit_rows: HashMap<u64, u64> = rows
        .iter()
        .filter(|r| r.kind == LedgerKind::Debit)
        .map(|r| (r.id, r.amount_msat))
        .collect();
    for (debit_id, amount) in &debits {
        prop_assert_eq!(
            debit_rows.get(debit_id),
            Some(amount),
            "debit row {}",
            debit_id
        );
    }
    let mut refund_refs = Vec::new();
    let mut net: i128 = 0;
    for r in &rows {
        match r.kind {
            LedgerKind::Debit => net += i128::from(r.amount_msat),
            LedgerKind::Refund => {
                net -= i128::from(r.amount_msat);
                let reference: u64 = r
                    .reference
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| TestCaseError::fail("refund row without its debit id"))?;
                prop_assert_eq!(debit_rows.get(&reference), Some(&r.amount_msat));
                refund_refs.push(reference);
            }
            _ => {}
        }
    }
    let n = refund_refs.len();
    refund_refs.sort_unstable();
    refund_refs.dedup();
    prop_assert_eq!(refund_refs.len(), n, "two refund rows for one debit");
    prop_assert_eq!(net, i128::from(spent));
    Ok(())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn memory_balance_never_negative(credit in 0u64..20_000, ops in proptest::collection::vec(op(), 0..60)) {
        let store = MemoryStore::new();
        block_on(check(&store, credit, &ops))?;
    }

    #[test]
    fn sqlite_balance_never_negative(credit in 0u64..20_000, ops in proptest::collection::vec(op(), 0..60)) {
        let store = SqliteStore::open_in_memory().expect("sqlite");
        block_on(check(&store, credit, &ops))?;
    }
}
