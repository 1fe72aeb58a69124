//! The rail's handling of its issuer over time, against a small scripted issuer on loopback:
//! key rotation, key removal, outages (fail closed, keep serving cached keys, do not hammer),
//! metadata for the wrong issuer. Plus the wire forms the gateway serves (challenge, metadata
//! document, error responses), which need no issuer at all.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use turnpike_core::{Credential, Rail};
use turnpike_oauth::{
    credentials_from_headers, ErrorCode, HttpContext, OAuthConfig, OAuthOutcome, OAuthRail,
};

const RESOURCE: &str = "https://mcp.example.com/mcp";

/// A scripted issuer: path → (status, body), with hit counts.
#[derive(Default)]
struct Script {
    routes: HashMap<String, (u16, String)>,
    hits: HashMap<String, usize>,
}

struct MockIssuer {
    issuer: String,
    script: Arc<Mutex<Script>>,
}

impl MockIssuer {
    async fn start() -> MockIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(Script::default()));
        let s = script.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let mut st = s.lock();
                            *st.hits.entry(path.clone()).or_default() += 1;
                            let (status, body) =
                                st.routes.get(&path).cloned().unwrap_or((404, "{}".into()));
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let issuer = format!("http://127.0.0.1:{port}");
        let m = MockIssuer { issuer, script };
        m.route(
            "/.well-known/oauth-authorization-server",
            200,
            json!({"issuer": m.issuer, "jwks_uri": format!("{}/keys", m.issuer)}),
        );
        m
    }

    fn route(&self, path: &str, status: u16, body: Value) {
        self.script
            .lock()
            .routes
            .insert(path.to_string(), (status, body.to_string()));
    }

    fn jwks(&self, keys: &[&EcKey]) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| {
                let mut j = k.public_jwk();
                j["kid"] = json!(k.kid);
                j
            })
            .collect();
        self.route("/keys", 200, json!({ "keys": keys }));
    }

    fn hits(&self, path: &str) -> usize {
        self.script.lock().hits.get(path).copied().unwrap_or(0)
    }

    fn rail(&self, tweak: impl FnOnce(&mut OAuthConfig)) -> Arc<OAuthRail> {
        let mut cfg = OAuthConfig::new(self.issuer.clone()).with_default_resource(RESOURCE);
        tweak(&mut cfg);
        Arc::new(OAuthRail::new(cfg, Arc::new(turnpike_store::MemorySpentSet::new())).unwrap())
    }

    fn token(&self, key: &EcKey) -> String {
        let t = now();
        key.sign(
            &json!({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}),
            &json!({"iss": self.issuer, "sub": "u", "aud": RESOURCE, "iat": t, "exp": t + 600,
                    "scope": "mcp:tools", "client_id": "c"}),
        )
    }
}

fn bearer(token: &str) -> Credential {
    Credential::from(turnpike_oauth::BearerCredential {
        token: token.to_string(),
        dpop: None,
    })
}

async fn verify(rail: &OAuthRail, token: &str) -> OAuthOutcome {
    rail.verify_detailed(&bearer(token), &["mcp:tools".to_string()], None, now())
        .await
}

#[track_caller]
fn passed(o: &OAuthOutcome) {
    assert!(matches!(o, OAuthOutcome::Pass(_)), "expected a pass: {o:?}");
}

#[track_caller]
fn refused(o: &OAuthOutcome) {
    assert!(
        matches!(o, OAuthOutcome::Rejected(r) if r.code == ErrorCode::InvalidToken),
        "expected invalid_token: {o:?}"
    );
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_removed_keys_expire() {
    let m = MockIssuer::start().await;
    let (a, b) = (EcKey::generate("a"), EcKey::generate("b"));
    m.jwks(&[&a]);
    let rail = m.rail(|c| {
        c.jwks_min_refresh_secs = 30;
        c.jwks_cache_secs = 3;
    });
    passed(&verify(&rail, &m.token(&a)).await);
    assert_eq!(m.hits("/keys"), 1);
    // The issuer rotates in key b. Right after a fetch, b is unknown: its token waits for the
    // next fetch (the spacing) and passes.
    m.jwks(&[&a, &b]);
    passed(&verify(&rail, &m.token(&b)).await);
    assert_eq!(m.hits("/keys"), 2, "the unknown kid caused one refresh");
    passed(&verify(&rail, &m.token(&a)).await);
    // Key a is withdrawn; once the cache is older than jwks_cache_secs it is fetched again and
    // a no longer passes.
    m.jwks(&[&b]);
    passed(&verify(&rail, &m.token(&a)).await);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    refused(&verify(&rail, &m.token(&a)).await);
    passed(&verify(&rail, &m.token(&b)).await);
    assert_eq!(m.hits("/keys"), 3);
    assert_eq!(m.hits("/.well-known/oauth-authorization-server"), 1);
}

#[tokio::test]
async fn an_outage_keeps_cached_keys_and_does_not_hammer_the_issuer() {
    let m = MockIssuer::start().await;
    let a = EcKey::generate("a");
    m.jwks(&[&a]);
    let rail = m.rail(|c| {
        c.jwks_min_refresh_secs = 1;
        c.jwks_cache_secs = 1;
    });
    passed(&verify(&rail, &m.token(&a)).await);
    m.route("/keys", 500, json!({"error": "down"}));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..10 {
        passed(&verify(&rail, &m.token(&a)).await);
    }
    assert_eq!(
        m.hits("/keys"),
        2,
        "one failed refresh, then the stale keys serve"
    );
}

#[tokio::test]
async fn an_unreachable_issuer_fails_closed() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg =
        OAuthConfig::new(format!("http://127.0.0.1:{port}/as")).with_default_resource(RESOURCE);
    cfg.http_timeout_secs = 2;
    let rail =
        Arc::new(OAuthRail::new(cfg, Arc::new(turnpike_store::MemorySpentSet::new())).unwrap());
    let key = EcKey::generate("a");
    let t = now();
    let token = key.sign(
        &json!({"alg": "ES256", "kid": "a"}),
        &json!({"iss": format!("http://127.0.0.1:{port}/as"), "sub": "u", "aud": RESOURCE,
                "exp": t + 60}),
    );
    for _ in 0..5 {
        let o = verify(&rail, &token).await;
        assert!(matches!(o, OAuthOutcome::Unavailable(_)), "{o:?}");
        assert_eq!(o.status(), 503);
        assert!(matches!(
            o.to_verdict(),
            turnpike_core::Verdict::Unavailable(_)
        ));
    }
    // One discovery attempt (three candidate URLs), then nothing more within the interval.
    assert_eq!(rail.issuer_stats().metadata_fetches, 3);
    assert!(rail.warm_up().await.is_err());
}

#[tokio::test]
async fn metadata_for_another_issuer_is_not_used() {
    let m = MockIssuer::start().await;
    m.route(
        "/.well-known/oauth-authorization-server",
        200,
        json!({"issuer": "https://evil.example", "jwks_uri": format!("{}/keys", m.issuer)}),
    );
    let a = EcKey::generate("a");
    m.jwks(&[&a]);
    let rail = m.rail(|_| {});
    let err = rail.warm_up().await.unwrap_err().to_string();
    assert!(
        err.contains("names issuer \"https://evil.example\""),
        "{err}"
    );
    assert_eq!(m.hits("/keys"), 0);
    // An explicit jwks_uri skips discovery.
    let rail = m.rail(|c| c.jwks_uri = Some(format!("{}/keys", m.issuer)));
    passed(&verify(&rail, &m.token(&a)).await);
    assert_eq!(m.hits("/keys"), 1);
}

#[tokio::test]
async fn jwks_uri_must_be_https_off_loopback() {
    let m = MockIssuer::start().await;
    m.route(
        "/.well-known/oauth-authorization-server",
        200,
        json!({"issuer": m.issuer, "jwks_uri": "http://keys.example.com/jwks"}),
    );
    let rail = m.rail(|_| {});
    let err = rail.warm_up().await.unwrap_err().to_string();
    assert!(err.contains("is not https"), "{err}");
}

fn offline_rail(tweak: impl FnOnce(&mut OAuthConfig)) -> (Arc<OAuthRail>, EcKey) {
    let mut cfg = OAuthConfig::new("https://auth.example.com").with_default_resource(RESOURCE);
    cfg.scopes_supported = vec!["mcp:tools".into(), "mcp:read".into()];
    cfg.resource_name = Some("Example \"MCP\"".into());
    tweak(&mut cfg);
    let rail =
        Arc::new(OAuthRail::new(cfg, Arc::new(turnpike_store::MemorySpentSet::new())).unwrap());
    let key = EcKey::generate("k1");
    let mut jwk = key.public_jwk();
    jwk["kid"] = json!("k1");
    assert_eq!(
        rail.preload_jwks(json!({"keys": [jwk]}).to_string().as_bytes())
            .unwrap(),
        1
    );
    (rail, key)
}

#[tokio::test]
async fn challenge_metadata_and_error_answers_on_the_wire() {
    let (rail, _) = offline_rail(|_| {});
    assert_eq!(
        rail.resource_metadata_url(),
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        rail.metadata_paths(),
        [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource"
        ]
    );
    assert_eq!(
        rail.metadata_document(),
        json!({
            "resource": RESOURCE,
            "authorization_servers": ["https://auth.example.com"],
            "scopes_supported": ["mcp:tools", "mcp:read"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Example \"MCP\"",
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "Ed25519", "PS256", "RS256"],
            "dpop_bound_access_tokens_required": false,
        })
    );
    let facts = turnpike_core::CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now: now(),
    };
    let offer = turnpike_oauth::offer(vec!["mcp:tools".into(), "files:write".into()]);
    let c = rail.challenge(&facts, &offer).await.unwrap();
    assert_eq!(
        c.www_authenticate,
        "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", \
         scope=\"mcp:tools files:write\", DPoP algs=\"ES256 EdDSA Ed25519 PS256 RS256\""
    );
    assert_eq!(c.details["rail"], "oauth");
    assert_eq!(c.details["scheme"], "Bearer");
    assert_eq!(c.details["scope"], "mcp:tools files:write");
    assert_eq!(
        c.details["authorization_servers"],
        json!(["https://auth.example.com"])
    );
    assert_eq!(c.details["resource_metadata"], rail.resource_metadata_url());
    assert_eq!(c.details["www_authenticate"], json!(c.www_authenticate));
    // An offer on another rail gets no OAuth challenge; a call naming no scope is challenged
    // with scopes_supported.
    assert!(rail
        .challenge(
            &facts,
            &turnpike_core::Offer::new(turnpike_core::RailId::new("pow"), Default::default())
        )
        .await
        .is_none());
    let c = rail
        .challenge(&facts, &turnpike_oauth::offer(vec![]))
        .await
        .unwrap();
    assert!(c.www_authenticate.contains("scope=\"mcp:tools mcp:read\""));

    // Without DPoP the challenge is Bearer alone and the metadata says nothing of DPoP.
    let (plain, _) = offline_rail(|c| c.dpop_algorithms.clear());
    let c = plain.challenge_for(&[]);
    assert!(!c.www_authenticate.contains("DPoP"));
    assert!(plain
        .metadata_document()
        .get("dpop_signing_alg_values_supported")
        .is_none());

    // An expired token: 401 with error="invalid_token" in the Bearer challenge; the token is
    // never echoed.
    let (rail, key) = offline_rail(|_| {});
    let t = now();
    let expired = key.sign(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": "https://auth.example.com", "sub": "u", "aud": RESOURCE, "exp": t - 3600}),
    );
    let needed = vec!["mcp:tools".to_string()];
    let o = rail
        .verify_detailed(&bearer(&expired), &needed, None, t)
        .await;
    let r = rail.response_for(&o, &needed).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.error, Some(ErrorCode::InvalidToken));
    assert_eq!(
        r.www_authenticate[0],
        "Bearer error=\"invalid_token\", error_description=\"the token has expired\", \
         resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", \
         scope=\"mcp:tools\""
    );
    assert!(r.www_authenticate[1].starts_with("DPoP algs="));
    for line in &r.www_authenticate {
        assert!(!line.contains(&expired));
    }
    assert!(!format!("{:?}", o.to_verdict()).contains(&expired));
    // A malformed token: 400 invalid_request.
    let o = rail.verify_detailed(&bearer("a b"), &needed, None, t).await;
    assert_eq!(rail.response_for(&o, &needed).unwrap().status, 400);
    // A pass has no error answer.
    let good = key.sign(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": "https://auth.example.com", "sub": "u", "aud": RESOURCE, "exp": t + 60,
                "scope": "mcp:tools"}),
    );
    let o = rail.verify_detailed(&bearer(&good), &needed, None, t).await;
    assert!(rail.response_for(&o, &needed).is_none());
}

#[tokio::test]
async fn headers_to_verdict_through_a_scoped_rail() {
    let (rail, key) = offline_rail(|_| {});
    let t = now();
    let dk = DpopKey::es256();
    let token = key.sign(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": "https://auth.example.com", "sub": "u", "aud": RESOURCE, "exp": t + 60,
                "scope": "mcp:tools", "cnf": {"jkt": dk.thumbprint()}}),
    );
    // The gateway's public URL differs from the resource identifier here; the scoped view
    // checks the proof against the request's URL.
    let url = "https://gw.example.com/mcp";
    let proof = dk.proof(&ProofSpec::new("POST", url, Some(&token)));
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("DPoP {token}").parse().unwrap());
    h.insert("dpop", proof.parse().unwrap());
    let creds: Vec<Credential> = credentials_from_headers(&h)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let scoped = Arc::new(rail.scoped(HttpContext::new("POST", url)));
    let rails: Vec<Arc<dyn Rail>> = vec![scoped.clone()];
    let facts = turnpike_core::CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now: t,
    };
    let price = turnpike_core::Price::of(vec![turnpike_oauth::offer(vec!["mcp:tools".into()])]);
    let d = turnpike_core::decide(&rails, &facts, &price, &creds).await;
    assert!(matches!(d, turnpike_core::Decision::Pass(_)), "{d:?}");
    assert!(matches!(scoped.outcome(), Some(OAuthOutcome::Pass(a)) if a.dpop_bound));
    // The unscoped rail assumes the resource URL, so the same kind of proof fails there.
    let proof = dk.proof(&ProofSpec::new("POST", url, Some(&token)));
    let o = rail
        .verify_detailed(
            &Credential::from(turnpike_oauth::BearerCredential {
                token: token.clone(),
                dpop: Some(proof),
            }),
            &["mcp:tools".to_string()],
            None,
            t,
        )
        .await;
    assert!(
        matches!(&o, OAuthOutcome::Rejected(r) if r.code == ErrorCode::InvalidDpopProof),
        "{o:?}"
    );
}
