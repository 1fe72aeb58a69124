//! The browser sign-in (authorization code + PKCE, loopback redirect) against a small loopback
//! authorization server written here from RFC 6749 / RFC 7636 / RFC 8414, in front of a resource
//! that answers 401 with an RFC 9728 `resource_metadata` challenge. The "browser" follows the
//! authorization URL's redirect to the client's loopback listener. Then refresh: the stored
//! token is refused and the refresh token gets a new one without another sign-in.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use turnpike_client::{Client, ClientConfig, OAuthClientConfig};

#[derive(Default)]
struct As {
    base: Mutex<String>,
    challenge: Mutex<Option<(String, String)>>, // (code_challenge, redirect_uri)
    token: Mutex<String>,
    sign_ins: AtomicU32,
    refreshes: AtomicU32,
}

async fn metadata(State(a): State<Arc<As>>) -> Json<Value> {
    let b = a.base.lock().clone();
    Json(
        json!({"issuer": b, "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"), "code_challenge_methods_supported": ["S256"]}),
    )
}

async fn prm(State(a): State<Arc<As>>) -> Json<Value> {
    let b = a.base.lock().clone();
    Json(json!({"resource": format!("{b}/mcp"), "authorization_servers": [b]}))
}

/// `application/x-www-form-urlencoded` pairs.
fn pairs(s: &str) -> Vec<(String, String)> {
    let dec = |v: &str| {
        let v = v.replace('+', " ");
        let b = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

async fn authorize(State(a): State<Arc<As>>, RawQuery(q): RawQuery) -> Response {
    let q = pairs(&q.unwrap_or_default());
    let p = |n: &str| {
        q.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(p("response_type"), "code");
    assert_eq!(p("code_challenge_method"), "S256");
    assert_eq!(p("client_id"), "person");
    assert_eq!(p("resource"), format!("{}/mcp", a.base.lock()));
    let redirect = p("redirect_uri");
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    *a.challenge.lock() = Some((p("code_challenge"), redirect.clone()));
    a.sign_ins.fetch_add(1, Ordering::SeqCst);
    let loc = format!("{redirect}?code=the-code&state={}", p("state"));
    (StatusCode::FOUND, [("location", loc)]).into_response()
}

async fn token(State(a): State<Arc<As>>, body: String) -> Response {
    let f = pairs(&body);
    let p = |n: &str| {
        f.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    match p("grant_type").as_str() {
        "authorization_code" => {
            let (challenge, redirect) = a.challenge.lock().clone().unwrap();
            let got = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(p("code_verifier").as_bytes()));
            if p("code") != "the-code" || got != challenge || p("redirect_uri") != redirect {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            }
        }
        "refresh_token" if p("refresh_token") == "refresh-1" => {
            a.refreshes.fetch_add(1, Ordering::SeqCst);
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_grant"})),
            )
                .into_response()
        }
    }
    let t = format!("token-{}", rand::random::<u32>());
    *a.token.lock() = t.clone();
    Json(
        json!({"access_token": t, "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": "refresh-1", "scope": "mcp"}),
    )
    .into_response()
}

async fn mcp(State(a): State<Arc<As>>, headers: HeaderMap, body: String) -> Response {
    let msg: Value = serde_json::from_str(&body).unwrap();
    let want = format!("Bearer {}", a.token.lock());
    if headers
        .get_all("authorization")
        .iter()
        .any(|v| v.to_str().ok() == Some(want.as_str()))
    {
        return Json(json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": [{"type": "text", "text": "hello"}]}}))
            .into_response();
    }
    let b = a.base.lock().clone();
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", format!(
            "Bearer resource_metadata=\"{b}/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
        ))],
    )
        .into_response()
}

#[tokio::test]
async fn browser_sign_in_with_pkce_then_refresh() {
    let a = Arc::new(As::default());
    let app = Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/mcp", post(mcp))
        .with_state(a.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    *a.base.lock() = base.clone();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    // The "browser": follow the authorization URL to its redirect, then load the redirect.
    let browser = Arc::new(move |url: &str| {
        let url = url.to_string();
        tokio::spawn(async move {
            let t = turnpike_client::transport::Transport::new().unwrap();
            let req = |u: &str| {
                http::Request::get(u)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap()
            };
            let (parts, _) = t
                .send_read(req(&url), 1 << 16, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(parts.status, 302);
            let loc = parts.headers["location"].to_str().unwrap().to_string();
            let (parts, body) = t
                .send_read(req(&loc), 1 << 16, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(parts.status, 200, "{body:?}");
        });
    });
    let dir = std::env::temp_dir().join(format!(
        "turnpike-pkce-test-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut cfg = ClientConfig::new(dir.clone());
    cfg.oauth = Some(OAuthClientConfig {
        client_id: "person".into(),
        browser: true,
        on_authorize_url: Some(browser),
        ..OAuthClientConfig::default()
    });
    let client = Client::new(cfg.clone()).unwrap();
    let url = format!("{base}/mcp");
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "hello", "arguments": {}}});
    let r = client.rpc(&url, &call).await.unwrap();
    assert_eq!(r["result"]["content"][0]["text"], "hello", "{r}");
    assert_eq!(a.sign_ins.load(Ordering::SeqCst), 1);
    // The server forgets the token: the next call refreshes, no second sign-in.
    *a.token.lock() = "rotated".into();
    let client = Client::new(cfg).unwrap();
    let r = client.rpc(&url, &call).await.unwrap();
    assert_eq!(r["result"]["content"][0]["text"], "hello", "{r}");
    assert_eq!(a.sign_ins.load(Ordering::SeqCst), 1);
    assert_eq!(a.refreshes.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
