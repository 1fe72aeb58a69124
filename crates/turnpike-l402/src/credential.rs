//! L402 credentials as callers present them, parsed into a [`turnpike_core::Credential`]
//! holding an [`L402Credential`].
//!
//! - `Authorization: L402 <base64 macaroon>:<hex preimage>` — the scheme is matched in any case,
//!   `LSAT` is accepted as the old name, and the parameters may also be written
//!   `token=<macaroon>:<preimage>` (quoted or not) or `macaroon="…", preimage="…"`. Call
//!   [`parse_authorization`] with the scheme and the rest of the header value
//!   (`turnpike_core::credential::split_scheme` splits them); it answers `None` for other schemes.
//! - `Macaroon: <macaroon>` (hex or base64) whose caveats include Aperture's
//!   `preimage=<hex>` — the form that lets L402 travel beside an OAuth `Authorization` header:
//!   [`parse_macaroon_header`].
//! - `params._meta["turnpike/l402"] = {"macaroon": "<base64>", "preimage": "<hex>"}` (or the
//!   string `"<macaroon>:<preimage>"`): [`parse_meta`] takes the value under that key.
//!
//! Parsing checks shape only (base64 and the V2 binary, 32-byte hex preimage); the rail checks
//! everything else.

use serde_json::Value;
use turnpike_core::credential::{parse_auth_params, CredentialParseError};
use turnpike_core::Credential;

use crate::caveat::PREIMAGE;
use crate::macaroon::{decode_base64, Limits, Macaroon};

/// The `_meta` key of an L402 credential.
pub const META_L402: &str = "turnpike/l402";

/// The `Macaroon` request header (L402 beside an OAuth `Authorization`).
pub const MACAROON_HEADER: &str = "macaroon";

/// An L402 macaroon (raw bytes) with the preimage of the invoice it was paid by.
#[derive(Clone, PartialEq, Eq)]
pub struct L402Credential {
    /// The macaroon, decoded from base64.
    pub macaroon: Vec<u8>,
    /// The 32-byte payment preimage, decoded from hex.
    pub preimage: Vec<u8>,
}

/// A secret: its `Debug` form says nothing of it.
impl std::fmt::Debug for L402Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("L402Credential(<redacted>)")
    }
}

impl From<L402Credential> for Credential {
    fn from(c: L402Credential) -> Credential {
        Credential::new(crate::offer::RAIL, c)
    }
}

fn bad(reason: impl Into<String>) -> CredentialParseError {
    CredentialParseError::Malformed {
        scheme: "L402",
        reason: reason.into(),
    }
}

fn preimage(hexstr: &str) -> Result<Vec<u8>, CredentialParseError> {
    let mut p = [0u8; 32];
    hex::decode_to_slice(hexstr.trim(), &mut p)
        .map_err(|_| bad("preimage must be 64 hex digits"))?;
    Ok(p.to_vec())
}

/// Decodes a base64 macaroon and checks it is a well-formed V2 macaroon; returns its bytes.
fn macaroon_bytes(b64: &str) -> Result<Vec<u8>, CredentialParseError> {
    let limits = Limits::default();
    let bytes =
        decode_base64(b64.trim(), limits.max_bytes).map_err(|_| bad("macaroon is not base64"))?;
    Macaroon::decode(&bytes, limits).map_err(|e| bad(e.to_string()))?;
    Ok(bytes)
}

fn from_pair(mac: &str, pre: &str) -> Result<Credential, CredentialParseError> {
    Ok(Credential::from(L402Credential {
        macaroon: macaroon_bytes(mac)?,
        preimage: preimage(pre)?,
    }))
}

/// Splits `<macaroon>:<preimage>` at the last colon (base64 has none).
fn split_token(token: &str) -> Result<Credential, CredentialParseError> {
    let (mac, pre) = token
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| bad("expected <macaroon>:<preimage>"))?;
    if mac.contains(',') {
        return Err(bad("only one macaroon is accepted"));
    }
    from_pair(mac, pre)
}

/// Parses the credential of an `Authorization` header whose scheme is `scheme` and whose
/// parameters are `params`. Returns `None` when the scheme is not `L402` or `LSAT` (any case).
pub fn parse_authorization(
    scheme: &str,
    params: &str,
) -> Option<Result<Credential, CredentialParseError>> {
    if !scheme.eq_ignore_ascii_case("L402") && !scheme.eq_ignore_ascii_case("LSAT") {
        return None;
    }
    let params = params.trim();
    Some(parse_l402_params(params))
}

fn parse_l402_params(params: &str) -> Result<Credential, CredentialParseError> {
    if params.is_empty() {
        return Err(bad("empty credential"));
    }
    let lower = params.get(..6).map(str::to_ascii_lowercase);
    let looks_like_params = lower.as_deref() == Some("token=")
        || params
            .get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("macaroon="));
    if !looks_like_params {
        return split_token(params);
    }
    // `token=a:b` unquoted is not a valid auth-param value (':' is not a token character),
    // so take it verbatim.
    if lower.as_deref() == Some("token=") && !params[6..].starts_with('"') {
        return split_token(&params[6..]);
    }
    let pairs = parse_auth_params(params).ok_or_else(|| bad("not an auth-param list"))?;
    let get = |name: &str| -> Result<Option<&str>, CredentialParseError> {
        let mut it = pairs.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(bad(format!("{name} appears twice")));
        }
        Ok(first)
    };
    if let Some(token) = get("token")? {
        return split_token(token);
    }
    match (get("macaroon")?, get("preimage")?) {
        (Some(m), Some(p)) => from_pair(m, p),
        _ => Err(bad("expected token=, or macaroon= and preimage=")),
    }
}

/// Parses a `Macaroon` header: a macaroon (hex or base64) carrying a `preimage=<hex>` caveat.
pub fn parse_macaroon_header(value: &str) -> Result<Credential, CredentialParseError> {
    let v = value.trim();
    let limits = Limits::default();
    let bytes = if !v.is_empty() && v.len() % 2 == 0 && v.bytes().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(v).map_err(|_| bad("macaroon is not hex"))?
    } else {
        decode_base64(v, limits.max_bytes).map_err(|_| bad("macaroon is neither hex nor base64"))?
    };
    let mac = Macaroon::decode(&bytes, limits).map_err(|e| bad(e.to_string()))?;
    let prefix = format!("{PREIMAGE}=");
    let mut found = None;
    for c in mac.caveats() {
        if let Some(rest) = c.id.strip_prefix(prefix.as_bytes()) {
            if found.is_some() {
                return Err(bad("more than one preimage caveat"));
            }
            let s = std::str::from_utf8(rest).map_err(|_| bad("preimage caveat is not text"))?;
            found = Some(preimage(s)?);
        }
    }
    let preimage = found.ok_or_else(|| bad("the Macaroon header form needs a preimage caveat"))?;
    Ok(Credential::from(L402Credential {
        macaroon: bytes,
        preimage,
    }))
}

/// Parses the value of `params._meta["turnpike/l402"]`: `{"macaroon": "<base64>", "preimage":
/// "<hex>"}`, or the string `"<macaroon>:<preimage>"`.
pub fn parse_meta(value: &Value) -> Result<Credential, CredentialParseError> {
    match value {
        Value::String(s) => split_token(s),
        Value::Object(o) => {
            let mac = o
                .get("macaroon")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("missing macaroon"))?;
            let pre = o
                .get("preimage")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("missing preimage"))?;
            from_pair(mac, pre)
        }
        _ => Err(bad("turnpike/l402 must be an object or a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_core::credential::split_scheme;

    fn mac() -> Macaroon {
        let mut m = Macaroon::new(b"k", vec![1u8; 66], "turnpike");
        m.add_first_party_caveat("turnpike/mode=per_call");
        m
    }

    fn expect(c: Result<Credential, CredentialParseError>, m: &Macaroon, p: [u8; 32]) {
        match c.as_ref().map(|c| c.payload::<L402Credential>()) {
            Ok(Some(L402Credential { macaroon, preimage })) => {
                assert_eq!(macaroon, &m.encode());
                assert_eq!(preimage, &p.to_vec());
            }
            _ => panic!("{c:?}"),
        }
    }

    #[test]
    fn authorization_forms() {
        let m = mac();
        let p = [0xab; 32];
        let b64 = m.to_base64();
        let url = b64.replace('+', "-").replace('/', "_");
        let ph = hex::encode(p);
        for header in [
            format!("L402 {b64}:{ph}"),
            format!("l402 {b64}:{}", ph.to_uppercase()),
            format!("LSAT {b64}:{ph}"),
            format!("lsat   {}:{ph}", b64.trim_end_matches('=')),
            format!("L402 {url}:{ph}"),
            format!("L402 token={b64}:{ph}"),
            format!("L402 token=\"{b64}:{ph}\""),
            format!("L402 macaroon=\"{b64}\", preimage=\"{ph}\""),
        ] {
            let (scheme, params) = split_scheme(&header);
            expect(parse_authorization(scheme, params).unwrap(), &m, p);
        }
        assert!(parse_authorization("Bearer", "x").is_none());
        assert!(parse_authorization("PoW", "challenge=\"x\"").is_none());
        for bad_params in [
            "".to_string(),
            b64.clone(),
            format!("{b64}:{}", &ph[..62]),
            format!("{b64}:zz{}", &ph[2..]),
            format!("AAAA:{ph}"),
            format!("{b64},{b64}:{ph}"),
            format!("macaroon=\"{b64}\""),
            format!("token=\"{b64}:{ph}\", token=\"{b64}:{ph}\""),
        ] {
            assert!(
                parse_authorization("L402", &bad_params).unwrap().is_err(),
                "{bad_params}"
            );
        }
    }

    #[test]
    fn macaroon_header_form() {
        let p = [0x11; 32];
        let mut m = mac();
        m.add_first_party_caveat(format!("preimage={}", hex::encode(p)));
        expect(parse_macaroon_header(&hex::encode(m.encode())), &m, p);
        expect(parse_macaroon_header(&m.to_base64()), &m, p);
        assert!(parse_macaroon_header(&mac().to_base64()).is_err());
        let mut twice = m.clone();
        twice.add_first_party_caveat(format!("preimage={}", hex::encode(p)));
        assert!(parse_macaroon_header(&twice.to_base64()).is_err());
        assert!(parse_macaroon_header("zz").is_err());
    }

    #[test]
    fn meta_forms() {
        let m = mac();
        let p = [0x22; 32];
        expect(
            parse_meta(&serde_json::json!({"macaroon": m.to_base64(), "preimage": hex::encode(p)})),
            &m,
            p,
        );
        expect(
            parse_meta(&serde_json::json!(format!(
                "{}:{}",
                m.to_base64(),
                hex::encode(p)
            ))),
            &m,
            p,
        );
        assert!(parse_meta(&serde_json::json!({"macaroon": m.to_base64()})).is_err());
        assert!(parse_meta(&serde_json::json!(42)).is_err());
    }
}
