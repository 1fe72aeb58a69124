//! The MPP rail in the gateway's configuration file: the `[mpp]` table and the price key
//! `mpp = { sat = N, evm = "U" }` ([`MppConf`], registered with the gateway). The Lightning
//! method bills through the node of `[lightning]` (the table the L402 rail reads; the node is
//! built once and shared); the `evm` method (`[mpp] evm = { decimals = D }`) takes payments in
//! the token of `[x402]` (its chain, token, payee and settlement, shared with the x402 rail).
//! The rail is on when either is there.

use std::sync::Arc;

use turnpike_conf::{
    fields, span_of_path, Build, BuildError, Built, Cx, DeTable, DeValue, Host, RailConf, Section,
    Sections, Spanned,
};
use turnpike_core::{Offer, RailId, RailPlugin};
use turnpike_lightning::config::{LightningSection, LIGHTNING_TABLE};
use turnpike_lightning::node::Node;

use crate::rail::{realm_of, MppConfig, MppCredentials, MppRail};
use crate::{evm_amount, method, offers, sats, RAIL};

/// The table this rail owns.
pub const TABLE: &str = "mpp";

const HINT_MPP: &str = "write mpp = { sat = <n> } (whole satoshis per call, at least 1), mpp = { evm = \"<n>\" } (atomic units of the [x402] token per call, at least 1), or both";
const HINT_TABLE: &str = "see the [mpp] section in docs/MPP.md";
const HINT_NO_LIGHTNING: &str = "add a [lightning] section naming the node that creates invoices, e.g. [lightning] backend = \"lnd\", url = \"https://127.0.0.1:8080\", macaroon_path = \"…/invoice.macaroon\" (or backend = \"dev\" to try it out, never in production); or, for the evm method, [mpp] evm = { decimals = 6 } beside an [x402] section";
const HINT_EVM_PRICE: &str = "offer the evm method with [mpp] evm = { decimals = 6 } beside an [x402] section (docs/MPP.md, the evm method), or price the call in sat";
const HINT_EVM: &str = "the evm method takes payments in the token of [x402], settled as x402 settles them: add an [x402] section (docs/MPP.md, the evm method)";
const HINT_REALM: &str =
    "write a realm of visible ASCII characters, e.g. realm = \"mcp.example.com\"";

/// `[mpp]` of a configuration's rail sections (its defaults when the file leaves it out).
pub fn section(sections: &Sections) -> MppConfig {
    sections
        .get::<MppConfig>(TABLE)
        .cloned()
        .unwrap_or_default()
}

/// An MPP offer for people: `mpp 10 sat per call (lightning charge)`, `mpp 10000 units per
/// call (evm charge)`.
pub fn describe(offer: &Offer) -> String {
    match method(offer) {
        crate::evm::METHOD => format!(
            "mpp {} units per call (evm charge)",
            evm_amount(offer).unwrap_or(0)
        ),
        _ => format!(
            "mpp {} sat per call (lightning charge)",
            sats(offer).unwrap_or(0)
        ),
    }
}

/// What is wrong with `[mpp] evm` beside the other sections: it needs `[x402]`.
fn evm_problem(sections: &Sections) -> Option<String> {
    section(sections).evm.as_ref()?;
    turnpike_evm::conf::section(sections)
        .is_none()
        .then(|| "[mpp] evm needs an [x402] section (its chain, token and payee)".into())
}

fn realm_ok(realm: &str) -> bool {
    !realm.is_empty() && realm.len() <= 256 && realm.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The configuration side of the MPP rail: `[mpp]` and `mpp = { sat = N }` in a price.
pub struct MppConf;

impl RailConf for MppConf {
    fn id(&self) -> RailId {
        RAIL
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some((LIGHTNING_TABLE, HINT_NO_LIGHTNING))
    }

    /// On with `[lightning]` (the Lightning method), or with `[mpp] evm` and `[x402]` (the evm
    /// method).
    fn is_on(&self, sections: &Sections) -> bool {
        sections.has(LIGHTNING_TABLE)
            || (section(sections).evm.is_some() && turnpike_evm::conf::section(sections).is_some())
    }

    fn check(&self, cx: &mut Cx<'_>, root: &DeTable<'_>, sections: &Sections, _host: &Host<'_>) {
        if let Some(m) = evm_problem(sections) {
            let at = span_of_path(root, "mpp.evm");
            cx.problem(at, m, HINT_EVM);
        }
        // A price naming a method that is not there, while the rail is on through the other:
        // `sat` without [lightning], `evm` without [mpp] evm.
        let lightning = root.get(LIGHTNING_TABLE).is_some();
        let evm = section(sections).evm.is_some();
        if lightning == evm {
            return;
        }
        for group in ["tools", "methods"] {
            let Some(DeValue::Table(prices)) = root.get(group).map(|v| v.get_ref()) else {
                continue;
            };
            for (_, price) in prices.iter() {
                let DeValue::Table(p) = price.get_ref() else {
                    continue;
                };
                let Some(DeValue::Table(m)) = p.get(RAIL.as_str()).map(|v| v.get_ref()) else {
                    continue;
                };
                let at = p.get(RAIL.as_str()).map(|v| v.span());
                if !lightning && (m.get("sat").is_some() || m.get("sats").is_some()) {
                    cx.problem(
                        at,
                        "this price names mpp sat, but there is no [lightning] section".into(),
                        HINT_NO_LIGHTNING,
                    );
                } else if !evm && m.get("evm").is_some() {
                    cx.problem(
                        at,
                        "this price names mpp evm, but [mpp] has no evm".into(),
                        HINT_EVM_PRICE,
                    );
                }
            }
        }
    }

    fn defaults(&self, out: &mut Sections) {
        out.set(TABLE, MppConfig::default());
    }

    fn read(
        &self,
        cx: &mut Cx<'_>,
        _name: &str,
        value: &Spanned<DeValue<'_>>,
        _host: &Host<'_>,
        out: &mut Sections,
    ) {
        let s = Section {
            serde_words: true,
            ..Section::new("[mpp]", HINT_TABLE)
        };
        let Some(cfg) = cx.section::<MppConfig>(value, s) else {
            return;
        };
        if let Some(realm) = cfg.realm.as_deref().filter(|r| !realm_ok(r)) {
            let at = value
                .get_ref()
                .as_table()
                .and_then(|t| t.get("realm"))
                .map(|v| v.span());
            cx.problem(
                at.or(Some(value.span())),
                format!("[mpp] realm {realm:?} is not usable in a challenge"),
                HINT_REALM,
            );
            return;
        }
        out.set(TABLE, cfg);
    }

    fn price_hint(&self) -> Option<(&'static str, &'static str)> {
        Some(("mpp = { sat = <n> }", "mpp = { sat = 10 }"))
    }

    fn price(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Option<Offer> {
        self.prices(cx, v).into_iter().next()
    }

    /// One offer per method the price names: `sat` (Lightning) and `evm` (atomic units of the
    /// `[x402]` token).
    fn prices(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Vec<Offer> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Amount {
            Int(u64),
            Text(String),
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            /// Whole satoshis per call (`sat`, as in `l402 = { sat = N }`; `sats` is read too).
            #[serde(alias = "sats", default)]
            sat: Option<u64>,
            /// Atomic units of the `[x402]` token per call, with the `evm` method.
            #[serde(default)]
            evm: Option<Amount>,
        }
        let Some(raw) = cx.value::<Raw>(v, HINT_MPP) else {
            return Vec::new();
        };
        if let Some(s) = raw.sat {
            if s == 0 || s.checked_mul(1000).is_none() {
                cx.problem(
                    Some(v.span()),
                    "an mpp price must be between 1 sat and 2^64/1000 sat".into(),
                    HINT_MPP,
                );
                return Vec::new();
            }
        }
        let evm = match raw.evm {
            None => None,
            Some(a) => {
                let n = match a {
                    Amount::Int(n) => Some(u128::from(n)),
                    Amount::Text(t) => turnpike_evm::evm::parse_decimal(&t),
                };
                match n {
                    Some(n) if n > 0 => Some(n),
                    _ => {
                        cx.problem(
                            Some(v.span()),
                            "an mpp evm price must be a whole number of atomic units, at least 1"
                                .into(),
                            HINT_MPP,
                        );
                        return Vec::new();
                    }
                }
            }
        };
        if raw.sat.is_none() && evm.is_none() {
            cx.problem(
                Some(v.span()),
                "an mpp price names no method (sat or evm)".into(),
                HINT_MPP,
            );
            return Vec::new();
        }
        offers(raw.sat, evm)
    }

    fn offer_problem(&self, offer: &Offer) -> Option<(String, &'static str)> {
        (sats(offer) == Some(0) || evm_amount(offer) == Some(0))
            .then(|| ("mpp price is 0".to_string(), HINT_MPP))
    }

    fn validate(&self, sections: &Sections, _host: &Host<'_>) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        if let Some(r) = section(sections).realm.filter(|r| !realm_ok(r)) {
            out.push((
                format!("[mpp] realm {r:?} is not usable in a challenge"),
                HINT_REALM,
            ));
        }
        if let Some(m) = evm_problem(sections) {
            out.push((m, HINT_EVM));
        }
        out
    }

    fn reference_keys(&self) -> Vec<(String, Vec<&'static str>)> {
        vec![("mpp".into(), fields::<MppConfig>())]
    }

    fn describe(&self, offer: &Offer, _sections: &Sections) -> String {
        describe(offer)
    }

    /// Said only when the rail is on (`[lightning]` is there).
    fn summary(&self, sections: &Sections, host: &Host<'_>) -> Option<String> {
        if !self.is_on(sections) {
            return None;
        }
        let cfg = section(sections);
        let realm = cfg.realm.unwrap_or_else(|| realm_of(host.public_url));
        let mut methods = Vec::new();
        if sections.has(LIGHTNING_TABLE) {
            methods.push("lightning charge".to_string());
        }
        if let (Some(e), Some(x)) = (&cfg.evm, turnpike_evm::conf::section(sections)) {
            methods.push(format!(
                "evm charge on {} in {} ({} decimals) to {}",
                x.network, x.asset, e.decimals, x.pay_to
            ));
        }
        Some(format!(
            "mpp: Payment scheme, {}; realm {realm:?}, challenges valid {} s",
            methods.join(", "),
            cfg.expiry_secs
        ))
    }

    /// The rail from `[mpp]`: its binding key from `data_dir/mpp.key` (created 0600 when
    /// missing), the shared Lightning node of `[lightning]`, payments single-use through the
    /// `mpp` spent set.
    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError> {
        let node = match build.sections.get::<LightningSection>(LIGHTNING_TABLE) {
            None => None,
            Some(ln) => {
                let any = build.services.shared(LIGHTNING_TABLE, &mut || {
                    Node::connect(ln)
                        .map(|n| Arc::new(n) as Arc<dyn std::any::Any + Send + Sync>)
                        .map_err(|e| BuildError(format!("lightning: {e}")))
                })?;
                Some(
                    any.downcast::<Node>()
                        .map_err(|_| mpp_error("[lightning] was built as something else"))?,
                )
            }
        };
        let cfg = section(build.sections);
        if let Some(m) = evm_problem(build.sections) {
            return Err(mpp_error(m));
        }
        let token = match &cfg.evm {
            None => None,
            Some(_) => turnpike_evm::conf::shared_token(build)?,
        };
        if node.is_none() && token.is_none() {
            return Err(mpp_error("no [lightning] section, and no [mpp] evm"));
        }
        let realm = cfg
            .realm
            .clone()
            .unwrap_or_else(|| realm_of(build.public_url));
        let key = MppRail::load_or_create_key(build.data_dir)
            .map_err(|e| mpp_error(format!("binding key: {e}")))?;
        let spent = build.services.spent_set("mpp")?;
        let backend = node.as_ref().map(|n| n.backend.clone());
        let rail = MppRail::with_methods(cfg, realm, key, backend, token, spent);
        let built = Built::new(Arc::new(rail));
        Ok(match node.as_ref().and_then(|n| n.dev.clone()) {
            Some(dev) => built.keep(dev),
            None => built,
        })
    }

    fn recogniser(&self) -> Option<Arc<dyn RailPlugin>> {
        Some(Arc::new(MppCredentials))
    }
}

fn mpp_error(e: impl std::fmt::Display) -> BuildError {
    BuildError(format!("MPP rail: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer;

    #[test]
    fn offers_read_for_people() {
        assert_eq!(
            describe(&offer(10)),
            "mpp 10 sat per call (lightning charge)"
        );
        assert_eq!(
            offer(10).published(),
            serde_json::json!({"rail":"mpp","method":"lightning","intent":"charge","sats":10})
        );
        let both = offers(Some(10), Some(10_000));
        assert_eq!(both.len(), 2);
        assert_eq!(describe(&both[0]), "mpp 10 sat per call (lightning charge)");
        assert_eq!(describe(&both[1]), "mpp 10000 units per call (evm charge)");
        assert_eq!(
            both[1].published(),
            serde_json::json!({"rail":"mpp","method":"evm","intent":"charge","sats":10,"amount":"10000"})
        );
        assert_eq!(
            evm_amount(&both[0]),
            Some(10_000),
            "every offer carries every term"
        );
        assert_eq!(offers(None, None).len(), 0);
        assert!(realm_ok("api.example.com"));
        assert!(!realm_ok(""));
        assert!(!realm_ok("a\nb"));
    }
}
