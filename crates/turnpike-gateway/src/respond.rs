//! HTTP responses the gate writes itself: JSON-RPC errors and challenges in either mode.

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::Value;
use turnpike_core::{error_codes, Challenge, Decision, RailKind, Refusal};

use crate::config::ChallengeMode;

/// The request header that picks the delivery mode for one request: `http` or `in-band`.
pub const CHALLENGE_MODE_HEADER: &str = "turnpike-challenge";

pub use turnpike_http::reply::{json_error, json_response};

/// Which delivery mode applies to a request (the `auto` rule is in the README and docs/ARCHITECTURE.md).
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
/// `Unavailable`. In HTTP mode: 402 (401 when every challenge is an OAuth one) / 401 / 503 with
/// one `WWW-Authenticate` line per challenge (L402 first, then proof-of-work, then Bearer) and a
/// JSON-RPC error body. In band: HTTP 200 with an `isError` tool result for
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
    // L402 first: L402 clients read only the first challenge. Bearer last.
    challenges.sort_by_key(|c| rail_order(c.rail));
    let status = if status == StatusCode::PAYMENT_REQUIRED
        && !challenges.is_empty()
        && challenges.iter().all(|c| c.rail == RailKind::OAuth)
    {
        StatusCode::UNAUTHORIZED
    } else {
        status
    };
    if mode == ChallengeMode::InBand {
        let body = if method == "tools/call" {
            let mut v = turnpike_mcp::in_band_result_for(era, id, &challenges, &refusals);
            if challenges
                .iter()
                .any(|c| matches!(c.rail, RailKind::L402 | RailKind::OAuth))
            {
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

/// The order of challenges: L402, proof-of-work, OAuth.
fn rail_order(r: RailKind) -> u8 {
    match r {
        RailKind::L402 => 0,
        RailKind::Pow => 1,
        RailKind::OAuth => 2,
    }
}

/// The answer to a call whose OAuth token (or DPoP proof) was refused, as the OAuth rail says
/// ([`turnpike_oauth::OAuthRail::response_for`]): its status (400, 401, 403, 503), its
/// `WWW-Authenticate` lines first, then the challenges of the other rails the call accepts
/// (L402, proof-of-work), `DPoP-Nonce` when the rail gives one, and a JSON-RPC error whose
/// `data` holds every challenge, the refusals and the OAuth `error` code. Always over HTTP.
pub fn oauth_refusal(
    ar: turnpike_oauth::AuthResponse,
    id: Option<&Value>,
    decision: Decision,
) -> Response<Body> {
    let (mut challenges, refusals) = match decision {
        Decision::Challenge {
            challenges,
            refusals,
        } => (challenges, refusals),
        Decision::Invalid {
            refusal,
            challenges,
        } => (challenges, vec![refusal]),
        Decision::Unavailable { refusals } => (Vec::new(), refusals),
        Decision::Free | Decision::Pass(_) => (Vec::new(), Vec::new()),
    };
    challenges.sort_by_key(|c| rail_order(c.rail));
    let status = StatusCode::from_u16(ar.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let code = match ar.status {
        503 => error_codes::UNAVAILABLE,
        403 => error_codes::FORBIDDEN,
        _ => error_codes::CREDENTIAL_INVALID,
    };
    let mut body = turnpike_mcp::challenge_error(id, code, &ar.description, &challenges, &refusals);
    if let (Some(e), Some(data)) = (ar.error, body.pointer_mut("/error/data")) {
        data["oauth_error"] = Value::from(e.as_str());
    }
    let mut r = json_response(status, &body);
    let h = r.headers_mut();
    for line in &ar.www_authenticate {
        if let Ok(v) = HeaderValue::from_str(line) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
    if ar.status != 503 {
        let others: Vec<Challenge> = challenges
            .into_iter()
            .filter(|c| c.rail != RailKind::OAuth)
            .collect();
        append_www_authenticate(h, &others);
    }
    if let Some(v) = ar.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        h.insert("dpop-nonce", v);
    }
    r
}

/// The protected-resource metadata document (RFC 9728) as a response to `method`: the JSON for
/// `GET` and `HEAD`, a CORS preflight answer for `OPTIONS`, 405 for anything else. Anyone may
/// read it from any origin.
pub fn metadata(method: &Method, doc: &Value) -> Response<Body> {
    let mut r = if method == Method::GET || method == Method::HEAD {
        let mut r = json_response(StatusCode::OK, doc);
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        if method == Method::HEAD {
            *r.body_mut() = Body::empty();
        }
        r
    } else if method == Method::OPTIONS {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("mcp-protocol-version, content-type"),
        );
        r.headers_mut().insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        r
    } else {
        let mut r = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            error_codes::INVALID_REQUEST,
            "the protected-resource metadata is read with GET",
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        r
    };
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// The in-band text when an L402 or OAuth challenge is among the ways through: each option in
/// turn (pay the invoice, solve the puzzle, or sign in), and how to retry with the credential in
/// `params._meta` (a token goes in the `Authorization` header).
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
        .filter(|c| c.rail == RailKind::Pow)
        .cloned()
        .collect();
    t.push_str("This call needs a credential before it runs");
    if challenges.len() < 2 {
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
        if challenges.iter().any(|c| c.rail == RailKind::L402) {
            t.push_str("Or, without paying: ");
        }
        t.push_str(rest);
        t.push(' ');
    }
    for c in challenges.iter().filter(|c| c.rail == RailKind::OAuth) {
        let d = &c.details;
        let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let issuer = d
            .get("authorization_servers")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("");
        let scope = match s("scope") {
            sc if sc.is_empty() => String::new(),
            sc => format!(" with the scopes \"{sc}\""),
        };
        let lead = if challenges.len() > 1 {
            "Or, with an account"
        } else {
            "With an account"
        };
        t.push_str(&format!(
            "{lead} (OAuth): get an access token from {issuer} for the resource {}{scope} \
             (client credentials work without a browser; the protected-resource metadata is at \
             {}), then retry this same call over HTTP with the header \
             `Authorization: Bearer <token>` (or `DPoP <token>` with a `DPoP` proof). ",
            s("resource"),
            s("resource_metadata"),
        ));
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
