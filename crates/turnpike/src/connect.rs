//! `turnpike connect`: a local stdio MCP server that forwards to a gated remote server.

use std::process::ExitCode;

/// Bridge a local MCP host (stdio) to a gated remote MCP server.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The remote MCP endpoint (Streamable HTTP), e.g. https://mcp.example.com/mcp.
    pub url: String,
}

pub fn run(_args: ConnectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`turnpike connect` is not available in this build")
}
