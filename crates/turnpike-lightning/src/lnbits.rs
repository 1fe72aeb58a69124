//! An LNbits wallet.
//!
//! - create: `POST /api/v1/payments` with `{"out": false, "amount": <sat>, "memo", "expiry",
//!   "unit": "sat"}` → 201 `{"payment_hash": <hex>, "payment_request" | "bolt11": "lnbc…",
//!   "checking_id", …}`;
//! - lookup: `GET /api/v1/payments/{payment_hash}` → `{"paid": bool, "preimage": <hex>,
//!   "status"?, "details": {…}}`;
//! - errors: a non-2xx status with `{"detail": "…"}` (404 for an unknown payment);
//! - authentication: `X-Api-Key: <the wallet's invoice key>`.
//!
//! LNbits holds the wallet for its users: it is custodial, so the L402 rail confirms each
//! token's payment with it. Amounts are whole satoshis: a price in msat is rounded up.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Value};

use crate::config::{read_secret, LnbitsConfig};
use crate::http::{HttpClient, Response};
use crate::{
    checked_invoice, hex32, msat_to_sat_ceil, BoxFuture, Invoice, InvoiceState, LightningBackend,
    LightningError,
};

/// An LNbits wallet.
pub struct LnbitsBackend {
    http: HttpClient,
}

impl LnbitsBackend {
    /// Connects (lazily) to the instance the configuration names.
    pub fn new(cfg: &LnbitsConfig) -> Result<Self, LightningError> {
        Ok(LnbitsBackend {
            http: http_client(cfg)?,
        })
    }
}

/// The HTTP client for the node `cfg` names, with its credential header (shared by the
/// backend and the paying wallet).
pub(crate) fn http_client(cfg: &LnbitsConfig) -> Result<HttpClient, LightningError> {
    let key = read_secret(&cfg.api_key, &cfg.api_key_path, "lnbits api_key")?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-api-key",
        HeaderValue::from_str(key.0.trim())
            .map_err(|_| LightningError::Config("api_key is not a header value".into()))?,
    );
    HttpClient::new(&cfg.url, &cfg.http, headers)
}

fn lnbits_error(r: &Response) -> LightningError {
    if r.status == http::StatusCode::NOT_FOUND {
        return LightningError::NotFound;
    }
    let message = r
        .json()
        .ok()
        .and_then(|v| match v.get("detail") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        })
        .unwrap_or_else(|| r.snippet());
    LightningError::Rejected {
        status: r.status.as_u16(),
        message,
    }
}

impl LightningBackend for LnbitsBackend {
    fn name(&self) -> &'static str {
        "lnbits"
    }

    fn is_custodial(&self) -> bool {
        true
    }

    fn create_invoice<'a>(
        &'a self,
        amount_msat: u64,
        memo: &'a str,
        expiry_secs: u64,
    ) -> BoxFuture<'a, Result<Invoice, LightningError>> {
        Box::pin(async move {
            let sat = msat_to_sat_ceil(amount_msat);
            let body = json!({
                "out": false,
                "amount": sat,
                "memo": memo,
                "expiry": expiry_secs,
                "unit": "sat",
            });
            let r = self
                .http
                .send(
                    Method::POST,
                    "/api/v1/payments",
                    Some("application/json"),
                    Bytes::from(body.to_string()),
                    false,
                )
                .await?;
            if !r.status.is_success() {
                return Err(lnbits_error(&r));
            }
            let v = r.json()?;
            let hash = v
                .get("payment_hash")
                .and_then(Value::as_str)
                .and_then(hex32)
                .ok_or_else(|| LightningError::Protocol("no payment_hash in the answer".into()))?;
            let bolt11 = v
                .get("bolt11")
                .or_else(|| v.get("payment_request"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    LightningError::Protocol("no payment request in the answer".into())
                })?;
            checked_invoice(bolt11.to_string(), hash, sat * 1000)
        })
    }

    fn lookup_invoice<'a>(
        &'a self,
        payment_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<InvoiceState, LightningError>> {
        Box::pin(async move {
            let path = format!("/api/v1/payments/{}", hex::encode(payment_hash));
            let r = self
                .http
                .send(Method::GET, &path, None, Bytes::new(), true)
                .await?;
            if !r.status.is_success() {
                return Err(lnbits_error(&r));
            }
            let v = r.json()?;
            let status = v
                .get("status")
                .or_else(|| v.get("details").and_then(|d| d.get("status")))
                .and_then(Value::as_str);
            match v.get("paid").and_then(Value::as_bool) {
                Some(true) => Ok(InvoiceState::Settled {
                    preimage: v
                        .get("preimage")
                        .or_else(|| v.get("details").and_then(|d| d.get("preimage")))
                        .and_then(Value::as_str)
                        .and_then(hex32),
                }),
                Some(false) if matches!(status, Some("failed" | "expired")) => {
                    Ok(InvoiceState::Expired)
                }
                Some(false) => Ok(InvoiceState::Open),
                None => Err(LightningError::Protocol(
                    "no paid flag in the answer".into(),
                )),
            }
        })
    }
}
