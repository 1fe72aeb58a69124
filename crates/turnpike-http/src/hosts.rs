//! Host and Origin checks (protection against DNS rebinding).
//!
//! - The host checked is the request target's authority when it has one (an absolute-form
//!   target, `POST http://host/mcp`, or the HTTP/2 `:authority`), else the `Host` header
//!   (RFC 9112 §3.2.2); it must name an allowed host. The port is ignored and names compare
//!   case-insensitively. `"*"` in the list accepts any host.
//! - More than one `Host` line is refused (400), and so is a `Host` that names another host
//!   than the target's authority (400): RFC 9112 lets a server ignore such a `Host`, RFC 9113
//!   calls the HTTP/2 case malformed; turnpike refuses both rather than guess which one a
//!   component behind it will read.
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
    /// More than one `Host` line.
    RepeatedHost,
    /// A `Host` that names another host than the request target's authority.
    HostMismatch,
}

impl HostRefusal {
    /// A sentence for the caller.
    pub fn message(self) -> &'static str {
        match self {
            HostRefusal::MissingHost => "the request names no Host",
            HostRefusal::Host => "Host not allowed",
            HostRefusal::Origin => "Origin not allowed",
            HostRefusal::RepeatedHost => "the request has more than one Host line",
            HostRefusal::HostMismatch => "the Host header disagrees with the request target",
        }
    }

    /// The HTTP status of the refusal: 400 for a malformed request, else 403.
    pub fn status(self) -> http::StatusCode {
        match self {
            HostRefusal::RepeatedHost | HostRefusal::HostMismatch => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::FORBIDDEN,
        }
    }

    /// The JSON-RPC error code that goes with [`HostRefusal::status`].
    pub fn code(self) -> i64 {
        match self.status() {
            http::StatusCode::BAD_REQUEST => turnpike_core::error_codes::INVALID_REQUEST,
            _ => turnpike_core::error_codes::FORBIDDEN,
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
        let mut lines = headers.get_all(header::HOST).iter();
        let header_host = lines.next();
        if lines.next().is_some() {
            return Err(HostRefusal::RepeatedHost);
        }
        let header_host = header_host
            .map(|v| v.to_str().map_err(|_| HostRefusal::Host))
            .transpose()?
            .map(host_part);
        let host = match (uri.authority(), header_host) {
            (Some(target), header_host) => {
                let target = host_part(target.as_str());
                if header_host.is_some_and(|h| !h.eq_ignore_ascii_case(target)) {
                    return Err(HostRefusal::HostMismatch);
                }
                target
            }
            (None, Some(h)) => h,
            (None, None) => return Err(HostRefusal::MissingHost),
        };
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
    fn repeated_host_lines_are_refused() {
        let p = policy();
        let u = Uri::from_static("/mcp");
        for pair in [
            [("host", "localhost"), ("host", "localhost")],
            [("host", "localhost"), ("host", "evil.com")],
            [("host", "evil.com"), ("host", "localhost")],
        ] {
            let r = p.check(&h(&pair), &u);
            assert_eq!(r, Err(HostRefusal::RepeatedHost), "{pair:?}");
            assert_eq!(HostRefusal::RepeatedHost.status(), 400);
        }
    }

    #[test]
    fn the_target_authority_is_the_host_checked() {
        let p = policy();
        // A foreign authority is refused whatever the Host says.
        let foreign = Uri::from_static("http://evil.com/mcp");
        assert_eq!(p.check(&h(&[]), &foreign), Err(HostRefusal::Host));
        assert_eq!(
            p.check(&h(&[("host", "evil.com")]), &foreign),
            Err(HostRefusal::Host)
        );
        assert_eq!(
            p.check(&h(&[("host", "localhost")]), &foreign),
            Err(HostRefusal::HostMismatch)
        );
        // An allowed authority with a Host naming another host: refused as malformed.
        let own = Uri::from_static("http://localhost:8402/mcp");
        assert_eq!(
            p.check(&h(&[("host", "evil.com")]), &own),
            Err(HostRefusal::HostMismatch)
        );
        assert_eq!(HostRefusal::HostMismatch.status(), 400);
        // Agreeing hosts (the port may differ, as ports are ignored): accepted.
        assert_eq!(p.check(&h(&[("host", "LOCALHOST")]), &own), Ok(()));
        assert_eq!(p.check(&h(&[("host", "localhost:1")]), &own), Ok(()));
        // The wildcard still refuses a disagreement.
        let any = HostPolicy::new(&["*".into()], &[]);
        assert_eq!(
            any.check(
                &h(&[("host", "b.example")]),
                &Uri::from_static("http://a.example/")
            ),
            Err(HostRefusal::HostMismatch)
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
