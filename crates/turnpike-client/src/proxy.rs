//! A plain HTTP forwarder for clients that are not MCP hosts: `turnpike connect --listen ADDR
//! <url>` accepts HTTP on a loopback address and forwards each request to the remote endpoint
//! (the request's path and query appended to the remote's origin), answering 402/401/403
//! challenges through the [`Client`] exactly as the bridge does. An L402- or PoW-unaware HTTP
//! client gets the remote's answer as if the call had been free.
//!
//! POST bodies are read whole (at most 32 MiB); the answer is returned whole too: a JSON body as
//! received (re-serialised), an SSE answer as the JSON-RPC reply it carried. Other methods are
//! forwarded without challenge handling.

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::{Client, ClientError};

const MAX_BODY: usize = 32 << 20;

/// Hop-by-hop and per-connection headers that are never forwarded.
fn drop_header(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

/// Serves the forwarder on `listener` until the task is dropped.
pub async fn serve(
    client: Arc<Client>,
    remote: String,
    listener: tokio::net::TcpListener,
) -> Result<(), ClientError> {
    let uri: http::Uri = remote
        .parse()
        .map_err(|e| ClientError::Config(format!("url {remote:?}: {e}")))?;
    let origin = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority()
            .map(|a| a.as_str())
            .ok_or_else(|| ClientError::Config(format!("url {remote:?} has no host")))?
    );
    let origin = Arc::new(origin);
    loop {
        let (tcp, _peer): (tokio::net::TcpStream, SocketAddr) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => continue,
        };
        let _ = tcp.set_nodelay(true);
        let client = client.clone();
        let origin = origin.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                let origin = origin.clone();
                async move { Ok::<_, std::convert::Infallible>(forward(&client, &origin, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn forward(client: &Client, origin: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{origin}{path}");
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if !drop_header(k) {
            headers.append(k.clone(), v.clone());
        }
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")),
    };
    if parts.method != http::Method::POST {
        let mut r = Request::builder().method(parts.method.clone()).uri(&url);
        if let Some(h) = r.headers_mut() {
            *h = headers;
        }
        let Ok(r) = r.body(Full::new(body)) else {
            return plain(StatusCode::BAD_REQUEST, "bad request".into());
        };
        return match client
            .transport()
            .send_read(r, MAX_BODY, std::time::Duration::from_secs(60))
            .await
        {
            Ok((p, b)) => {
                let mut out = Response::new(Full::new(b));
                *out.status_mut() = p.status;
                for (k, v) in &p.headers {
                    if !drop_header(k) {
                        out.headers_mut().append(k.clone(), v.clone());
                    }
                }
                out
            }
            Err(e) => plain(StatusCode::BAD_GATEWAY, format!("turnpike: {e}")),
        };
    }
    match client.post(&url, &headers, body, &|_| {}).await {
        Ok(reply) => {
            let (bytes, json) = match (&reply.message, &reply.other_body) {
                (Some(m), _) => (Bytes::from(m.to_string()), true),
                (None, Some(b)) => (b.clone(), false),
                (None, None) => (Bytes::new(), false),
            };
            let mut out = Response::new(Full::new(bytes));
            *out.status_mut() = reply.status;
            for (k, v) in &reply.headers {
                if !drop_header(k) && (!json || k != header::CONTENT_TYPE) {
                    out.headers_mut().append(k.clone(), v.clone());
                }
            }
            if json {
                out.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
            }
            out
        }
        Err(e) => {
            let status = match e {
                ClientError::Http(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::PAYMENT_REQUIRED,
            };
            plain(status, format!("turnpike: {e}\n"))
        }
    }
}
