//! The set of rails a gateway runs, built from its configuration.
//!
//! Each rail is built by one function here and joins the set as a `turnpike_core::Rail`; the
//! pipeline composes them through that trait alone. A rail is built only when the configuration
//! gives it something to do:
//!
//! - proof-of-work: always (its keys are loaded from or generated into `server.data_dir`, unless
//!   `[pow] keys` names them);
//! - L402: when `[lightning]` is present (a price naming `l402` without it is a config error).
//!   Its state lives in `[l402] store` (SQLite under `server.data_dir` by default), or in
//!   PostgreSQL with `[store] durable = "postgres"` (shared by every instance).
//! - OAuth: when `[oauth]` is present (a price naming `oauth` without it is a config error).
//!   Its resource defaults to the gateway's public URL; nothing is fetched from the issuer until
//!   the first token arrives (`OAuthRail::warm_up` is left to the caller).

use std::sync::Arc;
use std::time::Duration;

use turnpike_core::Rail;
use turnpike_l402::{L402Rail, L402Store, MemoryStore, SqliteStore, StoreConfig};
use turnpike_lightning::dev::DevBackend;
use turnpike_lightning::{BackendConfig, LightningBackend};
use turnpike_limits::StoreBackend;
use turnpike_oauth::OAuthRail;
use turnpike_pow::PowRail;
use turnpike_store::SpentSet;

use crate::config::Config;
use crate::GatewayError;

/// The rails of one gateway, as trait objects for the pipeline and as concrete types for what
/// only one rail can answer (proof-of-work quotes, the dev wallet).
#[derive(Default, Clone)]
pub struct Rails {
    /// Every rail, in the order credentials of the same call are matched to them.
    pub all: Vec<Arc<dyn Rail>>,
    /// The proof-of-work rail (its quotes price `tools/list` annotations).
    pub pow: Option<Arc<PowRail>>,
    /// The L402 rail.
    pub l402: Option<Arc<L402Rail>>,
    /// The dev Lightning backend, when `[lightning] backend = "dev"` (to serve its wallet).
    pub dev: Option<Arc<DevBackend>>,
    /// The OAuth rail. The pipeline verifies tokens through a per-request view of it
    /// ([`OAuthRail::scoped`]), so that DPoP proofs are checked against the request.
    pub oauth: Option<Arc<OAuthRail>>,
}

impl Rails {
    /// Builds every rail the configuration asks for.
    pub fn from_config(cfg: &Config) -> Result<Rails, GatewayError> {
        let mut rails = Rails::default();
        rails.add_pow(pow_rail(cfg)?);
        if cfg.lightning.is_some() {
            let (l402, dev) = l402_rail(cfg)?;
            rails.add_l402(l402);
            rails.dev = dev;
        }
        if cfg.oauth.is_some() {
            rails.add_oauth(oauth_rail(cfg)?);
        }
        Ok(rails)
    }

    /// Adds the proof-of-work rail.
    pub fn add_pow(&mut self, pow: Arc<PowRail>) {
        self.all.push(pow.clone());
        self.pow = Some(pow);
    }

    /// Adds the L402 rail.
    pub fn add_l402(&mut self, l402: Arc<L402Rail>) {
        self.all.push(l402.clone());
        self.l402 = Some(l402);
    }

    /// Adds the OAuth rail.
    pub fn add_oauth(&mut self, oauth: Arc<OAuthRail>) {
        self.all.push(oauth.clone());
        self.oauth = Some(oauth);
    }
}

/// A spent set for single-use credentials of one kind (`purpose`: `pow`, `l402`, `dpop`): in
/// memory, or on Redis with `[store] backend = "redis"` so that a credential is accepted once
/// across every instance (keys `<key_prefix>:<purpose>:spent:<hex>`). A Redis set fails closed
/// while the server is away.
pub fn spent_set(cfg: &Config, purpose: &str) -> Result<Arc<dyn SpentSet>, GatewayError> {
    match cfg.store.backend {
        StoreBackend::Memory => Ok(Arc::new(turnpike_store::MemorySpentSet::new())),
        StoreBackend::Redis => {
            let url = cfg.store.redis_url.as_deref().ok_or_else(|| {
                GatewayError::Store("[store] backend = \"redis\" needs redis_url".into())
            })?;
            let opts = turnpike_store::RedisSpentSetOptions {
                key_prefix: format!("{}:{purpose}", cfg.store.key_prefix),
                timeout: Duration::from_millis(cfg.store.timeout_ms.max(1)),
                ..turnpike_store::RedisSpentSetOptions::default()
            };
            let set = turnpike_store::RedisSpentSet::new(url, opts)
                .map_err(|e| GatewayError::Store(e.to_string()))?;
            Ok(Arc::new(set))
        }
    }
}

/// The OAuth rail from `[oauth]`, its resource defaulted to the public URL of the endpoint.
pub fn oauth_rail(cfg: &Config) -> Result<Arc<OAuthRail>, GatewayError> {
    let Some(oc) = cfg.oauth_config() else {
        return Err(GatewayError::OAuth("no [oauth] section".into()));
    };
    // DPoP proof ids (jti) are single-use: their own spent set.
    let spent = spent_set(cfg, "dpop")?;
    let rail = OAuthRail::new(oc, spent).map_err(|e| GatewayError::OAuth(e.to_string()))?;
    Ok(Arc::new(rail))
}

/// The proof-of-work rail from `[pow]`.
pub fn pow_rail(cfg: &Config) -> Result<Arc<PowRail>, GatewayError> {
    // Given keys, else generated in data_dir; retired keys live only as long as a
    // challenge they tagged can (expiry_secs + clock skew).
    let keys = turnpike_pow::KeyRing::for_config(&cfg.pow, &cfg.server.data_dir)?;
    let spent = spent_set(cfg, "pow")?;
    Ok(Arc::new(PowRail::new(cfg.pow.clone(), keys, spent)))
}

/// The L402 rail from `[l402]` and `[lightning]`, and the dev backend when that is the one
/// configured.
pub fn l402_rail(cfg: &Config) -> Result<(Arc<L402Rail>, Option<Arc<DevBackend>>), GatewayError> {
    let Some(lightning) = &cfg.lightning else {
        return Err(GatewayError::L402("no [lightning] section".into()));
    };
    let (backend, dev): (Arc<dyn LightningBackend>, _) = match &lightning.backend {
        BackendConfig::Dev(d) => {
            let dev = Arc::new(DevBackend::new(d).map_err(|e| GatewayError::L402(e.to_string()))?);
            tracing::warn!(
                target: "turnpike::serve",
                "!!! {} !!!",
                turnpike_lightning::dev::NOT_FOR_PRODUCTION
            );
            (dev.clone() as Arc<dyn LightningBackend>, Some(dev))
        }
        other => (
            turnpike_lightning::connect(other).map_err(|e| GatewayError::L402(e.to_string()))?,
            None,
        ),
    };
    let store = open_store(cfg)?;
    // Per-call tokens are single-use through the store and this spent set (its own: keys are
    // token ids, not proof-of-work tags).
    let spent = spent_set(cfg, "l402")?;
    let rail = L402Rail::new(cfg.l402.rail.clone(), backend, store, spent);
    Ok((Arc::new(rail), dev))
}

/// Opens the L402 store: PostgreSQL with `[store] durable = "postgres"`, else the one
/// `[l402] store` names (a relative SQLite path is under `data_dir`).
pub fn open_store(cfg: &Config) -> Result<Arc<dyn L402Store>, GatewayError> {
    if cfg.store.durable == turnpike_limits::DurableBackend::Postgres {
        return open_postgres(cfg);
    }
    Ok(match &cfg.l402.store {
        StoreConfig::Memory => Arc::new(MemoryStore::new()),
        StoreConfig::Sqlite {
            path,
            fsync_every_commit,
        } => {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                cfg.server.data_dir.join(path)
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    GatewayError::L402(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let durability = if *fsync_every_commit {
                turnpike_l402::Durability::Full
            } else {
                turnpike_l402::Durability::Normal
            };
            Arc::new(
                SqliteStore::open(&path, durability)
                    .map_err(|e| GatewayError::L402(format!("{}: {e}", path.display())))?,
            )
        }
    })
}

/// The PostgreSQL URL `[store]` gives (inline or from `postgres_url_env`).
pub fn postgres_url(cfg: &Config) -> Result<String, GatewayError> {
    match (&cfg.store.postgres_url, &cfg.store.postgres_url_env) {
        (Some(u), _) => Ok(u.clone()),
        (None, Some(var)) => std::env::var(var).map_err(|_| {
            GatewayError::Store(format!(
                "store.postgres_url_env: the environment variable {var} is not set"
            ))
        }),
        (None, None) => Err(GatewayError::Store(
            "[store] durable = \"postgres\" needs postgres_url or postgres_url_env".into(),
        )),
    }
}

/// The L402 state in PostgreSQL (`[store] durable = "postgres"`). Nothing waits for the server
/// here: inside a Tokio runtime the first connection (and the migrations) are started at once
/// in the background and logged; every operation connects again by itself while the server is
/// away, and payments fail closed (503) until it is back.
fn open_postgres(cfg: &Config) -> Result<Arc<dyn L402Store>, GatewayError> {
    let opts = turnpike_l402::PostgresOptions {
        url: postgres_url(cfg)?,
        schema: cfg.store.postgres_schema.clone(),
        pool: cfg.store.postgres_pool as usize,
        timeout: Duration::from_millis(cfg.store.postgres_timeout_ms.max(1)),
    };
    let store =
        turnpike_l402::PostgresStore::new(opts).map_err(|e| GatewayError::Store(e.to_string()))?;
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let s = store.clone();
        rt.spawn(async move {
            match s.ready().await {
                Ok(()) => tracing::info!(target: "turnpike::serve", "PostgreSQL store ready (migrations applied)"),
                Err(e) => tracing::warn!(target: "turnpike::serve", error = %e, "PostgreSQL store not reachable yet; L402 payments fail closed until it is"),
            }
        });
    }
    Ok(Arc::new(store))
}
