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
    for cmd in ["serve", "check", "solve", "demo"] {
        assert!(out.contains(cmd), "top-level help lists {cmd}: {out}");
    }
    assert!(out.contains("Examples:"));
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
        ("check", &["--config"][..]),
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
        out.contains("longRunningOperation pow 2000000 (~100 ms)"),
        "{out}"
    );
    assert!(out.contains("other tools pow 200000 (~10 ms)"), "{out}");
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
        offer: Offer::Pow { effort },
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
    Credential::Pow(turnpike_core::credential::parse_pow_params(params).unwrap())
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
    let solution = turnpike_core::credential::parse_nonce_list(pow["solution"].as_str().unwrap())
        .expect("decimal nonces");
    let cred = Credential::Pow(turnpike_core::PowCredential {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("turnpike exited early: {status}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nothing listens on {addr}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
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

#[test]
fn demo_serves_a_gated_fixture_and_prints_working_steps() {
    let d = scratch("demo");
    let port = free_port();
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            &gw.to_string(),
            "--effort",
            "20000",
            "--data-dir",
            d.to_str().unwrap(),
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(gw, &mut child);
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
    let port = free_port();
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = scratch("demo-steps");
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            &gw.to_string(),
            "--data-dir",
            d.to_str().unwrap(),
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(gw, &mut child);
    // Read up to the last line of the steps (printed once the gateway listens), then stop.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    while !out.contains("Ctrl-C stops the demo") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            break;
        }
        out.push_str(&line);
    }
    assert!(interrupt(child).success());
    let url = format!("http://{gw}/mcp");
    assert!(out.contains(&format!("curl -s {url}")), "{out}");
    assert!(
        out.contains("solve)"),
        "the solve step pipes into turnpike solve: {out}"
    );
    assert!(out.contains("-H \"Authorization: $AUTH\""), "{out}");
    assert!(
        out.contains(&format!("\"url\": \"{url}\"")),
        "MCP client config: {out}"
    );
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
    let port = free_port();
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--log",
            "warn",
            "serve",
            "--listen",
            &gw.to_string(),
            "--upstream",
            &format!("http://{upstream}/mcp"),
            "--pow-effort",
            "20000",
            "--challenge-mode",
            "http",
            "--data-dir",
            d.to_str().unwrap(),
        ])
        .env_remove("RUST_LOG")
        .env_remove("TURNPIKE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(gw, &mut child);
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
