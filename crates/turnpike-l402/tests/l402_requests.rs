//! A real L402 client — `l402-requests` from PyPI, which pays through an LND REST wallet — buys
//! access from the L402 rail. The dev backend mints the invoices and its dev wallet plays the
//! client's LND node. This test fails (it does not skip) when `l402-requests` is missing from
//! `<repo>/.venv`: scripts/test installs it.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use turnpike_core::credential::split_scheme;
use turnpike_core::{CallFacts, Offer, Rail, Verdict};
use turnpike_l402::BillingMode;
use turnpike_l402::{parse_authorization, L402Config, L402Rail, SqliteStore};
use turnpike_lightning::dev::{DevBackend, DevWalletOptions};
use turnpike_store::MemorySpentSet;

struct App {
    rail: L402Rail,
    challenges: AtomicUsize,
    passes: AtomicUsize,
}

async fn gated(app: &App, headers: &HeaderMap, path: &str, offer: Offer) -> Response {
    let facts = CallFacts {
        resource: path.into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    };
    for value in headers.get_all(header::AUTHORIZATION) {
        let Ok(v) = value.to_str() else { continue };
        let (scheme, params) = split_scheme(v);
        let Some(Ok(cred)) = parse_authorization(scheme, params) else {
            return (StatusCode::UNAUTHORIZED, "malformed credential").into_response();
        };
        match app.rail.verify(&facts, &offer, &cred).await {
            Verdict::Pass(_) => {
                app.passes.fetch_add(1, Ordering::SeqCst);
                return (StatusCode::OK, "paid content").into_response();
            }
            Verdict::Invalid(r) => return (StatusCode::UNAUTHORIZED, r.reason).into_response(),
            Verdict::Stale(_) | Verdict::Unavailable(_) => {}
        }
    }
    match app.rail.challenge(&facts, &offer).await {
        Some(ch) => {
            app.challenges.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::PAYMENT_REQUIRED,
                [(header::WWW_AUTHENTICATE, ch.www_authenticate)],
                ch.details.to_string(),
            )
                .into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "no challenge").into_response(),
    }
}

async fn per_call(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let offer = turnpike_l402::offer(2000, BillingMode::PerCall, 0);
    gated(&app, &headers, "/per-call", offer).await
}

async fn balance(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let offer = turnpike_l402::offer(1000, BillingMode::Balance, 3000);
    gated(&app, &headers, "/balance", offer).await
}

async fn run_client(wallet_url: &str, macaroon: &str, url: &str, n: usize) -> Vec<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join(".venv/bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import l402_requests"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "l402-requests is not importable from {}: run scripts/test (its deps stage installs \
         it), or `.venv/bin/pip install l402-requests==0.9.0`",
        py.display()
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/l402_requests_peer.py");
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args([wallet_url, macaroon, url, &n.to_string()])
        .env_remove("LND_REST_HOST")
        .env_remove("NWC_CONNECTION_STRING")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "l402-requests failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l402_requests_pays_and_gets_through() {
    let dev = Arc::new(DevBackend::regtest());
    // l402-requests 0.9 reads SendPaymentV2's `payment_preimage` as base64 (LND writes hex).
    let wallet = dev
        .clone()
        .serve_wallet(
            "127.0.0.1:0".parse().unwrap(),
            DevWalletOptions {
                router_preimage_base64: true,
            },
        )
        .await
        .unwrap();
    let app = Arc::new(App {
        rail: L402Rail::new(
            L402Config::default(),
            dev.clone(),
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Arc::new(MemorySpentSet::new()),
        ),
        challenges: AtomicUsize::new(0),
        passes: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/per-call", get(per_call))
        .route("/balance", get(balance))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Per call: every request pays (the cached token is spent, so the client pays again).
    let got = run_client(
        &wallet.url(),
        &wallet.macaroon_hex,
        &format!("http://{addr}/per-call"),
        2,
    )
    .await;
    for r in &got {
        assert_eq!(r["status"], 200, "{got:?}");
        assert_eq!(r["body"], "paid content");
    }
    assert_eq!(app.challenges.load(Ordering::SeqCst), 2);
    assert_eq!(app.passes.load(Ordering::SeqCst), 2);

    // Balance: one payment of 3000 msat covers three 1000-msat calls; the fourth buys anew.
    app.challenges.store(0, Ordering::SeqCst);
    app.passes.store(0, Ordering::SeqCst);
    let got = run_client(
        &wallet.url(),
        &wallet.macaroon_hex,
        &format!("http://{addr}/balance"),
        4,
    )
    .await;
    for r in &got {
        assert_eq!(r["status"], 200, "{got:?}");
    }
    assert_eq!(app.challenges.load(Ordering::SeqCst), 2);
    assert_eq!(app.passes.load(Ordering::SeqCst), 4);
    wallet.shutdown().await;
}
