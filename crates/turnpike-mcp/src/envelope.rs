//! The JSON-RPC envelope: exactly one message per HTTP body.
//!
//! [`parse_message`] turns the bytes of one POST body into a [`Message`]:
//!
//! - the body must be one JSON object; a JSON array (a JSON-RPC batch) is refused with its own
//!   error, [`EnvelopeError::Batch`], because MCP's Streamable HTTP transport carries one message
//!   per POST and a gate that priced only the first element of a batch could be bypassed;
//! - `jsonrpc` must be the string `"2.0"`;
//! - `id`, when present, must be a string or a number (`null` only on a response);
//! - `method`, when present, must be a string, and `params`, when present, an object or array;
//! - a message without `method` must be a response: it carries an `id` and exactly one of
//!   `result` or `error`.
//!
//! ## Duplicate keys
//!
//! JSON parsers disagree about objects with a repeated key: serde_json keeps the last value,
//! others keep the first or refuse. If the gate classified `{"name":"free","name":"dear"}` as one
//! tool and the upstream ran the other, the price (and the scope a proof-of-work is bound to)
//! would not be the price of the call that runs. So the gate refuses **every** object with a
//! repeated key, at any depth (top level, `params`, `params._meta`, `params.arguments`, …), with
//! [`EnvelopeError::DuplicateKey`] (JSON-RPC -32600). Detecting this costs nothing extra: the
//! check is part of the one parse.
//!
//! ## Numbers
//!
//! An integer literal outside the 64-bit range (below -2^63 or above 2^64-1) is refused with
//! [`EnvelopeError::Invalid`] (JSON-RPC -32600). serde_json can only hold such a number as an
//! approximate `f64`, while Python keeps it exact and JavaScript rounds it its own way: the gate
//! would price and bind a proof to a different argument than the upstream runs, and a body the
//! gate re-serialises (after removing `_meta` credentials) would carry another number than the
//! caller sent. Fractions and exponents are parsed correctly rounded (serde_json's
//! `float_roundtrip`), as every IEEE-754 JSON parser does, so they survive re-serialisation.
//!
//! The caller limits the size of the body before calling [`parse_message`]; nesting depth is
//! limited by serde_json (128 levels).

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;
use turnpike_core::error_codes;

/// Why a body is not one acceptable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON (JSON-RPC -32700).
    #[error("the body is not valid JSON: {0}")]
    Parse(String),
    /// The body is a JSON array: a JSON-RPC batch (JSON-RPC -32600).
    #[error("batch requests are not accepted")]
    Batch,
    /// An object in the body repeats a key (JSON-RPC -32600).
    #[error("the message repeats the key {0:?} in one object")]
    DuplicateKey(String),
    /// The JSON is not a valid JSON-RPC 2.0 message (JSON-RPC -32600).
    #[error("not a valid JSON-RPC 2.0 message: {0}")]
    Invalid(&'static str),
}

impl EnvelopeError {
    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i64 {
        match self {
            EnvelopeError::Parse(_) => error_codes::PARSE_ERROR,
            _ => error_codes::INVALID_REQUEST,
        }
    }
}

/// What kind of JSON-RPC message a [`Message`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A request: `method` and `id`. It expects a response.
    Request,
    /// A notification: `method` and no `id`.
    Notification,
    /// A response to a request of the other side: `id` and `result` or `error`, no `method`.
    Response,
}

/// One parsed, shape-checked JSON-RPC message. The value is always a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    value: Value,
    kind: MessageKind,
}

impl Message {
    /// The kind of message.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The `id`, when present (a string or a number; `null` only on a response).
    pub fn id(&self) -> Option<&Value> {
        self.value.get("id")
    }

    /// The `method` of a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.value.get("method").and_then(Value::as_str)
    }

    /// The `params` member, when present.
    pub fn params(&self) -> Option<&Value> {
        self.value.get("params")
    }

    /// The whole message.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The whole message, mutably (e.g. to strip credentials). The shape checks made at parse
    /// time are the caller's to keep.
    pub fn value_mut(&mut self) -> &mut Value {
        &mut self.value
    }

    /// The message as a JSON value.
    pub fn into_value(self) -> Value {
        self.value
    }
}

/// Parses one HTTP body into one JSON-RPC message (see the module docs for every rule).
pub fn parse_message(body: &[u8]) -> Result<Message, EnvelopeError> {
    let (value, saw_float) = parse_strict(body)?;
    // serde_json reads an integer literal beyond 64 bits as a float: a body in which the
    // parse met no float has none, and needs no second look at its bytes.
    if saw_float {
        check_integer_range(body)?;
    }
    let obj = match &value {
        Value::Object(o) => o,
        Value::Array(_) => return Err(EnvelopeError::Batch),
        _ => return Err(EnvelopeError::Invalid("the message must be a JSON object")),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(EnvelopeError::Invalid("\"jsonrpc\" must be \"2.0\""));
    }
    let id = obj.get("id");
    match id {
        None | Some(Value::String(_)) | Some(Value::Number(_)) | Some(Value::Null) => {}
        Some(_) => {
            return Err(EnvelopeError::Invalid(
                "\"id\" must be a string or a number",
            ))
        }
    }
    let kind = match obj.get("method") {
        Some(Value::String(_)) => {
            if matches!(id, Some(Value::Null)) {
                return Err(EnvelopeError::Invalid("a request \"id\" must not be null"));
            }
            match obj.get("params") {
                None | Some(Value::Object(_)) | Some(Value::Array(_)) => {}
                Some(_) => {
                    return Err(EnvelopeError::Invalid(
                        "\"params\" must be an object or an array",
                    ))
                }
            }
            if id.is_some() {
                MessageKind::Request
            } else {
                MessageKind::Notification
            }
        }
        Some(_) => return Err(EnvelopeError::Invalid("\"method\" must be a string")),
        None => {
            if id.is_none() {
                return Err(EnvelopeError::Invalid(
                    "a message without \"method\" must be a response with an \"id\"",
                ));
            }
            if obj.contains_key("result") == obj.contains_key("error") {
                return Err(EnvelopeError::Invalid(
                    "a response carries exactly one of \"result\" and \"error\"",
                ));
            }
            MessageKind::Response
        }
    };
    Ok(Message { value, kind })
}

/// Refuses integer literals that do not fit in an `i64` or a `u64` (see the module docs).
/// `body` is already known to be valid JSON, so outside strings a `-` or a digit starts a number.
fn check_integer_range(body: &[u8]) -> Result<(), EnvelopeError> {
    let n = body.len();
    let mut i = 0;
    while i < n {
        match body[i] {
            b'"' => {
                i += 1;
                while i < n && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let negative = body[i] == b'-';
                if negative {
                    i += 1;
                }
                let start = i;
                while i < n && body[i].is_ascii_digit() {
                    i += 1;
                }
                let integer = !matches!(body.get(i), Some(b'.' | b'e' | b'E'));
                if integer && !fits_64_bits(&body[start..i], negative) {
                    return Err(EnvelopeError::Invalid(
                        "an integer is outside the 64-bit range",
                    ));
                }
                while i < n && matches!(body[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether the decimal `digits` (with a leading `-` when `negative`) fit an `i64` or a `u64`.
fn fits_64_bits(digits: &[u8], negative: bool) -> bool {
    let digits = match digits.iter().position(|&d| d != b'0') {
        Some(first) => &digits[first..],
        None => return true,
    };
    if digits.len() > 20 {
        return false;
    }
    let v = digits
        .iter()
        .fold(0u128, |v, &d| v * 10 + u128::from(d - b'0'));
    if negative {
        v <= 1u128 << 63
    } else {
        v <= u128::from(u64::MAX)
    }
}

/// Parses JSON into a [`Value`], refusing objects with a repeated key at any depth; says
/// whether it met a number read as a float (a fraction, an exponent, or an integer beyond 64
/// bits).
fn parse_strict(body: &[u8]) -> Result<(Value, bool), EnvelopeError> {
    let saw_float = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = match StrictValue(&saw_float).deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => return Err(classify_error(e)),
    };
    de.end().map_err(classify_error)?;
    Ok((value, saw_float.get()))
}

const DUP_PREFIX: &str = "turnpike-duplicate-key:";

fn classify_error(e: serde_json::Error) -> EnvelopeError {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix(DUP_PREFIX) {
        // serde_json appends " at line L column C"; keep only the key.
        let key = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
        return EnvelopeError::DuplicateKey(key.to_string());
    }
    EnvelopeError::Parse(msg)
}

/// A `DeserializeSeed` building a [`Value`] that errors on repeated object keys, and notes
/// in its cell when it meets a float.
#[derive(Clone, Copy)]
struct StrictValue<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.set(true);
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            match out.entry(key) {
                serde_json::map::Entry::Vacant(v) => {
                    v.insert(value);
                }
                serde_json::map::Entry::Occupied(o) => {
                    return Err(de::Error::custom(format_args!("{DUP_PREFIX}{}", o.key())));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let m = parse_message(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(m.kind(), MessageKind::Request);
        assert_eq!(m.method(), Some("tools/list"));
        assert_eq!(m.id(), Some(&Value::from(1)));
        let m =
            parse_message(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m.kind(), MessageKind::Notification);
        assert_eq!(m.id(), None);
        let m = parse_message(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(m.kind(), MessageKind::Response);
        assert_eq!(m.method(), None);
        let m = parse_message(br#"{"jsonrpc":"2.0","id":null,"error":{"code":1}}"#).unwrap();
        assert_eq!(m.kind(), MessageKind::Response);
    }

    /// Found by the `envelope` fuzz target (fuzz/): a 30-digit integer became an approximate
    /// f64 whose re-serialisation parsed to another f64, so the arguments hash of a message
    /// changed when the gate re-serialised it.
    #[test]
    fn integers_outside_64_bits_are_refused() {
        let crash = br#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"tools/call","params":{"name":"echo","arguments":{"n":123456742803915678901234567890}}}"#;
        assert_eq!(
            parse_message(crash).unwrap_err(),
            EnvelopeError::Invalid("an integer is outside the 64-bit range")
        );
        for n in [
            "18446744073709551616",
            "-9223372036854775809",
            "100000000000000000000",
            "123456742803915678901234567890",
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"e","arguments":{{"n":{n}}}}}}}"#
            );
            assert_eq!(
                parse_message(body.as_bytes()).unwrap_err().code(),
                -32600,
                "{n}"
            );
        }
        for n in [
            "18446744073709551615",
            "-9223372036854775808",
            "0",
            "-0",
            "1e30",
            "1.5e300",
            "123456742803915678901234567890.0",
            "\"123456742803915678901234567890\"",
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"e","arguments":{{"n":{n},"s":"-99999999999999999999999"}}}}}}"#
            );
            assert!(parse_message(body.as_bytes()).is_ok(), "{n}");
        }
    }

    /// Floats are parsed correctly rounded, so what the gate re-serialises parses back to the
    /// same value (and the same arguments hash).
    #[test]
    fn floats_survive_reserialisation() {
        for n in [
            "2.2250738585072011e-308",
            "1.2345674280391568e29",
            "0.1",
            "9007199254740993.0",
            "1.7976931348623157e308",
            "5e-324",
            "3.0000000000000004440892098500626161694526672363281250000001",
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"e","arguments":{{"n":{n}}}}}}}"#
            );
            let m = parse_message(body.as_bytes()).unwrap();
            let again = parse_message(&serde_json::to_vec(m.value()).unwrap()).unwrap();
            assert_eq!(m, again, "{n}");
            let want: f64 = n.parse().unwrap();
            assert_eq!(
                m.params().unwrap()["arguments"]["n"]
                    .as_f64()
                    .unwrap()
                    .to_bits(),
                want.to_bits(),
                "{n} is not correctly rounded"
            );
        }
    }

    #[test]
    fn batch_is_its_own_error() {
        let e = parse_message(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap_err();
        assert_eq!(e, EnvelopeError::Batch);
        assert_eq!(e.code(), -32600);
        assert_eq!(e.to_string(), "batch requests are not accepted");
        assert_eq!(parse_message(b" [] ").unwrap_err(), EnvelopeError::Batch);
    }

    #[test]
    fn bad_json() {
        for body in [
            &b""[..],
            b"{",
            b"{\"a\":1} x",
            b"nul",
            b"\xff",
            b"{\"a\":\"\\ud800\"}",
        ] {
            let e = parse_message(body).unwrap_err();
            assert!(matches!(e, EnvelopeError::Parse(_)), "{body:?}: {e:?}");
            assert_eq!(e.code(), -32700);
        }
        assert!(matches!(
            parse_message(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":1e999}}"#),
            Err(EnvelopeError::Parse(_))
        ));
    }

    #[test]
    fn shape_rules() {
        let bad: &[&[u8]] = &[
            br#"1"#,
            br#""x""#,
            br#"{"id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            br#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"m","params":null}"#,
            br#"{"jsonrpc":"2.0","result":{}}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
        ];
        for b in bad {
            let e = parse_message(b).unwrap_err();
            assert!(
                matches!(e, EnvelopeError::Invalid(_)),
                "{}: {e:?}",
                String::from_utf8_lossy(b)
            );
            assert_eq!(e.code(), -32600);
        }
    }

    #[test]
    fn duplicate_keys_refused_at_any_depth() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#, "id"),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
                "name",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"k":1,"k":2}}}"#,
                "k",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":[{"y":1,"y":1}]}}}"#,
                "y",
            ),
            // An escaped key equal to another key is a repeat too.
            (br#"{"jsonrpc":"2.0","id":1,"method":"ping","meth\u006fd":"x"}"#, "method"),
        ];
        for (body, key) in cases {
            assert_eq!(
                parse_message(body).unwrap_err(),
                EnvelopeError::DuplicateKey((*key).to_string()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Same key in sibling objects is fine.
        parse_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":{"k":1},"b":{"k":1}}}"#,
        )
        .unwrap();
    }

    #[test]
    fn values_round_trip() {
        let body = br#"{"jsonrpc":"2.0","id":-7,"method":"m","params":{"f":1.5,"u":18446744073709551615,"s":"\u00e9\n","n":null,"b":[true,false]}}"#;
        let m = parse_message(body).unwrap();
        let expected: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(m.value(), &expected);
        assert_eq!(m.clone().into_value(), expected);
    }
}
