//! `turnpike-fixture`: the fixture MCP server as a program, over HTTP or stdio.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use turnpike_fixture::HttpOptions;

/// A small, fast MCP server for tests, demos and benchmarks.
///
/// Tools: echo {text}, add {a,b}, slow {steps,delay_ms} (streams notifications/progress),
/// whoami (returns the HTTP headers the server received); with --era 2026-07-28 also confirm;
/// with --conformance, everything the MCP conformance suite's server scenarios call.
#[derive(Debug, Parser)]
#[command(
    name = "turnpike-fixture",
    version,
    after_help = "Examples:\n  turnpike-fixture --listen 127.0.0.1:3001            # stateful, http://127.0.0.1:3001/mcp\n  turnpike-fixture --listen 127.0.0.1:3001 --stateless --json   # one POST, one JSON reply\n  turnpike-fixture --stdio                             # for an MCP host that launches it\n  turnpike-fixture --listen 127.0.0.1:3001 --conformance --era 2025   # conformance, legacy only"
)]
struct Args {
    /// Serve Streamable HTTP on this address (path set by --path).
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "stdio",
        conflicts_with = "stdio"
    )]
    listen: Option<SocketAddr>,
    /// Serve one session over stdin/stdout instead of HTTP.
    #[arg(long)]
    stdio: bool,
    /// The HTTP endpoint path.
    #[arg(long, default_value = "/mcp", value_name = "PATH")]
    path: String,
    /// Stateless HTTP: no sessions, no initialize needed before a call.
    #[arg(long, conflicts_with = "stdio")]
    stateless: bool,
    /// With --stateless: answer simple calls with one application/json body instead of SSE.
    #[arg(long, requires = "stateless")]
    json: bool,
    /// Accept any Host header (default: only localhost, 127.0.0.1 and ::1).
    #[arg(long, conflicts_with = "stdio")]
    any_host: bool,
    /// Which MCP era(s) to speak over HTTP: both, 2025 (legacy only) or 2026-07-28 (modern
    /// only).
    #[arg(
        long,
        default_value = "both",
        value_name = "ERA",
        conflicts_with = "stdio"
    )]
    era: String,
    /// Also carry what the MCP conformance suite's server scenarios expect: its test_* tools,
    /// resources (test://static-text, test://static-binary, test://template/{id}/data,
    /// test://watched-resource with subscribe), prompts, completion, logging, list-changed
    /// notifications (subscriptions/listen in 2026-07-28, the session stream in 2025) and the
    /// tools that ask the client for input (input_required results to 2026-07-28 requests,
    /// elicitation/sampling/roots requests in a 2025 session, with the same final result),
    /// and the tasks extension (SEP-2663) for 2026-07-28 clients that declare it.
    #[arg(long)]
    conformance: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.stdio {
        let fixture = if args.conformance {
            turnpike_fixture::Fixture::with_conformance()
        } else {
            turnpike_fixture::Fixture::new()
        };
        return turnpike_fixture::serve_stdio_with(fixture)
            .await
            .context("serving over stdio");
    }
    let Some(addr) = args.listen else {
        anyhow::bail!("give --listen ADDR or --stdio");
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let Some(era) = turnpike_fixture::EraMode::parse(&args.era) else {
        anyhow::bail!("--era must be both, 2025 or 2026-07-28");
    };
    let opts = HttpOptions {
        era,
        conformance: args.conformance,
        stateless: args.stateless,
        json_response: args.json,
        allowed_hosts: args.any_host.then(Vec::new),
        ..Default::default()
    };
    // Tests read this line to learn the port when they bind port 0.
    println!("turnpike-fixture listening on http://{local}{}", args.path);
    turnpike_fixture::serve_http(listener, &args.path, opts, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving HTTP")
}
