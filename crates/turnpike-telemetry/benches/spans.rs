//! The cost telemetry adds to one call: building a call's span tree and handing it to the
//! exporter (what the call path pays), and encoding it (what the background task pays).

#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use turnpike_telemetry::proto::{export_request, Origin};
use turnpike_telemetry::{Clock, Event, KeyValue, Span, SpanId, SpanKind, Status, TraceId};

/// A tree shaped like a paid `tools/call`: the server span, four stages, the upstream.
fn call_spans(clock: &Clock) -> Vec<Span> {
    let trace_id = TraceId::random();
    let root = SpanId::random();
    let t = clock.unix_nanos(clock.start());
    let mut spans = Vec::with_capacity(6);
    for name in ["parse", "price", "decide", "verify", "limits", "upstream"] {
        spans.push(Span {
            trace_id,
            span_id: SpanId::random(),
            parent_span_id: Some(root),
            trace_state: String::new(),
            flags: 1,
            name: Cow::Borrowed(name),
            kind: SpanKind::Internal,
            start_time_unix_nano: t,
            end_time_unix_nano: t + 1000,
            attributes: vec![KeyValue::new("turnpike.rail", "pow")],
            events: vec![],
            status: Status::default(),
        });
    }
    spans.push(Span {
        trace_id,
        span_id: root,
        parent_span_id: None,
        trace_state: String::new(),
        flags: 1,
        name: Cow::Owned(format!("tools/call {}", "add")),
        kind: SpanKind::Server,
        start_time_unix_nano: t,
        end_time_unix_nano: t + 10_000,
        attributes: vec![
            KeyValue::new("mcp.method.name", "tools/call"),
            KeyValue::new("gen_ai.tool.name", "add".to_owned()),
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("jsonrpc.request.id", "7".to_owned()),
            KeyValue::new("http.response.status_code", 200i64),
            KeyValue::new("turnpike.outcome", "paid"),
            KeyValue::new("turnpike.rail", "pow"),
            KeyValue::new("turnpike.caller.kind", "anonymous"),
        ],
        events: vec![Event {
            time_unix_nano: t + 500,
            name: "turnpike.credential_accepted",
            attributes: vec![KeyValue::new("turnpike.rail", "pow")],
        }],
        status: Status::default(),
    });
    spans
}

fn bench(c: &mut Criterion) {
    let clock = Clock::now();
    let origin = Origin {
        resource: vec![KeyValue::new("service.name", "turnpike")],
        scope_name: "turnpike",
        scope_version: "0.1.0",
    };
    c.bench_function("telemetry/build_call_spans", |b| {
        b.iter(|| black_box(call_spans(&clock)))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // A collector nobody listens on: records go to the queue (and are dropped when it is full,
    // as under a stalled collector); the task never runs on this thread while measuring.
    let cfg: turnpike_telemetry::TelemetryConfig =
        toml::from_str("otlp_endpoint = \"http://127.0.0.1:9/v1/traces\"\nqueue_size = 1000000")
            .unwrap();
    let t = turnpike_telemetry::Telemetry::start(&cfg).unwrap();
    c.bench_function("telemetry/build_and_record", |b| {
        b.iter(|| t.record(call_spans(&clock)))
    });
    let spans = call_spans(&clock);
    c.bench_function("telemetry/encode_one_call", |b| {
        b.iter(|| black_box(export_request(&origin, black_box(&spans))))
    });
    let batch: Vec<Span> = (0..73).flat_map(|_| call_spans(&clock)).collect();
    c.bench_function("telemetry/encode_batch_511", |b| {
        b.iter(|| black_box(export_request(&origin, black_box(&batch))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
