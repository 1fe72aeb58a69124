//! Credentials a caller presented, collected from one request in one place.
//!
//! Each rail says what it reads (its [`turnpike_core::CredentialReader`], given by
//! [`turnpike_core::RailPlugin::reader`]); this module asks every rail in the order they were
//! added, and knows no scheme, header or key itself:
//!
//! 1. every `Authorization` line, in order: its scheme goes to each rail in turn, the first
//!    that claims it parses it (`PoW`; `L402`/`LSAT`; `Bearer`, `DPoP` with its `DPoP` proof);
//! 2. every line of each header a rail reads besides (the `Macaroon` header);
//! 3. each `params._meta` key a rail reads (`turnpike/pow`, `turnpike/l402`).
//!
//! Other `Authorization` schemes are ignored. A credential that does not parse becomes a refusal
//! of its rail (the call is then answered 401, or as its rail answers: a malformed OAuth one
//! 400 `invalid_request`). Every one of these is removed before the call goes upstream
//! ([`crate::pipeline::strip_credential_headers`], [`turnpike_mcp::strip_turnpike_meta`]).

use std::sync::Arc;

use http::{header, HeaderMap};
use serde_json::Value;
use turnpike_core::credential::{split_scheme, CredentialParseError};
use turnpike_core::plugin::Parsed;
use turnpike_core::{Credential, EdgeRequest, HeaderLines, RailId, RailPlugin, Refusal};
use turnpike_mcp::Message;

/// The header lines of a request, as rails read them.
pub struct Lines<'a>(pub &'a HeaderMap);

impl HeaderLines for Lines<'_> {
    /// Every line of `name`, in order. A request carries a few fields, and the rails ask for
    /// several names that are mostly absent: a walk over the fields comparing names costs less
    /// than parsing and hashing each name asked for.
    fn lines(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_str().unwrap_or("\u{0}"))
            .collect()
    }
}

/// Credentials presented with a call: parsed ones in the order presented (headers, then
/// `_meta`), and refusals for ones that did not parse.
pub fn collect(rails: &[Arc<dyn RailPlugin>], req: &EdgeRequest<'_>, msg: &Message) -> Collected {
    let mut out = Collected::default();
    let headers = req.headers;
    for value in headers.lines(header::AUTHORIZATION.as_str()) {
        if value == "\u{0}" {
            continue;
        }
        let (scheme, params) = split_scheme(value);
        for rail in rails {
            if let Some(r) = rail.reader().parse_authorization(scheme, params, req) {
                out.add(r, rail.id());
                break;
            }
        }
    }
    for rail in rails {
        let reader = rail.reader();
        for name in reader.credential_headers() {
            for value in headers.lines(name) {
                if value == "\u{0}" {
                    continue;
                }
                if let Some(r) = reader.parse_header(name, value) {
                    out.add(r, rail.id());
                }
            }
        }
    }
    let meta = msg
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object);
    if let Some(meta) = meta {
        for rail in rails {
            let reader = rail.reader();
            for key in reader.meta_keys() {
                if let Some(r) = meta.get(*key).and_then(|v| reader.parse_meta(key, v)) {
                    out.add(r, rail.id());
                }
            }
        }
    }
    out
}

/// What [`collect`] found.
#[derive(Default, Debug)]
pub struct Collected {
    /// Parsed credentials, in the order presented.
    pub creds: Vec<Credential>,
    /// Refusals for credentials that did not parse.
    pub malformed: Vec<Refusal>,
    /// Why the first credential of each rail that did not parse failed (its rail may answer it
    /// itself: a malformed OAuth token gets 400 `invalid_request`).
    pub first_errors: Vec<(RailId, CredentialParseError)>,
}

impl Collected {
    fn add(&mut self, r: Parsed, rail: RailId) {
        match r {
            Ok(c) => self.creds.push(c),
            Err(e) => {
                self.malformed
                    .push(crate::respond::malformed(rail, e.to_string()));
                if !self.first_errors.iter().any(|(r, _)| *r == rail) {
                    self.first_errors.push((rail, e));
                }
            }
        }
    }

    /// Why the first credential of `rail` that did not parse failed, if one did not.
    pub fn first_error(&self, rail: RailId) -> Option<&CredentialParseError> {
        self.first_errors
            .iter()
            .find(|(r, _)| *r == rail)
            .map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use turnpike_oauth::BearerCredential;

    /// The rails of a gateway with all three on (proof-of-work, L402, OAuth), at the edge.
    fn rails() -> Vec<Arc<dyn RailPlugin>> {
        let pow = Arc::new(turnpike_pow::PowRail::new(
            turnpike_pow::PowConfig::default(),
            turnpike_pow::KeyRing::from_secrets(vec![(1, [7; 32])]).unwrap(),
            Arc::new(turnpike_store::MemorySpentSet::new()),
        ));
        let dev =
            turnpike_lightning::dev::DevBackend::new(&turnpike_lightning::config::DevConfig {
                network: "regtest".into(),
                key_hex: None,
                custodial: false,
            })
            .unwrap();
        let l402 = Arc::new(turnpike_l402::L402Rail::new(
            Default::default(),
            Arc::new(dev),
            Arc::new(turnpike_l402::MemoryStore::new()),
            Arc::new(turnpike_store::MemorySpentSet::new()),
        ));
        let oauth = Arc::new(
            turnpike_oauth::OAuthRail::new(
                turnpike_oauth::OAuthConfig::new("https://auth.example.com")
                    .with_default_resource("https://mcp.example.com/mcp"),
                Arc::new(turnpike_store::MemorySpentSet::new()),
            )
            .unwrap(),
        );
        vec![pow, l402, oauth]
    }

    fn run(h: &HeaderMap, msg: &Message) -> Collected {
        let req = EdgeRequest {
            method: "POST",
            authority: Some("mcp.example.com"),
            target: "/mcp",
            public_url: None,
            body: b"",
            headers: &Lines(h),
        };
        collect(&rails(), &req, msg)
    }

    fn bearer(c: &Credential) -> Option<&BearerCredential> {
        c.payload::<BearerCredential>()
    }

    fn malformed_scheme(c: &Collected) -> Option<&'static str> {
        c.first_error(turnpike_oauth::RAIL)
            .map(|CredentialParseError::Malformed { scheme, .. }| *scheme)
    }

    #[test]
    fn lines_are_every_value_of_a_name_in_order_whatever_its_case() {
        let mut h = HeaderMap::new();
        h.append("dpop", HeaderValue::from_static("one"));
        h.append(header::HOST, HeaderValue::from_static("mcp.example.com"));
        h.append("dpop", HeaderValue::from_static("two"));
        h.append("dpop", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        h.append("x-dpop", HeaderValue::from_static("not it"));
        let lines = Lines(&h);
        assert_eq!(lines.lines("DPoP"), ["one", "two", "\u{0}"]);
        assert_eq!(lines.lines("dpop"), lines.lines("DPOP"));
        assert!(lines.lines("macaroon").is_empty());
    }

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
        let c = run(&h, &msg);
        let (creds, bad) = (&c.creds, &c.malformed);
        assert_eq!(creds.len(), 3);
        assert_eq!(
            bearer(&creds[0]),
            Some(&BearerCredential {
                token: "tok".into(),
                dpop: None
            })
        );
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].reason.contains("missing solution"), "{bad:?}");
        assert_eq!(bad[1].rail, turnpike_l402::RAIL);
        assert_eq!(bad[2].rail, turnpike_l402::RAIL);
        assert_eq!(malformed_scheme(&c), None);
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
        let c = run(&h, &msg);
        assert_eq!(c.creds.len(), 1);
        assert_eq!(
            bearer(&c.creds[0]),
            Some(&BearerCredential {
                token: "a.b.c".into(),
                dpop: Some("p.q.r".into())
            })
        );
        h.append("dpop", HeaderValue::from_static("x.y.z"));
        let c = run(&h, &msg);
        assert!(c.creds.is_empty());
        assert_eq!(malformed_scheme(&c), Some("DPoP"));
        assert_eq!(c.malformed[0].rail, turnpike_oauth::RAIL);
        let mut h = HeaderMap::new();
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer not a token"),
        );
        let c = run(&h, &msg);
        assert_eq!(malformed_scheme(&c), Some("Bearer"));
    }
}
