//! The load run's floor (`--serve-proxy URL`): a bare reverse proxy to one MCP endpoint, made
//! of the gateway's own parts without the gate — hyper's server (HTTP/1.1, as the gateway
//! builds it through hyper-util) in front, turnpike's upstream client (`HttpUpstream`: its
//! connection pool, hop-by-hop headers dropped, `Host` rewritten) behind. No parse of the body,
//! no policy, no limits, no metrics: what any gate built on these parts pays before it does
//! anything, measured in the same run as the gateway.
//!
//! For measuring on loopback only: it binds 127.0.0.1 (port 0, logged) and has none of the
//! gateway's bounds on connections, heads or bodies.

use std::convert::Infallible;

use anyhow::Context;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower_service::Service;
use turnpike_upstream::http::HttpUpstream;

/// Runs the proxy to `upstream` until the process is stopped. Logs `proxy listening on
/// http://127.0.0.1:PORT` once it listens.
pub(crate) async fn serve_proxy(upstream: &str) -> anyhow::Result<()> {
    let up = HttpUpstream::new(upstream).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the proxy's listener")?;
    eprintln!("proxy listening on http://{}", listener.local_addr()?);
    serve(listener, up).await
}

async fn serve(listener: TcpListener, up: HttpUpstream) -> anyhow::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("proxy: accept failed: {e}");
                // Out of descriptors, say: back off rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // As the gateway does with every connection it accepts.
        let _ = stream.set_nodelay(true);
        let up = up.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let mut up = up.clone();
                async move {
                    let resp = up.call(req.map(axum::body::Body::new)).await;
                    Ok::<_, Infallible>(resp.unwrap_or_else(|never| match never {}))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::Response;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;

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
