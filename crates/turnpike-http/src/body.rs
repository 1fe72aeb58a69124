//! Reading a request body within a size and a time limit.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit (HTTP 413).
    TooLarge,
    /// Not complete within the time limit (HTTP 408).
    Timeout,
    /// The connection failed mid-body (HTTP 400).
    Read,
}

/// Reads `body` whole, refusing more than `limit` bytes (up front when `Content-Length` says
/// so) and giving up after `timeout`.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Read),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// The media type of a message, lower-case, without parameters.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Whether the `Content-Type` media type (parameters ignored) is `ty` (lower case), compared
/// without case and without allocating.
pub fn has_media_type(headers: &HeaderMap, ty: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(ty)
        })
}

/// Whether a `Content-Type` header says `application/json` (parameters such as `charset`
/// allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[tokio::test]
    async fn limits() {
        let h = HeaderMap::new();
        let t = Duration::from_secs(5);
        assert_eq!(
            read_limited(&h, Body::from("hello"), 5, t).await.unwrap(),
            Bytes::from("hello")
        );
        assert_eq!(
            read_limited(&h, Body::from("hello!"), 5, t).await,
            Err(BodyError::TooLarge)
        );
        let mut big = HeaderMap::new();
        big.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        assert_eq!(
            read_limited(&big, Body::from("x"), 5, t).await,
            Err(BodyError::TooLarge)
        );
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let slow = Body::from_stream(tokio_stream_from(rx));
        assert_eq!(
            read_limited(&h, slow, 5, Duration::from_millis(20)).await,
            Err(BodyError::Timeout)
        );
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json-seq"),
        );
        assert!(!is_json(&h));
        assert!(!has_media_type(&h, "application/json"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(" Text/Event-Stream ;charset=utf-8"),
        );
        assert!(has_media_type(&h, "text/event-stream"));
        assert_eq!(media_type(&h), "text/event-stream");
        h.remove(header::CONTENT_TYPE);
        assert!(!has_media_type(&h, "text/event-stream"));
    }
}
