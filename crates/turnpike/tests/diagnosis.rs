//! What `turnpike serve` tells its operator, read from its stderr as a pipe: an unreachable
//! upstream named once with its cause, a busy port refused in one line before any banner, and no
//! colour codes where no terminal reads them.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_turnpike");
/// Nothing listens on port 1 of loopback: connections are refused.
const DEAD_UPSTREAM: &str = "http://127.0.0.1:1/mcp";

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("turnpike-diagnosis-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn serve(args: &[&str], data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("TURNPIKE_CONFIG")
        .env_remove("TURNPIKE_LISTEN")
        .env_remove("TURNPIKE_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The child's stderr, line by line, as it comes.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line that satisfies `want`; returns it.
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {what}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let at = line
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name}= in {line}"));
    line[at + name.len() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
}

fn post(addr: SocketAddr, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let t = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

#[test]
fn an_unreachable_upstream_is_named_once_with_its_cause() {
    let dir = scratch("unreachable");
    let mut child = serve(
        &["--listen", "127.0.0.1:0", "--upstream", DEAD_UPSTREAM],
        &dir,
    )
    .spawn()
    .unwrap();
    let mut lines = Lines::of(&mut child);
    let listening = lines.until("gateway listening", |l| l.contains("gateway listening"));
    // The address is written plainly, not as Debug `Some(…)`.
    assert!(!listening.contains("Some("), "{listening}");
    let addr: SocketAddr = field(&listening, "listen").parse().unwrap();

    // The probe at start: a warning naming the URL and the cause; the gateway keeps running.
    let probe = lines.until("the probe's warning", |l| {
        l.contains("the upstream does not answer")
    });
    assert!(probe.contains("WARN"), "{probe}");
    assert!(
        probe.contains(&format!("upstream={DEAD_UPSTREAM}")),
        "{probe}"
    );
    assert!(probe.to_lowercase().contains("refused"), "{probe}");

    let reply = post(
        addr,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
    );
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert!(reply.contains("-31502"), "{reply}");
    // The call's own line comes after the upstream's failure.
    lines.until("the call's line", |l| {
        l.contains("turnpike::call") && l.contains("status=502")
    });
    let failures: Vec<&String> = lines
        .seen
        .iter()
        .filter(|l| l.contains("upstream request failed"))
        .collect();
    assert_eq!(
        failures.len(),
        1,
        "one line per failing request: {failures:#?}"
    );
    let f = failures[0];
    assert!(f.contains("WARN"), "{f}");
    assert!(f.contains(&format!("upstream={DEAD_UPSTREAM}")), "{f}");
    // The whole chain, not only "cannot connect".
    assert!(f.contains("cannot connect: tcp connect error: "), "{f}");
    assert!(f.to_lowercase().contains("connection refused"), "{f}");

    // stderr is a pipe here: no colour codes anywhere.
    stop(child);
    assert!(
        lines.seen.iter().all(|l| !l.contains('\x1b')),
        "ANSI codes in a pipe:\n{}",
        lines.seen.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_busy_port_is_one_line_and_exit_1_before_any_banner() {
    let dir = scratch("busy");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = serve(
        &["--listen", &addr.to_string(), "--upstream", DEAD_UPSTREAM],
        &dir,
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "turnpike: cannot listen on {addr}: address already in use — another turnpike or \
             another program holds it; choose another with --listen or [server] listen"
        )
    );
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}
