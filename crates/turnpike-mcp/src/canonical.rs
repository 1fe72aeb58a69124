//! Canonical JSON of a call's arguments, and its hash.
//!
//! A proof-of-work challenge is bound to one call: its resource, method, name and a hash of its
//! arguments. Two encodings of the same arguments (keys in another order, other whitespace,
//! other escapes) must give the same hash, so the hash is taken over a canonical form:
//!
//! - objects: members sorted by key, comparing keys as sequences of UTF-16 code units (as
//!   RFC 8785, JSON Canonicalization Scheme, orders them); `{`, `}`, `:` and `,` with no
//!   whitespace;
//! - arrays: elements in order, `[`, `]` and `,` with no whitespace;
//! - strings: `"` and `\` escaped with a backslash; U+0008, U+0009, U+000A, U+000C and U+000D as
//!   `\b`, `\t`, `\n`, `\f`, `\r`; every other character below U+0020 as `\u00xx` (lower-case
//!   hex); every other character written as itself in UTF-8 (RFC 8785's string rules);
//! - numbers: as serde_json prints them (integers in decimal; other numbers in the shortest
//!   form that reads back to the same `f64`, e.g. `1.5`, `1e+100` becomes `1e100`). This differs
//!   from RFC 8785's ECMAScript number form for some non-integers; it is stable for this
//!   implementation, which both issues and checks every challenge;
//! - `true`, `false`, `null` as themselves.
//!
//! [`args_hash`] is SHA-256 over those bytes. [`arguments_hash`] applies it to
//! `params.arguments`, hashing the empty object `{}` when the arguments are absent.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{self, Write};

/// SHA-256 of the canonical JSON of `value`.
pub fn args_hash(value: &Value) -> [u8; 32] {
    let mut w = HashWriter(Sha256::new());
    // Writing into a hasher cannot fail.
    let _ = write_canonical(value, &mut w);
    w.0.finalize().into()
}

/// The hash of a call's arguments: [`args_hash`] of `params.arguments`, or of `{}` when
/// `params` or `params.arguments` is absent.
pub fn arguments_hash(params: Option<&Value>) -> [u8; 32] {
    match params.and_then(|p| p.get("arguments")) {
        Some(args) => args_hash(args),
        None => args_hash(&Value::Object(serde_json::Map::new())),
    }
}

/// The canonical JSON of `value`, as a string.
pub fn canonical_string(value: &Value) -> String {
    let mut out = Vec::new();
    let _ = write_canonical(value, &mut out);
    // Only valid UTF-8 is ever written.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the canonical JSON of `value` to `out`.
pub fn write_canonical<W: Write>(value: &Value, out: &mut W) -> io::Result<()> {
    match value {
        Value::Null => out.write_all(b"null"),
        Value::Bool(true) => out.write_all(b"true"),
        Value::Bool(false) => out.write_all(b"false"),
        Value::Number(n) => write!(out, "{n}"),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.write_all(b"{")?;
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_string(k, out)?;
                out.write_all(b":")?;
                write_canonical(v, out)?;
            }
            out.write_all(b"}")
        }
    }
}

fn write_string<W: Write>(s: &str, out: &mut W) -> io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.write_all(b"\"")?;
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x09 => Some(b"\\t"),
            0x0a => Some(b"\\n"),
            0x0c => Some(b"\\f"),
            0x0d => Some(b"\\r"),
            _ => None,
        };
        if esc.is_none() && b >= 0x20 {
            continue;
        }
        out.write_all(&bytes[start..i])?;
        match esc {
            Some(e) => out.write_all(e)?,
            None => out.write_all(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ])?,
        }
        start = i + 1;
    }
    out.write_all(&bytes[start..])?;
    out.write_all(b"\"")
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form() {
        let v: Value = serde_json::from_str(
            r#" { "b" : [1, 2.5, -3, true, null], "a":{"y":"\u00e9","x":"q\"\\\n\u0001/"} } "#,
        )
        .unwrap();
        assert_eq!(
            canonical_string(&v),
            r#"{"a":{"x":"q\"\\\n\u0001/","y":"é"},"b":[1,2.5,-3,true,null]}"#
        );
        assert_eq!(canonical_string(&json!({})), "{}");
        assert_eq!(canonical_string(&json!([])), "[]");
        assert_eq!(
            canonical_string(&json!("\u{7f}\u{2028}")),
            "\"\u{7f}\u{2028}\""
        );
        assert_eq!(
            canonical_string(&json!("\u{8}\u{9}\u{c}\u{d}\u{1f}")),
            r#""\b\t\f\r\u001f""#
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+FF61 (one UTF-16 unit 0xFF61) sorts after U+1F600 (surrogates 0xD83D…) in UTF-16
        // order, though before it by code point.
        let v = json!({"\u{ff61}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(
            canonical_string(&v),
            "{\"a\":3,\"\u{1f600}\":2,\"\u{ff61}\":1}"
        );
    }

    #[test]
    fn rfc8785_example_ordering() {
        // From RFC 8785 §3.2.3's sorting example (keys only).
        let v = json!({"\u{20ac}": 1, "\r": 2, "\u{fb33}": 3, "1": 4, "\u{1f600}": 5, "\u{80}": 6, "\u{f6}": 7});
        assert_eq!(
            canonical_string(&v),
            "{\"\\r\":2,\"1\":4,\"\u{80}\":6,\"\u{f6}\":7,\"\u{20ac}\":1,\"\u{1f600}\":5,\"\u{fb33}\":3}"
        );
    }

    #[test]
    fn hash_ignores_encoding_differences() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":"\u0041"}"#).unwrap();
        let b: Value = serde_json::from_str("{ \"y\" : \"A\",\n \"x\" : 1 }").unwrap();
        assert_eq!(args_hash(&a), args_hash(&b));
        assert_ne!(args_hash(&a), args_hash(&json!({"x": 2, "y": "A"})));
        assert_ne!(args_hash(&json!({"x": 1})), args_hash(&json!({"x": "1"})));
        assert_ne!(args_hash(&json!([1, 2])), args_hash(&json!([2, 1])));
    }

    #[test]
    fn absent_arguments_hash_as_empty_object() {
        let empty = args_hash(&json!({}));
        assert_eq!(arguments_hash(None), empty);
        assert_eq!(arguments_hash(Some(&json!({"name": "t"}))), empty);
        assert_eq!(
            arguments_hash(Some(&json!({"name": "t", "arguments": {"a": 1}}))),
            args_hash(&json!({"a": 1}))
        );
        // Known answer: SHA-256("{}").
        assert_eq!(
            hex::encode(empty),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
