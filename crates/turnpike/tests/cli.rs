//! The `turnpike` binary, run as a user would: `--help`, `check`, `solve`, `serve` and `demo`.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use turnpike_core::{CallFacts, Credential, Offer, Rail, Verdict};
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

const BIN: &str = env!("CARGO_BIN_EXE_turnpike");

fn turnpike(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run turnpike")
}

fn turnpike_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run turnpike");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh scratch directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "turnpike-cli-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// --help

#[test]
fn help_works_for_every_command() {
    let top = turnpike(&["--help"]);
    assert!(top.status.success());
    let out = text(&top.stdout);
    // Every command is listed, and has an example line.
    for cmd in [
        "serve", "check", "solve", "demo", "token", "connect", "init",
    ] {
        assert!(out.contains(cmd), "top-level help lists {cmd}: {out}");
        assert!(
            out.contains(&format!("  turnpike {cmd} "))
                || out.contains(&format!("turnpike {cmd} -")),
            "top-level help shows {cmd} in use: {out}"
        );
    }
    assert!(out.contains("Examples"));
    for (cmd, flags) in [
        (
            "serve",
            &[
                "--config",
                "--listen",
                "--upstream",
                "--upstream-cmd",
                "--pow-effort",
                "--challenge-mode",
                "--data-dir",
            ][..],
        ),
        ("check", &["--config", "--measure-hashrate"][..]),
        ("connect", &["-c, --config"][..]),
        (
            "solve",
            &["--meta", "--threads", "--progress", "--max-seconds"][..],
        ),
        ("demo", &["--listen", "--effort"][..]),
    ] {
        let o = turnpike(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help failed");
        let h = text(&o.stdout);
        assert!(h.contains("Examples:"), "{cmd} --help has examples: {h}");
        for f in flags {
            assert!(h.contains(f), "{cmd} --help documents {f}: {h}");
        }
        // Global flags are accepted after the command too.
        assert!(
            h.contains("--log-format"),
            "{cmd} --help shows --log-format"
        );
    }
    // The solve example's requests carry the Accept header Streamable HTTP wants (else 406).
    let h = text(&turnpike(&["solve", "--help"]).stdout);
    assert!(
        h.contains("Accept: application/json, text/event-stream"),
        "{h}"
    );
    // Billing modes are spelled as the config file spells them.
    let h = text(&turnpike(&["token", "mint", "--help"]).stdout);
    assert!(h.contains("per_call, balance, time_pass"), "{h}");
    let v = turnpike(&["--version"]);
    assert!(v.status.success());
    assert!(text(&v.stdout).starts_with("turnpike "));
}

#[test]
fn a_bad_log_filter_is_refused() {
    let o = turnpike(&["--log", "[[[", "check", "--config", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--log"));
}

// ---------------------------------------------------------------------------------------------
// check

const GOOD: &str = r#"[server]
listen = "127.0.0.1:8402"

[upstream]
url = "http://127.0.0.1:3001/mcp"

[tools.default]
pow = 200000
[tools.echo]
free = true
[tools.longRunningOperation]
pow = 2000000
[methods."resources/read"]
pow = 100000
"#;

#[test]
fn check_accepts_a_good_config_and_summarises_the_policy() {
    let d = scratch("check-good");
    let f = write(&d, "good.toml", GOOD);
    let o = turnpike(&["check", "--config", f.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    assert!(out.contains("ok"), "{out}");
    assert!(out.contains("http://127.0.0.1:3001/mcp"), "{out}");
    assert!(out.contains("echo free"), "{out}");
    assert!(
        out.contains("longRunningOperation pow 2000000 (~250 ms)"),
        "{out}"
    );
    assert!(out.contains("other tools pow 200000 (~25 ms)"), "{out}");
    assert!(out.contains("resources/read pow 100000"), "{out}");
    let _ = std::fs::remove_dir_all(d);
}

const BAD: &str = r#"[server]
listen = "127.0.0.1:8402"
colour = "blue"
challenge_mode = "sometimes"

[upstream]
url = "ftp://example.com/mcp"

[tools.add]
pow = 0

[tools.echo]
free = true
pow = 5
"#;

#[test]
fn check_reports_every_problem_with_its_place_and_a_hint() {
    let d = scratch("check-bad");
    let f = write(&d, "bad.toml", BAD);
    let name = f.to_str().unwrap();
    let o = turnpike(&["check", "--config", name]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    for (place, what) in [
        ("3:1", "unknown key `colour`"),
        ("4:18", "unknown challenge_mode"),
        ("7:7", "scheme must be http or https"),
        ("10:7", "pow effort must be at least 1"),
        ("13:8", "both free and priced"),
    ] {
        let needle = format!("{name}:{place}: ");
        let line = err
            .lines()
            .find(|l| l.starts_with(&needle))
            .unwrap_or_else(|| panic!("no problem at {place} in:\n{err}"));
        assert!(line.contains(what), "{line}");
    }
    assert_eq!(
        err.matches("\n    hint: ").count(),
        5,
        "a hint for each:\n{err}"
    );
    assert!(
        err.contains("hint: use \"auto\", \"http\" or \"in-band\""),
        "{err}"
    );
    assert!(err.contains("5 problems found"), "{err}");
    assert!(o.stdout.is_empty(), "nothing on stdout for a bad file");

    // TOML syntax errors have places too.
    let f = write(&d, "syntax.toml", "[server\nlisten = 1\n");
    let o = turnpike(&["check", "-c", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("{}:1:", f.to_str().unwrap())),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");

    // A missing file is a problem, not a crash.
    let o = turnpike(&["check", "-c", d.join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("cannot read the file"));
    let _ = std::fs::remove_dir_all(d);
}

// ---------------------------------------------------------------------------------------------
// solve

struct Minted {
    rail: PowRail,
    call: CallFacts,
    offer: Offer,
    www: String,
    details: Value,
}

fn mint(effort: u64) -> Minted {
    let keys = KeyRing::from_secrets(vec![(7, [42u8; 32])]).unwrap();
    let rail = PowRail::new(PowConfig::default(), keys, Arc::new(MemorySpentSet::new()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let call = CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("add".into()),
        args_hash: [3; 32],
        caller: None,
        peer: None,
        now,
    };
    let token = rail.mint(&call, effort);
    let ch = rail.render(&token);
    Minted {
        rail,
        call,
        offer: turnpike_pow::offer(effort),
        www: ch.www_authenticate,
        details: ch.details,
    }
}

fn verify(m: &Minted, cred: &Credential) -> Verdict {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(m.rail.verify(&m.call, &m.offer, cred))
}

fn header_credential(stdout: &str) -> Credential {
    let line = stdout.trim_end_matches('\n');
    assert_eq!(
        line.lines().count(),
        1,
        "only the credential on stdout: {stdout:?}"
    );
    let (scheme, params) = turnpike_core::credential::split_scheme(line);
    assert_eq!(scheme, "PoW");
    Credential::from(turnpike_pow::credential::parse_pow_params(params).unwrap())
}

#[test]
fn solve_a_www_authenticate_value_and_the_rail_accepts_it() {
    let m = mint(20_000);
    let o = turnpike(&["solve", "--threads", "2", &m.www]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cred = header_credential(&text(&o.stdout));
    assert!(
        matches!(verify(&m, &cred), Verdict::Pass(_)),
        "the gateway's rail accepts the CLI's solution"
    );
    // And only once.
    assert!(matches!(verify(&m, &cred), Verdict::Stale(_)));
    // Not a terminal and no --progress: nothing drawn on stderr.
    assert!(!text(&o.stderr).contains("solving:"), "{}", text(&o.stderr));
}

#[test]
fn solve_reads_a_402_body_from_stdin() {
    let m = mint(20_000);
    let body = json!({"jsonrpc":"2.0","id":1,"error":{"code":-31402,"message":"pay",
        "data":{"challenges":[m.details.clone()],"refusals":[]}}})
    .to_string();
    let o = turnpike_stdin(&["solve", "-"], &body);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cred = header_credential(&text(&o.stdout));
    assert!(matches!(verify(&m, &cred), Verdict::Pass(_)));

    // No argument at all also reads stdin; a bare token works too.
    let m = mint(5_000);
    let token = m.details["challenge"].as_str().unwrap().to_string();
    let o = turnpike_stdin(&["solve"], &token);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(matches!(
        verify(&m, &header_credential(&text(&o.stdout))),
        Verdict::Pass(_)
    ));
}

#[test]
fn solve_meta_prints_the_meta_object_for_an_in_band_result() {
    let m = mint(20_000);
    let in_band = json!({"jsonrpc":"2.0","id":4,"result":{"isError":true,
        "content":[{"type":"text","text":"needs proof-of-work"}],
        "structuredContent":{"turnpike":{"challenges":[m.details.clone()],"refusals":[]}}}})
    .to_string();
    let o = turnpike_stdin(&["solve", "--meta", "--progress"], &in_band);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let meta: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    let pow = &meta["turnpike/pow"];
    assert_eq!(pow["challenge"], m.details["challenge"]);
    let solution = turnpike_pow::credential::parse_nonce_list(pow["solution"].as_str().unwrap())
        .expect("decimal nonces");
    let cred = Credential::from(turnpike_pow::PowCredential {
        challenge: pow["challenge"].as_str().unwrap().into(),
        solution,
    });
    assert!(matches!(verify(&m, &cred), Verdict::Pass(_)));
    // --progress reports on stderr even without a terminal.
    assert!(text(&o.stderr).contains("solved in"), "{}", text(&o.stderr));
}

#[test]
fn solve_gives_up_at_max_seconds() {
    let m = mint(1 << 50);
    let t = Instant::now();
    let o = turnpike(&["solve", "--max-seconds", "0.5", "--threads", "1", &m.www]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains("gave up"));
}

#[test]
fn solve_refuses_input_without_a_challenge() {
    let o = turnpike_stdin(&["solve"], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains("no proof-of-work challenge found"));
    let o = turnpike(&["solve", "PoW challenge=\"not-a-token\""]);
    assert_eq!(o.status.code(), Some(1));
}

// ---------------------------------------------------------------------------------------------
// serve and demo, end to end over loopback

/// The address in a "gateway listening" log line: `listen=127.0.0.1:N` (also as
/// `listen=Some(127.0.0.1:N)`).
fn listening_addr(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter(|l| l.contains("gateway listening"))
        .find_map(|l| {
            let v = l.split("listen=").nth(1)?.split_whitespace().next()?;
            let v = v.strip_prefix("Some(").unwrap_or(v).trim_end_matches(')');
            v.parse().ok()
        })
}

/// Runs `turnpike <args>` (its log, at info, in `dir/name.log`) until it logs the address it
/// listens on (the child binds the port itself: `--listen 127.0.0.1:0`); the error says why it did
/// not come up.
fn start_reporting(
    dir: &Path,
    name: &str,
    args: &[&str],
    stdout: Stdio,
) -> Result<(Child, SocketAddr), String> {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["--log", "info"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TURNPIKE_CONFIG")
        .env("NO_COLOR", "1")
        .stdout(stdout)
        .stderr(log)
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(addr) = listening_addr(&text) {
            return Ok((child, addr));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("turnpike exited early ({status}): {text}"));
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return Err(format!("no listening line in 30 s: {text}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 POST with `Connection: close`.
fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        head: head.to_string(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest.get(n + 2..).unwrap_or("");
    }
    out
}

/// Stops a child with SIGINT (so it shuts down gracefully) and waits for it.
fn interrupt(mut child: Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let t = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("turnpike did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn call(id: u64, tool: &str, args: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
        .to_string()
}

fn result_text(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result in {body}"))
        .to_string()
}

/// The pay-per-call round trip against a running gateway: free call, 402, solve with the
/// binary, retry, single use, and no credential reaching the upstream.
fn exercise_gateway(gw: SocketAddr) {
    let r = post(gw, &[], &call(1, "echo", json!({"text":"hi"})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(result_text(&r.body), "hi");

    let add = call(2, "add", json!({"a": 2, "b": 3}));
    let r = post(gw, &[], &add);
    assert_eq!(r.status, 402, "{}", r.body);
    assert!(r
        .head
        .to_ascii_lowercase()
        .contains("www-authenticate: pow "));

    let o = turnpike_stdin(&["solve"], &r.body);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let auth = text(&o.stdout).trim().to_string();

    let r = post(gw, &[("Authorization", &auth)], &add);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(result_text(&r.body), "5");

    let r = post(gw, &[("Authorization", &auth)], &add);
    assert_eq!(r.status, 402, "a credential works once: {}", r.body);
    assert!(r.body.contains("already used"), "{}", r.body);

    let r = post(
        gw,
        &[("Authorization", &auth), ("X-Probe", "yes")],
        &call(3, "whoami", json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: Value = serde_json::from_str(&result_text(&r.body)).unwrap();
    assert_eq!(seen["headers"]["x-probe"], json!(["yes"]));
    assert!(
        seen["headers"].get("authorization").is_none(),
        "the upstream never sees credentials: {seen}"
    );
}

/// Starts `turnpike demo --listen 127.0.0.1:0 <args>` and reads its steps (printed once the
/// gateway answers); the child, the gateway's address (from the steps) and the steps.
fn start_demo(args: &[&str]) -> (Child, SocketAddr, String) {
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    while !out.contains("Ctrl-C stops the demo") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("the demo exited ({status}) before printing its steps:\n{out}");
        }
        out.push_str(&line);
    }
    let gw: SocketAddr = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("gateway"))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|rest| rest.strip_suffix("/mcp"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no gateway address in the steps:\n{out}"));
    (child, gw, out)
}

#[test]
fn demo_serves_a_gated_fixture_and_prints_working_steps() {
    let d = scratch("demo");
    let (child, gw, _) = start_demo(&["--effort", "20000", "--data-dir", d.to_str().unwrap()]);
    assert_ne!(gw.port(), 0, "the steps name the port the gateway got");
    exercise_gateway(gw);
    let status = interrupt(child);
    assert!(status.success(), "demo exits cleanly on SIGINT: {status}");
    assert!(
        std::fs::read_dir(&d).unwrap().next().is_some(),
        "the gateway kept its keys in --data-dir"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn demo_prints_copy_pasteable_steps() {
    let d = scratch("demo-steps");
    let (child, gw, out) = start_demo(&["--data-dir", d.to_str().unwrap()]);
    assert!(interrupt(child).success());
    let url = format!("http://{gw}/mcp");
    assert!(out.contains(&format!("curl -s {url}")), "{out}");
    assert!(
        out.contains("solve)"),
        "the solve step pipes into turnpike solve: {out}"
    );
    assert!(out.contains("-H \"Authorization: $AUTH\""), "{out}");
    // The MCP host's configuration starts `turnpike connect <url>` (a host cannot answer the
    // gate's challenge itself); tests/e2e/test_demo_host_config.py runs it in real clients.
    let at = out.find("\"mcpServers\"").expect("an mcpServers block");
    let start = out[..at].rfind('{').unwrap();
    let block: Value = serde_json::Deserializer::from_str(&out[start..])
        .into_iter::<Value>()
        .next()
        .unwrap()
        .unwrap();
    let server = &block["mcpServers"]["turnpike-demo"];
    assert_eq!(server["args"], json!(["connect", url]), "{out}");
    let command = server["command"].as_str().unwrap();
    assert_eq!(
        Path::new(command).canonicalize().unwrap(),
        Path::new(BIN).canonicalize().unwrap()
    );
    assert!(out.contains("--print-config"), "{out}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn serve_gates_an_upstream_given_by_flags() {
    // The fixture, in this process, as the upstream.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(turnpike_fixture::serve_http(
            l,
            "/mcp",
            turnpike_fixture::HttpOptions::fast(),
            std::future::pending(),
        ));
        a
    });
    let d = scratch("serve");
    let logs = scratch("serve-logs");
    // Port 0: the gateway binds a port of its own and logs it.
    let (child, gw) = start_reporting(
        &logs,
        "serve",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://{upstream}/mcp"),
            "--pow-effort",
            "20000",
            "--challenge-mode",
            "http",
            "--data-dir",
            d.to_str().unwrap(),
        ],
        Stdio::null(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    // --pow-effort prices every tool, echo included.
    let r = post(gw, &[], &call(1, "echo", json!({"text":"x"})));
    assert_eq!(r.status, 402, "{}", r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"]["data"]["challenges"][0]["effort"], 20000);
    // --challenge-mode http: a mid-session header still gets a 402.
    let r = post(
        gw,
        &[("MCP-Protocol-Version", "2025-06-18")],
        &call(1, "echo", json!({"text":"x"})),
    );
    assert_eq!(r.status, 402, "{}", r.body);
    let o = turnpike_stdin(&["solve"], &r.body);
    let auth = text(&o.stdout).trim().to_string();
    let r = post(
        gw,
        &[
            ("Authorization", &auth),
            ("MCP-Protocol-Version", "2025-06-18"),
        ],
        &call(1, "echo", json!({"text":"x"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(result_text(&r.body), "x");
    assert!(interrupt(child).success());
    drop(rt);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn serve_refuses_a_bad_configuration_with_its_problems() {
    let d = scratch("serve-bad");
    let f = write(&d, "bad.toml", BAD);
    let o = turnpike(&["serve", "--config", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains(":3:1: unknown key `colour`"));
    // No file and no upstream flag: told what is missing.
    let o = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:1"])
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no upstream"),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn init_with_l402_writes_a_file_that_checks_and_serves() {
    let d = scratch("init-l402");
    let f = d.join("turnpike.toml");
    let o = turnpike(&[
        "init",
        "--non-interactive",
        "--upstream",
        "http://127.0.0.1:9/mcp",
        "--rails",
        "pow,l402",
        "--listen",
        "127.0.0.1:0",
        "--no-admin",
        "--output",
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("dev backend"),
        "{}",
        text(&o.stderr)
    );
    let written = std::fs::read_to_string(&f).unwrap();
    assert!(written.contains("backend = \"dev\""), "{written}");
    assert!(written.contains("(~25 ms on one"), "{written}");
    let o = Command::new(BIN)
        .args(["check", "--config", f.to_str().unwrap()])
        .current_dir(&d)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("l402 10 sat per call or pow 200000 (~25 ms)"));
    // What check passed, serve runs: it comes up and listens.
    let logs = scratch("init-l402-logs");
    // Its keys go to the test's own directory, not to a turnpike-data beside the test binary.
    let data = d.join("turnpike-data");
    let (child, _addr) = start_reporting(
        &logs,
        "serve",
        &[
            "serve",
            "--config",
            f.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Stdio::null(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(interrupt(child).success());
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn check_refuses_a_config_whose_files_are_missing_at_their_place() {
    let d = scratch("check-files");
    let f = d.join("lnd.toml");
    let o = turnpike(&[
        "init",
        "--non-interactive",
        "--upstream",
        "http://127.0.0.1:9/mcp",
        "--rails",
        "l402",
        "--lightning",
        "lnd",
        "--no-admin",
        "--output",
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("placeholders"),
        "{}",
        text(&o.stderr)
    );
    let src = std::fs::read_to_string(&f).unwrap();
    let line = src
        .lines()
        .position(|l| l.starts_with("macaroon_path"))
        .unwrap()
        + 1;
    let o = turnpike(&["check", "--config", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}:{line}:17: lightning.macaroon_path: /var/lib/lnd/invoice.macaroon does not exist",
            f.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: the gateway reads it when it starts"),
        "{err}"
    );
    // Pointed at a readable file, the same configuration passes.
    let mac = write(&d, "invoice.macaroon", "0201");
    let fixed = write(
        &d,
        "fixed.toml",
        &src.replace("/var/lib/lnd/invoice.macaroon", mac.to_str().unwrap()),
    );
    let o = turnpike(&["check", "--config", fixed.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn serve_refuses_a_config_whose_files_are_missing_as_check_does() {
    let d = scratch("serve-files");
    let f = d.join("lnd.toml");
    let o = turnpike(&[
        "init",
        "--non-interactive",
        "--upstream",
        "http://127.0.0.1:9/mcp",
        "--rails",
        "l402",
        "--lightning",
        "lnd",
        "--listen",
        "127.0.0.1:0",
        "--no-admin",
        "--output",
        f.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let checked = turnpike(&["check", "--config", f.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(1));
    // serve refuses the same file before it binds or logs anything, with check's very words
    // (file:line:col, the problem, the hint, the count).
    let served = Command::new(BIN)
        .args(["serve", "--config", f.to_str().unwrap()])
        .args(["--data-dir", d.join("data").to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(served.status.code(), Some(1), "{}", text(&served.stderr));
    let err = text(&served.stderr);
    assert_eq!(err, text(&checked.stderr));
    assert!(
        err.contains("lightning.macaroon_path: /var/lib/lnd/invoice.macaroon does not exist"),
        "{err}"
    );
    assert!(!err.contains("starting the gateway"), "{err}");
    assert!(
        !d.join("data").exists(),
        "serve went on to create its data directory"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn check_measures_the_hash_rate() {
    let o = turnpike(&["check", "--measure-hashrate"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("hash rate here: "), "{out}");
    assert!(out.contains("reference_hashrate: 8.00 MH/s"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// connect as a verified agent

/// Serves `body` as a key directory on 127.0.0.1 (a thread answering every connection with
/// it); counts the requests.
fn serve_directory(body: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/http-message-signatures-directory+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, hits)
}

/// Runs `turnpike connect … --listen 127.0.0.1:0` until it prints the address it forwards from.
fn start_forwarder(dir: &Path, name: &str, args: &[&str]) -> (Child, SocketAddr) {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .arg("connect")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let addr = text.lines().find_map(|l| {
            l.split("forwarding http://")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        if let Some(a) = addr {
            return (child, a);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("turnpike connect exited early ({status}): {text}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no forwarding line: {text}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `turnpike connect --agent-key FILE --print-agent-directory` creates the key (0600) and prints
/// its directory; served on loopback and listed in the gateway's `[agent]`, `turnpike connect
/// --agent-key … --agent-directory …` signs every call, and a tool priced proof-of-work or agent
/// passes without a puzzle (the connect here may not solve one: its CPU-time cap is tiny).
#[test]
fn connect_signs_as_a_verified_agent() {
    let d = scratch("agent");
    let key = d.join("agent.key");
    let o = turnpike(&[
        "connect",
        "--agent-key",
        key.to_str().unwrap(),
        "--print-agent-directory",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let directory: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(directory["keys"][0]["crv"], "Ed25519");
    assert!(directory["keys"][0].get("d").is_none());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Printing again reads the same key.
    let again = turnpike(&[
        "connect",
        "--agent-key",
        key.to_str().unwrap(),
        "--print-agent-directory",
    ]);
    assert_eq!(
        serde_json::from_slice::<Value>(&again.stdout).unwrap(),
        directory
    );

    let (dir_addr, fetches) = serve_directory(directory.to_string());
    let dir_url = format!("http://{dir_addr}/.well-known/http-message-signatures-directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(turnpike_fixture::serve_http(
            l,
            "/mcp",
            turnpike_fixture::HttpOptions::fast(),
            std::future::pending(),
        ));
        a
    });
    let cfg = write(
        &d,
        "gw.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
path = "/mcp"
data_dir = "{data}"
challenge_mode = "http"

[upstream]
url = "http://{upstream}/mcp"

[agent]
directories = ["{dir_url}"]

[tools.add]
pow = 2000000000
agent = true
"#,
            data = d.join("data").display()
        ),
    );
    let (gw_child, gw) = start_reporting(
        &d,
        "gw",
        &["serve", "-c", cfg.to_str().unwrap()],
        Stdio::null(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let remote = format!("http://{gw}/mcp");
    let state = d.join("state");
    let common = [
        remote.as_str(),
        "--state-dir",
        state.to_str().unwrap(),
        "--pow-max-secs",
        "0.001",
        "--solve-under",
        "0",
    ];
    let mut args: Vec<&str> = common.to_vec();
    args.extend([
        "--agent-key",
        key.to_str().unwrap(),
        "--agent-directory",
        &dir_url,
    ]);
    let (fwd, at) = start_forwarder(&d, "connect", &args);
    for i in 0..2 {
        let r = post(at, &[], &call(i, "add", json!({"a": 2, "b": i})));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(result_text(&r.body), (2 + i).to_string());
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    let _ = interrupt(fwd);
    // Without the key the same forwarder cannot get through: the puzzle is over its cap.
    let (plain, at) = start_forwarder(&d, "plain", &common);
    let r = post(at, &[], &call(9, "add", json!({"a": 1, "b": 1})));
    assert_ne!(r.status, 200, "{}", r.body);
    let _ = interrupt(plain);
    assert!(interrupt(gw_child).success());
    drop(rt);
    let _ = std::fs::remove_dir_all(d);
}

// ---------------------------------------------------------------------------------------------
// connect pays x402

/// The x402 settings are checked before anything is bridged: a key file others can read, a key
/// without an asset, an asset without its network, a token domain's name without its version
/// (MPP evm), an unknown rail, a negative dollar amount are each refused with what to fix; `connect.toml`'s `[x402]` and `--print-config` carry the
/// key's variable, never the key.
#[test]
fn connect_checks_its_x402_settings() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("x402");
    let key = write(&d, "x402.key", &"11".repeat(32));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let state = d.join("state");
    let state_s = state.display().to_string();
    let key_s = key.display().to_string();
    let asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
    let run = |extra: &[&str]| {
        let mut a = vec![
            "connect",
            "http://127.0.0.1:9/mcp",
            "--state-dir",
            state_s.as_str(),
        ];
        a.extend_from_slice(extra);
        let out = turnpike_stdin(&a, "");
        (out.status.success(), text(&out.stderr))
    };
    let with_asset = [
        "--x402-key",
        key_s.as_str(),
        "--x402-network",
        "eip155:8453",
        "--x402-asset",
        asset,
    ];
    let (ok, err) = run(&with_asset);
    assert!(!ok && err.contains("readable by other users"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, err) = run(&with_asset);
    assert!(ok, "{err}");
    assert!(
        !err.contains(&"11".repeat(32)),
        "the key is never shown: {err}"
    );
    // MPP's evm method: the token's EIP-712 domain, name and version together.
    let mut half = with_asset.to_vec();
    half.extend(["--x402-asset-name", "USD Coin"]);
    let (ok, err) = run(&half);
    assert!(!ok && err.contains("go together"), "{err}");
    let mut whole = half.clone();
    whole.extend(["--x402-asset-version", "2", "--rails", "mpp-evm,x402,pow"]);
    let (ok, err) = run(&whole);
    assert!(ok, "{err}");
    let (ok, err) = run(&["--x402-asset-name", "USD Coin", "--x402-asset-version", "2"]);
    assert!(!ok && err.contains("which is missing"), "{err}");
    let (ok, err) = run(&["--x402-key", &key_s]);
    assert!(!ok && err.contains("no asset to pay with"), "{err}");
    let (ok, err) = run(&["--x402-key", &key_s, "--x402-asset", asset]);
    assert!(
        !ok && err.contains("--x402-asset needs --x402-network"),
        "{err}"
    );
    let (ok, err) = run(&["--rails", "x402,card"]);
    assert!(
        !ok && err.contains("--rails") && err.contains("\"card\""),
        "{err}"
    );
    let (ok, err) = run(&["--max-pay-usd=-1"]);
    assert!(!ok && err.contains("--max-pay-usd"), "{err}");
    // connect.toml: the key from a variable, the asset with its decimals.
    let conf = write(
        &d,
        "connect.toml",
        &format!(
            "[x402]\nkey_env = \"TURNPIKE_TEST_X402_KEY\"\nassets = [{{ network = \"eip155:8453\", \
             asset = \"{asset}\", decimals = 6, name = \"USD Coin\", version = \"2\" }}]\n\
             [budget]\nper_day_usd = 2.5\n[policy]\n\
             max_pay_usd = 0.1\nrails = [\"x402\", \"mpp-evm\", \"pow\"]\n"
        ),
    );
    let conf_s = conf.display().to_string();
    let out = Command::new(BIN)
        .args(["connect", "http://127.0.0.1:9/mcp", "--state-dir", &state_s])
        .args(["--config", &conf_s])
        .env(
            "TURNPIKE_TEST_X402_KEY",
            "0x".to_string() + &"22".repeat(32),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = turnpike(&[
        "connect",
        "http://127.0.0.1:9/mcp",
        "--x402-key-env",
        "X402_KEY",
        "--x402-network",
        "8453",
        "--x402-asset",
        asset,
        "--print-config",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let server = &v["mcpServers"]["127.0.0.1"];
    assert_eq!(server["env"]["X402_KEY"], "<value of X402_KEY>", "{v}");
}
