//! Access-token claims: what a JWT access token (RFC 9068) or an introspection answer (RFC 7662)
//! says, and the checks every token passes whichever way it was read — issuer, audience (RFC
//! 8707), validity times, subject, scopes and the DPoP key binding (RFC 7800 `cnf.jkt`).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};
use turnpike_core::About;

use crate::url::same_resource;

/// Every claim of a token, as the access policy reads them (`identity.claims`).
pub type AllClaims = Arc<Map<String, Value>>;

/// The claims kept when a token's claims are larger than [`About::MAX_CLAIMS_BYTES`]: those
/// that say who holds it and for what.
pub const KEPT_WHEN_LARGE: [&str; 6] = ["iss", "sub", "client_id", "scope", "aud", "exp"];

/// The largest JSON text of one claim kept from a token whose claims are too large.
pub const MAX_KEPT_CLAIM_BYTES: usize = 1024;

/// The claims of the JSON object `json` (a verified JWT's payload, an introspection answer),
/// bounded: when `json` is longer than [`About::MAX_CLAIMS_BYTES`], only the claims of
/// [`KEPT_WHEN_LARGE`] whose JSON text is at most [`MAX_KEPT_CLAIM_BYTES`]. `None` when
/// `json` is not an object.
pub fn kept_claims(json: &[u8]) -> Option<AllClaims> {
    let m: Map<String, Value> = serde_json::from_slice(json).ok()?;
    Some(bounded(m, json.len()))
}

/// `m`, the claims of a JSON text `len` bytes long, bounded as [`kept_claims`] says.
fn bounded(mut m: Map<String, Value>, len: usize) -> AllClaims {
    if len > About::MAX_CLAIMS_BYTES {
        m.retain(|k, v| {
            KEPT_WHEN_LARGE.contains(&k.as_str())
                && serde_json::to_string(v).is_ok_and(|t| t.len() <= MAX_KEPT_CLAIM_BYTES)
        });
    }
    Arc::new(m)
}

/// The claims of the JSON text `json` (a JWT's payload, an introspection answer) read in one
/// parse: the members the checks use, and every claim bounded ([`kept_claims`]) in
/// [`Claims::all`]. A member named twice, at any depth, is refused, as reading [`Claims`]
/// alone refuses a checked member named twice.
pub fn parse_claims(json: &[u8]) -> Result<Claims, serde_json::Error> {
    let Unique(value) = serde_json::from_slice(json)?;
    let mut claims = Claims::deserialize(&value)?;
    if let Value::Object(m) = value {
        claims.all = Some(bounded(m, json.len()));
    }
    Ok(claims)
}

/// A JSON value read with every object's member names checked to be distinct.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(Unique(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Unique(v) = map.next_value()?;
            if let Some(_earlier) = m.insert(k, v) {
                return Err(serde::de::Error::custom("a member is named twice"));
            }
        }
        Ok(Value::Object(m))
    }
}

/// A JSON `string` or `[string]` (JWT `aud`, Entra-style `scp`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    fn iter(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            OneOrMany::One(s) => Box::new(std::iter::once(s.as_str())),
            OneOrMany::Many(v) => Box::new(v.iter().map(String::as_str)),
        }
    }
}

/// RFC 7800 confirmation.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of the DPoP key the token is bound to.
    #[serde(default)]
    pub jkt: Option<String>,
    /// Any other confirmation method (e.g. RFC 8705 `x5t#S256`), which this resource cannot
    /// check: a token bound that way is refused.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The claims of an access token the rail reads (JWT payload or introspection answer).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    /// Issuer.
    #[serde(default)]
    pub iss: Option<String>,
    /// Subject.
    #[serde(default)]
    pub sub: Option<String>,
    /// Audience(s).
    #[serde(default)]
    pub aud: Option<OneOrMany>,
    /// Expiry (NumericDate).
    #[serde(default)]
    pub exp: Option<serde_json::Number>,
    /// Not before (NumericDate).
    #[serde(default)]
    pub nbf: Option<serde_json::Number>,
    /// Issued at (NumericDate).
    #[serde(default)]
    pub iat: Option<serde_json::Number>,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// Scopes as a list or a space-separated string (Entra ID, Okta).
    #[serde(default)]
    pub scp: Option<OneOrMany>,
    /// The client the token was issued to (RFC 9068).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Authorized party (OpenID Connect), used when there is no `client_id`.
    #[serde(default)]
    pub azp: Option<String>,
    /// Key confirmation (RFC 7800).
    #[serde(default)]
    pub cnf: Option<Confirmation>,
    /// Introspection only: whether the token is active.
    #[serde(default)]
    pub active: Option<bool>,
    /// Introspection only: `Bearer` or `DPoP`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Every claim, bounded ([`kept_claims`]), when the reader filled them.
    #[serde(skip)]
    pub all: Option<AllClaims>,
}

/// A token that passed every claim check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// `iss`.
    pub issuer: String,
    /// `sub`, or the client id when the token has no subject (client-credentials tokens).
    pub subject: String,
    /// `client_id`, else `azp`.
    pub client_id: Option<String>,
    /// Granted scopes, from `scope` (space-separated) and `scp`.
    pub scopes: Vec<String>,
    /// The thumbprint of the key the token is bound to (`cnf.jkt`).
    pub jkt: Option<String>,
    /// `exp`, when the token has one.
    pub expires_at: Option<u64>,
    /// Every claim of the token, bounded ([`kept_claims`]), shared with the caches.
    pub claims: Option<AllClaims>,
}

/// What the checks need to know.
pub struct Expectations<'a> {
    /// The configured issuer.
    pub issuer: &'a str,
    /// This resource (must be in `aud`).
    pub resource: &'a str,
    /// Tolerated clock difference.
    pub skew: u64,
    /// Whether `exp` must be present (JWTs: yes).
    pub require_exp: bool,
    /// Whether `aud` must be present (JWTs and introspection: yes).
    pub require_aud: bool,
    /// Whether `iss` must be present (JWTs: yes; introspection answers may leave it out).
    pub require_iss: bool,
}

/// A NumericDate as whole seconds (fractions are dropped); `None` for negative or absurd values.
pub(crate) fn seconds(n: &serde_json::Number) -> Option<u64> {
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    (0.0..1.0e15).contains(&f).then_some(f as u64)
}

impl Claims {
    /// Runs every claim check at time `now`; returns the token's facts, or why it is refused
    /// (a short reason safe to show the caller).
    pub fn check(&self, exp: &Expectations<'_>, now: u64) -> Result<TokenInfo, &'static str> {
        match &self.iss {
            Some(iss) if iss == exp.issuer => {}
            Some(_) => return Err("the token was issued by another issuer"),
            None if exp.require_iss => return Err("the token has no issuer"),
            None => {}
        }
        match &self.aud {
            Some(aud) if !aud.iter().any(|a| same_resource(a, exp.resource)) => {
                return Err("the token is for another resource (audience)");
            }
            Some(_) => {}
            None if exp.require_aud => return Err("the token names no audience"),
            None => {}
        }
        let expires_at = match &self.exp {
            Some(n) => {
                let e = seconds(n).ok_or("the token's exp is not a time")?;
                if now >= e.saturating_add(exp.skew) {
                    return Err("the token has expired");
                }
                Some(e)
            }
            None if exp.require_exp => return Err("the token has no expiry"),
            None => None,
        };
        if let Some(n) = &self.nbf {
            let nbf = seconds(n).ok_or("the token's nbf is not a time")?;
            if nbf > now.saturating_add(exp.skew) {
                return Err("the token is not valid yet");
            }
        }
        if let Some(n) = &self.iat {
            let iat = seconds(n).ok_or("the token's iat is not a time")?;
            if iat > now.saturating_add(exp.skew) {
                return Err("the token was issued in the future");
            }
        }
        let client_id = self
            .client_id
            .clone()
            .or_else(|| self.azp.clone())
            .filter(|c| !c.is_empty());
        let subject = match (&self.sub, &client_id) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(c)) => c.clone(),
            _ => return Err("the token names neither a subject nor a client"),
        };
        let mut scopes: Vec<String> = Vec::new();
        if let Some(s) = &self.scope {
            scopes.extend(s.split_ascii_whitespace().map(str::to_string));
        }
        if let Some(scp) = &self.scp {
            for s in scp.iter() {
                scopes.extend(s.split_ascii_whitespace().map(str::to_string));
            }
        }
        scopes.sort();
        scopes.dedup();
        if self.cnf.as_ref().is_some_and(|c| !c.other.is_empty()) {
            return Err("the token is bound to a key in a way this resource cannot check");
        }
        let jkt = self
            .cnf
            .as_ref()
            .and_then(|c| c.jkt.clone())
            .filter(|j| !j.is_empty());
        Ok(TokenInfo {
            issuer: self.iss.clone().unwrap_or_else(|| exp.issuer.to_string()),
            subject,
            client_id,
            scopes,
            jkt,
            expires_at,
            claims: self.all.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Claims {
        serde_json::from_str(json).unwrap()
    }

    const EXP: Expectations<'static> = Expectations {
        issuer: "https://as.example",
        resource: "https://mcp.example.com/mcp",
        skew: 60,
        require_exp: true,
        require_aud: true,
        require_iss: true,
    };

    #[test]
    fn a_good_token() {
        let c = claims(
            r#"{"iss":"https://as.example","sub":"u1","aud":["x","https://MCP.example.com/mcp"],
                "exp":2000,"iat":1000,"nbf":1000.5,"scope":"b a","scp":["c"],"azp":"cli",
                "cnf":{"jkt":"T"}}"#,
        );
        let t = c.check(&EXP, 1500).unwrap();
        assert_eq!(t.subject, "u1");
        assert_eq!(t.client_id.as_deref(), Some("cli"));
        assert_eq!(t.scopes, vec!["a", "b", "c"]);
        assert_eq!(t.jkt.as_deref(), Some("T"));
        assert_eq!(t.expires_at, Some(2000));
    }

    #[test]
    fn each_claim_is_enforced() {
        let base = r#""iss":"https://as.example","sub":"u","aud":"https://mcp.example.com/mcp""#;
        let ok = |extra: &str, now| claims(&format!("{{{base}{extra}}}")).check(&EXP, now);
        assert!(ok(r#","exp":100"#, 159).is_ok(), "within skew");
        assert_eq!(ok(r#","exp":100"#, 160), Err("the token has expired"));
        assert_eq!(ok("", 1), Err("the token has no expiry"));
        assert_eq!(
            ok(r#","exp":9999,"nbf":200"#, 139),
            Err("the token is not valid yet")
        );
        assert!(ok(r#","exp":9999,"nbf":200"#, 140).is_ok());
        assert_eq!(
            ok(r#","exp":9999,"iat":500"#, 100),
            Err("the token was issued in the future")
        );
        assert_eq!(ok(r#","exp":-5"#, 1), Err("the token's exp is not a time"));
        let other_iss = claims(
            r#"{"iss":"https://as.example/","sub":"u","aud":"https://mcp.example.com/mcp","exp":9}"#,
        );
        assert_eq!(
            other_iss.check(&EXP, 1),
            Err("the token was issued by another issuer")
        );
        let other_aud = claims(
            r#"{"iss":"https://as.example","sub":"u","aud":["https://mcp.example.com/mcp2"],"exp":9}"#,
        );
        assert_eq!(
            other_aud.check(&EXP, 1),
            Err("the token is for another resource (audience)")
        );
        let no_sub = claims(
            r#"{"iss":"https://as.example","aud":"https://mcp.example.com/mcp","exp":9,"client_id":"c"}"#,
        );
        assert_eq!(no_sub.check(&EXP, 1).unwrap().subject, "c");
        let nobody =
            claims(r#"{"iss":"https://as.example","aud":"https://mcp.example.com/mcp","exp":9}"#);
        assert!(nobody.check(&EXP, 1).is_err());
    }

    #[test]
    fn unknown_bindings_are_refused() {
        let c = claims(
            r#"{"iss":"https://as.example","sub":"u","aud":"https://mcp.example.com/mcp","exp":9,
                "cnf":{"x5t#S256":"abc"}}"#,
        );
        assert_eq!(
            c.check(&EXP, 1),
            Err("the token is bound to a key in a way this resource cannot check")
        );
    }

    /// Every claim is kept within the bound; past it, only who holds the token and for what,
    /// each claim within its own bound.
    #[test]
    fn claims_are_kept_within_bounds() {
        let small = br#"{"iss":"i","sub":"s","org":"acme","roles":["admin"]}"#;
        let m = kept_claims(small).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m["roles"], serde_json::json!(["admin"]));
        assert!(kept_claims(b"[1]").is_none(), "not an object");
        let big = serde_json::json!({
            "iss": "i", "sub": "s", "client_id": "c", "scope": "a b", "exp": 9,
            "aud": "x".repeat(MAX_KEPT_CLAIM_BYTES),
            "org": "acme", "blob": "y".repeat(About::MAX_CLAIMS_BYTES),
        })
        .to_string();
        let m = kept_claims(big.as_bytes()).unwrap();
        let mut kept: Vec<&str> = m.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["client_id", "exp", "iss", "scope", "sub"]);
        let c: Claims = serde_json::from_slice(small).unwrap();
        assert!(c.all.is_none(), "filled by the reader, not by serde");
    }

    #[test]
    fn duplicate_claims_are_refused() {
        assert!(serde_json::from_str::<Claims>(r#"{"aud":"a","aud":"b"}"#).is_err());
        // Read in one parse: a member named twice is refused at any depth, checked or not.
        for twice in [
            r#"{"aud":"a","aud":"b"}"#,
            r#"{"sub":"s","org":"a","org":"b"}"#,
            r#"{"sub":"s","cnf":{"jkt":"A","jkt":"B"}}"#,
            r#"{"sub":"s","x":[{"k":1,"k":2}]}"#,
        ] {
            assert!(parse_claims(twice.as_bytes()).is_err(), "{twice}");
        }
    }

    /// One parse gives what the two separate reads gave: the checked members and every claim.
    #[test]
    fn one_parse_reads_what_two_did() {
        let texts = [
            r#"{"iss":"https://as.example","sub":"u1","aud":["x","https://mcp.example.com/mcp"],
                "exp":2000,"iat":1000,"nbf":1000.5,"scope":"b a","scp":["c"],"azp":"cli",
                "cnf":{"jkt":"T"},"n":-3,"big":18446744073709551615,"f":1.5e300,"z":null,
                "t":true,"o":{"p":[1,"q",{"r":false}]}}"#
                .to_string(),
            serde_json::json!({"iss": "i", "sub": "s", "exp": 9, "client_id": "c",
                               "blob": "y".repeat(About::MAX_CLAIMS_BYTES)})
            .to_string(),
        ];
        for text in &texts {
            let one = parse_claims(text.as_bytes()).unwrap();
            let mut two: Claims = serde_json::from_str(text).unwrap();
            two.all = kept_claims(text.as_bytes());
            assert_eq!(one.all, two.all);
            assert_eq!(format!("{one:?}"), format!("{two:?}"));
            assert_eq!(one.check(&EXP, 1500), two.check(&EXP, 1500));
        }
        assert!(parse_claims(b"[1]").is_err(), "not an object");
        assert!(parse_claims(b"{").is_err());
        assert!(
            parse_claims(br#"{"exp":"soon"}"#).is_err(),
            "a checked member's type"
        );
    }
}
