//! A price in shadow mode (`mode = "shadow"`) over real HTTP, in front of a real rmcp server:
//! the same traffic to a gateway enforcing the price and to one with it in shadow mode; the
//! shadow one refuses nothing and counts, call for call, what the enforcing one refused; a
//! valid puzzle solution still pays, once.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::*;

const ADMIN_TOKEN: &str = "price-shadow-test-admin-token-0123456789";

/// A gateway with the test config (its `[tools.default]` in shadow mode when `shadow`) and an
/// admin listener: its address and the admin's.
async fn gateway_with_admin(shadow: bool) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let (up, _log) = start_upstream(true).await;
    let mut base = config_text(up, "");
    if shadow {
        base = base.replace(
            "[tools.default]\npow = 3000\n",
            "[tools.default]\npow = 3000\nmode = \"shadow\"\n",
        );
        assert!(base.contains("mode = \"shadow\""), "{base}");
    }
    let text = format!("{base}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n");
    let cfg = turnpike_gateway::parse(&text, "t.toml").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let (_, admin) = support::serve_ready(listener, cfg).await;
    (gw, admin.unwrap())
}

/// The gateway's metrics text.
async fn metrics(admin: std::net::SocketAddr) -> String {
    let req = http::Request::get(format!("http://{admin}/metrics"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    send(req).await.text()
}

/// The admin API's summary.
async fn summary(admin: std::net::SocketAddr) -> Value {
    let req = http::Request::get(format!("http://{admin}/admin/api/summary"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The summary's dry runs of `[tools.default]`'s price: by reason, (refused, would refuse);
/// each row checked to name the price as the metrics do.
async fn dry_prices(admin: std::net::SocketAddr) -> std::collections::BTreeMap<String, (u64, u64)> {
    let s = summary(admin).await;
    let dry = &s["dry_runs"];
    assert!(dry["rules"].as_array().unwrap().is_empty(), "{dry}");
    assert!(dry["limits"]["would_refuse"].is_u64(), "{dry}");
    dry["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["tool"], "default", "{p}");
            (
                p["reason"].as_str().unwrap().to_owned(),
                (
                    p["refused"].as_u64().unwrap(),
                    p["would_refuse"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// One series of a metrics text (0 when absent).
fn series(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// `turnpike_price_would_refuse_total` for `[tools.default]` and `reason`.
fn would_refuse(text: &str, reason: &str) -> u64 {
    series(
        text,
        &format!("turnpike_price_would_refuse_total{{tool=\"default\",reason=\"{reason}\"}}"),
    )
}

fn would_refuse_all(text: &str) -> u64 {
    ["challenge", "refused", "invalid", "unavailable"]
        .iter()
        .map(|r| would_refuse(text, r))
        .sum()
}

/// Tool calls let through on `rail` (`none`: free). `dear` is no configured name: `other`.
fn passed_on(text: &str, rail: &str) -> u64 {
    series(
        text,
        &format!(
            "turnpike_calls_total{{method=\"tools/call\",tool=\"other\",rail=\"{rail}\",outcome=\"passed\"}}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_price_refuses_nothing_and_counts_what_enforcing_refuses() {
    let (enforcing, enforcing_admin) = gateway_with_admin(false).await;
    let (shadow, shadow_admin) = gateway_with_admin(true).await;

    // No credential, a malformed one, a well-formed one that does not verify.
    let (token, mut nonces) = {
        let r = post(enforcing, &[], &call(100, "dear", json!({"n": 100}))).await;
        assert_eq!(r.status, 402, "{}", r.text());
        solve(&r.text())
    };
    nonces.iter_mut().for_each(|n| *n ^= 1);
    let wrong = turnpike_client::authorization_value(&token, &nonces);
    let credentials: Vec<Option<String>> = vec![
        None,
        None,
        None,
        Some("PoW not-a-credential".into()),
        Some(wrong),
    ];
    let mut refused = 0u64;
    for (i, cred) in credentials.iter().enumerate() {
        let i = i as i64;
        let req = call(i, "dear", json!({"n": i}));
        let headers: Vec<(&str, &str)> = match cred {
            Some(c) => vec![
                ("authorization", c.as_str()),
                ("turnpike-challenge", "http"),
            ],
            None => vec![("turnpike-challenge", "http")],
        };
        let r = post(enforcing, &headers, &req).await;
        match r.status.as_u16() {
            200 => {}
            400..=402 => refused += 1,
            s => panic!("enforcing answered {s}: {}", r.text()),
        }
        let r = post(shadow, &headers, &req).await;
        assert_eq!(r.status, 200, "shadow mode refused: {}", r.text());
        let v = r.json();
        assert!(v.get("error").is_none(), "{v}");
        assert_ne!(v["result"]["isError"], true, "{v}");
    }
    assert_eq!(refused, credentials.len() as u64, "enforcing refuses each");
    let enforcing_text = metrics(enforcing_admin).await;
    let shadow_text = metrics(shadow_admin).await;
    assert_eq!(would_refuse_all(&enforcing_text), 0, "{enforcing_text}");
    assert_eq!(would_refuse_all(&shadow_text), refused, "{shadow_text}");
    assert_eq!(would_refuse(&shadow_text, "challenge"), 3, "{shadow_text}");
    assert_eq!(passed_on(&shadow_text, "none"), refused, "{shadow_text}");

    // The admin API's dry runs (the dashboard's panel): the shadow price's would-refuse by
    // reason beside the enforcing price's refusals, by the same labels — equal, but for the
    // one challenge the enforcing gateway gave first (call 100).
    let enforcing_dry = dry_prices(enforcing_admin).await;
    let shadow_dry = dry_prices(shadow_admin).await;
    let mut total = 0;
    for (reason, (refused_here, would)) in &shadow_dry {
        assert_eq!(
            *refused_here, 0,
            "a shadow price refuses nothing: {shadow_dry:?}"
        );
        let (enforced, would_there) = enforcing_dry[reason];
        assert_eq!(would_there, 0, "{enforcing_dry:?}");
        let first = u64::from(reason == "challenge");
        assert_eq!(
            *would,
            enforced - first,
            "{reason}: {enforcing_dry:?} {shadow_dry:?}"
        );
        total += would;
    }
    assert_eq!(total, refused);
    assert_eq!(shadow_dry["challenge"], (0, 3));

    // A valid solution on the shadow price pays, and is spent: its second use is a free call
    // counted as one the price would have refused.
    let req = call(50, "dear", json!({"n": 50}));
    let r = post(enforcing, &[], &req).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let (token, nonces) = solve(&r.text());
    let auth = turnpike_client::authorization_value(&token, &nonces);
    let headers = [("authorization", auth.as_str())];
    let r = post(shadow, &headers, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json();
    assert!(v.get("error").is_none(), "{v}");
    let text = metrics(shadow_admin).await;
    assert_eq!(
        would_refuse_all(&text),
        refused,
        "a paying call is not counted"
    );
    assert_eq!(passed_on(&text, "pow"), 1, "{text}");
    let r = post(shadow, &headers, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = metrics(shadow_admin).await;
    assert_eq!(passed_on(&text, "pow"), 1, "spent once: {text}");
    assert_eq!(would_refuse_all(&text), refused + 1, "{text}");
    assert_eq!(would_refuse(&text, "challenge"), 3, "{text}");
}

/// `mode` accepts only `enforce` and `shadow`, and belongs to a price, not to `free = true`.
#[test]
fn price_mode_is_checked_at_its_place() {
    let base = "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\n[pow]\nkeys = [{ id = 1, secret = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\" }]\n";
    let ok = format!(
        "{base}[tools.a]\npow = 1000\nmode = \"shadow\"\n[tools.b]\npow = 10\nmode = \"enforce\"\n"
    );
    let cfg = turnpike_gateway::parse(&ok, "t.toml").unwrap();
    assert!(cfg.tools["a"].shadow);
    assert!(!cfg.tools["b"].shadow);
    assert!(cfg.tools["a"].to_price().shadow);

    let mounted = "[pow]\nkeys = [{ id = 1, secret = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\" }]\n[[mount]]\npath = \"/a/mcp\"\nupstream = { url = \"http://127.0.0.1:9/mcp\" }\n[mount.tools.default]\npow = 1000\nmode = \"shadow\"\n[mount.methods.\"resources/read\"]\npow = 1000\nmode = \"shadow\"\n";
    let cfg = turnpike_gateway::parse(mounted, "t.toml").unwrap();
    assert!(cfg.mounts[0].tools["default"].to_price().shadow);
    assert!(cfg.mounts[0].methods["resources/read"].shadow);

    let bad = format!("{base}[tools.a]\npow = 1000\nmode = \"dry\"\n");
    let e = turnpike_gateway::parse(&bad, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.toml:9:8"), "{e}");
    assert!(e.contains("\"enforce\" or \"shadow\""), "{e}");

    let both = format!("{base}[tools.a]\nfree = true\nmode = \"shadow\"\n");
    let e = turnpike_gateway::parse(&both, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.toml:9:8"), "{e}");
    assert!(e.contains("both free and a mode"), "{e}");
}
