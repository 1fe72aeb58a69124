//! The MPP rail (the `Payment` scheme, Lightning `charge`) through the real gateway: the 402
//! beside the other rails' challenges, paying through the dev wallet, the receipt, the MCP
//! binding (-32042 in band, the credential in `_meta`), and the attacks that must fail, each
//! without the upstream running.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{json, Value};
use support::chain::{data_dir, deps_dir, node_script, x402_head};
use support::*;
use turnpike_mpp::wire::{b64url, PaymentChallenge, PaymentCredential, PaymentReceipt};

/// Gateway config: `echo` on MPP, L402 or proof-of-work; `dear` on MPP alone (10 sat);
/// `cheap` on MPP (1 sat); the dev backend and its wallet.
fn mpp_config(upstream: SocketAddr, dir: &std::path::Path) -> String {
    format!(
        r#"{head}
[tools.echo]
pow = 3000
l402 = {{ sat = 10 }}
mpp = {{ sat = 10 }}
[tools.dear]
mpp = {{ sat = 10 }}
[tools.cheap]
mpp = {{ sat = 1 }}
[tools.slow]
free = true

[l402]
store = "memory"

[mpp]
expiry_secs = 300

[lightning]
backend = "dev"
[lightning.dev_wallet]
listen = "127.0.0.1:0"
"#,
        head = x402_head(upstream, dir),
    )
}

struct Env {
    gw: SocketAddr,
    log: Log,
    dir: PathBuf,
}

async fn setup_mpp(json: bool) -> Env {
    let (up, log) = start_upstream(json).await;
    let dir = data_dir();
    let gw = start_gateway_with(&mpp_config(up, &dir)).await;
    Env { gw, log, dir }
}

impl Env {
    /// How many `tools/call` requests the upstream saw.
    fn calls(&self) -> usize {
        tool_calls(&self.log)
    }
}

/// The `Payment` challenge among a reply's `WWW-Authenticate` lines.
fn payment_challenge(r: &Reply) -> PaymentChallenge {
    let line = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|l| l.starts_with("Payment "))
        .unwrap_or_else(|| panic!("no Payment challenge: {:?}", r.headers));
    PaymentChallenge::parse_header(line).unwrap()
}

fn invoice_of(c: &PaymentChallenge) -> String {
    c.request_json().unwrap()["methodDetails"]["invoice"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The credential for `c` with `preimage`.
fn credential(c: &PaymentChallenge, preimage: &str) -> PaymentCredential {
    let mut payload = serde_json::Map::new();
    payload.insert("preimage".into(), preimage.into());
    PaymentCredential {
        challenge: c.clone(),
        source: None,
        payload,
    }
}

/// Gets a 402 for `tool` with `args`, pays it; the challenge and the preimage.
async fn buy(env: &Env, tool: &str, args: Value) -> (PaymentChallenge, String) {
    let r = post(env.gw, &[], &call(1, tool, args)).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let c = payment_challenge(&r);
    let pre = pay(&env.dir, &invoice_of(&c)).await;
    (c, pre)
}

/// A 402 whose Payment challenge is fresh (the refusal of a credential, per the draft).
fn assert_refused(r: &Reply, spent: &PaymentChallenge, why: &str) {
    assert_eq!(r.status, 402, "{}", r.text());
    let fresh = payment_challenge(r);
    assert_ne!(fresh.id, spent.id, "a fresh challenge");
    assert!(r.text().contains(why), "{why:?} not in {}", r.text());
    assert!(r.headers.get("payment-receipt").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_402_pay_retry_and_receipt() {
    let env = setup_mpp(false).await;
    let args = json!({"text": "paid"});
    let r = post(env.gw, &[], &call(1, "echo", args.clone())).await;
    assert_eq!(r.status, 402, "{}", r.text());
    let www: Vec<&str> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(www.len(), 3, "{www:?}");
    assert!(www[0].starts_with("L402 "), "{www:?}");
    assert!(www[1].starts_with("Payment id=\""), "{www:?}");
    assert!(www[2].starts_with("PoW "), "{www:?}");
    assert_eq!(r.headers["cache-control"], "no-store");
    let c = payment_challenge(&r);
    // The exact shape, parameter by parameter.
    assert_eq!(
        www[1],
        format!(
            "Payment id=\"{}\", realm=\"mcp.example.com\", method=\"lightning\", \
             intent=\"charge\", request=\"{}\", expires=\"{}\", opaque=\"{}\"",
            c.id,
            c.request,
            c.expires.as_deref().unwrap(),
            c.opaque.as_deref().unwrap()
        )
    );
    let req = c.request_json().unwrap();
    assert_eq!(req["amount"], "10");
    assert_eq!(req["currency"], "sat");
    assert_eq!(req["methodDetails"]["network"], "regtest");
    let invoice = invoice_of(&c);
    assert!(
        invoice.starts_with("lnbcrt100n1"),
        "10 sat regtest: {invoice}"
    );
    // The JSON-RPC body carries the same challenge with `request` as JSON.
    let body = r.json();
    let mpp = body["error"]["data"]["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["rail"] == "mpp")
        .unwrap()
        .clone();
    assert_eq!(mpp["id"], c.id.as_str());
    assert_eq!(mpp["request"], Value::Object(req.clone()));
    // Pay, retry.
    let pre = pay(&env.dir, &invoice).await;
    let auth = credential(&c, &pre).authorization();
    let r = post(
        env.gw,
        &[("authorization", &auth)],
        &call(2, "echo", args.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["content"][0]["text"], "paid");
    let receipt =
        PaymentReceipt::from_header(r.headers["payment-receipt"].to_str().unwrap()).unwrap();
    assert_eq!(receipt.method, "lightning");
    assert_eq!(receipt.challenge_id, c.id);
    assert_eq!(
        receipt.reference,
        req["methodDetails"]["paymentHash"].as_str().unwrap()
    );
    assert_eq!(r.headers["cache-control"], "private");
    // The receipt in result._meta too (through the SSE answer).
    assert_eq!(
        v["result"]["_meta"]["org.paymentauth/receipt"],
        receipt.to_json()
    );
    // The upstream ran once and never saw the credential.
    assert_eq!(env.calls(), 1);
    let seen = env.log.lock().last().cloned().unwrap();
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_once_and_sixteen_at_once() {
    let env = setup_mpp(true).await;
    let args = json!({"n": 1});
    let (c, pre) = buy(&env, "dear", args.clone()).await;
    let auth = credential(&c, &pre).authorization();
    let r = post(
        env.gw,
        &[("authorization", &auth)],
        &call(2, "dear", args.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        env.gw,
        &[("authorization", &auth)],
        &call(3, "dear", args.clone()),
    )
    .await;
    assert_refused(&r, &c, "already been used");
    assert_eq!(env.calls(), 1);

    // Sixteen at once with one fresh credential: exactly one passes.
    let (c, pre) = buy(&env, "dear", args.clone()).await;
    let auth = credential(&c, &pre).authorization();
    let ok = accepted_of_concurrent(&[env.gw], ("authorization", &auth), 16, |i| {
        call(10 + i as i64, "dear", args.clone())
    })
    .await;
    assert_eq!(ok, 1);
    assert_eq!(env.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_to_tool_arguments_and_payment() {
    let env = setup_mpp(true).await;
    let (c, pre) = buy(&env, "dear", json!({"n": 1})).await;
    let auth = credential(&c, &pre).authorization();
    // Another tool at the same price.
    let r = post(
        env.gw,
        &[("authorization", &auth)],
        &call(2, "echo", json!({"text": "x"})),
    )
    .await;
    assert_refused(&r, &c, "another call");
    // Other arguments.
    let r = post(
        env.gw,
        &[("authorization", &auth)],
        &call(3, "dear", json!({"n": 2})),
    )
    .await;
    assert_refused(&r, &c, "another call");
    // A forged id.
    let mut forged = credential(&c, &pre);
    forged.challenge.id = b64url(&[0u8; 32]);
    let r = post(
        env.gw,
        &[("authorization", &forged.authorization())],
        &call(4, "dear", json!({"n": 1})),
    )
    .await;
    assert_refused(&r, &c, "was not issued here");
    // A field under the id altered (a later expiry).
    let mut later = credential(&c, &pre);
    later.challenge.expires = Some("2099-01-01T00:00:00Z".into());
    let r = post(
        env.gw,
        &[("authorization", &later.authorization())],
        &call(5, "dear", json!({"n": 1})),
    )
    .await;
    assert_refused(&r, &c, "was not issued here");
    // Underpaid: the preimage of another (cheaper) invoice.
    let (_, cheap_pre) = buy(&env, "cheap", json!({})).await;
    let r = post(
        env.gw,
        &[("authorization", &credential(&c, &cheap_pre).authorization())],
        &call(6, "dear", json!({"n": 1})),
    )
    .await;
    assert_refused(&r, &c, "preimage does not match");
    // A cheap challenge paid, presented for the dear tool with its arguments: bound elsewhere.
    assert_eq!(env.calls(), 0, "the upstream never ran");
    // The genuine credential still pays (nothing above spent it).
    let r = post(
        env.gw,
        &[("authorization", &auth)],
        &call(7, "dear", json!({"n": 1})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(env.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_challenge_refused() {
    let env = setup_mpp(true).await;
    let (c, pre) = buy(&env, "dear", json!({"n": 1})).await;
    // The same challenge re-bound by the gateway's own key with an expiry in the past: the id
    // is genuine, the time is not.
    let key_hex = std::fs::read_to_string(env.dir.join("mpp.key")).unwrap();
    let mut key = [0u8; 32];
    hex::decode_to_slice(key_hex.trim(), &mut key).unwrap();
    let mut old = c.clone();
    old.expires = Some("2020-01-01T00:00:00Z".into());
    old.id = turnpike_mpp::wire::binding_id(&key, &old);
    let r = post(
        env.gw,
        &[("authorization", &credential(&old, &pre).authorization())],
        &call(2, "dear", json!({"n": 1})),
    )
    .await;
    assert_refused(&r, &c, "expired");
    assert_eq!(env.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_refused_without_running() {
    let env = setup_mpp(true).await;
    let huge = format!("Payment {}", "A".repeat(20_000));
    let not_json = format!("Payment {}", b64url(b"not json"));
    let no_payload = format!(
        "Payment {}",
        b64url(br#"{"challenge":{"id":"a","realm":"r","method":"lightning","intent":"charge","request":"e30"}}"#)
    );
    let bad_preimage = {
        let (c, _) = buy(&env, "dear", json!({"n": 1})).await;
        credential(&c, "zz").authorization()
    };
    for bad in [
        "Payment",
        "Payment !!!",
        "payment e30",
        huge.as_str(),
        not_json.as_str(),
        no_payload.as_str(),
    ] {
        let r = post(
            env.gw,
            &[("authorization", bad)],
            &call(2, "dear", json!({"n": 1})),
        )
        .await;
        // The draft's answer to a malformed credential: 402, a fresh challenge, the reason.
        assert_eq!(r.status, 402, "{bad:.30}: {}", r.text());
        payment_challenge(&r);
        let refusals = r.json()["error"]["data"]["refusals"].to_string();
        assert!(
            refusals.contains("malformed Payment credential"),
            "{refusals}"
        );
        assert!(r.headers.get("payment-receipt").is_none());
    }
    let r = post(
        env.gw,
        &[("authorization", &bad_preimage)],
        &call(3, "dear", json!({"n": 1})),
    )
    .await;
    assert_eq!(r.status, 402, "{}", r.text());
    assert!(r.text().contains("preimage"), "{}", r.text());
    assert_eq!(env.calls(), 0, "the upstream never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_band_32042_and_meta_credential() {
    let env = setup_mpp(true).await;
    let in_band = [("turnpike-challenge", "in-band")];
    let args = json!({"n": 3});
    // MPP alone: the MPP transport's JSON-RPC error.
    let r = post(env.gw, &in_band, &call(1, "dear", args.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], -32042, "{v}");
    assert_eq!(v["error"]["message"], "Payment Required");
    let data = &v["error"]["data"];
    assert_eq!(data["httpStatus"], 402);
    assert_eq!(data["problem"]["status"], 402);
    let ch = data["challenges"][0].clone();
    assert_eq!(ch["method"], "lightning");
    assert_eq!(ch["intent"], "charge");
    assert!(ch.get("rail").is_none(), "the draft's object only: {ch}");
    let invoice = ch["request"]["methodDetails"]["invoice"]
        .as_str()
        .unwrap()
        .to_owned();
    let pre = pay(&env.dir, &invoice).await;
    // Retry with the credential in params._meta, `request` as JSON, echoed unchanged.
    let mut req = call(2, "dear", args.clone());
    req["params"]["_meta"] = json!({
        "org.paymentauth/credential": {"challenge": ch, "payload": {"preimage": pre}},
        "progressToken": 5,
    });
    let r = post(env.gw, &in_band, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["content"][0]["text"], "dear 3", "{v}");
    let receipt = &v["result"]["_meta"]["org.paymentauth/receipt"];
    assert_eq!(receipt["status"], "success");
    assert_eq!(receipt["challengeId"], data["challenges"][0]["id"]);
    assert!(r.headers.get("payment-receipt").is_some());
    // The upstream saw the call without the credential, the rest of _meta kept.
    let seen = env.log.lock().last().cloned().unwrap();
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert!(body["params"]["_meta"]
        .get("org.paymentauth/credential")
        .is_none());
    assert_eq!(body["params"]["_meta"]["progressToken"], 5);
    // The same credential again, in band: -32043 with a fresh challenge.
    let r = post(env.gw, &in_band, &req).await;
    let v = r.json();
    assert_eq!(v["error"]["code"], -32043, "{v}");
    assert_ne!(v["error"]["data"]["challenges"][0]["id"], ch["id"]);
    assert_eq!(env.calls(), 1);

    // A malformed credential in band: -32043 with a fresh challenge.
    let mut bad = call(4, "dear", args.clone());
    bad["params"]["_meta"] = json!({"org.paymentauth/credential": {"challenge": 1}});
    let v = post(env.gw, &in_band, &bad).await.json();
    assert_eq!(v["error"]["code"], -32043, "{v}");
    assert_eq!(v["error"]["data"]["challenges"][0]["method"], "lightning");

    // Beside other rails: an isError result, with the MPP challenges in its _meta.
    let r = post(env.gw, &in_band, &call(3, "echo", json!({"text": "x"}))).await;
    let v = r.json();
    assert_eq!(v["result"]["isError"], true, "{v}");
    let pr = &v["result"]["_meta"]["org.paymentauth/payment-required"];
    assert_eq!(pr["httpStatus"], 402);
    assert_eq!(pr["challenges"][0]["method"], "lightning");
    assert!(v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("org.paymentauth/credential"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_the_offer() {
    let env = setup_mpp(true).await;
    let r = post(
        env.gw,
        &[],
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let dear = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "dear")
        .unwrap();
    let offers = dear["_meta"]["turnpike/price"]["offers"]
        .as_array()
        .unwrap();
    assert!(
        offers.contains(&json!({"rail":"mpp","method":"lightning","intent":"charge","sats":10})),
        "{offers:?}"
    );
}

/// `mppx`, the protocol's TypeScript client, pays a tool over HTTP through the gateway with the
/// Lightning charge method (defined through mppx's method API: tests/e2e/mppx_client.mjs), and
/// reads the receipt; its credential replayed is refused with a fresh challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mppx_client_pays_over_http() {
    let deps = deps_dir();
    assert!(
        deps.join("node_modules/mppx/package.json").is_file(),
        "mppx is not installed under {}: run scripts/setup-test-deps",
        deps.display()
    );
    let env = setup_mpp(true).await;
    let line = node_script(
        "mppx_client.mjs",
        &[
            &format!("http://{}/mcp", env.gw),
            &env.dir.join("dev-wallet.json").display().to_string(),
            "dear",
            &json!({"n": 7}).to_string(),
        ],
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["paidAmount"], 10);
    assert_eq!(v["result"]["result"]["content"][0]["text"], "dear 7", "{v}");
    assert_eq!(v["receipt"]["status"], "success");
    assert_eq!(v["receipt"]["method"], "lightning");
    assert_eq!(v["replay"]["status"], 402, "{v}");
    assert_eq!(v["replay"]["fresh"], true);
    assert!(
        v["replay"]["refusals"]
            .to_string()
            .contains("already been used"),
        "{v}"
    );
    assert_eq!(env.calls(), 1);
}

/// `turnpike check`'s reading of `[mpp]` and `mpp = {…}`: each mistake at its line:col, in the
/// words every rail's mistakes are in.
#[test]
fn configuration_mistakes_are_placed() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\n";
    let lightning = "[lightning]\nbackend = \"dev\"\n";
    let err = |text: &str| {
        turnpike_gateway::config::parse(text, "t.toml")
            .unwrap_err()
            .to_string()
    };
    // A price of 0, and an unknown key in the price.
    let e = err(&format!(
        "{base}{lightning}[tools.a]\nmpp = {{ sat = 0 }}\n"
    ));
    assert!(e.contains("t.toml:6:7: "), "{e}");
    assert!(e.contains("at least 1") || e.contains("between 1"), "{e}");
    let e = err(&format!(
        "{base}{lightning}[tools.a]\nmpp = {{ msat = 10 }}\n"
    ));
    assert!(e.contains("t.toml:6:"), "{e}");
    assert!(e.contains("mpp = { sat = <n> }"), "{e}");
    // An unknown key of [mpp], and a realm no challenge can carry.
    let e = err(&format!("{base}{lightning}[mpp]\nexpiry = 5\n"));
    assert!(e.contains("t.toml:6:1: "), "{e}");
    assert!(e.contains("expiry_secs"), "the hint lists the keys: {e}");
    let e = err(&format!("{base}{lightning}[mpp]\nrealm = \"a\\nb\"\n"));
    assert!(e.contains("t.toml:6:9: "), "{e}");
    // A price naming mpp without [lightning].
    let e = err(&format!("{base}[tools.a]\nmpp = {{ sat = 10 }}\n"));
    assert!(e.contains("t.toml:4:"), "{e}");
    assert!(e.contains("[lightning]"), "{e}");
    // A good one: the offer as the rail reads it.
    let c = turnpike_gateway::config::parse(
        &format!(
            "{base}{lightning}[tools.a]\nmpp = {{ sat = 10 }}\n[mpp]\nrealm = \"x.example\"\n"
        ),
        "t.toml",
    )
    .unwrap();
    let offer = c.tools["a"].offer(turnpike_mpp::RAIL).unwrap();
    assert_eq!(turnpike_mpp::sats(offer), Some(10));
    assert_eq!(
        turnpike_mpp::conf::section(&c.rails).realm.as_deref(),
        Some("x.example")
    );
    // `sats`, the plural, reads as `sat`.
    let c = turnpike_gateway::config::parse(
        &format!("{base}{lightning}[tools.a]\nmpp = {{ sats = 7 }}\n"),
        "t.toml",
    )
    .unwrap();
    let offer = c.tools["a"].offer(turnpike_mpp::RAIL).unwrap();
    assert_eq!(turnpike_mpp::sats(offer), Some(7));
}

/// Two instances on one real Redis, sharing the binding key (`mpp.key`): a payment presented
/// to both at once is accepted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_payment_is_accepted_once_across_two_instances() {
    let redis = turnpike_testkit::redis::RedisServer::start();
    let (up, log) = start_upstream(true).await;
    let key = hex::encode(rand::random::<[u8; 32]>());
    let store = redis_store(&redis.url());
    let mut gateways = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = data_dir();
        std::fs::write(dir.join("mpp.key"), &key).unwrap();
        let gw = start_gateway_with(&format!("{}{store}", mpp_config(up, &dir))).await;
        gateways.push(gw);
        dirs.push(dir);
    }
    let a = Env {
        gw: gateways[0],
        log: log.clone(),
        dir: dirs[0].clone(),
    };
    let (c, pre) = buy(&a, "dear", json!({"n": 1})).await;
    let auth = credential(&c, &pre).authorization();
    let ok = accepted_of_concurrent(&gateways, ("authorization", &auth), 8, |_| {
        call(2, "dear", json!({"n": 1}))
    })
    .await;
    assert_eq!(ok, 1);
    assert_eq!(a.calls(), 1);
}

/// turnpike's own client (`turnpike connect`'s) pays MPP through the gateway with an LND
/// wallet (the dev wallet), over HTTP 402 and in band (-32042), within its spend log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnpike_client_pays_mpp() {
    use turnpike_lightning::config::LndConfig;
    use turnpike_lightning::wallet::LndWallet;
    use turnpike_lightning::{HttpSettings, Secret};
    let env = setup_mpp(true).await;
    // The gateway writes its dev wallet's address once it serves: wait for the file.
    let file = env.dir.join("dev-wallet.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !file.is_file() {
        assert!(std::time::Instant::now() < deadline, "no dev wallet file");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let w: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let wallet = LndWallet::new(&LndConfig {
        url: w["url"].as_str().unwrap().to_owned(),
        macaroon_hex: Some(Secret::from(w["macaroon_hex"].as_str().unwrap())),
        macaroon_path: None,
        http: HttpSettings::default(),
    })
    .unwrap();
    let state = data_dir().join("client");
    let mut cfg = turnpike_client::ClientConfig::new(state.clone());
    cfg.wallet = Some(std::sync::Arc::new(wallet));
    cfg.budgets.per_call_sat = Some(20);
    let client = turnpike_client::Client::new(cfg).unwrap();
    let url = format!("http://{}/mcp", env.gw);
    // Over HTTP (402).
    let v = client
        .rpc(&url, &call(1, "dear", json!({"n": 4})))
        .await
        .unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "dear 4", "{v}");
    assert_eq!(
        v["result"]["_meta"]["org.paymentauth/receipt"]["status"],
        "success"
    );
    // In band: the MPP transport's -32042.
    let mut headers = http::HeaderMap::new();
    headers.insert("turnpike-challenge", "in-band".parse().unwrap());
    let body = bytes::Bytes::from(call(2, "dear", json!({"n": 5})).to_string());
    let reply = client.post(&url, &headers, body, &|_| {}).await.unwrap();
    let v = reply.message.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "dear 5", "{v}");
    assert_eq!(reply.challenges_answered, 1);
    let log = turnpike_client::budget::read_log(&state).unwrap();
    let mpp: Vec<_> = log.iter().filter(|e| e.rail == "mpp").collect();
    assert_eq!(mpp.len(), 2, "{log:?}");
    assert!(mpp
        .iter()
        .all(|e| e.status == "paid" && e.amount_msat == 10_000));
    assert_eq!(env.calls(), 2);
}
