//! The payer's side against loopback servers speaking each wallet's API (written here from the
//! APIs' documentation), paying real invoices from the dev backend: LND REST (the dev wallet),
//! Core Lightning `pay`, phoenixd `payinvoice`, LNbits `payments`, and NIP-47 `pay_invoice` over a
//! loopback relay. Each one must return a preimage that hashes to the invoice's payment hash and
//! say whether a failure may have moved money.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use turnpike_lightning::config::{ClnConfig, LnbitsConfig, LndConfig, PhoenixdConfig};
use turnpike_lightning::dev::{DevBackend, DevWalletOptions};
use turnpike_lightning::nwc;
use turnpike_lightning::wallet::{
    decode_for_payment, ClnWallet, LnbitsWallet, LndWallet, PhoenixdWallet,
};
use turnpike_lightning::{
    connect_wallet, BackendConfig, HttpSettings, LightningBackend, NwcConfig, Secret, Wallet,
    WalletError,
};

async fn invoice(dev: &DevBackend, msat: u64) -> String {
    dev.create_invoice(msat, "wallet test", 600)
        .await
        .unwrap()
        .bolt11
}

async fn serve(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

fn check(paid: &turnpike_lightning::Paid, bolt11: &str) {
    let d = decode_for_payment(bolt11).unwrap();
    use sha2::Digest;
    let h: [u8; 32] = sha2::Sha256::digest(paid.preimage).into();
    assert_eq!(h, d.payment_hash);
    assert_eq!(paid.amount_msat, d.amount_msat.unwrap());
}

#[tokio::test]
async fn lnd_pays_through_the_dev_wallet() {
    let dev = Arc::new(DevBackend::regtest());
    let w = dev
        .clone()
        .serve_wallet("127.0.0.1:0".parse().unwrap(), DevWalletOptions::default())
        .await
        .unwrap();
    let cfg = |mac: &str| LndConfig {
        url: w.url(),
        macaroon_hex: Some(Secret::from(mac)),
        macaroon_path: None,
        http: HttpSettings::default(),
    };
    let wallet = LndWallet::new(&cfg(&w.macaroon_hex)).unwrap();
    let inv = invoice(&dev, 3_000).await;
    let paid = wallet.pay(&inv, 1_000).await.unwrap();
    check(&paid, &inv);
    // An invoice from another node: the wallet reports a payment error, nothing moved.
    let other = DevBackend::regtest();
    let foreign = invoice(&other, 1_000).await;
    let e = wallet.pay(&foreign, 0).await.unwrap_err();
    assert!(matches!(e, WalletError::Failed(_)), "{e}");
    // A refused macaroon: a gRPC error status before any payment.
    let bad = LndWallet::new(&cfg(&"00".repeat(32))).unwrap();
    let e = bad.pay(&invoice(&dev, 1_000).await, 0).await.unwrap_err();
    assert!(matches!(e, WalletError::Failed(_)), "{e}");
    // Not an invoice, or no amount: refused before anything is sent.
    assert!(matches!(
        wallet.pay("lnbc1garbage", 0).await,
        Err(WalletError::Invoice(_))
    ));
    // Nothing listening: certainly not paid.
    let gone = LndWallet::new(&LndConfig {
        url: "http://127.0.0.1:9".into(),
        ..cfg(&w.macaroon_hex)
    })
    .unwrap();
    let e = gone.pay(&invoice(&dev, 1_000).await, 0).await.unwrap_err();
    assert!(matches!(e, WalletError::Failed(_)), "{e}");
    // The dev backend is not a wallet.
    assert!(matches!(
        connect_wallet(&BackendConfig::Dev(Default::default())),
        Err(WalletError::Config(_))
    ));
}

/// A fake payer node: pays dev invoices, or answers with an error.
#[derive(Clone)]
struct Fake {
    dev: Arc<DevBackend>,
    /// Return a wrong preimage.
    lie: bool,
}

async fn cln_pay(State(f): State<Fake>, h: HeaderMap, Json(b): Json<Value>) -> impl IntoResponse {
    if h.get("rune").and_then(|v| v.to_str().ok()) != Some("rune-ok") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": 1502, "message": "Not authorized: Not derived from master"})),
        );
    }
    let bolt11 = b["bolt11"].as_str().unwrap_or("");
    match f.dev.pay(bolt11) {
        Ok(pre) => {
            let pre = if f.lie { [9u8; 32] } else { pre };
            (
                StatusCode::CREATED,
                Json(
                    json!({"payment_preimage": hex::encode(pre), "status": "complete",
                    "amount_msat": 2000, "amount_sent_msat": 2001, "parts": 1}),
                ),
            )
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": 210, "message": format!("Ran out of routes to try: {e}")})),
        ),
    }
}

#[tokio::test]
async fn cln_pays() {
    let dev = Arc::new(DevBackend::regtest());
    let url = serve(
        Router::new()
            .route("/v1/pay", post(cln_pay))
            .with_state(Fake {
                dev: dev.clone(),
                lie: false,
            }),
    )
    .await;
    let cfg = |rune: &str| ClnConfig {
        url: url.clone(),
        rune: Some(Secret::from(rune)),
        rune_path: None,
        node_id: None,
        http: HttpSettings::default(),
    };
    let w = ClnWallet::new(&cfg("rune-ok")).unwrap();
    let inv = invoice(&dev, 2_000).await;
    let paid = w.pay(&inv, 10).await.unwrap();
    check(&paid, &inv);
    assert_eq!(paid.fee_msat, Some(1));
    let e = w
        .pay(&invoice(&DevBackend::regtest(), 1_000).await, 0)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::Failed(_)), "{e}");
    let e = ClnWallet::new(&cfg("nope"))
        .unwrap()
        .pay(&invoice(&dev, 1_000).await, 0)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::Failed(_)), "{e}");
    // A preimage that does not match: the outcome is unknown, never a success.
    let liar = serve(
        Router::new()
            .route("/v1/pay", post(cln_pay))
            .with_state(Fake {
                dev: dev.clone(),
                lie: true,
            }),
    )
    .await;
    let e = ClnWallet::new(&ClnConfig {
        url: liar,
        ..cfg("rune-ok")
    })
    .unwrap()
    .pay(&invoice(&dev, 1_000).await, 0)
    .await
    .unwrap_err();
    assert!(e.may_have_paid(), "{e}");
}

async fn phoenixd_pay(State(f): State<Fake>, h: HeaderMap, body: String) -> impl IntoResponse {
    // Basic auth with an empty user and password "pw": base64(":pw") = "OnB3".
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic OnB3") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!("Invalid authentication")),
        );
    }
    let inv = body
        .strip_prefix("invoice=")
        .map(|s| s.replace("%20", " "))
        .unwrap_or_default();
    match f.dev.pay(&inv) {
        Ok(pre) => (
            StatusCode::OK,
            Json(
                json!({"recipientAmountSat": 2, "routingFeeSat": 0, "paymentId": "x",
                "paymentHash": "", "paymentPreimage": hex::encode(pre)}),
            ),
        ),
        Err(_) => (
            StatusCode::OK,
            Json(json!({"paymentId": "x", "reason": "no route to recipient"})),
        ),
    }
}

#[tokio::test]
async fn phoenixd_payinvoice() {
    let dev = Arc::new(DevBackend::regtest());
    let url = serve(
        Router::new()
            .route("/payinvoice", post(phoenixd_pay))
            .with_state(Fake {
                dev: dev.clone(),
                lie: false,
            }),
    )
    .await;
    let w = PhoenixdWallet::new(&PhoenixdConfig {
        url,
        password: Some(Secret::from("pw")),
        password_path: None,
        http: HttpSettings::default(),
    })
    .unwrap();
    let inv = invoice(&dev, 2_000).await;
    check(&w.pay(&inv, 0).await.unwrap(), &inv);
    let e = w
        .pay(&invoice(&DevBackend::regtest(), 1_000).await, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WalletError::Failed(ref m) if m.contains("no route")),
        "{e}"
    );
}

/// A settled payment: payment hash (hex) and preimage.
type Settled = (String, [u8; 32]);

#[derive(Clone)]
struct Lnbits {
    dev: Arc<DevBackend>,
    paid: Arc<parking_lot::Mutex<Vec<Settled>>>,
}

async fn lnbits_pay(
    State(s): State<Lnbits>,
    h: HeaderMap,
    Json(b): Json<Value>,
) -> impl IntoResponse {
    if h.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("admin") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "Invalid adminkey."})),
        );
    }
    assert_eq!(b["out"], true);
    let inv = b["bolt11"].as_str().unwrap_or("");
    let hash = hex::encode(decode_for_payment(inv).unwrap().payment_hash);
    match s.dev.pay(inv) {
        Ok(pre) => {
            s.paid.lock().push((hash.clone(), pre));
            (
                StatusCode::CREATED,
                Json(json!({"payment_hash": hash, "checking_id": hash})),
            )
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "Payment failed: no route"})),
        ),
    }
}

async fn lnbits_get(State(s): State<Lnbits>, Path(hash): Path<String>) -> impl IntoResponse {
    match s.paid.lock().iter().find(|(h, _)| *h == hash) {
        Some((_, pre)) => (
            StatusCode::OK,
            Json(json!({"paid": true, "preimage": hex::encode(pre), "details": {"fee": -1000}})),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"detail": "Payment does not exist."})),
        ),
    }
}

#[tokio::test]
async fn lnbits_payments() {
    let dev = Arc::new(DevBackend::regtest());
    let st = Lnbits {
        dev: dev.clone(),
        paid: Default::default(),
    };
    let url = serve(
        Router::new()
            .route("/api/v1/payments", post(lnbits_pay))
            .route("/api/v1/payments/{hash}", get(lnbits_get))
            .with_state(st),
    )
    .await;
    let w = LnbitsWallet::new(&LnbitsConfig {
        url,
        api_key: Some(Secret::from("admin")),
        api_key_path: None,
        http: HttpSettings::default(),
    })
    .unwrap();
    let inv = invoice(&dev, 2_000).await;
    let paid = w.pay(&inv, 0).await.unwrap();
    check(&paid, &inv);
    assert_eq!(paid.fee_msat, Some(1000));
    let e = w
        .pay(&invoice(&DevBackend::regtest(), 1_000).await, 0)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::Failed(_)), "{e}");
}

/// A loopback relay that is also the NIP-47 wallet service: it answers `pay_invoice` requests
/// by paying dev invoices.
async fn nwc_relay(dev: Arc<DevBackend>, wallet_sk: [u8; 32]) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let dev = dev.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let key = k256::schnorr::SigningKey::from_bytes(&wallet_sk).unwrap();
                let mut sub = String::new();
                while let Some(Ok(Message::Text(t))) = ws.next().await {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    match v[0].as_str() {
                        Some("REQ") => {
                            sub = v[1].as_str().unwrap().to_string();
                            let _ = ws
                                .send(Message::Text(json!(["EOSE", sub]).to_string().into()))
                                .await;
                        }
                        Some("EVENT") => {
                            let ev = &v[1];
                            let id = ev["id"].as_str().unwrap().to_string();
                            assert!(nwc::verify_event(ev).is_some(), "a valid signed request");
                            let _ = ws
                                .send(Message::Text(
                                    json!(["OK", id, true, ""]).to_string().into(),
                                ))
                                .await;
                            let client: [u8; 32] = hex::decode(ev["pubkey"].as_str().unwrap())
                                .unwrap()
                                .try_into()
                                .unwrap();
                            let shared = nwc::nip04_key(&wallet_sk, &client).unwrap();
                            let req: Value = serde_json::from_str(
                                &nwc::nip04_decrypt(&shared, ev["content"].as_str().unwrap())
                                    .unwrap(),
                            )
                            .unwrap();
                            assert_eq!(req["method"], "pay_invoice");
                            let answer = match dev.pay(req["params"]["invoice"].as_str().unwrap()) {
                                Ok(pre) => json!({"result_type": "pay_invoice",
                                    "result": {"preimage": hex::encode(pre), "fees_paid": 0}}),
                                Err(_) => json!({"result_type": "pay_invoice",
                                    "error": {"code": "PAYMENT_FAILED", "message": "no route"}}),
                            };
                            let tags = json!([["p", hex::encode(client)], ["e", id]]);
                            let resp = nwc::sign_event(
                                &key,
                                nwc::KIND_RESPONSE,
                                tags,
                                nwc::nip04_encrypt(&shared, &answer.to_string()),
                            );
                            let _ = ws
                                .send(Message::Text(
                                    json!(["EVENT", sub, resp]).to_string().into(),
                                ))
                                .await;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    format!("ws://{addr}")
}

#[tokio::test]
async fn nwc_pay_invoice() {
    let dev = Arc::new(DevBackend::regtest());
    let wallet_sk = [0x44u8; 32];
    let wallet_pk = hex::encode(
        k256::schnorr::SigningKey::from_bytes(&wallet_sk)
            .unwrap()
            .verifying_key()
            .to_bytes(),
    );
    let relay = nwc_relay(dev.clone(), wallet_sk).await;
    let uri = format!(
        "nostr+walletconnect://{wallet_pk}?relay={relay}&secret={}",
        hex::encode([0x55u8; 32])
    );
    let w = connect_wallet(&BackendConfig::Nwc(NwcConfig::with_uri(&uri))).unwrap();
    assert_eq!(w.name(), "nwc");
    let inv = invoice(&dev, 2_000).await;
    check(&w.pay(&inv, 0).await.unwrap(), &inv);
    let e = w
        .pay(&invoice(&DevBackend::regtest(), 1_000).await, 0)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::Failed(_)), "{e}");
}
