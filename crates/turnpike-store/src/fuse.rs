//! One round trip for a call's limits and its credential's spend.
//!
//! A call paid by a single-use credential whose identity is the caller's address (a puzzle
//! solution) has its limits checked *before* the credential is spent, so a limited caller keeps
//! it for the retry. On Redis that was two round trips: the limits script, then the spend. The
//! caller (the gateway) may instead leave the limits check *pending* while the rails verify
//! ([`with_pending_check`]); a spent set about to record a credential then hands the pending
//! check its spend ([`PendingCheck::before_spend`]) and does what it answers:
//!
//! - [`Before::Done`]: the check ran and, since it allowed the call, the spend ran after it in
//!   the same script (one round trip); its answer is the spend's.
//! - [`Before::Refused`]: the limits refused (or their store is away and they fail closed):
//!   nothing is recorded, the credential stays unspent; the caller answers with the limits'
//!   refusal.
//! - [`Before::Spend`]: the limits allowed the call in a round trip of their own (they are not
//!   on the same Redis, or their keys are not in the credential's hash slot): the set records
//!   the credential itself, as before.
//!
//! So the order is kept (limits, then the spend, only if allowed) and the spend's own rules are
//! unchanged (atomic `SET NX`, the epoch, fail closed); only the number of round trips changes.
//! Sets that cannot fuse (in memory) still ask the pending check first, for the order.

use std::future::Future;
use std::sync::Arc;

use turnpike_core::BoxFuture;

use crate::StoreError;

/// A credential's spend on Redis, for a script that runs it after a limits check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSpend {
    /// The Redis the spent set is on (its URL as configured): the check fuses only on the same.
    pub target: Arc<str>,
    /// The record's key.
    pub record_key: String,
    /// The epoch key of the record's bucket (same hash slot).
    pub epoch_key: String,
    /// The record's time to live, in ms.
    pub ttl_ms: u64,
    /// The epoch to open if the bucket has none (Unix seconds).
    pub open_epoch_at: u64,
    /// When the credential was issued (Unix seconds), for the epoch check; `None` for a plain
    /// insert.
    pub issued_at: Option<u64>,
}

/// What a spend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendCode {
    /// Recorded: the credential was new.
    Recorded,
    /// Already spent (and not expired).
    Spent,
    /// Issued before the bucket's epoch began: refused as if spent.
    BeforeEpoch,
}

impl SpendCode {
    /// From a script's answer (1, 0, -1).
    pub fn from_reply(code: i64) -> Option<SpendCode> {
        match code {
            1 => Some(SpendCode::Recorded),
            0 => Some(SpendCode::Spent),
            -1 => Some(SpendCode::BeforeEpoch),
            _ => None,
        }
    }
}

/// What a spent set does after asking the pending check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// The limits allowed the call; record the credential as usual.
    Spend,
    /// The limits refused the call: record nothing (answer "not accepted").
    Refused,
    /// The limits allowed the call and the spend ran with them: this is its answer.
    Done(Result<SpendCode, StoreError>),
}

/// A call's limits check, pending until its credential is about to be spent.
pub trait PendingCheck: Send + Sync {
    /// Runs the check (once per call: later spends of the same call get its first answer,
    /// [`Before::Spend`] or [`Before::Refused`]), fused with `spend` when the check can run it
    /// in the same script.
    fn before_spend(&self, spend: Option<RedisSpend>) -> BoxFuture<'_, Before>;
}

tokio::task_local! {
    static PENDING: Arc<dyn PendingCheck>;
}

/// Runs `fut` with `check` pending: spent sets called from it (in this task) ask `check` before
/// recording a credential.
pub async fn with_pending_check<F: Future>(check: Arc<dyn PendingCheck>, fut: F) -> F::Output {
    PENDING.scope(check, fut).await
}

/// The check pending for the current task, if any.
pub fn pending_check() -> Option<Arc<dyn PendingCheck>> {
    PENDING.try_with(Arc::clone).ok()
}

/// Lua that spends a credential, setting the local `spend_code` to 1 (recorded), 0 (spent) or
/// -1 (issued before the epoch). Each argument is a Lua expression: the record key, the epoch
/// key, the TTL in ms, the epoch to open if there is none, and the issue time (`''` for a plain
/// insert, which skips the epoch). Both keys must be in one hash slot.
pub fn spend_lua(record: &str, epoch: &str, ttl: &str, open: &str, issued: &str) -> String {
    format!(
        r"
local spend_code = 1
local issued = {issued}
if issued ~= '' then
  local epoch = tonumber(redis.call('GET', {epoch}))
  if not epoch then
    epoch = tonumber({open})
    redis.call('SET', {epoch}, string.format('%d', epoch))
  end
  if tonumber(issued) < epoch then spend_code = -1 end
end
if spend_code == 1 and not redis.call('SET', {record}, 1, 'NX', 'PX', {ttl}) then
  spend_code = 0
end
"
    )
}
