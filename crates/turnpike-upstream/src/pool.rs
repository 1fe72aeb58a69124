//! The HTTP upstream's connections: HTTP/1.1 connections to its one origin, each driven by a
//! task of its own, kept idle between calls and reused most recent first.
//!
//! A general client looks a pool up by scheme and authority, races a checkout against a new
//! connection, and spawns a task per call that waits for the connection to be free again before
//! handing it back. An upstream has one origin and every request it forwards is HTTP/1.1, so
//! here the idle connections are one list, a checkout takes the most recent one that is ready,
//! and a connection goes back to the list when its answer's body has been read to the end — by
//! then hyper's dispatcher has already asked for the next request, so no task waits for it.
//!
//! - A connection whose answer was not read to the end (the caller went away mid-stream) is not
//!   kept: hyper closes it.
//! - A request that could not be written on a reused connection (the upstream closed it while
//!   it was idle) is sent again on another, as general clients do; a request a fresh connection
//!   failed is not.
//! - At most [`MAX_IDLE`] connections are kept idle, each at most [`IDLE_FOR`]: a task per pool,
//!   started with its first idle connection, closes the expired ones every third of that
//!   (and ends with the pool).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use parking_lot::Mutex;
use tower::ServiceExt;
use turnpike_https::Connector;

/// The most connections kept idle per upstream (more are closed when their call ends).
pub const MAX_IDLE: usize = 512;
/// How long an idle connection is kept.
pub const IDLE_FOR: Duration = Duration::from_secs(90);

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened (DNS, TCP, TLS).
    #[error("cannot connect")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed while the request was sent or its answer's head read.
    #[error("the exchange failed")]
    Exchange(#[source] hyper::Error),
}

struct Idle {
    tx: SendRequest<Body>,
    since: Instant,
}

/// The connections to one origin.
pub(crate) struct Pool {
    connector: Connector,
    /// `scheme://authority`, what the connector dials.
    origin: Uri,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_for: Duration,
    /// Whether the task closing expired idle connections runs.
    reaping: AtomicBool,
}

impl Pool {
    pub(crate) fn new(connector: Connector, origin: Uri) -> Arc<Pool> {
        Pool::with_limits(connector, origin, MAX_IDLE, IDLE_FOR)
    }

    fn with_limits(
        connector: Connector,
        origin: Uri,
        max_idle: usize,
        idle_for: Duration,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            connector,
            origin,
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_for,
            reaping: AtomicBool::new(false),
        })
    }

    /// Closes the idle connections kept longer than `idle_for` (the oldest are first).
    fn drop_expired(idle: &mut Vec<Idle>, idle_for: Duration) {
        let now = Instant::now();
        let expired = idle
            .iter()
            .take_while(|i| now.duration_since(i.since) >= idle_for)
            .count();
        if expired > 0 {
            idle.drain(..expired);
        }
    }

    /// Starts the task that closes expired idle connections, once per pool; it holds the pool
    /// weakly and ends with it.
    fn start_reaping(self: &Arc<Self>) {
        // A load first: every hand-back passes here, and once started nothing is written.
        if self.reaping.load(Ordering::Relaxed) || self.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.reaping.store(false, Ordering::Relaxed);
            return;
        };
        let pool: Weak<Pool> = Arc::downgrade(self);
        let every = self.idle_for / 3;
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                Pool::drop_expired(&mut pool.idle.lock(), pool.idle_for);
            }
        });
    }

    /// Sends `req` (origin-form target, `Host` set) and returns the answer, its body streaming;
    /// the connection goes back to the pool when that body has been read whole.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, SendError> {
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                None => (self.connect().await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let mut body = Pooled {
                        body,
                        back: Some((tx, self.clone())),
                    };
                    if http_body::Body::is_end_stream(&body.body) {
                        body.release();
                    }
                    return Ok(Response::from_parts(parts, Body::new(body)));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the idle connection was closed under us; try another.
                    Some(r) if reused => req = r,
                    _ => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that can take a request now; closed and expired
    /// ones are dropped on the way.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock();
        if idle.is_empty() {
            return None;
        }
        Pool::drop_expired(&mut idle, self.idle_for);
        let mut cx = Context::from_waker(Waker::noop());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            match idle[i].tx.poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => return Some(idle.remove(i).tx),
                Poll::Ready(Err(_)) => {
                    idle.remove(i);
                }
                // Still finishing its last answer: left for a later call.
                Poll::Pending => {}
            }
        }
        None
    }

    fn checkin(self: &Arc<Self>, tx: SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        {
            let mut idle = self.idle.lock();
            if idle.len() >= self.max_idle {
                return;
            }
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
        self.start_reaping();
    }

    async fn connect(&self) -> Result<SendRequest<Body>, SendError> {
        let io = self
            .connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(SendError::Connect)?;
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "turnpike::upstream", error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }

    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().len()
    }
}

/// An answer's body that hands its connection back when it has been read to the end.
struct Pooled {
    body: Incoming,
    back: Option<(SendRequest<Body>, Arc<Pool>)>,
}

impl Pooled {
    fn release(&mut self) {
        if let Some((tx, pool)) = self.back.take() {
            pool.checkin(tx);
        }
    }
}

impl http_body::Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let r = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if http_body::Body::is_end_stream(&this.body) => {
                this.release()
            }
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.body)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Read whole but never polled past its last frame (the server saw `is_end_stream`):
        // still reusable. Otherwise the connection is dropped with its unread answer.
        if self.back.is_some() && http_body::Body::is_end_stream(&self.body) {
            self.release();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pool_for(addr: std::net::SocketAddr) -> Arc<Pool> {
        pool_keeping(addr, MAX_IDLE)
    }

    fn pool_keeping(addr: std::net::SocketAddr, max_idle: usize) -> Arc<Pool> {
        let connector = turnpike_https::connector(
            turnpike_https::tls_config().unwrap(),
            &turnpike_https::Options::default(),
        );
        Pool::with_limits(
            connector,
            format!("http://{addr}/").parse().unwrap(),
            max_idle,
            IDLE_FOR,
        )
    }

    fn get(addr: std::net::SocketAddr, path: &str) -> Request<Body> {
        Request::builder()
            .uri(path)
            .header(http::header::HOST, addr.to_string())
            .body(Body::empty())
            .unwrap()
    }

    /// A hyper HTTP/1 server on loopback counting the connections it accepts: `/` answers
    /// "ok", `/stream` streams 64 chunks of 1 KiB, one every millisecond.
    async fn server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = l.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        if req.uri().path() == "/stream" {
                            let (tx, rx) =
                                tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
                            tokio::spawn(async move {
                                for _ in 0..64 {
                                    let chunk = Frame::data(Bytes::from(vec![b'x'; 1024]));
                                    if tx.send(Ok(chunk)).await.is_err() {
                                        return;
                                    }
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                }
                            });
                            let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
                            Ok::<_, Infallible>(Response::new(Body::new(body)))
                        } else {
                            Ok(Response::new(Body::from("ok")))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// Eight `/stream` calls at once, their answers' heads in hand and their bodies unread.
    async fn eight_streams(pool: &Arc<Pool>, addr: std::net::SocketAddr) -> Vec<Response<Body>> {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.send(get(addr, "/stream")).await.unwrap() })
            })
            .collect();
        let mut answers = Vec::new();
        for c in calls {
            answers.push(c.await.unwrap());
        }
        answers
    }

    async fn text(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn calls_one_after_another_share_one_connection() {
        let (addr, accepted) = server().await;
        let pool = pool_for(addr);
        for _ in 0..20 {
            let r = pool.send(get(addr, "/")).await.unwrap();
            assert_eq!(text(r).await, "ok");
        }
        // A streamed answer read to its end gives its connection back too.
        for _ in 0..3 {
            let r = pool.send(get(addr, "/stream")).await.unwrap();
            assert_eq!(text(r).await.len(), 64 * 1024);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn concurrent_calls_open_one_connection_each_and_keep_them() {
        let (addr, accepted) = server().await;
        let pool = pool_for(addr);
        let answers = eight_streams(&pool, addr).await;
        // All eight answers are open at once: eight connections.
        assert_eq!(accepted.load(Ordering::SeqCst), 8);
        assert_eq!(pool.idle_count(), 0);
        for a in answers {
            assert_eq!(text(a).await.len(), 64 * 1024);
        }
        assert_eq!(pool.idle_count(), 8);
        for _ in 0..16 {
            assert_eq!(text(pool.send(get(addr, "/")).await.unwrap()).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn an_answer_dropped_mid_stream_takes_its_connection_with_it() {
        let (addr, accepted) = server().await;
        let pool = pool_for(addr);
        let mut body = pool.send(get(addr, "/stream")).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(text(pool.send(get(addr, "/")).await.unwrap()).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// A server that answers one request per connection and then closes it without saying so
    /// (no `Connection: close`), as an upstream closing idle keep-alive connections does: every
    /// call still gets its answer.
    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_not_an_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = l.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    let _ = sock.shutdown().await;
                    drop(sock);
                    let _ = closed_tx.send(());
                });
            }
        });
        let pool = pool_for(addr);
        for _ in 0..10 {
            assert_eq!(text(pool.send(get(addr, "/")).await.unwrap()).await, "ok");
            // The upstream has closed this connection before the next call picks it.
            closed.recv().await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
    }

    /// Over TLS (the node certificate the Lightning tests use, pinned): the handshake once,
    /// then every call on the same connection.
    #[tokio::test]
    async fn https_connections_are_kept_too() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../turnpike-lightning/tests/fixtures");
        let cert = CertificateDer::from_pem_file(fixtures.join("node-a.cert.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_file(fixtures.join("node-a.key.pem")).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let count = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                // The client that does not trust the certificate gives up mid-handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let answer = format!("{} over tls", req.uri().path());
                        Ok::<_, Infallible>(Response::new(Body::from(answer)))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        let tls = turnpike_https::pinned_tls_config(vec![cert]).unwrap();
        let connector = turnpike_https::connector(tls, &turnpike_https::Options::default());
        let origin = format!("https://localhost:{}/", addr.port())
            .parse()
            .unwrap();
        let pool = Pool::new(connector, origin);
        for _ in 0..5 {
            let r = pool.send(get(addr, "/mcp")).await.unwrap();
            assert_eq!(text(r).await, "/mcp over tls");
        }
        assert_eq!(handshakes.load(Ordering::SeqCst), 1);

        // A certificate that is not the pinned one: no connection, and the cause says why.
        let other = turnpike_https::connector(
            turnpike_https::tls_config().unwrap(),
            &turnpike_https::Options::default(),
        );
        let origin = format!("https://localhost:{}/", addr.port())
            .parse()
            .unwrap();
        let e = Pool::new(other, origin)
            .send(get(addr, "/mcp"))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Connect(_)), "{e:?}");
        let chain = crate::error_chain(&e);
        assert!(chain.starts_with("cannot connect: "), "{chain}");
        assert!(chain.to_lowercase().contains("certificate"), "{chain}");
    }

    /// An idle connection is closed when it has been kept its time, with no call to notice.
    #[tokio::test]
    async fn idle_connections_expire_without_traffic() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            loop {
                let (sock, _) = l.accept().await.unwrap();
                let ended_tx = ended_tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Body::from("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                    let _ = ended_tx.send(());
                });
            }
        });
        let connector = turnpike_https::connector(
            turnpike_https::tls_config().unwrap(),
            &turnpike_https::Options::default(),
        );
        let origin = format!("http://{addr}/").parse().unwrap();
        let pool = Pool::with_limits(connector, origin, MAX_IDLE, Duration::from_secs(1));
        assert_eq!(text(pool.send(get(addr, "/")).await.unwrap()).await, "ok");
        assert_eq!(pool.idle_count(), 1);
        // The server sees the connection end (the deadline only bounds a broken run).
        tokio::time::timeout(Duration::from_secs(20), ended.recv())
            .await
            .expect("the idle connection was never closed")
            .unwrap();
        assert_eq!(pool.idle_count(), 0);
        // The next call opens a new connection and is answered.
        assert_eq!(text(pool.send(get(addr, "/")).await.unwrap()).await, "ok");
    }

    #[tokio::test]
    async fn idle_connections_are_bounded() {
        let (addr, _) = server().await;
        let pool = pool_keeping(addr, 3);
        let answers = eight_streams(&pool, addr).await;
        for a in answers {
            drop(a.into_body().collect().await.unwrap());
        }
        assert_eq!(pool.idle_count(), 3);
    }
}
