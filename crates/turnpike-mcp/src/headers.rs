//! The two protocol eras and the routing headers of MCP 2026-07-28.
//!
//! The `MCP-Protocol-Version` request header names the protocol revision a client speaks. Up to
//! 2025-11-25 (the *session* era), the header is informational for the gate. From 2026-07-28
//! (the *routing-header* era) every POST also mirrors its body in headers, so that load
//! balancers and gateways can route without reading the body:
//!
//! - `Mcp-Method` must be present on every request and notification and equal the body's
//!   `method` exactly;
//! - `Mcp-Name` must be present when the body names an object (`params.name` of `tools/call` and
//!   `prompts/get`, `params.uri` of `resources/read`, `resources/subscribe` and
//!   `resources/unsubscribe`; `params.taskId` of the tasks extension's `tasks/get`,
//!   `tasks/update` and `tasks/cancel`) and equal it exactly; it must be absent otherwise;
//! - `MCP-Protocol-Version` must equal the version the body declares in
//!   `params._meta["io.modelcontextprotocol/protocolVersion"]`, when it declares one;
//! - a value that cannot travel as plain visible ASCII arrives as `=?base64?<standard Base64 of
//!   the UTF-8 bytes>?=` and is decoded before the comparison;
//! - each of these headers may appear once.
//!
//! Header names match case-insensitively (HTTP), values exactly. A failure is a
//! [`HeaderMismatch`] (HTTP 400, JSON-RPC -32020). A gate that priced the body while an
//! intermediary routed on disagreeing headers would be a confused deputy, so disagreement is
//! refused rather than tolerated.

use base64::Engine;
use http::{HeaderMap, HeaderName};

use crate::classify::call_name;
use crate::messages::META_PROTOCOL_VERSION;
use crate::Message;

/// The first protocol revision with routing headers and without sessions.
pub const ROUTING_HEADERS_VERSION: &str = "2026-07-28";

/// The `MCP-Protocol-Version` header.
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// The `Mcp-Method` header.
pub const MCP_METHOD: &str = "mcp-method";
/// The `Mcp-Name` header.
pub const MCP_NAME: &str = "mcp-name";
/// The `Mcp-Session-Id` header.
pub const SESSION_ID: &str = "mcp-session-id";

// The same names parsed once, for lookups (a lookup by a string parses the name first).
static PROTOCOL_VERSION_NAME: HeaderName = HeaderName::from_static(PROTOCOL_VERSION);
static MCP_METHOD_NAME: HeaderName = HeaderName::from_static(MCP_METHOD);
static MCP_NAME_NAME: HeaderName = HeaderName::from_static(MCP_NAME);

const B64_PREFIX: &str = "=?base64?";
const B64_SUFFIX: &str = "?=";

/// Which protocol era a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// No `MCP-Protocol-Version`, or a revision before 2026-07-28: sessions, no routing headers.
    Session,
    /// 2026-07-28 or later: routing headers are required and checked against the body.
    RoutingHeaders,
}

/// Routing headers that are missing, malformed or contradict the body (JSON-RPC -32020).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header mismatch: {reason}")]
pub struct HeaderMismatch {
    /// What is wrong, safe to show the caller.
    pub reason: String,
}

impl HeaderMismatch {
    fn new(reason: impl Into<String>) -> Self {
        HeaderMismatch {
            reason: reason.into(),
        }
    }
}

/// The era of a request, from its `MCP-Protocol-Version` header. A repeated header, or one that
/// is not visible ASCII, is a [`HeaderMismatch`]. A value that is not a revision date before
/// 2026-07-28 (a later date, or a version this gate does not know, such as `v999`) counts as
/// [`Era::RoutingHeaders`]: its routing headers are checked, and the upstream, not the gate,
/// says whether it speaks that version.
pub fn era(headers: &HeaderMap) -> Result<Era, HeaderMismatch> {
    Ok(era_of(single(headers, &PROTOCOL_VERSION_NAME)?))
}

/// The era a request's `MCP-Protocol-Version` value (if any) puts it in.
fn era_of(version: Option<&str>) -> Era {
    match version {
        // ISO dates of one fixed width order as strings.
        Some(v) if !(is_date(v) && v < ROUTING_HEADERS_VERSION) => Era::RoutingHeaders,
        _ => Era::Session,
    }
}

/// Checks the routing headers of a POST against its body (see the module docs), and the
/// `MCP-Protocol-Version` header against the version the body declares in
/// `params._meta["io.modelcontextprotocol/protocolVersion"]`: when the body declares one, the
/// header must be present and equal to it (a body declaring 2026-07-28 or later without the
/// header is refused; a legacy body declaring nothing is not affected).
pub fn check_routing_headers(headers: &HeaderMap, msg: &Message) -> Result<(), HeaderMismatch> {
    let header_version = single(headers, &PROTOCOL_VERSION_NAME)?;
    let body_version = msg
        .value()
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(serde_json::Value::as_str);
    match (header_version, body_version) {
        (Some(h), Some(b)) if h != b => {
            return Err(HeaderMismatch::new(
                "MCP-Protocol-Version header does not match the body's _meta protocolVersion",
            ))
        }
        (None, Some(b)) if is_date(b) && b >= ROUTING_HEADERS_VERSION => {
            return Err(HeaderMismatch::new("missing MCP-Protocol-Version header"))
        }
        _ => {}
    }
    if era_of(header_version) == Era::Session {
        return Ok(());
    }
    let Some(method) = msg.method() else {
        // A response carries no method and no name; nothing to mirror.
        return Ok(());
    };
    match single(headers, &MCP_METHOD_NAME)? {
        None => return Err(HeaderMismatch::new("missing Mcp-Method header")),
        Some(h) if h != method => {
            return Err(HeaderMismatch::new(
                "Mcp-Method header does not match the body's method",
            ))
        }
        Some(_) => {}
    }
    match (single(headers, &MCP_NAME_NAME)?, routing_name(msg)) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(HeaderMismatch::new("missing Mcp-Name header")),
        (Some(_), None) => Err(HeaderMismatch::new(
            "Mcp-Name header present but the body names no tool, prompt or resource",
        )),
        (Some(raw), Some(name)) => {
            let decoded = decode_header_value(raw)
                .ok_or_else(|| HeaderMismatch::new("Mcp-Name header is not valid Base64"))?;
            if decoded == name {
                Ok(())
            } else {
                Err(HeaderMismatch::new(
                    "Mcp-Name header does not match the body's name",
                ))
            }
        }
    }
}

/// Methods of the tasks extension (SEP-2663) whose `Mcp-Name` mirrors `params.taskId`.
pub const TASK_ID_METHODS: &[&str] = &["tasks/get", "tasks/update", "tasks/cancel"];

/// The body value `Mcp-Name` mirrors: the tool, prompt or resource a request acts on
/// ([`call_name`]), or the `taskId` of a tasks-extension request ([`TASK_ID_METHODS`]). Only
/// the header check uses the task id; pricing and limits see [`call_name`].
pub fn routing_name(msg: &Message) -> Option<&str> {
    if let Some(name) = call_name(msg) {
        return Some(name);
    }
    if TASK_ID_METHODS.contains(&msg.method()?) {
        return msg
            .params()?
            .get("taskId")
            .and_then(serde_json::Value::as_str);
    }
    None
}

/// Decodes a routing-header value: `=?base64?…?=` is standard Base64 of UTF-8 bytes (padding
/// optional); any other value is itself. `None` when the Base64 or the UTF-8 is invalid.
pub fn decode_header_value(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let Some(inner) = raw
        .strip_prefix(B64_PREFIX)
        .and_then(|r| r.strip_suffix(B64_SUFFIX))
    else {
        return Some(std::borrow::Cow::Borrowed(raw));
    };
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(inner).ok()?;
    String::from_utf8(bytes).ok().map(std::borrow::Cow::Owned)
}

/// Encodes a routing-header value: plain when it is visible ASCII without surrounding
/// whitespace and does not look like the Base64 form, else `=?base64?…?=`.
pub fn encode_header_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with(B64_PREFIX) && value.ends_with(B64_SUFFIX));
    if plain || value.is_empty() {
        value.to_owned()
    } else {
        format!(
            "{B64_PREFIX}{}{B64_SUFFIX}",
            base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
        )
    }
}

/// The one value of a header that may appear at most once; a repeat or a value that is not
/// visible ASCII is a mismatch.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &'static HeaderName,
) -> Result<Option<&'a str>, HeaderMismatch> {
    let mut it = headers.get_all(name).iter();
    let Some(first) = it.next() else {
        return Ok(None);
    };
    if it.next().is_some() {
        return Err(HeaderMismatch::new(format!("repeated {name} header")));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| HeaderMismatch::new(format!("{name} header is not visible ASCII")))
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_message;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn call(name: &str) -> Message {
        let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name}});
        parse_message(body.to_string().as_bytes()).unwrap()
    }

    const NEW: (&str, &str) = ("MCP-Protocol-Version", "2026-07-28");

    #[test]
    fn eras() {
        assert_eq!(era(&headers(&[])).unwrap(), Era::Session);
        assert_eq!(
            era(&headers(&[("mcp-protocol-version", "2025-11-25")])).unwrap(),
            Era::Session
        );
        assert_eq!(era(&headers(&[NEW])).unwrap(), Era::RoutingHeaders);
        assert_eq!(
            era(&headers(&[("MCP-PROTOCOL-VERSION", "2027-01-01")])).unwrap(),
            Era::RoutingHeaders
        );
        // A version the gate does not know: checked as strictly as 2026-07-28.
        assert_eq!(
            era(&headers(&[("mcp-protocol-version", "latest")])).unwrap(),
            Era::RoutingHeaders
        );
        assert_eq!(
            era(&headers(&[("mcp-protocol-version", "2026-7-28")])).unwrap(),
            Era::RoutingHeaders
        );
        assert!(era(&headers(&[NEW, NEW])).is_err());
    }

    #[test]
    fn session_era_ignores_routing_headers() {
        let h = headers(&[("Mcp-Method", "other"), ("Mcp-Name", "x")]);
        check_routing_headers(&h, &call("echo")).unwrap();
    }

    #[test]
    fn routing_headers_must_match() {
        let ok = headers(&[NEW, ("mcp-method", "tools/call"), ("MCP-NAME", "echo")]);
        check_routing_headers(&ok, &call("echo")).unwrap();

        let cases: &[&[(&str, &str)]] = &[
            &[NEW, ("Mcp-Name", "echo")],
            &[NEW, ("Mcp-Method", "tools/call")],
            &[NEW, ("Mcp-Method", "tools/list"), ("Mcp-Name", "echo")],
            &[NEW, ("Mcp-Method", "Tools/Call"), ("Mcp-Name", "echo")],
            &[NEW, ("Mcp-Method", "tools/call"), ("Mcp-Name", "Echo")],
            &[NEW, ("Mcp-Method", "tools/call"), ("Mcp-Name", "echo ")],
            &[
                NEW,
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "echo"),
                ("Mcp-Name", "echo"),
            ],
            &[
                NEW,
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "=?base64?!!?="),
            ],
        ];
        for c in cases {
            let e = check_routing_headers(&headers(c), &call("echo")).unwrap_err();
            assert!(e.to_string().starts_with("header mismatch: "), "{c:?}");
        }
    }

    #[test]
    fn version_header_must_match_the_body() {
        let with_meta = |v: &str| {
            let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/list",
                "params":{"_meta":{META_PROTOCOL_VERSION: v}}});
            parse_message(body.to_string().as_bytes()).unwrap()
        };
        let routed =
            |v: &str| headers(&[("MCP-Protocol-Version", v), ("Mcp-Method", "tools/list")]);
        check_routing_headers(&routed("2026-07-28"), &with_meta("2026-07-28")).unwrap();
        // An unknown version on both sides is the upstream's to refuse, not a mismatch.
        check_routing_headers(&routed("v999.0.0"), &with_meta("v999.0.0")).unwrap();
        for (h, b) in [
            ("2026-07-28", "v999.0.0"),
            ("v999.0.0", "2026-07-28"),
            ("2025-11-25", "2026-07-28"),
        ] {
            let e = check_routing_headers(&routed(h), &with_meta(b)).unwrap_err();
            assert!(e.reason.contains("protocolVersion"), "{h} / {b}: {e}");
        }
        // A body declaring 2026-07-28 needs the header; a legacy body declaring nothing does not.
        let e = check_routing_headers(
            &headers(&[("Mcp-Method", "tools/list")]),
            &with_meta("2026-07-28"),
        )
        .unwrap_err();
        assert_eq!(e.reason, "missing MCP-Protocol-Version header");
        check_routing_headers(&headers(&[]), &call("echo")).unwrap();
    }

    #[test]
    fn task_ids_are_routing_names() {
        let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t-1"}});
        let msg = parse_message(body.to_string().as_bytes()).unwrap();
        assert_eq!(routing_name(&msg), Some("t-1"));
        assert_eq!(call_name(&msg), None);
        let ok = headers(&[NEW, ("Mcp-Method", "tasks/get"), ("Mcp-Name", "t-1")]);
        check_routing_headers(&ok, &msg).unwrap();
        for bad in [
            &[NEW, ("Mcp-Method", "tasks/get")][..],
            &[NEW, ("Mcp-Method", "tasks/get"), ("Mcp-Name", "t-2")][..],
        ] {
            check_routing_headers(&headers(bad), &msg).unwrap_err();
        }
    }

    #[test]
    fn base64_names() {
        let name = "wetter-\u{e4}rger";
        let enc = encode_header_value(name);
        assert!(enc.starts_with("=?base64?") && enc.ends_with("?="));
        assert_eq!(decode_header_value(&enc).unwrap(), name);
        let h = headers(&[NEW, ("Mcp-Method", "tools/call"), ("Mcp-Name", &enc)]);
        check_routing_headers(&h, &call(name)).unwrap();
        // The spec's own example: a literal that looks like the sentinel is itself encoded.
        assert_eq!(
            decode_header_value("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").unwrap(),
            "=?base64?literal?="
        );
        assert_eq!(
            encode_header_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
        assert_eq!(encode_header_value("plain"), "plain");
        assert_eq!(encode_header_value(" lead"), "=?base64?IGxlYWQ=?=");
        assert_eq!(decode_header_value("=?base64?IGxlYWQ?=").unwrap(), " lead");
    }

    #[test]
    fn names_on_other_methods() {
        let list = parse_message(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        check_routing_headers(&headers(&[NEW, ("Mcp-Method", "tools/list")]), &list).unwrap();
        assert!(check_routing_headers(
            &headers(&[NEW, ("Mcp-Method", "tools/list"), ("Mcp-Name", "x")]),
            &list
        )
        .is_err());
        let read = parse_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}"#,
        )
        .unwrap();
        check_routing_headers(
            &headers(&[
                NEW,
                ("Mcp-Method", "resources/read"),
                ("Mcp-Name", "file:///a b"),
            ]),
            &read,
        )
        .unwrap();
        let note =
            parse_message(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(check_routing_headers(&headers(&[NEW]), &note).is_err());
        let resp = parse_message(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        check_routing_headers(&headers(&[NEW]), &resp).unwrap();
    }
}
