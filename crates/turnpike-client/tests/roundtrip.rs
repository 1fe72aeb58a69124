//! Challenges minted by the real rail, found by the parser, solved by the solver, and verified
//! by the rail.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use turnpike_core::unix_now;

use turnpike_client::{
    attach_meta, authorization_value, meta_value, parse_challenges, solve, solve_with, SolveError,
    SolveOptions,
};
use turnpike_core::credential::split_scheme;
use turnpike_core::{CallFacts, Challenge, Credential, Rail, Verdict};
use turnpike_pow::credential::{parse_nonce_list, parse_pow_params};
use turnpike_pow::puzzle::{ChallengeToken, TOKEN_LEN};
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the rail's futures never wait with a memory store"),
    }
}

fn call() -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some("echo".into()),
        args_hash: [3; 32],
        caller: None,
        peer: None,
        now: unix_now(),
    }
}

fn rail() -> PowRail {
    PowRail::new(
        PowConfig::default(),
        KeyRing::from_secrets(vec![(1, [42; 32])]).unwrap(),
        Arc::new(MemorySpentSet::new()),
    )
}

fn challenge(r: &PowRail, c: &CallFacts, effort: u64) -> Challenge {
    block_on(r.challenge(c, &turnpike_pow::offer(effort))).expect("PoW offered")
}

fn verify_header(r: &PowRail, c: &CallFacts, effort: u64, header: &str) -> Verdict {
    let (scheme, params) = split_scheme(header);
    assert_eq!(scheme, "PoW");
    let cred = Credential::from(parse_pow_params(params).expect("well-formed credential"));
    block_on(r.verify(c, &turnpike_pow::offer(effort), &cred))
}

#[test]
fn solve_what_the_rail_mints_and_pass() {
    let r = rail();
    let c = call();
    for threads in [1, 2, 3] {
        let ch = challenge(&r, &c, 300_000);
        let found = parse_challenges(&ch.www_authenticate);
        assert_eq!(found.len(), 1);
        let p = &found[0];
        assert_eq!(p.effort(), 300_000);
        assert_eq!(p.subpuzzles(), 4);
        assert_eq!(p.expected_seconds, Some(0.0375));
        let progress_calls = std::cell::Cell::new(0u32);
        let last = std::cell::Cell::new(0u64);
        let report = |h: u64| {
            progress_calls.set(progress_calls.get() + 1);
            assert!(h >= last.get(), "progress only grows");
            last.set(h);
        };
        let nonces = solve(&p.token, threads, Some(&report)).unwrap();
        assert_eq!(nonces.len(), 4);
        assert!(progress_calls.get() >= 1);
        assert!(last.get() >= 4, "at least one hash per sub-puzzle");
        let header = authorization_value(&p.challenge, &nonces);
        assert!(header.starts_with("PoW challenge=\""));
        let v = verify_header(&r, &c, 300_000, &header);
        assert!(matches!(v, Verdict::Pass(_)), "{threads} threads: {v:?}");
        // And only once.
        let v = verify_header(&r, &c, 300_000, &header);
        assert!(matches!(v, Verdict::Stale(_)), "{v:?}");
    }
}

#[test]
fn meta_form() {
    let r = rail();
    let c = call();
    let ch = challenge(&r, &c, 1000);
    let p = &parse_challenges(&ch.details.to_string())[0];
    let nonces = solve(&p.token, 1, None).unwrap();
    let meta = meta_value(&p.challenge, &nonces);
    let entry = &meta["turnpike/pow"];
    assert_eq!(entry["challenge"], p.challenge.as_str());
    let sol = entry["solution"].as_str().unwrap();
    let parsed = parse_nonce_list(sol).unwrap();
    assert_eq!(parsed, nonces);
    let cred = Credential::from(turnpike_pow::PowCredential {
        challenge: entry["challenge"].as_str().unwrap().into(),
        solution: parsed,
    });
    assert!(matches!(
        block_on(r.verify(&c, &turnpike_pow::offer(1000), &cred)),
        Verdict::Pass(_)
    ));

    let mut req = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"echo","arguments":{},"_meta":{"progressToken":7}}});
    assert!(attach_meta(&mut req, &p.challenge, &nonces));
    assert_eq!(req["params"]["_meta"]["progressToken"], 7);
    assert_eq!(req["params"]["_meta"]["turnpike/pow"], *entry);
    let mut bare = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call"});
    assert!(attach_meta(&mut bare, &p.challenge, &nonces));
    assert_eq!(bare["params"]["_meta"]["turnpike/pow"], *entry);
    let mut odd = serde_json::json!({"params": []});
    assert!(!attach_meta(&mut odd, &p.challenge, &nonces));
}

#[test]
fn finds_challenges_in_every_form() {
    let r = rail();
    let c = call();
    let ch = challenge(&r, &c, 5000);
    let tok = ch.details["challenge"].as_str().unwrap().to_string();
    let l402 = "L402 macaroon=\"AgEEbHNhdAJCAAB+abc/def+==\", invoice=\"lnbcrt10n1pj\"";
    let forms = vec![
        ("bare token", tok.clone()),
        ("bare token with spaces", format!("  {tok}\n")),
        ("header value", ch.www_authenticate.clone()),
        ("L402 first, comma-joined", format!("{l402}, {}", ch.www_authenticate)),
        (
            "header lines",
            format!(
                "HTTP/1.1 402 Payment Required\r\ncontent-type: application/json\r\n\
                 WWW-Authenticate: {l402}\r\nwww-authenticate: {}\r\n\r\n",
                ch.www_authenticate
            ),
        ),
        (
            "402 body",
            serde_json::json!({"jsonrpc":"2.0","id":3,"error":{"code":-31402,
                "message":"payment required","data":{"challenges":[
                    {"rail":"l402","scheme":"L402","macaroon":"x","invoice":"lnbc"},
                    ch.details.clone()],"refusals":[]}}})
            .to_string(),
        ),
        (
            "in-band result",
            serde_json::json!({"jsonrpc":"2.0","id":3,"result":{"isError":true,
                "content":[{"type":"text","text":"solve it"}],
                "structuredContent":{"turnpike":{"challenges":[ch.details.clone()],"refusals":[]}}}})
            .to_string(),
        ),
        (
            "just the result",
            serde_json::json!({"structuredContent":{"turnpike":{"challenges":[ch.details.clone()]}}})
                .to_string(),
        ),
        (
            "SSE event",
            format!(
                "event: message\ndata: {}\n\n",
                serde_json::json!({"jsonrpc":"2.0","id":3,"result":{"isError":true,
                    "structuredContent":{"turnpike":{"challenges":[ch.details.clone()]}}}})
            ),
        ),
        ("details object", ch.details.to_string()),
    ];
    for (name, text) in forms {
        let found = parse_challenges(&text);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert_eq!(found[0].challenge, tok, "{name}");
        assert_eq!(found[0].effort(), 5000, "{name}");
    }
    // Two PoW challenges, kept in order; duplicates dropped.
    let ch2 = challenge(&r, &c, 7000);
    let both = format!(
        "{}, {}, {}",
        ch.www_authenticate, ch2.www_authenticate, ch.www_authenticate
    );
    let found = parse_challenges(&both);
    assert_eq!(
        found.iter().map(|f| f.effort()).collect::<Vec<_>>(),
        vec![5000, 7000]
    );
    // Nothing to find.
    for text in [
        "",
        "L402 macaroon=\"abc\", invoice=\"lnbc\"",
        "Bearer resource_metadata=\"https://x/.well-known/oauth-protected-resource\"",
        "PoW challenge=\"not-a-token\"",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
        "{not json",
        "PoW challenge=\"unterminated",
        &"A".repeat(148),
    ] {
        assert!(parse_challenges(text).is_empty(), "{text:?}");
    }
}

#[test]
fn cancel_and_budget() {
    let r = rail();
    let c = call();
    // Effort far beyond what the budget allows.
    let t = r.mint(&c, 1 << 60);
    let cancel = AtomicBool::new(true);
    let e = solve_with(
        &t,
        &SolveOptions {
            threads: 2,
            cancel: Some(&cancel),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, SolveError::Cancelled { .. }), "{e}");
    let e = solve_with(
        &t,
        &SolveOptions {
            threads: 2,
            max_hashes: Some(100_000),
            progress_interval: Duration::from_millis(1),
            ..Default::default()
        },
    )
    .unwrap_err();
    match e {
        SolveError::HashLimit { hashes, limit } => {
            assert_eq!(limit, 100_000);
            assert!(
                (100_000..100_000 + 2 * 16_384 + 1).contains(&hashes),
                "{hashes}"
            );
        }
        e => panic!("{e}"),
    }
    // Cancelling from another thread mid-solve.
    let cancel = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let e = solve_with(
            &t,
            &SolveOptions {
                threads: 2,
                cancel: Some(&cancel),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(e, SolveError::Cancelled { hashes } if hashes > 0),
            "{e}"
        );
    });
}

#[test]
fn equix_tokens_need_the_feature() {
    let r = rail();
    let mut raw = *r.mint(&call(), 10).raw();
    raw[1] = 2;
    let t = ChallengeToken::from_bytes(raw).unwrap();
    assert_eq!(raw.len(), TOKEN_LEN);
    let res = solve(&t, 1, None);
    if cfg!(feature = "equix") {
        assert!(res.is_ok());
    } else {
        assert!(matches!(res, Err(SolveError::Unsupported(_))), "{res:?}");
    }
}
