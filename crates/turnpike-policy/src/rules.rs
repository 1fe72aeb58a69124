//! Rules and their evaluation: first match wins, default allow; a rule in shadow mode is
//! evaluated as if enforced but only says what it would have refused.

use std::sync::Arc;

use cel::{Context, Env, Program, Value};

use crate::bounds::{self, Reads};
use crate::context::{identity_value, CallVars, CallView, Caller};
use crate::parts::Parts;

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

impl RuleSpec {
    /// A rule `name` taking `action` when `when` holds: enforced, on every call, with the
    /// default reason and no class.
    pub fn enforce(name: &str, when: &str, action: Action) -> Self {
        RuleSpec {
            name: name.into(),
            when: when.into(),
            action,
            reason: None,
            tools: None,
            mode: Mode::Enforce,
            class: None,
        }
    }
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
    pub(crate) spec: RuleSpec,
    program: Program,
    pub(crate) reads: Reads,
    /// The expression's top-level `&&` (or `||`) operands, for lists.
    pub(crate) parts: Parts,
}

impl Rule {
    /// Compiles `spec`'s expression within the bounds of [`crate::bounds`].
    pub fn compile(spec: RuleSpec) -> Result<Rule, CompileError> {
        let program = compile_expr(&spec.when)?;
        let reads = bounds::check(&spec.when).unwrap_or_default();
        let parts = Parts::of(program.expression());
        Ok(Rule {
            spec,
            program,
            reads,
            parts,
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
    pub(crate) fn applies(&self, call: &CallView<'_>) -> bool {
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
    pub(crate) policy: &'p Policy,
    pub(crate) ctx: Context<'static, 'static>,
}

impl<'p> Scope<'p> {
    /// The judgement on `call`: the first enforced rule that matches decides (none: allowed);
    /// the shadow rules are weighed as if enforced, and the first rule of that reading names
    /// the refusal that enforcing them would have made.
    pub fn judge(&self, call: &CallView<'_>) -> Judgement<'p> {
        let vars = CallVars::new(*call);
        let inner = vars.scope(&self.ctx);
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
        let vars = CallVars::new(*call);
        let inner = vars.scope(&self.ctx);
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
}
