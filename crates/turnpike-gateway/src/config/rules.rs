//! The rules across sections: a price naming a rail needs that rail's table (the one
//! [`turnpike_conf::RailConf::needs`] names), a merged
//! mount's tool names a merged mount, `[limits]` against `[budgets]` and `[store]`, and (after
//! command-line overrides) [`Config::validate`].

use toml::de::{DeTable, DeValue};
use turnpike_conf::{check_url, span_of_path, ConfigError, Host, Problem};

use crate::registry::{by_id, RAIL_CONFS};

use super::hints::*;
use super::reader::Gx;
use super::types::{check_public_url, Config, ForwardIdentity};

/// The rules across sections, each problem at the place that shows it.
pub(super) fn check(cx: &mut Gx<'_>, root: &DeTable<'_>, root_start: usize, cfg: &Config) {
    // A price naming a rail that is off (its table is not there, and nothing else turns it on).
    for (id, span) in std::mem::take(&mut cx.rail_prices) {
        let Some(rail) = cx.rail(id.as_str()) else {
            continue;
        };
        let Some((table, hint)) = rail.needs() else {
            continue;
        };
        if root.get(table).is_none() && !rail.is_on(&cfg.rails) {
            cx.problem(
                Some(span),
                format!("this price names {id}, but there is no [{table}] section"),
                hint,
            );
        }
    }
    // Per-rail limits name rails by their names: those of the rails the file is read with.
    let names: Vec<&str> = turnpike_conf::always_on_first(cx.rails)
        .iter()
        .map(|r| r.id().as_str())
        .collect();
    // Only names the file writes: the loop brake's default names rails a gateway may not have.
    for u in cfg.limits.unknown_rails(&names) {
        let p = &u.problem;
        let span = match p.path.strip_prefix("limits.rails.") {
            Some(_) => span_of_path(root, &p.path),
            None => element_span(root, &p.path, &u.name),
        };
        let Some(span) = span else { continue };
        cx.problem(
            Some(span),
            format!("{}: {}", p.path, p.message),
            HINT_LIMITS,
        );
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
    // A class rule names a class the file defines.
    if let Some(DeValue::Array(rules)) = root.get("policy").map(|v| v.get_ref()) {
        for rule in rules.iter() {
            let DeValue::Table(t) = rule.get_ref() else {
                continue;
            };
            let Some(v) = t.get("class") else { continue };
            let DeValue::String(name) = v.get_ref() else {
                continue;
            };
            if !cfg.classes.contains_key(name.as_ref()) {
                let known: Vec<&str> = cfg.classes.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none is defined".to_owned()
                } else {
                    format!("the classes are {}", known.join(", "))
                };
                cx.problem(
                    Some(v.span()),
                    format!("[[policy]] names class {name:?}, which no [classes.<name>] table defines ({known})"),
                    super::classes::HINT_CLASSES,
                );
            }
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

/// The span of the string `value` in the array at `path`, if the path names one that holds it.
fn element_span(root: &DeTable<'_>, path: &str, value: &str) -> Option<std::ops::Range<usize>> {
    let (table, key) = path.rsplit_once('.')?;
    let mut t = root;
    for seg in table.split('.') {
        match t.get(seg).map(|v| v.get_ref()) {
            Some(DeValue::Table(inner)) => t = inner,
            _ => return None,
        }
    }
    let Some(DeValue::Array(items)) = t.get(key).map(|v| v.get_ref()) else {
        return None;
    };
    items
        .iter()
        .find(|v| matches!(v.get_ref(), DeValue::String(s) if s.as_ref() == value))
        .map(|v| v.span())
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
        if let Some(u) = &self.server.public_url {
            if let Err(e) = check_public_url(u) {
                add(format!("[server] public_url {u:?}: {e}"), HINT_PUBLIC_URL);
            }
        }
        for (table, map) in [("tools", &self.tools), ("methods", &self.methods)] {
            for (k, p) in map {
                for offer in &p.offers {
                    let problem = by_id(offer.rail().as_str()).and_then(|r| r.offer_problem(offer));
                    if let Some((m, hint)) = problem {
                        add(format!("[{table}.{k}] {m}"), hint);
                    }
                }
            }
        }
        let public_url = self.public_url();
        let host = Host {
            public_url: &public_url,
            extra: &[],
        };
        for rail in RAIL_CONFS {
            for (m, hint) in rail.validate(&self.rails, &host) {
                add(m, hint);
            }
            if let Some((table, hint)) = rail.needs() {
                if self.uses(rail.id()) && !rail.is_on(&self.rails) {
                    add(
                        format!(
                            "a price names {} but there is no [{table}] section",
                            rail.id()
                        ),
                        hint,
                    );
                }
            }
        }
        if let Some(i) = &self.identity {
            if i.forward_identity == ForwardIdentity::Signed && i.identity_secret.is_none() {
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
