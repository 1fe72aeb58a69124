//! HTTP responses the gate writes itself: JSON-RPC errors and challenges in either mode.

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use turnpike_mcp::respond::object;

use turnpike_core::{
    error_codes, Challenge, Decision, InBandCall, InBandForm, InBandResult, RailAnswer,
    RailDocument, RailId, RailPlugin, Refusal,
};

use crate::config::ChallengeMode;

/// The request header that picks the delivery mode for one request: `http` or `in-band`.
pub const CHALLENGE_MODE_HEADER: &str = "turnpike-challenge";

use turnpike_http::reply::json_bytes_response;
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
/// `Unavailable`. In HTTP mode: 402 (401 when every challenge asks the caller to sign in,
/// [`RailPlugin::signs_in`]) / 401 / 503 with one `WWW-Authenticate` line per challenge, in the
/// rails' order ([`RailPlugin::challenge_order`]: L402 first, then proof-of-work, then
/// Bearer), and a JSON-RPC error body. In band: HTTP 200 with an `isError` tool result for
/// `tools/call` whose text each rail writes its part of ([`in_band_text`]), and with the
/// JSON-RPC error for other methods (whose results have no error form); when every challenge
/// is one rail's and that rail has a standard in-band form ([`RailPlugin::in_band_form`]: MPP's
/// -32042), that form instead, and beside other rails' challenges its `_meta` member in the
/// result; before that, a rail that answers its challenges as a method result of its own
/// ([`RailPlugin::in_band_result`]: x402's `PaymentRequired` tool result, or its
/// `payment_required` result for a client of 2026-07-28 that advertised `org.x402/payment` in
/// `extensions`) gives that result when every challenge is its own, and beside other rails'
/// challenges its members in the shared result's `structuredContent`.
pub fn challenge(
    mode: ChallengeMode,
    era: turnpike_mcp::Era,
    method: &str,
    id: Option<&Value>,
    extensions: &[String],
    decision: Decision,
    rails: &[Arc<dyn RailPlugin>],
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
    challenges.sort_by_key(|c| rail_order(rails, c.rail));
    let status = if status == StatusCode::PAYMENT_REQUIRED
        && !challenges.is_empty()
        && challenges.iter().all(|c| signs_in(rails, c.rail))
    {
        StatusCode::UNAUTHORIZED
    } else {
        status
    };
    if mode == ChallengeMode::InBand {
        let modern = era == turnpike_mcp::Era::RoutingHeaders;
        let call = InBandCall {
            method,
            modern,
            extensions,
        };
        let results = in_band_results(rails, &call, &challenges, &refusals);
        // Every challenge one rail's, which answers it as a result of its own: that result.
        if let [(_, own)] = &results[..] {
            if challenges.iter().all(|c| c.rail == challenges[0].rail) {
                let mut result = own.result.clone();
                if let Some(r) = result.as_object_mut() {
                    if modern && !r.contains_key("resultType") {
                        r.insert("resultType".into(), Value::from("complete"));
                    }
                }
                let body = object([
                    ("jsonrpc", Value::from("2.0")),
                    ("id", id.cloned().unwrap_or(Value::Null)),
                    ("result", result),
                ]);
                return json_response(StatusCode::OK, &body);
            }
        }
        let forms = in_band_forms(rails, &challenges, &refusals);
        // Every challenge one rail's, which has a standard form of its own: that form.
        if let [(_, form)] = &forms[..] {
            if challenges.iter().all(|c| c.rail == challenges[0].rail) {
                let body = object([
                    ("jsonrpc", Value::from("2.0")),
                    ("id", id.cloned().unwrap_or(Value::Null)),
                    (
                        "error",
                        object([
                            ("code", Value::from(form.code)),
                            ("message", Value::from(form.message.clone())),
                            ("data", form.data.clone()),
                        ]),
                    ),
                ]);
                return json_response(StatusCode::OK, &body);
            }
        }
        let body = if method == "tools/call" {
            let text = in_band_text(rails, &challenges, &refusals);
            let mut body = turnpike_mcp::in_band_result_for(era, id, &text, &challenges, &refusals);
            if let Some(result) = body.get_mut("result").and_then(Value::as_object_mut) {
                // The rails' own results' members beside turnpike's, in its structuredContent.
                if let Some(sc) = result
                    .get_mut("structuredContent")
                    .and_then(Value::as_object_mut)
                {
                    for (_, own) in &results {
                        for (k, v) in &own.structured {
                            if k != "turnpike" && !sc.contains_key(k) {
                                sc.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
                let meta = result
                    .entry("_meta")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(meta) = meta.as_object_mut() {
                    for (_, f) in forms {
                        meta.insert(f.result_meta.0.to_string(), f.result_meta.1);
                    }
                }
                if result
                    .get("_meta")
                    .is_some_and(|m| m.as_object().is_some_and(|m| m.is_empty()))
                {
                    result.remove("_meta");
                }
            }
            body
        } else {
            turnpike_mcp::challenge_error(id, code, message, &challenges, &refusals)
        };
        return json_response(StatusCode::OK, &body);
    }
    let body = turnpike_mcp::challenge_error_json(id, code, message, &challenges, &refusals);
    let mut r = json_bytes_response(status, body);
    append_challenges(r.headers_mut(), &challenges, rails);
    r
}

/// For each rail among `challenges` (once, in the order they first appear): what `answer`
/// makes of its own challenges and refusals, where it makes something.
fn per_rail<T>(
    rails: &[Arc<dyn RailPlugin>],
    challenges: &[Challenge],
    refusals: &[Refusal],
    answer: impl Fn(&dyn RailPlugin, &[&Challenge], &[&Refusal]) -> Option<T>,
) -> Vec<(RailId, T)> {
    let mut out: Vec<(RailId, T)> = Vec::new();
    for c in challenges {
        if out.iter().any(|(r, _)| *r == c.rail) {
            continue;
        }
        let Some(rail) = rails.iter().find(|r| r.id() == c.rail) else {
            continue;
        };
        let own: Vec<&Challenge> = challenges.iter().filter(|x| x.rail == c.rail).collect();
        let why: Vec<&Refusal> = refusals.iter().filter(|x| x.rail == c.rail).collect();
        if let Some(t) = answer(rail.as_ref(), &own, &why) {
            out.push((c.rail, t));
        }
    }
    out
}

/// The standard in-band forms of the rails among `challenges` that have one
/// ([`RailPlugin::in_band_form`]), each with its own challenges and refusals.
fn in_band_forms(
    rails: &[Arc<dyn RailPlugin>],
    challenges: &[Challenge],
    refusals: &[Refusal],
) -> Vec<(RailId, InBandForm)> {
    per_rail(rails, challenges, refusals, |rail, own, why| {
        rail.in_band_form(own, why)
    })
}

/// The rails among `challenges` that answer them as a result of their own
/// ([`RailPlugin::in_band_result`]), each with its own challenges and refusals.
fn in_band_results(
    rails: &[Arc<dyn RailPlugin>],
    call: &InBandCall<'_>,
    challenges: &[Challenge],
    refusals: &[Refusal],
) -> Vec<(RailId, InBandResult)> {
    per_rail(rails, challenges, refusals, |rail, own, why| {
        rail.in_band_result(call, own, why)
    })
}

/// Where `rail`'s challenge goes among the others (a rail the gateway does not run at the
/// edge: between proof-of-work and OAuth).
fn rail_order(rails: &[Arc<dyn RailPlugin>], rail: RailId) -> u8 {
    rails
        .iter()
        .find(|r| r.id() == rail)
        .map_or(15, |r| r.challenge_order())
}

/// Whether `rail`'s challenge asks the caller to sign in.
pub fn signs_in(rails: &[Arc<dyn RailPlugin>], rail: RailId) -> bool {
    rails
        .iter()
        .find(|r| r.id() == rail)
        .is_some_and(|r| r.signs_in())
}

/// The answer to a call whose credential its rail refused and answers itself
/// ([`turnpike_core::BoundRail::answer`]; the OAuth rail: 400, 401, 403, 429, 503): its status,
/// its `WWW-Authenticate` lines first, then the challenges of the other rails the call accepts
/// (L402, proof-of-work) unless the status is 429 or 503, its headers (`DPoP-Nonce`,
/// `Retry-After`), and a JSON-RPC error whose `data` holds every challenge, the refusals and
/// what the rail adds (the OAuth `error` code, `retry_after`). Always over HTTP.
pub fn rail_answer(
    answer: RailAnswer,
    rail: RailId,
    id: Option<&Value>,
    decision: Decision,
    rails: &[Arc<dyn RailPlugin>],
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
    challenges.sort_by_key(|c| rail_order(rails, c.rail));
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let code = match answer.status {
        429 => error_codes::RATE_LIMITED,
        503 => error_codes::UNAVAILABLE,
        403 => error_codes::FORBIDDEN,
        _ => error_codes::CREDENTIAL_INVALID,
    };
    let mut body = turnpike_mcp::challenge_error(id, code, &answer.message, &challenges, &refusals);
    if let Some(data) = body.pointer_mut("/error/data") {
        for (k, v) in answer.data {
            data[k] = v;
        }
    }
    let mut r = json_response(status, &body);
    let h = r.headers_mut();
    for line in &answer.www_authenticate {
        if let Ok(v) = HeaderValue::from_str(line) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
    // A "come back later" (429, 503) offers no other way through.
    if answer.status != 503 && answer.status != 429 {
        let others: Vec<Challenge> = challenges.into_iter().filter(|c| c.rail != rail).collect();
        append_challenges(h, &others, rails);
    }
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    r
}

/// A rail's document (e.g. the protected-resource metadata, RFC 9728) as a response to
/// `method`: the JSON for `GET` and `HEAD`, a CORS preflight answer for `OPTIONS`, 405 for
/// anything else. Anyone may read it from any origin.
pub fn document(method: &Method, doc: &RailDocument) -> Response<Body> {
    let mut r = if method == Method::GET || method == Method::HEAD {
        let mut r = json_response(StatusCode::OK, &doc.body);
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
            &format!("the {} is read with GET", doc.what),
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

/// The in-band text: each refusal, then what is needed and each way through in the rails'
/// words ([`RailPlugin::in_band_text`]: pay the invoice, solve the puzzle, or sign in), each
/// saying how to retry with the credential in `params._meta` (a token goes in the
/// `Authorization` header).
pub fn in_band_text(
    rails: &[Arc<dyn RailPlugin>],
    challenges: &[Challenge],
    refusals: &[Refusal],
) -> String {
    let mut t = String::new();
    for r in refusals {
        t.push_str(&format!(
            "The {} credential presented was not accepted: {}. ",
            r.rail, r.reason
        ));
    }
    if challenges.is_empty() {
        t.push_str(
            "This call needs a credential, and no way to obtain one can be offered right now. \
             Try again later.",
        );
        return t;
    }
    t.push_str("This call needs a credential before it runs");
    if challenges.len() < 2 {
        t.push_str(". ");
    } else {
        t.push_str(": choose one of the ways below. ");
    }
    for (i, c) in challenges.iter().enumerate() {
        match rails.iter().find(|r| r.id() == c.rail) {
            Some(rail) => t.push_str(&rail.in_band_text(c, i == 0)),
            None => {
                let rail = c.rail;
                t.push_str(&format!(
                    "{rail}: see structuredContent.turnpike.challenges and retry this same call \
                     with the credential in params._meta[\"turnpike/{rail}\"]. "
                ));
            }
        }
    }
    t.truncate(t.trim_end().len());
    t
}

/// One `WWW-Authenticate` line per challenge that has one, and the headers of their own that
/// rails carry challenges in ([`RailPlugin::challenge_headers`]).
fn append_challenges(h: &mut HeaderMap, challenges: &[Challenge], rails: &[Arc<dyn RailPlugin>]) {
    for c in challenges {
        if c.www_authenticate.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(&c.www_authenticate) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
    for c in challenges {
        let Some(rail) = rails.iter().find(|r| r.id() == c.rail) else {
            continue;
        };
        for (name, value) in rail.challenge_headers(c) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(name, v);
            }
        }
    }
}

/// A refusal for a credential that could not be parsed.
pub fn malformed(rail: RailId, reason: String) -> Refusal {
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
            rail: turnpike_pow::RAIL,
            www_authenticate: "PoW challenge=\"x\"".into(),
            details: serde_json::json!({"rail":"pow"}),
        };
        let r = challenge(
            ChallengeMode::Http,
            turnpike_mcp::Era::Session,
            "tools/call",
            None,
            &[],
            Decision::Challenge {
                challenges: vec![c.clone()],
                refusals: vec![],
            },
            &[],
        );
        assert_eq!(r.status(), 402);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "PoW challenge=\"x\"");
        let r = challenge(
            ChallengeMode::Http,
            turnpike_mcp::Era::Session,
            "tools/call",
            None,
            &[],
            Decision::Invalid {
                refusal: Refusal::new(turnpike_pow::RAIL, "bad"),
                challenges: vec![c],
            },
            &[],
        );
        assert_eq!(r.status(), 401);
        let r = challenge(
            ChallengeMode::Http,
            turnpike_mcp::Era::Session,
            "tools/call",
            None,
            &[],
            Decision::Unavailable { refusals: vec![] },
            &[],
        );
        assert_eq!(r.status(), 503);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        let r = challenge(
            ChallengeMode::InBand,
            turnpike_mcp::Era::Session,
            "tools/call",
            None,
            &[],
            Decision::Unavailable { refusals: vec![] },
            &[],
        );
        assert_eq!(r.status(), 200);
    }
}
