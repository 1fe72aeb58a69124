//! A flood of unauthenticated priced calls from one loopback address, against a real gateway
//! (over TCP on 127.0.0.1) in front of a real rmcp server, with the default limits (no
//! `[limits]` section): the flood gets 429s with `Retry-After` once its challenge budget is
//! spent, and the effort, the availability and the answers seen by other addresses do not
//! change. Each client socket binds its own 127/8 source address before connecting.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use support::*;

/// The base price of `dear` in the test config, and of `pricey` (within the default ceiling of
/// 10^10 hashes, but not twice within it).
const DEAR: u64 = 3000;
const PRICEY: u64 = 9_000_000_000;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client whose every connection leaves from `source` (a 127/8 address).
fn client_from(source: &str) -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_local_address(Some(source.parse::<IpAddr>().unwrap()));
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(c)
}

async fn post_from(
    client: &HttpClient,
    gw: SocketAddr,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    let req = request(gw, Method::POST, headers, body.to_string());
    let resp = client.request(req).await.expect("the gateway answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// The effort of the PoW challenge in a 402 (`error.data.challenges[]`).
fn pow_effort(r: &Reply) -> Option<u64> {
    r.json()["error"]["data"]["challenges"]
        .as_array()?
        .iter()
        .find(|c| c["rail"] == "pow")
        .and_then(|c| c["effort"].as_u64())
}

/// A 402 with a PoW challenge of `effort`, no 429, no 503.
fn assert_challenged(r: &Reply, effort: u64, what: &str) {
    assert_eq!(r.status, 402, "{what}: {} {}", r.status, r.text());
    assert_eq!(pow_effort(r), Some(effort), "{what}: {}", r.text());
    let www = r.headers.get("www-authenticate").expect("a challenge line");
    assert!(www.to_str().unwrap().starts_with("PoW "), "{what}");
}

/// The gateway under test: default limits, and a low `calm_rps` so that a controller that
/// counted challenges as load would react to this flood within a second.
async fn gateway() -> (SocketAddr, Log) {
    let (up, log) = start_upstream(true).await;
    let text = format!(
        "{}\n[tools.dear]\npow = {DEAR}\n[tools.pricey]\npow = {PRICEY}\n\
         [pow.load]\ncalm_rps = 20\nraise_interval_secs = 1\n",
        config_text(up, "")
    );
    (start_gateway_with(&text).await, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenge_flood_from_one_address_is_limited_and_changes_nothing_for_others() {
    let (gw, log) = gateway().await;
    let other = client_from("127.0.0.3");

    // Before the flood: what the second address is asked.
    let before = post_from(&other, gw, &[], &call(1, "dear", json!({"n": 1}))).await;
    assert_challenged(&before, DEAR, "before");
    let pricey_before = post_from(&other, gw, &[], &call(2, "pricey", json!({"n": 1}))).await;
    assert_challenged(&pricey_before, PRICEY, "pricey before");

    // The flood: 8 connections from 127.0.0.2, at most 4000 requests and 4 seconds in all.
    const MAX_REQUESTS: u64 = 4000;
    const MAX_TIME: Duration = Duration::from_secs(4);
    let sent = Arc::new(AtomicU64::new(0));
    let challenged = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut flooders = Vec::new();
    for w in 0..8 {
        let (sent, challenged, limited) = (sent.clone(), challenged.clone(), limited.clone());
        flooders.push(tokio::spawn(async move {
            let c = client_from("127.0.0.2");
            let mut i = 0i64;
            while started.elapsed() < MAX_TIME
                && sent.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
            {
                i += 1;
                let r =
                    post_from(&c, gw, &[], &call(i, "dear", json!({"n": w * 100_000 + i}))).await;
                match r.status.as_u16() {
                    402 => {
                        challenged.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => {
                        let retry: u64 = r
                            .headers
                            .get("retry-after")
                            .expect("a 429 says when to retry")
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert!(retry >= 1);
                        let v = r.json();
                        assert_eq!(v["error"]["code"], -31429);
                        assert_eq!(v["error"]["data"]["policy"], "challenge");
                        limited.fetch_add(1, Ordering::Relaxed);
                    }
                    s => panic!("the flood got {s}: {}", r.text()),
                }
            }
        }));
    }

    // During the flood, the second address: the same effort, its challenge and its paid answer,
    // no 429, no 503; the tool priced near the ceiling stays offered at its price.
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(3) && rounds < 6 {
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = 10 + rounds;
        let r = post_from(&other, gw, &[], &call(id, "dear", json!({"n": id}))).await;
        assert_challenged(&r, DEAR, &format!("during the flood, round {rounds}"));
        let (token, nonces) = solve(&r.text());
        let auth = format!(
            "PoW challenge=\"{token}\", solution=\"{}\"",
            nonces
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let paid = post_from(
            &other,
            gw,
            &[("authorization", &auth)],
            &call(id, "dear", json!({"n": id})),
        )
        .await;
        assert_eq!(paid.status, 200, "the paid retry: {}", paid.text());
        assert_eq!(
            paid.json()["result"]["content"][0]["text"],
            format!("dear {id}")
        );
        let p = post_from(&other, gw, &[], &call(100 + id, "pricey", json!({"n": id}))).await;
        assert_challenged(
            &p,
            PRICEY,
            &format!("pricey during the flood, round {rounds}"),
        );
    }
    for f in flooders {
        f.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (challenged, limited) = (
        challenged.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
    );
    eprintln!(
        "flood: {} requests in {:.2} s from 127.0.0.2: {challenged} challenged (402), {limited} \
         limited (429); the second address did {rounds} rounds",
        challenged + limited,
        elapsed.as_secs_f64()
    );
    assert!(rounds >= 3, "the second address measured during the flood");
    assert!(limited > 0, "the flood was limited");
    // The default challenge budget: burst 60, then 20/s.
    let budget = 60 + 20 * elapsed.as_secs() + 20;
    assert!(
        challenged <= budget,
        "{challenged} challenges issued to one address in {elapsed:?} (at most {budget})"
    );
    assert!(challenged >= 60, "the burst was served: {challenged}");

    // After the flood: the same effort for the second address and for many other addresses,
    // each on its own budget.
    let after = post_from(&other, gw, &[], &call(50, "dear", json!({"n": 50}))).await;
    assert_challenged(&after, DEAR, "after");
    for x in 1..=16 {
        let c = client_from(&format!("127.0.1.{x}"));
        let r = post_from(&c, gw, &[], &call(60, "dear", json!({"n": x}))).await;
        assert_challenged(&r, DEAR, &format!("127.0.1.{x}"));
    }
    // Only the second address's paid calls reached the upstream.
    assert_eq!(tool_calls(&log), rounds as usize);
}

/// In band (an MCP client mid-session), a limited challenge is an `isError` result with the
/// same `Retry-After`, and a call that presents a refused credential counts against the same
/// budget as one that presents none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_and_in_band_challenges_count_too() {
    let (up, _log) = start_upstream(true).await;
    let text = format!(
        "{}\n[limits.challenges]\nburst = 4\nrate = \"1/min\"\n",
        config_text(up, "")
    );
    let gw = start_gateway_with(&text).await;
    let c = client_from("127.0.0.4");
    let bogus = "PoW challenge=\"AAAA\", solution=\"1,2\"";
    let bearer = "Bearer not-a-token";
    // Two bare calls, one in band, one with a bearer token no rail accepts: four challenges.
    let r = post_from(&c, gw, &[], &call(1, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 402);
    let r = post_from(&c, gw, &[], &call(2, "dear", json!({"n": 2}))).await;
    assert_eq!(r.status, 402);
    let r = post_from(
        &c,
        gw,
        &[("mcp-protocol-version", "2025-11-25")],
        &call(3, "dear", json!({"n": 3})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["isError"], true);
    let r = post_from(
        &c,
        gw,
        &[("authorization", bearer)],
        &call(4, "dear", json!({"n": 4})),
    )
    .await;
    assert_eq!(r.status, 402, "{}", r.text());
    assert_eq!(r.json()["error"]["data"]["refusals"][0]["rail"], "oauth");
    // The fifth: limited, whatever it presents.
    for (id, headers) in [
        (5, vec![]),
        (6, vec![("authorization", bearer)]),
        (7, vec![("mcp-protocol-version", "2025-11-25")]),
    ] {
        let r = post_from(&c, gw, &headers, &call(id, "dear", json!({"n": id}))).await;
        let retry: u64 = r
            .headers
            .get("retry-after")
            .unwrap_or_else(|| panic!("{id}: {} {}", r.status, r.text()))
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        if id == 7 {
            assert_eq!(r.status, 200);
            let v = r.json();
            assert_eq!(v["result"]["isError"], true);
            assert_eq!(
                v["result"]["structuredContent"]["turnpike"]["rate_limit"]["policy"],
                "challenge"
            );
        } else {
            assert_eq!(r.status, 429, "{id}: {}", r.text());
        }
    }
    // A call that presents only a puzzle solution is counted on the tool's budget before the
    // solution is checked (so a limited caller keeps it): a forged one is answered 401 here.
    let r = post_from(
        &c,
        gw,
        &[("authorization", bogus)],
        &call(8, "dear", json!({"n": 8})),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // Another address is untouched.
    let r = post_from(
        &client_from("127.0.0.5"),
        gw,
        &[],
        &call(9, "dear", json!({"n": 9})),
    )
    .await;
    assert_eq!(r.status, 402);
}
