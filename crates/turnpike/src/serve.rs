//! `turnpike serve`: run the gateway.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use std::sync::Arc;

use turnpike_gateway::config::{self, ChallengeMode, Config};
use turnpike_gateway::reload::Loader;
use turnpike_gateway::ServeOptions;

/// Run the gateway in front of an MCP server.
///
/// Reads the configuration file when one is given; the flags override it. Without a file, the
/// defaults apply (listen on 127.0.0.1:8402, path /mcp, every tool free unless --pow-effort)
/// and an upstream must be given with --upstream or --upstream-cmd.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  turnpike serve --config turnpike.toml\n  turnpike serve --upstream http://127.0.0.1:3001/mcp --pow-effort 200000\n  turnpike serve --upstream-cmd \"npx -y @modelcontextprotocol/server-everything\"\n  turnpike serve -c turnpike.toml --challenge-mode in-band --log turnpike_gateway=debug\n\nStop it with Ctrl-C or SIGTERM: it stops accepting and lets in-flight calls finish for up to\n[server] shutdown_timeout_secs. With --config, SIGHUP (and, with [server] watch_config, any\nchange to the file) reloads it; a configuration that does not pass `turnpike check`, or that\nchanges what needs a restart, is refused and the running one stays in force."
)]
pub(crate) struct ServeArgs {
    /// The configuration file (TOML); see `turnpike check`.
    #[arg(short, long, value_name = "FILE", env = "TURNPIKE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on (overrides [server] listen).
    #[arg(long, value_name = "ADDR", env = "TURNPIKE_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// The upstream MCP server's Streamable HTTP URL (overrides [upstream]).
    #[arg(long, value_name = "URL", conflicts_with = "upstream_cmd")]
    pub(crate) upstream: Option<String>,
    /// A stdio MCP server to launch, one child per session: the program and its arguments in
    /// one string, split like a shell would (quotes group words). Overrides [upstream].
    #[arg(long, value_name = "\"CMD ARGS…\"")]
    pub(crate) upstream_cmd: Option<String>,
    /// Price every tool not named in the file at this proof-of-work effort (expected hashes),
    /// i.e. set [tools.default] pow.
    #[arg(long, value_name = "N")]
    pub(crate) pow_effort: Option<u64>,
    /// How challenges are delivered: HTTP 402, in band as a tool result, or auto (in band for
    /// MCP clients mid-session, 402 otherwise).
    #[arg(long, value_name = "MODE", value_parser = ["auto", "http", "in-band"])]
    pub(crate) challenge_mode: Option<String>,
    /// Where keys are kept (overrides [server] data_dir).
    #[arg(long, value_name = "DIR", env = "TURNPIKE_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = match build_config(&args) {
        Ok(cfg) => cfg,
        Err(BuildError::Config(e)) => {
            crate::check::report(&e);
            return Ok(ExitCode::FAILURE);
        }
        Err(BuildError::Other(e)) => return Err(e),
    };
    let rt = crate::runtime()?;
    // Bind before anything is said: a busy port is one line naming the way out, and exit 1.
    let listen = cfg.server.listen;
    let listener = match rt.block_on(tokio::net::TcpListener::bind(listen)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "turnpike: {}",
                turnpike_gateway::bind_message(listen, &e, "--listen or [server] listen")
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    tracing::info!(
        listen = %listener.local_addr().unwrap_or(listen),
        path = %cfg.server.path,
        policy = %crate::check::summary(&cfg),
        "starting the gateway"
    );
    let reload: Option<Loader> = args.config.as_ref().map(|_| {
        let args = args.clone();
        Arc::new(move || {
            build_config(&args).map_err(|e| match e {
                BuildError::Config(e) => e.to_string(),
                BuildError::Other(e) => format!("{e:#}"),
            })
        }) as Loader
    });
    let opts = ServeOptions {
        reload,
        watch: args.config.clone(),
        on_ready: None,
    };
    rt.block_on(async move {
        // Inside the runtime: the signal handlers are installed before the first line says
        // where the gateway listens.
        turnpike_gateway::serve_listener_with(listener, cfg, crate::shutdown_signal(), opts).await
    })
    .context("the gateway stopped with an error")?;
    Ok(ExitCode::SUCCESS)
}

enum BuildError {
    Config(config::ConfigError),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for BuildError {
    fn from(e: anyhow::Error) -> Self {
        BuildError::Other(e)
    }
}

/// The file (or the defaults), then the flags, then the cross-field checks.
fn build_config(args: &ServeArgs) -> Result<Config, BuildError> {
    let mut cfg = match &args.config {
        Some(path) => config::load(path).map_err(BuildError::Config)?,
        None => Config::default(),
    };
    apply_overrides(&mut cfg, args)?;
    cfg.validate().map_err(|mut e| {
        e.file = match &args.config {
            Some(p) => format!("{} (with command-line flags)", p.display()),
            None => "command line".into(),
        };
        BuildError::Config(e)
    })?;
    // The files the configuration names are read as the gateway starts (or on first use):
    // refuse a missing one now, with the message `turnpike check` gives.
    if let Some(path) = &args.config {
        let src =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let problems = crate::check::referenced_files(&src, Path::new("."));
        if !problems.is_empty() {
            return Err(BuildError::Config(config::ConfigError {
                file: path.display().to_string(),
                problems,
            }));
        }
    }
    Ok(cfg)
}

fn apply_overrides(cfg: &mut Config, args: &ServeArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        cfg.server.listen = listen;
    }
    if let Some(url) = &args.upstream {
        cfg.upstream.url = Some(url.clone());
        cfg.upstream.command = None;
    }
    if let Some(cmd) = &args.upstream_cmd {
        let words = split_command(cmd)?;
        if words.is_empty() {
            bail!("--upstream-cmd is empty");
        }
        cfg.upstream.command = Some(words);
        cfg.upstream.url = None;
    }
    if let Some(effort) = args.pow_effort {
        if effort == 0 {
            bail!("--pow-effort must be at least 1 (it counts expected hashes)");
        }
        // The default tool price's other offers stay; a free price becomes this one.
        let mut price = cfg.tools.remove("default").unwrap_or_default();
        price.free = false;
        price.set_offer(turnpike_pow::offer(effort));
        cfg.tools.insert("default".into(), price);
    }
    if let Some(mode) = &args.challenge_mode {
        cfg.server.challenge_mode = ChallengeMode::parse(mode)
            .with_context(|| format!("unknown challenge mode {mode:?}"))?;
    }
    if let Some(dir) = &args.data_dir {
        cfg.server.data_dir.clone_from(dir);
    }
    Ok(())
}

/// Splits a command line into words: whitespace separates, single quotes keep everything,
/// double quotes keep everything but `\"` and `\\`, a backslash outside quotes escapes the
/// next character.
pub(crate) fn split_command(s: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => bail!("unterminated ' quote in {s:?}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => bail!("unterminated \" quote in {s:?}"),
                        },
                        Some(c) => cur.push(c),
                        None => bail!("unterminated \" quote in {s:?}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => bail!("trailing backslash in {s:?}"),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_command("npx -y @modelcontextprotocol/server-everything").unwrap(),
            ["npx", "-y", "@modelcontextprotocol/server-everything"]
        );
        assert_eq!(
            split_command(r#"  python3 "my server.py" --name 'a b'  x\ y "q\"q" '' "#).unwrap(),
            [
                "python3",
                "my server.py",
                "--name",
                "a b",
                "x y",
                "q\"q",
                ""
            ]
        );
        assert!(split_command("a 'b").is_err());
        assert!(split_command("a \"b").is_err());
        assert!(split_command("a\\").is_err());
        assert!(split_command("   ").unwrap().is_empty());
    }

    fn args() -> ServeArgs {
        ServeArgs {
            config: None,
            listen: None,
            upstream: None,
            upstream_cmd: None,
            pow_effort: None,
            challenge_mode: None,
            data_dir: None,
        }
    }

    #[test]
    fn flags_build_a_config_without_a_file() {
        let mut a = args();
        a.upstream = Some("http://127.0.0.1:3001/mcp".into());
        a.listen = Some("127.0.0.1:9999".parse().unwrap());
        a.pow_effort = Some(1234);
        a.challenge_mode = Some("in-band".into());
        a.data_dir = Some("/tmp/x".into());
        let Ok(cfg) = build_config(&a) else {
            panic!("valid flags refused")
        };
        assert_eq!(cfg.server.listen.port(), 9999);
        assert_eq!(
            cfg.upstream.url.as_deref(),
            Some("http://127.0.0.1:3001/mcp")
        );
        let p = &cfg.tools["default"];
        let effort = p.offer(turnpike_pow::RAIL).and_then(turnpike_pow::effort);
        assert_eq!(effort, Some(1234));
        assert_eq!(cfg.server.challenge_mode, ChallengeMode::InBand);
        assert_eq!(cfg.server.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn an_upstream_is_required() {
        match build_config(&args()) {
            Err(BuildError::Config(e)) => {
                assert!(e.to_string().contains("no upstream"), "{e}");
            }
            _ => panic!("a config without upstream was accepted"),
        }
    }

    #[test]
    fn a_command_flag_replaces_a_url() {
        let mut a = args();
        a.upstream_cmd = Some("node server.js --stdio".into());
        let Ok(cfg) = build_config(&a) else {
            panic!("valid flags refused")
        };
        assert_eq!(
            cfg.upstream.command,
            Some(vec!["node".into(), "server.js".into(), "--stdio".into()])
        );
        assert!(cfg.upstream.url.is_none());
    }
}
