//! The OAuth rail through the real gateway, against a real authorization server: oidc-provider
//! (npm, installed under `.deps` by `scripts/setup-test-deps`), started on loopback with the
//! configuration turnpike-oauth's own tests use (`crates/turnpike-oauth/tests/oidc/provider.mjs`).
//!
//! Protected-resource metadata at both well-known paths, the 401 of an OAuth-only tool, tokens
//! from client credentials with a secret and with a signed JWT assertion (RFC 7523), DPoP-bound
//! tokens with good and bad proofs, a token for another audience, a token without every scope
//! (403 step-up), a dual-rail tool (a token skips the puzzle), and that the upstream never sees
//! the caller's token — only the gateway's signed identity statement, and with token exchange
//! (RFC 8693, a grant registered in the provider) a token the server issued for the upstream.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/oidc.rs"]
mod oidc;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use oidc::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const ADMIN_TOKEN: &str = "oauth-test-admin-token-0123456789";
const IDENTITY_SECRET: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// The gateway's configuration: `echo` needs a token with `mcp:tools deploy:write`; `dear` takes
/// any valid token or a puzzle; every other tool any valid token; `slow` is free.
fn oauth_config(upstream: SocketAddr, issuer: &str, extra: &str) -> String {
    let data_dir = scratch_data_dir().display().to_string();
    format!(
        r#"{head}
[tools.echo]
oauth = {{ scopes = ["mcp:tools", "deploy:write"] }}
[tools.dear]
oauth = true
pow = 3000
[tools.default]
oauth = true
[tools.slow]
free = true

[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[oauth]
issuer = "{issuer}"
scopes_supported = ["mcp:tools"]
resource_name = "turnpike test"
forward_identity = "signed"
identity_secret = "{IDENTITY_SECRET}"
{extra}
"#,
        head = config_head(upstream, &data_dir, ""),
    )
}

struct Env {
    gw: SocketAddr,
    url: String,
    log: Log,
    provider: Provider,
    admin: SocketAddr,
}

/// Upstream, gateway (its listener bound first, so the resource is known), provider.
async fn setup(extra: &str) -> Env {
    setup_with(extra, None).await
}

/// [`setup`] with the provider's token-exchange grant (see [`Provider::start_with`]) made
/// from the gateway's URL.
async fn setup_with(extra: &str, exchange: Option<&dyn Fn(&str) -> Value>) -> Env {
    let (up, log) = start_upstream(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let url = format!("http://{gw}/mcp");
    let provider = Provider::start_with(&url, exchange.map(|f| f(&url)).as_ref()).await;
    let cfg =
        turnpike_gateway::parse(&oauth_config(up, &provider.issuer, extra), "oauth.toml").unwrap();
    let (_, admin) = support::serve_ready(listener, cfg).await;
    let admin = admin.unwrap();
    Env {
        gw,
        url,
        log,
        provider,
        admin,
    }
}

/// The gateway's metrics text, from its admin listener.
async fn metrics(env: &Env) -> String {
    let req = http::Request::get(format!("http://{}/metrics", env.admin))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = hyper_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// The value of one series of the metrics text (0 when absent).
fn series(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn www(r: &Reply) -> Vec<String> {
    r.headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The upstream saw no `Authorization` or `DPoP` header, ever.
fn assert_no_token_upstream(log: &Log) {
    for seen in log.lock().iter() {
        assert!(seen.headers.get("authorization").is_none(), "{seen:?}");
        assert!(seen.headers.get("dpop").is_none(), "{seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_through_the_gateway() {
    let env = setup("").await;
    let gw = env.gw;
    let metadata_url = format!("http://{gw}/.well-known/oauth-protected-resource/mcp");

    // Metadata at both well-known paths.
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, body) = http_get(&format!("http://{gw}{path}")).await;
        assert_eq!(status, 200, "{path}");
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["resource"], env.url);
        assert_eq!(doc["authorization_servers"], json!([env.provider.issuer]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(doc["resource_name"], "turnpike test");
        assert_eq!(doc["dpop_bound_access_tokens_required"], false);
    }
    // Host-checked like the endpoint.
    let mut req = request(gw, Method::GET, &[("host", "evil.example")], Bytes::new());
    *req.uri_mut() = metadata_url.parse().unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // CORS-friendly.
    let r = send({
        let mut req = request(
            gw,
            Method::GET,
            &[("origin", "https://app.example")],
            Bytes::new(),
        );
        *req.uri_mut() = metadata_url.parse().unwrap();
        req
    })
    .await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");

    // An OAuth-only tool without a token: 401 with the Bearer challenge, even in band.
    for headers in [vec![], vec![("mcp-protocol-version", "2025-11-25")]] {
        let r = post(gw, &headers, &call(1, "echo", json!({"text": "hi"}))).await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(
            www(&r),
            vec![format!(
                "Bearer resource_metadata=\"{metadata_url}\", scope=\"mcp:tools deploy:write\", \
                 DPoP algs=\"ES256 EdDSA Ed25519 PS256 RS256\""
            )]
        );
        let v = r.json();
        assert_eq!(v["id"], 1);
        assert_eq!(v["error"]["code"], -31402);
        assert_eq!(v["error"]["data"]["challenges"][0]["rail"], "oauth");
    }
    let r = post(gw, &[], &call(2, "other", json!({}))).await;
    assert_eq!(r.status, 401);
    assert!(www(&r)[0].contains("scope=\"mcp:tools\""), "{:?}", www(&r));

    // A real token (client secret) → 200; the upstream never sees it, but gets the identity.
    let token = env.provider.token(false, &env.url, SCOPES, None).await;
    let bearer = format!("Bearer {token}");
    let r = post(
        gw,
        &[("authorization", &bearer)],
        &call(3, "echo", json!({"text": "hi"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "hi");
    {
        let log = env.log.lock();
        let seen = log.last().unwrap();
        let id = seen.headers["turnpike-identity"].to_str().unwrap();
        let signer =
            turnpike_gateway::identity::IdentitySigner::from_hex(IDENTITY_SECRET, &env.url)
                .unwrap();
        let claims = signer
            .verify(id, now())
            .expect("a valid identity statement");
        assert_eq!(claims["iss"], env.provider.issuer);
        assert_eq!(claims["sub"], "agent-secret");
        assert_eq!(claims["client_id"], "agent-secret");
        assert_eq!(claims["aud"], env.url);
    }
    // A caller's own Turnpike-Identity is never forwarded.
    let r = post(
        gw,
        &[
            ("authorization", &bearer),
            ("turnpike-identity", "v1.forged.x"),
        ],
        &call(4, "echo", json!({"text": "again"})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_ne!(
        env.log.lock().last().unwrap().headers["turnpike-identity"],
        "v1.forged.x"
    );
    // GET and DELETE carry no priced call, and lose the token too.
    for m in [Method::GET, Method::DELETE] {
        let _ = send(request(
            gw,
            m,
            &[("authorization", &bearer), ("dpop", "x.y.z")],
            Bytes::new(),
        ))
        .await;
    }
    assert_no_token_upstream(&env.log);

    // A signed JWT assertion (RFC 7523) client → 200.
    let token_jwt = env.provider.token(true, &env.url, SCOPES, None).await;
    let r = post(
        gw,
        &[("authorization", &format!("Bearer {token_jwt}"))],
        &call(5, "echo", json!({"text": "jwt"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "jwt");

    // A token for another resource → 401 invalid_token.
    let other = env.provider.token(false, OTHER, SCOPES, None).await;
    let r = post(
        gw,
        &[("authorization", &format!("Bearer {other}"))],
        &call(6, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        www(&r)[0].starts_with("Bearer error=\"invalid_token\""),
        "{:?}",
        www(&r)
    );
    assert_eq!(r.json()["error"]["data"]["oauth_error"], "invalid_token");
    // A forged token (garbage signature) → 401; malformed → 400.
    let mut forged = token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let r = post(
        gw,
        &[("authorization", &format!("Bearer {forged}"))],
        &call(7, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = post(
        gw,
        &[("authorization", "Bearer not a token")],
        &call(8, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        www(&r)[0].contains("error=\"invalid_request\""),
        "{:?}",
        www(&r)
    );

    // Scope too narrow → 403 naming every scope the call needs.
    let narrow = env.provider.token(false, &env.url, "mcp:tools", None).await;
    let r = post(
        gw,
        &[("authorization", &format!("Bearer {narrow}"))],
        &call(9, "echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let w = www(&r);
    assert!(
        w[0].starts_with("Bearer error=\"insufficient_scope\""),
        "{w:?}"
    );
    assert!(w[0].contains("scope=\"mcp:tools deploy:write\""), "{w:?}");
    // … while a tool that takes any token lets it through.
    let r = post(
        gw,
        &[("authorization", &format!("Bearer {narrow}"))],
        &call(10, "other", json!({})),
    )
    .await;
    assert_ne!(r.status, 401);
    assert_ne!(r.status, 403);

    // Dual rail: no token → 402 with PoW then Bearer; a token skips the puzzle.
    let r = post(gw, &[], &call(11, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let w = www(&r);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("PoW "), "{w:?}");
    assert!(w[1].starts_with("Bearer "), "{w:?}");
    let r = post(
        gw,
        &[("authorization", &bearer)],
        &call(12, "dear", json!({"n": 1})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "dear 1");
    // In band, the OAuth option is in the text.
    let r = post(
        gw,
        &[("mcp-protocol-version", "2025-11-25")],
        &call(13, "dear", json!({"n": 1})),
    )
    .await;
    assert_eq!(r.status, 200);
    let text = r.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("Proof-of-work"), "{text}");
    assert!(text.contains("Authorization: Bearer <token>"), "{text}");
    // The puzzle still works for callers without a token.
    let r = post(
        gw,
        &[("turnpike-challenge", "http")],
        &call(14, "dear", json!({"n": 2})),
    )
    .await;
    let (challenge, nonces) = solve(&r.text());
    let sol: Vec<String> = nonces.iter().map(u64::to_string).collect();
    let auth = format!(
        "PoW challenge=\"{challenge}\", solution=\"{}\"",
        sol.join(",")
    );
    let r = post(
        gw,
        &[("authorization", &auth)],
        &call(14, "dear", json!({"n": 2})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // tools/list names the OAuth offer.
    let r = post(
        gw,
        &[],
        &json!({"jsonrpc":"2.0","id":15,"method":"tools/list"}),
    )
    .await;
    let tools = r.json()["result"]["tools"].clone();
    let echo = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap();
    assert_eq!(
        echo["_meta"]["turnpike/price"]["offers"][0],
        json!({"rail": "oauth", "scopes": ["mcp:tools", "deploy:write"]})
    );

    assert_no_token_upstream(&env.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_through_the_gateway() {
    let env = setup("dpop_nonce = false").await;
    let gw = env.gw;
    let key = EcKey::generate();
    let token = env
        .provider
        .token(false, &env.url, SCOPES, Some(&key))
        .await;
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint(), "a DPoP-bound token");
    let auth = format!("DPoP {token}");
    let body = call(1, "echo", json!({"text": "bound"}));

    // A valid proof → 200.
    let proof = key.proof("POST", &env.url, Some(&token));
    let r = post(gw, &[("authorization", &auth), ("dpop", &proof)], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "bound");
    // The same proof again → 401 (replay).
    let r = post(gw, &[("authorization", &auth), ("dpop", &proof)], &body).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        www(&r)[0].starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{:?}",
        www(&r)
    );
    // Without a proof → 401.
    let r = post(gw, &[("authorization", &auth)], &body).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(www(&r)[0].starts_with("DPoP error="), "{:?}", www(&r));
    // As a plain Bearer token → 401 invalid_token.
    let r = post(gw, &[("authorization", &format!("Bearer {token}"))], &body).await;
    assert_eq!(r.status, 401);
    assert!(www(&r)[0].contains("invalid_token"), "{:?}", www(&r));
    // A proof for another URL, or another method → 401 invalid_dpop_proof.
    for (htm, htu) in [
        ("POST", format!("http://{gw}/other")),
        ("GET", env.url.clone()),
    ] {
        let proof = key.proof(htm, &htu, Some(&token));
        let r = post(gw, &[("authorization", &auth), ("dpop", &proof)], &body).await;
        assert_eq!(r.status, 401, "{htm} {htu}: {}", r.text());
        assert!(www(&r)[0].contains("invalid_dpop_proof"), "{:?}", www(&r));
    }
    // A proof by another key → 401.
    let other = EcKey::generate();
    let proof = other.proof("POST", &env.url, Some(&token));
    let r = post(gw, &[("authorization", &auth), ("dpop", &proof)], &body).await;
    assert_eq!(r.status, 401);
    assert_no_token_upstream(&env.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_nonces_and_required_dpop() {
    let env = setup("dpop_nonce = true\nrequire_dpop = true").await;
    let gw = env.gw;
    // Bearer tokens are refused when DPoP is required.
    let plain = env.provider.token(false, &env.url, SCOPES, None).await;
    let body = call(1, "echo", json!({"text": "n"}));
    let r = post(gw, &[("authorization", &format!("Bearer {plain}"))], &body).await;
    assert_eq!(r.status, 401);
    let key = EcKey::generate();
    let token = env
        .provider
        .token(false, &env.url, SCOPES, Some(&key))
        .await;
    let auth = format!("DPoP {token}");
    // A proof without a nonce → 401 use_dpop_nonce with DPoP-Nonce.
    let proof = key.proof("POST", &env.url, Some(&token));
    let r = post(gw, &[("authorization", &auth), ("dpop", &proof)], &body).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(www(&r)[0].contains("use_dpop_nonce"), "{:?}", www(&r));
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_owned();
    // With it → 200, and a nonce for next time.
    let claims = json!({"jti": b64(rand::random::<[u8; 16]>()), "htm": "POST",
        "htu": env.url, "iat": now(), "nonce": nonce,
        "ath": b64(Sha256::digest(token.as_bytes()))});
    let proof = key.sign(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()}),
        &claims,
    );
    let r = post(gw, &[("authorization", &auth), ("dpop", &proof)], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.contains_key("dpop-nonce"));
    // The metadata says DPoP is required.
    let (_, doc) = http_get(&format!("http://{gw}/.well-known/oauth-protected-resource")).await;
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["dpop_bound_access_tokens_required"], true);
    assert_no_token_upstream(&env.log);
}

/// POSTs `body` to the gateway from the loopback address `src` (a client socket can bind any
/// 127/8 address before connecting); returns the status and the `WWW-Authenticate` values.
async fn post_from(
    src: std::net::Ipv4Addr,
    gw: SocketAddr,
    authorization: &str,
    body: &Value,
) -> (u16, Vec<String>) {
    let (status, headers, _) = post_from_full(src, gw, authorization, body).await;
    let www = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .collect();
    (status, www)
}

/// [`post_from`], returning the status, the headers and the body as JSON (`Null` if it is not).
async fn post_from_full(
    src: std::net::Ipv4Addr,
    gw: SocketAddr,
    authorization: &str,
    body: &Value,
) -> (u16, hyper::HeaderMap, Value) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((src, 0))).unwrap();
    let stream = socket.connect(gw).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = request(
        gw,
        Method::POST,
        &[("authorization", authorization)],
        body.to_string(),
    );
    *req.uri_mut() = "/mcp".parse().unwrap();
    req.headers_mut()
        .insert("host", gw.to_string().parse().unwrap());
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The `Retry-After` seconds of a response, checked against the JSON-RPC error's
/// `data.retry_after`, with no `WWW-Authenticate` line and the JSON-RPC `code`.
fn come_back_after(headers: &hyper::HeaderMap, body: &Value, code: i64) -> u64 {
    let secs: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {headers:?}"));
    assert!(secs >= 1);
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["data"]["retry_after"], secs, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry after")),
        "{body}"
    );
    assert!(headers.get("www-authenticate").is_none(), "{headers:?}");
    secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_tokens_from_many_addresses_never_delay_or_refuse_a_real_one() {
    let (per_address, per_minute) = (3usize, 30usize);
    let env = setup(&format!(
        "jwks_fetch_spacing_ms = 200\n[oauth.introspection]\nclient_id = \"turnpike-rs\"\n\
         client_secret = \"{RS_SECRET}\"\nper_address_per_minute = {per_address}\n\
         per_minute = {per_minute}\n"
    ))
    .await;
    let gw = env.gw;
    let ip = std::net::Ipv4Addr::new;
    let started = std::time::Instant::now();
    let other = |id| call(id, "other", json!({}));
    // Every junk opaque token answered 401 was introspected (inactive); 429 (the caller's own
    // bound) or 503 (the bound in all), each with `Retry-After`, means a bound held it back
    // without a request to the authorization server.
    let mut introspected = 0usize;

    // A freshly started gate: a made-up opaque token first, then a real JWT, which passes at
    // once (its keys are fetched now; the metadata fetch the junk caused does not hold it up).
    let (s, www) = post_from(
        ip(127, 0, 0, 2),
        gw,
        "Bearer made-up-opaque-0123456789",
        &other(1),
    )
    .await;
    assert_eq!(s, 401, "{www:?}");
    assert!(www[0].contains("error=\"invalid_token\""), "{www:?}");
    introspected += 1;
    let token = env.provider.token(false, &env.url, SCOPES, None).await;
    let bearer = format!("Bearer {token}");
    let t = std::time::Instant::now();
    assert_eq!(
        post_from(ip(127, 0, 0, 3), gw, &bearer, &other(2)).await.0,
        200
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Three-part tokens without a signature: 401 invalid_token (never introspected).
    let claims = b64(
        json!({"iss": env.provider.issuer, "sub": "x", "aud": env.url,
                            "exp": now() + 60, "scope": "mcp:tools"})
        .to_string(),
    );
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "ES256", "kid": "es-1"}),
    ] {
        let token = format!("{}.{claims}.", b64(header.to_string()));
        let (s, www) = post_from(ip(127, 0, 0, 4), gw, &format!("Bearer {token}"), &other(3)).await;
        assert_eq!(s, 401, "{www:?}");
        assert!(www[0].contains("error=\"invalid_token\""), "{www:?}");
    }

    // One address floods with distinct junk tokens: at most its bound reaches the server; the
    // rest get 429 and when its bucket holds a request again (one per 20 s).
    let mut held_back = 0;
    for i in 0..20 {
        let junk = format!("Bearer junk-flood-{i:03}-0123456789");
        let (s, headers, body) = post_from_full(ip(127, 0, 1, 1), gw, &junk, &other(10 + i)).await;
        match s {
            401 => introspected += 1,
            429 => {
                let secs =
                    come_back_after(&headers, &body, turnpike_core::error_codes::RATE_LIMITED);
                assert!(secs <= 60 / per_address as u64, "{secs}");
                held_back += 1;
            }
            s => panic!("status {s}: {body}"),
        }
    }
    let refill = |per: usize| 1 + started.elapsed().as_secs() as usize * per / 60;
    assert!(
        introspected - 1 <= per_address + refill(per_address),
        "{introspected}"
    );
    assert!(
        held_back >= 20 - per_address - refill(per_address),
        "{held_back}"
    );
    // Another address's real token passes meanwhile.
    assert_eq!(
        post_from(ip(127, 0, 1, 2), gw, &bearer, &other(40)).await.0,
        200
    );

    // Forty addresses (127.0.2.1 ... 127.0.2.40) with junk: the bound in all holds, and those
    // it holds back get 503 and when it admits a request again (one per 2 s).
    let mut in_all = 0;
    for c in 1..=40u8 {
        for i in 0..2 {
            let junk = format!("Bearer junk-{c}-{i}-0123456789");
            let (s, headers, body) = post_from_full(ip(127, 0, 2, c), gw, &junk, &other(100)).await;
            match s {
                401 => introspected += 1,
                503 => {
                    let secs =
                        come_back_after(&headers, &body, turnpike_core::error_codes::UNAVAILABLE);
                    assert!(secs <= 60 / per_minute as u64, "{secs}");
                    in_all += 1;
                }
                s => panic!("status {s}: {body}"),
            }
        }
    }
    assert!(in_all > 0, "the bound in all never held");
    assert!(
        introspected <= per_minute + refill(per_minute),
        "{introspected} introspections"
    );
    // Real tokens keep passing, from any address.
    for c in 1..=5u8 {
        assert_eq!(
            post_from(ip(127, 0, 3, c), gw, &bearer, &other(200))
                .await
                .0,
            200
        );
    }
    // The metrics count what the rail answered by what it meant: a token held back by the
    // caller's own bound is rate limited, by the bound in all unavailable, a refused one refused.
    let text = metrics(&env).await;
    let calls = |outcome: &str| {
        series(
            &text,
            &format!(
                "turnpike_calls_total{{method=\"tools/call\",tool=\"other\",rail=\"none\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(calls("rate_limited"), held_back as u64, "{text}");
    assert_eq!(calls("unavailable"), in_all as u64, "{text}");
    assert_eq!(calls("refused"), introspected as u64 + 2, "{text}");
    assert_no_token_upstream(&env.log);
}

/// The claims of a JWT (its signature is the authorization server's business here).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

const UPSTREAM_AUDIENCE: &str = "https://tools.internal.test/mcp";

/// `[oauth.upstream_token.exchange]` lines for the gateway.
fn exchange_config(audience: &str, secret: &str) -> String {
    format!(
        r#"[oauth.upstream_token.exchange]
client_id = "turnpike-rs"
client_secret = "{secret}"
audience = "{audience}"
scope = "mcp:tools"
"#
    )
}

/// The provider's grant: subject tokens for the gateway, exchanged for [`UPSTREAM_AUDIENCE`].
fn exchange_grant(gateway: &str) -> Value {
    json!({"subject_audience": gateway, "audiences": [UPSTREAM_AUDIENCE], "ttl": 300})
}

/// Token exchange (RFC 8693) against oidc-provider with the grant registered through its
/// `registerGrantType`: the upstream sees only the exchanged token — issued by the server for
/// the upstream's audience, naming the caller and the gateway as actor — never the caller's;
/// one exchange serves repeated calls with one token; another token gets its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_gives_the_upstream_a_token_of_its_own() {
    let env = setup_with(
        &exchange_config(UPSTREAM_AUDIENCE, RS_SECRET),
        Some(&exchange_grant),
    )
    .await;
    let gw = env.gw;
    let token = env.provider.token(false, &env.url, SCOPES, None).await;
    let bearer = format!("Bearer {token}");
    let mut seen_tokens = Vec::new();
    for id in 1..=2 {
        let r = post(
            gw,
            &[("authorization", &bearer)],
            &call(id, "other", json!({"text": "hi"})),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = env.log.lock().last().unwrap().headers.clone();
        let upstream = seen["authorization"].to_str().unwrap().to_owned();
        let exchanged = upstream.strip_prefix("Bearer ").expect("a Bearer token");
        assert_ne!(exchanged, token, "the caller's token went upstream");
        assert!(!upstream.contains(&token));
        let c = jwt_claims(exchanged);
        let caller = jwt_claims(&token);
        assert_eq!(c["iss"], env.provider.issuer.as_str());
        assert_eq!(c["aud"], UPSTREAM_AUDIENCE);
        assert_eq!(c["sub"], caller["sub"]);
        assert_eq!(c["client_id"], "agent-secret");
        assert_eq!(c["act"]["sub"], "turnpike-rs");
        assert_eq!(c["scope"], "mcp:tools");
        // The signed identity statement still goes beside it.
        assert!(seen.get("turnpike-identity").is_some());
        seen_tokens.push(exchanged.to_owned());
    }
    assert_eq!(
        seen_tokens[0], seen_tokens[1],
        "a second call with the same token reuses the exchanged one"
    );
    // Another caller token: another exchange.
    let other = env.provider.token(true, &env.url, SCOPES, None).await;
    let r = post(
        gw,
        &[("authorization", &format!("Bearer {other}"))],
        &call(3, "other", json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = env.log.lock().last().unwrap().headers.clone();
    let exchanged = seen["authorization"].to_str().unwrap()["Bearer ".len()..].to_owned();
    assert_ne!(exchanged, seen_tokens[0]);
    assert_eq!(jwt_claims(&exchanged)["client_id"], "agent-jwt");
    // Calls that no token paid for (a free tool) get no Authorization upstream.
    let r = post(gw, &[], &call(4, "slow", json!({"ms": 1}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(env
        .log
        .lock()
        .last()
        .unwrap()
        .headers
        .get("authorization")
        .is_none());
}

/// The authorization server refusing the exchange ends the call with 403 and its error code; the
/// gateway's own client refused (a wrong secret) is a 503, fail closed; the server gone is a 503.
/// The upstream never runs, and never sees the caller's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_failed_exchange_never_forwards_the_call() {
    // An audience the server will not issue for.
    let mut env = setup_with(
        &exchange_config("https://not-allowed.test/mcp", RS_SECRET),
        Some(&exchange_grant),
    )
    .await;
    let token = env.provider.token(false, &env.url, SCOPES, None).await;
    let bearer = format!("Bearer {token}");
    let r = post(
        env.gw,
        &[("authorization", &bearer)],
        &call(1, "other", json!({})),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], -31403);
    assert_eq!(v["error"]["data"]["exchange_error"], "invalid_target");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused to exchange"),
        "{v}"
    );
    assert_eq!(tool_calls(&env.log), 0);
    assert_no_token_upstream(&env.log);
    // The provider gone: 503, the call not forwarded.
    let _ = env.provider.child.kill();
    let _ = env.provider.child.wait();
    let r = post(
        env.gw,
        &[("authorization", &bearer)],
        &call(2, "other", json!({})),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_no_token_upstream(&env.log);

    // A wrong secret for the gateway's own client: 503 (the operator's mistake), not 403.
    let env = setup_with(
        &exchange_config(UPSTREAM_AUDIENCE, "not-the-secret-0123456789"),
        Some(&exchange_grant),
    )
    .await;
    let token = env.provider.token(false, &env.url, SCOPES, None).await;
    let r = post(
        env.gw,
        &[("authorization", &format!("Bearer {token}"))],
        &call(1, "other", json!({})),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -31503);
    assert_no_token_upstream(&env.log);
}
