//! Upstreams: where the gateway forwards calls. Each is a tower `Service` over
//! `http::Request<axum::body::Body>` that answers the way an MCP server on the Streamable HTTP
//! transport does, and never fails as a service (errors are answers).
//!
//! - [`http::HttpUpstream`]: a remote (or local) MCP server's Streamable HTTP endpoint, proxied
//!   with streaming in both directions;
//! - [`stdio::StdioUpstream`]: an MCP server run as a child process per session, speaking stdio,
//!   its children bounded by a [`stdio::StdioBudget`].
//!
//! [`BoxUpstream`] is the type every layer above passes around (the era translation, mounts,
//! the gate).

pub mod http;
pub mod pool;
pub mod stdio;

use std::convert::Infallible;

use axum::body::Body;
use tower::util::BoxCloneService;

/// Any upstream, boxed.
pub type BoxUpstream = BoxCloneService<::http::Request<Body>, ::http::Response<Body>, Infallible>;

/// Why an upstream could not be set up (a bad URL, TLS setup).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UpstreamError(pub String);

/// An error and every cause below it, `outer: inner: …` (an outer error such as "cannot
/// connect" says little; the cause — connection refused, DNS, TLS — is in its sources).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}
