//! The OAuth client for headless use: the client-credentials grant (RFC 6749 §4.4) with a client
//! secret (`client_secret_basic` or `client_secret_post`) or a signed assertion
//! (`private_key_jwt`, RFC 7523, ES256), for the resource the gate names (RFC 8707 `resource`).
//!
//! Discovery follows the MCP authorization spec: the challenge's `resource_metadata` (RFC 9728,
//! else the well-known URL derived from the endpoint) names the authorization server; its
//! metadata (RFC 8414, then OpenID Connect discovery) names the token endpoint. Tokens are kept
//! in the state directory and reused until they expire; a refresh token is used when the server
//! gave one; a 403 `insufficient_scope` asks for a token with the union of the scopes.

use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

use crate::offers::BearerOffer;
use crate::store::StoredToken;
use crate::transport::Transport;
use crate::ClientError;
use turnpike_core::unix_now;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Receives the authorization URL of a browser sign-in.
pub type AuthorizeUrlHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// How the client authenticates at the token endpoint.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientConfig {
    /// The client id registered at the authorization server.
    pub client_id: String,
    /// The client secret (`client_secret_basic`, or `_post` with `secret_in_body`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Or: a P-256 private key (PKCS#8 PEM) for `private_key_jwt` assertions signed with ES256.
    #[serde(default)]
    pub private_key_pem: Option<String>,
    /// The key id to put in the assertion's header.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Scopes to ask for (space-separated); default: the challenge's `scope`, else the
    /// metadata's `scopes_supported`.
    #[serde(default)]
    pub scope: Option<String>,
    /// Send the secret as form fields instead of HTTP Basic.
    #[serde(default)]
    pub secret_in_body: bool,
    /// The token endpoint, to skip discovery.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Sign in a person: the authorization-code flow with PKCE (S256), a browser and a loopback
    /// redirect (`http://127.0.0.1:<port>/callback`, RFC 8252), instead of client credentials.
    #[serde(default)]
    pub browser: bool,
    /// The loopback port of the redirect (0: any free port; some servers want it registered).
    #[serde(default)]
    pub redirect_port: u16,
    /// Called with the authorization URL instead of opening a browser (tests, or a host that
    /// shows the link itself).
    #[serde(skip)]
    pub on_authorize_url: Option<AuthorizeUrlHook>,
}

impl std::fmt::Debug for OAuthClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClientConfig")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("scope", &self.scope)
            .field("browser", &self.browser)
            .finish_non_exhaustive()
    }
}

/// What discovery found.
#[derive(Debug, Clone)]
struct Discovered {
    resource: String,
    issuer: String,
    token_endpoint: String,
    authorization_endpoint: Option<String>,
    scopes_supported: Vec<String>,
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push('&');
        }
        s.push_str(&enc(k));
        s.push('=');
        s.push_str(&enc(v));
    }
    s
}

fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Splits `scheme://authority/path` into (`scheme://authority`, `/path`).
fn origin_and_path(url: &str) -> Result<(String, String), ClientError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ClientError::OAuth(format!("bad url {url:?}: {e}")))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| ClientError::OAuth(format!("url {url:?} has no scheme")))?;
    let auth = uri
        .authority()
        .ok_or_else(|| ClientError::OAuth(format!("url {url:?} has no host")))?;
    let path = uri.path().trim_end_matches('/').to_string();
    Ok((format!("{scheme}://{auth}"), path))
}

fn check_url(url: &str) -> Result<(), ClientError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ClientError::OAuth(format!("bad url {url:?}: {e}")))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if uri.host().is_some_and(is_loopback) => Ok(()),
        _ => Err(ClientError::OAuth(format!(
            "{url:?}: OAuth endpoints must be https (or http on loopback)"
        ))),
    }
}

fn is_loopback(h: &str) -> bool {
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|i| i.is_loopback())
            .unwrap_or(false)
}

async fn get_json(t: &Transport, url: &str) -> Result<Option<Value>, ClientError> {
    check_url(url)?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| ClientError::OAuth(format!("request: {e}")))?;
    let (parts, body) = t.send_read(req, 1 << 20, Duration::from_secs(15)).await?;
    if !parts.status.is_success() {
        return Ok(None);
    }
    Ok(serde_json::from_slice(&body).ok())
}

/// Discovers the resource's authorization server and token endpoint.
async fn discover(
    t: &Transport,
    endpoint: &str,
    offer: &BearerOffer,
) -> Result<Discovered, ClientError> {
    let (origin, path) = origin_and_path(endpoint)?;
    let mut candidates = Vec::new();
    if let Some(m) = &offer.resource_metadata {
        candidates.push(m.clone());
    }
    candidates.push(format!(
        "{origin}/.well-known/oauth-protected-resource{path}"
    ));
    candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
    let mut prm = None;
    for c in &candidates {
        if let Some(v) = get_json(t, c).await? {
            prm = Some(v);
            break;
        }
    }
    let prm = prm.ok_or_else(|| {
        ClientError::OAuth("the server publishes no protected-resource metadata".into())
    })?;
    let resource = prm
        .get("resource")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| offer.resource.clone())
        .unwrap_or_else(|| endpoint.to_string());
    let issuer = prm
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| offer.authorization_servers.first().cloned())
        .ok_or_else(|| ClientError::OAuth("the metadata names no authorization server".into()))?;
    let scopes_supported: Vec<String> = prm
        .get("scopes_supported")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let (iorigin, ipath) = origin_and_path(&issuer)?;
    let trimmed = issuer.trim_end_matches('/');
    let as_candidates = [
        format!("{iorigin}/.well-known/oauth-authorization-server{ipath}"),
        format!("{iorigin}/.well-known/openid-configuration{ipath}"),
        format!("{trimmed}/.well-known/openid-configuration"),
    ];
    for c in &as_candidates {
        if let Some(m) = get_json(t, c).await? {
            let got = m.get("issuer").and_then(Value::as_str).unwrap_or("");
            if got.trim_end_matches('/') != trimmed {
                return Err(ClientError::OAuth(format!(
                    "authorization server metadata names issuer {got:?}, expected {issuer:?}"
                )));
            }
            let token_endpoint = m
                .get("token_endpoint")
                .and_then(Value::as_str)
                .ok_or_else(|| ClientError::OAuth("no token_endpoint in the metadata".into()))?
                .to_string();
            let authorization_endpoint = m
                .get("authorization_endpoint")
                .and_then(Value::as_str)
                .map(str::to_string);
            return Ok(Discovered {
                resource,
                issuer,
                token_endpoint,
                authorization_endpoint,
                scopes_supported,
            });
        }
    }
    Err(ClientError::OAuth(format!(
        "no authorization server metadata found for {issuer}"
    )))
}

/// An ES256 `private_key_jwt` client assertion.
fn assertion(cfg: &OAuthClientConfig, pem: &str, audience: &str) -> Result<String, ClientError> {
    use p256::ecdsa::{signature::Signer, Signature, SigningKey};
    use p256::pkcs8::DecodePrivateKey;
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| ClientError::Config("private key: not PEM".into()))?;
    let key = SigningKey::from_pkcs8_der(&der)
        .map_err(|_| ClientError::Config("private key: not a PKCS#8 P-256 key".into()))?;
    let mut h = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    if let Some(kid) = &cfg.key_id {
        h["kid"] = Value::from(kid.clone());
    }
    let now = unix_now();
    let claims = serde_json::json!({
        "iss": cfg.client_id, "sub": cfg.client_id, "aud": audience,
        "iat": now, "exp": now + 60, "jti": hex::encode(rand::random::<[u8; 16]>()),
    });
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(h.to_string()),
        B64URL.encode(claims.to_string())
    );
    let sig: Signature = key.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", B64URL.encode(sig.to_bytes())))
}

/// Asks for a token: client credentials (or refresh). `scope` is space-separated.
pub(crate) async fn fetch_token(
    t: &Transport,
    cfg: &OAuthClientConfig,
    endpoint: &str,
    offer: &BearerOffer,
    scope: Option<&str>,
    refresh: Option<&StoredToken>,
) -> Result<StoredToken, ClientError> {
    let d = discover(t, endpoint, offer).await?;
    let token_endpoint = cfg.token_endpoint.clone().unwrap_or(d.token_endpoint);
    check_url(&token_endpoint)?;
    let scope = scope
        .map(str::to_string)
        .or_else(|| cfg.scope.clone())
        .or_else(|| offer.scope.clone())
        .unwrap_or_else(|| d.scopes_supported.join(" "));
    let mut pairs: Vec<(&str, String)> = Vec::new();
    match refresh.and_then(|r| r.refresh_token.as_deref()) {
        Some(rt) => {
            pairs.push(("grant_type", "refresh_token".into()));
            pairs.push(("refresh_token", rt.to_string()));
        }
        None if cfg.browser => {
            let auth_ep = d.authorization_endpoint.clone().ok_or_else(|| {
                ClientError::OAuth("the authorization server has no authorization_endpoint".into())
            })?;
            let (code, verifier, redirect) =
                authorize_in_browser(cfg, &auth_ep, &d.resource, &scope).await?;
            pairs.push(("grant_type", "authorization_code".into()));
            pairs.push(("code", code));
            pairs.push(("code_verifier", verifier));
            pairs.push(("redirect_uri", redirect));
        }
        None => pairs.push(("grant_type", "client_credentials".into())),
    }
    pairs.push(("resource", d.resource.clone()));
    if !scope.is_empty() {
        pairs.push(("scope", scope.clone()));
    }
    let mut basic = None;
    match (&cfg.private_key_pem, &cfg.client_secret) {
        (Some(pem), _) => {
            pairs.push(("client_id", cfg.client_id.clone()));
            pairs.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            pairs.push(("client_assertion", assertion(cfg, pem, &d.issuer)?));
        }
        (None, Some(secret)) if cfg.secret_in_body => {
            pairs.push(("client_id", cfg.client_id.clone()));
            pairs.push(("client_secret", secret.clone()));
        }
        (None, Some(secret)) => {
            let v = format!("{}:{}", enc(&cfg.client_id), enc(secret));
            basic = Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(v)
            ));
        }
        // A public client (browser sign-in): it identifies itself, PKCE proves the rest.
        (None, None) if cfg.browser => pairs.push(("client_id", cfg.client_id.clone())),
        (None, None) => {
            return Err(ClientError::Config(
                "oauth: a client_secret or a private key is needed".into(),
            ))
        }
    }
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(&token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    if let Some(b) = basic {
        let mut v = http::HeaderValue::from_str(&b)
            .map_err(|_| ClientError::Config("oauth: client credentials not encodable".into()))?;
        v.set_sensitive(true);
        req = req.header(header::AUTHORIZATION, v);
    }
    let req = req
        .body(Full::new(Bytes::from(form(&borrowed))))
        .map_err(|e| ClientError::OAuth(format!("request: {e}")))?;
    let (parts, body) = t.send_read(req, 1 << 20, Duration::from_secs(15)).await?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !parts.status.is_success() {
        let err = v.get("error").and_then(Value::as_str).unwrap_or("");
        let desc: String = v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(ClientError::OAuth(format!(
            "the token endpoint answered {}: {err} {desc}",
            parts.status.as_u16()
        )));
    }
    let access_token = v
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::OAuth("no access_token in the answer".into()))?
        .to_string();
    let ttype = v
        .get("token_type")
        .and_then(Value::as_str)
        .unwrap_or("Bearer");
    if !ttype.eq_ignore_ascii_case("bearer") {
        return Err(ClientError::OAuth(format!(
            "token type {ttype:?} is not supported (only Bearer)"
        )));
    }
    let expires_at = v
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(|s| unix_now() + s)
        .unwrap_or(0);
    Ok(StoredToken {
        resource: d.resource,
        issuer: d.issuer,
        client_id: cfg.client_id.clone(),
        access_token,
        refresh_token: v
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| refresh.and_then(|r| r.refresh_token.clone())),
        expires_at,
        scope: v
            .get("scope")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(scope),
    })
}

/// Decodes `%XX` and `+` in a query value.
fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs the authorization-code flow with PKCE: a loopback listener for the redirect, the
/// authorization URL opened in a browser (or handed to `on_authorize_url`), and the code read
/// from the redirect once its `state` matches. Returns (code, verifier, redirect URI).
async fn authorize_in_browser(
    cfg: &OAuthClientConfig,
    authorization_endpoint: &str,
    resource: &str,
    scope: &str,
) -> Result<(String, String, String), ClientError> {
    use sha2::Digest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    check_url(authorization_endpoint)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.redirect_port))
        .await
        .map_err(|e| ClientError::OAuth(format!("loopback redirect listener: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| ClientError::OAuth(format!("loopback redirect listener: {e}")))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let verifier = B64URL.encode(rand::random::<[u8; 32]>());
    let challenge = B64URL.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let state = B64URL.encode(rand::random::<[u8; 16]>());
    let mut q = vec![
        ("response_type", "code"),
        ("client_id", cfg.client_id.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", state.as_str()),
        ("resource", resource),
    ];
    if !scope.is_empty() {
        q.push(("scope", scope));
    }
    let sep = if authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{authorization_endpoint}{sep}{}",
        form(&q).replace('+', "%20")
    );
    match &cfg.on_authorize_url {
        Some(f) => f(&url),
        None => {
            eprintln!("turnpike: sign in to continue: {url}");
            let opener = if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            };
            let _ = std::process::Command::new(opener)
                .arg(&url)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
    }
    let wait = async {
        loop {
            let (mut sock, _) = listener
                .accept()
                .await
                .map_err(|e| ClientError::OAuth(format!("loopback redirect: {e}")))?;
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let target = head
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("");
            let Some(query) = target.strip_prefix("/callback?") else {
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            };
            let param = |n: &str| {
                query.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k == n).then(|| pct_decode(v))
                })
            };
            let ok = param("state")
                .is_some_and(|s| turnpike_core::ct_eq(s.as_bytes(), state.as_bytes()));
            let (status, text) = match (ok, param("code"), param("error")) {
                (true, Some(code), None) => {
                    let body = "Signed in. You can close this tab.";
                    let _ = sock
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                    return Ok(code);
                }
                (true, _, Some(err)) => ("400 Bad Request", format!("sign-in refused: {err}")),
                _ => ("400 Bad Request", "unexpected redirect".to_string()),
            };
            let _ = sock
                .write_all(
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                )
                .await;
            if ok {
                return Err(ClientError::OAuth(text));
            }
        }
    };
    let code = tokio::time::timeout(Duration::from_secs(300), wait)
        .await
        .map_err(|_| ClientError::OAuth("no sign-in within 5 minutes".into()))??;
    Ok((code, verifier, redirect))
}

/// The union of two space-separated scope lists, in order.
pub(crate) fn union_scopes(a: &str, b: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in a.split_whitespace().chain(b.split_whitespace()) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_forms() {
        assert_eq!(union_scopes("a b", "b c"), "a b c");
        assert_eq!(union_scopes("", "x"), "x");
        assert_eq!(
            form(&[("a", "x y"), ("b", "c:d/é")]),
            "a=x+y&b=c%3Ad%2F%C3%A9"
        );
        assert_eq!(
            origin_and_path("http://127.0.0.1:8/mcp/").unwrap(),
            ("http://127.0.0.1:8".into(), "/mcp".into())
        );
        assert!(check_url("http://example.com/token").is_err());
        assert!(check_url("http://127.0.0.1:9/token").is_ok());
    }
}
