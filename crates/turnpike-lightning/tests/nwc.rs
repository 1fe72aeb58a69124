//! The NWC backend against a loopback Nostr relay and NIP-47 wallet service written here from
//! the specs: the relay speaks NIP-01 (`REQ`/`EOSE`/`EVENT`/`OK`), checks every published
//! event's id and BIP-340 signature, and the wallet service decrypts NIP-04 requests, answers
//! `make_invoice` with a real BOLT11 invoice from the dev backend and `lookup_invoice` with its
//! state, and signs its answers.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use k256::schnorr::{Signature, SigningKey, VerifyingKey};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use turnpike_lightning::dev::DevBackend;
use turnpike_lightning::nwc::{ConnectionUri, NwcBackend};
use turnpike_lightning::{InvoiceState, LightningBackend, LightningError, NwcConfig};

const WALLET_SK: [u8; 32] = [0x11; 32];
const CLIENT_SK: [u8; 32] = [0x22; 32];
const ROGUE_SK: [u8; 32] = [0x33; 32];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// The wallet answers every request with an error object.
    Error,
    /// The answers are signed by another key (and the relay forwards them anyway).
    Rogue,
}

struct Wallet {
    dev: DevBackend,
    mode: Mutex<Mode>,
    /// Every request event the relay accepted, as published.
    requests: Mutex<Vec<Value>>,
    /// Every subscription filter the relay received.
    filters: Mutex<Vec<Value>>,
    /// Events the relay refused (bad id or signature).
    refused: Mutex<usize>,
    /// Close the connection after each answer (to exercise reconnecting).
    hang_up: Mutex<bool>,
}

fn xonly(sk: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(sk)
        .unwrap()
        .verifying_key()
        .to_bytes()
        .into()
}

fn serialized_id(ev: &Value) -> [u8; 32] {
    let ser = serde_json::to_string(&json!([
        0,
        ev["pubkey"],
        ev["created_at"],
        ev["kind"],
        ev["tags"],
        ev["content"]
    ]))
    .unwrap();
    Sha256::digest(ser.as_bytes()).into()
}

fn event_is_valid(ev: &Value) -> bool {
    let (Some(id), Some(pk), Some(sig)) =
        (ev["id"].as_str(), ev["pubkey"].as_str(), ev["sig"].as_str())
    else {
        return false;
    };
    if id != hex::encode(serialized_id(ev)) || id.len() != 64 || pk.len() != 64 {
        return false;
    }
    let (Ok(id), Ok(pk), Ok(sig)) = (hex::decode(id), hex::decode(pk), hex::decode(sig)) else {
        return false;
    };
    let (Ok(vk), Ok(sig)) = (
        VerifyingKey::from_bytes(&pk),
        Signature::try_from(sig.as_slice()),
    ) else {
        return false;
    };
    vk.verify_raw(&id, &sig).is_ok()
}

fn sign(sk: &[u8; 32], kind: u64, tags: Value, content: String) -> Value {
    let key = SigningKey::from_bytes(sk).unwrap();
    let mut ev = json!({
        "pubkey": hex::encode(key.verifying_key().to_bytes()),
        "created_at": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "kind": kind, "tags": tags, "content": content,
    });
    let id = serialized_id(&ev);
    let sig = key.sign_raw(&id, &[0u8; 32]).unwrap();
    ev["id"] = json!(hex::encode(id));
    ev["sig"] = json!(hex::encode(sig.to_bytes()));
    ev
}

/// NIP-04: the shared key is the x-coordinate of the ECDH point (not hashed).
fn shared_x(sk: &[u8; 32], peer_xonly: &[u8]) -> [u8; 32] {
    let mut sec1 = vec![0x02];
    sec1.extend_from_slice(peer_xonly);
    let pk = k256::PublicKey::from_sec1_bytes(&sec1).unwrap();
    let sk = k256::SecretKey::from_slice(sk).unwrap();
    let s = k256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
    (*s.raw_secret_bytes()).into()
}

fn decrypt(key: &[u8; 32], content: &str) -> Option<String> {
    use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
    let (ct, iv) = content.split_once("?iv=")?;
    let b = base64::engine::general_purpose::STANDARD;
    let (ct, iv) = (b.decode(ct).ok()?, b.decode(iv).ok()?);
    let d = cbc::Decryptor::<aes::Aes256>::new_from_slices(key, &iv).ok()?;
    String::from_utf8(d.decrypt_padded_vec_mut::<Pkcs7>(&ct).ok()?).ok()
}

fn encrypt(key: &[u8; 32], text: &str) -> String {
    use cbc::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    let iv: [u8; 16] = rand::random();
    let e = cbc::Encryptor::<aes::Aes256>::new_from_slices(key, &iv).unwrap();
    let b = base64::engine::general_purpose::STANDARD;
    let ct = e.encrypt_padded_vec_mut::<Pkcs7>(text.as_bytes());
    format!("{}?iv={}", b.encode(ct), b.encode(iv))
}

fn tag<'a>(ev: &'a Value, name: &str) -> Option<&'a str> {
    ev["tags"]
        .as_array()?
        .iter()
        .find(|t| t[0] == name)
        .and_then(|t| t[1].as_str())
}

/// The wallet service: the decrypted NIP-47 answer to one request.
async fn answer(w: &Wallet, method: &str, params: &Value) -> Value {
    if *w.mode.lock() == Mode::Error {
        return json!({"result_type": method, "error": {"code": "QUOTA_EXCEEDED",
            "message": "spending quota exceeded"}, "result": null});
    }
    match method {
        "make_invoice" => {
            let amount = params["amount"].as_u64().unwrap_or(0);
            let desc = params["description"].as_str().unwrap_or("");
            let expiry = params["expiry"].as_u64().unwrap_or(3600);
            let inv = w.dev.create_invoice(amount, desc, expiry).await.unwrap();
            json!({"result_type": method, "error": null, "result": {
                "type": "incoming", "invoice": inv.bolt11, "description": desc,
                "payment_hash": hex::encode(inv.payment_hash), "amount": inv.amount_msat,
                "fees_paid": 0, "created_at": 0, "expires_at": inv.expires_at}})
        }
        "lookup_invoice" => {
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(params["payment_hash"].as_str().unwrap_or(""), &mut hash)
                .is_err()
            {
                return json!({"result_type": method, "error": {"code": "OTHER",
                    "message": "bad payment_hash"}, "result": null});
            }
            match w.dev.lookup_invoice(&hash).await {
                Err(_) => json!({"result_type": method, "error": {"code": "NOT_FOUND",
                    "message": "invoice not found"}, "result": null}),
                Ok(state) => {
                    let (state, settled_at, preimage) = match state {
                        InvoiceState::Settled { preimage } => (
                            "settled",
                            json!(1_700_000_000u64),
                            json!(preimage.map(hex::encode)),
                        ),
                        InvoiceState::Open => ("pending", Value::Null, Value::Null),
                        InvoiceState::Expired => ("expired", Value::Null, Value::Null),
                    };
                    json!({"result_type": method, "error": null, "result": {
                        "type": "incoming", "payment_hash": hex::encode(hash),
                        "settled_at": settled_at, "preimage": preimage, "state": state}})
                }
            }
        }
        other => json!({"result_type": other, "error": {"code": "NOT_IMPLEMENTED",
            "message": "unknown method"}, "result": null}),
    }
}

async fn relay_conn(tcp: tokio::net::TcpStream, w: Arc<Wallet>) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let wallet_pk = hex::encode(xonly(&WALLET_SK));
    let mut subs: Vec<(String, Value)> = Vec::new();
    while let Some(Ok(msg)) = rx.next().await {
        let Message::Text(t) = msg else { continue };
        let Ok(m) = serde_json::from_str::<Value>(t.as_str()) else {
            continue;
        };
        let mut out = Vec::new();
        match m[0].as_str() {
            Some("REQ") => {
                let sub = m[1].as_str().unwrap_or("").to_string();
                w.filters.lock().push(m[2].clone());
                subs.push((sub.clone(), m[2].clone()));
                out.push(json!(["EOSE", sub]));
            }
            Some("CLOSE") => {
                subs.retain(|(s, _)| m[1].as_str() != Some(s));
            }
            Some("EVENT") => {
                let ev = m[1].clone();
                let id = ev["id"].as_str().unwrap_or("").to_string();
                if !event_is_valid(&ev) {
                    *w.refused.lock() += 1;
                    out.push(json!(["OK", id, false, "invalid: bad id or signature"]));
                } else {
                    out.push(json!(["OK", id, true, ""]));
                    if ev["kind"] == 23194 && tag(&ev, "p") == Some(wallet_pk.as_str()) {
                        w.requests.lock().push(ev.clone());
                        let client = hex::decode(ev["pubkey"].as_str().unwrap_or("")).unwrap();
                        let key = shared_x(&WALLET_SK, &client);
                        let req: Value = decrypt(&key, ev["content"].as_str().unwrap_or(""))
                            .and_then(|s| serde_json::from_str(&s).ok())
                            .unwrap_or(Value::Null);
                        let ans =
                            answer(&w, req["method"].as_str().unwrap_or(""), &req["params"]).await;
                        let signer = if *w.mode.lock() == Mode::Rogue {
                            ROGUE_SK
                        } else {
                            WALLET_SK
                        };
                        let resp = sign(
                            &signer,
                            23195,
                            json!([["p", ev["pubkey"]], ["e", id]]),
                            encrypt(&key, &ans.to_string()),
                        );
                        for (sub, f) in &subs {
                            let kind_ok = f["kinds"]
                                .as_array()
                                .is_some_and(|k| k.contains(&json!(23195)));
                            let p_ok = f["#p"]
                                .as_array()
                                .is_some_and(|p| p.contains(&ev["pubkey"]));
                            // A well-behaved relay filters by author too; in rogue mode this
                            // one forwards the forged answer anyway.
                            let author_ok = *w.mode.lock() == Mode::Rogue
                                || f["authors"]
                                    .as_array()
                                    .is_some_and(|a| a.contains(&resp["pubkey"]));
                            if kind_ok && p_ok && author_ok {
                                out.push(json!(["EVENT", sub, resp]));
                            }
                        }
                    }
                }
            }
            _ => out.push(json!(["NOTICE", "unknown message"])),
        }
        let answered = out.iter().any(|o| o[0] == "EVENT");
        for o in out {
            if tx.send(Message::Text(o.to_string().into())).await.is_err() {
                return;
            }
        }
        if answered && *w.hang_up.lock() {
            let _ = tx.close().await;
            return;
        }
    }
}

async fn start() -> (SocketAddr, Arc<Wallet>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let w = Arc::new(Wallet {
        dev: DevBackend::regtest(),
        mode: Mutex::new(Mode::Normal),
        requests: Mutex::new(Vec::new()),
        filters: Mutex::new(Vec::new()),
        refused: Mutex::new(0),
        hang_up: Mutex::new(false),
    });
    let w2 = w.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(relay_conn(tcp, w2.clone()));
        }
    });
    (addr, w)
}

fn uri(addr: SocketAddr) -> String {
    format!(
        "nostr+walletconnect://{}?relay=ws%3A%2F%2F{addr}&secret={}",
        hex::encode(xonly(&WALLET_SK)),
        hex::encode(CLIENT_SK)
    )
}

fn backend(addr: SocketAddr, timeout: Duration) -> NwcBackend {
    NwcBackend::from_uri(ConnectionUri::parse(&uri(addr)).unwrap(), timeout).unwrap()
}

#[tokio::test]
async fn create_lookup_pay_settle() {
    let (addr, w) = start().await;
    let b = NwcBackend::new(&NwcConfig::with_uri(&uri(addr))).unwrap();
    assert_eq!(b.name(), "nwc");
    assert!(b.is_custodial());
    assert_eq!(b.client_pubkey(), hex::encode(xonly(&CLIENT_SK)));

    let inv = b
        .create_invoice(21_000, "turnpike echo", 600)
        .await
        .unwrap();
    assert!(inv.bolt11.starts_with("lnbcrt"));
    assert_eq!(inv.amount_msat, 21_000);
    let decoded = turnpike_lightning::bolt11::decode(&inv.bolt11).unwrap();
    assert_eq!(decoded.payment_hash, inv.payment_hash);

    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    w.dev.pay(&inv.bolt11).unwrap();
    match b.lookup_invoice(&inv.payment_hash).await.unwrap() {
        InvoiceState::Settled {
            preimage: Some(pre),
        } => {
            let h: [u8; 32] = Sha256::digest(pre).into();
            assert_eq!(h, inv.payment_hash);
        }
        other => panic!("expected settled with a preimage, got {other:?}"),
    }
    assert_eq!(
        b.lookup_invoice(&[9u8; 32]).await,
        Err(LightningError::NotFound)
    );

    // What went over the wire: signed kind-23194 requests to the wallet, one connection and one
    // subscription for all four, nothing refused by the relay.
    let reqs = w.requests.lock().clone();
    assert_eq!(reqs.len(), 4);
    for r in &reqs {
        assert_eq!(r["kind"], 23194);
        assert_eq!(r["pubkey"], hex::encode(xonly(&CLIENT_SK)));
        assert!(!r["content"].as_str().unwrap().contains("make_invoice"));
        assert!(r["content"].as_str().unwrap().contains("?iv="));
    }
    let filters = w.filters.lock().clone();
    assert_eq!(filters.len(), 1, "one connection, one subscription");
    assert_eq!(filters[0]["kinds"], json!([23195]));
    assert_eq!(
        filters[0]["authors"],
        json!([hex::encode(xonly(&WALLET_SK))])
    );
    assert_eq!(filters[0]["#p"], json!([hex::encode(xonly(&CLIENT_SK))]));
    assert_eq!(*w.refused.lock(), 0);
}

#[tokio::test]
async fn wallet_error_is_a_lightning_error() {
    let (addr, w) = start().await;
    *w.mode.lock() = Mode::Error;
    let b = backend(addr, Duration::from_secs(5));
    match b.create_invoice(1_000, "x", 60).await {
        Err(LightningError::Rejected { status, message }) => {
            assert_eq!(status, 402);
            assert!(message.contains("QUOTA_EXCEEDED"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(b.lookup_invoice(&[1u8; 32]).await.is_err());
}

#[tokio::test]
async fn answer_signed_by_another_key_is_ignored() {
    let (addr, w) = start().await;
    *w.mode.lock() = Mode::Rogue;
    let b = backend(addr, Duration::from_millis(800));
    let t = Instant::now();
    assert_eq!(
        b.create_invoice(1_000, "x", 60).await,
        Err(LightningError::Timeout)
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(
        w.requests.lock().len(),
        1,
        "the wallet did answer, with a forged key"
    );
    // A backend to the same relay works once the wallet signs properly again.
    *w.mode.lock() = Mode::Normal;
    let b = backend(addr, Duration::from_secs(5));
    assert!(b.create_invoice(1_000, "x", 60).await.is_ok());
}

#[tokio::test]
async fn reconnects_after_the_relay_hangs_up() {
    let (addr, w) = start().await;
    *w.hang_up.lock() = true;
    let b = backend(addr, Duration::from_secs(5));
    let inv = b.create_invoice(5_000, "a", 60).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        b.lookup_invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Open
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.create_invoice(5_000, "b", 60).await.is_ok());
    assert_eq!(
        w.filters.lock().len(),
        3,
        "a new connection and subscription each time"
    );
}

#[tokio::test]
async fn relay_down_fails_closed_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let b = backend(addr, Duration::from_secs(10));
    let t = Instant::now();
    assert!(matches!(
        b.create_invoice(1_000, "x", 60).await,
        Err(LightningError::Unreachable(_))
    ));
    assert!(matches!(
        b.lookup_invoice(&[1u8; 32]).await,
        Err(LightningError::Unreachable(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn config_sources_and_redaction() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let secret = hex::encode(CLIENT_SK);
    let cfg: NwcConfig = serde_json::from_value(json!({"uri": uri(addr)})).unwrap();
    assert_eq!(cfg.timeout_secs, 10);
    assert!(!format!("{cfg:?}").contains(&secret));
    assert!(NwcBackend::new(&cfg).is_ok());

    let dir = std::env::temp_dir().join(format!("turnpike-nwc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nwc.uri");
    std::fs::write(&path, format!("{}\n", uri(addr))).unwrap();
    let cfg: NwcConfig = serde_json::from_value(json!({"uri_path": path})).unwrap();
    assert!(NwcBackend::new(&cfg).is_ok());
    let _ = std::fs::remove_dir_all(&dir);

    let cfg: NwcConfig =
        serde_json::from_value(json!({"uri_env": "TURNPIKE_NWC_TEST_UNSET_VARIABLE"})).unwrap();
    assert!(matches!(
        NwcBackend::new(&cfg),
        Err(LightningError::Config(_))
    ));
    let both: NwcConfig =
        serde_json::from_value(json!({"uri": uri(addr), "uri_env": "X"})).unwrap();
    let err = NwcBackend::new(&both).unwrap_err();
    assert!(!err.to_string().contains(&secret));
    let none: NwcConfig = serde_json::from_value(json!({})).unwrap();
    assert!(NwcBackend::new(&none).is_err());
}
