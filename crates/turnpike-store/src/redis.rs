//! The Redis spent set: several gateway instances share one record of spent credentials.
//!
//! One round trip per insert: `SET <record key> 1 NX PX <ttl>`, which records the key only if
//! it is absent, atomically. The key lives until the credential's expiry plus a grace for clock
//! skew between instances (the TTL is computed from the caller's own clock, so each instance's
//! view of "still valid" is covered), after which Redis drops it by itself.
//!
//! [`SpentSet::insert_issued`] also keeps the set's epoch: an epoch key holds the Unix second
//! from which Redis holds every record. One script, one round trip: create the epoch key if it
//! is missing (Redis lost its data), beginning the second after the caller's clock, then refuse
//! a credential issued before the epoch began, else `SET NX PX` as above. When Redis loses its
//! data, the epoch key goes with the records, so everything issued before the loss is refused
//! after it. The set opens its epoch when it is created (a background `SET NX` with the current
//! second), so the first credentials on an empty Redis are not refused; until Redis has
//! answered for an epoch (at most four timeouts after creation), a spend that finds none opens
//! it where that opening would have, so a spend that overtakes the opening is not refused
//! either; after a loss,
//! credentials issued between the loss and the second after the first spend are refused once (a
//! new challenge or proof passes). Instances' clocks must agree (they must for expiry already).
//!
//! Keys. On one server: `<prefix>:spent:<hex key>` and one epoch, `<prefix>:epoch`. On a Redis
//! Cluster a script may only touch keys of one hash slot, and each master loses its data on its
//! own (a master restarted empty, or a replica promoted before it had every write), so the
//! records are spread over 256 buckets by the key's first byte, each bucket with its own epoch
//! in its own slot: `<prefix>:{<bb>}:spent:<hex key>` and `<prefix>:{<bb>}:epoch`, `<bb>` the
//! first byte in hex (the braces are the hash tag). A credential's key, hence its bucket, is
//! fixed by the credential alone, so every instance looks for it in the same place: single use
//! holds across instances as on one server, and a bucket that lost its data refuses what was
//! issued before the loss. A rail that chooses its keys begins a credential's key with the
//! bucket of the caller it was issued to ([`crate::cluster_bucket`],
//! [`SpentSet::caller_buckets`]): the limits keep that caller's keys in the bucket's slot, so
//! the spend runs in the caller's limits script ([`crate::fuse`]).
//!
//! The client is a [`RedisConn`] (one server or a cluster), which reconnects by itself after
//! Redis restarts. Every insert is bounded by a timeout; a timeout or lost connection is
//! [`StoreError::Unavailable`], on which callers fail closed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use turnpike_core::BoxFuture;

use crate::conn::RedisConn;
use crate::fuse::{pending_check, spend_lua, Before, RedisSpend, SpendCode};
use crate::{SpentSet, StoreError};

/// Buckets of a set on a Redis Cluster (one per value of a key's first byte).
const BUCKETS: usize = 256;

/// The longest a spent key is kept: ten years.
const MAX_TTL_MS: u64 = 10 * 366 * 86_400 * 1000;

/// The spend script: KEYS[1] the record, KEYS[2] the epoch; ARGV[1] TTL in ms, ARGV[2] the
/// epoch to open if there is none, ARGV[3] issued at. Returns 1 (recorded), 0 (spent), -1
/// (issued before the epoch). The caller opens an epoch at the second after its clock
/// (whatever was issued up to the moment the loss was seen is refused), or, right after it was
/// created and before its bucket answered once, where its own opening would have put it.
fn spend_script() -> String {
    let body = spend_lua("KEYS[1]", "KEYS[2]", "ARGV[1]", "ARGV[2]", "ARGV[3]");
    format!("{body}return spend_code\n")
}

/// Settings of [`RedisSpentSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSpentSetOptions {
    /// Prefix of every key (default `turnpike`).
    pub key_prefix: String,
    /// The longest one insert may take, connecting included (default 250 ms).
    pub timeout: Duration,
    /// How long past its expiry a key is kept, to cover clock skew between instances
    /// (default 60 s).
    pub skew_grace: Duration,
}

impl Default for RedisSpentSetOptions {
    fn default() -> Self {
        RedisSpentSetOptions {
            key_prefix: "turnpike".into(),
            timeout: Duration::from_millis(250),
            skew_grace: Duration::from_secs(60),
        }
    }
}

/// A [`SpentSet`] on Redis (one server or a Redis Cluster).
#[derive(Clone)]
pub struct RedisSpentSet {
    conn: RedisConn,
    opts: RedisSpentSetOptions,
    script: redis::Script,
    /// When the set was created (Unix seconds): the epoch its opening proposes.
    created_at: u64,
    /// Per epoch (one, or one per bucket on a cluster): whether Redis answered for it since
    /// the set was created (so it holds an epoch, or held one until a loss since).
    answered: Arc<[AtomicBool]>,
}

impl std::fmt::Debug for RedisSpentSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSpentSet")
            .field("opts", &self.opts)
            .field("cluster", &self.conn.is_cluster())
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

impl RedisSpentSet {
    /// A spent set on the Redis at `url`: `redis://host:port/db` (one server) or
    /// `redis+cluster://host:port,host:port` (a Redis Cluster; see [`crate::target`]). Must be
    /// called inside a Tokio runtime; does not wait for the server (inserts fail as unavailable
    /// until it answers).
    pub fn new(url: &str, opts: RedisSpentSetOptions) -> Result<RedisSpentSet, StoreError> {
        let conn = RedisConn::open(url, opts.timeout).map_err(StoreError::Unavailable)?;
        Ok(Self::with_connection(conn, opts))
    }

    /// A spent set on an existing connection (e.g. shared with the limits backend). Opens the
    /// epoch in the background when called inside a Tokio runtime.
    pub fn with_connection(conn: RedisConn, opts: RedisSpentSetOptions) -> RedisSpentSet {
        let epochs = if conn.is_cluster() { BUCKETS } else { 1 };
        let set = RedisSpentSet {
            conn,
            opts,
            script: redis::Script::new(&spend_script()),
            created_at: turnpike_core::unix_now(),
            answered: (0..epochs).map(|_| AtomicBool::new(false)).collect(),
        };
        // Open the epoch now (unless Redis has one), so credentials issued from here on pass
        // their first spend; if Redis is away, the first spend opens it instead. On a cluster,
        // every bucket's, each sent on its own (they live in different slots).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            for (i, key) in set.epoch_keys().into_iter().enumerate() {
                let (mut conn, timeout) = (set.conn.clone(), set.opts.timeout);
                let (answered, now) = (set.answered.clone(), set.created_at);
                rt.spawn(async move {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(key).arg(now).arg("NX");
                    let set_nx = cmd.query_async::<redis::Value>(&mut conn);
                    if let Ok(Ok(_)) = tokio::time::timeout(timeout * 4, set_nx).await {
                        answered[i].store(true, Ordering::Relaxed);
                    }
                });
            }
        }
        set
    }

    /// The index of the epoch `first` (a key's first byte) falls under.
    fn epoch_index(&self, first: u8) -> usize {
        usize::from(first) % self.answered.len()
    }

    /// The epoch a spend opens when its bucket has none: while the set is young and its
    /// bucket has not answered yet, where the set's own opening (maybe still under way) puts
    /// it; otherwise the second after the caller's clock (the data was lost).
    fn epoch_to_open(&self, first: u8, now: u64) -> u64 {
        let opening = self.opts.timeout.as_secs().saturating_mul(4).max(1);
        let answered = self.answered[self.epoch_index(first)].load(Ordering::Relaxed);
        if !answered && now <= self.created_at.saturating_add(opening) {
            self.created_at
        } else {
            now.saturating_add(1)
        }
    }

    /// The bucket part of a key on a cluster (`{bb}:`), empty on one server.
    fn push_bucket(&self, s: &mut String, first: u8) {
        if self.conn.is_cluster() {
            let _ = write!(s, "{{{first:02x}}}:");
        }
    }

    /// The epoch key of the bucket `first` falls in.
    fn epoch_key(&self, first: u8) -> String {
        let mut s = String::with_capacity(self.opts.key_prefix.len() + 12);
        s.push_str(&self.opts.key_prefix);
        s.push(':');
        self.push_bucket(&mut s, first);
        s.push_str("epoch");
        s
    }

    /// Every epoch key: one on a server, one per bucket on a cluster.
    fn epoch_keys(&self) -> Vec<String> {
        if self.conn.is_cluster() {
            (0..BUCKETS)
                .map(|b| self.epoch_key(u8::try_from(b).unwrap_or(u8::MAX)))
                .collect()
        } else {
            vec![self.epoch_key(0)]
        }
    }

    /// When the current epoch began (Unix seconds), if Redis holds one: the time from which the
    /// set holds every record. On a cluster the latest of the buckets' epochs, and `None` while
    /// any bucket has none.
    pub async fn epoch_start(&self) -> Result<Option<u64>, StoreError> {
        let mut latest = None;
        for key in self.epoch_keys() {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("GET");
            cmd.arg(key);
            let reply =
                tokio::time::timeout(self.opts.timeout, cmd.query_async::<Option<u64>>(&mut conn))
                    .await;
            match reply {
                Ok(Ok(Some(v))) => latest = latest.max(Some(v)),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "redis: no answer within {:?}",
                        self.opts.timeout
                    )))
                }
            }
        }
        Ok(latest)
    }

    fn key(&self, key: &[u8; 32]) -> String {
        let mut s = String::with_capacity(self.opts.key_prefix.len() + 12 + 64);
        s.push_str(&self.opts.key_prefix);
        s.push(':');
        self.push_bucket(&mut s, key[0]);
        s.push_str("spent:");
        for b in key {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    fn ttl_ms(&self, expires_at: u64, now: u64) -> u64 {
        let ttl = Duration::from_secs(expires_at.saturating_sub(now)) + self.opts.skew_grace;
        // Bounded so that Redis accepts it (credentials live minutes; ten years is plenty).
        u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_TTL_MS)
    }

    async fn insert_issued_async(
        &self,
        key: [u8; 32],
        issued_at: u64,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let ms = self.ttl_ms(expires_at, now);
        let (record, epoch, open) = (
            self.key(&key),
            self.epoch_key(key[0]),
            self.epoch_to_open(key[0], now),
        );
        if let Some(pending) = pending_check() {
            let spend = RedisSpend {
                target: self.conn.target().clone(),
                record_key: record.clone(),
                epoch_key: epoch.clone(),
                ttl_ms: ms,
                open_epoch_at: open,
                issued_at: Some(issued_at),
            };
            match pending.before_spend(Some(spend)).await {
                Before::Spend => {}
                Before::Refused => return Ok(false),
                Before::Done(r) => {
                    if r.is_ok() {
                        self.answered[self.epoch_index(key[0])].store(true, Ordering::Relaxed);
                    }
                    return r.map(|c| c == SpendCode::Recorded);
                }
            }
        }
        let mut inv = self.script.prepare_invoke();
        inv.key(record).key(epoch).arg(ms).arg(open).arg(issued_at);
        let mut conn = self.conn.clone();
        let reply =
            tokio::time::timeout(self.opts.timeout, inv.invoke_async::<i64>(&mut conn)).await;
        if let Ok(Ok(-1..=1)) = reply {
            self.answered[self.epoch_index(key[0])].store(true, Ordering::Relaxed);
        }
        match reply {
            Ok(Ok(1)) => Ok(true),
            Ok(Ok(0 | -1)) => Ok(false),
            Ok(Ok(other)) => Err(StoreError::Unavailable(format!(
                "redis: unexpected reply to the spend script: {other}"
            ))),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis: no answer within {:?}",
                self.opts.timeout
            ))),
        }
    }

    async fn insert_async(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let ms = self.ttl_ms(expires_at, now);
        let record = self.key(&key);
        if let Some(pending) = pending_check() {
            let spend = RedisSpend {
                target: self.conn.target().clone(),
                record_key: record.clone(),
                epoch_key: self.epoch_key(key[0]),
                ttl_ms: ms,
                open_epoch_at: now.saturating_add(1),
                issued_at: None,
            };
            match pending.before_spend(Some(spend)).await {
                Before::Spend => {}
                Before::Refused => return Ok(false),
                Before::Done(r) => return r.map(|c| c == SpendCode::Recorded),
            }
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(record).arg(1).arg("NX").arg("PX").arg(ms);
        let mut conn = self.conn.clone();
        let reply = tokio::time::timeout(
            self.opts.timeout,
            cmd.query_async::<redis::Value>(&mut conn),
        )
        .await;
        match reply {
            Ok(Ok(redis::Value::Okay)) => Ok(true),
            Ok(Ok(redis::Value::Nil)) => Ok(false),
            Ok(Ok(other)) => Err(StoreError::Unavailable(format!(
                "redis: unexpected reply to SET NX: {other:?}"
            ))),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis: no answer within {:?}",
                self.opts.timeout
            ))),
        }
    }
}

impl RedisSpentSet {
    async fn release_async(&self, key: [u8; 32]) -> Result<bool, StoreError> {
        // DEL answers how many keys it removed: of concurrent releases, one sees 1. Redis drops
        // expired keys itself, so a held key has not expired (up to the skew grace).
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(&key));
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.opts.timeout, cmd.query_async::<i64>(&mut conn)).await {
            Ok(Ok(n)) => Ok(n > 0),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis: no answer within {:?}",
                self.opts.timeout
            ))),
        }
    }
}

impl SpentSet for RedisSpentSet {
    fn insert(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.insert_async(key, expires_at, now))
    }

    fn release(&self, key: [u8; 32], _now: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.release_async(key))
    }

    fn insert_issued(
        &self,
        key: [u8; 32],
        issued_at: u64,
        expires_at: u64,
        now: u64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.insert_issued_async(key, issued_at, expires_at, now))
    }

    /// On a cluster: the records are bucketed by their key's first byte, each bucket in the
    /// slot of the limits of the callers in that [`crate::cluster_bucket`].
    fn caller_buckets(&self) -> bool {
        self.conn.is_cluster()
    }
}
