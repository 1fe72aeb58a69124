//! `turnpike demo`: the gateway in front of the built-in fixture server, with copy-pasteable
//! steps to try it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use tokio_util::sync::CancellationToken;
use turnpike_gateway::config::{ChallengeMode, Config, PriceConfig};

/// Run a gated demo server and print how to call it.
///
/// Starts the built-in test MCP server (tools echo, add, slow, whoami) on an ephemeral
/// loopback port and the gateway in front of it. `echo` and `whoami` are free; `add`, `slow`
/// and any other tool cost a small proof-of-work (about 0.1 s on one core). Keys are kept in a
/// temporary directory unless --data-dir is given.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  turnpike demo\n  turnpike demo --listen 127.0.0.1:9000 --effort 8000000    # ~1 s puzzles\n  turnpike demo --challenge-mode in-band                      # challenges as tool results"
)]
pub(crate) struct DemoArgs {
    /// Where the gateway listens (loopback only; port 0 picks a free port, and the steps name
    /// the one it got).
    #[arg(long, default_value = "127.0.0.1:8402", value_name = "ADDR")]
    pub(crate) listen: SocketAddr,
    /// Proof-of-work effort (expected hashes) of the priced tools.
    #[arg(long, default_value_t = 2_000_000, value_name = "N")]
    pub(crate) effort: u64,
    /// How challenges are delivered (auto: in band for MCP clients mid-session, 402 otherwise).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "http", "in-band"])]
    pub(crate) challenge_mode: String,
    /// Keep the gateway's keys here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        bail!("the demo listens on loopback only; give --listen 127.0.0.1:PORT");
    }
    if args.effort == 0 {
        bail!("--effort must be at least 1");
    }
    let (data_dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("turnpike-demo-{}", std::process::id())),
            true,
        ),
    };
    let rt = crate::runtime()?;
    let result = rt.block_on(run_async(&args, &data_dir));
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result.map(|()| ExitCode::SUCCESS)
}

async fn run_async(args: &DemoArgs, data_dir: &Path) -> anyhow::Result<()> {
    // The gateway's port first: when it is busy, one line says so before anything is printed.
    let gateway_listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(turnpike_gateway::bind_message(args.listen, &e, "--listen"))
        })?;
    // The fixture: stateless, JSON answers for simple calls, on an ephemeral loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the fixture's port")?;
    let fixture_addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let fixture = tokio::spawn(turnpike_fixture::serve_http(
        listener,
        "/mcp",
        turnpike_fixture::HttpOptions::fast(),
        stop.clone().cancelled_owned(),
    ));

    let listen = gateway_listener.local_addr()?;
    let cfg = demo_config(args, listen, fixture_addr, data_dir)?;
    let gateway = tokio::spawn(turnpike_gateway::serve_listener(gateway_listener, cfg, {
        let stop = stop.clone();
        async move { stop.cancelled().await }
    }));

    // Ctrl-C is caught from here on: the steps below tell the user to press it.
    let shutdown = crate::shutdown_signal();
    // Print the steps once the gateway answers HTTP (the bound port alone accepts connections
    // before the gateway serves them).
    let started = Instant::now();
    loop {
        if gateway.is_finished() {
            break;
        }
        if answers_http(listen).await {
            print_steps(args, listen, fixture_addr);
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            stop.cancel();
            bail!("the gateway did not start answering on {listen}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut gateway = gateway;
    tokio::select! {
        _ = shutdown => {}
        r = &mut gateway => {
            stop.cancel();
            r.context("the gateway task failed")?
                .with_context(|| format!("the gateway on {listen} stopped"))?;
            bail!("the gateway stopped unexpectedly");
        }
    }
    stop.cancel();
    if let Ok(r) = tokio::time::timeout(Duration::from_secs(5), gateway).await {
        r.context("the gateway task failed")?
            .context("the gateway stopped with an error")?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), fixture).await;
    Ok(())
}

/// The demo's configuration: echo and whoami free, every other tool at `effort`.
fn demo_config(
    args: &DemoArgs,
    listen: SocketAddr,
    fixture: SocketAddr,
    data_dir: &Path,
) -> anyhow::Result<Config> {
    let mut cfg = Config::default();
    cfg.server.listen = listen;
    cfg.server.data_dir = data_dir.to_path_buf();
    cfg.server.challenge_mode = ChallengeMode::parse(&args.challenge_mode)
        .with_context(|| format!("unknown challenge mode {:?}", args.challenge_mode))?;
    cfg.upstream.url = Some(format!("http://{fixture}/mcp"));
    let free = PriceConfig::free();
    cfg.tools.insert("echo".into(), free.clone());
    cfg.tools.insert("whoami".into(), free);
    cfg.tools.insert(
        "default".into(),
        PriceConfig::of(vec![turnpike_pow::offer(args.effort)]),
    );
    if let Err(e) = cfg.validate() {
        bail!("the demo configuration is invalid:\n{e}");
    }
    Ok(cfg)
}

/// How to run this very program from a shell: `turnpike` when that is what `PATH` finds,
/// else the full path of the running executable.
fn self_command() -> String {
    let exe = std::env::current_exe().ok();
    let exe_canon = exe.as_ref().and_then(|e| e.canonicalize().ok());
    if let (Some(path), Some(me)) = (std::env::var_os("PATH"), &exe_canon) {
        for dir in std::env::split_paths(&path) {
            if dir.join("turnpike").canonicalize().ok().as_ref() == Some(me) {
                return "turnpike".into();
            }
        }
    }
    match exe {
        Some(e) => shell_quote(&e.display().to_string()),
        None => "turnpike".into(),
    }
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether an HTTP server answers on `addr` (any status: the gateway is serving).
async fn answers_http(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.ok()?;
        Some(&head == b"HTTP/")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(true))
    )
}

/// The `mcpServers` block that puts the demo into an MCP host: the host starts
/// `turnpike connect <url>`, which answers the gate's challenges for it. Written by hand to keep
/// `command` before `args` and `args` on one line, as people write these files.
fn host_config(url: &str) -> String {
    let exe = std::env::current_exe()
        .ok()
        .map(|p| p.canonicalize().unwrap_or(p))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "turnpike".into());
    let q = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\n  \"mcpServers\": {{\n    \"turnpike-demo\": {{\n      \"command\": {},\n      \"args\": [{}, {}]\n    }}\n  }}\n}}",
        q(&exe),
        q("connect"),
        q(url)
    )
}

fn print_steps(args: &DemoArgs, listen: SocketAddr, fixture: SocketAddr) {
    let url = format!("http://{listen}/mcp");
    let me = self_command();
    let secs = args.effort as f64 / turnpike_pow::config::DEFAULT_REFERENCE_HASHRATE as f64;
    let curl = format!(
        "curl -s {url} -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'"
    );
    let echo = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;
    let add = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#;
    let config: String = host_config(&url)
        .lines()
        .map(|l| format!("   {l}\n"))
        .collect();
    println!(
        r#"turnpike demo
  gateway   {url}
  upstream  turnpike-fixture (built in) at http://{fixture}/mcp
  prices    echo, whoami: free; add, slow and any other tool: proof-of-work, effort {effort} (~{secs:.2} s on one core)

Try it from another terminal:

1. A free call goes straight through:
   {curl} \
     -d '{echo}'

2. A priced call without a credential gets 402 Payment Required and a challenge bound to this
   exact call (tool and arguments):
   {curl} -i \
     -d '{add}'

3. Solve the challenge (prints the Authorization header value; progress on stderr):
   AUTH=$({curl} \
     -d '{add}' | {me} solve)

4. Retry the same call with the credential (each credential works once):
   {curl} -H "Authorization: $AUTH" \
     -d '{add}'

5. Use it from an MCP host (Claude Desktop, Cursor, an agent framework): add this to the host's
   MCP settings (Claude Desktop: claude_desktop_config.json; Cursor: ~/.cursor/mcp.json) and
   restart the host:

{config}
   The host starts `turnpike connect`, a local MCP server on stdio that forwards each call to the
   gateway, solves the puzzle when the gateway asks for one (or pays or signs in, within your
   budgets, where a gateway asks for that), retries, and hands the host the tool's answer.
   Pointing the host at the gateway's URL itself does not work for priced tools: a host cannot
   answer the gate's challenge, so the model would get "solve this puzzle" back instead of the
   answer (only the free tools would work). `{me} connect <url> --print-config` prints this
   block for any gateway (docs/CONNECT.md: wallets, budgets, OAuth). An MCP client of your own
   can answer in band itself: retry with the credential in params._meta["turnpike/pow"]
   (`{me} solve --meta` prints it).

Ctrl-C stops the demo."#,
        effort = args.effort,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/turnpike"), "/usr/bin/turnpike");
        assert_eq!(shell_quote("/tmp/my dir/it's"), r"'/tmp/my dir/it'\''s'");
    }

    #[test]
    fn host_config_starts_connect() {
        let v: serde_json::Value =
            serde_json::from_str(&host_config("http://127.0.0.1:8402/mcp")).unwrap();
        let server = &v["mcpServers"]["turnpike-demo"];
        assert!(std::path::Path::new(server["command"].as_str().unwrap()).is_absolute());
        assert_eq!(
            server["args"],
            serde_json::json!(["connect", "http://127.0.0.1:8402/mcp"])
        );
    }

    #[test]
    fn demo_prices() {
        let args = DemoArgs {
            listen: "127.0.0.1:8402".parse().unwrap(),
            effort: 1000,
            challenge_mode: "auto".into(),
            data_dir: None,
        };
        let cfg = demo_config(
            &args,
            args.listen,
            "127.0.0.1:5555".parse().unwrap(),
            Path::new("/tmp/x"),
        )
        .unwrap();
        let p = cfg.policy();
        assert!(p.price("tools/call", Some("echo")).is_free());
        assert!(p.price("tools/call", Some("whoami")).is_free());
        assert!(!p.price("tools/call", Some("add")).is_free());
        assert!(!p.price("tools/call", Some("slow")).is_free());
        assert!(p.price("tools/list", None).is_free());
        assert_eq!(
            cfg.upstream.url.as_deref(),
            Some("http://127.0.0.1:5555/mcp")
        );
    }
}
