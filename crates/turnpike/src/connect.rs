//! `turnpike connect`: a local stdio MCP server that forwards to a gated remote server,
//! solving, paying and signing in for its host within the user's budgets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use turnpike_client::{
    bridge::BridgeOptions, budget, store, Budgets, Client, ClientConfig, OAuthClientConfig, Policy,
    Rail,
};

/// Bridge a local MCP host (stdio) to a gated remote MCP server.
///
/// Add the block `--print-config` prints to your host's `mcpServers` (Claude Desktop, Cursor, …):
/// the host starts `turnpike connect`, talks MCP to it on stdin/stdout, and every call is
/// forwarded to the remote server. When the remote asks for proof-of-work, a Lightning payment
/// (L402, MPP), an x402 payment (a USD stablecoin on an EVM chain) or an OAuth token — as HTTP
/// 402/401 or in band — turnpike answers within the policy and budgets below and retries the
/// call; the host only sees the result. A rail that cannot be
/// used (an invoice over --max-pay or a budget, a wallet that fails, a dishonest invoice, a
/// puzzle over the CPU-time cap) falls through to the next rail offered; a call no rail can get
/// through fails with a tool error giving every reason.
///
/// Settings come from flags, then `<state-dir>/connect.toml` (or `--config`), then defaults.
/// Credentials (L402 tokens, OAuth tokens) and the spend log live in the state directory
/// (mode 0700, files 0600).
#[derive(Debug, clap::Args)]
#[command(after_help = CONNECT_EXAMPLES)]
pub(crate) struct ConnectArgs {
    /// The remote MCP endpoint (Streamable HTTP), e.g. https://mcp.example.com/mcp.
    #[arg(required_unless_present_any = ["spent", "print_agent_directory"])]
    pub(crate) url: Option<String>,

    /// Print the spend log (what was paid and solved, and totals) and exit.
    #[arg(long)]
    pub(crate) spent: bool,
    /// Print the JSON block for a host's `mcpServers` configuration and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    /// The server's name in the printed `mcpServers` block (default: the remote's host name).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,

    /// The settings file (TOML: [wallet], [budget], [policy], [oauth]); default
    /// `<state-dir>/connect.toml` when it exists.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where credentials and the spend log are kept. Default: $TURNPIKE_CONNECT_DIR, else
    /// $XDG_CONFIG_HOME/turnpike/connect, else ~/.config/turnpike/connect.
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// The wallet that pays L402 invoices: lnd, cln, phoenixd, lnbits or nwc.
    #[arg(long, value_name = "KIND", help_heading = "Wallet")]
    pub(crate) wallet: Option<String>,
    /// The wallet's REST URL (lnd, cln, phoenixd, lnbits).
    #[arg(long, value_name = "URL", help_heading = "Wallet")]
    pub(crate) wallet_url: Option<String>,
    /// The environment variable holding the wallet's secret: the macaroon in hex (lnd), the
    /// rune (cln), the password (phoenixd), the admin key (lnbits), the connection URI (nwc).
    #[arg(long, value_name = "VAR", help_heading = "Wallet")]
    pub(crate) wallet_secret_env: Option<String>,
    /// Or a file holding it (lnd: the macaroon file itself).
    #[arg(long, value_name = "FILE", help_heading = "Wallet")]
    pub(crate) wallet_secret_file: Option<PathBuf>,
    /// The wallet's TLS certificate (PEM), pinned (LND's and clnrest's self-signed ones).
    #[arg(long, value_name = "FILE", help_heading = "Wallet")]
    pub(crate) wallet_tls_cert: Option<PathBuf>,

    /// The most one call may cost, in sats.
    #[arg(long, value_name = "SAT", help_heading = "Budgets")]
    pub(crate) max_per_call: Option<u64>,
    /// The most spent in any hour, in sats.
    #[arg(long, value_name = "SAT", help_heading = "Budgets")]
    pub(crate) max_per_hour: Option<u64>,
    /// The most spent in any 24 hours, in sats.
    #[arg(long, value_name = "SAT", help_heading = "Budgets")]
    pub(crate) max_per_day: Option<u64>,
    /// The most spent on one server in any 24 hours, in sats.
    #[arg(long, value_name = "SAT", help_heading = "Budgets")]
    pub(crate) max_per_server: Option<u64>,
    /// The most paid with x402 and MPP evm in any 24 hours, in US dollars.
    #[arg(long, value_name = "USD", help_heading = "Budgets")]
    pub(crate) budget_usd_per_day: Option<f64>,

    /// The EVM key that signs x402 and MPP evm payments: a file holding 64 hex digits (mode
    /// 0600).
    #[arg(long, value_name = "FILE", help_heading = "x402")]
    pub(crate) x402_key: Option<PathBuf>,
    /// Or the environment variable holding it.
    #[arg(long, value_name = "VAR", help_heading = "x402")]
    pub(crate) x402_key_env: Option<String>,
    /// A token x402 may pay with (0x and 40 hex digits; repeatable), on --x402-network.
    #[arg(long, value_name = "0x…", help_heading = "x402")]
    pub(crate) x402_asset: Vec<String>,
    /// The chain of --x402-asset: eip155:<chain id>, or the chain id.
    #[arg(long, value_name = "NETWORK", help_heading = "x402")]
    pub(crate) x402_network: Option<String>,
    /// The decimals of --x402-asset (default 6, as USDC's).
    #[arg(long, value_name = "N", help_heading = "x402")]
    pub(crate) x402_decimals: Option<u32>,
    /// The EIP-712 domain name of --x402-asset ("USD Coin" for USDC on Base): MPP's evm method
    /// signs under it (its challenge does not carry it; x402 offers do).
    #[arg(long, value_name = "NAME", help_heading = "x402")]
    pub(crate) x402_asset_name: Option<String>,
    /// The EIP-712 domain version of --x402-asset ("2" for USDC), with --x402-asset-name.
    #[arg(long, value_name = "V", help_heading = "x402")]
    pub(crate) x402_asset_version: Option<String>,

    /// Solve a puzzle when it should take at most this many seconds here …
    #[arg(long, value_name = "SECS", help_heading = "Choosing the rail")]
    pub(crate) solve_under: Option<f64>,
    /// … else pay up to this many sats at once (a balance bundle counts whole) …
    #[arg(long, value_name = "SAT", help_heading = "Choosing the rail")]
    pub(crate) max_pay: Option<u64>,
    /// … else solve anyway if it takes at most this many seconds (a CPU-time cap; a puzzle
    /// expected to take longer is refused).
    #[arg(long, value_name = "SECS", help_heading = "Choosing the rail")]
    pub(crate) pow_max_secs: Option<f64>,
    /// Routing-fee limit per payment, in sats.
    #[arg(long, value_name = "SAT", help_heading = "Choosing the rail")]
    pub(crate) max_fee: Option<u64>,
    /// Try this rail first when it is offered: oauth, pow, l402, mpp, x402 or mpp-evm.
    #[arg(long, value_name = "RAIL", help_heading = "Choosing the rail")]
    pub(crate) prefer: Option<String>,
    /// The rails to use, in order of preference, comma-separated (oauth, pow, l402, mpp,
    /// x402, mpp-evm; l402 takes an MPP Lightning invoice where no L402 is offered, mpp only
    /// MPP's); a rail left out is never used. Default: every rail, OAuth first, a quick
    /// puzzle, then L402/MPP Lightning, then x402, then MPP evm, then a puzzle up to
    /// --pow-max-secs.
    #[arg(long, value_name = "LIST", help_heading = "Choosing the rail")]
    pub(crate) rails: Option<String>,
    /// Pay with x402 or MPP evm up to this many US dollars for one call.
    #[arg(long, value_name = "USD", help_heading = "Choosing the rail")]
    pub(crate) max_pay_usd: Option<f64>,
    /// Solver threads (default: one per core).
    #[arg(long, value_name = "N", help_heading = "Choosing the rail")]
    pub(crate) threads: Option<usize>,

    /// OAuth client id (client-credentials grant).
    #[arg(long, value_name = "ID", help_heading = "OAuth")]
    pub(crate) oauth_client_id: Option<String>,
    /// The environment variable holding the client secret.
    #[arg(long, value_name = "VAR", help_heading = "OAuth")]
    pub(crate) oauth_client_secret_env: Option<String>,
    /// Or a file holding the client secret.
    #[arg(long, value_name = "FILE", help_heading = "OAuth")]
    pub(crate) oauth_client_secret_file: Option<PathBuf>,
    /// Or a P-256 private key (PKCS#8 PEM) to sign `private_key_jwt` assertions (ES256).
    #[arg(long, value_name = "FILE", help_heading = "OAuth")]
    pub(crate) oauth_private_key: Option<PathBuf>,
    /// The key id for the assertion's header.
    #[arg(long, value_name = "KID", help_heading = "OAuth")]
    pub(crate) oauth_key_id: Option<String>,
    /// Scopes to ask for (space-separated; default: what the server's challenge names).
    #[arg(long, value_name = "SCOPES", help_heading = "OAuth")]
    pub(crate) oauth_scope: Option<String>,
    /// Sign in a person in the browser (authorization code + PKCE, loopback redirect) instead
    /// of client credentials; a client secret is optional then (a public client).
    #[arg(long, help_heading = "OAuth")]
    pub(crate) oauth_browser: bool,
    /// The loopback port for the browser sign-in's redirect (default: any free port).
    #[arg(long, value_name = "PORT", help_heading = "OAuth")]
    pub(crate) oauth_redirect_port: Option<u16>,

    /// Sign every request as a verified agent (Web Bot Auth) with this Ed25519 private key:
    /// PKCS#8 PEM (`openssl genpkey -algorithm ed25519`), an OKP JWK with `d`, or the 32-byte
    /// seed in hex or base64url. Needs --agent-directory.
    #[arg(long, value_name = "FILE", help_heading = "Verified agent")]
    pub(crate) agent_key: Option<PathBuf>,
    /// The URL of the key directory that publishes the agent key, sent in `Signature-Agent`
    /// (https://…/.well-known/http-message-signatures-directory).
    #[arg(long, value_name = "URL", help_heading = "Verified agent")]
    pub(crate) agent_directory: Option<String>,
    /// Print the key directory (a JWK set) publishing the public half of --agent-key, to be
    /// served at --agent-directory and registered with the gateway's operator, and exit. A
    /// missing key file is created first (a new random key, mode 0600).
    #[arg(long, help_heading = "Verified agent", requires = "agent_key")]
    pub(crate) print_agent_directory: bool,

    /// An extra header for every request to the remote, `Name: value` (repeatable).
    #[arg(
        long = "header",
        value_name = "NAME: VALUE",
        help_heading = "Transport"
    )]
    pub(crate) headers: Vec<String>,
    /// Ask a turnpike gateway to deliver challenges as `http` (402/401) or `in-band` results.
    #[arg(long, value_name = "MODE", help_heading = "Transport")]
    pub(crate) challenge_mode: Option<String>,
    /// Do not open the GET stream for server-initiated messages.
    #[arg(long, help_heading = "Transport")]
    pub(crate) no_get_stream: bool,
    /// Instead of stdio, serve a plain HTTP forwarder on this loopback address (e.g.
    /// 127.0.0.1:8403) for HTTP clients that do not speak L402 or proof-of-work: each request is
    /// sent to the remote's origin with the same path, and its challenges answered.
    #[arg(long, value_name = "ADDR", help_heading = "Transport")]
    pub(crate) listen: Option<std::net::SocketAddr>,
}

const CONNECT_EXAMPLES: &str = "Examples:
  turnpike connect https://mcp.example.com/mcp --print-config     # the block for Claude Desktop / Cursor
  turnpike connect https://mcp.example.com/mcp                     # solve puzzles only (no wallet)
  turnpike connect https://mcp.example.com/mcp --wallet lnd --wallet-url https://127.0.0.1:8080 \\
      --wallet-secret-file ~/.lnd/data/chain/bitcoin/mainnet/admin.macaroon \\
      --wallet-tls-cert ~/.lnd/tls.cert --max-pay 10 --max-per-day 500
  turnpike connect https://mcp.example.com/mcp --wallet nwc --wallet-secret-env NWC_URI
  turnpike connect https://mcp.example.com/mcp --oauth-client-id agent --oauth-client-secret-env AGENT_SECRET
  turnpike connect https://mcp.example.com/mcp --x402-key-env X402_KEY --x402-network eip155:8453 \\
      --x402-asset 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 --max-pay-usd 0.05 --budget-usd-per-day 2 \\
      --x402-asset-name \"USD Coin\" --x402-asset-version 2                     # and MPP's evm method
  turnpike connect --spent                                         # what was paid and solved";

/// `connect.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// The wallet: the same keys as the gateway's `[lightning]` (`kind`/`backend`, `url`,
    /// `macaroon_path`, …).
    #[serde(default)]
    wallet: Option<toml::Table>,
    #[serde(default)]
    budget: Option<Budgets>,
    #[serde(default)]
    policy: Option<Policy>,
    #[serde(default)]
    oauth: Option<FileOAuth>,
    #[serde(default)]
    x402: Option<FileX402>,
}

/// `[x402]` of `connect.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileX402 {
    key_file: Option<PathBuf>,
    key_env: Option<String>,
    #[serde(default)]
    assets: Vec<FileX402Asset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileX402Asset {
    network: String,
    asset: String,
    #[serde(default = "usdc_decimals")]
    decimals: u32,
    /// The token's EIP-712 domain name and version (for MPP's evm method).
    name: Option<String>,
    version: Option<String>,
}

fn usdc_decimals() -> u32 {
    6
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOAuth {
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_path: Option<PathBuf>,
    private_key_path: Option<PathBuf>,
    key_id: Option<String>,
    scope: Option<String>,
    #[serde(default)]
    secret_in_body: bool,
    token_endpoint: Option<String>,
    #[serde(default)]
    browser: bool,
    #[serde(default)]
    redirect_port: u16,
}

pub(crate) fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let state_dir = args.state_dir.clone().unwrap_or_else(store::default_dir);
    if args.spent {
        let log = budget::read_log(&state_dir)?;
        print!("{}", budget::render_log(&log, turnpike_core::unix_now()));
        return Ok(ExitCode::SUCCESS);
    }
    if args.print_agent_directory {
        let path = args
            .agent_key
            .as_deref()
            .context("--agent-key is required")?;
        let signer = load_or_create_agent_key(path)?;
        println!("{}", serde_json::to_string_pretty(&signer.directory())?);
        eprintln!(
            "turnpike connect: key id {} (serve this at the URL given as --agent-directory, \
             with Content-Type application/http-message-signatures-directory+json)",
            signer.keyid()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(url) = args.url.clone() else {
        bail!("the remote URL is required");
    };
    let uri: http::Uri = url.parse().with_context(|| format!("url {url:?}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => {}
        (Some("http"), Some(h)) if is_loopback(h) => {}
        (Some("http"), Some(_)) => {
            eprintln!("turnpike connect: warning: {url} is plain http: credentials and payments' proofs cross the network in clear text");
        }
        _ => bail!("url {url:?} must be http(s)://host/path"),
    }
    if args.print_config {
        println!("{}", print_config(&args, &url)?);
        return Ok(ExitCode::SUCCESS);
    }
    let cfg = build_config(&args, state_dir)?;
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?} is not `Name: value`"))?;
        headers.append(
            HeaderName::from_bytes(k.trim().as_bytes())
                .with_context(|| format!("--header {h:?}"))?,
            HeaderValue::from_str(v.trim()).with_context(|| format!("--header {h:?}"))?,
        );
    }
    if let Some(m) = &args.challenge_mode {
        if m != "http" && m != "in-band" {
            bail!("--challenge-mode must be http or in-band");
        }
        headers.insert("turnpike-challenge", HeaderValue::from_str(m)?);
    }
    if let Some(addr) = args.listen {
        if !addr.ip().is_loopback() {
            bail!("--listen {addr}: only loopback addresses (the forwarder spends your budget for whoever connects)");
        }
        let rt = crate::runtime()?;
        return rt.block_on(async move {
            let client = Arc::new(Client::new(cfg)?);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--listen {addr}"))?;
            let shutdown = crate::shutdown_signal();
            eprintln!(
                "turnpike connect: forwarding http://{} to {url}",
                listener.local_addr()?
            );
            tokio::select! {
                r = turnpike_client::proxy::serve(client, url.clone(), listener) => r?,
                _ = shutdown => {}
            }
            anyhow::Ok(ExitCode::SUCCESS)
        });
    }
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let client = Arc::new(Client::new(cfg)?);
        tracing::info!(%url, "turnpike connect: bridging stdio to the remote server");
        turnpike_client::bridge::run_stdio(
            client,
            BridgeOptions {
                url,
                headers,
                get_stream: !args.no_get_stream,
            },
        )
        .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The agent key in `path`, or a new one written there (0600) when the file does not exist.
fn load_or_create_agent_key(path: &std::path::Path) -> anyhow::Result<turnpike_webbotauth::Signer> {
    if path.exists() {
        return read_agent_key(path);
    }
    let (signer, seed) =
        turnpike_webbotauth::Signer::generate().map_err(|e| anyhow::anyhow!("agent key: {e}"))?;
    let mut hex_seed = zeroize::Zeroizing::new(hex::encode(seed));
    hex_seed.push('\n');
    turnpike_fs::create_private(path, hex_seed.as_bytes())
        .with_context(|| format!("--agent-key {}", path.display()))?;
    eprintln!(
        "turnpike connect: created a new agent key in {}",
        path.display()
    );
    Ok(signer)
}

fn read_agent_key(path: &std::path::Path) -> anyhow::Result<turnpike_webbotauth::Signer> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("--agent-key {}", path.display()))?,
    );
    turnpike_webbotauth::Signer::from_text(&text)
        .map_err(|e| anyhow::anyhow!("--agent-key {}: {e}", path.display()))
}

/// The x402 payer of `--x402-key`/`--x402-key-env` and `--x402-asset` (or `[x402]`), when a key
/// is given.
fn x402_payer(
    args: &ConnectArgs,
    file: Option<FileX402>,
) -> anyhow::Result<Option<turnpike_client::X402Payer>> {
    use turnpike_client::{X402Asset, X402Payer};
    let file = file.unwrap_or_default();
    let mut assets = Vec::new();
    for a in &file.assets {
        let asset = X402Asset::parse(&a.network, &a.asset, a.decimals)
            .map_err(|e| anyhow::anyhow!("[x402] assets: {e}"))?;
        assets.push(match (&a.name, &a.version) {
            (Some(n), Some(v)) => asset.with_domain(n, v),
            (None, None) => asset,
            _ => bail!("[x402] assets: name and version go together (the token's EIP-712 domain)"),
        });
    }
    let domain = match (&args.x402_asset_name, &args.x402_asset_version) {
        (Some(n), Some(v)) => Some((n.as_str(), v.as_str())),
        (None, None) => None,
        _ => bail!(
            "--x402-asset-name and --x402-asset-version go together (the token's EIP-712 domain)"
        ),
    };
    if !args.x402_asset.is_empty() {
        let network = args
            .x402_network
            .as_deref()
            .context("--x402-asset needs --x402-network (eip155:<chain id>)")?;
        for a in &args.x402_asset {
            let asset = X402Asset::parse(network, a, args.x402_decimals.unwrap_or(6))
                .map_err(|e| anyhow::anyhow!("--x402-asset: {e}"))?;
            assets.push(match domain {
                Some((n, v)) => asset.with_domain(n, v),
                None => asset,
            });
        }
    } else if args.x402_network.is_some() || args.x402_decimals.is_some() || domain.is_some() {
        bail!("--x402-network, --x402-decimals and --x402-asset-name/-version describe --x402-asset, which is missing");
    }
    let (key_file, key_env) = match (&args.x402_key, &args.x402_key_env) {
        (None, None) => (file.key_file, file.key_env),
        (f, e) => (f.clone(), e.clone()),
    };
    let payer = match (key_file, key_env) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => bail!("x402: give the key as a file or a variable, not both"),
        (Some(path), None) => X402Payer::from_file(&path, assets)?,
        (None, Some(var)) => {
            let key = zeroize::Zeroizing::new(
                std::env::var(&var)
                    .with_context(|| format!("x402 key: environment variable {var} is not set"))?,
            );
            X402Payer::from_hex(&key, assets)
                .map_err(|_| anyhow::anyhow!("x402 key: {var} is not 64 hex digits of a key"))?
        }
    };
    if payer.assets.is_empty() {
        bail!("x402: a key is given but no asset to pay with (--x402-asset with --x402-network, or [x402] assets)");
    }
    Ok(Some(payer))
}

/// The agent signing of `--agent-key` and `--agent-directory`, when given.
fn agent_signing(args: &ConnectArgs) -> anyhow::Result<Option<turnpike_client::AgentSigning>> {
    let (key, dir) = match (&args.agent_key, &args.agent_directory) {
        (None, None) => return Ok(None),
        (Some(k), Some(d)) => (k, d),
        (Some(_), None) => {
            bail!("--agent-key needs --agent-directory (the URL of its key directory)")
        }
        (None, Some(_)) => bail!("--agent-directory needs --agent-key"),
    };
    let uri: http::Uri = dir
        .parse()
        .with_context(|| format!("--agent-directory {dir:?}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => {}
        (Some("http"), Some(h)) if is_loopback(h) => {}
        _ => bail!("--agent-directory {dir:?} must be an https:// URL (http:// only on loopback)"),
    }
    if turnpike_webbotauth::Signer::signature_agent(dir).is_none() {
        bail!("--agent-directory {dir:?} must be visible ASCII");
    }
    Ok(Some(turnpike_client::AgentSigning {
        signer: Arc::new(read_agent_key(key)?),
        directory: dir.clone(),
        validity_secs: 60,
    }))
}

fn is_loopback(h: &str) -> bool {
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|i| i.is_loopback())
            .unwrap_or(false)
}

fn read_secret(
    env: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    Ok(match (env, file) {
        (Some(_), Some(_)) => bail!("{what}: give an environment variable or a file, not both"),
        (Some(var), None) => Some(
            std::env::var(var)
                .with_context(|| format!("{what}: environment variable {var} is not set"))?
                .trim()
                .to_string(),
        ),
        (None, Some(p)) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("{what}: {}", p.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    })
}

fn build_config(args: &ConnectArgs, state_dir: PathBuf) -> anyhow::Result<ClientConfig> {
    let file_path = args
        .config
        .clone()
        .or_else(|| Some(state_dir.join("connect.toml")).filter(|p| p.exists()));
    let file: FileConfig = match &file_path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let mut cfg = ClientConfig::new(state_dir);
    if let Some(b) = file.budget {
        cfg.budgets = b;
    }
    if let Some(p) = file.policy {
        cfg.policy = p;
    }
    let b = &mut cfg.budgets;
    for (flag, slot) in [
        (args.max_per_call, &mut b.per_call_sat),
        (args.max_per_hour, &mut b.per_hour_sat),
        (args.max_per_day, &mut b.per_day_sat),
        (args.max_per_server, &mut b.per_server_sat),
    ] {
        if let Some(v) = flag {
            *slot = Some(v);
        }
    }
    let p = &mut cfg.policy;
    if let Some(v) = args.solve_under {
        p.solve_under_secs = v;
    }
    if let Some(v) = args.max_pay {
        p.max_pay_sat = v;
    }
    if let Some(v) = args.pow_max_secs {
        p.pow_max_secs = v;
    }
    if let Some(v) = args.max_fee {
        p.max_fee_sat = v;
    }
    if let Some(v) = args.threads {
        p.threads = v;
    }
    if let Some(r) = &args.prefer {
        p.prefer = Some(
            r.parse::<Rail>()
                .map_err(|e| anyhow::anyhow!("--prefer: {e}"))?,
        );
    }
    if let Some(list) = &args.rails {
        p.rails = Some(
            list.split(',')
                .filter(|r| !r.trim().is_empty())
                .map(|r| r.parse::<Rail>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--rails: {e}"))?,
        );
    }
    if let Some(v) = args.max_pay_usd {
        p.max_pay_usd = v;
    }
    if !(p.solve_under_secs >= 0.0 && p.pow_max_secs >= 0.0) {
        bail!("--solve-under and --pow-max-secs must be non-negative numbers");
    }
    if turnpike_client::x402::usd_to_micro(p.max_pay_usd).is_none() {
        bail!("--max-pay-usd (max_pay_usd) must be a non-negative number of dollars");
    }
    if let Some(v) = args.budget_usd_per_day {
        cfg.budgets.per_day_usd = Some(v);
    }
    if cfg
        .budgets
        .per_day_usd
        .is_some_and(|v| turnpike_client::x402::usd_to_micro(v).is_none())
    {
        bail!("--budget-usd-per-day (per_day_usd) must be a non-negative number of dollars");
    }
    cfg.x402 = x402_payer(args, file.x402)?;
    // The wallet.
    let mut wallet = file.wallet.unwrap_or_default();
    if let Some(k) = &args.wallet {
        wallet.insert("kind".into(), toml::Value::String(k.clone()));
    }
    if let Some(b) = wallet.remove("backend") {
        wallet.insert("kind".into(), b);
    }
    if let Some(u) = &args.wallet_url {
        wallet.insert("url".into(), toml::Value::String(u.clone()));
    }
    if let Some(c) = &args.wallet_tls_cert {
        wallet.insert(
            "tls_cert_path".into(),
            toml::Value::String(c.display().to_string()),
        );
    }
    let kind = wallet
        .get("kind")
        .and_then(|k| k.as_str())
        .map(str::to_string);
    if let Some(kind) = &kind {
        let (inline, path) = match kind.as_str() {
            "lnd" => ("macaroon_hex", "macaroon_path"),
            "cln" => ("rune", "rune_path"),
            "phoenixd" => ("password", "password_path"),
            "lnbits" => ("api_key", "api_key_path"),
            "nwc" => ("uri", "uri_path"),
            other => bail!("wallet kind {other:?}: expected lnd, cln, phoenixd, lnbits or nwc"),
        };
        if let Some(var) = &args.wallet_secret_env {
            let v =
                read_secret(&Some(var.clone()), &None, "--wallet-secret-env")?.unwrap_or_default();
            wallet.insert(inline.into(), toml::Value::String(v));
        }
        if let Some(f) = &args.wallet_secret_file {
            wallet.insert(path.into(), toml::Value::String(f.display().to_string()));
        }
        // `<secret>_env` keys, as the gateway's [lightning] takes them.
        for key in [
            inline,
            "macaroon_env",
            "rune_env",
            "password_env",
            "api_key_env",
        ] {
            let env_key = if key.ends_with("_env") {
                key.to_string()
            } else {
                format!("{key}_env")
            };
            if let Some(var) = wallet
                .remove(&env_key)
                .and_then(|v| v.as_str().map(str::to_string))
            {
                let v = std::env::var(&var).with_context(|| {
                    format!("wallet {env_key}: environment variable {var} is not set")
                })?;
                wallet.insert(inline.into(), toml::Value::String(v.trim().to_string()));
            }
        }
        let json = serde_json::to_value(&wallet).context("wallet settings")?;
        let backend: turnpike_lightning::BackendConfig =
            serde_json::from_value(json).context("wallet settings")?;
        cfg.wallet =
            Some(turnpike_lightning::connect_wallet(&backend).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    // OAuth.
    let mut oauth = file.oauth;
    if let Some(id) = &args.oauth_client_id {
        oauth.get_or_insert_with(FileOAuth::default).client_id = id.clone();
    }
    if let Some(o) = oauth.as_mut() {
        if args.oauth_client_secret_env.is_some() || args.oauth_client_secret_file.is_some() {
            o.client_secret = read_secret(
                &args.oauth_client_secret_env,
                &args.oauth_client_secret_file,
                "oauth client secret",
            )?;
        }
        if let Some(k) = &args.oauth_private_key {
            o.private_key_path = Some(k.clone());
        }
        if let Some(k) = &args.oauth_key_id {
            o.key_id = Some(k.clone());
        }
        if let Some(s) = &args.oauth_scope {
            o.scope = Some(s.clone());
        }
        if args.oauth_browser {
            o.browser = true;
        }
        if let Some(p) = args.oauth_redirect_port {
            o.redirect_port = p;
        }
    }
    if let Some(o) = oauth {
        if o.client_id.is_empty() {
            bail!("oauth: client_id is required");
        }
        let secret = match (
            o.client_secret,
            read_secret(
                &o.client_secret_env,
                &o.client_secret_path,
                "oauth client secret",
            )?,
        ) {
            (Some(s), None) | (None, Some(s)) => Some(s),
            (None, None) => None,
            (Some(_), Some(_)) => bail!("oauth: give the client secret one way only"),
        };
        let pem = match &o.private_key_path {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("oauth private key {}", p.display()))?,
            ),
            None => None,
        };
        if secret.is_none() && pem.is_none() && !o.browser {
            bail!("oauth: a client secret (--oauth-client-secret-env/-file), a private key (--oauth-private-key) or --oauth-browser is needed");
        }
        cfg.oauth = Some(OAuthClientConfig {
            client_id: o.client_id,
            client_secret: secret,
            private_key_pem: pem,
            key_id: o.key_id,
            scope: o.scope,
            secret_in_body: o.secret_in_body,
            token_endpoint: o.token_endpoint,
            browser: o.browser,
            redirect_port: o.redirect_port,
            on_authorize_url: None,
        });
    }
    cfg.agent = agent_signing(args)?;
    Ok(cfg)
}

/// The `mcpServers` block: this binary, `connect`, the URL and the flags given (secrets only
/// ever as variable names or file paths).
fn print_config(args: &ConnectArgs, url: &str) -> anyhow::Result<String> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "turnpike".into());
    let mut a: Vec<String> = vec!["connect".into(), url.into()];
    let mut skip_next = false;
    let raw: Vec<String> = std::env::args().collect();
    // Pass every flag given after `connect` except the ones that only make sense here.
    let start = raw
        .iter()
        .position(|x| x == "connect")
        .map(|i| i + 1)
        .unwrap_or(raw.len());
    for x in &raw[start..] {
        if skip_next {
            skip_next = false;
            continue;
        }
        if x == url || x == "--print-config" {
            continue;
        }
        if x == "--name" {
            skip_next = true;
            continue;
        }
        if x.starts_with("--name=") {
            continue;
        }
        a.push(x.clone());
    }
    let name = args.name.clone().unwrap_or_else(|| {
        url.parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_string))
            .unwrap_or_else(|| "turnpike".into())
    });
    let mut server = serde_json::json!({"command": exe, "args": a});
    let mut env = serde_json::Map::new();
    for var in [
        &args.wallet_secret_env,
        &args.oauth_client_secret_env,
        &args.x402_key_env,
    ]
    .into_iter()
    .flatten()
    {
        env.insert(
            var.clone(),
            serde_json::Value::from(format!("<value of {var}>")),
        );
    }
    if !env.is_empty() {
        server["env"] = serde_json::Value::Object(env);
    }
    let block = serde_json::json!({"mcpServers": {name: server}});
    Ok(serde_json::to_string_pretty(&block)?)
}
