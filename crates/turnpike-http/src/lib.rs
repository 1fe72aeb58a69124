//! HTTP plumbing shared by turnpike's serving crates (the gateway, its upstreams, the era
//! translation and the operator side). It imports none of them.
//!
//! - [`PeerAddr`] and [`JsonRpcId`]: what the server and the gate attach to a request for the
//!   layers after them;
//! - [`reply`]: JSON and JSON-RPC error answers;
//! - [`body`]: reading a body whole within a size and time limit, media types;
//! - [`conns`]: listeners: connection caps per address and in all, first-byte and idle timers,
//!   the accept loop;
//! - [`hosts`]: the `Host` / `Origin` policy (DNS-rebinding protection).

pub mod body;
pub mod conns;
pub mod hosts;
pub mod reply;

use std::net::SocketAddr;

use serde_json::Value;

/// The caller's address, as a request extension (set by the server that accepted the
/// connection; axum's `ConnectInfo<SocketAddr>` is read too where this is missing).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The JSON-RPC id of the request being forwarded, as a request extension, so an upstream that
/// fails before answering can answer with an error carrying it.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRpcId(pub Value);

/// The caller's IP address from a request's extensions: [`PeerAddr`], else axum's
/// `ConnectInfo`.
pub fn peer_ip(ext: &http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<PeerAddr>().map(|p| p.0.ip()).or_else(|| {
        ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    })
}
