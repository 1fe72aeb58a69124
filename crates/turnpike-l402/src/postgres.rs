//! [`PostgresStore`]: the L402 state in PostgreSQL, shared by every gateway instance that
//! points at the same database (feature `postgres`, on by default).
//!
//! - **Migrations** are versioned ([`MIGRATIONS`]) and recorded in `schema_migrations`; they
//!   are applied in one transaction under a transaction-scoped advisory lock (so instances
//!   starting together apply each once), when the store first reaches the server.
//! - **Money moves in one statement each.** A debit is one `UPDATE … WHERE spent + amount <=
//!   least(credit, limit)` whose data-modifying CTEs also insert its ledger row and its debit
//!   row: PostgreSQL runs the statement atomically, and concurrent debits of one balance queue
//!   on the row lock and re-check the condition, so a balance never goes below zero (a `CHECK`
//!   constraint says so too). A refund flips its debit's `refunded` flag from false to true in
//!   the same kind of statement, so it happens once however often it is asked for. Issuing a
//!   token and confirming a payment are single statements as well.
//! - **Connections**: `pool` connections, each made on first use and made again by itself when
//!   the server went away (restart, network); statements are prepared once per connection and
//!   pipelined. Every statement is bounded by `timeout` on the client and by a server-side
//!   `statement_timeout` of ¾ of it (so the server gives up first: a debit the caller was told
//!   failed was not committed); making a connection has a budget of `max(timeout, 2 s)`. A failure is [`StoreError::Unavailable`]: the rail
//!   answers 503 and takes no money (payments fail closed).
//!
//! Amounts are `BIGINT` (msat up to 2^63 − 1); token ids and keys are `BYTEA`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OnceCell};
use tokio_postgres::{Client, NoTls, Statement};
use turnpike_core::BoxFuture;

use crate::offer::BillingMode;
use zeroize::Zeroizing;

use crate::caveat::mode_str;
use crate::store::{
    AdjustOutcome, BalanceStore, DebitOutcome, Ledger, LedgerEntry, LedgerKind, RootKey,
    RootKeyStore, StoreError, TokenRecord, TokenStore, REVOKED_HASH,
};

/// The schema, version by version. Never edit a shipped entry: add the next one.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "l402 tables",
        "
CREATE TABLE l402_root_keys (
    token_id BYTEA PRIMARY KEY,
    root_key BYTEA NOT NULL
);
CREATE TABLE l402_tokens (
    token_id     BYTEA PRIMARY KEY,
    payment_hash BYTEA NOT NULL,
    mode         TEXT NOT NULL,
    amount_msat  BIGINT NOT NULL,
    credit_msat  BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    paid_at      BIGINT
);
CREATE TABLE l402_balances (
    token_id    BYTEA PRIMARY KEY,
    credit_msat BIGINT NOT NULL CHECK (credit_msat >= 0),
    spent_msat  BIGINT NOT NULL CHECK (spent_msat >= 0),
    CHECK (spent_msat <= credit_msat)
);
CREATE TABLE l402_ledger (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    token_id    BYTEA NOT NULL,
    kind        TEXT NOT NULL,
    amount_msat BIGINT NOT NULL,
    reference   TEXT
);
CREATE INDEX l402_ledger_token ON l402_ledger (token_id, id);
CREATE TABLE l402_debits (
    id          BIGINT PRIMARY KEY REFERENCES l402_ledger (id),
    token_id    BYTEA NOT NULL,
    amount_msat BIGINT NOT NULL,
    refunded    BOOLEAN NOT NULL DEFAULT false
);
",
    ),
    (
        2,
        "l402 master secret",
        "
CREATE TABLE l402_master (
    id     SMALLINT PRIMARY KEY CHECK (id = 1),
    secret BYTEA NOT NULL CHECK (length(secret) = 32)
);
",
    ),
];

/// The master secret, made by the first instance that migrates (under the migration lock).
const SQL_MASTER_INIT: &str =
    "INSERT INTO l402_master (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING";

const SQL_MASTER: &str = "SELECT secret FROM l402_master WHERE id = 1";

/// Records a paid token (its row, payment row and balance) in one statement; no row when the
/// token was already recorded.
const SQL_PAY: &str = "
WITH t AS (
    INSERT INTO l402_tokens (token_id, payment_hash, mode, amount_msat, credit_msat,
        expires_at, created_at, paid_at)
    VALUES ($1, $3, $4, $5, $6, $7, $8, $2)
    ON CONFLICT (token_id) DO NOTHING
    RETURNING mode, amount_msat, credit_msat, payment_hash
), l AS (
    INSERT INTO l402_ledger (at, token_id, kind, amount_msat, reference)
    SELECT $2, $1, 'payment', amount_msat, encode(payment_hash, 'hex') FROM t
), b AS (
    INSERT INTO l402_balances (token_id, credit_msat, spent_msat)
    SELECT $1, credit_msat, 0 FROM t WHERE mode = 'balance'
)
SELECT count(*) FROM t";

/// Deletes expired unpaid tokens minted with a stored root key (key, row, invoice row).
const SQL_PURGE: &str = "
WITH p AS (
    DELETE FROM l402_tokens
    WHERE paid_at IS NULL AND expires_at < $1 AND payment_hash <> $2
    RETURNING token_id
), k AS (
    DELETE FROM l402_root_keys WHERE token_id IN (SELECT token_id FROM p)
), l AS (
    DELETE FROM l402_ledger WHERE kind = 'invoice' AND token_id IN (SELECT token_id FROM p)
)
SELECT count(*) FROM p";

/// Changes a balance's credit by $2 with its ledger row, in one statement; no row when the token
/// has no balance or the credit would fall below what has been spent.
const SQL_ADJUST: &str = "
WITH b AS (
    UPDATE l402_balances SET credit_msat = credit_msat + $2
    WHERE token_id = $1 AND credit_msat + $2 >= spent_msat
    RETURNING credit_msat, spent_msat
), l AS (
    INSERT INTO l402_ledger (at, token_id, kind, amount_msat, reference)
    SELECT $3, $1, 'adjustment', $4, $5 FROM b
)
SELECT credit_msat, spent_msat FROM b";

/// Makes a token expire now with its ledger row, in one statement (a token with no row gets one
/// that says so); the count of tokens changed.
const SQL_REVOKE: &str = "
WITH t AS (
    INSERT INTO l402_tokens (token_id, payment_hash, mode, amount_msat, credit_msat,
        expires_at, created_at, paid_at)
    VALUES ($1, $3, 'per_call', 0, 0, $2, $2, NULL)
    ON CONFLICT (token_id) DO UPDATE SET expires_at = LEAST(l402_tokens.expires_at, $2)
    RETURNING token_id
), l AS (
    INSERT INTO l402_ledger (at, token_id, kind, amount_msat, reference)
    SELECT $2, token_id, 'revocation', 0, NULL FROM t
)
SELECT count(*) FROM t";

const SQL_PAGE: &str = "SELECT id, at, token_id, kind, amount_msat, reference FROM l402_ledger
    WHERE id > $1 ORDER BY id LIMIT $2";

const SQL_RECENT: &str = "SELECT id, at, token_id, kind, amount_msat, reference FROM l402_ledger
    ORDER BY id DESC LIMIT $1";

const SQL_ROOT_KEY: &str = "SELECT root_key FROM l402_root_keys WHERE token_id = $1";

const SQL_ISSUE: &str = "
WITH k AS (
    INSERT INTO l402_root_keys (token_id, root_key) VALUES ($1, $2)
), t AS (
    INSERT INTO l402_tokens (token_id, payment_hash, mode, amount_msat, credit_msat,
        expires_at, created_at, paid_at)
    VALUES ($1, $3, $4, $5, $6, $7, $8, NULL)
)
INSERT INTO l402_ledger (at, token_id, kind, amount_msat, reference)
VALUES ($8, $1, 'invoice', $5, $9)";

const SQL_TOKEN: &str = "SELECT payment_hash, mode, amount_msat, credit_msat, expires_at,
    created_at, paid_at FROM l402_tokens WHERE token_id = $1";

const SQL_CONFIRM: &str = "
WITH t AS (
    UPDATE l402_tokens SET paid_at = $2 WHERE token_id = $1 AND paid_at IS NULL
    RETURNING mode, amount_msat, credit_msat, payment_hash
), l AS (
    INSERT INTO l402_ledger (at, token_id, kind, amount_msat, reference)
    SELECT $2, $1, 'payment', amount_msat, encode(payment_hash, 'hex') FROM t
), b AS (
    INSERT INTO l402_balances (token_id, credit_msat, spent_msat)
    SELECT $1, credit_msat, 0 FROM t WHERE mode = 'balance'
)
SELECT count(*) FROM t";

const SQL_EXISTS: &str = "SELECT 1 FROM l402_tokens WHERE token_id = $1";

/// $1 token, $2 amount, $3 limit, $4 now.
const SQL_DEBIT: &str = "
WITH d AS (
    UPDATE l402_balances SET spent_msat = spent_msat + $2
    WHERE token_id = $1 AND spent_msat + $2 <= least(credit_msat, $3)
    RETURNING least(credit_msat, $3) - spent_msat AS remaining
), l AS (
    INSERT INTO l402_ledger (at, token_id, kind, amount_msat)
    SELECT $4, $1, 'debit', $2 FROM d
    RETURNING id
), x AS (
    INSERT INTO l402_debits (id, token_id, amount_msat)
    SELECT id, $1, $2 FROM l
)
SELECT l.id, d.remaining FROM d, l";

/// $1 token, $2 limit.
const SQL_REMAINING: &str =
    "SELECT least(credit_msat, $2) - spent_msat FROM l402_balances WHERE token_id = $1";

/// $1 debit id, $2 now, $3 the debit id as text.
const SQL_REFUND: &str = "
WITH r AS (
    UPDATE l402_debits SET refunded = true WHERE id = $1 AND NOT refunded
    RETURNING token_id, amount_msat
), l AS (
    INSERT INTO l402_ledger (at, token_id, kind, amount_msat, reference)
    SELECT $2, token_id, 'refund', amount_msat, $3 FROM r
), b AS (
    UPDATE l402_balances AS bal SET spent_msat = greatest(bal.spent_msat - r.amount_msat, 0)
    FROM r WHERE bal.token_id = r.token_id
)
SELECT count(*) FROM r";

const SQL_BALANCE: &str = "SELECT credit_msat, spent_msat FROM l402_balances WHERE token_id = $1";

const SQL_ENTRIES: &str = "SELECT id, at, kind, amount_msat, reference FROM l402_ledger
    WHERE token_id = $1 ORDER BY id";

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user[:password]@host[:port]/db[?…]` (key=value strings work too).
    pub url: String,
    /// The schema the tables live in (created when missing); `None`: the server's default
    /// search path (`public`). Lower-case letters, digits and `_`.
    pub schema: Option<String>,
    /// Connections (each pipelines; debits of one balance queue on its row lock anyway).
    pub pool: usize,
    /// Longest wait for one statement (the server's `statement_timeout` is ¾ of it); making a
    /// connection may take `max(timeout, 2 s)`.
    pub timeout: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresOptions")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool", &self.pool)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PostgresOptions {
    /// Options for the database at `url` (`postgres://…`), with the default pool and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: None,
            pool: 8,
            timeout: Duration::from_secs(2),
        }
    }
}

struct Statements {
    root_key: Statement,
    issue: Statement,
    token: Statement,
    confirm: Statement,
    exists: Statement,
    debit: Statement,
    remaining: Statement,
    refund: Statement,
    balance: Statement,
    entries: Statement,
}

struct Conn {
    client: Client,
    st: Statements,
}

struct Inner {
    config: tokio_postgres::Config,
    schema: Option<String>,
    timeout: Duration,
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
    migrated: OnceCell<()>,
    master: OnceCell<RootKey>,
}

/// The L402 state in PostgreSQL.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("postgres: {e}"))
}

/// A tokio-postgres error, with the server's message when there is one (the `Display` of a
/// `db error` says only that).
fn db_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => err(format!("{}: {}", d.code().code(), d.message())),
        None => err(e),
    }
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Unavailable("amount out of range".into()))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn b32(v: &[u8]) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Unavailable("postgres: expected 32 bytes".into()))
}

fn parse_mode(s: &str) -> BillingMode {
    match s {
        "balance" => BillingMode::Balance,
        "time_pass" => BillingMode::TimePass,
        _ => BillingMode::PerCall,
    }
}

/// The advisory lock key of one schema's migrations.
fn lock_key(schema: Option<&str>) -> i64 {
    let d = Sha256::digest(format!("turnpike-migrations:{}", schema.unwrap_or("")).as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

impl PostgresStore {
    /// A store for `opts` (nothing is connected yet: the first operation connects and applies
    /// the migrations). Errors only on a URL that does not parse or a bad schema name.
    pub fn new(opts: PostgresOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = opts
            .url
            .parse()
            .map_err(|_| StoreError::Unavailable("postgres: the URL does not parse".into()))?;
        if let Some(s) = &opts.schema {
            let ok = !s.is_empty()
                && s.len() <= 63
                && !s.as_bytes()[0].is_ascii_digit()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(StoreError::Unavailable(
                    "postgres: schema names are lower-case letters, digits and _".into(),
                ));
            }
        }
        let timeout = opts.timeout.max(Duration::from_millis(4));
        // The server gives up on a statement before the client stops waiting for it, so a debit
        // the caller was told failed has not been committed behind its back.
        let statement_ms = (timeout.as_millis() * 3 / 4).max(1);
        let mut options = format!("-c statement_timeout={statement_ms}");
        if let Some(s) = &opts.schema {
            options.push_str(&format!(" -c search_path={s}"));
        }
        config.options(&options);
        config.connect_timeout(timeout);
        config.application_name("turnpike");
        config.keepalives(true);
        let pool = opts.pool.clamp(1, 256);
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                config,
                schema: opts.schema,
                timeout,
                slots: (0..pool).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
                migrated: OnceCell::new(),
                master: OnceCell::new(),
            }),
        })
    }

    /// Connects and applies the migrations now (a gateway calls it at startup, so a bad URL or
    /// a missing database shows at once; the store still works if this fails and the server
    /// comes up later).
    pub async fn connect(opts: PostgresOptions) -> Result<Self, StoreError> {
        let s = Self::new(opts)?;
        s.ready().await?;
        Ok(s)
    }

    /// Reaches the server and makes sure the schema is migrated.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.with_conn(|_| async { Ok(()) }).await
    }

    /// The migration versions applied, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i32>, StoreError> {
        self.with_conn(|c| async move {
            let rows = c
                .client
                .query(
                    "SELECT version FROM schema_migrations ORDER BY version",
                    &[],
                )
                .await
                .map_err(db_err)?;
            Ok(rows.iter().map(|r| r.get::<_, i32>(0)).collect())
        })
        .await
    }

    async fn open(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.inner.config.connect(NoTls).await.map_err(db_err)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "turnpike::store", error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// Applies the migrations not yet applied, in one transaction under an advisory lock.
    async fn migrate(&self, client: &mut Client) -> Result<(), StoreError> {
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key(self.inner.schema.as_deref())],
        )
        .await
        .map_err(db_err)?;
        if let Some(s) = &self.inner.schema {
            // Checked to be a plain identifier in `new`.
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\""))
                .await
                .map_err(db_err)?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(db_err)?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(sql).await.map_err(db_err)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(db_err)?;
            tracing::info!(target: "turnpike::store", version, name, "postgres: migration applied");
        }
        let fresh = Zeroizing::new(rand::random::<[u8; 32]>());
        tx.execute(SQL_MASTER_INIT, &[&&fresh[..]])
            .await
            .map_err(db_err)?;
        let now = turnpike_core::unix_now();
        let purged: i64 = tx
            .query_one(SQL_PURGE, &[&to_i64(now)?, &&REVOKED_HASH[..]])
            .await
            .map_err(db_err)?
            .get(0);
        if purged > 0 {
            tracing::info!(target: "turnpike::store", purged, "L402: purged expired unpaid tokens");
        }
        tx.commit().await.map_err(db_err)
    }

    async fn prepare(client: Client) -> Result<Conn, StoreError> {
        let p = |sql: &'static str| client.prepare(sql);
        let (root_key, issue, token, confirm, exists) = futures_join5(
            p(SQL_ROOT_KEY),
            p(SQL_ISSUE),
            p(SQL_TOKEN),
            p(SQL_CONFIRM),
            p(SQL_EXISTS),
        )
        .await;
        let (debit, remaining, refund, balance, entries) = futures_join5(
            p(SQL_DEBIT),
            p(SQL_REMAINING),
            p(SQL_REFUND),
            p(SQL_BALANCE),
            p(SQL_ENTRIES),
        )
        .await;
        let st = Statements {
            root_key: root_key.map_err(db_err)?,
            issue: issue.map_err(db_err)?,
            token: token.map_err(db_err)?,
            confirm: confirm.map_err(db_err)?,
            exists: exists.map_err(db_err)?,
            debit: debit.map_err(db_err)?,
            remaining: remaining.map_err(db_err)?,
            refund: refund.map_err(db_err)?,
            balance: balance.map_err(db_err)?,
            entries: entries.map_err(db_err)?,
        };
        Ok(Conn { client, st })
    }

    /// A live connection from the pool (made or made again when needed).
    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.slots.len();
        let mut slot = self.inner.slots[i].lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.client.is_closed() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let mut client = self.open().await?;
        self.inner
            .migrated
            .get_or_try_init(|| self.migrate(&mut client))
            .await?;
        let c = Arc::new(Self::prepare(client).await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` on a connection, the whole bounded by the timeout.
    async fn with_conn<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        // Connecting (and preparing, and migrating the first time) has a budget of its own, at
        // least 2 s: a short statement timeout must not make a fresh connection impossible.
        let connect_budget = self.inner.timeout.max(Duration::from_secs(2));
        let c = match tokio::time::timeout(connect_budget, self.conn()).await {
            Ok(c) => c?,
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "postgres: not connected within {} ms",
                    connect_budget.as_millis()
                )))
            }
        };
        match tokio::time::timeout(self.inner.timeout, f(c)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "postgres: no answer within {} ms",
                self.inner.timeout.as_millis()
            ))),
        }
    }

    fn run<'a, T, F, Fut>(&'a self, f: F) -> BoxFuture<'a, Result<T, StoreError>>
    where
        T: Send + 'a,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'a,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'a,
    {
        Box::pin(self.with_conn(f))
    }
}

/// Five futures at once (tokio's `join!` without the macro's size).
async fn futures_join5<A, B, C, D, E>(
    a: impl std::future::Future<Output = A>,
    b: impl std::future::Future<Output = B>,
    c: impl std::future::Future<Output = C>,
    d: impl std::future::Future<Output = D>,
    e: impl std::future::Future<Output = E>,
) -> (A, B, C, D, E) {
    tokio::join!(a, b, c, d, e)
}

impl RootKeyStore for PostgresStore {
    fn available(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.ready())
    }

    fn master_key(&self) -> BoxFuture<'_, Result<RootKey, StoreError>> {
        Box::pin(async move {
            let k = self
                .inner
                .master
                .get_or_try_init(|| {
                    self.with_conn(|c| async move {
                        let row = c.client.query_one(SQL_MASTER, &[]).await.map_err(db_err)?;
                        let v: &[u8] = row.get(0);
                        let k: [u8; 32] = v.try_into().map_err(|_| {
                            StoreError::Unavailable("corrupt l402 master secret".into())
                        })?;
                        Ok(Zeroizing::new(k))
                    })
                })
                .await?;
            Ok(k.clone())
        })
    }

    fn root_key(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<RootKey>, StoreError>> {
        self.run(move |c| async move {
            let row = c
                .client
                .query_opt(&c.st.root_key, &[&&token_id[..]])
                .await
                .map_err(db_err)?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let v: &[u8] = r.get(0);
                    let k: [u8; 32] = v
                        .try_into()
                        .map_err(|_| StoreError::Unavailable("corrupt root key".into()))?;
                    Ok(Some(Zeroizing::new(k)))
                }
            }
        })
    }
}

impl TokenStore for PostgresStore {
    fn issue(
        &self,
        record: TokenRecord,
        root_key: RootKey,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.run(move |c| async move {
            let reference = hex::encode(record.payment_hash);
            c.client
                .execute(
                    &c.st.issue,
                    &[
                        &&record.token_id[..],
                        &&root_key[..],
                        &&record.payment_hash[..],
                        &mode_str(record.mode),
                        &to_i64(record.amount_msat)?,
                        &to_i64(record.credit_msat)?,
                        &to_i64(record.expires_at)?,
                        &to_i64(record.created_at)?,
                        &reference,
                    ],
                )
                .await
                .map_err(db_err)?;
            Ok(())
        })
    }

    fn token(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>, StoreError>> {
        self.run(move |c| async move {
            let Some(r) = c
                .client
                .query_opt(&c.st.token, &[&&token_id[..]])
                .await
                .map_err(db_err)?
            else {
                return Ok(None);
            };
            Ok(Some(TokenRecord {
                token_id,
                payment_hash: b32(r.get(0))?,
                mode: parse_mode(r.get(1)),
                amount_msat: to_u64(r.get(2)),
                credit_msat: to_u64(r.get(3)),
                expires_at: to_u64(r.get(4)),
                created_at: to_u64(r.get(5)),
                paid_at: r.get::<_, Option<i64>>(6).map(to_u64),
            }))
        })
    }

    fn confirm_payment(
        &self,
        token_id: [u8; 32],
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.run(move |c| async move {
            let n: i64 = c
                .client
                .query_one(&c.st.confirm, &[&&token_id[..], &to_i64(now)?])
                .await
                .map_err(db_err)?
                .get(0);
            if n == 1 {
                return Ok(true);
            }
            let known = c
                .client
                .query_opt(&c.st.exists, &[&&token_id[..]])
                .await
                .map_err(db_err)?
                .is_some();
            if known {
                Ok(false)
            } else {
                Err(StoreError::Unavailable("unknown token".into()))
            }
        })
    }

    fn pay(&self, record: TokenRecord, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.pay_now(record, now))
    }

    fn purge_unpaid(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.run(move |c| async move {
            let n: i64 = c
                .client
                .query_one(SQL_PURGE, &[&to_i64(now)?, &&REVOKED_HASH[..]])
                .await
                .map_err(db_err)?
                .get(0);
            Ok(to_u64(n))
        })
    }
}

impl PostgresStore {
    /// [`TokenStore::pay`]: insert the paid token, else confirm the stored one (of the same
    /// payment hash).
    async fn pay_now(&self, record: TokenRecord, now: u64) -> Result<bool, StoreError> {
        self.with_conn(|c| async move {
            let n: i64 = c
                .client
                .query_one(
                    SQL_PAY,
                    &[
                        &&record.token_id[..],
                        &to_i64(now)?,
                        &&record.payment_hash[..],
                        &mode_str(record.mode),
                        &to_i64(record.amount_msat)?,
                        &to_i64(record.credit_msat)?,
                        &to_i64(record.expires_at)?,
                        &to_i64(record.created_at)?,
                    ],
                )
                .await
                .map_err(db_err)?
                .get(0);
            if n == 1 {
                return Ok(true);
            }
            let stored = c
                .client
                .query_opt(&c.st.token, &[&&record.token_id[..]])
                .await
                .map_err(db_err)?;
            match stored {
                Some(r) if r.get::<_, &[u8]>(0) == &record.payment_hash[..] => {}
                _ => return Ok(false),
            }
            let n: i64 = c
                .client
                .query_one(&c.st.confirm, &[&&record.token_id[..], &to_i64(now)?])
                .await
                .map_err(db_err)?
                .get(0);
            Ok(n == 1)
        })
        .await
    }
}

impl BalanceStore for PostgresStore {
    fn debit(
        &self,
        token_id: [u8; 32],
        amount_msat: u64,
        limit_msat: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<DebitOutcome, StoreError>> {
        self.run(move |c| async move {
            let amount = to_i64(amount_msat)?;
            let limit = i64::try_from(limit_msat).unwrap_or(i64::MAX);
            let row = c
                .client
                .query_opt(
                    &c.st.debit,
                    &[&&token_id[..], &amount, &limit, &to_i64(now)?],
                )
                .await
                .map_err(db_err)?;
            if let Some(r) = row {
                return Ok(DebitOutcome::Debited {
                    debit_id: to_u64(r.get(0)),
                    remaining_msat: to_u64(r.get(1)),
                });
            }
            let left = c
                .client
                .query_opt(&c.st.remaining, &[&&token_id[..], &limit])
                .await
                .map_err(db_err)?;
            Ok(match left {
                None => DebitOutcome::NoBalance,
                Some(r) => DebitOutcome::Insufficient {
                    remaining_msat: to_u64(r.get(0)),
                },
            })
        })
    }

    fn refund(&self, debit_id: u64, now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.run(move |c| async move {
            let Ok(id) = i64::try_from(debit_id) else {
                return Ok(false);
            };
            let n: i64 = c
                .client
                .query_one(&c.st.refund, &[&id, &to_i64(now)?, &debit_id.to_string()])
                .await
                .map_err(db_err)?
                .get(0);
            Ok(n == 1)
        })
    }

    fn adjust(
        &self,
        token_id: [u8; 32],
        delta_msat: i64,
        note: String,
        now: u64,
    ) -> BoxFuture<'_, Result<AdjustOutcome, StoreError>> {
        self.run(move |c| async move {
            let reference = crate::store::adjustment_reference(delta_msat, &note);
            let amount = to_i64(delta_msat.unsigned_abs())?;
            let row = c
                .client
                .query_opt(
                    SQL_ADJUST,
                    &[
                        &&token_id[..],
                        &delta_msat,
                        &to_i64(now)?,
                        &amount,
                        &reference,
                    ],
                )
                .await
                .map_err(db_err)?;
            if let Some(r) = row {
                return Ok(Ok(Some((to_u64(r.get(0)), to_u64(r.get(1))))));
            }
            let exists = c
                .client
                .query_opt(&c.st.balance, &[&&token_id[..]])
                .await
                .map_err(db_err)?;
            Ok(match exists {
                None => Ok(None),
                Some(_) => Err("the credit would fall below what has been spent".into()),
            })
        })
    }

    fn balance(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Option<(u64, u64)>, StoreError>> {
        self.run(move |c| async move {
            Ok(c.client
                .query_opt(&c.st.balance, &[&&token_id[..]])
                .await
                .map_err(db_err)?
                .map(|r| (to_u64(r.get(0)), to_u64(r.get(1)))))
        })
    }
}

/// Ledger rows of `(id, at, token_id, kind, amount_msat, reference)`.
fn ledger_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<LedgerEntry>, StoreError> {
    rows.into_iter()
        .map(|r| {
            let kind: &str = r.get(3);
            Ok(LedgerEntry {
                id: to_u64(r.get(0)),
                at: to_u64(r.get(1)),
                token_id: b32(r.get(2))?,
                kind: LedgerKind::parse(kind)
                    .ok_or_else(|| StoreError::Unavailable("corrupt ledger kind".into()))?,
                amount_msat: to_u64(r.get(4)),
                reference: r.get(5),
            })
        })
        .collect()
}

impl Ledger for PostgresStore {
    fn page(
        &self,
        after_id: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        self.run(move |c| async move {
            let after = i64::try_from(after_id).unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            ledger_rows(
                c.client
                    .query(SQL_PAGE, &[&after, &limit])
                    .await
                    .map_err(db_err)?,
            )
        })
    }

    fn recent(&self, limit: usize) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        self.run(move |c| async move {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            ledger_rows(
                c.client
                    .query(SQL_RECENT, &[&limit])
                    .await
                    .map_err(db_err)?,
            )
        })
    }

    fn revoke(&self, token_id: [u8; 32], now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.run(move |c| async move {
            let n: i64 = c
                .client
                .query_one(
                    SQL_REVOKE,
                    &[&&token_id[..], &to_i64(now)?, &&REVOKED_HASH[..]],
                )
                .await
                .map_err(db_err)?
                .get(0);
            Ok(n > 0)
        })
    }

    fn entries(&self, token_id: [u8; 32]) -> BoxFuture<'_, Result<Vec<LedgerEntry>, StoreError>> {
        self.run(move |c| async move {
            let rows = c
                .client
                .query(&c.st.entries, &[&&token_id[..]])
                .await
                .map_err(db_err)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let kind: &str = r.get(2);
                out.push(LedgerEntry {
                    id: to_u64(r.get(0)),
                    at: to_u64(r.get(1)),
                    token_id,
                    kind: LedgerKind::parse(kind)
                        .ok_or_else(|| StoreError::Unavailable("corrupt ledger kind".into()))?,
                    amount_msat: to_u64(r.get(3)),
                    reference: r.get(4),
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{contract, L402Store};
    use turnpike_testkit::postgres::PgDb;

    fn opts(db: &PgDb) -> PostgresOptions {
        PostgresOptions {
            schema: Some(db.schema.clone()),
            ..PostgresOptions::new(db.url())
        }
    }

    #[tokio::test]
    async fn postgres_store_contract() {
        let db = PgDb::new();
        let s = PostgresStore::connect(opts(&db)).await.unwrap();
        contract::run(&s).await;
    }

    #[tokio::test]
    async fn postgres_store_paid_on_first_use() {
        let db = PgDb::new();
        let s = PostgresStore::connect(opts(&db)).await.unwrap();
        contract::paid_on_first_use(&s).await;
    }

    #[tokio::test]
    async fn postgres_store_admin() {
        let db = PgDb::new();
        let s = PostgresStore::connect(opts(&db)).await.unwrap();
        contract::admin(&s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_store_concurrent_debits() {
        let db = PgDb::new();
        let s = PostgresStore::connect(opts(&db)).await.unwrap();
        contract::concurrent_debits(Arc::new(s)).await;
    }

    /// Two stores (as two instances would have) on one database: migrations are applied once,
    /// debits of one balance never overspend, a per-call payment is confirmed once, and a
    /// refund asked for by both happens once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_share_one_database() {
        let db = PgDb::new();
        let (a, b) = tokio::join!(
            PostgresStore::connect(opts(&db)),
            PostgresStore::connect(opts(&db))
        );
        let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
        assert_eq!(a.applied_migrations().await.unwrap(), vec![1, 2]);
        let ids = contract::two_stores_share_one_balance(a.clone(), b.clone()).await;
        // One refund asked for by both stores at once: once.
        let (ra, rb) = tokio::join!(a.refund(ids[0], 3), b.refund(ids[0], 3));
        assert!(ra.unwrap() ^ rb.unwrap(), "refunded exactly once");
        assert_eq!(a.balance([5; 32]).await.unwrap(), Some((20_000, 19_000)));
        let e = b.entries([5; 32]).await.unwrap();
        assert_eq!(e.iter().filter(|e| e.kind == LedgerKind::Debit).count(), 20);
        assert_eq!(e.iter().filter(|e| e.kind == LedgerKind::Refund).count(), 1);
        // A per-call token confirmed by both at once: once.
        a.issue(
            contract::record(6, BillingMode::PerCall, 0),
            Zeroizing::new([2; 32]),
        )
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for i in 0..16 {
            let s: Arc<dyn L402Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                s.confirm_payment([6; 32], 5).await.unwrap()
            }));
        }
        let mut firsts = 0;
        for t in tasks {
            if t.await.unwrap() {
                firsts += 1;
            }
        }
        assert_eq!(firsts, 1);
    }

    /// The server stopped and started again under a live store: operations fail (closed)
    /// while it is down, the store reconnects by itself, and no committed row is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconnects_after_a_restart() {
        let mut db = PgDb::new();
        if db.server.is_none() {
            eprintln!("no PostgreSQL of the test's own here; skipping the restart test");
            return;
        }
        let s = PostgresStore::connect(PostgresOptions {
            timeout: Duration::from_millis(1500),
            ..opts(&db)
        })
        .await
        .unwrap();
        s.issue(
            contract::record(8, BillingMode::Balance, 10_000),
            Zeroizing::new([3; 32]),
        )
        .await
        .unwrap();
        s.confirm_payment([8; 32], 1).await.unwrap();
        for i in 0..3 {
            assert!(matches!(
                s.debit([8; 32], 1000, u64::MAX, 2 + i).await.unwrap(),
                DebitOutcome::Debited { .. }
            ));
        }
        let server = db.server_mut().unwrap();
        server.kill();
        let e = s.debit([8; 32], 1000, u64::MAX, 9).await;
        assert!(matches!(e, Err(StoreError::Unavailable(_))), "{e:?}");
        assert!(s.balance([8; 32]).await.is_err());
        server.restart();
        // Back by itself (the first call may still meet a connection that died with the
        // server; it fails closed and the next one reconnects).
        let mut ok = None;
        for _ in 0..20 {
            if let Ok(b) = s.balance([8; 32]).await {
                ok = Some(b);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            ok,
            Some(Some((10_000, 3000))),
            "every committed debit survived"
        );
        assert!(matches!(
            s.debit([8; 32], 1000, u64::MAX, 10).await.unwrap(),
            DebitOutcome::Debited {
                remaining_msat: 6000,
                ..
            }
        ));
        let debits = s
            .entries([8; 32])
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == LedgerKind::Debit)
            .count();
        assert_eq!(debits, 4);
    }

    /// A debit stuck behind a lock another session holds fails closed within the timeout
    /// (the server's statement_timeout and the client's bound), takes nothing, and the next one
    /// goes through once the lock is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocked_statement_times_out() {
        let db = PgDb::new();
        let s = PostgresStore::connect(PostgresOptions {
            timeout: Duration::from_millis(300),
            ..opts(&db)
        })
        .await
        .unwrap();
        s.issue(
            contract::record(9, BillingMode::Balance, 5000),
            Zeroizing::new([4; 32]),
        )
        .await
        .unwrap();
        s.confirm_payment([9; 32], 1).await.unwrap();
        let mut cfg: tokio_postgres::Config = db.url().parse().unwrap();
        cfg.options(format!("-c search_path={}", db.schema));
        let (mut other, conn) = cfg.connect(NoTls).await.unwrap();
        tokio::spawn(conn);
        let tx = other.transaction().await.unwrap();
        tx.execute(
            "SELECT 1 FROM l402_balances WHERE token_id = $1 FOR UPDATE",
            &[&&[9u8; 32][..]],
        )
        .await
        .unwrap();
        let t = std::time::Instant::now();
        let r = s.debit([9; 32], 1000, u64::MAX, 2).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // Hold the lock well past the server's statement_timeout: the refused debit must not
        // go through behind the caller's back once the lock is gone.
        tokio::time::sleep(Duration::from_millis(700)).await;
        tx.rollback().await.unwrap();
        let mut ok = None;
        for _ in 0..20 {
            if let Ok(o) = s.debit([9; 32], 1000, u64::MAX, 3).await {
                ok = Some(o);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(
            ok,
            Some(DebitOutcome::Debited {
                remaining_msat: 4000,
                ..
            })
        ));
        assert_eq!(s.balance([9; 32]).await.unwrap(), Some((5000, 1000)));
    }

    #[test]
    fn bad_options() {
        assert!(PostgresStore::new(PostgresOptions::new("not a url ::")).is_err());
        assert!(PostgresStore::new(PostgresOptions {
            schema: Some("x; DROP TABLE y".into()),
            ..PostgresOptions::new("postgres://u@127.0.0.1/db")
        })
        .is_err());
        let dbg = format!(
            "{:?}",
            PostgresOptions::new("postgres://u:hunter2@127.0.0.1/db")
        );
        assert!(!dbg.contains("hunter2"));
    }
}
