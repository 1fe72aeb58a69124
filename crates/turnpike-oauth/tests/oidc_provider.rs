//! The OAuth rail against a real authorization server: oidc-provider (npm), started by each test
//! on 127.0.0.1. Real tokens (client credentials with a secret, with a signed JWT assertion,
//! DPoP-bound; ES256, RS256, PS256, EdDSA; JWT and opaque) must pass; forged, misdirected,
//! expired and replayed ones must not.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use turnpike_core::{decide, CallFacts, Credential, Decision, Identity, Price, Rail};
use turnpike_oauth::{ErrorCode, HttpContext, OAuthOutcome, Scheme};

fn bearer(token: &str) -> Credential {
    Credential::from(turnpike_oauth::BearerCredential {
        token: token.to_string(),
        dpop: None,
    })
}

fn dpop(token: &str, proof: &str) -> Credential {
    Credential::from(turnpike_oauth::BearerCredential {
        token: token.to_string(),
        dpop: Some(proof.to_string()),
    })
}

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

#[track_caller]
fn assert_rejected(o: &OAuthOutcome, code: ErrorCode, needle: &str) {
    match o {
        OAuthOutcome::Rejected(r) => {
            assert_eq!(r.code, code, "{o:?}");
            assert!(
                r.description.contains(needle),
                "expected {needle:?} in {:?}",
                r.description
            );
        }
        other => panic!("expected {code} ({needle}), got {other:?}"),
    }
}

#[track_caller]
fn assert_pass(o: &OAuthOutcome) -> &turnpike_oauth::Accepted {
    match o {
        OAuthOutcome::Pass(a) => a,
        other => panic!("expected a pass, got {other:?}"),
    }
}

fn facts(now: u64) -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now,
    }
}

#[tokio::test]
async fn real_tokens_pass_for_every_algorithm_and_client_authentication() {
    let p = Provider::start("/as").await;
    let needed = scopes(&["mcp:tools"]);
    for (resource, alg) in [(ES, "ES256"), (RS, "RS256"), (PS, "PS256"), (ED, "EdDSA")] {
        let rail = p.rail(resource, |_| {});
        let token = p
            .access_token(&ClientAuth::Secret, resource, "mcp:tools mcp:read", None)
            .await;
        assert_eq!(header_of(&token)["alg"], alg);
        assert_eq!(claims_of(&token)["aud"], resource);
        let o = rail
            .verify_detailed(&bearer(&token), &needed, None, now())
            .await;
        let a = assert_pass(&o);
        assert_eq!(
            a.identity,
            Identity::OAuth {
                issuer: p.issuer.clone(),
                subject: "agent-secret".into(),
                client_id: Some("agent-secret".into()),
            },
            "{alg}"
        );
        assert_eq!(a.token.scopes, scopes(&["mcp:read", "mcp:tools"]));
        assert!(!a.dpop_bound);
        // Discovery went through the OIDC path-appended form for an issuer with a path: the
        // two path-inserted forms first, then the appended one; then one JWKS fetch.
        let s = rail.issuer_stats();
        assert_eq!((s.metadata_fetches, s.jwks_fetches), (3, 1), "{alg}: {s:?}");
        // The cached key serves the next token without another fetch.
        let again = p
            .access_token(&ClientAuth::Secret, resource, "mcp:tools", None)
            .await;
        assert_pass(
            &rail
                .verify_detailed(&bearer(&again), &needed, None, now())
                .await,
        );
        assert_eq!(rail.issuer_stats().jwks_fetches, 1);
    }

    // private_key_jwt: the agent authenticates with an RFC 7523 assertion signed by its own key.
    let rail = p.rail(ES, |_| {});
    let token = p
        .access_token(&ClientAuth::Jwt, ES, "mcp:tools", None)
        .await;
    let a = assert_pass(
        &rail
            .verify_detailed(&bearer(&token), &needed, None, now())
            .await,
    )
    .clone();
    assert_eq!(
        a.identity,
        Identity::OAuth {
            issuer: p.issuer.clone(),
            subject: "agent-jwt".into(),
            client_id: Some("agent-jwt".into()),
        }
    );

    // Through core's decision engine, as the gateway runs it.
    let rails: Vec<Arc<dyn Rail>> = vec![rail.clone()];
    let price = Price::of(vec![turnpike_oauth::offer(needed.clone())]);
    match decide(&rails, &facts(now()), &price, &[bearer(&token)]).await {
        Decision::Pass(g) => assert_eq!(g.identity, Some(a.identity.clone())),
        d => panic!("{d:?}"),
    }
    match decide(&rails, &facts(now()), &price, &[]).await {
        Decision::Challenge { challenges, .. } => {
            assert_eq!(challenges.len(), 1);
            assert!(challenges[0]
                .www_authenticate
                .starts_with("Bearer resource_metadata=\"https://mcp.test/.well-known/oauth-protected-resource/es\", scope=\"mcp:tools\""));
        }
        d => panic!("{d:?}"),
    }
}

#[tokio::test]
async fn issuer_at_the_root_is_discovered_by_rfc8414() {
    let p = Provider::start("").await;
    let rail = p.rail(ED, |_| {});
    let token = p
        .access_token(&ClientAuth::Secret, ED, "mcp:read", None)
        .await;
    assert_pass(
        &rail
            .verify_detailed(&bearer(&token), &scopes(&["mcp:read"]), None, now())
            .await,
    );
    // At the root, the RFC 8414 document is the first tried, and oidc-provider serves it.
    assert_eq!(rail.issuer_stats().metadata_fetches, 1);
    // warm_up fetches again, unconditionally, and reports the keys (EC, Ed25519, RSA).
    assert_eq!(rail.warm_up().await.unwrap(), 3);
}

#[tokio::test]
async fn misdirected_expired_and_forged_tokens_fail() {
    let p = Provider::start("/as").await;
    let rail = p.rail(ES, |_| {});
    let needed = scopes(&["mcp:tools"]);
    let t = now();
    let check = |token: String, at: u64| {
        let rail = rail.clone();
        let needed = needed.clone();
        async move {
            rail.verify_detailed(&bearer(&token), &needed, None, at)
                .await
        }
    };

    // A real token for another resource (RFC 8707 audience).
    let other = p
        .access_token(&ClientAuth::Secret, OTHER, "mcp:tools", None)
        .await;
    assert_rejected(
        &check(other, t).await,
        ErrorCode::InvalidToken,
        "another resource",
    );

    // A real token, presented after it expired (and before it was issued).
    let real = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", None)
        .await;
    let exp = claims_of(&real)["exp"].as_u64().unwrap();
    let iat = claims_of(&real)["iat"].as_u64().unwrap();
    assert_pass(&check(real.clone(), t).await);
    assert_pass(&check(real.clone(), exp + 59).await);
    assert_rejected(
        &check(real.clone(), exp + 60).await,
        ErrorCode::InvalidToken,
        "expired",
    );
    assert_rejected(
        &check(real.clone(), iat - 61).await,
        ErrorCode::InvalidToken,
        "issued in the future",
    );

    // Tokens signed with the issuer's own EC key but with wrong claims.
    let good_claims = json!({
        "iss": p.issuer, "sub": "s", "aud": ES, "iat": t, "exp": t + 300,
        "scope": "mcp:tools", "client_id": "c",
    });
    let sign = |claims: serde_json::Value| {
        p.keys.ec.sign(
            &json!({"alg": "ES256", "kid": "es-1", "typ": "at+jwt"}),
            &claims,
        )
    };
    assert_pass(&check(sign(good_claims.clone()), t).await);
    let mut c = good_claims.clone();
    c["iss"] = json!("https://evil.example");
    assert_rejected(
        &check(sign(c), t).await,
        ErrorCode::InvalidToken,
        "another issuer",
    );
    let mut c = good_claims.clone();
    c["iss"] = json!(format!("{}/", p.issuer));
    assert_rejected(
        &check(sign(c), t).await,
        ErrorCode::InvalidToken,
        "another issuer",
    );
    let mut c = good_claims.clone();
    c["aud"] = json!(["https://mcp.test/es2", OTHER]);
    assert_rejected(
        &check(sign(c), t).await,
        ErrorCode::InvalidToken,
        "another resource",
    );
    let mut c = good_claims.clone();
    c.as_object_mut().unwrap().remove("aud");
    assert_rejected(
        &check(sign(c), t).await,
        ErrorCode::InvalidToken,
        "no audience",
    );
    let mut c = good_claims.clone();
    c["nbf"] = json!(t + 120);
    assert_rejected(
        &check(sign(c), t).await,
        ErrorCode::InvalidToken,
        "not valid yet",
    );
    let mut c = good_claims.clone();
    c["exp"] = json!(t - 61);
    assert_rejected(&check(sign(c), t).await, ErrorCode::InvalidToken, "expired");
    let mut c = good_claims.clone();
    c.as_object_mut().unwrap().remove("exp");
    assert_rejected(
        &check(sign(c), t).await,
        ErrorCode::InvalidToken,
        "no expiry",
    );
    // A DPoP proof is not an access token.
    let proof_typed = p.keys.ec.sign(
        &json!({"alg": "ES256", "kid": "es-1", "typ": "dpop+jwt"}),
        &good_claims,
    );
    assert_rejected(
        &check(proof_typed, t).await,
        ErrorCode::InvalidToken,
        "type",
    );

    // alg "none", with and without a signature part.
    let unsigned = signing_input(&json!({"alg": "none", "typ": "JWT"}), &good_claims);
    assert_rejected(
        &check(format!("{unsigned}."), t).await,
        ErrorCode::InvalidToken,
        "not a well-formed JWT",
    );
    assert_rejected(
        &check(format!("{unsigned}.AAAA"), t).await,
        ErrorCode::InvalidToken,
        "algorithm",
    );
    // HS256 keyed with the issuer's public key material (the classic confusion attack), as
    // JSON, as raw bytes of the RSA modulus and as the EC point.
    let jwks = get_json(&format!("{}/jwks", p.issuer)).await;
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    let n = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        rsa["n"].as_str().unwrap(),
    )
    .unwrap();
    let ec_pub = p.keys.ec.public_jwk().to_string();
    for (kid, secret) in [
        ("rs-1", rsa.to_string().into_bytes()),
        ("rs-1", n),
        ("es-1", ec_pub.into_bytes()),
    ] {
        use hmac::Mac;
        let input = signing_input(&json!({"alg": "HS256", "kid": kid}), &good_claims);
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(input.as_bytes());
        let forged = format!("{input}.{}", b64(mac.finalize().into_bytes()));
        assert_rejected(
            &check(forged, t).await,
            ErrorCode::InvalidToken,
            "algorithm",
        );
    }
    // An ES256 signature claimed as RS256 under the RSA key id, and an EdDSA-signed token
    // claiming ES256 with the EC key id: the algorithm must fit the key.
    let input = signing_input(&json!({"alg": "RS256", "kid": "rs-1"}), &good_claims);
    let es_sig = p
        .keys
        .ec
        .sign(&json!({"alg": "ES256", "kid": "es-1"}), &good_claims);
    let sig = es_sig.rsplit('.').next().unwrap();
    assert_rejected(
        &check(format!("{input}.{sig}"), t).await,
        ErrorCode::InvalidToken,
        "signature",
    );
    let ed_signed = p
        .keys
        .ed
        .sign(&json!({"alg": "EdDSA", "kid": "ed-1"}), &good_claims);
    let ed_sig = ed_signed.rsplit('.').next().unwrap();
    let input = signing_input(&json!({"alg": "ES256", "kid": "es-1"}), &good_claims);
    assert_rejected(
        &check(format!("{input}.{ed_sig}"), t).await,
        ErrorCode::InvalidToken,
        "signature",
    );
    // A key the issuer does not publish, under the issuer's key id.
    let stranger = EcKey::generate("es-1");
    let forged = stranger.sign(&json!({"alg": "ES256", "kid": "es-1"}), &good_claims);
    assert_rejected(
        &check(forged, t).await,
        ErrorCode::InvalidToken,
        "signature",
    );
    // A tampered payload.
    let real_parts: Vec<&str> = real.split('.').collect();
    let mut claims = claims_of(&real);
    claims["scope"] = json!("mcp:tools mcp:admin");
    let tampered = format!(
        "{}.{}.{}",
        real_parts[0],
        b64(serde_json::to_vec(&claims).unwrap()),
        real_parts[2]
    );
    assert_rejected(
        &check(tampered, t).await,
        ErrorCode::InvalidToken,
        "signature",
    );
    // Not a JWT, and no introspection configured.
    assert_rejected(
        &check("opaque-token-value".into(), t).await,
        ErrorCode::InvalidToken,
        "not a JWT",
    );
    // Nothing above made the rail fetch keys again: each forged token named a known key id.
    assert_eq!(rail.issuer_stats().jwks_fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_ids_refresh_once_per_interval() {
    let p = Provider::start("/as").await;
    let rail = p.rail(ES, |c| {
        c.jwks_min_refresh_secs = 30;
        c.jwks_fetch_spacing_ms = 300;
    });
    let needed = scopes(&["mcp:tools"]);
    let t = now();
    let real = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", None)
        .await;
    assert_pass(&rail.verify_detailed(&bearer(&real), &needed, None, t).await);
    assert_eq!(rail.issuer_stats().jwks_fetches, 1);
    let claims = json!({"iss": p.issuer, "sub": "s", "aud": ES, "iat": t, "exp": t + 300});
    let fake = |name: String| {
        p.keys
            .ec
            .sign(&json!({"alg": "ES256", "kid": name}), &claims)
    };
    let started = std::time::Instant::now();
    // An unknown key id is looked for in a key set fetched after it was presented: one fetch
    // (after the spacing), then the id is refused without another for jwks_min_refresh_secs.
    for _ in 0..10 {
        assert_rejected(
            &rail
                .verify_detailed(&bearer(&fake("junk".into())), &needed, None, t)
                .await,
            ErrorCode::InvalidToken,
            "not signed by a key",
        );
    }
    assert_eq!(rail.issuer_stats().jwks_fetches, 2);
    // A flood of tokens, each naming a key id the issuer never had, all at once: they queue
    // behind the fetch under way and take its answer; fetches start one spacing apart.
    let futures: Vec<_> = (0..64)
        .map(|i| {
            let token = fake(format!("fake-{i}"));
            let rail = rail.clone();
            let needed = needed.clone();
            tokio::spawn(async move {
                rail.verify_detailed(&bearer(&token), &needed, None, t)
                    .await
            })
        })
        .collect();
    for f in futures {
        assert_rejected(
            &f.await.unwrap(),
            ErrorCode::InvalidToken,
            "not signed by a key",
        );
    }
    let spent = started.elapsed().as_millis() as u64;
    let fetches = rail.issuer_stats().jwks_fetches;
    assert!(
        fetches <= 3 + spent / 300,
        "{fetches} fetches in {spent} ms with 300 ms spacing"
    );
    // Distinct made-up ids one after another: at most one fetch per spacing, in all.
    for i in 0..8 {
        let _ = rail
            .verify_detailed(&bearer(&fake(format!("late-{i}"))), &needed, None, t)
            .await;
    }
    let spent = started.elapsed().as_millis() as u64;
    let fetches = rail.issuer_stats().jwks_fetches;
    assert!(
        fetches <= 3 + spent / 300,
        "{fetches} fetches in {spent} ms with 300 ms spacing"
    );
    // Genuine tokens kept passing meanwhile, from the cache of verified tokens or the keys.
    assert_pass(&rail.verify_detailed(&bearer(&real), &needed, None, t).await);
}

#[tokio::test]
async fn dpop_bound_tokens_need_a_proof_for_this_request() {
    let p = Provider::start("/as").await;
    let rail = p.rail(ES, |_| {});
    let needed = scopes(&["mcp:tools"]);
    let key = DpopKey::es256();
    let token = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", Some(&key))
        .await;
    assert_eq!(claims_of(&token)["cnf"]["jkt"], key.thumbprint());
    let http = HttpContext::new("POST", ES);
    let verify = |cred: Credential, h: Option<HttpContext>| {
        let rail = rail.clone();
        let needed = needed.clone();
        async move {
            rail.verify_detailed(&cred, &needed, h.as_ref(), now())
                .await
        }
    };

    // Presented as a plain bearer token: refused (RFC 9449 §7.2).
    let o = verify(bearer(&token), Some(http.clone())).await;
    assert_rejected(&o, ErrorCode::InvalidToken, "DPoP-bound");
    // Under the DPoP scheme without a proof.
    let o = verify(dpop(&token, ""), Some(http.clone())).await;
    assert_rejected(&o, ErrorCode::InvalidDpopProof, "no DPoP proof");
    if let OAuthOutcome::Rejected(r) = &o {
        assert_eq!(r.scheme, Scheme::DPoP);
    }

    // A good proof passes, once.
    let proof = key.proof(&ProofSpec::new("POST", ES, Some(&token)));
    let a = assert_pass(&verify(dpop(&token, &proof), Some(http.clone())).await).clone();
    assert!(a.dpop_bound);
    assert_eq!(a.token.jkt.as_deref(), Some(key.thumbprint().as_str()));
    assert_rejected(
        &verify(dpop(&token, &proof), Some(http.clone())).await,
        ErrorCode::InvalidDpopProof,
        "already used",
    );
    // Without an HttpContext the rail assumes POST to its endpoint URL.
    let proof = key.proof(&ProofSpec::new("POST", ES, Some(&token)));
    assert_pass(&verify(dpop(&token, &proof), None).await);
    // htu is compared in normal form, without query and fragment.
    let proof = key.proof(&ProofSpec::new(
        "POST",
        "HTTPS://MCP.test:443/./es?x=1#frag",
        Some(&token),
    ));
    assert_pass(
        &verify(
            dpop(&token, &proof),
            Some(HttpContext::new("POST", "https://mcp.test/es?session=2")),
        )
        .await,
    );

    // Proofs for another URL, another method, another token.
    let o = verify(
        dpop(
            &token,
            &key.proof(&ProofSpec::new(
                "POST",
                "https://mcp.test/other",
                Some(&token),
            )),
        ),
        Some(http.clone()),
    )
    .await;
    assert_rejected(&o, ErrorCode::InvalidDpopProof, "another URL");
    let o = verify(
        dpop(&token, &key.proof(&ProofSpec::new("GET", ES, Some(&token)))),
        Some(http.clone()),
    )
    .await;
    assert_rejected(&o, ErrorCode::InvalidDpopProof, "another HTTP method");
    let o = verify(
        dpop(
            &token,
            &key.proof(&ProofSpec::new("post", ES, Some(&token))),
        ),
        Some(http.clone()),
    )
    .await;
    assert_rejected(&o, ErrorCode::InvalidDpopProof, "another HTTP method");
    let other_token = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", Some(&key))
        .await;
    let o = verify(
        dpop(
            &token,
            &key.proof(&ProofSpec::new("POST", ES, Some(&other_token))),
        ),
        Some(http.clone()),
    )
    .await;
    assert_rejected(&o, ErrorCode::InvalidDpopProof, "another access token");
    let o = verify(
        dpop(&token, &key.proof(&ProofSpec::new("POST", ES, None))),
        Some(http.clone()),
    )
    .await;
    assert_rejected(&o, ErrorCode::InvalidDpopProof, "no ath");

    // Stale and future proofs (window 300 s, skew 60 s).
    let mut spec = ProofSpec::new("POST", ES, Some(&token));
    spec.iat = now() - 301;
    assert_rejected(
        &verify(dpop(&token, &key.proof(&spec)), Some(http.clone())).await,
        ErrorCode::InvalidDpopProof,
        "too old",
    );
    spec.iat = now() + 120;
    spec.jti = b64(random32());
    assert_rejected(
        &verify(dpop(&token, &key.proof(&spec)), Some(http.clone())).await,
        ErrorCode::InvalidDpopProof,
        "future",
    );

    // A proof by another key; a proof whose typ is not dpop+jwt; a proof carrying the private
    // key; a proof without jti; an unsigned proof; an HS256 proof.
    let thief = DpopKey::es256();
    let o = verify(
        dpop(
            &token,
            &thief.proof(&ProofSpec::new("POST", ES, Some(&token))),
        ),
        Some(http.clone()),
    )
    .await;
    assert_rejected(
        &o,
        ErrorCode::InvalidDpopProof,
        "not the one the token is bound to",
    );
    let mut spec = ProofSpec::new("POST", ES, Some(&token));
    spec.typ = "JWT";
    assert_rejected(
        &verify(dpop(&token, &key.proof(&spec)), Some(http.clone())).await,
        ErrorCode::InvalidDpopProof,
        "typ",
    );
    let DpopKey::Ec(ec) = &key else {
        unreachable!()
    };
    let claims = json!({"jti": b64(random32()), "htm": "POST", "htu": ES, "iat": now(),
                        "ath": b64(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()))});
    let with_private = key.sign_raw(json!({"typ": "dpop+jwt", "jwk": ec.private_jwk()}), &claims);
    assert_rejected(
        &verify(dpop(&token, &with_private), Some(http.clone())).await,
        ErrorCode::InvalidDpopProof,
        "jwk",
    );
    let mut no_jti = claims.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_rejected(
        &verify(
            dpop(&token, &key.sign_raw(json!({"typ": "dpop+jwt"}), &no_jti)),
            Some(http.clone()),
        )
        .await,
        ErrorCode::InvalidDpopProof,
        "jti",
    );
    let none = format!(
        "{}.",
        signing_input(
            &json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk()}),
            &claims
        )
    );
    let o = verify(dpop(&token, &none), Some(http.clone())).await;
    assert!(matches!(o, OAuthOutcome::Rejected(_)), "{o:?}");
    let hs = format!(
        "{}.AAAA",
        signing_input(
            &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.public_jwk()}),
            &claims
        )
    );
    assert_rejected(
        &verify(dpop(&token, &hs), Some(http.clone())).await,
        ErrorCode::InvalidDpopProof,
        "accepted algorithm",
    );

    // An unbound token under the DPoP scheme is refused too.
    let plain = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", None)
        .await;
    let o = verify(
        dpop(
            &plain,
            &key.proof(&ProofSpec::new("POST", ES, Some(&plain))),
        ),
        Some(http.clone()),
    )
    .await;
    assert_rejected(&o, ErrorCode::InvalidToken, "not DPoP-bound");

    // Ed25519 DPoP keys work the same way.
    let ed = DpopKey::ed25519();
    let token = p
        .access_token(&ClientAuth::Jwt, ES, "mcp:tools", Some(&ed))
        .await;
    let proof = ed.proof(&ProofSpec::new("POST", ES, Some(&token)));
    assert_pass(&verify(dpop(&token, &proof), Some(http.clone())).await);

    // The answer to a refused proof names the error in the DPoP challenge.
    let o = verify(dpop(&token, ""), Some(http.clone())).await;
    let r = rail.response_for(&o, &needed).unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.www_authenticate[0].starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{:?}",
        r.www_authenticate
    );
    assert!(r.www_authenticate[0].contains("algs=\"ES256 EdDSA Ed25519 PS256 RS256\""));
    assert!(r.www_authenticate[1].starts_with("Bearer resource_metadata="));
}

#[tokio::test]
async fn require_dpop_nonces_and_content_digest() {
    let p = Provider::start("/as").await;
    let needed = scopes(&["mcp:tools"]);
    let key = DpopKey::es256();
    let bound = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", Some(&key))
        .await;
    let plain = p
        .access_token(&ClientAuth::Secret, ES, "mcp:tools", None)
        .await;

    // require_dpop: unbound tokens are refused, bound ones pass.
    let strict = p.rail(ES, |c| c.require_dpop = true);
    assert_rejected(
        &strict
            .verify_detailed(&bearer(&plain), &needed, None, now())
            .await,
        ErrorCode::InvalidToken,
        "DPoP-bound tokens only",
    );
    let proof = key.proof(&ProofSpec::new("POST", ES, Some(&bound)));
    assert_pass(
        &strict
            .verify_detailed(&dpop(&bound, &proof), &needed, None, now())
            .await,
    );
    assert_eq!(
        strict.metadata_document()["dpop_bound_access_tokens_required"],
        true
    );

    // Server nonces: the first proof without a nonce gets use_dpop_nonce and a nonce; a retry
    // carrying it passes.
    let nonced = p.rail(ES, |c| c.dpop_nonce = true);
    let proof = key.proof(&ProofSpec::new("POST", ES, Some(&bound)));
    let o = nonced
        .verify_detailed(&dpop(&bound, &proof), &needed, None, now())
        .await;
    let nonce = match &o {
        OAuthOutcome::Rejected(r) => {
            assert_eq!(r.code, ErrorCode::UseDpopNonce);
            r.dpop_nonce.clone().unwrap()
        }
        other => panic!("{other:?}"),
    };
    let resp = nonced.response_for(&o, &needed).unwrap();
    assert_eq!(resp.status, 401);
    assert_eq!(resp.dpop_nonce.as_deref(), Some(nonce.as_str()));
    assert!(resp.www_authenticate[0].starts_with("DPoP error=\"use_dpop_nonce\""));
    let mut spec = ProofSpec::new("POST", ES, Some(&bound));
    spec.nonce = Some(&nonce);
    let a = assert_pass(
        &nonced
            .verify_detailed(&dpop(&bound, &key.proof(&spec)), &needed, None, now())
            .await,
    )
    .clone();
    assert_eq!(a.dpop_nonce.as_deref(), Some(nonce.as_str()));
    let mut spec = ProofSpec::new("POST", ES, Some(&bound));
    spec.nonce = Some("bm90LWEtbm9uY2U");
    let o = nonced
        .verify_detailed(&dpop(&bound, &key.proof(&spec)), &needed, None, now())
        .await;
    assert_rejected(&o, ErrorCode::UseDpopNonce, "not current");

    // The content_digest claim of MCP's DPoP profile binds the proof to the body.
    let rail = p.rail(ES, |_| {});
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    let digest = format!(
        "sha-256=:{}:",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            <sha2::Sha256 as sha2::Digest>::digest(body)
        )
    );
    let http = HttpContext::new("POST", ES).with_body(body);
    let mut spec = ProofSpec::new("POST", ES, Some(&bound));
    spec.extra = json!({"content_digest": digest});
    assert_pass(
        &rail
            .verify_detailed(
                &dpop(&bound, &key.proof(&spec)),
                &needed,
                Some(&http),
                now(),
            )
            .await,
    );
    let other_body = HttpContext::new("POST", ES).with_body(b"{}");
    let mut spec = ProofSpec::new("POST", ES, Some(&bound));
    spec.extra = json!({"content_digest": digest});
    assert_rejected(
        &rail
            .verify_detailed(
                &dpop(&bound, &key.proof(&spec)),
                &needed,
                Some(&other_body),
                now(),
            )
            .await,
        ErrorCode::InvalidDpopProof,
        "another request body",
    );
}

#[tokio::test]
async fn scopes_too_narrow_ask_for_step_up_with_every_needed_scope() {
    let p = Provider::start("/as").await;
    let rail = p.rail(ES, |c| {
        c.implied_scopes.insert(
            "mcp:admin".into(),
            vec!["mcp:tools".into(), "mcp:read".into()],
        );
    });
    let needed = scopes(&["mcp:tools", "mcp:read"]);
    let narrow = p
        .access_token(&ClientAuth::Secret, ES, "mcp:read", None)
        .await;
    let o = rail
        .verify_detailed(&bearer(&narrow), &needed, None, now())
        .await;
    match &o {
        OAuthOutcome::InsufficientScope {
            needed: n,
            missing,
            scheme,
            identity,
        } => {
            assert_eq!(n, &needed);
            assert_eq!(missing, &scopes(&["mcp:tools"]));
            assert_eq!(*scheme, Scheme::Bearer);
            assert!(matches!(identity, Identity::OAuth { .. }));
        }
        other => panic!("{other:?}"),
    }
    let r = rail.response_for(&o, &needed).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.www_authenticate,
        vec![format!(
            "Bearer error=\"insufficient_scope\", error_description=\"the token lacks scopes this \
             call needs\", resource_metadata=\"{}\", scope=\"mcp:tools mcp:read\"",
            rail.resource_metadata_url()
        )]
    );
    // Through the trait it is a stale credential (the gateway answers 403 from the outcome).
    let rails: Vec<Arc<dyn Rail>> = vec![Arc::new(rail.scoped(HttpContext::new("POST", ES)))];
    let price = Price::of(vec![turnpike_oauth::offer(needed.clone())]);
    match decide(&rails, &facts(now()), &price, &[bearer(&narrow)]).await {
        Decision::Challenge { refusals, .. } => {
            assert!(
                refusals[0].reason.starts_with("insufficient_scope"),
                "{refusals:?}"
            )
        }
        d => panic!("{d:?}"),
    }
    // A broader scope implies the narrower ones.
    let admin = p
        .access_token(&ClientAuth::Secret, ES, "mcp:admin", None)
        .await;
    assert_pass(
        &rail
            .verify_detailed(&bearer(&admin), &needed, None, now())
            .await,
    );
    // A call that names no scope needs only a valid token.
    assert_pass(
        &rail
            .verify_detailed(&bearer(&narrow), &[], None, now())
            .await,
    );
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_cached_by_hash() {
    let p = Provider::start("/as").await;
    let rail = p.rail(OPAQUE, |c| {
        c.introspection = Some(turnpike_oauth::IntrospectionConfig::new(
            "turnpike-rs",
            turnpike_oauth::Secret::new(RS_SECRET),
        ));
    });
    let needed = scopes(&["mcp:tools"]);
    let token = p
        .access_token(&ClientAuth::Secret, OPAQUE, "mcp:tools", None)
        .await;
    assert!(!token.contains('.'), "an opaque token: {token}");
    let a = assert_pass(
        &rail
            .verify_detailed(&bearer(&token), &needed, None, now())
            .await,
    )
    .clone();
    assert_eq!(
        a.identity,
        Identity::OAuth {
            issuer: p.issuer.clone(),
            subject: "agent-secret".into(),
            client_id: Some("agent-secret".into()),
        }
    );
    assert_eq!(rail.issuer_stats().introspections, 1);
    assert_pass(
        &rail
            .verify_detailed(&bearer(&token), &needed, None, now())
            .await,
    );
    assert_eq!(
        rail.issuer_stats().introspections,
        1,
        "answered from the cache"
    );

    // Unknown tokens are inactive; the answer is cached too.
    for _ in 0..3 {
        assert_rejected(
            &rail
                .verify_detailed(&bearer("made-up-token-0123456789"), &needed, None, now())
                .await,
            ErrorCode::InvalidToken,
            "not active",
        );
    }
    assert_eq!(rail.issuer_stats().introspections, 2);

    // A DPoP-bound opaque token: the binding comes from introspection (cnf.jkt).
    let key = DpopKey::es256();
    let bound = p
        .access_token(&ClientAuth::Secret, OPAQUE, "mcp:tools", Some(&key))
        .await;
    assert_rejected(
        &rail
            .verify_detailed(&bearer(&bound), &needed, None, now())
            .await,
        ErrorCode::InvalidToken,
        "DPoP-bound",
    );
    let proof = key.proof(&ProofSpec::new("POST", OPAQUE, Some(&bound)));
    assert!(
        assert_pass(
            &rail
                .verify_detailed(&dpop(&bound, &proof), &needed, None, now())
                .await
        )
        .dpop_bound
    );

    // A real opaque token introspected by a rail for another resource: wrong audience.
    let other = p.rail(ES, |c| {
        c.introspection = Some(turnpike_oauth::IntrospectionConfig::new(
            "turnpike-rs",
            turnpike_oauth::Secret::new(RS_SECRET),
        ));
    });
    assert_rejected(
        &other
            .verify_detailed(&bearer(&token), &needed, None, now())
            .await,
        ErrorCode::InvalidToken,
        "another resource",
    );

    // Wrong introspection credentials: the issuer refuses us, so the rail fails closed.
    let wrong = p.rail(OPAQUE, |c| {
        c.introspection = Some(turnpike_oauth::IntrospectionConfig::new(
            "turnpike-rs",
            turnpike_oauth::Secret::new("wrong"),
        ));
    });
    let o = wrong
        .verify_detailed(&bearer(&token), &needed, None, now())
        .await;
    assert!(matches!(o, OAuthOutcome::Unavailable(_)), "{o:?}");
    assert_eq!(wrong.response_for(&o, &needed).unwrap().status, 503);
}
