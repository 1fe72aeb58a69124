//! Connections against a real `turnpike serve` process (the built binary) on loopback, from
//! many source addresses (a Linux socket can bind any 127/8 address before connecting):
//!
//! - a silent-socket flood from one address under an open-file limit of 1,024: another address
//!   is served at once, the flood's sockets beyond the per-address cap are closed at once and
//!   the rest by the first-byte timer, and accepting never fails;
//! - many addresses together at the global cap: a new address is refused at once, then served
//!   when the first-byte timer has freed the slots;
//! - idle HTTP/2 connections (handshake done, or preface only) from several addresses: closed
//!   on the idle timer (GOAWAY first), others served meanwhile; the server's SETTINGS carry the
//!   stream limit, and a peer that never answers keep-alive pings is closed;
//! - the per-address cap: address A over it is refused at once, B unaffected, a slot A frees
//!   is A's again;
//! - the admin listener: a foreign Host or Origin gets 403 on /metrics, a silent connection is
//!   closed, `turnpike check` warns about a wildcard admin address;
//! - Host: two Host lines → 400; an absolute-form target's authority is the one checked, and a
//!   Host disagreeing with it → 400.
//!
//! Every wait polls with a deadline; every loop is bounded.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_turnpike");
const ADMIN_TOKEN: &str = "conns-test-admin-token-0123456789";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame (length 0, type 4, no flags, stream 0).
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A `turnpike serve` process; killed and its directory removed on drop.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Gateway {
    /// Starts the gateway with `server` lines added to `[server]`, an admin listener when
    /// `admin`, and its open-file limit set to `nofile` (soft and hard) when given. The
    /// upstream is never reached: every answer here comes from the gateway itself.
    fn start(name: &str, server: &str, admin: bool, nofile: Option<u64>) -> Gateway {
        let dir = std::env::temp_dir().join(format!(
            "turnpike-conns-{}-{name}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let admin_table = if admin {
            format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n")
        } else {
            String::new()
        };
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nwatch_config = false\n{server}\n\n[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\nera = \"2025\"\n\n[limits]\nenabled = false\n\n{admin_table}",
            dir.display()
        );
        let path = dir.join("turnpike.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(["--log-format", "json", "--log", "info", "serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start turnpike serve");
        let mut gw = Gateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = gw.log_lines();
            let listening = |msg: &str| {
                lines.iter().find_map(|l| {
                    (l["message"] == msg)
                        .then(|| l["listen"].as_str())
                        .flatten()
                        .and_then(|s| s.parse().ok())
                })
            };
            if let Some(a) = listening("gateway listening") {
                gw.addr = a;
                gw.admin = listening("admin listening (metrics, API, dashboard)");
                if gw.admin.is_some() || !admin {
                    return gw;
                }
            }
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("turnpike serve exited ({status}): {}", gw.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not start: {}",
                gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn count_log(&self, message: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l["message"] == message)
            .count()
    }
}

/// A connection from `src` to `to`.
async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((src, 0)))?;
    tokio::time::timeout(Duration::from_secs(10), s.connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))?
}

/// Reads (and throws away) until the peer closes; `Some(when)` if it did before `deadline`.
async fn closed_by(s: &mut TcpStream, deadline: tokio::time::Instant) -> Option<Instant> {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether `s` is still open: nothing read and no end of stream within `wait`.
async fn still_open(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(wait, s.read(&mut buf)).await.is_err()
}

/// One HTTP/1.1 exchange on `s` (which it closes): the status and the whole answer.
async fn exchange(mut s: TcpStream, request: &str) -> (u16, String) {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A POST to the endpoint that the gate answers itself (415: not JSON), past the Host check.
fn plain_post(addr: SocketAddr) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    )
}

/// `src` is served: a request from it gets the gate's own answer within `within`.
async fn served_from(src: Ipv4Addr, addr: SocketAddr, within: Duration) -> Duration {
    let t0 = Instant::now();
    let s = connect_from(src, addr).await.expect("connect");
    let (status, text) = exchange(s, &plain_post(addr)).await;
    let took = t0.elapsed();
    assert_eq!(status, 415, "{text}");
    assert!(took < within, "served from {src} in {took:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_flood_from_one_address_under_1024_open_files() {
    let gw = Gateway::start("silent", "first_byte_timeout_secs = 3", false, Some(1024));
    let lines = gw.log_lines();
    let limit = lines
        .iter()
        .find(|l| l["message"] == "open-file limit")
        .expect("the open-file limit is logged");
    assert_eq!(limit["soft"], 1024, "{limit}");
    assert_eq!(
        gw.count_log("max_connections lowered to fit the open-file limit"),
        1
    );
    let flood = Ipv4Addr::new(127, 0, 0, 2);
    let t0 = Instant::now();
    let mut socks = Vec::new();
    for _ in 0..1100 {
        match connect_from(flood, gw.addr).await {
            Ok(s) => socks.push(s),
            Err(e) => panic!("connect {}: {e}", socks.len()),
        }
    }
    let opened = t0.elapsed();
    // Another address is served at once, while the flood's sockets are open.
    served_from(Ipv4Addr::new(127, 0, 0, 3), gw.addr, Duration::from_secs(1)).await;
    // A start of an HTTP/2 preface that stops: the first-byte timer covers it too.
    let mut partial = connect_from(Ipv4Addr::new(127, 0, 0, 4), gw.addr)
        .await
        .unwrap();
    partial.write_all(&H2_PREFACE[..10]).await.unwrap();
    // Every flood socket is closed: beyond the per-address cap (128) at once, the others by the
    // first-byte timer (3 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let waits: Vec<_> = socks
        .into_iter()
        .map(|mut s| tokio::spawn(async move { closed_by(&mut s, deadline).await }))
        .collect();
    let mut early = 0;
    let mut timed = 0;
    for w in waits {
        let when = w.await.unwrap().expect("every silent socket is closed");
        if when.duration_since(t0) < Duration::from_millis(2500) {
            early += 1;
        } else {
            timed += 1;
        }
    }
    let partial_closed = closed_by(&mut partial, deadline).await;
    assert!(partial_closed.is_some(), "a partial preface is closed");
    eprintln!("1100 sockets opened in {opened:?}; closed at once: {early}, by the timer: {timed}");
    assert_eq!(timed, 128, "the per-address cap holds 128; early {early}");
    assert_eq!(early, 1100 - 128);
    // Accepting never failed: the caps keep the process under its open-file limit.
    assert_eq!(
        gw.count_log("accept failed; backing off"),
        0,
        "{}",
        gw.log_text()
    );
    // Refusals are logged at most once a second.
    let refusals = gw.count_log("connection refused: at its cap");
    let secs = t0.elapsed().as_secs() as usize + 1;
    assert!(
        (1..=secs).contains(&refusals),
        "{refusals} refusal lines in {secs} s"
    );
    served_from(Ipv4Addr::new(127, 0, 0, 2), gw.addr, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_at_the_global_cap_then_freed_by_the_first_byte_timer() {
    let gw = Gateway::start(
        "global",
        "first_byte_timeout_secs = 3\nmax_connections = 200\nmax_connections_per_address = 50",
        false,
        None,
    );
    let t0 = Instant::now();
    let mut socks = Vec::new();
    for i in 0..5u8 {
        for _ in 0..45 {
            socks.push(
                connect_from(Ipv4Addr::new(127, 0, 1, 10 + i), gw.addr)
                    .await
                    .unwrap(),
            );
        }
    }
    // A new address, while the total is reached, is refused at once.
    let mut late = connect_from(Ipv4Addr::new(127, 0, 1, 99), gw.addr)
        .await
        .unwrap();
    // 225 from five addresses, each under its cap: the 200 of the total are held, 25 refused
    // (looked at before the first-byte timer can close any).
    let window = tokio::time::Instant::now() + Duration::from_millis(1500);
    let checks: Vec<_> = socks
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let closed = closed_by(&mut s, window).await.is_some();
                (s, closed)
            })
        })
        .collect();
    let late_refused = closed_by(&mut late, window).await.is_some();
    let mut refused = 0;
    // The held sockets stay open on this side: only the gateway's timer may close them.
    let mut kept = Vec::new();
    for c in checks {
        let (s, closed) = c.await.unwrap();
        if closed {
            refused += 1;
        } else {
            kept.push(s);
        }
    }
    assert!(
        t0.elapsed() < Duration::from_millis(2900),
        "checked before the timer"
    );
    assert_eq!(refused, 25);
    assert!(
        late_refused,
        "a new address at the total is refused at once"
    );
    // … and served once the first-byte timer has closed the silent ones.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = connect_from(Ipv4Addr::new(127, 0, 1, 99), gw.addr)
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut s = s;
        s.write_all(plain_post(gw.addr).as_bytes()).await.ok();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        if buf.starts_with(b"HTTP/1.1 415") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "freed by the timer, not before"
    );
    // They were: every kept socket has been closed by the gateway.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for mut s in kept {
        assert!(closed_by(&mut s, deadline).await.is_some());
    }
}

/// Reads HTTP/2 frames until the peer closes or `deadline`: (type, payload) of each, and
/// whether it closed.
async fn h2_frames(
    s: &mut TcpStream,
    deadline: tokio::time::Instant,
) -> (Vec<(u8, Vec<u8>)>, bool) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let mut frames = Vec::new();
    let mut at = 0;
    while raw.len() >= at + 9 {
        let len = (usize::from(raw[at]) << 16)
            | (usize::from(raw[at + 1]) << 8)
            | usize::from(raw[at + 2]);
        let end = (at + 9 + len).min(raw.len());
        frames.push((raw[at + 3], raw[at + 9..end].to_vec()));
        at += 9 + len;
    }
    (frames, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_from_several_addresses_are_closed_on_the_timer() {
    let gw = Gateway::start(
        "h2idle",
        "first_byte_timeout_secs = 30\nconnection_idle_timeout_secs = 2\nhttp2_max_concurrent_streams = 7",
        false,
        None,
    );
    let t0 = Instant::now();
    let mut handshaken = Vec::new();
    let mut preface_only = Vec::new();
    for i in 0..6u8 {
        let src = Ipv4Addr::new(127, 0, 2, 1 + i);
        for _ in 0..3 {
            let mut s = connect_from(src, gw.addr).await.unwrap();
            s.write_all(H2_PREFACE).await.unwrap();
            s.write_all(H2_SETTINGS).await.unwrap();
            handshaken.push(s);
        }
        let mut s = connect_from(src, gw.addr).await.unwrap();
        s.write_all(H2_PREFACE).await.unwrap();
        preface_only.push(s);
    }
    // Others are served while they idle.
    served_from(Ipv4Addr::new(127, 0, 3, 1), gw.addr, Duration::from_secs(1)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let waits: Vec<_> = handshaken
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let (frames, closed) = h2_frames(&mut s, deadline).await;
                (frames, closed, Instant::now())
            })
        })
        .chain(preface_only.into_iter().map(|mut s| {
            tokio::spawn(async move {
                let (frames, closed) = h2_frames(&mut s, deadline).await;
                (frames, closed, Instant::now())
            })
        }))
        .collect();
    for (i, w) in waits.into_iter().enumerate() {
        let (frames, closed, when) = w.await.unwrap();
        assert!(closed, "connection {i} closed");
        let after = when.duration_since(t0);
        assert!(
            after >= Duration::from_millis(1900),
            "{i} closed after {after:?}"
        );
        // The server's SETTINGS come first, with SETTINGS_MAX_CONCURRENT_STREAMS (3) = 7.
        let (kind, payload) = frames.first().expect("the server's SETTINGS");
        assert_eq!(*kind, 4);
        let streams = payload
            .chunks(6)
            .find(|c| c.len() == 6 && c[..2] == [0, 3])
            .map(|c| u32::from_be_bytes([c[2], c[3], c[4], c[5]]));
        assert_eq!(streams, Some(7), "{payload:?}");
        if i < 18 {
            assert!(
                frames.iter().any(|(k, _)| *k == 7),
                "a GOAWAY before the close: {frames:?}"
            );
        }
    }
    served_from(Ipv4Addr::new(127, 0, 3, 1), gw.addr, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_peer_that_never_answers_pings_is_closed() {
    let gw = Gateway::start(
        "h2ping",
        "connection_idle_timeout_secs = 600\nhttp2_keepalive_secs = 1",
        false,
        None,
    );
    let t0 = Instant::now();
    let mut s = connect_from(Ipv4Addr::new(127, 0, 4, 1), gw.addr)
        .await
        .unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    s.write_all(H2_SETTINGS).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (frames, closed) = h2_frames(&mut s, deadline).await;
    assert!(frames.iter().any(|(k, _)| *k == 6), "a PING: {frames:?}");
    assert!(closed, "closed when the ping is not answered");
    assert!(t0.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_cap_an_address_is_refused_and_others_are_not() {
    let gw = Gateway::start(
        "peraddr",
        "first_byte_timeout_secs = 60\nmax_connections_per_address = 4",
        false,
        None,
    );
    let a = Ipv4Addr::new(127, 0, 5, 1);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(a, gw.addr).await.unwrap());
    }
    // Let the gateway accept the four before the others arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut over = Vec::new();
    for _ in 0..3 {
        over.push(connect_from(a, gw.addr).await.unwrap());
    }
    for s in over.iter_mut() {
        let quick = tokio::time::Instant::now() + Duration::from_secs(2);
        assert!(
            closed_by(s, quick).await.is_some(),
            "over the cap: closed at once"
        );
    }
    assert!(Instant::now() < deadline);
    for s in held.iter_mut() {
        assert!(
            still_open(s, Duration::from_millis(200)).await,
            "within the cap: open"
        );
    }
    // B is unaffected, several times over.
    for i in 0..6u8 {
        served_from(
            Ipv4Addr::new(127, 0, 5, 2 + i),
            gw.addr,
            Duration::from_secs(1),
        )
        .await;
    }
    // A held connection is a real one: it is served.
    let first = held.remove(0);
    let (status, text) = exchange(first, &plain_post(gw.addr)).await;
    assert_eq!(status, 415, "{text}");
    // The slot it frees is A's again (polled: the gateway uncounts it when it sees the close).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = connect_from(a, gw.addr).await.unwrap();
        let mut s = s;
        s.write_all(plain_post(gw.addr).as_bytes()).await.ok();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        if buf.starts_with(b"HTTP/1.1 415") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_checks_host_and_origin_and_closes_silent_connections() {
    let gw = Gateway::start(
        "admin",
        "first_byte_timeout_secs = 2\nheader_read_timeout_secs = 3",
        true,
        None,
    );
    let admin = gw.admin.expect("admin address");
    let get = |host: String, extra: &'static str| {
        format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
    };
    let from = Ipv4Addr::new(127, 0, 6, 1);
    let (status, text) = exchange(
        connect_from(from, admin).await.unwrap(),
        &get(admin.to_string(), ""),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("turnpike_"), "{text}");
    // DNS rebinding: a foreign name for this address.
    let (status, text) = exchange(
        connect_from(from, admin).await.unwrap(),
        &get(format!("rebind.example:{}", admin.port()), ""),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(!text.contains("turnpike_"), "{text}");
    let (status, _) = exchange(
        connect_from(from, admin).await.unwrap(),
        &get(format!("localhost:{}", admin.port()), ""),
    )
    .await;
    assert_eq!(status, 200);
    let (status, text) = exchange(
        connect_from(from, admin).await.unwrap(),
        &get(admin.to_string(), "Origin: https://rebind.example\r\n"),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = exchange(
        connect_from(from, admin).await.unwrap(),
        "GET http://rebind.example/metrics HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 403, "{text}");
    // A silent connection to the admin listener is closed by the first-byte timer.
    let t0 = Instant::now();
    let mut silent = connect_from(Ipv4Addr::new(127, 0, 6, 2), admin)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    assert!(closed_by(&mut silent, deadline).await.is_some());
    assert!(t0.elapsed() >= Duration::from_millis(1900));
    // A request head that never ends is cut by the header timeout (not the first-byte timer).
    let t0 = Instant::now();
    let mut slow = connect_from(Ipv4Addr::new(127, 0, 6, 3), admin)
        .await
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    assert!(
        closed_by(&mut slow, deadline).await.is_some(),
        "header timeout"
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(20),
        "cut by the 3 s header timeout after {took:?}"
    );
}

fn check(dir: &Path, admin_listen: &str) -> (bool, String) {
    let path = dir.join(format!(
        "check-{}.toml",
        admin_listen.replace([':', '[', ']', '.'], "_")
    ));
    std::fs::write(
        &path,
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n\n[admin]\nlisten = \"{admin_listen}\"\ntoken = \"{ADMIN_TOKEN}\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_warns_about_an_admin_listener_off_loopback() {
    let dir = std::env::temp_dir().join(format!("turnpike-conns-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for wild in ["0.0.0.0:8403", "[::]:8403", "192.0.2.7:8403"] {
        let (ok, stderr) = check(&dir, wild);
        assert!(ok, "a warning, not an error: {stderr}");
        assert!(
            stderr.contains(":5:10: warning: the admin listener binds"),
            "{wild}: {stderr}"
        );
    }
    for local in ["127.0.0.1:8403", "[::1]:8403"] {
        let (ok, stderr) = check(&dir, local);
        assert!(ok);
        assert!(!stderr.contains("warning"), "{local}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_lines_and_absolute_form_targets() {
    let gw = Gateway::start("host", "", false, None);
    let addr = gw.addr;
    let from = Ipv4Addr::new(127, 0, 7, 1);
    let post = |target: &str, hosts: &[&str]| {
        let mut r = format!("POST {target} HTTP/1.1\r\n");
        for h in hosts {
            r.push_str(&format!("Host: {h}\r\n"));
        }
        r.push_str("Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
        r
    };
    let own = addr.to_string();
    let cases: Vec<(String, Vec<&str>, u16, &str)> = vec![
        // One allowed Host: past the Host check (415: not JSON).
        ("/mcp".into(), vec![own.as_str()], 415, ""),
        // Two Host lines, alike or not.
        (
            "/mcp".into(),
            vec![own.as_str(), own.as_str()],
            400,
            "more than one Host",
        ),
        (
            "/mcp".into(),
            vec![own.as_str(), "evil.example"],
            400,
            "more than one Host",
        ),
        (
            "/mcp".into(),
            vec!["evil.example", own.as_str()],
            400,
            "more than one Host",
        ),
        // Absolute form: the target's authority is checked.
        (format!("http://{own}/mcp"), vec![own.as_str()], 415, ""),
        (
            format!("http://localhost:{}/mcp", addr.port()),
            vec!["LOCALHOST"],
            415,
            "",
        ),
        (
            "http://evil.example/mcp".into(),
            vec!["evil.example"],
            403,
            "Host not allowed",
        ),
        (
            "http://evil.example/mcp".into(),
            vec![own.as_str()],
            400,
            "disagrees",
        ),
        // An allowed authority with a Host naming another host: refused, documented.
        (
            format!("http://{own}/mcp"),
            vec!["evil.example"],
            400,
            "disagrees",
        ),
    ];
    for (target, hosts, want, says) in cases {
        let (status, text) = exchange(
            connect_from(from, addr).await.unwrap(),
            &post(&target, &hosts),
        )
        .await;
        assert_eq!(status, want, "{target} {hosts:?}: {text}");
        assert!(text.contains(says), "{target} {hosts:?}: {text}");
    }
}
