//! Request ids and W3C trace context, as an MCP gateway finds and forwards them.
//!
//! - **Request id**: the caller's `X-Request-Id` when it is a short token (1–64 characters of
//!   `A-Z a-z 0-9 - _ . :`), else 128 random bits in hex. It is written on the call's log line,
//!   sent to the upstream as `X-Request-Id` and returned to the caller in the same header.
//! - **Trace context** ([W3C Trace Context](https://www.w3.org/TR/trace-context/)): the
//!   `traceparent` header, or, when the request has none, `params._meta.traceparent` (where MCP
//!   clients carry OpenTelemetry context inside the message, SEP-414). A valid one is logged
//!   (trace id and parent id). Malformed values are ignored (neither logged nor added).
//! - **Without `[telemetry]`** the context reaches the upstream unchanged: the header is
//!   forwarded as it came, and one found only in `_meta` is also set as the `traceparent`
//!   header (with `tracestate` when `_meta` has it) ([`propagate_meta`]). With `[telemetry]`
//!   the call's spans ([`crate::call::CallSpans`]) name the gateway's upstream span instead.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// The request-id header.
pub const REQUEST_ID: &str = "x-request-id";

/// [`REQUEST_ID`] as a parsed name (looked up and set on every call: a name given as a string
/// is parsed again each time).
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A parsed, valid `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// 16 lower-case hex digits, not all zero.
    pub parent_id: String,
    /// The trace flags byte (bit 0: sampled).
    pub flags: u8,
    /// The value as received (for forwarding).
    pub raw: String,
}

impl TraceParent {
    /// Parses a `traceparent` value: `version-traceid-parentid-flags`. Version `ff` is invalid;
    /// versions above `00` may carry more fields after the flags (kept in `raw`).
    pub fn parse(s: &str) -> Option<TraceParent> {
        let s = s.trim();
        if s.len() < 55 || s.len() > 512 {
            return None;
        }
        let b = s.as_bytes();
        let hex = |r: std::ops::Range<usize>| {
            b[r].iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        };
        if !hex(0..2) || b[2] != b'-' || !hex(3..35) || b[35] != b'-' || !hex(36..52) {
            return None;
        }
        if b[52] != b'-' || !hex(53..55) {
            return None;
        }
        let version = &s[0..2];
        if version == "ff" || (version == "00" && s.len() != 55) {
            return None;
        }
        if s.len() > 55 && b[55] != b'-' {
            return None;
        }
        let trace_id = &s[3..35];
        let parent_id = &s[36..52];
        if trace_id.bytes().all(|c| c == b'0') || parent_id.bytes().all(|c| c == b'0') {
            return None;
        }
        Some(TraceParent {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            flags: u8::from_str_radix(&s[53..55], 16).ok()?,
            raw: s.to_owned(),
        })
    }
}

/// Where a trace context was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceSource {
    /// The `traceparent` header.
    Header,
    /// `params._meta.traceparent` in the JSON-RPC request.
    Meta,
}

/// The trace context of a request: the `traceparent` header, else `params._meta.traceparent`.
pub fn find(headers: &HeaderMap, message: Option<&Value>) -> Option<(TraceParent, TraceSource)> {
    if let Some(tp) = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
    {
        return Some((tp, TraceSource::Header));
    }
    let meta = message?.get("params")?.get("_meta")?;
    let tp = TraceParent::parse(meta.get("traceparent")?.as_str()?)?;
    Some((tp, TraceSource::Meta))
}

/// Sets `traceparent` (and `tracestate`, when `_meta` has a sane one) on the upstream request
/// when the context came from `_meta` only.
pub fn propagate_meta(headers: &mut HeaderMap, tp: &TraceParent, message: Option<&Value>) {
    if headers.contains_key("traceparent") {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&tp.raw) {
        headers.insert("traceparent", v);
    }
    let state = message
        .and_then(|m| m.get("params")?.get("_meta")?.get("tracestate")?.as_str())
        .filter(|s| s.len() <= 512 && s.bytes().all(|c| (0x20..0x7f).contains(&c)));
    if let Some(v) = state.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert("tracestate", v);
    }
}

/// The caller's `X-Request-Id` when it is a short safe token, else a fresh random one.
pub fn request_id(headers: &HeaderMap) -> String {
    if let Some(v) = headers
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        if !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
        {
            return v.to_owned();
        }
    }
    let bits: u128 = rand::random();
    hex32(bits)
}

/// `bits` as 32 lowercase hex digits, written without the formatter (once per call).
fn hex32(bits: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, d) in out.iter_mut().enumerate() {
        *d = DIGITS[((bits >> (124 - 4 * i)) & 0xf) as usize];
    }
    // ASCII digits: always UTF-8.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tp = TraceParent::parse(TP).unwrap();
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id, "00f067aa0ba902b7");
        assert_eq!(tp.flags, 1);
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ab")
                .is_some()
        );
    }

    #[test]
    fn header_wins_over_meta_and_meta_is_propagated() {
        let other = "00-11111111111111111111111111111111-2222222222222222-00";
        let msg = json!({"params": {"_meta": {"traceparent": other, "tracestate": "k=v"}}});
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(TP));
        let (tp, src) = find(&h, Some(&msg)).unwrap();
        assert_eq!((tp.raw.as_str(), src), (TP, TraceSource::Header));
        let mut h = HeaderMap::new();
        let (tp, src) = find(&h, Some(&msg)).unwrap();
        assert_eq!((tp.raw.as_str(), src), (other, TraceSource::Meta));
        propagate_meta(&mut h, &tp, Some(&msg));
        assert_eq!(h["traceparent"], other);
        assert_eq!(h["tracestate"], "k=v");
    }

    #[test]
    fn hex_ids_are_the_formatters() {
        for bits in [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(hex32(bits), format!("{bits:032x}"));
        }
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        let a = request_id(&h);
        assert_eq!(a.len(), 32);
        assert_ne!(a, request_id(&h));
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("bad id with spaces"));
        assert_eq!(request_id(&h).len(), 32);
    }
}
