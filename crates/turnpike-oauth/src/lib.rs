//! turnpike's OAuth 2.1 rail: the gateway as an OAuth resource server, as the MCP
//! authorization specification asks.
//!
//! - **Tokens.** JWT access tokens are checked against the issuer's signing keys, discovered
//!   through RFC 8414 (or OpenID Connect Discovery) metadata and cached; an unknown key id makes
//!   the rail fetch the keys again, at most once per interval. Only asymmetric algorithms from an
//!   allow-list are accepted, each only with a key of its own type. Opaque tokens go through
//!   RFC 7662 introspection, cached by the token's hash. Every token must be from the configured
//!   issuer, for this resource (`aud`, RFC 8707) and within its validity times.
//! - **DPoP** (RFC 9449). A token bound to a key (`cnf.jkt`) passes only under the `DPoP`
//!   scheme with a proof signed by that key for this request (method, URL, token hash, fresh
//!   `iat`, unused `jti`, optionally a server nonce). `require_dpop` refuses unbound tokens.
//! - **Scopes.** Each call's [`Offer::OAuth`](turnpike_core::Offer) names the scopes it needs; a
//!   genuine token without them gets 403 `insufficient_scope` naming them all (step-up).
//! - **Discovery for clients.** The RFC 9728 protected-resource metadata document
//!   ([`OAuthRail::metadata_document`], served at [`OAuthRail::metadata_paths`]) and 401
//!   challenges `Bearer resource_metadata="…", scope="…"` (plus `DPoP algs="…"`).
//!
//! # Wiring it into a gateway
//!
//! ```no_run
//! # async fn demo(headers: http::HeaderMap, facts: turnpike_core::CallFacts,
//! #               price: turnpike_core::Price) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use turnpike_core::{decide, Decision, Rail};
//! use turnpike_oauth::{credentials_from_headers, HttpContext, OAuthConfig, OAuthRail};
//!
//! let cfg = OAuthConfig::new("https://auth.example.com")
//!     .with_default_resource("https://mcp.example.com/mcp");
//! let rail = Arc::new(OAuthRail::new(cfg, Arc::new(turnpike_store::MemorySpentSet::new()))?);
//!
//! // Per request: credentials from the headers, a view of the rail bound to this request.
//! let creds: Vec<_> = credentials_from_headers(&headers).into_iter().flatten().collect();
//! let scoped = Arc::new(rail.scoped(HttpContext::new("POST", "https://mcp.example.com/mcp")));
//! let rails: Vec<Arc<dyn Rail>> = vec![scoped.clone()];
//! let decision = decide(&rails, &facts, &price, &creds).await;
//! if let (Decision::Challenge { .. } | Decision::Invalid { .. }, Some(outcome)) =
//!     (&decision, scoped.outcome())
//! {
//!     let needed = match price.offer(turnpike_core::RailKind::OAuth) {
//!         Some(turnpike_core::Offer::OAuth { scopes }) => scopes.clone(),
//!         _ => Vec::new(),
//!     };
//!     if let Some(resp) = rail.response_for(&outcome, &needed) {
//!         // resp.status (400/401/403/503), resp.www_authenticate lines, resp.dpop_nonce
//!         let _ = resp;
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod cache;
pub mod config;
pub mod credential;
pub mod dpop;
pub mod http;
pub mod introspect;
pub mod issuer;
pub mod jose;
pub mod outcome;
pub mod rail;
pub mod token;
pub mod url;

pub use config::{ConfigError, IntrospectionConfig, OAuthConfig, Secret};
pub use credential::{credentials_from_headers, parse_authorization};
pub use jose::Alg;
pub use outcome::{Accepted, AuthResponse, ErrorCode, OAuthOutcome, Rejection, Scheme};
pub use rail::{HttpContext, IssuerStats, OAuthError, OAuthRail, ScopedOAuthRail};
pub use token::TokenInfo;
