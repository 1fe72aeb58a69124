//! Credentials a caller presented, collected from one request in one place.
//!
//! | where | scheme / key | rail | parser |
//! |---|---|---|---|
//! | every `Authorization` line | `PoW` (any case) | proof-of-work | `turnpike_core::credential::parse_pow_params` |
//! | every `Authorization` line | `L402`, `LSAT` (any case) | L402 | [`turnpike_l402::parse_authorization`] |
//! | every `Macaroon` line | macaroon with a `preimage=` caveat | L402 | [`turnpike_l402::parse_macaroon_header`] |
//! | `params._meta["turnpike/pow"]` | | proof-of-work | [`turnpike_mcp::meta_credentials`] |
//! | `params._meta["turnpike/l402"]` | | L402 | [`turnpike_l402::parse_meta`] |
//!
//! Other `Authorization` schemes (`Bearer`, `DPoP`) are left for the rail that owns them. A
//! credential that does not parse becomes a refusal of its rail (the call is then answered 401).
//! Every one of these is removed before the call goes upstream
//! ([`crate::pipeline::strip_credential_headers`], [`turnpike_mcp::strip_turnpike_meta`]).

use http::{header, HeaderMap};
use serde_json::Value;
use turnpike_core::credential::{parse_pow_params, split_scheme, CredentialParseError};
use turnpike_core::{Credential, RailKind, Refusal};
use turnpike_mcp::Message;

/// The `Macaroon` request header (L402 beside an OAuth `Authorization`).
pub const MACAROON_HEADER: &str = "macaroon";

/// Credentials presented with a call: parsed ones in the order presented (headers, then
/// `_meta`), and refusals for ones that did not parse.
pub fn collect(headers: &HeaderMap, msg: &Message) -> (Vec<Credential>, Vec<Refusal>) {
    let mut out = Collected::default();
    for value in headers.get_all(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else { continue };
        authorization(value, &mut out);
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
    (out.creds, out.malformed)
}

/// One `Authorization` line, by scheme.
fn authorization(value: &str, out: &mut Collected) {
    let (scheme, params) = split_scheme(value);
    if scheme.eq_ignore_ascii_case("PoW") {
        out.add(parse_pow_params(params).map(Credential::Pow), RailKind::Pow);
    } else if let Some(r) = turnpike_l402::parse_authorization(scheme, params) {
        out.add(r, RailKind::L402);
    }
}

fn meta<'a>(msg: &'a Message, key: &str) -> Option<&'a Value> {
    msg.params()
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .and_then(|m| m.get(key))
}

#[derive(Default)]
struct Collected {
    creds: Vec<Credential>,
    malformed: Vec<Refusal>,
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
        let (creds, bad) = collect(&h, &msg);
        assert_eq!(creds.len(), 2);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].reason.contains("missing solution"), "{bad:?}");
        assert_eq!(bad[1].rail, RailKind::L402);
        assert_eq!(bad[2].rail, RailKind::L402);
    }
}
