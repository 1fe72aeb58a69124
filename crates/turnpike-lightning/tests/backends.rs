//! Each REST backend against a loopback server that speaks that node's API as documented —
//! paths, authentication headers, field names and encodings, and error shapes — with real
//! signed BOLT11 invoices (the backends check them).

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use k256::ecdsa::SigningKey;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use turnpike_lightning::bolt11::{self, InvoiceFields, Network};
use turnpike_lightning::config::{ClnConfig, LnbitsConfig, LndConfig, PhoenixdConfig};
use turnpike_lightning::{
    connect, BackendConfig, HttpSettings, InvoiceState, LightningError, Secret,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Open,
    Paid,
    Expired,
}

struct Inv {
    preimage: [u8; 32],
    bolt11: String,
    amount_msat: u64,
    expiry: u64,
    created: u64,
    memo: String,
    state: St,
}

/// A pretend node: signs real invoices, keeps their state, counts requests, and can be told to
/// misbehave.
struct Node {
    key: SigningKey,
    invoices: Mutex<HashMap<[u8; 32], Inv>>,
    requests: AtomicUsize,
    /// Answer this many requests with 503 first.
    fail_first: AtomicUsize,
    /// Sleep this long before answering.
    delay_ms: AtomicUsize,
    /// Report a payment hash that does not match the invoice.
    lie_about_hash: std::sync::atomic::AtomicBool,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Node {
    fn new() -> Arc<Self> {
        Arc::new(Node {
            key: SigningKey::from_bytes(&[0x31; 32].into()).unwrap(),
            invoices: Mutex::new(HashMap::new()),
            requests: AtomicUsize::new(0),
            fail_first: AtomicUsize::new(0),
            delay_ms: AtomicUsize::new(0),
            lie_about_hash: Default::default(),
        })
    }

    fn mint(&self, amount_msat: u64, memo: &str, expiry: u64) -> ([u8; 32], String) {
        let preimage: [u8; 32] = rand::random();
        let hash: [u8; 32] = Sha256::digest(preimage).into();
        let created = now();
        let bolt11 = bolt11::encode(
            &InvoiceFields {
                network: Network::Regtest,
                amount_msat: Some(amount_msat),
                timestamp: created,
                payment_hash: hash,
                payment_secret: rand::random(),
                description: memo,
                expiry_secs: expiry,
                min_final_cltv_expiry: 80,
            },
            &self.key,
        )
        .unwrap();
        self.invoices.lock().insert(
            hash,
            Inv {
                preimage,
                bolt11: bolt11.clone(),
                amount_msat,
                expiry,
                created,
                memo: memo.to_string(),
                state: St::Open,
            },
        );
        let reported = if self.lie_about_hash.load(Ordering::SeqCst) {
            [0xee; 32]
        } else {
            hash
        };
        (reported, bolt11)
    }

    fn set(&self, hash: &[u8; 32], st: St) {
        self.invoices.lock().get_mut(hash).unwrap().state = st;
    }

    /// Counts the request; answers 503 while `fail_first` lasts; sleeps `delay_ms`.
    async fn gate(&self) -> Option<Response> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let d = self.delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            tokio::time::sleep(Duration::from_millis(d as u64)).await;
        }
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Some((StatusCode::SERVICE_UNAVAILABLE, "busy").into_response());
        }
        None
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

fn http(timeout_secs: u64, retries: u32) -> HttpSettings {
    HttpSettings {
        timeout_secs,
        lookup_retries: retries,
        ..HttpSettings::default()
    }
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

// ---------------------------------------------------------------------------------------------
// LND REST

const LND_MACAROON: &str = "0201036c6e6402f801";

fn lnd_auth(h: &HeaderMap) -> Option<Response> {
    if h.get("grpc-metadata-macaroon")
        .and_then(|v| v.to_str().ok())
        == Some(LND_MACAROON)
    {
        None
    } else {
        Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"code": 2, "message": "verification failed: signature mismatch after caveat verification", "details": []})),
            )
                .into_response(),
        )
    }
}

async fn lnd_add(State(n): State<Arc<Node>>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if let Some(r) = n.gate().await {
        return r;
    }
    if let Some(r) = lnd_auth(&h) {
        return r;
    }
    // LND's REST gateway writes and reads 64-bit integers as strings.
    let msat: u64 = b["value_msat"].as_str().unwrap().parse().unwrap();
    let expiry: u64 = b["expiry"].as_str().unwrap().parse().unwrap();
    let (hash, bolt11) = n.mint(msat, b["memo"].as_str().unwrap(), expiry);
    Json(json!({
        "r_hash": B64.encode(hash),
        "payment_request": bolt11,
        "add_index": "7",
        "payment_addr": B64.encode([9u8; 32]),
    }))
    .into_response()
}

async fn lnd_lookup(
    State(n): State<Arc<Node>>,
    h: HeaderMap,
    Path(r_hash): Path<String>,
) -> Response {
    if let Some(r) = n.gate().await {
        return r;
    }
    if let Some(r) = lnd_auth(&h) {
        return r;
    }
    let hash = hex32(&r_hash);
    let map = n.invoices.lock();
    let Some(inv) = map.get(&hash) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"code": 5, "message": "there are no existing invoices", "details": []})),
        )
            .into_response();
    };
    let (state, settled) = match inv.state {
        St::Open => ("OPEN", false),
        St::Paid => ("SETTLED", true),
        St::Expired => ("CANCELED", false),
    };
    Json(json!({
        "memo": inv.memo,
        "r_preimage": B64.encode(inv.preimage),
        "r_hash": B64.encode(hash),
        "value": (inv.amount_msat / 1000).to_string(),
        "value_msat": inv.amount_msat.to_string(),
        "settled": settled,
        "creation_date": inv.created.to_string(),
        "settle_date": "0",
        "payment_request": inv.bolt11,
        "expiry": inv.expiry.to_string(),
        "state": state,
        "amt_paid_msat": if settled { inv.amount_msat.to_string() } else { "0".into() },
        "htlcs": [],
        "features": {},
        "is_keysend": false,
    }))
    .into_response()
}

fn lnd_cfg(addr: SocketAddr, http: HttpSettings) -> BackendConfig {
    BackendConfig::Lnd(LndConfig {
        url: format!("http://{addr}"),
        macaroon_hex: Some(Secret(LND_MACAROON.into())),
        macaroon_path: None,
        http,
    })
}

#[tokio::test]
async fn lnd_rest() {
    let node = Node::new();
    let addr = serve(
        Router::new()
            .route("/v1/invoices", post(lnd_add))
            .route("/v1/invoice/{r_hash}", get(lnd_lookup))
            .with_state(node.clone()),
    )
    .await;
    let b = connect(&lnd_cfg(addr, http(5, 2))).unwrap();
    assert_eq!(b.name(), "lnd");
    assert!(!b.is_custodial());
    let inv = b.create_invoice(2500, "turnpike echo", 600).await.unwrap();
    assert!(inv.bolt11.starts_with("lnbcrt25n1"));
    assert_eq!(inv.amount_msat, 2500);
    assert!(inv.expires_at >= now() + 599);
    assert_eq!(
        node.invoices.lock()[&inv.payment_hash].memo,
        "turnpike echo"
    );
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    node.set(&inv.payment_hash, St::Paid);
    let pre = node.invoices.lock()[&inv.payment_hash].preimage;
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Settled {
            preimage: Some(pre)
        }
    );
    node.set(&inv.payment_hash, St::Expired);
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Expired
    );
    assert_eq!(
        b.lookup_invoice(&[1; 32]).await.unwrap_err(),
        LightningError::NotFound
    );

    // A wrong macaroon: LND's error object, as a refusal.
    let bad = connect(&BackendConfig::Lnd(LndConfig {
        url: format!("http://{addr}"),
        macaroon_hex: Some(Secret("00".into())),
        macaroon_path: None,
        http: http(5, 0),
    }))
    .unwrap();
    match bad.create_invoice(1000, "x", 60).await.unwrap_err() {
        LightningError::Rejected { status, message } => {
            assert_eq!(status, 500);
            assert!(message.contains("signature mismatch"), "{message}");
        }
        e => panic!("{e:?}"),
    }

    // Lookups retry through transient 503s; creation does not retry.
    node.fail_first.store(2, Ordering::SeqCst);
    let before = node.requests.load(Ordering::SeqCst);
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Expired
    );
    assert_eq!(node.requests.load(Ordering::SeqCst) - before, 3);
    node.fail_first.store(1, Ordering::SeqCst);
    let before = node.requests.load(Ordering::SeqCst);
    assert!(matches!(
        b.create_invoice(1000, "x", 60).await.unwrap_err(),
        LightningError::Rejected { status: 503, .. }
    ));
    assert_eq!(node.requests.load(Ordering::SeqCst) - before, 1);

    // A node that reports a payment hash its invoice does not carry is not believed.
    node.lie_about_hash.store(true, Ordering::SeqCst);
    assert!(matches!(
        b.create_invoice(1000, "x", 60).await.unwrap_err(),
        LightningError::Protocol(_)
    ));
    node.lie_about_hash.store(false, Ordering::SeqCst);

    // Too slow: a timeout, not a hang.
    node.delay_ms.store(2500, Ordering::SeqCst);
    let slow = connect(&lnd_cfg(addr, http(1, 0))).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(
        slow.lookup_invoice(&inv.payment_hash).await.unwrap_err(),
        LightningError::Timeout
    );
    assert!(t.elapsed() < Duration::from_millis(2000));
    node.delay_ms.store(0, Ordering::SeqCst);
}

#[tokio::test]
async fn unreachable_and_garbage_fail_closed() {
    // Nothing listens on this port (bound, then dropped).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let b = connect(&lnd_cfg(addr, http(2, 1))).unwrap();
    assert!(matches!(
        b.lookup_invoice(&[0; 32]).await.unwrap_err(),
        LightningError::Unreachable(_)
    ));
    // A server answering 200 with something that is not the API.
    let addr = serve(Router::new().fallback(|| async { "<html>hello</html>" })).await;
    let b = connect(&lnd_cfg(addr, http(2, 0))).unwrap();
    assert!(matches!(
        b.create_invoice(1000, "x", 60).await.unwrap_err(),
        LightningError::Protocol(_)
    ));
    assert!(matches!(
        b.lookup_invoice(&[0; 32]).await.unwrap_err(),
        LightningError::Protocol(_)
    ));
    // Plain http to a remote host is refused at configuration time.
    assert!(matches!(
        connect(&BackendConfig::Lnd(LndConfig {
            url: "http://lnd.example:8080".into(),
            macaroon_hex: Some(Secret(LND_MACAROON.into())),
            macaroon_path: None,
            http: HttpSettings::default(),
        })),
        Err(LightningError::Config(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Core Lightning clnrest

const RUNE: &str = "tU-RLjMiDpY2U0o3W1oFowar36RFGpWloPbW9-RuZdo9MyZpZD0wMjRiOWE";

fn cln_auth(h: &HeaderMap) -> Option<Response> {
    let node_ok = h
        .get("nodeid")
        .is_none_or(|v| v.to_str().ok() == Some(&("02".to_string() + &"ab".repeat(32))));
    if node_ok && h.get("rune").and_then(|v| v.to_str().ok()) == Some(RUNE) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"code": 1501, "message": "Not authorized: Not derived from master"})),
            )
                .into_response(),
        )
    }
}

async fn cln_invoice(State(n): State<Arc<Node>>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if let Some(r) = n.gate().await {
        return r;
    }
    if let Some(r) = cln_auth(&h) {
        return r;
    }
    let label = b["label"].as_str().unwrap_or("");
    if label.is_empty() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": -32602, "message": "label: should be a string or an integer: invalid token"})),
        )
            .into_response();
    }
    let expiry = b["expiry"].as_u64().unwrap();
    let (hash, bolt11) = n.mint(
        b["amount_msat"].as_u64().unwrap(),
        b["description"].as_str().unwrap(),
        expiry,
    );
    Json(json!({
        "payment_hash": hex::encode(hash),
        "expires_at": now() + expiry,
        "bolt11": bolt11,
        "payment_secret": hex::encode([7u8; 32]),
        "created_index": 1,
    }))
    .into_response()
}

async fn cln_list(State(n): State<Arc<Node>>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if let Some(r) = n.gate().await {
        return r;
    }
    if let Some(r) = cln_auth(&h) {
        return r;
    }
    let hash = hex32(b["payment_hash"].as_str().unwrap());
    let map = n.invoices.lock();
    let invoices: Vec<Value> = map
        .get(&hash)
        .map(|inv| {
            let mut v = json!({
                "label": "turnpike-x",
                "bolt11": inv.bolt11,
                "payment_hash": hex::encode(hash),
                "amount_msat": inv.amount_msat,
                "status": match inv.state { St::Open => "unpaid", St::Paid => "paid", St::Expired => "expired" },
                "description": inv.memo,
                "expires_at": inv.created + inv.expiry,
                "created_index": 1,
            });
            if inv.state == St::Paid {
                v["payment_preimage"] = json!(hex::encode(inv.preimage));
                v["amount_received_msat"] = json!(inv.amount_msat);
                v["paid_at"] = json!(now());
            }
            v
        })
        .into_iter()
        .collect();
    Json(json!({ "invoices": invoices })).into_response()
}

#[tokio::test]
async fn cln_rest() {
    let node = Node::new();
    let addr = serve(
        Router::new()
            .route("/v1/invoice", post(cln_invoice))
            .route("/v1/listinvoices", post(cln_list))
            .with_state(node.clone()),
    )
    .await;
    let cfg = |rune: &str| {
        BackendConfig::Cln(ClnConfig {
            url: format!("http://{addr}/"),
            rune: Some(Secret(rune.into())),
            rune_path: None,
            node_id: Some("02".to_string() + &"ab".repeat(32)),
            http: http(5, 1),
        })
    };
    let b = connect(&cfg(RUNE)).unwrap();
    assert_eq!(b.name(), "cln");
    let inv = b
        .create_invoice(123_456, "turnpike add", 300)
        .await
        .unwrap();
    assert_eq!(inv.amount_msat, 123_456);
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    node.set(&inv.payment_hash, St::Paid);
    let pre = node.invoices.lock()[&inv.payment_hash].preimage;
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Settled {
            preimage: Some(pre)
        }
    );
    node.set(&inv.payment_hash, St::Expired);
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Expired
    );
    assert_eq!(
        b.lookup_invoice(&[2; 32]).await.unwrap_err(),
        LightningError::NotFound,
        "an empty invoices list"
    );
    match connect(&cfg("wrong"))
        .unwrap()
        .create_invoice(1, "x", 1)
        .await
        .unwrap_err()
    {
        LightningError::Rejected { status, message } => {
            assert_eq!(status, 401);
            assert!(
                message.contains("Not authorized") && message.contains("1501"),
                "{message}"
            );
        }
        e => panic!("{e:?}"),
    }
    // Labels are unique per invoice.
    let a = b.create_invoice(1000, "a", 60).await.unwrap();
    let c = b.create_invoice(1000, "a", 60).await.unwrap();
    assert_ne!(a.payment_hash, c.payment_hash);
}

// ---------------------------------------------------------------------------------------------
// phoenixd

const PHOENIX_PASSWORD: &str = "f1e2d3c4b5a6";

fn phoenix_auth(h: &HeaderMap) -> Option<Response> {
    let want = format!("Basic {}", B64.encode(format!(":{PHOENIX_PASSWORD}")));
    if h.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str()) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                "Invalid authentication (use basic auth with the http password set in phoenix.conf)",
            )
                .into_response(),
        )
    }
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn phoenix_create(State(n): State<Arc<Node>>, h: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = n.gate().await {
        return r;
    }
    if let Some(r) = phoenix_auth(&h) {
        return r;
    }
    assert_eq!(
        h.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    let form: HashMap<String, String> = std::str::from_utf8(&body)
        .unwrap()
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), form_decode(v))
        })
        .collect();
    let Some(sat) = form.get("amountSat").and_then(|s| s.parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "Missing parameter amountSat").into_response();
    };
    let expiry = form["expirySeconds"].parse().unwrap();
    let (hash, bolt11) = n.mint(sat * 1000, &form["description"], expiry);
    Json(json!({"amountSat": sat, "paymentHash": hex::encode(hash), "serialized": bolt11}))
        .into_response()
}

async fn phoenix_incoming(
    State(n): State<Arc<Node>>,
    h: HeaderMap,
    Path(hash): Path<String>,
) -> Response {
    if let Some(r) = n.gate().await {
        return r;
    }
    if let Some(r) = phoenix_auth(&h) {
        return r;
    }
    let map = n.invoices.lock();
    let Some(inv) = map.get(&hex32(&hash)) else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let paid = inv.state == St::Paid;
    Json(json!({
        "paymentHash": hash,
        "preimage": hex::encode(inv.preimage),
        "externalId": "turnpike-1",
        "description": inv.memo,
        "invoice": inv.bolt11,
        "isPaid": paid,
        "receivedSat": if paid { inv.amount_msat / 1000 } else { 0 },
        "fees": 0,
        "completedAt": if paid { Some(now() * 1000) } else { None },
        "createdAt": inv.created * 1000,
    }))
    .into_response()
}

#[tokio::test]
async fn phoenixd_api() {
    let node = Node::new();
    let addr = serve(
        Router::new()
            .route("/createinvoice", post(phoenix_create))
            .route("/payments/incoming/{hash}", get(phoenix_incoming))
            .with_state(node.clone()),
    )
    .await;
    let cfg = |pw: &str| {
        BackendConfig::Phoenixd(PhoenixdConfig {
            url: format!("http://{addr}"),
            password: Some(Secret(pw.into())),
            password_path: None,
            http: http(5, 1),
        })
    };
    let b = connect(&cfg(PHOENIX_PASSWORD)).unwrap();
    assert_eq!(b.name(), "phoenixd");
    // 1500 msat rounds up to 2 sat.
    let inv = b
        .create_invoice(1500, "turnpike & co = ⚡", 900)
        .await
        .unwrap();
    assert_eq!(inv.amount_msat, 2000);
    assert_eq!(
        node.invoices.lock()[&inv.payment_hash].memo,
        "turnpike & co = ⚡"
    );
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    node.set(&inv.payment_hash, St::Paid);
    let pre = node.invoices.lock()[&inv.payment_hash].preimage;
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Settled {
            preimage: Some(pre)
        }
    );
    // Unpaid past its expiry (read from the invoice itself): expired.
    let short = b.create_invoice(1000, "x", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        b.lookup_invoice(&short.payment_hash).await.unwrap(),
        InvoiceState::Expired
    );
    assert_eq!(
        b.lookup_invoice(&[3; 32]).await.unwrap_err(),
        LightningError::NotFound
    );
    match connect(&cfg("nope"))
        .unwrap()
        .create_invoice(1000, "x", 60)
        .await
        .unwrap_err()
    {
        LightningError::Rejected { status, message } => {
            assert_eq!(status, 401);
            assert!(message.contains("Invalid authentication"));
        }
        e => panic!("{e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// LNbits

const LNBITS_KEY: &str = "4f3b9ad0a1b2c3d4e5f60718293a4b5c";

fn lnbits_auth(h: &HeaderMap) -> Option<Response> {
    if h.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(LNBITS_KEY) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"detail": "Invalid key or wallet."})),
            )
                .into_response(),
        )
    }
}

async fn lnbits_create(State(n): State<Arc<Node>>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    if let Some(r) = n.gate().await {
        return r;
    }
    if let Some(r) = lnbits_auth(&h) {
        return r;
    }
    if b["out"] != json!(false) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "this key cannot pay"})),
        )
            .into_response();
    }
    let Some(sat) = b["amount"].as_u64().filter(|&s| s > 0) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body", "amount"], "msg": "ensure this value is greater than 0", "type": "value_error"}]})),
        )
            .into_response();
    };
    let (hash, bolt11) = n.mint(
        sat * 1000,
        b["memo"].as_str().unwrap(),
        b["expiry"].as_u64().unwrap(),
    );
    (
        StatusCode::CREATED,
        Json(json!({
            "payment_hash": hex::encode(hash),
            "payment_request": bolt11,
            "checking_id": hex::encode(hash),
            "lnurl_response": null,
        })),
    )
        .into_response()
}

async fn lnbits_get(
    State(n): State<Arc<Node>>,
    h: HeaderMap,
    Path(hash): Path<String>,
) -> Response {
    if let Some(r) = n.gate().await {
        return r;
    }
    if let Some(r) = lnbits_auth(&h) {
        return r;
    }
    let map = n.invoices.lock();
    let Some(inv) = map.get(&hex32(&hash)) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"detail": "Payment does not exist."})),
        )
            .into_response();
    };
    let status = match inv.state {
        St::Open => "pending",
        St::Paid => "success",
        St::Expired => "failed",
    };
    Json(json!({
        "paid": inv.state == St::Paid,
        "status": status,
        "preimage": if inv.state == St::Paid { hex::encode(inv.preimage) } else { "0".repeat(64) },
        "details": {"payment_hash": hash, "bolt11": inv.bolt11, "amount": inv.amount_msat, "memo": inv.memo, "status": status},
    }))
    .into_response()
}

#[tokio::test]
async fn lnbits_api() {
    let node = Node::new();
    let addr = serve(
        Router::new()
            .route("/api/v1/payments", post(lnbits_create))
            .route("/api/v1/payments/{hash}", get(lnbits_get))
            .with_state(node.clone()),
    )
    .await;
    let cfg = |key: &str| {
        BackendConfig::Lnbits(LnbitsConfig {
            url: format!("http://{addr}"),
            api_key: Some(Secret(key.into())),
            api_key_path: None,
            http: http(5, 1),
        })
    };
    let b = connect(&cfg(LNBITS_KEY)).unwrap();
    assert_eq!(b.name(), "lnbits");
    assert!(b.is_custodial(), "LNbits holds its users' funds");
    let inv = b
        .create_invoice(10_000, "turnpike echo", 600)
        .await
        .unwrap();
    assert_eq!(inv.amount_msat, 10_000);
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    node.set(&inv.payment_hash, St::Paid);
    let pre = node.invoices.lock()[&inv.payment_hash].preimage;
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Settled {
            preimage: Some(pre)
        }
    );
    node.set(&inv.payment_hash, St::Expired);
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Expired
    );
    assert_eq!(
        b.lookup_invoice(&[4; 32]).await.unwrap_err(),
        LightningError::NotFound
    );
    match connect(&cfg("bad"))
        .unwrap()
        .create_invoice(1000, "x", 60)
        .await
        .unwrap_err()
    {
        LightningError::Rejected { status, message } => {
            assert_eq!(status, 401);
            assert_eq!(message, "Invalid key or wallet.");
        }
        e => panic!("{e:?}"),
    }
    // LNbits' validation errors carry a list in `detail`.
    match b.create_invoice(0, "x", 60).await.unwrap_err() {
        LightningError::Rejected { status, message } => {
            assert_eq!(status, 422);
            assert!(message.contains("greater than 0"), "{message}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn secrets_from_files_and_missing_secrets() {
    let dir = std::env::temp_dir().join(format!("turnpike-ln-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mac = dir.join("invoice.macaroon");
    std::fs::write(&mac, [2u8, 1, 3, 0xff]).unwrap();
    let rune = dir.join("rune");
    std::fs::write(&rune, format!("{RUNE}\n")).unwrap();
    assert!(connect(&BackendConfig::Lnd(LndConfig {
        url: "https://127.0.0.1:8080".into(),
        macaroon_hex: None,
        macaroon_path: Some(mac),
        http: HttpSettings::default(),
    }))
    .is_ok());
    assert!(connect(&BackendConfig::Cln(ClnConfig {
        url: "https://127.0.0.1:3010".into(),
        rune: None,
        rune_path: Some(rune),
        node_id: None,
        http: HttpSettings::default(),
    }))
    .is_ok());
    assert!(matches!(
        connect(&BackendConfig::Lnbits(LnbitsConfig {
            url: "https://lnbits.example".into(),
            api_key: None,
            api_key_path: None,
            http: HttpSettings::default(),
        })),
        Err(LightningError::Config(_))
    ));
    assert!(matches!(
        connect(&BackendConfig::Phoenixd(PhoenixdConfig {
            url: "http://127.0.0.1:9740".into(),
            password: None,
            password_path: Some(dir.join("missing")),
            http: HttpSettings::default(),
        })),
        Err(LightningError::Config(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
