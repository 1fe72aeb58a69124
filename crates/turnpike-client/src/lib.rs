//! The caller's side of turnpike.
//!
//! - Challenge parsing ([`parse_challenges`], [`Offers`]) and the multi-core proof-of-work
//!   solver ([`solve()`], [`solve_with`]), with the credential's renderings
//!   ([`authorization_value`], [`meta_value`], [`attach_meta`]).
//! - [`Client`]: sends JSON-RPC messages to a gated MCP endpoint and gets them through, answering
//!   HTTP 402/401/403 and in-band challenges by solving, paying (a
//!   [`turnpike_lightning::Wallet`]) or signing in (OAuth client credentials), within a
//!   [`Policy`] and [`Budgets`], with credentials and a spend log kept in a state directory.
//! - [`bridge`]: `turnpike connect`, a stdio MCP server forwarding to a remote Streamable HTTP
//!   server through a [`Client`].
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use turnpike_client::{Client, ClientConfig};
//! let client = Client::new(ClientConfig::new(turnpike_client::store::default_dir()))?;
//! let reply = client
//!     .rpc("https://mcp.example.com/mcp", &serde_json::json!({
//!         "jsonrpc": "2.0", "id": 1, "method": "tools/call",
//!         "params": {"name": "search", "arguments": {"q": "turnpike"}}}))
//!     .await?;
//! println!("{reply}");
//! # Ok(()) }
//! ```

pub mod bridge;
pub mod budget;
pub mod client;
pub mod oauth;
pub mod offers;
pub mod parse;
pub mod proxy;
pub mod render;
pub mod solve;
pub mod store;
pub mod transport;
pub mod x402;

pub use budget::{Budgets, SpendEntry};
pub use client::{AgentSigning, CallInfo, Client, ClientConfig, Policy, Rail, Reply};
pub use oauth::OAuthClientConfig;
pub use offers::{is_in_band_challenge, BearerOffer, L402Offer, Offers};
pub use parse::{parse_challenges, ParsedChallenge};
pub use render::{attach_meta, authorization_value, meta_value, solution_string};
pub use solve::{default_threads, solve, solve_with, SolveError, SolveOptions, Solved};
pub use turnpike_pow::puzzle::{Algorithm, ChallengeToken};
pub use x402::{X402Asset, X402Payer};

/// Why the client could not get a call through. The `Display` form is a sentence an agent can
/// show its user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The client's configuration is unusable.
    #[error("turnpike client misconfigured: {0}")]
    Config(String),
    /// The state directory could not be read or written.
    #[error("turnpike client state: {0}")]
    State(String),
    /// The server could not be reached or its answer read.
    #[error("HTTP: {0}")]
    Http(String),
    /// OAuth discovery or the token request failed.
    #[error("OAuth: {0}")]
    OAuth(String),
    /// The payment would exceed a budget or the rail policy; nothing was paid.
    #[error("over budget: {0}")]
    Budget(String),
    /// The server's challenge contradicts itself (an invoice above the advertised price).
    #[error("refused a dishonest challenge: {0}")]
    Lie(String),
    /// The wallet did not pay (see [`turnpike_lightning::WalletError::may_have_paid`]).
    #[error("wallet: {0}")]
    Wallet(turnpike_lightning::WalletError),
    /// Solving failed (the CPU-time cap was reached).
    #[error("solver: {0}")]
    Solve(String),
    /// No offered rail could be used.
    #[error("{0}")]
    Refused(String),
}
