//! turnpike's HTTP gateway.
//!
//! - [`config`]: the TOML configuration, with every problem reported at its line and column;
//! - [`Gate`] ([`pipeline`]): one request's whole path, as the list of steps in
//!   [`pipeline`]'s module doc;
//! - [`limits`]: rate limits, in-flight caps and the loop brake per identity (429 with
//!   `Retry-After` and the `RateLimit` fields; `RateLimit` on every response);
//! - [`identity`]: the signed `Turnpike-Identity` statement for the upstream (OAuth callers);
//! - [`TurnpikeLayer`]: the gate as a tower layer in front of any MCP server's HTTP service;
//! - [`upstream`]: the HTTP proxy upstream and the stdio upstream;
//! - [`era`]: the two MCP protocol eras (2025 sessions, 2026-07-28 stateless) translated between
//!   client and upstream;
//! - [`serve`]: the gateway server itself.

pub mod admin;
pub mod annotate;
pub mod body;
pub mod config;
pub mod conns;
pub mod continuation;
pub mod credentials;
pub mod deadline;
pub mod era;
pub mod hosts;
pub mod identity;
pub mod layer;
pub mod limits;
pub mod metrics;
pub mod mount;
pub mod mount_merge;
pub mod pipeline;
pub mod rails;
pub mod reload;
pub mod respond;
pub mod serve;
pub mod settle;
pub mod trace;
pub mod upstream;

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
    /// The shared store (`[store]`) could not be set up.
    #[error("store: {0}")]
    Store(String),
    /// The upstream is misconfigured.
    #[error("{0}")]
    Upstream(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, #[source] std::io::Error),
}
