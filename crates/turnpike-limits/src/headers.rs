//! The `RateLimit-Policy`, `RateLimit` and `Retry-After` header fields.
//!
//! Syntax of draft-ietf-httpapi-ratelimit-headers (revision 11): both fields are Structured
//! Field Lists (RFC 9651) of items whose value is a String naming a policy.
//!
//! - `RateLimit-Policy: "tool";q=50;w=3, "concurrency";q=16;qu="concurrent-requests"` — `q`
//!   the quota, `w` the window in whole seconds, `qu` the quota unit (omitted for the default,
//!   requests), `pk` an optional partition key (a Byte Sequence).
//! - `RateLimit: "tool";r=49;t=1` — `r` the quota still available, `t` the effective window in
//!   seconds.
//! - `Retry-After: 3` — delay-seconds (RFC 9110 §10.2.3).
//!
//! turnpike never sends a partition key: the identity it would carry is the caller's own, and
//! the draft asks servers not to return sensitive data in it.

use serde::Serialize;
use std::borrow::Cow;
use std::time::Duration;

use crate::quota::ceil_secs;

/// The unit a policy counts in (`qu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaUnit {
    /// Calls (the draft's default unit; `qu` is omitted).
    Requests,
    /// Calls in flight at once (`qu="concurrent-requests"`).
    ConcurrentRequests,
}

/// One policy that applied to a call, and where the caller stands under it: one item of each
/// of `RateLimit-Policy` and `RateLimit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStatus {
    /// The policy's name, e.g. `tool:search`, `discovery`, `daily`, `concurrency`.
    pub policy: Cow<'static, str>,
    /// The quota (`q`).
    pub quota: u64,
    /// The window in seconds (`w`), where the policy has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// The unit (`qu`).
    pub unit: QuotaUnit,
    /// What is still available (`r`).
    pub remaining: u64,
    /// The effective window in seconds (`t`), where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<u64>,
}

/// Appends `s` as a Structured Field String: printable ASCII, with `"` and `\` escaped. Other
/// characters (which an SF String cannot hold) become `_`.
pub fn push_sf_string(out: &mut String, s: &str) {
    out.push('"');
    // Policy names are plain ASCII: copied whole.
    if s.bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\')
    {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
}

/// Appends `name` and `v` in decimal (every response carries a few of these: written without
/// the formatting machinery).
fn push_param(out: &mut String, name: &str, mut v: u64) {
    out.push_str(name);
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // ASCII digits, a character each (no UTF-8 check of the buffer).
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// The `RateLimit-Policy` field value for `items`, or `None` when there are none.
///
/// ```
/// use turnpike_limits::headers::{ratelimit_policy, PolicyStatus, QuotaUnit};
/// let s = PolicyStatus { policy: "tool".into(), quota: 50, window: Some(3),
///     unit: QuotaUnit::Requests, remaining: 49, reset: Some(1) };
/// assert_eq!(ratelimit_policy(&[s]).unwrap(), r#""tool";q=50;w=3"#);
/// ```
pub fn ratelimit_policy(items: &[PolicyStatus]) -> Option<String> {
    let mut out = String::with_capacity(items.len() * 48);
    for (i, p) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_sf_string(&mut out, &p.policy);
        push_param(&mut out, ";q=", p.quota);
        if p.unit == QuotaUnit::ConcurrentRequests {
            out.push_str(";qu=\"concurrent-requests\"");
        }
        if let Some(w) = p.window {
            push_param(&mut out, ";w=", w.max(1));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The `RateLimit` field value for `items`, or `None` when there are none.
///
/// ```
/// use turnpike_limits::headers::{ratelimit, PolicyStatus, QuotaUnit};
/// let s = PolicyStatus { policy: "tool".into(), quota: 50, window: Some(3),
///     unit: QuotaUnit::Requests, remaining: 49, reset: Some(1) };
/// assert_eq!(ratelimit(&[s]).unwrap(), r#""tool";r=49;t=1"#);
/// ```
pub fn ratelimit(items: &[PolicyStatus]) -> Option<String> {
    let mut out = String::with_capacity(items.len() * 40);
    for (i, p) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_sf_string(&mut out, &p.policy);
        push_param(&mut out, ";r=", p.remaining);
        if let Some(t) = p.reset {
            push_param(&mut out, ";t=", t);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The `Retry-After` value for a delay: whole seconds, rounded up, at least 1.
pub fn retry_after(delay: Duration) -> String {
    retry_after_secs(delay).to_string()
}

/// A delay as `Retry-After` seconds: rounded up, at least 1.
pub fn retry_after_secs(delay: Duration) -> u64 {
    ceil_secs(delay).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(policy: &'static str, q: u64, w: Option<u64>, r: u64, t: Option<u64>) -> PolicyStatus {
        PolicyStatus {
            policy: policy.into(),
            quota: q,
            window: w,
            unit: QuotaUnit::Requests,
            remaining: r,
            reset: t,
        }
    }

    #[test]
    fn renders_lists() {
        let mut conc = st("concurrency", 16, None, 15, None);
        conc.unit = QuotaUnit::ConcurrentRequests;
        let items = [
            st("tool", 50, Some(3), 49, Some(1)),
            conc,
            st("daily", 1000, Some(86400), 10, Some(3600)),
        ];
        assert_eq!(
            ratelimit_policy(&items).unwrap(),
            r#""tool";q=50;w=3, "concurrency";q=16;qu="concurrent-requests", "daily";q=1000;w=86400"#
        );
        assert_eq!(
            ratelimit(&items).unwrap(),
            r#""tool";r=49;t=1, "concurrency";r=15, "daily";r=10;t=3600"#
        );
        assert_eq!(ratelimit(&[]), None);
        assert_eq!(ratelimit_policy(&[]), None);
    }

    #[test]
    fn numbers_are_decimal() {
        for v in [0, 1, 9, 10, 99, 100, 86_400, 1_000_000, u64::MAX] {
            let mut s = String::new();
            push_param(&mut s, ";q=", v);
            assert_eq!(s, format!(";q={v}"));
        }
    }

    #[test]
    fn names_are_valid_sf_strings() {
        let mut s = String::new();
        push_sf_string(&mut s, "a\"b\\c\u{e9}\n");
        assert_eq!(s, r#""a\"b\\c__""#);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after(Duration::from_millis(1)), "1");
        assert_eq!(retry_after(Duration::ZERO), "1");
        assert_eq!(retry_after(Duration::from_millis(2001)), "3");
        assert_eq!(retry_after(Duration::from_secs(2)), "2");
    }
}
