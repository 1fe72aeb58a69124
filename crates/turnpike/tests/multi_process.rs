//! Two `turnpike serve` processes (the built binary) on one Redis and one PostgreSQL, both
//! servers of the test's own on free loopback ports:
//!
//! - a limit of N is N across both under a concurrent burst;
//! - one proof-of-work solution, and one per-call L402 credential, sent to both at once, are
//!   accepted exactly once;
//! - a prepaid balance spent by concurrent calls to both never goes below zero, and every
//!   debit has its ledger row;
//! - Redis and PostgreSQL stopped and started again under the running gateways: they keep
//!   answering (limits as their failure_mode says, payments closed with 503 / -31503), come
//!   back by themselves, and lose no ledger row.
//!
//! The first also runs on a real three-master Redis Cluster (`redis+cluster://`), and the master
//! of that cluster that holds the caller's bucket (its limits, the records of its solutions) is
//! killed under a load of puzzle-paid calls to both processes: calls fail
//! closed (503) while it is away, succeed again once it is back (empty), and no solution is
//! ever accepted twice, before, during or after.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use turnpike_l402::store::{BalanceStore, Ledger, LedgerKind};
use turnpike_l402::{Identifier, Limits, Macaroon, PostgresOptions, PostgresStore};
use turnpike_testkit::postgres::PgDb;
use turnpike_testkit::redis::{RedisCluster, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_turnpike");
const KEY_HEX: &str = "7475726e70696b65206d756c74692d70726f636573732074657374206b657921";

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

/// One HTTP/1.0 exchange (the answer is read to the end of the connection).
fn http(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn call(id: i64, tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": args}})
    .to_string()
}

/// The fixture upstream (stateless, JSON answers) on a runtime of its own.
fn start_upstream() -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(turnpike_fixture::serve_http(
        listener,
        "/mcp",
        turnpike_fixture::HttpOptions::fast(),
        std::future::pending(),
    ));
    (rt, addr)
}

/// A `turnpike serve` process.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `echo` free (and limited to 10 an hour per caller), `slow` by proof-of-work, `add` from a
/// prepaid balance (1000 msat a call, 10 000 msat of credit), `whoami` 1000 msat per call; the dev
/// Lightning backend and its wallet; limits, spent sets on `redis`, the L402 state in `pg`.
fn start_gateway(name: &str, upstream: SocketAddr, redis: &str, pg: &PgDb, extra: &str) -> Gateway {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "turnpike-multi-process-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Port 0: the gateway binds a port of its own and logs it.
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
path = "/mcp"
data_dir = "{dir}"

[upstream]
url = "http://{upstream}/mcp"

[pow]
subpuzzles = 2
keys = [{{ id = 7, secret = "{KEY_HEX}" }}]

[tools.echo]
free = true
[tools.add]
l402 = {{ msat = 1000, mode = "balance", bundle = 10000 }}
[tools.slow]
pow = 2000
[tools.whoami]
l402 = {{ msat = 1000 }}

# Bursts of refused calls from one address each get a fresh challenge: room for them.
[l402]
invoices_per_minute_per_caller = 1000

[lightning]
backend = "dev"
[lightning.dev_wallet]
listen = "127.0.0.1:0"

[limits.default]
burst = 1000
rate = "1000/s"
concurrency = 1000
[limits.tools.echo]
burst = 10
rate = "1/h"
[limits.loop_brake]
enabled = false

[store]
backend = "redis"
redis_url = "{redis}"
timeout_ms = 500
durable = "postgres"
postgres_url = "{pg_url}"
postgres_schema = "{schema}"
postgres_timeout_ms = 1500
{extra}
"#,
        dir = dir.display(),
        pg_url = pg.url(),
        schema = pg.schema,
    );
    let path = dir.join("turnpike.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn,turnpike::serve=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start turnpike serve");
    let mut gw = Gateway {
        child,
        addr: ([127, 0, 0, 1], 0).into(),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(gw.dir.join("serve.log")).unwrap_or_default();
        if let Ok(Some(st)) = gw.child.try_wait() {
            panic!("turnpike serve exited ({st}):\n{log}");
        }
        if let Some(addr) = listening_addr(&log) {
            gw.addr = addr;
            if gw.dir.join("dev-wallet.json").is_file() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "turnpike serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    gw
}

/// Pays `invoice` through the dev wallet of the gateway whose data dir is `dir`; the preimage
/// as hex.
fn pay(dir: &Path, invoice: &str) -> String {
    let w: Value =
        serde_json::from_slice(&std::fs::read(dir.join("dev-wallet.json")).unwrap()).unwrap();
    let url = w["url"].as_str().unwrap();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let r = http(
        addr,
        "/v1/channels/transactions",
        &[(
            "grpc-metadata-macaroon",
            w["macaroon_hex"].as_str().unwrap(),
        )],
        &json!({"payment_request": invoice}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["payment_error"], "", "{v}");
    let pre = v["payment_preimage"].as_str().unwrap();
    hex::encode(b64_decode(pre))
}

fn b64_decode(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = T.iter().position(|&t| t == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Buys an L402 token for `tool` at `gw`: the Authorization value and the token id.
fn buy(gw: &Gateway, tool: &str, args: Value) -> (String, [u8; 32]) {
    let r = http(
        gw.addr,
        "/mcp",
        &[("turnpike-challenge", "http")],
        &call(1, tool, args),
    );
    assert_eq!(r.status, 402, "{}", r.body);
    let line = r.header("www-authenticate").unwrap();
    let rest = line.strip_prefix("L402 macaroon=\"").unwrap();
    let (mac, rest) = rest.split_once("\", invoice=\"").unwrap();
    let invoice = rest.split('"').next().unwrap();
    let pre = pay(&gw.dir, invoice);
    let m = Macaroon::from_base64(mac, Limits::default()).unwrap();
    let id = Identifier::decode(m.identifier()).unwrap();
    (format!("L402 {mac}:{pre}"), id.token_id)
}

/// Sends `n` requests at once, alternating between `a` and `b`; their statuses and bodies.
fn burst(
    a: SocketAddr,
    b: SocketAddr,
    n: usize,
    f: impl Fn(usize) -> (Vec<(String, String)>, String) + Sync,
) -> Vec<(u16, Value)> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, f) = (&barrier, &f);
                s.spawn(move || {
                    let (headers, body) = f(i);
                    let h: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    barrier.wait();
                    let r = http(if i % 2 == 0 { a } else { b }, "/mcp", &h, &body);
                    (r.status, r.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn store(pg: &PgDb, rt: &tokio::runtime::Runtime) -> PostgresStore {
    rt.block_on(PostgresStore::connect(PostgresOptions {
        schema: Some(pg.schema.clone()),
        ..PostgresOptions::new(pg.url())
    }))
    .unwrap()
}

#[test]
fn two_processes_share_limits_credentials_and_balances() {
    let redis = RedisServer::start();
    share_limits_credentials_and_balances(&redis.url());
}

/// The same on a real three-master Redis Cluster (`redis+cluster://`): limits, the PoW and
/// L402 spent sets on the cluster, the L402 state in PostgreSQL.
#[test]
fn two_processes_share_limits_credentials_and_balances_on_a_redis_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    share_limits_credentials_and_balances(&cluster.url());
}

fn share_limits_credentials_and_balances(redis_url: &str) {
    let pg = PgDb::new();
    let (rt, up) = start_upstream();
    let a = start_gateway("a", up, redis_url, &pg, "");
    let b = start_gateway("b", up, redis_url, &pg, "");

    // A limit of 10 is 10 across both.
    let out = burst(a.addr, b.addr, 40, |i| {
        (
            vec![],
            call(i as i64, "echo", json!({"text": format!("{i}")})),
        )
    });
    let ok = out.iter().filter(|(s, _)| *s == 200).count();
    let limited = out.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(
        (ok, limited),
        (10, 30),
        "{:?}",
        out.iter().map(|o| o.0).collect::<Vec<_>>()
    );

    // One puzzle solution, sent 16 times to both at once: accepted once.
    let req = call(2, "slow", json!({"steps": 1, "delay_ms": 0}));
    let r = http(a.addr, "/mcp", &[("turnpike-challenge", "http")], &req);
    assert_eq!(r.status, 402);
    let parsed = turnpike_client::parse_challenges(&r.body);
    let pow = parsed.first().expect("a PoW challenge");
    let nonces = turnpike_client::solve(&pow.token, 1, None).unwrap();
    let auth = turnpike_client::authorization_value(&pow.challenge, &nonces);
    let out = burst(a.addr, b.addr, 16, |_| {
        (
            vec![
                ("authorization".into(), auth.clone()),
                ("turnpike-challenge".into(), "http".into()),
            ],
            req.clone(),
        )
    });
    let ok = out.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "one solution, accepted once: {:?}", out);
    assert!(out.iter().all(|(s, _)| *s == 200 || *s == 402), "{out:?}");

    // One per-call L402 credential (bought and paid at A), sent 16 times to both: once.
    let (auth, _) = buy(&a, "whoami", json!({}));
    let out = burst(a.addr, b.addr, 16, |i| {
        (
            vec![
                ("authorization".into(), auth.clone()),
                ("turnpike-challenge".into(), "http".into()),
            ],
            call(100 + i as i64, "whoami", json!({})),
        )
    });
    let ok = out.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "one payment, one call: {:?}", out);
    assert!(out.iter().all(|(s, _)| *s == 200 || *s == 402), "{out:?}");

    // A balance of 10 calls (bought at B), spent by 40 calls at once on both: 10 pass.
    let (auth, token) = buy(&b, "add", json!({"a": 0, "b": 0}));
    let out = burst(a.addr, b.addr, 40, |i| {
        (
            vec![
                ("authorization".into(), auth.clone()),
                ("turnpike-challenge".into(), "http".into()),
            ],
            call(200 + i as i64, "add", json!({"a": i, "b": 1})),
        )
    });
    let ok = out.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(
        ok,
        10,
        "exactly the balance: {:?}",
        out.iter().map(|o| o.0).collect::<Vec<_>>()
    );
    assert!(out.iter().all(|(s, _)| *s == 200 || *s == 402), "{out:?}");
    let s = store(&pg, &rt);
    assert_eq!(
        rt.block_on(s.balance(token)).unwrap(),
        Some((10_000, 10_000)),
        "spent all, never more"
    );
    let debits = rt
        .block_on(s.entries(token))
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == LedgerKind::Debit)
        .count();
    assert_eq!(debits, 10, "one ledger row per debit");
}

/// Polls `f` until it answers `want` (at most ~15 s); the last status.
fn until(want: u16, mut f: impl FnMut() -> Reply) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = f();
        if r.status == want || Instant::now() > deadline {
            return r.status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stores_stopped_and_restarted_under_two_processes() {
    let mut redis = RedisServer::start();
    let mut pg = PgDb::new();
    if pg.server.is_none() {
        eprintln!("no PostgreSQL server binaries here: skipping the restart test");
        return;
    }
    let (rt, up) = start_upstream();
    // A fails closed on limits, B open; payments fail closed on both.
    let a = start_gateway("a", up, &redis.url(), &pg, "");
    let b = start_gateway(
        "b",
        up,
        &redis.url(),
        &pg,
        "[limits]\nfailure_mode = \"open\"\n",
    );
    let (auth, token) = buy(&a, "add", json!({"a": 0, "b": 0}));
    let h = [
        ("authorization", auth.as_str()),
        ("turnpike-challenge", "http"),
    ];
    let mut paid_ok = 0;
    let mut n = 0i64;
    let mut paid = |gw: &Gateway| {
        n += 1;
        http(
            gw.addr,
            "/mcp",
            &h,
            &call(n, "add", json!({"a": n, "b": 0})),
        )
    };
    let echo = |gw: &Gateway| {
        http(
            gw.addr,
            "/mcp",
            &[],
            &call(0, "echo", json!({"text": "hi"})),
        )
    };
    for gw in [&a, &b] {
        assert_eq!(paid(gw).status, 200);
        paid_ok += 1;
    }

    // Redis away: A refuses (503, -31503), B lets free calls through; a paid call on A is
    // refused and its debit given back, on B it goes through (its balance is in PostgreSQL).
    redis.kill();
    let r = echo(&a);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], -31503);
    assert_eq!(echo(&b).status, 200);
    let r = paid(&a);
    assert_eq!(r.status, 503, "{}", r.body);
    let r = paid(&b);
    assert_eq!(r.status, 200, "{}", r.body);
    paid_ok += 1;
    // Back: A answers again by itself.
    redis.restart();
    assert_eq!(until(200, || echo(&a)), 200, "A reconnected to Redis");
    assert_eq!(paid(&a).status, 200);
    paid_ok += 1;

    // PostgreSQL away: free calls go on; payments fail closed on both.
    pg.server_mut().unwrap().kill();
    assert_eq!(echo(&a).status, 200);
    for gw in [&a, &b] {
        let r = paid(gw);
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], -31503, "{}", r.body);
    }
    // No token can be issued either: a call that would be challenged gets 503, not a 402
    // without a way to pay.
    let r = http(
        b.addr,
        "/mcp",
        &[("turnpike-challenge", "http")],
        &call(9, "whoami", json!({})),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], -31503, "{}", r.body);
    pg.server_mut().unwrap().restart();
    for gw in [&a, &b] {
        assert_eq!(until(200, || paid(gw)), 200, "reconnected to PostgreSQL");
        paid_ok += 1;
    }

    // Every call that was answered was debited once, every refused one given back.
    let s = store(&pg, &rt);
    let entries = rt.block_on(s.entries(token)).unwrap();
    let debits = entries
        .iter()
        .filter(|e| e.kind == LedgerKind::Debit)
        .count();
    let refunds = entries
        .iter()
        .filter(|e| e.kind == LedgerKind::Refund)
        .count();
    assert_eq!(debits - refunds, paid_ok, "{entries:?}");
    assert_eq!(
        rt.block_on(s.balance(token)).unwrap(),
        Some((10_000, 1000 * paid_ok as u64))
    );
}

/// One puzzle-paid round: a challenge from `challenger`, solved, the solution sent to `a` and
/// `b` at once. `None` when no challenge was given (the store is away: 503); else the
/// Authorization value and the two statuses.
fn pow_round(
    challenger: SocketAddr,
    a: SocketAddr,
    b: SocketAddr,
    n: i64,
) -> Option<(String, [u16; 2])> {
    let req = call(n, "slow", json!({"steps": 1, "delay_ms": 0}));
    let r = http(challenger, "/mcp", &[("turnpike-challenge", "http")], &req);
    if r.status != 402 {
        assert_eq!(r.status, 503, "a challenge or a closed store: {}", r.body);
        return None;
    }
    let parsed = turnpike_client::parse_challenges(&r.body);
    let pow = parsed.first().expect("a PoW challenge");
    let nonces = turnpike_client::solve(&pow.token, 1, None).unwrap();
    let auth = turnpike_client::authorization_value(&pow.challenge, &nonces);
    let h = [
        ("authorization", auth.as_str()),
        ("turnpike-challenge", "http"),
    ];
    let statuses = std::thread::scope(|s| {
        let x = s.spawn(|| http(a, "/mcp", &h, &req).status);
        let y = s.spawn(|| http(b, "/mcp", &h, &req).status);
        [x.join().unwrap(), y.join().unwrap()]
    });
    Some((auth, statuses))
}

/// The master lost is the one that holds the caller's bucket (every call comes from
/// 127.0.0.1): its limits and the records of the solutions issued to it are in that bucket's
/// slot (a master holding none of a caller's buckets is nothing to that caller's calls).
#[test]
fn a_redis_cluster_master_lost_under_load_fails_closed_then_recovers_nothing_accepted_twice() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let bucket = turnpike_store::cluster_bucket("anon:127.0.0.1");
    let victim = cluster.node_of(&format!("{{{bucket:02x}}}"));
    let pg = PgDb::new();
    let (_rt, up) = start_upstream();
    // Not what this test is about: once the master is back (empty), every solution of a
    // challenge issued up to the second after the bucket's first spend is refused once (its
    // epoch), and the three threads ask fresh challenges as fast as they go: past the default
    // challenge budget (burst 60 at 20/s) on a quick machine.
    let extra = "[limits.challenges]\nburst = 10000\nrate = \"1000/s\"\n";
    let a = start_gateway("a", up, &cluster.url(), &pg, extra);
    let b = start_gateway("b", up, &cluster.url(), &pg, extra);
    let (a, b) = (a.addr, b.addr);
    // Every solution and what each of the two instances answered to it.
    let rounds: std::sync::Mutex<Vec<(String, [u16; 2])>> = std::sync::Mutex::default();
    let closed = std::sync::atomic::AtomicU32::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let accepted = || {
        rounds
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.contains(&200))
            .count()
    };
    let wait_until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let before_kill = std::thread::scope(|s| {
        for w in 0..3i64 {
            let (rounds, closed, stop) = (&rounds, &closed, &stop);
            s.spawn(move || {
                let mut n = w * 1_000_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    match pow_round(if n % 2 == 0 { a } else { b }, a, b, n) {
                        Some(round) => {
                            let [x, y] = round.1;
                            if x == 503 || y == 503 {
                                closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            rounds.lock().unwrap().push(round);
                        }
                        None => {
                            closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            });
        }
        wait_until("calls accepted before the kill", &|| accepted() >= 20);
        let before_kill = rounds.lock().unwrap().len();
        cluster.kill_node(victim);
        let c0 = closed.load(std::sync::atomic::Ordering::Relaxed);
        wait_until("calls fail closed while a master is away", &|| {
            closed.load(std::sync::atomic::Ordering::Relaxed) >= c0 + 10
        });
        cluster.restart_node(victim);
        let a0 = accepted();
        wait_until("calls accepted again once the master is back", &|| {
            accepted() >= a0 + 20
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        before_kill
    });
    let rounds = rounds.into_inner().unwrap();
    for (auth, statuses) in &rounds {
        // Each solution: accepted at most once, else refused as used (402) or closed (503).
        assert!(
            statuses.iter().filter(|s| **s == 200).count() <= 1,
            "accepted twice: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| [200, 402, 503].contains(s)),
            "{auth}: {statuses:?}"
        );
    }
    // Every solution accepted before the master was lost, presented again to both: refused
    // (their records were on the lost master, in the caller's bucket: by the bucket's epoch).
    let replays: Vec<_> = rounds[..before_kill]
        .iter()
        .filter(|(_, s)| s.contains(&200))
        .collect();
    assert!(!replays.is_empty());
    for (auth, _) in replays {
        for gw in [a, b] {
            let h = [
                ("authorization", auth.as_str()),
                ("turnpike-challenge", "http"),
            ];
            // Every round is the same call (its id aside), so the solution is bound to this one.
            let r = http(
                gw,
                "/mcp",
                &h,
                &call(1, "slow", json!({"steps": 1, "delay_ms": 0})),
            );
            assert_eq!(
                r.status, 402,
                "a solution accepted again after the failover: {}",
                r.body
            );
        }
    }
    assert!(cluster.is_up());
}
