//! A legacy (2025) client in front of a modern-only (2026-07-28) upstream.
//!
//! - [`requests`]: the client's POSTs, GETs and DELETEs: `initialize` answered from the
//!   upstream's `server/discover`, the sealed session checked, each request forwarded as a
//!   modern one and its answer made a 2025 answer;
//! - [`server_stream`]: the client's GET stream and `resources/subscribe`, bridged to the
//!   upstream's `subscriptions/listen`;
//! - [`input`]: an `input_required` result put to the client as server requests and the
//!   request retried with its answers.

pub mod input;
pub mod requests;
pub mod server_stream;
