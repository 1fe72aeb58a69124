//! What the bridge adds to a call when no challenge is pending.
//!
//! ```text
//! cargo run --release -p turnpike-client --example connect_latency [CALLS] [--child | --binary PATH]
//! ```
//!
//! Starts a loopback JSON-RPC server that answers every `tools/call` at once (the "remote"),
//! then makes CALLS sequential `tools/call` requests two ways, alternating in rounds so both
//! see the same machine load:
//!
//! - **direct**: the client's own HTTP transport POSTs each call to the remote;
//! - **bridge**: each call is written as one line to the bridge and its answer read back — the
//!   bridge in process over an in-memory pipe; with `--child` the same bridge
//!   (`turnpike_client::bridge::run_stdio`, what `turnpike connect` runs) in a child process of
//!   this build over real stdin/stdout pipes; or with `--binary PATH` the `turnpike` binary at
//!   PATH running `turnpike connect`.
//!
//! Prints the median and 99th percentile of each and the difference of the medians: the
//! bridge's added latency per call.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use turnpike_client::bridge::{self, BridgeOptions};
use turnpike_client::transport::Transport;
use turnpike_client::{Client, ClientConfig};

async fn remote(body: Bytes) -> ([(&'static str, &'static str); 1], String) {
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = json!({"jsonrpc": "2.0", "id": msg["id"],
        "result": {"content": [{"type": "text", "text": "pong"}], "isError": false}});
    ([("content-type", "application/json")], reply.to_string())
}

fn call(i: u64) -> String {
    json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "ping"}}})
    .to_string()
}

fn stats(v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

/// Sends one line to the bridge and reads its answer.
type LineFn =
    Box<dyn FnMut(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = String>>>>;

trait Line {
    async fn roundtrip(&mut self, line: &str) -> String;
}

struct Pipe<W, R> {
    w: W,
    r: BufReader<R>,
}

impl<W: tokio::io::AsyncWrite + Unpin, R: tokio::io::AsyncRead + Unpin> Line for Pipe<W, R> {
    async fn roundtrip(&mut self, line: &str) -> String {
        self.w.write_all(line.as_bytes()).await.unwrap();
        self.w.write_all(b"\n").await.unwrap();
        self.w.flush().await.unwrap();
        let mut out = String::new();
        self.r.read_line(&mut out).await.unwrap();
        out
    }
}

#[tokio::main]
async fn main() {
    let mut calls = 2000u64;
    let mut binary: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--binary" {
            binary = args.next();
        } else if a == "--stdio-child" {
            // `turnpike connect`'s bridge on this process's stdin/stdout, in this build.
            let url = args.next().expect("--stdio-child URL STATE_DIR");
            let dir = args.next().expect("--stdio-child URL STATE_DIR");
            let client = Arc::new(Client::new(ClientConfig::new(dir.into())).unwrap());
            let opts = BridgeOptions {
                url,
                headers: Default::default(),
                get_stream: false,
            };
            bridge::run_stdio(client, opts).await.unwrap();
            return;
        } else if a == "--child" {
            binary = Some("self".into());
        } else if let Ok(n) = a.parse() {
            calls = n;
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().route("/mcp", post(remote))).await;
    });
    let dir = std::env::temp_dir().join(format!("turnpike-latency-{}", std::process::id()));

    // The bridge.
    let mut child = None;
    let mut line: LineFn;
    match &binary {
        Some(path) => {
            let mut cmd = if path == "self" {
                let mut c = tokio::process::Command::new(std::env::current_exe().unwrap());
                c.args(["--stdio-child", &url]);
                c
            } else {
                let mut c = tokio::process::Command::new(path);
                c.args(["connect", &url, "--state-dir"]);
                c
            };
            let mut c = cmd
                .arg(&dir)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start turnpike connect");
            let pipe = Arc::new(tokio::sync::Mutex::new(Pipe {
                w: c.stdin.take().unwrap(),
                r: BufReader::new(c.stdout.take().unwrap()),
            }));
            child = Some(c);
            line = Box::new(move |l| {
                let p = pipe.clone();
                Box::pin(async move { p.lock().await.roundtrip(&l).await })
            });
        }
        None => {
            let (host_w, bridge_r) = tokio::io::duplex(1 << 16);
            let (bridge_w, host_r) = tokio::io::duplex(1 << 16);
            let client = Arc::new(Client::new(ClientConfig::new(dir.clone())).unwrap());
            let opts = BridgeOptions {
                url: url.clone(),
                headers: Default::default(),
                get_stream: false,
            };
            tokio::spawn(bridge::run(
                client,
                opts,
                BufReader::new(bridge_r),
                bridge_w,
            ));
            let pipe = Arc::new(tokio::sync::Mutex::new(Pipe {
                w: host_w,
                r: BufReader::new(host_r),
            }));
            line = Box::new(move |l| {
                let p = pipe.clone();
                Box::pin(async move { p.lock().await.roundtrip(&l).await })
            });
        }
    }
    let direct = Transport::new().unwrap();
    let send_direct = |i: u64| {
        let req = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(bytes::Bytes::from(call(i))))
            .unwrap();
        let t = direct.clone();
        async move {
            let (_, body) = t
                .send_read(req, 1 << 20, Duration::from_secs(10))
                .await
                .unwrap();
            body
        }
    };
    // Warm up both paths (connections, the bridge's first request).
    for i in 0..200 {
        send_direct(i).await;
        line(call(i)).await;
    }
    let mut d = Vec::with_capacity(calls as usize);
    let mut b = Vec::with_capacity(calls as usize);
    let round = 100;
    let mut i = 1000;
    while (d.len() as u64) < calls {
        for _ in 0..round {
            let t = Instant::now();
            let body = send_direct(i).await;
            d.push(t.elapsed());
            assert!(!body.is_empty());
            i += 1;
        }
        for _ in 0..round {
            let t = Instant::now();
            let out = line(call(i)).await;
            b.push(t.elapsed());
            assert!(out.contains("pong"), "{out}");
            i += 1;
        }
    }
    let (dm, dp) = stats(&mut d);
    let (bm, bp) = stats(&mut b);
    let how = if binary.as_deref() == Some("self") {
        "the bridge in a child process of this build (stdio)"
    } else if binary.is_some() {
        "turnpike connect (child process, stdio)"
    } else {
        "bridge in process (in-memory pipe)"
    };
    println!("{calls} calls each, sequential, no challenge pending");
    println!("direct HTTP:  median {dm:8.1} µs   p99 {dp:8.1} µs");
    println!("via {how}:  median {bm:8.1} µs   p99 {bp:8.1} µs");
    println!("added by the bridge (median): {:.1} µs", bm - dm);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
