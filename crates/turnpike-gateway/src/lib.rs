//! turnpike's gateway: the gate and its assembly.
//!
//! - [`config`]: the TOML configuration, with every problem reported at its line and column;
//! - [`Gate`] ([`pipeline`]): one request's whole path, as the list of steps in
//!   [`pipeline`]'s module doc;
//! - [`limits`]: rate limits, in-flight caps and the loop brake per identity (429 with
//!   `Retry-After` and the `RateLimit` fields; `RateLimit` on every response);
//! - [`identity`]: the signed `Turnpike-Identity` statement for the upstream (OAuth callers);
//! - [`TurnpikeLayer`]: the gate as a tower layer in front of any MCP server's HTTP service;
//! - [`mount`] and [`upstreams`]: the configured upstreams built, each behind its era adapter
//!   and its gate;
//! - [`reload`]: the gate in force, swapped on a reload;
//! - [`serve`]: the gateway server itself.
//!
//! What it stands on, each a crate of its own (re-exported here under its old module name):
//! `turnpike-http` (request extensions, JSON answers, bodies, listeners, Host policy),
//! `turnpike-upstream` ([`upstream`]: HTTP and stdio), `turnpike-era` ([`era`]: the two MCP
//! protocol eras translated), `turnpike-merge` ([`mount_merge`]: the merged endpoint) and
//! `turnpike-operator` ([`metrics`], [`admin`]: metrics, admin API, dashboard, reload
//! triggers).

pub mod access;
pub mod annotate;
pub mod classes;
pub mod config;
pub mod continuation;
pub mod credentials;
pub mod deadline;
pub mod identity;
pub mod layer;
pub mod limits;
pub mod mount;
pub mod pipeline;
pub mod rails;
pub mod registry;
pub mod reload;
pub mod respond;
pub mod result_meta;
mod rewrite;
pub mod serve;
pub mod settle;
pub mod upstreams;

pub use turnpike_era as era;
pub use turnpike_http::{body, conns, hosts};
pub use turnpike_merge as mount_merge;
pub use turnpike_operator::{admin, metrics};
pub use turnpike_upstream as upstream;

pub use config::{load, parse, ChallengeMode, Config, ConfigError};
pub use layer::{TurnpikeLayer, TurnpikeService};
pub use pipeline::{Gate, GateOptions, JsonRpcId, PeerAddr};
pub use rails::Rails;
pub use serve::{serve, serve_listener, serve_listener_with, serve_with, ServeOptions};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The proof-of-work keys could not be loaded or created.
    #[error("proof-of-work keys: {0}")]
    Keys(#[from] turnpike_pow::KeyError),
    /// The L402 rail could not be built (Lightning backend or store).
    #[error("L402 rail: {0}")]
    L402(String),
    /// The OAuth rail could not be built.
    #[error("OAuth rail: {0}")]
    OAuth(String),
    /// A rail could not be built (its crate's message, naming the rail).
    #[error("{0}")]
    Rail(String),
    /// The shared store (`[store]`) could not be set up.
    #[error("store: {0}")]
    Store(String),
    /// The upstream is misconfigured.
    #[error("{0}")]
    Upstream(String),
    /// The listen address could not be bound. The message says why and what to do; the I/O
    /// error is in it, not repeated as a source.
    #[error("{}", bind_message(*.0, .1, "--listen or [server] listen"))]
    Bind(std::net::SocketAddr, std::io::Error),
    /// The span exporter (`[telemetry]`) could not be started.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// The admin listener's address could not be bound.
    #[error("{}", bind_message(*.0, .1, "[admin] listen"))]
    AdminBind(std::net::SocketAddr, std::io::Error),
}

/// `cannot listen on ADDR: why — what to do`, for a failed bind of `addr`; `choose` names where
/// the address is set.
pub fn bind_message(addr: std::net::SocketAddr, e: &std::io::Error, choose: &str) -> String {
    use std::io::ErrorKind;
    let why = match e.kind() {
        ErrorKind::AddrInUse => {
            "address already in use — another turnpike or another program holds it".to_owned()
        }
        ErrorKind::AddrNotAvailable => {
            format!("the address is not one of this machine's ({e})")
        }
        ErrorKind::PermissionDenied => {
            format!("permission denied ({e}; ports below 1024 need privileges)")
        }
        _ => e.to_string(),
    };
    format!("cannot listen on {addr}: {why}; choose another with {choose}")
}

impl From<turnpike_upstream::UpstreamError> for GatewayError {
    fn from(e: turnpike_upstream::UpstreamError) -> Self {
        GatewayError::Upstream(e.0)
    }
}
