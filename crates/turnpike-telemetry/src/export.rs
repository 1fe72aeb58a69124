//! The exporter: a bounded queue in front of one background task that batches spans and
//! POSTs them to the collector.
//!
//! - **The call path never waits**: [`Telemetry::record`] counts the spans against the queue
//!   (an atomic add) and hands them to an unbounded channel; past `queue_size` spans waiting,
//!   they are dropped and counted instead. Nothing is encoded or sent on the call path.
//! - **Batches**: the task sends when `batch_size` spans are waiting, and every
//!   `flush_interval_ms` whatever is waiting; each request within `export_timeout_secs`.
//! - **Failures** (no connection, a non-2xx answer, a timeout) drop the batch and are counted;
//!   they are logged at most once per [`LOG_EVERY`] (or per flush interval when longer), with
//!   the collector's host and path and what failed since — never the configured headers.
//!   Dropped spans are reported the same way.
//! - The task ends, after a last export, when every handle is gone; [`Telemetry::flush`]
//!   exports what is waiting (at shutdown).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{mpsc, oneshot};

use crate::config::TelemetryConfig;
use crate::proto::{export_request, Origin};
use crate::span::{KeyValue, Span, TraceId};

/// Failures and drops are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The largest collector answer read (and thrown away).
const MAX_ANSWER: usize = 64 * 1024;

/// What the exporter did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans the collector accepted (a 2xx answer).
    pub exported: u64,
    /// Spans dropped because the queue was full.
    pub dropped: u64,
    /// Spans in exports that failed.
    pub failed: u64,
}

enum Msg {
    Spans(Vec<Span>),
    Flush(oneshot::Sender<()>),
}

struct Shared {
    tx: mpsc::UnboundedSender<Msg>,
    queued: AtomicUsize,
    queue_size: usize,
    ratio: f64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// A handle on the exporter (cheap to clone). When the last one is dropped, the background
/// task exports what is left and ends.
#[derive(Clone)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Where and how the background task sends.
struct Sink {
    uri: Uri,
    /// `host[:port]/path`, for messages.
    shown: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: turnpike_https::HttpsClient<Full<Bytes>>,
    timeout: Duration,
    origin: Origin,
}

impl Telemetry {
    /// Starts the exporter for `cfg` (a task on the current Tokio runtime).
    pub fn start(cfg: &TelemetryConfig) -> Result<Telemetry, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "telemetry: no async runtime to run the exporter on".to_owned())?;
        crate::config::check_endpoint(&cfg.otlp_endpoint)?;
        let uri: Uri = cfg
            .otlp_endpoint
            .parse()
            .map_err(|_| format!("otlp_endpoint {:?} is not a URL", cfg.otlp_endpoint))?;
        let mut headers = Vec::with_capacity(cfg.headers.len());
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("telemetry header {k:?} is not a header name"))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| format!("the value of telemetry header {k:?} is not valid"))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let timeout = Duration::from_secs(cfg.export_timeout_secs);
        let client = turnpike_https::client(&turnpike_https::Options {
            connect_timeout: Some(timeout),
            ..turnpike_https::Options::default()
        })
        .map_err(|e| format!("telemetry: TLS set-up: {e}"))?;
        let shown = format!(
            "{}{}",
            uri.authority()
                .map_or("", |a| a.as_str().rsplit('@').next().unwrap_or("")),
            uri.path()
        );
        let sink = Sink {
            uri,
            shown,
            headers,
            client,
            timeout,
            origin: Origin {
                resource: vec![
                    KeyValue::new("service.name", cfg.service_name.clone()),
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                    KeyValue::new("telemetry.sdk.name", "turnpike"),
                    KeyValue::new("telemetry.sdk.language", "rust"),
                ],
                scope_name: "turnpike",
                scope_version: env!("CARGO_PKG_VERSION"),
            },
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tx,
            queued: AtomicUsize::new(0),
            queue_size: cfg.queue_size,
            ratio: cfg.sample_ratio,
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let interval = Duration::from_millis(cfg.flush_interval_ms);
        runtime.spawn(run(
            rx,
            Arc::downgrade(&shared),
            sink,
            cfg.batch_size,
            interval,
        ));
        Ok(Telemetry { shared })
    }

    /// Whether a trace is recorded: a caller's decision when it sent one (`parent_flags`, bit
    /// 0: sampled), else `sample_ratio` applied to the trace id (its last 8 bytes against the
    /// ratio's share of 2⁶⁴, so every participant using the same rule agrees).
    pub fn should_sample(&self, parent_flags: Option<u8>, trace: &TraceId) -> bool {
        if let Some(flags) = parent_flags {
            return flags & 1 == 1;
        }
        sample_ratio(self.shared.ratio, trace)
    }

    /// Hands a call's finished spans to the exporter; never waits. Past the queue's size they
    /// are dropped and counted.
    pub fn record(&self, spans: Vec<Span>) {
        let n = spans.len();
        if n == 0 {
            return;
        }
        let s = &self.shared;
        if s.queued.fetch_add(n, Relaxed) + n > s.queue_size {
            s.queued.fetch_sub(n, Relaxed);
            s.dropped.fetch_add(n as u64, Relaxed);
            return;
        }
        if s.tx.send(Msg::Spans(spans)).is_err() {
            s.queued.fetch_sub(n, Relaxed);
            s.dropped.fetch_add(n as u64, Relaxed);
        }
    }

    /// Exports what is waiting, waiting at most `within` for it.
    pub async fn flush(&self, within: Duration) {
        let (done, wait) = oneshot::channel();
        if self.shared.tx.send(Msg::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(within, wait).await;
        }
    }

    /// What the exporter did so far.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            exported: s.exported.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            failed: s.failed.load(Relaxed),
        }
    }
}

/// `ratio` applied to `trace`: its last 8 bytes (big-endian) below `ratio × 2⁶⁴`.
pub fn sample_ratio(ratio: f64, trace: &TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace.0[8..]);
    // 2^64 as f64 is exact; the product fits below it.
    let bound = (ratio * 18_446_744_073_709_551_616.0) as u64;
    u64::from_be_bytes(low) < bound
}

/// The background task.
async fn run(
    mut rx: mpsc::UnboundedReceiver<Msg>,
    shared: std::sync::Weak<Shared>,
    sink: Sink,
    batch_size: usize,
    interval: Duration,
) {
    let mut batch: Vec<Span> = Vec::new();
    // The first tick one interval from now (not at once: what arrives first waits its turn).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let log_every = interval.max(LOG_EVERY);
    let mut log = Throttle::default();
    loop {
        let flush_done = tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Spans(spans)) => {
                    if let Some(s) = shared.upgrade() {
                        s.queued.fetch_sub(spans.len(), Relaxed);
                    }
                    batch.extend(spans);
                    if batch.len() < batch_size {
                        continue;
                    }
                    None
                }
                Some(Msg::Flush(done)) => Some(done),
                None => {
                    export_all(&sink, &shared, &mut batch, batch_size, &mut log, log_every).await;
                    return;
                }
            },
            _ = tick.tick() => None,
        };
        export_all(&sink, &shared, &mut batch, batch_size, &mut log, log_every).await;
        if let Some(done) = flush_done {
            let _ = done.send(());
        }
    }
}

/// When failures and drops were last logged, and what they were then.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    failed_seen: u64,
    dropped_seen: u64,
}

async fn export_all(
    sink: &Sink,
    shared: &std::sync::Weak<Shared>,
    batch: &mut Vec<Span>,
    batch_size: usize,
    log: &mut Throttle,
    log_every: Duration,
) {
    let mut last_error = None;
    while !batch.is_empty() {
        let take = batch.len().min(batch_size);
        let chunk: Vec<Span> = batch.drain(..take).collect();
        let result = sink.send(&chunk).await;
        let Some(s) = shared.upgrade() else {
            // Nobody left to count for; a last export goes on.
            continue;
        };
        match result {
            Ok(()) => s.exported.fetch_add(take as u64, Relaxed),
            Err(e) => {
                last_error = Some(e);
                s.failed.fetch_add(take as u64, Relaxed)
            }
        };
    }
    let Some(s) = shared.upgrade() else {
        return;
    };
    let (failed, dropped) = (s.failed.load(Relaxed), s.dropped.load(Relaxed));
    let news = failed > log.failed_seen || dropped > log.dropped_seen;
    if news && log.last.is_none_or(|t| t.elapsed() >= log_every) {
        tracing::warn!(
            target: "turnpike::telemetry",
            collector = %sink.shown,
            error = last_error.as_deref().unwrap_or(""),
            spans_failed = failed - log.failed_seen,
            spans_dropped = dropped - log.dropped_seen,
            "span export failed or spans were dropped (counted since the last warning)"
        );
        log.last = Some(Instant::now());
        log.failed_seen = failed;
        log.dropped_seen = dropped;
    }
}

impl Sink {
    async fn send(&self, spans: &[Span]) -> Result<(), String> {
        let body = export_request(&self.origin, spans);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        for (k, v) in &self.headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{}", ErrorChain(&e)))?;
            let status = resp.status();
            // Read (and drop) the answer so the connection can be used again.
            let _ = Limited::new(resp.into_body(), MAX_ANSWER).collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)))
    }
}

/// An error and its causes, `outer: inner: …`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{SpanId, SpanKind, Status};
    use std::borrow::Cow;
    use std::sync::Mutex;
    use tokio::net::TcpListener;

    fn span(i: u8) -> Span {
        Span {
            trace_id: TraceId([i; 16]),
            span_id: SpanId([i; 8]),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: Cow::Borrowed("s"),
            kind: SpanKind::Internal,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![],
            events: vec![],
            status: Status::default(),
        }
    }

    /// A collector on loopback port 0: records each request's content type, authorization
    /// and body; answers `status`.
    async fn collector(status: u16) -> (String, Arc<Mutex<Vec<(String, String, usize)>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                let s = s.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let s = s.clone();
                            async move {
                                let ct = req.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .map(|v| v.to_str().unwrap().to_owned())
                                    .unwrap_or_default();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                s.lock().unwrap().push((ct, auth, body.len()));
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(conn), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}/v1/traces"), seen)
    }

    fn config(endpoint: &str, queue: usize, batch: usize) -> TelemetryConfig {
        toml::from_str(&format!(
            "otlp_endpoint = \"{endpoint}\"\nqueue_size = {queue}\nbatch_size = {batch}\nflush_interval_ms = 3600000\nheaders = {{ authorization = \"Bearer t0ken\" }}"
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn batches_reach_the_collector_with_headers() {
        let (url, seen) = collector(200).await;
        let t = Telemetry::start(&config(&url, 100, 4)).unwrap();
        for i in 1..=10 {
            t.record(vec![span(i)]);
        }
        t.flush(Duration::from_secs(10)).await;
        let seen = seen.lock().unwrap().clone();
        // 10 spans in batches of at most 4: 4 + 4 (full batches) + 2 (the flush).
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen
            .iter()
            .all(|(ct, auth, n)| ct == "application/x-protobuf"
                && auth == "Bearer t0ken"
                && *n > 0));
        assert_eq!(
            t.stats(),
            Stats {
                exported: 10,
                dropped: 0,
                failed: 0
            }
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_failures_count() {
        let (url, _seen) = collector(503).await;
        let t = Telemetry::start(&config(&url, 3, 100)).unwrap();
        // The task has not run yet (this test's runtime is single-threaded): the queue fills.
        t.record(vec![span(1), span(2)]);
        t.record(vec![span(3), span(4)]);
        t.record(vec![span(5)]);
        assert_eq!(t.stats().dropped, 2);
        t.flush(Duration::from_secs(10)).await;
        assert_eq!(
            t.stats(),
            Stats {
                exported: 0,
                dropped: 2,
                failed: 3
            }
        );
    }

    #[test]
    fn ratio_sampling_follows_the_trace_id() {
        let low = TraceId([0; 16]);
        let mut high = [0xff; 16];
        high[0] = 1;
        let high = TraceId(high);
        assert!(sample_ratio(0.5, &low) && !sample_ratio(0.5, &high));
        assert!(sample_ratio(1.0, &high) && !sample_ratio(0.0, &low));
        let hits = (0..10_000)
            .filter(|_| sample_ratio(0.25, &TraceId::random()))
            .count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }
}
