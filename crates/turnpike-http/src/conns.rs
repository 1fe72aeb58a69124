//! Connections: how many, from whom, and for how long.
//!
//! Every listener of the gateway (the MCP endpoint and the admin listener) accepts through
//! [`accept_loop`], which holds these rules (the `[server]` keys in brackets):
//!
//! - **How many.** Open connections are counted per source address (an IPv6 address counts as
//!   its /64, an IPv4-mapped one as the IPv4 address) and in all. A connection beyond either
//!   cap (`max_connections_per_address`, `max_connections`) is closed as soon as it is
//!   accepted; the other addresses are not affected. The total is lowered at start to fit the
//!   process's open-file limit ([`ConnRules::fit_open_files`]).
//! - **First bytes.** A new connection must send enough bytes to tell HTTP/1 from HTTP/2
//!   within `first_byte_timeout_secs`, else it is closed (a socket that never sends a byte
//!   holds nothing for long). From there HTTP/1 has `header_read_timeout_secs` for each head:
//!   an HTTP/1 connection with no request in progress for that long (one whose next head has
//!   not arrived, whole, in time) is closed. The connection's own timer checks this, the one
//!   that watches for idleness below, so a request costs no timer of its own to arm and
//!   disarm (hyper's per-request header timer is off).
//! - **Idle.** A connection with no request in progress (HTTP/1 between requests, HTTP/2
//!   with no open stream, or still in its handshake) for `connection_idle_timeout_secs` is shut
//!   down gracefully (HTTP/2: GOAWAY), and dropped if it has not closed [`CLOSE_GRACE`] later.
//!   A request is in progress from its head until its response body ends (a server stream
//!   keeps its connection).
//! - **HTTP/2.** At most `http2_max_concurrent_streams` streams per connection; a keep-alive
//!   ping every `http2_keepalive_secs`, and the connection closed when its answer takes longer.
//! - **Accept errors** (out of file descriptors, …) back off (from 5 ms, doubling up to
//!   500 ms) instead of spinning, and are logged at most once a second with the number of
//!   those not logged; so are refused connections.
//!
//! [`raise_open_file_limit`] raises the soft `RLIMIT_NOFILE` to the hard limit at start.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a connection shut down for idleness may take to close before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most connections the admin listener holds open at once (its callers are the operator and
/// a metrics scraper).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// The rules one listener applies to its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnRules {
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one address.
    pub max_per_address: usize,
    /// Time to the first bytes of a new connection.
    pub first_byte_timeout: Duration,
    /// Time a connection may stay with no request in progress.
    pub idle_timeout: Duration,
    /// Time an HTTP/1 request head may take.
    pub header_read_timeout: Duration,
    /// Streams per HTTP/2 connection.
    pub h2_max_streams: u32,
    /// HTTP/2 keep-alive ping interval and answer timeout.
    pub h2_keepalive: Duration,
}

impl Default for ConnRules {
    /// The defaults of the gateway's `[server]` keys: 10,000 connections, 128 per address,
    /// first byte within 5 s, idle 60 s, request head within 10 s, 100 HTTP/2 streams, HTTP/2
    /// keep-alive every 30 s.
    fn default() -> Self {
        ConnRules {
            max_connections: 10_000,
            max_per_address: 128,
            first_byte_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            h2_max_streams: 100,
            h2_keepalive: Duration::from_secs(30),
        }
    }
}

impl ConnRules {
    /// The admin listener's rules: `[server]`'s, with at most [`ADMIN_MAX_CONNECTIONS`] open.
    pub fn for_admin(&self) -> Self {
        ConnRules {
            max_connections: self.max_connections.min(ADMIN_MAX_CONNECTIONS),
            max_per_address: self.max_per_address.min(ADMIN_MAX_CONNECTIONS),
            ..self.clone()
        }
    }

    /// Lowers `max_connections` so that the endpoint's connections, the admin listener's and a
    /// reserve for everything else the process opens (upstream sockets, stdio children's
    /// pipes, the store's files: an eighth of the limit, at least 128) fit within
    /// `open_files`. Logs when it lowers it.
    pub fn fit_open_files(mut self, open_files: Option<u64>) -> Self {
        let Some(limit) = open_files.and_then(|n| usize::try_from(n).ok()) else {
            return self;
        };
        let reserve = (limit / 8).max(128) + ADMIN_MAX_CONNECTIONS;
        let room = limit.saturating_sub(reserve).max(limit / 4).max(1);
        if self.max_connections > room {
            tracing::warn!(
                target: "turnpike::conns",
                configured = self.max_connections,
                lowered_to = room,
                open_file_limit = limit,
                "max_connections lowered to fit the open-file limit"
            );
            self.max_connections = room;
            self.max_per_address = self.max_per_address.min(room);
        }
        self
    }
}

/// Raises the soft open-file limit (`RLIMIT_NOFILE`) to the hard limit, once per process, and
/// logs what it did. Returns the soft limit in force (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(raise_nofile)
}

#[cfg(unix)]
fn raise_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        tracing::warn!(target: "turnpike::conns", error = %e, "cannot read the open-file limit");
        return None;
    }
    // rlim_t is u64 on Linux and macOS, another width elsewhere.
    #[allow(clippy::unnecessary_cast)]
    let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
    if soft >= hard {
        tracing::info!(target: "turnpike::conns", soft, hard, "open-file limit");
        return Some(soft);
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given, which lives for the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    if rc == 0 {
        tracing::info!(
            target: "turnpike::conns",
            from = soft,
            to = hard,
            "open-file limit raised to the hard limit"
        );
        Some(hard)
    } else {
        let e = io::Error::last_os_error();
        tracing::warn!(
            target: "turnpike::conns",
            soft,
            hard,
            error = %e,
            "cannot raise the open-file limit"
        );
        Some(soft)
    }
}

#[cfg(not(unix))]
fn raise_nofile() -> Option<u64> {
    None
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address has `max_connections_per_address` open.
    Address,
    /// The listener has `max_connections` open.
    Total,
}

#[derive(Default)]
struct Counts {
    per: HashMap<IpAddr, usize>,
    total: usize,
}

/// The open connections of one listener, per address and in all.
pub struct Tracker {
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
    none_open: Notify,
}

impl Tracker {
    /// A tracker with these caps.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Tracker {
            max_total,
            max_per_address,
            counts: Mutex::new(Counts::default()),
            none_open: Notify::new(),
        })
    }

    /// Counts a connection from `ip`, or says which cap it would break.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = address_key(ip);
        let mut c = self.counts.lock();
        if c.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let n = c.per.entry(key).or_insert(0);
        if *n >= self.max_per_address {
            return Err(Refusal::Address);
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            tracker: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().total
    }

    /// Connections open now from `ip` (its key: IPv6 by /64).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .per
            .get(&address_key(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Completes when no connection is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.none_open.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One counted connection; dropping it uncounts it.
pub struct Slot {
    tracker: Arc<Tracker>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.tracker.counts.lock();
        if let Some(n) = c.per.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.per.remove(&self.key);
            }
        }
        c.total = c.total.saturating_sub(1);
        if c.total == 0 {
            self.tracker.none_open.notify_waiters();
        }
    }
}

/// The key an address is counted under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64
/// (one host commonly holds a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A log line at most once per [`LOG_EVERY`], with the count of those held back.
#[derive(Default)]
struct RateLog {
    last: Option<Instant>,
    held_back: u64,
}

impl RateLog {
    /// `Some(n held back since the last line)` when a line may be written now.
    fn line(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// The HTTP server for one listener's connections, built from `rules`.
pub fn http_builder(rules: &ConnRules) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // The head's time limit is the connection loop's (`serve_connection`): hyper's would arm a
    // timer for every request, and one that falls due before any other timer makes the runtime
    // wake its I/O driver (an extra write and poll per call).
    b.http1().timer(TokioTimer::new()).header_read_timeout(None);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(rules.h2_max_streams)
        .keep_alive_interval(Some(rules.h2_keepalive))
        .keep_alive_timeout(rules.h2_keepalive);
    b
}

/// Accepts on `listener` forever (drop the future to stop accepting), serving each admitted
/// connection with the service `make(peer)` returns, under `rules` ([module docs](self)).
/// `cancel` shuts every connection down gracefully; `what` names the listener in the log.
pub async fn accept_loop<M, H>(
    listener: TcpListener,
    tracker: Arc<Tracker>,
    rules: Arc<ConnRules>,
    cancel: CancellationToken,
    what: &'static str,
    mut make: M,
) where
    M: FnMut(SocketAddr) -> H,
    H: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    H::Future: Send + 'static,
{
    let builder = Arc::new(http_builder(&rules));
    let mut errors = RateLog::default();
    let mut refused = RateLog::default();
    let mut backoff = BACKOFF_MIN;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                backoff = BACKOFF_MIN;
                x
            }
            Err(e) => {
                if let Some(held_back) = errors.line() {
                    tracing::warn!(
                        target: "turnpike::conns",
                        listener = what,
                        error = %e,
                        not_logged = held_back,
                        backoff_ms = backoff.as_millis() as u64,
                        "accept failed; backing off"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let slot = match tracker.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                if let Some(held_back) = refused.line() {
                    tracing::warn!(
                        target: "turnpike::conns",
                        listener = what,
                        peer = %peer.ip(),
                        cap = match why {
                            Refusal::Address => "max_connections_per_address",
                            Refusal::Total => "max_connections",
                        },
                        not_logged = held_back,
                        "connection refused: at its cap"
                    );
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = make(peer);
        tokio::spawn(InlineWakes::new(serve_connection(
            stream,
            slot,
            rules.clone(),
            builder.clone(),
            cancel.clone(),
            svc,
        )));
    }
}

/// Serves one connection under `rules`; `slot` is released when it ends.
async fn serve_connection<H>(
    mut stream: TcpStream,
    slot: Slot,
    rules: Arc<ConnRules>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    cancel: CancellationToken,
    svc: H,
) where
    H: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    H::Future: Send + 'static,
{
    let _slot = slot;
    let start = tokio::select! {
        r = tokio::time::timeout(rules.first_byte_timeout, read_start(&mut stream)) => r,
        () = cancel.cancelled() => return,
    };
    let start = match start {
        Ok(Ok(bytes)) if !bytes.is_empty() => bytes,
        Ok(_) => return,
        Err(_) => {
            tracing::debug!(target: "turnpike::conns", "closed a connection that sent nothing in time");
            return;
        }
    };
    // HTTP/1 unless the client sent the HTTP/2 preface; an HTTP/1 connection must send each
    // request head within `header_read_timeout` of the end of the last request (or of its first
    // bytes).
    let head_limit = (start != H2_PREFACE).then_some(rules.header_read_timeout);
    let activity = Arc::new(Activity::new());
    let svc = Tracked {
        inner: svc,
        activity: activity.clone(),
    };
    let io = TokioIo::new(Replay {
        start,
        at: 0,
        inner: stream,
    });
    let conn = builder.serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let mut shutting_down = false;
    let mut hard_close: Option<tokio::time::Instant> = None;
    // The first limit an idle connection meets: the head's (HTTP/1), or the idle one.
    let idle_limit = head_limit.map_or(rules.idle_timeout, |h| h.min(rules.idle_timeout));
    loop {
        let now = tokio::time::Instant::now();
        let wake = match (hard_close, activity.idle_since()) {
            (Some(t), _) => t,
            (None, Some(since)) if !shutting_down => {
                tokio::time::Instant::from_std(since + idle_limit)
            }
            (None, Some(since)) => match head_limit {
                // Shutting down, between requests: the next head still has its time limit.
                Some(h) => tokio::time::Instant::from_std(since + h),
                None => now + rules.idle_timeout,
            },
            _ => now + idle_limit,
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(target: "turnpike::conns", error = %e, "connection ended with an error");
                }
                return;
            }
            () = cancel.cancelled(), if !shutting_down => {
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
            () = tokio::time::sleep_until(wake) => {
                if hard_close.is_some() {
                    tracing::debug!(target: "turnpike::conns", "dropped an idle connection that did not close");
                    return;
                }
                let idle_for = activity.idle_since().map(|since| since.elapsed());
                if let (Some(idle), Some(head)) = (idle_for, head_limit) {
                    if idle >= head {
                        // No request head (or not a whole one) within its time limit, and
                        // nothing in progress: closed at once, as hyper's own timer did.
                        tracing::debug!(target: "turnpike::conns", "closed a connection whose request head did not arrive in time");
                        return;
                    }
                }
                let idle = idle_for.is_some_and(|idle| idle >= rules.idle_timeout);
                if idle && !shutting_down {
                    conn.as_mut().graceful_shutdown();
                    shutting_down = true;
                    hard_close = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}

/// How many times in a row [`InlineWakes`] polls a future again that woke itself while it was
/// being polled, before it leaves the next poll to the scheduler.
const INLINE_REPOLLS: usize = 4;

/// A connection's future whose wakes from within its own poll are served by polling it again
/// at once.
///
/// hyper's HTTP/1 server polls the request's service inside the connection's task, so the
/// service reading the request body wakes that same task (the body channel says it wants
/// data) while it runs. The multi-thread runtime takes a task that wakes itself while running
/// for one that yields: it goes to the back of the run queue and an idle worker is woken to
/// take it — a futex wake, a context switch and often a hop to another thread, once per call,
/// for work the running thread does next anyway. Here such a wake is noted and the future
/// polled again on the spot, up to [`INLINE_REPOLLS`] times (then the wake goes to the
/// scheduler, so a connection that keeps waking itself still lets others run). A wake from
/// anywhere else (the socket, a timer, another task) reaches the scheduler as before.
struct InlineWakes<F> {
    fut: Pin<Box<F>>,
    state: Arc<WakeState>,
    /// The waker the inner future sees (one per connection, so `will_wake` holds).
    waker: Waker,
}

/// `IDLE` (not being polled), `POLLING`, `WOKEN` (woken while being polled).
struct WakeState {
    state: AtomicU8,
    /// The task's own waker, for wakes that arrive while the future is not being polled.
    outer: Mutex<Option<Waker>>,
}

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;

impl<F: Future> InlineWakes<F> {
    fn new(fut: F) -> Self {
        let state = Arc::new(WakeState {
            state: AtomicU8::new(IDLE),
            outer: Mutex::new(None),
        });
        InlineWakes {
            fut: Box::pin(fut),
            waker: Waker::from(state.clone()),
            state,
        }
    }
}

impl Wake for WakeState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Being polled: noted, and served by polling again. Otherwise the task is woken.
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(WOKEN) => {}
            Err(_) => {
                if let Some(w) = &*self.outer.lock() {
                    w.wake_by_ref();
                }
            }
        }
    }
}

impl<F: Future> Future for InlineWakes<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        {
            let mut outer = this.state.outer.lock();
            if !outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *outer = Some(cx.waker().clone());
            }
        }
        for _ in 0..INLINE_REPOLLS {
            this.state.state.store(POLLING, Ordering::Release);
            let mut inner = Context::from_waker(&this.waker);
            if let Poll::Ready(out) = this.fut.as_mut().poll(&mut inner) {
                this.state.state.store(IDLE, Ordering::Release);
                return Poll::Ready(out);
            }
            if this
                .state
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
            // Woken while being polled: again, now.
        }
        this.state.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Reads until the bytes tell HTTP/1 from HTTP/2: the full HTTP/2 preface, or the first byte
/// that departs from it, or the end of the stream.
async fn read_start(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; H2_PREFACE.len()];
    let mut n = 0;
    loop {
        let got = stream.read(&mut buf[n..]).await?;
        n += got;
        let departs = buf.get(..n) != H2_PREFACE.get(..n);
        if got == 0 || n == buf.len() || departs {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

/// Requests in progress on one connection, and when the last one ended.
struct Activity {
    in_progress: AtomicUsize,
    /// Milliseconds from `epoch` to the last change.
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_progress: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Since when nothing has been in progress (`None`: something is).
    fn idle_since(&self) -> Option<Instant> {
        if self.in_progress.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A request in progress, from its head to the end of its response body.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: Arc<Activity>) -> Self {
        a.in_progress.fetch_add(1, Ordering::AcqRel);
        a.touch();
        Busy(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection's service, counting its requests in progress.
struct Tracked<H> {
    inner: H,
    activity: Arc<Activity>,
}

type BoxResponse = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<H> hyper::service::Service<Request<Incoming>> for Tracked<H>
where
    H: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    H::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = Busy::new(self.activity.clone());
        let answer = self.inner.call(req);
        Box::pin(async move {
            let res = answer.await?;
            // The body holds the request in progress until it ends or is dropped.
            Ok(res.map(|inner| Body::new(HeldBody { inner, _busy: busy })))
        })
    }
}

/// A response body that keeps its request counted as in progress until it is dropped. Every
/// part of the body is the inner one's, its size hint included (so a whole answer keeps its
/// `Content-Length`).
struct HeldBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The stream with the bytes already read from it put back in front.
struct Replay {
    start: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.start.get(this.at..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the wakes the scheduler would get.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes itself while being polled `n` times, then is ready; counts its polls.
    struct SelfWaking {
        left: usize,
        polls: Arc<AtomicUsize>,
        stash: Stash,
    }

    impl Future for SelfWaking {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            *self.stash.lock() = Some(cx.waker().clone());
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// The waker a future was last polled with.
    type Stash = Arc<parking_lot::Mutex<Option<Waker>>>;

    fn self_waking(n: usize) -> (SelfWaking, Arc<AtomicUsize>, Stash) {
        let polls = Arc::new(AtomicUsize::new(0));
        let stash = Arc::new(parking_lot::Mutex::new(None));
        let f = SelfWaking {
            left: n,
            polls: polls.clone(),
            stash: stash.clone(),
        };
        (f, polls, stash)
    }

    #[test]
    fn wakes_from_within_a_poll_are_served_by_polling_again() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (f, polls, _) = self_waking(2);
        let mut f = std::pin::pin!(InlineWakes::new(f));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "the scheduler was not woken"
        );
    }

    #[test]
    fn a_future_that_keeps_waking_itself_yields_to_the_scheduler() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (f, polls, _) = self_waking(INLINE_REPOLLS + 1);
        let mut f = std::pin::pin!(InlineWakes::new(f));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(polls.load(Ordering::SeqCst), INLINE_REPOLLS);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "woken once, to run again later"
        );
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn wakes_from_outside_a_poll_reach_the_scheduler() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // Pending without waking itself: a wake comes later, from elsewhere.
        let (mut f, polls, stash) = self_waking(0);
        f.left = usize::MAX;
        struct Quiet(SelfWaking);
        impl Future for Quiet {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.0.polls.fetch_add(1, Ordering::SeqCst);
                *self.0.stash.lock() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
        let mut f = std::pin::pin!(InlineWakes::new(Quiet(f)));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        let inner = stash.lock().take().unwrap();
        inner.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        std::thread::spawn(move || inner.wake()).join().unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        stash.lock().take().unwrap().wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn caps_per_address_and_in_all() {
        let t = Tracker::new(3, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = t.admit(a).unwrap();
        let _a2 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).err(), Some(Refusal::Address));
        let _b1 = t.admit(b).unwrap();
        assert_eq!(t.admit(b).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(t.open_from(a), 1);
        let _b2 = t.admit(b).unwrap();
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn ipv6_counts_by_slash_64() {
        let t = Tracker::new(100, 1);
        let _x = t.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            t.admit("2001:db8:1:2:ffff::9".parse().unwrap()).err(),
            Some(Refusal::Address)
        );
        assert!(t.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _m = t.admit("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(
            t.admit("10.0.0.1".parse().unwrap()).err(),
            Some(Refusal::Address)
        );
    }

    #[test]
    fn the_total_fits_the_open_file_limit() {
        let rules = ConnRules::default();
        assert_eq!(rules.clone().fit_open_files(None), rules);
        assert_eq!(rules.clone().fit_open_files(Some(1 << 20)), rules);
        let small = rules.clone().fit_open_files(Some(1024));
        assert_eq!(small.max_connections, 1024 - 128 - ADMIN_MAX_CONNECTIONS);
        assert!(small.max_per_address <= small.max_connections);
        let tiny = rules.fit_open_files(Some(100));
        assert_eq!(tiny.max_connections, 25);
    }

    #[test]
    fn rate_log_holds_back_within_a_second() {
        let mut l = RateLog::default();
        assert_eq!(l.line(), Some(0));
        assert_eq!(l.line(), None);
        assert_eq!(l.line(), None);
        l.last = Some(Instant::now() - LOG_EVERY);
        assert_eq!(l.line(), Some(2));
    }
}
