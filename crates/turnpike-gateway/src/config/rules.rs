//! The rules across sections: a price naming a rail needs that rail's section, a merged
//! mount's tool names a merged mount, `[limits]` against `[budgets]` and `[store]`, and (after
//! command-line overrides) [`Config::validate`].

use toml::de::{DeTable, DeValue};

use super::de::{span_of_path, Cx};
use super::hints::*;
use super::types::{check_public_url, Config, ConfigError, ForwardIdentity, Problem};
use turnpike_upstream::http::check_url;

/// The rules across sections, each problem at the place that shows it.
pub(super) fn check(cx: &mut Cx<'_>, root: &DeTable<'_>, root_start: usize, cfg: &Config) {
    if root.get("oauth").is_none() {
        for span in std::mem::take(&mut cx.oauth_prices) {
            cx.problem(
                Some(span),
                "this price names oauth, but there is no [oauth] section".into(),
                HINT_NO_OAUTH,
            );
        }
    }
    if root.get("lightning").is_none() {
        for span in std::mem::take(&mut cx.l402_prices) {
            cx.problem(
                Some(span),
                "this price names l402, but there is no [lightning] section".into(),
                HINT_NO_LIGHTNING,
            );
        }
    }
    for p in cfg.limits.validate(&cfg.budgets, &cfg.store) {
        let span = span_of_path(root, &p.path).unwrap_or(root_start..root_start);
        cx.problem(
            Some(span),
            format!("{}: {}", p.path, p.message),
            HINT_LIMITS,
        );
    }
    if let Some(var) = cfg
        .store
        .postgres_url_env
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        if std::env::var_os(var).is_none() {
            let path = "store.postgres_url_env";
            let span = span_of_path(root, path).unwrap_or(root_start..root_start);
            cx.problem(
                Some(span),
                format!("{path}: the environment variable {var} is not set"),
                HINT_LIMITS,
            );
        }
    }
    if let Some(DeValue::Table(tools)) = root.get("tools").map(|v| v.get_ref()) {
        cx.merged_tool_keys(tools, cfg);
    }
    if root.get("upstream").is_none() && cfg.mounts.is_empty() {
        cx.problem(
            Some(root_start..root_start),
            "no [upstream] table".into(),
            HINT_ONE_UPSTREAM,
        );
    }
}

impl Config {
    /// Checks the rules that span fields (after command-line overrides, say): exactly one
    /// upstream, a valid URL, sane limits. Problems carry no line numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut add = |message: String, hint: &str| {
            problems.push(Problem {
                line: 0,
                col: 0,
                message,
                hint: hint.into(),
            })
        };
        match (&self.upstream.url, &self.upstream.command) {
            (None, None) if !self.mounts.is_empty() => {}
            (Some(_), Some(_)) => add(
                "[upstream] sets both url and command".into(),
                HINT_ONE_UPSTREAM,
            ),
            (None, None) => add(
                "no upstream: set [upstream] url or command".into(),
                HINT_ONE_UPSTREAM,
            ),
            (Some(u), None) => {
                if let Err(e) = check_url(u) {
                    add(format!("[upstream] url: {e}"), HINT_URL);
                }
            }
            (None, Some(c)) => {
                if c.first().is_none_or(|p| p.is_empty()) {
                    add("[upstream] command is empty".into(), HINT_COMMAND);
                }
            }
        }
        if !self.server.path.starts_with('/') {
            add(
                format!(
                    "[server] path {:?} does not start with \"/\"",
                    self.server.path
                ),
                HINT_PATH,
            );
        }
        if self.server.allowed_hosts.is_empty() {
            add("[server] allowed_hosts is empty".into(), HINT_HOSTS);
        }
        if self.server.max_body_bytes == 0 {
            add("[server] max_body_bytes is 0".into(), HINT_POSITIVE);
        }
        if let Err(errs) = self.pow.validate() {
            for e in errs {
                add(
                    e.to_string(),
                    "see the [pow] table in the configuration reference",
                );
            }
        }
        for (table, map) in [("tools", &self.tools), ("methods", &self.methods)] {
            for (k, p) in map {
                if p.pow == Some(0) {
                    add(format!("[{table}.{k}] pow = 0"), HINT_EFFORT);
                }
                if p.l402.is_some_and(|l| l.msat == 0) {
                    add(format!("[{table}.{k}] l402 price is 0"), HINT_L402);
                }
            }
        }
        if self.uses_l402() && self.lightning.is_none() {
            add(
                "a price names l402 but there is no [lightning] section".into(),
                HINT_NO_LIGHTNING,
            );
        }
        if let Some(u) = &self.server.public_url {
            if let Err(e) = check_public_url(u) {
                add(format!("[server] public_url {u:?}: {e}"), HINT_PUBLIC_URL);
            }
        }
        if self.uses_oauth() && self.oauth.is_none() {
            add(
                "a price names oauth but there is no [oauth] section".into(),
                HINT_NO_OAUTH,
            );
        }
        if let (Some(o), Some(cfg)) = (&self.oauth, self.oauth_config()) {
            if let Err(e) = cfg.validate() {
                for p in e.problems {
                    add(p, HINT_OAUTH);
                }
            }
            if o.forward_identity == ForwardIdentity::Signed && o.identity_secret.is_none() {
                add(
                    "[oauth] forward_identity = \"signed\" needs identity_secret".into(),
                    HINT_IDENTITY_SECRET,
                );
            }
        }
        for p in self.limits.validate(&self.budgets, &self.store) {
            add(format!("{}: {}", p.path, p.message), HINT_LIMITS);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                file: "<config>".into(),
                problems,
            })
        }
    }
}
