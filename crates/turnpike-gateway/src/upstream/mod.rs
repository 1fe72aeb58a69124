//! Upstreams: where the gateway forwards calls. Each is a tower `Service` over
//! `http::Request<axum::body::Body>` that answers the way an MCP server on the Streamable HTTP
//! transport does.
//!
//! - [`http::HttpUpstream`]: a remote (or local) MCP server's Streamable HTTP endpoint, proxied
//!   with streaming in both directions;
//! - [`stdio::StdioUpstream`]: an MCP server run as a child process per session, speaking stdio.

pub mod http;
pub mod stdio;
