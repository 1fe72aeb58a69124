//! Shared by the header fuzz targets: the input format `name: value` lines up to the first
//! empty line, then a body.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The headers that parse (others are skipped, as an HTTP server would refuse them before the
/// gateway), and the rest of the input as the body.
pub fn split(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let mut rest = data;
    loop {
        let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = tail;
        if line.is_empty() || line == b"\r" {
            break;
        }
        if let Some(c) = line.iter().position(|&b| b == b':') {
            let value = line[c + 1..].trim_ascii();
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(&line[..c]),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(n, v);
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    (headers, rest)
}
