//! `turnpike-loadgen`: drives MCP `tools/call` requests at one URL over keep-alive connections
//! and reports throughput and latency.
//!
//! Straight at an upstream, every call is the same POST. Through the gateway (`--pow`), every
//! call carries a fresh, solved proof-of-work credential: before the timed phase the generator
//! asks for one challenge per call it will make (the gateway answers 402 with a challenge bound
//! to exactly that call), solves them all, and then spends each credential once, so the
//! gateway verifies a real credential (tag, scope, hashes, spent-set insert) on every call.
//!
//! With OAuth (`--jwt`), every call carries an access token signed with the key of a loopback
//! issuer (`--serve-issuer`, in another process of this program): the same token on every call
//! (the gateway's verified-token cache), or a fresh one per call (`--jwt-fresh`: the signature
//! checked on every call), optionally DPoP-bound with a fresh proof per call (`--dpop`). Tokens
//! and proofs are signed before the timed phase (see `jwt.rs`).
//!
//! `--serve-proxy URL` runs the load run's floor instead: a bare reverse proxy built from the
//! gateway's own listener and upstream client without the gate (see `proxy.rs`).

mod jwt;
mod proxy;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use turnpike_pow::puzzle::ChallengeToken;

use crate::jwt::{Auth, JwtAlg, Minter};

/// mimalloc, as in the gateway: the floor (`--serve-proxy`) allocates as the gateway does, so the
/// difference between the two is the gate's own work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `DPoP` request header (RFC 9449).
const DPOP: HeaderName = HeaderName::from_static("dpop");
/// MCP's protocol version header.
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Load generator for MCP tools/call over Streamable HTTP (one POST, one JSON reply).
#[derive(Debug, Parser)]
#[command(
    name = "turnpike-loadgen",
    version,
    after_help = "Examples:\n  # straight at the fixture (turnpike-fixture --listen 127.0.0.1:3001 --stateless --json)\n  turnpike-loadgen --url http://127.0.0.1:3001/mcp -c 32 -n 100000\n  # through the gateway, a fresh proof-of-work credential on every call\n  turnpike-loadgen --url http://127.0.0.1:8402/mcp -c 32 -n 100000 --pow\n  # a loopback issuer (prints its URL), then a fresh ES256 access token on every call\n  turnpike-loadgen --serve-issuer /tmp/issuer.json &\n  turnpike-loadgen --url http://127.0.0.1:8402/mcp -c 32 -n 100000 --jwt /tmp/issuer.json --jwt-fresh\n  # the floor: a bare proxy to the fixture (prints its URL), then the same load through it\n  turnpike-loadgen --serve-proxy http://127.0.0.1:3001/mcp &\n  # for ten seconds, machine-readable\n  turnpike-loadgen --url http://127.0.0.1:3001/mcp -d 10 --json"
)]
struct Args {
    /// The MCP endpoint to call.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present_any = ["serve_issuer", "serve_proxy"]
    )]
    url: Option<Uri>,
    /// Run a loopback OAuth issuer instead of a load: make an ES256 and an Ed25519 key, write
    /// them with the issuer's URL to FILE (mode 0600; it must not exist), serve the metadata
    /// and the JWKS on 127.0.0.1 (port 0, logged) until stopped.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["url", "pow", "jwt", "serve_proxy"])]
    serve_issuer: Option<PathBuf>,
    /// Run a bare reverse proxy to the MCP endpoint UPSTREAM instead of a load: the gateway's
    /// listener (its accept loop and HTTP server, default `[server]` rules) and its upstream
    /// client with no gate between them, on 127.0.0.1 (port 0, logged) until stopped. The load
    /// run's floor: what proxying alone costs.
    #[arg(long, value_name = "UPSTREAM", conflicts_with_all = ["url", "pow", "jwt"])]
    serve_proxy: Option<String>,
    /// Present an access token on every call, signed with the key of the issuer whose FILE
    /// `--serve-issuer` wrote; its audience is --url. The same token on every call unless
    /// --jwt-fresh.
    #[arg(long, value_name = "FILE", conflicts_with = "pow")]
    jwt: Option<PathBuf>,
    /// With --jwt: the tokens' signature algorithm.
    #[arg(long, value_enum, default_value = "ES256", requires = "jwt")]
    jwt_alg: JwtAlg,
    /// With --jwt: a fresh token on every call (all signed before the timed phase).
    #[arg(long, requires = "jwt")]
    jwt_fresh: bool,
    /// With --jwt: DPoP-bound tokens (`cnf.jkt`), presented with a fresh DPoP proof on every
    /// call (all signed before the timed phase, so the run must end within the gateway's
    /// `dpop_iat_window_secs` of that, 300 s by default).
    #[arg(long, requires = "jwt")]
    dpop: bool,
    /// With --jwt: the tokens' `scope`.
    #[arg(long, default_value = "mcp:tools", requires = "jwt")]
    scope: String,
    /// Concurrent keep-alive connections (one request in flight on each).
    #[arg(short = 'c', long, default_value_t = 32, value_name = "N")]
    connections: usize,
    /// Timed calls to make (the default when neither -n nor -d is given is 50000).
    #[arg(short = 'n', long, value_name = "M", conflicts_with = "duration")]
    requests: Option<u64>,
    /// Run the timed phase for this many seconds instead of a number of calls.
    #[arg(short = 'd', long, value_name = "SECS")]
    duration: Option<f64>,
    /// Untimed calls made first, to open connections and warm caches.
    #[arg(long, default_value_t = 2000, value_name = "M")]
    warmup: u64,
    /// Present a fresh proof-of-work credential on every call (for a gated endpoint).
    #[arg(long)]
    pow: bool,
    /// With --pow, --jwt-fresh or --dpop and --duration: how many credentials to prepare
    /// (the run stops early if they run out).
    #[arg(long, value_name = "M", default_value_t = 200_000)]
    credentials: u64,
    /// Send `MCP-Protocol-Version: V` on every call, as a client of that revision does after
    /// its first exchange (none by default: a server then assumes 2025-03-26, and a gateway in
    /// front of a one-era upstream reads the body to tell the call's era).
    #[arg(long, value_name = "V")]
    protocol_version: Option<String>,
    /// The tool to call.
    #[arg(long, default_value = "echo")]
    tool: String,
    /// The tool's arguments, as a JSON object.
    #[arg(long, default_value = r#"{"text":"hello"}"#, value_name = "JSON")]
    arguments: String,
    /// Worker threads of the generator's runtime (it shares the machine with what it measures).
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: usize,
    /// A process to account CPU time for over the timed phase, as NAME=PID (Linux, repeatable):
    /// the report gives its CPU microseconds per call.
    #[arg(long = "watch", value_name = "NAME=PID", value_parser = parse_watch)]
    watch: Vec<(String, u32)>,
    /// A label printed with the results.
    #[arg(long, default_value = "run")]
    label: String,
    /// Print the results as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 || args.threads == 0 {
        bail!("--connections and --threads must be at least 1");
    }
    if let Some(upstream) = &args.serve_proxy {
        // The gateway's runtime: a worker per core.
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(proxy::serve_proxy(upstream));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Some(file) = &args.serve_issuer {
        return rt.block_on(jwt::serve_issuer(file));
    }
    rt.block_on(run(args))
}

/// How each call authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing (straight at an upstream, or a free tool).
    None,
    /// A fresh proof-of-work credential.
    Pow,
    /// The same bearer token on every call.
    Jwt,
    /// A fresh bearer token on every call.
    JwtFresh,
    /// A DPoP-bound token with a fresh proof on every call (`fresh`: a fresh token too).
    Dpop { fresh: bool },
}

impl Mode {
    fn of(args: &Args) -> Mode {
        match (args.pow, &args.jwt, args.jwt_fresh, args.dpop) {
            (true, _, _, _) => Mode::Pow,
            (false, None, _, _) => Mode::None,
            (false, Some(_), fresh, true) => Mode::Dpop { fresh },
            (false, Some(_), true, false) => Mode::JwtFresh,
            (false, Some(_), false, false) => Mode::Jwt,
        }
    }

    /// The name in the JSON report.
    fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Pow => "pow",
            Mode::Jwt => "jwt",
            Mode::JwtFresh => "jwt-fresh",
            Mode::Dpop { fresh: false } => "dpop",
            Mode::Dpop { fresh: true } => "dpop-fresh",
        }
    }

    /// How the text report describes it.
    fn describe(self) -> &'static str {
        match self {
            Mode::None => "",
            Mode::Pow => ", a fresh PoW credential on each",
            Mode::Jwt => ", the same access token on each",
            Mode::JwtFresh => ", a fresh access token on each",
            Mode::Dpop { fresh: false } => {
                ", the same DPoP-bound access token and a fresh proof on each"
            }
            Mode::Dpop { fresh: true } => ", a fresh DPoP-bound access token and proof on each",
        }
    }

    /// Whether every call needs a credential of its own, prepared before the timed phase.
    fn per_call(self) -> bool {
        !matches!(self, Mode::None | Mode::Jwt)
    }
}

/// The credentials of a run.
enum Creds {
    /// One for each call, in order.
    Each(Vec<Auth>),
    /// The same for every call.
    Same(Auth),
}

impl Creds {
    fn get(&self, i: u64) -> Option<&Auth> {
        match self {
            Creds::Each(v) => v.get(usize::try_from(i).ok()?),
            Creds::Same(a) => Some(a),
        }
    }
}

/// What every call sends and expects.
struct Plan {
    client: HttpClient,
    uri: Uri,
    body: Bytes,
    /// `MCP-Protocol-Version` on every call, when given.
    version: Option<HeaderValue>,
}

impl Plan {
    fn request(&self, auth: Option<&Auth>) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut b = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(v) = &self.version {
            b = b.header(MCP_PROTOCOL_VERSION, v.clone());
        }
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a.authorization.clone());
            if let Some(p) = &a.dpop {
                b = b.header(DPOP, p.clone());
            }
        }
        Ok(b.body(Full::new(self.body.clone()))?)
    }

    /// Sends one call; returns the status, the `WWW-Authenticate` lines and the body.
    async fn send(
        &self,
        auth: Option<&Auth>,
    ) -> anyhow::Result<(StatusCode, Vec<HeaderValue>, Bytes)> {
        let resp = self.client.request(self.request(auth)?).await?;
        let status = resp.status();
        let www = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .cloned()
            .collect();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, www, body))
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let Some(url) = args.url.clone() else {
        bail!("--url is required");
    };
    let mode = Mode::of(&args);
    let arguments: serde_json::Value =
        serde_json::from_str(&args.arguments).context("--arguments must be a JSON object")?;
    if !arguments.is_object() {
        bail!("--arguments must be a JSON object");
    }
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": args.tool, "arguments": arguments}
    });
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    let plan = Arc::new(Plan {
        client,
        uri: url.clone(),
        body: Bytes::from(body.to_string()),
        version: args
            .protocol_version
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .context("--protocol-version")?,
    });

    // One probe call, to fail early and clearly.
    let (status, _, reply) = plan.send(None).await.context("probe call failed")?;
    if args.pow {
        if status != StatusCode::PAYMENT_REQUIRED {
            bail!(
                "--pow expects the endpoint to answer an unpaid call with 402, got {status}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    } else if args.jwt.is_some() {
        if status != StatusCode::UNAUTHORIZED && status != StatusCode::PAYMENT_REQUIRED {
            bail!(
                "--jwt expects the endpoint to answer a call without a token with 401 (or 402), \
                 got {status}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    } else if status != StatusCode::OK || !is_success(&reply) {
        bail!(
            "the probe call did not succeed ({status}): {}",
            String::from_utf8_lossy(&reply)
        );
    }

    let timed = match (args.requests, args.duration) {
        (_, Some(d)) if d > 0.0 && d.is_finite() => Stop::After(Duration::from_secs_f64(d)),
        (_, Some(_)) => bail!("--duration must be a positive number of seconds"),
        (Some(n), None) => Stop::Count(n),
        (None, None) => Stop::Count(50_000),
    };

    let wanted = args.warmup
        + match timed {
            Stop::Count(n) => n,
            Stop::After(_) => args.credentials,
        };
    let credentials = if let Some(file) = &args.jwt {
        let minter = Minter::new(
            file,
            args.jwt_alg,
            url.to_string(),
            args.scope.clone(),
            args.dpop,
        )?;
        let t = Instant::now();
        let creds = mint_all(minter, mode, wanted).await?;
        eprintln!(
            "[{}] signed the credentials ({}) in {:.2}s",
            args.label,
            mode.name(),
            t.elapsed().as_secs_f64()
        );
        Some(Arc::new(creds))
    } else if args.pow {
        let t = Instant::now();
        let challenges = collect_challenges(&plan, wanted, args.connections).await?;
        let collected = t.elapsed();
        let t = Instant::now();
        let creds = solve_all(challenges).await?;
        eprintln!(
            "[{}] prepared {} credentials: challenges in {:.2}s, solved in {:.2}s",
            args.label,
            creds.len(),
            collected.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        Some(Arc::new(Creds::Each(creds)))
    } else {
        None
    };

    let warm = run_phase(
        &plan,
        credentials.clone(),
        0,
        Stop::Count(args.warmup),
        args.connections,
    )
    .await;
    if warm.errors > 0 {
        bail!(
            "{} of {} warm-up calls failed; first: {}",
            warm.errors,
            args.warmup,
            warm.first_error.unwrap_or_default()
        );
    }
    let cpu_before = cpu_times(&args.watch);
    let result = run_phase(&plan, credentials, args.warmup, timed, args.connections).await;
    let cpu_after = cpu_times(&args.watch);
    let cpu: Vec<(String, Option<f64>)> = args
        .watch
        .iter()
        .zip(cpu_before.iter().zip(&cpu_after))
        .map(|((name, _), (b, a))| {
            let per_call = match (b, a) {
                (Some(b), Some(a)) if !result.latencies.is_empty() => {
                    Some(a.saturating_sub(*b) as f64 / 1000.0 / result.latencies.len() as f64)
                }
                _ => None,
            };
            (name.clone(), per_call)
        })
        .collect();
    report(&args, &url, mode, &result, &cpu);
    if result.errors > 0 {
        bail!(
            "{} calls failed; first: {}",
            result.errors,
            result.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

fn parse_watch(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {s:?}"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("{pid:?} is not a process id"))?;
    if name.is_empty() {
        return Err("the NAME in NAME=PID is empty".into());
    }
    Ok((name.to_string(), pid))
}

/// CPU time consumed so far by each watched process, in nanoseconds: the sum of the first
/// field of `/proc/PID/task/*/schedstat` (time on CPU of every thread). `None` where it cannot
/// be read (not Linux, process gone).
fn cpu_times(watch: &[(String, u32)]) -> Vec<Option<u64>> {
    watch
        .iter()
        .map(|(_, pid)| {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
            let mut total = 0u64;
            for t in tasks.flatten() {
                let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
                    continue;
                };
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            Some(total)
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Count(u64),
    After(Duration),
}

/// Whether a reply body is a JSON-RPC result that is not a tool error.
fn is_success(body: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => v
            .get("result")
            .is_some_and(|r| r.get("isError") != Some(&true.into())),
        Err(_) => false,
    }
}

/// Cheap check used on the hot path: a 200 whose body holds a result.
fn looks_ok(status: StatusCode, body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"result\"";
    status == StatusCode::OK && body.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// Finds the proof-of-work challenge token in a 402: the `WWW-Authenticate: PoW` line, or
/// else `error.data.challenges[rail = pow].challenge` in the body.
fn challenge_token(www: &[HeaderValue], body: &[u8]) -> Option<String> {
    for line in www {
        let Ok(s) = line.to_str() else { continue };
        let (scheme, params) = turnpike_core::credential::split_scheme(s);
        if scheme.eq_ignore_ascii_case("PoW") {
            let pairs = turnpike_core::credential::parse_auth_params(params)?;
            return pairs
                .into_iter()
                .find(|(k, _)| k == "challenge")
                .map(|(_, v)| v);
        }
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/data/challenges")?
        .as_array()?
        .iter()
        .find(|c| c.get("rail").and_then(|r| r.as_str()) == Some("pow"))?
        .get("challenge")?
        .as_str()
        .map(str::to_string)
}

async fn collect_challenges(
    plan: &Arc<Plan>,
    wanted: u64,
    connections: usize,
) -> anyhow::Result<Vec<String>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let plan = plan.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < wanted {
                let (status, www, body) = plan.send(None).await?;
                match challenge_token(&www, &body) {
                    Some(t) => got.push(t),
                    None => bail!(
                        "expected a proof-of-work challenge, got {status}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
            Ok::<_, anyhow::Error>(got)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("challenge collector panicked")??);
    }
    Ok(all)
}

/// Solves every challenge (on all cores, one challenge per thread at a time) and renders each
/// as an `Authorization` header value.
async fn solve_all(challenges: Vec<String>) -> anyhow::Result<Vec<Auth>> {
    tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = challenges.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = challenges
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|c| solve_one(c))
                            .collect::<anyhow::Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(challenges.len());
            for h in handles {
                match h.join() {
                    Ok(part) => out.extend(part?),
                    Err(_) => bail!("a solver thread panicked"),
                }
            }
            Ok(out)
        })
    })
    .await
    .context("solver task panicked")?
}

fn solve_one(challenge: &str) -> anyhow::Result<Auth> {
    let token = ChallengeToken::decode(challenge)
        .map_err(|e| anyhow::anyhow!("undecodable challenge: {e}"))?;
    let nonces = turnpike_client::solve(&token, 1, None)
        .map_err(|e| anyhow::anyhow!("solving failed: {e}"))?;
    let solution = nonces
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Ok(Auth {
        authorization: HeaderValue::try_from(format!(
            "PoW challenge=\"{challenge}\", solution=\"{solution}\""
        ))?,
        dpop: None,
    })
}

/// Signs what `mode` needs for `wanted` calls, on every core: one token for every call
/// ([`Mode::Jwt`]), a token per call, or a proof per call with one token or a token each.
async fn mint_all(minter: Minter, mode: Mode, wanted: u64) -> anyhow::Result<Creds> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    if !mode.per_call() {
        let token = minter.token(now)?;
        return Ok(Creds::Same(minter.auth(&token, now)?));
    }
    let wanted = usize::try_from(wanted).context("too many credentials")?;
    let fresh = matches!(mode, Mode::JwtFresh | Mode::Dpop { fresh: true });
    tokio::task::spawn_blocking(move || {
        let shared = if fresh {
            None
        } else {
            Some(minter.token(now)?)
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = wanted.div_ceil(threads).max(1);
        let minter = &minter;
        let shared = shared.as_deref();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..wanted)
                .step_by(chunk)
                .map(|start| {
                    let n = chunk.min(wanted - start);
                    s.spawn(move || {
                        (0..n)
                            .map(|_| match shared {
                                Some(t) => minter.auth(t, now),
                                None => minter.auth(&minter.token(now)?, now),
                            })
                            .collect::<anyhow::Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(wanted);
            for h in handles {
                match h.join() {
                    Ok(part) => out.extend(part?),
                    Err(_) => bail!("a signing thread panicked"),
                }
            }
            Ok(Creds::Each(out))
        })
    })
    .await
    .context("signing task panicked")?
}

/// What one phase measured.
#[derive(Debug, Default)]
struct PhaseResult {
    /// Latency of each successful call, in nanoseconds, sorted.
    latencies: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// Set when the credentials ran out before the time did.
    ran_out: bool,
}

async fn run_phase(
    plan: &Arc<Plan>,
    credentials: Option<Arc<Creds>>,
    first_credential: u64,
    stop: Stop,
    connections: usize,
) -> PhaseResult {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = match stop {
        Stop::After(d) => Some(start + d),
        Stop::Count(_) => None,
    };
    let limit = match stop {
        Stop::Count(n) => n,
        Stop::After(_) => u64::MAX,
    };
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let plan = plan.clone();
        let next = next.clone();
        let creds = credentials.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = PhaseResult::default();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                let auth = match &creds {
                    Some(c) => match c.get(first_credential + i) {
                        Some(h) => Some(h),
                        None => {
                            r.ran_out = true;
                            break;
                        }
                    },
                    None => None,
                };
                let t = Instant::now();
                let outcome = plan.send(auth).await;
                let took = t.elapsed();
                match outcome {
                    Ok((status, _, body)) if looks_ok(status, &body) => {
                        r.latencies
                            .push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
                    }
                    Ok((status, _, body)) => {
                        r.errors += 1;
                        if r.first_error.is_none() {
                            let text = String::from_utf8_lossy(&body);
                            r.first_error = Some(format!(
                                "{status}: {}",
                                text.chars().take(300).collect::<String>()
                            ));
                        }
                    }
                    Err(e) => {
                        r.errors += 1;
                        if r.first_error.is_none() {
                            r.first_error = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            r
        }));
    }
    let mut all = PhaseResult::default();
    for t in tasks {
        match t.await {
            Ok(r) => {
                all.latencies.extend(r.latencies);
                all.errors += r.errors;
                all.ran_out |= r.ran_out;
                if all.first_error.is_none() {
                    all.first_error = r.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error
                    .get_or_insert_with(|| format!("worker panicked: {e}"));
            }
        }
    }
    all.elapsed = start.elapsed();
    all.latencies.sort_unstable();
    all
}

/// The `q` quantile (0..=1) of sorted values, nearest-rank.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or(0)
}

fn report(args: &Args, url: &Uri, mode: Mode, r: &PhaseResult, cpu: &[(String, Option<f64>)]) {
    let n = r.latencies.len() as u64;
    let secs = r.elapsed.as_secs_f64();
    let rps = if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let us = |q: f64| quantile(&r.latencies, q) as f64 / 1000.0;
    let mean = if n > 0 {
        r.latencies.iter().sum::<u64>() as f64 / n as f64 / 1000.0
    } else {
        0.0
    };
    if args.json {
        let v = serde_json::json!({
            "label": args.label,
            "url": url.to_string(),
            "pow": args.pow,
            "auth": mode.name(),
            "connections": args.connections,
            "requests": n,
            "errors": r.errors,
            "seconds": secs,
            "rps": rps,
            "mean_us": mean,
            "p50_us": us(0.50),
            "p90_us": us(0.90),
            "p99_us": us(0.99),
            "max_us": us(1.0),
            "credentials_ran_out": r.ran_out,
            "cpu_us_per_call": cpu
                .iter()
                .map(|(n, v)| (n.clone(), serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>(),
        });
        println!("{v}");
    } else {
        println!(
            "{label}: {n} calls in {secs:.2}s over {c} connections{pow}\n  {rps:.0} requests/s   latency µs: mean {mean:.1}  p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  max {max:.1}   errors {e}{ran}",
            label = args.label,
            c = args.connections,
            pow = mode.describe(),
            p50 = us(0.50),
            p90 = us(0.90),
            p99 = us(0.99),
            max = us(1.0),
            e = r.errors,
            ran = if r.ran_out { "  (credentials ran out)" } else { "" },
        );
        for (name, v) in cpu {
            match v {
                Some(us) => println!("  {name}: {us:.1} µs of CPU per call"),
                None => println!("  {name}: CPU time not readable"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.5), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn finds_the_pow_challenge() {
        let www = [
            HeaderValue::from_static(r#"L402 macaroon="m", invoice="i""#),
            HeaderValue::from_static(r#"PoW challenge="AbC_-", algorithm="sha256", effort="1""#),
        ];
        assert_eq!(challenge_token(&www, b"").as_deref(), Some("AbC_-"));
        let body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-31402,"message":"m","data":{"challenges":[{"rail":"l402"},{"rail":"pow","challenge":"XyZ"}]}}}"#;
        assert_eq!(challenge_token(&[], body).as_deref(), Some("XyZ"));
        assert_eq!(challenge_token(&[], b"{}"), None);
    }

    #[test]
    fn watch_specs() {
        assert_eq!(parse_watch("gateway=42"), Ok(("gateway".into(), 42)));
        assert!(parse_watch("gateway").is_err());
        assert!(parse_watch("=42").is_err());
        assert!(parse_watch("g=x").is_err());
        let me = std::process::id();
        let t = cpu_times(&[("me".into(), me)]);
        if cfg!(target_os = "linux") {
            assert!(t[0].is_some_and(|ns| ns > 0), "own CPU time is readable");
        }
    }

    #[test]
    fn success_checks() {
        assert!(is_success(br#"{"result":{"content":[],"isError":false}}"#));
        assert!(!is_success(br#"{"result":{"isError":true}}"#));
        assert!(!is_success(br#"{"error":{}}"#));
        assert!(looks_ok(StatusCode::OK, br#"{"result":{}}"#));
        assert!(!looks_ok(StatusCode::PAYMENT_REQUIRED, br#"{"result":{}}"#));
    }
}
