//! A rule's expression taken apart at its top-level `&&` (or `||`) into parts, each with what
//! it reads of `call`, found in its syntax tree; how lists use them is in `list`.

use cel::common::ast::{operators, EntryExpr, Expr};
use cel::common::types::CelBool;
use cel::{Context, IdedExpr, Value};

use crate::bounds::Reads;

/// How a rule's parts combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Join {
    And,
    Or,
}

/// What a part gave: a bool, or anything else (an error, a value that is not a bool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    True,
    False,
    Failed,
}

/// A rule's expression as the operands of its top-level `&&` (or `||`): one part when it is
/// neither.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) join: Join,
    pub(crate) parts: Vec<Part>,
    /// What the parts read, together.
    pub(crate) reads: Reads,
}

#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) expr: IdedExpr,
    pub(crate) reads: Reads,
}

impl Parts {
    /// The parts of the expression `root`.
    pub(crate) fn of(root: &IdedExpr) -> Parts {
        let join = match &root.expr {
            Expr::Call(c) if c.args.len() == 2 && c.func_name == operators::LOGICAL_OR => Join::Or,
            _ => Join::And,
        };
        let op = match join {
            Join::And => operators::LOGICAL_AND,
            Join::Or => operators::LOGICAL_OR,
        };
        let mut leaves = Vec::new();
        flatten(root, op, &mut leaves);
        let parts: Vec<Part> = leaves
            .into_iter()
            .map(|e| {
                let mut reads = Reads::default();
                reads_of(e, &mut reads);
                Part {
                    expr: e.clone(),
                    reads,
                }
            })
            .collect();
        let reads = parts.iter().fold(Reads::default(), |a, p| Reads {
            arguments: a.arguments || p.reads.arguments,
            annotations: a.annotations || p.reads.annotations,
            tool: a.tool || p.reads.tool,
        });
        Parts { join, parts, reads }
    }
}

/// The operands of the `op` calls at the top of `e`, left to right.
fn flatten<'e>(e: &'e IdedExpr, op: &str, out: &mut Vec<&'e IdedExpr>) {
    match &e.expr {
        Expr::Call(c) if c.args.len() == 2 && c.func_name == op => {
            flatten(&c.args[0], op, out);
            flatten(&c.args[1], op, out);
        }
        _ => out.push(e),
    }
}

/// Whether `name` is the identifier `call` (`.call` too: absolute).
fn is_call(name: &str) -> bool {
    name == "call" || name == ".call"
}

/// What `e` reads of `call`, found in its tree: `call.<field>` reads that field, `call`
/// otherwise (alone, indexed, in a list, as a comprehension's range) reads all of it. A name
/// it cannot tell apart (a comprehension variable named `call`) counts as reading all.
fn reads_of(e: &IdedExpr, r: &mut Reads) {
    match &e.expr {
        Expr::Select(s) => match &s.operand.expr {
            Expr::Ident(name) if is_call(name) => match s.field.as_str() {
                "method" => {}
                "arguments" => r.arguments = true,
                "annotations" => r.annotations = true,
                "tool" => r.tool = true,
                _ => all(r),
            },
            _ => reads_of(&s.operand, r),
        },
        Expr::Ident(name) if is_call(name) => all(r),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                reads_of(t, r);
            }
            for a in &c.args {
                reads_of(a, r);
            }
        }
        Expr::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                reads_of(x, r);
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                reads_of(x, r);
            }
        }
        Expr::Map(m) => entries(m.entries.iter().map(|e| &e.expr), r),
        Expr::Struct(s) => entries(s.entries.iter().map(|e| &e.expr), r),
    }
}

fn entries<'e>(entries: impl Iterator<Item = &'e EntryExpr>, r: &mut Reads) {
    for e in entries {
        match e {
            EntryExpr::MapEntry(m) => {
                reads_of(&m.key, r);
                reads_of(&m.value, r);
            }
            EntryExpr::StructField(f) => reads_of(&f.value, r),
        }
    }
}

fn all(r: &mut Reads) {
    r.tool = true;
    r.arguments = true;
    r.annotations = true;
}

/// What `expr` gives in `ctx`.
pub(crate) fn outcome(expr: &IdedExpr, ctx: &Context<'_, '_>) -> Outcome {
    match Value::resolve_val(expr, ctx) {
        Ok(v) => match v.downcast_ref::<CelBool>().map(|b| *b.inner()) {
            Some(true) => Outcome::True,
            Some(false) => Outcome::False,
            None => Outcome::Failed,
        },
        Err(_) => Outcome::Failed,
    }
}
