//! The MPP rail in the gateway's configuration file: the `[mpp]` table and the price key
//! `mpp = { sat = N }` ([`MppConf`], registered with the gateway). The rail bills through the
//! Lightning node of `[lightning]` (the table the L402 rail reads; the node is built once and
//! shared), and is on when that table is there.

use std::sync::Arc;

use turnpike_conf::{
    fields, Build, BuildError, Built, Cx, DeValue, Host, RailConf, Section, Sections, Spanned,
};
use turnpike_core::{Offer, RailId, RailPlugin};
use turnpike_lightning::config::{LightningSection, LIGHTNING_TABLE};
use turnpike_lightning::node::Node;

use crate::rail::{realm_of, MppConfig, MppCredentials, MppRail};
use crate::{offer, sats, RAIL};

/// The table this rail owns.
pub const TABLE: &str = "mpp";

const HINT_MPP: &str = "write mpp = { sat = <n> } (whole satoshis per call, at least 1)";
const HINT_TABLE: &str = "see the [mpp] section in docs/MPP.md";
const HINT_NO_LIGHTNING: &str = "add a [lightning] section naming the node that creates invoices, e.g. [lightning] backend = \"lnd\", url = \"https://127.0.0.1:8080\", macaroon_path = \"…/invoice.macaroon\" (or backend = \"dev\" to try it out, never in production)";
const HINT_REALM: &str =
    "write a realm of visible ASCII characters, e.g. realm = \"mcp.example.com\"";

/// `[mpp]` of a configuration's rail sections (its defaults when the file leaves it out).
pub fn section(sections: &Sections) -> MppConfig {
    sections
        .get::<MppConfig>(TABLE)
        .cloned()
        .unwrap_or_default()
}

/// An MPP offer for people: `mpp 10 sat per call (lightning charge)`.
pub fn describe(offer: &Offer) -> String {
    format!(
        "mpp {} sat per call (lightning charge)",
        sats(offer).unwrap_or(0)
    )
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
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            /// Whole satoshis per call (`sat`, as in `l402 = { sat = N }`; `sats` is read too).
            #[serde(alias = "sats")]
            sat: u64,
        }
        let raw: Raw = cx.value(v, HINT_MPP)?;
        if raw.sat == 0 || raw.sat.checked_mul(1000).is_none() {
            cx.problem(
                Some(v.span()),
                "an mpp price must be between 1 sat and 2^64/1000 sat".into(),
                HINT_MPP,
            );
            return None;
        }
        Some(offer(raw.sat))
    }

    fn offer_problem(&self, offer: &Offer) -> Option<(String, &'static str)> {
        (sats(offer) == Some(0)).then(|| ("mpp price is 0".to_string(), HINT_MPP))
    }

    fn validate(&self, sections: &Sections, _host: &Host<'_>) -> Vec<(String, &'static str)> {
        match section(sections).realm {
            Some(r) if !realm_ok(&r) => vec![(
                format!("[mpp] realm {r:?} is not usable in a challenge"),
                HINT_REALM,
            )],
            _ => Vec::new(),
        }
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
        Some(format!(
            "mpp: Payment scheme, lightning charge; realm {realm:?}, challenges valid {} s",
            cfg.expiry_secs
        ))
    }

    /// The rail from `[mpp]`: its binding key from `data_dir/mpp.key` (created 0600 when
    /// missing), the shared Lightning node of `[lightning]`, payments single-use through the
    /// `mpp` spent set.
    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError> {
        let Some(ln) = build.sections.get::<LightningSection>(LIGHTNING_TABLE) else {
            return Err(mpp_error("no [lightning] section"));
        };
        let any = build.services.shared(LIGHTNING_TABLE, &mut || {
            Node::connect(ln)
                .map(|n| Arc::new(n) as Arc<dyn std::any::Any + Send + Sync>)
                .map_err(|e| BuildError(format!("lightning: {e}")))
        })?;
        let node = any
            .downcast::<Node>()
            .map_err(|_| mpp_error("[lightning] was built as something else"))?;
        let cfg = section(build.sections);
        let realm = cfg
            .realm
            .clone()
            .unwrap_or_else(|| realm_of(build.public_url));
        let key = MppRail::load_or_create_key(build.data_dir)
            .map_err(|e| mpp_error(format!("binding key: {e}")))?;
        let spent = build.services.spent_set("mpp")?;
        let rail = MppRail::new(cfg, realm, key, node.backend.clone(), spent);
        let built = Built::new(Arc::new(rail));
        Ok(match &node.dev {
            Some(dev) => built.keep(dev.clone()),
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
        assert!(realm_ok("api.example.com"));
        assert!(!realm_ok(""));
        assert!(!realm_ok("a\nb"));
    }
}
