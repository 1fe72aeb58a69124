//! Host and Origin checks (protection against DNS rebinding).
//!
//! - `Host` (or the HTTP/2 `:authority`) must name an allowed host; the port is ignored and
//!   names compare case-insensitively. `"*"` in the list accepts any host.
//! - `Origin`, when present, must be `http(s)://<allowed host>[:port]` or one of the extra
//!   allowed origins (exact, case-insensitive). Under `"*"`, an origin is also accepted when its
//!   host is the request's own `Host`.

use http::{header, HeaderMap, Uri};

/// Why a request was refused by [`HostPolicy::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRefusal {
    /// No `Host` header and no authority in the request target.
    MissingHost,
    /// The `Host` is not allowed.
    Host,
    /// The `Origin` is not allowed.
    Origin,
}

impl HostRefusal {
    /// A sentence for the caller.
    pub fn message(self) -> &'static str {
        match self {
            HostRefusal::MissingHost => "the request names no Host",
            HostRefusal::Host => "Host not allowed",
            HostRefusal::Origin => "Origin not allowed",
        }
    }
}

/// The allowed hosts and origins, normalised for fast comparison.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    any_host: bool,
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl HostPolicy {
    /// Builds the policy from the configured lists.
    pub fn new(allowed_hosts: &[String], allowed_origins: &[String]) -> Self {
        let any_host = allowed_hosts.iter().any(|h| h == "*");
        let hosts = allowed_hosts
            .iter()
            .filter(|h| *h != "*")
            .map(|h| normalize_host(h))
            .collect();
        let origins = allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect();
        HostPolicy {
            any_host,
            hosts,
            origins,
        }
    }

    /// Checks a request's `Host` and `Origin`.
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), HostRefusal> {
        let host = match headers.get(header::HOST) {
            Some(v) => v.to_str().map_err(|_| HostRefusal::Host)?,
            None => uri
                .authority()
                .map(|a| a.as_str())
                .ok_or(HostRefusal::MissingHost)?,
        };
        let host = host_part(host);
        if !self.any_host && !self.host_allowed(host) {
            return Err(HostRefusal::Host);
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .map_err(|_| HostRefusal::Origin)?
            .to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return Ok(());
        }
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .filter(|a| !a.is_empty() && !a.contains(['/', '?', '#', '@']))
            .ok_or(HostRefusal::Origin)?;
        let ohost = host_part(authority);
        if self.host_allowed(ohost) || (self.any_host && ohost.eq_ignore_ascii_case(host)) {
            Ok(())
        } else {
            Err(HostRefusal::Origin)
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// `[::1]` for `::1`; lower case.
fn normalize_host(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h
    }
}

/// The host of an authority, without the port: `[::1]:80` → `[::1]`, `a.b:8` → `a.b`.
fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(i) => authority.get(..=i).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn policy() -> HostPolicy {
        HostPolicy::new(
            &["localhost".into(), "127.0.0.1".into(), "::1".into()],
            &["https://app.example.com".into()],
        )
    }

    #[test]
    fn hosts() {
        let p = policy();
        let u = Uri::from_static("/mcp");
        assert_eq!(p.check(&h(&[("host", "localhost:8402")]), &u), Ok(()));
        assert_eq!(p.check(&h(&[("host", "LOCALHOST")]), &u), Ok(()));
        assert_eq!(p.check(&h(&[("host", "[::1]:1")]), &u), Ok(()));
        assert_eq!(p.check(&h(&[("host", "127.0.0.1")]), &u), Ok(()));
        assert_eq!(
            p.check(&h(&[("host", "evil.com")]), &u),
            Err(HostRefusal::Host)
        );
        assert_eq!(
            p.check(&h(&[("host", "localhost.evil.com:80")]), &u),
            Err(HostRefusal::Host)
        );
        assert_eq!(p.check(&h(&[]), &u), Err(HostRefusal::MissingHost));
        assert_eq!(
            p.check(&h(&[]), &Uri::from_static("http://localhost:1/mcp")),
            Ok(())
        );
    }

    #[test]
    fn origins() {
        let p = policy();
        let u = Uri::from_static("/mcp");
        let ok = |o: &str| p.check(&h(&[("host", "localhost"), ("origin", o)]), &u);
        assert_eq!(ok("http://localhost:3000"), Ok(()));
        assert_eq!(ok("https://127.0.0.1"), Ok(()));
        assert_eq!(ok("https://APP.example.com"), Ok(()));
        assert_eq!(ok("https://evil.com"), Err(HostRefusal::Origin));
        assert_eq!(ok("null"), Err(HostRefusal::Origin));
        assert_eq!(ok("file://localhost"), Err(HostRefusal::Origin));
        assert_eq!(ok("http://localhost@evil.com"), Err(HostRefusal::Origin));
    }

    #[test]
    fn wildcard_host() {
        let p = HostPolicy::new(&["*".into()], &[]);
        let u = Uri::from_static("/mcp");
        assert_eq!(p.check(&h(&[("host", "any.example:9")]), &u), Ok(()));
        assert_eq!(
            p.check(
                &h(&[("host", "any.example"), ("origin", "https://any.example")]),
                &u
            ),
            Ok(())
        );
        assert_eq!(
            p.check(
                &h(&[("host", "any.example"), ("origin", "https://evil.example")]),
                &u
            ),
            Err(HostRefusal::Origin)
        );
    }
}
