//! The x402 rail in the gateway's configuration file: the `[x402]` table and the price key
//! `x402 = { amount = "N" }` ([`X402Conf`], registered with the gateway). The rail is on when
//! `[x402]` is there.

use std::sync::Arc;

use turnpike_conf::{
    fields, Build, BuildError, Built, Cx, DeValue, Host, RailConf, Section, Sections, Spanned,
};
use turnpike_core::{Offer, RailId, RailPlugin};

use crate::rail::{chain_id_of, X402Config, X402Credentials, X402Rail};
use crate::{amount, evm, offer, RAIL};

/// The table this rail owns.
pub const TABLE: &str = turnpike_evm::conf::TABLE;

const HINT_PRICE: &str =
    "write x402 = { amount = \"<n>\" } (atomic units of the asset per call, at least 1; e.g. \"10000\" is 0.01 of a 6-decimal token)";
const HINT_TABLE: &str = "see the [x402] section in docs/X402.md";
const HINT_NO_TABLE: &str = "add an [x402] section naming the chain, the token and who is paid, e.g. [x402] network = \"eip155:8453\", rpc_url = \"https://…\", asset = \"0x…\", asset_name = \"USD Coin\", asset_version = \"2\", pay_to = \"0x…\", settle_key_env = \"X402_SETTLE_KEY\"";
const HINT_NETWORK: &str =
    "write the chain as CAIP-2, eip155:<chainId>, e.g. network = \"eip155:8453\"";
const HINT_ADDRESS: &str = "write an address as 0x and 40 hex digits";
const HINT_URL: &str = "write an http:// or https:// URL";
const HINT_SETTLE: &str = "name exactly one way to settle: facilitator_url = \"https://…\", or the gateway's own key with settle_key_file = \"…\" or settle_key_env = \"…\"";
const HINT_DOMAIN: &str =
    "write the token's EIP-712 domain name and version, e.g. asset_name = \"USD Coin\", asset_version = \"2\"";

pub use turnpike_evm::conf::section;

/// An x402 offer for people: `x402 10000 units per call (exact)`.
pub fn describe(offer: &Offer) -> String {
    format!("x402 {} units per call (exact)", amount(offer).unwrap_or(0))
}

fn url_ok(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://")) && u.parse::<http::Uri>().is_ok()
}

/// Every problem of a read `[x402]`: the key at fault, the message and the hint.
pub fn problems(cfg: &X402Config) -> Vec<(&'static str, String, &'static str)> {
    let mut out = Vec::new();
    if chain_id_of(&cfg.network).is_none() {
        out.push((
            "network",
            format!("[x402] network {:?} is not eip155:<chainId>", cfg.network),
            HINT_NETWORK,
        ));
    }
    for (key, v) in [("asset", &cfg.asset), ("pay_to", &cfg.pay_to)] {
        if evm::parse_address(v).is_none() {
            out.push((
                key,
                format!("[x402] {key} {v:?} is not an address"),
                HINT_ADDRESS,
            ));
        }
    }
    if !url_ok(&cfg.rpc_url) {
        out.push((
            "rpc_url",
            format!("[x402] rpc_url {:?} is not an http(s) URL", cfg.rpc_url),
            HINT_URL,
        ));
    }
    if let Some(f) = cfg.facilitator_url.as_deref().filter(|u| !url_ok(u)) {
        out.push((
            "facilitator_url",
            format!("[x402] facilitator_url {f:?} is not an http(s) URL"),
            HINT_URL,
        ));
    }
    for (key, v) in [
        ("asset_name", &cfg.asset_name),
        ("asset_version", &cfg.asset_version),
    ] {
        if v.is_empty() || v.len() > 128 {
            out.push((
                key,
                format!("[x402] {key} must be 1 to 128 characters"),
                HINT_DOMAIN,
            ));
        }
    }
    let ways = usize::from(cfg.facilitator_url.is_some())
        + usize::from(cfg.settle_key_file.is_some())
        + usize::from(cfg.settle_key_env.is_some());
    if ways != 1 {
        let key = if cfg.settle_key_env.is_some() {
            "settle_key_env"
        } else if cfg.settle_key_file.is_some() {
            "settle_key_file"
        } else {
            ""
        };
        out.push((
            key,
            if ways == 0 {
                "[x402] names no way to settle payments".to_string()
            } else {
                "[x402] names more than one way to settle payments".to_string()
            },
            HINT_SETTLE,
        ));
    }
    out
}

/// The configuration side of the x402 rail: `[x402]` and `x402 = { amount = "N" }` in a price.
pub struct X402Conf;

impl RailConf for X402Conf {
    fn id(&self) -> RailId {
        RAIL
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn needs(&self) -> Option<(&'static str, &'static str)> {
        Some((TABLE, HINT_NO_TABLE))
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
            ..Section::new("[x402]", HINT_TABLE)
        };
        let Some(cfg) = cx.section::<X402Config>(value, s) else {
            return;
        };
        let found = problems(&cfg);
        if !found.is_empty() {
            for (key, message, hint) in found {
                let at = value
                    .get_ref()
                    .as_table()
                    .and_then(|t| t.get(key))
                    .map(|v| v.span());
                cx.problem(at.or(Some(value.span())), message, hint);
            }
            return;
        }
        out.set(TABLE, cfg);
    }

    fn price_hint(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "x402 = { amount = \"<n>\" }",
            "x402 = { amount = \"10000\" }",
        ))
    }

    fn price(&self, cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>) -> Option<Offer> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Amount {
            Int(u64),
            Text(String),
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            /// Atomic units of the asset per call: a decimal string or an integer.
            amount: Amount,
        }
        let raw: Raw = cx.value(v, HINT_PRICE)?;
        let n = match raw.amount {
            Amount::Int(n) => Some(u128::from(n)),
            Amount::Text(t) => evm::parse_decimal(&t),
        };
        match n {
            Some(n) if n > 0 => Some(offer(n)),
            _ => {
                cx.problem(
                    Some(v.span()),
                    "an x402 price must be a whole number of atomic units, at least 1".into(),
                    HINT_PRICE,
                );
                None
            }
        }
    }

    fn offer_problem(&self, offer: &Offer) -> Option<(String, &'static str)> {
        (amount(offer).unwrap_or(0) == 0).then(|| ("x402 price is 0".to_string(), HINT_PRICE))
    }

    fn validate(&self, sections: &Sections, _host: &Host<'_>) -> Vec<(String, &'static str)> {
        section(sections)
            .map(|c| problems(c).into_iter().map(|(_, m, h)| (m, h)).collect())
            .unwrap_or_default()
    }

    fn reference_keys(&self) -> Vec<(String, Vec<&'static str>)> {
        vec![(TABLE.into(), fields::<X402Config>())]
    }

    fn describe(&self, offer: &Offer, _sections: &Sections) -> String {
        describe(offer)
    }

    fn summary(&self, sections: &Sections, _host: &Host<'_>) -> Option<String> {
        let cfg = section(sections)?;
        let settles = if cfg.facilitator_url.is_some() {
            "settled by the facilitator"
        } else {
            "settled by the gateway's own key"
        };
        Some(format!(
            "x402: exact on {}, asset {}, paid to {}, {settles}; offers valid {} s; payments checked at most {}/min per address (then 429), {}/min in all (then 503); spend log {}",
            cfg.network,
            cfg.asset,
            cfg.pay_to,
            cfg.max_timeout_secs,
            cfg.checks_per_minute_per_caller,
            cfg.checks_per_minute,
            crate::spend::FILE
        ))
    }

    /// The rail from `[x402]`: its binding key from `data_dir/x402.key` (created 0600 when
    /// missing), nonces single-use through the `x402` spent set, and the shared token
    /// ([`shared_token`]).
    fn build(&self, build: &Build<'_>) -> Result<Built, BuildError> {
        let Some(cfg) = section(build.sections).cloned() else {
            return Err(x402_error("no [x402] section"));
        };
        let token = shared_token(build)?.ok_or_else(|| x402_error("no [x402] section"))?;
        let key = X402Rail::load_or_create_key(build.data_dir)
            .map_err(|e| x402_error(format!("binding key: {e}")))?;
        let spent = build.services.spent_set("x402")?;
        let rail = X402Rail::with_token(cfg, key, build.public_url.to_string(), spent, token);
        if let Some(a) = rail.settler_address() {
            tracing::info!(settler = %evm::checksum(&a), "x402: settling with the gateway's own account");
        }
        Ok(Built::new(Arc::new(rail)))
    }

    fn recogniser(&self) -> Option<Arc<dyn RailPlugin>> {
        Some(Arc::new(X402Credentials))
    }
}

pub use turnpike_evm::conf::shared_token;

fn x402_error(e: impl std::fmt::Display) -> BuildError {
    BuildError(format!("x402 rail: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_read_for_people() {
        assert_eq!(describe(&offer(10000)), "x402 10000 units per call (exact)");
        assert_eq!(
            offer(10000).published(),
            serde_json::json!({"rail":"x402","scheme":"exact","amount":"10000"})
        );
    }
}
