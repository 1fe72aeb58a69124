//! x402 version 2 on the wire: the `PaymentRequired` the gateway offers (HTTP header
//! `PAYMENT-REQUIRED`, base64 of its JSON), the `PaymentPayload` a client pays with (header
//! `PAYMENT-SIGNATURE`, base64 of its JSON; or `params._meta["x402/payment"]` as JSON), and the
//! `SettlementResponse` of a paid call (header `PAYMENT-RESPONSE`; `_meta["x402/payment-response"]`).
//!
//! Parsing is bounded: a header of more than [`MAX_HEADER`] bytes is refused before it is
//! decoded, and every field the rail reads is checked for its type.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::evm::{self, Address, Authorization, Rsv};

/// The protocol version this rail speaks.
pub const X402_VERSION: u64 = turnpike_evm::X402_VERSION;
/// The scheme this rail takes.
pub const SCHEME: &str = turnpike_evm::EXACT;
/// The request header of a payment.
pub const SIGNATURE_HEADER: &str = "payment-signature";
/// The response header of an offer.
pub const REQUIRED_HEADER: &str = "payment-required";
/// The response header of a settlement.
pub const RESPONSE_HEADER: &str = "payment-response";
/// The `_meta` key of a payment (the MCP transport).
pub const META_PAYMENT: &str = "x402/payment";
/// The `_meta` key of a settlement (the MCP transport).
pub const META_RESPONSE: &str = "x402/payment-response";
/// The MCP extension of the x402 transport (2026-07-28 on): a client that advertises it in its
/// capabilities' `extensions` is answered a `payment_required` result.
pub const MCP_EXTENSION: &str = "org.x402/payment";
/// The `resultType` of that result.
pub const RESULT_PAYMENT_REQUIRED: &str = "payment_required";
/// The methods the extension applies to.
pub const EXTENSION_METHODS: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];
/// The member of `extra` that binds an offer to one call (see [`crate::rail`]).
pub const BINDING_KEY: &str = "turnpikeBinding";
/// The longest `PAYMENT-SIGNATURE` value read (a payment is about 1.5 KiB).
pub const MAX_HEADER: usize = 16 * 1024;

/// Why a payment does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than [`MAX_HEADER`].
    #[error("the x402 payment is larger than {MAX_HEADER} bytes")]
    TooLarge,
    /// Not base64.
    #[error("the x402 payment is not base64")]
    Base64,
    /// Not the JSON of a payment.
    #[error("the x402 payment is not a PaymentPayload: {0}")]
    Json(String),
    /// A field is missing or of the wrong form.
    #[error("the x402 payment's {0} is missing or malformed")]
    Field(&'static str),
}

/// One way to pay (an element of `accepts`), as the gateway writes it and the client echoes it
/// in `accepted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// `exact`.
    pub scheme: String,
    /// CAIP-2 (`eip155:<chainId>`).
    pub network: String,
    /// Atomic units of the asset, as a decimal string.
    pub amount: String,
    /// The token contract.
    pub asset: String,
    /// Who is paid.
    pub pay_to: String,
    /// How long the payment may take, in seconds.
    pub max_timeout_seconds: i64,
    /// The scheme's extra data: the token's EIP-712 `name` and `version`, and the gateway's
    /// binding.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

/// What the paid thing is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// Its URL.
    pub url: String,
    /// What it is, in words.
    pub description: String,
    /// The answer's media type.
    pub mime_type: String,
}

/// The offer: `PAYMENT-REQUIRED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// 2.
    pub x402_version: u64,
    /// Why payment is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource.
    pub resource: Resource,
    /// The ways to pay.
    pub accepts: Vec<PaymentRequirements>,
}

impl PaymentRequired {
    /// The header value: base64 (standard, padded) of the JSON.
    pub fn header(&self) -> String {
        STANDARD.encode(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A payment as the client sent it, read into what the rail checks.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentPayload {
    /// `x402Version`.
    pub x402_version: u64,
    /// `accepted`: the requirements the client chose, echoed.
    pub accepted: PaymentRequirements,
    /// The EIP-3009 authorization.
    pub authorization: Authorization,
    /// Its signature.
    pub signature: Rsv,
    /// The payment as sent (for a facilitator, which is handed it whole).
    pub raw: Value,
}

fn field<'a>(o: &'a Map<String, Value>, k: &'static str) -> Result<&'a Value, WireError> {
    o.get(k).ok_or(WireError::Field(k))
}

fn string<'a>(o: &'a Map<String, Value>, k: &'static str) -> Result<&'a str, WireError> {
    field(o, k)?.as_str().ok_or(WireError::Field(k))
}

fn address(o: &Map<String, Value>, k: &'static str) -> Result<Address, WireError> {
    evm::parse_address(string(o, k)?).ok_or(WireError::Field(k))
}

fn decimal(o: &Map<String, Value>, k: &'static str) -> Result<u128, WireError> {
    evm::parse_decimal(string(o, k)?).ok_or(WireError::Field(k))
}

impl PaymentPayload {
    /// Reads a `PAYMENT-SIGNATURE` header value: base64 (standard or URL-safe, padded or not)
    /// of the payment's JSON.
    pub fn from_header(value: &str) -> Result<Self, WireError> {
        let value = value.trim();
        if value.len() > MAX_HEADER {
            return Err(WireError::TooLarge);
        }
        let bytes = STANDARD
            .decode(value)
            .or_else(|_| URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')))
            .map_err(|_| WireError::Base64)?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| WireError::Json(e.to_string()))?;
        Self::from_json(v)
    }

    /// Reads the payment's JSON (`_meta["x402/payment"]`, or a decoded header).
    pub fn from_json(v: Value) -> Result<Self, WireError> {
        let o = v
            .as_object()
            .ok_or_else(|| WireError::Json("not an object".into()))?;
        let x402_version = field(o, "x402Version")?
            .as_u64()
            .ok_or(WireError::Field("x402Version"))?;
        let accepted: PaymentRequirements = serde_json::from_value(field(o, "accepted")?.clone())
            .map_err(|_| WireError::Field("accepted"))?;
        let payload = field(o, "payload")?
            .as_object()
            .ok_or(WireError::Field("payload"))?;
        let signature = evm::parse_signature(string(payload, "signature")?)
            .ok_or(WireError::Field("signature"))?;
        let a = field(payload, "authorization")?
            .as_object()
            .ok_or(WireError::Field("authorization"))?;
        let authorization = Authorization {
            from: address(a, "from")?,
            to: address(a, "to")?,
            value: decimal(a, "value")?,
            valid_after: decimal(a, "validAfter")?,
            valid_before: decimal(a, "validBefore")?,
            nonce: evm::parse_b32(string(a, "nonce")?).ok_or(WireError::Field("nonce"))?,
        };
        Ok(PaymentPayload {
            x402_version,
            accepted,
            authorization,
            signature,
            raw: v,
        })
    }
}

pub use turnpike_evm::chain::SettlementResponse;

/// Base64 (standard, padded) of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payment of the HTTP transport's example, as written there.
    const SPEC_PAYMENT: &str = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";

    #[test]
    fn reads_the_transport_example() {
        let p = PaymentPayload::from_header(SPEC_PAYMENT).unwrap();
        assert_eq!(p.x402_version, 2);
        assert_eq!(p.accepted.scheme, "exact");
        assert_eq!(p.accepted.network, "eip155:84532");
        assert_eq!(p.accepted.amount, "10000");
        assert_eq!(p.accepted.max_timeout_seconds, 60);
        assert_eq!(p.accepted.extra["name"], "USDC");
        assert_eq!(p.authorization.value, 10000);
        assert_eq!(p.authorization.valid_after, 1740672089);
        assert_eq!(p.authorization.valid_before, 1740672154);
        assert_eq!(
            evm::checksum(&p.authorization.from),
            "0x857b06519E91e3A54538791bDbb0E22373e36b66"
        );
        assert_eq!(p.signature.v, 28);
    }

    #[test]
    fn refuses_what_is_not_a_payment() {
        assert_eq!(
            PaymentPayload::from_header(&"A".repeat(MAX_HEADER + 1)),
            Err(WireError::TooLarge)
        );
        assert_eq!(PaymentPayload::from_header("@@@"), Err(WireError::Base64));
        assert!(matches!(
            PaymentPayload::from_header(&b64(b"[1]")),
            Err(WireError::Json(_))
        ));
        let mut v: Value = serde_json::from_slice(&STANDARD.decode(SPEC_PAYMENT).unwrap()).unwrap();
        v["payload"]["authorization"]["value"] = "010000".into();
        assert_eq!(
            PaymentPayload::from_json(v.clone()),
            Err(WireError::Field("value"))
        );
        v["payload"]["authorization"]["value"] = Value::from(10000);
        assert_eq!(
            PaymentPayload::from_json(v.clone()),
            Err(WireError::Field("value"))
        );
        v["payload"]["signature"] = "0x00".into();
        assert_eq!(
            PaymentPayload::from_json(v),
            Err(WireError::Field("signature"))
        );
    }
}
