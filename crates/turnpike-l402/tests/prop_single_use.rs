//! Property: an L402 per-call token is accepted at most once, and a balance token never pays
//! for more calls than its credit covers.
//!
//! Several tokens are bought from the real rail (the dev Lightning backend mints and "pays"
//! signed regtest invoices), then presented in a random order, repeatedly, in random spellings
//! (`L402`, `LSAT`, `token=`), through the memory or the SQLite store. Each per-call token passes
//! on its first presentation only; a balance token passes exactly `credit / price` times.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use proptest::prelude::*;
use turnpike_core::credential::split_scheme;
use turnpike_core::{CallFacts, Credential, Offer, Rail, Verdict};
use turnpike_l402::store::L402Store;
use turnpike_l402::BillingMode;
use turnpike_l402::{parse_authorization, L402Config, L402Rail, MemoryStore, SqliteStore};
use turnpike_lightning::dev::DevBackend;
use turnpike_store::MemorySpentSet;

const NOW: u64 = 1_800_000_000;

fn call(tool: &str) -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some(tool.into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now: NOW,
    }
}

fn spelling(header: &str, how: u8) -> Credential {
    let h = match how % 3 {
        0 => header.to_string(),
        1 => header.replacen("L402 ", "LSAT ", 1),
        _ => header.replacen("L402 ", "l402 token=", 1),
    };
    let (scheme, params) = split_scheme(&h);
    parse_authorization(scheme, params)
        .expect("an L402 scheme")
        .expect("a well-formed credential")
}

async fn buy(rail: &L402Rail, dev: &DevBackend, c: &CallFacts, offer: &Offer) -> String {
    let ch = rail.challenge(c, offer).await.expect("a challenge");
    let mac = ch.details["macaroon"]
        .as_str()
        .expect("macaroon")
        .to_string();
    let invoice = ch.details["invoice"].as_str().expect("invoice");
    let preimage = dev.pay(invoice).expect("the dev wallet pays");
    format!("L402 {mac}:{}", hex::encode(preimage))
}

fn run(
    store: Arc<dyn L402Store>,
    tokens: usize,
    order: &[(usize, u8)],
    balance_calls: usize,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dev = Arc::new(DevBackend::regtest());
        let rail = L402Rail::new(
            L402Config::default(),
            dev.clone(),
            store,
            Arc::new(MemorySpentSet::new()),
        );
        let c = call("echo");
        let per_call = turnpike_l402::offer(1000, BillingMode::PerCall, 0);
        let mut headers = Vec::new();
        for _ in 0..tokens {
            headers.push(buy(&rail, &dev, &c, &per_call).await);
        }
        let mut passes = vec![0usize; tokens];
        let mut seen = vec![false; tokens];
        for &(i, how) in order {
            let i = i % tokens;
            let v = rail
                .verify(&c, &per_call, &spelling(&headers[i], how))
                .await;
            match v {
                Verdict::Pass(_) => {
                    prop_assert!(!seen[i], "token {} accepted twice", i);
                    passes[i] += 1;
                }
                Verdict::Stale(r) => {
                    prop_assert!(seen[i], "a fresh token was refused: {}", r.reason);
                }
                other => return Err(TestCaseError::fail(format!("unexpected verdict {other:?}"))),
            }
            seen[i] = true;
        }
        prop_assert!(passes.iter().all(|&p| p <= 1));

        // A balance token of 3 calls' credit, presented `balance_calls` times.
        let balance = turnpike_l402::offer(1000, BillingMode::Balance, 3000);
        let header = buy(&rail, &dev, &c, &balance).await;
        let mut ok = 0;
        for k in 0..balance_calls {
            if let Verdict::Pass(_) = rail.verify(&c, &balance, &spelling(&header, k as u8)).await {
                ok += 1;
            }
        }
        prop_assert_eq!(ok, balance_calls.min(3));
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn per_call_tokens_pass_once_memory(
        tokens in 1usize..4,
        order in proptest::collection::vec((0usize..4, any::<u8>()), 1..12),
        balance_calls in 0usize..6,
    ) {
        run(Arc::new(MemoryStore::new()), tokens, &order, balance_calls)?;
    }

    #[test]
    fn per_call_tokens_pass_once_sqlite(
        tokens in 1usize..4,
        order in proptest::collection::vec((0usize..4, any::<u8>()), 1..12),
        balance_calls in 0usize..6,
    ) {
        let store = SqliteStore::open_in_memory().expect("sqlite");
        run(Arc::new(store), tokens, &order, balance_calls)?;
    }
}
