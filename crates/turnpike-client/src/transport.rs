//! The HTTP client underneath: hyper-util's pooled client over rustls (ring, Mozilla roots),
//! HTTP/1.1 and HTTP/2, TCP_NODELAY. Response bodies are streamed.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

use crate::ClientError;

/// A pooled HTTP(S) client.
#[derive(Clone)]
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    /// A client trusting the Mozilla root certificates.
    pub fn new() -> Result<Self, ClientError> {
        use hyper_rustls::ConfigBuilderExt;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("tls: {e}")))?
            .with_webpki_roots()
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Transport { client })
    }

    /// Sends a request; the response body is left to stream.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, ClientError> {
        self.client
            .request(req)
            .await
            .map_err(|e| ClientError::Http(error_chain(&e)))
    }

    /// Sends a request and reads the whole body (at most `limit` bytes) within `timeout`.
    pub async fn send_read(
        &self,
        req: Request<Full<Bytes>>,
        limit: usize,
        timeout: Duration,
    ) -> Result<(http::response::Parts, Bytes), ClientError> {
        let fut = async {
            let resp = self.send(req).await?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| ClientError::Http(format!("reading the response: {e}")))?
                .to_bytes();
            Ok((parts, body))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ClientError::Http("timed out".into()))?
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
