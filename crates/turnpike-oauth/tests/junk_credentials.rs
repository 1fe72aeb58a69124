//! Junk credentials never delay or refuse someone else's: a made-up opaque token before the
//! first JWT, made-up key ids, three-part tokens with no signature, floods of unknown opaque
//! tokens from one address or from many. Against a real authorization server (oidc-provider)
//! and a scripted one on loopback that counts every request it gets.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use turnpike_core::{CallFacts, Credential, Rail, Verdict};
use turnpike_oauth::{
    ErrorCode, IntrospectionConfig, OAuthConfig, OAuthOutcome, OAuthRail, Secret,
};

const RESOURCE: &str = "https://mcp.example.com/mcp";

fn bearer(token: &str) -> Credential {
    Credential::from(turnpike_oauth::BearerCredential {
        token: token.to_string(),
        dpop: None,
    })
}

fn needed() -> Vec<String> {
    vec!["mcp:tools".to_string()]
}

#[track_caller]
fn passed(o: &OAuthOutcome) {
    assert!(matches!(o, OAuthOutcome::Pass(_)), "expected a pass: {o:?}");
}

#[track_caller]
fn invalid_token(o: &OAuthOutcome) {
    assert!(
        matches!(o, OAuthOutcome::Rejected(r) if r.code == ErrorCode::InvalidToken),
        "expected invalid_token: {o:?}"
    );
    assert_eq!(o.status(), 401);
}

/// A scripted authorization server: metadata, keys, and an introspection endpoint that answers
/// active for the tokens it was told of; every request counted by path.
#[derive(Default)]
struct State {
    jwks: Value,
    active: HashSet<String>,
    hits: HashMap<String, usize>,
}

struct Issuer {
    issuer: String,
    state: Arc<Mutex<State>>,
}

impl Issuer {
    async fn start() -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(State {
            jwks: json!({"keys": []}),
            ..State::default()
        }));
        let (st, iss) = (state.clone(), issuer.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (st, iss) = (st.clone(), iss.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (st, iss) = (st.clone(), iss.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let form =
                                String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
                            let mut s = st.lock();
                            *s.hits.entry(path.clone()).or_default() += 1;
                            let (status, answer) = match path.as_str() {
                                "/.well-known/oauth-authorization-server" => (
                                    200,
                                    json!({"issuer": iss, "jwks_uri": format!("{iss}/keys"),
                                           "introspection_endpoint": format!("{iss}/introspect")}),
                                ),
                                "/keys" => (200, s.jwks.clone()),
                                "/introspect" => {
                                    let token = form
                                        .split('&')
                                        .find_map(|kv| kv.strip_prefix("token="))
                                        .unwrap_or("");
                                    if s.active.contains(token) {
                                        (
                                            200,
                                            json!({"active": true, "iss": iss, "sub": "u",
                                                     "aud": RESOURCE, "scope": "mcp:tools",
                                                     "client_id": "c"}),
                                        )
                                    } else {
                                        (200, json!({"active": false}))
                                    }
                                }
                                _ => (404, json!({})),
                            };
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
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
        Issuer { issuer, state }
    }

    fn keys(&self, keys: &[&EcKey]) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| {
                let mut j = k.public_jwk();
                j["kid"] = json!(k.kid);
                j
            })
            .collect();
        self.state.lock().jwks = json!({ "keys": keys });
    }

    fn hits(&self, path: &str) -> usize {
        self.state.lock().hits.get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.state.lock().hits.values().sum()
    }

    fn rail(&self, tweak: impl FnOnce(&mut OAuthConfig)) -> Arc<OAuthRail> {
        let mut cfg = OAuthConfig::new(self.issuer.clone()).with_default_resource(RESOURCE);
        cfg.introspection = Some(IntrospectionConfig::new("rs", Secret::new("rs-secret")));
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

/// The facts of a call from `peer`, as the gateway builds them.
fn from(peer: IpAddr) -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [0; 32],
        caller: None,
        peer: Some(peer),
        now: now(),
    }
}

fn loopback(b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, b, c))
}

/// Verifies through the `Rail` trait, as the gateway's decision engine does.
async fn verify_from(rail: &OAuthRail, token: &str, peer: IpAddr) -> Verdict {
    let offer = turnpike_oauth::offer(needed());
    rail.verify(&from(peer), &offer, &bearer(token)).await
}

#[tokio::test]
async fn a_junk_opaque_token_first_does_not_delay_a_real_jwt() {
    let p = Provider::start("/as").await;
    let rail = p.rail(ES, |c| {
        c.introspection = Some(IntrospectionConfig::new(
            "turnpike-rs",
            Secret::new(RS_SECRET),
        ));
    });
    // The very first token this fresh rail sees is made up and opaque: it is introspected
    // (the metadata is fetched for the endpoint) and refused.
    let junk = rail
        .verify_detailed(
            &bearer("made-up-opaque-token-0123456789"),
            &needed(),
            None,
            now(),
        )
        .await;
    invalid_token(&junk);
    let s = rail.issuer_stats();
    assert_eq!((s.introspections, s.jwks_fetches), (1, 0), "{s:?}");
    // Right after, a real JWT from the real server passes at once: its keys are fetched now.
    let real = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", None)
        .await;
    let started = Instant::now();
    passed(
        &rail
            .verify_detailed(&bearer(&real), &needed(), None, now())
            .await,
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        rail.issuer_stats().jwks_fetches,
        1,
        "the issuer was asked for its keys"
    );
}

#[tokio::test]
async fn three_part_tokens_without_a_signature_are_refused_without_asking_anyone() {
    let m = Issuer::start().await;
    let rail = m.rail(|_| {});
    let t = now();
    let claims = json!({"iss": m.issuer, "sub": "u", "aud": RESOURCE, "iat": t, "exp": t + 600,
                        "scope": "mcp:tools"});
    let none = format!(
        "{}.",
        signing_input(&json!({"alg": "none", "typ": "JWT"}), &claims)
    );
    let es_empty = format!(
        "{}.",
        signing_input(
            &json!({"alg": "ES256", "kid": "k", "typ": "at+jwt"}),
            &claims
        )
    );
    let empty_payload = format!("{}..", b64(r#"{"alg":"RS256"}"#));
    for (i, token) in [none, es_empty, empty_payload].iter().enumerate() {
        let o = rail
            .verify_detailed(&bearer(token), &needed(), None, now())
            .await;
        invalid_token(&o);
        let v = verify_from(&rail, token, loopback(0, 10 + i as u8)).await;
        assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");
    }
    assert_eq!(
        m.hits("/introspect"),
        0,
        "the introspection endpoint saw nothing"
    );
    assert_eq!(m.total_hits(), 0, "nothing was asked of the issuer at all");
    assert_eq!(rail.issuer_stats(), Default::default());
}

#[tokio::test]
async fn a_junk_key_id_does_not_block_a_rotated_real_one() {
    let m = Issuer::start().await;
    let (a, b) = (EcKey::generate("a"), EcKey::generate("b"));
    m.keys(&[&a]);
    let rail = m.rail(|c| {
        c.jwks_min_refresh_secs = 60;
        c.jwks_fetch_spacing_ms = 200;
    });
    passed(
        &rail
            .verify_detailed(&bearer(&m.token(&a)), &needed(), None, now())
            .await,
    );
    assert_eq!(m.hits("/keys"), 1);
    let junk = EcKey::generate("junk");
    let started = Instant::now();
    // A made-up key id, again and again: one fetch, then refused from memory.
    for _ in 0..20 {
        invalid_token(
            &rail
                .verify_detailed(&bearer(&m.token(&junk)), &needed(), None, now())
                .await,
        );
    }
    assert_eq!(m.hits("/keys"), 2);
    // The issuer rotates in b while junk keeps coming: b passes on its first call.
    m.keys(&[&a, &b]);
    let flood: Vec<_> = (0..32)
        .map(|i| {
            let rail = rail.clone();
            let token = m.token(&EcKey::generate(&format!("junk-{i}")));
            tokio::spawn(async move {
                rail.verify_detailed(&bearer(&token), &needed(), None, now())
                    .await
            })
        })
        .collect();
    passed(
        &rail
            .verify_detailed(&bearer(&m.token(&b)), &needed(), None, now())
            .await,
    );
    for f in flood {
        invalid_token(&f.await.unwrap());
    }
    // Everything above cost the issuer at most one key fetch per spacing.
    let elapsed = started.elapsed().as_millis() as usize;
    let hits = m.hits("/keys");
    assert!(
        hits <= 3 + elapsed / 200,
        "{hits} key fetches in {elapsed} ms with 200 ms spacing"
    );
    passed(
        &rail
            .verify_detailed(&bearer(&m.token(&a)), &needed(), None, now())
            .await,
    );
}

#[tokio::test]
async fn introspection_is_bounded_per_address_and_in_all_and_negative_answers_are_cached() {
    let m = Issuer::start().await;
    let valid = "valid-opaque-token-0123456789".to_string();
    let other_valid = "other-valid-opaque-token-0123456789".to_string();
    m.state.lock().active.insert(valid.clone());
    m.state.lock().active.insert(other_valid.clone());
    let (per_address, per_minute) = (5usize, 20usize);
    let rail = m.rail(|c| {
        let i = c.introspection.as_mut().unwrap();
        i.per_address_per_minute = per_address as u32;
        i.per_minute = per_minute as u32;
        i.negative_cache_secs = 30;
    });
    let started = Instant::now();
    // Refill at most: one request per 60/per_address s per address, 60/per_minute s in all.
    let refill = |per: usize| 1 + started.elapsed().as_secs() as usize * per / 60;

    // A negative answer is cached: the same junk token, again and again, costs one request.
    for _ in 0..10 {
        let v = verify_from(&rail, "junk-token-cached-0123456789", loopback(0, 2)).await;
        assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");
    }
    assert_eq!(m.hits("/introspect"), 1);

    // A flood of distinct junk tokens from one address: the server sees at most its bound,
    // the rest fail closed (503) without a request.
    let flooder = loopback(0, 3);
    let mut refused = 0;
    for i in 0..60 {
        match verify_from(&rail, &format!("junk-token-{i:04}-0123456789"), flooder).await {
            Verdict::Invalid(_) => {}
            Verdict::Unavailable(_) => refused += 1,
            v => panic!("{v:?}"),
        }
    }
    let seen = m.hits("/introspect") - 1;
    assert!(
        seen <= per_address + refill(per_address),
        "{seen} requests from one address"
    );
    assert!(refused >= 60 - seen, "{refused} refused");
    // Another address's valid token still passes, at once.
    let v = verify_from(&rail, &valid, loopback(1, 7)).await;
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");

    // Many addresses (127.0.2.1 ... 127.0.2.40), each sending junk: the bound in all holds.
    for c in 1..=40u8 {
        for i in 0..3 {
            let _ = verify_from(&rail, &format!("junk-{c}-{i}-0123456789"), loopback(2, c)).await;
        }
    }
    let all = m.hits("/introspect");
    assert!(
        all <= per_minute + refill(per_minute),
        "{all} requests in all"
    );
    // A fresh address's unknown token meets the bound in all: 503, and when to come back
    // (one request in all refills every 3 s, so two tries in a row cannot both be admitted).
    let mut in_all = None;
    for c in 1..=2u8 {
        let o = rail
            .verify_from(
                &bearer(&format!("junk-fresh-{c}-0123456789")),
                &needed(),
                None,
                Some(loopback(4, c)),
                now(),
            )
            .await;
        if let OAuthOutcome::Busy { .. } = o {
            in_all = Some(o);
            break;
        }
    }
    let in_all = in_all.expect("the bound in all holds");
    assert!(
        matches!(in_all, OAuthOutcome::Busy { own: false, retry_after } if (1..=3).contains(&retry_after)),
        "{in_all:?}"
    );
    let ar = rail.response_for(&in_all, &needed()).unwrap();
    assert_eq!(ar.status, 503);
    assert!(ar.www_authenticate.is_empty());
    assert!(matches!(ar.retry_after, Some(1..=3)), "{ar:?}");
    let all = m.hits("/introspect");
    // A token already answered keeps passing from the cache, from any address.
    let v = verify_from(&rail, &valid, loopback(3, 1)).await;
    assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
    assert_eq!(m.hits("/introspect"), all, "answered from the cache");
    // The flooder's address is still held to its bound (its bucket refills one request per
    // 12 s).
    if started.elapsed() < Duration::from_secs(11) {
        let v = verify_from(&rail, "junk-token-late-0123456789", flooder).await;
        assert!(matches!(v, Verdict::Unavailable(_)), "{v:?}");
        // Its own bound: 429, back in at most the 12 s one request takes to refill.
        let o = rail
            .verify_from(
                &bearer("junk-token-later-0123456789"),
                &needed(),
                None,
                Some(flooder),
                now(),
            )
            .await;
        assert!(
            matches!(o, OAuthOutcome::Busy { own: true, retry_after } if (1..=12).contains(&retry_after)),
            "{o:?}"
        );
        let ar = rail.response_for(&o, &needed()).unwrap();
        assert_eq!((ar.status, ar.error), (429, None));
        assert!(ar.www_authenticate.is_empty());
        assert!(ar.description.contains("retry after"), "{}", ar.description);
        assert_eq!(m.hits("/introspect"), all);
    }
    assert_eq!(m.hits("/keys"), 0);
}
