//! Credentials, parsed at the edge.
//!
//! The gateway collects what a caller presented (the `Authorization` header lines, the
//! `Macaroon` header, the `DPoP` proof, the `turnpike/*` keys of `params._meta`) and parses each
//! into a [`Credential`]; past the edge no code reads raw header strings.

use serde::{Deserialize, Serialize};

use crate::RailKind;

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// An HTTP header.
    Header,
    /// The request's `params._meta`.
    Meta,
}

/// A proof-of-work solution: the challenge it solves and one nonce per sub-puzzle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowCredential {
    /// The challenge token exactly as the gateway issued it (base64url, no padding).
    pub challenge: String,
    /// One nonce per sub-puzzle, in order.
    pub solution: Vec<u64>,
}

/// One credential a caller presented.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A proof-of-work solution.
    Pow(PowCredential),
    /// An L402 macaroon (raw bytes) with the preimage of the invoice it was paid by.
    L402 {
        /// The macaroon, decoded from base64.
        macaroon: Vec<u8>,
        /// The 32-byte payment preimage, decoded from hex.
        preimage: Vec<u8>,
    },
    /// An OAuth access token, with its DPoP proof when presented under the `DPoP` scheme.
    Bearer {
        /// The access token as presented.
        token: String,
        /// The `DPoP` header's proof JWT, when the token came under the `DPoP` scheme.
        dpop: Option<String>,
    },
}

impl Credential {
    /// The rail that verifies this credential.
    pub fn rail(&self) -> RailKind {
        match self {
            Credential::Pow(_) => RailKind::Pow,
            Credential::L402 { .. } => RailKind::L402,
            Credential::Bearer { .. } => RailKind::OAuth,
        }
    }
}

/// Credentials are secrets: their `Debug` form says what kind they are and nothing else.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Pow(p) => write!(f, "Credential::Pow({} nonces)", p.solution.len()),
            Credential::L402 { .. } => f.write_str("Credential::L402(<redacted>)"),
            Credential::Bearer { dpop, .. } => write!(
                f,
                "Credential::Bearer(<redacted>, dpop: {})",
                dpop.is_some()
            ),
        }
    }
}

/// Why a presented credential could not even be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialParseError {
    /// The credential's syntax is wrong.
    #[error("malformed {scheme} credential: {reason}")]
    Malformed {
        /// The scheme or carrier it came under (`PoW`, `L402`, `_meta`, …).
        scheme: &'static str,
        /// What is wrong with it, safe to show the caller.
        reason: String,
    },
}

/// Parses RFC 9110 `auth-param` lists (`a="x", b=y`) into pairs. Names are lower-cased; quoted
/// values are unescaped. Returns `None` on a syntax error.
pub fn parse_auth_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            return Some(out);
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let name = s[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = Vec::new();
            loop {
                if i >= b.len() {
                    return None;
                }
                match b[i] {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' if i + 1 < b.len() => {
                        v.push(b[i + 1]);
                        i += 2;
                    }
                    c => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).ok()?
        } else {
            let start = i;
            while i < b.len() && (is_tchar(b[i]) || b[i] == b'/' || b[i] == b'=') {
                i += 1;
            }
            s[start..i].to_string()
        };
        out.push((name, value));
        skip_ws(&mut i);
        if i < b.len() {
            if b[i] != b',' {
                return None;
            }
            i += 1;
        }
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Splits an `Authorization` header value into its scheme and the rest.
pub fn split_scheme(value: &str) -> (&str, &str) {
    let v = value.trim();
    match v.find([' ', '\t']) {
        Some(i) => (&v[..i], v[i..].trim_start()),
        None => (v, ""),
    }
}

/// Parses the parameters of `Authorization: PoW challenge="…", solution="n0,n1,…"`.
pub fn parse_pow_params(params: &str) -> Result<PowCredential, CredentialParseError> {
    let bad = |reason: &str| CredentialParseError::Malformed {
        scheme: "PoW",
        reason: reason.to_string(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_params() {
        let p = parse_auth_params(r#"challenge="ab\"c", solution=1,2 , x=y"#);
        assert_eq!(
            p, None,
            "an unquoted value cannot hold a comma-separated list"
        );
        let p = parse_auth_params(r#"Challenge="ab\"c", solution="1,2" , x=y"#).unwrap();
        assert_eq!(
            p,
            vec![
                ("challenge".into(), "ab\"c".into()),
                ("solution".into(), "1,2".into()),
                ("x".into(), "y".into())
            ]
        );
        assert_eq!(parse_auth_params(r#"a="unterminated"#), None);
        assert_eq!(parse_auth_params("=x"), None);
        assert_eq!(parse_auth_params(""), Some(vec![]));
    }

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

    #[test]
    fn debug_redacts() {
        let c = Credential::Bearer {
            token: "secret-token".into(),
            dpop: None,
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
