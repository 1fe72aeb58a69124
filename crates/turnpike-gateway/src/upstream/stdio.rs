//! The stdio upstream: one child process per MCP session.
