//! A legacy (2025) client in front of a modern-only (2026-07-28) upstream.
//!
//! - [`requests`]: the client's POSTs, GETs and DELETEs: `initialize` answered from the
//!   upstream's `server/discover`, the sealed session checked, each request forwarded as a
//!   modern one and its answer made a 2025 answer;
//! - [`server_stream`]: the client's GET stream and `resources/subscribe`, bridged to the
//!   upstream's `subscriptions/listen`;
//! - [`input`]: an `input_required` result put to the client as server requests and the
//!   request retried with its answers;
//! - shared by those: [`session`] (the per-adapter state, the sealed session a request names),
//!   [`discover`] (the upstream's `server/discover`, cached) and [`subscriptions`] (the bounded
//!   table of subscriptions and open streams). They import none of the modules above.

pub(crate) mod discover;
pub(crate) mod input;
pub(crate) mod requests;
pub(crate) mod server_stream;
pub(crate) mod session;
pub(crate) mod subscriptions;
