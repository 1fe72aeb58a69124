//! `turnpike check`: validate a configuration file and say what it prices.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use turnpike_gateway::config::{self, Config, ConfigError, PriceConfig};

/// Validate a configuration file.
///
/// Prints every problem with file:line:col, what is wrong and what to do about it, and exits
/// with status 1; on success prints one line saying what the configuration prices and exits 0.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  turnpike check --config turnpike.toml\n  turnpike check -c deploy/turnpike.toml && turnpike serve -c deploy/turnpike.toml\n\nExit status: 0 when the file is valid, 1 when it has problems."
)]
pub struct CheckArgs {
    /// The configuration file (TOML).
    #[arg(short, long, value_name = "FILE", env = "TURNPIKE_CONFIG")]
    pub config: PathBuf,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let name = args.config.display().to_string();
    let cfg = config::load(&args.config).and_then(|cfg| {
        cfg.validate().map(|()| cfg).map_err(|mut e| {
            e.file.clone_from(&name);
            e
        })
    });
    match cfg {
        Ok(cfg) => {
            // Warnings: on stderr, with line:col; the file is still valid.
            let src = std::fs::read_to_string(&args.config).unwrap_or_default();
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
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            report(&e);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints every problem, then a count, on stderr.
pub fn report(e: &ConfigError) {
    eprintln!("{e}");
    let n = e.problems.len();
    eprintln!(
        "{}: {n} problem{} found",
        e.file,
        if n == 1 { "" } else { "s" }
    );
}

/// One line: the upstream, then what each named tool, unnamed tools and priced methods cost.
pub fn summary(cfg: &Config) -> String {
    let upstream = match (&cfg.upstream.url, &cfg.upstream.command) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => format!("stdio `{}`", c.join(" ")),
        (None, None) => "no upstream".into(),
    };
    let rate = cfg.pow.reference_hashrate;
    let price = |p: &PriceConfig| {
        if p.free || (p.pow.is_none() && p.l402.is_none() && p.oauth.is_none()) {
            return "free".to_string();
        }
        let mut ways = Vec::new();
        if let Some(l) = p.l402 {
            ways.push(describe_l402(&l));
        }
        if let Some(effort) = p.pow {
            ways.push(format!("pow {effort} (~{})", seconds(effort, rate)));
        }
        if let Some(scopes) = &p.oauth {
            ways.push(if scopes.is_empty() {
                "oauth (any valid token)".to_string()
            } else {
                format!("oauth scopes \"{}\"", scopes.join(" "))
            });
        }
        ways.join(" or ")
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
    if let Some(o) = cfg.oauth_config() {
        out.push_str(&format!(
            "; oauth: issuer {}, resource {}{}",
            o.issuer,
            o.resource.as_deref().unwrap_or(""),
            if o.require_dpop {
                ", DPoP required"
            } else {
                ""
            }
        ));
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

/// Expected solve time on the reference core, rounded for people.
fn seconds(effort: u64, rate: u64) -> String {
    let s = effort as f64 / rate.max(1) as f64;
    if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.1} s")
    }
}

/// An L402 price for people: `l402 10 sat per call`, `l402 2000 msat a call from a 100000 msat
/// balance`, `l402 1000 msat for a 3600 s pass`.
pub fn describe_l402(p: &turnpike_gateway::config::L402Price) -> String {
    let amount = |m: u64| {
        if m % 1000 == 0 {
            format!("{} sat", m / 1000)
        } else {
            format!("{m} msat")
        }
    };
    match p.mode {
        turnpike_core::BillingMode::PerCall => format!("l402 {} per call", amount(p.msat)),
        turnpike_core::BillingMode::Balance => format!(
            "l402 {} a call from a {} balance",
            amount(p.msat),
            amount(p.bundle.max(p.msat))
        ),
        turnpike_core::BillingMode::TimePass if p.bundle > 0 => {
            format!("l402 {} for a {} s pass", amount(p.msat), p.bundle)
        }
        turnpike_core::BillingMode::TimePass => format!("l402 {} for a time pass", amount(p.msat)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_well() {
        assert_eq!(seconds(200_000, 20_000_000), "10 ms");
        assert_eq!(seconds(1, 20_000_000), "0 µs");
        assert_eq!(seconds(100_000_000, 20_000_000), "5.0 s");
    }

    #[test]
    fn summary_names_every_price() {
        let cfg = config::parse(
            "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n[tools.default]\npow = 200000\n[tools.echo]\nfree = true\n[methods.\"resources/read\"]\npow = 100000\n",
            "t.toml",
        )
        .unwrap();
        let s = summary(&cfg);
        assert!(s.contains("http://127.0.0.1:3001/mcp"), "{s}");
        assert!(s.contains("echo free"), "{s}");
        assert!(s.contains("other tools pow 200000 (~10 ms)"), "{s}");
        assert!(s.contains("resources/read pow 100000 (~5 ms)"), "{s}");
        assert!(
            s.contains("limits per identity: tools burst 50 at 20/s, 16 in flight"),
            "{s}"
        );
        assert!(s.contains("store memory, fail closed"), "{s}");
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
            s.contains("deploy pow 200000 (~10 ms) or oauth scopes \"deploy:write\""),
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
