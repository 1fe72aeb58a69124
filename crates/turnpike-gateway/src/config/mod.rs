//! The gateway's configuration file (TOML): [`parse`] and [`load`] build a [`Config`].
//!
//! The file's format is described once, in the README's "Configuration reference" (and the
//! rail documents it links to); tests hold that reference, every configuration shown in the
//! documents and `turnpike init`'s template to the definitions here.
//!
//! Each section is read by the serde type of the crate that owns it, straight from the spanned
//! TOML value, so that every problem is reported with `file:line:col`, what is wrong and a hint
//! (the toolkit of `turnpike-conf`). The rails' tables (`[pow]`, `[l402]`, `[lightning]`,
//! `[oauth]`, …) and their keys in a price are read by the rails themselves, through the
//! [`turnpike_conf::RailConf`] each registers in [`crate::registry`]: nothing here names a
//! rail. The gateway reads its own sections ([`sections`], [`prices`]), its own keys of
//! `[oauth]` (what the upstream is told) and keeps the rules across sections ([`rules`]).
//!
//! | file | what |
//! |---|---|
//! | `types.rs` | the data: [`Config`] and the gateway's own sections |
//! | `sections.rs` | the gateway's sections, and its keys in a rail's table |
//! | `prices.rs` | `[tools.*]`, `[methods.*]`: `free`, and each rail's key read by the rail |
//! | `policy.rs` | `[[policy]]`: access rules in CEL, each compiled where it is written |
//! | `classes.rs` | `[classes.<name>]`: the price/limit classes a rule may pick |
//! | `rules.rs` | rules across sections; [`Config::validate`] |

mod classes;
mod hints;
mod policy;
mod prices;
mod reader;
mod rules;
mod sections;
mod types;

use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use turnpike_conf::{line_col, span_of_path, RailConf, Section};
use turnpike_limits::{BudgetsConfig, LimitsConfig, StoreConfig as LimitsStoreConfig};

use crate::registry::RAIL_CONFS;
use hints::*;
pub use policy::compile as compile_policy;
use reader::Gx;
pub use sections::{reference_keys, IDENTITY_TABLE};
pub use turnpike_conf::{ConfigError, Host, Problem, Sections};
pub use types::*;

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => parse(&src, &name),
        Err(e) => Err(ConfigError {
            file: name,
            problems: vec![Problem {
                line: 0,
                col: 0,
                message: format!("cannot read the file: {e}"),
                hint: "check the path given with --config".into(),
            }],
        }),
    }
}

/// Parses a configuration from TOML text; `file_name` is used in messages only. Reports
/// **every** problem found, each with `file:line:col`, what is wrong and a hint.
pub fn parse(src: &str, file_name: &str) -> Result<Config, ConfigError> {
    parse_with(src, file_name, RAIL_CONFS)
}

/// [`parse`] with the rails `rails` (the gateway's are [`RAIL_CONFS`]): each reads its tables
/// and its key in a price.
pub fn parse_with(
    src: &str,
    file_name: &str,
    rails: &'static [&'static dyn RailConf],
) -> Result<Config, ConfigError> {
    let mut cx = Gx::new(src, rails);
    let (root, syntax) = DeTable::parse_recoverable(src);
    if !syntax.is_empty() {
        for e in syntax {
            cx.problem(
                e.span(),
                e.message().to_string(),
                "fix the TOML syntax here",
            );
        }
        return Err(into_error(cx, file_name));
    }
    let root_span = root.span();
    let root = root.into_inner();
    let mut cfg = Config::default();
    for rail in rails {
        rail.defaults(&mut cfg.rails);
    }
    let serde_words = |name, hint| Section {
        serde_words: true,
        ..Section::new(name, hint)
    };
    for (key, value) in root.iter() {
        match key.get_ref().as_ref() {
            "server" => {
                if let Some(s) = cx.server(value) {
                    cfg.server = s;
                }
            }
            "upstream" => {
                if let Some(u) = cx.upstream(value, "[upstream]") {
                    cfg.upstream = u;
                }
            }
            "mount" => cfg.mounts = cx.mounts(value),
            "merge" => cfg.merge = cx.merge(value),
            "policy" => cfg.policy_rules = cx.policy_rules(value),
            "classes" => cfg.classes = cx.classes(value),
            "tools" => {
                if let Some(t) = cx.table(value, "[tools]") {
                    cfg.tools = cx.prices(t, "tools");
                }
            }
            "methods" => {
                if let Some(t) = cx.table(value, "[methods]") {
                    cfg.methods = cx.prices(t, "methods");
                    cx.method_names(t);
                }
            }
            "limits" => {
                if let Some(l) =
                    cx.section::<LimitsConfig>(value, serde_words("[limits]", HINT_LIMITS))
                {
                    cfg.limits = l;
                }
            }
            "budgets" => {
                if let Some(b) =
                    cx.section::<BudgetsConfig>(value, serde_words("[budgets]", HINT_LIMITS))
                {
                    cfg.budgets = b;
                }
            }
            "store" => {
                if let Some(s) =
                    cx.section::<LimitsStoreConfig>(value, serde_words("[store]", HINT_LIMITS))
                {
                    cfg.store = s;
                }
            }
            "admin" => cfg.admin = cx.admin(value),
            "stdio" => {
                if let Some(s) =
                    cx.section::<StdioSection>(value, Section::new("[stdio]", HINT_POSITIVE))
                {
                    cfg.stdio = s;
                }
            }
            "telemetry" => {
                let s = Section::new("[telemetry]", HINT_TELEMETRY);
                cfg.telemetry = cx.section::<TelemetrySection>(value, s);
            }
            // After the loop: a rail's table may depend on [server].
            name if cx.owner(name).is_some() => {}
            other => cx.problem(
                Some(key.span()),
                format!("unknown table `{other}`"),
                &tables_hint(rails),
            ),
        }
    }
    cfg.policy_rules = policy::with_tool_rules(&cfg.tools, std::mem::take(&mut cfg.policy_rules));
    let public_url = cfg.public_url();
    for (key, value) in root.iter() {
        if let Some(rail) = cx.owner(key.get_ref()) {
            rail_table(&mut cx, rail, key.get_ref(), value, &public_url, &mut cfg);
        }
    }
    let host = Host {
        public_url: &public_url,
        extra: &[],
    };
    for rail in rails {
        rail.check(&mut cx, &root, &cfg.rails, &host);
    }
    rules::check(&mut cx, &root, root_span.start, &cfg);
    if cx.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(into_error(cx, file_name))
    }
}

/// A rail's table `name`, read by its rail; the gateway's own keys of it (see
/// [`sections::gateway_keys`]) taken out first and read here.
fn rail_table(
    cx: &mut Gx<'_>,
    rail: &dyn RailConf,
    name: &str,
    value: &Spanned<DeValue<'_>>,
    public_url: &str,
    cfg: &mut Config,
) {
    let own = sections::gateway_keys(name);
    let host = Host {
        public_url,
        extra: &own,
    };
    if own.is_empty() {
        rail.read(cx, name, value, &host, &mut cfg.rails);
        return;
    }
    let Some(t) = cx.table(value, &format!("[{name}]")) else {
        return;
    };
    let (rest, own_t) = turnpike_conf::split_keys(t, &own);
    let before = cx.problems.len();
    let rest = Spanned::new(value.span(), DeValue::Table(rest));
    rail.read(cx, name, &rest, &host, &mut cfg.rails);
    cfg.identity = cx.identity(&own_t, t, value.span(), before);
}

/// Every top-level table, for the hint of an unknown one.
fn tables_hint(rails: &[&dyn RailConf]) -> String {
    let mut names: Vec<String> = [
        "[server]",
        "[upstream]",
        "[[mount]]",
        "[merge]",
        "[[policy]]",
        "[classes.<name>]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push("[tools.<name>]".into());
    names.push("[methods.\"<method>\"]".into());
    for rail in rails {
        names.extend(rail.tables().iter().map(|t| format!("[{t}]")));
    }
    names.extend(
        ["[limits]", "[budgets]", "[store]", "[admin]", "[stdio]"]
            .iter()
            .map(|s| s.to_string()),
    );
    format!("the tables are {} and [telemetry]", names.join(", "))
}

fn into_error(cx: Gx<'_>, file: &str) -> ConfigError {
    let mut problems = cx.cx.problems;
    problems.sort_by_key(|p| (p.line, p.col));
    ConfigError {
        file: file.into(),
        problems,
    }
}

/// What `turnpike check` points out without refusing the file (each a [`Problem`] whose message
/// starts with `warning:`, at the key's line:col): an admin listener on an address other than
/// loopback (the admin API and `/metrics` are meant for the machine itself).
pub fn warnings(src: &str, cfg: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(admin) = &cfg.admin else {
        return out;
    };
    let ip = admin.listen.ip();
    if !ip.is_loopback() {
        let (line, col) = DeTable::parse(src)
            .ok()
            .and_then(|root| span_of_path(root.get_ref(), "admin.listen"))
            .map_or((0, 0), |span| line_col(src, span.start));
        let what = if ip.is_unspecified() {
            "every address of the machine"
        } else {
            "an address other than loopback"
        };
        out.push(Problem {
            line,
            col,
            message: format!(
                "warning: the admin listener binds {} ({what}): /metrics, the dashboard and the admin API are reachable from the network",
                admin.listen
            ),
            hint: "bind it to loopback (listen = \"127.0.0.1:8403\") and reach it over SSH or a reverse proxy with its own authentication".into(),
        });
    }
    out
}
