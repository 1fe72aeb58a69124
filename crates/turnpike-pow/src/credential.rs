//! Proof-of-work credentials, as callers present them, and the rail's offers.
//!
//! - `Authorization: PoW challenge="<token>", solution="<n0>,<n1>,…"` ([`parse_pow_params`]);
//! - `params._meta["turnpike/pow"] = {"challenge": "<token>", "solution": "<n0>,<n1>,…"}`, the
//!   solution also as a JSON array of integers ([`parse_pow_meta`]).

use serde_json::Value;
use turnpike_core::credential::{parse_auth_params, CredentialParseError};
use turnpike_core::{Credential, Offer, RailId};

/// The proof-of-work rail's identifier: `pow` on the wire, in configuration and in metrics.
pub const RAIL: RailId = RailId::new("pow");

/// The `_meta` key of a proof-of-work credential.
pub const META_POW: &str = "turnpike/pow";

/// A proof-of-work solution: the challenge it solves and one nonce per sub-puzzle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowCredential {
    /// The challenge token exactly as the gateway issued it (base64url, no padding).
    pub challenge: String,
    /// One nonce per sub-puzzle, in order.
    pub solution: Vec<u64>,
}

impl From<PowCredential> for Credential {
    fn from(c: PowCredential) -> Credential {
        Credential::new(RAIL, c)
    }
}

/// A proof-of-work offer of about `effort` expected SHA-256 evaluations (before load scaling).
pub fn offer(effort: u64) -> Offer {
    let mut terms = serde_json::Map::new();
    terms.insert("effort".into(), Value::from(effort));
    Offer::new(RAIL, terms)
}

/// The effort of a proof-of-work offer; `None` for an offer on another rail.
pub fn effort(offer: &Offer) -> Option<u64> {
    (offer.rail() == RAIL)
        .then(|| offer.u64_term("effort"))
        .flatten()
}

fn bad(reason: &str) -> CredentialParseError {
    CredentialParseError::Malformed {
        scheme: "PoW",
        reason: reason.to_owned(),
    }
}

/// Parses the parameters of `Authorization: PoW challenge="…", solution="n0,n1,…"`.
pub fn parse_pow_params(params: &str) -> Result<PowCredential, CredentialParseError> {
    let pairs = parse_auth_params(params).ok_or_else(|| bad("not an auth-param list"))?;
    let mut challenge = None;
    let mut solution = None;
    for (k, v) in pairs {
        match k.as_str() {
            "challenge" if challenge.is_none() => challenge = Some(v),
            "solution" if solution.is_none() => solution = Some(v),
            "challenge" | "solution" => return Err(bad("a parameter appears twice")),
            _ => {}
        }
    }
    let challenge = challenge.ok_or_else(|| bad("missing challenge"))?;
    let solution = parse_nonce_list(&solution.ok_or_else(|| bad("missing solution"))?)
        .ok_or_else(|| bad("solution must be comma-separated decimal nonces"))?;
    Ok(PowCredential {
        challenge,
        solution,
    })
}

/// Parses `"n0,n1,…"` (decimal u64 nonces, at most 64 of them).
pub fn parse_nonce_list(s: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() || part.len() > 20 || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        out.push(part.parse().ok()?);
        if out.len() > 64 {
            return None;
        }
    }
    Some(out)
}

/// Parses `params._meta["turnpike/pow"]`.
pub fn parse_pow_meta(v: &Value) -> Result<PowCredential, CredentialParseError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("turnpike/pow must be an object"))?;
    let challenge = obj
        .get("challenge")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing challenge"))?
        .to_owned();
    let solution = match obj.get("solution") {
        Some(Value::String(s)) => parse_nonce_list(s),
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= 64 => {
            items.iter().map(Value::as_u64).collect()
        }
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n]),
        _ => None,
    }
    .ok_or_else(|| bad("solution must be comma-separated decimal nonces or an array of them"))?;
    Ok(PowCredential {
        challenge,
        solution,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pow_params() {
        let c = parse_pow_params(r#"challenge="AAAA", solution="5,18446744073709551615""#).unwrap();
        assert_eq!(c.challenge, "AAAA");
        assert_eq!(c.solution, vec![5, u64::MAX]);
        assert!(parse_pow_params(r#"challenge="AAAA", solution="18446744073709551616""#).is_err());
        assert!(parse_pow_params(r#"challenge="AAAA", solution="-1""#).is_err());
        assert!(parse_pow_params(r#"challenge="AAAA""#).is_err());
        assert!(parse_pow_params(r#"challenge="A", challenge="B", solution="1""#).is_err());
    }

    fn meta(v: Value) -> Result<PowCredential, CredentialParseError> {
        parse_pow_meta(&v)
    }

    #[test]
    fn pow_in_meta() {
        let p = meta(json!({"challenge":"AAA","solution":"1, 2,3"})).unwrap();
        assert_eq!(p.challenge, "AAA");
        assert_eq!(p.solution, vec![1, 2, 3]);
        let p = meta(json!({"challenge":"AAA","solution":[5, 18446744073709551615u64]})).unwrap();
        assert_eq!(p.solution, vec![5, u64::MAX]);
    }

    #[test]
    fn malformed_meta_is_an_error_not_a_panic() {
        for bad in [
            json!("x"),
            json!({"solution":"1"}),
            json!({"challenge":"A"}),
            json!({"challenge":"A","solution":"-1"}),
            json!({"challenge":"A","solution":[-1]}),
            json!({"challenge":"A","solution":[]}),
            json!({"challenge":"A","solution":[1.5]}),
            json!({"challenge":7,"solution":"1"}),
        ] {
            assert!(meta(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn published_offer() {
        assert_eq!(offer(7).published(), json!({"rail": "pow", "effort": 7}));
        assert_eq!(effort(&offer(7)), Some(7));
    }
}
