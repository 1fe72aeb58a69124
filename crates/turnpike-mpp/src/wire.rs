//! The `Payment` HTTP authentication scheme on the wire (draft-httpauth-payment-01): the
//! challenge (`WWW-Authenticate: Payment id=…, realm=…, method=…, intent=…, request=…, …`),
//! the credential (`Authorization: Payment <base64url JSON>`, or the same object in
//! `params._meta["org.paymentauth/credential"]` with `request` as native JSON), the receipt
//! (`Payment-Receipt: <base64url JSON>`, or `result._meta["org.paymentauth/receipt"]`), the
//! HMAC-SHA256 challenge binding of the draft's section 5.1.3, JSON Canonicalization (RFC 8785)
//! of the objects that are encoded, and RFC 3339 times.
//!
//! Everything here is pure and bounded: a value longer than its limit is refused before it is
//! decoded, and every failure is a [`WireError`] that names what is wrong without repeating the
//! input.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use turnpike_core::mac::{hmac_sha256, Mac};

/// The authentication scheme, as sent (matched without regard to case).
pub const SCHEME: &str = "Payment";
/// The response header that carries a receipt.
pub const RECEIPT_HEADER: &str = "payment-receipt";
/// The `_meta` key of a credential in a JSON-RPC request (MCP: `params._meta`).
pub const META_CREDENTIAL: &str = "org.paymentauth/credential";
/// The `_meta` key of a receipt in a JSON-RPC result (MCP: `result._meta`).
pub const META_RECEIPT: &str = "org.paymentauth/receipt";
/// The `_meta` key of a tool result that carries payment challenges beside other content (the
/// key the `mppx` client reads; the transport draft itself uses the JSON-RPC error).
pub const META_PAYMENT_REQUIRED: &str = "org.paymentauth/payment-required";
/// The JSON-RPC error code of a payment challenge (the MCP transport draft's
/// "Payment Required").
pub const PAYMENT_REQUIRED_CODE: i64 = -32042;
/// The JSON-RPC error code of a refused payment credential ("Payment Verification Failed").
pub const VERIFICATION_FAILED_CODE: i64 = -32043;
/// The longest `Authorization: Payment` token accepted (base64url characters). The draft asks
/// servers to take at least 4 KB; a Lightning credential is about 1.5 KB.
pub const MAX_CREDENTIAL_LEN: usize = 16 * 1024;
/// The longest `request` accepted (base64url characters, or canonical JSON bytes in `_meta`).
pub const MAX_REQUEST_LEN: usize = 8 * 1024;
/// The longest value of any other challenge field echoed in a credential.
pub const MAX_FIELD_LEN: usize = 1024;

/// Why a challenge, credential or receipt is not well formed. The text never repeats the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Longer than the limit for that field.
    #[error("{0} is too long")]
    TooLong(&'static str),
    /// Not base64url.
    #[error("{0} is not base64url")]
    Base64(&'static str),
    /// Not JSON, or not the JSON shape the draft gives it.
    #[error("{0} is not a JSON object")]
    Json(&'static str),
    /// A required field is missing or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field has the wrong type or an unusable value.
    #[error("{0} has an invalid value")]
    Invalid(&'static str),
    /// The header is not a `Payment` challenge.
    #[error("not a Payment challenge")]
    NotPayment,
    /// The auth-param syntax is wrong.
    #[error("malformed auth-params")]
    Syntax,
}

/// Base64url without padding (RFC 4648 section 5), as the draft writes every encoded value.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without `=` padding (the Lightning charge method asks servers to
/// accept both), refusing anything longer than `max` characters or outside the alphabet.
pub fn b64url_decode(s: &str, max: usize, what: &'static str) -> Result<Vec<u8>, WireError> {
    if s.len() > max {
        return Err(WireError::TooLong(what));
    }
    let trimmed = s
        .strip_suffix("==")
        .or_else(|| s.strip_suffix('='))
        .unwrap_or(s);
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .map_err(|_| WireError::Base64(what))
}

/// JSON Canonicalization Scheme (RFC 8785) of `v`: members sorted by their names' UTF-16 code
/// units, no whitespace, strings escaped as ECMAScript's `JSON.stringify` does. Numbers are
/// written as serde_json writes them, which is the RFC's form for integers (the only numbers
/// this rail writes).
pub fn jcs(v: &Value) -> String {
    let mut out = String::new();
    write_jcs(v, &mut out);
    out
}

fn write_jcs(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                if let Some(x) = m.get(*k) {
                    write_jcs(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_jcs(x, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `base64url(JCS(v))`: how `request` and `opaque` travel in a header.
pub fn encode_json(v: &Value) -> String {
    b64url(jcs(v).as_bytes())
}

/// One `Payment` challenge: its auth-params, each as it appears on the wire (`request` and
/// `opaque` base64url-encoded canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PaymentChallenge {
    /// The challenge identifier (HMAC-bound to the other fields, see [`binding_id`]).
    pub id: String,
    /// The protection space.
    pub realm: String,
    /// The payment method (`lightning`).
    pub method: String,
    /// The payment intent (`charge`).
    pub intent: String,
    /// The method's request, base64url of its canonical JSON.
    pub request: String,
    /// When the challenge expires (RFC 3339).
    pub expires: Option<String>,
    /// The request body's digest (RFC 9530), when the challenge binds one.
    pub digest: Option<String>,
    /// Server correlation data, base64url of a canonical flat string-to-string JSON object.
    pub opaque: Option<String>,
    /// Words for people (not bound, never relied on).
    pub description: Option<String>,
}

/// The seven positional slots of the draft's HMAC-SHA256 binding, joined by `|`:
/// `realm|method|intent|request|expires|digest|opaque`, an absent optional field as the empty
/// string.
pub fn binding_input(c: &PaymentChallenge) -> String {
    [
        c.realm.as_str(),
        c.method.as_str(),
        c.intent.as_str(),
        c.request.as_str(),
        c.expires.as_deref().unwrap_or(""),
        c.digest.as_deref().unwrap_or(""),
        c.opaque.as_deref().unwrap_or(""),
    ]
    .join("|")
}

/// The challenge id the draft recommends: `base64url(HMAC-SHA256(key, binding_input))`.
pub fn binding_id(key: &[u8], c: &PaymentChallenge) -> String {
    let mut mac = hmac_sha256(key);
    mac.update(binding_input(c).as_bytes());
    b64url(&mac.finalize().into_bytes())
}

/// Writes `v` as an RFC 9110 quoted-string (escaping `"` and `\`).
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

impl PaymentChallenge {
    /// The `WWW-Authenticate` value: `Payment id="…", realm="…", method="…", intent="…",
    /// request="…"`, then `description`, `digest`, `expires` and `opaque` when present.
    pub fn header(&self) -> String {
        let mut parts = vec![
            format!("id={}", quoted(&self.id)),
            format!("realm={}", quoted(&self.realm)),
            format!("method={}", quoted(&self.method)),
            format!("intent={}", quoted(&self.intent)),
            format!("request={}", quoted(&self.request)),
        ];
        for (name, v) in [
            ("description", &self.description),
            ("digest", &self.digest),
            ("expires", &self.expires),
            ("opaque", &self.opaque),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name}={}", quoted(v)));
            }
        }
        format!("{SCHEME} {}", parts.join(", "))
    }

    /// Reads one `Payment` challenge (`Payment id="…", …`). Unknown parameters are ignored, as
    /// the draft asks; a repeated one, a missing or empty `id`, or a `method` that is not
    /// lower-case letters is refused.
    pub fn parse_header(value: &str) -> Result<PaymentChallenge, WireError> {
        if value.len() > MAX_CREDENTIAL_LEN {
            return Err(WireError::TooLong("challenge"));
        }
        let (scheme, rest) = turnpike_core::credential::split_scheme(value);
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(WireError::NotPayment);
        }
        let params = turnpike_core::credential::parse_auth_params(rest).ok_or(WireError::Syntax)?;
        let mut c = PaymentChallenge::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, v) in &params {
            if seen.contains(&name.as_str()) {
                return Err(WireError::Syntax);
            }
            seen.push(name.as_str());
            let v = v.clone();
            match name.as_str() {
                "id" => c.id = v,
                "realm" => c.realm = v,
                "method" => c.method = v,
                "intent" => c.intent = v,
                "request" => c.request = v,
                "expires" => c.expires = Some(v),
                "digest" => c.digest = Some(v),
                "opaque" => c.opaque = Some(v),
                "description" => c.description = Some(v),
                _ => {}
            }
        }
        c.check()?;
        Ok(c)
    }

    /// The required fields are there and within bounds; `method` is lower-case letters,
    /// `intent` letters, digits and `-`.
    fn check(&self) -> Result<(), WireError> {
        for (what, v) in [
            ("challenge.id", &self.id),
            ("challenge.realm", &self.realm),
            ("challenge.method", &self.method),
            ("challenge.intent", &self.intent),
            ("challenge.request", &self.request),
        ] {
            if v.is_empty() {
                return Err(WireError::Missing(what));
            }
        }
        if self.request.len() > MAX_REQUEST_LEN {
            return Err(WireError::TooLong("challenge.request"));
        }
        for (what, v) in [
            ("challenge.id", Some(&self.id)),
            ("challenge.realm", Some(&self.realm)),
            ("challenge.method", Some(&self.method)),
            ("challenge.intent", Some(&self.intent)),
            ("challenge.expires", self.expires.as_ref()),
            ("challenge.digest", self.digest.as_ref()),
            ("challenge.opaque", self.opaque.as_ref()),
            ("challenge.description", self.description.as_ref()),
        ] {
            if v.is_some_and(|v| v.len() > MAX_FIELD_LEN) {
                return Err(WireError::TooLong(what));
            }
        }
        if !self.method.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(WireError::Invalid("challenge.method"));
        }
        if !self
            .intent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(WireError::Invalid("challenge.intent"));
        }
        Ok(())
    }

    /// The decoded `request` object.
    pub fn request_json(&self) -> Result<Map<String, Value>, WireError> {
        decode_object(&self.request, MAX_REQUEST_LEN, "challenge.request")
    }

    /// The decoded `opaque` object (a flat string-to-string map), when present.
    pub fn opaque_json(&self) -> Result<Option<Map<String, Value>>, WireError> {
        self.opaque
            .as_deref()
            .map(|o| decode_object(o, MAX_FIELD_LEN, "challenge.opaque"))
            .transpose()
    }

    /// The challenge as the JSON-RPC transport carries it: the same fields, `request` as a
    /// native JSON object (`opaque` stays the base64url string clients echo unchanged).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("realm".into(), self.realm.clone().into());
        m.insert("method".into(), self.method.clone().into());
        m.insert("intent".into(), self.intent.clone().into());
        m.insert(
            "request".into(),
            self.request_json()
                .map(Value::Object)
                .unwrap_or(Value::Null),
        );
        for (name, v) in [
            ("expires", &self.expires),
            ("digest", &self.digest),
            ("opaque", &self.opaque),
            ("description", &self.description),
        ] {
            if let Some(v) = v {
                m.insert(name.into(), v.clone().into());
            }
        }
        Value::Object(m)
    }
}

fn decode_object(s: &str, max: usize, what: &'static str) -> Result<Map<String, Value>, WireError> {
    let bytes = b64url_decode(s, max, what)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(WireError::Json(what)),
    }
}

/// A `Payment` credential: the challenge echoed, the payer's optional `source` and the method's
/// `payload`.
#[derive(Clone, PartialEq)]
pub struct PaymentCredential {
    /// The challenge as the client echoed it (`request` and `opaque` in their header form).
    pub challenge: PaymentChallenge,
    /// Who paid, when the client says (never required).
    pub source: Option<String>,
    /// The method's proof of payment.
    pub payload: Map<String, Value>,
}

impl std::fmt::Debug for PaymentCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PaymentCredential({}, <redacted>)", self.challenge.id)
    }
}

/// How the echoed `request` is read: a base64url string (the HTTP form), or also a native JSON
/// object, re-encoded canonically (the JSON-RPC form).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RequestForm {
    Header,
    Native,
}

impl PaymentCredential {
    /// Reads the token of `Authorization: Payment <token>`: base64url (padding tolerated) of a
    /// JSON object `{challenge, source?, payload}`.
    pub fn from_token(token: &str) -> Result<PaymentCredential, WireError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(WireError::Missing("credential"));
        }
        let bytes = b64url_decode(token, MAX_CREDENTIAL_LEN, "credential")?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| WireError::Json("credential"))?;
        Self::from_value(&v, RequestForm::Header)
    }

    /// Reads `_meta["org.paymentauth/credential"]`: the same object, with `challenge.request`
    /// a JSON object (re-encoded canonically for the binding) or its base64url string.
    pub fn from_meta(v: &Value) -> Result<PaymentCredential, WireError> {
        Self::from_value(v, RequestForm::Native)
    }

    fn from_value(v: &Value, form: RequestForm) -> Result<PaymentCredential, WireError> {
        let o = v.as_object().ok_or(WireError::Json("credential"))?;
        let ch = o
            .get("challenge")
            .ok_or(WireError::Missing("challenge"))?
            .as_object()
            .ok_or(WireError::Json("challenge"))?;
        let payload = o
            .get("payload")
            .ok_or(WireError::Missing("payload"))?
            .as_object()
            .ok_or(WireError::Json("payload"))?
            .clone();
        let source = match o.get("source") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= MAX_FIELD_LEN => Some(s.clone()),
            Some(_) => return Err(WireError::Invalid("source")),
        };
        let text = |name: &'static str| -> Result<String, WireError> {
            match ch.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                None => Err(WireError::Missing(name)),
                Some(_) => Err(WireError::Invalid(name)),
            }
        };
        let optional = |name: &'static str| -> Result<Option<String>, WireError> {
            match ch.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(WireError::Invalid(name)),
            }
        };
        let request = match (ch.get("request"), form) {
            (Some(Value::String(s)), _) => s.clone(),
            (Some(Value::Object(_)), RequestForm::Native) => {
                let r = ch.get("request").map(jcs).unwrap_or_default();
                if r.len() > MAX_REQUEST_LEN {
                    return Err(WireError::TooLong("challenge.request"));
                }
                b64url(r.as_bytes())
            }
            (None, _) => return Err(WireError::Missing("challenge.request")),
            _ => return Err(WireError::Invalid("challenge.request")),
        };
        // Older clients echo `opaque` as the object it encodes: re-encoded canonically.
        let opaque = match ch.get("opaque") {
            Some(o @ Value::Object(m)) if m.values().all(Value::is_string) => Some(encode_json(o)),
            _ => optional("opaque")?,
        };
        let challenge = PaymentChallenge {
            id: text("id")?,
            realm: text("realm")?,
            method: text("method")?,
            intent: text("intent")?,
            request,
            expires: optional("expires")?,
            digest: optional("digest")?,
            opaque,
            description: optional("description")?,
        };
        challenge.check()?;
        Ok(PaymentCredential {
            challenge,
            source,
            payload,
        })
    }

    /// The credential as an `Authorization` value: `Payment <base64url(JSON)>` (for clients and
    /// tests).
    pub fn authorization(&self) -> String {
        format!("{SCHEME} {}", b64url(jcs(&self.to_json()).as_bytes()))
    }

    /// The credential's JSON object (the header form: `request` base64url).
    pub fn to_json(&self) -> Value {
        let c = &self.challenge;
        let mut ch = Map::new();
        ch.insert("id".into(), c.id.clone().into());
        ch.insert("realm".into(), c.realm.clone().into());
        ch.insert("method".into(), c.method.clone().into());
        ch.insert("intent".into(), c.intent.clone().into());
        ch.insert("request".into(), c.request.clone().into());
        for (name, v) in [
            ("expires", &c.expires),
            ("digest", &c.digest),
            ("opaque", &c.opaque),
            ("description", &c.description),
        ] {
            if let Some(v) = v {
                ch.insert(name.into(), v.clone().into());
            }
        }
        let mut o = Map::new();
        o.insert("challenge".into(), Value::Object(ch));
        if let Some(s) = &self.source {
            o.insert("source".into(), s.clone().into());
        }
        o.insert("payload".into(), Value::Object(self.payload.clone()));
        Value::Object(o)
    }
}

/// A receipt: what a paid response carries (`status` is always `success`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReceipt {
    /// The payment method (`lightning`).
    pub method: String,
    /// The id of the challenge the payment answered.
    pub challenge_id: String,
    /// The method's reference (Lightning: the payment hash, lower-case hex).
    pub reference: String,
    /// When the payment was settled (RFC 3339).
    pub timestamp: String,
}

impl PaymentReceipt {
    /// The receipt object: `{challengeId, method, reference, status: "success", timestamp}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "challengeId": self.challenge_id,
            "method": self.method,
            "reference": self.reference,
            "status": "success",
            "timestamp": self.timestamp,
        })
    }

    /// The `Payment-Receipt` header value: base64url of the object's canonical JSON.
    pub fn header(&self) -> String {
        encode_json(&self.to_json())
    }

    /// Reads a `Payment-Receipt` value (for clients and tests).
    pub fn from_header(value: &str) -> Result<PaymentReceipt, WireError> {
        let m = decode_object(value.trim(), MAX_FIELD_LEN * 2, "receipt")?;
        let s = |k: &'static str| {
            m.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(WireError::Missing(k))
        };
        if s("status")? != "success" {
            return Err(WireError::Invalid("status"));
        }
        Ok(PaymentReceipt {
            method: s("method")?,
            challenge_id: s("challengeId")?,
            reference: s("reference")?,
            timestamp: s("timestamp")?,
        })
    }
}

/// `unix` seconds as an RFC 3339 UTC date-time, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Reads an RFC 3339 UTC date-time as this module writes it (`YYYY-MM-DDTHH:MM:SSZ`, with an
/// optional fraction of a second, which is dropped); `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 40 || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    match &b[19..b.len() - 1] {
        [] => {}
        [b'.', frac @ ..] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => {}
        _ => return None,
    }
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || d < 1
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || se > 59
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

fn is_leap(y: u64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year ≥ 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: u64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The draft's example challenge (section 5.1.4), its `request` decoded as the draft shows.
    #[test]
    fn draft_example_challenge() {
        let header = "Payment id=\"x7Tg2pLqR9mKvNwY3hBcZa\", realm=\"api.example.com\", \
             method=\"example\", intent=\"charge\", expires=\"2025-01-15T12:05:00Z\", \
             request=\"eyJhbW91bnQiOiIxMDAwIiwiY3VycmVuY3kiOiJVU0QiLCJyZWNpcGllbnQiOiJhY2N0XzEyMyJ9\"";
        let c = PaymentChallenge::parse_header(header).unwrap();
        assert_eq!(c.id, "x7Tg2pLqR9mKvNwY3hBcZa");
        assert_eq!(c.realm, "api.example.com");
        assert_eq!(c.method, "example");
        assert_eq!(c.intent, "charge");
        assert_eq!(c.expires.as_deref(), Some("2025-01-15T12:05:00Z"));
        assert_eq!(
            Value::Object(c.request_json().unwrap()),
            json!({"amount":"1000","currency":"USD","recipient":"acct_123"})
        );
        // The draft's request is canonical JSON: encoding it again gives the same bytes.
        assert_eq!(
            encode_json(&Value::Object(c.request_json().unwrap())),
            c.request
        );
        // Written back and read again: the same challenge.
        assert_eq!(PaymentChallenge::parse_header(&c.header()).unwrap(), c);
    }

    /// The draft's example credential (section 5.2.1): its token decodes to the JSON the draft
    /// shows.
    #[test]
    fn draft_example_credential() {
        let token = "eyJjaGFsbGVuZ2UiOnsiaWQiOiJ4N1RnMnBMcVI5bUt2TndZM2hCY1phIiwicmVhbG0iOiJhcGkuZXhhbXBsZS5jb20iLCJtZXRob2QiOiJleGFtcGxlIiwiaW50ZW50IjoiY2hhcmdlIiwicmVxdWVzdCI6ImV5SmhiVzkxYm5RaU9pSXhNREF3SWl3aVkzVnljbVZ1WTNraU9pSlZVMFFpTENKeVpXTnBjR2xsYm5RaU9pSmhZMk4wWHpFeU15SjkiLCJleHBpcmVzIjoiMjAyNS0wMS0xNVQxMjowNTowMFoifSwicGF5bG9hZCI6eyJwcm9vZiI6IjB4YWJjMTIzLi4uIn19";
        let c = PaymentCredential::from_token(token).unwrap();
        assert_eq!(c.challenge.id, "x7Tg2pLqR9mKvNwY3hBcZa");
        assert_eq!(c.challenge.method, "example");
        assert_eq!(
            c.challenge.request,
            "eyJhbW91bnQiOiIxMDAwIiwiY3VycmVuY3kiOiJVU0QiLCJyZWNpcGllbnQiOiJhY2N0XzEyMyJ9"
        );
        assert_eq!(c.challenge.expires.as_deref(), Some("2025-01-15T12:05:00Z"));
        assert_eq!(
            Value::Object(c.payload.clone()),
            json!({"proof":"0xabc123..."})
        );
        assert_eq!(c.source, None);
        // With padding it reads the same (the Lightning charge method's rule).
        let padded = format!("{token}{}", "=".repeat((4 - token.len() % 4) % 4));
        assert_eq!(PaymentCredential::from_token(&padded).unwrap(), c);
        // Debug never shows the payload.
        assert!(!format!("{c:?}").contains("abc123"));
    }

    /// The Lightning charge method's example receipt (its appendix), read and written.
    #[test]
    fn receipt_round_trip() {
        let r = PaymentReceipt {
            method: "lightning".into(),
            challenge_id: "kM9xPqWvT2nJrHsY4aDfEb".into(),
            reference: "bc230847".into(),
            timestamp: "2026-03-10T21:00:00Z".into(),
        };
        let h = r.header();
        assert!(!h.contains('='));
        let text = String::from_utf8(b64url_decode(&h, 4096, "r").unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"challengeId":"kM9xPqWvT2nJrHsY4aDfEb","method":"lightning","reference":"bc230847","status":"success","timestamp":"2026-03-10T21:00:00Z"}"#
        );
        assert_eq!(PaymentReceipt::from_header(&h).unwrap(), r);
    }

    /// The binding input has seven slots, absent ones empty, so (expires, no digest) and (no
    /// expires, digest) differ.
    #[test]
    fn binding_slots() {
        let mut c = PaymentChallenge {
            realm: "r".into(),
            method: "lightning".into(),
            intent: "charge".into(),
            request: "e30".into(),
            expires: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(binding_input(&c), "r|lightning|charge|e30|x||");
        let a = binding_id(b"k", &c);
        c.expires = None;
        c.digest = Some("x".into());
        assert_eq!(binding_input(&c), "r|lightning|charge|e30||x|");
        assert_ne!(binding_id(b"k", &c), a);
        // HMAC-SHA256 over the input, base64url without padding (43 characters).
        assert_eq!(a.len(), 43);
        let mut mac = hmac_sha256(b"k");
        mac.update(b"r|lightning|charge|e30|x||");
        assert_eq!(a, b64url(&mac.finalize().into_bytes()));
    }

    #[test]
    fn jcs_orders_and_escapes() {
        let v = json!({"b":"x","a":{"d":"\u{1}\n\"\\é","c":[1,"2"]},"\u{e9}":"","z":null});
        assert_eq!(
            jcs(&v),
            "{\"a\":{\"c\":[1,\"2\"],\"d\":\"\\u0001\\n\\\"\\\\é\"},\"b\":\"x\",\"z\":null,\"é\":\"\"}"
        );
        // UTF-16 order, not code point order: U+1F600 (0xD83D 0xDE00) sorts before U+FB01.
        let v = json!({"\u{FB01}":2,"\u{1F600}":1});
        assert_eq!(jcs(&v), "{\"\u{1F600}\":1,\"\u{FB01}\":2}");
    }

    #[test]
    fn meta_form_reencodes_request() {
        let header_form = PaymentCredential::from_token(
            "eyJjaGFsbGVuZ2UiOnsiaWQiOiJ4N1RnMnBMcVI5bUt2TndZM2hCY1phIiwicmVhbG0iOiJhcGkuZXhhbXBsZS5jb20iLCJtZXRob2QiOiJleGFtcGxlIiwiaW50ZW50IjoiY2hhcmdlIiwicmVxdWVzdCI6ImV5SmhiVzkxYm5RaU9pSXhNREF3SWl3aVkzVnljbVZ1WTNraU9pSlZVMFFpTENKeVpXTnBjR2xsYm5RaU9pSmhZMk4wWHpFeU15SjkiLCJleHBpcmVzIjoiMjAyNS0wMS0xNVQxMjowNTowMFoifSwicGF5bG9hZCI6eyJwcm9vZiI6IjB4YWJjMTIzLi4uIn19",
        )
        .unwrap();
        let meta = json!({
            "challenge": {
                "id": "x7Tg2pLqR9mKvNwY3hBcZa",
                "realm": "api.example.com",
                "method": "example",
                "intent": "charge",
                "request": {"recipient":"acct_123","currency":"USD","amount":"1000"},
                "expires": "2025-01-15T12:05:00Z"
            },
            "payload": {"proof": "0xabc123..."}
        });
        assert_eq!(PaymentCredential::from_meta(&meta).unwrap(), header_form);
        // The header form never takes a native request.
        let token = b64url(meta.to_string().as_bytes());
        assert_eq!(
            PaymentCredential::from_token(&token),
            Err(WireError::Invalid("challenge.request"))
        );
    }

    #[test]
    fn hostile_credentials_refused() {
        let bad = [
            String::new(),
            "!!!".into(),
            "a".repeat(MAX_CREDENTIAL_LEN + 1),
            b64url(b"not json"),
            b64url(b"[1,2]"),
            b64url(br#"{"challenge":{}}"#),
            b64url(br#"{"challenge":{"id":"","realm":"r","method":"m","intent":"i","request":"e30"},"payload":{}}"#),
            b64url(br#"{"challenge":{"id":"i","realm":"r","method":"M","intent":"i","request":"e30"},"payload":{}}"#),
            b64url(br#"{"challenge":{"id":"i","realm":"r","method":"m","intent":"i","request":"e30"},"payload":"x"}"#),
            b64url(br#"{"challenge":{"id":1,"realm":"r","method":"m","intent":"i","request":"e30"},"payload":{}}"#),
            b64url(format!(r#"{{"challenge":{{"id":"i","realm":"r","method":"m","intent":"i","request":"{}"}},"payload":{{}}}}"#, "A".repeat(MAX_REQUEST_LEN + 1)).as_bytes()),
        ];
        for b in &bad {
            assert!(PaymentCredential::from_token(b).is_err(), "{b:.40}");
        }
        let ok = b64url(br#"{"challenge":{"id":"i","realm":"r","method":"m","intent":"i","request":"e30"},"payload":{}}"#);
        assert!(PaymentCredential::from_token(&ok).is_ok());
        // Challenges: another scheme, a repeated parameter, no id.
        assert_eq!(
            PaymentChallenge::parse_header("PoW challenge=\"x\""),
            Err(WireError::NotPayment)
        );
        assert_eq!(
            PaymentChallenge::parse_header(
                "Payment id=\"a\", id=\"b\", realm=\"r\", method=\"m\", intent=\"i\", request=\"e30\""
            ),
            Err(WireError::Syntax)
        );
        assert_eq!(
            PaymentChallenge::parse_header(
                "Payment realm=\"r\", method=\"m\", intent=\"i\", request=\"e30\""
            ),
            Err(WireError::Missing("challenge.id"))
        );
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_736_942_700), "2025-01-15T12:05:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [
            0,
            951_782_400,
            1_736_942_700,
            4_102_444_799,
            253_402_300_799,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2025-01-15T12:05:00.123Z"),
            Some(1_736_942_700)
        );
        for bad in [
            "",
            "2025-01-15T12:05:00",
            "2025-01-15T12:05:00+00:00",
            "2025-02-30T00:00:00Z",
            "2025-01-15T24:00:00Z",
            "2025-01-15 12:05:00Z",
            "+025-01-15T12:05:00Z",
            "2025-01-15T12:05:00.Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_token_is_refused_or_read(s in "\\PC{0,300}") {
                let _ = PaymentCredential::from_token(&s);
                let _ = PaymentChallenge::parse_header(&s);
                let _ = PaymentReceipt::from_header(&s);
                let _ = parse_rfc3339(&s);
            }

            #[test]
            fn any_json_is_refused_or_read(s in "[{}\\[\\]\":,a-z0-9 ]{0,200}") {
                let _ = PaymentCredential::from_token(&b64url(s.as_bytes()));
                if let Ok(v) = serde_json::from_str::<Value>(&s) {
                    let _ = PaymentCredential::from_meta(&v);
                }
            }

            #[test]
            fn times_round_trip(t in 0u64..253_402_300_799) {
                prop_assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
            }
        }
    }
}
