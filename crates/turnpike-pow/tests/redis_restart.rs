//! A proof-of-work solution accepted before Redis lost its data (killed, restarted empty: run
//! without persistence) is refused after it; a fresh solution is accepted. Against a real
//! redis-server of the test's own on a loopback port.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_core::{CallFacts, Credential, Rail, Verdict};
use turnpike_pow::puzzle::{check_nonce, ChallengeToken};
use turnpike_pow::PowCredential;
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::{RedisSpentSet, RedisSpentSetOptions};
use turnpike_testkit::redis::RedisServer;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn call() -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [7; 32],
        caller: None,
        peer: Some("127.0.0.1".parse().unwrap()),
        now: now(),
    }
}

const EFFORT: u64 = 1000;

/// A challenge for `call` and its solution.
async fn solved(rail: &PowRail, call: &CallFacts) -> Credential {
    let ch = rail
        .challenge(call, &turnpike_pow::offer(EFFORT))
        .await
        .expect("a challenge");
    let text = ch.details["challenge"].as_str().unwrap().to_string();
    let token = ChallengeToken::decode(&text).unwrap();
    let solution = (0..token.subpuzzles())
        .map(|i| {
            (0u64..)
                .find(|&n| check_nonce(token.raw(), i, n, token.target()))
                .unwrap()
        })
        .collect();
    Credential::from(PowCredential {
        challenge: text,
        solution,
    })
}

async fn verify(rail: &PowRail, call: &CallFacts, cred: &Credential) -> Verdict {
    rail.verify(call, &turnpike_pow::offer(EFFORT), cred).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solution_spent_before_redis_lost_its_data_is_refused_after() {
    let mut server = RedisServer::start();
    let set = RedisSpentSet::new(&server.url(), RedisSpentSetOptions::default()).unwrap();
    let probe = set.clone();
    let keys = KeyRing::from_secrets(vec![(1, [9; 32])]).unwrap();
    let rail = PowRail::new(PowConfig::default(), keys, Arc::new(set));
    // The set opened its epoch when it was created.
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.epoch_start().await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the epoch was not opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let c = call();
    let spent = solved(&rail, &c).await;
    let v = verify(&rail, &c, &spent).await;
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
    let v = verify(&rail, &call(), &spent).await;
    assert!(
        matches!(v, Verdict::Stale(_)),
        "replayed before the loss: {v:?}"
    );

    server.restart();
    // The replay, once Redis answers again (before that: unavailable, fail closed).
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        match verify(&rail, &call(), &spent).await {
            Verdict::Unavailable(_) => {
                assert!(Instant::now() < deadline, "Redis did not come back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            v => break v,
        }
    };
    match &v {
        Verdict::Stale(r) => assert_eq!(r.reason, "already used"),
        other => panic!("the replay after the loss was not refused: {other:?}"),
    }

    // A fresh challenge passes (challenges issued up to the second after the loss was seen are
    // refused once, so this tries fresh ones until the clock has moved on, within a deadline).
    let deadline = Instant::now() + Duration::from_secs(10);
    let fresh = loop {
        let c = call();
        let cred = solved(&rail, &c).await;
        match verify(&rail, &c, &cred).await {
            Verdict::Pass(_) => break cred,
            Verdict::Stale(r) if r.reason == "already used" => {
                assert!(Instant::now() < deadline, "no fresh solution accepted");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("{other:?}"),
        }
    };
    let v = verify(&rail, &call(), &fresh).await;
    assert!(
        matches!(v, Verdict::Stale(_)),
        "the fresh one is single-use too: {v:?}"
    );
}
