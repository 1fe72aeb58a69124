//! The span model: what one finished span holds, as OTLP's `Span` message has it.

use std::borrow::Cow;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A trace id: 16 bytes, not all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span id: 8 bytes, not all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A random trace id (never all zero).
    pub fn random() -> TraceId {
        loop {
            let b: [u8; 16] = rand::random();
            if b != [0; 16] {
                return TraceId(b);
            }
        }
    }

    /// From 32 lower-case hex digits, not all zero.
    pub fn from_hex(s: &str) -> Option<TraceId> {
        let mut b = [0u8; 16];
        decode_hex(s, &mut b)?;
        (b != [0; 16]).then_some(TraceId(b))
    }

    /// 32 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }
}

impl SpanId {
    /// A random span id (never all zero).
    pub fn random() -> SpanId {
        loop {
            let b: [u8; 8] = rand::random();
            if b != [0; 8] {
                return SpanId(b);
            }
        }
    }

    /// From 16 lower-case hex digits, not all zero.
    pub fn from_hex(s: &str) -> Option<SpanId> {
        let mut b = [0u8; 8];
        decode_hex(s, &mut b)?;
        (b != [0; 8]).then_some(SpanId(b))
    }

    /// 16 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }
}

fn decode_hex(s: &str, out: &mut [u8]) -> Option<()> {
    let s = s.as_bytes();
    if s.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(s[2 * i])? << 4) | digit(s[2 * i + 1])?;
    }
    Some(())
}

fn encode_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

/// A W3C `traceparent` value (version 00) for `trace` and `span` with `flags`.
pub fn traceparent(trace: &TraceId, span: &SpanId, flags: u8) -> String {
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    s.push_str(&trace.to_hex());
    s.push('-');
    s.push_str(&span.to_hex());
    s.push('-');
    s.push_str(&encode_hex(&[flags]));
    s
}

/// What a span describes (OTLP `Span.SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// An operation inside the process.
    Internal = 1,
    /// The handling of a request that came in.
    Server = 2,
    /// A request sent to another service.
    Client = 3,
}

/// An attribute's value (OTLP `AnyValue`, the scalar kinds).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(Cow<'static, str>),
    /// A signed integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A float.
    Double(f64),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Value {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Double(v)
    }
}

/// One attribute. Keys are fixed names (semantic conventions or `turnpike.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// The attribute's name.
    pub key: &'static str,
    /// Its value.
    pub value: Value,
}

impl KeyValue {
    /// `key = value`.
    pub fn new(key: &'static str, value: impl Into<Value>) -> KeyValue {
        KeyValue {
            key,
            value: value.into(),
        }
    }
}

/// A time-stamped annotation of a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened (Unix nanoseconds).
    pub time_unix_nano: u64,
    /// What happened.
    pub name: &'static str,
    /// Its attributes.
    pub attributes: Vec<KeyValue>,
}

/// A span's status code (OTLP `Status.StatusCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusCode {
    /// Not set: the default.
    #[default]
    Unset = 0,
    /// Known good.
    Ok = 1,
    /// The operation failed.
    Error = 2,
}

/// A span's final status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// The code.
    pub code: StatusCode,
    /// A short description (errors only).
    pub message: String,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The trace it belongs to.
    pub trace_id: TraceId,
    /// Its own id.
    pub span_id: SpanId,
    /// Its parent's id; `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// The W3C `tracestate` that came with the parent (empty: none).
    pub trace_state: String,
    /// The W3C trace flags (bit 0: sampled).
    pub flags: u8,
    /// What it describes, low-cardinality (`tools/call add`, `verify`).
    pub name: Cow<'static, str>,
    /// Its kind.
    pub kind: SpanKind,
    /// Start, Unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// End, Unix nanoseconds.
    pub end_time_unix_nano: u64,
    /// Its attributes.
    pub attributes: Vec<KeyValue>,
    /// Its events.
    pub events: Vec<Event>,
    /// Its status.
    pub status: Status,
}

/// A wall-clock reading taken once, to time a call's spans with the monotonic clock: every
/// later [`Instant`] becomes Unix nanoseconds by its distance from the reading.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_ns: u64,
    at: Instant,
}

impl Clock {
    /// Reads the clocks now.
    pub fn now() -> Clock {
        let wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Clock {
            wall_ns,
            at: Instant::now(),
        }
    }

    /// When the clocks were read.
    pub fn start(&self) -> Instant {
        self.at
    }

    /// `t` in Unix nanoseconds (times before the reading are the reading).
    pub fn unix_nanos(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.at).as_nanos();
        self.wall_ns
            .saturating_add(u64::try_from(d).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(s.0, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(
            traceparent(&t, &s, 1),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert!(SpanId::from_hex("0000000000000000").is_none());
        assert!(SpanId::from_hex("00F067AA0BA902B7").is_none());
        assert!(TraceId::from_hex("4bf9").is_none());
        assert_ne!(TraceId::random(), TraceId::random());
    }

    #[test]
    fn clock_converts_instants() {
        let c = Clock::now();
        let later = c.start() + std::time::Duration::from_millis(5);
        assert_eq!(c.unix_nanos(later) - c.unix_nanos(c.start()), 5_000_000);
    }
}
