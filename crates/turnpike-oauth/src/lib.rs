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
//! Once at start: build the rail (and optionally [`OAuthRail::warm_up`] to fail fast), serve
//! [`OAuthRail::metadata_document`] at every path of [`OAuthRail::metadata_paths`]. Per priced
//! call: parse the OAuth credentials ([`credentials_from_headers`]), run core's `decide` over a
//! [`ScopedOAuthRail`] bound to the request's method and public URL, and when the decision is not
//! a pass, let [`OAuthRail::response_for`] say what to answer (401 with the error, 403 step-up,
//! `DPoP-Nonce`).
//!
//! ```no_run
//! # async fn demo(headers: http::HeaderMap, facts: turnpike_core::CallFacts,
//! #               price: turnpike_core::Price) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use turnpike_core::{decide, Decision, Rail};
//! use turnpike_oauth::{credentials_from_headers, HttpContext, OAuthConfig, OAuthOutcome,
//!                      OAuthRail, Scheme};
//!
//! // At start.
//! let cfg = OAuthConfig::new("https://auth.example.com")
//!     .with_default_resource("https://mcp.example.com/mcp");
//! let spent = Arc::new(turnpike_store::MemorySpentSet::new());
//! let oauth = Arc::new(OAuthRail::new(cfg, spent)?);
//!
//! // Per call.
//! let mut creds = Vec::new();
//! let mut malformed = None;
//! for c in credentials_from_headers(&headers) {
//!     match c {
//!         Ok(c) => creds.push(c),
//!         Err(_) => malformed = Some(OAuthOutcome::malformed(Scheme::Bearer)),
//!     }
//! }
//! let scoped = Arc::new(oauth.scoped(HttpContext::new("POST", "https://mcp.example.com/mcp")));
//! let rails: Vec<Arc<dyn Rail>> = vec![scoped.clone() /* , pow, l402 */];
//! let decision = decide(&rails, &facts, &price, &creds).await;
//! let needed = price
//!     .offer(turnpike_oauth::RAIL)
//!     .and_then(turnpike_oauth::scopes)
//!     .unwrap_or_default();
//! match (&decision, scoped.outcome().or(malformed)) {
//!     (Decision::Pass(_), Some(OAuthOutcome::Pass(a))) => {
//!         // forward; add `DPoP-Nonce: a.dpop_nonce` to the response when it is Some
//!         let _ = a;
//!     }
//!     (Decision::Pass(_) | Decision::Free, _) => { /* forward */ }
//!     (_, Some(outcome)) => {
//!         if let Some(resp) = oauth.response_for(&outcome, &needed) {
//!             // resp.status (400/401/403/429/503), one WWW-Authenticate header per
//!             // resp.www_authenticate line, DPoP-Nonce from resp.dpop_nonce, Retry-After
//!             // from resp.retry_after
//!             let _ = resp;
//!         }
//!     }
//!     (_, None) => { /* no OAuth credential: the usual challenge answer */ }
//! }
//! # Ok(()) }
//! ```

pub mod cache;
pub mod conf;
pub mod config;
pub mod credential;
pub mod dpop;
pub mod exchange;
pub mod http;
pub mod introspect;
pub mod issuer;
pub mod jose;
pub mod offer;
pub mod outcome;
pub mod plugin;
pub mod rail;
pub mod token;
pub mod url;

pub use config::{
    ConfigError, ExchangeConfig, IntrospectionConfig, OAuthConfig, Secret, UpstreamTokenConfig,
};
pub use credential::{credentials_from_headers, parse_authorization, BearerCredential};
pub use jose::Alg;
pub use offer::{offer, scopes, RAIL};
pub use outcome::{Accepted, AuthResponse, ErrorCode, OAuthOutcome, Rejection, Scheme};
pub use rail::{HttpContext, IssuerStats, OAuthError, OAuthRail, ScopedOAuthRail};
pub use token::TokenInfo;
