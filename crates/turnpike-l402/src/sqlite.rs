//! [`SqliteStore`]: the L402 state in one SQLite file, which survives restarts.
//!
//! Tables (created when missing): `l402_master` (one row: the secret root keys are derived
//! from, made when the file is created), `l402_root_keys` (only tokens minted before root keys
//! were derived), `l402_tokens`, `l402_balances`, `l402_debits`, `l402_ledger`. Opening the
//! store purges what expired unpaid tokens of the older kind left ([`TokenStore::purge_unpaid`]). Every change runs in one `BEGIN IMMEDIATE` transaction that
//! writes its ledger row first and then the change it records, so the ledger and the balances
//! never disagree, and concurrent debits (in this process or another one using the same file)
//! are serialised by SQLite's write lock. The database runs in WAL mode; see [`Durability`].
//!
//! Calls run on tokio's blocking pool, one connection per store behind a mutex.

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::Arc;
use turnpike_core::BoxFuture;

use crate::offer::BillingMode;
use zeroize::Zeroizing;

use crate::caveat::mode_str;
use crate::store::{
    revoked_record, AdjustOutcome, BalanceStore, DebitOutcome, Ledger, LedgerEntry, LedgerKind,
    RootKey, RootKeyStore, StoreError, TokenRecord, TokenStore, REVOKED_HASH,
};

/// How hard SQLite works to keep committed rows across a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = NORMAL` in WAL mode: a committed row survives a crash of the process; a
    /// power loss may lose the last few commits. The default.
    #[default]
    Normal,
    /// `synchronous = FULL`: every commit is on disk before it returns (slower: one fsync each).
    Full,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS l402_master (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    secret BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS l402_root_keys (
    token_id BLOB PRIMARY KEY,
    root_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS l402_tokens (
    token_id     BLOB PRIMARY KEY,
    payment_hash BLOB NOT NULL,
    mode         TEXT NOT NULL,
    amount_msat  INTEGER NOT NULL,
    credit_msat  INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    paid_at      INTEGER
);
CREATE TABLE IF NOT EXISTS l402_balances (
    token_id    BLOB PRIMARY KEY,
    credit_msat INTEGER NOT NULL,
    spent_msat  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS l402_debits (
    id          INTEGER PRIMARY KEY,
    token_id    BLOB NOT NULL,
    amount_msat INTEGER NOT NULL,
    refunded    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS l402_ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    token_id    BLOB NOT NULL,
    kind        TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    reference   TEXT
);
CREATE INDEX IF NOT EXISTS l402_ledger_token ON l402_ledger(token_id);
";

/// The L402 state in SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    master: Arc<RootKey>,
}

/// A balance's `(credit_msat, spent_msat)` as stored (`c` may be a transaction).
fn balance_row(c: &Connection, token_id: &[u8; 32]) -> Result<Option<(i64, i64)>, StoreError> {
    c.query_row(
        "SELECT credit_msat, spent_msat FROM l402_balances WHERE token_id = ?1",
        params![&token_id[..]],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(err)
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Unavailable("amount out of range".into()))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn blob32(v: Vec<u8>) -> Result<[u8; 32], rusqlite::Error> {
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "expected 32 bytes".into(),
        )
    })
}

fn parse_mode(s: &str) -> BillingMode {
    match s {
        "balance" => BillingMode::Balance,
        "time_pass" => BillingMode::TimePass,
        _ => BillingMode::PerCall,
    }
}

fn log(
    tx: &rusqlite::Transaction<'_>,
    at: u64,
    token_id: &[u8; 32],
    kind: LedgerKind,
    amount: u64,
    reference: Option<String>,
) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO l402_ledger (at, token_id, kind, amount_msat, reference) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![to_i64(at)?, &token_id[..], kind.as_str(), to_i64(amount)?, reference],
    )
    .map_err(err)?;
    Ok(to_u64(tx.last_insert_rowid()))
}

/// Creates `path` with mode 0600 if it does not exist, and takes group and other permissions
/// away from it and its `-wal` / `-shm` companions if it does.
fn owner_only(path: &Path) -> std::io::Result<()> {
    turnpike_fs::private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        turnpike_fs::restrict_to_owner(Path::new(&p))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. The file holds every token's root
    /// key, so it is made readable by its owner only (0600, as are the `-wal` and `-shm` files,
    /// which SQLite creates with the database file's mode).
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        owner_only(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let conn = Connection::open(path).map_err(err)?;
        Self::setup(conn, durability)
    }

    /// A private in-memory database (for tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::setup(
            Connection::open_in_memory().map_err(err)?,
            Durability::Normal,
        )
    }

    fn setup(conn: Connection, durability: Durability) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        // In-memory databases answer "memory"; files switch to WAL.
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(err)?;
        conn.pragma_update(
            None,
            "synchronous",
            match durability {
                Durability::Normal => "NORMAL",
                Durability::Full => "FULL",
            },
        )
        .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let fresh = Zeroizing::new(rand::random::<[u8; 32]>());
        conn.execute(
            "INSERT OR IGNORE INTO l402_master (id, secret) VALUES (1, ?1)",
            params![&fresh[..]],
        )
        .map_err(err)?;
        let secret = Zeroizing::new(
            conn.query_row("SELECT secret FROM l402_master WHERE id = 1", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(err)?,
        );
        let master: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Unavailable("corrupt l402 master secret".into()))?;
        let now = turnpike_core::unix_now();
        let mut conn = conn;
        let purged = purge(&mut conn, now)?;
        if purged > 0 {
            tracing::info!(purged, "L402: purged expired unpaid tokens");
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            master: Arc::new(Zeroizing::new(master)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    fn run<'a, T, F>(&'a self, f: F) -> BoxFuture<'a, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&mut conn.lock()))
                .await
                .map_err(|e| StoreError::Unavailable(format!("sqlite task: {e}")))?
        })
    }
}

/// Deletes expired unpaid tokens minted with a stored root key: key, row and invoice row.
fn purge(c: &mut Connection, now: u64) -> Result<u64, StoreError> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let now = to_i64(now)?;
    tx.execute(
        "CREATE TEMP TABLE IF NOT EXISTS l402_purge (token_id BLOB PRIMARY KEY)",
        [],
    )
    .map_err(err)?;
    tx.execute("DELETE FROM temp.l402_purge", []).map_err(err)?;
    let n = tx
        .execute(
            "INSERT INTO temp.l402_purge (token_id) SELECT token_id FROM l402_tokens
             WHERE paid_at IS NULL AND expires_at < ?1 AND payment_hash <> ?2",
            params![now, &REVOKED_HASH[..]],
        )
        .map_err(err)?;
    if n > 0 {
        tx.execute_batch(
            "DELETE FROM l402_ledger WHERE kind = 'invoice'
                 AND token_id IN (SELECT token_id FROM temp.l402_purge);
             DELETE FROM l402_root_keys WHERE token_id IN (SELECT token_id FROM temp.l402_purge);
             DELETE FROM l402_tokens WHERE token_id IN (SELECT token_id FROM temp.l402_purge);",
        )
        .map_err(err)?;
    }
    tx.execute("DELETE FROM temp.l402_purge", []).map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(n as u64)
}

/// [`TokenStore::confirm_payment`] inside a transaction.
fn confirm_in(
    tx: &rusqlite::Transaction<'_>,
    token_id: &[u8; 32],
    now: u64,
) -> Result<bool, StoreError> {
    let rec =
        read_token(tx, token_id)?.ok_or_else(|| StoreError::Unavailable("unknown token".into()))?;
    if rec.paid_at.is_some() {
        return Ok(false);
    }
    log(
        tx,
        now,
        token_id,
        LedgerKind::Payment,
        rec.amount_msat,
        Some(hex::encode(rec.payment_hash)),
    )?;
    tx.execute(
        "UPDATE l402_tokens SET paid_at = ?2 WHERE token_id = ?1",
        params![&token_id[..], to_i64(now)?],
    )
    .map_err(err)?;
    if rec.mode == BillingMode::Balance {
        tx.execute(
            "INSERT INTO l402_balances (token_id, credit_msat, spent_msat) VALUES (?1, ?2, 0)",
            params![&token_id[..], to_i64(rec.credit_msat)?],
        )
        .map_err(err)?;
    }
    Ok(true)
}

fn insert_token(tx: &rusqlite::Transaction<'_>, record: &TokenRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO l402_tokens (token_id, payment_hash, mode, amount_msat, credit_msat,
            expires_at, created_at, paid_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
        params![
            &record.token_id[..],
            &record.payment_hash[..],
            mode_str(record.mode),
            to_i64(record.amount_msat)?,
            to_i64(record.credit_msat)?,
            to_i64(record.expires_at)?,
            to_i64(record.created_at)?,
        ],
    )
    .map_err(err)?;
    Ok(())
}

fn read_token(conn: &Connection, token_id: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
    conn.query_row(
        "SELECT payment_hash, mode, amount_msat, credit_msat, expires_at, created_at, paid_at
         FROM l402_tokens WHERE token_id = ?1",
        params![&token_id[..]],
        |r| {
            Ok(TokenRecord {
                token_id: *token_id,
                payment_hash: blob32(r.get(0)?)?,
                mode: parse_mode(&r.get::<_, String>(1)?),
                amount_msat: to_u64(r.get(2)?),
                credit_msat: to_u64(r.get(3)?),
                expires_at: to_u64(r.get(4)?),
                created_at: to_u64(r.get(5)?),
                paid_at: r.get::<_, Option<i64>>(6)?.map(to_u64),
            })
        },
    )
    .optional()
    .map_err(err)
}

impl RootKeyStore for SqliteStore {
    fn master_key(&self) -> BoxFuture<'_, Result<RootKey, StoreError>> {
        let k: RootKey = (*self.master).clone();
        Box::pin(std::future::ready(Ok(k)))
    }

    fn root_key(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<RootKey>, StoreError>> {
        self.run(move |c| {
            let v: Option<Vec<u8>> = c
                .query_row(
                    "SELECT root_key FROM l402_root_keys WHERE token_id = ?1",
                    params![&token_id[..]],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            match v {
                None => Ok(None),
                Some(v) => {
                    let v = Zeroizing::new(v);
                    let k: [u8; 32] = v
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Unavailable("corrupt root key".into()))?;
                    Ok(Some(Zeroizing::new(k)))
                }
            }
        })
    }
}

impl TokenStore for SqliteStore {
    fn issue(
        &self,
        record: TokenRecord,
        root_key: RootKey,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            log(
                &tx,
                record.created_at,
                &record.token_id,
                LedgerKind::Invoice,
                record.amount_msat,
                Some(hex::encode(record.payment_hash)),
            )?;
            tx.execute(
                "INSERT INTO l402_root_keys (token_id, root_key) VALUES (?1, ?2)",
                params![&record.token_id[..], &root_key[..]],
            )
            .map_err(err)?;
            insert_token(&tx, &record)?;
            tx.commit().map_err(err)
        })
    }

    fn token(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>, StoreError>> {
        self.run(move |c| read_token(c, &token_id))
    }

    fn confirm_payment(
        &self,
        token_id: [u8; 32],
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let newly = confirm_in(&tx, &token_id, now)?;
            if newly {
                tx.commit().map_err(err)?;
            }
            Ok(newly)
        })
    }

    fn pay(&self, record: TokenRecord, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            match read_token(&tx, &record.token_id)? {
                None => insert_token(&tx, &record)?,
                Some(r) if r.payment_hash != record.payment_hash => return Ok(false),
                Some(_) => {}
            }
            let newly = confirm_in(&tx, &record.token_id, now)?;
            if newly {
                tx.commit().map_err(err)?;
            }
            Ok(newly)
        })
    }

    fn purge_unpaid(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.run(move |c| purge(c, now))
    }
}

impl BalanceStore for SqliteStore {
    fn debit(
        &self,
        token_id: [u8; 32],
        amount_msat: u64,
        limit_msat: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<DebitOutcome, StoreError>> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let row = balance_row(&tx, &token_id)?;
            let Some((credit, spent)) = row else {
                return Ok(DebitOutcome::NoBalance);
            };
            let cap = to_u64(credit).min(limit_msat);
            let remaining = cap.saturating_sub(to_u64(spent));
            if amount_msat > remaining {
                return Ok(DebitOutcome::Insufficient {
                    remaining_msat: remaining,
                });
            }
            // The ledger row first, then the change it records; one transaction.
            let debit_id = log(&tx, now, &token_id, LedgerKind::Debit, amount_msat, None)?;
            let changed = tx
                .execute(
                    "UPDATE l402_balances SET spent_msat = spent_msat + ?2
                     WHERE token_id = ?1 AND spent_msat = ?3",
                    params![&token_id[..], to_i64(amount_msat)?, spent],
                )
                .map_err(err)?;
            if changed != 1 {
                return Err(StoreError::Unavailable("balance changed under a write lock".into()));
            }
            tx.execute(
                "INSERT INTO l402_debits (id, token_id, amount_msat, refunded) VALUES (?1, ?2, ?3, 0)",
                params![to_i64(debit_id)?, &token_id[..], to_i64(amount_msat)?],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(DebitOutcome::Debited {
                debit_id,
                remaining_msat: remaining - amount_msat,
            })
        })
    }

    fn refund(&self, debit_id: u64, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.run(move |c| {
            let id = to_i64(debit_id)?;
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let row: Option<(Vec<u8>, i64, i64)> = tx
                .query_row(
                    "SELECT token_id, amount_msat, refunded FROM l402_debits WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(err)?;
            let Some((token_id, amount, refunded)) = row else {
                return Ok(false);
            };
            if refunded != 0 {
                return Ok(false);
            }
            let token_id = blob32(token_id).map_err(err)?;
            log(
                &tx,
                now,
                &token_id,
                LedgerKind::Refund,
                to_u64(amount),
                Some(debit_id.to_string()),
            )?;
            tx.execute(
                "UPDATE l402_debits SET refunded = 1 WHERE id = ?1",
                params![id],
            )
            .map_err(err)?;
            tx.execute(
                "UPDATE l402_balances SET spent_msat = MAX(spent_msat - ?2, 0) WHERE token_id = ?1",
                params![&token_id[..], amount],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(true)
        })
    }

    fn balance(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<(u64, u64)>, StoreError>> {
        self.run(move |c| {
            Ok(balance_row(c, &token_id)?.map(|(credit, spent)| (to_u64(credit), to_u64(spent))))
        })
    }

    fn adjust(
        &self,
        token_id: [u8; 32],
        delta_msat: i64,
        note: String,
        now: u64,
    ) -> BoxFuture<'_, Result<AdjustOutcome, StoreError>> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let row = balance_row(&tx, &token_id)?;
            let Some((credit, spent)) = row else {
                return Ok(Ok(None));
            };
            let Some(new) = to_u64(credit).checked_add_signed(delta_msat) else {
                return Ok(Err("the credit would fall below zero".into()));
            };
            log(
                &tx,
                now,
                &token_id,
                LedgerKind::Adjustment,
                delta_msat.unsigned_abs(),
                Some(crate::store::adjustment_reference(delta_msat, &note)),
            )?;
            tx.execute(
                "UPDATE l402_balances SET credit_msat = ?2 WHERE token_id = ?1",
                params![&token_id[..], to_i64(new)?],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(Ok(Some((new, to_u64(spent)))))
        })
    }
}

/// Reads ledger rows from a query whose columns are id, at, token_id, kind, amount, reference.
fn ledger_rows(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut st = c.prepare(sql).map_err(err)?;
    let rows = st
        .query_map(p, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .map_err(err)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, at, token_id, kind, amount, reference) = row.map_err(err)?;
        out.push(LedgerEntry {
            id: to_u64(id),
            at: to_u64(at),
            token_id: blob32(token_id).map_err(err)?,
            kind: LedgerKind::parse(&kind)
                .ok_or_else(|| StoreError::Unavailable("corrupt ledger kind".into()))?,
            amount_msat: to_u64(amount),
            reference,
        });
    }
    Ok(out)
}

impl Ledger for SqliteStore {
    fn page(
        &self,
        after_id: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        self.run(move |c| {
            ledger_rows(
                c,
                "SELECT id, at, token_id, kind, amount_msat, reference FROM l402_ledger
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
                params![to_i64(after_id)?, to_i64(limit as u64)?],
            )
        })
    }

    fn recent(&self, limit: usize) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        self.run(move |c| {
            ledger_rows(
                c,
                "SELECT id, at, token_id, kind, amount_msat, reference FROM l402_ledger
                 ORDER BY id DESC LIMIT ?1",
                params![to_i64(limit as u64)?],
            )
        })
    }

    fn revoke(&self, token_id: [u8; 32], now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            if read_token(&tx, &token_id)?.is_none() {
                insert_token(&tx, &revoked_record(token_id, now))?;
            }
            log(&tx, now, &token_id, LedgerKind::Revocation, 0, None)?;
            tx.execute(
                "UPDATE l402_tokens SET expires_at = MIN(expires_at, ?2) WHERE token_id = ?1",
                params![&token_id[..], to_i64(now)?],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(true)
        })
    }

    fn entries(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        self.run(move |c| {
            let mut st = c
                .prepare(
                    "SELECT id, at, kind, amount_msat, reference FROM l402_ledger
                     WHERE token_id = ?1 ORDER BY id",
                )
                .map_err(err)?;
            let rows = st
                .query_map(params![&token_id[..]], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at, kind, amount, reference) = row.map_err(err)?;
                out.push(LedgerEntry {
                    id: to_u64(id),
                    at: to_u64(at),
                    token_id,
                    kind: LedgerKind::parse(&kind)
                        .ok_or_else(|| StoreError::Unavailable("corrupt ledger kind".into()))?,
                    amount_msat: to_u64(amount),
                    reference,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn sqlite_store_contract() {
        contract::run(&SqliteStore::open_in_memory().unwrap()).await;
    }

    #[tokio::test]
    async fn sqlite_store_paid_on_first_use() {
        contract::paid_on_first_use(&SqliteStore::open_in_memory().unwrap()).await;
    }

    /// The file holds root keys: owner-only, also when it was created readable by others.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("turnpike-sqlite-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l402.sqlite");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SqliteStore::open(&path, Durability::Normal).unwrap();
        contract::run(&store).await;
        let mut seen = 0;
        for suffix in ["", "-wal", "-shm"] {
            let p = dir.join(format!("l402.sqlite{suffix}"));
            if let Ok(meta) = std::fs::metadata(&p) {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
                seen += 1;
            }
        }
        assert!(seen >= 2, "the database and its WAL exist");
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_store_concurrent_debits() {
        contract::concurrent_debits(Arc::new(SqliteStore::open_in_memory().unwrap())).await;
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = std::env::temp_dir().join(format!(
            "turnpike-l402-sqlite-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 6]>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l402.sqlite");
        {
            let s = SqliteStore::open(&path, Durability::Full).unwrap();
            s.issue(
                contract::record(4, BillingMode::Balance, 2000),
                Zeroizing::new([8; 32]),
            )
            .await
            .unwrap();
            s.confirm_payment([4; 32], 10).await.unwrap();
            assert!(matches!(
                s.debit([4; 32], 500, u64::MAX, 11).await.unwrap(),
                DebitOutcome::Debited { .. }
            ));
        }
        let s = SqliteStore::open(&path, Durability::Normal).unwrap();
        assert_eq!(*s.root_key([4; 32]).await.unwrap().unwrap(), [8; 32]);
        assert_eq!(s.balance([4; 32]).await.unwrap(), Some((2000, 500)));
        assert_eq!(s.token([4; 32]).await.unwrap().unwrap().paid_at, Some(10));
        assert_eq!(s.entries([4; 32]).await.unwrap().len(), 3);
        assert!(!s.confirm_payment([4; 32], 12).await.unwrap());
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two stores (two connections, as two processes would have) on one file, debiting one
    /// balance at once: SQLite's write lock keeps the total within the balance.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_connections_never_overspend() {
        let dir = std::env::temp_dir().join(format!(
            "turnpike-l402-sqlite2-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 6]>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l402.sqlite");
        let a = Arc::new(SqliteStore::open(&path, Durability::Normal).unwrap());
        let b = Arc::new(SqliteStore::open(&path, Durability::Normal).unwrap());
        contract::two_stores_share_one_balance(a.clone(), b.clone()).await;
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
