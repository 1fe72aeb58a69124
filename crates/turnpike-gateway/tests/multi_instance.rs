//! Two gateway instances on one real Redis (a redis-server of the test's own, on a free
//! loopback port), and on a real three-master Redis Cluster (`redis+cluster://`): a limit of N
//! is N across both under a concurrent burst, and one proof-of-work solution sent to both at
//! once is accepted exactly once. A puzzle-paid call costs one script, its limits and its
//! solution's spend together: on one Redis, and on a cluster (the challenge carries its caller's
//! bucket, so the solution's record is in the slot of the caller's limits); a solution presented
//! by another caller costs two there and is still accepted once.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};

use turnpike_testkit::redis::{RedisCluster, RedisServer};

use serde_json::json;
use support::*;

/// Two gateways on the Redis at `redis_url` in front of one upstream, each with `extra`
/// appended to the config.
async fn two_gateways(redis_url: &str, extra: &str) -> (SocketAddr, SocketAddr) {
    let (up, _log) = start_upstream(true).await;
    let text = format!(
        "{}\n[store]\nbackend = \"redis\"\nredis_url = \"{}\"\ntimeout_ms = 2000\n{extra}",
        config_text(up, ""),
        redis_url
    );
    let a = start_gateway_with(&text).await;
    let b = start_gateway_with(&text).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_of_n_is_n_across_both_instances() {
    let redis = RedisServer::start();
    limit_of_n_is_n(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_of_n_is_n_across_both_instances_on_a_redis_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    limit_of_n_is_n(&cluster.url()).await;
}

async fn limit_of_n_is_n(redis_url: &str) {
    let (a, b) = two_gateways(
        redis_url,
        r#"
[limits.default]
burst = 50
rate = "20/s"
concurrency = 1000
[limits.tools.echo]
burst = 10
rate = "1/h"
"#,
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let gw = if i % 2 == 0 { a } else { b };
        tasks.push(tokio::spawn(async move {
            post(gw, &[], &call(i, "echo", json!({"text": format!("{i}")})))
                .await
                .status
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 10, "exactly the burst across both instances");
    assert_eq!(limited, 30);
    // Either instance now refuses.
    for gw in [a, b] {
        let r = post(gw, &[], &call(99, "echo", json!({"text": "late"}))).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.json()["error"]["data"]["policy"], "tool:echo");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_pow_solution_is_accepted_once_across_both() {
    let redis = RedisServer::start();
    pow_solution_once(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_pow_solution_is_accepted_once_across_both_on_a_redis_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    pow_solution_once(&cluster.url()).await;
}

async fn pow_solution_once(redis_url: &str) {
    let (a, b) = two_gateways(
        redis_url,
        // Every attempt is counted before its solution is verified: room for all of them.
        "[limits.loop_brake]\nenabled = false\n[limits.tools.dear]\nburst = 1000\nrate = \"1000/s\"\n",
    )
    .await;
    for round in 0..3 {
        let req = call(round, "dear", json!({"n": round}));
        let r = post(a, &[], &req).await;
        assert_eq!(r.status, 402);
        let (token, nonces) = solve(&r.text());
        let auth = turnpike_client::authorization_value(&token, &nonces);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let gw = if i % 2 == 0 { a } else { b };
            let auth = auth.clone();
            let req = req.clone();
            tasks.push(tokio::spawn(async move {
                let r = post(
                    gw,
                    &[("authorization", &auth), ("turnpike-challenge", "http")],
                    &req,
                )
                .await;
                (r.status.as_u16(), r.json())
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                200 => {
                    ok += 1;
                    assert_eq!(
                        body["result"]["content"][0]["text"],
                        format!("dear {round}")
                    );
                }
                402 => {
                    let reason = body["error"]["data"]["refusals"][0]["reason"].to_string();
                    assert!(reason.contains("already used"), "{reason}");
                }
                s => panic!("unexpected status {s}: {body}"),
            }
        }
        assert_eq!(
            ok, 1,
            "round {round}: accepted exactly once across both instances"
        );
    }
}

/// On one Redis a call paid by a puzzle solution is one `EVALSHA`: the limits script carries the
/// solution's spend (the challenge before it is another call).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_puzzle_paid_call_is_one_redis_script() {
    let redis = RedisServer::start();
    let (a, _) = two_gateways(
        &redis.url(),
        "[limits.tools.dear]\nburst = 100\nrate = \"100/s\"\n",
    )
    .await;
    let evalsha = || {
        let info = redis.command("INFO commandstats").unwrap_or_default();
        let field = |name: &str| -> u64 {
            info.lines()
                .find(|l| l.starts_with("cmdstat_evalsha:"))
                .and_then(|l| {
                    l.split([':', ','])
                        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        // A script the server had not loaded yet is answered NOSCRIPT once, then loaded.
        field("calls") - field("failed_calls")
    };
    paid_rounds_run_one_script(a, evalsha).await;
}

/// Three calls to `dear` through `gw`, each paid by a fresh puzzle solution, each running
/// exactly one script on the Redis side (`scripts` counts those run so far).
async fn paid_rounds_run_one_script(gw: SocketAddr, scripts: impl Fn() -> u64) {
    for round in 0..3 {
        let req = call(round, "dear", json!({"n": round}));
        let r = post(gw, &[], &req).await;
        assert_eq!(r.status, 402);
        let (token, nonces) = solve(&r.text());
        let auth = turnpike_client::authorization_value(&token, &nonces);
        let before = scripts();
        let r = post(
            gw,
            &[("authorization", &auth), ("turnpike-challenge", "http")],
            &req,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            scripts() - before,
            1,
            "round {round}: one script for limits and spend"
        );
    }
}

/// Scripts the Redis on `port` ran: `EVALSHA` calls executed (those refused before running,
/// `NOSCRIPT` or a redirection, not counted). `INFO commandstats` over a plain connection.
fn scripts_run(port: u16) -> u64 {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"INFO commandstats\r\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // A bulk string: `$<len>\r\n<len bytes>\r\n`.
    loop {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the connection");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        let done = text
            .strip_prefix('$')
            .and_then(|r| r.split_once("\r\n"))
            .is_some_and(|(len, body)| len.parse::<usize>().is_ok_and(|l| body.len() >= l + 2));
        if done {
            break;
        }
    }
    let info = String::from_utf8_lossy(&out);
    let Some(line) = info.lines().find(|l| l.starts_with("cmdstat_evalsha:")) else {
        return 0;
    };
    let field = |f: &str| -> u64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(&format!("{f}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    field("calls") - field("failed_calls") - field("rejected_calls")
}

/// POSTs a JSON body to the gateway from the local address `from` (another caller on
/// loopback: 127.0.0.2 and so on).
async fn post_from(
    from: IpAddr,
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Reply {
    use http_body_util::BodyExt;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(Some(from));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    let req = request(addr, http::Method::POST, headers, body.to_string());
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// On a Redis Cluster a call paid by a puzzle solution is one `EVALSHA` too (summed over the
/// three masters): the challenge's nonce begins with the bucket of the caller it was issued to,
/// the solution's record is in that bucket, and the caller's limits are in its slot. A solution
/// presented by another caller (another loopback address, limits in another bucket) passes in
/// two scripts, and is accepted once whoever presents it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_puzzle_paid_call_is_one_redis_script_on_a_redis_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let (a, b) = two_gateways(
        &cluster.url(),
        "[limits.tools.dear]\nburst = 100\nrate = \"100/s\"\n",
    )
    .await;
    let ports = cluster.ports();
    let scripts = || ports.iter().map(|p| scripts_run(*p)).sum::<u64>();
    paid_rounds_run_one_script(a, scripts).await;
    // Another caller: a loopback address whose bucket is not 127.0.0.1's.
    let here = turnpike_store::cluster_bucket("anon:127.0.0.1");
    let other: IpAddr = (2..=254u8)
        .map(|i| IpAddr::from([127, 0, 0, i]))
        .find(|ip| turnpike_store::cluster_bucket(&format!("anon:{ip}")) != here)
        .unwrap();
    let req = call(10, "dear", json!({"n": 10}));
    let r = post(a, &[], &req).await;
    let (token, nonces) = solve(&r.text());
    let auth = turnpike_client::authorization_value(&token, &nonces);
    let before = scripts();
    let h = [
        ("authorization", auth.as_str()),
        ("turnpike-challenge", "http"),
    ];
    let r = post_from(other, b, &h, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        scripts() - before,
        2,
        "another caller's limits, then the spend"
    );
    // Sent again by both callers to both instances: refused.
    for (i, gw) in [a, b].into_iter().enumerate() {
        let again = if i == 0 {
            post(gw, &h, &req).await
        } else {
            post_from(other, gw, &h, &req).await
        };
        assert_eq!(again.status, 402, "{}", again.text());
        assert!(again.text().contains("already used"), "{}", again.text());
    }
    // A fresh solution sent 16 times at once, by both callers to both instances: accepted once.
    let req = call(11, "dear", json!({"n": 11}));
    let r = post(a, &[], &req).await;
    let (token, nonces) = solve(&r.text());
    let auth = turnpike_client::authorization_value(&token, &nonces);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (gw, from) = match i % 4 {
            0 => (a, None),
            1 => (b, None),
            2 => (a, Some(other)),
            _ => (b, Some(other)),
        };
        let (auth, req) = (auth.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let h = [
                ("authorization", auth.as_str()),
                ("turnpike-challenge", "http"),
            ];
            let r = match from {
                Some(ip) => post_from(ip, gw, &h, &req).await,
                None => post(gw, &h, &req).await,
            };
            r.status.as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 1, "accepted once, whoever presents it");
}
