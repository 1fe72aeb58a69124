//! turnpike's operator side, apart from the request path.
//!
//! - [`metrics`]: the process's counters, histograms and recent history, rendered as
//!   Prometheus text and as the dashboard's figures;
//! - [`admin`]: the admin listener: `/metrics`, the admin API (summary, ledger export, token
//!   revocation, balance adjustment, reload) and the dashboard;
//! - [`triggers`]: what starts a configuration reload (SIGHUP, a watched file) and the
//!   dashboard's periodic sample.
//!
//! The crate knows the running gateway only through [`Operated`], which the gateway implements
//! for the gate in force; it imports nothing of the request path.

pub mod admin;
pub mod metrics;
pub mod triggers;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use turnpike_l402::store::L402Store;

use crate::metrics::Metrics;

/// What the operator side needs from the running gateway.
pub trait Operated: Send + Sync + 'static {
    /// The process's metrics (shared by every gate a reload swaps in).
    fn metrics(&self) -> &Arc<Metrics>;

    /// Whether each store the rails depend on answers now (`turnpike_up{component=…}`).
    fn health(&self) -> BoxFuture<'_, Vec<(&'static str, bool)>>;

    /// The L402 store, when the L402 rail is configured (ledger, revocation, adjustment).
    fn l402_store(&self) -> Option<Arc<dyn L402Store>>;

    /// The gateway's part of the dashboard summary: the figures that come from its
    /// configuration and rails (endpoint, rails, prices, limits, proof-of-work load).
    fn summary(&self) -> Map<String, Value>;

    /// Loads the configuration again and applies it; `None` when the server has no
    /// configuration file to load from. `trigger` names what asked (`admin`, `SIGHUP`, `file`).
    /// Blocking: call it off the async workers.
    fn reload(&self, trigger: &str) -> Option<Result<Vec<&'static str>, String>>;
}
