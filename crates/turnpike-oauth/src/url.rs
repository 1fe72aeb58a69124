//! The little URL handling the rail needs: absolute http(s) URLs split into parts, compared in
//! the normal form of RFC 3986 §6.2.2–6.2.3 (DPoP `htu`, audiences), and the well-known URIs of
//! RFC 8414 / RFC 9728 / OpenID Connect Discovery built from them.

/// An absolute `http` or `https` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`, lower-case.
    pub scheme: String,
    /// The host, lower-case (IPv6 literals keep their brackets).
    pub host: String,
    /// The port when it is not the scheme's default.
    pub port: Option<u16>,
    /// The path as written (may be empty).
    pub path: String,
    /// Whether the URL had a query.
    pub has_query: bool,
    /// Whether the URL had a fragment.
    pub has_fragment: bool,
}

impl Url {
    /// Parses an absolute `http`/`https` URL. Userinfo is refused, as are characters a URL may
    /// not hold and broken percent-escapes.
    pub fn parse(s: &str) -> Option<Url> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let (before_fragment, has_fragment) = match rest.split_once('#') {
            Some((b, _)) => (b, true),
            None => (rest, false),
        };
        let (before_query, has_query) = match before_fragment.split_once('?') {
            Some((b, _)) => (b, true),
            None => (before_fragment, false),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (inside, after) = v6.split_once(']')?;
            if inside.is_empty()
                || !inside
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return None;
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{}]", inside.to_ascii_lowercase()), port)
        } else {
            let (h, p) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'))
            {
                return None;
            }
            (h.to_ascii_lowercase(), p)
        };
        let port = match port {
            None | Some("") => None,
            Some(p) => {
                if p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                let n: u16 = p.parse().ok()?;
                let default = if scheme == "https" { 443 } else { 80 };
                (n != default).then_some(n)
            }
        };
        if !valid_path(path) {
            return None;
        }
        Some(Url {
            scheme,
            host,
            port,
            path: path.to_string(),
            has_query,
            has_fragment,
        })
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// The URL without query and fragment, in normal form: lower-case scheme and host, no
    /// default port, percent-escapes upper-cased and unreserved characters decoded, dot
    /// segments removed, an empty path as `/`. Two URLs that RFC 3986 §6.2.2–6.2.3 call
    /// equivalent have the same normal form.
    pub fn normalized(&self) -> String {
        let path = remove_dot_segments(&normalize_escapes(&self.path));
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        format!("{}{}", self.origin(), path)
    }

    /// Whether the host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        let h = self.host.as_str();
        h == "localhost"
            || h.ends_with(".localhost")
            || h == "[::1]"
            || h.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback())
    }

    /// The path with a lone `/` (or nothing) as the empty string, and no terminating slash:
    /// the part inserted after a well-known prefix (RFC 8414 §3.1, RFC 9728 §3.1).
    fn insertable_path(&self) -> &str {
        self.path.trim_end_matches('/')
    }
}

fn valid_path(p: &str) -> bool {
    if !(p.is_empty() || p.starts_with('/')) {
        return false;
    }
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(x), Some(y)) if x.is_ascii_hexdigit() && y.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Upper-cases percent-escapes and decodes those of unreserved characters.
fn normalize_escapes(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(&x), Some(&y)) = (b.get(i + 1), b.get(i + 2)) {
                if let (Some(hi), Some(lo)) = (hex_val(x), hex_val(y)) {
                    let v = hi * 16 + lo;
                    if is_unreserved(v) {
                        out.push(v as char);
                    } else {
                        out.push('%');
                        out.push(x.to_ascii_uppercase() as char);
                        out.push(y.to_ascii_uppercase() as char);
                    }
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        if i == 0 && absolute {
            continue;
        }
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Whether two URLs are the same resource: equal as strings, or with equal normal forms (and
/// neither has a query or fragment).
pub fn same_resource(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (Url::parse(a), Url::parse(b)) {
        (Some(x), Some(y)) => {
            !x.has_query
                && !y.has_query
                && !x.has_fragment
                && !y.has_fragment
                && x.normalized() == y.normalized()
        }
        _ => false,
    }
}

/// The URLs where an authorization server's metadata may be, in the order MCP clients try them
/// (RFC 8414 §3.1 path insertion, OpenID Connect Discovery by path insertion and by appending).
pub fn issuer_metadata_urls(issuer: &Url) -> Vec<String> {
    let origin = issuer.origin();
    let path = issuer.insertable_path();
    if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    }
}

/// The well-known suffix of protected-resource metadata (RFC 9728 §3).
pub const PRM_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The paths at which the protected-resource metadata of `resource` is served: the
/// path-inserted form (RFC 9728 §3.1) first, then the root form when they differ.
pub fn resource_metadata_paths(resource: &Url) -> Vec<String> {
    let path = resource.insertable_path();
    if path.is_empty() {
        vec![PRM_WELL_KNOWN.to_string()]
    } else {
        vec![
            format!("{PRM_WELL_KNOWN}{path}"),
            PRM_WELL_KNOWN.to_string(),
        ]
    }
}

/// The URL of the protected-resource metadata of `resource` (path-inserted form).
pub fn resource_metadata_url(resource: &Url) -> String {
    format!(
        "{}{PRM_WELL_KNOWN}{}",
        resource.origin(),
        resource.insertable_path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let u = Url::parse("HTTPS://Mcp.Example.COM:443/a/./b/../c/%7euser%2f?q=1#f").unwrap();
        assert_eq!(u.normalized(), "https://mcp.example.com/a/c/~user%2F");
        assert!(u.has_query && u.has_fragment);
        assert_eq!(
            Url::parse("http://127.0.0.1:8080").unwrap().normalized(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            Url::parse("http://[::1]:80/mcp").unwrap().normalized(),
            "http://[::1]/mcp"
        );
        assert_eq!(
            Url::parse("https://h:/x").unwrap().normalized(),
            "https://h/x"
        );
        for bad in [
            "ftp://x/",
            "https://",
            "https://user:pw@host/",
            "https://ho st/",
            "https://host/a b",
            "https://host/%zz",
            "https://host/%4",
            "https://host:99999/",
            "//host/",
            "https://[zz]/",
        ] {
            assert_eq!(Url::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("/../x"), "/x");
        assert_eq!(remove_dot_segments("/a/b/.."), "/a/");
        assert_eq!(remove_dot_segments("/a/."), "/a/");
        assert_eq!(remove_dot_segments(""), "");
    }

    #[test]
    fn resources_compare() {
        assert!(same_resource(
            "https://MCP.example.com/mcp",
            "https://mcp.example.com:443/mcp"
        ));
        assert!(same_resource("https://a.example", "https://a.example/"));
        assert!(!same_resource(
            "https://a.example/mcp",
            "https://a.example/mcp/"
        ));
        assert!(!same_resource(
            "https://a.example/mcp",
            "http://a.example/mcp"
        ));
        assert!(!same_resource(
            "https://a.example/x?y",
            "https://a.example/x?y "
        ));
    }

    #[test]
    fn well_known_forms() {
        let with_path = Url::parse("https://as.example/tenant1/").unwrap();
        assert_eq!(
            issuer_metadata_urls(&with_path),
            vec![
                "https://as.example/.well-known/oauth-authorization-server/tenant1",
                "https://as.example/.well-known/openid-configuration/tenant1",
                "https://as.example/tenant1/.well-known/openid-configuration",
            ]
        );
        let root = Url::parse("https://as.example").unwrap();
        assert_eq!(
            issuer_metadata_urls(&root),
            vec![
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
        let r = Url::parse("https://mcp.example.com:8443/mcp").unwrap();
        assert_eq!(
            resource_metadata_paths(&r),
            vec![
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(
            resource_metadata_url(&r),
            "https://mcp.example.com:8443/.well-known/oauth-protected-resource/mcp"
        );
        let r = Url::parse("https://mcp.example.com/").unwrap();
        assert_eq!(
            resource_metadata_paths(&r),
            vec!["/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn loopback() {
        for h in [
            "http://localhost:1/",
            "http://127.0.0.2/",
            "http://[::1]:5/",
        ] {
            assert!(Url::parse(h).unwrap().is_loopback(), "{h}");
        }
        assert!(!Url::parse("http://example.com/").unwrap().is_loopback());
    }
}
