//! A typical three-clause rule for one call, a 200-tool `tools/list` filtered for one caller,
//! and class rules picking one call's class and pricing a 200-tool list per class.

// Bench and test code: a failed unwrap or expect is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::hint::black_box;
use turnpike_policy::{Action, CallView, Caller, Policy, Rule, RuleSpec, Scope};

fn rule(name: &str, when: &str, action: Action) -> Rule {
    Rule::compile(RuleSpec::enforce(name, when, action)).expect("compiles")
}

/// How many of `tools` (name, annotations) the caller of `s` may see listed.
fn listed(s: &Scope<'_>, tools: &[(String, serde_json::Value)]) -> usize {
    let mut l = s.lister();
    tools
        .iter()
        .filter(|(name, ann)| l.may_list(name, Some(ann)))
        .count()
}

fn bench(c: &mut Criterion) {
    let p = Policy::new(vec![rule(
        "writes",
        "identity.kind == 'anonymous' && call.method == 'tools/call' && !call.annotations.readOnlyHint",
        Action::Deny,
    )]);
    let scopes = vec!["read".to_string(), "write".to_string()];
    let who = Caller {
        kind: "oauth",
        id: "oauth:18:https://as.example:5:alice:",
        scopes: &scopes,
        address: Some("192.0.2.1"),
        ..Caller::default()
    };
    let args = json!({"text": "hello"});
    let ann = json!({"readOnlyHint": false});
    let call = CallView {
        method: "tools/call",
        tool: Some("echo"),
        arguments: Some(&args),
        annotations: Some(&ann),
    };
    c.bench_function("three-clause rule, one call (scope + judge)", |b| {
        b.iter(|| {
            let s = p.scope(black_box(&who), 1_800_000_000);
            black_box(s.judge(black_box(&call)).refused.is_some())
        })
    });
    // An OAuth caller with the claims of a typical access token (its identity built per call).
    let claims = json!({
        "iss": "https://as.example", "sub": "alice", "aud": "https://mcp.example/mcp",
        "client_id": "agent", "scope": "read write", "exp": 1_800_000_600, "iat": 1_800_000_000,
        "jti": "5b1f0e", "org": "acme", "roles": ["admin", "ops"], "tier": "gold",
    });
    let claims = claims.as_object().unwrap().clone();
    let member = Caller {
        claims: Some(&claims),
        ..who
    };
    let by_claim = Policy::new(vec![rule(
        "acme-admins",
        "identity.kind == 'oauth' && identity.claims.org == 'acme' && 'admin' in identity.claims.roles",
        Action::Deny,
    )]);
    c.bench_function(
        "three-clause rule on the token's claims, one call (scope + judge)",
        |b| {
            b.iter(|| {
                let s = by_claim.scope(black_box(&member), 1_800_000_000);
                black_box(s.judge(black_box(&call)).refused.is_some())
            })
        },
    );
    let tools: Vec<(String, serde_json::Value)> = (0..200)
        .map(|i| (format!("tool_{i}"), json!({"readOnlyHint": i % 2 == 0})))
        .collect();
    let anon = Caller {
        kind: "anonymous",
        id: "anon:192.0.2.1",
        address: Some("192.0.2.1"),
        ..Caller::default()
    };
    c.bench_function("tools/list of 200 tools filtered for one caller", |b| {
        b.iter(|| {
            let s = p.scope(black_box(&anon), 1_800_000_000);
            black_box(listed(&s, &tools))
        })
    });
    let by_name = Policy::new(vec![rule(
        "by-name",
        "identity.kind == 'anonymous' && call.tool.startsWith('tool_1') && !call.annotations.readOnlyHint",
        Action::Deny,
    )]);
    c.bench_function(
        "tools/list of 200 tools, a rule reading the tool's name",
        |b| {
            b.iter(|| {
                let s = by_name.scope(black_box(&anon), 1_800_000_000);
                black_box(listed(&s, &tools))
            })
        },
    );
    // The same conditions in one part (a conditional, not `&&`): nothing is remembered, every
    // tool is judged whole.
    let whole = Policy::new(vec![rule(
        "by-name-whole",
        "identity.kind == 'anonymous' ? (call.tool.startsWith('tool_1') ? !call.annotations.readOnlyHint : false) : false",
        Action::Deny,
    )]);
    c.bench_function(
        "tools/list of 200 tools, one part reading the tool's name and annotations",
        |b| {
            b.iter(|| {
                let s = whole.scope(black_box(&anon), 1_800_000_000);
                black_box(listed(&s, &tools))
            })
        },
    );
    // Price/limit classes: one call's class, and a 200-tool list priced per class.
    let classes = Policy::new(vec![
        Rule::compile(RuleSpec {
            class: Some("partner".into()),
            ..RuleSpec::enforce(
                "partners",
                "identity.kind == 'oauth' && 'write' in identity.scopes",
                Action::Class,
            )
        })
        .expect("compiles"),
        Rule::compile(RuleSpec {
            class: Some("readers".into()),
            ..RuleSpec::enforce(
                "readers",
                "identity.kind == 'anonymous' && has(call.annotations.readOnlyHint) && call.annotations.readOnlyHint",
                Action::Class,
            )
        })
        .expect("compiles"),
    ]);
    c.bench_function("class rules, one call (scope + class)", |b| {
        b.iter(|| {
            let s = classes.scope(black_box(&who), 1_800_000_000);
            black_box(s.class(black_box(&call)).class.is_some())
        })
    });
    c.bench_function("tools/list of 200 tools, each priced by its class", |b| {
        b.iter(|| {
            let s = classes.scope(black_box(&anon), 1_800_000_000);
            let mut l = s.class_lister();
            let n = tools
                .iter()
                .filter(|(name, ann)| l.class(name, Some(ann)).is_some())
                .count();
            black_box(n)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
