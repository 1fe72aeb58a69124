//! Configuration reload without dropping calls.
//!
//! The server holds its gate in a [`LiveGate`]: every request takes the gate in force when it
//! arrives (an `Arc` clone) and keeps it until its response — and any stream — has ended. A
//! reload builds a whole new gate and swaps it in; calls already inside finish on the old one.
//!
//! What a reload may change: prices (`[tools]`, `[methods]`), `[server]` request rules
//! (allowed hosts and origins, challenge mode, body size and time limits, shutdown timeout),
//! and `[limits]` / `[budgets]` (a new limiter: with the memory backend, its counts start over).
//! The rails and what they hold — proof-of-work keys and spent sets, the L402 store, the OAuth
//! rail — are carried over unchanged, so no solution can be replayed and no token is lost.
//!
//! A new configuration is **refused**, and the old one stays in force, when it does not parse
//! or validate, or when it changes what only a restart can change: `[server]` listen, path,
//! data_dir and public_url, `[upstream]`, `[pow]`, `[l402]`, `[lightning]`, `[oauth]`,
//! `[store]`, `[admin]`, `[stdio]` and `[telemetry]`. Each attempt is logged (`target: turnpike::reload`) and counted in
//! `turnpike_config_reloads_total`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Map, Value};
use turnpike_l402::store::L402Store;
use turnpike_operator::metrics::Metrics;
use turnpike_operator::Operated;

use crate::config::Config;
use crate::{Gate, GatewayError};

/// Produces the configuration to reload to (the file, plus any command-line overrides).
pub type Loader = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// The gate in force, swappable.
pub struct LiveGate {
    gate: RwLock<Arc<Gate>>,
    config: RwLock<Arc<Config>>,
    metrics: Arc<Metrics>,
    /// Where a reload loads its configuration from (none: the server has no file).
    loader: Option<Loader>,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for LiveGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveGate").finish_non_exhaustive()
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration could not be loaded or is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The new configuration changes what only a restart can change.
    #[error("these changes need a restart: {}", .0.join(", "))]
    NeedsRestart(Vec<String>),
    /// The new gate could not be built.
    #[error("{0}")]
    Build(#[from] GatewayError),
}

impl LiveGate {
    /// A live gate over `gate`, built from `config`.
    pub fn new(config: Config, gate: Gate) -> LiveGate {
        let metrics = gate.metrics().clone();
        LiveGate {
            gate: RwLock::new(Arc::new(gate)),
            config: RwLock::new(Arc::new(config)),
            metrics,
            loader: None,
            reloading: Mutex::new(()),
        }
    }

    /// The same, reloading with `loader` on request ([`Operated::reload`]).
    pub fn with_loader(mut self, loader: Option<Loader>) -> LiveGate {
        self.loader = loader;
        self
    }

    /// The gate in force now.
    pub fn gate(&self) -> Arc<Gate> {
        self.gate.read().clone()
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// The process's metrics (shared by every gate it swaps in).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Loads a new configuration with `loader` and applies it; logs and counts the result.
    pub fn reload_with(&self, loader: &Loader, why: &str) -> Result<Vec<&'static str>, String> {
        let result = loader()
            .map_err(ReloadError::Invalid)
            .and_then(|c| self.apply(c));
        match &result {
            Ok(changed) => tracing::info!(
                target: "turnpike::reload",
                trigger = why,
                changed = %changed.join(","),
                "configuration reloaded"
            ),
            Err(e) => tracing::warn!(
                target: "turnpike::reload",
                trigger = why,
                error = %e,
                "new configuration refused; the old one stays in force"
            ),
        }
        self.metrics.reloaded(result.is_ok());
        result.map_err(|e| e.to_string())
    }

    /// Applies `new` if it is valid and changes only what a reload may change. Returns the
    /// sections that changed.
    pub fn apply(&self, mut new: Config) -> Result<Vec<&'static str>, ReloadError> {
        let _one = self.reloading.lock();
        let old = self.config();
        if new.server.public_url.is_none() && new.server.listen == old.server.listen {
            // The server filled it in from the bound address.
            new.server.public_url.clone_from(&old.server.public_url);
        }
        new.validate()
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let restart = restart_only_changes(&old, &new);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        let changed = changed_sections(&old, &new);
        let current = self.gate();
        let mut gate = Gate::from_config_with_rails(&new, current.rails().clone())?;
        if old.limits == new.limits && old.budgets == new.budgets {
            gate = gate.with_limiter(current.limiter().cloned());
        }
        let gate = gate
            .with_metrics(self.metrics.clone())
            .with_telemetry(current.telemetry().cloned());
        *self.gate.write() = Arc::new(gate);
        *self.config.write() = Arc::new(new);
        Ok(changed)
    }
}

fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let (o, n) = (&old.server, &new.server);
    if o.listen != n.listen {
        v.push("[server] listen".into());
    }
    if o.path != n.path {
        v.push("[server] path".into());
    }
    if o.data_dir != n.data_dir {
        v.push("[server] data_dir".into());
    }
    if o.public_url != n.public_url {
        v.push("[server] public_url".into());
    }
    if o.conn_rules() != n.conn_rules() {
        v.push("[server] connection limits and timeouts".into());
    }
    if old.upstream != new.upstream {
        v.push("[upstream]".into());
    }
    for rail in crate::registry::RAIL_CONFS {
        for table in rail.tables() {
            // The gateway's own keys of a rail's table count as that table.
            let gateway_keys =
                *table == crate::config::IDENTITY_TABLE && old.identity != new.identity;
            if !old.rails.same_table(&new.rails, table) || gateway_keys {
                v.push(format!("[{table}]"));
            }
        }
    }
    if old.store != new.store {
        v.push("[store]".into());
    }
    if old.admin != new.admin {
        v.push("[admin]".into());
    }
    if old.stdio != new.stdio {
        v.push("[stdio]".into());
    }
    if old.telemetry != new.telemetry {
        v.push("[telemetry]".into());
    }
    v
}

fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.tools != new.tools {
        v.push("[tools]");
    }
    if old.methods != new.methods {
        v.push("[methods]");
    }
    if old.server != new.server {
        v.push("[server]");
    }
    if old.limits != new.limits {
        v.push("[limits]");
    }
    if old.budgets != new.budgets {
        v.push("[budgets]");
    }
    if old.policy_rules != new.policy_rules {
        v.push("[[policy]]");
    }
    if old.classes != new.classes {
        v.push("[classes]");
    }
    v
}

impl Operated for LiveGate {
    fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn health(&self) -> BoxFuture<'_, Vec<(&'static str, bool)>> {
        Box::pin(async move {
            let mut up = Vec::new();
            if let Some(store) = self.l402_store() {
                // A read of a token that cannot exist: answers whether the store is reachable.
                up.push(("l402_store", store.balance([0; 32]).await.is_ok()));
            }
            up
        })
    }

    fn l402_store(&self) -> Option<Arc<dyn L402Store>> {
        self.gate()
            .rails()
            .get::<turnpike_l402::L402Rail>()
            .map(|r| r.store().clone())
    }

    fn summary(&self) -> Map<String, Value> {
        let gate = self.gate();
        let cfg = self.config();
        let pow = gate.rails().get::<turnpike_pow::PowRail>();
        let multiplier = pow.as_ref().map(|p| p.current_multiplier());
        // The highest proof-of-work price the policy names, and what it costs at this load.
        let policy = gate.policy();
        let base_effort = std::iter::once(&policy.default_tool)
            .chain(policy.tools.values())
            .chain(policy.methods.values())
            .flat_map(|p| p.offers.iter())
            .filter_map(turnpike_pow::effort)
            .max();
        let current_effort = match (&pow, base_effort) {
            (Some(p), Some(e)) => p.quote(e).map(|q| q.effort),
            _ => None,
        };
        let rails: Vec<&str> = gate.rails().all.iter().map(|r| r.kind().as_str()).collect();
        let tools: Vec<Value> = cfg
            .tools
            .iter()
            .map(|(name, p)| {
                json!({"tool": name, "free": p.free,
                       "pow": p.offer(turnpike_pow::RAIL).and_then(turnpike_pow::effort),
                       "l402_msat": p.offer(turnpike_l402::RAIL).and_then(turnpike_l402::terms).map(|l| l.msat),
                       "oauth": p.offer(turnpike_oauth::RAIL).is_some()})
            })
            .collect();
        match json!({
            "version": env!("CARGO_PKG_VERSION"),
            "endpoint": cfg.public_url(),
            "rails": rails,
            "prices": tools,
            "limits_enabled": cfg.limits.enabled,
            "pow": {"multiplier": multiplier, "current_effort": current_effort,
                    "base_effort": base_effort},
        }) {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn reload(&self, trigger: &str) -> Option<Result<Vec<&'static str>, String>> {
        let loader = self.loader.clone()?;
        Some(self.reload_with(&loader, trigger))
    }
}
