//! The outbound calls of the rails that take EIP-3009 payments: JSON-RPC to an Ethereum node (`[x402] rpc_url`) and the
//! facilitator's `POST /settle`, through the turnpike-https client: one deadline per request,
//! no redirects, a bound on every answer's size. An unreachable node or facilitator is an error
//! the rail answers with 503 (it never lets a call through on a question it could not ask).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use turnpike_https::bounded::{BoundedClient, Failure};

use crate::evm::{self, Address};

/// A facilitator's answer to `/settle`, which is x402's answer to a settled payment
/// (`PAYMENT-RESPONSE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementResponse {
    /// Whether it settled.
    pub success: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// The transaction hash (`0x` + 64 hex digits), empty when none.
    #[serde(default)]
    pub transaction: String,
    /// CAIP-2 network.
    #[serde(default)]
    pub network: String,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

impl SettlementResponse {
    /// The header value: base64 (standard, padded) of the JSON.
    pub fn header(&self) -> String {
        STANDARD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The JSON, for `_meta`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The largest answer read from a node or a facilitator.
const MAX_ANSWER: usize = 256 * 1024;

/// Why a call to the node or the facilitator failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Not reached, no answer in time, or an answer that is not JSON-RPC.
    #[error("{0}")]
    Unreachable(String),
    /// The node answered with a JSON-RPC error (e.g. the call reverted).
    #[error("{0}")]
    Rpc(String),
}

/// A JSON HTTP client with a deadline per request.
#[derive(Clone, Debug)]
pub struct JsonClient {
    client: BoundedClient,
}

impl JsonClient {
    /// A client whose every request ends within `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        Ok(JsonClient {
            client: BoundedClient::new(timeout)?,
        })
    }

    /// `POST url` with `body` as JSON: the status and the JSON answer.
    pub async fn post(&self, url: &str, body: &Value) -> Result<(u16, Value), ChainError> {
        let fail = |why: String| ChainError::Unreachable(why);
        let req = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| fail(format!("bad request: {e}")))?;
        let (status, bytes) = self
            .client
            .exchange(req, MAX_ANSWER)
            .await
            .map_err(|e| match e {
                Failure::Send(e) => fail(format!("not reached: {e}")),
                Failure::Body(e) => fail(format!("reading the answer: {e}")),
                Failure::Timeout => fail(format!(
                    "no answer within {} ms",
                    self.client.timeout().as_millis()
                )),
            })?;
        let status = status.as_u16();
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| fail(format!("HTTP {status}, the answer is not JSON")))?;
        Ok((status, v))
    }
}

/// An Ethereum node's JSON-RPC endpoint.
#[derive(Clone, Debug)]
pub struct Node {
    url: String,
    http: JsonClient,
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// A JSON-RPC quantity (`0x1a`) as an integer.
pub fn quantity(v: &Value) -> Option<u128> {
    let s = v.as_str()?.strip_prefix("0x")?;
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

impl Node {
    /// The node at `url`, each request within `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Node {
            url: url.to_string(),
            http: JsonClient::new(timeout)?,
        })
    }

    /// One JSON-RPC request: its `result`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (status, v) = self
            .http
            .post(&self.url, &body)
            .await
            .map_err(|e| ChainError::Unreachable(format!("node {method}: {e}")))?;
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .chars()
                .take(300)
                .collect::<String>();
            return Err(ChainError::Rpc(format!("{method}: {msg}")));
        }
        match v.get("result") {
            Some(r) if (200..300).contains(&status) => Ok(r.clone()),
            _ => Err(ChainError::Unreachable(format!(
                "node {method}: HTTP {status} without a result"
            ))),
        }
    }

    /// `eth_call` of `data` on `to` at the latest block: the returned bytes.
    pub async fn eth_call(&self, to: &Address, data: &[u8]) -> Result<Vec<u8>, ChainError> {
        let r = self
            .call(
                "eth_call",
                json!([{"to": hex0x(to), "data": hex0x(data)}, "latest"]),
            )
            .await?;
        r.as_str()
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| ChainError::Unreachable("eth_call: the result is not hex".into()))
    }

    /// The token balance of `owner`.
    pub async fn balance_of(&self, token: &Address, owner: &Address) -> Result<u128, ChainError> {
        let w = self.eth_call(token, &evm::balance_of_call(owner)).await?;
        // A balance beyond 2^128 covers any price.
        if w.len() == 32 && w[..16].iter().any(|b| *b != 0) {
            return Ok(u128::MAX);
        }
        evm::word_to_u128(&w).ok_or_else(|| ChainError::Rpc("balanceOf: not one uint256".into()))
    }

    /// Whether `authorizer` has used (or cancelled) `nonce` on `token`.
    pub async fn authorization_used(
        &self,
        token: &Address,
        authorizer: &Address,
        nonce: &[u8; 32],
    ) -> Result<bool, ChainError> {
        let w = self
            .eth_call(token, &evm::authorization_state_call(authorizer, nonce))
            .await?;
        match evm::word_to_u128(&w) {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(ChainError::Rpc(
                "authorizationState: not a bool (is the asset an EIP-3009 token?)".into(),
            )),
        }
    }

    /// A quantity-valued method (`eth_chainId`, `eth_gasPrice`, …).
    pub async fn quantity(&self, method: &str, params: Value) -> Result<u128, ChainError> {
        let r = self.call(method, params).await?;
        quantity(&r).ok_or_else(|| ChainError::Rpc(format!("{method}: not a quantity")))
    }

    /// `eth_estimateGas` of a call from `from` to `to` with `data` (a revert is an
    /// [`ChainError::Rpc`]: the call would fail).
    pub async fn estimate_gas(
        &self,
        from: &Address,
        to: &Address,
        data: &[u8],
    ) -> Result<u128, ChainError> {
        self.quantity(
            "eth_estimateGas",
            json!([{"from": hex0x(from), "to": hex0x(to), "data": hex0x(data)}]),
        )
        .await
    }

    /// The next nonce of `who`, counting its pending transactions.
    pub async fn pending_nonce(&self, who: &Address) -> Result<u128, ChainError> {
        self.quantity("eth_getTransactionCount", json!([hex0x(who), "pending"]))
            .await
    }

    /// Sends a signed transaction: its hash as the node gives it.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<String, ChainError> {
        let r = self
            .call("eth_sendRawTransaction", json!([hex0x(raw)]))
            .await?;
        r.as_str()
            .map(str::to_string)
            .ok_or_else(|| ChainError::Rpc("eth_sendRawTransaction: no hash".into()))
    }

    /// The receipt's status of transaction `hash` (`Some(true)`: succeeded), `None` while it
    /// is not mined.
    pub async fn receipt_status(&self, hash: &str) -> Result<Option<bool>, ChainError> {
        Ok(self
            .receipt(hash)
            .await?
            .map(|r| r.get("status").and_then(quantity) == Some(1)))
    }

    /// The receipt of transaction `hash` (`eth_getTransactionReceipt`), `None` while it is not
    /// mined.
    pub async fn receipt(&self, hash: &str) -> Result<Option<Value>, ChainError> {
        let r = self
            .call("eth_getTransactionReceipt", json!([hash]))
            .await?;
        Ok((!r.is_null()).then_some(r))
    }
}

/// A facilitator's endpoint: `POST {url}/settle`.
#[derive(Clone, Debug)]
pub struct Facilitator {
    url: String,
    http: JsonClient,
}

impl Facilitator {
    /// The facilitator at `url` (its base; `/settle` is appended).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Facilitator {
            url: url.trim_end_matches('/').to_string(),
            http: JsonClient::new(timeout)?,
        })
    }

    /// Asks it to settle `payload` against `requirements`: its answer.
    pub async fn settle(
        &self,
        payload: &Value,
        requirements: &Value,
    ) -> Result<SettlementResponse, ChainError> {
        let body = json!({
            "x402Version": crate::X402_VERSION,
            "paymentPayload": payload,
            "paymentRequirements": requirements,
        });
        let (status, v) = self
            .http
            .post(&format!("{}/settle", self.url), &body)
            .await
            .map_err(|e| ChainError::Unreachable(format!("facilitator: {e}")))?;
        if status >= 500 {
            return Err(ChainError::Unreachable(format!(
                "facilitator: HTTP {status}"
            )));
        }
        serde_json::from_value(v).map_err(|_| {
            ChainError::Unreachable(format!(
                "facilitator: HTTP {status}, not a SettlementResponse"
            ))
        })
    }
}
