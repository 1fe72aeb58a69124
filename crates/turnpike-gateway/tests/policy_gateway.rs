//! Access policy (`[[policy]]`) through the real gateway: rules over anonymous callers,
//! puzzle solvers and OAuth callers (tokens from a real OpenID provider, see
//! `support/oidc.rs`), `tools/list` filtered per caller, a hidden tool answered as an unknown
//! one, deny reasons over HTTP and in band, and shadow mode counting exactly what enforcing
//! refuses on the same traffic.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/oidc.rs"]
mod oidc;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use oidc::Provider;
use serde_json::{json, Value};
use support::*;
use turnpike_gateway::reload::LiveGate;

/// `echo` free (read-only), `slow` free, `dear` and every other tool a puzzle; OAuth on when
/// `issuer` is given; the limits off; `rules` appended.
fn config(upstream: SocketAddr, issuer: Option<&str>, rules: &str) -> String {
    let oauth = issuer.map_or(String::new(), |i| {
        format!("[oauth]\nissuer = \"{i}\"\nscopes_supported = [\"mcp:tools\"]\n")
    });
    let data_dir = scratch_data_dir().display().to_string();
    format!(
        r#"{head}
[tools.default]
pow = 3000
[tools.echo]
free = true
[tools.slow]
free = true

[limits]
enabled = false

{oauth}
{rules}
"#,
        head = config_head(upstream, &data_dir, ""),
    )
}

struct Running {
    gw: SocketAddr,
    url: String,
    live: Arc<LiveGate>,
    log: Log,
}

/// The upstream (JSON answers) and the gateway's listener, bound first so that its resource
/// is known; then `cfg` (from the upstream and the gateway's URL) is served on it.
async fn start<F, Fut>(cfg: F) -> Running
where
    F: FnOnce(SocketAddr, String) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let (up, log) = start_upstream(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let url = format!("http://{gw}/mcp");
    let text = cfg(up, url.clone()).await;
    let cfg = turnpike_gateway::parse(&text, "policy.toml").unwrap();
    let (live, _) = support::serve_ready(listener, cfg).await;
    Running { gw, url, live, log }
}

fn list(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}})
}

/// The names of a `tools/list` answer, sorted, each checked to carry its price.
fn names(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let mut out: Vec<String> = v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|t| {
            assert!(t["_meta"]["turnpike/price"].is_object(), "priced: {t}");
            t["name"].as_str().unwrap().to_owned()
        })
        .collect();
    out.sort();
    out
}

/// The answer to a tool the caller may not see: the unknown-tool answer.
fn assert_unknown(r: &Reply, tool: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(
        v["error"]["message"],
        format!("unknown tool: {tool:?} is not offered here")
    );
}

const RULES: &str = r#"
[[policy]]
name = "short-echo"
when = "size(call.arguments.text) > 20"
tools = ["echo"]
action = "deny"
reason = "echo takes at most 20 characters"

[[policy]]
name = "members"
when = "identity.kind == 'oauth' && 'mcp:tools' in identity.scopes"
action = "allow"

[[policy]]
name = "read-only-for-the-rest"
when = "!(has(call.annotations.readOnlyHint) && call.annotations.readOnlyHint)"
action = "deny"
reason = "sign in for this tool"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_over_anonymous_puzzle_and_oauth_callers() {
    let provider: Arc<parking_lot::Mutex<Option<Provider>>> = Arc::default();
    let slot = provider.clone();
    let run = start(|up, url| async move {
        // The provider issues tokens for the gateway's own URL.
        let p = Provider::start(&url).await;
        let c = config(up, Some(&p.issuer), RULES);
        *slot.lock() = Some(p);
        c
    })
    .await;
    let provider = provider.lock().take().unwrap();
    let gw = run.gw;

    // An anonymous caller sees the read-only tool alone; its price is still annotated.
    let anon = names(&post(gw, &[], &list(1)).await);
    assert_eq!(anon, ["echo"]);
    // A signed-in caller (a bearer token on a free method, checked without spending
    // anything) sees every tool.
    let token = provider.token(false, &run.url, "mcp:tools", None).await;
    let bearer = format!("Bearer {token}");
    let member = names(&post(gw, &[("authorization", &bearer)], &list(2)).await);
    assert_eq!(member, ["dear", "echo", "slow"]);

    // A hidden free tool: the unknown-tool answer, and the upstream never sees the call.
    let before = run.log.lock().len();
    assert_unknown(&post(gw, &[], &call(3, "slow", json!({}))).await, "slow");
    assert_eq!(run.log.lock().len(), before);
    // The member calls it (a free tool: its identity from the token, nothing spent).
    let r = post(
        gw,
        &[("authorization", &bearer)],
        &call(4, "slow", json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "done");

    // A visible tool whose arguments a rule refuses: 403, -31403 and the rule's reason…
    let r = post(gw, &[], &call(5, "echo", json!({"text": "hi"}))).await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "hi");
    let long = json!({"text": "far more than twenty characters"});
    let r = post(
        gw,
        &[("turnpike-challenge", "http")],
        &call(6, "echo", long.clone()),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -31403);
    assert_eq!(
        r.json()["error"]["message"],
        "echo takes at most 20 characters"
    );
    assert_eq!(r.json()["id"], 6);
    // …in band when challenges are delivered in band: an isError result with the reason.
    let r = post(
        gw,
        &[("turnpike-challenge", "in-band")],
        &call(7, "echo", long.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert_eq!(
        v["result"]["content"][0]["text"],
        "echo takes at most 20 characters"
    );
    // The member is refused too: the argument rule comes first.
    let r = post(
        gw,
        &[("authorization", &bearer), ("turnpike-challenge", "http")],
        &call(8, "echo", long),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());

    // A puzzle solver is known by its address: `dear` is hidden from it after it paid, and
    // its solution is given back (the same answer again, not "already used").
    let req = call(9, "dear", json!({"n": 1}));
    let r = post(gw, &[], &req).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let (challenge, nonces) = solve(&r.text());
    let auth = turnpike_client::authorization_value(&challenge, &nonces);
    let before = run.log.lock().len();
    for _ in 0..2 {
        let r = post(
            gw,
            &[("authorization", &auth), ("turnpike-challenge", "http")],
            &req,
        )
        .await;
        assert_unknown(&r, "dear");
    }
    assert_eq!(run.log.lock().len(), before, "never forwarded");

    let m = run.live.metrics();
    assert_eq!(m.policy_count("short-echo", false), 3);
    assert_eq!(m.policy_count("read-only-for-the-rest", false), 3);
    assert_eq!(m.policy_count("members", false), 0);
    let text = m.render(&[]);
    assert!(
        text.contains(
            "turnpike_policy_decisions_total{rule=\"short-echo\",decision=\"refused\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("outcome=\"refused\""), "{text}");
}

/// The same traffic through a gateway enforcing the rules and one with them in shadow mode:
/// what one refuses, the other lets through and counts, rule by rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_counts_what_enforcing_refuses() {
    let rules = |mode: &str| {
        format!(
            r#"
[[policy]]
name = "short-echo"
when = "size(call.arguments.text) > 5"
tools = ["echo"]
action = "deny"
mode = "{mode}"

[[policy]]
name = "read-only"
when = "!(has(call.annotations.readOnlyHint) && call.annotations.readOnlyHint)"
action = "deny"
mode = "{mode}"
"#
        )
    };
    let enforce = start(|up, _| async move { config(up, None, &rules("enforce")) }).await;
    let shadow = start(|up, _| async move { config(up, None, &rules("shadow")) }).await;
    let traffic = [
        list(1),
        call(2, "echo", json!({"text": "hi"})),
        call(3, "echo", json!({"text": "a longer text"})),
        call(4, "slow", json!({})),
        call(5, "echo", json!({"text": "again, longer"})),
        call(6, "slow", json!({})),
        list(7),
    ];
    let mut refused = 0;
    for msg in &traffic {
        let e = post(enforce.gw, &[("turnpike-challenge", "http")], msg).await;
        let s = post(shadow.gw, &[("turnpike-challenge", "http")], msg).await;
        assert_eq!(s.status, 200, "{}", s.text());
        assert!(
            s.json().get("error").is_none(),
            "shadow lets it through: {}",
            s.text()
        );
        if msg["method"] == "tools/list" {
            assert_eq!(names(&e), ["echo"]);
            assert_eq!(names(&s), ["dear", "echo", "slow"], "shadow hides nothing");
        } else if e.status != 200 || e.json().get("error").is_some() {
            refused += 1;
        }
    }
    assert_eq!(refused, 4);
    let (e, s) = (enforce.live.metrics(), shadow.live.metrics());
    for rule in ["short-echo", "read-only"] {
        assert_eq!(e.policy_count(rule, false), 2, "{rule}");
        assert_eq!(e.policy_count(rule, true), 0, "{rule}");
        assert_eq!(
            s.policy_count(rule, true),
            e.policy_count(rule, false),
            "{rule}"
        );
        assert_eq!(s.policy_count(rule, false), 0, "{rule}");
    }
    assert!(s.render(&[]).contains(
        "turnpike_policy_decisions_total{rule=\"read-only\",decision=\"would_refuse\"} 2"
    ));
}

/// A 2026-07-28 request (routing headers and `_meta`) to `path` of the gateway at `gw`.
async fn post_modern(gw: SocketAddr, path: &str, id: i64, method: &str, params: Value) -> Reply {
    const MODERN: &str = "2026-07-28";
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let name = params["name"].as_str().map(str::to_owned);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut headers = vec![
        ("mcp-protocol-version", MODERN),
        ("mcp-method", method),
        ("turnpike-challenge", "http"),
    ];
    if let Some(n) = name.as_deref() {
        headers.push(("mcp-name", n));
    }
    let mut req = request(gw, http::Method::POST, &headers, body.to_string());
    *req.uri_mut() = format!("http://{gw}{path}").parse().unwrap();
    send(req).await
}

/// The rules hold on every endpoint: a `[[mount]]` and the merged endpoint over it, in the
/// 2026-07-28 era: the list filtered, the hidden tool answered as unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_and_the_merged_endpoint_filter_too() {
    let rules = r#"
[[mount]]
path = "/m/mcp"
name = "m"
upstream = { url = "http://UPSTREAM/mcp" }
[mount.tools.default]
free = true

[merge]
path = "/all/mcp"

[[policy]]
name = "no-slow"
when = "identity.kind == 'anonymous'"
tools = ["slow"]
action = "deny"
"#;
    let run =
        start(|up, _| async move { config(up, None, &rules.replace("UPSTREAM", &up.to_string())) })
            .await;
    for path in ["/m/mcp", "/all/mcp"] {
        let r = post_modern(run.gw, path, 1, "tools/list", json!({})).await;
        assert_eq!(names(&r), ["dear", "echo"], "{path}");
        let r = post_modern(
            run.gw,
            path,
            2,
            "tools/call",
            json!({"name": "slow", "arguments": {}}),
        )
        .await;
        assert_unknown(&r, "slow");
        let r = post_modern(
            run.gw,
            path,
            3,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "hi"}}),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["result"]["content"][0]["text"], "hi", "{path}");
    }
    assert_eq!(run.live.metrics().policy_count("no-slow", false), 2);
}

/// Rules on the OAuth token's own claims (`identity.claims`), with tokens from a real OpenID
/// provider that adds claims of its own to each client's access tokens: the `acme` admin's
/// token may call `slow` (free: its identity checked without spending anything) and `dear`
/// (priced by OAuth: its identity from the pass) and lists both; the other client's token,
/// of the same `org` but with no `roles` claim (the rule reading it fails, and an allow rule
/// that fails does not match), sees neither and is answered as for an unknown tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_on_the_token_claims() {
    const RULES: &str = r#"
[tools.dear]
oauth = { scopes = ["mcp:tools"] }

[[policy]]
name = "acme-admins"
when = "identity.kind == 'oauth' && identity.claims.org == 'acme' && 'admin' in identity.claims.roles"
action = "allow"

[[policy]]
name = "the-others"
when = "true"
tools = ["slow", "dear"]
action = "deny"
"#;
    let extra = json!({
        "agent-secret": {"org": "acme", "roles": ["admin", "ops"]},
        "agent-jwt": {"org": "acme"},
    });
    let provider: Arc<parking_lot::Mutex<Option<Provider>>> = Arc::default();
    let slot = provider.clone();
    let run = start(|up, url| async move {
        let p = Provider::start_with_claims(&url, &extra).await;
        let c = config(up, Some(&p.issuer), RULES);
        *slot.lock() = Some(p);
        c
    })
    .await;
    let provider = provider.lock().take().unwrap();
    let gw = run.gw;
    let acme = format!(
        "Bearer {}",
        provider.token(false, &run.url, "mcp:tools", None).await
    );
    let other = format!(
        "Bearer {}",
        provider.token(true, &run.url, "mcp:tools", None).await
    );

    let seen = names(&post(gw, &[("authorization", &acme)], &list(1)).await);
    assert_eq!(seen, ["dear", "echo", "slow"]);
    let seen = names(&post(gw, &[("authorization", &other)], &list(2)).await);
    assert_eq!(seen, ["echo"]);
    assert_eq!(names(&post(gw, &[], &list(3)).await), ["echo"]);

    let before = run.log.lock().len();
    for (id, tool) in [(4, "slow"), (5, "dear")] {
        let r = post(
            gw,
            &[("authorization", &other), ("turnpike-challenge", "http")],
            &call(id, tool, json!({"n": 1})),
        )
        .await;
        assert_unknown(&r, tool);
    }
    assert_eq!(run.log.lock().len(), before, "never forwarded");
    for (id, tool) in [(6, "slow"), (7, "dear")] {
        let r = post(
            gw,
            &[("authorization", &acme), ("turnpike-challenge", "http")],
            &call(id, tool, json!({"n": 1})),
        )
        .await;
        assert_eq!(r.status, 200, "{tool}: {}", r.text());
        assert!(r.json().get("error").is_none(), "{tool}: {}", r.text());
    }
    assert_eq!(run.log.lock().len(), before + 2);
    assert_eq!(run.live.metrics().policy_count("the-others", false), 2);
}

/// A rule on an L402 token's caveats (`identity.caveats`), with real macaroons bought through
/// the dev Lightning wallet: a balance token as minted (`turnpike/mode=balance`, no
/// `turnpike/tools`) may not call `dear`, and its debit is given back; the same token narrowed
/// by its holder to `dear` (a caveat appended, which only narrows) may, until its credit is
/// spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_on_the_l402_caveats() {
    let dir = std::env::temp_dir().join(format!(
        "turnpike-policy-l402-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    let run = start(|up, _| async move {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
path = "/mcp"
data_dir = "{d}"

[upstream]
url = "http://{up}/mcp"

[tools.default]
l402 = {{ msat = 1000, mode = "balance", bundle = 3000 }}
[tools.echo]
free = true
[tools.slow]
free = true

[l402]
store = "memory"

[lightning]
backend = "dev"
[lightning.dev_wallet]
listen = "127.0.0.1:0"

[limits]
enabled = false

[[policy]]
name = "narrowed-tokens"
when = "identity.kind == 'l402' && identity.caveats['turnpike/mode'] == 'balance' && !('turnpike/tools' in identity.caveats)"
tools = ["dear"]
action = "deny"
"#
        )
    })
    .await;
    let gw = run.gw;
    let req = |id| call(id, "dear", json!({"n": 1}));
    // The calls the upstream saw (the gateway may ask it other things of its own).
    let calls = || {
        run.log
            .lock()
            .iter()
            .filter(|s| String::from_utf8_lossy(&s.body).contains("\"tools/call\""))
            .count()
    };
    let r = post(gw, &[("turnpike-challenge", "http")], &req(1)).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let first = r.headers.get("www-authenticate").unwrap().to_str().unwrap();
    let (mac, inv) = first
        .strip_prefix("L402 macaroon=\"")
        .and_then(|s| s.strip_suffix('"'))
        .and_then(|s| s.split_once("\", invoice=\""))
        .unwrap_or_else(|| panic!("an L402 challenge: {first}"));
    let pre = pay(&dir, inv).await;

    // As minted: refused (and `dear` is hidden from it: the unknown-tool answer).
    let minted = format!("L402 {mac}:{pre}");
    let before = calls();
    let r = post(
        gw,
        &[("authorization", &minted), ("turnpike-challenge", "http")],
        &req(2),
    )
    .await;
    assert_unknown(&r, "dear");
    assert_eq!(calls(), before, "never forwarded");

    // Narrowed to `dear` by its holder: three calls on 3000 msat of credit (the refused call
    // was not charged), then the balance is spent.
    let mut m =
        turnpike_l402::Macaroon::from_base64(mac, turnpike_l402::Limits::default()).unwrap();
    m.add_first_party_caveat("turnpike/tools=dear");
    let narrowed = format!("L402 {}:{pre}", m.to_base64());
    for id in 3..6 {
        let r = post(
            gw,
            &[("authorization", &narrowed), ("turnpike-challenge", "http")],
            &req(id),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json().get("error").is_none(), "{}", r.text());
    }
    let r = post(
        gw,
        &[("authorization", &narrowed), ("turnpike-challenge", "http")],
        &req(6),
    )
    .await;
    assert_eq!(r.status, 402, "{}", r.text());
    assert_eq!(calls(), before + 3);
    assert_eq!(run.live.metrics().policy_count("narrowed-tokens", false), 1);
}
