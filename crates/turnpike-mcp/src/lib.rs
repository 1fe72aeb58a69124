//! MCP wire knowledge for turnpike. Pure functions, no I/O.
//!
//! - [`envelope`]: one JSON-RPC message per body ([`parse_message`]); batches, malformed
//!   messages and objects with repeated keys are refused;
//! - [`headers`]: the two protocol eras and the 2026-07-28 routing headers
//!   ([`check_routing_headers`]);
//! - [`classify`](mod@classify): which call a message is ([`classify()`] → `CallFacts`);
//! - [`canonical`]: the canonical JSON of arguments and its hash;
//! - [`meta`]: `turnpike/*` credentials in `params._meta`: their removal
//!   ([`strip_turnpike_meta`]);
//! - [`messages`]: typed views of the MCP messages the era translation reads and writes
//!   (a 2026-07-28 request's `_meta`, `initialize`, `server/discover`, `input_required` and
//!   the retry that answers it, a notification's params and `_meta`, server and client
//!   capabilities, the requests for input, the `subscriptions/listen` filter, a JSON-RPC
//!   error object, and the JSON-RPC envelope of any message passing through), every member
//!   they do not name kept as it came;
//! - [`respond`]: JSON-RPC error bodies, challenge errors and in-band challenge results;
//! - [`annotate`]: price annotation of `tools/list` results;
//! - [`sse`]: an incremental Server-Sent Events parser and writer.

pub mod annotate;
pub mod canonical;
pub mod classify;
pub mod envelope;
pub mod headers;
pub mod messages;
pub mod meta;
pub mod respond;
pub mod sse;

pub use annotate::{advertise_extensions, annotate_tools_list};
pub use classify::{call_name, classify, classify_named};
pub use envelope::{parse_message, EnvelopeError, Message, MessageKind};
pub use headers::{check_routing_headers, era, Era, HeaderMismatch};
pub use meta::{strip_meta, strip_turnpike_meta};
pub use respond::{
    challenge_error, challenge_error_json, error_response, in_band_result, in_band_result_for,
    in_band_result_with,
};
