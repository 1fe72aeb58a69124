//! Anonymous floods on L402 prices through the real gateway (dev Lightning backend, SQLite
//! store), from many loopback source addresses: a 402 writes no row anywhere, a caller over
//! its invoice rate gets 429 with Retry-After (or only the proof-of-work challenge when the
//! price offers it too) while another address still gets its invoice, the process-wide bound
//! holds, and a paid token is recorded once, on its first use.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn data_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "turnpike-l402-flood-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn flood_config(upstream: SocketAddr, dir: &Path, per_caller: u32, global: u32) -> String {
    format!(
        r#"{head}
[tools.echo]
l402 = {{ msat = 1000 }}
[tools.add]
pow = 3000
l402 = {{ msat = 1000 }}
[tools.default]
l402 = {{ msat = 1000, mode = "balance", bundle = 3000 }}

[l402]
invoices_per_minute_per_caller = {per_caller}
invoices_per_minute = {global}

# Not what this test is about: each address sends 100 challenges within a few seconds,
# past the default challenge budget (burst 60 at 20/s) when the machine is quick.
[limits.challenges]
burst = 10000
rate = "1000/s"

[lightning]
backend = "dev"
[lightning.dev_wallet]
listen = "127.0.0.1:0"
"#,
        head = config_head(upstream, &dir.display().to_string(), ""),
    )
}

/// `127.0.<a>.<b>`.
fn lo(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
}

/// One HTTP/1.1 POST from source address `src` (a fresh connection, closed after the reply):
/// the status and the response head's fields (lower-case names).
async fn post_from(
    src: IpAddr,
    gw: SocketAddr,
    body: &Value,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(src, 0)).unwrap();
    let mut s = sock.connect(gw).await.unwrap();
    let body = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {gw}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("the gateway answers within 20 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, fields, rest.to_owned())
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Rows in every table of the SQLite database at `path`.
fn counts(path: &Path) -> Vec<(String, i64)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(names.iter().any(|n| n == "l402_ledger"), "{names:?}");
    names
        .into_iter()
        .map(|n| {
            let k: i64 = c
                .query_row(&format!("SELECT count(*) FROM \"{n}\""), [], |r| r.get(0))
                .unwrap();
            (n, k)
        })
        .collect()
}

fn count(all: &[(String, i64)], table: &str) -> i64 {
    all.iter().find(|(n, _)| n == table).map_or(0, |(_, k)| *k)
}

/// Waits (bounded) until the gateway has created its SQLite store.
async fn store_file(dir: &Path) -> PathBuf {
    let path = dir.join("l402.sqlite");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(tokio::time::Instant::now() < deadline, "no l402.sqlite");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_402s_writes_nothing_and_is_bounded_per_address() {
    let (up, _log) = start_upstream(true).await;
    let dir = data_dir();
    let gw = start_gateway_with(&flood_config(up, &dir, 50, 100_000)).await;
    // The store is opened when the gateway starts; the first request proves it is serving.
    let (st, ..) = post_from(lo(0, 200), gw, &call(0, "slow", json!({})), &[]).await;
    assert!(st == 402 || st == 200, "{st}");
    let db = store_file(&dir).await;
    let before = counts(&db);

    // 2,000 anonymous calls from 20 addresses, 100 each: 50 invoices each (a burst of a
    // minute's worth, refilled at 50 a minute while the flood lasts), then 429.
    let started = std::time::Instant::now();
    let (mut got_402, mut got_429) = (0u64, 0u64);
    let mut per_address = [0u64; 20];
    for round in 0..100 {
        for a in 0..20u8 {
            let (status, fields, body) = post_from(
                lo(0, 10 + a),
                gw,
                &call(i64::from(round), "echo", json!({"text": "x"})),
                &[],
            )
            .await;
            match status {
                402 => {
                    got_402 += 1;
                    per_address[usize::from(a)] += 1;
                    let www = field(&fields, "www-authenticate");
                    assert!(www[0].starts_with("L402 macaroon=\""), "{www:?}");
                }
                429 => {
                    got_429 += 1;
                    assert!(round >= 50, "address {a} limited at round {round}");
                    let retry: u64 = field(&fields, "retry-after")[0].parse().unwrap();
                    assert!((1..=2).contains(&retry), "{retry}");
                    assert!(field(&fields, "www-authenticate").is_empty());
                    let v: Value = serde_json::from_str(&body)
                        .unwrap_or_else(|e| panic!("{e}: {fields:?} {body:?}"));
                    assert_eq!(v["error"]["code"], -31429, "{v}");
                    assert_eq!(v["error"]["data"]["policy"], "l402_invoices", "{v}");
                }
                other => panic!("status {other}: {body}"),
            }
        }
    }
    let elapsed = started.elapsed();
    // What refilled during the flood, per address.
    let refill = elapsed.as_secs() * 50 / 60 + 1;
    for n in per_address {
        assert!(
            (50..=50 + refill).contains(&n),
            "{n} invoices, refill {refill}"
        );
    }
    assert_eq!(got_402 + got_429, 2000);
    assert!(got_429 >= 1000 - 20 * refill, "{got_429}");
    assert_eq!(counts(&db), before, "a 402 writes no row in any table");
    eprintln!("2000 calls from 20 addresses in {elapsed:?}; rows: {before:?}");

    // Another address still gets its invoice; a limited one on a dual-rail price gets only
    // the proof-of-work challenge (402), never an invoice.
    let (status, fields, _) =
        post_from(lo(1, 1), gw, &call(1, "echo", json!({"text": "x"})), &[]).await;
    assert_eq!(status, 402);
    assert!(field(&fields, "www-authenticate")[0].starts_with("L402 "));
    let (status, fields, _) =
        post_from(lo(0, 10), gw, &call(1, "add", json!({"a": 1, "b": 2})), &[]).await;
    assert_eq!(status, 402);
    let www = field(&fields, "www-authenticate");
    assert_eq!(www.len(), 1, "{www:?}");
    assert!(!www[0].starts_with("L402"), "{www:?}");

    // Paid, then used: the token, its payment row, once; a replay is refused.
    let (status, fields, _) =
        post_from(lo(1, 2), gw, &call(2, "echo", json!({"text": "paid"})), &[]).await;
    assert_eq!(status, 402);
    let www = field(&fields, "www-authenticate")[0].to_owned();
    let (mac, inv) = www
        .strip_prefix("L402 macaroon=\"")
        .and_then(|r| r.split_once("\", invoice=\""))
        .unwrap();
    let pre = pay(&dir, inv.trim_end_matches('"')).await;
    assert_eq!(counts(&db), before, "paying writes nothing either");
    let auth = format!("L402 {mac}:{pre}");
    let paid = call(3, "echo", json!({"text": "paid"}));
    let (status, _, body) = post_from(lo(1, 2), gw, &paid, &[("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{body}");
    let after = counts(&db);
    assert_eq!(
        count(&after, "l402_tokens"),
        count(&before, "l402_tokens") + 1
    );
    assert_eq!(
        count(&after, "l402_ledger"),
        count(&before, "l402_ledger") + 1
    );
    assert_eq!(count(&after, "l402_root_keys"), 0);
    let (status, _, body) = post_from(lo(1, 3), gw, &paid, &[("Authorization", &auth)]).await;
    assert_eq!(status, 402, "{body}");
    assert!(body.contains("token already used"), "{body}");
    assert_eq!(counts(&db), after);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_wide_invoice_bound_holds_across_addresses() {
    let (up, _log) = start_upstream(true).await;
    let dir = data_dir();
    let gw = start_gateway_with(&flood_config(up, &dir, 1000, 30)).await;
    let started = std::time::Instant::now();
    let (mut got_402, mut got_429) = (0u64, 0u64);
    for a in 0..60u8 {
        let (status, fields, body) =
            post_from(lo(2, a), gw, &call(1, "echo", json!({"text": "x"})), &[]).await;
        match status {
            402 => got_402 += 1,
            429 => {
                got_429 += 1;
                let retry: u64 = field(&fields, "retry-after")[0].parse().unwrap();
                assert!((1..=3).contains(&retry), "{retry}");
            }
            other => panic!("status {other}: {body}"),
        }
    }
    let refill = started.elapsed().as_secs() * 30 / 60 + 1;
    assert_eq!(got_402 + got_429, 60);
    assert!(
        (30..=30 + refill).contains(&got_402),
        "{got_402}, refill {refill}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
