//! The HTTP client underneath: turnpike's outbound client ([`turnpike_https`]: hyper-util's
//! pool over rustls with ring and the Mozilla roots, TCP_NODELAY), offering HTTP/2 as well as
//! HTTP/1.1. Response bodies are streamed.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::time::Duration;
use turnpike_https::HttpsClient;

use crate::ClientError;

/// A pooled HTTP(S) client.
#[derive(Clone)]
pub struct Transport {
    client: HttpsClient<Full<Bytes>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    /// A client trusting the Mozilla root certificates.
    pub fn new() -> Result<Self, ClientError> {
        let options = turnpike_https::Options {
            connect_timeout: Some(Duration::from_secs(10)),
            pool_idle_timeout: Some(Duration::from_secs(60)),
            http2: true,
        };
        let client = turnpike_https::client(&options)
            .map_err(|e| ClientError::Config(format!("tls: {e}")))?;
        Ok(Transport { client })
    }

    /// Sends a request; the response body is left to stream.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, ClientError> {
        self.client
            .request(req)
            .await
            .map_err(|e| ClientError::Http(turnpike_https::error_chain(&e)))
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
