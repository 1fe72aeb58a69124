//! The agent rail in the gateway's configuration file: the `[agent]` table and the price key
//! `agent = true | { directories = [...] }` ([`AgentConf`], registered with the gateway). The
//! rail is on when `[agent]` is there.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use turnpike_conf::{
    fields, Build, BuildError, Built, Cx, DeValue, Host, RailConf, Section, Sections, Spanned,
};
use turnpike_core::conf::positive_u64;
use turnpike_core::{Offer, RailId, RailPlugin};

use crate::fetch::{Directories, FetchBounds};
use crate::rail::{directories, offer, AgentCredentials, AgentPolicy, AgentRail, RAIL};
use crate::verifier::Policy;

/// The table this rail owns.
pub const TABLE: &str = "agent";
/// The most directories `[agent]` may list.
pub const MAX_DIRECTORIES: usize = 32;

const HINT_TABLE: &str = "see the [agent] section in docs/WEB-BOT-AUTH.md";
const HINT_NO_AGENT: &str = "add an [agent] section listing the key directories you accept, e.g. [agent] directories = [\"https://agent.example/.well-known/http-message-signatures-directory\"] (see docs/WEB-BOT-AUTH.md)";
const HINT_PRICE: &str = "write agent = true (any directory of [agent]) or agent = { directories = [\"https://…\"] } (some of them)";
const HINT_URL: &str = "write an https:// URL (http:// only on a loopback address), e.g. \"https://agent.example/.well-known/http-message-signatures-directory\"";

/// The rail's settings: the gateway's `[agent]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The key directories accepted (`Signature-Agent` URLs): only these are ever fetched.
    pub directories: Vec<String>,
    /// How long a fetched directory is used before it is fetched again, in seconds.
    #[serde(deserialize_with = "positive_u64")]
    pub directory_cache_secs: u64,
    /// The least time between two fetches of one directory for unknown key ids, and before a
    /// retry after a failed fetch, in seconds.
    pub directory_min_refresh_secs: u64,
    /// The deadline of one directory fetch, in milliseconds.
    #[serde(deserialize_with = "positive_u64")]
    pub directory_timeout_ms: u64,
    /// Components every signature must cover (`@authority` always; `signature-agent` whenever
    /// the request has that field, whatever this says).
    pub required_components: Vec<String>,
    /// The oldest signature accepted (`created` counted back from now), in seconds.
    #[serde(deserialize_with = "positive_u64")]
    pub max_age_secs: u64,
    /// The furthest `expires` accepted, counted forward from now, in seconds.
    #[serde(deserialize_with = "positive_u64")]
    pub max_validity_secs: u64,
    /// Clock difference tolerated in either direction, in seconds.
    pub max_skew_secs: u64,
    /// Whether a signature without a nonce is refused (a nonce is spent once whenever present).
    pub require_nonce: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            directories: Vec::new(),
            directory_cache_secs: 3600,
            directory_min_refresh_secs: 30,
            directory_timeout_ms: 5000,
            required_components: vec!["@authority".into()],
            max_age_secs: 600,
            max_validity_secs: 600,
            max_skew_secs: 30,
            require_nonce: false,
        }
    }
}

/// `[agent]` of a configuration's rail sections, when the file has it.
pub fn section(sections: &Sections) -> Option<&AgentConfig> {
    sections.get::<AgentConfig>(TABLE)
}

/// Why `url` cannot be an allowed key directory, if it cannot.
pub fn directory_problem(url: &str) -> Option<&'static str> {
    if url.is_empty() || url.len() > 2048 || !url.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Some("not a URL of visible ASCII characters");
    }
    let Ok(uri) = turnpike_conf::check_url(url) else {
        return Some("not an absolute http(s) URL with a host");
    };
    if url.contains('#') {
        return Some("a key directory URL has no fragment");
    }
    match uri.scheme_str() {
        Some("https") => None,
        _ => {
            let host = uri.host().unwrap_or("");
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            (!loopback).then_some("http:// is accepted only on a loopback address; use https://")
        }
    }
}

fn required_problem(c: &str) -> Option<&'static str> {
    const DERIVED: &[&str] = &[
        "@method",
        "@authority",
        "@scheme",
        "@target-uri",
        "@path",
        "@query",
        "@request-target",
    ];
    let field = !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    (!(DERIVED.contains(&c) || field)).then_some(
        "not a derived component (@method, @authority, @path, …) or a lower-case field name",
    )
}

/// Every problem of `[agent]`, with the key it is at.
fn problems(c: &AgentConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if c.directories.is_empty() {
        out.push((
            "directories",
            "[agent] directories lists no key directory".to_owned(),
        ));
    }
    if c.directories.len() > MAX_DIRECTORIES {
        out.push((
            "directories",
            format!("[agent] directories lists more than {MAX_DIRECTORIES}"),
        ));
    }
    for d in &c.directories {
        if let Some(why) = directory_problem(d) {
            out.push(("directories", format!("[agent] directory {d:?}: {why}")));
        }
    }
    for r in &c.required_components {
        if let Some(why) = required_problem(r) {
            out.push((
                "required_components",
                format!("[agent] required component {r:?}: {why}"),
            ));
        }
    }
    out
}

/// The configuration side of the agent rail: `[agent]` and `agent = …` in a price.
pub struct AgentConf;

impl RailConf for AgentConf {
    fn id(&self) -> RailId {
        RAIL
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some((TABLE, HINT_NO_AGENT))
    }

    fn read(
        &self,
        cx: &mut Cx<'_>,
        _name: &str,
        value: &Spanned<DeValue<'_>>,
        _host: &Host<'_>,
        out: &mut Sections,
    ) {
        let Some(cfg) = cx.section::<AgentConfig>(value, Section::new("[agent]", HINT_TABLE))
        else {
            return;
        };
        let found = problems(&cfg);
        if !found.is_empty() {
            for (key, message) in found {
                let at = value
                    .get_ref()
                    .as_table()
                    .and_then(|t| t.get(key))
                    .map(|v| v.span());
                let hint = if key == "directories" {
                    HINT_URL
                } else {
                    HINT_TABLE
                };
                cx.problem(at.or(Some(value.span())), message, hint);
            }
            return;
        }
        out.set(TABLE, cfg);
    }

    fn price_hint(&self) -> Option<(&'static str, &'static str)> {
        Some(("agent = true", "agent = true"))
    }

    fn price(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Option<Offer> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            directories: Vec<String>,
        }
        match v.get_ref() {
            DeValue::Boolean(true) => Some(offer(Vec::new())),
            DeValue::Boolean(false) => {
                cx.problem(
                    Some(v.span()),
                    "agent = false offers nothing: remove the key instead".into(),
                    HINT_PRICE,
                );
                None
            }
            _ => {
                let raw: Raw = cx.value(v, HINT_PRICE)?;
                if raw.directories.is_empty() {
                    cx.problem(
                        Some(v.span()),
                        "agent = { directories = [] } accepts no agent: write agent = true for any directory of [agent]".into(),
                        HINT_PRICE,
                    );
                    return None;
                }
                let mut dirs: Vec<String> = Vec::new();
                for d in raw.directories {
                    if let Some(why) = directory_problem(&d) {
                        cx.problem(Some(v.span()), format!("directory {d:?}: {why}"), HINT_URL);
                        return None;
                    }
                    if !dirs.contains(&d) {
                        dirs.push(d);
                    }
                }
                Some(offer(dirs))
            }
        }
    }

    fn validate(&self, sections: &Sections, _host: &Host<'_>) -> Vec<(String, &'static str)> {
        match section(sections) {
            Some(c) => problems(c)
                .into_iter()
                .map(|(_, m)| (m, HINT_TABLE))
                .collect(),
            None => Vec::new(),
        }
    }

    fn reference_keys(&self) -> Vec<(String, Vec<&'static str>)> {
        vec![(TABLE.into(), fields::<AgentConfig>())]
    }

    fn describe(&self, offer: &Offer, _sections: &Sections) -> String {
        let dirs = directories(offer).unwrap_or_default();
        if dirs.is_empty() {
            "agent (any verified agent of [agent])".into()
        } else {
            format!("agent (verified agents of {})", dirs.join(", "))
        }
    }

    fn summary(&self, sections: &Sections, _host: &Host<'_>) -> Option<String> {
        let c = section(sections)?;
        Some(format!(
            "agent: Web Bot Auth, {} key director{} ({}), cached {} s",
            c.directories.len(),
            if c.directories.len() == 1 { "y" } else { "ies" },
            c.directories.join(", "),
            c.directory_cache_secs
        ))
    }

    /// The rail from `[agent]`: its directories (nothing fetched until a signature needs
    /// one), nonces single-use through the `agent` spent set.
    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError> {
        let Some(c) = section(build.sections) else {
            return Err(BuildError("agent rail: no [agent] section".into()));
        };
        let spent = build.services.spent_set("agent")?;
        Ok(Built::new(Arc::new(rail_of(c, spent)?)))
    }

    fn recogniser(&self) -> Option<Arc<dyn RailPlugin>> {
        Some(Arc::new(AgentCredentials))
    }
}

/// The running rail of `[agent]` over the spent set `spent`.
pub fn rail_of(
    c: &AgentConfig,
    spent: Arc<dyn turnpike_store::SpentSet>,
) -> Result<AgentRail, BuildError> {
    let dirs = Directories::new(
        &c.directories,
        FetchBounds {
            ttl: Duration::from_secs(c.directory_cache_secs),
            min_refresh: Duration::from_secs(c.directory_min_refresh_secs),
            timeout: Duration::from_millis(c.directory_timeout_ms),
        },
    )
    .map_err(|e| BuildError(format!("agent rail: {e}")))?;
    let policy = AgentPolicy {
        policy: Policy {
            max_skew: c.max_skew_secs,
            max_age: c.max_age_secs,
            max_validity: c.max_validity_secs,
            require_nonce: c.require_nonce,
        },
        required: c.required_components.clone(),
    };
    Ok(AgentRail::new(policy, dirs, spent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_urls() {
        assert_eq!(directory_problem("https://a.example/.well-known/x"), None);
        assert_eq!(directory_problem("http://127.0.0.1:9/d"), None);
        assert_eq!(directory_problem("http://[::1]:9/d"), None);
        assert!(directory_problem("http://a.example/d").is_some());
        assert!(directory_problem("ftp://a.example/d").is_some());
        assert!(directory_problem("https://a.example/d#x").is_some());
        assert!(directory_problem("/relative").is_some());
        assert_eq!(required_problem("@method"), None);
        assert_eq!(required_problem("content-digest"), None);
        assert!(required_problem("@status").is_some());
        assert!(required_problem("Content-Type").is_some());
    }
}
