//! The L402 rail in the gateway's configuration file: the `[l402]` and `[lightning]` tables
//! and the price key `l402 = { msat | sat = N, mode, bundle }` ([`L402Conf`], registered with
//! the gateway). The rail is on when `[lightning]` is there; it is built here too
//! ([`build_rail`], and [`open_store`] for the command line).

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use turnpike_conf::{
    check_url, fields, fields_of, split_keys, Build, BuildError, Built, Cx, DeValue, Fields, Host,
    RailConf, Section, Sections, Spanned,
};
use turnpike_core::conf::hinted;
use turnpike_core::{Offer, RailId, RailPlugin};
use turnpike_lightning::config::{backend_section, BACKEND_KINDS};
use turnpike_lightning::node::Node;
use turnpike_lightning::BackendConfig;

use crate::offer::{offer, terms, BillingMode, RAIL};
use crate::{L402Config, StoreConfig};

/// The rail's settings table.
pub const TABLE: &str = "l402";
/// The table of the Lightning backend the rail bills through; the rail is on when it is there.
pub const LIGHTNING: &str = turnpike_lightning::config::LIGHTNING_TABLE;

const HINT_L402: &str = "write l402 = { msat = <n> } or { sat = <n> }, optionally with mode = \"per_call\" | \"balance\" | \"time_pass\" and bundle = <n> (balance: credit per invoice, in the price's unit; time_pass: seconds)";
const HINT_NO_LIGHTNING: &str = "add a [lightning] section naming the node that creates invoices, e.g. [lightning] backend = \"lnd\", url = \"https://127.0.0.1:8080\", macaroon_path = \"…/invoice.macaroon\" (or backend = \"dev\" to try it out, never in production)";
const HINT_LIGHTNING: &str = "see the [lightning] section in docs/L402.md: backend = \"lnd\" | \"cln\" | \"phoenixd\" | \"lnbits\" | \"nwc\" | \"dev\" and that backend's keys";
const HINT_L402_TABLE: &str = "see the [l402] section in docs/L402.md";
const HINT_URL: &str =
    "write an absolute http:// or https:// URL, e.g. \"http://127.0.0.1:3001/mcp\"";

/// `[l402]`: the rail's settings (every key of [`L402Config`]) and `store`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct L402Section {
    /// Token lifetimes, invoice expiry, settlement confirmation, limits.
    pub rail: L402Config,
    /// Where root keys, tokens, balances and the ledger live. Default: SQLite at
    /// `<data_dir>/l402.sqlite`.
    pub store: StoreConfig,
}

pub use turnpike_lightning::config::{DevWalletConfig, LightningSection};

/// `[l402]` of a configuration's rail sections (its defaults when the file leaves it out).
pub fn section(sections: &Sections) -> L402Section {
    sections
        .get::<L402Section>(TABLE)
        .cloned()
        .unwrap_or_default()
}

/// `[lightning]` of a configuration's rail sections, when the file has it.
pub fn lightning(sections: &Sections) -> Option<&LightningSection> {
    sections.get::<LightningSection>(LIGHTNING)
}

/// An L402 offer for people: `l402 10 sat per call`, `l402 2000 msat a call from a 100000 msat
/// balance`, `l402 1000 msat for a 3600 s pass`.
pub fn describe(offer: &Offer) -> String {
    let Some(p) = terms(offer) else {
        return String::new();
    };
    let amount = |m: u64| {
        if m % 1000 == 0 {
            format!("{} sat", m / 1000)
        } else {
            format!("{m} msat")
        }
    };
    match p.mode {
        BillingMode::PerCall => format!("l402 {} per call", amount(p.msat)),
        BillingMode::Balance => format!(
            "l402 {} a call from a {} balance",
            amount(p.msat),
            amount(p.bundle.max(p.msat))
        ),
        BillingMode::TimePass if p.bundle > 0 => {
            format!("l402 {} for a {} s pass", amount(p.msat), p.bundle)
        }
        BillingMode::TimePass => format!("l402 {} for a time pass", amount(p.msat)),
    }
}

/// `[lightning.dev_wallet]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevWalletKeys {
    #[serde(default, deserialize_with = "wallet_listen")]
    listen: Option<SocketAddr>,
    #[serde(default)]
    preimage_base64: bool,
}

fn wallet_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    match s.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Ok(Some(a)),
        _ => Err(hinted(
            format!("{s:?} is not a loopback address"),
            "write a loopback address and port, e.g. \"127.0.0.1:0\"",
        )),
    }
}

/// The configuration side of the L402 rail: `[l402]`, `[lightning]` and `l402 = {…}` in a
/// price.
pub struct L402Conf;

impl L402Conf {
    /// `[l402]`: [`L402Config`]'s keys and `store` ([`StoreConfig::setting`]).
    fn l402(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Option<L402Section> {
        const STORE: &str = "store";
        let t = cx.table(v, "[l402]")?;
        let (rest, own) = split_keys(t, &[STORE]);
        let section = Section {
            extra: &[STORE],
            ..Section::new("[l402]", HINT_L402_TABLE)
        };
        let rail = cx.section_with(&rest, v.span(), section, |d| L402Config::deserialize(d));
        let store = match own.get(STORE) {
            Some(sv) => cx.value_with(sv, HINT_L402_TABLE, |d| StoreConfig::setting(d)),
            None => Some(StoreConfig::default()),
        };
        Some(L402Section {
            rail: rail?,
            store: store?,
        })
    }

    /// `[lightning]`: `backend = "…"` and that backend's keys (its type in
    /// `turnpike_lightning`), plus `[lightning.dev_wallet]` with the dev backend.
    fn lightning(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Option<LightningSection> {
        const BACKEND: &str = "backend";
        const DEV_WALLET: &str = "dev_wallet";
        let t = cx.table(v, "[lightning]")?;
        let span = v.span();
        let Some((kind, kspan)) = cx.field::<String>(t, BACKEND, HINT_LIGHTNING) else {
            if t.get(BACKEND).is_none() {
                cx.problem(
                    Some(span),
                    "[lightning] names no backend".into(),
                    HINT_LIGHTNING,
                );
            }
            return None;
        };
        if !BACKEND_KINDS.contains(&kind.as_str()) {
            cx.problem(
                Some(kspan),
                format!("unknown lightning backend {kind:?}"),
                HINT_LIGHTNING,
            );
            return None;
        }
        let own: &[&str] = if kind == "dev" {
            &[BACKEND, DEV_WALLET]
        } else {
            &[BACKEND]
        };
        let (rest, own_t) = split_keys(t, own);
        let name = format!("[lightning] ({kind})");
        let section = Section {
            extra: own,
            ..Section::new(&name, HINT_LIGHTNING)
        };
        let before = cx.problems.len();
        let backend = cx.section_with(&rest, span, section, |d| {
            backend_section(&kind, d)
                .unwrap_or_else(|| Err(serde::de::Error::custom("no such backend")))
        });
        let dev_wallet = own_t.get(DEV_WALLET).and_then(|w| self.dev_wallet(cx, w));
        if cx.problems.len() > before {
            return None;
        }
        let backend = backend?;
        let url = match &backend {
            BackendConfig::Lnd(c) => Some(&c.url),
            BackendConfig::Cln(c) => Some(&c.url),
            BackendConfig::Phoenixd(c) => Some(&c.url),
            BackendConfig::Lnbits(c) => Some(&c.url),
            // The connection URI holds a private key; it is checked by the backend.
            BackendConfig::Dev(_) | BackendConfig::Nwc(_) => None,
        };
        if let Some(url) = url {
            if let Err(e) = check_url(url) {
                let at = t.get("url").map(|v| v.span());
                cx.problem(at, format!("lightning url {url:?}: {e}"), HINT_URL);
                return None;
            }
        }
        Some(LightningSection {
            backend,
            dev_wallet,
        })
    }

    fn dev_wallet(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Option<DevWalletConfig> {
        let w: DevWalletKeys =
            cx.section(v, Section::new("[lightning.dev_wallet]", HINT_LIGHTNING))?;
        Some(DevWalletConfig {
            listen: w
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            preimage_base64: w.preimage_base64,
        })
    }
}

impl RailConf for L402Conf {
    fn id(&self) -> RailId {
        RAIL
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE, LIGHTNING]
    }

    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some((LIGHTNING, HINT_NO_LIGHTNING))
    }

    fn defaults(&self, out: &mut Sections) {
        out.set(TABLE, L402Section::default());
    }

    /// [`build_rail`]: the backend, the store and the rail.
    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError> {
        build_rail(build)
    }

    fn recogniser(&self) -> Option<Arc<dyn RailPlugin>> {
        Some(Arc::new(crate::L402Credentials))
    }

    fn read(
        &self,
        cx: &mut Cx<'_>,
        name: &str,
        value: &Spanned<DeValue<'_>>,
        _host: &Host<'_>,
        out: &mut Sections,
    ) {
        if name == TABLE {
            if let Some(s) = self.l402(cx, value) {
                out.set(TABLE, s);
            }
        } else if let Some(s) = self.lightning(cx, value) {
            out.set(LIGHTNING, s);
        }
    }

    /// `l402 = { msat = N | sat = N, mode = "…", bundle = N }`.
    fn price_hint(&self) -> Option<(&'static str, &'static str)> {
        Some(("l402 = { sat = <n> }", "l402 = { sat = 10 }"))
    }

    fn price(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Option<Offer> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            msat: Option<u64>,
            sat: Option<u64>,
            mode: Option<String>,
            bundle: Option<u64>,
        }
        let raw: Raw = cx.value(v, HINT_L402)?;
        let here = Some(v.span());
        let (msat, unit) = match (raw.msat, raw.sat) {
            (Some(m), None) => (m, 1),
            (None, Some(s)) => match s.checked_mul(1000) {
                Some(m) => (m, 1000),
                None => {
                    cx.problem(here, "l402 sat price is too large".into(), HINT_L402);
                    return None;
                }
            },
            (Some(_), Some(_)) => {
                cx.problem(here, "l402 names both msat and sat".into(), HINT_L402);
                return None;
            }
            (None, None) => {
                cx.problem(here, "l402 names no amount".into(), HINT_L402);
                return None;
            }
        };
        if msat == 0 {
            cx.problem(
                here,
                "an l402 price must be at least 1 msat".into(),
                HINT_L402,
            );
            return None;
        }
        let mode = match raw.mode.as_deref() {
            None | Some("per_call") => BillingMode::PerCall,
            Some("balance") => BillingMode::Balance,
            Some("time_pass") => BillingMode::TimePass,
            Some(other) => {
                cx.problem(here, format!("unknown l402 mode {other:?}"), HINT_L402);
                return None;
            }
        };
        let bundle = match (mode, raw.bundle) {
            (_, None) => 0,
            (BillingMode::PerCall, Some(_)) => {
                cx.problem(
                    here,
                    "bundle has no meaning for a per_call price".into(),
                    HINT_L402,
                );
                return None;
            }
            (BillingMode::Balance, Some(b)) => match b.checked_mul(unit) {
                Some(b) if b >= msat => b,
                _ => {
                    cx.problem(
                        here,
                        "a balance bundle must buy at least one call".into(),
                        HINT_L402,
                    );
                    return None;
                }
            },
            (BillingMode::TimePass, Some(0)) => {
                cx.problem(here, "a time pass of 0 seconds".into(), HINT_L402);
                return None;
            }
            (BillingMode::TimePass, Some(secs)) => secs,
        };
        Some(offer(msat, mode, bundle))
    }

    fn offer_problem(&self, offer: &Offer) -> Option<(String, &'static str)> {
        terms(offer)
            .is_some_and(|t| t.msat == 0)
            .then(|| ("l402 price is 0".to_string(), HINT_L402))
    }

    fn reference_keys(&self) -> Vec<(String, Vec<&'static str>)> {
        let mut out = vec![
            ("l402".into(), {
                let mut k = fields::<L402Config>();
                k.push("store");
                k
            }),
            ("lightning.dev_wallet".into(), fields::<DevWalletKeys>()),
        ];
        for kind in BACKEND_KINDS {
            let mut k = vec!["backend"];
            k.extend(fields_of(|d| {
                backend_section(kind, d).unwrap_or_else(|| Err(Fields(Vec::new())))
            }));
            if *kind == "dev" {
                k.push("dev_wallet");
            }
            out.push((format!("lightning ({kind})"), k));
        }
        out
    }

    fn describe(&self, offer: &Offer, _sections: &Sections) -> String {
        describe(offer)
    }
}

/// The node `[lightning]` names, built once per gateway and shared with every other rail that
/// bills through it ([`turnpike_conf::Services::shared`] under `lightning`).
fn shared_node(build: &Build<'_>, ln: &LightningSection) -> Result<Node, BuildError> {
    let any = build.services.shared(LIGHTNING, &mut || {
        Node::connect(ln)
            .map(|n| Arc::new(n) as Arc<dyn std::any::Any + Send + Sync>)
            .map_err(|e| BuildError(format!("lightning: {e}")))
    })?;
    any.downcast::<Node>()
        .map(|n| (*n).clone())
        .map_err(|_| l402_error("[lightning] was built as something else"))
}

fn l402_error(e: impl std::fmt::Display) -> BuildError {
    BuildError(format!("L402 rail: {e}"))
}

/// The rail from `[l402]` and `[lightning]`, with the dev backend kept beside it when that is
/// the one configured (its wallet is served on the operator's side). Per-call tokens are
/// single-use through the store and the `l402` spent set (its own: keys are token ids).
pub fn build_rail(build: &Build<'_>) -> Result<Built, BuildError> {
    let Some(ln) = lightning(build.sections) else {
        return Err(l402_error("no [lightning] section"));
    };
    let node = shared_node(build, ln)?;
    let (backend, dev) = (node.backend.clone(), node.dev.clone());
    let store = open_store(build)?;
    let spent = build.services.spent_set("l402")?;
    let rail = crate::L402Rail::new(section(build.sections).rail, backend, store, spent);
    let built = Built::new(Arc::new(rail));
    Ok(match dev {
        Some(dev) => built.keep(dev),
        None => built,
    })
}

/// Opens the L402 store: the gateway's PostgreSQL database with `[store] durable =
/// "postgres"`, else the one `[l402] store` names (a relative SQLite path is under `data_dir`).
pub fn open_store(build: &Build<'_>) -> Result<Arc<dyn crate::L402Store>, BuildError> {
    if let Some(pg) = build.services.postgres() {
        return open_postgres(pg?);
    }
    let L402Section { store, .. } = section(build.sections);
    Ok(match &store {
        StoreConfig::Memory => Arc::new(crate::MemoryStore::new()),
        StoreConfig::Sqlite {
            path,
            fsync_every_commit,
        } => {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                build.data_dir.join(path)
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| l402_error(format!("cannot create {}: {e}", dir.display())))?;
            }
            let durability = if *fsync_every_commit {
                crate::Durability::Full
            } else {
                crate::Durability::Normal
            };
            Arc::new(
                crate::SqliteStore::open(&path, durability)
                    .map_err(|e| l402_error(format!("{}: {e}", path.display())))?,
            )
        }
    })
}

/// The L402 state in PostgreSQL. Nothing waits for the server here: inside a Tokio runtime the
/// first connection (and the migrations) are started at once in the background and logged;
/// every operation connects again by itself while the server is away, and payments fail
/// closed (503) until it is back.
#[cfg(feature = "postgres")]
fn open_postgres(pg: turnpike_conf::Postgres) -> Result<Arc<dyn crate::L402Store>, BuildError> {
    let opts = crate::PostgresOptions {
        url: pg.url,
        schema: pg.schema,
        pool: pg.pool,
        timeout: pg.timeout,
    };
    let store = crate::PostgresStore::new(opts).map_err(|e| BuildError(format!("store: {e}")))?;
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let s = store.clone();
        rt.spawn(async move {
            match s.ready().await {
                Ok(()) => tracing::info!(target: "turnpike::serve", "PostgreSQL store ready (migrations applied)"),
                Err(e) => tracing::warn!(target: "turnpike::serve", error = %e, "PostgreSQL store not reachable yet; L402 payments fail closed until it is"),
            }
        });
    }
    Ok(Arc::new(store))
}

/// Without PostgreSQL support built in, a durable PostgreSQL store cannot be opened.
#[cfg(not(feature = "postgres"))]
fn open_postgres(_pg: turnpike_conf::Postgres) -> Result<Arc<dyn crate::L402Store>, BuildError> {
    Err(BuildError(
        "store: this build has no PostgreSQL support (turnpike-l402's postgres feature)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_read_for_people() {
        assert_eq!(
            describe(&offer(10_000, BillingMode::PerCall, 0)),
            "l402 10 sat per call"
        );
        assert_eq!(
            describe(&offer(2000, BillingMode::Balance, 100_000)),
            "l402 2 sat a call from a 100 sat balance"
        );
        assert_eq!(
            describe(&offer(1500, BillingMode::TimePass, 3600)),
            "l402 1500 msat for a 3600 s pass"
        );
        assert_eq!(
            describe(&offer(1000, BillingMode::TimePass, 0)),
            "l402 1 sat for a time pass"
        );
    }
}
