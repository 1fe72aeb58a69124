//! The Redis spent set: several gateway instances share one record of spent credentials.
//!
//! One round trip per insert: `SET <prefix>:spent:<hex key> 1 NX PX <ttl>`, which records the key
//! only if it is absent, atomically. The key lives until the credential's expiry plus a grace
//! for clock skew between instances (the TTL is computed from the caller's own clock, so each
//! instance's view of "still valid" is covered), after which Redis drops it by itself.
//!
//! [`SpentSet::insert_issued`] also keeps the set's epoch: `<prefix>:epoch` holds the Unix
//! second from which Redis holds every record. One script, one round trip: create the epoch key
//! if it is missing (Redis lost its data), beginning the second after the caller's clock, then
//! refuse a credential issued before the epoch began, else `SET NX PX` as above. When Redis loses
//! its data, the epoch key goes with the records, so everything issued before the loss is
//! refused after it. The set opens its epoch when it is created (a background `SET NX` with the
//! current second), so the first credentials on an empty Redis are not refused; after a loss,
//! credentials issued between the loss and the second after the first spend are refused once (a
//! new challenge or proof passes). Instances' clocks must agree (they must for expiry already).
//!
//! The client is a [`redis::aio::ConnectionManager`], which reconnects by itself after Redis
//! restarts. Every insert is bounded by a timeout; a timeout or lost connection is
//! [`StoreError::Unavailable`], on which callers fail closed.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt::Write as _;
use std::time::Duration;

use turnpike_core::BoxFuture;

use crate::{SpentSet, StoreError};

/// The longest a spent key is kept: ten years.
const MAX_TTL_MS: u64 = 10 * 366 * 86_400 * 1000;

/// KEYS[1] the record, KEYS[2] the epoch; ARGV[1] TTL in ms, ARGV[2] now, ARGV[3] issued at.
/// Returns 1 (recorded), 0 (spent), -1 (issued before the epoch). An epoch opened here begins
/// the second after `now`: whatever was issued up to the moment the loss was seen is refused.
const SPEND_SCRIPT: &str = r"
local epoch = tonumber(redis.call('GET', KEYS[2]))
if not epoch then
  epoch = tonumber(ARGV[2]) + 1
  redis.call('SET', KEYS[2], string.format('%d', epoch))
end
if tonumber(ARGV[3]) < epoch then
  return -1
end
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then
  return 1
end
return 0
";

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

/// A [`SpentSet`] on Redis.
#[derive(Clone)]
pub struct RedisSpentSet {
    conn: ConnectionManager,
    opts: RedisSpentSetOptions,
    script: redis::Script,
}

impl std::fmt::Debug for RedisSpentSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSpentSet")
            .field("opts", &self.opts)
            .finish()
    }
}

impl RedisSpentSet {
    /// A spent set on the Redis at `url` (`redis://host:port/db`). Must be called inside a Tokio
    /// runtime; does not wait for the server (inserts fail as unavailable until it answers).
    pub fn new(url: &str, opts: RedisSpentSetOptions) -> Result<RedisSpentSet, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Unavailable(
                "the Redis client must be created inside a Tokio runtime".into(),
            ));
        }
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(opts.timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
        Ok(Self::with_connection(conn, opts))
    }

    /// A spent set on an existing connection manager (e.g. shared with the limits backend).
    /// Opens the epoch in the background when called inside a Tokio runtime.
    pub fn with_connection(conn: ConnectionManager, opts: RedisSpentSetOptions) -> RedisSpentSet {
        let set = RedisSpentSet {
            conn,
            opts,
            script: redis::Script::new(SPEND_SCRIPT),
        };
        // Open the epoch now (unless Redis has one), so credentials issued from here on pass
        // their first spend; if Redis is away, the first spend opens it instead.
        let (mut conn, key, timeout) = (set.conn.clone(), set.epoch_key(), set.opts.timeout);
        let now = turnpike_core::unix_now();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key).arg(now).arg("NX");
                let _ =
                    tokio::time::timeout(timeout * 4, cmd.query_async::<redis::Value>(&mut conn))
                        .await;
            });
        }
        set
    }

    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.opts.key_prefix)
    }

    /// When the current epoch began (Unix seconds), if Redis holds one.
    pub async fn epoch_start(&self) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.epoch_key());
        let reply =
            tokio::time::timeout(self.opts.timeout, cmd.query_async::<Option<u64>>(&mut conn))
                .await;
        match reply {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("redis: {e}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis: no answer within {:?}",
                self.opts.timeout
            ))),
        }
    }

    fn key(&self, key: &[u8; 32]) -> String {
        let mut s = String::with_capacity(self.opts.key_prefix.len() + 7 + 64);
        s.push_str(&self.opts.key_prefix);
        s.push_str(":spent:");
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
        let mut inv = self.script.prepare_invoke();
        inv.key(self.key(&key))
            .key(self.epoch_key())
            .arg(ms)
            .arg(now)
            .arg(issued_at);
        let mut conn = self.conn.clone();
        let reply =
            tokio::time::timeout(self.opts.timeout, inv.invoke_async::<i64>(&mut conn)).await;
        match reply {
            Ok(Ok(1)) => Ok(true),
            Ok(Ok(0 | -1)) => Ok(false),
            Ok(Ok(other)) => Err(StoreError::Unavailable(format!(
                "redis: unexpected reply to the spend script: {other}"
            ))),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("redis: {e}"))),
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
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(&key)).arg(1).arg("NX").arg("PX").arg(ms);
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
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("redis: {e}"))),
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
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("redis: {e}"))),
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
}
