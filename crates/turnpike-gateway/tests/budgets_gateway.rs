//! Budgets and the loop brake's effort multiplier through the real gateway: the daily msat cap
//! of an L402 token (balance debits, paid through the dev wallet), and a struck identity's next
//! proof-of-work challenge asking for more work.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use support::*;

fn data_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "turnpike-budget-test-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (macaroon, invoice) of the L402 line of a 402 reply.
fn l402_challenge(r: &Reply) -> (String, String) {
    let first = r.headers.get_all("www-authenticate").iter().next().unwrap();
    let rest = first
        .to_str()
        .unwrap()
        .strip_prefix("L402 macaroon=\"")
        .unwrap();
    let (mac, rest) = rest.split_once("\", invoice=\"").unwrap();
    (mac.to_owned(), rest.strip_suffix('"').unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msat_budget_caps_a_tokens_daily_spend() {
    let (up, _log) = start_upstream(true).await;
    let dir = data_dir();
    let cfg = format!(
        r#"{}
[tools.dear]
l402 = {{ msat = 1000, mode = "balance", bundle = 10000 }}
[l402]
store = "memory"
[lightning]
backend = "dev"
[lightning.dev_wallet]
listen = "127.0.0.1:0"
[limits.loop_brake]
enabled = false
[budgets]
msat_per_token_per_day = 3000
"#,
        config_text(up, &format!("data_dir = \"{}\"", dir.display()))
    );
    let gw = start_gateway_with(&cfg).await;
    let r = post(gw, &[], &call(1, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let (mac, inv) = l402_challenge(&r);
    let pre = pay(&dir, &inv).await;
    let auth = format!("L402 {mac}:{pre}");
    let h = [
        ("authorization", auth.as_str()),
        ("turnpike-challenge", "http"),
    ];
    for i in 0..3 {
        let r = post(gw, &h, &call(10 + i, "dear", json!({"n": i}))).await;
        assert_eq!(r.status, 200, "call {i}: {}", r.text());
    }
    // 3000 msat spent today: the fourth debit would pass the balance (10 000) but not the cap.
    for i in 0..2 {
        let r = post(gw, &h, &call(20 + i, "dear", json!({"n": 9}))).await;
        assert_eq!(r.status, 429, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], -31429);
        assert_eq!(v["error"]["data"]["reason"], "spend_budget");
        assert_eq!(v["error"]["data"]["policy"], "msat_daily");
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=86_400).contains(&retry), "{retry}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first number under a key `effort` anywhere in `v`.
fn effort(v: &Value) -> Option<u64> {
    match v {
        Value::Object(m) => m
            .get("effort")
            .and_then(Value::as_u64)
            .or_else(|| m.values().find_map(effort)),
        Value::Array(a) => a.iter().find_map(effort),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_braked_identity_gets_a_harder_puzzle() {
    let (up, _log) = start_upstream(true).await;
    let cfg = format!(
        "{}\n[tools.dear]\npow = 3000\n[limits.loop_brake]\nmax_repeats = 2\nwindow_secs = 600\nstrike_decay_secs = 600\n",
        config_text(up, "")
    );
    let gw = start_gateway_with(&cfg).await;
    let req = call(1, "dear", json!({"n": 1}));
    let h = [("turnpike-challenge", "http")];
    let r = post(gw, &h, &req).await;
    assert_eq!(r.status, 402);
    let base = effort(&r.json()).expect("an effort in the challenge");
    // The same call, solved each time: two go through, the third is braked.
    for i in 0..3 {
        let r = post(gw, &h, &req).await;
        assert_eq!(r.status, 402);
        let (token, nonces) = solve(&r.text());
        let auth = turnpike_client::authorization_value(&token, &nonces);
        let r = post(
            gw,
            &[("authorization", &auth), ("turnpike-challenge", "http")],
            &req,
        )
        .await;
        let want = if i < 2 { 200 } else { 429 };
        assert_eq!(r.status, want, "call {i}: {}", r.text());
        if i == 2 {
            assert_eq!(r.json()["error"]["data"]["reason"], "loop_brake");
        }
    }
    // One strike: the next challenge asks twice the work; other tools too (it is the caller's).
    let r = post(gw, &h, &call(2, "dear", json!({"n": 2}))).await;
    assert_eq!(r.status, 402);
    assert_eq!(effort(&r.json()), Some(base * 2));
    let (token, nonces) = solve(&r.text());
    let auth = turnpike_client::authorization_value(&token, &nonces);
    let r = post(
        gw,
        &[("authorization", &auth), ("turnpike-challenge", "http")],
        &call(2, "dear", json!({"n": 2})),
    )
    .await;
    assert_eq!(r.status, 200, "the harder puzzle, solved, is accepted");
}
