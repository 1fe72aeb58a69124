//! `[telemetry]`: where spans go and how many are kept.

use std::collections::BTreeMap;
use std::fmt;

use http::header::{HeaderName, HeaderValue};
use http::Uri;
use serde::{Deserialize, Deserializer};
use turnpike_core::conf::{hinted, positive_u64, positive_usize, KEY};

const HINT_ENDPOINT: &str = "write the collector's full OTLP/HTTP traces URL, e.g. otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"";
const HINT_RATIO: &str = "write a number from 0 (no new trace recorded) to 1 (every call)";
const HINT_HEADER: &str =
    "write headers = { \"authorization\" = \"Bearer …\" } (a header name and a printable value)";

/// `[telemetry]`: OpenTelemetry traces exported over OTLP/HTTP (protobuf). Present means on.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces URL, used as it is (`http://` or `https://`, with its
    /// path, e.g. `http://127.0.0.1:4318/v1/traces`).
    #[serde(deserialize_with = "endpoint")]
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute. Default `turnpike`.
    #[serde(default = "default_service_name", deserialize_with = "service_name")]
    pub service_name: String,
    /// The share of new traces recorded (0..=1). A call whose caller sent a sampled
    /// `traceparent` is always recorded, one sent unsampled never. Default 1.
    #[serde(default = "one", deserialize_with = "ratio")]
    pub sample_ratio: f64,
    /// Headers sent with every export (e.g. a collector's authorization). Never logged.
    #[serde(default, deserialize_with = "headers")]
    pub headers: BTreeMap<String, String>,
    /// Spans held waiting for export; past it, new spans are dropped and counted. Default 4096.
    #[serde(default = "default_queue", deserialize_with = "positive_usize")]
    pub queue_size: usize,
    /// The most spans in one export request. Default 512.
    #[serde(default = "default_batch", deserialize_with = "positive_usize")]
    pub batch_size: usize,
    /// Spans waiting are exported at least this often (milliseconds). Default 2000.
    #[serde(default = "default_interval", deserialize_with = "positive_u64")]
    pub flush_interval_ms: u64,
    /// The longest one export request may take (seconds). Default 10.
    #[serde(default = "default_timeout", deserialize_with = "positive_u64")]
    pub export_timeout_secs: u64,
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("queue_size", &self.queue_size)
            .field("batch_size", &self.batch_size)
            .field("flush_interval_ms", &self.flush_interval_ms)
            .field("export_timeout_secs", &self.export_timeout_secs)
            .finish()
    }
}

/// The default `service_name`.
pub const DEFAULT_SERVICE_NAME: &str = "turnpike";

fn default_service_name() -> String {
    DEFAULT_SERVICE_NAME.to_owned()
}
fn one() -> f64 {
    1.0
}
fn default_queue() -> usize {
    4096
}
fn default_batch() -> usize {
    512
}
fn default_interval() -> u64 {
    2000
}
fn default_timeout() -> u64 {
    10
}

/// Whether `s` is an `http://` or `https://` URL with a host and a path other than `/`.
pub fn check_endpoint(s: &str) -> Result<(), String> {
    let uri: Uri = s
        .parse()
        .map_err(|_| format!("otlp_endpoint {s:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "otlp_endpoint {s:?} must start with http:// or https://"
            ))
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("otlp_endpoint {s:?} names no host"));
    };
    if authority.as_str().contains('@') {
        // Said without the value: it holds a secret.
        return Err(
            "otlp_endpoint must not carry a user name or password: send credentials with `headers`"
                .to_owned(),
        );
    }
    if matches!(uri.path(), "" | "/") {
        return Err(format!(
            "otlp_endpoint {s:?} has no path: it is used as it is, with the signal's path"
        ));
    }
    Ok(())
}

fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_endpoint(&s).map_err(|m| hinted(m, HINT_ENDPOINT))?;
    Ok(s)
}

fn service_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() || s.len() > 256 {
        return Err(hinted(
            format!("{KEY} must be 1 to 256 characters"),
            "write service_name = \"turnpike\" (the name your tracing backend lists)",
        ));
    }
    Ok(s)
}

fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(hinted(
            format!("{KEY} must be between 0 and 1, not {v}"),
            HINT_RATIO,
        ));
    }
    Ok(v)
}

fn headers<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let m = BTreeMap::<String, String>::deserialize(d)?;
    for (k, v) in &m {
        if HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(hinted(format!("{k:?} is not a header name"), HINT_HEADER));
        }
        let lower = k.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "content-type" | "content-length" | "host" | "transfer-encoding"
        ) {
            return Err(hinted(
                format!("header {k:?} is set by the exporter itself"),
                HINT_HEADER,
            ));
        }
        // The value is a secret: never quoted in a message.
        if HeaderValue::from_str(v).is_err() {
            return Err(hinted(
                format!("the value of header {k:?} is not a valid header value"),
                HINT_HEADER,
            ));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(src: &str) -> Result<TelemetryConfig, String> {
        toml::from_str::<TelemetryConfig>(src).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_limits() {
        let c = read("otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"").unwrap();
        assert_eq!(c.service_name, "turnpike");
        assert_eq!(c.sample_ratio, 1.0);
        assert_eq!((c.queue_size, c.batch_size), (4096, 512));
        for (bad, what) in [
            ("otlp_endpoint = \"ftp://x/v1/traces\"", "http:// or https://"),
            ("otlp_endpoint = \"http://127.0.0.1:4318\"", "no path"),
            ("otlp_endpoint = \"https://u:pw@c.example/v1/traces\"", "user name or password"),
            ("otlp_endpoint = \"http://127.0.0.1:4318/\"", "no path"),
            (
                "otlp_endpoint = \"http://a/v1/traces\"\nsample_ratio = 1.5",
                "between 0 and 1",
            ),
            (
                "otlp_endpoint = \"http://a/v1/traces\"\nqueue_size = 0",
                "at least 1",
            ),
            (
                "otlp_endpoint = \"http://a/v1/traces\"\nheaders = { \"bad name\" = \"x\" }",
                "not a header name",
            ),
            (
                "otlp_endpoint = \"http://a/v1/traces\"\nheaders = { authorization = \"sec\\nret\" }",
                "not a valid header value",
            ),
            ("otlp_endpoint = \"http://a/v1/traces\"\nfoo = 1", "unknown field"),
            ("service_name = \"x\"", "missing field `otlp_endpoint`"),
        ] {
            let e = read(bad).unwrap_err();
            assert!(e.contains(what), "{bad}: {e}");
            assert!(!e.contains("sec\nret") && !e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn debug_never_shows_header_values() {
        let c = read(
            "otlp_endpoint = \"https://c.example/v1/traces\"\nheaders = { authorization = \"Bearer s3cr3t\" }",
        )
        .unwrap();
        let d = format!("{c:?}");
        assert!(d.contains("authorization") && !d.contains("s3cr3t"), "{d}");
    }
}
