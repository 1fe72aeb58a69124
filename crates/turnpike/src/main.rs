//! `turnpike`: a gateway in front of MCP servers that lets callers through by proof-of-work,
//! Lightning payment (L402) or OAuth — and the caller's tools to get through it.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod check;
mod connect;
mod demo;
mod init;
mod logging;
mod serve;
mod solve;
mod token;

/// mimalloc instead of the system allocator: a gated call allocates and frees a few hundred
/// small buffers (headers, JSON values, strings), and under load glibc's malloc cost about a
/// tenth of the gateway's CPU (docs/BENCHMARKS.md, "Profile").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// turnpike — a gateway in front of MCP servers. Callers get through by proof-of-work,
/// Lightning payment (L402) or OAuth, tool by tool.
#[derive(Debug, Parser)]
#[command(
    name = "turnpike",
    version,
    propagate_version = true,
    after_help = "Examples, one per command:\n  turnpike demo                                   # try it: a gated test server on 127.0.0.1:8402\n  turnpike init                                   # write a commented turnpike.toml (asks a few questions)\n  turnpike check -c turnpike.toml                 # validate a configuration (--measure-hashrate: this machine's PoW speed)\n  turnpike serve -c turnpike.toml                 # run the gateway (or: --upstream URL --pow-effort 200000)\n  turnpike connect http://127.0.0.1:8402/mcp --print-config   # an MCP host's config block that pays and solves\n  curl -s … | turnpike solve -                    # solve a proof-of-work challenge by hand\n  turnpike token inspect 'L402 AgEI…:9f2c…'        # decode, mint or revoke L402 tokens\n\nRun `turnpike <command> --help` for each command's flags."
)]
struct Cli {
    /// What to log, as a tracing filter (e.g. `info`, `turnpike_gateway=debug,warn`).
    /// Defaults to $RUST_LOG, else `info` for serve and demo, `warn` for check and solve.
    #[arg(long, global = true, value_name = "FILTER", help_heading = "Logging")]
    log: Option<String>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = "Logging")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Check(check::CheckArgs),
    Solve(solve::SolveArgs),
    Demo(demo::DemoArgs),
    Token(token::TokenArgs),
    // `-c` for `--config`, as in every other command.
    #[command(mut_arg("config", |a| a.short('c')))]
    Connect(Box<connect::ConnectArgs>),
    Init(init::InitArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `solve` and `check` write their results for people and pipes: keep logs quiet unless
    // asked for.
    let default_filter = match cli.command {
        Command::Solve(_)
        | Command::Check(_)
        | Command::Token(_)
        | Command::Connect(_)
        | Command::Init(_) => "warn",
        Command::Serve(_) => "info",
        // The built-in fixture (and the MCP SDK under it) would flood the demo's terminal:
        // `--log info` or RUST_LOG=info shows its lines.
        Command::Demo(_) => "info,turnpike_fixture=warn,rmcp=warn",
    };
    if let Err(e) = logging::init(cli.log.as_deref(), default_filter, cli.log_format) {
        eprintln!("turnpike: {e:#}");
        return ExitCode::from(2);
    }
    // A panic's message comes after every line logged before it.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        logging::flush();
        report(info);
    }));
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Check(a) => check::run(a),
        Command::Solve(a) => solve::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Token(a) => token::run(a),
        Command::Connect(a) => connect::run(*a),
        Command::Init(a) => init::run(a),
    };
    logging::flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("turnpike: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A multi-threaded tokio runtime for the commands that serve.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A future that resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives between the two (say, right after a "Ctrl-C stops it" line is printed)
/// is not lost to the default action, which would kill the process. Must be called inside the
/// runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let streams = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        match streams {
            (Some(mut int), Some(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            (Some(mut int), None) => {
                int.recv().await;
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}
