//! Log setup: a tracing filter from `--log` or `$RUST_LOG`, text or JSON lines on stderr.
//! Colour only when stderr is a terminal and `NO_COLOR` is unset: files, pipes and the logs MCP
//! hosts keep of `turnpike connect` get plain text.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::LogFormat;

/// Installs the global subscriber. `flag` wins over `$RUST_LOG`, which wins over `default`.
pub(crate) fn init(flag: Option<&str>, default: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match flag {
        Some(f) => EnvFilter::try_new(f).with_context(|| format!("bad --log filter {f:?}"))?,
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => {
                EnvFilter::try_new(&v).with_context(|| format!("bad RUST_LOG filter {v:?}"))?
            }
            _ => EnvFilter::new(default),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// Whether to colour: on a terminal, unless `NO_COLOR` is set to anything but the empty string
/// (no-color.org).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
