//! A call's limits check left pending until its credential is about to be spent, so that on
//! Redis the check and the spend are one script, one round trip ([`turnpike_store::fuse`]).
//!
//! The gateway uses it for a call that presents only puzzle solutions (its identity is the
//! caller's address whatever the verdict): it creates a [`PendingAdmit`], runs the rails with
//! it pending ([`turnpike_store::fuse::with_pending_check`]), and then takes its
//! [`Admission`] ([`PendingAdmit::admission`]) exactly as it would have taken
//! [`Limiter::admit`]'s before the rails ran. The order is kept — limits first, the spend only
//! if they allowed the call, so a limited caller keeps its solution — and a call whose
//! credential never reached a spend (a wrong solution) is checked afterwards, the same check.

use std::sync::Arc;

use parking_lot::Mutex;
use turnpike_core::{BoxFuture, RailId};
use turnpike_store::fuse::{Before, PendingCheck, RedisSpend};
use turnpike_store::StoreError;

use crate::config::IdentityQuotaConfig;
use crate::engine::{Admission, CallInfo, CallKind, Limiter};

/// A limits check for one call, pending until a credential of the call is about to be spent.
pub struct PendingAdmit {
    limiter: Arc<Limiter>,
    scope: String,
    rail: Option<RailId>,
    kind: OwnedKind,
    args_hash: Option<[u8; 32]>,
    /// The bucket of the caller's price/limit class, if it has one ([`Limiter::admit_in`]).
    bucket: Option<IdentityQuotaConfig>,
    state: Mutex<State>,
}

enum OwnedKind {
    Discovery,
    Tool(String),
    Method(String),
}

enum State {
    /// Not run yet.
    Pending,
    /// Run: its admission (until taken), and whether it allowed the call.
    Ran {
        admission: Option<Admission>,
        allowed: bool,
    },
}

impl std::fmt::Debug for PendingAdmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ran = matches!(*self.state.lock(), State::Ran { .. });
        f.debug_struct("PendingAdmit").field("ran", &ran).finish()
    }
}

impl PendingAdmit {
    /// `call`'s check on `limiter`, not run yet.
    pub fn new(limiter: Arc<Limiter>, call: &CallInfo<'_>) -> PendingAdmit {
        PendingAdmit {
            limiter,
            scope: call.scope.to_string(),
            rail: call.rail,
            kind: match call.kind {
                CallKind::Discovery => OwnedKind::Discovery,
                CallKind::Tool(t) => OwnedKind::Tool(t.to_string()),
                CallKind::Method(m) => OwnedKind::Method(m.to_string()),
            },
            args_hash: call.args_hash.copied(),
            bucket: None,
            state: Mutex::new(State::Pending),
        }
    }

    /// The check within the bucket of the caller's class ([`Limiter::admit_in`]).
    pub fn in_bucket(mut self, bucket: Option<IdentityQuotaConfig>) -> PendingAdmit {
        self.bucket = bucket;
        self
    }

    fn call(&self) -> CallInfo<'_> {
        CallInfo {
            scope: &self.scope,
            rail: self.rail,
            kind: match &self.kind {
                OwnedKind::Discovery => CallKind::Discovery,
                OwnedKind::Tool(t) => CallKind::Tool(t),
                OwnedKind::Method(m) => CallKind::Method(m),
            },
            args_hash: self.args_hash.as_ref(),
        }
    }

    /// Whether the check has run (a credential of the call reached its spend).
    pub fn has_run(&self) -> bool {
        matches!(*self.state.lock(), State::Ran { .. })
    }

    /// The call's admission: the one the check gave when a credential was about to be spent,
    /// else the check run now (no credential reached a spend). Once per call.
    pub async fn admission(&self) -> Admission {
        let ran = match &mut *self.state.lock() {
            State::Ran { admission, .. } => admission.take(),
            State::Pending => None,
        };
        match ran {
            Some(a) => a,
            None => {
                self.limiter
                    .admit_in(&self.call(), self.bucket.as_ref())
                    .await
            }
        }
    }
}

impl PendingCheck for PendingAdmit {
    fn before_spend(&self, spend: Option<RedisSpend>) -> BoxFuture<'_, Before> {
        Box::pin(async move {
            let allowed = match &*self.state.lock() {
                State::Ran { allowed, .. } => Some(*allowed),
                State::Pending => None,
            };
            // A later spend of the same call: the check counted the call once already.
            match allowed {
                Some(true) => return Before::Spend,
                Some(false) => return Before::Refused,
                None => {}
            }
            let (admission, spent) = self
                .limiter
                .admit_then_spend_in(&self.call(), spend.as_ref(), self.bucket.as_ref())
                .await;
            let allowed = matches!(admission, Admission::Allowed(_));
            *self.state.lock() = State::Ran {
                admission: Some(admission),
                allowed,
            };
            match (allowed, spent) {
                (false, _) => Before::Refused,
                (true, None) => Before::Spend,
                (true, Some(r)) => {
                    Before::Done(r.map_err(|e| StoreError::Unavailable(e.to_string())))
                }
            }
        })
    }
}
