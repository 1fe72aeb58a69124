//! Prices: `[tools.<name>]`, `[methods."<method>"]` and a mount's own. A price is
//! `free = true`, or any of `pow = <effort>`, `l402 = { msat | sat = N, mode, bundle }` and
//! `oauth = true | { scopes = […] }` (several: the caller chooses).

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;
use turnpike_l402::BillingMode;

use super::de::{quote_key, Cx, Section};
use super::hints::*;
use super::types::{Config, L402Price, PriceConfig};

fn read<T: serde::de::DeserializeOwned>(v: &Spanned<DeValue<'_>>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(v.clone()))
}

impl Cx<'_> {
    pub(super) fn prices(&mut self, t: &DeTable<'_>, table: &str) -> BTreeMap<String, PriceConfig> {
        let mut out = BTreeMap::new();
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            let section = format!("[{table}.{}]", quote_key(name));
            let Some(pt) = self.table(v, &section) else {
                continue;
            };
            if let Some(p) = self.price(pt, &section, v.span()) {
                out.insert(name.to_owned(), p);
            }
        }
        out
    }

    fn price(&mut self, t: &DeTable<'_>, section: &str, span: Range<usize>) -> Option<PriceConfig> {
        /// The keys of a price: each rail's, and `free` (their values are read below).
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct PriceKeys {
            free: Option<toml::Value>,
            pow: Option<toml::Value>,
            l402: Option<toml::Value>,
            oauth: Option<toml::Value>,
        }
        let before = self.problems.len();
        let keys = Section {
            unknown: "rail or key",
            ..Section::new(section, HINT_PRICE)
        };
        let _ = self.section_with(t, span.clone(), keys, |d| {
            <PriceKeys as serde::Deserialize>::deserialize(d)
        });
        let free = self.field::<bool>(t, "free", HINT_PRICE);
        let pow = self.field::<u64>(t, "pow", HINT_EFFORT);
        let l402 = t.get("l402").and_then(|v| self.l402_price(v));
        let oauth = t.get("oauth").and_then(|v| self.oauth_price(v));
        if let Some((0, s)) = &pow {
            self.problem(
                Some(s.clone()),
                "pow effort must be at least 1".into(),
                HINT_EFFORT,
            );
        }
        let priced = pow.is_some() || l402.is_some() || oauth.is_some();
        match (&free, priced) {
            (Some((true, s)), true) => self.problem(
                Some(s.clone()),
                format!("{section} is both free and priced"),
                HINT_PRICE,
            ),
            (Some((false, s)), false) => self.problem(
                Some(s.clone()),
                format!("{section} says free = false but names no price"),
                HINT_PRICE,
            ),
            (None, false)
                if t.get("free").is_none()
                    && t.get("pow").is_none()
                    && t.get("l402").is_none()
                    && t.get("oauth").is_none()
                    && self.problems.len() == before =>
            {
                self.problem(Some(span), format!("{section} names no price"), HINT_PRICE)
            }
            _ => {}
        }
        if self.problems.len() > before {
            return None;
        }
        Some(PriceConfig {
            free: free.is_some_and(|(f, _)| f),
            pow: pow.map(|(p, _)| p),
            l402,
            oauth,
        })
    }

    /// `oauth = true` or `oauth = { scopes = ["a", "b"] }`.
    fn oauth_price(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Vec<String>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            scopes: Vec<String>,
        }
        self.oauth_prices.push(v.span());
        match v.get_ref() {
            DeValue::Boolean(true) => Some(Vec::new()),
            DeValue::Boolean(false) => {
                self.problem(
                    Some(v.span()),
                    "oauth = false offers nothing: remove the key instead".into(),
                    HINT_OAUTH_PRICE,
                );
                None
            }
            _ => match read::<Raw>(v) {
                Ok(r) => {
                    let mut scopes: Vec<String> = Vec::new();
                    for s in r.scopes {
                        if !turnpike_oauth::config::is_scope_token(&s) {
                            self.problem(
                                Some(v.span()),
                                format!("{s:?} is not a scope (printable ASCII without spaces, '\"' or '\\')"),
                                HINT_OAUTH_PRICE,
                            );
                            return None;
                        }
                        if !scopes.contains(&s) {
                            scopes.push(s);
                        }
                    }
                    Some(scopes)
                }
                Err(e) => {
                    self.de_error(e, v.span(), HINT_OAUTH_PRICE);
                    None
                }
            },
        }
    }

    /// `l402 = { msat = N | sat = N, mode = "…", bundle = N }`.
    fn l402_price(&mut self, v: &Spanned<DeValue<'_>>) -> Option<L402Price> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            msat: Option<u64>,
            sat: Option<u64>,
            mode: Option<String>,
            bundle: Option<u64>,
        }
        self.l402_prices.push(v.span());
        let raw = match read::<Raw>(v) {
            Ok(r) => r,
            Err(e) => {
                self.de_error(e, v.span(), HINT_L402);
                return None;
            }
        };
        let here = Some(v.span());
        let (msat, unit) = match (raw.msat, raw.sat) {
            (Some(m), None) => (m, 1),
            (None, Some(s)) => match s.checked_mul(1000) {
                Some(m) => (m, 1000),
                None => {
                    self.problem(here, "l402 sat price is too large".into(), HINT_L402);
                    return None;
                }
            },
            (Some(_), Some(_)) => {
                self.problem(here, "l402 names both msat and sat".into(), HINT_L402);
                return None;
            }
            (None, None) => {
                self.problem(here, "l402 names no amount".into(), HINT_L402);
                return None;
            }
        };
        if msat == 0 {
            self.problem(
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
                self.problem(here, format!("unknown l402 mode {other:?}"), HINT_L402);
                return None;
            }
        };
        let bundle = match (mode, raw.bundle) {
            (_, None) => 0,
            (BillingMode::PerCall, Some(_)) => {
                self.problem(
                    here,
                    "bundle has no meaning for a per_call price".into(),
                    HINT_L402,
                );
                return None;
            }
            (BillingMode::Balance, Some(b)) => match b.checked_mul(unit) {
                Some(b) if b >= msat => b,
                _ => {
                    self.problem(
                        here,
                        "a balance bundle must buy at least one call".into(),
                        HINT_L402,
                    );
                    return None;
                }
            },
            (BillingMode::TimePass, Some(0)) => {
                self.problem(here, "a time pass of 0 seconds".into(), HINT_L402);
                return None;
            }
            (BillingMode::TimePass, Some(secs)) => secs,
        };
        Some(L402Price { msat, mode, bundle })
    }

    /// Top-level `[tools."<mount>/<name>"]` keys price one mount's tool on the merged endpoint:
    /// the mount must be one the endpoint merges, and the name not empty.
    pub(super) fn merged_tool_keys(&mut self, tools: &DeTable<'_>, cfg: &Config) {
        const HINT: &str = "write [tools.\"<mount>/<tool>\"] with the name of a merged [[mount]], or [tools.<tool>] for the tool on every mount";
        for k in tools.keys() {
            let key: &str = k.get_ref();
            let Some((mount, tool)) = key.split_once('/') else {
                continue;
            };
            let merged = cfg.merge.as_ref().is_some_and(|m| {
                cfg.mounts.iter().any(|x| x.name == mount)
                    && (m.mounts.is_empty() || m.mounts.iter().any(|n| n == mount))
            });
            if !merged {
                self.problem(
                    Some(k.span()),
                    format!(
                        "[tools.{}] names mount {mount:?}, which no [merge] endpoint merges",
                        quote_key(key)
                    ),
                    HINT,
                );
            } else if tool.is_empty() {
                self.problem(
                    Some(k.span()),
                    format!("[tools.{}] names no tool", quote_key(key)),
                    HINT,
                );
            }
        }
    }

    /// `[methods]` keys are JSON-RPC method names other than `tools/call`.
    pub(super) fn method_names(&mut self, t: &DeTable<'_>) {
        for k in t.keys() {
            let m: &str = k.get_ref();
            if m == "tools/call" {
                self.problem(
                    Some(k.span()),
                    "tools/call cannot be priced under [methods]".into(),
                    "price tools under [tools.<name>] and [tools.default]",
                );
            } else if m.is_empty() || m.contains(char::is_whitespace) {
                self.problem(
                    Some(k.span()),
                    format!("{m:?} is not a JSON-RPC method name"),
                    "use the method as MCP names it, e.g. [methods.\"resources/read\"]",
                );
            }
        }
    }
}
