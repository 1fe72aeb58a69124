//! The small HTTP client the REST backends share: hyper-util's client over rustls (Mozilla
//! roots, or one pinned certificate), a deadline per request, bounded retries for idempotent
//! calls, and a cap on response size.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use std::time::Duration;
use turnpike_https::HttpsClient;

use crate::{HttpSettings, LightningError};

/// Largest response body read from a backend.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// A response: status and the whole body.
pub(crate) struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Result<serde_json::Value, LightningError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| LightningError::Protocol(format!("response is not JSON: {e}")))
    }

    /// A short, safe rendering of an error body for messages (first 200 characters).
    pub(crate) fn snippet(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(200).collect()
    }
}

/// A client bound to one backend's base URL and credentials.
pub(crate) struct HttpClient {
    client: HttpsClient<Full<Bytes>>,
    base: String,
    headers: HeaderMap,
    timeout: Duration,
    retries: u32,
}

impl HttpClient {
    /// A client for `base_url` that sends `headers` (marked sensitive) with every request.
    pub(crate) fn new(
        base_url: &str,
        settings: &HttpSettings,
        mut headers: HeaderMap,
    ) -> Result<Self, LightningError> {
        let base = base_url.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|e| LightningError::Config(format!("url {base_url:?}: {e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| LightningError::Config(format!("url {base_url:?} has no host")))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if settings.allow_plain_http || is_loopback(host) => {}
            Some("http") => {
                return Err(LightningError::Config(format!(
                    "url {base_url:?}: plain http to a non-loopback host would send the \
                     credential in clear text; use https, or set allow_plain_http = true"
                )))
            }
            _ => {
                return Err(LightningError::Config(format!(
                    "url {base_url:?}: scheme must be http or https"
                )))
            }
        }
        if uri.query().is_some() {
            return Err(LightningError::Config(format!(
                "url {base_url:?} must not have a query"
            )));
        }
        let tls = match &settings.tls_cert_path {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    LightningError::Config(format!("tls_cert_path {}: {e}", path.display()))
                })?;
                pinned_config(&pem)?
            }
            None => turnpike_https::tls_config()
                .map_err(|e| LightningError::Config(format!("tls: {e}")))?,
        };
        let timeout = Duration::from_secs(settings.timeout_secs.max(1));
        let client = turnpike_https::client_with(
            tls,
            &turnpike_https::Options {
                connect_timeout: Some(timeout),
                pool_idle_timeout: Some(Duration::from_secs(30)),
                http2: false,
            },
        );
        for (_, v) in headers.iter_mut() {
            v.set_sensitive(true);
        }
        Ok(HttpClient {
            client,
            base,
            headers,
            timeout,
            retries: settings.lookup_retries.min(10),
        })
    }

    /// Sends one request. `idempotent` requests are retried after transport errors, timeouts
    /// and 502/503/504 answers, up to the configured number of extra attempts.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
        idempotent: bool,
    ) -> Result<Response, LightningError> {
        let attempts = if idempotent { self.retries + 1 } else { 1 };
        let mut last = LightningError::Timeout;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
            }
            match self
                .once(method.clone(), path, content_type, body.clone())
                .await
            {
                Ok(r)
                    if matches!(
                        r.status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    ) && attempt + 1 < attempts =>
                {
                    last = LightningError::Rejected {
                        status: r.status.as_u16(),
                        message: r.snippet(),
                    };
                }
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Response, LightningError> {
        let uri: Uri = format!("{}{}", self.base, path)
            .parse()
            .map_err(|e| LightningError::Protocol(format!("bad request path: {e}")))?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| LightningError::Protocol(format!("request: {e}")))?;
        let h = req.headers_mut();
        h.extend(self.headers.clone());
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(ct) = content_type {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| LightningError::Unreachable(turnpike_https::error_chain(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| LightningError::Unreachable(format!("reading the response: {e}")))?
                .to_bytes();
            Ok(Response { status, body })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| LightningError::Timeout)?
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A TLS configuration that accepts exactly the certificate(s) in `pem` and nothing else.
fn pinned_config(pem: &[u8]) -> Result<rustls::ClientConfig, LightningError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            LightningError::Config(format!("tls_cert_path: not a PEM certificate: {e}"))
        })?;
    if certs.is_empty() {
        return Err(LightningError::Config(
            "tls_cert_path: no certificate in the file".into(),
        ));
    }
    turnpike_https::pinned_tls_config(certs)
        .map_err(|e| LightningError::Config(format!("tls: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        let s = HttpSettings::default();
        assert!(HttpClient::new("http://127.0.0.1:8080", &s, HeaderMap::new()).is_ok());
        assert!(HttpClient::new("http://[::1]:8080/", &s, HeaderMap::new()).is_ok());
        assert!(HttpClient::new("http://localhost:8080", &s, HeaderMap::new()).is_ok());
        assert!(matches!(
            HttpClient::new("http://node.example:8080", &s, HeaderMap::new()),
            Err(LightningError::Config(_))
        ));
        let open = HttpSettings {
            allow_plain_http: true,
            ..HttpSettings::default()
        };
        assert!(HttpClient::new("http://node.example:8080", &open, HeaderMap::new()).is_ok());
        assert!(HttpClient::new("https://node.example:8080", &s, HeaderMap::new()).is_ok());
        assert!(HttpClient::new("ftp://x", &s, HeaderMap::new()).is_err());
        assert!(HttpClient::new("not a url", &s, HeaderMap::new()).is_err());
    }
}
