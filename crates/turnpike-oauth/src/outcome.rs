//! What the rail decided about one OAuth credential, in more detail than core's
//! [`Verdict`], and how to answer it on the wire (RFC 6750 §3,
//! RFC 9449 §7.1 and §9, MCP's 403 step-up).

use turnpike_core::{Grant, Identity, Refusal, Verdict};

use crate::exchange::UpstreamToken;
use crate::token::TokenInfo;

/// The error codes of the `WWW-Authenticate` challenges the rail answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// RFC 6750 `invalid_request` (HTTP 400): the credential is malformed.
    InvalidRequest,
    /// RFC 6750 `invalid_token` (HTTP 401): expired, forged, for another resource, …
    InvalidToken,
    /// RFC 9449 `invalid_dpop_proof` (HTTP 401).
    InvalidDpopProof,
    /// RFC 9449 `use_dpop_nonce` (HTTP 401, with a `DPoP-Nonce` header).
    UseDpopNonce,
    /// RFC 6750 `insufficient_scope` (HTTP 403).
    InsufficientScope,
}

impl ErrorCode {
    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::InsufficientScope => "insufficient_scope",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::InvalidToken | ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce => 401,
            ErrorCode::InsufficientScope => 403,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authorization scheme a token came under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP` with a `DPoP` proof (RFC 9449).
    DPoP,
}

impl Scheme {
    /// The scheme name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::DPoP => "DPoP",
        }
    }
}

/// A credential the rail accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `Identity::OAuth { issuer, subject, client_id }`.
    pub identity: Identity,
    /// Everything the token said.
    pub token: TokenInfo,
    /// Whether a DPoP proof bound the call to the token's key.
    pub dpop_bound: bool,
    /// A fresh `DPoP-Nonce` to send with the response (nonces on, DPoP request).
    pub dpop_nonce: Option<String>,
    /// The token the upstream gets for this caller (`[oauth.upstream_token.exchange]`).
    pub upstream_token: Option<UpstreamToken>,
}

/// A credential the rail refused with an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The error code (`invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`,
    /// `invalid_request`).
    pub code: ErrorCode,
    /// A short reason, safe to show: it never holds the token.
    pub description: &'static str,
    /// The scheme the token came under (the error is reported in that scheme's challenge).
    pub scheme: Scheme,
    /// A nonce to send in `DPoP-Nonce` (with `use_dpop_nonce`).
    pub dpop_nonce: Option<String>,
}

/// The rail's detailed decision about one OAuth credential for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthOutcome {
    /// The token (and its proof) is good and carries every scope the call needs.
    Pass(Accepted),
    /// The token or its proof is refused: HTTP 401 (400 for `invalid_request`).
    Rejected(Rejection),
    /// The token is good but lacks scopes the call needs: HTTP 403 `insufficient_scope`
    /// naming all of `needed`.
    InsufficientScope {
        /// Every scope the call needs (what the challenge names).
        needed: Vec<String>,
        /// The needed scopes the token lacks.
        missing: Vec<String>,
        /// The scheme the token came under.
        scheme: Scheme,
        /// Who the caller is (the token was genuine).
        identity: Identity,
    },
    /// The issuer (keys, metadata or introspection) could not be reached: fail closed, 503.
    Unavailable(String),
    /// The token is good, but the authorization server refused to exchange it for the
    /// upstream's token (RFC 8693): HTTP 403 naming the server's error code.
    ExchangeRefused {
        /// The server's `error` code (printable ASCII, at most 64 characters).
        code: String,
        /// Who the caller is (the token was genuine).
        identity: Identity,
    },
    /// A bound on token introspection is reached: 429 with `Retry-After` for the caller's own
    /// per-address bound, 503 with `Retry-After` for the bound in all. Nothing was asked of
    /// the authorization server.
    Busy {
        /// Whether it is the caller's own bound (429) or the bound in all (503).
        own: bool,
        /// Seconds until the bound admits a request again (at least 1).
        retry_after: u64,
    },
}

impl OAuthOutcome {
    /// The outcome for an OAuth credential that did not even parse (a malformed `Authorization`
    /// value, several `DPoP` headers): `invalid_request`, HTTP 400. For the gateway, which
    /// parses credentials before any rail sees them.
    pub fn malformed(scheme: Scheme) -> OAuthOutcome {
        OAuthOutcome::Rejected(Rejection {
            code: ErrorCode::InvalidRequest,
            description: "the Authorization or DPoP header is malformed",
            scheme,
            dpop_nonce: None,
        })
    }

    /// The HTTP status this outcome calls for when it stands alone: 200 for a pass, 400, 401,
    /// 403, 429 or 503 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            OAuthOutcome::Pass(_) => 200,
            OAuthOutcome::Rejected(r) => r.code.status(),
            OAuthOutcome::InsufficientScope { .. } | OAuthOutcome::ExchangeRefused { .. } => 403,
            OAuthOutcome::Unavailable(_) => 503,
            OAuthOutcome::Busy { own: true, .. } => 429,
            OAuthOutcome::Busy { own: false, .. } => 503,
        }
    }

    /// The same decision as core's [`Verdict`]: a pass with the identity; `Invalid` for a
    /// refused token or proof (401); `Stale` for missing scopes (the token is genuine but cannot
    /// pay for this call; the gateway should answer 403 from [`OAuthOutcome`] itself, see
    /// [`crate::OAuthRail::response_for`]); `Unavailable` when the issuer cannot be reached or
    /// an introspection bound is reached (the gate fails closed; the rail's own answer says
    /// when to come back).
    pub fn to_verdict(&self) -> Verdict {
        match self {
            OAuthOutcome::Pass(a) => Verdict::Pass(Grant {
                rail: crate::offer::RAIL,
                identity: Some(a.identity.clone()),
                receipt: None,
                about: Some(std::sync::Arc::new(turnpike_core::About {
                    scopes: a.token.scopes.clone(),
                    claims: a.token.claims.clone(),
                    caveats: Vec::new(),
                })),
            }),
            OAuthOutcome::Rejected(r) => Verdict::Invalid(Refusal::new(
                crate::offer::RAIL,
                format!("{}: {}", r.code, r.description),
            )),
            OAuthOutcome::InsufficientScope { needed, .. } => Verdict::Stale(Refusal::new(
                crate::offer::RAIL,
                format!(
                    "insufficient_scope: this call needs the scopes \"{}\"",
                    needed.join(" ")
                ),
            )),
            OAuthOutcome::ExchangeRefused { code, .. } => Verdict::Stale(Refusal::new(
                crate::offer::RAIL,
                format!("the authorization server refused to exchange the token ({code})"),
            )),
            OAuthOutcome::Unavailable(_) => Verdict::Unavailable(Refusal::new(
                crate::offer::RAIL,
                "the authorization server cannot be reached to check the token",
            )),
            OAuthOutcome::Busy { .. } => Verdict::Unavailable(Refusal::new(
                crate::offer::RAIL,
                "too many tokens to check from this caller or in all; come back later",
            )),
        }
    }
}

/// How to answer a refused OAuth credential over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResponse {
    /// 400, 401, 403, 429 or 503.
    pub status: u16,
    /// `WWW-Authenticate` values, one header line each, the one carrying the error first.
    pub www_authenticate: Vec<String>,
    /// A value for the `DPoP-Nonce` header.
    pub dpop_nonce: Option<String>,
    /// The error code, when there is one.
    pub error: Option<ErrorCode>,
    /// A one-sentence description for the JSON-RPC error message.
    pub description: String,
    /// Seconds for the `Retry-After` header (an introspection bound is reached).
    pub retry_after: Option<u64>,
    /// The authorization server's error code when it refused a token exchange.
    pub exchange_error: Option<String>,
}

/// Escapes a value for an RFC 9110 quoted-string.
pub(crate) fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(ErrorCode::InvalidRequest.status(), 400);
        assert_eq!(ErrorCode::UseDpopNonce.as_str(), "use_dpop_nonce");
        assert_eq!(ErrorCode::InsufficientScope.status(), 403);
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c""#);
        assert_eq!(OAuthOutcome::malformed(Scheme::DPoP).status(), 400);
        let busy = |own| OAuthOutcome::Busy {
            own,
            retry_after: 3,
        };
        assert_eq!(busy(true).status(), 429);
        assert_eq!(busy(false).status(), 503);
        assert!(matches!(busy(true).to_verdict(), Verdict::Unavailable(_)));
    }
}
