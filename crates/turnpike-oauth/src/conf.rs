//! The OAuth rail in the gateway's configuration file: the `[oauth]` table (the gateway reads
//! its own keys of it, about what the upstream is told, and hands the rest here) and the price
//! key `oauth = true | { scopes = […] }` ([`OAuthConf`], registered with the gateway). The rail
//! is on when `[oauth]` is there.

use std::sync::Arc;

use serde::Deserialize;
use turnpike_conf::{
    fields, span_of_path, Build, BuildError, Built, Cx, DeTable, DeValue, Host, RailConf, Section,
    Sections, Spanned,
};
use turnpike_core::{Offer, RailId, RailPlugin};

use crate::config::{is_scope_token, IntrospectionConfig, OAuthConfig};
use crate::offer::{offer, scopes, RAIL};

/// The table this rail owns.
pub const TABLE: &str = "oauth";

/// The hint of a problem in `[oauth]`.
pub const HINT_OAUTH: &str = "see the [oauth] section in docs/OAUTH.md";
const HINT_NO_OAUTH: &str = "add an [oauth] section naming your authorization server, e.g. [oauth] issuer = \"https://auth.example.com\" (see docs/OAUTH.md)";
const HINT_OAUTH_PRICE: &str = "write oauth = true (any valid token for this resource) or oauth = { scopes = [\"deploy:write\"] }";

/// `[oauth]` of a configuration's rail sections, with `resource` defaulted to the public URL of
/// the endpoint, when the file has it.
pub fn section(sections: &Sections, public_url: &str) -> Option<OAuthConfig> {
    sections
        .get::<OAuthConfig>(TABLE)
        .map(|o| o.clone().with_default_resource(public_url))
}

/// The configuration side of the OAuth rail: `[oauth]` and `oauth = …` in a price.
pub struct OAuthConf;

impl RailConf for OAuthConf {
    fn id(&self) -> RailId {
        RAIL
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some((TABLE, HINT_NO_OAUTH))
    }

    /// The rail from `[oauth]`, its resource defaulted to the public URL of the endpoint; DPoP
    /// proof ids (jti) single-use through the `dpop` spent set. Nothing is fetched from the
    /// issuer until the first token arrives (`OAuthRail::warm_up` is left to the caller).
    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError> {
        let Some(oc) = section(build.sections, build.public_url) else {
            return Err(BuildError("OAuth rail: no [oauth] section".into()));
        };
        let spent = build.services.spent_set("dpop")?;
        let rail =
            crate::OAuthRail::new(oc, spent).map_err(|e| BuildError(format!("OAuth rail: {e}")))?;
        Ok(Built::new(Arc::new(rail)))
    }

    fn recogniser(&self) -> Option<Arc<dyn RailPlugin>> {
        Some(Arc::new(crate::plugin::OAuthCredentials))
    }

    /// Every key of [`OAuthConfig`], its problems placed at their keys. Its own checks over
    /// several keys come in [`RailConf::check`].
    fn read(
        &self,
        cx: &mut Cx<'_>,
        _name: &str,
        value: &Spanned<DeValue<'_>>,
        host: &Host<'_>,
        out: &mut Sections,
    ) {
        let Some(t) = cx.table(value, "[oauth]") else {
            return;
        };
        let span = value.span();
        let mut rest = t.clone();
        if t.get("issuer").is_none() {
            cx.problem(
                Some(span.clone()),
                "[oauth] names no issuer".into(),
                "write issuer = \"https://auth.example.com\", exactly as the tokens carry it in `iss`",
            );
            // Read the rest all the same, for its own mistakes.
            rest.insert(
                Spanned::new(span.clone(), "issuer".into()),
                Spanned::new(span.clone(), DeValue::String("https://x".into())),
            );
        }
        let section = Section {
            extra: host.extra,
            name_key: true,
            ..Section::new("[oauth]", HINT_OAUTH)
        };
        // Kept even after a missing issuer (the file is refused then all the same), so that
        // its checks over several keys still report.
        if let Some(c) = cx.section_with(&rest, span, section, |d| OAuthConfig::deserialize(d)) {
            out.set(TABLE, c);
        }
    }

    /// The rail's own checks, with the resource defaulted as the gateway will.
    fn check(&self, cx: &mut Cx<'_>, root: &DeTable<'_>, sections: &Sections, host: &Host<'_>) {
        let (Some(c), Some(v)) = (section(sections, host.public_url), root.get(TABLE)) else {
            return;
        };
        let DeValue::Table(t) = v.get_ref() else {
            return;
        };
        if let Err(e) = c.validate() {
            for p in e.problems {
                let path = p
                    .strip_prefix("oauth.")
                    .and_then(|r| r.split(':').next())
                    .unwrap_or("");
                let at = span_of_path(t, path).unwrap_or(v.span());
                cx.problem(Some(at), p, HINT_OAUTH);
            }
        }
    }

    /// `oauth = true` or `oauth = { scopes = ["a", "b"] }`.
    fn price_hint(&self) -> Option<(&'static str, &'static str)> {
        Some(("oauth = true", "oauth = true"))
    }

    fn price(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Option<Offer> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            scopes: Vec<String>,
        }
        match v.get_ref() {
            DeValue::Boolean(true) => Some(offer(Vec::new())),
            DeValue::Boolean(false) => {
                cx.problem(
                    Some(v.span()),
                    "oauth = false offers nothing: remove the key instead".into(),
                    HINT_OAUTH_PRICE,
                );
                None
            }
            _ => {
                let r: Raw = cx.value(v, HINT_OAUTH_PRICE)?;
                let mut scopes: Vec<String> = Vec::new();
                for s in r.scopes {
                    if !is_scope_token(&s) {
                        cx.problem(
                            Some(v.span()),
                            format!("{s:?} is not a scope (printable ASCII without spaces, '\"' or '\\')"),
                            HINT_OAUTH_PRICE,
                        );
                        return None;
                    }
                    if !scopes.contains(&s) {
                        scopes.push(s);
                    }
                }
                Some(offer(scopes))
            }
        }
    }

    fn validate(&self, sections: &Sections, host: &Host<'_>) -> Vec<(String, &'static str)> {
        match section(sections, host.public_url).map(|c| c.validate()) {
            Some(Err(e)) => e.problems.into_iter().map(|p| (p, HINT_OAUTH)).collect(),
            _ => Vec::new(),
        }
    }

    fn reference_keys(&self) -> Vec<(String, Vec<&'static str>)> {
        vec![
            ("oauth".into(), fields::<OAuthConfig>()),
            (
                "oauth.introspection".into(),
                fields::<IntrospectionConfig>(),
            ),
            (
                "oauth.upstream_token".into(),
                fields::<crate::config::UpstreamTokenConfig>(),
            ),
            (
                "oauth.upstream_token.exchange".into(),
                fields::<crate::config::ExchangeConfig>(),
            ),
        ]
    }

    fn describe(&self, offer: &Offer, _sections: &Sections) -> String {
        let scopes = scopes(offer).unwrap_or_default();
        if scopes.is_empty() {
            "oauth (any valid token)".to_string()
        } else {
            format!("oauth scopes \"{}\"", scopes.join(" "))
        }
    }

    fn summary(&self, sections: &Sections, host: &Host<'_>) -> Option<String> {
        let o = section(sections, host.public_url)?;
        Some(format!(
            "oauth: issuer {}, resource {}{}",
            o.issuer,
            o.resource.as_deref().unwrap_or(""),
            if o.require_dpop {
                ", DPoP required"
            } else {
                ""
            }
        ))
    }
}
