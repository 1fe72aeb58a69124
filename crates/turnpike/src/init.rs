//! `turnpike init`: writes a commented configuration file.
//!
//! On a terminal it asks a few questions (upstream, rails, prices); with `--non-interactive`,
//! or when stdin is not a terminal, the flags and their defaults decide. The file it writes
//! passes `turnpike check` (it is parsed and validated before it is written).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

/// Write a commented turnpike.toml for an upstream.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  turnpike init                                   # answer a few questions\n  turnpike init --non-interactive --upstream http://127.0.0.1:3001/mcp --rails pow\n  turnpike init --non-interactive --upstream-cmd \"npx -y @modelcontextprotocol/server-everything\" \\\n      --rails pow,l402 --pow-effort 500000 --price-sat 5 --output deploy/turnpike.toml\n\nThen: turnpike check -c turnpike.toml && turnpike serve -c turnpike.toml"
)]
pub(crate) struct InitArgs {
    /// The upstream MCP server's Streamable HTTP URL.
    #[arg(long, value_name = "URL", conflicts_with = "upstream_cmd")]
    pub(crate) upstream: Option<String>,
    /// A stdio MCP server to launch instead: the program and its arguments in one string.
    #[arg(long, value_name = "\"CMD ARGS…\"")]
    pub(crate) upstream_cmd: Option<String>,
    /// The rails tools are paid with, comma-separated: pow, l402, mpp, x402, oauth, agent.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) rails: Option<Vec<String>>,
    /// Proof-of-work price of a tool call, in expected hashes (200000 ≈ 25 ms on one thread of
    /// the reference solver, 8,000,000 hashes/s).
    #[arg(long, value_name = "N")]
    pub(crate) pow_effort: Option<u64>,
    /// L402 (and MPP) price of a tool call, in satoshis.
    #[arg(long, value_name = "SATS")]
    pub(crate) price_sat: Option<u64>,
    /// The Lightning backend for L402 and MPP: dev (the default: a stand-in node inside the gateway, so
    /// that the file serves at once; never in production), lnd, cln, phoenixd, lnbits or nwc (their
    /// credential paths are written as placeholders to edit: `turnpike check` refuses the file
    /// until they point at real files).
    #[arg(long, value_name = "BACKEND")]
    pub(crate) lightning: Option<String>,
    /// The OAuth authorization server's issuer URL (with --rails oauth).
    #[arg(long, value_name = "URL")]
    pub(crate) oauth_issuer: Option<String>,
    /// The key directory URL of the verified agents accepted (with --rails agent).
    #[arg(long, value_name = "URL")]
    pub(crate) agent_directory: Option<String>,
    /// The address x402 payments go to (with --rails x402): `0x` and 40 hex digits.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) x402_pay_to: Option<String>,
    /// Address the gateway listens on.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Leave out the [admin] table (metrics, admin API and dashboard).
    #[arg(long)]
    pub(crate) no_admin: bool,
    /// Where to write the file (`-`: standard output).
    #[arg(short, long, value_name = "FILE", default_value = "turnpike.toml")]
    pub(crate) output: PathBuf,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Ask nothing: take the flags and the defaults.
    #[arg(long)]
    pub(crate) non_interactive: bool,
}

/// What the file is made from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answers {
    pub(crate) listen: String,
    pub(crate) upstream_url: Option<String>,
    pub(crate) upstream_cmd: Option<Vec<String>>,
    pub(crate) pow: Option<u64>,
    pub(crate) l402_sat: Option<u64>,
    pub(crate) mpp_sat: Option<u64>,
    pub(crate) lightning: String,
    pub(crate) oauth_issuer: Option<String>,
    pub(crate) agent_directory: Option<String>,
    /// With the x402 rail: who is paid.
    pub(crate) x402_pay_to: Option<String>,
    pub(crate) admin: bool,
}

const DEFAULT_EFFORT: u64 = 200_000;
const ADMIN_ENV: &str = "TURNPIKE_ADMIN_TOKEN";
const DEFAULT_SAT: u64 = 10;
const BACKENDS: [&str; 6] = ["lnd", "cln", "phoenixd", "lnbits", "nwc", "dev"];

pub(crate) fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    let answers = if interactive {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut out = std::io::stderr();
        ask(&args, &mut input, &mut out)?
    } else {
        from_flags(&args)?
    };
    let text = render(&answers);
    // What is written must pass `turnpike check`.
    let cfg = turnpike_gateway::config::parse(&text, "turnpike.toml")
        .and_then(|c| c.validate().map(|()| c));
    if let Err(e) = cfg {
        bail!("the generated configuration does not pass its own check:\n{e}");
    }
    if args.output.as_os_str() == "-" {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.output.exists() && !args.force {
        bail!(
            "{} exists; give --force to overwrite it, or --output another file",
            args.output.display()
        );
    }
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.output, &text)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "wrote {} — next: turnpike check -c {0} && turnpike serve -c {0}",
        args.output.display()
    );
    if answers.l402_sat.is_some() {
        if answers.lightning == "dev" {
            eprintln!("L402 invoices come from the dev backend (a stand-in node, never in production): the [lightning] comment shows how to switch to a real node");
        } else {
            eprintln!(
                "edit [lightning] in {}: its url and credential paths are placeholders, and `turnpike check` refuses the file until they point at readable files",
                args.output.display()
            );
        }
    }
    if answers.admin && std::env::var(ADMIN_ENV).is_err() {
        eprintln!("the [admin] table is commented out: set {ADMIN_ENV} and uncomment it for the dashboard");
    }
    Ok(ExitCode::SUCCESS)
}

/// The answers from the flags alone (defaults: proof-of-work at 200000 when no rail is named).
pub(crate) fn from_flags(a: &InitArgs) -> anyhow::Result<Answers> {
    let (upstream_url, upstream_cmd) = match (&a.upstream, &a.upstream_cmd) {
        (Some(u), _) => (Some(u.clone()), None),
        (None, Some(c)) => {
            let words = crate::serve::split_command(c)?;
            if words.is_empty() {
                bail!("--upstream-cmd is empty");
            }
            (None, Some(words))
        }
        (None, None) => bail!("give --upstream URL or --upstream-cmd \"CMD ARGS\""),
    };
    let rails = a.rails.clone().unwrap_or_else(|| vec!["pow".into()]);
    let mut ans = Answers {
        listen: a.listen.clone().unwrap_or_else(|| "127.0.0.1:8402".into()),
        upstream_url,
        upstream_cmd,
        pow: None,
        l402_sat: None,
        mpp_sat: None,
        lightning: a.lightning.clone().unwrap_or_else(|| "dev".into()),
        oauth_issuer: None,
        agent_directory: None,
        x402_pay_to: None,
        admin: !a.no_admin,
    };
    for r in &rails {
        match r.trim() {
            "pow" => ans.pow = Some(a.pow_effort.unwrap_or(DEFAULT_EFFORT)),
            "l402" => ans.l402_sat = Some(a.price_sat.unwrap_or(DEFAULT_SAT)),
            "mpp" => ans.mpp_sat = Some(a.price_sat.unwrap_or(DEFAULT_SAT)),
            "x402" => {
                ans.x402_pay_to = Some(a.x402_pay_to.clone().ok_or_else(|| {
                    anyhow::anyhow!("--rails x402 needs --x402-pay-to 0x… (who is paid)")
                })?)
            }
            "oauth" => {
                ans.oauth_issuer = Some(a.oauth_issuer.clone().ok_or_else(|| {
                    anyhow::anyhow!("--rails oauth needs --oauth-issuer https://…")
                })?)
            }
            "agent" => {
                ans.agent_directory = Some(a.agent_directory.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "--rails agent needs --agent-directory https://…/.well-known/http-message-signatures-directory"
                    )
                })?)
            }
            "" => {}
            other => {
                let names = rail_names();
                let (last, rest) = names.split_last().unwrap_or((&"", &[]));
                bail!(
                    "unknown rail {other:?}: the rails are {} and {last}",
                    rest.join(", ")
                )
            }
        }
    }
    if !BACKENDS.contains(&ans.lightning.as_str()) {
        bail!(
            "unknown Lightning backend {:?}: one of {}",
            ans.lightning,
            BACKENDS.join(", ")
        );
    }
    Ok(ans)
}

/// The names of the rails registered with the gateway, those always on first (`pow`, `l402`,
/// `oauth`).
fn rail_names() -> Vec<&'static str> {
    turnpike_conf::always_on_first(turnpike_gateway::registry::RAIL_CONFS)
        .iter()
        .map(|r| r.id().as_str())
        .collect()
}

fn prompt(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    question: &str,
    default: &str,
) -> anyhow::Result<String> {
    if default.is_empty() {
        write!(out, "{question}: ")?;
    } else {
        write!(out, "{question} [{default}]: ")?;
    }
    out.flush()?;
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        bail!("no answer (end of input)");
    }
    let line = line.trim();
    Ok(if line.is_empty() {
        default.to_owned()
    } else {
        line.to_owned()
    })
}

/// Asks the questions the flags did not answer.
pub(crate) fn ask(
    a: &InitArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<Answers> {
    writeln!(
        out,
        "turnpike init: a few questions (Enter takes the default)."
    )?;
    let upstream = match (&a.upstream, &a.upstream_cmd) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.clone(),
        (None, None) => loop {
            let v = prompt(
                input,
                out,
                "Upstream MCP server: its URL, or the command that starts a stdio server",
                "http://127.0.0.1:3001/mcp",
            )?;
            if !v.is_empty() {
                break v;
            }
        },
    };
    let is_url = upstream.starts_with("http://") || upstream.starts_with("https://");
    let mut flags = InitArgs {
        upstream: is_url.then(|| upstream.clone()),
        upstream_cmd: (!is_url).then(|| upstream.clone()),
        rails: a.rails.clone(),
        pow_effort: a.pow_effort,
        price_sat: a.price_sat,
        lightning: a.lightning.clone(),
        oauth_issuer: a.oauth_issuer.clone(),
        agent_directory: a.agent_directory.clone(),
        x402_pay_to: a.x402_pay_to.clone(),
        listen: a.listen.clone(),
        no_admin: a.no_admin,
        output: a.output.clone(),
        force: a.force,
        non_interactive: true,
    };
    if flags.rails.is_none() {
        let r = prompt(
            input,
            out,
            &format!(
                "Rails that pay for tool calls ({}; comma-separated)",
                rail_names().join(", ")
            ),
            "pow",
        )?;
        flags.rails = Some(r.split(',').map(|s| s.trim().to_owned()).collect());
    }
    let rails = flags.rails.clone().unwrap_or_default();
    let has = |r: &str| rails.iter().any(|x| x == r);
    if has("pow") && flags.pow_effort.is_none() {
        let v = prompt(
            input,
            out,
            "Proof-of-work price per call, in expected hashes (200000 ≈ 25 ms on one thread of the reference solver)",
            &DEFAULT_EFFORT.to_string(),
        )?;
        flags.pow_effort = Some(v.parse().context("the effort is a whole number")?);
    }
    if has("l402") || has("mpp") {
        if flags.price_sat.is_none() {
            let v = prompt(
                input,
                out,
                "Lightning price per call, in satoshis",
                &DEFAULT_SAT.to_string(),
            )?;
            flags.price_sat = Some(v.parse().context("the price is a whole number")?);
        }
        if flags.lightning.is_none() {
            flags.lightning = Some(prompt(
                input,
                out,
                "Lightning backend (dev: a stand-in to try it out; lnd, cln, phoenixd, lnbits, nwc: a real node)",
                "dev",
            )?);
        }
    }
    if has("x402") && flags.x402_pay_to.is_none() {
        flags.x402_pay_to = Some(prompt(
            input,
            out,
            "x402: the address payments go to (0x and 40 hex digits)",
            "",
        )?);
    }
    if has("oauth") && flags.oauth_issuer.is_none() {
        flags.oauth_issuer = Some(prompt(
            input,
            out,
            "OAuth issuer URL (exactly as in the tokens' iss)",
            "",
        )?);
    }
    if has("agent") && flags.agent_directory.is_none() {
        flags.agent_directory = Some(prompt(
            input,
            out,
            "Key directory URL of the verified agents to let through (https://…/.well-known/http-message-signatures-directory)",
            "",
        )?);
    }
    from_flags(&flags)
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The configuration file, commented.
pub(crate) fn render(a: &Answers) -> String {
    let mut s = String::new();
    s.push_str("# turnpike configuration, written by `turnpike init`.\n");
    s.push_str(
        "# Check it with `turnpike check -c <file>`; run with `turnpike serve -c <file>`.\n",
    );
    s.push_str("# A running gateway reloads it on SIGHUP and when the file changes.\n\n");
    s.push_str("[server]\n");
    s.push_str(&format!(
        "listen = {}              # where MCP clients connect\n",
        toml_str(&a.listen)
    ));
    s.push_str("path = \"/mcp\"                    # the endpoint path\n");
    s.push_str(
        "# allowed_hosts = [\"localhost\", \"127.0.0.1\", \"[::1]\"]   # Host values accepted\n",
    );
    s.push_str(
        "# public_url = \"https://mcp.example.com/mcp\"   # how callers reach it, behind a proxy\n",
    );
    s.push_str(
        "challenge_mode = \"auto\"          # auto | http (402) | in-band (a tool result)\n",
    );
    s.push_str("data_dir = \"turnpike-data\"       # keys and the L402 ledger live here (0600)\n");
    s.push_str("shutdown_timeout_secs = 10       # on SIGTERM, in-flight calls get this long\n\n");
    s.push_str("[upstream]                       # the MCP server behind the gateway\n");
    match (&a.upstream_url, &a.upstream_cmd) {
        (Some(u), _) => s.push_str(&format!("url = {}\n\n", toml_str(u))),
        (None, Some(c)) => {
            let words: Vec<String> = c.iter().map(|w| toml_str(w)).collect();
            s.push_str(&format!(
                "command = [{}]   # one child per MCP session\n\n",
                words.join(", ")
            ));
        }
        (None, None) => {}
    }
    s.push_str("# Prices. [tools.default] prices every tool not named; several rails = the caller chooses.\n");
    s.push_str("[tools.default]\n");
    if a.pow.is_none()
        && a.l402_sat.is_none()
        && a.mpp_sat.is_none()
        && a.x402_pay_to.is_none()
        && a.oauth_issuer.is_none()
        && a.agent_directory.is_none()
    {
        s.push_str("free = true\n");
    }
    if let Some(e) = a.pow {
        s.push_str(&format!(
            "pow = {e}                     # proof-of-work: expected hashes per call (~{} on one\n",
            turnpike_pow::conf::expected_time(e, turnpike_pow::config::DEFAULT_REFERENCE_HASHRATE)
        ));
        s.push_str("                                 # thread of the reference solver, [pow] reference_hashrate =\n");
        s.push_str("                                 # 8000000 hashes/s; `turnpike check --measure-hashrate` measures\n");
        s.push_str("                                 # this machine)\n");
    }
    if let Some(sat) = a.l402_sat {
        s.push_str(&format!(
            "l402 = {{ sat = {sat} }}              # Lightning: satoshis per call (mode = \"balance\" | \"time_pass\" to bundle)\n"
        ));
    }
    if let Some(sat) = a.mpp_sat {
        s.push_str(&format!(
            "mpp = {{ sat = {sat} }}              # the Payment scheme (MPP), Lightning charge: satoshis per call\n"
        ));
    }
    if a.x402_pay_to.is_some() {
        s.push_str("x402 = { amount = \"10000\" }      # x402 exact: atomic units of [x402] asset (0.01 USDC)\n");
    }
    if a.oauth_issuer.is_some() {
        s.push_str("oauth = true                     # any valid access token for this resource\n");
    }
    if a.agent_directory.is_some() {
        s.push_str("agent = true                     # verified agents (Web Bot Auth) of [agent] pass free\n");
    }
    s.push_str("\n# A tool that costs nothing:\n# [tools.echo]\n# free = true\n\n");
    if a.l402_sat.is_some() || a.mpp_sat.is_some() {
        s.push_str("[lightning]                      # the node that creates invoices\n");
        match a.lightning.as_str() {
            "dev" => {
                s.push_str("backend = \"dev\"                  # a stand-in node inside the gateway that settles its own\n");
                s.push_str("                                 # invoices, for trying the rail: NEVER in production.\n");
                s.push_str("# For a real node, replace the line above, e.g. with LND (docs/L402.md lists the others):\n");
                s.push_str("# backend = \"lnd\"\n");
                s.push_str("# url = \"https://127.0.0.1:8080\"                        # LND's REST address\n");
                s.push_str("# macaroon_path = \"/var/lib/lnd/invoice.macaroon\"      # an invoice macaroon is enough\n");
                s.push_str("# tls_cert_path = \"/var/lib/lnd/tls.cert\"              # pins the node's certificate\n");
                s.push_str("# `turnpike check` then refuses the file until these paths point at readable files.\n");
            }
            "cln" => {
                s.push_str("backend = \"cln\"\nurl = \"https://127.0.0.1:3010\"\nrune_path = \"/etc/turnpike/cln.rune\"   # or rune_env = \"VAR\"\n");
            }
            "phoenixd" => {
                s.push_str("backend = \"phoenixd\"\nurl = \"http://127.0.0.1:9740\"\npassword_path = \"/etc/turnpike/phoenixd.password\"   # or password_env = \"VAR\"\n");
            }
            "nwc" => {
                s.push_str("backend = \"nwc\"                  # Nostr Wallet Connect (NIP-47)\nuri_path = \"/etc/turnpike/nwc.uri\"   # the nostr+walletconnect:// URI; or uri_env = \"VAR\"\n");
            }
            "lnbits" => {
                s.push_str("backend = \"lnbits\"\nurl = \"https://lnbits.example.com\"\napi_key_path = \"/etc/turnpike/lnbits.key\"   # the invoice key; or api_key_env = \"VAR\"\n");
            }
            _ => {
                s.push_str(
                    "backend = \"lnd\"\nurl = \"https://127.0.0.1:8080\"   # LND's REST address\n",
                );
                s.push_str("macaroon_path = \"/var/lib/lnd/invoice.macaroon\"   # an invoice macaroon is enough\n");
            }
        }
        s.push('\n');
    }
    if let Some(pay_to) = &a.x402_pay_to {
        s.push_str("[x402]                           # x402 exact on an EVM chain (docs/X402.md): USDC on Base\n");
        s.push_str("network = \"eip155:8453\"          # CAIP-2 eip155:<chainId>\n");
        s.push_str("rpc_url = \"https://mainnet.base.org\"   # a JSON-RPC node of that chain (use your own)\n");
        s.push_str(
            "asset = \"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913\"   # the EIP-3009 token\n",
        );
        s.push_str("asset_name = \"USD Coin\"          # its EIP-712 domain name\n");
        s.push_str("asset_version = \"2\"              # and version\n");
        s.push_str(&format!("pay_to = {}\n", toml_str(pay_to)));
        s.push_str("settle_key_env = \"X402_SETTLE_KEY\"   # the settling account's key (it pays the gas),\n");
        s.push_str("                                 # or facilitator_url = \"https://…\"\n\n");
    }
    if let Some(iss) = &a.oauth_issuer {
        s.push_str(
            "[oauth]                          # the authorization server whose tokens pass\n",
        );
        s.push_str(&format!("issuer = {}\n\n", toml_str(iss)));
    }
    if let Some(dir) = &a.agent_directory {
        s.push_str(
            "[agent]                          # verified agents: the key directories accepted\n",
        );
        s.push_str(&format!("directories = [{}]\n\n", toml_str(dir)));
    }
    s.push_str("[limits]                         # per-caller rate limits (docs/LIMITS.md); on by default\n");
    s.push_str("enabled = true\n\n");
    if a.admin {
        // Active only when the token's variable is set now: a [admin] table whose token_env is
        // unset does not pass `turnpike check`.
        let on = std::env::var(ADMIN_ENV).is_ok_and(|v| v.trim().chars().count() >= 16);
        let c = if on { "" } else { "# " };
        if !on {
            s.push_str(
                "# Set TURNPIKE_ADMIN_TOKEN (16+ characters, e.g. `openssl rand -hex 24`) and\n",
            );
            s.push_str(
                "# uncomment these lines to turn on /metrics, the admin API and the dashboard.\n",
            );
        }
        s.push_str(&format!(
            "{c}[admin]                          # /metrics, the admin API and the dashboard\n"
        ));
        s.push_str(&format!(
            "{c}listen = \"127.0.0.1:8403\"        # keep it on loopback or a private network\n"
        ));
        s.push_str(&format!(
            "{c}token_env = \"{ADMIN_ENV}\"   # the admin token comes from this variable\n"
        ));
        s.push_str(&format!(
            "{c}metrics_public = true            # /metrics without the token\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> InitArgs {
        InitArgs {
            upstream: Some("http://127.0.0.1:3001/mcp".into()),
            upstream_cmd: None,
            rails: None,
            pow_effort: None,
            price_sat: None,
            lightning: None,
            oauth_issuer: None,
            agent_directory: None,
            x402_pay_to: None,
            listen: None,
            no_admin: true,
            output: "-".into(),
            force: false,
            non_interactive: true,
        }
    }

    fn check(text: &str) -> turnpike_gateway::Config {
        match turnpike_gateway::config::parse(text, "t.toml").and_then(|c| c.validate().map(|()| c))
        {
            Ok(c) => c,
            Err(e) => panic!("{e}\n---\n{text}"),
        }
    }

    #[test]
    fn every_rail_combination_passes_check() {
        for rails in [
            vec!["pow"],
            vec!["l402"],
            vec!["oauth"],
            vec!["pow", "l402"],
            vec!["pow", "l402", "oauth"],
        ] {
            for backend in BACKENDS {
                let mut a = args();
                a.rails = Some(rails.iter().map(|s| s.to_string()).collect());
                a.oauth_issuer = Some("https://auth.example.com".into());
                a.agent_directory = Some(
                    "https://agent.example/.well-known/http-message-signatures-directory".into(),
                );
                a.x402_pay_to = Some("0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into());
                a.lightning = Some(backend.into());
                let cfg = check(&render(&from_flags(&a).unwrap()));
                let p = &cfg.tools["default"];
                assert_eq!(
                    p.offer(turnpike_pow::RAIL).is_some(),
                    rails.contains(&"pow")
                );
                assert_eq!(
                    p.offer(turnpike_l402::RAIL).is_some(),
                    rails.contains(&"l402")
                );
                let oauth = p.offers.iter().any(|o| o.rail().as_str() == "oauth");
                assert_eq!(oauth, rails.contains(&"oauth"));
            }
        }
    }

    /// The file `init` writes is held to the rails' own definitions: every rail registered with
    /// the gateway can be chosen, and choosing it writes what turns it on and its price.
    #[test]
    fn every_registered_rail_is_written_as_its_definition_reads_it() {
        assert_eq!(
            rail_names(),
            ["pow", "l402", "mpp", "x402", "oauth", "agent"]
        );
        for conf in turnpike_gateway::registry::RAIL_CONFS {
            for backend in BACKENDS {
                let mut a = args();
                a.rails = Some(vec![conf.id().as_str().to_owned()]);
                a.oauth_issuer = Some("https://auth.example.com".into());
                a.agent_directory = Some(
                    "https://agent.example/.well-known/http-message-signatures-directory".into(),
                );
                a.x402_pay_to = Some("0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into());
                a.lightning = Some(backend.into());
                let cfg = check(&render(&from_flags(&a).unwrap()));
                assert!(conf.is_on(&cfg.rails), "{} is off", conf.id());
                assert!(cfg.tools["default"].offer(conf.id()).is_some());
            }
        }
        let mut a = args();
        a.rails = Some(vec!["gold".into()]);
        let e = from_flags(&a).unwrap_err().to_string();
        assert!(
            e.ends_with("the rails are pow, l402, mpp, x402, oauth and agent"),
            "{e}"
        );
    }

    #[test]
    fn a_stdio_upstream_and_prices() {
        let mut a = args();
        a.upstream = None;
        a.upstream_cmd = Some("npx -y \"@scope/server x\"".into());
        a.rails = Some(vec!["pow".into(), "l402".into()]);
        a.pow_effort = Some(12345);
        a.price_sat = Some(7);
        let cfg = check(&render(&from_flags(&a).unwrap()));
        assert_eq!(
            cfg.upstream.command,
            Some(vec!["npx".into(), "-y".into(), "@scope/server x".into()])
        );
        let p = &cfg.tools["default"];
        let effort = p.offer(turnpike_pow::RAIL).and_then(turnpike_pow::effort);
        assert_eq!(effort, Some(12345));
        let l402 = p.offer(turnpike_l402::RAIL).and_then(turnpike_l402::terms);
        assert_eq!(l402.unwrap().msat, 7000);
    }

    #[test]
    fn questions_fill_what_flags_leave_out() {
        let mut a = args();
        a.upstream = None;
        let mut input: &[u8] = b"http://127.0.0.1:9/mcp\npow,l402\n500000\n3\ndev\n";
        let mut out = Vec::new();
        let ans = ask(&a, &mut input, &mut out).unwrap();
        assert_eq!(ans.upstream_url.as_deref(), Some("http://127.0.0.1:9/mcp"));
        assert_eq!(ans.pow, Some(500000));
        assert_eq!(ans.l402_sat, Some(3));
        assert_eq!(ans.lightning, "dev");
        check(&render(&ans));
        let asked = String::from_utf8(out).unwrap();
        assert!(asked.contains("Rails that pay"), "{asked}");
    }

    #[test]
    fn unknown_rails_and_missing_upstream_are_refused() {
        let mut a = args();
        a.rails = Some(vec!["gold".into()]);
        assert!(from_flags(&a).is_err());
        let mut a = args();
        a.upstream = None;
        assert!(from_flags(&a).is_err());
        let mut a = args();
        a.rails = Some(vec!["oauth".into()]);
        assert!(from_flags(&a).is_err());
    }

    #[test]
    fn the_admin_table_reads_its_token_from_the_environment() {
        let mut a = args();
        a.no_admin = false;
        let text = render(&from_flags(&a).unwrap());
        assert!(text.contains("token_env = \"TURNPIKE_ADMIN_TOKEN\""));
        check(&text);
    }
}
