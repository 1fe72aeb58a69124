//! The gateway's configuration file (TOML): [`parse`] and [`load`] build a [`Config`].
//!
//! The file's format is described once, in the README's "Configuration reference" (and the
//! rail documents it links to); tests hold that reference, every configuration shown in the
//! documents and `turnpike init`'s template to the definitions here.
//!
//! Each section is read by the serde type of the crate that owns it (`[pow]` by
//! `turnpike_pow`, `[oauth]` by `turnpike_oauth`, `[lightning]` by `turnpike_lightning`, …),
//! straight from the spanned TOML value, so that every problem is reported with
//! `file:line:col`, what is wrong and a hint ([`de`]). The gateway reads its own sections
//! ([`sections`], [`prices`]) and keeps the rules across sections ([`rules`]).
//!
//! | file | what |
//! |---|---|
//! | `types.rs` | the data: [`Config`] and the gateway's own sections |
//! | `de.rs` | reading a section with its owner's type; problems with their places |
//! | `sections.rs` | each section, and what the gateway adds to some |
//! | `prices.rs` | `[tools.*]`, `[methods.*]` |
//! | `rules.rs` | rules across sections; [`Config::validate`] |

pub mod de;
mod hints;
mod prices;
mod rules;
mod sections;
mod types;

use std::path::Path;

use toml::de::DeTable;
use turnpike_limits::{BudgetsConfig, LimitsConfig, StoreConfig as LimitsStoreConfig};
use turnpike_pow::PowConfig;

use de::{line_col, span_of_path, Cx, Section};
use hints::*;
pub use sections::reference_keys;
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
    let mut cx = Cx::new(src);
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
            "pow" => {
                let s = serde_words("[pow]", "see the [pow] table in the configuration reference");
                if let Some(p) = cx.section::<PowConfig>(value, s) {
                    cfg.pow = p;
                }
            }
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
            "l402" => {
                if let Some(l) = cx.l402(value) {
                    cfg.l402 = l;
                }
            }
            "lightning" => cfg.lightning = cx.lightning(value),
            "limits" => {
                if let Some(l) = cx.section::<LimitsConfig>(value, serde_words("[limits]", HINT_LIMITS)) {
                    cfg.limits = l;
                }
            }
            "budgets" => {
                if let Some(b) = cx.section::<BudgetsConfig>(value, serde_words("[budgets]", HINT_LIMITS)) {
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
                if let Some(s) = cx.section::<StdioSection>(value, Section::new("[stdio]", HINT_POSITIVE)) {
                    cfg.stdio = s;
                }
            }
            "telemetry" => {
                let s = Section::new("[telemetry]", HINT_TELEMETRY);
                cfg.telemetry = cx.section::<TelemetrySection>(value, s);
            }
            // After the loop: its defaults depend on [server].
            "oauth" => {}
            other => cx.problem(
                Some(key.span()),
                format!("unknown table `{other}`"),
                "the tables are [server], [upstream], [[mount]], [merge], [pow], [tools.<name>], [methods.\"<method>\"], [l402], [lightning], [oauth], [limits], [budgets], [store], [admin], [stdio] and [telemetry]",
            ),
        }
    }
    if let Some(value) = root.get("oauth") {
        let public_url = cfg.public_url();
        cfg.oauth = cx.oauth(value, &public_url);
    }
    rules::check(&mut cx, &root, root_span.start, &cfg);
    if cx.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(into_error(cx, file_name))
    }
}

fn into_error(cx: Cx<'_>, file: &str) -> ConfigError {
    let mut problems = cx.problems;
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
