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

pub use turnpike_https::error_chain;
