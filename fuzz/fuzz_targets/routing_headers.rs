//! The MCP 2026-07-28 routing headers: `MCP-Protocol-Version` (era), `Mcp-Method` / `Mcp-Name`
//! against the body, and the `=?base64?…?=` value encoding.
//!
//! Input: header lines `name: value` up to the first empty line, then the body.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use turnpike_mcp::headers::{decode_header_value, encode_header_value};
use turnpike_mcp::{check_routing_headers, era, parse_message};

#[path = "common/headers.rs"]
mod headers;
use headers::split;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = split(data);
    let _ = era(&headers);
    for v in headers.values() {
        if let Ok(s) = v.to_str() {
            if let Some(d) = decode_header_value(s) {
                // What decodes re-encodes to a value that decodes to the same text.
                let enc = encode_header_value(&d);
                assert_eq!(decode_header_value(&enc).as_deref(), Some(&*d));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let enc = encode_header_value(text);
        assert!(
            HeaderValue::from_str(&enc).is_ok(),
            "an encoded value must be a valid header"
        );
        assert_eq!(decode_header_value(&enc).as_deref(), Some(text));
    }
    if let Ok(msg) = parse_message(body) {
        let _ = check_routing_headers(&headers, &msg);
    }
});
