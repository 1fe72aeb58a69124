//! Log setup: a tracing filter from `--log` or `$RUST_LOG`, text or JSON lines on stderr.

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
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}
