//! `turnpike token`: inspect, mint and revoke L402 tokens by hand.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};
use turnpike_core::credential::{parse_auth_params, split_scheme};
use turnpike_gateway::config::{self, Config};
use turnpike_l402::caveat::{self, mode_str};
use turnpike_l402::store::TokenRecord;
use turnpike_l402::{BillingMode, L402Credential};
use turnpike_l402::{Identifier, Limits, Macaroon, StoreConfig};

/// Inspect, mint or revoke L402 tokens (macaroons).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  turnpike token inspect 'L402 AgEIdHVy…:9f2c…'            # decode a credential\n  turnpike token inspect AgEIdHVy… --config turnpike.toml   # … and look it up in the store\n  turnpike token mint --tool search --sat 10 --config turnpike.toml\n  turnpike token mint --tool report --msat 2000 --mode balance --bundle 100000 -c turnpike.toml\n  turnpike token revoke 3f5a…(64 hex digits) --config turnpike.toml"
)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    pub(crate) command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Decode a macaroon or an L402 credential: identifier fields, caveats, signature; with
    /// --config also check it against the gateway's store (root key, signature, record,
    /// balance, payment, ledger).
    ///
    /// Accepts a bare macaroon (standard or URL-safe base64), `<macaroon>:<preimage hex>`, an
    /// `Authorization` value (`L402 <macaroon>:<preimage>`, `LSAT …`), or a `WWW-Authenticate`
    /// challenge (`L402 macaroon="…", invoice="…"`).
    Inspect {
        /// The credential (use `-` to read it from stdin).
        credential: String,
        /// The gateway's configuration, to check the token against its store.
        #[arg(short, long, value_name = "FILE", env = "TURNPIKE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Mint a token by hand, WITHOUT any payment: for operators granting credit (a customer who
    /// paid another way, a partner, a test). Its root key is derived from the store's master
    /// secret like a sold one's; balance and time-pass tokens are recorded as paid now (the
    /// balance opens), a per-call token is recorded by the one call it pays for.
    Mint {
        /// The tool the token pays for (per_call and time_pass tokens are bound to it).
        #[arg(long, value_name = "NAME")]
        tool: String,
        /// Price of one call in millisatoshis.
        #[arg(
            long,
            value_name = "N",
            conflicts_with = "sat",
            required_unless_present = "sat"
        )]
        msat: Option<u64>,
        /// Price of one call in satoshis.
        #[arg(long, value_name = "N")]
        sat: Option<u64>,
        /// Billing mode.
        #[arg(long, value_enum, default_value_t = Mode::PerCall)]
        mode: Mode,
        /// Balance: credit granted, in the price's unit (default one call); time_pass: seconds
        /// (default [l402] pass_secs).
        #[arg(long, value_name = "N")]
        bundle: Option<u64>,
        /// The gateway's configuration (its [l402] store receives the token).
        #[arg(short, long, value_name = "FILE", env = "TURNPIKE_CONFIG")]
        config: PathBuf,
    },
    /// Revoke a token in the store the configuration names (SQLite or PostgreSQL; the gateway
    /// need not run): it expires now and gets a `revocation` ledger row, so every later use is
    /// refused (402, "token expired"). A token id the store has never seen gets such a row too,
    /// and is refused when it first comes. The admin API's `POST /admin/api/tokens/<id>/revoke`
    /// does the same through a running gateway (also with a memory store).
    Revoke {
        /// The token id (64 hex digits, as `inspect` shows it).
        token_id: String,
        /// The gateway's configuration (its [l402] store).
        #[arg(short, long, value_name = "FILE", env = "TURNPIKE_CONFIG")]
        config: PathBuf,
    },
}

/// Billing modes, spelled as in the config file's `mode = "…"` (the hyphenated spellings are
/// accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    #[value(name = "per_call", alias = "per-call")]
    PerCall,
    Balance,
    #[value(name = "time_pass", alias = "time-pass")]
    TimePass,
}

impl From<Mode> for BillingMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::PerCall => BillingMode::PerCall,
            Mode::Balance => BillingMode::Balance,
            Mode::TimePass => BillingMode::TimePass,
        }
    }
}

pub(crate) fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let rt = crate::runtime()?;
    match args.command {
        TokenCommand::Inspect { credential, config } => rt.block_on(inspect(credential, config)),
        TokenCommand::Mint {
            tool,
            msat,
            sat,
            mode,
            bundle,
            config,
        } => {
            let unit = if sat.is_some() { 1000 } else { 1 };
            let msat = match (msat, sat) {
                (Some(m), _) => m,
                (None, Some(s)) => s.checked_mul(1000).context("--sat is too large")?,
                (None, None) => bail!("give --msat or --sat"),
            };
            let bundle = bundle
                .map(|b| match mode {
                    Mode::Balance => b.checked_mul(unit).context("--bundle is too large"),
                    _ => Ok(b),
                })
                .transpose()?;
            rt.block_on(mint(tool, msat, mode.into(), bundle, config))
        }
        TokenCommand::Revoke { token_id, config } => rt.block_on(revoke(&token_id, &config)),
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    match config::load(path) {
        Ok(c) => Ok(c),
        Err(e) => {
            crate::check::report(&e);
            bail!("the configuration has problems")
        }
    }
}

/// The macaroon bytes and the preimage (if given) in any accepted form.
fn parse_input(s: &str) -> anyhow::Result<(Vec<u8>, Option<Vec<u8>>)> {
    let s = s.trim();
    let s = s
        .strip_prefix("Authorization:")
        .or_else(|| s.strip_prefix("authorization:"))
        .or_else(|| s.strip_prefix("WWW-Authenticate:"))
        .or_else(|| s.strip_prefix("www-authenticate:"))
        .unwrap_or(s)
        .trim();
    let (scheme, params) = split_scheme(s);
    if scheme.eq_ignore_ascii_case("L402") || scheme.eq_ignore_ascii_case("LSAT") {
        // A challenge: macaroon="…", invoice="…" (no preimage).
        if let Some(pairs) = parse_auth_params(params) {
            if pairs.iter().any(|(k, _)| k == "invoice") {
                if let Some((_, m)) = pairs.iter().find(|(k, _)| k == "macaroon") {
                    return Ok((decode_mac(m)?, None));
                }
            }
        }
        match turnpike_l402::parse_authorization(scheme, params) {
            Some(Ok(c)) => match c.payload::<L402Credential>() {
                Some(L402Credential { macaroon, preimage }) => {
                    return Ok((macaroon.clone(), Some(preimage.clone())))
                }
                None => bail!("not an L402 credential"),
            },
            Some(Err(e)) => bail!("{e}"),
            _ => bail!("not an L402 credential"),
        }
    }
    match s.rsplit_once(':') {
        Some((m, p)) => {
            let mut pre = [0u8; 32];
            hex::decode_to_slice(p.trim(), &mut pre)
                .context("the part after ':' must be a 64-hex-digit preimage")?;
            Ok((decode_mac(m)?, Some(pre.to_vec())))
        }
        None => Ok((decode_mac(s)?, None)),
    }
}

fn decode_mac(s: &str) -> anyhow::Result<Vec<u8>> {
    let limits = Limits::default();
    turnpike_l402::macaroon::decode_base64(s.trim(), limits.max_bytes)
        .map_err(|e| anyhow::anyhow!("the macaroon is not base64: {e}"))
}

async fn inspect(credential: String, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let credential = if credential == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        credential
    };
    let (raw, preimage) = parse_input(&credential)?;
    let mac = Macaroon::decode(&raw, Limits::default()).context("decoding the macaroon")?;
    println!("macaroon      V2, {} bytes", raw.len());
    println!("location      {}", mac.location());
    let id = match Identifier::decode(mac.identifier()) {
        Ok(id) => {
            println!("identifier    L402 version 0");
            println!("payment hash  {}", hex::encode(id.payment_hash));
            println!("token id      {}", id.token_id_hex());
            Some(id)
        }
        Err(e) => {
            println!("identifier    not an L402 identifier ({e})");
            None
        }
    };
    println!("caveats       {}", mac.caveats().len());
    for c in mac.caveats() {
        if c.is_first_party() {
            println!("  - {}", String::from_utf8_lossy(&c.id));
        } else {
            println!("  - (third-party caveat, never accepted here)");
        }
    }
    if let Some(exp) = mac.caveats().iter().find_map(|c| {
        std::str::from_utf8(&c.id)
            .ok()?
            .strip_prefix(&format!("{}=", caveat::EXPIRES))?
            .parse::<u64>()
            .ok()
    }) {
        let n = turnpike_core::unix_now();
        if exp > n {
            println!("expires       in {} s", exp - n);
        } else {
            println!("expires       EXPIRED {} s ago", n - exp);
        }
    }
    println!("signature     {}", hex::encode(mac.signature()));
    let mut ok = true;
    if let (Some(pre), Some(id)) = (&preimage, &id) {
        let h: [u8; 32] = Sha256::digest(pre).into();
        let good = turnpike_core::ct_eq(&h, &id.payment_hash);
        ok &= good;
        println!(
            "preimage      {}",
            if good {
                "matches the payment hash"
            } else {
                "DOES NOT match the payment hash"
            }
        );
    }
    if let (Some(path), Some(id)) = (config, &id) {
        let cfg = load(&path)?;
        if l402(&cfg).store == StoreConfig::Memory {
            bail!("[l402] store is \"memory\": there is nothing to look up outside the gateway");
        }
        let store = turnpike_gateway::rails::with_build(&cfg, turnpike_l402::conf::open_store)?;
        println!("store         {}", store_name(&cfg));
        let master = store.master_key().await?;
        if mac.verify_signature(&turnpike_l402::derive_root_key(&master, &id.token_id)[..]) {
            println!("root key      derived from the store's master secret; signature verifies");
        } else {
            match store.root_key(id.token_id).await? {
                None => {
                    ok = false;
                    println!("root key      signature DOES NOT verify (not minted here)");
                }
                Some(k) => {
                    let good = mac.verify_signature(&k[..]);
                    ok &= good;
                    println!(
                        "root key      stored (an older token); signature {}",
                        if good { "verifies" } else { "DOES NOT verify" }
                    );
                }
            }
        }
        let record = store.token(id.token_id).await?;
        if record.is_none() {
            println!("record        none yet: a token is recorded when its payment is first seen");
        }
        if let Some(r) = record {
            println!(
                "record        mode {}, invoice {} msat, expires {}, created {}",
                mode_str(r.mode),
                r.amount_msat,
                r.expires_at,
                r.created_at
            );
            match r.paid_at {
                Some(t) if r.mode == BillingMode::PerCall => {
                    println!("payment       confirmed at {t}; per-call token SPENT")
                }
                Some(t) => println!("payment       confirmed at {t}"),
                None => println!("payment       not confirmed yet (never used)"),
            }
            if r.payment_hash != id.payment_hash {
                ok = false;
                println!("              RECORD'S PAYMENT HASH DIFFERS from the macaroon's");
            }
        }
        if let Some((credit, spent)) = store.balance(id.token_id).await? {
            println!(
                "balance       {} msat left of {credit} (spent {spent})",
                credit.saturating_sub(spent)
            );
        }
        for e in store.entries(id.token_id).await? {
            println!(
                "ledger        #{} at {} {} {} msat{}",
                e.id,
                e.at,
                e.kind.as_str(),
                e.amount_msat,
                e.reference.map(|r| format!(" ({r})")).unwrap_or_default()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `[l402]` of the configuration (its defaults when the file leaves it out).
fn l402(cfg: &Config) -> turnpike_l402::conf::L402Section {
    turnpike_l402::conf::section(&cfg.rails)
}

fn store_name(cfg: &Config) -> String {
    match &l402(cfg).store {
        StoreConfig::Memory => "memory".into(),
        StoreConfig::Sqlite { path, .. } => {
            if path.is_absolute() {
                path.display().to_string()
            } else {
                cfg.server.data_dir.join(path).display().to_string()
            }
        }
    }
}

async fn mint(
    tool: String,
    msat: u64,
    mode: BillingMode,
    bundle: Option<u64>,
    path: PathBuf,
) -> anyhow::Result<ExitCode> {
    if msat == 0 {
        bail!("the price must be at least 1 msat");
    }
    let cfg = load(&path)?;
    if l402(&cfg).store == StoreConfig::Memory {
        bail!("[l402] store is \"memory\": a token minted here would be unknown to the gateway");
    }
    let store = turnpike_gateway::rails::with_build(&cfg, turnpike_l402::conf::open_store)?;
    let n = turnpike_core::unix_now();
    let section = l402(&cfg);
    let rail = &section.rail;
    let (amount, credit, expires) = match mode {
        BillingMode::PerCall => (msat, 0, n.saturating_add(rail.token_ttl_secs)),
        BillingMode::Balance => {
            let c = bundle.unwrap_or(msat).max(msat);
            (c, c, n.saturating_add(rail.token_ttl_secs))
        }
        BillingMode::TimePass => (
            msat,
            0,
            n.saturating_add(bundle.filter(|b| *b > 0).unwrap_or(rail.pass_secs)),
        ),
    };
    let preimage: [u8; 32] = rand::random();
    let payment_hash: [u8; 32] = Sha256::digest(preimage).into();
    let id = Identifier::random(payment_hash);
    let master = store.master_key().await?;
    let root_key = turnpike_l402::derive_root_key(&master, &id.token_id);
    let mut mac = Macaroon::new(&root_key[..], id.encode().to_vec(), rail.location.as_str());
    mac.add_first_party_caveat(format!("{}={}", caveat::RESOURCE, cfg.server.path));
    mac.add_first_party_caveat(format!("{}=tools/call", caveat::METHODS));
    if mode != BillingMode::Balance {
        mac.add_first_party_caveat(format!("{}={}", caveat::TOOLS, tool));
    }
    mac.add_first_party_caveat(format!("{}={}", caveat::MODE, mode_str(mode)));
    mac.add_first_party_caveat(format!("{}={}", caveat::EXPIRES, expires));
    if mode == BillingMode::Balance {
        mac.add_first_party_caveat(format!("{}={}", caveat::CREDIT_MSAT, credit));
    }
    mac.add_first_party_caveat(format!("{}={}", caveat::AMOUNT_MSAT, amount));
    // Balance and time-pass tokens start paid (the balance opens now); a per-call token is
    // recorded by the one call it pays for.
    if mode != BillingMode::PerCall {
        store
            .pay(
                TokenRecord {
                    token_id: id.token_id,
                    payment_hash,
                    mode,
                    amount_msat: amount,
                    credit_msat: credit,
                    expires_at: expires,
                    created_at: n,
                    paid_at: None,
                },
                n,
            )
            .await?;
    }
    let mac_b64 = mac.to_base64();
    let pre_hex = hex::encode(preimage);
    eprintln!(
        "note: this token was minted by hand and skips payment — no invoice was paid for it."
    );
    eprintln!(
        "token id {} · {} · {} msat{} · expires {expires}",
        id.token_id_hex(),
        mode_str(mode),
        msat,
        if mode == BillingMode::Balance {
            format!(" per call, {credit} msat credit")
        } else {
            String::new()
        }
    );
    println!("L402 {mac_b64}:{pre_hex}");
    eprintln!(
        "use it as the header `Authorization: L402 {mac_b64}:{pre_hex}` or in params._meta: {}",
        serde_json::json!({"turnpike/l402": {"macaroon": mac_b64, "preimage": pre_hex}})
    );
    Ok(ExitCode::SUCCESS)
}

async fn revoke(token_id: &str, path: &Path) -> anyhow::Result<ExitCode> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(token_id.trim(), &mut id).context("a token id is 64 hex digits")?;
    let cfg = load(path)?;
    if l402(&cfg).store == StoreConfig::Memory
        && cfg.store.durable != turnpike_gateway::limits::DurableBackend::Postgres
    {
        bail!("[l402] store is \"memory\": restart the gateway to forget its tokens");
    }
    let store = turnpike_gateway::rails::with_build(&cfg, turnpike_l402::conf::open_store)?;
    if !store.revoke(id, turnpike_core::unix_now()).await? {
        eprintln!("token {token_id} was not revoked");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "revoked {token_id} in {}: it expired now and will be refused from now on",
        store_name(&cfg)
    );
    Ok(ExitCode::SUCCESS)
}
