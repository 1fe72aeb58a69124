//! `[[policy]]`: access rules in CEL (`turnpike-policy`), each expression compiled here so
//! that a mistake in one is reported at its `line:col` in the file, with CEL's own words.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;
use turnpike_conf::Section;
use turnpike_policy::{Action, Mode, Rule, RuleSpec};

use super::reader::Gx;
use super::types::PriceConfig;

pub(crate) const HINT_POLICY: &str = "write each rule as [[policy]] with name = \"…\", when = \"<CEL expression>\", action = \"allow\", \"deny\" or \"class\" (with class = \"<a [classes.<name>] table>\"), and optionally reason, tools and mode = \"shadow\" (docs/POLICY.md)";
const HINT_CEL: &str =
    "see docs/POLICY.md for the variables (identity, call, now) and the bounds a rule must keep";

/// `[[policy]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyKeys {
    name: String,
    when: String,
    #[serde(deserialize_with = "action")]
    action: Action,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default, deserialize_with = "mode")]
    mode: Mode,
    #[serde(default)]
    class: Option<String>,
}

fn action<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
    match String::deserialize(d)?.as_str() {
        "allow" => Ok(Action::Allow),
        "deny" => Ok(Action::Deny),
        "class" => Ok(Action::Class),
        other => Err(serde::de::Error::custom(format!(
            "action must be \"allow\", \"deny\" or \"class\", not {other:?}"
        ))),
    }
}

fn mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
    match String::deserialize(d)?.as_str() {
        "enforce" => Ok(Mode::Enforce),
        "shadow" => Ok(Mode::Shadow),
        other => Err(serde::de::Error::custom(format!(
            "mode must be \"enforce\" or \"shadow\", not {other:?}"
        ))),
    }
}

impl Gx<'_> {
    /// Every `[[policy]]` rule, in order; each expression compiled (a problem at its place
    /// when it does not).
    pub(super) fn policy_rules(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<RuleSpec> {
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(
                Some(v.span()),
                "policy must be an array of tables".into(),
                HINT_POLICY,
            );
            return Vec::new();
        };
        let mut out: Vec<RuleSpec> = Vec::new();
        for item in items.iter() {
            let Some(t) = self.table(item, "[[policy]]") else {
                continue;
            };
            let Some(k) = self.section_with(
                t,
                item.span(),
                Section::new("[[policy]]", HINT_POLICY),
                |d| PolicyKeys::deserialize(d),
            ) else {
                continue;
            };
            let name_span = t.get("name").map(|v| v.span());
            if k.name.is_empty() || out.iter().any(|r| r.name == k.name) {
                self.problem(
                    name_span,
                    format!("[[policy]] name {:?} is empty or used twice", k.name),
                    "give each rule a name of its own",
                );
            }
            if k.tools.as_ref().is_some_and(Vec::is_empty) {
                self.problem(
                    t.get("tools").map(|v| v.span()),
                    format!("[[policy]] {:?}: tools is empty", k.name),
                    "name the tools the rule is about, or leave tools out for every call",
                );
            }
            match (k.action, &k.class) {
                (Action::Class, None) => self.problem(
                    t.get("action").map(|v| v.span()),
                    format!(
                        "[[policy]] {:?}: action = \"class\" needs class = \"<name>\"",
                        k.name
                    ),
                    HINT_POLICY,
                ),
                (Action::Allow | Action::Deny, Some(_)) => self.problem(
                    t.get("class").map(|v| v.span()),
                    format!(
                        "[[policy]] {:?}: class belongs to a rule with action = \"class\"",
                        k.name
                    ),
                    HINT_POLICY,
                ),
                _ => {}
            }
            let when_span = t.get("when").map(|v| v.span());
            self.cel(&k.when, when_span, &format!("[[policy]] {:?}", k.name));
            out.push(RuleSpec {
                name: k.name,
                when: k.when,
                action: k.action,
                reason: k.reason,
                tools: k.tools,
                mode: k.mode,
                class: k.class,
            });
        }
        out
    }

    /// Compiles `expr`, written at `span` of the file, recording a problem at the place of its
    /// first error.
    pub(super) fn cel(&mut self, expr: &str, span: Option<Range<usize>>, what: &str) {
        if let Err(e) = turnpike_policy::compile_expr(expr) {
            let at = span.map(|s| {
                let raw = self.src.get(s.clone()).unwrap_or("");
                // The expression as written (no escapes): its own offset; else the value's start.
                let pos = raw.find(expr).map_or(s.start, |i| s.start + i + e.offset);
                pos..pos
            });
            self.problem(
                at,
                format!("{what}: the CEL expression does not compile: {}", e.message),
                HINT_CEL,
            );
        }
    }
}

/// The rules in the order they are evaluated: each `[tools.<name>]`'s `policy` (the tool
/// refused when it does not hold), then `rules` (`[[policy]]`).
pub(super) fn with_tool_rules(
    tools: &BTreeMap<String, PriceConfig>,
    rules: Vec<RuleSpec>,
) -> Vec<RuleSpec> {
    let own = tools.iter().filter_map(|(name, p)| {
        let expr = p.policy.as_ref()?;
        Some(RuleSpec {
            name: format!("tools.{name}"),
            when: format!("!({expr})"),
            action: Action::Deny,
            reason: Some(format!("the tool {name:?} is not available to this caller")),
            tools: Some(vec![name.clone()]),
            mode: Mode::Enforce,
            class: None,
        })
    });
    own.chain(rules).collect()
}

/// The rules of `specs`, compiled (the reader checked each; one that fails here is an error,
/// never a rule left out).
pub fn compile(specs: &[RuleSpec]) -> Result<turnpike_policy::Policy, String> {
    let rules = specs
        .iter()
        .map(|s| {
            Rule::compile(s.clone())
                .map_err(|e| format!("[[policy]] {:?} does not compile: {e}", s.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(turnpike_policy::Policy::new(rules))
}
