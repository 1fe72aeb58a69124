//! Two gateway instances on one real Redis (a redis-server of the test's own, on a free
//! loopback port), and on a real three-master Redis Cluster (`redis+cluster://`): a limit of N
//! is N across both under a concurrent burst, and one proof-of-work solution sent to both at
//! once is accepted exactly once. On one Redis a puzzle-paid call costs one script: its limits
//! and its solution's spend together.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

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
    for round in 0..3 {
        let req = call(round, "dear", json!({"n": round}));
        let r = post(a, &[], &req).await;
        assert_eq!(r.status, 402);
        let (token, nonces) = solve(&r.text());
        let auth = turnpike_client::authorization_value(&token, &nonces);
        let before = evalsha();
        let r = post(
            a,
            &[("authorization", &auth), ("turnpike-challenge", "http")],
            &req,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            evalsha() - before,
            1,
            "round {round}: one script for limits and spend"
        );
    }
}
