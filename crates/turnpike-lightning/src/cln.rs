//! Core Lightning's REST interface (`clnrest`): every RPC method is `POST /v1/<method>` with
//! the method's parameters as a JSON object, authenticated by a `Rune` header.
//!
//! - create: `POST /v1/invoice` with `{"amount_msat", "label", "description", "expiry"}` →
//!   `{"payment_hash": <hex>, "bolt11": "lnbc…", "expires_at", "payment_secret", …}`;
//! - lookup: `POST /v1/listinvoices` with `{"payment_hash": <hex>}` → `{"invoices": [{"status":
//!   "unpaid" | "paid" | "expired", "payment_preimage": <hex, when paid>, …}]}`;
//! - errors: a non-2xx status with the RPC error `{"code": <int>, "message": "…"}` (sometimes
//!   wrapped as `{"error": {…}}`).
//!
//! The first clnrest (Python, v23.08) also wanted a `Nodeid` header: set `node_id` for it.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Value};

use crate::config::{read_secret, ClnConfig};
use crate::http::{HttpClient, Response};
use crate::{
    checked_invoice, hex32, BoxFuture, Invoice, InvoiceState, LightningBackend, LightningError,
};

/// A Core Lightning node over `clnrest`.
pub struct ClnBackend {
    http: HttpClient,
}

impl ClnBackend {
    /// Connects (lazily) to the node the configuration names.
    pub fn new(cfg: &ClnConfig) -> Result<Self, LightningError> {
        Ok(ClnBackend {
            http: http_client(cfg)?,
        })
    }

    async fn call(
        &self,
        method: &str,
        params: Value,
        idempotent: bool,
    ) -> Result<Value, LightningError> {
        let r = self
            .http
            .send(
                Method::POST,
                &format!("/v1/{method}"),
                Some("application/json"),
                Bytes::from(params.to_string()),
                idempotent,
            )
            .await?;
        if !r.status.is_success() {
            return Err(cln_error(&r));
        }
        r.json()
    }
}

/// The HTTP client for the node `cfg` names, with its credential header (shared by the
/// backend and the paying wallet).
pub(crate) fn http_client(cfg: &ClnConfig) -> Result<HttpClient, LightningError> {
    let rune = read_secret(&cfg.rune, &cfg.rune_path, "cln rune")?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "rune",
        HeaderValue::from_str(rune.0.trim())
            .map_err(|_| LightningError::Config("rune is not a header value".into()))?,
    );
    if let Some(id) = &cfg.node_id {
        headers.insert(
            "nodeid",
            HeaderValue::from_str(id.trim())
                .map_err(|_| LightningError::Config("node_id is not a header value".into()))?,
        );
    }
    HttpClient::new(&cfg.url, &cfg.http, headers)
}

fn cln_error(r: &Response) -> LightningError {
    let body = r.json().ok();
    let err = body
        .as_ref()
        .map(|b| b.get("error").filter(|e| e.is_object()).unwrap_or(b));
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| r.snippet());
    let code = err.and_then(|e| e.get("code")).and_then(Value::as_i64);
    LightningError::Rejected {
        status: r.status.as_u16(),
        message: match code {
            Some(c) => format!("{message} (code {c})"),
            None => message,
        },
    }
}

impl LightningBackend for ClnBackend {
    fn name(&self) -> &'static str {
        "cln"
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
            // Labels must be unique per node; a random one never collides.
            let label = format!("turnpike-{}", hex::encode(rand::random::<[u8; 16]>()));
            let v = self
                .call(
                    "invoice",
                    json!({
                        "amount_msat": amount_msat,
                        "label": label,
                        "description": memo,
                        "expiry": expiry_secs,
                    }),
                    false,
                )
                .await?;
            let hash = v
                .get("payment_hash")
                .and_then(Value::as_str)
                .and_then(hex32)
                .ok_or_else(|| LightningError::Protocol("no payment_hash in the answer".into()))?;
            let bolt11 = v
                .get("bolt11")
                .and_then(Value::as_str)
                .ok_or_else(|| LightningError::Protocol("no bolt11 in the answer".into()))?;
            checked_invoice(bolt11.to_string(), hash, amount_msat)
        })
    }

    fn lookup_invoice<'a>(
        &'a self,
        payment_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<InvoiceState, LightningError>> {
        Box::pin(async move {
            let want = hex::encode(payment_hash);
            let v = self
                .call("listinvoices", json!({ "payment_hash": want }), true)
                .await?;
            let invoices = v
                .get("invoices")
                .and_then(Value::as_array)
                .ok_or_else(|| LightningError::Protocol("no invoices array".into()))?;
            let inv = invoices
                .iter()
                .find(|i| i.get("payment_hash").and_then(Value::as_str) == Some(want.as_str()))
                .ok_or(LightningError::NotFound)?;
            match inv.get("status").and_then(Value::as_str) {
                Some("paid") => Ok(InvoiceState::Settled {
                    preimage: inv
                        .get("payment_preimage")
                        .and_then(Value::as_str)
                        .and_then(hex32),
                }),
                Some("unpaid") => Ok(InvoiceState::Open),
                Some("expired") => Ok(InvoiceState::Expired),
                other => Err(LightningError::Protocol(format!(
                    "unknown invoice status {other:?}"
                ))),
            }
        })
    }
}
