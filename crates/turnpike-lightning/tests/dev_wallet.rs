//! The dev wallet: an LND-REST look-alike on loopback that pays the dev backend's invoices.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use turnpike_lightning::dev::{DevBackend, DevWalletOptions};
use turnpike_lightning::{InvoiceState, LightningBackend};

async fn call(
    method: &str,
    url: String,
    macaroon: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(m) = macaroon {
        req = req.header("Grpc-Metadata-macaroon", m);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn pays_like_lnd() {
    let dev = Arc::new(DevBackend::regtest());
    let wallet = dev
        .clone()
        .serve_wallet("127.0.0.1:0".parse().unwrap(), DevWalletOptions::default())
        .await
        .unwrap();
    let mac = wallet.macaroon_hex.clone();

    // getinfo, with and without the macaroon.
    let (s, body) = call("GET", format!("{}/v1/getinfo", wallet.url()), None, None).await;
    assert_eq!(s, 500);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 2);
    let (s, body) = call(
        "GET",
        format!("{}/v1/getinfo", wallet.url()),
        Some(&mac),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["identity_pubkey"], hex::encode(dev.node_pubkey()));
    assert_eq!(info["chains"][0]["network"], "regtest");

    // SendPaymentSync: base64 preimage and hash.
    let inv = dev
        .create_invoice(5000, "turnpike echo", 600)
        .await
        .unwrap();
    let (s, body) = call(
        "POST",
        format!("{}/v1/channels/transactions", wallet.url()),
        Some(&mac),
        Some(json!({"payment_request": inv.bolt11})),
    )
    .await;
    assert_eq!(s, 200);
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["payment_error"], "");
    let b64 = base64::engine::general_purpose::STANDARD;
    let pre = b64.decode(r["payment_preimage"].as_str().unwrap()).unwrap();
    let hash: [u8; 32] = Sha256::digest(&pre).into();
    assert_eq!(hash, inv.payment_hash);
    assert_eq!(
        b64.decode(r["payment_hash"].as_str().unwrap()).unwrap(),
        inv.payment_hash
    );
    assert_eq!(
        dev.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Settled {
            preimage: Some(pre.clone().try_into().unwrap())
        }
    );

    // An invoice from another node: a payment error, as LND reports it (HTTP 200).
    let other = DevBackend::regtest()
        .create_invoice(1000, "x", 60)
        .await
        .unwrap();
    let (s, body) = call(
        "POST",
        format!("{}/v1/channels/transactions", wallet.url()),
        Some(&mac),
        Some(json!({"payment_request": other.bolt11})),
    )
    .await;
    assert_eq!(s, 200);
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(r["payment_error"], "");
    assert_eq!(r["payment_preimage"], "");

    // SendPaymentV2: one JSON line, hex preimage (LND's `Payment` message).
    let inv2 = dev.create_invoice(7000, "turnpike add", 600).await.unwrap();
    let (s, body) = call(
        "POST",
        format!("{}/v2/router/send", wallet.url()),
        Some(&mac),
        Some(json!({"payment_request": inv2.bolt11, "timeout_seconds": 60, "fee_limit_sat": 100})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body.lines().count(), 1);
    let r: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(r["result"]["status"], "SUCCEEDED");
    assert_eq!(r["result"]["value_msat"], "7000");
    let pre2 = hex::decode(r["result"]["payment_preimage"].as_str().unwrap()).unwrap();
    let h2: [u8; 32] = Sha256::digest(&pre2).into();
    assert_eq!(h2, inv2.payment_hash);
    assert_eq!(r["result"]["payment_hash"], hex::encode(inv2.payment_hash));
    let (_, body) = call(
        "POST",
        format!("{}/v2/router/send", wallet.url()),
        Some(&mac),
        Some(json!({"payment_request": other.bolt11})),
    )
    .await;
    let r: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(r["result"]["status"], "FAILED");
    wallet.shutdown().await;
}

#[tokio::test]
async fn base64_router_preimage_option_and_loopback_only() {
    let dev = Arc::new(DevBackend::regtest());
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
    let inv = dev.create_invoice(1000, "x", 600).await.unwrap();
    let (_, body) = call(
        "POST",
        format!("{}/v2/router/send", wallet.url()),
        Some(&wallet.macaroon_hex),
        Some(json!({"payment_request": inv.bolt11})),
    )
    .await;
    let r: Value = serde_json::from_str(body.trim()).unwrap();
    let pre = base64::engine::general_purpose::STANDARD
        .decode(r["result"]["payment_preimage"].as_str().unwrap())
        .unwrap();
    let h: [u8; 32] = Sha256::digest(&pre).into();
    assert_eq!(h, inv.payment_hash);
    drop(wallet);
    assert!(dev
        .serve_wallet("0.0.0.0:0".parse().unwrap(), DevWalletOptions::default())
        .await
        .is_err());
}

#[tokio::test]
async fn expired_invoices_are_not_paid() {
    let dev = DevBackend::regtest();
    let inv = dev.create_invoice(1000, "x", 0).await.unwrap();
    assert_eq!(
        dev.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Expired
    );
    assert!(dev.pay(&inv.bolt11).is_err());
}
