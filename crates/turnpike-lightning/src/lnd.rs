//! LND's REST API.
//!
//! - create: `POST /v1/invoices` with `{"memo", "value_msat", "expiry"}` (64-bit integers as
//!   JSON strings, as LND's REST gateway writes them) → `{"r_hash": <base64>,
//!   "payment_request": "lnbc…", "add_index", "payment_addr"}`;
//! - lookup: `GET /v1/invoice/{r_hash hex}` → the invoice, with `"state"` one of `OPEN`,
//!   `ACCEPTED`, `SETTLED`, `CANCELED` and `"r_preimage"` in base64;
//! - errors: a non-2xx status with `{"code": <gRPC code>, "message": "…", "details": []}`;
//!   code 5 (`NOT_FOUND`, HTTP 404) means no such invoice;
//! - authentication: header `Grpc-Metadata-macaroon: <macaroon hex>`.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Value};

use crate::config::{read_secret, LndConfig};
use crate::http::{HttpClient, Response};
use crate::{
    b64_32, checked_invoice, unix_now, BoxFuture, Invoice, InvoiceState, LightningBackend,
    LightningError,
};

/// An LND node over REST.
pub struct LndBackend {
    http: HttpClient,
}

impl LndBackend {
    /// Connects (lazily) to the node the configuration names.
    pub fn new(cfg: &LndConfig) -> Result<Self, LightningError> {
        Ok(LndBackend {
            http: http_client(cfg)?,
        })
    }
}

/// The HTTP client for the node `cfg` names, with its credential header (shared by the
/// backend and the paying wallet).
pub(crate) fn http_client(cfg: &LndConfig) -> Result<HttpClient, LightningError> {
    let macaroon_hex =
        match (&cfg.macaroon_hex, &cfg.macaroon_path) {
            (None, Some(p)) => hex::encode(std::fs::read(p).map_err(|e| {
                LightningError::Config(format!("macaroon_path {}: {e}", p.display()))
            })?),
            _ => {
                let s = read_secret(&cfg.macaroon_hex, &None, "lnd macaroon_hex")?;
                if hex::decode(s.0.trim()).is_err() {
                    return Err(LightningError::Config("macaroon_hex is not hex".into()));
                }
                s.0.trim().to_string()
            }
        };
    let mut headers = HeaderMap::new();
    headers.insert(
        "grpc-metadata-macaroon",
        HeaderValue::from_str(&macaroon_hex)
            .map_err(|_| LightningError::Config("macaroon is not a header value".into()))?,
    );
    HttpClient::new(&cfg.url, &cfg.http, headers)
}

/// Turns a non-2xx LND answer into an error.
fn lnd_error(r: &Response) -> LightningError {
    let body = r.json().ok();
    let code = body
        .as_ref()
        .and_then(|b| b.get("code"))
        .and_then(Value::as_i64);
    let message = body
        .as_ref()
        .and_then(|b| b.get("message").or_else(|| b.get("error")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| r.snippet());
    if code == Some(5) || r.status == http::StatusCode::NOT_FOUND {
        return LightningError::NotFound;
    }
    LightningError::Rejected {
        status: r.status.as_u16(),
        message,
    }
}

/// Reads a 64-bit integer LND writes as a string (or a number).
fn int_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl LightningBackend for LndBackend {
    fn name(&self) -> &'static str {
        "lnd"
    }

    fn is_custodial(&self) -> bool {
        false
    }

    fn create_invoice<'a>(
        &'a self,
        amount_msat: u64,
        memo: &'a str,
        expiry_secs: u64,
    ) -> BoxFuture<'a, Result<Invoice, LightningError>> {
        Box::pin(async move {
            let body = json!({
                "memo": memo,
                "value_msat": amount_msat.to_string(),
                "expiry": expiry_secs.to_string(),
            });
            let r = self
                .http
                .send(
                    Method::POST,
                    "/v1/invoices",
                    Some("application/json"),
                    Bytes::from(body.to_string()),
                    false,
                )
                .await?;
            if !r.status.is_success() {
                return Err(lnd_error(&r));
            }
            let v = r.json()?;
            let hash = v
                .get("r_hash")
                .and_then(Value::as_str)
                .and_then(b64_32)
                .ok_or_else(|| LightningError::Protocol("no r_hash in the answer".into()))?;
            let bolt11 = v
                .get("payment_request")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    LightningError::Protocol("no payment_request in the answer".into())
                })?;
            checked_invoice(bolt11.to_string(), hash, amount_msat)
        })
    }

    fn lookup_invoice<'a>(
        &'a self,
        payment_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<InvoiceState, LightningError>> {
        Box::pin(async move {
            let path = format!("/v1/invoice/{}", hex::encode(payment_hash));
            let r = self
                .http
                .send(Method::GET, &path, None, Bytes::new(), true)
                .await?;
            if !r.status.is_success() {
                return Err(lnd_error(&r));
            }
            let v = r.json()?;
            let state = v.get("state").and_then(Value::as_str).unwrap_or("");
            let settled_flag = v.get("settled").and_then(Value::as_bool).unwrap_or(false);
            match state {
                "SETTLED" => {
                    let preimage = v.get("r_preimage").and_then(Value::as_str).and_then(b64_32);
                    Ok(InvoiceState::Settled { preimage })
                }
                "CANCELED" => Ok(InvoiceState::Expired),
                "OPEN" | "ACCEPTED" => {
                    let created = int_field(&v, "creation_date").unwrap_or(0);
                    let expiry = int_field(&v, "expiry").unwrap_or(3600);
                    if state == "OPEN"
                        && created > 0
                        && created.saturating_add(expiry) <= unix_now()
                    {
                        Ok(InvoiceState::Expired)
                    } else {
                        Ok(InvoiceState::Open)
                    }
                }
                "" if settled_flag => Ok(InvoiceState::Settled {
                    preimage: v.get("r_preimage").and_then(Value::as_str).and_then(b64_32),
                }),
                other => Err(LightningError::Protocol(format!(
                    "unknown invoice state {other:?}"
                ))),
            }
        })
    }
}
