//! `turnpike init`: writes a commented configuration file.

use std::process::ExitCode;

/// Write a commented turnpike.toml for an upstream.
#[derive(Debug, clap::Args)]
pub struct InitArgs {}

pub fn run(_args: InitArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`turnpike init` is not available in this build")
}
