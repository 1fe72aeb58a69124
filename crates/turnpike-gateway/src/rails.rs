//! The set of rails a gateway runs, built from its configuration.
//!
//! Every rail registered with the gateway ([`crate::registry::RAIL_CONFS`], one line each) is
//! built by its own crate ([`turnpike_conf::RailConf::build`]) when it is on, from the sections
//! it read and what the gateway gives every rail ([`turnpike_conf::Build`]: the data directory,
//! the public URL, spent sets and the durable database of `[store]`); a rail that is off leaves
//! its recogniser ([`turnpike_conf::RailConf::recogniser`]) in its place, so that its
//! credentials are still read (and refused) and its headers stripped. Nothing here names a
//! rail. The pipeline, credential collection and challenge delivery compose them through
//! `turnpike_core::Rail` and `turnpike_core::RailPlugin` alone.
//!
//! The rails at the edge are in the registry's order, those always on (proof-of-work) first:
//! the order credentials of one call are matched in.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use turnpike_conf::{
    always_on_first, Build, BuildError, Built, Maker, Postgres, RailConf, Services, Shared,
};
use turnpike_core::{Rail, RailId, RailPlugin};
use turnpike_limits::StoreBackend;
use turnpike_oauth::OAuthRail;
use turnpike_store::SpentSet;

use crate::config::Config;
use crate::identity::IdentitySigner;
use crate::registry::RAIL_CONFS;
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
    /// Builds every rail registered with the gateway ([`RAIL_CONFS`]) that the configuration
    /// turns on.
    pub fn from_config(cfg: &Config) -> Result<Rails, GatewayError> {
        Rails::from_config_with(cfg, RAIL_CONFS)
    }

    /// [`Rails::from_config`] with the rails `confs` (a configuration read with
    /// `config::parse_with` and the same rails): each that is on is built by its crate, each
    /// that is off leaves its recogniser.
    pub fn from_config_with(cfg: &Config, confs: &[&dyn RailConf]) -> Result<Rails, GatewayError> {
        with_build(cfg, |build| {
            let mut rails = Rails::default();
            for conf in always_on_first(confs) {
                if conf.is_on(build.sections) {
                    rails.add_built(conf.build(build)?);
                } else if let Some(r) = conf.recogniser() {
                    rails.recognise(r);
                }
            }
            Ok(rails)
        })
    }

    /// A set of the one rail `rail`, built by hand (e.g. proof-of-work alone, in front of an
    /// in-process service), with the recogniser of every other registered rail: their
    /// credentials are still read (and refused) and their headers stripped.
    pub fn only<R: Rail + RailPlugin + 'static>(rail: Arc<R>) -> Rails {
        let mut rails = Rails::default();
        rails.add(rail);
        rails.recognise_the_others();
        rails
    }

    /// Adds a rail: to the decision engine, to the edge and by its type.
    pub fn add<R: Rail + RailPlugin + 'static>(&mut self, rail: Arc<R>) {
        self.add_built(Built::new(rail));
    }

    /// Adds a rail its crate built, with what came with it.
    pub fn add_built(&mut self, built: Built) {
        self.all.push(built.rail);
        self.edge.push(built.edge);
        self.typed.extend(built.typed);
    }

    /// Recognises the credentials of a rail that is off (its registration's
    /// [`RailConf::recogniser`]): they are read and refused as for a call that does not accept
    /// that rail, and its headers are stripped before forwarding.
    pub fn recognise(&mut self, plugin: Arc<dyn RailPlugin>) {
        self.edge.push(plugin);
    }

    /// Adds the recogniser of every registered rail not in the set yet (for a set built by
    /// hand, e.g. proof-of-work alone).
    pub fn recognise_the_others(&mut self) {
        for conf in RAIL_CONFS {
            if self.plugin(conf.id()).is_none() {
                if let Some(r) = conf.recogniser() {
                    self.recognise(r);
                }
            }
        }
    }

    /// Keeps something that came with a rail, to be found by its type.
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

    /// Each rail at the edge (running or only recognised), by its name, with its own meter if
    /// it has one ([`RailPlugin::meter`]): the `rail` label slots of the gateway's metrics, in
    /// the order credentials are matched (those always on first, then the registry's).
    pub fn meters(&self) -> Vec<(RailId, Option<Arc<dyn turnpike_core::RailMeter>>)> {
        self.edge
            .iter()
            .map(|r| (r.id(), r.clone().meter()))
            .collect()
    }

    /// The rail `id` at the edge, when the gateway runs it.
    pub fn plugin(&self, id: RailId) -> Option<&Arc<dyn RailPlugin>> {
        self.edge.iter().find(|r| r.id() == id)
    }
}

impl From<BuildError> for GatewayError {
    fn from(e: BuildError) -> GatewayError {
        GatewayError::Rail(e.0)
    }
}

/// What the gateway's `[store]` gives every rail ([`Services`]), and what the rails of one build
/// share ([`Services::shared`]).
struct StoreServices<'a>(&'a Config, Mutex<Vec<(String, Shared)>>);

impl Services for StoreServices<'_> {
    fn spent_set(&self, purpose: &str) -> Result<Arc<dyn SpentSet>, BuildError> {
        spent_set(self.0, purpose).map_err(|e| BuildError(e.to_string()))
    }

    fn postgres(&self) -> Option<Result<Postgres, BuildError>> {
        let store = &self.0.store;
        if store.durable != turnpike_limits::DurableBackend::Postgres {
            return None;
        }
        Some(
            postgres_url(self.0)
                .map(|url| Postgres {
                    url,
                    schema: store.postgres_schema.clone(),
                    pool: store.postgres_pool as usize,
                    timeout: Duration::from_millis(store.postgres_timeout_ms.max(1)),
                })
                .map_err(|e| BuildError(e.to_string())),
        )
    }

    fn shared(&self, key: &str, make: &mut Maker<'_>) -> Result<Shared, BuildError> {
        let mut made = self.1.lock();
        if let Some((_, thing)) = made.iter().find(|(k, _)| k == key) {
            return Ok(thing.clone());
        }
        let thing = make()?;
        made.push((key.to_string(), thing.clone()));
        Ok(thing)
    }
}

/// Runs `f` with what the rails of `cfg` are built from (e.g. a rail crate's own opener of its
/// state, for the command line: `turnpike_l402::conf::open_store`).
pub fn with_build<T>(cfg: &Config, f: impl FnOnce(&Build<'_>) -> T) -> T {
    let public_url = cfg.public_url();
    let services = StoreServices(cfg, Mutex::new(Vec::new()));
    f(&Build {
        sections: &cfg.rails,
        data_dir: &cfg.server.data_dir,
        public_url: &public_url,
        services: &services,
    })
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
