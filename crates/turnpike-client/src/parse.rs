//! Finding proof-of-work challenges in whatever a caller got back from a gated server.
//!
//! [`parse_challenges`] accepts:
//! - a `WWW-Authenticate` value, with or without the `WWW-Authenticate:` name, possibly holding
//!   several challenges (an `L402 …` one before the `PoW …` one, comma-joined or one per line),
//!   or a whole block of response headers;
//! - a bare challenge token;
//! - a JSON 402 body (`error.data.challenges`), an in-band result
//!   (`result.structuredContent.turnpike.challenges`), a whole JSON-RPC response, or any JSON
//!   holding challenge objects (`{"rail":"pow","challenge":"…",…}`), also as SSE `data:` lines.
//!
//! Only challenges whose token decodes are returned; the token's own fields are authoritative,
//! the advertised parameters are informational.

use turnpike_pow::puzzle::{Algorithm, ChallengeToken, TOKEN_STR_LEN};

/// One proof-of-work challenge found in a server's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedChallenge {
    /// The token string, exactly as the server sent it (to be sent back in the credential).
    pub challenge: String,
    /// The decoded token: effort, sub-puzzles, expiry, … (structure checked, tag not: only the
    /// server can check that).
    pub token: ChallengeToken,
    /// The seconds the server says the puzzle takes on its reference core, where it said so.
    pub expected_seconds: Option<f64>,
}

impl ParsedChallenge {
    fn new(challenge: &str, expected_seconds: Option<f64>) -> Option<Self> {
        let token = ChallengeToken::decode(challenge).ok()?;
        Some(ParsedChallenge {
            challenge: challenge.to_string(),
            token,
            expected_seconds: expected_seconds.filter(|s| s.is_finite() && *s >= 0.0),
        })
    }

    /// The puzzle algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.token.algorithm()
    }
    /// Total expected work.
    pub fn effort(&self) -> u64 {
        self.token.effort()
    }
    /// The number of sub-puzzles.
    pub fn subpuzzles(&self) -> u8 {
        self.token.subpuzzles()
    }
    /// The per-sub-puzzle target.
    pub fn target(&self) -> u64 {
        self.token.target()
    }
    /// When the challenge expires (Unix seconds).
    pub fn expires(&self) -> u64 {
        self.token.expires_at()
    }
    /// Whether the challenge has expired at `now` (Unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.token.expires_at()
    }
}

/// Every proof-of-work challenge in `text` (see the module docs for the accepted forms), in
/// order of appearance, without duplicates. Non-PoW challenges are ignored.
pub fn parse_challenges(text: &str) -> Vec<ParsedChallenge> {
    let mut out = Vec::new();
    let t = text.trim();
    // A whole JSON document.
    if t.starts_with('{') || t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(t) {
            walk_json(&v, &mut out);
            return dedup(out);
        }
    }
    // A bare token.
    if t.len() == TOKEN_STR_LEN {
        if let Some(c) = ParsedChallenge::new(t, None) {
            return vec![c];
        }
    }
    // Lines: SSE `data:` JSON, JSON lines (a body after headers), header lines.
    let lines: Vec<&str> = t.lines().map(str::trim).collect();
    let has_www = lines.iter().any(|l| strip_www(l).is_some());
    for line in lines {
        let json_part = line
            .strip_prefix("data:")
            .map(str::trim_start)
            .unwrap_or(line);
        if json_part.starts_with('{') {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(json_part) {
                walk_json(&v, &mut out);
                continue;
            }
        }
        let header = match strip_www(line) {
            Some(v) => v,
            None if has_www => continue,
            None => line,
        };
        for ch in parse_www_authenticate(header) {
            if !ch.scheme.eq_ignore_ascii_case("PoW") {
                continue;
            }
            let param = |name: &str| {
                ch.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            };
            if let Some(tok) = param("challenge") {
                let secs = param("expected_seconds").and_then(|s| s.parse().ok());
                if let Some(c) = ParsedChallenge::new(tok, secs) {
                    out.push(c);
                }
            }
        }
    }
    dedup(out)
}

fn dedup(v: Vec<ParsedChallenge>) -> Vec<ParsedChallenge> {
    let mut out: Vec<ParsedChallenge> = Vec::with_capacity(v.len());
    for c in v {
        if !out.iter().any(|o| o.challenge == c.challenge) {
            out.push(c);
        }
    }
    out
}

/// The value of a `WWW-Authenticate: …` header line, if `line` is one.
fn strip_www(line: &str) -> Option<&str> {
    let (name, value) = line.split_once(':')?;
    name.trim()
        .eq_ignore_ascii_case("www-authenticate")
        .then_some(value.trim())
}

/// Collects challenge objects: objects with a string `challenge` and `rail == "pow"` or
/// `scheme == "PoW"`, anywhere in the document.
fn walk_json(v: &serde_json::Value, out: &mut Vec<ParsedChallenge>) {
    match v {
        serde_json::Value::Object(m) => {
            let is_pow = m.get("rail").and_then(|r| r.as_str()) == Some("pow")
                || m.get("scheme")
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| s.eq_ignore_ascii_case("PoW"));
            if is_pow {
                if let Some(tok) = m.get("challenge").and_then(|c| c.as_str()) {
                    let secs = m.get("expected_seconds").and_then(|s| s.as_f64());
                    if let Some(c) = ParsedChallenge::new(tok, secs) {
                        out.push(c);
                    }
                }
            }
            for (_, child) in m {
                walk_json(child, out);
            }
        }
        serde_json::Value::Array(a) => {
            for child in a {
                walk_json(child, out);
            }
        }
        _ => {}
    }
}

/// One challenge of a `WWW-Authenticate` value: its scheme and its auth-params (a token68 is
/// kept as a parameter with an empty name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthChallenge {
    /// The auth-scheme, as written.
    pub scheme: String,
    /// The parameters: names lower-cased, quoted values unescaped.
    pub params: Vec<(String, String)>,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token68(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

/// Splits a `WWW-Authenticate` value (RFC 9110 §11.6.1: a comma-separated list of challenges,
/// each a scheme followed by auth-params or a token68) into its challenges. Parsing stops at
/// the first syntax error; what was read until then is returned.
pub fn parse_www_authenticate(value: &str) -> Vec<AuthChallenge> {
    let b = value.as_bytes();
    let mut i = 0;
    let mut out: Vec<AuthChallenge> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            return out;
        }
        // A token: either a new scheme or a parameter name.
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            return out;
        }
        let word = &value[start..i];
        let after_word = i;
        skip_ws(&mut i);
        let is_param = i < b.len() && b[i] == b'=' && !out.is_empty() && {
            // `name=value` (value quoted or a token), not a token68 ending in `=`.
            let mut j = i + 1;
            skip_ws(&mut j);
            j < b.len() && (b[j] == b'"' || is_tchar(b[j]))
        };
        if is_param {
            i += 1;
            skip_ws(&mut i);
            let Some((v, next)) = read_value(value, i) else {
                return out;
            };
            i = next;
            if let Some(last) = out.last_mut() {
                last.params.push((word.to_ascii_lowercase(), v));
            }
            continue;
        }
        // A new challenge: `scheme`, then optionally a token68.
        i = after_word;
        out.push(AuthChallenge {
            scheme: word.to_string(),
            params: Vec::new(),
        });
        skip_ws(&mut i);
        let t_start = i;
        let mut j = i;
        while j < b.len() && is_token68(b[j]) {
            j += 1;
        }
        let t_end = j;
        while j < b.len() && b[j] == b'=' {
            j += 1;
        }
        let mut k = j;
        skip_ws(&mut k);
        // `name=value` starts like a token68 followed by one `=`; a value follows it.
        let looks_param =
            j == t_end + 1 && k < b.len() && (b[k] == b'"' || is_tchar(b[k]) || b[k] == b'/');
        if t_end > t_start && !looks_param && (k >= b.len() || b[k] == b',') {
            if let Some(last) = out.last_mut() {
                last.params
                    .push((String::new(), value[t_start..j].to_string()));
            }
            i = k;
        } else {
            i = t_start;
        }
    }
}

/// Reads a quoted string or a token value starting at `i`; returns it and the index after it.
fn read_value(s: &str, mut i: usize) -> Option<(String, usize)> {
    let b = s.as_bytes();
    if b.get(i) == Some(&b'"') {
        i += 1;
        let mut v = Vec::new();
        loop {
            match b.get(i)? {
                b'"' => return Some((String::from_utf8(v).ok()?, i + 1)),
                b'\\' => {
                    v.push(*b.get(i + 1)?);
                    i += 2;
                }
                c => {
                    v.push(*c);
                    i += 1;
                }
            }
        }
    }
    let start = i;
    while i < b.len() && (is_tchar(b[i]) || b[i] == b'/' || b[i] == b'=') {
        i += 1;
    }
    (i > start).then(|| (s[start..i].to_string(), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, Vec<(String, String)>)> {
        parse_www_authenticate(s)
            .into_iter()
            .map(|c| (c.scheme, c.params))
            .collect()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn splits_challenges() {
        assert_eq!(
            p(r#"L402 macaroon="AgE+/x==", invoice="lnbc1", PoW challenge="abc", effort="5""#),
            vec![
                (
                    "L402".into(),
                    vec![kv("macaroon", "AgE+/x=="), kv("invoice", "lnbc1")]
                ),
                (
                    "PoW".into(),
                    vec![kv("challenge", "abc"), kv("effort", "5")]
                ),
            ]
        );
        assert_eq!(
            p(r#"Basic realm="x", Negotiate abc==, Bearer, PoW Challenge = "q\"d""#),
            vec![
                ("Basic".into(), vec![kv("realm", "x")]),
                ("Negotiate".into(), vec![kv("", "abc==")]),
                ("Bearer".into(), vec![]),
                ("PoW".into(), vec![kv("challenge", "q\"d")]),
            ]
        );
        assert_eq!(
            p("Negotiate a=b=, x=y"),
            vec![("Negotiate".into(), vec![kv("a", "b="), kv("x", "y")])]
        );
        assert_eq!(p(""), vec![]);
        assert_eq!(p(",,, "), vec![]);
        // Syntax errors stop parsing but keep what was read.
        assert_eq!(
            p(r#"PoW challenge="x", effort="unterminated"#),
            vec![("PoW".into(), vec![kv("challenge", "x")])]
        );
        assert_eq!(p("\"quoted\""), vec![]);
    }

    #[test]
    fn never_panics_on_garbage() {
        let pieces = [
            "PoW",
            " ",
            "challenge",
            "=",
            "\"",
            "\\",
            ",",
            "é",
            "abc",
            "==",
            "\t",
            "\n",
            "x=y",
            "data:",
            "{",
            "}",
            "WWW-Authenticate:",
            "[",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            let _ = parse_www_authenticate(&s);
            assert!(parse_challenges(&s).is_empty());
        }
    }
}
