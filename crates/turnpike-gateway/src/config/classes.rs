//! `[classes.<name>]`: price/limit classes a `[[policy]]` rule with `action = "class"` puts a
//! caller in. A class has a limits bucket of its own (`[classes.<name>.limits]`, the keys of
//! `[limits.default]`) and prices of its own (`[classes.<name>.tools.<tool>]`,
//! `[classes.<name>.methods."<method>"]`, any price form), each replacing the gateway's for
//! the callers of the class; what a class does not name stays as the gateway has it.

use std::collections::BTreeMap;

use toml::de::DeValue;
use toml::Spanned;
use turnpike_conf::{quote_key, Section};
use turnpike_core::Policy;
use turnpike_limits::IdentityQuotaConfig;

use super::hints::HINT_LIMITS;
use super::reader::Gx;
use super::types::{ClassConfig, Config};

pub(crate) const HINT_CLASSES: &str = "write [classes.<name>] with limits (the keys of [limits.default]: burst, rate, concurrency), tools.<tool> and methods.\"<method>\" (prices, as [tools.<tool>]); a [[policy]] rule with action = \"class\" and class = \"<name>\" puts callers in it (docs/POLICY.md)";

impl Gx<'_> {
    /// Every `[classes.<name>]`.
    pub(super) fn classes(&mut self, v: &Spanned<DeValue<'_>>) -> BTreeMap<String, ClassConfig> {
        let mut out = BTreeMap::new();
        let Some(t) = self.table(v, "[classes]") else {
            return out;
        };
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            let section = format!("[classes.{}]", quote_key(name));
            if name.is_empty() {
                self.problem(Some(k.span()), "a class needs a name".into(), HINT_CLASSES);
                continue;
            }
            let Some(ct) = self.table(v, &section) else {
                continue;
            };
            let mut class = ClassConfig::default();
            for (key, value) in ct.iter() {
                match key.get_ref().as_ref() {
                    "limits" => {
                        let what = format!("[classes.{}.limits]", quote_key(name));
                        class.limits = self.section::<IdentityQuotaConfig>(
                            value,
                            Section {
                                serde_words: true,
                                ..Section::new(&what, HINT_LIMITS)
                            },
                        );
                        if let (Some(l), Some(lt)) = (&class.limits, self.table(value, &what)) {
                            if l.burst == 0 {
                                let at = lt.get("burst").map(|b| b.span());
                                self.problem(
                                    at,
                                    format!("{what} burst must be at least 1"),
                                    HINT_LIMITS,
                                );
                            }
                            if l.concurrency == Some(0) {
                                let at = lt.get("concurrency").map(|b| b.span());
                                self.problem(
                                    at,
                                    format!("{what} concurrency must be at least 1 (omit it for the default's)"),
                                    HINT_LIMITS,
                                );
                            }
                        }
                    }
                    "tools" => {
                        let what = format!("classes.{}.tools", quote_key(name));
                        if let Some(tt) = self.table(value, &format!("[{what}]")) {
                            class.tools = self.prices(tt, &what);
                        }
                    }
                    "methods" => {
                        let what = format!("classes.{}.methods", quote_key(name));
                        if let Some(mt) = self.table(value, &format!("[{what}]")) {
                            class.methods = self.prices(mt, &what);
                            self.method_names(mt);
                        }
                    }
                    other => self.problem(
                        Some(key.span()),
                        format!("unknown key `{other}` in {section}"),
                        HINT_CLASSES,
                    ),
                }
            }
            out.insert(name.to_owned(), class);
        }
        out
    }
}

impl Config {
    /// The prices of class `name`: the gateway's ([`Config::policy`]) with the class's own in
    /// their place. `None` for a class the file does not define.
    pub fn class_policy(&self, name: &str) -> Option<Policy> {
        let class = self.classes.get(name)?;
        let mut p = self.policy();
        for (tool, price) in &class.tools {
            if tool == "default" {
                p.default_tool = price.to_price();
            } else {
                p.tools.insert(tool.clone(), price.to_price());
            }
        }
        for (m, price) in &class.methods {
            p.methods.insert(m.clone(), price.to_price());
        }
        Some(p)
    }
}
