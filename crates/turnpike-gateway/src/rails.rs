//! The set of rails a gateway runs, built from its configuration.
//!
//! Each rail is built by one function here and joins the set by one line
//! ([`Rails::add`]) as a `turnpike_core::Rail` and a `turnpike_core::RailPlugin`; the pipeline,
//! credential collection and challenge delivery compose them through those traits alone. A rail is built only when the configuration
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

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use turnpike_core::{Rail, RailId, RailPlugin};
use turnpike_l402::{L402Rail, L402Store, MemoryStore, SqliteStore, StoreConfig};
use turnpike_lightning::dev::DevBackend;
use turnpike_lightning::{BackendConfig, LightningBackend};
use turnpike_limits::StoreBackend;
use turnpike_oauth::OAuthRail;
use turnpike_pow::PowRail;
use turnpike_store::SpentSet;

use turnpike_l402::conf::{self as l402_conf, L402Section};
use turnpike_oauth::OAuthConfig;

use crate::config::Config;
use crate::identity::IdentitySigner;
use crate::GatewayError;

/// The rails of one gateway: each as the decision engine sees it ([`Rail`]) and as the edge
/// does ([`RailPlugin`]), in the order they were added; and by type, for the operator's side
/// (proof-of-work quotes, the L402 store, the dev wallet).
#[derive(Default, Clone)]
pub struct Rails {
    /// Every rail, in the order credentials of the same call are matched to them.
    pub all: Vec<Arc<dyn Rail>>,
    /// The same rails at the edge, in the same order.
    edge: Vec<Arc<dyn RailPlugin>>,
    /// Each rail, and what came with it, by its concrete type.
    typed: Vec<Arc<dyn Any + Send + Sync>>,
}

impl Rails {
    /// Builds every rail the configuration asks for. Each rail is registered here by one
    /// `add` line; nothing else in the gateway names it.
    pub fn from_config(cfg: &Config) -> Result<Rails, GatewayError> {
        let mut rails = Rails::default();
        rails.add(pow_rail(cfg)?);
        if l402_conf::lightning(&cfg.rails).is_some() {
            let (l402, dev) = l402_rail(cfg)?;
            rails.add(l402);
            if let Some(dev) = dev {
                rails.keep(dev);
            }
        } else {
            rails.recognise(Arc::new(turnpike_l402::L402Credentials));
        }
        if cfg.rails.has(turnpike_oauth::conf::TABLE) {
            rails.add(oauth_rail(cfg)?);
        } else {
            rails.recognise(Arc::new(turnpike_oauth::plugin::OAuthCredentials));
        }
        Ok(rails)
    }

    /// Adds a rail: to the decision engine, to the edge and by its type.
    pub fn add<R: Rail + RailPlugin + 'static>(&mut self, rail: Arc<R>) {
        self.all.push(rail.clone());
        self.edge.push(rail.clone());
        self.typed.push(rail);
    }

    /// Recognises the credentials of a rail that is off (its crate's recogniser, e.g.
    /// `turnpike_oauth::plugin::OAuthCredentials`): they are read and refused as for a call that
    /// does not accept that rail, and its headers are stripped before forwarding.
    pub fn recognise(&mut self, plugin: Arc<dyn RailPlugin>) {
        self.edge.push(plugin);
    }

    /// Keeps something that came with a rail (e.g. the dev Lightning backend, whose wallet is
    /// served), to be found by its type.
    pub fn keep<T: Any + Send + Sync>(&mut self, thing: Arc<T>) {
        self.typed.push(thing);
    }

    /// The rail (or kept thing) of type `T`, if any.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.typed
            .iter()
            .find_map(|t| t.clone().downcast::<T>().ok())
    }

    /// Every rail at the edge, in the order they were added.
    pub fn edge(&self) -> &[Arc<dyn RailPlugin>] {
        &self.edge
    }

    /// The rail `id` at the edge, when the gateway runs it.
    pub fn plugin(&self, id: RailId) -> Option<&Arc<dyn RailPlugin>> {
        self.edge.iter().find(|r| r.id() == id)
    }
}

/// The signer of the `Turnpike-Identity` header, when `[oauth] forward_identity = "signed"`
/// (see [`crate::identity`]).
pub fn identity_signer(
    cfg: &Config,
    rails: &Rails,
) -> Result<Option<IdentitySigner>, GatewayError> {
    let (Some(o), Some(rail)) = (&cfg.identity, rails.get::<OAuthRail>()) else {
        return Ok(None);
    };
    if o.forward_identity != crate::config::ForwardIdentity::Signed {
        return Ok(None);
    }
    let secret = o.identity_secret.as_ref().map(|s| s.expose()).unwrap_or("");
    IdentitySigner::from_hex(secret, rail.resource())
        .map(Some)
        .ok_or_else(|| GatewayError::OAuth("identity_secret must be 64 hex digits".into()))
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

/// The OAuth rail's configuration with `resource` defaulted to [`Config::public_url`], when
/// there is an `[oauth]` section.
pub fn oauth_config(cfg: &Config) -> Option<OAuthConfig> {
    turnpike_oauth::conf::section(&cfg.rails, &cfg.public_url())
}

/// The OAuth rail from `[oauth]`, its resource defaulted to the public URL of the endpoint.
pub fn oauth_rail(cfg: &Config) -> Result<Arc<OAuthRail>, GatewayError> {
    let Some(oc) = oauth_config(cfg) else {
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
    let pow = turnpike_pow::conf::section(&cfg.rails);
    let keys = turnpike_pow::KeyRing::for_config(&pow, &cfg.server.data_dir)?;
    let spent = spent_set(cfg, "pow")?;
    Ok(Arc::new(PowRail::new(pow, keys, spent)))
}

/// The L402 rail from `[l402]` and `[lightning]`, and the dev backend when that is the one
/// configured.
pub fn l402_rail(cfg: &Config) -> Result<(Arc<L402Rail>, Option<Arc<DevBackend>>), GatewayError> {
    let Some(lightning) = l402_conf::lightning(&cfg.rails) else {
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
    let rail = L402Rail::new(l402_conf::section(&cfg.rails).rail, backend, store, spent);
    Ok((Arc::new(rail), dev))
}

/// Opens the L402 store: PostgreSQL with `[store] durable = "postgres"`, else the one
/// `[l402] store` names (a relative SQLite path is under `data_dir`).
pub fn open_store(cfg: &Config) -> Result<Arc<dyn L402Store>, GatewayError> {
    if cfg.store.durable == turnpike_limits::DurableBackend::Postgres {
        return open_postgres(cfg);
    }
    let L402Section { store, .. } = l402_conf::section(&cfg.rails);
    Ok(match &store {
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
