//! The L402 rail through the real gateway: dual-rail challenges, paying through the dev
//! wallet, billing modes, refunds, and the attacks that must fail.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use http::Method;
use serde_json::{json, Value};
use support::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A fresh data directory under the system temp dir.
fn data_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "turnpike-l402-test-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Gateway config: `echo` dual rail (pow or 1000 msat per call), `dear` and every other tool
/// on a balance (1000 msat a call, 3000 msat of credit per invoice); the dev backend and its
/// wallet.
fn l402_config(upstream: SocketAddr, dir: &std::path::Path, lightning: &str) -> String {
    format!(
        r#"{head}
[tools.echo]
pow = 3000
l402 = {{ msat = 1000 }}
[tools.dear]
l402 = {{ msat = 1000, mode = "balance", bundle = 3000 }}
[tools.default]
l402 = {{ msat = 1000, mode = "balance", bundle = 3000 }}
[tools.slow]
free = true

[l402]
store = "memory"

{lightning}
"#,
        head = config_head(upstream, &dir.display().to_string(), ""),
    )
}

const DEV: &str =
    "[lightning]\nbackend = \"dev\"\n[lightning.dev_wallet]\nlisten = \"127.0.0.1:0\"\n";

struct Env {
    gw: SocketAddr,
    log: Log,
    dir: PathBuf,
}

async fn setup_l402(json: bool, lightning: &str) -> Env {
    let (up, log) = start_upstream(json).await;
    let dir = data_dir();
    let gw = start_gateway_with(&l402_config(up, &dir, lightning)).await;
    Env { gw, log, dir }
}

/// The L402 challenge in a 402 reply: (macaroon, invoice), read from the first
/// `WWW-Authenticate` line.
fn l402_challenge(r: &Reply) -> (String, String) {
    let first = r.headers.get_all("www-authenticate").iter().next().unwrap();
    let first = first.to_str().unwrap();
    let re = first
        .strip_prefix("L402 macaroon=\"")
        .unwrap_or_else(|| panic!("first line is not L402: {first}"));
    let (mac, rest) = re.split_once("\", invoice=\"").unwrap();
    let inv = rest.strip_suffix('"').unwrap();
    (mac.to_owned(), inv.to_owned())
}

fn l402_auth(mac: &str, preimage: &str) -> String {
    format!("L402 {mac}:{preimage}")
}

/// Buys a token for `tool` (HTTP 402, pay, return the Authorization value).
async fn buy(env: &Env, tool: &str) -> (String, String, String) {
    let r = post(env.gw, &[], &call(1, tool, json!({"text": "x", "n": 1}))).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let (mac, inv) = l402_challenge(&r);
    let pre = pay(&env.dir, &inv).await;
    (l402_auth(&mac, &pre), mac, pre)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_rail_402_pay_and_retry() {
    let env = setup_l402(true, DEV).await;
    let before = env.log.lock().len();
    let req = call(3, "echo", json!({"text": "paid"}));
    let r = post(env.gw, &[], &req).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let www: Vec<String> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(www.len(), 2, "{www:?}");
    assert!(
        www[0].starts_with("L402 macaroon=\""),
        "L402 first: {www:?}"
    );
    assert!(www[1].starts_with("PoW challenge=\""), "{www:?}");
    // The exact shape: macaroon (padded standard base64), then invoice, nothing else.
    let (mac, inv) = l402_challenge(&r);
    assert_eq!(
        www[0],
        format!("L402 macaroon=\"{mac}\", invoice=\"{inv}\"")
    );
    assert!(B64.decode(&mac).is_ok(), "standard padded base64");
    assert!(
        inv.starts_with("lnbcrt10n1"),
        "1000 msat regtest invoice: {inv}"
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], -31402);
    let cs = v["error"]["data"]["challenges"].as_array().unwrap();
    assert_eq!(cs[0]["rail"], "l402");
    assert_eq!(cs[0]["macaroon"], mac);
    assert_eq!(cs[0]["invoice"], inv);
    assert_eq!(cs[0]["amount_msat"], 1000);
    assert_eq!(cs[0]["mode"], "per_call");
    assert_eq!(cs[1]["rail"], "pow");
    assert_eq!(env.log.lock().len(), before, "nothing went upstream");

    let pre = pay(&env.dir, &inv).await;
    let auth = l402_auth(&mac, &pre);
    let r = post(env.gw, &[("authorization", &auth)], &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "paid");
    let seen = env.log.lock().last().cloned().unwrap();
    assert!(
        !seen.headers.contains_key("authorization"),
        "credential stripped"
    );

    // Per call: a replay gets a fresh 402 (with a new invoice), not 401.
    let r = post(env.gw, &[("authorization", &auth)], &req).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let (mac2, inv2) = l402_challenge(&r);
    assert_ne!(inv2, inv);
    assert_ne!(mac2, mac);
    let refusals = &r.json()["error"]["data"]["refusals"];
    assert_eq!(refusals[0]["rail"], "l402");
    assert!(
        refusals[0]["reason"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{refusals}"
    );

    // The LSAT scheme in lower case, as a second Authorization line, works too.
    let pre2 = pay(&env.dir, &inv2).await;
    let r = send(request(
        env.gw,
        Method::POST,
        &[
            ("authorization", "Bearer something-else"),
            ("authorization", &format!("lsat {mac2}:{pre2}")),
        ],
        req.to_string(),
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_band_meta_credential_and_stripping() {
    let env = setup_l402(true, DEV).await;
    let session = ("mcp-protocol-version", "2025-11-25");
    let req = call(4, "echo", json!({"text": "meta"}));
    let r = post(env.gw, &[session], &req).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["result"]["isError"], true);
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("Lightning invoice") && text.contains("turnpike/l402"),
        "{text}"
    );
    assert!(
        text.contains("turnpike/pow") && text.contains("without paying"),
        "both options: {text}"
    );
    let c = &v["result"]["structuredContent"]["turnpike"]["challenges"][0];
    assert_eq!(c["rail"], "l402");
    let pre = pay(&env.dir, c["invoice"].as_str().unwrap()).await;
    let mut paid = req.clone();
    paid["params"]["_meta"] =
        json!({"turnpike/l402": {"macaroon": c["macaroon"], "preimage": pre}, "other": 1});
    let r = post(env.gw, &[session], &paid).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "meta");
    let seen = env.log.lock().last().cloned().unwrap();
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body["params"]["_meta"],
        json!({"other": 1}),
        "turnpike/l402 removed before forwarding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_lists_l402_offers() {
    let env = setup_l402(true, DEV).await;
    let r = post(
        env.gw,
        &[],
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let tools = r.json()["result"]["tools"].as_array().unwrap().clone();
    let price =
        |n: &str| tools.iter().find(|t| t["name"] == n).unwrap()["_meta"]["turnpike/price"].clone();
    let echo = price("echo");
    assert_eq!(echo["free"], false);
    assert_eq!(
        echo["offers"][0],
        json!({"rail":"l402","msat":1000,"mode":"per_call"})
    );
    assert_eq!(echo["offers"][1]["rail"], "pow");
    assert_eq!(
        price("dear")["offers"][0],
        json!({"rail":"l402","msat":1000,"mode":"balance","bundle":3000})
    );
}

async fn balance_debits_and_refunds(json_upstream: bool) {
    let env = setup_l402(json_upstream, DEV).await;
    let (auth, _, _) = buy(&env, "dear").await;
    // 3000 msat of credit: a call, then a call the upstream fails (an unknown tool: a JSON-RPC
    // error), which is refunded; then two more calls; the fourth paid call is refused.
    let ok = |id| call(id, "dear", json!({"n": id}));
    let r = post(env.gw, &[("authorization", &auth)], &ok(1)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "dear 1");
    let r = post(
        env.gw,
        &[("authorization", &auth)],
        &call(2, "no-such-tool", json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("error").is_some(), "{}", r.text());
    // The refund of an SSE answer happens as the stream ends; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for id in 3..=4 {
        let r = post(env.gw, &[("authorization", &auth)], &ok(id)).await;
        assert_eq!(r.status, 200, "call {id}: {}", r.text());
    }
    let r = post(env.gw, &[("authorization", &auth)], &ok(5)).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let reason = r.json()["error"]["data"]["refusals"][0]["reason"].clone();
    assert!(reason.as_str().unwrap().contains("balance"), "{reason}");
    // A top-up challenge came with it.
    let _ = l402_challenge(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_mode_debits_and_refunds_failed_calls_json() {
    balance_debits_and_refunds(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_mode_debits_and_refunds_failed_calls_sse() {
    balance_debits_and_refunds(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_refunded_when_the_upstream_is_unreachable() {
    // A gateway whose upstream is a closed port, sharing nothing else.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = data_dir();
    let gw = start_gateway_with(&l402_config(closed, &dir, DEV)).await;
    let env = Env {
        gw,
        log: Default::default(),
        dir,
    };
    let (auth, _, _) = buy(&env, "dear").await;
    for id in 0..5 {
        let r = post(
            env.gw,
            &[("authorization", &auth)],
            &call(id, "dear", json!({"n": 1})),
        )
        .await;
        assert_eq!(
            r.status,
            502,
            "call {id}: every failure is refunded: {}",
            r.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_never_overspend_a_balance() {
    let env = setup_l402(true, DEV).await;
    let (auth, _, _) = buy(&env, "dear").await;
    let mut tasks = Vec::new();
    for id in 0..12 {
        let auth = auth.clone();
        let gw = env.gw;
        tasks.push(tokio::spawn(async move {
            post(
                gw,
                &[("authorization", &auth)],
                &call(id, "dear", json!({"n": id})),
            )
            .await
            .status
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap().as_u16() {
            200 => ok += 1,
            402 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(
        (ok, refused),
        (3, 9),
        "3000 msat buys exactly three 1000-msat calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_mismatched_credentials_get_401() {
    let env = setup_l402(true, DEV).await;
    let req = call(1, "echo", json!({"text": "x"}));
    let (_, mac, pre) = buy(&env, "echo").await;
    let (_, mac_b, pre_b) = buy(&env, "echo").await;
    let status = |r: &Reply| {
        (
            r.status.as_u16(),
            r.json()["error"]["data"]["refusals"].clone(),
        )
    };

    // The preimage of another invoice.
    let r = post(env.gw, &[("authorization", &l402_auth(&mac, &pre_b))], &req).await;
    assert_eq!(r.status, 401, "{:?}", status(&r));
    // The payment hash presented as the preimage.
    let raw = B64.decode(&mac).unwrap();
    let m = turnpike_l402::Macaroon::decode(&raw, Default::default()).unwrap();
    let id = turnpike_l402::Identifier::decode(m.identifier()).unwrap();
    let r = post(
        env.gw,
        &[(
            "authorization",
            &l402_auth(&mac, &hex::encode(id.payment_hash)),
        )],
        &req,
    )
    .await;
    assert_eq!(r.status, 401, "{:?}", status(&r));
    // A forged signature.
    let mut forged = raw.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let r = post(
        env.gw,
        &[("authorization", &l402_auth(&B64.encode(&forged), &pre))],
        &req,
    )
    .await;
    assert_eq!(r.status, 401, "{:?}", status(&r));
    assert_eq!(r.json()["error"]["code"], -31401);
    // A caveat altered (same length, so the encoding stays valid): echo → dear.
    let text = b"turnpike/tools=echo";
    let at = raw.windows(text.len()).position(|w| w == text).unwrap();
    let mut altered = raw.clone();
    altered[at + 15..at + 19].copy_from_slice(b"dear");
    let r = post(
        env.gw,
        &[("authorization", &l402_auth(&B64.encode(&altered), &pre))],
        &call(1, "dear", json!({"n": 1})),
    )
    .await;
    assert_eq!(r.status, 401, "{:?}", status(&r));
    // A caveat removed: rebuild without the expiry caveat, keeping the old signature.
    let mut stripped =
        turnpike_l402::Macaroon::new(&[0u8; 32], m.identifier().to_vec(), m.location());
    for c in m.caveats() {
        if !c.id.starts_with(b"turnpike/expires") {
            stripped.add_first_party_caveat(c.id.clone());
        }
    }
    let r = post(
        env.gw,
        &[("authorization", &l402_auth(&stripped.to_base64(), &pre))],
        &req,
    )
    .await;
    assert_eq!(r.status, 401, "{:?}", status(&r));
    // After all that, the genuine credentials still work (none was consumed by the attacks).
    let r = post(env.gw, &[("authorization", &l402_auth(&mac, &pre))], &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        env.gw,
        &[("authorization", &l402_auth(&mac_b, &pre_b))],
        &req,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pow_still_works_on_a_dual_rail_tool() {
    let env = setup_l402(true, DEV).await;
    let req = call(8, "echo", json!({"text": "solved"}));
    let r = post(env.gw, &[], &req).await;
    assert_eq!(r.status, 402);
    let www = r.headers.get_all("www-authenticate").iter().nth(1).unwrap();
    let (token, nonces) = solve(www.to_str().unwrap());
    let auth = turnpike_client::authorization_value(&token, &nonces);
    let r = post(env.gw, &[("authorization", &auth)], &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["content"][0]["text"], "solved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lightning_down_pow_still_offered_never_a_free_pass() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let lnd = format!(
        "[lightning]\nbackend = \"lnd\"\nurl = \"http://{closed}\"\nmacaroon_hex = \"0201\"\ntimeout_secs = 2\nlookup_retries = 0\n"
    );
    let env = setup_l402(true, &lnd).await;
    let before = env.log.lock().len();
    let req = call(2, "echo", json!({"text": "pow only"}));
    let r = post(env.gw, &[], &req).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let www: Vec<_> = r.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(www.len(), 1, "only PoW: {www:?}");
    assert!(www[0].to_str().unwrap().starts_with("PoW "));
    // An L402-only tool: nothing can be offered → 503, and nothing passes.
    let r = post(env.gw, &[], &call(3, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -31503);
    // A made-up L402 credential is refused, not passed.
    let fake = turnpike_l402::Macaroon::new(
        &[1u8; 32],
        turnpike_l402::Identifier::random([2u8; 32])
            .encode()
            .to_vec(),
        "turnpike",
    );
    let r = post(
        env.gw,
        &[(
            "authorization",
            &l402_auth(&fake.to_base64(), &"00".repeat(32)),
        )],
        &call(3, "dear", json!({"n": 1})),
    )
    .await;
    assert!(r.status == 401 || r.status == 503, "{}", r.status);
    assert_eq!(env.log.lock().len(), before, "nothing reached the upstream");
    // PoW works.
    let (token, nonces) = solve(www[0].to_str().unwrap());
    let auth = turnpike_client::authorization_value(&token, &nonces);
    let r = post(env.gw, &[("authorization", &auth)], &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l402_price_without_lightning_is_a_config_error() {
    let cfg = l402_config(
        "127.0.0.1:1".parse().unwrap(),
        std::path::Path::new("/tmp/x"),
        "",
    );
    let e = turnpike_gateway::parse(&cfg, "t.toml").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("t.toml:16:8: this price names l402, but there is no [lightning] section"),
        "{text}"
    );
    assert!(text.contains("hint: add a [lightning] section"), "{text}");
}
