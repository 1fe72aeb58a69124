//! The Redis backend: limit state shared by several gateway instances.
//!
//! - One Lua script per decision (`EVALSHA`, loaded again by itself after a Redis restart), so a
//!   whole check — every GCRA cell, the loop brake, the daily count and the in-flight slot — is
//!   one round trip and atomic.
//! - Time is the server's (`TIME` inside the script), so instances with skewed clocks agree.
//! - Every key carries a TTL: a GCRA cell lives until its bucket is full again, a daily counter
//!   until an hour after its day ends, an in-flight set until its newest lease runs out. Idle
//!   identities cost nothing.
//! - Keys: `<prefix>:{<scope digest>}:<kind>[:<class digest>]` on one server; on a Redis
//!   Cluster `<prefix>:{<bb>}:<scope digest>:<kind>[:<class digest>]`, `<bb>` the identity's
//!   bucket ([`turnpike_store::cluster_bucket`], two hex digits). The braces are a Redis Cluster
//!   hash tag, so all keys of one identity live in one slot and one script may touch them all;
//!   on a cluster that slot is also the spent sets' bucket `<bb>`, where a credential issued to
//!   the identity is recorded, so its spend rides on the identity's check. Identities and tool
//!   names are hashed (SHA-256, truncated), never stored.
//! - The client is a [`RedisConn`] (one server, or a Redis Cluster: every script touches the keys
//!   of one identity, one slot, so it runs on that slot's master): it reconnects by itself.
//!   Every operation is bounded by a timeout; a timeout or a lost connection is [`LimitError::Unavailable`], and
//!   the limiter applies the operator's failure mode.

use redis::Script;
use sha2::{Digest, Sha256};
use std::time::Duration;

use turnpike_core::BoxFuture;
use turnpike_store::fuse::{RedisSpend, SpendCode};
use turnpike_store::target::key_slot;
use turnpike_store::RedisConn;

use crate::backend::{
    cell_units, outcome, Check, CheckAndSpend, CheckOutcome, Lease, LeaseInner, LimitBackend,
    LimitError, LoopBrake, Raw, SpendOutcome, SpendReceipt, MAX_RATES,
};

/// Settings of the Redis backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prefix of every key (default `turnpike`).
    pub key_prefix: String,
    /// The longest one operation may take, connecting included (default 250 ms). Past it the
    /// operation fails as unavailable.
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            key_prefix: "turnpike".into(),
            timeout: Duration::from_millis(250),
        }
    }
}

/// The largest amount Lua's numbers hold exactly.
const MAX_EXACT: u64 = 1 << 53;

/// One whole check. KEYS: 1 loop cell, 2 strike cell, 3 daily hash, 4 in-flight set, 5.. rate
/// cells. ARGV: 1 number of rate cells; 2 loop on, 3 loop T, 4 loop tau, 5 strike decay (µs);
/// 6 daily on, 7 daily cap; 8 in-flight on, 9 max, 10 lease ms, 11 lease member; then T and tau
/// (µs) of each rate cell. Returns {allowed, unix secs, strike lead, daily used, in flight,
/// loop TAT lead, rate TAT leads…} (leads in µs past now).
const CHECK_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local ok = 1
local function fmt(x) return string.format('%.0f', x) end
local function tat_of(key)
  local v = tonumber(redis.call('GET', key) or '0') or 0
  if v < now then v = now end
  return v
end
local function put(key, tat)
  redis.call('SET', key, fmt(tat), 'PX', fmt(math.ceil((tat - now) / 1000) + 1))
end
local tats = {}
for i = 1, n do
  local T = tonumber(ARGV[10 + 2 * i])
  local tau = tonumber(ARGV[11 + 2 * i])
  local tat = tat_of(KEYS[4 + i])
  tats[i] = tat
  if tat + T - now > tau then ok = 0 end
end
local loop_on = ARGV[2] == '1'
local loop_tat = now
local loop_ok = true
if loop_on then
  loop_tat = tat_of(KEYS[1])
  if loop_tat + tonumber(ARGV[3]) - now > tonumber(ARGV[4]) then ok = 0; loop_ok = false end
end
local secs = tonumber(t[1])
local day = math.floor(secs / 86400)
local used = 0
if ARGV[6] == '1' then
  local v = redis.call('HMGET', KEYS[3], 'd', 'u')
  if tonumber(v[1]) == day then used = tonumber(v[2]) or 0 end
  if used + 1 > tonumber(ARGV[7]) then ok = 0 end
end
local inflight = 0
local now_ms = math.floor(now / 1000)
if ARGV[8] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', fmt(now_ms))
  inflight = redis.call('ZCARD', KEYS[4])
  if inflight >= tonumber(ARGV[9]) then ok = 0 end
end
if ok == 1 then
  for i = 1, n do put(KEYS[4 + i], tats[i] + tonumber(ARGV[10 + 2 * i])) end
  if loop_on then put(KEYS[1], loop_tat + tonumber(ARGV[3])) end
  if ARGV[6] == '1' then
    used = used + 1
    redis.call('HSET', KEYS[3], 'd', fmt(day), 'u', fmt(used))
    redis.call('EXPIREAT', KEYS[3], fmt((day + 1) * 86400 + 3600))
  end
  if ARGV[8] == '1' then
    local lease = tonumber(ARGV[10])
    redis.call('ZADD', KEYS[4], fmt(now_ms + lease), ARGV[11])
    redis.call('PEXPIRE', KEYS[4], fmt(lease + 1000))
    inflight = inflight + 1
  end
end
local strike = 0
if loop_on then
  local st = tat_of(KEYS[2])
  if not loop_ok then
    st = st + tonumber(ARGV[5])
    put(KEYS[2], st)
  end
  strike = st - now
end
local out = {ok, secs, strike, used, inflight, loop_tat - now}
for i = 1, n do out[#out + 1] = tats[i] - now end
return out
";

/// [`CHECK_LUA`] followed, when the call is allowed, by a credential's spend
/// ([`turnpike_store::fuse::spend_lua`]): KEYS after the rate cells: the record, its epoch;
/// ARGV after the rate cells: TTL in ms, the epoch to open, issued at (`''`: a plain insert).
/// The reply gains one last element: the spend's answer (1 recorded, 0 spent, -1 issued before
/// the epoch), or 2 when it was not attempted.
fn check_spend_lua() -> String {
    let check = CHECK_LUA.trim_end().trim_end_matches("return out");
    let spend = turnpike_store::fuse::spend_lua(
        "KEYS[5 + n]",
        "KEYS[6 + n]",
        "ARGV[12 + 2 * n]",
        "ARGV[13 + 2 * n]",
        "ARGV[14 + 2 * n]",
    );
    format!(
        "{check}\nif ok == 1 then\n{spend}\n  out[#out + 1] = spend_code\nelse\n  out[#out + 1] = 2\nend\nreturn out\n"
    )
}

/// The strike cell's lead over now, in µs.
const STRIKE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if v < now then return 0 end
return v - now
";

/// Spend ARGV[1] against cap ARGV[2] today. Returns {accepted, spent today, day, secs to midnight}.
const SPEND_LUA: &str = r"
local secs = tonumber(redis.call('TIME')[1])
local day = math.floor(secs / 86400)
local v = redis.call('HMGET', KEYS[1], 'd', 'u')
local used = 0
if tonumber(v[1]) == day then used = tonumber(v[2]) or 0 end
local amount = tonumber(ARGV[1])
local ok = 0
if used + amount <= tonumber(ARGV[2]) then
  used = used + amount
  ok = 1
  redis.call('HSET', KEYS[1], 'd', string.format('%.0f', day), 'u', string.format('%.0f', used))
  redis.call('EXPIREAT', KEYS[1], string.format('%.0f', (day + 1) * 86400 + 3600))
end
return {ok, used, day, (day + 1) * 86400 - secs}
";

/// Refund ARGV[2] if the counter is still on day ARGV[1].
const REFUND_LUA: &str = r"
local v = redis.call('HMGET', KEYS[1], 'd', 'u')
if v[1] and v[1] == ARGV[1] then
  local used = (tonumber(v[2]) or 0) - tonumber(ARGV[2])
  if used < 0 then used = 0 end
  redis.call('HSET', KEYS[1], 'u', string.format('%.0f', used))
end
return 1
";

/// The Redis limits backend.
#[derive(Clone)]
pub struct RedisBackend {
    conn: RedisConn,
    opts: RedisOptions,
    handle: tokio::runtime::Handle,
    check: Script,
    check_spend: Script,
    strike: Script,
    spend: Script,
    refund: Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("opts", &self.opts)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> LimitError {
    LimitError::Unavailable(format!("redis: {e}"))
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn short_hex(d: &[u8; 32], n: usize) -> String {
    hex::encode(&d[..n.min(32)])
}

impl RedisBackend {
    /// A backend on the Redis at `url`: `redis://host:port/db` (one server) or
    /// `redis+cluster://host:port,host:port` (a Redis Cluster). Must be called inside a Tokio
    /// runtime; does not wait for the server.
    pub fn new(url: &str, opts: RedisOptions) -> Result<RedisBackend, LimitError> {
        let conn = RedisConn::open(url, opts.timeout).map_err(LimitError::Invalid)?;
        Self::with_connection(conn, opts)
    }

    /// A backend on an existing connection (e.g. shared with the spent sets).
    pub fn with_connection(
        conn: RedisConn,
        opts: RedisOptions,
    ) -> Result<RedisBackend, LimitError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| LimitError::Invalid("must be created inside a Tokio runtime".into()))?;
        Ok(RedisBackend {
            conn,
            opts,
            handle,
            check: Script::new(CHECK_LUA),
            check_spend: Script::new(&check_spend_lua()),
            strike: Script::new(STRIKE_LUA),
            spend: Script::new(SPEND_LUA),
            refund: Script::new(REFUND_LUA),
        })
    }

    /// The part every key of `scope` begins with. One server: `<prefix>:{<scope digest>}`. A
    /// cluster: `<prefix>:{<bb>}:<scope digest>`, `<bb>` the caller's
    /// [`turnpike_store::cluster_bucket`], so the keys are in the slot of the spent sets' bucket
    /// `<bb>` (a credential issued to this caller is spent in the same script).
    fn scope_tag(&self, scope: &str) -> String {
        let d = digest(&[b"scope", scope.as_bytes()]);
        if self.conn.is_cluster() {
            format!(
                "{}:{{{:02x}}}:{}",
                self.opts.key_prefix,
                turnpike_store::cluster_bucket(scope),
                short_hex(&d, 12)
            )
        } else {
            format!("{}:{{{}}}", self.opts.key_prefix, short_hex(&d, 12))
        }
    }

    fn spend_key(&self, key: &str) -> String {
        let d = digest(&[b"spend", key.as_bytes()]);
        format!("{}:{{{}}}:spend", self.opts.key_prefix, short_hex(&d, 12))
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, LimitError> {
        match tokio::time::timeout(self.opts.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(LimitError::Unavailable(format!(
                "redis: no answer within {:?}",
                self.opts.timeout
            ))),
        }
    }

    /// Whether `spend` can run in the same script as a check of `scope`: the same Redis, and
    /// on a cluster the same hash slot.
    fn can_fuse(&self, scope: &str, spend: &RedisSpend) -> bool {
        if spend.target != *self.conn.target() {
            return false;
        }
        if !self.conn.is_cluster() {
            return true;
        }
        // Hash slots of two key names: public numbers, not secrets. The limits' slot is their
        // tag's, `{<bb>}` ([`RedisBackend::scope_tag`]).
        let bucket = turnpike_store::cluster_bucket(scope);
        let limits_slot = key_slot(&format!("{{{bucket:02x}}}"));
        let spend_slot = key_slot(&spend.record_key);
        limits_slot == spend_slot
    }

    async fn check_async(
        &self,
        check: &Check<'_>,
        spend: Option<&RedisSpend>,
    ) -> Result<(CheckOutcome, Option<SpendCode>), LimitError> {
        let n = check.rates.len();
        if n > MAX_RATES {
            return Err(LimitError::Invalid(format!(
                "{n} rate cells in one check (at most {MAX_RATES})"
            )));
        }
        const US: u64 = 1000;
        let tag = self.scope_tag(check.scope);
        let loop_key = match &check.loop_brake {
            Some(l) => {
                let d = digest(&[l.tool.as_bytes(), &l.args_hash]);
                format!("{tag}:loop:{}", short_hex(&d, 12))
            }
            None => format!("{tag}:loop"),
        };
        let conc_key = format!("{tag}:conc");
        let script = if spend.is_some() {
            &self.check_spend
        } else {
            &self.check
        };
        let mut inv = script.prepare_invoke();
        inv.key(&loop_key)
            .key(format!("{tag}:strike"))
            .key(format!("{tag}:daily"))
            .key(&conc_key);
        for rc in check.rates {
            let d = digest(&[rc.class.label().as_bytes()]);
            inv.key(format!("{tag}:rl:{}", short_hex(&d, 8)));
        }
        inv.arg(n);
        match &check.loop_brake {
            Some(l) => {
                let (t, tau) = cell_units(&l.brake.quota(), US);
                let decay = u64::try_from(l.brake.strike_decay.as_micros())
                    .unwrap_or(MAX_EXACT)
                    .max(1);
                inv.arg(1).arg(t).arg(tau).arg(decay);
            }
            None => {
                inv.arg(0).arg(1).arg(1).arg(1);
            }
        }
        match check.daily_cap {
            Some(cap) => inv.arg(1).arg(cap.min(MAX_EXACT)),
            None => inv.arg(0).arg(0),
        };
        let member = format!("{:016x}", rand::random::<u64>());
        match &check.concurrency {
            Some(c) => {
                let ms = u64::try_from(c.lease.as_millis())
                    .unwrap_or(MAX_EXACT)
                    .max(1);
                inv.arg(1).arg(c.max).arg(ms).arg(&member)
            }
            None => inv.arg(0).arg(0).arg(0).arg(""),
        };
        for rc in check.rates {
            let (t, tau) = cell_units(&rc.quota, US);
            inv.arg(t).arg(tau);
        }
        if let Some(sp) = spend {
            inv.key(&sp.record_key)
                .key(&sp.epoch_key)
                .arg(sp.ttl_ms)
                .arg(sp.open_epoch_at)
                .arg(sp.issued_at.map_or(String::new(), |t| t.to_string()));
        }
        let mut conn = self.conn.clone();
        let raw: Vec<i64> = self.bounded(inv.invoke_async(&mut conn)).await?;
        let get = |i: usize| -> Result<u64, LimitError> {
            raw.get(i)
                .map(|v| u64::try_from(*v).unwrap_or(0))
                .ok_or_else(|| LimitError::Unavailable("redis: short script reply".into()))
        };
        let allowed = get(0)? == 1;
        let secs = get(1)?;
        let mut tats = [0u64; MAX_RATES];
        for (i, t) in tats.iter_mut().enumerate().take(n) {
            *t = get(6 + i)?;
        }
        let lease = (allowed && check.concurrency.is_some()).then_some(Lease {
            inner: LeaseInner::Redis {
                key: conc_key,
                member,
            },
        });
        let spent = match spend {
            // The spend's answer may be -1: read as it is.
            Some(_) => match raw.get(6 + n).copied() {
                Some(2) => None,
                code => Some(
                    code.and_then(SpendCode::from_reply)
                        .ok_or_else(|| LimitError::Unavailable("redis: bad spend reply".into()))?,
                ),
            },
            None => None,
        };
        let out = outcome(
            check,
            Raw {
                allowed,
                unit_nanos: US,
                tats: &tats[..n],
                loop_tat: get(5)?,
                strike_ahead: get(2)?,
                used: get(3)?,
                in_flight: u32::try_from(get(4)?).unwrap_or(u32::MAX),
                secs_into_day: secs % 86_400,
            },
            lease,
        );
        Ok((out, spent))
    }
}

impl LimitBackend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check<'a>(
        &'a self,
        check: &'a Check<'a>,
    ) -> BoxFuture<'a, Result<CheckOutcome, LimitError>> {
        Box::pin(async move { self.check_async(check, None).await.map(|(o, _)| o) })
    }

    fn check_and_spend<'a>(
        &'a self,
        check: &'a Check<'a>,
        spend: &'a RedisSpend,
    ) -> Option<CheckAndSpend<'a>> {
        if !self.can_fuse(check.scope, spend) {
            return None;
        }
        Some(Box::pin(self.check_async(check, Some(spend))))
    }

    fn release(&self, lease: Lease) {
        let LeaseInner::Redis { key, member } = lease.inner else {
            return;
        };
        let mut conn = self.conn.clone();
        let timeout = self.opts.timeout;
        self.handle.spawn(async move {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(&key).arg(&member);
            let zrem = cmd.query_async::<i64>(&mut conn);
            // On failure the slot runs out with its lease.
            let _ = tokio::time::timeout(timeout, zrem).await;
        });
    }

    fn effort_multiplier<'a>(
        &'a self,
        scope: &'a str,
        brake: &'a LoopBrake,
    ) -> BoxFuture<'a, Result<u32, LimitError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut inv = self.strike.prepare_invoke();
            inv.key(format!("{}:strike", self.scope_tag(scope)));
            let lead: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
            let lead = u64::try_from(lead).unwrap_or(0);
            Ok(brake.multiplier_for(Duration::from_micros(lead)))
        })
    }

    fn spend<'a>(
        &'a self,
        key: &'a str,
        amount: u64,
        cap: u64,
    ) -> BoxFuture<'a, Result<SpendOutcome, LimitError>> {
        Box::pin(async move {
            if amount > MAX_EXACT || cap > MAX_EXACT {
                return Err(LimitError::Invalid(format!(
                    "amounts above 2^53 are not supported (amount {amount}, cap {cap})"
                )));
            }
            let mut conn = self.conn.clone();
            let mut inv = self.spend.prepare_invoke();
            inv.key(self.spend_key(key)).arg(amount).arg(cap);
            let raw: Vec<i64> = self.bounded(inv.invoke_async(&mut conn)).await?;
            let [ok, used, day, to_midnight] = raw[..] else {
                return Err(LimitError::Unavailable("redis: bad spend reply".into()));
            };
            let accepted = ok == 1;
            let day = u64::try_from(day).unwrap_or(0);
            Ok(SpendOutcome {
                accepted,
                spent: u64::try_from(used).unwrap_or(0),
                cap,
                reset: Duration::from_secs(u64::try_from(to_midnight).unwrap_or(0)),
                receipt: accepted.then(|| SpendReceipt {
                    key: key.to_string(),
                    day,
                    amount,
                }),
            })
        })
    }

    fn refund<'a>(&'a self, receipt: &'a SpendReceipt) -> BoxFuture<'a, Result<(), LimitError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut inv = self.refund.prepare_invoke();
            inv.key(self.spend_key(&receipt.key))
                .arg(receipt.day)
                .arg(receipt.amount.min(MAX_EXACT));
            let _: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
            Ok(())
        })
    }
}
