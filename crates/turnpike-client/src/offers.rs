//! Every way through a gate that one answer offers: proof-of-work puzzles, L402 invoices, MPP
//! `Payment` challenges (the Lightning `charge` method, and the `evm` one: an EIP-3009
//! authorization of a token), x402 payment requirements (the
//! `PAYMENT-REQUIRED` header, or the `"rail": "x402"` challenge object) and an OAuth Bearer
//! challenge, read from `WWW-Authenticate` lines and from the JSON body (a 402 body's `error.data.challenges`, an
//! in-band result's `structuredContent.turnpike.challenges` or
//! `_meta["org.paymentauth/payment-required"]`, the MPP transport's -32042 error).

use http::HeaderMap;
use serde_json::Value;

use crate::parse::{parse_challenges, parse_www_authenticate, ParsedChallenge};
use turnpike_mpp::wire::{self as mpp, PaymentChallenge};
use turnpike_x402::PaymentRequirements;

/// The longest `PAYMENT-REQUIRED` header value read.
const MAX_X402_HEADER: usize = 64 * 1024;
/// The most x402 payment requirements kept from one answer.
const MAX_X402_ACCEPTS: usize = 16;
/// The most MPP challenges kept from one answer, per method.
const MAX_MPP: usize = 16;

/// An L402 challenge: a macaroon and the invoice that unlocks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L402Offer {
    /// The macaroon, as sent (standard base64).
    pub macaroon: String,
    /// The BOLT11 invoice.
    pub invoice: String,
    /// The price the server advertised beside the invoice (`amount_msat`), when it did. The
    /// invoice must not ask for more.
    pub advertised_msat: Option<u64>,
    /// `per_call`, `balance` or `time_pass`, when said.
    pub mode: Option<String>,
    /// When the token stops being valid (Unix seconds), when said.
    pub expires: Option<u64>,
}

/// An OAuth Bearer challenge (RFC 6750 / RFC 9728).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerOffer {
    /// Where the protected-resource metadata is.
    pub resource_metadata: Option<String>,
    /// The scopes the call needs (space-separated).
    pub scope: Option<String>,
    /// `invalid_token`, `insufficient_scope`, …, when the challenge reports an error.
    pub error: Option<String>,
    /// The resource identifier, when the JSON details name it.
    pub resource: Option<String>,
    /// Authorization servers, when the JSON details name them.
    pub authorization_servers: Vec<String>,
}

/// All the ways through one answer offered.
#[derive(Debug, Clone, Default)]
pub struct Offers {
    /// Proof-of-work puzzles.
    pub pow: Vec<ParsedChallenge>,
    /// L402 invoices.
    pub l402: Vec<L402Offer>,
    /// MPP challenges with the Lightning `charge` method.
    pub mpp: Vec<PaymentChallenge>,
    /// MPP challenges with the `evm` `charge` method (an EIP-3009 authorization).
    pub mpp_evm: Vec<PaymentChallenge>,
    /// x402 payment requirements (every `accepts` entry offered, in order).
    pub x402: Vec<PaymentRequirements>,
    /// An OAuth challenge.
    pub oauth: Option<BearerOffer>,
    /// Why presented credentials were refused (`rail: reason`).
    pub refusals: Vec<String>,
}

impl Offers {
    /// Whether nothing was offered.
    pub fn is_empty(&self) -> bool {
        self.pow.is_empty()
            && self.l402.is_empty()
            && self.mpp.is_empty()
            && self.mpp_evm.is_empty()
            && self.x402.is_empty()
            && self.oauth.is_none()
    }

    /// Reads the offers of an answer: its `WWW-Authenticate` lines and, when given, its JSON
    /// body (or the JSON-RPC message of an in-band challenge).
    pub fn read(headers: &HeaderMap, body: Option<&Value>) -> Offers {
        let mut o = Offers::default();
        for v in headers.get_all(turnpike_x402::wire::REQUIRED_HEADER) {
            if let Some(pr) = v.to_str().ok().and_then(decode_payment_required) {
                o.add_x402(&pr);
            }
        }
        for v in headers.get_all(http::header::WWW_AUTHENTICATE) {
            let Ok(v) = v.to_str() else { continue };
            if let Ok(c) = PaymentChallenge::parse_header(v) {
                o.add_mpp(c);
                continue;
            }
            o.pow.extend(parse_challenges(v));
            for ch in parse_www_authenticate(v) {
                let p = |n: &str| {
                    ch.params
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                };
                if ch.scheme.eq_ignore_ascii_case("L402") || ch.scheme.eq_ignore_ascii_case("LSAT")
                {
                    if let (Some(macaroon), Some(invoice)) = (p("macaroon"), p("invoice")) {
                        o.add_l402(L402Offer {
                            macaroon,
                            invoice,
                            advertised_msat: None,
                            mode: None,
                            expires: None,
                        });
                    }
                } else if ch.scheme.eq_ignore_ascii_case("Bearer") {
                    let b = o.oauth.get_or_insert_with(BearerOffer::default);
                    b.resource_metadata = b.resource_metadata.take().or(p("resource_metadata"));
                    b.scope = b.scope.take().or(p("scope"));
                    b.error = b.error.take().or(p("error"));
                }
            }
        }
        if let Some(body) = body {
            if let Some(pr) = x402_payment_required(body) {
                o.add_x402(pr);
            }
            if let Some(list) = challenge_list(body) {
                for c in list {
                    o.add_json(c);
                }
            }
            if let Some(list) = body
                .pointer("/result/_meta")
                .and_then(|m| m.get(mpp::META_PAYMENT_REQUIRED))
                .and_then(|p| p.get("challenges"))
                .and_then(Value::as_array)
            {
                for c in list {
                    o.add_json(c);
                }
            }
            if let Some(refusals) = ways_through(body)
                .and_then(|w| w.get("refusals"))
                .and_then(Value::as_array)
            {
                for r in refusals {
                    let rail = r.get("rail").and_then(Value::as_str).unwrap_or("?");
                    let reason = r.get("reason").and_then(Value::as_str).unwrap_or("");
                    o.refusals.push(format!("{rail}: {reason}"));
                }
            }
        }
        let mut seen = Vec::new();
        o.pow.retain(|c| {
            let new = !seen.contains(&c.challenge);
            seen.push(c.challenge.clone());
            new
        });
        o
    }

    fn add_l402(&mut self, offer: L402Offer) {
        if let Some(existing) = self.l402.iter_mut().find(|x| x.invoice == offer.invoice) {
            existing.advertised_msat = existing.advertised_msat.or(offer.advertised_msat);
            existing.mode = existing.mode.take().or(offer.mode);
            existing.expires = existing.expires.or(offer.expires);
        } else {
            self.l402.push(offer);
        }
    }

    fn add_mpp(&mut self, c: PaymentChallenge) {
        if c.intent != "charge" {
            return;
        }
        let list = match c.method.as_str() {
            "lightning" => &mut self.mpp,
            turnpike_mpp::evm::METHOD => &mut self.mpp_evm,
            _ => return,
        };
        if list.len() < MAX_MPP && !list.iter().any(|x| x.id == c.id) {
            list.push(c);
        }
    }

    fn add_x402(&mut self, pr: &Value) {
        let Some(accepts) = pr.get("accepts").and_then(Value::as_array) else {
            return;
        };
        for a in accepts {
            if self.x402.len() >= MAX_X402_ACCEPTS {
                return;
            }
            if let Ok(req) = serde_json::from_value::<PaymentRequirements>(a.clone()) {
                if !self.x402.contains(&req) {
                    self.x402.push(req);
                }
            }
        }
    }

    fn add_json(&mut self, c: &Value) {
        let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
        let payment = c.get("rail").is_none() && c.get("method").is_some();
        if c.get("rail").and_then(Value::as_str) == Some("mpp") || payment {
            // The challenge object of the MPP transport (`request` as JSON), read as a
            // credential's echo of it.
            let echo = serde_json::json!({"challenge": c, "payload": {}});
            if let Ok(cred) = mpp::PaymentCredential::from_meta(&echo) {
                self.add_mpp(cred.challenge);
            }
            return;
        }
        match c.get("rail").and_then(Value::as_str) {
            Some("pow") => {
                self.pow
                    .extend(parse_challenges(&Value::Array(vec![c.clone()]).to_string()));
            }
            Some("l402") => {
                if let (Some(macaroon), Some(invoice)) = (s("macaroon"), s("invoice")) {
                    self.add_l402(L402Offer {
                        macaroon,
                        invoice,
                        advertised_msat: c.get("amount_msat").and_then(Value::as_u64),
                        mode: s("mode"),
                        expires: c.get("expires").and_then(Value::as_u64),
                    });
                }
            }
            Some("x402") => self.add_x402(c),
            Some("oauth") => {
                let b = self.oauth.get_or_insert_with(BearerOffer::default);
                b.resource_metadata = b.resource_metadata.take().or(s("resource_metadata"));
                b.scope = b.scope.take().or(s("scope"));
                b.resource = b.resource.take().or(s("resource"));
                if b.authorization_servers.is_empty() {
                    b.authorization_servers = c
                        .get("authorization_servers")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                }
            }
            _ => {}
        }
    }
}

/// A `PAYMENT-REQUIRED` value: base64 (standard or URL-safe, padded or not) of the
/// `PaymentRequired` JSON; `None` when it is too large or not that.
fn decode_payment_required(v: &str) -> Option<Value> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let v = v.trim();
    if v.len() > MAX_X402_HEADER {
        return None;
    }
    let bytes = STANDARD
        .decode(v)
        .or_else(|_| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// The `{"challenges": […], "refusals": […]}` object of a 402 body or an in-band result.
fn ways_through(msg: &Value) -> Option<&Value> {
    msg.pointer("/result/structuredContent/turnpike")
        .or_else(|| msg.pointer("/error/data"))
        .or_else(|| msg.pointer("/structuredContent/turnpike"))
}

/// The `PaymentRequired` of the x402 MCP transport in a result: a tool result with
/// `isError: true` whose `structuredContent` is one (alone, or beside turnpike's challenges), or
/// the `paymentRequired` of a `payment_required` result (the `org.x402/payment` extension).
fn x402_payment_required(msg: &Value) -> Option<&Value> {
    let r = msg.get("result")?;
    let pr = if r.get("resultType").and_then(Value::as_str)
        == Some(turnpike_x402::wire::RESULT_PAYMENT_REQUIRED)
    {
        r.get("paymentRequired")?
    } else if r.get("isError").and_then(Value::as_bool) == Some(true) {
        r.get("structuredContent")?
    } else {
        return None;
    };
    (pr.get("x402Version").is_some()
        && pr
            .get("accepts")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty()))
    .then_some(pr)
}

fn challenge_list(msg: &Value) -> Option<&Vec<Value>> {
    ways_through(msg)?.get("challenges")?.as_array()
}

/// Whether a JSON-RPC response is a gate's challenge delivered in band: a result with
/// `isError: true` and `structuredContent.turnpike.challenges`, the x402 MCP transport's
/// `PaymentRequired` (a tool result, or a `payment_required` result), or an error whose
/// `data.challenges` lists ways through (turnpike's -31402 / -31401, HTTP 200 in-band delivery
/// for methods other than tools/call).
pub fn is_in_band_challenge(msg: &Value) -> bool {
    if x402_payment_required(msg).is_some() {
        return true;
    }
    if let Some(r) = msg.get("result") {
        return r.get("isError").and_then(Value::as_bool) == Some(true)
            && r.pointer("/structuredContent/turnpike/challenges")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
    }
    if let Some(e) = msg.get("error") {
        let code = e.get("code").and_then(Value::as_i64);
        return matches!(
            code,
            Some(-31402)
                | Some(-31401)
                | Some(-31403)
                | Some(mpp::PAYMENT_REQUIRED_CODE)
                | Some(mpp::VERIFICATION_FAILED_CODE)
        ) && e
            .pointer("/data/challenges")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pr() -> Value {
        json!({"x402Version": 2, "error": "params._meta[\"x402/payment\"] is required",
               "resource": {"url": "https://g.example/mcp", "description": "tools/call dear",
                            "mimeType": "application/json"},
               "accepts": [{"scheme": "exact", "network": "eip155:31337", "amount": "10000",
                            "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                            "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                            "maxTimeoutSeconds": 60, "extra": {"name": "T", "version": "1"}}]})
    }

    /// The x402 MCP transport's forms are in-band challenges whose offer is read: the tool
    /// result, and the extension's `payment_required` result; a tool's own error is not.
    #[test]
    fn the_x402_mcp_forms_are_read() {
        let tool_result = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "isError": true, "structuredContent": pr(),
            "content": [{"type": "text", "text": pr().to_string()}]}});
        let extension = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "resultType": "payment_required", "paymentRequired": pr()}});
        for msg in [&tool_result, &extension] {
            assert!(is_in_band_challenge(msg), "{msg}");
            let o = Offers::read(&HeaderMap::new(), Some(msg));
            assert_eq!(o.x402.len(), 1);
            assert_eq!(o.x402[0].amount, "10000");
        }
        let tool_error = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "isError": true, "structuredContent": {"answer": 1},
            "content": [{"type": "text", "text": "no"}]}});
        assert!(!is_in_band_challenge(&tool_error));
        assert!(Offers::read(&HeaderMap::new(), Some(&tool_error)).is_empty());
    }
}
