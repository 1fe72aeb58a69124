//! The OTLP trace messages in the protobuf wire format, encoded by hand.
//!
//! Only what an export sends is written: `ExportTraceServiceRequest` (collector/trace/v1) →
//! one `ResourceSpans` (resource attributes; one `ScopeSpans` with the instrumentation scope
//! and the spans) → `Span` (ids, trace state, flags, name, kind, times, attributes, events,
//! status) → `KeyValue` / `AnyValue` (common/v1). The field numbers are those of
//! opentelemetry-proto's `trace.proto`, `common.proto`, `resource.proto` and
//! `trace_service.proto`. Each message's length is computed before it is written, so the
//! request is written once, into one buffer of the exact size.
//!
//! Wire format: a field is its key (`field << 3 | wire type`, a varint) and its value — a
//! varint (type 0), 8 little-endian bytes (type 1), a varint length and that many bytes
//! (type 2), or 4 little-endian bytes (type 5). As proto3 does, fields holding their default
//! value (0, empty) are left out, except the one set member of `AnyValue`'s `oneof`.

use crate::span::{Event, KeyValue, Span, Status, StatusCode, Value};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// The resource and instrumentation scope every exported span is sent under.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The resource's attributes (`service.name`, …).
    pub resource: Vec<KeyValue>,
    /// The instrumentation scope's name.
    pub scope_name: &'static str,
    /// The instrumentation scope's version.
    pub scope_version: &'static str,
}

/// `ExportTraceServiceRequest` holding `spans`, all under `origin`.
pub fn export_request(origin: &Origin, spans: &[Span]) -> Vec<u8> {
    let rs = resource_spans_len(origin, spans);
    let mut buf = Vec::with_capacity(field_len(1, rs));
    // ExportTraceServiceRequest.resource_spans = 1
    key(&mut buf, 1, LEN);
    varint(&mut buf, rs as u64);
    // ResourceSpans.resource = 1 (Resource.attributes = 1)
    let res = attrs_len(1, &origin.resource);
    key(&mut buf, 1, LEN);
    varint(&mut buf, res as u64);
    write_attrs(&mut buf, 1, &origin.resource);
    // ResourceSpans.scope_spans = 2
    let ss = scope_spans_len(origin, spans);
    key(&mut buf, 2, LEN);
    varint(&mut buf, ss as u64);
    // ScopeSpans.scope = 1 (InstrumentationScope.name = 1, version = 2)
    let sc = scope_len(origin);
    key(&mut buf, 1, LEN);
    varint(&mut buf, sc as u64);
    string(&mut buf, 1, origin.scope_name);
    string(&mut buf, 2, origin.scope_version);
    // ScopeSpans.spans = 2
    for s in spans {
        key(&mut buf, 2, LEN);
        varint(&mut buf, span_len(s) as u64);
        write_span(&mut buf, s);
    }
    buf
}

fn resource_spans_len(origin: &Origin, spans: &[Span]) -> usize {
    field_len(1, attrs_len(1, &origin.resource)) + field_len(2, scope_spans_len(origin, spans))
}

fn scope_len(origin: &Origin) -> usize {
    string_len(1, origin.scope_name) + string_len(2, origin.scope_version)
}

fn scope_spans_len(origin: &Origin, spans: &[Span]) -> usize {
    field_len(1, scope_len(origin))
        + spans
            .iter()
            .map(|s| field_len(2, span_len(s)))
            .sum::<usize>()
}

fn span_len(s: &Span) -> usize {
    let mut n = bytes_len(1, &s.trace_id.0) + bytes_len(2, &s.span_id.0);
    n += string_len(3, &s.trace_state);
    if let Some(p) = &s.parent_span_id {
        n += bytes_len(4, &p.0);
    }
    n += string_len(5, &s.name);
    n += varint_field_len(6, s.kind as u64);
    n += fixed64_len(7, s.start_time_unix_nano) + fixed64_len(8, s.end_time_unix_nano);
    n += attrs_len(9, &s.attributes);
    n += s
        .events
        .iter()
        .map(|e| field_len(11, event_len(e)))
        .sum::<usize>();
    let st = status_len(&s.status);
    if st > 0 {
        n += field_len(15, st);
    }
    if s.flags != 0 {
        n += key_len(16) + 4;
    }
    n
}

fn write_span(buf: &mut Vec<u8>, s: &Span) {
    bytes(buf, 1, &s.trace_id.0);
    bytes(buf, 2, &s.span_id.0);
    string(buf, 3, &s.trace_state);
    if let Some(p) = &s.parent_span_id {
        bytes(buf, 4, &p.0);
    }
    string(buf, 5, &s.name);
    varint_field(buf, 6, s.kind as u64);
    fixed64(buf, 7, s.start_time_unix_nano);
    fixed64(buf, 8, s.end_time_unix_nano);
    write_attrs(buf, 9, &s.attributes);
    for e in &s.events {
        key(buf, 11, LEN);
        varint(buf, event_len(e) as u64);
        // Span.Event: time_unix_nano = 1 (fixed64), name = 2, attributes = 3
        fixed64(buf, 1, e.time_unix_nano);
        string(buf, 2, e.name);
        write_attrs(buf, 3, &e.attributes);
    }
    let st = status_len(&s.status);
    if st > 0 {
        key(buf, 15, LEN);
        varint(buf, st as u64);
        // Status: message = 2, code = 3
        string(buf, 2, &s.status.message);
        varint_field(buf, 3, s.status.code as u64);
    }
    if s.flags != 0 {
        // Span.flags = 16 (fixed32): the W3C trace flags in the low byte.
        key(buf, 16, FIXED32);
        buf.extend_from_slice(&u32::from(s.flags).to_le_bytes());
    }
}

fn event_len(e: &Event) -> usize {
    fixed64_len(1, e.time_unix_nano) + string_len(2, e.name) + attrs_len(3, &e.attributes)
}

fn status_len(s: &Status) -> usize {
    if s.code == StatusCode::Unset && s.message.is_empty() {
        return 0;
    }
    string_len(2, &s.message) + varint_field_len(3, s.code as u64)
}

/// The length of `attrs` written as repeated `KeyValue` field `field`.
fn attrs_len(field: u32, attrs: &[KeyValue]) -> usize {
    attrs.iter().map(|a| field_len(field, kv_len(a))).sum()
}

fn write_attrs(buf: &mut Vec<u8>, field: u32, attrs: &[KeyValue]) {
    for a in attrs {
        key(buf, field, LEN);
        varint(buf, kv_len(a) as u64);
        // KeyValue: key = 1, value = 2 (AnyValue)
        string(buf, 1, a.key);
        key(buf, 2, LEN);
        varint(buf, any_len(&a.value) as u64);
        write_any(buf, &a.value);
    }
}

fn kv_len(a: &KeyValue) -> usize {
    string_len(1, a.key) + field_len(2, any_len(&a.value))
}

/// AnyValue: string_value = 1, bool_value = 2, int_value = 3, double_value = 4 (a `oneof`:
/// the member is written even when it holds its default).
fn any_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => field_len(1, s.len()),
        Value::Bool(_) => 2,
        Value::Int(i) => 1 + varint_len(*i as u64),
        Value::Double(_) => 1 + 8,
    }
}

fn write_any(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            key(buf, 1, LEN);
            varint(buf, s.len() as u64);
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => {
            key(buf, 2, VARINT);
            buf.push(u8::from(*b));
        }
        Value::Int(i) => {
            key(buf, 3, VARINT);
            // int64: two's complement, as a 64-bit varint.
            varint(buf, *i as u64);
        }
        Value::Double(d) => {
            key(buf, 4, FIXED64);
            buf.extend_from_slice(&d.to_le_bytes());
        }
    }
}

// --- the wire format -------------------------------------------------------------------------

/// Writes `v` as a base-128 varint (7 bits a byte, low first, high bit: more follow).
pub fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// The number of bytes `v` takes as a varint.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field) << 3)
}

/// A length-delimited field holding `len` bytes.
fn field_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

fn string_len(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        field_len(field, s.len())
    }
}

fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(buf, field, s.as_bytes());
    }
}

fn bytes_len(field: u32, b: &[u8]) -> usize {
    field_len(field, b.len())
}

fn bytes(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(buf, field, LEN);
    varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

fn varint_field_len(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + varint_len(v)
    }
}

fn varint_field(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, VARINT);
        varint(buf, v);
    }
}

fn fixed64_len(field: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(field) + 8
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, FIXED64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{SpanId, SpanKind, TraceId};
    use std::borrow::Cow;

    /// A field as read back: its number and its value (varint, fixed or bytes).
    #[derive(Debug, Clone, PartialEq)]
    enum F {
        V(u64),
        I64(u64),
        I32(u32),
        B(Vec<u8>),
    }

    fn read_varint(b: &[u8], i: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*i];
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// Reads one message's fields (panics on anything malformed: a test decoder).
    fn fields(b: &[u8]) -> Vec<(u32, F)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let k = read_varint(b, &mut i);
            let (field, wire) = ((k >> 3) as u32, (k & 7) as u8);
            let v = match wire {
                VARINT => F::V(read_varint(b, &mut i)),
                FIXED64 => {
                    i += 8;
                    F::I64(u64::from_le_bytes(b[i - 8..i].try_into().unwrap()))
                }
                FIXED32 => {
                    i += 4;
                    F::I32(u32::from_le_bytes(b[i - 4..i].try_into().unwrap()))
                }
                LEN => {
                    let n = read_varint(b, &mut i) as usize;
                    i += n;
                    F::B(b[i - n..i].to_vec())
                }
                w => panic!("wire type {w}"),
            };
            out.push((field, v));
        }
        assert_eq!(i, b.len(), "a field ran past its message");
        out
    }

    fn get(fs: &[(u32, F)], field: u32) -> Vec<F> {
        fs.iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn bytes_of(f: &F) -> &[u8] {
        match f {
            F::B(b) => b,
            other => panic!("not bytes: {other:?}"),
        }
    }

    #[test]
    fn varints_match_the_protobuf_examples() {
        for (v, enc) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b, enc, "{v}");
            assert_eq!(varint_len(v), enc.len(), "{v}");
        }
        // A negative int64 takes ten bytes.
        assert_eq!(any_len(&Value::Int(-1)), 11);
    }

    #[test]
    fn one_attribute_is_byte_exact() {
        // KeyValue{key:"a", value: AnyValue{string_value:"b"}} as repeated field 1.
        let mut b = Vec::new();
        write_attrs(&mut b, 1, &[KeyValue::new("a", "b")]);
        assert_eq!(
            b,
            [0x0a, 0x08, 0x0a, 0x01, b'a', 0x12, 0x03, 0x0a, 0x01, b'b']
        );
        assert_eq!(attrs_len(1, &[KeyValue::new("a", "b")]), b.len());
        // bool false and int 0 are still written (oneof).
        let mut b = Vec::new();
        write_any(&mut b, &Value::Bool(false));
        write_any(&mut b, &Value::Int(0));
        assert_eq!(b, [0x10, 0x00, 0x18, 0x00]);
    }

    fn sample_span() -> Span {
        Span {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            parent_span_id: SpanId::from_hex("0102030405060708"),
            trace_state: "k=v".into(),
            flags: 1,
            name: Cow::Borrowed("tools/call add"),
            kind: SpanKind::Server,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_500_000,
            attributes: vec![
                KeyValue::new("mcp.method.name", "tools/call"),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("turnpike.free", false),
                KeyValue::new("x.ratio", 0.5),
                KeyValue::new("x.neg", -7i64),
            ],
            events: vec![Event {
                time_unix_nano: 1_700_000_000_000_100_000,
                name: "turnpike.challenge",
                attributes: vec![KeyValue::new("turnpike.rails", "pow")],
            }],
            status: Status {
                code: StatusCode::Error,
                message: "upstream".into(),
            },
        }
    }

    #[test]
    fn a_request_reads_back_field_by_field() {
        let origin = Origin {
            resource: vec![KeyValue::new("service.name", "turnpike")],
            scope_name: "turnpike",
            scope_version: "0.1.0",
        };
        let span = sample_span();
        let root = SpanId::from_hex("1111111111111111").unwrap();
        let child = Span {
            span_id: root,
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            events: vec![],
            status: Status::default(),
            kind: SpanKind::Internal,
            attributes: vec![],
            ..span.clone()
        };
        let req = export_request(&origin, &[span.clone(), child]);
        let top = fields(&req);
        assert_eq!(top.len(), 1);
        let rs = fields(bytes_of(&top[0].1));
        let resource = fields(bytes_of(&get(&rs, 1)[0]));
        let kv = fields(bytes_of(&get(&resource, 1)[0]));
        assert_eq!(get(&kv, 1), [F::B(b"service.name".to_vec())]);
        let any = fields(bytes_of(&get(&kv, 2)[0]));
        assert_eq!(any, [(1, F::B(b"turnpike".to_vec()))]);
        let ss = fields(bytes_of(&get(&rs, 2)[0]));
        let scope = fields(bytes_of(&get(&ss, 1)[0]));
        assert_eq!(
            scope,
            [
                (1, F::B(b"turnpike".to_vec())),
                (2, F::B(b"0.1.0".to_vec()))
            ]
        );
        let spans = get(&ss, 2);
        assert_eq!(spans.len(), 2);
        let s = fields(bytes_of(&spans[0]));
        assert_eq!(get(&s, 1), [F::B(span.trace_id.0.to_vec())]);
        assert_eq!(get(&s, 2), [F::B(span.span_id.0.to_vec())]);
        assert_eq!(get(&s, 3), [F::B(b"k=v".to_vec())]);
        assert_eq!(get(&s, 4), [F::B(vec![1, 2, 3, 4, 5, 6, 7, 8])]);
        assert_eq!(get(&s, 5), [F::B(b"tools/call add".to_vec())]);
        assert_eq!(get(&s, 6), [F::V(2)]);
        assert_eq!(get(&s, 7), [F::I64(1_700_000_000_000_000_000)]);
        assert_eq!(get(&s, 8), [F::I64(1_700_000_000_000_500_000)]);
        assert_eq!(get(&s, 9).len(), 5);
        let neg = fields(bytes_of(&get(&s, 9)[4]));
        let neg = fields(bytes_of(&get(&neg, 2)[0]));
        assert_eq!(neg, [(3, F::V(-7i64 as u64))]);
        let ratio = fields(bytes_of(&get(&s, 9)[3]));
        let ratio = fields(bytes_of(&get(&ratio, 2)[0]));
        assert_eq!(ratio, [(4, F::I64(0.5f64.to_bits()))]);
        let ev = fields(bytes_of(&get(&s, 11)[0]));
        assert_eq!(get(&ev, 1), [F::I64(1_700_000_000_000_100_000)]);
        assert_eq!(get(&ev, 2), [F::B(b"turnpike.challenge".to_vec())]);
        assert_eq!(get(&ev, 3).len(), 1);
        let st = fields(bytes_of(&get(&s, 15)[0]));
        assert_eq!(st, [(2, F::B(b"upstream".to_vec())), (3, F::V(2))]);
        assert_eq!(get(&s, 16), [F::I32(1)]);
        // The second span: root (no parent), defaults left out.
        let c = fields(bytes_of(&spans[1]));
        assert!(get(&c, 3).is_empty() && get(&c, 4).is_empty());
        assert!(get(&c, 15).is_empty() && get(&c, 16).is_empty());
        assert_eq!(get(&c, 6), [F::V(1)]);
        // Lengths computed ahead equal what was written.
        let spans = [sample_span()];
        let req = export_request(&origin, &spans);
        assert_eq!(req.len(), field_len(1, resource_spans_len(&origin, &spans)));
    }

    #[test]
    fn an_empty_export_is_still_well_formed() {
        let origin = Origin {
            resource: vec![],
            scope_name: "t",
            scope_version: "",
        };
        let req = export_request(&origin, &[]);
        let top = fields(&req);
        let rs = fields(bytes_of(&top[0].1));
        assert_eq!(rs.len(), 2);
    }
}
