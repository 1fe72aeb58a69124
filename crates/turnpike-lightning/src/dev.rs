//! The dev backend. **Not for production.**
//!
//! It mints real, signed BOLT11 invoices (`lnbcrt…` for regtest or `lntbs…` for signet) with a
//! local node key, keeps their preimages, and "settles" an invoice when asked to pay it — no
//! Lightning network is involved and no money moves. It exists for tests, demos and client
//! development: a gateway using it grants access to anyone who asks its dev wallet to pay.
//!
//! It can also play the payer's wallet ([`DevBackend::serve_wallet`]): a loopback HTTP server
//! that answers the LND REST calls an auto-paying L402 client makes —
//! `GET /v1/getinfo`, `POST /v1/channels/transactions` (`SendPaymentSync`: `{"payment_request"}`
//! → `{"payment_error": "", "payment_preimage": <base64>, "payment_hash": <base64>}`) and
//! `POST /v2/router/send` (`SendPaymentV2`: one JSON line `{"result": {"status": "SUCCEEDED",
//! "payment_preimage": <hex>, …}}`) — for invoices this backend minted. Requests must carry the
//! wallet's macaroon in `Grpc-Metadata-macaroon`, as with LND.

use axum::extract::State;
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
use std::sync::Arc;

use crate::bolt11::{self, InvoiceFields, Network};
use crate::config::DevConfig;
use crate::{unix_now, BoxFuture, Invoice, InvoiceState, LightningBackend, LightningError};

/// The warning every dev-backend log line and document carries.
pub const NOT_FOR_PRODUCTION: &str =
    "DEV LIGHTNING BACKEND: invoices are signed by a local key and 'paid' by the dev wallet; \
     no money moves. Never use it in production.";

struct DevInvoice {
    preimage: [u8; 32],
    amount_msat: u64,
    expires_at: u64,
    settled: bool,
}

/// Mints signed invoices with a local key and settles them on request. See the module docs.
pub struct DevBackend {
    key: SigningKey,
    pubkey: [u8; 33],
    network: Network,
    custodial: bool,
    invoices: Mutex<HashMap<[u8; 32], DevInvoice>>,
}

/// Why the dev wallet would not pay an invoice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevPayError {
    #[error("invoice does not decode: {0}")]
    /// The invoice does not decode.
    Decode(#[from] bolt11::Bolt11Error),
    #[error("invoice was not minted by this dev backend")]
    /// The invoice was minted elsewhere.
    Foreign,
    #[error("invoice expired")]
    /// The invoice has expired.
    Expired,
}

impl DevBackend {
    /// A dev backend from its configuration. Logs a loud warning.
    pub fn new(cfg: &DevConfig) -> Result<Self, LightningError> {
        let network = match cfg.network.as_str() {
            "regtest" => Network::Regtest,
            "signet" => Network::Signet,
            other => {
                return Err(LightningError::Config(format!(
                    "dev backend network must be regtest or signet, not {other:?}"
                )))
            }
        };
        let key = match &cfg.key_hex {
            Some(k) => {
                let secret = crate::hex32(&k.0).ok_or_else(|| {
                    LightningError::Config("dev key_hex must be 64 hex digits".into())
                })?;
                SigningKey::from_bytes(&secret.into()).map_err(|_| {
                    LightningError::Config("dev key is not a valid secp256k1 key".into())
                })?
            }
            None => random_key(),
        };
        tracing::warn!("{NOT_FOR_PRODUCTION}");
        Ok(Self::with_key(key, network, cfg.custodial))
    }

    fn with_key(key: SigningKey, network: Network, custodial: bool) -> Self {
        let mut pubkey = [0u8; 33];
        pubkey.copy_from_slice(key.verifying_key().to_encoded_point(true).as_bytes());
        DevBackend {
            key,
            pubkey,
            network,
            custodial,
            invoices: Mutex::new(HashMap::new()),
        }
    }

    /// A regtest dev backend with a random key (for tests).
    pub fn regtest() -> Self {
        Self::with_key(random_key(), Network::Regtest, false)
    }

    /// The node's compressed public key (what `GET /v1/getinfo` reports).
    pub fn node_pubkey(&self) -> [u8; 33] {
        self.pubkey
    }

    /// Pays an invoice this backend minted: marks it settled and returns its preimage.
    pub fn pay(&self, invoice: &str) -> Result<[u8; 32], DevPayError> {
        let d = bolt11::decode(invoice)?;
        if d.payee != self.pubkey {
            return Err(DevPayError::Foreign);
        }
        let mut map = self.invoices.lock();
        let inv = map.get_mut(&d.payment_hash).ok_or(DevPayError::Foreign)?;
        if !inv.settled && inv.expires_at <= unix_now() {
            return Err(DevPayError::Expired);
        }
        inv.settled = true;
        tracing::warn!(
            amount_msat = inv.amount_msat,
            "dev wallet paid an invoice (no money moved) — not for production"
        );
        Ok(inv.preimage)
    }

    /// The preimage of an invoice this backend minted, without settling it (for tests that
    /// need a credential whose payment the backend has not seen).
    pub fn preimage_of(&self, payment_hash: &[u8; 32]) -> Option<[u8; 32]> {
        self.invoices.lock().get(payment_hash).map(|i| i.preimage)
    }

    /// Starts the dev wallet: an LND-REST look-alike on `addr`, which must be a loopback
    /// address (port 0 picks a free port).
    pub async fn serve_wallet(
        self: Arc<Self>,
        addr: SocketAddr,
        options: DevWalletOptions,
    ) -> std::io::Result<DevWallet> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the dev wallet listens on loopback addresses only",
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let macaroon_hex = hex::encode(rand::random::<[u8; 32]>());
        let state = Arc::new(WalletState {
            backend: self,
            macaroon_hex: macaroon_hex.clone(),
            options,
        });
        let app = Router::new()
            .route("/v1/getinfo", get(getinfo))
            .route("/v1/channels/transactions", post(send_payment_sync))
            .route("/v2/router/send", post(send_payment_v2))
            .with_state(state);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        tracing::warn!(%addr, "dev wallet listening — {NOT_FOR_PRODUCTION}");
        Ok(DevWallet {
            addr,
            macaroon_hex,
            shutdown: Some(tx),
            task,
        })
    }
}

/// A random node key. A random 32-byte string is a valid secp256k1 scalar except with
/// negligible probability; draw again in that case.
fn random_key() -> SigningKey {
    loop {
        if let Ok(k) = SigningKey::from_bytes(&rand::random::<[u8; 32]>().into()) {
            return k;
        }
    }
}

/// How the dev wallet renders what it returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevWalletOptions {
    /// Write `payment_preimage` of `/v2/router/send` in base64 instead of LND's hex. Some L402
    /// clients (`l402-requests` 0.9) read that field as base64; this lets them be tested.
    pub router_preimage_base64: bool,
}

/// A running dev wallet. Dropping it stops the server.
pub struct DevWallet {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The macaroon (hex) callers must send in `Grpc-Metadata-macaroon`.
    pub macaroon_hex: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl DevWallet {
    /// The wallet's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for DevWallet {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

struct WalletState {
    backend: Arc<DevBackend>,
    macaroon_hex: String,
    options: DevWalletOptions,
}

/// `None` when the request carries the wallet's macaroon, else LND's refusal.
fn unauthorized(state: &WalletState, headers: &HeaderMap) -> Option<Response> {
    let got = headers
        .get("grpc-metadata-macaroon")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if turnpike_core::ct_eq(got.as_bytes(), state.macaroon_hex.as_bytes()) {
        None
    } else {
        Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": 2, "message": "verification failed: signature mismatch after caveat verification", "details": []})),
        )
            .into_response())
    }
}

async fn getinfo(State(st): State<Arc<WalletState>>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    let network = match st.backend.network {
        Network::Signet => "signet",
        Network::Testnet => "testnet",
        Network::Bitcoin => "mainnet",
        Network::Regtest => "regtest",
    };
    Json(json!({
        "version": "turnpike-dev (not for production)",
        "identity_pubkey": hex::encode(st.backend.pubkey),
        "alias": "turnpike-dev-wallet",
        "num_active_channels": 1,
        "num_peers": 1,
        "synced_to_chain": true,
        "synced_to_graph": true,
        "chains": [{"chain": "bitcoin", "network": network}],
    }))
    .into_response()
}

fn payment_request_of(body: &Value) -> Option<&str> {
    body.get("payment_request").and_then(Value::as_str)
}

async fn send_payment_sync(
    State(st): State<Arc<WalletState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    let Some(pr) = payment_request_of(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 3, "message": "payment_request is required", "details": []})),
        )
            .into_response();
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    match st.backend.pay(pr) {
        Ok(preimage) => {
            let hash: [u8; 32] = Sha256::digest(preimage).into();
            Json(json!({
                "payment_error": "",
                "payment_preimage": b64.encode(preimage),
                "payment_hash": b64.encode(hash),
                "payment_route": {"total_amt": "0", "total_fees": "0", "hops": []},
            }))
            .into_response()
        }
        Err(e) => Json(json!({
            "payment_error": e.to_string(),
            "payment_preimage": "",
            "payment_hash": "",
        }))
        .into_response(),
    }
}

async fn send_payment_v2(
    State(st): State<Arc<WalletState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = unauthorized(&st, &headers) {
        return r;
    }
    let Some(pr) = payment_request_of(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 3, "message": "payment_request is required", "details": []})),
        )
            .into_response();
    };
    let amount = bolt11::decode(pr)
        .ok()
        .and_then(|d| d.amount_msat)
        .unwrap_or(0);
    let result = match st.backend.pay(pr) {
        Ok(preimage) => {
            let hash: [u8; 32] = Sha256::digest(preimage).into();
            let preimage_str = if st.options.router_preimage_base64 {
                base64::engine::general_purpose::STANDARD.encode(preimage)
            } else {
                hex::encode(preimage)
            };
            json!({
                "payment_hash": hex::encode(hash),
                "payment_preimage": preimage_str,
                "value_msat": amount.to_string(),
                "value_sat": (amount / 1000).to_string(),
                "fee_msat": "0",
                "status": "SUCCEEDED",
                "failure_reason": "FAILURE_REASON_NONE",
                "payment_request": pr,
            })
        }
        Err(e) => json!({
            "payment_hash": "",
            "payment_preimage": "",
            "status": "FAILED",
            "failure_reason": match e {
                DevPayError::Expired => "FAILURE_REASON_TIMEOUT",
                _ => "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS",
            },
            "payment_request": pr,
        }),
    };
    let mut line = json!({ "result": result }).to_string();
    line.push('\n');
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        line,
    )
        .into_response()
}

impl LightningBackend for DevBackend {
    fn name(&self) -> &'static str {
        "dev"
    }

    fn is_custodial(&self) -> bool {
        self.custodial
    }

    fn create_invoice<'a>(
        &'a self,
        amount_msat: u64,
        memo: &'a str,
        expiry_secs: u64,
    ) -> BoxFuture<'a, Result<Invoice, LightningError>> {
        Box::pin(async move {
            let preimage: [u8; 32] = rand::random();
            let payment_hash: [u8; 32] = Sha256::digest(preimage).into();
            let now = unix_now();
            let bolt11 = bolt11::encode(
                &InvoiceFields {
                    network: self.network,
                    amount_msat: Some(amount_msat),
                    timestamp: now,
                    payment_hash,
                    payment_secret: rand::random(),
                    description: memo,
                    expiry_secs,
                    min_final_cltv_expiry: 80,
                },
                &self.key,
            )
            .map_err(|e| LightningError::Protocol(format!("signing the invoice: {e}")))?;
            let expires_at = now.saturating_add(expiry_secs);
            self.invoices.lock().insert(
                payment_hash,
                DevInvoice {
                    preimage,
                    amount_msat,
                    expires_at,
                    settled: false,
                },
            );
            Ok(Invoice {
                bolt11,
                payment_hash,
                amount_msat,
                expires_at,
            })
        })
    }

    fn lookup_invoice<'a>(
        &'a self,
        payment_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<InvoiceState, LightningError>> {
        Box::pin(async move {
            let map = self.invoices.lock();
            let inv = map.get(payment_hash).ok_or(LightningError::NotFound)?;
            Ok(if inv.settled {
                InvoiceState::Settled {
                    preimage: Some(inv.preimage),
                }
            } else if inv.expires_at <= unix_now() {
                InvoiceState::Expired
            } else {
                InvoiceState::Open
            })
        })
    }
}
