//! OAuth for the load run without a network: a loopback authorization server that publishes
//! its keys (`--serve-issuer`), and the access tokens and DPoP proofs the generator signs with
//! them (`--jwt`).
//!
//! The issuer makes an ES256 (P-256) and an Ed25519 key at start, writes them (PKCS#8) with
//! its URL to a file only its owner can read, and serves RFC 8414 metadata and the JWKS on
//! 127.0.0.1, port 0. The generator reads that file and signs RFC 9068 access tokens for the
//! gateway's resource (the URL it calls); with `--dpop` the tokens are bound (`cnf.jkt`) to a
//! key of its own and every call carries a fresh proof. Signing is done before the timed
//! phase, like the proof-of-work credentials.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

/// The key id of the issuer's ES256 key.
const ES256_KID: &str = "loadrun-es256";
/// The key id of the issuer's Ed25519 key.
const ED25519_KID: &str = "loadrun-ed25519";
/// How long a token is valid (the longest run stays well inside it).
const TOKEN_LIFETIME_SECS: u64 = 3600;

/// The signature algorithm of the access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum JwtAlg {
    /// ECDSA over P-256 with SHA-256.
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl JwtAlg {
    fn name(self) -> &'static str {
        match self {
            JwtAlg::Es256 => "ES256",
            JwtAlg::EdDsa => "EdDSA",
        }
    }
}

fn b64(d: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

fn sha256(d: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, d)
}

/// The public JWK of an uncompressed P-256 point (`04 ‖ x ‖ y`), with its members in RFC 7638
/// order (so that its text is also the thumbprint input when `kid` is left out).
fn p256_jwk(point: &[u8]) -> anyhow::Result<(String, String)> {
    if point.len() != 65 || point[0] != 4 {
        bail!("not an uncompressed P-256 point");
    }
    Ok((b64(&point[1..33]), b64(&point[33..])))
}

/// The issuer's public keys as a JWKS document.
fn jwks(es: &EcdsaKeyPair, ed: &Ed25519KeyPair) -> anyhow::Result<String> {
    let (x, y) = p256_jwk(es.public_key().as_ref())?;
    Ok(json!({"keys": [
        {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": ES256_KID, "use": "sig", "alg": "ES256"},
        {"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref()), "kid": ED25519_KID,
         "use": "sig", "alg": "EdDSA"},
    ]})
    .to_string())
}

/// Runs the loopback issuer until the process is stopped: writes `key_file` (mode 0600; it
/// must not exist) and serves `/.well-known/oauth-authorization-server` and `/jwks` on
/// 127.0.0.1, port 0. Logs `issuer listening on http://127.0.0.1:PORT` once the file is written.
pub(crate) async fn serve_issuer(key_file: &Path) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the issuer's listener")?;
    let issuer = format!("http://{}", listener.local_addr()?);
    let keys = Bytes::from(make_keys(key_file, &issuer)?);
    let metadata = Bytes::from(
        json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["client_credentials"],
        })
        .to_string(),
    );
    eprintln!("issuer listening on {issuer}");

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("issuer: accept failed: {e}");
                // Out of descriptors, say: back off rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let (metadata, keys) = (metadata.clone(), keys.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let body = match req.uri().path() {
                    "/.well-known/oauth-authorization-server" => Some(metadata.clone()),
                    "/jwks" => Some(keys.clone()),
                    _ => None,
                };
                async move {
                    let resp = match body {
                        Some(b) => Response::builder()
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(Full::new(b)),
                        None => Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::new())),
                    };
                    Ok::<_, Infallible>(resp.unwrap_or_default())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Makes the issuer's keys, writes them with `issuer` to `key_file` (mode 0600; it must not
/// exist) and returns the JWKS document of their public halves.
fn make_keys(key_file: &Path, issuer: &str) -> anyhow::Result<String> {
    let rng = SystemRandom::new();
    let es_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("generating the ES256 key failed"))?;
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("generating the Ed25519 key failed"))?;
    let es = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, es_pkcs8.as_ref(), &rng)
        .map_err(|e| anyhow::anyhow!("the ES256 key: {e}"))?;
    let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref())
        .map_err(|e| anyhow::anyhow!("the Ed25519 key: {e}"))?;
    let file = json!({
        "issuer": issuer,
        "es256_pkcs8": STANDARD.encode(es_pkcs8.as_ref()),
        "ed25519_pkcs8": STANDARD.encode(ed_pkcs8.as_ref()),
    });
    turnpike_fs::create_private(key_file, file.to_string().as_bytes())
        .with_context(|| format!("writing {}", key_file.display()))?;
    jwks(&es, &ed)
}

/// A signing key of one algorithm.
enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Signer {
    /// `header.payload.signature` over the JSON `header` and `claims`.
    fn sign(&self, rng: &SystemRandom, header: &str, claims: &str) -> anyhow::Result<String> {
        match self {
            Signer::Es256(k) => sign_es256(k, rng, header, claims),
            Signer::EdDsa(k) => {
                let mut out = signing_input(header, claims);
                let sig = b64(k.sign(out.as_bytes()));
                out.push('.');
                out.push_str(&sig);
                Ok(out)
            }
        }
    }
}

/// `base64url(header).base64url(claims)`.
fn signing_input(header: &str, claims: &str) -> String {
    let mut out = b64(header);
    out.push('.');
    out.push_str(&b64(claims));
    out
}

/// A compact JWS over `header` and `claims`, signed with the P-256 key `key`.
fn sign_es256(
    key: &EcdsaKeyPair,
    rng: &SystemRandom,
    header: &str,
    claims: &str,
) -> anyhow::Result<String> {
    let mut out = signing_input(header, claims);
    let sig = key
        .sign(rng, out.as_bytes())
        .map_err(|_| anyhow::anyhow!("ES256 signing failed"))?;
    out.push('.');
    out.push_str(&b64(sig));
    Ok(out)
}

/// What one call presents: `Authorization`, and `DPoP` for a bound token.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    /// The `Authorization` header.
    pub(crate) authorization: HeaderValue,
    /// The `DPoP` header (a proof for this call).
    pub(crate) dpop: Option<HeaderValue>,
}

/// Mints access tokens (and DPoP proofs) for one resource.
pub(crate) struct Minter {
    issuer: String,
    signer: Signer,
    alg: JwtAlg,
    audience: String,
    scope: String,
    /// The DPoP key and its thumbprint, when tokens are bound.
    dpop: Option<(EcdsaKeyPair, String, String)>,
    /// Makes every `jti` of this run distinct from other runs'.
    run_id: String,
    next: AtomicU64,
    rng: SystemRandom,
}

impl Minter {
    /// Reads the issuer's key file and prepares to sign tokens with `alg` for `audience` (the
    /// gateway's resource: the URL called), with `scope`; `dpop` binds them to a key made now.
    pub(crate) fn new(
        key_file: &Path,
        alg: JwtAlg,
        audience: String,
        scope: String,
        dpop: bool,
    ) -> anyhow::Result<Minter> {
        let text = std::fs::read(key_file)
            .with_context(|| format!("reading the issuer's key file {}", key_file.display()))?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).context("the issuer's key file is not JSON")?;
        let field = |k: &str| -> anyhow::Result<Vec<u8>> {
            let s = v
                .get(k)
                .and_then(|x| x.as_str())
                .with_context(|| format!("the issuer's key file has no {k}"))?;
            STANDARD
                .decode(s)
                .with_context(|| format!("the issuer's key file: {k} is not base64"))
        };
        let issuer = v
            .get("issuer")
            .and_then(|x| x.as_str())
            .context("the issuer's key file has no issuer")?
            .to_string();
        let rng = SystemRandom::new();
        let signer = match alg {
            JwtAlg::Es256 => Signer::Es256(
                EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &field("es256_pkcs8")?,
                    &rng,
                )
                .map_err(|e| anyhow::anyhow!("the issuer's ES256 key: {e}"))?,
            ),
            JwtAlg::EdDsa => Signer::EdDsa(
                Ed25519KeyPair::from_pkcs8(&field("ed25519_pkcs8")?)
                    .map_err(|e| anyhow::anyhow!("the issuer's Ed25519 key: {e}"))?,
            ),
        };
        let dpop = if dpop {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| anyhow::anyhow!("generating the DPoP key failed"))?;
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|e| anyhow::anyhow!("the DPoP key: {e}"))?;
            let (x, y) = p256_jwk(key.public_key().as_ref())?;
            // RFC 7638: the required members in lexicographic order, no white space.
            let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            let jkt = b64(sha256(canonical.as_bytes()));
            Some((key, canonical, jkt))
        } else {
            None
        };
        let mut id = [0u8; 9];
        ring::rand::SecureRandom::fill(&rng, &mut id)
            .map_err(|_| anyhow::anyhow!("no random bytes"))?;
        Ok(Minter {
            issuer,
            signer,
            alg,
            audience,
            scope,
            dpop,
            run_id: b64(id),
            next: AtomicU64::new(0),
            rng,
        })
    }

    fn jti(&self) -> String {
        format!(
            "{}-{}",
            self.run_id,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A fresh access token, valid from `now` for an hour.
    pub(crate) fn token(&self, now: u64) -> anyhow::Result<String> {
        let kid = match self.alg {
            JwtAlg::Es256 => ES256_KID,
            JwtAlg::EdDsa => ED25519_KID,
        };
        let header = json!({"alg": self.alg.name(), "kid": kid, "typ": "at+jwt"}).to_string();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": "loadrun",
            "aud": self.audience,
            "client_id": "turnpike-loadgen",
            "scope": self.scope,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_SECS,
            "jti": self.jti(),
        });
        if let Some((_, _, jkt)) = &self.dpop {
            claims["cnf"] = json!({"jkt": jkt});
        }
        self.signer.sign(&self.rng, &header, &claims.to_string())
    }

    /// What one call presents with `token`: `Authorization: Bearer <token>`, or with DPoP
    /// `Authorization: DPoP <token>` and a fresh proof for `POST` to the audience at `now`.
    pub(crate) fn auth(&self, token: &str, now: u64) -> anyhow::Result<Auth> {
        let Some((key, canonical, _)) = &self.dpop else {
            return Ok(Auth {
                authorization: HeaderValue::try_from(format!("Bearer {token}"))?,
                dpop: None,
            });
        };
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{canonical}}}"#);
        let claims = json!({
            "jti": self.jti(),
            "htm": "POST",
            "htu": self.audience,
            "iat": now,
            "ath": b64(sha256(token.as_bytes())),
        })
        .to_string();
        let proof = sign_es256(key, &self.rng, &header, &claims)?;
        Ok(Auth {
            authorization: HeaderValue::try_from(format!("DPoP {token}"))?,
            dpop: Some(HeaderValue::try_from(proof)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use turnpike_core::Credential;
    use turnpike_oauth::jose::Alg;
    use turnpike_oauth::{BearerCredential, OAuthConfig, OAuthOutcome, OAuthRail};

    const AUDIENCE: &str = "http://127.0.0.1:8402/mcp";
    const ISSUER: &str = "http://127.0.0.1:9";

    /// A scratch directory of this test's own.
    fn scratch(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("turnpike-loadgen-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rail(jwks: &str) -> OAuthRail {
        let mut cfg = OAuthConfig::new(ISSUER).with_default_resource(AUDIENCE);
        cfg.algorithms = vec![Alg::ES256, Alg::EdDSA];
        let rail = OAuthRail::new(cfg, Arc::new(turnpike_store::MemorySpentSet::new())).unwrap();
        assert_eq!(rail.preload_jwks(jwks.as_bytes()).unwrap(), 2);
        rail
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn credential(a: &Auth) -> Credential {
        let header = a.authorization.to_str().unwrap();
        let token = header.split_once(' ').unwrap().1.to_string();
        Credential::from(BearerCredential {
            token,
            dpop: a.dpop.as_ref().map(|p| p.to_str().unwrap().to_string()),
        })
    }

    /// The tokens and proofs the generator signs pass the rail's own checks, and the key file
    /// is written once, for its owner only.
    #[tokio::test]
    async fn minted_tokens_and_proofs_verify() {
        let dir = scratch("mint");
        let file = dir.join("issuer.json");
        let jwks = make_keys(&file, ISSUER).unwrap();
        assert!(
            make_keys(&file, ISSUER).is_err(),
            "an existing key file is kept"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let rail = rail(&jwks);
        let needed = vec!["mcp:tools".to_string()];
        let t = now();
        for alg in [JwtAlg::Es256, JwtAlg::EdDsa] {
            let m = Minter::new(&file, alg, AUDIENCE.into(), "mcp:tools".into(), false).unwrap();
            let (a, b) = (m.token(t).unwrap(), m.token(t).unwrap());
            assert_ne!(a, b, "every token is distinct");
            let auth = m.auth(&a, t).unwrap();
            assert!(auth.dpop.is_none());
            let o = rail
                .verify_detailed(&credential(&auth), &needed, None, t)
                .await;
            assert!(matches!(o, OAuthOutcome::Pass(_)), "{alg:?}: {o:?}");
            // Another scope is not granted.
            let o = rail
                .verify_detailed(&credential(&auth), &["admin".to_string()], None, t)
                .await;
            assert!(matches!(o, OAuthOutcome::InsufficientScope { .. }), "{o:?}");
        }
        // DPoP: a bound token, a fresh proof per call, each accepted once.
        let m = Minter::new(
            &file,
            JwtAlg::Es256,
            AUDIENCE.into(),
            "mcp:tools".into(),
            true,
        )
        .unwrap();
        let token = m.token(t).unwrap();
        let (p1, p2) = (m.auth(&token, t).unwrap(), m.auth(&token, t).unwrap());
        assert!(p1.authorization.to_str().unwrap().starts_with("DPoP "));
        assert_ne!(p1.dpop, p2.dpop);
        for p in [&p1, &p2] {
            let o = rail.verify_detailed(&credential(p), &needed, None, t).await;
            assert!(
                matches!(o, OAuthOutcome::Pass(ref a) if a.dpop_bound),
                "{o:?}"
            );
        }
        let o = rail
            .verify_detailed(&credential(&p1), &needed, None, t)
            .await;
        assert!(
            matches!(o, OAuthOutcome::Rejected(_)),
            "a proof replayed: {o:?}"
        );
        // The bound token without its proof is refused.
        let bare = Auth {
            authorization: HeaderValue::try_from(format!("Bearer {token}")).unwrap(),
            dpop: None,
        };
        let o = rail
            .verify_detailed(&credential(&bare), &needed, None, t)
            .await;
        assert!(matches!(o, OAuthOutcome::Rejected(_)), "{o:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
