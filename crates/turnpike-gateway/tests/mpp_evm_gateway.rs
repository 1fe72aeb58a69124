//! MPP's `evm` charge method through the real gateway, on a real local chain: anvil and the
//! EIP-3009 token of tests/e2e/x402_TestUSD.sol (tests/support/chain.rs), the gateway settling
//! with its own key. Payments are made by mppx's own `evm` client method, unmodified
//! (tests/e2e/mppx_evm_client.mjs), over HTTP and over mppx's MCP client; balances are read on
//! chain after each. The attacks must fail, each without the upstream running and with no money
//! moving.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};
use support::chain::*;
use support::*;
use turnpike_mpp::wire::{b64url, PaymentChallenge, PaymentCredential};

/// The token's EIP-712 domain, as the payer knows it.
const TOKEN_NAME: &str = "TestUSD";
const TOKEN_VERSION: &str = "1";

/// Gateway config: `dear` on MPP, Lightning (10 sat) or evm (10000 units, 0.01 TUSD); `echo`
/// on MPP evm (10000 units) or proof-of-work. The chain, token and payee are `[x402]`'s.
fn config(upstream: SocketAddr, dir: &Path, rpc: &str, asset: &str, pay_to: &str) -> String {
    format!(
        r#"{head}
[tools.dear]
mpp = {{ sat = 10, evm = "10000" }}
[tools.echo]
pow = 3000
mpp = {{ evm = 10000 }}

[mpp]
expiry_secs = 120
evm = {{ decimals = 6 }}

[lightning]
backend = "dev"

[x402]
network = "eip155:31337"
rpc_url = "{rpc}"
asset = "{asset}"
asset_name = "{TOKEN_NAME}"
asset_version = "{TOKEN_VERSION}"
pay_to = "{pay_to}"
settle_key_file = "{key}"
"#,
        head = x402_head(upstream, dir),
        key = dir.join("settle.key").display(),
    )
}

/// A chain with `payers` funded and a gateway on [`config`], settling with its own key.
async fn setup(payers: &[&Payer]) -> Env {
    setup_on_chain(payers, |up, dir, chain, _, pay_to| {
        config(up, dir, &chain.url, &chain.asset, pay_to)
    })
    .await
}

/// The `Payment` challenges of a 402, by method.
fn payment_lines(r: &Reply) -> Vec<(String, String)> {
    assert_eq!(r.status, 402, "{}", r.text());
    r.headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .filter(|l| l.starts_with("Payment "))
        .map(|l| {
            let c = PaymentChallenge::parse_header(&l).unwrap();
            (c.method, l)
        })
        .collect()
}

/// The `evm` challenge line of a 402.
fn evm_line(r: &Reply) -> String {
    payment_lines(r)
        .into_iter()
        .find(|(m, _)| m == "evm")
        .unwrap_or_else(|| panic!("no evm challenge: {:?}", r.headers))
        .1
}

/// mppx's `Authorization` value for the challenge `line`, signed by `payer`.
async fn sign(line: &str, payer: &Payer) -> String {
    node_script(
        "mppx_evm_client.mjs",
        &["sign", &payer.key, TOKEN_NAME, TOKEN_VERSION],
        Some(line),
    )
    .await
}

/// mppx's `evm` client (tests/e2e/mppx_evm_client.mjs) paying `tool` with `args` at the
/// gateway's `url` over `transport` (`http` or `mcp`), as `payer`: its JSON report.
async fn mppx_pays(transport: &str, url: &str, payer: &Payer, tool: &str, args: Value) -> Value {
    let out = node_script(
        "mppx_evm_client.mjs",
        &[
            transport,
            url,
            &payer.key,
            TOKEN_NAME,
            TOKEN_VERSION,
            tool,
            &args.to_string(),
        ],
        None,
    )
    .await;
    serde_json::from_str(&out).unwrap()
}

fn decode(authorization: &str) -> Value {
    let token = authorization.strip_prefix("Payment ").unwrap();
    let cred = PaymentCredential::from_token(token).unwrap();
    cred.to_json()
}

fn encode(v: &Value) -> String {
    format!("Payment {}", b64url(v.to_string().as_bytes()))
}

/// A 402 with a fresh evm challenge, whose JSON-RPC body gives `why`; no receipt.
fn assert_refused(r: &Reply, why: &str) {
    assert_eq!(r.status, 402, "{}", r.text());
    evm_line(r);
    assert!(r.text().contains(why), "{why:?} not in {}", r.text());
    assert!(r.headers.get("payment-receipt").is_none());
}

async fn present(env: &Env, auth: &str, id: i64, tool: &str, args: Value) -> Reply {
    post(env.gw, &[("authorization", auth)], &call(id, tool, args)).await
}

/// The 402 offers both methods, each its own `WWW-Authenticate: Payment` line and challenge
/// object; mppx (only its `evm` method installed) pays over HTTP; the receipt names the
/// settlement's transaction; the payer is down the price and the payee up by it, exactly once
/// (the replay is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mppx_pays_the_evm_method_over_http() {
    let payer = new_payer();
    let env = setup(&[&payer]).await;
    let r = post(env.gw, &[], &call(1, "dear", json!({"n": 7}))).await;
    let lines = payment_lines(&r);
    let methods: Vec<&str> = lines.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods, ["lightning", "evm"], "{lines:?}");
    let c = PaymentChallenge::parse_header(&evm_line(&r)).unwrap();
    assert_eq!(c.intent, "charge");
    assert_eq!(c.realm, "mcp.example.com");
    let req = c.request_json().unwrap();
    assert_eq!(
        Value::Object(req),
        json!({
            "amount": "10000",
            "currency": env.chain.asset,
            "description": "turnpike dear",
            "methodDetails": {"chainId": 31337, "credentialTypes": ["authorization"], "decimals": 6},
            "recipient": env.pay_to,
        })
    );
    // The JSON-RPC body carries both challenge objects.
    let body = r.json();
    let objects: Vec<&Value> = body["error"]["data"]["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["rail"] == "mpp")
        .collect();
    assert_eq!(objects.len(), 2, "{body}");
    assert_eq!(objects[1]["method"], "evm");
    assert_eq!(objects[1]["request"]["recipient"], env.pay_to.as_str());

    let before = env.chain.balance(&payer.address).await;
    let v = mppx_pays("http", &env.url(), &payer, "dear", json!({"n": 7})).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["result"]["result"]["content"][0]["text"], "dear 7", "{v}");
    let receipt = &v["receipt"];
    assert_eq!(receipt["method"], "evm", "{v}");
    assert_eq!(receipt["status"], "success");
    let tx = receipt["reference"].as_str().unwrap();
    assert_eq!(
        v["result"]["result"]["_meta"]["org.paymentauth/receipt"]["reference"],
        tx
    );
    let mined = env
        .chain
        .rpc("eth_getTransactionReceipt", json!([tx]))
        .await;
    assert_eq!(mined["status"], "0x1");
    // The credential mppx sent: the challenge's nonce, the payer as its source.
    let cred = decode(v["credential"].as_str().unwrap());
    assert_eq!(cred["payload"]["type"], "authorization");
    assert_eq!(
        cred["source"],
        format!("did:pkh:eip155:31337:{}", payer.address)
    );
    // Replayed: refused, nothing more moves.
    assert_eq!(v["replay"]["status"], 402, "{v}");
    assert!(
        v["replay"]["refusals"]
            .to_string()
            .contains("already been used"),
        "{v}"
    );
    assert_eq!(env.chain.balance(&payer.address).await, before - 10_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);
    assert_eq!(env.calls(), 1);
    // The token's spend log: the settlement, named MPP's evm method.
    let lines = spend_log(&env.dir, 1).await;
    assert_eq!(
        lines[0],
        json!({"at": lines[0]["at"], "outcome": "settled", "rail": "mpp",
               "payment_method": "evm", "transaction": tx, "payer": payer.address,
               "amount": "10000", "asset": env.chain.asset, "network": "eip155:31337",
               "pay_to": env.pay_to, "method": "tools/call", "tool": "dear"})
    );
    // The upstream never saw the credential.
    let seen = env.log.lock().last().cloned().unwrap();
    assert!(seen.headers.get("authorization").is_none());

    // A tool that also takes proof-of-work: the Payment line among the others, paid the same.
    let v = mppx_pays("http", &env.url(), &payer, "echo", json!({"text": "hi"})).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["receipt"]["method"], "evm", "{v}");
    assert_eq!(env.chain.balance(&payer.address).await, before - 20_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 20_000);
    assert_eq!(env.calls(), 2);
}

/// The bounds on payments checked are `[x402]`'s and shared with the x402 rail: with
/// `checks_per_minute_per_caller = 2`, an x402 payment and an evm credential (each for another
/// call, refused offline after the bound is taken) use the caller's two, and the next of either
/// kind is a 429 with `Retry-After`; with `checks_per_minute = 2`, a 503. Nothing runs, nothing
/// moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evm_and_x402_payments_share_the_bounds_on_payments_checked() {
    let payer = new_payer();
    let chain = start_chain(&[&payer]).await;
    let (up, log) = start_upstream(true).await;
    let pay_to = new_address();
    for (bounds, status) in [
        ("checks_per_minute_per_caller = 2", 429u16),
        (
            "checks_per_minute_per_caller = 120\nchecks_per_minute = 2",
            503,
        ),
    ] {
        let dir = data_dir();
        settle_key(&chain, &dir).await;
        // The bounds go into [x402], the file's last table; then a tool priced in x402.
        let cfg = format!(
            "{}{bounds}\n[tools.paid]\nx402 = {{ amount = \"10000\" }}\n",
            config(up, &dir, &chain.url, &chain.asset, &pay_to)
        );
        let gw = start_gateway_with(&cfg).await;
        let r = post(gw, &[], &call(1, "paid", json!({"n": 1}))).await;
        assert_eq!(r.status, 402, "{}", r.text());
        let pr = r.headers["payment-required"].to_str().unwrap();
        use base64::Engine;
        let pr = base64::engine::general_purpose::STANDARD
            .decode(pr)
            .unwrap();
        let x402 = peer(
            &["sign", &payer.key],
            Some(std::str::from_utf8(&pr).unwrap()),
        )
        .await;
        let line = evm_line(&post(gw, &[], &call(2, "dear", json!({"n": 1}))).await);
        let evm = sign(&line, &payer).await;
        // One of each, for another call: refused offline, each taking one check.
        let r = post(
            gw,
            &[("payment-signature", &x402)],
            &call(3, "paid", json!({"n": 2})),
        )
        .await;
        assert_eq!(r.status, 402, "{}", r.text());
        assert!(r.text().contains("another call"), "{}", r.text());
        let r = post(
            gw,
            &[("authorization", &evm)],
            &call(4, "dear", json!({"n": 2})),
        )
        .await;
        assert_refused(&r, "another call");
        // The next of either kind: past the shared bound.
        for r in [
            post(
                gw,
                &[("authorization", &evm)],
                &call(5, "dear", json!({"n": 1})),
            )
            .await,
            post(
                gw,
                &[("payment-signature", &x402)],
                &call(6, "paid", json!({"n": 1})),
            )
            .await,
        ] {
            assert_eq!(r.status.as_u16(), status, "{}", r.text());
            let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&secs), "{secs}");
            assert_eq!(r.json()["error"]["data"]["retry_after"], secs);
            assert!(r.headers.get("payment-receipt").is_none());
            assert!(r.headers.get("payment-response").is_none());
        }
    }
    assert_eq!(tool_calls(&log), 0);
    assert_eq!(chain.balance(&payer.address).await, 1_000_000);
}

/// mppx's MCP client (`McpClient.wrap` over the MCP TypeScript SDK): the in-band -32042 with
/// both challenges, the `evm` one paid, the credential in `_meta`, the receipt in the result's
/// `_meta`; paid once on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mppx_pays_the_evm_method_over_mcp() {
    let payer = new_payer();
    let env = setup(&[&payer]).await;
    let v = mppx_pays("mcp", &env.url(), &payer, "dear", json!({"n": 3})).await;
    assert_eq!(v["result"]["content"][0]["text"], "dear 3", "{v}");
    assert_eq!(v["receipt"]["method"], "evm", "{v}");
    let tx = v["receipt"]["reference"].as_str().unwrap();
    let mined = env
        .chain
        .rpc("eth_getTransactionReceipt", json!([tx]))
        .await;
    assert_eq!(mined["status"], "0x1");
    assert_eq!(env.chain.balance(&payer.address).await, 1_000_000 - 10_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);
    assert_eq!(env.calls(), 1);
}

/// Every way an evm credential must fail, each a 402 with a fresh challenge, the upstream never
/// running and no money moving: another tool's or other arguments' credential, an altered
/// challenge, an expired one, a signature that is not the payer's, a value lowered, a payer
/// whose balance is gone; then one credential presented eight times at once settles once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evm_attacks_refused_without_running() {
    let payer = new_payer();
    let other = new_payer();
    let broke = new_payer();
    let env = setup(&[&payer, &other, &broke]).await;
    let args = json!({"n": 1});
    let line = evm_line(&post(env.gw, &[], &call(1, "dear", args.clone())).await);
    let good = sign(&line, &payer).await;

    // Made for dear {n: 1}: refused for another tool, and for other arguments.
    assert_refused(
        &present(&env, &good, 2, "echo", json!({"text": "x"})).await,
        "another call",
    );
    assert_refused(
        &present(&env, &good, 3, "dear", json!({"n": 2})).await,
        "another call",
    );

    // The challenge altered (a longer expiry): its id no longer matches.
    let mut altered = decode(&good);
    altered["challenge"]["expires"] = json!("2099-01-01T00:00:00Z");
    assert_refused(
        &present(&env, &encode(&altered), 4, "dear", args.clone()).await,
        "id does not match",
    );

    // Expired: the same challenge re-bound by the gateway's own key with an expiry in the past.
    let key_hex = std::fs::read_to_string(env.dir.join("mpp.key")).unwrap();
    let mut key = [0u8; 32];
    hex::decode_to_slice(key_hex.trim(), &mut key).unwrap();
    let mut old = PaymentChallenge::parse_header(&line).unwrap();
    old.expires = Some("2020-01-01T00:00:00Z".into());
    old.id = turnpike_mpp::wire::binding_id(&key, &old);
    let mut expired =
        PaymentCredential::from_token(good.strip_prefix("Payment ").unwrap()).unwrap();
    expired.challenge = old;
    assert_refused(
        &present(&env, &expired.authorization(), 5, "dear", args.clone()).await,
        "expired",
    );

    // Another key's signature over the same challenge, presented as the payer's.
    let theirs = decode(&sign(&line, &other).await);
    let mut forged = decode(&good);
    forged["payload"]["signature"] = theirs["payload"]["signature"].clone();
    assert_refused(
        &present(&env, &encode(&forged), 6, "dear", args.clone()).await,
        "signature is not the payer's",
    );
    // The value lowered: no longer the challenge's amount.
    let mut under = decode(&good);
    under["payload"]["value"] = json!("1");
    assert_refused(
        &present(&env, &encode(&under), 7, "dear", args.clone()).await,
        "value",
    );

    // A payer who signs, then moves its tokens away before presenting.
    let line_b = evm_line(&post(env.gw, &[], &call(8, "dear", json!({"n": 5}))).await);
    let short = sign(&line_b, &broke).await;
    peer(
        &[
            "drain",
            &env.chain.url,
            &env.chain.asset,
            &broke.address,
            &new_address(),
        ],
        None,
    )
    .await;
    assert_refused(
        &present(&env, &short, 9, "dear", json!({"n": 5})).await,
        "balance does not cover",
    );
    assert_eq!(env.calls(), 0);
    assert_eq!(env.chain.balance(&env.pay_to).await, 0);
    assert_eq!(env.chain.balance(&payer.address).await, 1_000_000);

    // The good credential, eight times at once: one settles.
    let mut tasks = Vec::new();
    for id in 0..8 {
        let (gw, auth, args) = (env.gw, good.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            post(
                gw,
                &[("authorization", &auth)],
                &call(100 + id, "dear", args),
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 402, 402, 402, 402, 402, 402, 402]);
    assert_refused(
        &present(&env, &good, 200, "dear", args.clone()).await,
        "already been used",
    );
    assert_eq!(env.calls(), 1);
    assert_eq!(env.chain.balance(&payer.address).await, 1_000_000 - 10_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);
}

/// `turnpike check`'s reading of the evm method: `[mpp] evm` needs `[x402]`, an evm price is atomic units at least 1, a price names a method; each
/// mistake at its line:col; a price naming a method the file does not offer is refused. A good
/// file makes one offer per method, the first carrying both methods' terms.
#[test]
fn evm_configuration_mistakes_are_placed() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\n";
    let x402 = "[x402]\nnetwork = \"eip155:8453\"\nrpc_url = \"http://127.0.0.1:9\"\nasset = \"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913\"\nasset_name = \"USD Coin\"\nasset_version = \"2\"\npay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"\n";
    let err = |text: &str| {
        turnpike_gateway::config::parse(text, "t.toml")
            .unwrap_err()
            .to_string()
    };
    // [mpp] evm without [x402].
    let e = err(&format!(
        "{base}[tools.a]\nmpp = {{ evm = \"10\" }}\n[mpp]\nevm = {{ decimals = 6 }}\n"
    ));
    assert!(e.contains("t.toml:6:7: "), "{e}");
    assert!(e.contains("[mpp] evm needs an [x402] section"), "{e}");
    // An [x402] that settles through a facilitator is as good.
    turnpike_gateway::config::parse(
        &format!(
            "{base}[tools.a]\nmpp = {{ evm = \"10\" }}\n[mpp]\nevm = {{ decimals = 6 }}\n{x402}facilitator_url = \"http://127.0.0.1:9\"\n"
        ),
        "t.toml",
    )
    .unwrap();
    let good = format!("{x402}settle_key_env = \"K\"\n");
    // A price of 0 units, and a price naming no method.
    let e = err(&format!(
        "{base}[tools.a]\nmpp = {{ evm = \"0\" }}\n[mpp]\nevm = {{ decimals = 6 }}\n{good}"
    ));
    assert!(e.contains("t.toml:4:7: "), "{e}");
    assert!(e.contains("at least 1"), "{e}");
    let e = err(&format!(
        "{base}[tools.a]\nmpp = {{}}\n[mpp]\nevm = {{ decimals = 6 }}\n{good}"
    ));
    assert!(e.contains("names no method"), "{e}");
    // A method the file does not offer: sat without [lightning], evm without [mpp] evm.
    let e = err(&format!(
        "{base}[tools.a]\nmpp = {{ sat = 10 }}\n[mpp]\nevm = {{ decimals = 6 }}\n{good}"
    ));
    assert!(e.contains("t.toml:4:7: "), "{e}");
    assert!(
        e.contains("names mpp sat, but there is no [lightning]"),
        "{e}"
    );
    let e = err(&format!(
        "{base}[tools.a]\nmpp = {{ evm = 10 }}\n[lightning]\nbackend = \"dev\"\n"
    ));
    assert!(e.contains("t.toml:4:7: "), "{e}");
    assert!(e.contains("names mpp evm, but [mpp] has no evm"), "{e}");
    // An evm price without [lightning] or [mpp] evm: the rail is off.
    let e = err(&format!("{base}[tools.a]\nmpp = {{ evm = 10 }}\n"));
    assert!(e.contains("there is no [lightning] section"), "{e}");
    assert!(
        e.contains("[mpp] evm = { decimals = 6 }"),
        "the hint names the evm way: {e}"
    );
    // A good one: two offers, both methods' terms on each.
    let c = turnpike_gateway::config::parse(
        &format!(
            "{base}[tools.a]\nmpp = {{ sat = 10, evm = \"10000\" }}\n[mpp]\nevm = {{ decimals = 6 }}\n{good}[lightning]\nbackend = \"dev\"\n"
        ),
        "t.toml",
    )
    .unwrap();
    let offers: Vec<_> = c.tools["a"]
        .offers
        .iter()
        .filter(|o| o.rail() == turnpike_mpp::RAIL)
        .collect();
    assert_eq!(offers.len(), 2);
    assert_eq!(turnpike_mpp::method(offers[0]), "lightning");
    assert_eq!(turnpike_mpp::method(offers[1]), "evm");
    assert_eq!(turnpike_mpp::evm_amount(offers[0]), Some(10_000));
    assert_eq!(turnpike_mpp::sats(offers[1]), Some(10));
    assert_eq!(
        turnpike_mpp::conf::section(&c.rails).evm,
        Some(turnpike_mpp::rail::EvmConfig { decimals: 6 })
    );
}

/// Two instances on one real Redis, sharing the binding key (`mpp.key`), each settling with its
/// own account: one evm credential presented sixteen times at once, to both, is accepted once
/// and settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_evm_payment_is_accepted_once_across_two_instances() {
    let payer = new_payer();
    // `_redis` bound: the server lives to the end of the test.
    let TwoOnRedis {
        _redis,
        chain,
        log,
        pay_to,
        gateways,
    } = two_on_redis(&payer, "mpp.key", |up, dir, chain, _, pay_to| {
        config(up, dir, &chain.url, &chain.asset, pay_to)
    })
    .await;
    let line = evm_line(&post(gateways[0], &[], &call(1, "dear", json!({"n": 1}))).await);
    let auth = sign(&line, &payer).await;
    let ok = accepted_of_concurrent(&gateways, ("authorization", &auth), 16, |_| {
        call(2, "dear", json!({"n": 1}))
    })
    .await;
    assert_eq!(ok, 1);
    assert_eq!(tool_calls(&log), 1);
    assert_eq!(chain.balance(&pay_to).await, 10_000);
    assert_eq!(chain.balance(&payer.address).await, 1_000_000 - 10_000);
}

/// The evm method alone, without `[lightning]`: the rail is on, and a 402 carries one `Payment`
/// line, `method="evm"` (nothing asked of the chain for it). With the node down, a good
/// credential fails closed (503, nothing forwarded) and is released: presented again, it is
/// refused for the same reason, not as a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evm_method_alone_needs_no_lightning_node_and_fails_closed_without_a_node() {
    let (up, log) = start_upstream(true).await;
    let dir = data_dir();
    let key = new_payer();
    std::fs::write(dir.join("settle.key"), &key.key).unwrap();
    // A node that is down.
    let rpc = format!("http://{}", dead_server().await);
    let cfg = config(
        up,
        &dir,
        &rpc,
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
    )
    .replace(
        "mpp = { sat = 10, evm = \"10000\" }",
        "mpp = { evm = \"10000\" }",
    )
    .replace("[lightning]\nbackend = \"dev\"\n", "");
    assert!(!cfg.contains("[lightning]"));
    let gw = start_gateway_with(&cfg).await;
    let r = post(gw, &[], &call(1, "dear", json!({"n": 1}))).await;
    let methods: Vec<String> = payment_lines(&r).into_iter().map(|(m, _)| m).collect();
    assert_eq!(methods, ["evm"]);
    let auth = sign(&evm_line(&r), &new_payer()).await;
    for id in [2, 3] {
        let r = post(
            gw,
            &[("authorization", &auth)],
            &call(id, "dear", json!({"n": 1})),
        )
        .await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            r.text().contains("cannot be checked on chain"),
            "{}",
            r.text()
        );
    }
    assert!(log.lock().is_empty());
}

/// Settled by `[x402]`'s facilitator (the x402 project's own, tests/e2e/x402_peer.mjs): the
/// authorization goes to `POST /settle` as the x402 `exact` payment it also is; mppx's payment
/// goes through, the receipt names the facilitator's transaction, paid once on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_settles_an_evm_payment() {
    let payer = new_payer();
    let chain = start_chain(&[&payer]).await;
    let (_facilitator, url) = start_facilitator(&chain).await;
    let (up, log) = start_upstream(true).await;
    let dir = data_dir();
    let pay_to = new_address();
    let cfg = config(up, &dir, &chain.url, &chain.asset, &pay_to).replace(
        &format!("settle_key_file = \"{}\"", dir.join("settle.key").display()),
        &format!("facilitator_url = \"{url}\"\nrpc_timeout_ms = 30000"),
    );
    assert!(cfg.contains("facilitator_url"));
    let gw = start_gateway_with(&cfg).await;
    let v = mppx_pays(
        "http",
        &format!("http://{gw}/mcp"),
        &payer,
        "dear",
        json!({"n": 4}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["receipt"]["method"], "evm", "{v}");
    let tx = v["receipt"]["reference"].as_str().unwrap();
    let mined = chain.rpc("eth_getTransactionReceipt", json!([tx])).await;
    assert_eq!(mined["status"], "0x1");
    assert_eq!(v["replay"]["status"], 402, "{v}");
    assert_eq!(chain.balance(&payer.address).await, 1_000_000 - 10_000);
    assert_eq!(chain.balance(&pay_to).await, 10_000);
    assert_eq!(tool_calls(&log), 1);
}

/// A fresh state directory for `turnpike connect`'s client.
/// `turnpike connect`'s client paying with `payer` in the chain's token (6 decimals, its
/// EIP-712 domain given as `--x402-asset-name`/`--x402-asset-version` give it), no wallet, with
/// `tweak` applied.
fn connect_client(
    env: &Env,
    payer: &Payer,
    tweak: impl FnOnce(&mut turnpike_client::ClientConfig),
) -> std::sync::Arc<turnpike_client::Client> {
    use turnpike_client::{Client, ClientConfig, X402Asset, X402Payer};
    let state = client_state_dir();
    let asset = X402Asset::parse("eip155:31337", &env.chain.asset, 6)
        .unwrap()
        .with_domain(TOKEN_NAME, TOKEN_VERSION);
    let key = payer_key_file(&state, payer);
    let mut cfg = ClientConfig::new(state);
    cfg.x402 = Some(X402Payer::from_file(&key, vec![asset]).unwrap());
    tweak(&mut cfg);
    std::sync::Arc::new(Client::new(cfg).unwrap())
}

/// `turnpike connect` pays the evm method: over HTTP (the 402's `Payment` challenge, answered
/// `Authorization: Payment`) and in band (the challenge in the JSON-RPC answer, the credential
/// in `params._meta["org.paymentauth/credential"]`); with no wallet, the Lightning offer beside
/// it is passed over. Each call is paid exactly once on chain (payer down the price, payee up
/// by it); the client's spend log and the gateway's name the method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnpike_connect_pays_the_evm_method_once() {
    let payer = new_payer();
    let env = setup(&[&payer]).await;
    let before = env.chain.balance(&payer.address).await;
    let c = connect_client(&env, &payer, |_| {});
    let url = env.url();

    let r = c
        .rpc(&url, &call(1, "dear", json!({"n": 1})))
        .await
        .unwrap();
    assert_eq!(r["result"]["content"][0]["text"], "dear 1", "{r}");
    let receipt = &r["result"]["_meta"]["org.paymentauth/receipt"];
    assert_eq!(receipt["method"], "evm", "{r}");
    let tx = receipt["reference"].as_str().unwrap().to_string();
    let mined = env
        .chain
        .rpc("eth_getTransactionReceipt", json!([tx]))
        .await;
    assert_eq!(mined["status"], "0x1");
    assert_eq!(env.calls(), 1);
    assert_eq!(env.chain.balance(&payer.address).await, before - 10_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);

    // In band: the challenge comes in the JSON-RPC answer, the credential goes in `_meta`.
    let mut headers = http::HeaderMap::new();
    headers.insert("turnpike-challenge", "in-band".parse().unwrap());
    let body = bytes::Bytes::from(call(2, "dear", json!({"n": 2})).to_string());
    let r = c.post(&url, &headers, body, &|_| {}).await.unwrap();
    assert_eq!(r.challenges_answered, 1);
    let m = r.message.unwrap();
    assert_eq!(m["result"]["content"][0]["text"], "dear 2", "{m}");
    assert_eq!(
        m["result"]["_meta"]["org.paymentauth/receipt"]["method"],
        "evm"
    );
    // The upstream saw neither the credential nor its `_meta` key.
    let seen = env.log.lock().last().cloned().unwrap();
    assert!(seen.headers.get("authorization").is_none());
    assert!(!String::from_utf8_lossy(&seen.body).contains("org.paymentauth"));
    assert_eq!(env.calls(), 2);
    assert_eq!(env.chain.balance(&payer.address).await, before - 20_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 20_000);

    let log = turnpike_client::budget::read_log(&c.config().state_dir).unwrap();
    let paid: Vec<_> = log.iter().filter(|e| e.rail == "mpp-evm").collect();
    assert_eq!(paid.len(), 2, "{log:?}");
    for e in &paid {
        assert_eq!(e.status, "signed");
        assert_eq!(e.usd_micro, Some(10_000));
        assert_eq!(e.units.as_deref(), Some("10000"));
        assert_eq!(e.pay_to.as_deref(), Some(env.pay_to.as_str()));
    }
    let shown = turnpike_client::budget::render_log(&log, turnpike_core::unix_now());
    assert!(
        shown.contains("x402 and MPP evm: $0.02 in the last 24 h"),
        "{shown}"
    );
    let lines = spend_log(&env.dir, 2).await;
    assert!(
        lines.iter().all(|l| l["rail"] == "mpp"
            && l["payment_method"] == "evm"
            && l["outcome"] == "settled"),
        "{lines:?}"
    );
    assert_eq!(lines[0]["transaction"], tx.as_str());
}

/// Refused before anything is signed, each with its reason, and nothing moves: a price over
/// `--max-pay-usd`, over the daily dollar budget, a token whose EIP-712 domain is not given;
/// with `--rails mpp-evm,pow`, a tool that also offers a puzzle gets the puzzle solved instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnpike_connect_refuses_an_evm_price_over_its_limits_without_paying() {
    use turnpike_client::Rail;
    let payer = new_payer();
    let env = setup(&[&payer]).await;
    let before = env.chain.balance(&payer.address).await;
    let url = env.url();

    let c = connect_client(&env, &payer, |cfg| {
        cfg.policy.max_pay_usd = 0.001;
        cfg.policy.rails = Some(vec![Rail::MppEvm, Rail::Pow]);
    });
    let e = refused_dear(&c, &url, 1).await;
    assert!(e.starts_with("over budget: "), "{e}");
    assert!(
        e.contains("pays at most $0.001 at once (--max-pay-usd)"),
        "{e}"
    );
    assert!(e.contains(&env.pay_to), "the recipient is named: {e}");
    assert!(e.contains("nothing signed"), "{e}");
    // `echo` offers proof-of-work beside the evm method: the puzzle is solved instead.
    let r = c
        .rpc(&url, &call(2, "echo", json!({"text": "hi"})))
        .await
        .unwrap();
    assert_eq!(r["result"]["content"][0]["text"], "hi", "{r}");
    let log = turnpike_client::budget::read_log(&c.config().state_dir).unwrap();
    assert!(log.iter().all(|e| e.rail != "mpp-evm"), "{log:?}");
    assert_eq!(log.iter().filter(|e| e.rail == "pow").count(), 1);

    // Over the daily dollar budget.
    let c = connect_client(&env, &payer, |cfg| cfg.budgets.per_day_usd = Some(0.005));
    let e = refused_dear(&c, &url, 3).await;
    assert!(e.contains("daily budget of $0.005"), "{e}");

    // The token's domain not given: nothing can be signed.
    let state = client_state_dir();
    let key = payer_key_file(&state, &payer);
    let mut cfg = turnpike_client::ClientConfig::new(state);
    let asset = turnpike_client::X402Asset::parse("eip155:31337", &env.chain.asset, 6).unwrap();
    cfg.x402 = Some(turnpike_client::X402Payer::from_file(&key, vec![asset]).unwrap());
    let c = turnpike_client::Client::new(cfg).unwrap();
    let e = refused_dear(&c, &url, 4).await;
    assert!(e.contains("MPP evm: the EIP-712 domain of"), "{e}");
    assert!(e.contains("--x402-asset-name"), "{e}");

    assert_eq!(env.chain.balance(&payer.address).await, before);
    assert_eq!(env.chain.balance(&env.pay_to).await, 0);
    assert_eq!(env.calls(), 1, "only the solved call ran");
}
