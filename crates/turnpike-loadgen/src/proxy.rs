//! The load run's floor (`--serve-proxy URL`): a bare reverse proxy to one MCP endpoint, made
//! of the gateway's own parts without the gate — its listener (`turnpike_http::conns`: the
//! accept loop, connection caps and timeouts at their defaults, hyper's server as the gateway
//! builds it) in front, its upstream client (`HttpUpstream`: the connection pool, hop-by-hop
//! headers dropped, `Host` rewritten) behind, the same allocator and runtime. No parse of the
//! body, no policy, no limits, no metrics: what any gate built on these parts pays before it
//! does anything, measured in the same run as the gateway.
//!
//! For measuring on loopback only: it binds 127.0.0.1 (port 0, logged).

use std::convert::Infallible;

use anyhow::Context;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use turnpike_http::conns::{accept_loop, ConnRules, Tracker};
use turnpike_upstream::http::HttpUpstream;

/// Runs the proxy to `upstream` until the process is stopped. Logs `proxy listening on
/// http://127.0.0.1:PORT` once it listens.
pub(crate) async fn serve_proxy(upstream: &str) -> anyhow::Result<()> {
    let up = HttpUpstream::new(upstream).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the proxy's listener")?;
    eprintln!("proxy listening on http://{}", listener.local_addr()?);
    serve(listener, up).await;
    Ok(())
}

/// Accepts on `listener` as the gateway's endpoint does (its default `[server]` rules) and
/// forwards every request to `up` as it is.
async fn serve(listener: TcpListener, up: HttpUpstream) {
    let rules = ConnRules::default();
    let tracker = Tracker::new(rules.max_connections, rules.max_per_address);
    accept_loop(
        listener,
        tracker,
        std::sync::Arc::new(rules),
        CancellationToken::new(),
        "floor",
        move |_peer| {
            let up = up.clone();
            service_fn(move |req: Request<Incoming>| {
                let mut up = up.clone();
                async move {
                    let resp = up.call(req.map(axum::body::Body::new)).await;
                    Ok::<_, Infallible>(resp.unwrap_or_else(|never| match never {}))
                }
            })
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::Response;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    /// An upstream that answers with what it was sent: method, path, `Host` and body.
    async fn echo_upstream() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = service_fn(|req: Request<Incoming>| async move {
                        let head = format!(
                            "{} {} host={} ",
                            req.method(),
                            req.uri(),
                            req.headers()[http::header::HOST].to_str().unwrap()
                        );
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut out = head.into_bytes();
                        out.extend_from_slice(&body);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_each_call_to_the_upstream_endpoint() {
        let up_addr = echo_upstream().await;
        let up = HttpUpstream::new(&format!("http://{up_addr}/mcp")).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = l.local_addr().unwrap();
        tokio::spawn(serve(l, up));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        for i in 0..3 {
            let req = Request::post(format!("http://{proxy}/mcp"))
                .body(Full::new(Bytes::from(format!("call {i}"))))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                body,
                format!("POST /mcp host={up_addr} call {i}").as_bytes()
            );
        }
    }
}
