//! HTTP responses the gate writes itself: JSON-RPC errors and challenges in either mode.

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::Value;
use turnpike_core::{error_codes, Challenge, Decision, RailKind, Refusal};

use crate::config::ChallengeMode;

/// The request header that picks the delivery mode for one request: `http` or `in-band`.
pub const CHALLENGE_MODE_HEADER: &str = "turnpike-challenge";

/// A JSON response with `status` and the JSON-RPC error `code`/`message`.
pub fn json_error(
    status: StatusCode,
    id: Option<&Value>,
    code: i64,
    message: &str,
) -> Response<Body> {
    json_response(status, &turnpike_mcp::error_response(id, code, message))
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Which delivery mode applies to a request (see the contract's rule for `auto`).
pub fn mode_for(configured: ChallengeMode, headers: &HeaderMap) -> ChallengeMode {
    if let Some(m @ (ChallengeMode::Http | ChallengeMode::InBand)) = headers
        .get(CHALLENGE_MODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| ChallengeMode::parse(v.trim()))
    {
        return m;
    }
    match configured {
        ChallengeMode::Auto => {
            if headers.contains_key(turnpike_mcp::headers::SESSION_ID)
                || headers.contains_key(turnpike_mcp::headers::PROTOCOL_VERSION)
            {
                ChallengeMode::InBand
            } else {
                ChallengeMode::Http
            }
        }
        m => m,
    }
}

/// The answer to a call that did not get through: `decision` is `Challenge`, `Invalid` or
/// `Unavailable`. In HTTP mode: 402 / 401 / 503 with one `WWW-Authenticate` line per challenge
/// (L402 first) and a JSON-RPC error body. In band: HTTP 200 with an `isError` tool result for
/// `tools/call`, and with the JSON-RPC error for other methods (whose results have no error
/// form).
pub fn challenge(
    mode: ChallengeMode,
    era: turnpike_mcp::Era,
    method: &str,
    id: Option<&Value>,
    decision: Decision,
) -> Response<Body> {
    let (status, code, message, mut challenges, refusals) = match decision {
        Decision::Challenge {
            challenges,
            refusals,
        } => (
            StatusCode::PAYMENT_REQUIRED,
            error_codes::CREDENTIAL_REQUIRED,
            "this call needs a credential: see error.data.challenges for the accepted ways through",
            challenges,
            refusals,
        ),
        Decision::Invalid {
            refusal,
            challenges,
        } => (
            StatusCode::UNAUTHORIZED,
            error_codes::CREDENTIAL_INVALID,
            "the credential presented is not valid: see error.data for fresh challenges",
            challenges,
            vec![refusal],
        ),
        Decision::Unavailable { refusals } => (
            StatusCode::SERVICE_UNAVAILABLE,
            error_codes::UNAVAILABLE,
            "no way through can be offered right now; try again later",
            Vec::new(),
            refusals,
        ),
        Decision::Free | Decision::Pass(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            error_codes::INTERNAL_ERROR,
            "internal error",
            Vec::new(),
            Vec::new(),
        ),
    };
    // L402 first: L402 clients read only the first challenge.
    challenges.sort_by_key(|c| c.rail != RailKind::L402);
    if mode == ChallengeMode::InBand {
        let body = if method == "tools/call" {
            let mut v = turnpike_mcp::in_band_result_for(era, id, &challenges, &refusals);
            if challenges.iter().any(|c| c.rail == RailKind::L402) {
                if let Some(t) = v.pointer_mut("/result/content/0/text") {
                    *t = Value::from(in_band_text(&challenges, &refusals));
                }
            }
            v
        } else {
            turnpike_mcp::challenge_error(id, code, message, &challenges, &refusals)
        };
        return json_response(StatusCode::OK, &body);
    }
    let body = turnpike_mcp::challenge_error(id, code, message, &challenges, &refusals);
    let mut r = json_response(status, &body);
    append_www_authenticate(r.headers_mut(), &challenges);
    r
}

/// The in-band text when an L402 challenge is among the ways through: each option in turn
/// (pay the invoice, or solve the puzzle), and how to retry with the credential in
/// `params._meta`.
pub fn in_band_text(challenges: &[Challenge], refusals: &[Refusal]) -> String {
    let mut t = String::new();
    for r in refusals {
        t.push_str(&format!(
            "The {} credential presented was not accepted: {}. ",
            r.rail, r.reason
        ));
    }
    let others: Vec<Challenge> = challenges
        .iter()
        .filter(|c| c.rail != RailKind::L402)
        .cloned()
        .collect();
    t.push_str("This call needs a credential before it runs");
    if others.is_empty() {
        t.push_str(". ");
    } else {
        t.push_str(": choose one of the ways below. ");
    }
    for c in challenges.iter().filter(|c| c.rail == RailKind::L402) {
        let d = &c.details;
        let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let msat = d.get("amount_msat").and_then(Value::as_u64).unwrap_or(0);
        let amount = if msat % 1000 == 0 {
            format!("{} sat", msat / 1000)
        } else {
            format!("{msat} msat")
        };
        let mode = match s("mode").as_str() {
            "balance" => "it buys prepaid credit; later calls debit it until it is used up",
            "time_pass" => "it buys unlimited calls of this tool until the pass expires",
            _ => "it pays for this one call",
        };
        t.push_str(&format!(
            "Pay (L402): pay the Lightning invoice {} ({amount}; {mode}) with a Lightning \
             wallet, which gives you the payment's preimage (64 hex digits). Then retry this \
             same call with the same arguments and add params._meta[\"turnpike/l402\"] = \
             {{\"macaroon\": \"{}\", \"preimage\": \"<preimage hex>\"}} (over HTTP, the \
             header `Authorization: L402 <macaroon>:<preimage hex>` works too). ",
            s("invoice"),
            s("macaroon"),
        ));
    }
    if !others.is_empty() {
        let rest = turnpike_mcp::respond::in_band_text(&others, &[]);
        let rest = rest
            .strip_prefix("This call needs a credential before it runs. ")
            .unwrap_or(&rest);
        t.push_str("Or, without paying: ");
        t.push_str(rest);
    }
    t.truncate(t.trim_end().len());
    t
}

fn append_www_authenticate(h: &mut HeaderMap, challenges: &[Challenge]) {
    for c in challenges {
        if let Ok(v) = HeaderValue::from_str(&c.www_authenticate) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
}

/// A refusal for a credential that could not be parsed.
pub fn malformed(rail: RailKind, reason: String) -> Refusal {
    Refusal::new(rail, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn mode_rules() {
        use ChallengeMode::*;
        assert_eq!(mode_for(Auto, &h(&[])), Http);
        assert_eq!(mode_for(Auto, &h(&[("mcp-session-id", "s")])), InBand);
        assert_eq!(
            mode_for(Auto, &h(&[("mcp-protocol-version", "2025-11-25")])),
            InBand
        );
        assert_eq!(mode_for(Http, &h(&[("mcp-session-id", "s")])), Http);
        assert_eq!(mode_for(InBand, &h(&[])), InBand);
        assert_eq!(
            mode_for(InBand, &h(&[("turnpike-challenge", "http")])),
            Http
        );
        assert_eq!(
            mode_for(Http, &h(&[("turnpike-challenge", "in-band")])),
            InBand
        );
        assert_eq!(mode_for(Http, &h(&[("turnpike-challenge", "auto")])), Http);
    }

    #[test]
    fn http_statuses() {
        let c = Challenge {
            rail: RailKind::Pow,
            www_authenticate: "PoW challenge=\"x\"".into(),
            details: serde_json::json!({"rail":"pow"}),
        };
        let r = challenge(
            ChallengeMode::Http,
            turnpike_mcp::Era::Session,
            "tools/call",
            None,
            Decision::Challenge {
                challenges: vec![c.clone()],
                refusals: vec![],
            },
        );
        assert_eq!(r.status(), 402);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "PoW challenge=\"x\"");
        let r = challenge(
            ChallengeMode::Http,
            turnpike_mcp::Era::Session,
            "tools/call",
            None,
            Decision::Invalid {
                refusal: Refusal::new(RailKind::Pow, "bad"),
                challenges: vec![c],
            },
        );
        assert_eq!(r.status(), 401);
        let r = challenge(
            ChallengeMode::Http,
            turnpike_mcp::Era::Session,
            "tools/call",
            None,
            Decision::Unavailable { refusals: vec![] },
        );
        assert_eq!(r.status(), 503);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        let r = challenge(
            ChallengeMode::InBand,
            turnpike_mcp::Era::Session,
            "tools/call",
            None,
            Decision::Unavailable { refusals: vec![] },
        );
        assert_eq!(r.status(), 200);
    }
}
