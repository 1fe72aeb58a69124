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
//! - [`config`]: the `[telemetry]` section;
//! - [`context`]: request ids and W3C trace context (the `traceparent` header, else
//!   `params._meta.traceparent`), as found on a request and forwarded upstream;
//! - [`call`]: the spans of one call through the gateway ([`CallSpans`]), fed by the pipeline
//!   at each stage boundary and ended with the call's facts ([`CallSummary`]).
//!
//! It stands on `turnpike-core` (decisions, grants, identities) and knows none of the
//! gateway's crates: the pipeline hands it what happened as plain facts. With no
//! `[telemetry]` section nothing here is built and the call path does no tracing work
//! ([`CallSpans`] is then empty); request ids and trace context are read either way.

pub mod call;
pub mod config;
pub mod context;
pub mod export;
pub mod proto;
pub mod span;

pub use call::{CallSpans, CallSummary, Stage};
pub use context::{request_id, TraceParent, TraceSource, REQUEST_ID, REQUEST_ID_HEADER};

pub use config::TelemetryConfig;
pub use export::{Stats, Telemetry};
pub use span::{
    traceparent, Clock, Event, KeyValue, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value,
};
