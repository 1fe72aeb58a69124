//! The URLs a configuration names.

/// Checks an absolute `http://` or `https://` URL with a host; the parsed URI.
pub fn check_url(u: &str) -> Result<http::Uri, &'static str> {
    let uri: http::Uri = u.parse().map_err(|_| "not a valid URL")?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(_) => return Err("the scheme must be http or https"),
        None => return Err("the URL must be absolute (http://… or https://…)"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host");
    }
    Ok(uri)
}
