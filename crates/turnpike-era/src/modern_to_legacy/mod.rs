//! A modern (2026-07-28) client in front of a legacy-only (2025) upstream.
//!
//! - [`checks`]: what the gateway, as the modern server the client talks to, refuses before
//!   anything reaches the upstream;
//! - [`requests`]: the pooled upstream sessions, each request forwarded in one and its answer
//!   made a modern answer; `server/discover` answered from the session's `initialize`;
//! - [`listen`]: `subscriptions/listen`, bridged to the pooled session's GET stream;
//! - [`server_requests`]: the upstream's requests to the client (sampling, elicitation,
//!   roots) turned into `input_required` results and answered from the client's retry;
//! - shared by those: [`pool`] (the pooled upstream sessions and their headers) and
//!   [`results`] (answers made modern). They import none of the modules above.

pub(crate) mod checks;
pub(crate) mod listen;
pub(crate) mod pool;
pub(crate) mod requests;
pub(crate) mod results;
pub(crate) mod server_requests;
