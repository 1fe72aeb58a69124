//! JSON-RPC error codes turnpike answers with.
//!
//! turnpike's own codes lie outside the JSON-RPC reserved range (-32768…-32000), as the
//! 2026-07-28 MCP revision asks; codes the MCP specification defines are used as defined.

/// The request is not valid JSON (JSON-RPC).
pub const PARSE_ERROR: i64 = -32700;
/// The message is not a valid JSON-RPC request, or is a batch array (JSON-RPC).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist (JSON-RPC).
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (JSON-RPC); also "resource not found" from MCP 2026-07-28 on
/// (SEP-2164).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error (JSON-RPC).
pub const INTERNAL_ERROR: i64 = -32603;
/// "Resource not found" in the 2025 MCP revisions.
pub const RESOURCE_NOT_FOUND_2025: i64 = -32002;
/// The request needs a client capability the client did not declare (MCP 2026-07-28,
/// `MissingRequiredClientCapabilityError`).
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// The server does not speak the requested protocol version (MCP 2026-07-28,
/// `UnsupportedProtocolVersionError`).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// `Mcp-Method`, `Mcp-Name` or `MCP-Protocol-Version` headers missing, malformed or
/// contradicting the body (MCP 2026-07-28).
pub const HEADER_MISMATCH: i64 = -32020;
/// The call needs a credential: proof-of-work, payment or a token. `error.data` lists the
/// accepted ways through.
pub const CREDENTIAL_REQUIRED: i64 = -31402;
/// A credential was presented but is forged or malformed.
pub const CREDENTIAL_INVALID: i64 = -31401;
/// The request was refused by the gateway's Host/Origin checks or another rule.
pub const FORBIDDEN: i64 = -31403;
/// The gateway's rate limit or budget refused the call; `error.data.retry_after` says when to
/// come back.
pub const RATE_LIMITED: i64 = -31429;
/// The gateway cannot decide now (a backend is down); the call was not forwarded.
pub const UNAVAILABLE: i64 = -31503;
/// The upstream failed (unreachable, or a stdio child exited) before answering.
pub const UPSTREAM_FAILED: i64 = -31502;
/// The upstream did not answer in time (no response head within `[upstream]
/// response_timeout_secs`, or silent longer than `stream_idle_timeout_secs` within a streamed
/// answer); the call was cancelled upstream.
pub const UPSTREAM_TIMEOUT: i64 = -31504;
/// The request body is larger than the gateway accepts.
pub const TOO_LARGE: i64 = -31413;
