//! `turnpike connect`'s client paying x402 through the real gateway, on a real local chain
//! (anvil and the EIP-3009 token of tests/e2e/x402_TestUSD.sol, see `support/chain.rs`): the
//! HTTP forwarder of `turnpike connect --listen` (`turnpike_client::proxy::serve`) pays an
//! x402-only tool and the token moves on chain; the in-band offer is paid the same way; a
//! payment over the dollar budget, over the per-call cap or in an asset not allowed is refused
//! before anything is signed, with its reason, and the offered puzzle is solved instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use serde_json::{json, Value};
use support::chain::*;
use support::*;
use turnpike_client::{budget, Client, ClientConfig, Rail, X402Asset, X402Payer};
use turnpike_x402::evm;

/// A client paying with `payer` in the chain's token (6 decimals), with `tweak` applied.
fn client(env: &Env, payer: &Payer, tweak: impl FnOnce(&mut ClientConfig)) -> Arc<Client> {
    let state = client_state_dir();
    let asset = X402Asset::parse("eip155:31337", &env.chain.asset, 6).unwrap();
    let mut cfg = ClientConfig::new(state.clone());
    cfg.x402 = Some(X402Payer::from_file(&payer_key_file(&state, payer), vec![asset]).unwrap());
    tweak(&mut cfg);
    Arc::new(Client::new(cfg).unwrap())
}

fn text_of(v: &Value) -> String {
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `turnpike connect --listen`: a plain HTTP client posts a call to an x402-only tool to the
/// forwarder, which pays it; the payer's balance goes down by the price and the gateway's
/// `payTo` up by it, once; the spend log names the recipient. The in-band offer (an MCP
/// client mid-session) is paid the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_forwarder_pays_an_x402_tool_on_chain() {
    let payer = new_payer();
    let env = setup_x402(&[&payer]).await;
    let before = env.chain.balance(&payer.address).await;
    let c = client(&env, &payer, |_| {});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fwd = listener.local_addr().unwrap();
    let remote = env.url();
    tokio::spawn(turnpike_client::proxy::serve(
        c.clone(),
        remote.clone(),
        listener,
    ));

    let r = post(fwd, &[], &call(1, "dear", json!({"n": 1}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(text_of(&r.json()), "dear 1", "{}", r.text());
    assert_eq!(env.calls(), 1);
    assert_eq!(env.chain.balance(&payer.address).await, before - 10_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 10_000);

    // In band: the offer comes as a tool result, the payment goes as PAYMENT-SIGNATURE.
    let r = post(
        fwd,
        &[("turnpike-challenge", "in-band")],
        &call(2, "dear", json!({"n": 2})),
    )
    .await;
    assert_eq!(text_of(&r.json()), "dear 2", "{}", r.text());
    assert_eq!(env.calls(), 2);
    assert_eq!(env.chain.balance(&payer.address).await, before - 20_000);
    assert_eq!(env.chain.balance(&env.pay_to).await, 20_000);

    let log = budget::read_log(&c.config().state_dir).unwrap();
    let paid: Vec<_> = log.iter().filter(|e| e.rail == "x402").collect();
    assert_eq!(paid.len(), 2, "{log:?}");
    for e in &paid {
        assert_eq!(e.status, "signed");
        assert_eq!(e.usd_micro, Some(10_000));
        assert_eq!(e.units.as_deref(), Some("10000"));
        assert_eq!(e.pay_to.as_deref(), Some(env.pay_to.as_str()));
        assert_eq!(e.server, remote);
    }
    let shown = budget::render_log(&log, turnpike_core::unix_now());
    assert!(
        shown.contains(&format!("$0.01 to {}", env.pay_to)),
        "{shown}"
    );
    assert!(shown.contains("x402: $0.02 in the last 24 h"), "{shown}");
    // The key is never written anywhere but its own file.
    let key_hex = payer.key.trim_start_matches("0x");
    for f in ["spend.jsonl", "credentials.json"] {
        let p = c.config().state_dir.join(f);
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        assert!(!text.contains(key_hex), "{f} holds the key");
    }
}

/// Refused before signing, each with its reason, and nothing moves: over the daily dollar
/// budget, over the per-call cap, an asset the user did not allow. With x402 preferred
/// (`--rails x402,pow`), a tool that also offers a puzzle gets the puzzle solved instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_x402_records_its_reason_and_the_puzzle_is_solved() {
    let payer = new_payer();
    let env = setup_x402(&[&payer]).await;
    let before = env.chain.balance(&payer.address).await;
    let url = env.url();

    // Over the daily budget: half a cent a day, the tools cost a cent.
    let c = client(&env, &payer, |cfg| {
        cfg.budgets.per_day_usd = Some(0.005);
        cfg.policy.rails = Some(vec![Rail::X402, Rail::Pow]);
    });
    let e = refused_dear(&c, &url, 1).await;
    assert!(e.starts_with("over budget: "), "{e}");
    assert!(e.contains("daily budget of $0.005"), "{e}");
    assert!(e.contains(&env.pay_to), "the recipient is named: {e}");
    assert!(e.contains("nothing signed"), "{e}");
    // `echo` offers proof-of-work beside x402: refused x402, solved the puzzle.
    let r = c
        .rpc(&url, &call(2, "echo", json!({"text": "hi"})))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "hi", "{r}");
    let log = budget::read_log(&c.config().state_dir).unwrap();
    assert!(log.iter().all(|e| e.rail != "x402"), "{log:?}");
    assert_eq!(
        log.iter()
            .filter(|e| e.rail == "pow" && e.status == "solved")
            .count(),
        1
    );

    // Over the per-call cap.
    let c = client(&env, &payer, |cfg| cfg.policy.max_pay_usd = 0.001);
    let e = refused_dear(&c, &url, 3).await;
    assert!(
        e.contains("pays at most $0.001 at once (--max-pay-usd)"),
        "{e}"
    );

    // An asset not allowed (the same token address on another chain).
    let state = client_state_dir();
    let mut cfg = ClientConfig::new(state.clone());
    let elsewhere = X402Asset::parse("eip155:8453", &env.chain.asset, 6).unwrap();
    cfg.x402 =
        Some(X402Payer::from_file(&payer_key_file(&state, &payer), vec![elsewhere]).unwrap());
    let c = Client::new(cfg).unwrap();
    let e = refused_dear(&c, &url, 4).await;
    assert!(
        e.contains("x402: the server asks for payment in exact"),
        "{e}"
    );
    assert!(e.contains("eip155:31337"), "{e}");
    assert!(e.contains("not an asset allowed here"), "{e}");

    // No key: the x402-only tool says so.
    let c = Client::new(ClientConfig::new(client_state_dir())).unwrap();
    let e = refused_dear(&c, &url, 5).await;
    assert!(e.contains("x402: no x402 key is configured"), "{e}");

    assert_eq!(env.chain.balance(&payer.address).await, before);
    assert_eq!(env.chain.balance(&env.pay_to).await, 0);
    assert_eq!(env.calls(), 1, "only the solved call ran");
}

/// A key file others can read is refused.
#[test]
fn a_key_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = client_state_dir();
    let path = payer_key_file(&dir, &new_payer());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = X402Payer::from_file(&path, vec![]).unwrap_err().to_string();
    assert!(e.contains("readable by other users"), "{e}");
}

/// A server that answers every payment with another 402 gets one signed authorization per call,
/// not one per round: the second ask is refused with its reason, and the log counts one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_signs_at_most_one_payment() {
    use base64::Engine;
    let asset = new_address();
    let pr = json!({
        "x402Version": 2,
        "resource": {"url": "http://x/mcp", "description": "tools/call dear", "mimeType": "application/json"},
        "accepts": [{
            "scheme": "exact", "network": "eip155:31337", "amount": "10000", "asset": asset,
            "payTo": new_address(), "maxTimeoutSeconds": 60,
            "extra": {"name": "TestUSD", "version": "1"}
        }]
    });
    let header = base64::engine::general_purpose::STANDARD.encode(pr.to_string());
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<Option<String>>::new()));
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: http::HeaderMap| {
            let header = header.clone();
            let seen = seen2.clone();
            async move {
                seen.lock().push(
                    headers
                        .get("payment-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                );
                (
                    http::StatusCode::PAYMENT_REQUIRED,
                    [("payment-required", header)],
                    "{}",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let payer = new_payer();
    let state = client_state_dir();
    let mut cfg = ClientConfig::new(state.clone());
    let allowed = X402Asset::parse("eip155:31337", &asset, 6).unwrap();
    cfg.x402 = Some(X402Payer::from_file(&payer_key_file(&state, &payer), vec![allowed]).unwrap());
    let c = Client::new(cfg).unwrap();
    let e = c
        .rpc(
            &format!("http://{addr}/mcp"),
            &call(1, "dear", json!({"n": 1})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no second one is signed"), "{e}");
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 2, "the call, then one retry with the payment");
    assert!(seen[0].is_none());
    let payment = turnpike_x402::PaymentPayload::from_header(seen[1].as_deref().unwrap()).unwrap();
    assert_eq!(
        evm::checksum(&payment.authorization.from),
        payer.address,
        "signed by the payer's key"
    );
    assert_eq!(payment.authorization.value, 10_000);
    let log = budget::read_log(&state).unwrap();
    assert_eq!(log.iter().filter(|e| e.rail == "x402").count(), 1);
}
