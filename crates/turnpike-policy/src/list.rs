//! A list answer (`tools/list`, `resources/list`, `prompts/list`) filtered for one caller:
//! every item judged as a call of it, hundreds of items per answer, so each rule is split and
//! each of its parts evaluated only as often as what it reads changes.
//!
//! A rule's expression is taken apart at its top-level `&&` (or `||`) into parts ([`Parts`]),
//! each with what it reads of `call` (found in its syntax tree). Within one list the caller,
//! `now`, `call.method` and `call.arguments` (`null`) do not change, so:
//!
//! - a part that reads neither `call.tool` nor `call.annotations` is evaluated once per list;
//! - a part that reads `call.annotations` but not the name once per distinct annotations;
//! - only a part that reads `call.tool` (or `call` as a whole) is evaluated for every item,
//!   with `call` resolved on access ([`CallVars`]: the name lent, nothing built);
//! - the parts that are remembered are weighed first, and a part that decides the rule (a
//!   `false` under `&&`, a `true` under `||`) spares evaluating the others.
//!
//! The result is the expression's own. CEL's `&&` and `||` are commutative: `&&` is `false`
//! when any operand is `false` (even when another fails), else `true` when all are `true`,
//! else an error (an operand that is not a bool counts as one); `||` the other way round.
//! The `cel` crate evaluates them so (`Value::resolve_val`), and a rule whose expression fails
//! fails closed here as when it is evaluated whole ([`crate::Rule`]).

use cel::Context;
use serde_json::Value as Json;

use crate::context::{CallVars, CallView};
use crate::parts::{outcome, Join, Outcome, Parts};
use crate::rules::{Action, Mode, Rule, Scope};

/// What a part (or a whole rule) gave for the items already judged, when it does not read
/// their names: once for every item, or once per distinct annotations.
#[derive(Default)]
struct Memo {
    constant: Option<Outcome>,
    by_annotations: Vec<(Option<Json>, Outcome)>,
}

impl Memo {
    /// The outcome remembered for an item with `annotations` of something that reads them
    /// (`reads_annotations`) or not, else `eval`'s, remembered.
    fn get_or(
        &mut self,
        reads_annotations: bool,
        annotations: Option<&Json>,
        eval: impl FnOnce() -> Outcome,
    ) -> Outcome {
        if !reads_annotations {
            return *self.constant.get_or_insert_with(eval);
        }
        if let Some((_, o)) = self
            .by_annotations
            .iter()
            .find(|(a, _)| a.as_ref() == annotations)
        {
            return *o;
        }
        let o = eval();
        if self.by_annotations.len() < MEMO_ANNOTATIONS {
            self.by_annotations.push((annotations.cloned(), o));
        }
        o
    }
}

/// What one list remembers of one rule: of the rule whole (when no part reads the items'
/// names), and of each part.
struct RuleMemo {
    whole: Memo,
    parts: Vec<Memo>,
}

/// The most distinct annotations a part's outcomes are remembered for, per list.
const MEMO_ANNOTATIONS: usize = 32;

impl<'p> Scope<'p> {
    /// Whether `tool` is one the caller may call, for a `tools/list` answer: see
    /// [`Lister::may_list`] (one tool; a whole list is judged faster by one [`Lister`]).
    pub fn may_list(&self, tool: &str, annotations: Option<&Json>) -> bool {
        self.lister().may_list(tool, annotations)
    }

    /// A judge of the tools of one `tools/list` answer, for this caller.
    pub fn lister(&self) -> Lister<'_, 'p> {
        self.lister_for("tools/call")
    }

    /// A judge of the items of one list answer, each judged as a call of `method` naming it:
    /// `tools/call` for `tools/list`, `resources/read` (by URI) for `resources/list`,
    /// `prompts/get` for `prompts/list`.
    pub fn lister_for(&self, method: &'static str) -> Lister<'_, 'p> {
        Lister {
            scope: self,
            method,
            memo: self
                .policy
                .rules()
                .iter()
                .map(|r| RuleMemo {
                    whole: Memo::default(),
                    parts: r.parts.parts.iter().map(|_| Memo::default()).collect(),
                })
                .collect(),
        }
    }

    /// A picker of the class of each tool of one `tools/list` answer, for this caller: see
    /// [`ClassLister::class`].
    pub fn class_lister(&self) -> ClassLister<'_, 'p> {
        let class_rules = || {
            self.policy
                .rules()
                .iter()
                .filter(|r| r.spec.action == Action::Class)
        };
        ClassLister {
            scope: self,
            by_tool: class_rules().any(|r| r.reads.tool || r.spec.tools.is_some()),
            by_annotations: class_rules().any(|r| r.reads.annotations),
            memo: Vec::new(),
        }
    }
}

/// Judges the items of one list answer for one caller ([`Scope::lister`]), each rule part by
/// part (the module doc).
pub struct Lister<'s, 'p> {
    scope: &'s Scope<'p>,
    method: &'static str,
    /// Per rule.
    memo: Vec<RuleMemo>,
}

impl Lister<'_, '_> {
    /// Whether `tool` is one the caller may call: its rules read as for `tools/call` of it
    /// with its `annotations` and no arguments; an enforced rule that reads the arguments
    /// counts as "may call": a deny rule of that kind is passed over, an allow rule lists the
    /// tool (the call itself is judged when made). Shadow rules hide nothing.
    pub fn may_list(&mut self, tool: &str, annotations: Option<&Json>) -> bool {
        let call = CallView {
            method: self.method,
            tool: Some(tool),
            arguments: None,
            annotations,
        };
        let scope = self.scope;
        let vars = CallVars::new(call);
        // Made when a part is first evaluated for this item.
        let mut ctx: Option<Context<'_, '_>> = None;
        for (rule, memo) in scope.policy.rules().iter().zip(self.memo.iter_mut()) {
            // Class rules pick a price, not whether the tool is listed.
            if rule.spec.mode == Mode::Shadow
                || rule.spec.action == Action::Class
                || !rule.applies(&call)
            {
                continue;
            }
            if rule.reads.arguments {
                // It may refuse some calls of the tool, or allow some: either way, listed.
                match rule.spec.action {
                    Action::Allow => return true,
                    Action::Deny | Action::Class => continue,
                }
            }
            let parts = &rule.parts;
            let mut weigh_parts =
                || weigh(parts, &mut memo.parts, &mut ctx, &vars, scope, annotations);
            let o = if parts.reads.tool {
                weigh_parts()
            } else {
                memo.whole
                    .get_or(parts.reads.annotations, annotations, weigh_parts)
            };
            let matched = match o {
                Outcome::True => true,
                Outcome::False => false,
                Outcome::Failed => {
                    tracing::debug!(target: "turnpike::policy", rule = %rule.spec.name, "rule failed");
                    rule.spec.action == Action::Deny
                }
            };
            if matched {
                return rule.spec.action == Action::Allow;
            }
        }
        true
    }
}

/// Picks the class of each tool of one `tools/list` answer for one caller
/// ([`Scope::class_lister`]). When no class rule reads the tool's name (nor names tools), the
/// class follows the annotations alone: it is picked once per distinct annotations (once for
/// the whole list when no class rule reads them either).
pub struct ClassLister<'s, 'p> {
    scope: &'s Scope<'p>,
    by_tool: bool,
    by_annotations: bool,
    memo: Vec<(Option<Json>, Option<&'p Rule>)>,
}

impl<'p> ClassLister<'_, 'p> {
    /// The class rule that picks the class of a `tools/call` of `tool` with its `annotations`
    /// and no arguments (a class rule reading the arguments then fails, and does not match);
    /// `None`: the default class.
    pub fn class(&mut self, tool: &str, annotations: Option<&Json>) -> Option<&'p Rule> {
        let call = CallView {
            method: "tools/call",
            tool: Some(tool),
            arguments: None,
            annotations,
        };
        if self.by_tool {
            return self.scope.class(&call).class;
        }
        let key = annotations.filter(|_| self.by_annotations);
        if let Some((_, r)) = self.memo.iter().find(|(a, _)| a.as_ref() == key) {
            return *r;
        }
        let r = self.scope.class(&call).class;
        if self.memo.len() < MEMO_ANNOTATIONS {
            self.memo.push((key.cloned(), r));
        }
        r
    }
}

/// The outcome of `parts` for one item: the remembered parts first, then those that read the
/// item's name, until one decides.
fn weigh<'s>(
    parts: &Parts,
    memo: &mut [Memo],
    ctx: &mut Option<Context<'s, 's>>,
    vars: &'s CallVars<'_>,
    scope: &'s Scope<'_>,
    annotations: Option<&Json>,
) -> Outcome {
    let (decisive, otherwise) = match parts.join {
        Join::And => (Outcome::False, Outcome::True),
        Join::Or => (Outcome::True, Outcome::False),
    };
    let mut failed = false;
    for per_item in [false, true] {
        for (part, m) in parts.parts.iter().zip(memo.iter_mut()) {
            if part.reads.tool != per_item {
                continue;
            }
            let mut eval = || {
                let ctx = ctx.get_or_insert_with(|| vars.scope(&scope.ctx));
                outcome(&part.expr, ctx)
            };
            let o = if per_item {
                eval()
            } else {
                m.get_or(part.reads.annotations, annotations, eval)
            };
            if o == decisive {
                return decisive;
            }
            failed |= o == Outcome::Failed;
        }
    }
    if failed {
        Outcome::Failed
    } else {
        otherwise
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::Reads;
    use crate::{Caller, Policy, Rule, RuleSpec};
    use serde_json::json;

    fn parts(src: &str) -> Vec<Reads> {
        let p = cel::Program::compile(src).unwrap();
        Parts::of(p.expression())
            .parts
            .into_iter()
            .map(|p| p.reads)
            .collect()
    }

    #[test]
    fn parts_and_what_each_reads() {
        let tool = Reads {
            tool: true,
            ..Reads::default()
        };
        let ann = Reads {
            annotations: true,
            ..Reads::default()
        };
        let every = Reads {
            tool: true,
            arguments: true,
            annotations: true,
        };
        assert_eq!(
            parts("identity.kind == 'a' && call.tool.startsWith('x') && !call.annotations.readOnlyHint"),
            [Reads::default(), tool, ann]
        );
        assert_eq!(
            parts("(a || call.tool == 'x') && has(call.annotations.title)"),
            [tool, ann]
        );
        assert_eq!(parts("a || b || call.method == 'm'").len(), 3);
        assert_eq!(parts("size(call) > 0"), [every]);
        assert_eq!(parts("call['tool'] == 'x'"), [every]);
        assert_eq!(parts("[1].exists(call, call == 1)"), [every]);
        assert_eq!(parts("call.other == 1"), [every]);
        assert!(parts("{'k': call.arguments}.k == null")[0].arguments);
    }

    fn rule(when: &str, action: Action) -> Rule {
        Rule::compile(RuleSpec::enforce("r", when, action)).unwrap()
    }

    /// Judged part by part, a list gives what judging each tool whole gives, failures and
    /// all (a class rule: listed and allowed alike).
    #[test]
    fn parts_judge_as_the_whole() {
        let exprs = [
            "identity.kind == 'anonymous' && call.tool.startsWith('t1') && !call.annotations.readOnlyHint",
            "call.tool.startsWith('t1') || call.annotations.readOnlyHint",
            "call.annotations.readOnlyHint && call.tool == 't2'",
            "call.annotations.nope || call.tool == 't3'",
            "call.tool == 't3' && call.annotations.nope",
            "call.annotations.nope && call.tool == 't4'",
            "identity.kind == 'oauth' && call.annotations.nope",
            "identity.nope || call.annotations.readOnlyHint",
            "identity.kind == 'anonymous' || !call.annotations.readOnlyHint",
            "identity.nope || call.tool == 't5'",
            "call.tool || true",
            "1 && call.tool == 't1'",
            "size(call.tool) > 2 == (now > 0)",
        ];
        let tools: Vec<(String, Option<Json>)> = (0..8)
            .map(|i| {
                let ann = match i % 3 {
                    0 => Some(json!({"readOnlyHint": true})),
                    1 => Some(json!({"readOnlyHint": false})),
                    _ => None,
                };
                (format!("t{i}"), ann)
            })
            .collect();
        let who = Caller {
            kind: "anonymous",
            id: "anon:192.0.2.1",
            ..Caller::default()
        };
        for when in exprs {
            // A class rule neither hides a tool nor refuses a call.
            for action in [Action::Allow, Action::Deny, Action::Class] {
                let p = Policy::new(vec![rule(when, action)]);
                let s = p.scope(&who, 1);
                let mut l = s.lister();
                for (name, ann) in &tools {
                    let whole = s
                        .judge(&CallView {
                            method: "tools/call",
                            tool: Some(name),
                            arguments: None,
                            annotations: ann.as_ref(),
                        })
                        .refused
                        .is_none();
                    assert_eq!(
                        l.may_list(name, ann.as_ref()),
                        whole,
                        "{when} ({action:?}) on {name} {ann:?}"
                    );
                }
            }
        }
    }
}
