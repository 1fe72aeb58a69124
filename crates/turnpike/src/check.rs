//! `turnpike check`: validate a configuration file and say what it prices.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use toml::de::{DeTable, DeValue};
use turnpike_gateway::config::{self, Config, ConfigError, PriceConfig, Problem};
use turnpike_gateway::registry::{by_id, RAIL_CONFS};
use turnpike_pow::conf::expected_time;

/// Validate a configuration file.
///
/// Prints every problem with file:line:col, what is wrong and what to do about it, and exits
/// with status 1; on success prints one line saying what the configuration prices and exits 0.
/// Files the configuration names (`macaroon_path`, `tls_cert_path`, `rune_path`, … ) must exist
/// and be readable by the user running it: the gateway reads them when it starts, and `turnpike
/// serve` refuses such a configuration with the same message.
///
/// With --measure-hashrate it also hashes for a second on every core with the solver's loop and
/// prints this machine's rate next to `[pow] reference_hashrate`, the rate the prices'
/// `expected_seconds` are computed for (default 8,000,000 hashes/s: one thread of the native
/// solver on a core with SHA extensions). Measure with a release build.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  turnpike check --config turnpike.toml\n  turnpike check -c deploy/turnpike.toml && turnpike serve -c deploy/turnpike.toml\n  turnpike check --measure-hashrate                    # this machine's hash rate\n  turnpike check -c turnpike.toml --measure-hashrate   # … and each price's time here\n\nExit status: 0 when the file is valid, 1 when it has problems."
)]
pub(crate) struct CheckArgs {
    /// The configuration file (TOML).
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "TURNPIKE_CONFIG",
        required_unless_present = "measure_hashrate"
    )]
    pub(crate) config: Option<PathBuf>,
    /// Measure this machine's proof-of-work hash rate (one thread and every core) and compare it
    /// with the reference rate prices are stated in.
    #[arg(long)]
    pub(crate) measure_hashrate: bool,
}

pub(crate) fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let Some(path) = &args.config else {
        measure_and_print(turnpike_pow::config::DEFAULT_REFERENCE_HASHRATE);
        return Ok(ExitCode::SUCCESS);
    };
    let name = path.display().to_string();
    let cfg = config::load(path)
        .and_then(|cfg| {
            cfg.validate().map(|()| cfg).map_err(|mut e| {
                e.file.clone_from(&name);
                e
            })
        })
        .and_then(|cfg| {
            let src = std::fs::read_to_string(path).unwrap_or_default();
            let problems = referenced_files(&src, Path::new("."));
            if problems.is_empty() {
                Ok(cfg)
            } else {
                Err(ConfigError {
                    file: name.clone(),
                    problems,
                })
            }
        });
    match cfg {
        Ok(cfg) => {
            // Warnings: on stderr, with line:col; the file is still valid.
            let src = std::fs::read_to_string(path).unwrap_or_default();
            let warnings = config::warnings(&src, &cfg);
            if !warnings.is_empty() {
                eprintln!(
                    "{}",
                    ConfigError {
                        file: name.clone(),
                        problems: warnings,
                    }
                );
            }
            println!("{name}: ok — {}", summary(&cfg));
            if args.measure_hashrate {
                let rate =
                    measure_and_print(turnpike_pow::conf::section(&cfg.rails).reference_hashrate);
                price_times(&cfg, rate);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            report(&e);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Keys whose value is a file the gateway reads at start (the Lightning backends' credentials
/// and pinned certificates): every key named `*_path` in the document.
fn is_file_key(key: &str) -> bool {
    key.ends_with("_path")
}

/// A problem for every file the configuration names that cannot be read, at its value's
/// line:col. Relative paths are taken from `base` (the directory turnpike runs in, as the gateway
/// reads them).
pub(crate) fn referenced_files(src: &str, base: &Path) -> Vec<Problem> {
    let Ok(root) = DeTable::parse(src) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(src, root.get_ref(), "", base, &mut out);
    out
}

fn walk(src: &str, table: &DeTable<'_>, prefix: &str, base: &Path, out: &mut Vec<Problem>) {
    for (k, v) in table.iter() {
        let key = k.get_ref().as_ref();
        let path = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        match v.get_ref() {
            DeValue::Table(t) => walk(src, t, &path, base, out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        walk(src, t, &format!("{path}[{i}]"), base, out);
                    }
                }
            }
            DeValue::String(file) if is_file_key(key) => {
                let file = Path::new(file.as_ref());
                let full = base.join(file);
                let why = match std::fs::metadata(&full) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
                    Err(_) => Some("cannot be read"),
                    Ok(m) if m.is_dir() => Some("is a directory, not a file"),
                    Ok(_) => std::fs::File::open(&full)
                        .err()
                        .map(|_| "cannot be read (permissions)"),
                };
                if let Some(why) = why {
                    let (line, col) = line_col(src, v.span().start);
                    out.push(Problem {
                        line,
                        col,
                        message: format!("{path}: {} {why}", file.display()),
                        hint: format!(
                            "the gateway reads it when it starts: point {key} at the real file (readable by the user turnpike runs as; a relative path is taken from the directory turnpike runs in), or give the value inline or by environment variable where the backend allows it (docs/L402.md)"
                        ),
                    });
                }
            }
            _ => {}
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let before = &src[..at.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Measures the hash rate for about a second (half on one thread, half on every core), prints
/// it against `reference` and returns the one-thread rate.
fn measure_and_print(reference: u64) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = turnpike_pow::bench::measure(1, Duration::from_millis(500));
    let all = turnpike_pow::bench::measure(cores, Duration::from_millis(500));
    let mhs = |h: f64| format!("{:.2} MH/s", h / 1e6);
    println!(
        "hash rate here: {} on one thread, {} on {cores} thread{} ({} each){}",
        mhs(one.per_thread),
        mhs(all.total),
        if cores == 1 { "" } else { "s" },
        mhs(all.per_thread),
        if cfg!(debug_assertions) {
            " — a debug build: measure with a release build for a real figure"
        } else {
            ""
        }
    );
    println!(
        "reference_hashrate: {} — prices' expected_seconds are effort ÷ this; one thread here is {:.2}× it",
        mhs(reference as f64),
        one.per_thread / reference.max(1) as f64
    );
    one.per_thread
}

/// Each proof-of-work price's expected time on one thread here.
fn price_times(cfg: &Config, rate: f64) {
    let mut prices: Vec<(String, u64)> = Vec::new();
    let mut add = |scope: &str, tools: &std::collections::BTreeMap<String, PriceConfig>| {
        for (name, p) in tools {
            let effort = p.offer(turnpike_pow::RAIL).and_then(turnpike_pow::effort);
            if let (Some(e), false) = (effort, p.free) {
                prices.push((format!("{scope}{name}"), e));
            }
        }
    };
    add("", &cfg.tools);
    add("method ", &cfg.methods);
    for m in &cfg.mounts {
        add(&format!("mount {} ", m.name), &m.tools);
    }
    for (name, effort) in prices {
        println!(
            "  {name}: pow {effort} ≈ {} on one thread here",
            expected_time(effort, rate.max(1.0) as u64)
        );
    }
}

/// Prints every problem, then a count, on stderr.
pub(crate) fn report(e: &ConfigError) {
    eprintln!("{e}");
    let n = e.problems.len();
    eprintln!(
        "{}: {n} problem{} found",
        e.file,
        if n == 1 { "" } else { "s" }
    );
}

/// One line: the upstream, then what each named tool, unnamed tools and priced methods cost.
pub(crate) fn summary(cfg: &Config) -> String {
    let upstream = match (&cfg.upstream.url, &cfg.upstream.command) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => format!("stdio `{}`", c.join(" ")),
        (None, None) => "no upstream".into(),
    };
    let price = |p: &PriceConfig| {
        if p.free || p.offers.is_empty() {
            return "free".to_string();
        }
        let ways: Vec<String> = p
            .offers
            .iter()
            .map(|o| match by_id(o.rail().as_str()) {
                Some(rail) => rail.describe(o, &cfg.rails),
                None => o.rail().to_string(),
            })
            .collect();
        let ways = ways.join(" or ");
        if p.shadow {
            format!("{ways} (shadow: not refused)")
        } else {
            ways
        }
    };
    let tools_of = |tools: &std::collections::BTreeMap<String, PriceConfig>, other: &str| {
        let mut out: Vec<String> = tools
            .iter()
            .filter(|(name, _)| name.as_str() != "default")
            .map(|(name, p)| format!("{name} {}", price(p)))
            .collect();
        out.push(match tools.get("default") {
            Some(p) => format!("{other} {}", price(p)),
            None => format!("{other} free"),
        });
        out.join(", ")
    };
    let mut out = if cfg.upstream.url.is_none() && cfg.upstream.command.is_none() {
        format!("{} (no [upstream])", cfg.server.listen)
    } else {
        format!(
            "{} {} → {upstream}; tools: {}",
            cfg.server.listen,
            cfg.server.path,
            tools_of(&cfg.tools, "other tools")
        )
    };
    for m in &cfg.mounts {
        let up = match (&m.upstream.url, &m.upstream.command) {
            (Some(u), _) => u.clone(),
            (None, Some(c)) => format!("stdio `{}`", c.join(" ")),
            (None, None) => "no upstream".into(),
        };
        out.push_str(&format!(
            "; mount {} {} → {up}; tools: {}",
            m.name,
            m.path,
            tools_of(&m.tools, "other tools")
        ));
    }
    if let Some(merge) = &cfg.merge {
        let names: Vec<&str> = cfg
            .mounts
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| merge.mounts.is_empty() || merge.mounts.iter().any(|x| x == n))
            .collect();
        out.push_str(&format!(
            "; merged {} over {}; tools: {}",
            merge.path,
            names.join(", "),
            tools_of(
                &cfg.tools,
                "a tool named none of these (by \"<mount>/<name>\", its published name or its own name) costs its mount's price, else"
            )
        ));
    }
    if !cfg.methods.is_empty() {
        let methods: Vec<String> = cfg
            .methods
            .iter()
            .map(|(m, p)| format!("{m} {}", price(p)))
            .collect();
        out.push_str(&format!("; methods: {}", methods.join(", ")));
    }
    out.push_str("; listing and handshake free");
    if !cfg.policy_rules.is_empty() {
        let rules: Vec<String> = cfg
            .policy_rules
            .iter()
            .map(|r| {
                let action = match r.action {
                    turnpike_policy::Action::Allow => "allow".to_owned(),
                    turnpike_policy::Action::Deny => "deny".to_owned(),
                    turnpike_policy::Action::Class => {
                        format!("class {}", r.class.as_deref().unwrap_or(""))
                    }
                };
                let shadow = match r.mode {
                    turnpike_policy::Mode::Shadow => " (shadow)",
                    turnpike_policy::Mode::Enforce => "",
                };
                format!("{} {action}{shadow}", r.name)
            })
            .collect();
        out.push_str(&format!(
            "; access policy (first match wins, else allow): {}",
            rules.join(", ")
        ));
    }
    for (name, class) in &cfg.classes {
        let mut parts: Vec<String> = Vec::new();
        if let Some(l) = &class.limits {
            parts.push(format!("limits burst {} at {}", l.burst, l.rate));
        }
        for (t, p) in &class.tools {
            parts.push(format!("{t} {}", price(p)));
        }
        for (m, p) in &class.methods {
            parts.push(format!("{m} {}", price(p)));
        }
        if parts.is_empty() {
            parts.push("the gateway's prices and limits".into());
        }
        out.push_str(&format!("; class {name}: {}", parts.join(", ")));
    }
    let public_url = cfg.public_url();
    let host = config::Host {
        public_url: &public_url,
        extra: &[],
    };
    for rail in RAIL_CONFS {
        if let Some(part) = rail.summary(&cfg.rails, &host) {
            out.push_str(&format!("; {part}"));
        }
    }
    out.push_str(&format!("; {}", limits_summary(cfg)));
    out
}

/// The limits in force, in one phrase: the default quota and in-flight cap, discovery's,
/// named tools, the loop brake, daily budgets and the store.
fn limits_summary(cfg: &Config) -> String {
    let l = &cfg.limits;
    if !l.enabled {
        return "limits off".into();
    }
    let rate = |burst: u32, r: &turnpike_gateway::limits::Rate| format!("burst {burst} at {r}");
    let mut parts = vec![format!(
        "limits per identity: tools {}{}",
        rate(l.default.burst, &l.default.rate),
        l.default
            .concurrency
            .map_or(String::new(), |c| format!(", {c} in flight"))
    )];
    parts.push(format!(
        "discovery {}",
        rate(l.discovery.burst, &l.discovery.rate)
    ));
    for (name, q) in &l.tools {
        parts.push(format!("{name} {}", rate(q.burst, &q.rate)));
    }
    if l.loop_brake.enabled {
        parts.push(format!(
            "loop brake after {} identical calls per {} s",
            l.loop_brake.max_repeats, l.loop_brake.window_secs
        ));
    }
    if let Some(c) = cfg.budgets.calls_per_day {
        parts.push(format!("{c} calls a day"));
    }
    if let Some(m) = cfg.budgets.msat_per_token_per_day {
        parts.push(format!("{m} msat per token a day"));
    }
    let mut store = match cfg.store.backend {
        turnpike_gateway::limits::StoreBackend::Memory => "memory".to_string(),
        turnpike_gateway::limits::StoreBackend::Redis => "redis".to_string(),
    };
    if cfg.store.durable == turnpike_gateway::limits::DurableBackend::Postgres {
        store.push_str(&format!(
            " + postgres{}",
            cfg.store
                .postgres_schema
                .as_deref()
                .map_or(String::new(), |s| format!(" (schema {s})"))
        ));
    }
    parts.push(format!(
        "store {store}, fail {}",
        match l.failure_mode {
            turnpike_gateway::limits::FailureMode::Open => "open",
            turnpike_gateway::limits::FailureMode::Closed => "closed",
        }
    ));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unreadable_files_are_refused_at_their_place() {
        let dir = std::env::temp_dir().join(format!("turnpike-check-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("here.macaroon"), b"x").unwrap();
        let src = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[lightning]\nbackend = \"lnd\"\nurl = \"https://127.0.0.1:8080\"\nmacaroon_path = \"gone.macaroon\"\ntls_cert_path = \"here.macaroon\"\n";
        let p = referenced_files(src, &dir);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].line, p[0].col), (6, 17));
        assert!(
            p[0].message
                .contains("lightning.macaroon_path: gone.macaroon does not exist"),
            "{p:?}"
        );
        let dir_src = src.replace("gone.macaroon", ".");
        let p = referenced_files(&dir_src, &dir);
        assert!(p[0].message.contains("is a directory"), "{p:?}");
        // Both present: nothing to say.
        let ok = src.replace("gone.macaroon", "here.macaroon");
        assert!(referenced_files(&ok, &dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn summary_names_the_access_policy() {
        let cfg = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[[policy]]\nname = \"a\"\nwhen = \"true\"\naction = \"deny\"\nmode = \"shadow\"\n[[policy]]\nname = \"b\"\nwhen = \"true\"\naction = \"allow\"\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(
            s.contains("access policy (first match wins, else allow): a deny (shadow), b allow"),
            "{s}"
        );
    }

    #[test]
    fn summary_names_the_classes() {
        let cfg = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[[policy]]\nname = \"p\"\nwhen = \"identity.kind == 'oauth'\"\naction = \"class\"\nclass = \"partner\"\n[classes.partner.limits]\nburst = 500\nrate = \"600/min\"\n[classes.partner.tools.search]\nfree = true\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(s.contains("p class partner"), "{s}");
        assert!(s.contains("; class partner: limits burst 500 at"), "{s}");
        assert!(s.contains("search free"), "{s}");
    }

    #[test]
    fn summary_names_every_price() {
        let cfg = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[tools.default]\npow = 200000\n[tools.echo]\nfree = true\n[methods.\"resources/read\"]\npow = 80000\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(s.contains("http://127.0.0.1:3001/mcp"), "{s}");
        assert!(s.contains("echo free"), "{s}");
        assert!(s.contains("other tools pow 200000 (~25 ms)"), "{s}");
        assert!(s.contains("resources/read pow 80000 (~10 ms)"), "{s}");
        let shadow = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[tools.default]\npow = 200000\nmode = \"shadow\"\n",
            "t.toml",
        )
        .unwrap();
        let s2 = summary(&shadow);
        assert!(
            s2.contains("other tools pow 200000 (~25 ms) (shadow: not refused)"),
            "{s2}"
        );
        assert!(
            s.contains("limits per identity: tools burst 50 at 20/s, 16 in flight"),
            "{s}"
        );
        assert!(s.contains("store memory, fail closed"), "{s}");
        assert!(!s.contains("mpp"), "MPP is off without [lightning]: {s}");
        let cfg = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[tools.default]\nmpp = { sat = 10 }\n[lightning]\nbackend = \"dev\"\n[mpp]\nrealm = \"x.example\"\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(
            s.contains("other tools mpp 10 sat per call (lightning charge)"),
            "{s}"
        );
        assert!(
            s.contains("mpp: Payment scheme, lightning charge; realm \"x.example\""),
            "{s}"
        );
        let cfg = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\ndurable = \"postgres\"\npostgres_url = \"postgres://t@127.0.0.1/t\"\npostgres_schema = \"gw\"\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(
            s.contains("store redis + postgres (schema gw), fail closed"),
            "{s}"
        );
    }

    #[test]
    fn summary_names_mounts_and_the_merged_endpoint() {
        let cfg = config::parse(
            "[tools.echo]\npow = 20000\n[tools.\"ev/add\"]\nfree = true\n[[mount]]\npath = \"/spy/mcp\"\nname = \"spy\"\nupstream = { url = \"http://127.0.0.1:3001/mcp\" }\n[mount.tools.default]\npow = 1000\n[[mount]]\npath = \"/ev/mcp\"\nname = \"ev\"\nupstream = { command = [\"srv\"] }\n[merge]\npath = \"/all/mcp\"\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(s.starts_with("127.0.0.1:8402 (no [upstream]); mount spy /spy/mcp → http://127.0.0.1:3001/mcp; tools: other tools pow 1000"), "{s}");
        assert!(s.contains("; mount ev /ev/mcp → stdio `srv`; tools: other tools free; merged /all/mcp over spy, ev; tools: echo pow 20000"), "{s}");
        assert!(s.contains("ev/add free"), "{s}");
        assert!(s.contains("costs its mount's price, else free"), "{s}");
    }

    #[test]
    fn summary_names_limits() {
        let cfg = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[limits.tools.search]\nburst = 5\nrate = \"1/s\"\n[budgets]\ncalls_per_day = 1000\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(s.contains("search burst 5 at 1/s"), "{s}");
        assert!(s.contains("1000 calls a day"), "{s}");
        let off = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[limits]\nenabled = false\n",
            "t.toml",
        )
        .unwrap();
        assert!(summary(&off).ends_with("; limits off"), "{}", summary(&off));
    }

    #[test]
    fn summary_names_oauth() {
        let cfg = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[tools.deploy]\noauth = { scopes = [\"deploy:write\"] }\npow = 200000\n[tools.read]\noauth = true\n[oauth]\nissuer = \"https://auth.example.com\"\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(
            s.contains("deploy pow 200000 (~25 ms) or oauth scopes \"deploy:write\""),
            "{s}"
        );
        assert!(s.contains("read oauth (any valid token)"), "{s}");
        assert!(
            s.contains(
                "oauth: issuer https://auth.example.com, resource http://127.0.0.1:8402/mcp"
            ),
            "{s}"
        );
    }
}
