//! OAuth credentials at the edge: `Authorization: Bearer <token>` and
//! `Authorization: DPoP <token>` with its `DPoP: <proof>` header, parsed into a
//! [`Credential`] holding a [`BearerCredential`].
//!
//! The scheme survives parsing: `dpop: None` means the token came under `Bearer`, and
//! `dpop: Some(proof)` under `DPoP` — with an empty `proof` when the request had no `DPoP`
//! header, so the rail can answer with the proper DPoP error. More than one `DPoP` header is
//! malformed (RFC 9449 §4.3).

use http::HeaderMap;
use turnpike_core::credential::{split_scheme, CredentialParseError};
use turnpike_core::Credential;

use crate::dpop::MAX_PROOF_LEN;
use crate::jose::MAX_JWS_LEN;

/// An OAuth access token, with its DPoP proof when presented under the `DPoP` scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerCredential {
    /// The access token as presented.
    pub token: String,
    /// The `DPoP` header's proof JWT, when the token came under the `DPoP` scheme.
    pub dpop: Option<String>,
}

/// A secret: its `Debug` form says only whether a proof came with it.
impl std::fmt::Debug for BearerCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BearerCredential(<redacted>, dpop: {})",
            self.dpop.is_some()
        )
    }
}

impl From<BearerCredential> for Credential {
    fn from(c: BearerCredential) -> Credential {
        Credential::new(crate::offer::RAIL, c)
    }
}

/// RFC 9110 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn malformed(scheme: &'static str, reason: &str) -> CredentialParseError {
    CredentialParseError::Malformed {
        scheme,
        reason: reason.to_string(),
    }
}

/// Parses one `Authorization` value already split into `scheme` and `rest` (see
/// [`turnpike_core::credential::split_scheme`]), for the OAuth schemes. `dpop_proofs` are the
/// values of every `DPoP` header of the request.
///
/// Returns `None` when the scheme is neither `Bearer` nor `DPoP` (another rail's credential).
pub fn parse_authorization(
    scheme: &str,
    rest: &str,
    dpop_proofs: &[&str],
) -> Option<Result<Credential, CredentialParseError>> {
    let (name, dpop) = if scheme.eq_ignore_ascii_case("Bearer") {
        ("Bearer", false)
    } else if scheme.eq_ignore_ascii_case("DPoP") {
        ("DPoP", true)
    } else {
        return None;
    };
    let token = rest.trim();
    if token.is_empty() {
        return Some(Err(malformed(name, "missing token")));
    }
    if token.len() > MAX_JWS_LEN || !is_token68(token) {
        return Some(Err(malformed(name, "the token is not a token68 value")));
    }
    let proof = if dpop {
        match dpop_proofs {
            [] => Some(String::new()),
            [one] => {
                let one = one.trim();
                if one.len() > MAX_PROOF_LEN || !is_token68(one) {
                    return Some(Err(malformed(name, "the DPoP header is not a JWS")));
                }
                Some(one.to_string())
            }
            _ => return Some(Err(malformed(name, "more than one DPoP header"))),
        }
    } else {
        None
    };
    Some(Ok(Credential::from(BearerCredential {
        token: token.to_string(),
        dpop: proof,
    })))
}

/// Every OAuth credential of a request: one per `Authorization` line with the `Bearer` or
/// `DPoP` scheme, the `DPoP` proof attached to the latter. Lines that are not valid UTF-8/ASCII
/// or use other schemes are skipped.
pub fn credentials_from_headers(
    headers: &HeaderMap,
) -> Vec<Result<Credential, CredentialParseError>> {
    let proofs: Vec<&str> = headers
        .get_all("dpop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let proof_lines = headers.get_all("dpop").iter().count();
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, rest) = split_scheme(v);
            if proofs.len() != proof_lines && scheme.eq_ignore_ascii_case("DPoP") {
                return Some(Err(malformed("DPoP", "the DPoP header is not ASCII")));
            }
            parse_authorization(scheme, rest, &proofs)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The parsed token of a result, to compare.
    fn bearer(
        r: Option<Result<Credential, CredentialParseError>>,
    ) -> Option<Result<BearerCredential, CredentialParseError>> {
        r.map(|r| r.map(|c| c.payload::<BearerCredential>().cloned().unwrap()))
    }

    #[test]
    fn schemes() {
        assert_eq!(bearer(parse_authorization("PoW", "x", &[])), None);
        assert_eq!(
            bearer(parse_authorization("bearer", "abc.def-ghi~", &["p.q.r"])),
            Some(Ok(BearerCredential {
                token: "abc.def-ghi~".into(),
                dpop: None
            }))
        );
        assert_eq!(
            bearer(parse_authorization("DPoP", "abc", &["p.q.r"])),
            Some(Ok(BearerCredential {
                token: "abc".into(),
                dpop: Some("p.q.r".into())
            }))
        );
        assert_eq!(
            bearer(parse_authorization("dpop", "abc", &[])),
            Some(Ok(BearerCredential {
                token: "abc".into(),
                dpop: Some(String::new())
            }))
        );
        assert!(matches!(
            parse_authorization("DPoP", "abc", &["a", "b"]),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_authorization("Bearer", "", &[]),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_authorization("Bearer", "a b", &[]),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_authorization("Bearer", "a\"b", &[]),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_authorization("Bearer", "ab==", &[]),
            Some(Ok(_))
        ));
        assert!(matches!(
            parse_authorization("Bearer", "=", &[]),
            Some(Err(_))
        ));
    }

    #[test]
    fn from_headers() {
        let mut h = HeaderMap::new();
        h.append(
            "authorization",
            HeaderValue::from_static("PoW challenge=\"x\""),
        );
        h.append("authorization", HeaderValue::from_static("Bearer t1"));
        h.append("authorization", HeaderValue::from_static("DPoP t2"));
        h.append("dpop", HeaderValue::from_static("h.p.s"));
        let c = credentials_from_headers(&h);
        assert_eq!(c.len(), 2);
        assert_eq!(
            bearer(Some(c[1].clone())),
            Some(Ok(BearerCredential {
                token: "t2".into(),
                dpop: Some("h.p.s".into())
            }))
        );
        h.append("dpop", HeaderValue::from_static("h2.p.s"));
        let c = credentials_from_headers(&h);
        assert!(c[0].is_ok(), "Bearer ignores DPoP headers");
        assert!(c[1].is_err(), "two DPoP headers");
    }
}
