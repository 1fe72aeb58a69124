//! Prices: `[tools.<name>]`, `[methods."<method>"]` and a mount's own. A price is
//! `free = true`, or any of the rails' keys (`pow = <effort>`, `l402 = { msat | sat = N, mode,
//! bundle }`, `oauth = true | { scopes = […] }`, …; several: the caller chooses), each value read
//! by its rail ([`turnpike_conf::RailConf::price`]). A priced one may say `mode = "shadow"`: a
//! dry run, published and paid as usual but letting through, logged and counted, a call it would
//! refuse (`mode = "enforce"`, the default, refuses it).

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::DeTable;
use turnpike_conf::quote_key;

use super::reader::Gx;
use super::types::{Config, PriceConfig};

/// The key of a price that is not a rail's.
const FREE: &str = "free";
/// The access rule of a tool (`[tools.<name>]` only).
const POLICY: &str = "policy";
/// `enforce` (the default) or `shadow` (a dry run).
const MODE: &str = "mode";

impl Gx<'_> {
    pub(super) fn prices(&mut self, t: &DeTable<'_>, table: &str) -> BTreeMap<String, PriceConfig> {
        let mut out = BTreeMap::new();
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            let section = format!("[{table}.{}]", quote_key(name));
            let Some(pt) = self.table(v, &section) else {
                continue;
            };
            if let Some(mut p) = self.price(pt, &section, v.span()) {
                p.policy = self.tool_policy(pt, table, name, &section);
                out.insert(name.to_owned(), p);
            }
        }
        out
    }

    fn price(&mut self, t: &DeTable<'_>, section: &str, span: Range<usize>) -> Option<PriceConfig> {
        let before = self.problems.len();
        let rails = self.rails;
        let known = || std::iter::once(FREE).chain(rails.iter().map(|r| r.id().as_str()));
        for k in t.keys() {
            let name: &str = k.get_ref();
            if name != POLICY && name != MODE && !known().any(|x| x == name) {
                self.problem(
                    Some(k.span()),
                    format!("unknown rail or key `{name}` in {section}"),
                    &format!(
                        "the keys of {section} are: {}",
                        known().chain([MODE]).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        let hint = turnpike_conf::price_hint(rails);
        let free = self.field::<bool>(t, FREE, &hint);
        let mut offers = Vec::new();
        let mut named = false;
        for rail in rails {
            let Some(v) = t.get(rail.id().as_str()) else {
                continue;
            };
            named = true;
            self.rail_prices.push((rail.id(), v.span()));
            offers.extend(rail.prices(self, v));
        }
        let priced = !offers.is_empty();
        let shadow = self.price_mode(t, section, free.as_ref().map(|(f, _)| *f));
        match (&free, priced) {
            (Some((true, s)), true) => self.problem(
                Some(s.clone()),
                format!("{section} is both free and priced"),
                &hint,
            ),
            (Some((false, s)), false) => self.problem(
                Some(s.clone()),
                format!("{section} says free = false but names no price"),
                &hint,
            ),
            (None, false) if t.get(FREE).is_none() && !named && self.problems.len() == before => {
                self.problem(Some(span), format!("{section} names no price"), &hint)
            }
            _ => {}
        }
        if self.problems.len() > before {
            return None;
        }
        Some(PriceConfig {
            free: free.is_some_and(|(f, _)| f),
            offers,
            policy: None,
            shadow,
        })
    }

    /// `mode = "enforce" | "shadow"` of a price: whether it is a dry run. A free price
    /// (`free = true`) has no mode.
    fn price_mode(&mut self, t: &DeTable<'_>, section: &str, free: Option<bool>) -> bool {
        const HINT: &str = "write mode = \"shadow\" for a dry run of the price (a call it would refuse goes on free, logged and counted) or mode = \"enforce\" (the default); docs/POLICY.md";
        let Some(v) = t.get(MODE) else {
            return false;
        };
        if free == Some(true) {
            self.problem(
                Some(v.span()),
                format!("{section} has both free and a mode"),
                "a mode belongs to a price; remove free, or remove mode",
            );
            return false;
        }
        let Some((mode, span)) = self.field::<String>(t, MODE, HINT) else {
            return false;
        };
        match mode.as_str() {
            "enforce" => false,
            "shadow" => true,
            other => {
                self.problem(
                    Some(span),
                    format!("mode in {section} must be \"enforce\" or \"shadow\", not {other:?}"),
                    HINT,
                );
                false
            }
        }
    }

    /// `policy = "<expr>"` of `[tools.<name>]`: a CEL expression (compiled here, a problem at
    /// its place); refused elsewhere.
    fn tool_policy(
        &mut self,
        t: &DeTable<'_>,
        table: &str,
        name: &str,
        section: &str,
    ) -> Option<String> {
        const HINT: &str = "write policy = \"<CEL expression>\" under [tools.<name>]: the tool may be called only when it holds (docs/POLICY.md)";
        let v = t.get(POLICY)?;
        if table != "tools" || name == "default" {
            self.problem(
                Some(v.span()),
                format!("{section} cannot have a policy"),
                "use a [[policy]] rule (docs/POLICY.md)",
            );
            return None;
        }
        let (expr, span) = self.field::<String>(t, POLICY, HINT)?;
        self.cel(&expr, Some(span), &format!("{section} policy"));
        Some(expr)
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
