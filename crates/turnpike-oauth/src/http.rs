//! The HTTP client the rail uses to reach its authorization server: hyper-util's client over
//! rustls (ring, Mozilla roots), one deadline per request, no redirects, a cap on response size.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use std::time::Duration;
use turnpike_https::bounded::{BoundedClient, Failure};

/// Why a request to the authorization server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Connecting or sending failed.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No whole answer within the deadline.
    #[error("{url}: no answer within {secs} s")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The deadline.
        secs: u64,
    },
    /// An unexpected status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body could not be read (or was too large).
    #[error("{url}: {reason}")]
    Body {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// A response: status and the whole body.
pub struct Response {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, at most the requested size.
    pub body: Bytes,
}

/// A small client for the issuer's endpoints.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: BoundedClient,
}

impl HttpClient {
    /// A client with a deadline of `timeout` per request.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        Ok(HttpClient {
            client: BoundedClient::new(timeout)?,
        })
    }

    /// `GET url` with `Accept: application/json`.
    pub async fn get(&self, url: &str, max_bytes: usize) -> Result<Response, FetchError> {
        self.send(Method::GET, url, None, None, max_bytes).await
    }

    /// `POST url` with a form body and, when given, an `Authorization` header.
    pub async fn post_form(
        &self,
        url: &str,
        form: String,
        authorization: Option<HeaderValue>,
        max_bytes: usize,
    ) -> Result<Response, FetchError> {
        self.send(
            Method::POST,
            url,
            Some(Bytes::from(form)),
            authorization,
            max_bytes,
        )
        .await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        form: Option<Bytes>,
        authorization: Option<HeaderValue>,
        max_bytes: usize,
    ) -> Result<Response, FetchError> {
        let transport = |reason: String| FetchError::Transport {
            url: url.to_string(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| transport(format!("bad URL: {e}")))?;
        let mut req = Request::builder().method(method).uri(uri);
        req = req.header(header::ACCEPT, HeaderValue::from_static("application/json"));
        if form.is_some() {
            req = req.header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        if let Some(mut a) = authorization {
            a.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(form.unwrap_or_default()))
            .map_err(|e| transport(format!("request: {e}")))?;
        let (status, body) = self
            .client
            .exchange(req, max_bytes)
            .await
            .map_err(|e| match e {
                Failure::Send(e) => transport(turnpike_https::error_chain(&e)),
                Failure::Body(e) => FetchError::Body {
                    url: url.to_string(),
                    reason: format!("reading the response: {e}"),
                },
                Failure::Timeout => FetchError::Timeout {
                    url: url.to_string(),
                    secs: self.client.timeout().as_secs(),
                },
            })?;
        Ok(Response { status, body })
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (also used for HTTP Basic client
/// credentials, RFC 6749 §2.3.1).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*') {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b+c/d=é"), "a+b%2Bc%2Fd%3D%C3%A9");
        assert_eq!(form_encode("Az09-._*"), "Az09-._*");
    }
}
