//! A bounded client for small request/answer exchanges (an OAuth issuer's endpoints, an
//! Ethereum node's JSON-RPC, an x402 facilitator): HTTP/1.1 only, no redirects, one deadline
//! over the whole exchange (connecting, sending, reading the answer) and a cap on the answer's
//! size. The caller builds the request and words the errors.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use crate::{client, HttpsClient, Options};

/// Why an exchange of a [`BoundedClient`] failed.
#[derive(Debug)]
pub enum Failure {
    /// Not connected, or the request could not be sent.
    Send(hyper_util::client::legacy::Error),
    /// The answer could not be read whole, or it is larger than asked for.
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// No whole answer within the deadline.
    Timeout,
}

/// A client whose every exchange ends within its deadline, reading at most the size asked.
#[derive(Clone)]
pub struct BoundedClient {
    client: HttpsClient<Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for BoundedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedClient")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl BoundedClient {
    /// A client with a deadline of `timeout` per exchange (also its connect timeout); idle
    /// connections are kept 30 s.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = client(&Options {
            connect_timeout: Some(timeout),
            pool_idle_timeout: Some(Duration::from_secs(30)),
            http2: false,
        })
        .map_err(|e| format!("tls: {e}"))?;
        Ok(BoundedClient { client, timeout })
    }

    /// The deadline per exchange.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `req` and reads the answer, at most `max_bytes` of body, within the deadline.
    pub async fn exchange(
        &self,
        req: Request<Full<Bytes>>,
        max_bytes: usize,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let fut = async {
            let resp = self.client.request(req).await.map_err(Failure::Send)?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), max_bytes)
                .collect()
                .await
                .map_err(Failure::Body)?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| Failure::Timeout)?
    }
}
