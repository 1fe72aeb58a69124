//! OpenTelemetry traces for turnpike, without the OpenTelemetry SDK.
//!
//! - [`span`]: the span model — trace and span ids, kind, Unix-nanosecond times, attributes,
//!   events, status — and W3C `traceparent` formatting;
//! - [`proto`]: a hand-written protobuf encoder for the OTLP trace messages
//!   (`ExportTraceServiceRequest` and what it holds), with opentelemetry-proto's field numbers;
//! - [`export`]: [`Telemetry`], the handle the gateway records through: sampling (a caller's
//!   sampled flag honoured, else a ratio of trace ids), a bounded queue that drops and counts
//!   when full, and a background task that batches spans and POSTs them to the collector's
//!   OTLP/HTTP endpoint (`Content-Type: application/x-protobuf`);
//! - [`config`]: the `[telemetry]` section.
//!
//! What a call's spans say is the gateway's business (`turnpike-gateway/src/trace.rs`); this
//! crate knows nothing of MCP. With no `[telemetry]` section nothing here is built and the
//! call path does no work for it.

pub mod config;
pub mod export;
pub mod proto;
pub mod span;

pub use config::TelemetryConfig;
pub use export::{Stats, Telemetry};
pub use span::{
    traceparent, Clock, Event, KeyValue, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value,
};
