//! The running side of a rail's registration: what [`crate::RailConf::build`] is given
//! ([`Build`], [`Services`]) and gives back ([`Built`], [`BuildError`]).

use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use turnpike_core::{Rail, RailPlugin};
use turnpike_store::SpentSet;

use crate::sections::Sections;

/// What a rail is built from: its sections as read, and what it needs of the gateway.
#[derive(Clone, Copy)]
pub struct Build<'a> {
    /// The rails' sections, as read from the file (each rail finds its own with its crate's
    /// accessor).
    pub sections: &'a Sections,
    /// `[server] data_dir`: where a rail keeps its keys and local state.
    pub data_dir: &'a Path,
    /// The public URL of the endpoint (`[server] public_url`, else `http://<listen><path>`).
    pub public_url: &'a str,
    /// The gateway's shared state (`[store]`).
    pub services: &'a dyn Services,
}

/// The PostgreSQL database the gateway's durable state lives in (`[store] durable =
/// "postgres"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    /// The connection URL (`postgres_url`, or read from `postgres_url_env`).
    pub url: String,
    /// The schema the tables live in; `None`: the server's default search path.
    pub schema: Option<String>,
    /// Connections in the pool.
    pub pool: usize,
    /// Longest wait for one statement.
    pub timeout: Duration,
}

/// What the gateway's `[store]` gives every rail.
pub trait Services: Sync {
    /// A spent set for single-use credentials of one kind (`purpose`: `pow`, `l402`, `dpop`,
    /// …), shared between instances when `[store]` says so.
    fn spent_set(&self, purpose: &str) -> Result<Arc<dyn SpentSet>, BuildError>;

    /// The PostgreSQL database durable state lives in, when `[store] durable = "postgres"`
    /// (`None`: each rail keeps its own, e.g. SQLite under `data_dir`).
    fn postgres(&self) -> Option<Result<Postgres, BuildError>>;

    /// The thing named `key` that several rails of one gateway share (e.g. the Lightning node
    /// of `[lightning]`, which the L402 and MPP rails both bill through): made by `make` the
    /// first time it is asked for while the rails are built, then the same one for every rail
    /// that asks. The default makes a new one each time (nothing is shared).
    fn shared(&self, _key: &str, make: &mut Maker<'_>) -> Result<Shared, BuildError> {
        make()
    }
}

/// Something several rails share ([`Services::shared`]), found again by its type with
/// `downcast`.
pub type Shared = Arc<dyn Any + Send + Sync>;

/// What makes a [`Shared`] thing the first time it is asked for.
pub type Maker<'a> = dyn FnMut() -> Result<Shared, BuildError> + 'a;

/// Why a rail could not be built, worded for the operator (`L402 rail: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// A built rail: as the decision engine sees it, as the edge does, and what came with it (found
/// by its type on the operator's side, e.g. a dev Lightning node whose wallet is served).
pub struct Built {
    /// The rail for the decision engine.
    pub rail: Arc<dyn Rail>,
    /// The same rail at the edge.
    pub edge: Arc<dyn RailPlugin>,
    /// The rail and what came with it, by their concrete types.
    pub typed: Vec<Arc<dyn Any + Send + Sync>>,
}

impl Built {
    /// A rail that is both [`Rail`] and [`RailPlugin`].
    pub fn new<R: Rail + RailPlugin + 'static>(rail: Arc<R>) -> Built {
        Built {
            rail: rail.clone(),
            edge: rail.clone(),
            typed: vec![rail],
        }
    }

    /// Keeps something that came with the rail, to be found by its type.
    #[must_use]
    pub fn keep<T: Any + Send + Sync>(mut self, thing: Arc<T>) -> Built {
        self.typed.push(thing);
        self
    }
}
