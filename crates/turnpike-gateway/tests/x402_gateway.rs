//! The x402 rail (`exact` on an EVM chain, EIP-3009) through the real gateway, on a real local
//! chain: anvil (npm `@foundry-rs/anvil-linux-amd64`) started by each test, and an EIP-3009
//! token (tests/e2e/x402_TestUSD.sol) compiled with npm `solc` and deployed there
//! (tests/e2e/x402_peer.mjs). Payments are made by the x402 project's own clients (`@x402/fetch`
//! and `@x402/evm` over HTTP; the PyPI `x402` package's MCP client over the MCP transport),
//! unmodified, and by the MCP TypeScript SDK's client with `@x402/core` signing; the gateway
//! settles with its own key. The attacks must fail, each without the upstream running.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use serde_json::{json, Value};
use support::chain::*;
use support::*;

fn b64_json(s: &str) -> Value {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The PaymentRequired of a 402 (its `PAYMENT-REQUIRED` header).
fn payment_required(r: &Reply) -> Value {
    assert_eq!(r.status, 402, "{}", r.text());
    let h = r
        .headers
        .get("payment-required")
        .unwrap_or_else(|| panic!("no PAYMENT-REQUIRED: {:?}", r.headers));
    b64_json(h.to_str().unwrap())
}

/// The x402 client's `PAYMENT-SIGNATURE` for `pr` (possibly altered), paid by `payer`.
async fn sign(pr: &Value, payer: &Payer) -> String {
    peer(&["sign", &payer.key], Some(&pr.to_string())).await
}

/// Pays `dear` with `args` on `gw` as `payer`: the 402 of call 1 signed, presented with call 2.
/// The `PAYMENT-SIGNATURE` and the answer.
async fn pay_dear(gw: SocketAddr, payer: &Payer, args: Value) -> (String, Reply) {
    let pr = payment_required(&post(gw, &[], &call(1, "dear", args.clone())).await);
    let h = sign(&pr, payer).await;
    let r = post(gw, &[("payment-signature", &h)], &call(2, "dear", args)).await;
    (h, r)
}

/// A gateway in front of `up` selling in `chain`'s token to `pay_to`, settled by the
/// facilitator at `url` (`rpc_timeout_ms` as given).
async fn facilitated_gateway(
    up: SocketAddr,
    chain: &Chain,
    pay_to: &str,
    url: &str,
    rpc_timeout_ms: u64,
) -> SocketAddr {
    start_gateway_with(&x402_config(
        up,
        &data_dir(),
        &chain.url,
        &chain.asset,
        pay_to,
        &format!("facilitator_url = \"{url}\"\nrpc_timeout_ms = {rpc_timeout_ms}"),
    ))
    .await
}

/// A 402 with a fresh offer, whose JSON-RPC body gives `why`; no settlement.
fn assert_refused(r: &Reply, why: &str) {
    assert_eq!(r.status, 402, "{}", r.text());
    assert!(r.headers.get("payment-required").is_some());
    assert!(r.text().contains(why), "{why:?} not in {}", r.text());
    assert!(r.headers.get("payment-response").is_none());
}

/// `@x402/fetch` (the x402 client, unmodified) pays a tool over HTTP: 402 with
/// `PAYMENT-REQUIRED`, the retry with `PAYMENT-SIGNATURE`, settled on chain before the call
/// runs, `PAYMENT-RESPONSE` with the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_client_pays_over_http() {
    let payer = new_payer();
    let env = setup_x402(&[&payer]).await;
    // The 402 first, as any client sees it: the offer beside proof-of-work's challenge.
    let r = post(env.gw, &[], &call(1, "echo", json!({"text": "hi"}))).await;
    let pr = payment_required(&r);
    assert_eq!(pr["x402Version"], 2);
    assert_eq!(pr["resource"]["url"], "https://mcp.example.com/mcp");
    let a = &pr["accepts"][0];
    assert_eq!(a["scheme"], "exact");
    assert_eq!(a["network"], "eip155:31337");
    assert_eq!(a["amount"], "10000");
    assert_eq!(a["asset"], env.chain.asset.as_str());
    assert_eq!(a["payTo"], env.pay_to.as_str());
    assert_eq!(a["maxTimeoutSeconds"], 120);
    assert_eq!(a["extra"]["name"], "TestUSD");
    assert_eq!(a["extra"]["version"], "1");
    assert!(a["extra"]["turnpikeBinding"].is_string());
    let www: Vec<_> = r.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(www.len(), 1, "{www:?}");
    assert!(www[0].to_str().unwrap().starts_with("PoW "));
    // The JSON-RPC body carries the same PaymentRequired among the challenges.
    let body = r.json();
    let x402 = body["error"]["data"]["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rail"] == "x402")
        .unwrap()
        .clone();
    assert_eq!(x402["accepts"], pr["accepts"]);
    assert_eq!(env.calls(), 0);

    // The x402 client pays.
    let before = env.chain.balance(&payer.address).await;
    let out = peer(
        &[
            "pay",
            &env.url(),
            &payer.key,
            &env.chain.asset,
            "dear",
            &json!({"n": 7}).to_string(),
        ],
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"]["result"]["content"][0]["text"], "dear 7", "{v}");
    let settled = &v["paymentResponse"];
    assert_eq!(settled["success"], true, "{v}");
    assert_eq!(settled["network"], "eip155:31337");
    assert_eq!(settled["payer"], payer.address.as_str());
    let tx = settled["transaction"].as_str().unwrap();
    // The same settlement in result._meta, and the transaction on chain, succeeded.
    assert_eq!(
        v["body"]["result"]["_meta"]["x402/payment-response"],
        *settled
    );
    let receipt = env
        .chain
        .rpc("eth_getTransactionReceipt", json!([tx]))
        .await;
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(env.chain.balance(&payer.address).await, before - 10_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);
    assert_eq!(env.calls(), 1);
    // The upstream never saw the payment.
    let seen = env.log.lock().last().cloned().unwrap();
    assert!(seen.headers.get("payment-signature").is_none());
}

/// Every way a payment must fail, each answered 402 with a fresh offer and the upstream never
/// running: another call's payment, underpaying, another asset, chain or payee, an expired
/// authorization, garbage, a replay, and a payer whose balance is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_refused_without_running() {
    let payer = new_payer();
    let broke = new_payer();
    let env = setup_x402(&[&payer, &broke]).await;
    let asset = env.chain.asset.clone();
    let args = json!({"n": 1});
    let pr = payment_required(&post(env.gw, &[], &call(1, "dear", args.clone())).await);
    let good = sign(&pr, &payer).await;
    let presented = |tool: &'static str, args: Value, header: String| {
        let gw = env.gw;
        async move { post(gw, &[("payment-signature", &header)], &call(2, tool, args)).await }
    };

    // Made for dear {n: 1}: refused for other arguments, and for another tool.
    let r = presented("dear", json!({"n": 2}), good.clone()).await;
    assert_refused(&r, "another call");
    let r = presented("echo", json!({"text": "x"}), good.clone()).await;
    assert_refused(&r, "another call");

    // Offers altered before the client signed them.
    let altered = |path: &str, value: Value| {
        let mut p = pr.clone();
        *p.pointer_mut(path).unwrap() = value;
        p
    };
    for (path, value, why) in [
        ("/accepts/0/amount", json!("9999"), "amount"),
        ("/accepts/0/asset", json!(new_address()), "another asset"),
        ("/accepts/0/network", json!("eip155:1"), "another network"),
        ("/accepts/0/payTo", json!(new_address()), "payTo"),
        ("/accepts/0/maxTimeoutSeconds", json!(-30), "expired"),
    ] {
        let h = sign(&altered(path, value), &payer).await;
        let r = presented("dear", args.clone(), h).await;
        assert_refused(&r, why);
    }
    // The authorization's value lowered under the offer's amount (the signature then fails).
    let mut under = b64_json(&good);
    under["payload"]["authorization"]["value"] = json!("1");
    let h = base64::engine::general_purpose::STANDARD.encode(under.to_string());
    assert_refused(&presented("dear", args.clone(), h).await, "value");
    // Garbage.
    assert_refused(
        &presented("dear", args.clone(), "bm90IGpzb24=".into()).await,
        "x402",
    );
    assert_eq!(env.calls(), 0);

    // The good one passes once; its replay is refused.
    let r = presented("dear", args.clone(), good.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.get("payment-response").is_some());
    let r = presented("dear", args.clone(), good.clone()).await;
    assert_refused(&r, "already been used");
    assert_eq!(env.calls(), 1);

    // A payer who signs, then moves its tokens away before presenting.
    let h = sign(&pr, &broke).await;
    peer(
        &[
            "drain",
            &env.chain.url,
            &asset,
            &broke.address,
            &new_address(),
        ],
        None,
    )
    .await;
    let r = presented("dear", args.clone(), h).await;
    assert_refused(&r, "balance");
    assert_eq!(env.calls(), 1);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);
}

/// A transfer the chain refuses at settlement (an authorization valid only from a moment the
/// chain has not reached, inside the clock skew the offline checks allow): 402, the upstream
/// not run, no money moved, and the nonce released (presented again, it is refused for the
/// same reason, not as a replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_the_chain_refuses_releases_the_nonce() {
    let payer = new_payer();
    let env = setup_x402(&[&payer]).await;
    let args = json!({"n": 6});
    let pr = payment_required(&post(env.gw, &[], &call(1, "dear", args.clone())).await);
    let req: turnpike_x402::PaymentRequirements =
        serde_json::from_value(pr["accepts"][0].clone()).unwrap();
    let key = turnpike_x402::rail::parse_key(&payer.key).unwrap();
    let now = turnpike_core::unix_now();
    let payment =
        turnpike_x402::payer::pay(&req, &key, rand::random(), now + 40, now + 100).unwrap();
    let h = base64::engine::general_purpose::STANDARD.encode(payment.to_string());
    for id in [2, 3] {
        let r = post(
            env.gw,
            &[("payment-signature", &h)],
            &call(id, "dear", args.clone()),
        )
        .await;
        assert_refused(&r, "could not be settled");
    }
    assert_eq!(env.calls(), 0);
    assert_eq!(env.chain.balance(&payer.address).await, 1_000_000);
    // Each failed settlement is in the spend log, with its reason.
    let lines = spend_log(&env.dir, 2).await;
    for l in &lines {
        assert_eq!(l["outcome"], "refused", "{l}");
        assert!(l.get("transaction").is_none());
        assert_eq!(l["payer"], payer.address.as_str());
        assert_eq!(l["tool"], "dear");
        assert!(l["reason"].as_str().is_some_and(|r| !r.is_empty()), "{l}");
    }
}

/// Two instances on one real Redis, sharing the binding key (`x402.key`): one payment presented
/// sixteen times at once, to both, is accepted once and settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_payment_is_accepted_once_across_two_instances() {
    let payer = new_payer();
    // `_redis` bound: the server lives to the end of the test.
    let TwoOnRedis {
        _redis,
        chain,
        log,
        pay_to,
        gateways,
    } = two_on_redis(&payer, "x402.key", |up, dir, chain, settle, pay_to| {
        x402_config(
            up,
            dir,
            &chain.url,
            &chain.asset,
            pay_to,
            &format!("settle_key_file = \"{}\"", settle.display()),
        )
    })
    .await;
    let pr = payment_required(&post(gateways[0], &[], &call(1, "dear", json!({"n": 1}))).await);
    let h = sign(&pr, &payer).await;
    let ok = accepted_of_concurrent(&gateways, ("payment-signature", &h), 16, |_| {
        call(2, "dear", json!({"n": 1}))
    })
    .await;
    assert_eq!(ok, 1);
    assert_eq!(tool_calls(&log), 1);
    assert_eq!(chain.balance(&pay_to).await, 10_000);
    assert_eq!(chain.balance(&payer.address).await, 1_000_000 - 10_000);
}

/// Settled by a facilitator (the x402 project's own): `POST /settle` with the payment and the
/// requirements; the transaction it reports comes back in `PAYMENT-RESPONSE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_settles() {
    let payer = new_payer();
    let chain = start_chain(&[&payer]).await;
    let (_facilitator, url) = start_facilitator(&chain).await;
    let (up, log) = start_upstream(true).await;
    let pay_to = new_address();
    let gw = facilitated_gateway(up, &chain, &pay_to, &url, 30000).await;
    let (_, r) = pay_dear(gw, &payer, json!({"n": 5})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let settled = b64_json(r.headers["payment-response"].to_str().unwrap());
    assert_eq!(settled["success"], true, "{settled}");
    let tx = settled["transaction"].as_str().unwrap();
    let receipt = chain.rpc("eth_getTransactionReceipt", json!([tx])).await;
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(chain.balance(&pay_to).await, 10_000);
    assert_eq!(tool_calls(&log), 1);
}

/// A facilitator that is down, or a node that is down: 503, the upstream not run, and the
/// payer's money where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilitator_or_node_down_fails_closed() {
    let payer = new_payer();
    let chain = start_chain(&[&payer]).await;
    let (up, log) = start_upstream(true).await;
    let dead = dead_server().await;
    let pay_to = new_address();
    let via_facilitator =
        facilitated_gateway(up, &chain, &pay_to, &format!("http://{dead}"), 2000).await;
    let dir = data_dir();
    let key = settle_key(&chain, &dir).await;
    let node_down = start_gateway_with(&x402_config(
        up,
        &dir,
        &format!("http://{dead}"),
        &chain.asset,
        &pay_to,
        &format!("settle_key_file = \"{}\"", key.display()),
    ))
    .await;
    for gw in [via_facilitator, node_down] {
        let (_, r) = pay_dear(gw, &payer, json!({"n": 3})).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.headers.get("payment-response").is_none());
    }
    assert_eq!(tool_calls(&log), 0);
    assert_eq!(chain.balance(&payer.address).await, 1_000_000);
}

/// A facilitator on 127.0.0.1 that answers every request with `answer` (HTTP 200, JSON), or
/// never answers at all (`None`): it holds each connection open.
async fn fake_facilitator(answer: Option<Value>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let Some(answer) = &answer else {
                held.push(s);
                continue;
            };
            let body = answer.to_string();
            tokio::spawn(async move {
                // The request: its head, then as many bytes as its Content-Length says.
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// A facilitator that lies (it says it settled, naming a transaction of the chain that moved
/// none of this payment) or that never answers: 503, the upstream not run, the payer's money
/// where it was, and the authorization kept spent (a retry of it is refused, not settled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facilitator_that_lies_or_hangs_fails_closed() {
    let payer = new_payer();
    let chain = start_chain(&[&payer]).await;
    let (up, log) = start_upstream(true).await;
    let pay_to = new_address();
    // A real transaction on the chain, of another sender, that has nothing to do with the
    // payment: what a lying facilitator could name.
    let accounts = chain.rpc("eth_accounts", json!([])).await;
    let from = accounts[0].as_str().unwrap().to_owned();
    let other = chain
        .rpc(
            "eth_sendTransaction",
            json!([{"from": from, "to": new_address(), "value": "0x1"}]),
        )
        .await;
    let other = other.as_str().unwrap().to_owned();
    let liar = fake_facilitator(Some(json!({
        "success": true,
        "transaction": other,
        "network": "eip155:31337",
        "payer": payer.address,
    })))
    .await;
    let silent = fake_facilitator(None).await;
    for facilitator in [liar, silent] {
        let gw =
            facilitated_gateway(up, &chain, &pay_to, &format!("http://{facilitator}"), 2000).await;
        let (h, r) = pay_dear(gw, &payer, json!({"n": 3})).await;
        assert_eq!(r.status, 503, "{facilitator}: {}", r.text());
        assert!(r.headers.get("payment-response").is_none());
        let again = post(
            gw,
            &[("payment-signature", &h)],
            &call(3, "dear", json!({"n": 3})),
        )
        .await;
        assert_ne!(again.status, 200, "{}", again.text());
    }
    assert_eq!(
        tool_calls(&log),
        0,
        "the upstream never ran for an unpaid call"
    );
    assert_eq!(chain.balance(&payer.address).await, 1_000_000);
    assert_eq!(chain.balance(&pay_to).await, 0);
}

/// The MCP transport's tool-result binding, byte for byte: in band, a call without payment is
/// a tool result with `isError: true` whose `structuredContent` is the `PaymentRequired` and
/// whose `content[0].text` is its JSON; the payment in `params._meta["x402/payment"]`; the
/// settlement in `result._meta["x402/payment-response"]`, the key stripped before the upstream;
/// a replay is the same tool result, its `error` the reason. Beside proof-of-work, turnpike's
/// own in-band result carries the `PaymentRequired`'s members in its `structuredContent` too.
/// `tools/list` publishes the offer with its chain, token and payee. The settlement is in the
/// spend log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_in_meta() {
    let payer = new_payer();
    let env = setup_x402(&[&payer]).await;
    let r = post(
        env.gw,
        &[("turnpike-challenge", "in-band")],
        &call(1, "dear", json!({"n": 4})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.get("payment-required").is_none());
    let v = r.json();
    let result = v["result"].as_object().unwrap();
    let mut keys: Vec<&str> = result.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["content", "isError", "structuredContent"], "{v}");
    assert_eq!(v["result"]["isError"], true, "{v}");
    let pr = v["result"]["structuredContent"].clone();
    assert_eq!(pr["x402Version"], 2);
    assert_eq!(pr["error"], "params._meta[\"x402/payment\"] is required");
    assert_eq!(pr["resource"]["url"], "https://mcp.example.com/mcp");
    assert_eq!(pr["resource"]["description"], "tools/call dear");
    assert_eq!(pr["accepts"][0]["amount"], "10000");
    assert_eq!(pr["accepts"][0]["asset"], env.chain.asset.as_str());
    assert!(pr.get("rail").is_none() && pr.get("turnpike").is_none());
    assert_eq!(v["result"]["content"].as_array().unwrap().len(), 1);
    assert_eq!(v["result"]["content"][0]["type"], "text");
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        text,
        pr.to_string(),
        "content[0].text is the JSON of structuredContent"
    );

    let payment = b64_json(&sign(&pr, &payer).await);
    let mut body = call(2, "dear", json!({"n": 4}));
    body["params"]["_meta"] = json!({"x402/payment": payment});
    let r = post(env.gw, &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["content"][0]["text"], "dear 4");
    let settled = v["result"]["_meta"]["x402/payment-response"].clone();
    assert_eq!(settled["success"], true);
    assert_eq!(settled["payer"], payer.address.as_str());
    assert_eq!(settled["network"], "eip155:31337");
    let seen = env.log.lock().last().cloned().unwrap();
    assert!(!String::from_utf8_lossy(&seen.body).contains("x402/payment"));
    assert_eq!(env.calls(), 1);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);

    // Presented again: the same form, the reason as its error.
    let mut again = body.clone();
    again["id"] = json!(3);
    let r = post(env.gw, &[("turnpike-challenge", "in-band")], &again).await;
    let v = r.json();
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert_eq!(
        v["result"]["structuredContent"]["error"],
        "this authorization has already been used"
    );
    assert_eq!(env.calls(), 1);

    // The spend log: the settlement, with its transaction, payer, amount, asset, network and
    // tool.
    let lines = spend_log(&env.dir, 1).await;
    assert_eq!(
        lines[0],
        json!({"at": lines[0]["at"], "outcome": "settled", "rail": "x402",
               "payment_method": "exact", "transaction": settled["transaction"],
               "payer": payer.address, "amount": "10000", "asset": env.chain.asset,
               "network": "eip155:31337", "pay_to": env.pay_to, "method": "tools/call",
               "tool": "dear"})
    );

    // Beside proof-of-work (echo): turnpike's in-band result, which x402 clients read too.
    let r = post(
        env.gw,
        &[("turnpike-challenge", "in-band")],
        &call(4, "echo", json!({"text": "x"})),
    )
    .await;
    let v = r.json();
    let sc = &v["result"]["structuredContent"];
    assert_eq!(v["result"]["isError"], true, "{v}");
    let rails: Vec<&str> = sc["turnpike"]["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rail"].as_str().unwrap())
        .collect();
    assert_eq!(rails, ["x402", "pow"]);
    assert_eq!(sc["x402Version"], 2);
    assert_eq!(sc["accepts"], sc["turnpike"]["challenges"][0]["accepts"]);
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("params._meta[\"x402/payment\"]"), "{text}");

    let r = post(
        env.gw,
        &[],
        &json!({"jsonrpc":"2.0","id":5,"method":"tools/list","params":{}}),
    )
    .await;
    let v = r.json();
    let dear = v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "dear")
        .unwrap()
        .clone();
    let offers = dear["_meta"]["turnpike/price"]["offers"]
        .as_array()
        .unwrap();
    assert!(
        offers.contains(&json!({
            "rail": "x402", "scheme": "exact", "amount": "10000", "network": "eip155:31337",
            "asset": env.chain.asset, "payTo": env.pay_to,
        })),
        "{offers:?}"
    );
}

/// A 2026-07-28 call: a client that advertises the `org.x402/payment` extension in its
/// capabilities gets `resultType: "payment_required"` with `paymentRequired`; one that does
/// not gets the tool result, with `resultType: "complete"`; the advertising client pays with
/// the same `_meta` key and gets the settlement in `result._meta`; `server/discover` lists the
/// extension in `capabilities.extensions`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_extension_of_2026_07_28() {
    let payer = new_payer();
    let env = setup_x402(&[&payer]).await;
    let modern = |id: i64, extensions: Value, payment: Option<Value>| {
        let mut body = call(id, "dear", json!({"n": 8}));
        let mut meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"extensions": extensions},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
        });
        if let Some(p) = payment {
            meta["x402/payment"] = p;
        }
        body["params"]["_meta"] = meta;
        body
    };
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "dear"),
    ];
    let r = post(
        env.gw,
        &headers,
        &modern(1, json!({"org.x402/payment": {}}), None),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["resultType"], "payment_required", "{v}");
    assert!(v["result"].get("isError").is_none());
    let pr = v["result"]["paymentRequired"].clone();
    assert_eq!(pr["x402Version"], 2);
    assert_eq!(pr["accepts"][0]["amount"], "10000");

    // Not advertised: the tool result, complete.
    let r = post(env.gw, &headers, &modern(2, json!({}), None)).await;
    let v = r.json();
    assert_eq!(v["result"]["resultType"], "complete", "{v}");
    assert_eq!(v["result"]["isError"], true);
    assert_eq!(v["result"]["structuredContent"]["x402Version"], 2);

    let payment = b64_json(&sign(&pr, &payer).await);
    let r = post(
        env.gw,
        &headers,
        &modern(3, json!({"org.x402/payment": {}}), Some(payment)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["content"][0]["text"], "dear 8", "{v}");
    assert_eq!(
        v["result"]["_meta"]["x402/payment-response"]["success"],
        true
    );
    assert_eq!(env.calls(), 1);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);

    // The server says it speaks the extension, in server/discover's capabilities.
    let discover = json!({"jsonrpc": "2.0", "id": 4, "method": "server/discover", "params": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {},
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}}}});
    let r = post(
        env.gw,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
        &discover,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["result"]["capabilities"]["extensions"]["org.x402/payment"],
        json!({}),
        "{v}"
    );
    assert!(v["result"]["capabilities"]["tools"].is_object(), "{v}");
}

/// The official MCP TypeScript SDK client, with the x402 project's client signing
/// (tests/e2e/x402_mcp_client.mjs): it finds the `PaymentRequired` in the tool result as the
/// binding's clients do, pays with `_meta["x402/payment"]`, gets the tool's answer and the
/// settlement in `_meta["x402/payment-response"]`; the same payment again is refused in the same
/// form. Money moved once, on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sdk_client_pays_over_the_mcp_transport() {
    let payer = new_payer();
    let env = setup_x402(&[&payer]).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/x402_mcp_client.mjs");
    let out = tokio::process::Command::new(node())
        .arg(&script)
        .args([&env.url(), &payer.key, "dear", &json!({"n": 9}).to_string()])
        .env("TURNPIKE_DEPS", deps_dir())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "x402_mcp_client.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["challenge"]["isError"], true, "{v}");
    assert_eq!(v["challenge"]["structuredContent"]["x402Version"], 2);
    assert_eq!(v["fromText"], "same");
    assert_eq!(v["payment"]["x402Version"], 2);
    assert_eq!(v["paid"]["content"][0]["text"], "dear 9", "{v}");
    assert!(v["paid"].get("isError").is_none() || v["paid"]["isError"] == false);
    let settled = &v["paid"]["_meta"]["x402/payment-response"];
    assert_eq!(settled["success"], true, "{v}");
    assert_eq!(settled["payer"], payer.address.as_str());
    let tx = settled["transaction"].as_str().unwrap();
    let receipt = env
        .chain
        .rpc("eth_getTransactionReceipt", json!([tx]))
        .await;
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(v["replay"]["isError"], true, "{v}");
    assert_eq!(
        v["replay"]["structuredContent"]["error"],
        "this authorization has already been used"
    );
    assert_eq!(env.calls(), 1);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);
    assert_eq!(env.chain.balance(&payer.address).await, 1_000_000 - 10_000);
}

/// The Python interpreter with the x402 project's client (`x402[evm,mcp]` on the MCP Python SDK
/// 1.x): `$TURNPIKE_X402_PYTHON` when set, else the repository's `.venv-x402`
/// (scripts/setup-test-deps installs it there).
fn x402_python() -> PathBuf {
    match std::env::var_os("TURNPIKE_X402_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-x402/bin/python"),
    }
}

/// The x402 project's own MCP client (PyPI `x402`: `x402.mcp.x402MCPSession` over the MCP Python
/// SDK's session, unmodified; tests/e2e/x402_mcp_py_client.py) pays a tool: it finds the offer
/// in the tool result, signs, retries with `_meta["x402/payment"]` and reads the settlement from
/// `_meta["x402/payment-response"]`; asked again without paying, it gets a fresh offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_x402_python_mcp_client_pays() {
    let payer = new_payer();
    let env = setup_x402(&[&payer]).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/x402_mcp_py_client.py");
    let python = x402_python();
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup-test-deps",
        python.display()
    );
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .args([
            &env.url(),
            &payer.key,
            &env.chain.asset,
            "dear",
            &json!({"n": 11}).to_string(),
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "x402_mcp_py_client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["paymentMade"], true, "{v}");
    assert_eq!(v["isError"], false, "{v}");
    assert_eq!(v["text"], "dear 11", "{v}");
    let settled = &v["paymentResponse"];
    assert_eq!(settled["success"], true, "{v}");
    assert_eq!(settled["payer"], payer.address.as_str());
    assert_eq!(settled["network"], "eip155:31337");
    let tx = settled["transaction"].as_str().unwrap();
    let receipt = env
        .chain
        .rpc("eth_getTransactionReceipt", json!([tx]))
        .await;
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(v["offerAgain"]["x402Version"], 2, "{v}");
    assert_eq!(env.calls(), 1);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);
}

/// The bounds on payments checked, from `[x402]`: past `checks_per_minute_per_caller` the
/// caller gets 429 with `Retry-After` (its own rate); past `checks_per_minute` (every caller)
/// 503 with `Retry-After`; in neither case does the upstream run or money move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_checked_past_the_bounds_answer_429_or_503() {
    let payer = new_payer();
    let chain = start_chain(&[&payer]).await;
    let (up, log) = start_upstream(true).await;
    let pay_to = new_address();
    let mut gateways = Vec::new();
    for bounds in [
        "checks_per_minute_per_caller = 2",
        "checks_per_minute_per_caller = 120\nchecks_per_minute = 2",
    ] {
        let dir = data_dir();
        let key = settle_key(&chain, &dir).await;
        gateways.push(
            start_gateway_with(&x402_config(
                up,
                &dir,
                &chain.url,
                &chain.asset,
                &pay_to,
                &format!("settle_key_file = \"{}\"\n{bounds}", key.display()),
            ))
            .await,
        );
    }
    for (gw, status) in gateways.into_iter().zip([429u16, 503]) {
        // A payment for another call: refused offline, after the bound is taken.
        let pr = payment_required(&post(gw, &[], &call(1, "dear", json!({"n": 1}))).await);
        let h = sign(&pr, &payer).await;
        for id in [2, 3] {
            let r = post(
                gw,
                &[("payment-signature", &h)],
                &call(id, "dear", json!({"n": 2})),
            )
            .await;
            assert_refused(&r, "another call");
        }
        let r = post(
            gw,
            &[("payment-signature", &h)],
            &call(4, "dear", json!({"n": 1})),
        )
        .await;
        assert_eq!(r.status.as_u16(), status, "{}", r.text());
        let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&secs), "{secs}");
        assert_eq!(r.json()["error"]["data"]["retry_after"], secs);
        assert!(r.headers.get("payment-response").is_none());
    }
    assert_eq!(tool_calls(&log), 0);
    assert_eq!(chain.balance(&payer.address).await, 1_000_000);
}

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The gateway of `cfg` with its admin listener (`[admin]` added): its address and the admin's.
async fn start_with_admin(cfg: &str) -> (SocketAddr, SocketAddr) {
    let cfg = format!(
        "{cfg}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\nmetrics_public = false\n"
    );
    let cfg = turnpike_gateway::parse(&cfg, "t.toml").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = parking_lot::Mutex::new(Some(tx));
    let opts = turnpike_gateway::ServeOptions {
        on_ready: Some(std::sync::Arc::new(
            move |_live: &std::sync::Arc<turnpike_gateway::reload::LiveGate>,
                  admin: Option<SocketAddr>| {
                if let Some(tx) = tx.lock().take() {
                    let _ = tx.send(admin);
                }
            },
        )),
        ..turnpike_gateway::ServeOptions::default()
    };
    tokio::spawn(async move {
        turnpike_gateway::serve_listener_with(listener, cfg, std::future::pending(), opts)
            .await
            .unwrap();
    });
    let admin: Option<SocketAddr> = rx.await.unwrap();
    (gw, admin.unwrap())
}

async fn admin_get(admin: SocketAddr, path: &str) -> Reply {
    let req = http::Request::builder()
        .method(http::Method::GET)
        .uri(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    send(req).await
}

/// What the operator reads: a settlement the chain refuses and one that settles are in the
/// admin summary's `x402.payments` (newest first, with transaction, payer, amount, asset,
/// network and tool), counted in `x402.settled`/`refused`, and in
/// `turnpike_x402_settlements_total{outcome}` on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_every_settlement() {
    let payer = new_payer();
    let chain = start_chain(&[&payer]).await;
    let (up, _log) = start_upstream(true).await;
    let dir = data_dir();
    let key = settle_key(&chain, &dir).await;
    let pay_to = new_address();
    let (gw, admin) = start_with_admin(&x402_config(
        up,
        &dir,
        &chain.url,
        &chain.asset,
        &pay_to,
        &format!("settle_key_file = \"{}\"", key.display()),
    ))
    .await;
    // Refused by the chain at settlement (valid only from a moment it has not reached).
    let args = json!({"n": 6});
    let pr = payment_required(&post(gw, &[], &call(1, "dear", args.clone())).await);
    let req: turnpike_x402::PaymentRequirements =
        serde_json::from_value(pr["accepts"][0].clone()).unwrap();
    let k = turnpike_x402::rail::parse_key(&payer.key).unwrap();
    let now = turnpike_core::unix_now();
    let early = turnpike_x402::payer::pay(&req, &k, rand::random(), now + 40, now + 100).unwrap();
    let h = base64::engine::general_purpose::STANDARD.encode(early.to_string());
    let r = post(
        gw,
        &[("payment-signature", &h)],
        &call(2, "dear", args.clone()),
    )
    .await;
    assert_refused(&r, "could not be settled");
    // Then paid.
    let h = sign(&pr, &payer).await;
    let r = post(
        gw,
        &[("payment-signature", &h)],
        &call(3, "dear", args.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tx = b64_json(r.headers["payment-response"].to_str().unwrap())["transaction"].clone();

    let v = admin_get(admin, "/admin/api/summary").await.json();
    let x = &v["x402"];
    assert_eq!(
        (x["settled"].clone(), x["refused"].clone()),
        (json!(1), json!(1)),
        "{x}"
    );
    let payments = x["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 2, "{x}");
    assert_eq!(payments[0]["outcome"], "settled");
    assert_eq!(payments[0]["transaction"], tx);
    assert_eq!(payments[0]["payer"], payer.address.as_str());
    assert_eq!(payments[0]["amount"], "10000");
    assert_eq!(payments[0]["asset"], chain.asset.as_str());
    assert_eq!(payments[0]["network"], "eip155:31337");
    assert_eq!(payments[0]["tool"], "dear");
    assert_eq!(payments[1]["outcome"], "refused");
    assert!(payments[1]["reason"].is_string());
    let metrics = admin_get(admin, "/metrics").await.text();
    assert!(
        metrics.contains("turnpike_x402_settlements_total{outcome=\"settled\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("turnpike_x402_settlements_total{outcome=\"refused\"} 1\n"));
    // And the spend log on disk has both.
    let lines = spend_log(&dir, 2).await;
    assert_eq!(lines[0]["outcome"], "refused");
    assert_eq!(lines[1]["transaction"], tx);
}

/// `turnpike check`'s reading of `[x402]` and `x402 = {…}`: each mistake at its line:col.
#[test]
fn configuration_mistakes_are_placed() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\n";
    let table = "[x402]\nnetwork = \"eip155:8453\"\nrpc_url = \"https://node.example\"\nasset = \"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913\"\nasset_name = \"USD Coin\"\nasset_version = \"2\"\npay_to = \"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\"\n";
    let err = |text: &str| {
        turnpike_gateway::config::parse(text, "t.toml")
            .unwrap_err()
            .to_string()
    };
    // No way to settle; two ways.
    let e = err(&format!("{base}{table}"));
    assert!(e.contains("no way to settle"), "{e}");
    let e = err(&format!(
        "{base}{table}settle_key_env = \"K\"\nfacilitator_url = \"https://f.example\"\n"
    ));
    assert!(e.contains("t.toml:10:"), "{e}");
    assert!(e.contains("more than one way"), "{e}");
    // A network that is not CAIP-2 eip155, an address that is not one.
    let e = err(&format!(
        "{base}{}settle_key_env = \"K\"\n",
        table.replace("eip155:8453", "base")
    ));
    assert!(e.contains("t.toml:4:11: "), "{e}");
    let e = err(&format!(
        "{base}{}settle_key_env = \"K\"\n",
        table.replace("0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "0x1234")
    ));
    assert!(e.contains("t.toml:9:10: "), "{e}");
    // An unknown key.
    let e = err(&format!(
        "{base}{table}settle_key_env = \"K\"\nmax_timeout = 5\n"
    ));
    assert!(e.contains("t.toml:11:1: "), "{e}");
    assert!(
        e.contains("max_timeout_secs"),
        "the hint lists the keys: {e}"
    );
    // A price of 0, a price that is not a number, and a price without [x402].
    let good = format!("{base}{table}settle_key_env = \"K\"\n");
    let e = err(&format!("{good}[tools.a]\nx402 = {{ amount = \"0\" }}\n"));
    assert!(e.contains("t.toml:12:8: "), "{e}");
    let e = err(&format!("{good}[tools.a]\nx402 = {{ amount = \"1.5\" }}\n"));
    assert!(e.contains("at least 1"), "{e}");
    let e = err(&format!("{base}[tools.a]\nx402 = {{ amount = \"10\" }}\n"));
    assert!(e.contains("[x402]"), "{e}");
    // A good one.
    let c = turnpike_gateway::config::parse(
        &format!("{good}[tools.a]\nx402 = {{ amount = \"10000\" }}\n"),
        "t.toml",
    )
    .unwrap();
    let offer = c.tools["a"].offer(turnpike_x402::RAIL).unwrap();
    assert_eq!(turnpike_x402::amount(offer), Some(10_000));
    // The bounds on payments checked: defaults, set, and 0 refused at its place.
    let x = turnpike_x402::conf::section(&c.rails).unwrap();
    assert_eq!(
        (x.checks_per_minute_per_caller, x.checks_per_minute),
        (120, 3000)
    );
    let c = turnpike_gateway::config::parse(
        &format!("{good}checks_per_minute_per_caller = 5\nchecks_per_minute = 50\n"),
        "t.toml",
    )
    .unwrap();
    let x = turnpike_x402::conf::section(&c.rails).unwrap();
    assert_eq!(x.check_rates().per_caller, 5);
    assert_eq!(x.check_rates().global, 50);
    let e = err(&format!("{good}checks_per_minute = 0\n"));
    assert!(e.contains("t.toml:11:"), "{e}");
}
