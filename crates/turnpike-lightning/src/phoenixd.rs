//! phoenixd's HTTP API.
//!
//! - create: `POST /createinvoice`, form-encoded `description`, `amountSat`, `expirySeconds`,
//!   `externalId` → `{"amountSat": N, "paymentHash": <hex>, "serialized": "lnbc…"}`;
//! - lookup: `GET /payments/incoming/{paymentHash}` → `{"paymentHash", "preimage", "isPaid",
//!   "receivedSat", "invoice", "createdAt", "completedAt", …}`;
//! - errors: a non-2xx status with a plain-text message (404 for an unknown payment);
//! - authentication: HTTP basic with an empty user name and the `http-password` as password.
//!
//! Amounts are whole satoshis: a price in msat is rounded up.

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method};
use serde_json::Value;

use crate::config::{read_secret, PhoenixdConfig};
use crate::http::{HttpClient, Response};
use crate::{
    bolt11, checked_invoice, hex32, msat_to_sat_ceil, unix_now, BoxFuture, Invoice, InvoiceState,
    LightningBackend, LightningError,
};

/// A phoenixd node.
pub struct PhoenixdBackend {
    http: HttpClient,
}

impl PhoenixdBackend {
    /// Connects (lazily) to the node the configuration names.
    pub fn new(cfg: &PhoenixdConfig) -> Result<Self, LightningError> {
        Ok(PhoenixdBackend {
            http: http_client(cfg)?,
        })
    }
}

/// The HTTP client for the node `cfg` names, with its credential header (shared by the
/// backend and the paying wallet).
pub(crate) fn http_client(cfg: &PhoenixdConfig) -> Result<HttpClient, LightningError> {
    let password = read_secret(&cfg.password, &cfg.password_path, "phoenixd password")?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!(":{}", password.0));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| LightningError::Config("password is not a header value".into()))?,
    );
    HttpClient::new(&cfg.url, &cfg.http, headers)
}

fn phoenixd_error(r: &Response) -> LightningError {
    if r.status == http::StatusCode::NOT_FOUND {
        return LightningError::NotFound;
    }
    LightningError::Rejected {
        status: r.status.as_u16(),
        message: r.snippet(),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl LightningBackend for PhoenixdBackend {
    fn name(&self) -> &'static str {
        "phoenixd"
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
            let sat = msat_to_sat_ceil(amount_msat);
            let external_id = format!("turnpike-{}", hex::encode(rand::random::<[u8; 12]>()));
            let form = format!(
                "description={}&amountSat={sat}&expirySeconds={expiry_secs}&externalId={external_id}",
                form_encode(memo)
            );
            let r = self
                .http
                .send(
                    Method::POST,
                    "/createinvoice",
                    Some("application/x-www-form-urlencoded"),
                    Bytes::from(form),
                    false,
                )
                .await?;
            if !r.status.is_success() {
                return Err(phoenixd_error(&r));
            }
            let v = r.json()?;
            let hash = v
                .get("paymentHash")
                .and_then(Value::as_str)
                .and_then(hex32)
                .ok_or_else(|| LightningError::Protocol("no paymentHash in the answer".into()))?;
            let bolt11 = v.get("serialized").and_then(Value::as_str).ok_or_else(|| {
                LightningError::Protocol("no serialized invoice in the answer".into())
            })?;
            checked_invoice(bolt11.to_string(), hash, sat * 1000)
        })
    }

    fn lookup_invoice<'a>(
        &'a self,
        payment_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<InvoiceState, LightningError>> {
        Box::pin(async move {
            let path = format!("/payments/incoming/{}", hex::encode(payment_hash));
            let r = self
                .http
                .send(Method::GET, &path, None, Bytes::new(), true)
                .await?;
            if !r.status.is_success() {
                return Err(phoenixd_error(&r));
            }
            let v = r.json()?;
            if v.get("paymentHash").and_then(Value::as_str).and_then(hex32) != Some(*payment_hash) {
                return Err(LightningError::Protocol(
                    "answer is about another payment".into(),
                ));
            }
            match v.get("isPaid").and_then(Value::as_bool) {
                Some(true) => Ok(InvoiceState::Settled {
                    preimage: v.get("preimage").and_then(Value::as_str).and_then(hex32),
                }),
                Some(false) => {
                    let expired = v.get("isExpired").and_then(Value::as_bool).unwrap_or(false)
                        || v.get("invoice")
                            .and_then(Value::as_str)
                            .and_then(|s| bolt11::decode(s).ok())
                            .is_some_and(|d| d.expires_at() <= unix_now());
                    Ok(if expired {
                        InvoiceState::Expired
                    } else {
                        InvoiceState::Open
                    })
                }
                None => Err(LightningError::Protocol("no isPaid in the answer".into())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_encoding() {
        assert_eq!(super::form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
