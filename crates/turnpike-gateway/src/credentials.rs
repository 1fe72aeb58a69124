//! Credentials a caller presented, collected from one request in one place.
//!
//! | where | scheme / key | rail | parser |
//! |---|---|---|---|
//! | every `Authorization` line | `PoW` (any case) | proof-of-work | `turnpike_core::credential::parse_pow_params` |
//! | every `Authorization` line | `L402`, `LSAT` (any case) | L402 | [`turnpike_l402::parse_authorization`] |
//! | every `Authorization` line | `Bearer`, `DPoP` (any case), with the `DPoP` proof header | OAuth | [`turnpike_oauth::parse_authorization`] |
//! | every `Macaroon` line | macaroon with a `preimage=` caveat | L402 | [`turnpike_l402::parse_macaroon_header`] |
//! | `params._meta["turnpike/pow"]` | | proof-of-work | [`turnpike_mcp::meta_credentials`] |
//! | `params._meta["turnpike/l402"]` | | L402 | [`turnpike_l402::parse_meta`] |
//!
//! Other `Authorization` schemes are ignored. A credential that does not parse becomes a refusal
//! of its rail (the call is then answered 401; a malformed OAuth one 400 `invalid_request`).
//! Every one of these is removed before the call goes upstream
//! ([`crate::pipeline::strip_credential_headers`], [`turnpike_mcp::strip_turnpike_meta`]).

use http::{header, HeaderMap};
use serde_json::Value;
use turnpike_core::credential::{parse_pow_params, split_scheme, CredentialParseError};
use turnpike_core::{Credential, RailKind, Refusal};
use turnpike_mcp::Message;
use turnpike_oauth::Scheme;

/// The `Macaroon` request header (L402 beside an OAuth `Authorization`).
pub const MACAROON_HEADER: &str = "macaroon";

/// Credentials presented with a call: parsed ones in the order presented (headers, then
/// `_meta`), and refusals for ones that did not parse.
pub fn collect(headers: &HeaderMap, msg: &Message) -> Collected {
    let mut out = Collected::default();
    let proofs: Vec<&str> = headers
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    for value in headers.get_all(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else { continue };
        authorization(value, &proofs, &mut out);
    }
    for value in headers.get_all(MACAROON_HEADER) {
        let Ok(value) = value.to_str() else { continue };
        out.add(turnpike_l402::parse_macaroon_header(value), RailKind::L402);
    }
    for r in turnpike_mcp::meta_credentials(msg) {
        out.add(r, RailKind::Pow);
    }
    if let Some(v) = meta(msg, turnpike_l402::META_L402) {
        out.add(turnpike_l402::parse_meta(v), RailKind::L402);
    }
    out
}

/// One `Authorization` line, by scheme.
fn authorization(value: &str, proofs: &[&str], out: &mut Collected) {
    let (scheme, params) = split_scheme(value);
    if scheme.eq_ignore_ascii_case("PoW") {
        out.add(parse_pow_params(params).map(Credential::Pow), RailKind::Pow);
    } else if let Some(r) = turnpike_l402::parse_authorization(scheme, params) {
        out.add(r, RailKind::L402);
    } else if let Some(r) = turnpike_oauth::parse_authorization(scheme, params, proofs) {
        if r.is_err() && out.oauth_malformed.is_none() {
            out.oauth_malformed = Some(if scheme.eq_ignore_ascii_case("DPoP") {
                Scheme::DPoP
            } else {
                Scheme::Bearer
            });
        }
        out.add(r, RailKind::OAuth);
    }
}

fn meta<'a>(msg: &'a Message, key: &str) -> Option<&'a Value> {
    msg.params()
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .and_then(|m| m.get(key))
}

/// What [`collect`] found.
#[derive(Default, Debug)]
pub struct Collected {
    /// Parsed credentials, in the order presented.
    pub creds: Vec<Credential>,
    /// Refusals for credentials that did not parse.
    pub malformed: Vec<Refusal>,
    /// The scheme of the first OAuth credential that did not parse (answered 400
    /// `invalid_request` when nothing else pays).
    pub oauth_malformed: Option<Scheme>,
}

impl Collected {
    fn add(&mut self, r: Result<Credential, CredentialParseError>, rail: RailKind) {
        match r {
            Ok(c) => self.creds.push(c),
            Err(e) => self
                .malformed
                .push(crate::respond::malformed(rail, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn credentials_from_every_line_and_meta() {
        let mut h = HeaderMap::new();
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("PoW challenge=\"A\", solution=\"1,2\""),
        );
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("pow challenge=\"B\""),
        );
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("lsat not-a-macaroon:00"),
        );
        let msg = turnpike_mcp::parse_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"turnpike/pow":{"challenge":"C","solution":[3]},"turnpike/l402":"x:y"}}}"#,
        )
        .unwrap();
        let c = collect(&h, &msg);
        let (creds, bad) = (c.creds, c.malformed);
        assert_eq!(creds.len(), 3);
        assert_eq!(
            creds[0],
            Credential::Bearer {
                token: "tok".into(),
                dpop: None
            }
        );
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].reason.contains("missing solution"), "{bad:?}");
        assert_eq!(bad[1].rail, RailKind::L402);
        assert_eq!(bad[2].rail, RailKind::L402);
        assert_eq!(c.oauth_malformed, None);
    }

    #[test]
    fn oauth_schemes() {
        let msg = turnpike_mcp::parse_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("DPoP a.b.c"),
        );
        h.append("dpop", HeaderValue::from_static("p.q.r"));
        let c = collect(&h, &msg);
        assert_eq!(
            c.creds,
            vec![Credential::Bearer {
                token: "a.b.c".into(),
                dpop: Some("p.q.r".into())
            }]
        );
        h.append("dpop", HeaderValue::from_static("x.y.z"));
        let c = collect(&h, &msg);
        assert!(c.creds.is_empty());
        assert_eq!(c.oauth_malformed, Some(Scheme::DPoP));
        assert_eq!(c.malformed[0].rail, RailKind::OAuth);
        let mut h = HeaderMap::new();
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer not a token"),
        );
        let c = collect(&h, &msg);
        assert_eq!(c.oauth_malformed, Some(Scheme::Bearer));
    }
}
