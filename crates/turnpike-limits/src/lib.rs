//! turnpike's limits: rate limits sized for agents, in-flight caps, a loop brake and daily
//! budgets, with the `RateLimit-Policy` / `RateLimit` / `Retry-After` header fields that tell a
//! caller exactly when to come back.
//!
//! - [`Quota`] and [`Rate`]: a GCRA quota (`burst`, `rate`), the arithmetic in [`quota`];
//! - [`LimitBackend`]: where the state lives — [`MemoryBackend`] (sharded, swept, the embedded
//!   default) or [`RedisBackend`] (one Lua script per decision, shared by several instances);
//! - [`Limiter`]: the engine the gateway calls once per call ([`Limiter::admit`]), built from
//!   [`LimitsConfig`] and [`BudgetsConfig`]; [`PendingAdmit`]: its check left pending until a
//!   credential is spent, so that on Redis both are one script;
//! - [`headers`]: the header-field renderers.
//!
//! Every limit is keyed by the identity's scope key ([`turnpike_core::Identity::scope_key`])
//! and a [`Class`]: discovery traffic, one tool, all tools, one other method. See
//! docs/LIMITS.md for the model, the configuration and what the gateway answers.

pub mod backend;
pub mod config;
pub mod engine;
pub mod headers;
pub mod memory;
pub mod pending;
pub mod quota;
#[cfg(feature = "redis")]
pub mod redis;

pub use backend::{
    Check, CheckAndSpend, CheckOutcome, Class, ConcurrencyCheck, ConcurrencyStatus, DailyStatus,
    Denial, InFlight, Lease, LimitBackend, LimitError, LoopBrake, LoopCheck, RateCheck,
    SpendOutcome, SpendReceipt, MAX_RATES,
};
pub use config::{
    valid_schema_name, BudgetsConfig, ConfigProblem, DurableBackend, FailureMode,
    IdentityQuotaConfig, LimitMode, LimitsConfig, LoopBrakeConfig, QuotaConfig, RailClass,
    StoreBackend, StoreConfig, UnknownRail,
};
pub use engine::{Admission, Admitted, CallInfo, CallKind, LimitReason, Limited, Limiter};
pub use memory::{Clock, ManualClock, MemoryBackend, SystemClock};
pub use pending::PendingAdmit;
pub use quota::{Quota, QuotaError, Rate, RateDecision};
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisOptions};

use std::sync::Arc;
use std::time::Duration;

/// The backend `[store]` asks for: memory, or Redis at `redis_url` (created without waiting
/// for the server; inside a Tokio runtime).
pub fn backend_from_config(store: &StoreConfig) -> Result<Arc<dyn LimitBackend>, LimitError> {
    match store.backend {
        StoreBackend::Memory => Ok(Arc::new(MemoryBackend::new())),
        #[cfg(feature = "redis")]
        StoreBackend::Redis => {
            let url = store
                .redis_url
                .as_deref()
                .ok_or_else(|| LimitError::Invalid("store.redis_url is required".into()))?;
            let opts = RedisOptions {
                key_prefix: store.key_prefix.clone(),
                timeout: Duration::from_millis(store.timeout_ms.max(1)),
            };
            Ok(Arc::new(RedisBackend::new(url, opts)?))
        }
        #[cfg(not(feature = "redis"))]
        StoreBackend::Redis => {
            let _ = Duration::ZERO;
            Err(LimitError::Invalid(
                "this build has no Redis backend (feature \"redis\")".into(),
            ))
        }
    }
}
