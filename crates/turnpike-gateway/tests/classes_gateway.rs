//! Price/limit classes (`[[policy]] action = "class"`, `[classes.<name>]`) through the real
//! gateway, with tokens from a real OpenID provider (`support/oidc.rs`): a partner's class
//! makes a tool free that others pay for with a puzzle and gives it a bigger bucket; its
//! `tools/list` shows its own prices; a class rule in shadow mode only counts; a rule naming
//! a class the file does not define is refused at its line.

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

/// The default bucket (per identity and tool) and the partner class's.
const DEFAULT_BURST: usize = 3;
const PARTNER_BURST: usize = 8;

/// `echo` free, every other tool (`dear`) a puzzle; the callers of client `agent-jwt` are
/// partners (`dear` free, a bucket of 8), every OAuth caller is on trial for class `gold`
/// (shadow: counted, nothing changed).
fn config(upstream: SocketAddr, issuer: &str) -> String {
    let data_dir = scratch_data_dir().display().to_string();
    format!(
        r#"{head}
[oauth]
issuer = "{issuer}"
scopes_supported = ["mcp:tools"]

[tools.default]
pow = 3000
[tools.echo]
free = true

[limits.default]
burst = {DEFAULT_BURST}
rate = "1/h"

[[policy]]
name = "partners"
when = "identity.kind == 'oauth' && identity.claims.client_id == 'agent-jwt'"
action = "class"
class = "partner"

[[policy]]
name = "pilot"
when = "identity.kind == 'oauth'"
action = "class"
class = "gold"
mode = "shadow"

[classes.partner.limits]
burst = {PARTNER_BURST}
rate = "1/h"
[classes.partner.tools.dear]
free = true

[classes.gold.tools.dear]
free = true
"#,
        head = config_head(upstream, &data_dir, ""),
    )
}

struct Running {
    gw: SocketAddr,
    url: String,
    live: Arc<LiveGate>,
    provider: Provider,
}

async fn start() -> Running {
    let (up, _log) = start_upstream(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let url = format!("http://{gw}/mcp");
    // The provider issues tokens for the gateway's own URL.
    let provider = Provider::start(&url).await;
    let cfg = turnpike_gateway::parse(&config(up, &provider.issuer), "classes.toml").unwrap();
    let (live, _) = support::serve_ready(listener, cfg).await;
    Running {
        gw,
        url,
        live,
        provider,
    }
}

/// The price `tools/list` shows `tool` at, for a caller sending `headers`.
async fn listed_price(gw: SocketAddr, headers: &[(&str, &str)], tool: &str) -> Value {
    let r = post(
        gw,
        headers,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .find(|t| t["name"] == tool)
        .unwrap_or_else(|| panic!("{tool} listed: {v}"))["_meta"]["turnpike/price"]
        .clone()
}

/// How many calls of `echo` go through back to back before the gateway's own 429.
async fn echoes_before_429(gw: SocketAddr, headers: &[(&str, &str)], id: i64) -> usize {
    for n in 0..50 {
        let r = post(gw, headers, &call(id + n, "echo", json!({"text": "hi"}))).await;
        match r.status.as_u16() {
            200 => assert_eq!(r.json()["result"]["content"][0]["text"], "hi"),
            429 => {
                assert_eq!(r.json()["error"]["code"], -31429, "{}", r.text());
                return n as usize;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    panic!("no 429 within 50 calls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_class_gets_its_prices_and_its_bucket() {
    let run = start().await;
    let gw = run.gw;
    let http = ("turnpike-challenge", "http");
    // A partner (client agent-jwt) and another signed-in caller (client agent-secret).
    let partner = format!(
        "Bearer {}",
        run.provider.token(true, &run.url, "mcp:tools", None).await
    );
    let other = format!(
        "Bearer {}",
        run.provider.token(false, &run.url, "mcp:tools", None).await
    );
    let partner_h = [("authorization", partner.as_str()), http];
    let other_h = [("authorization", other.as_str()), http];

    // tools/list shows each caller the prices of its class.
    assert_eq!(
        listed_price(gw, &partner_h, "dear").await,
        json!({"free": true, "offers": []})
    );
    for h in [&other_h[..], &[http][..]] {
        let p = listed_price(gw, h, "dear").await;
        assert_eq!(p["free"], false, "{p}");
        assert_eq!(p["offers"][0]["rail"], "pow", "{p}");
    }

    // The partner calls `dear` free: no credential but its token, which is not spent.
    let r = post(gw, &partner_h, &call(10, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "dear 1");
    // Anyone else must solve a puzzle first (the shadow class `gold`, free too, changes
    // nothing).
    for h in [&other_h[..], &[http][..]] {
        let r = post(gw, h, &call(11, "dear", json!({"n": 1}))).await;
        assert_eq!(r.status, 402, "{}", r.text());
        assert!(
            r.headers
                .get_all("www-authenticate")
                .iter()
                .any(|v| v.to_str().unwrap().starts_with("PoW")),
            "{:?}",
            r.headers
        );
    }

    // The buckets: the default class's 429 comes after 3 calls, the partner's after 8. (The
    // other signed-in caller's free calls count on its address, as the anonymous caller's:
    // already spent.)
    assert_eq!(echoes_before_429(gw, &[http], 100).await, DEFAULT_BURST);
    assert_eq!(echoes_before_429(gw, &other_h, 200).await, 0);
    assert_eq!(echoes_before_429(gw, &partner_h, 300).await, PARTNER_BURST);

    let m = run.live.metrics();
    // The partner's calls: dear once, echo nine times (eight through, the ninth limited).
    assert_eq!(
        m.policy_count_of("partners", "classed"),
        1 + PARTNER_BURST as u64 + 1
    );
    // The rule on trial counted the other signed-in caller's calls (dear, one echo), never
    // the partner's (put in its class first) nor the anonymous caller's.
    assert_eq!(m.policy_count_of("pilot", "would_class"), 2);
    assert_eq!(m.policy_count_of("pilot", "classed"), 0);
    let text = m.render(&[]);
    assert!(
        text.contains("turnpike_policy_decisions_total{rule=\"pilot\",decision=\"would_class\"} 2"),
        "{text}"
    );

    // A reload changes a class: the partner's bucket grows from 8 to 20, on the cells it has
    // (the limits are unchanged, so kept): 12 more calls.
    let mut cfg = (*run.live.config()).clone();
    cfg.classes
        .get_mut("partner")
        .unwrap()
        .limits
        .as_mut()
        .unwrap()
        .burst = 20;
    let changed = run.live.apply(cfg).unwrap();
    assert_eq!(changed, ["[classes]"]);
    assert_eq!(
        echoes_before_429(gw, &partner_h, 400).await,
        20 - PARTNER_BURST
    );
    assert_eq!(
        echoes_before_429(gw, &[http], 500).await,
        0,
        "the default class's is spent"
    );
}

/// A class rule names a class the file defines, and says which: refused at the `class`
/// value's line otherwise.
#[test]
fn a_class_rule_names_a_defined_class() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:3001/mcp\"\n";
    let src = format!(
        "{base}[[policy]]\nname = \"p\"\nwhen = \"true\"\naction = \"class\"\nclass = \"nope\"\n[classes.partner.limits]\nburst = 5\nrate = \"1/s\"\n"
    );
    let e = turnpike_gateway::parse(&src, "t.toml").unwrap_err();
    let p = &e.problems[0];
    assert_eq!((p.line, p.col), (7, 9), "{e}");
    assert!(p.message.contains("names class \"nope\""), "{e}");
    assert!(p.message.contains("the classes are partner"), "{e}");
    // action = "class" without a class, and a class on a deny rule.
    let src = format!("{base}[[policy]]\nname = \"p\"\nwhen = \"true\"\naction = \"class\"\n");
    let e = turnpike_gateway::parse(&src, "t.toml").unwrap_err();
    assert!(e.problems[0].message.contains("needs class"), "{e}");
    let src = format!(
        "{base}[[policy]]\nname = \"p\"\nwhen = \"true\"\naction = \"deny\"\nclass = \"x\"\n"
    );
    let e = turnpike_gateway::parse(&src, "t.toml").unwrap_err();
    assert!(e.problems[0].message.contains("class belongs"), "{e}");
    // A class's price is any price form, at its own line when it is wrong; a policy has no
    // place in it.
    let src = format!("{base}[classes.partner.tools.search]\nfree = \"yes\"\n");
    let e = turnpike_gateway::parse(&src, "t.toml").unwrap_err();
    assert_eq!(e.problems[0].line, 4, "{e}");
    let src = format!(
        "{base}[classes.partner.tools.search]\nfree = true\npolicy = \"true\"\n[classes.partner]\nlimit = 1\n"
    );
    let e = turnpike_gateway::parse(&src, "t.toml").unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
    assert!(e.to_string().contains("cannot have a policy"), "{e}");
    assert!(e.to_string().contains("unknown key `limit`"), "{e}");
    // A good one parses, and its prices are the gateway's with the class's in their place.
    let src = format!(
        "{base}[tools.default]\nfree = true\n[tools.echo]\nfree = true\n[classes.partner.tools.default]\nfree = true\n[classes.partner.limits]\nburst = 500\nrate = \"600/min\"\nconcurrency = 32\n"
    );
    let cfg = turnpike_gateway::parse(&src, "t.toml").unwrap();
    let p = cfg.class_policy("partner").unwrap();
    assert!(p.price("tools/call", Some("echo")).is_free());
    assert_eq!(cfg.classes["partner"].limits.unwrap().burst, 500);
    assert!(cfg.class_policy("gold").is_none());
}
