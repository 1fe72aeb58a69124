//! Credentials, parsed at the edge.
//!
//! The gateway collects what a caller presented (the `Authorization` header lines, the headers
//! and `turnpike/*` keys of `params._meta` a rail reads) and has each rail parse its own into a
//! [`Credential`]; past the edge no code reads raw header strings. The auth-param helpers here
//! are shared by every rail's parser.

use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::Arc;

use crate::RailId;

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// An HTTP header.
    Header,
    /// The request's `params._meta`.
    Meta,
}

/// One credential a caller presented: the rail that verifies it and what that rail parsed,
/// which only that rail reads ([`Credential::payload`]). Parsing happens at the edge, in the
/// rail's own crate; past it no code reads raw header strings.
#[derive(Clone)]
pub struct Credential {
    rail: RailId,
    payload: Arc<dyn Any + Send + Sync>,
}

impl Credential {
    /// A credential for `rail` holding `payload`, the rail's own parsed form of it.
    pub fn new<T: Any + Send + Sync>(rail: RailId, payload: T) -> Credential {
        Credential {
            rail,
            payload: Arc::new(payload),
        }
    }

    /// The rail that verifies this credential.
    pub fn rail(&self) -> RailId {
        self.rail
    }

    /// The rail's parsed form, when it is a `T`.
    pub fn payload<T: Any>(&self) -> Option<&T> {
        self.payload.downcast_ref()
    }
}

/// Credentials are secrets: their `Debug` form names the rail and nothing else.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <redacted>)", self.rail)
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
            // Most quoted values hold no escape: taken whole, up to the closing quote.
            let plain = b[i..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\')
                .filter(|&n| b[i + n] == b'"');
            if let Some(n) = plain {
                let v = s[i..i + n].to_string();
                i += n + 1;
                v
            } else {
                // Grown as it fills: a line of many escaped values must not reserve the rest
                // of the line for each of them.
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
            }
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
    fn quoted_values_with_and_without_escapes() {
        let values = |s: &str| {
            parse_auth_params(s).map(|p| p.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
        };
        assert_eq!(values(r#"a="""#), Some(vec![String::new()]));
        assert_eq!(values(r#"a="café""#), Some(vec!["café".to_owned()]));
        assert_eq!(values(r#"a="x\\y""#), Some(vec![r"x\y".to_owned()]));
        assert_eq!(values(r#"a="\"""#), Some(vec!["\"".to_owned()]));
        assert_eq!(
            values(r#"a="\q", b="plain""#),
            Some(vec!["q".to_owned(), "plain".to_owned()])
        );
        assert_eq!(
            values(r#"a="plain", b="e\"s""#),
            Some(vec!["plain".to_owned(), "e\"s".to_owned()])
        );
        // Unterminated, with and without an escape; a backslash that ends the line.
        assert_eq!(values(r#"a="x\""#), None);
        assert_eq!(values(r#"a="abc\"#), None);
        assert_eq!(values(r#"a="abc"#), None);
    }

    #[test]
    fn escaped_values_hold_what_they_hold_not_the_rest_of_the_line() {
        // 4,000 escaped values on one line: each keeps about its own size, so the parsed list
        // stays near the line's size however many values the line carries.
        let line = (0..4000)
            .map(|i| format!(r#"p{i}="\x""#))
            .collect::<Vec<_>>()
            .join(",");
        let pairs = parse_auth_params(&line).unwrap();
        assert_eq!(pairs.len(), 4000);
        let held: usize = pairs.iter().map(|(_, v)| v.capacity()).sum();
        assert!(
            held < 64 * 4000,
            "values hold {held} bytes for a {}-byte line",
            line.len()
        );
    }

    #[test]
    fn debug_redacts() {
        let c = Credential::new(RailId::new("toy"), String::from("secret-token"));
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(c.rail(), RailId::new("toy"));
        assert_eq!(
            c.payload::<String>().map(String::as_str),
            Some("secret-token")
        );
        assert!(c.payload::<u64>().is_none());
    }
}
