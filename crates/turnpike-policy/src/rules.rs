//! Rules and their evaluation: first match wins, default allow; a rule in shadow mode is
//! evaluated as if enforced but only says what it would have refused.

use std::sync::Arc;

use cel::{Context, Env, Program, Value};

use crate::bounds::{self, Reads};
use crate::context::{call_value, identity_value, CallView, Caller};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The call goes on (to the limits and the upstream).
    Allow,
    /// The call is refused with the rule's reason.
    Deny,
    /// The caller is put in the rule's price/limit class ([`RuleSpec::class`]) for this call:
    /// its prices and its limits bucket. Class rules are weighed apart from allow and deny
    /// ([`Scope::class`]); [`Scope::judge`] and listing pass them by.
    Class,
}

/// Whether a rule decides calls or only counts what it would decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The rule decides.
    #[default]
    Enforce,
    /// The rule is evaluated as if enforced; a call it would refuse goes through and is counted.
    Shadow,
}

/// The reason given for a refusal when the rule names none.
pub const DEFAULT_REASON: &str = "this call is not allowed by the gateway's policy";

/// One rule as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Its name (logs and metrics).
    pub name: String,
    /// The CEL expression; the rule matches when it is `true`.
    pub when: String,
    /// What a match does.
    pub action: Action,
    /// What a refused caller is told (`None`: [`DEFAULT_REASON`]).
    pub reason: Option<String>,
    /// The tools the rule is about (`tools/call` of one of them only); `None`: every call.
    pub tools: Option<Vec<String>>,
    /// Enforced or shadow.
    pub mode: Mode,
    /// The class a matching rule picks (`action = "class"` only).
    pub class: Option<String>,
}

/// A rule that did not compile: where in its expression (byte offset) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    /// Byte offset in the expression.
    pub offset: usize,
    /// What is wrong (CEL's own text for a syntax error).
    pub message: String,
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    spec: RuleSpec,
    program: Program,
    reads: Reads,
}

impl Rule {
    /// Compiles `spec`'s expression within the bounds of [`crate::bounds`].
    pub fn compile(spec: RuleSpec) -> Result<Rule, CompileError> {
        let program = compile_expr(&spec.when)?;
        let reads = bounds::check(&spec.when).unwrap_or_default();
        Ok(Rule {
            spec,
            program,
            reads,
        })
    }

    /// The rule as configured.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The class a matching class rule picks (`None` for allow and deny rules).
    pub fn class(&self) -> Option<&str> {
        match self.spec.action {
            Action::Class => self.spec.class.as_deref(),
            _ => None,
        }
    }

    /// What a refused caller is told.
    pub fn reason(&self) -> &str {
        self.spec.reason.as_deref().unwrap_or(DEFAULT_REASON)
    }

    /// Whether the rule is about this call at all (its `tools`).
    fn applies(&self, call: &CallView<'_>) -> bool {
        match &self.spec.tools {
            None => true,
            Some(tools) => {
                call.method == "tools/call"
                    && call
                        .tool
                        .is_some_and(|t| tools.iter().any(|x| x.as_str() == t))
            }
        }
    }

    /// Whether the rule matches in `ctx`. An expression that fails (a missing key, a wrong
    /// type) or gives something other than a bool fails closed: a deny rule matches, an allow
    /// rule does not.
    fn matches(&self, ctx: &Context<'_, '_>) -> bool {
        match self.program.execute(ctx) {
            Ok(Value::Bool(b)) => b,
            Ok(_) => {
                tracing::debug!(target: "turnpike::policy", rule = %self.spec.name, "rule gave no bool");
                self.spec.action == Action::Deny
            }
            Err(e) => {
                tracing::debug!(target: "turnpike::policy", rule = %self.spec.name, error = %e, "rule failed");
                self.spec.action == Action::Deny
            }
        }
    }
}

/// Compiles one CEL expression within the bounds.
pub fn compile_expr(src: &str) -> Result<Program, CompileError> {
    bounds::check(src).map_err(|p| CompileError {
        offset: p.offset,
        message: p.message,
    })?;
    Program::compile(src).map_err(|errs| {
        let first = errs.errors.first();
        let offset = first.map_or(0, |e| offset_of(src, e.pos.0, e.pos.1));
        let message = first.map_or_else(|| errs.to_string(), |e| e.msg.clone());
        CompileError { offset, message }
    })
}

/// The byte offset of CEL's (1-based line, 0-based column in characters) in `src`.
fn offset_of(src: &str, line: isize, col: isize) -> usize {
    let line = usize::try_from(line).unwrap_or(1).max(1);
    let col = usize::try_from(col).unwrap_or(0);
    let start: usize = src
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum::<usize>()
        .min(src.len());
    let rest = &src[start..];
    start
        + rest
            .char_indices()
            .nth(col)
            .map_or(rest.trim_end_matches('\n').len(), |(i, _)| i)
}

/// The outcome for one call.
#[derive(Debug, Default, Clone, Copy)]
pub struct Judgement<'r> {
    /// The enforced rule that refuses the call, if any.
    pub refused: Option<&'r Rule>,
    /// The shadow rule that would have refused a call that goes through, if any.
    pub would_refuse: Option<&'r Rule>,
}

/// The class rules' outcome for one call ([`Scope::class`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Classing<'r> {
    /// The first enforced class rule that matches: the call's class.
    pub class: Option<&'r Rule>,
    /// A class rule in shadow mode that, enforced, would have put the call in another class
    /// than it is in (the first matching class rule when the shadow rules are weighed as if
    /// enforced).
    pub would_class: Option<&'r Rule>,
}

/// Every rule, in order.
pub struct Policy {
    rules: Vec<Rule>,
    reads_arguments: bool,
    has_classes: bool,
    /// CEL's standard functions, built once (a context per call shares them).
    env: Arc<Env>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Vec::new())
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules)
            .finish()
    }
}

impl Policy {
    /// A policy of `rules`, evaluated in this order.
    pub fn new(rules: Vec<Rule>) -> Policy {
        let reads_arguments = rules.iter().any(|r| r.reads.arguments);
        let has_classes = rules.iter().any(|r| r.spec.action == Action::Class);
        Policy {
            rules,
            reads_arguments,
            has_classes,
            env: Arc::new(Env::stdlib()),
        }
    }

    /// Whether there are no rules (everything is allowed and nothing need be built).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether some rule picks a class (`action = "class"`): else no call need be weighed
    /// for one.
    pub fn has_classes(&self) -> bool {
        self.has_classes
    }

    /// Whether only class rules are written: allow and deny rules would judge nothing.
    pub fn only_classes(&self) -> bool {
        self.rules.iter().all(|r| r.spec.action == Action::Class)
    }

    /// Whether some rule reads `call.arguments` (else the gateway need not give them).
    pub fn reads_arguments(&self) -> bool {
        self.reads_arguments
    }

    /// The rules' view of `caller` at `now` (Unix seconds), shared by the calls judged in it.
    pub fn scope(&self, caller: &Caller<'_>, now: i64) -> Scope<'_> {
        let mut ctx = Context::with_env(self.env.clone());
        ctx.add_variable_as_val("identity", identity_value(caller));
        ctx.add_variable_from_value("now", Value::Int(now));
        Scope { policy: self, ctx }
    }
}

/// A policy with one caller's variables bound.
pub struct Scope<'p> {
    policy: &'p Policy,
    ctx: Context<'static, 'static>,
}

impl<'p> Scope<'p> {
    /// The judgement on `call`: the first enforced rule that matches decides (none: allowed);
    /// the shadow rules are weighed as if enforced, and the first rule of that reading names
    /// the refusal that enforcing them would have made.
    pub fn judge(&self, call: &CallView<'_>) -> Judgement<'p> {
        let mut inner = self.ctx.new_inner_scope();
        inner.add_variable_as_val("call", call_value(call));
        let mut enforced: Option<&'p Rule> = None;
        let mut as_if: Option<&'p Rule> = None;
        for rule in &self.policy.rules {
            if rule.spec.action == Action::Class || !rule.applies(call) || !rule.matches(&inner) {
                continue;
            }
            as_if.get_or_insert(rule);
            if rule.spec.mode == Mode::Enforce {
                enforced = Some(rule);
                break;
            }
        }
        let refused = enforced.filter(|r| r.spec.action == Action::Deny);
        let would_refuse = match (refused, as_if) {
            (None, Some(r)) if r.spec.action == Action::Deny => Some(r),
            _ => None,
        };
        Judgement {
            refused,
            would_refuse,
        }
    }

    /// The class of `call` for this caller: the first enforced class rule that matches
    /// (none: the default class, the gateway's own prices and limits). A class rule whose
    /// expression fails does not match. Shadow class rules are weighed as if enforced: the
    /// first of that reading, when it names another class, is the one they would have picked.
    pub fn class(&self, call: &CallView<'_>) -> Classing<'p> {
        let mut out = Classing::default();
        if !self.policy.has_classes {
            return out;
        }
        let mut inner = self.ctx.new_inner_scope();
        inner.add_variable_as_val("call", call_value(call));
        let mut as_if: Option<&'p Rule> = None;
        for rule in &self.policy.rules {
            if rule.spec.action != Action::Class || !rule.applies(call) || !rule.matches(&inner) {
                continue;
            }
            as_if.get_or_insert(rule);
            if rule.spec.mode == Mode::Enforce {
                out.class = Some(rule);
                break;
            }
        }
        out.would_class = as_if.filter(|r| {
            r.spec.mode == Mode::Shadow && r.class() != out.class.and_then(Rule::class)
        });
        out
    }

    /// A picker of the class of each tool of one `tools/list` answer, for this caller: see
    /// [`ClassLister::class`].
    pub fn class_lister(&self) -> ClassLister<'_, 'p> {
        let class_rules = || {
            self.policy
                .rules
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

    /// Whether `tool` is one the caller may call, for a `tools/list` answer: see
    /// [`Lister::may_list`] (one tool; a whole list is judged faster by one [`Lister`]).
    pub fn may_list(&self, tool: &str, annotations: Option<&serde_json::Value>) -> bool {
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
            ctx: None,
            memo: self.policy.rules.iter().map(|_| Memo::default()).collect(),
        }
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
    memo: Vec<(Option<serde_json::Value>, Option<&'p Rule>)>,
}

impl<'p> ClassLister<'_, 'p> {
    /// The class rule that picks the class of a `tools/call` of `tool` with its `annotations`
    /// and no arguments (a class rule reading the arguments then fails, and does not match);
    /// `None`: the default class.
    pub fn class(
        &mut self,
        tool: &str,
        annotations: Option<&serde_json::Value>,
    ) -> Option<&'p Rule> {
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

/// What a rule gave for the tools already judged, when its result does not depend on the
/// tool's name: once for every tool, or once per distinct annotations.
#[derive(Default)]
struct Memo {
    constant: Option<bool>,
    by_annotations: Vec<(Option<serde_json::Value>, bool)>,
}

/// The most distinct annotations a rule's results are remembered for, per list.
const MEMO_ANNOTATIONS: usize = 32;

/// Judges the tools of one `tools/list` answer for one caller ([`Scope::lister`]). A rule
/// whose text reads neither `call.tool` nor `call` as a whole gives the same result for every
/// tool with the same annotations: it is evaluated once per distinct annotations.
pub struct Lister<'s, 'p> {
    scope: &'s Scope<'p>,
    method: &'static str,
    ctx: Option<Context<'s, 'static>>,
    memo: Vec<Memo>,
}

impl Lister<'_, '_> {
    /// Whether `tool` is one the caller may call: its rules read as for `tools/call` of it
    /// with its `annotations` and no arguments; an enforced rule that reads the arguments
    /// counts as "may call": a deny rule of that kind is passed over, an allow rule lists the
    /// tool (the call itself is judged when made). Shadow rules hide nothing.
    pub fn may_list(&mut self, tool: &str, annotations: Option<&serde_json::Value>) -> bool {
        let call = CallView {
            method: self.method,
            tool: Some(tool),
            arguments: None,
            annotations,
        };
        let mut bound = false;
        for (i, rule) in self.scope.policy.rules.iter().enumerate() {
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
            let remembered = if rule.reads.tool {
                None
            } else if rule.reads.annotations {
                self.memo[i]
                    .by_annotations
                    .iter()
                    .find(|(a, _)| a.as_ref() == annotations)
                    .map(|(_, m)| *m)
            } else {
                self.memo[i].constant
            };
            let matched = match remembered {
                Some(m) => m,
                None => {
                    let ctx = self
                        .ctx
                        .get_or_insert_with(|| self.scope.ctx.new_inner_scope());
                    if !bound {
                        ctx.add_variable_as_val("call", call_value(&call));
                        bound = true;
                    }
                    let m = rule.matches(ctx);
                    let memo = &mut self.memo[i];
                    match (rule.reads.tool, rule.reads.annotations) {
                        (true, _) => {}
                        (false, true) if memo.by_annotations.len() < MEMO_ANNOTATIONS => {
                            memo.by_annotations.push((annotations.cloned(), m));
                        }
                        (false, true) => {}
                        (false, false) => memo.constant = Some(m),
                    }
                    m
                }
            };
            if matched {
                return rule.spec.action == Action::Allow;
            }
        }
        true
    }
}
