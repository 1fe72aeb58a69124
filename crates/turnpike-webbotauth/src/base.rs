//! The signature base of a request (RFC 9421 §2.5): one line per covered component,
//! `"<identifier>": <value>`, then the `"@signature-params"` line, joined by `\n` with no
//! trailing newline.
//!
//! Derived components: `@method`, `@authority`, `@scheme`, `@target-uri`, `@path`, `@query`,
//! `@request-target` and `@query-param;name=…`. Header fields by their lower-case name, values
//! trimmed and combined with `", "` (§2.1); with `;key="…"` one member of a dictionary field
//! (§2.1.2). The field parameters `sf`, `bs`, `req` and `tr` are refused, as are response-only
//! components (`@status`).

use http::{HeaderMap, Method};

use crate::sf::{
    parse_dictionary, serialize_inner_list, serialize_item, BareItem, InnerList, Item, Member,
    Params,
};

/// Why a signature base could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseError {
    /// A covered component is not a string.
    #[error("a covered component must be a string, found {0}")]
    NotAString(String),
    /// A component is covered twice.
    #[error("component {0} is covered more than once")]
    Duplicate(String),
    /// A component name has upper-case letters or is empty.
    #[error("component name {0:?} is not lower case")]
    NotLowerCase(String),
    /// `@signature-params` may not be covered.
    #[error("@signature-params may not be a covered component")]
    SignatureParamsCovered,
    /// A derived component this verifier does not know (or a response-only one).
    #[error("unsupported derived component {0}")]
    UnknownDerived(String),
    /// A component parameter this verifier does not support.
    #[error("unsupported parameter ;{param} on component {component}")]
    UnsupportedParameter {
        /// The component.
        component: String,
        /// The parameter.
        param: String,
    },
    /// A covered header field is absent from the request.
    #[error("covered header field {0} is absent from the request")]
    MissingField(String),
    /// A field covered with `;key` is not a dictionary.
    #[error("covered field {0} is not a structured dictionary")]
    NotADictionary(String),
    /// A field covered with `;key` has no such member.
    #[error("covered field {field} has no member {key}")]
    MissingMember {
        /// The field.
        field: String,
        /// The member's key.
        key: String,
    },
    /// `@query-param` without a `name`, or the named parameter absent.
    #[error("@query-param {0}")]
    QueryParam(&'static str),
    /// `@authority` or `@target-uri` is covered and the request has no authority (no
    /// absolute target, no `Host`).
    #[error("the request has no authority (no absolute target and no Host field)")]
    NoAuthority,
    /// A covered header field value is not visible ASCII.
    #[error("header field {0} holds bytes outside visible ASCII")]
    FieldNotAscii(String),
}

/// The parts of a request a signature base reads.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method.
    pub method: &'a Method,
    /// The scheme (`https`, `http`), as the server received the request.
    pub scheme: &'a str,
    /// The authority (`host[:port]`), from the request target or the `Host` field.
    pub authority: &'a str,
    /// The path, as received (`/` when empty).
    pub path: &'a str,
    /// The query without its `?`, if there is one.
    pub query: Option<&'a str>,
    /// The header fields.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestParts<'a> {
    /// Reads the parts of an `http` request received over `scheme`; the authority is the
    /// request target's when absolute, else the `Host` field's (empty when neither).
    pub fn from_request<B>(req: &'a http::Request<B>, scheme: &'a str) -> Self {
        let uri = req.uri();
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("");
        Self {
            method: req.method(),
            scheme,
            authority,
            path: uri.path(),
            query: uri.query(),
            headers: req.headers(),
        }
    }
}

/// Builds the signature base for `covered` (the inner list from `Signature-Input`, with its
/// parameters): the bytes that were signed.
pub fn signature_base(req: &RequestParts<'_>, covered: &InnerList) -> Result<Vec<u8>, BaseError> {
    let mut out = String::with_capacity(256);
    let mut seen: Vec<String> = Vec::with_capacity(covered.items.len());
    for item in &covered.items {
        let BareItem::String(name) = &item.bare else {
            let mut shown = String::new();
            serialize_item(&mut shown, item);
            return Err(BaseError::NotAString(shown));
        };
        let mut ident = String::new();
        serialize_item(&mut ident, item);
        if seen.contains(&ident) {
            return Err(BaseError::Duplicate(ident));
        }
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(BaseError::NotLowerCase(name.clone()));
        }
        let value = component_value(req, name, item)?;
        out.push_str(&ident);
        out.push_str(": ");
        out.push_str(&value);
        out.push('\n');
        seen.push(ident);
    }
    out.push_str("\"@signature-params\": ");
    serialize_inner_list(&mut out, covered);
    Ok(out.into_bytes())
}

fn component_value(req: &RequestParts<'_>, name: &str, item: &Item) -> Result<String, BaseError> {
    if name == "@signature-params" {
        return Err(BaseError::SignatureParamsCovered);
    }
    if name == "@query-param" {
        return query_param(req, &item.params);
    }
    if let Some(BareItem::String(key)) = item.params.get("key") {
        if item.params.iter().count() == 1 && !name.starts_with('@') {
            return dictionary_member(req.headers, name, key);
        }
    }
    if let Some((param, _)) = item.params.iter().next() {
        return Err(BaseError::UnsupportedParameter {
            component: name.to_owned(),
            param: param.to_owned(),
        });
    }
    let path = if req.path.is_empty() { "/" } else { req.path };
    Ok(match name {
        "@method" => req.method.as_str().to_owned(),
        "@authority" if req.authority.is_empty() => return Err(BaseError::NoAuthority),
        "@authority" => authority(req),
        "@scheme" => req.scheme.to_ascii_lowercase(),
        "@target-uri" if req.authority.is_empty() => return Err(BaseError::NoAuthority),
        "@target-uri" => {
            // The target URI as received (RFC 9110 §7.1): unlike @authority, not normalized.
            let mut s = format!(
                "{}://{}{}",
                req.scheme.to_ascii_lowercase(),
                req.authority,
                path
            );
            if let Some(q) = req.query {
                s.push('?');
                s.push_str(q);
            }
            s
        }
        "@path" => path.to_owned(),
        "@query" => format!("?{}", req.query.unwrap_or("")),
        "@request-target" => match req.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        },
        _ if name.starts_with('@') => return Err(BaseError::UnknownDerived(name.to_owned())),
        _ => field_value(req.headers, name)?,
    })
}

/// `@authority`: lower-cased, without the scheme's default port (§2.2.3).
fn authority(req: &RequestParts<'_>) -> String {
    let lower = req.authority.to_ascii_lowercase();
    let default = match req.scheme.to_ascii_lowercase().as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    match lower.strip_suffix(default) {
        Some(stripped) if !default.is_empty() => stripped.to_owned(),
        _ => lower,
    }
}

/// A header field's values, each trimmed of surrounding spaces and tabs, joined by `", "`.
fn field_value(headers: &HeaderMap, name: &str) -> Result<String, BaseError> {
    let mut out = String::new();
    let mut any = false;
    for value in headers.get_all(name) {
        let bytes = value.as_bytes();
        if bytes
            .iter()
            .any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
        {
            return Err(BaseError::FieldNotAscii(name.to_owned()));
        }
        if any {
            out.push_str(", ");
        }
        any = true;
        let text = String::from_utf8_lossy(bytes);
        out.push_str(text.trim_matches(|c| c == ' ' || c == '\t'));
    }
    if any {
        Ok(out)
    } else {
        Err(BaseError::MissingField(name.to_owned()))
    }
}

/// `"<field>";key="<member>"` (§2.1.2): the field parsed as a dictionary, the named member
/// serialized again.
fn dictionary_member(headers: &HeaderMap, name: &str, key: &str) -> Result<String, BaseError> {
    let combined = field_value(headers, name)?;
    let dict = parse_dictionary(combined.as_bytes())
        .map_err(|_| BaseError::NotADictionary(name.to_owned()))?;
    let mut out = String::new();
    match dict.get(key) {
        Some(Member::Item(item)) => serialize_item(&mut out, item),
        Some(Member::InnerList(list)) => serialize_inner_list(&mut out, list),
        None => {
            return Err(BaseError::MissingMember {
                field: name.to_owned(),
                key: key.to_owned(),
            })
        }
    }
    Ok(out)
}

/// `@query-param;name="…"` (§2.2.8): the parameter of that (decoded) name, its value decoded
/// and percent-encoded again; a name the query repeats is refused.
fn query_param(req: &RequestParts<'_>, params: &Params) -> Result<String, BaseError> {
    let mut wanted = None;
    for (key, value) in params.iter() {
        match (key, value) {
            ("name", BareItem::String(n)) => wanted = Some(n.as_str()),
            _ => {
                return Err(BaseError::UnsupportedParameter {
                    component: "@query-param".to_owned(),
                    param: key.to_owned(),
                })
            }
        }
    }
    let wanted = wanted.ok_or(BaseError::QueryParam("needs a string name parameter"))?;
    let wanted = form_decode(wanted);
    let mut found = None;
    for pair in req.query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(k) == wanted {
            if found.is_some() {
                // RFC 9421 §2.2.8 would sign each occurrence on its own line; refused instead.
                return Err(BaseError::QueryParam("names a parameter the query repeats"));
            }
            found = Some(percent_encode(&form_decode(v)));
        }
    }
    found.ok_or(BaseError::QueryParam(
        "names a parameter the query does not have",
    ))
}

/// application/x-www-form-urlencoded decoding: `+` is a space, `%XX` a byte.
fn form_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes every byte but ASCII letters, digits and `*-._`.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
