//! Anonymous floods of `initialize` against a stdio upstream (`server-everything` on Node, one
//! child per session) from many loopback source addresses, through the gate: each address is
//! held to its share of children, the whole gateway to its cap, idle sessions make room, and a
//! well-behaved address keeps working. Children are counted in `/proc`.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "stdio_support.rs"]
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{
    initialize, initialized, parse_sse, server_everything, tool_call, Whole, ACCEPT_BOTH,
};
use turnpike_core::error_codes::{RATE_LIMITED, UNAVAILABLE};
use turnpike_gateway::upstream::stdio::{caller_key, StdioBudget, StdioUpstream};
use turnpike_gateway::{Gate, TurnpikeService};

/// The gateway's configuration: a stdio upstream running server-everything, its children
/// marked with `TURNPIKE_TEST_MARK=<mark>` so that each test counts its own, and `stdio` lines
/// in `[stdio]`. Every call is free.
fn config_text(mark: &str, stdio: &str) -> String {
    let data_dir = std::env::temp_dir().join(format!(
        "turnpike-stdio-flood-{}-{mark}",
        std::process::id()
    ));
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "{}"

[upstream]
command = ["node", "{}"]
env = {{ TURNPIKE_TEST_MARK = "{mark}" }}

[stdio]
{stdio}
"#,
        data_dir.display(),
        server_everything().display(),
    )
}

/// The live (not zombie) child processes of this test process whose environment carries
/// `TURNPIKE_TEST_MARK=<mark>`.
fn children(mark: &str) -> Vec<u32> {
    let me = std::process::id();
    let needle = format!("TURNPIKE_TEST_MARK={mark}");
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the parenthesised command name: state, then the parent's pid.
        let mut rest = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = rest.next();
        let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(me) || matches!(state, Some("Z" | "X")) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Polls `check` every 25 ms until it holds; panics after `wait`.
async fn eventually(what: &str, wait: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < wait, "{what}: not within {wait:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An HTTP client whose connections leave from `ip`.
struct Caller {
    ip: Ipv4Addr,
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
}

impl Caller {
    fn new(ip: Ipv4Addr, gateway: SocketAddr) -> Caller {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(IpAddr::V4(ip)));
        connector.set_nodelay(true);
        Caller {
            ip,
            client: Client::builder(TokioExecutor::new()).build(connector),
            url: format!("http://{gateway}/mcp"),
        }
    }

    /// The key the gateway counts this caller's children under.
    fn key(&self) -> String {
        format!("anon:{}", self.ip)
    }

    async fn send(&self, method: Method, session: Option<&str>, body: Option<&Value>) -> Whole {
        let mut b = Request::builder()
            .method(method)
            .uri(&self.url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json");
        if let Some(s) = session {
            b = b
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let bytes = body
            .map(|v| Bytes::from(serde_json::to_vec(v).unwrap()))
            .unwrap_or_default();
        let req = b.body(Full::new(bytes)).unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            let resp = self.client.request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            Whole {
                status: parts.status,
                headers: parts.headers,
                body: body.collect().await.unwrap().to_bytes(),
            }
        })
        .await
        .expect("no complete response within 30 s")
    }

    async fn post(&self, session: Option<&str>, body: &Value) -> Whole {
        self.send(Method::POST, session, Some(body)).await
    }
}

/// The gate (every call free) in front of the era adapter in front of the stdio upstream,
/// served with each connection's peer address, as the gateway serves them.
struct Stack {
    addr: SocketAddr,
    stdio: StdioUpstream,
    budget: StdioBudget,
    server: tokio::task::JoinHandle<()>,
}

async fn start_stack(config: &str) -> Stack {
    let cfg = turnpike_gateway::parse(config, "flood.toml").unwrap();
    let budget = StdioBudget::new(cfg.stdio.limits().0);
    let (raw, stdio) = turnpike_gateway::upstreams::build_upstream_with(&cfg, &budget).unwrap();
    let stdio = stdio.expect("a stdio upstream");
    let upstream = turnpike_gateway::era::adapt(
        raw,
        cfg.upstream.era,
        cfg.upstream.command.is_some(),
        &cfg.server.data_dir,
    )
    .unwrap();
    let gate = Arc::new(Gate::from_config(&cfg).unwrap());
    // The boxed upstream is not `Sync`: each request clones the service out of a mutex.
    let svc = Arc::new(Mutex::new(TurnpikeService::new(gate, upstream)));
    let app = axum::Router::new().route_service(
        "/mcp",
        tower::service_fn(move |req: Request<axum::body::Body>| {
            let mut svc = svc.lock().clone();
            async move { tower::Service::call(&mut svc, req).await }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Stack {
        addr,
        stdio,
        budget,
        server,
    }
}

impl Stack {
    /// Ends every child and waits (bounded) until none of `mark`'s is left.
    async fn stop(self, mark: &str) {
        self.stdio.shutdown();
        self.server.abort();
        eventually("every child ended", Duration::from_secs(15), || {
            children(mark).is_empty()
        })
        .await;
    }
}

/// The response with JSON-RPC id `id`: the JSON body, or among the events of an SSE body (the
/// server's notifications may come before it).
fn response_to(w: &Whole, id: u64) -> Value {
    if w.content_type().starts_with("text/event-stream") {
        parse_sse(&w.body)
            .into_iter()
            .find(|m| m["id"] == id)
            .expect("the response among the events")
    } else {
        w.json()
    }
}

/// Checks a refusal of the caller's share: 429, Retry-After, -31429 naming `key`.
fn assert_caller_refusal(w: &Whole, key: &str) {
    assert_eq!(w.status, StatusCode::TOO_MANY_REQUESTS, "{w:?}");
    let retry: u64 = w.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(w.session_id().is_none());
    let body = w.json();
    assert_eq!(body["error"]["code"], RATE_LIMITED, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(key), "{message}");
}

/// Checks the refusal of a full gateway: 503, Retry-After, -31503 naming `[stdio] max_sessions`.
fn assert_full_refusal(w: &Whole) {
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{w:?}");
    assert!(w.headers.contains_key("retry-after"));
    let body = w.json();
    assert_eq!(body["error"]["code"], UNAVAILABLE, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[stdio] max_sessions"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_addresses_is_held_to_each_share_and_the_global_cap() {
    const MARK: &str = "flood";
    const GLOBAL: usize = 8;
    const PER_CALLER: usize = 2;
    let stack = start_stack(&config_text(
        MARK,
        "max_sessions = 8\nmax_sessions_per_caller = 2\nspawns_per_minute_per_caller = 600",
    ))
    .await;
    let flooders: Vec<Arc<Caller>> = (1..=12)
        .map(|i| Arc::new(Caller::new(Ipv4Addr::new(127, 0, 1, i), stack.addr)))
        .collect();
    let good = Caller::new(Ipv4Addr::new(127, 0, 2, 1), stack.addr);

    // A sampler records, every 10 ms, the most children alive at once (counted in /proc) and
    // the most slots any one flooding address held.
    let stop = Arc::new(AtomicBool::new(false));
    let max_children = Arc::new(AtomicUsize::new(0));
    let max_held = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, max_children, max_held) = (stop.clone(), max_children.clone(), max_held.clone());
        let budget = stack.budget.clone();
        let keys: Vec<String> = flooders.iter().map(|f| f.key()).collect();
        tokio::spawn(async move {
            // Bounded: at most 60 s of sampling.
            for _ in 0..6000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                max_children.fetch_max(children(MARK).len(), Ordering::Relaxed);
                let held = keys.iter().map(|k| budget.held_by(k)).max().unwrap_or(0);
                max_held.fetch_max(held, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // 1. One address asks for six sessions at once: two children, four 429s.
    let first = flooders[0].clone();
    let answers = futures_util::future::join_all((0..6).map(|i| {
        let f = first.clone();
        async move { f.post(None, &initialize(i, json!({}))).await }
    }))
    .await;
    let mut first_sessions = Vec::new();
    for w in &answers {
        if w.status == StatusCode::OK {
            first_sessions.push(w.session_id().unwrap());
        } else {
            assert_caller_refusal(w, "max_sessions_per_caller");
        }
    }
    assert_eq!(first_sessions.len(), PER_CALLER, "{answers:?}");
    assert_eq!(stack.budget.held_by(&first.key()), PER_CALLER);
    eventually("two children", Duration::from_secs(5), || {
        children(MARK).len() == PER_CALLER
    })
    .await;
    assert!(max_children.load(Ordering::Relaxed) <= PER_CALLER);

    // 2. Every address floods: rounds of three initializes at once, bounded in rounds and time.
    let granted = Arc::new(Mutex::new(HashMap::<Ipv4Addr, Vec<String>>::new()));
    let tally = Arc::new(Mutex::new(HashMap::<u16, usize>::new()));
    let flood_until = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for f in &flooders {
        let (f, granted, tally) = (f.clone(), granted.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..6u64 {
                if Instant::now() > flood_until {
                    break;
                }
                let answers = futures_util::future::join_all((0..3).map(|i| {
                    let f = f.clone();
                    async move {
                        f.post(None, &initialize(100 + round * 3 + i, json!({})))
                            .await
                    }
                }))
                .await;
                for w in answers {
                    *tally.lock().entry(w.status.as_u16()).or_insert(0) += 1;
                    match w.status {
                        StatusCode::OK => granted
                            .lock()
                            .entry(f.ip)
                            .or_default()
                            .push(w.session_id().unwrap()),
                        StatusCode::TOO_MANY_REQUESTS => {
                            assert_caller_refusal(&w, "max_sessions_per_caller")
                        }
                        _ => assert_full_refusal(&w),
                    }
                }
            }
        }));
    }

    // 3. While the flood runs, once the gateway is full, a well-behaved address initializes
    //    and calls a tool. While every slot is held by a session still starting, none is idle
    //    and it is told 503 (Retry-After); it tries again a little later.
    eventually("the gateway full", Duration::from_secs(20), || {
        stack.budget.live() == GLOBAL
    })
    .await;
    // The newcomer's session may itself be the idle one ended to make room for a flooder
    // between its `initialize` and its next request (the victim is the longest idle among the
    // callers holding the most slots, and the newcomer holds as many as a flooder whose other
    // session was ended): it then gets 404 and, as an MCP client does, starts a new session.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempts = 0;
    let echo = loop {
        attempts += 1;
        assert!(Instant::now() < deadline, "no session for a newcomer");
        let init = good.post(None, &initialize(1, json!({}))).await;
        if init.status != StatusCode::OK {
            assert_full_refusal(&init);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert!(
            tasks.iter().any(|t| !t.is_finished()),
            "the newcomer got its session while the flood ran"
        );
        let sid = init.session_id().unwrap();
        let note = good.post(Some(&sid), &initialized()).await;
        if note.status == StatusCode::NOT_FOUND {
            continue;
        }
        assert_eq!(note.status, StatusCode::ACCEPTED);
        let echo = good
            .post(
                Some(&sid),
                &tool_call(2, "echo", json!({"message": "still here"})),
            )
            .await;
        if echo.status == StatusCode::NOT_FOUND {
            continue;
        }
        break echo;
    };
    assert_eq!(echo.status, StatusCode::OK, "{echo:?}");
    let answer = response_to(&echo, 2);
    assert_eq!(answer["result"]["content"][0]["text"], "Echo: still here");

    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("the flood ends by itself")
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();

    // Never more children than the cap, nor more than its share for any address.
    let most = max_children.load(Ordering::Relaxed);
    assert!(most <= GLOBAL, "{most} children at once");
    assert!(max_held.load(Ordering::Relaxed) <= PER_CALLER);
    assert!(children(MARK).len() <= GLOBAL);
    let tally = tally.lock().clone();
    let granted_total: usize = granted.lock().values().map(Vec::len).sum();
    eprintln!(
        "flood: answers by status {tally:?}; most children at once {most}; sessions granted \
         {granted_total}; the newcomer's initialize attempts {attempts}"
    );
    // The flood was refused past each share, and more sessions were granted than the cap
    // holds: idle sessions were ended to make room.
    assert!(tally.get(&429).copied().unwrap_or(0) > 0);
    assert!(granted_total + PER_CALLER + 1 > GLOBAL, "{granted_total}");
    // The first address's two sessions, idle longest and of a caller holding the most, were
    // among those reclaimed: their ids are gone.
    for s in &first_sessions {
        let w = first
            .post(Some(s), &json!({"jsonrpc":"2.0","id":9,"method":"ping"}))
            .await;
        assert_eq!(w.status, StatusCode::NOT_FOUND, "{w:?}");
    }
    stack.stop(MARK).await;
}

#[tokio::test]
async fn the_real_server_keys_children_by_address_and_bounds_the_spawn_rate() {
    const MARK: &str = "served";
    let cfg = turnpike_gateway::parse(
        &config_text(
            MARK,
            "max_sessions = 4\nmax_sessions_per_caller = 1\nspawns_per_minute_per_caller = 2",
        ),
        "served.toml",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        turnpike_gateway::serve_listener(listener, cfg, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let a = Caller::new(Ipv4Addr::new(127, 0, 3, 1), addr);
    let b = Caller::new(Ipv4Addr::new(127, 0, 3, 2), addr);

    let one = a.post(None, &initialize(1, json!({}))).await;
    assert_eq!(one.status, StatusCode::OK, "{one:?}");
    let sid = one.session_id().unwrap();
    // Its share is one child.
    assert_caller_refusal(
        &a.post(None, &initialize(2, json!({}))).await,
        "max_sessions_per_caller",
    );
    // Ended, it may start another (its second spawn this minute) ...
    assert_eq!(
        a.send(Method::DELETE, Some(&sid), None).await.status,
        StatusCode::OK
    );
    let mut again = a.post(None, &initialize(3, json!({}))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while again.status == StatusCode::TOO_MANY_REQUESTS {
        // The deleted session's slot is free once its child is reaped.
        assert!(Instant::now() < deadline, "{again:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        again = a.post(None, &initialize(3, json!({}))).await;
    }
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    let sid = again.session_id().unwrap();
    assert_eq!(
        a.send(Method::DELETE, Some(&sid), None).await.status,
        StatusCode::OK
    );
    // ... but not a third within the minute, holding none (once the deleted session's child
    // is reaped; until then it still holds its one).
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        let w = a.post(None, &initialize(4, json!({}))).await;
        assert_eq!(w.status, StatusCode::TOO_MANY_REQUESTS, "{w:?}");
        if !w.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_sessions_per_caller")
        {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted child was not reaped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_caller_refusal(&third, "spawns_per_minute_per_caller");
    assert!(children(MARK).is_empty());
    let retry: u64 = third.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    // Another address is not affected.
    let other = b.post(None, &initialize(5, json!({}))).await;
    assert_eq!(other.status, StatusCode::OK, "{other:?}");
    assert_eq!(children(MARK).len(), 1);

    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server stops")
        .unwrap();
    eventually("every child ended", Duration::from_secs(15), || {
        children(MARK).is_empty()
    })
    .await;
}

#[tokio::test]
async fn pooled_sessions_for_modern_clients_count_against_the_address_that_started_them() {
    // A 2026-07-28 client reaches a stdio server through the era adapter's sessions, pooled by
    // client capabilities: new capabilities on every request must not start children beyond
    // the address's share.
    const MARK: &str = "modern";
    let stack = start_stack(&config_text(
        MARK,
        "max_sessions = 8\nmax_sessions_per_caller = 2\nspawns_per_minute_per_caller = 600",
    ))
    .await;
    let modern = |caller: &Caller, id: u64, n: u64| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"experimental": {"x": {"n": n}}},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}
        }}});
        let req = Request::builder()
            .method(Method::POST)
            .uri(&caller.url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let client = caller.client.clone();
        async move {
            let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
                .await
                .expect("an answer within 30 s")
                .unwrap();
            let (parts, body) = resp.into_parts();
            Whole {
                status: parts.status,
                headers: parts.headers,
                body: body.collect().await.unwrap().to_bytes(),
            }
        }
    };
    let x = Caller::new(Ipv4Addr::new(127, 0, 4, 1), stack.addr);
    for n in 0..2 {
        let w = modern(&x, n + 1, n).await;
        assert_eq!(w.status, StatusCode::OK, "{w:?}");
        assert!(response_to(&w, n + 1)["result"]["tools"].is_array());
    }
    assert_eq!(stack.budget.held_by(&x.key()), 2);
    for n in 2..5 {
        let w = modern(&x, n + 1, n).await;
        assert_ne!(w.status, StatusCode::OK, "{w:?}");
        let message = response_to(&w, n + 1)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("max_sessions_per_caller"), "{message}");
    }
    assert_eq!(children(MARK).len(), 2);
    // Another address, new capabilities: a pooled session of its own.
    let y = Caller::new(Ipv4Addr::new(127, 0, 4, 2), stack.addr);
    let w = modern(&y, 9, 9).await;
    assert_eq!(w.status, StatusCode::OK, "{w:?}");
    assert_eq!(stack.budget.held_by(&y.key()), 1);
    assert_eq!(children(MARK).len(), 3);
    stack.stop(MARK).await;
}

#[test]
fn callers_are_keyed_by_address_and_ipv6_by_its_64() {
    let key = |ip: &str| {
        let mut ext = http::Extensions::new();
        ext.insert(turnpike_gateway::PeerAddr(SocketAddr::new(
            ip.parse().unwrap(),
            4000,
        )));
        caller_key(&ext)
    };
    assert_eq!(key("127.0.1.7").as_deref(), Some("anon:127.0.1.7"));
    assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_eq!(key("::ffff:10.0.0.1").as_deref(), Some("anon:10.0.0.1"));
    assert_eq!(caller_key(&http::Extensions::new()), None);
}
