//! Access policy: who may call what, as rules in CEL (the Common Expression Language).
//!
//! A rule is a CEL expression over three variables ([`context`] builds them):
//!
//! - `identity`: `kind` (`anonymous`, `oauth`, `l402`, `agent` or another rail's name), `id`
//!   (the scope key limits use), `claims` (map), `scopes` (list), `caveats` (map), `agent`
//!   (`{directory, key_id}` or `null`), `address` (string or `null`);
//! - `call`: `method`, `tool` (or `null`), `arguments` (or `null`), `annotations` (map);
//! - `now`: Unix seconds (int).
//!
//! Rules are compiled once ([`Rule::compile`]) within the bounds of [`bounds`] (length,
//! nesting, no nested comprehension) and evaluated per call on input converted within the
//! bounds of [`context`]. [`Policy::scope`] binds one caller; [`Scope::judge`] decides a call
//! (first matching enforced rule wins, default allow; shadow rules only report what they would
//! have refused) and [`Scope::may_list`] says whether a tool is listed to that caller (a
//! whole list by one [`Lister`], judging each rule part by part: `list`).
//! docs/POLICY.md is the user's guide.

pub mod bounds;
pub mod context;
mod list;
mod parts;
mod rules;

pub use context::{Agent, CallVars, CallView, Caller};
pub use list::Lister;
pub use rules::{
    compile_expr, Action, CompileError, Judgement, Mode, Policy, Rule, RuleSpec, Scope,
    DEFAULT_REASON,
};
