//! A DPoP proof accepted before the shared spent set (Redis) lost its data is refused after it,
//! and a fresh proof is accepted: a real authorization server (oidc-provider) issues the
//! DPoP-bound token, a redis-server of the test's own is killed and restarted empty.

mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use turnpike_core::Credential;
use turnpike_oauth::{ErrorCode, OAuthConfig, OAuthOutcome, OAuthRail};
use turnpike_store::{RedisSpentSet, RedisSpentSetOptions};
use turnpike_testkit::redis::RedisServer;

fn dpop(token: &str, proof: &str) -> Credential {
    Credential::from(turnpike_oauth::BearerCredential {
        token: token.to_string(),
        dpop: Some(proof.to_string()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_used_before_redis_lost_its_data_is_refused_after() {
    let p = Provider::start("/as").await;
    let mut server = RedisServer::start();
    let set = RedisSpentSet::new(&server.url(), RedisSpentSetOptions::default()).unwrap();
    let probe = set.clone();
    let cfg = OAuthConfig::new(p.issuer.clone()).with_default_resource(ES);
    let rail = Arc::new(OAuthRail::new(cfg, Arc::new(set)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.epoch_start().await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the epoch was not opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let needed = vec!["mcp:tools".to_string()];
    let key = DpopKey::es256();
    let token = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", Some(&key))
        .await;
    let proof = key.proof(&ProofSpec::new("POST", ES, Some(&token)));
    let check = |proof: String| {
        let (rail, token, needed) = (rail.clone(), token.clone(), needed.clone());
        async move {
            rail.verify_detailed(&dpop(&token, &proof), &needed, None, now())
                .await
        }
    };
    let o = check(proof.clone()).await;
    assert!(matches!(o, OAuthOutcome::Pass(_)), "{o:?}");
    let replayed = |o: &OAuthOutcome| {
        matches!(o, OAuthOutcome::Rejected(r)
            if r.code == ErrorCode::InvalidDpopProof && r.description.contains("already used"))
    };
    let o = check(proof.clone()).await;
    assert!(replayed(&o), "{o:?}");

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let o = loop {
        match check(proof.clone()).await {
            OAuthOutcome::Unavailable(_) => {
                assert!(Instant::now() < deadline, "Redis did not come back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            o => break o,
        }
    };
    assert!(replayed(&o), "the proof replayed after the loss: {o:?}");

    // A fresh proof passes (proofs made up to the second after the loss was seen are refused
    // once: new ones are made until the clock has moved on, within a deadline).
    let deadline = Instant::now() + Duration::from_secs(10);
    let fresh = loop {
        let proof = key.proof(&ProofSpec::new("POST", ES, Some(&token)));
        let o = check(proof.clone()).await;
        if matches!(o, OAuthOutcome::Pass(_)) {
            break proof;
        }
        assert!(replayed(&o), "{o:?}");
        assert!(Instant::now() < deadline, "no fresh proof accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let o = check(fresh).await;
    assert!(replayed(&o), "{o:?}");
}
