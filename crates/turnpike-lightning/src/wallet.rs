//! The payer's side: a [`Wallet`] pays a BOLT11 invoice and returns the preimage.
//!
//! The caller (turnpike's client) decodes the invoice with [`decode_for_payment`] and checks the
//! amount against its budget *before* it calls [`Wallet::pay`]; the amount always comes from the
//! signed invoice, never from the text of a challenge. Every implementation checks once more that
//! the invoice carries an amount and that the preimage it got back hashes to the invoice's payment
//! hash.
//!
//! | kind | API used | auth |
//! |---|---|---|
//! | `lnd` | `POST /v1/channels/transactions` (SendPaymentSync: `payment_request`, `fee_limit.fixed_msat`) → `payment_preimage` (base64), `payment_error` | `Grpc-Metadata-macaroon` (an `admin.macaroon`, or one baked with `offchain:write`) |
//! | `cln` | `POST /v1/pay` (`bolt11`, `maxfee`) → `payment_preimage` (hex), `status` | `Rune` (restricted to `pay`) |
//! | `phoenixd` | `POST /payinvoice` (form: `invoice`) → `paymentPreimage`, `routingFeeSat` | HTTP basic (the full `http-password`) |
//! | `lnbits` | `POST /api/v1/payments` (`out: true`, `bolt11`) → `payment_hash`, then `GET /api/v1/payments/{hash}` → `preimage` | `X-Api-Key` (the wallet's **admin** key) |
//! | `nwc` | NIP-47 `pay_invoice` (`invoice`) → `preimage`, `fees_paid` | the connection URI's key |
//!
//! The configurations are the backends' own ([`BackendConfig`]); the `dev` kind is not a wallet
//! (point an `lnd` wallet at the dev backend's dev wallet instead).
//!
//! Errors say whether money may have moved: [`WalletError::Failed`] means the payment certainly
//! did not happen (nothing to record), [`WalletError::Unknown`] that it may have (a timeout after
//! the request was sent, an unreadable answer): a careful caller counts that amount as spent.

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

use crate::bolt11::{self, DecodedInvoice};
use crate::config::{BackendConfig, ClnConfig, LnbitsConfig, LndConfig, PhoenixdConfig};
use crate::http::{HttpClient, Response};
use crate::{b64_32, hex32, unix_now, BoxFuture, LightningError};

/// A payment that went through.
#[derive(Clone, PartialEq, Eq)]
pub struct Paid {
    /// The preimage; its SHA-256 is the invoice's payment hash (checked).
    pub preimage: [u8; 32],
    /// The payment hash.
    pub payment_hash: [u8; 32],
    /// The amount the invoice asked for.
    pub amount_msat: u64,
    /// Routing fees, when the wallet reported them.
    pub fee_msat: Option<u64>,
}

impl std::fmt::Debug for Paid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paid")
            .field("payment_hash", &hex::encode(self.payment_hash))
            .field("amount_msat", &self.amount_msat)
            .field("fee_msat", &self.fee_msat)
            .finish_non_exhaustive()
    }
}

/// Why a payment did not (certainly) go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// The wallet's configuration is unusable.
    #[error("wallet misconfigured: {0}")]
    Config(String),
    /// The invoice itself is unacceptable (does not decode, no amount, expired); nothing was sent.
    #[error("invoice refused: {0}")]
    Invoice(String),
    /// The payment certainly did not happen (refused by the wallet, no route, unreachable
    /// before anything was sent). Nothing was spent.
    #[error("payment failed: {0}")]
    Failed(String),
    /// The payment may or may not have happened (timeout after sending, an answer that does
    /// not parse or whose preimage does not match). Count the amount as spent.
    #[error("payment outcome unknown: {0}")]
    Unknown(String),
}

impl WalletError {
    /// Whether money may have left the wallet.
    pub fn may_have_paid(&self) -> bool {
        matches!(self, WalletError::Unknown(_))
    }
}

/// A Lightning wallet that can pay invoices.
pub trait Wallet: Send + Sync {
    /// A short name for logs (`lnd`, `cln`, `phoenixd`, `lnbits`, `nwc`).
    fn name(&self) -> &'static str;

    /// Pays `invoice`, spending at most `max_fee_msat` on routing. The caller has decoded the
    /// invoice ([`decode_for_payment`]) and approved its amount.
    fn pay<'a>(
        &'a self,
        invoice: &'a str,
        max_fee_msat: u64,
    ) -> BoxFuture<'a, Result<Paid, WalletError>>;
}

/// Decodes an invoice for payment: signature checked, an amount present, not expired.
pub fn decode_for_payment(invoice: &str) -> Result<DecodedInvoice, WalletError> {
    let d = bolt11::decode(invoice.trim())
        .map_err(|e| WalletError::Invoice(format!("does not decode: {e}")))?;
    if d.amount_msat.is_none() {
        return Err(WalletError::Invoice(
            "the invoice names no amount (refused: the amount must be known before paying)".into(),
        ));
    }
    if d.expires_at() <= unix_now() {
        return Err(WalletError::Invoice("the invoice has expired".into()));
    }
    Ok(d)
}

/// Builds the wallet a configuration names.
pub fn connect_wallet(cfg: &BackendConfig) -> Result<Arc<dyn Wallet>, WalletError> {
    let c = |e: LightningError| WalletError::Config(e.to_string());
    Ok(match cfg {
        BackendConfig::Lnd(x) => Arc::new(LndWallet::new(x).map_err(c)?),
        BackendConfig::Cln(x) => Arc::new(ClnWallet::new(x).map_err(c)?),
        BackendConfig::Phoenixd(x) => Arc::new(PhoenixdWallet::new(x).map_err(c)?),
        BackendConfig::Lnbits(x) => Arc::new(LnbitsWallet::new(x).map_err(c)?),
        BackendConfig::Nwc(x) => Arc::new(NwcWallet {
            inner: crate::nwc::NwcBackend::new(x).map_err(c)?,
        }),
        BackendConfig::Dev(_) => {
            return Err(WalletError::Config(
                "the dev backend is not a wallet: use kind = \"lnd\" with the dev wallet's url \
                 and macaroon"
                    .into(),
            ))
        }
    })
}

/// Checks a returned preimage against the invoice.
fn finish(
    d: &DecodedInvoice,
    preimage: Option<[u8; 32]>,
    fee_msat: Option<u64>,
) -> Result<Paid, WalletError> {
    let preimage = preimage.ok_or_else(|| {
        WalletError::Unknown("the wallet reported success without a readable preimage".into())
    })?;
    let hash: [u8; 32] = Sha256::digest(preimage).into();
    if !turnpike_core::ct_eq(&hash, &d.payment_hash) {
        return Err(WalletError::Unknown(
            "the preimage the wallet returned does not match the invoice".into(),
        ));
    }
    Ok(Paid {
        preimage,
        payment_hash: d.payment_hash,
        amount_msat: d.amount_msat.unwrap_or(0),
        fee_msat,
    })
}

/// Maps a transport error of a *payment* request: nothing certain unless the connection was
/// never made.
fn transport(e: LightningError) -> WalletError {
    match e {
        LightningError::Config(m) => WalletError::Config(m),
        // hyper reports a refused connection as a connect error before anything is written.
        LightningError::Unreachable(m) if m.contains("onnect") && !m.contains("reset") => {
            WalletError::Failed(format!("wallet unreachable: {m}"))
        }
        LightningError::Unreachable(m) => WalletError::Unknown(format!("wallet connection: {m}")),
        LightningError::Timeout => WalletError::Unknown("the wallet did not answer in time".into()),
        other => WalletError::Unknown(other.to_string()),
    }
}

/// A non-2xx answer: 4xx means refused (nothing paid), 5xx is unknown unless the body says the
/// payment failed.
fn status_error(r: &Response, what: &str) -> WalletError {
    let msg = format!("{what} answered {}: {}", r.status.as_u16(), r.snippet());
    if r.status.is_client_error() {
        WalletError::Failed(msg)
    } else {
        WalletError::Unknown(msg)
    }
}

fn str_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------------
// LND
// ------------------------------------------------------------------------------------------

/// LND over REST (SendPaymentSync).
pub struct LndWallet {
    http: HttpClient,
}

impl LndWallet {
    /// A wallet for the node the configuration names (the macaroon must allow paying).
    pub fn new(cfg: &LndConfig) -> Result<Self, LightningError> {
        Ok(LndWallet {
            http: crate::lnd::http_client(cfg)?,
        })
    }
}

impl Wallet for LndWallet {
    fn name(&self) -> &'static str {
        "lnd"
    }

    fn pay<'a>(
        &'a self,
        invoice: &'a str,
        max_fee_msat: u64,
    ) -> BoxFuture<'a, Result<Paid, WalletError>> {
        Box::pin(async move {
            let d = decode_for_payment(invoice)?;
            let body = json!({
                "payment_request": invoice.trim(),
                "fee_limit": {"fixed_msat": max_fee_msat.to_string()},
            });
            let r = self
                .http
                .send(
                    Method::POST,
                    "/v1/channels/transactions",
                    Some("application/json"),
                    Bytes::from(body.to_string()),
                    false,
                )
                .await
                .map_err(transport)?;
            if !r.status.is_success() {
                // A gRPC error status (`{"code", "message"}`) from SendPaymentSync is raised before
                // any payment is attempted (authentication, a malformed request); failed payments
                // come back with 200 and `payment_error`.
                if let Some(m) = r
                    .json()
                    .ok()
                    .filter(|v| v.get("code").is_some())
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                {
                    return Err(WalletError::Failed(format!("lnd: {m}")));
                }
                return Err(status_error(&r, "lnd"));
            }
            let v = r
                .json()
                .map_err(|e| WalletError::Unknown(format!("lnd: {e}")))?;
            let err = v.get("payment_error").and_then(Value::as_str).unwrap_or("");
            if !err.is_empty() {
                return Err(WalletError::Failed(format!("lnd: {err}")));
            }
            let preimage = v
                .get("payment_preimage")
                .and_then(Value::as_str)
                .and_then(b64_32);
            let fee = v
                .get("payment_route")
                .and_then(|r| str_u64(r.get("total_fees_msat")));
            finish(&d, preimage, fee)
        })
    }
}

// ------------------------------------------------------------------------------------------
// Core Lightning
// ------------------------------------------------------------------------------------------

/// Core Lightning over `clnrest` (`pay`).
pub struct ClnWallet {
    http: HttpClient,
}

impl ClnWallet {
    /// A wallet for the node the configuration names (the rune must allow `pay`).
    pub fn new(cfg: &ClnConfig) -> Result<Self, LightningError> {
        Ok(ClnWallet {
            http: crate::cln::http_client(cfg)?,
        })
    }
}

impl Wallet for ClnWallet {
    fn name(&self) -> &'static str {
        "cln"
    }

    fn pay<'a>(
        &'a self,
        invoice: &'a str,
        max_fee_msat: u64,
    ) -> BoxFuture<'a, Result<Paid, WalletError>> {
        Box::pin(async move {
            let d = decode_for_payment(invoice)?;
            let body = json!({"bolt11": invoice.trim(), "maxfee": max_fee_msat});
            let r = self
                .http
                .send(
                    Method::POST,
                    "/v1/pay",
                    Some("application/json"),
                    Bytes::from(body.to_string()),
                    false,
                )
                .await
                .map_err(transport)?;
            if !r.status.is_success() {
                // `pay` errors (no route, refused by the payee, over maxfee) are final: CLN
                // reports a still-pending payment as success with status "pending".
                let v = r.json().ok();
                let err = v
                    .as_ref()
                    .map(|b| b.get("error").filter(|e| e.is_object()).unwrap_or(b));
                if let Some(m) = err.and_then(|e| e.get("message")).and_then(Value::as_str) {
                    return Err(WalletError::Failed(format!("cln: {m}")));
                }
                return Err(status_error(&r, "cln"));
            }
            let v = r
                .json()
                .map_err(|e| WalletError::Unknown(format!("cln: {e}")))?;
            match v.get("status").and_then(Value::as_str) {
                Some("complete") | None => {}
                Some(other) => {
                    return Err(WalletError::Unknown(format!("cln: payment status {other}")))
                }
            }
            let preimage = v
                .get("payment_preimage")
                .and_then(Value::as_str)
                .and_then(hex32);
            let fee = match (
                str_u64(v.get("amount_sent_msat")),
                str_u64(v.get("amount_msat")),
            ) {
                (Some(sent), Some(amt)) => Some(sent.saturating_sub(amt)),
                _ => None,
            };
            finish(&d, preimage, fee)
        })
    }
}

// ------------------------------------------------------------------------------------------
// phoenixd
// ------------------------------------------------------------------------------------------

/// phoenixd (`/payinvoice`).
pub struct PhoenixdWallet {
    http: HttpClient,
}

impl PhoenixdWallet {
    /// A wallet for the node the configuration names (the full `http-password`: the limited
    /// one cannot pay).
    pub fn new(cfg: &PhoenixdConfig) -> Result<Self, LightningError> {
        Ok(PhoenixdWallet {
            http: crate::phoenixd::http_client(cfg)?,
        })
    }
}

impl Wallet for PhoenixdWallet {
    fn name(&self) -> &'static str {
        "phoenixd"
    }

    fn pay<'a>(
        &'a self,
        invoice: &'a str,
        _max_fee_msat: u64,
    ) -> BoxFuture<'a, Result<Paid, WalletError>> {
        Box::pin(async move {
            let d = decode_for_payment(invoice)?;
            let body = format!("invoice={}", crate::phoenixd::form_encode(invoice.trim()));
            let r = self
                .http
                .send(
                    Method::POST,
                    "/payinvoice",
                    Some("application/x-www-form-urlencoded"),
                    Bytes::from(body),
                    false,
                )
                .await
                .map_err(transport)?;
            if !r.status.is_success() {
                return Err(status_error(&r, "phoenixd"));
            }
            let v = r
                .json()
                .map_err(|e| WalletError::Unknown(format!("phoenixd: {e}")))?;
            if let Some(reason) = v.get("reason").and_then(Value::as_str) {
                return Err(WalletError::Failed(format!("phoenixd: {reason}")));
            }
            let preimage = v
                .get("paymentPreimage")
                .and_then(Value::as_str)
                .and_then(hex32);
            let fee = str_u64(v.get("routingFeeSat")).map(|s| s.saturating_mul(1000));
            finish(&d, preimage, fee)
        })
    }
}

// ------------------------------------------------------------------------------------------
// LNbits
// ------------------------------------------------------------------------------------------

/// An LNbits wallet (admin key).
pub struct LnbitsWallet {
    http: HttpClient,
}

impl LnbitsWallet {
    /// A wallet for the LNbits wallet the configuration names (`api_key` = the admin key).
    pub fn new(cfg: &LnbitsConfig) -> Result<Self, LightningError> {
        Ok(LnbitsWallet {
            http: crate::lnbits::http_client(cfg)?,
        })
    }
}

impl Wallet for LnbitsWallet {
    fn name(&self) -> &'static str {
        "lnbits"
    }

    fn pay<'a>(
        &'a self,
        invoice: &'a str,
        _max_fee_msat: u64,
    ) -> BoxFuture<'a, Result<Paid, WalletError>> {
        Box::pin(async move {
            let d = decode_for_payment(invoice)?;
            let body = json!({"out": true, "bolt11": invoice.trim()});
            let r = self
                .http
                .send(
                    Method::POST,
                    "/api/v1/payments",
                    Some("application/json"),
                    Bytes::from(body.to_string()),
                    false,
                )
                .await
                .map_err(transport)?;
            if !r.status.is_success() {
                return Err(status_error(&r, "lnbits"));
            }
            // The payment call answers once the payment is settled (or failed); the preimage is
            // read from the payment record.
            let path = format!("/api/v1/payments/{}", hex::encode(d.payment_hash));
            let mut last = WalletError::Unknown("lnbits: no payment record".into());
            for attempt in 0..5u64 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                let r = match self
                    .http
                    .send(Method::GET, &path, None, Bytes::new(), true)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        last = WalletError::Unknown(format!("lnbits lookup: {e}"));
                        continue;
                    }
                };
                if !r.status.is_success() {
                    last = WalletError::Unknown(format!(
                        "lnbits lookup answered {}",
                        r.status.as_u16()
                    ));
                    continue;
                }
                let v = r
                    .json()
                    .map_err(|e| WalletError::Unknown(format!("lnbits: {e}")))?;
                if v.get("paid").and_then(Value::as_bool) == Some(true) {
                    let preimage = v.get("preimage").and_then(Value::as_str).and_then(hex32);
                    let fee = v
                        .get("details")
                        .and_then(|d| d.get("fee"))
                        .and_then(Value::as_i64)
                        .map(|f| f.unsigned_abs());
                    return finish(&d, preimage, fee);
                }
                if v.get("status").and_then(Value::as_str) == Some("failed") {
                    return Err(WalletError::Failed("lnbits: the payment failed".into()));
                }
                last = WalletError::Unknown("lnbits: payment still pending".into());
            }
            Err(last)
        })
    }
}

// ------------------------------------------------------------------------------------------
// NWC
// ------------------------------------------------------------------------------------------

/// A Nostr Wallet Connect wallet service (`pay_invoice`).
pub struct NwcWallet {
    inner: crate::nwc::NwcBackend,
}

impl Wallet for NwcWallet {
    fn name(&self) -> &'static str {
        "nwc"
    }

    fn pay<'a>(
        &'a self,
        invoice: &'a str,
        _max_fee_msat: u64,
    ) -> BoxFuture<'a, Result<Paid, WalletError>> {
        Box::pin(async move {
            let d = decode_for_payment(invoice)?;
            let r = self
                .inner
                .request("pay_invoice", json!({"invoice": invoice.trim()}))
                .await
                .map_err(|e| match e {
                    // The wallet answered with an error object: it did not pay.
                    LightningError::Rejected { message, .. } => {
                        WalletError::Failed(format!("nwc: {message}"))
                    }
                    LightningError::NotFound => WalletError::Failed("nwc: not found".into()),
                    LightningError::Config(m) => WalletError::Config(m),
                    // Relay unreachable before publishing: nothing was sent.
                    LightningError::Unreachable(m)
                        if m.starts_with("relay ") && !m.contains("before the wallet answered") =>
                    {
                        WalletError::Failed(format!("nwc: {m}"))
                    }
                    other => WalletError::Unknown(format!("nwc: {other}")),
                })?;
            let preimage = r.get("preimage").and_then(Value::as_str).and_then(hex32);
            let fee = str_u64(r.get("fees_paid"));
            finish(&d, preimage, fee)
        })
    }
}
