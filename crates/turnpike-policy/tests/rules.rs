//! Rules over callers and calls: first match, default allow, failing rules, shadow mode,
//! listing, and compile errors with their place.

// Bench and test code: a failed unwrap or expect is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use turnpike_policy::{
    Action, Agent, CallView, Caller, Mode, Policy, Rule, RuleSpec, DEFAULT_REASON,
};

fn spec(name: &str, when: &str, action: Action) -> RuleSpec {
    RuleSpec::enforce(name, when, action)
}

fn policy(specs: Vec<RuleSpec>) -> Policy {
    Policy::new(
        specs
            .into_iter()
            .map(|s| Rule::compile(s).expect("compiles"))
            .collect(),
    )
}

fn anon() -> Caller<'static> {
    Caller {
        kind: "anonymous",
        id: "anon:192.0.2.1",
        address: Some("192.0.2.1"),
        ..Caller::default()
    }
}

fn tool<'a>(name: &'a str, args: Option<&'a serde_json::Value>) -> CallView<'a> {
    CallView {
        method: "tools/call",
        tool: Some(name),
        arguments: args,
        annotations: None,
    }
}

#[test]
fn first_match_wins_and_default_allows() {
    let p = policy(vec![
        spec("admins", "'admin' in identity.scopes", Action::Allow),
        RuleSpec {
            reason: Some("sign in to delete".into()),
            tools: Some(vec!["delete".into()]),
            ..spec("no-delete", "true", Action::Deny)
        },
        spec(
            "anon-writes",
            "identity.kind == 'anonymous' && call.tool.startsWith('write')",
            Action::Deny,
        ),
    ]);
    let s = p.scope(&anon(), 0);
    let j = s.judge(&tool("delete", None));
    assert_eq!(j.refused.map(|r| r.reason()), Some("sign in to delete"));
    assert_eq!(
        s.judge(&tool("write_file", None))
            .refused
            .map(|r| r.reason()),
        Some(DEFAULT_REASON)
    );
    assert!(
        s.judge(&tool("read_file", None)).refused.is_none(),
        "default allow"
    );
    let scopes = vec!["admin".to_string()];
    let admin = Caller {
        kind: "oauth",
        id: "oauth:x",
        scopes: &scopes,
        ..Caller::default()
    };
    let s = p.scope(&admin, 0);
    assert!(
        s.judge(&tool("delete", None)).refused.is_none(),
        "the first match allows"
    );
    // `tools` scopes a rule to tools/call of those tools.
    let other = CallView {
        method: "resources/read",
        tool: Some("delete"),
        ..CallView::default()
    };
    assert!(p.scope(&anon(), 0).judge(&other).refused.is_none());
}

#[test]
fn context_variables() {
    let claims = json!({"org": "acme", "n": 3});
    let claims = claims.as_object().unwrap();
    let caveats = vec![("services".to_string(), "search:0".to_string())];
    let who = Caller {
        kind: "agent",
        id: "agent:k",
        claims: Some(claims),
        scopes: &[],
        caveats: &caveats,
        agent: Some(Agent {
            directory: "https://agents.example/keys",
            key_id: "k1",
        }),
        address: Some("10.0.0.1"),
    };
    let args = json!({"path": "/etc/passwd", "n": 2});
    let ann = json!({"readOnlyHint": true});
    let call = CallView {
        method: "tools/call",
        tool: Some("read"),
        arguments: Some(&args),
        annotations: Some(&ann),
    };
    for (expr, want) in [
        (
            "identity.kind == 'agent' && identity.agent.key_id == 'k1'",
            true,
        ),
        (
            "identity.agent.directory.startsWith('https://agents.example')",
            true,
        ),
        (
            "identity.claims.org == 'acme' && identity.claims.n == 3",
            true,
        ),
        ("identity.caveats.services == 'search:0'", true),
        (
            "identity.address == '10.0.0.1' && identity.id == 'agent:k'",
            true,
        ),
        ("call.arguments.path.startsWith('/etc')", true),
        ("call.annotations.readOnlyHint", true),
        ("now > 1700000000", true),
        ("now < 1700000000", false),
        ("size(identity.scopes) == 0", true),
    ] {
        let p = policy(vec![spec("r", expr, Action::Deny)]);
        let got = p.scope(&who, 1_800_000_000).judge(&call).refused.is_some();
        assert_eq!(got, want, "{expr}");
    }
    // Unknown parts are empty, not missing.
    let p = policy(vec![spec(
        "r",
        "identity.claims == {} && identity.agent == null && call.annotations == {} && call.arguments == null",
        Action::Deny,
    )]);
    assert!(p
        .scope(&anon(), 0)
        .judge(&tool("x", None))
        .refused
        .is_some());
}

#[test]
fn failing_rules_fail_closed() {
    // A missing key: a deny rule matches, an allow rule does not.
    let p = policy(vec![spec("d", "identity.claims.org == 'x'", Action::Deny)]);
    assert!(p
        .scope(&anon(), 0)
        .judge(&tool("t", None))
        .refused
        .is_some());
    let p = policy(vec![
        spec("a", "identity.claims.org == 'x'", Action::Allow),
        spec("rest", "true", Action::Deny),
    ]);
    assert!(p
        .scope(&anon(), 0)
        .judge(&tool("t", None))
        .refused
        .is_some());
    // Not a bool.
    let p = policy(vec![spec("d", "identity.kind", Action::Deny)]);
    assert!(p
        .scope(&anon(), 0)
        .judge(&tool("t", None))
        .refused
        .is_some());
}

#[test]
fn shadow_counts_what_enforcing_refuses() {
    let rule = |mode| RuleSpec {
        mode,
        ..spec(
            "no-anon",
            "identity.kind == 'anonymous' && call.tool != 'echo'",
            Action::Deny,
        )
    };
    let enforce = policy(vec![rule(Mode::Enforce)]);
    let shadow = policy(vec![rule(Mode::Shadow)]);
    let scopes: Vec<String> = Vec::new();
    let oauth = Caller {
        kind: "oauth",
        id: "o",
        scopes: &scopes,
        ..Caller::default()
    };
    let mut refused = 0;
    let mut would = 0;
    for who in [anon(), oauth] {
        for t in ["echo", "add", "slow", "add"] {
            let e = enforce.scope(&who, 0).judge(&tool(t, None));
            let s = shadow.scope(&who, 0).judge(&tool(t, None));
            assert!(s.refused.is_none(), "shadow never refuses");
            assert!(e.would_refuse.is_none());
            refused += usize::from(e.refused.is_some());
            would += usize::from(s.would_refuse.is_some());
        }
    }
    assert_eq!(refused, 3);
    assert_eq!(would, refused);
    // A shadow allow before an enforced deny: the call is refused, and would have gone through.
    let p = policy(vec![
        RuleSpec {
            mode: Mode::Shadow,
            ..spec("pilot", "true", Action::Allow)
        },
        spec("deny", "true", Action::Deny),
    ]);
    let j = p.scope(&anon(), 0).judge(&tool("x", None));
    assert!(j.refused.is_some() && j.would_refuse.is_none());
}

#[test]
fn listing() {
    let p = policy(vec![
        spec("readonly-anon", "identity.kind == 'anonymous' && !(has(call.annotations.readOnlyHint) && call.annotations.readOnlyHint)", Action::Deny),
        spec("big", "call.arguments.n > 10", Action::Deny),
    ]);
    let s = p.scope(&anon(), 0);
    let ro = json!({"readOnlyHint": true});
    assert!(s.may_list("read", Some(&ro)));
    assert!(!s.may_list("write", None));
    let p = policy(vec![spec("big", "call.arguments.n > 10", Action::Deny)]);
    assert!(
        p.scope(&anon(), 0).may_list("any", None),
        "a rule reading arguments lists"
    );
    let p = policy(vec![
        spec("big", "call.arguments.n > 10", Action::Deny),
        spec("all", "true", Action::Deny),
    ]);
    assert!(
        !p.scope(&anon(), 0).may_list("any", None),
        "a deny rule reading arguments is passed over: the next rule decides"
    );
    let p = policy(vec![RuleSpec {
        mode: Mode::Shadow,
        ..spec("s", "true", Action::Deny)
    }]);
    assert!(
        p.scope(&anon(), 0).may_list("any", None),
        "shadow rules hide nothing"
    );
}

#[test]
fn compile_errors_have_a_place() {
    let e = Rule::compile(spec("x", "identity.kind == ", Action::Deny)).unwrap_err();
    assert!(!e.message.is_empty());
    assert!(e.offset <= "identity.kind == ".len(), "{e:?}");
    let e = Rule::compile(spec("x", "a &&\n  b ++ c", Action::Deny)).unwrap_err();
    assert!(e.offset >= 5, "on the second line: {e:?}");
    let e = Rule::compile(spec("x", "[1].all(x, [x].map(y, y))", Action::Deny)).unwrap_err();
    assert_eq!(e.offset, 18);
    assert!(e.message.contains("comprehension"));
}

/// One lister over a whole list (rules remembered per distinct annotations, or once) answers
/// as each tool judged on its own.
#[test]
fn a_lister_answers_as_each_tool_alone() {
    let p = policy(vec![
        spec("by-name", "call.tool.endsWith('_9')", Action::Deny),
        spec("anon", "identity.kind != 'anonymous'", Action::Allow),
        spec(
            "ro",
            "!(has(call.annotations.readOnlyHint) && call.annotations.readOnlyHint)",
            Action::Deny,
        ),
    ]);
    let tools: Vec<(String, Option<serde_json::Value>)> = (0..40)
        .map(|i| {
            let ann = match i % 3 {
                0 => None,
                1 => Some(json!({"readOnlyHint": true})),
                _ => Some(json!({"readOnlyHint": false, "title": "x"})),
            };
            (format!("t_{i}"), ann)
        })
        .collect();
    let scopes: Vec<String> = Vec::new();
    let oauth = Caller {
        kind: "oauth",
        id: "o",
        scopes: &scopes,
        ..Caller::default()
    };
    for who in [anon(), oauth] {
        let s = p.scope(&who, 0);
        let mut l = s.lister();
        let mut listed = 0;
        for (name, ann) in &tools {
            let alone = s.may_list(name, ann.as_ref());
            assert_eq!(l.may_list(name, ann.as_ref()), alone, "{name} {ann:?}");
            listed += usize::from(alone);
        }
        assert!(listed > 0 && listed < tools.len(), "{listed}");
    }
}

fn class(name: &str, when: &str, class: &str, mode: Mode) -> RuleSpec {
    RuleSpec {
        mode,
        class: Some(class.into()),
        ..spec(name, when, Action::Class)
    }
}

/// Class rules: the first enforced match picks the class; allow and deny rules neither see
/// them nor are stopped by them; a failing class rule does not match; a shadow class rule
/// only says what it would have picked.
#[test]
fn class_rules_pick_a_class_apart_from_allow_and_deny() {
    let p = policy(vec![
        class(
            "broken",
            "identity.claims.org == 'x'",
            "broken",
            Mode::Enforce,
        ),
        class("pilot", "identity.kind == 'oauth'", "gold", Mode::Shadow),
        class(
            "partners",
            "identity.kind == 'oauth' && 'partner' in identity.scopes",
            "partner",
            Mode::Enforce,
        ),
        class("everyone", "true", "base", Mode::Enforce),
        spec("no-delete", "call.tool == 'delete'", Action::Deny),
    ]);
    assert!(p.has_classes() && !p.only_classes());
    let scopes = vec!["partner".to_string()];
    let partner = Caller {
        kind: "oauth",
        id: "o",
        scopes: &scopes,
        ..Caller::default()
    };
    let s = p.scope(&partner, 0);
    let c = s.class(&tool("search", None));
    assert_eq!(c.class.and_then(|r| r.class()), Some("partner"));
    assert_eq!(c.would_class.map(|r| r.name()), Some("pilot"));
    // Class rules judge nothing: the deny rule after them still refuses.
    assert!(s.judge(&tool("delete", None)).refused.is_some());
    assert!(s.judge(&tool("search", None)).refused.is_none());
    assert!(s.may_list("search", None) && !s.may_list("delete", None));
    // Another caller falls through to the catch-all; the shadow rule does not match it.
    let c = p.scope(&anon(), 0).class(&tool("search", None));
    assert_eq!(c.class.and_then(|r| r.class()), Some("base"));
    assert!(c.would_class.is_none());
    // A shadow rule that would pick the class already picked says nothing.
    let p = policy(vec![
        class("a", "true", "gold", Mode::Shadow),
        class("b", "true", "gold", Mode::Enforce),
    ]);
    let c = p.scope(&anon(), 0).class(&tool("x", None));
    assert_eq!(c.class.map(|r| r.name()), Some("b"));
    assert!(c.would_class.is_none());
    // No class rule: nothing weighed.
    let p = policy(vec![spec("d", "true", Action::Deny)]);
    assert!(!p.has_classes());
    assert!(p.scope(&anon(), 0).class(&tool("x", None)).class.is_none());
}

/// A list's classes: picked per tool as a call of it with no arguments, once per distinct
/// annotations when no class rule reads the tool's name.
#[test]
fn class_lister_prices_each_tool_as_its_call() {
    let p = policy(vec![
        RuleSpec {
            tools: Some(vec!["search".into()]),
            ..class("search-free", "true", "free-search", Mode::Enforce)
        },
        class(
            "readers",
            "has(call.annotations.readOnlyHint) && call.annotations.readOnlyHint",
            "reader",
            Mode::Enforce,
        ),
        class("big", "call.arguments.n > 10", "big", Mode::Enforce),
    ]);
    let s = p.scope(&anon(), 0);
    let mut l = s.class_lister();
    let ro = json!({"readOnlyHint": true});
    let name = |r: Option<&Rule>| r.and_then(Rule::class).map(str::to_owned);
    assert_eq!(
        name(l.class("search", None)).as_deref(),
        Some("free-search")
    );
    assert_eq!(name(l.class("read", Some(&ro))).as_deref(), Some("reader"));
    assert_eq!(name(l.class("write", None)), None, "an argument rule fails");
    // By annotations alone: the same answer as each call judged on its own.
    let p = policy(vec![class(
        "readers",
        "has(call.annotations.readOnlyHint) && call.annotations.readOnlyHint",
        "reader",
        Mode::Enforce,
    )]);
    let s = p.scope(&anon(), 0);
    let mut l = s.class_lister();
    for i in 0..100 {
        let a = json!({"readOnlyHint": i % 2 == 0});
        let t = format!("t{i}");
        let listed = name(l.class(&t, Some(&a)));
        let alone = name(
            s.class(&CallView {
                annotations: Some(&a),
                ..tool(&t, None)
            })
            .class,
        );
        assert_eq!(listed, alone, "{i}");
        assert_eq!(listed.is_some(), i % 2 == 0, "{i}");
    }
}
