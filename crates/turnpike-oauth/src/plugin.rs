//! The OAuth rail at the gateway's edge ([`turnpike_core::RailPlugin`]): `Authorization:
//! Bearer` and `DPoP` (with the `DPoP` proof header), a view bound to each request (DPoP
//! `htm`/`htu` and the body hash), `DPoP-Nonce` and the identity to vouch for after a pass, its
//! own answers to a refused token (400, 401, 403, 429, 503), the protected-resource metadata, and a
//! challenge that asks the caller to sign in (401 where only OAuth is offered).

use std::sync::Arc;

use serde_json::Value;
use turnpike_core::credential::CredentialParseError;
use turnpike_core::plugin::Parsed;
use turnpike_core::{
    BoundRail, Challenge, Credential, CredentialReader, EdgeRequest, Offer, PassNotes, Rail,
    RailAnswer, RailDocument, RailId, RailPlugin, UpstreamAuthorization,
};

use crate::credential::{parse_authorization, BearerCredential};
use crate::outcome::{OAuthOutcome, Scheme};
use crate::rail::{HttpContext, OAuthRail, ScopedOAuthRail};

/// The header carrying a DPoP proof.
pub const DPOP_HEADER: &str = "dpop";
/// The response header carrying a fresh DPoP nonce.
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";
/// The root of every protected-resource metadata path.
const METADATA_ROOT: &str = "/.well-known/oauth-protected-resource";

/// How OAuth credentials are read: `Authorization: Bearer` and `DPoP` (with the `DPoP` proof
/// header). The running rail reads through it, and it is registered alone where the rail is off
/// (no `[oauth]`): tokens are read, and refused as for a call that does not accept OAuth, and
/// the `DPoP` header is stripped.
pub struct OAuthCredentials;

impl RailPlugin for OAuthCredentials {
    fn id(&self) -> RailId {
        crate::offer::RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        self
    }
}

impl CredentialReader for OAuthCredentials {
    fn parse_authorization(
        &self,
        scheme: &str,
        params: &str,
        req: &EdgeRequest<'_>,
    ) -> Option<Parsed> {
        if !scheme.eq_ignore_ascii_case("Bearer") && !scheme.eq_ignore_ascii_case("DPoP") {
            return None;
        }
        parse_authorization(scheme, params, &req.headers.lines(DPOP_HEADER))
    }

    fn credential_headers(&self) -> &'static [&'static str] {
        &[DPOP_HEADER]
    }
}

impl RailPlugin for OAuthRail {
    fn id(&self) -> RailId {
        crate::offer::RAIL
    }

    fn reader(&self) -> &dyn CredentialReader {
        &OAuthCredentials
    }

    fn challenge_order(&self) -> u8 {
        20
    }

    fn signs_in(&self) -> bool {
        true
    }

    fn in_band_text(&self, challenge: &Challenge, first: bool) -> String {
        in_band_text(challenge, first)
    }

    fn bind(
        self: Arc<Self>,
        req: &EdgeRequest<'_>,
        _offer: &Offer,
        credentials: &[Credential],
        malformed: Option<&CredentialParseError>,
    ) -> Option<Box<dyn BoundRail>> {
        let mut dpop = false;
        let mut any = false;
        for b in credentials
            .iter()
            .filter_map(|c| c.payload::<BearerCredential>())
        {
            any = true;
            dpop |= b.dpop.is_some();
        }
        let malformed = malformed.map(|CredentialParseError::Malformed { scheme, .. }| {
            if scheme.eq_ignore_ascii_case("DPoP") {
                Scheme::DPoP
            } else {
                Scheme::Bearer
            }
        });
        if !any && malformed.is_none() {
            return None;
        }
        let scoped = any.then(|| {
            let url = match req.public_url {
                Some(u) => u.to_owned(),
                None => self
                    .config()
                    .endpoint_url
                    .clone()
                    .unwrap_or_else(|| self.resource().to_owned()),
            };
            let mut cx = HttpContext::new(req.method, url);
            if dpop {
                cx = cx.with_body(req.body);
            }
            Arc::new(self.scoped(cx))
        });
        Some(Box::new(Bound {
            rail: self,
            scoped,
            malformed,
        }))
    }

    fn document(&self, path: &str, endpoint_path: &str) -> Option<RailDocument> {
        let rest = path.strip_prefix(METADATA_ROOT)?;
        let ours = self.metadata_paths().iter().any(|p| p == path)
            || rest == endpoint_path.trim_end_matches('/');
        ours.then(|| RailDocument {
            body: self.metadata_document(),
            what: "protected-resource metadata",
        })
    }
}

/// The OAuth rail bound to one request.
struct Bound {
    rail: Arc<OAuthRail>,
    /// The view that verifies this request's tokens, when it presented one.
    scoped: Option<Arc<ScopedOAuthRail>>,
    /// The scheme of the first OAuth credential that did not parse.
    malformed: Option<Scheme>,
}

impl Bound {
    fn outcome(&self) -> Option<OAuthOutcome> {
        self.scoped
            .as_ref()
            .and_then(|s| s.outcome())
            .or_else(|| self.malformed.map(OAuthOutcome::malformed))
    }
}

impl BoundRail for Bound {
    fn rail(&self) -> Arc<dyn Rail> {
        match &self.scoped {
            Some(s) => s.clone(),
            None => self.rail.clone(),
        }
    }

    fn passed(&self) -> PassNotes {
        let Some(OAuthOutcome::Pass(a)) = self.outcome() else {
            return PassNotes::default();
        };
        PassNotes {
            response_headers: a
                .dpop_nonce
                .map(|n| vec![(DPOP_NONCE_HEADER, n)])
                .unwrap_or_default(),
            vouch: Some((a.identity, a.token.scopes)),
            upstream_authorization: a
                .upstream_token
                .map(|t| UpstreamAuthorization(format!("Bearer {}", t.expose()))),
            ..PassNotes::default()
        }
    }

    fn answer(&self, offer: &Offer) -> Option<RailAnswer> {
        let needed = crate::offer::scopes(offer).unwrap_or_default();
        let ar = self.rail.response_for(&self.outcome()?, &needed)?;
        Some(RailAnswer {
            status: ar.status,
            message: ar.description,
            www_authenticate: ar.www_authenticate,
            headers: ar
                .dpop_nonce
                .map(|n| (DPOP_NONCE_HEADER, n))
                .into_iter()
                .chain(ar.retry_after.map(|s| ("retry-after", s.to_string())))
                .collect(),
            data: ar
                .error
                .map(|e| ("oauth_error", Value::from(e.as_str())))
                .into_iter()
                .chain(ar.retry_after.map(|s| ("retry_after", Value::from(s))))
                .chain(
                    ar.exchange_error
                        .map(|c| ("exchange_error", Value::from(c))),
                )
                .collect(),
        })
    }
}

/// The in-band words for an OAuth challenge: where to get a token, for which resource and
/// scopes, and that it goes in the `Authorization` header.
pub fn in_band_text(challenge: &Challenge, first: bool) -> String {
    let d = &challenge.details;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let issuer = d
        .get("authorization_servers")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .unwrap_or("");
    let scope = match s("scope") {
        sc if sc.is_empty() => String::new(),
        sc => format!(" with the scopes \"{sc}\""),
    };
    let lead = if first {
        "With an account"
    } else {
        "Or, with an account"
    };
    format!(
        "{lead} (OAuth): get an access token from {issuer} for the resource {}{scope} \
         (client credentials work without a browser; the protected-resource metadata is at \
         {}), then retry this same call over HTTP with the header \
         `Authorization: Bearer <token>` (or `DPoP <token>` with a `DPoP` proof). ",
        s("resource"),
        s("resource_metadata"),
    )
}
