//! The client library against a loopback server speaking the gate's wire format: proof-of-work
//! challenges minted and verified by the real rail, L402 invoices from the dev Lightning backend
//! paid through its dev wallet (LND REST) by the client's `LndWallet`, challenges as HTTP 402 and
//! in band (JSON and SSE). Budgets, a lying server and wallet errors.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use turnpike_core::unix_now;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use turnpike_client::{budget, Budgets, Client, ClientConfig, ClientError, Policy, Rail};
use turnpike_core::credential::split_scheme;
use turnpike_core::{CallFacts, Credential, Rail as _, Verdict};
use turnpike_lightning::config::LndConfig;
use turnpike_lightning::dev::{DevBackend, DevWalletOptions};
use turnpike_lightning::wallet::LndWallet;
use turnpike_lightning::{HttpSettings, InvoiceState, LightningBackend, Secret};
use turnpike_pow::credential::parse_pow_params;
use turnpike_pow::{KeyRing, PowConfig, PowRail};
use turnpike_store::MemorySpentSet;

#[derive(Clone, Copy, PartialEq)]
enum Delivery {
    Http,
    InBandJson,
    InBandSse,
}

struct Server {
    pow: PowRail,
    dev: Arc<DevBackend>,
    delivery: Delivery,
    pow_effort: Option<u64>,
    l402_msat: Option<u64>,
    /// What the challenge claims the invoice costs (a liar says less).
    advertised_msat: Option<u64>,
    /// Invoices issued: (macaroon stand-in, payment hash).
    issued: Mutex<Vec<(String, [u8; 32])>>,
    passed: AtomicU64,
}

fn facts(msg: &Value) -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: msg["method"].as_str().unwrap_or("").into(),
        name: msg["params"]["name"].as_str().map(str::to_string),
        args_hash: turnpike_mcp::canonical::arguments_hash(msg.get("params")),
        caller: None,
        peer: None,
        now: unix_now(),
    }
}

async fn handle(State(s): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let msg: Value = serde_json::from_slice(&body).unwrap();
    let id = msg["id"].clone();
    let f = facts(&msg);
    for v in headers.get_all("authorization") {
        let v = v.to_str().unwrap();
        let (scheme, params) = split_scheme(v);
        let ok = match scheme {
            "PoW" => {
                let cred = Credential::from(parse_pow_params(params).unwrap());
                let effort = s.pow_effort.unwrap_or(1);
                matches!(
                    s.pow.verify(&f, &turnpike_pow::offer(effort), &cred).await,
                    Verdict::Pass(_)
                )
            }
            "L402" => {
                let (mac, pre) = params.trim().split_once(':').unwrap();
                let pre = hex::decode(pre).unwrap();
                let hash: [u8; 32] = Sha256::digest(&pre).into();
                s.issued.lock().iter().any(|(m, h)| m == mac && *h == hash)
            }
            _ => false,
        };
        if ok {
            s.passed.fetch_add(1, Ordering::SeqCst);
            let result = json!({"jsonrpc": "2.0", "id": id,
                "result": {"content": [{"type": "text", "text": "42"}], "isError": false}});
            return ([("content-type", "application/json")], result.to_string()).into_response();
        }
    }
    // Challenges.
    let mut www = Vec::new();
    let mut details = Vec::new();
    if let Some(msat) = s.l402_msat {
        let inv = s.dev.create_invoice(msat, "test", 600).await.unwrap();
        let mac = base64_std(&inv.payment_hash);
        s.issued.lock().push((mac.clone(), inv.payment_hash));
        www.push(format!(
            "L402 macaroon=\"{mac}\", invoice=\"{}\"",
            inv.bolt11
        ));
        details.push(json!({"rail": "l402", "scheme": "L402", "macaroon": mac,
            "invoice": inv.bolt11, "amount_msat": s.advertised_msat.unwrap_or(msat),
            "mode": "per_call", "expires": unix_now() + 600}));
    }
    if let Some(effort) = s.pow_effort {
        let ch = s.pow.render(&s.pow.mint(&f, effort));
        www.push(ch.www_authenticate.clone());
        details.push(ch.details);
    }
    let ways = json!({"challenges": details, "refusals": []});
    match s.delivery {
        Delivery::Http => {
            let body = json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -31402, "message": "payment required", "data": ways}});
            let mut r = (
                StatusCode::PAYMENT_REQUIRED,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response();
            for w in www {
                r.headers_mut()
                    .append("www-authenticate", w.parse().unwrap());
            }
            r
        }
        Delivery::InBandJson | Delivery::InBandSse => {
            let result = json!({"jsonrpc": "2.0", "id": id, "result": {"isError": true,
                "content": [{"type": "text", "text": "pay or solve"}],
                "structuredContent": {"turnpike": ways}}});
            if s.delivery == Delivery::InBandJson {
                ([("content-type", "application/json")], result.to_string()).into_response()
            } else {
                let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": 1, "progress": 1}});
                let sse = format!(
                    "event: message\ndata: {progress}\n\nevent: message\ndata: {result}\n\n"
                );
                ([("content-type", "text/event-stream")], sse).into_response()
            }
        }
    }
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

struct Setup {
    url: String,
    server: Arc<Server>,
    dev: Arc<DevBackend>,
    wallet_url: String,
    wallet_macaroon: String,
    _wallet: turnpike_lightning::dev::DevWallet,
    _dir: TempDir,
    dir: std::path::PathBuf,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn setup(
    delivery: Delivery,
    pow_effort: Option<u64>,
    l402_msat: Option<u64>,
    advertised_msat: Option<u64>,
) -> Setup {
    let dev = Arc::new(DevBackend::regtest());
    let wallet = dev
        .clone()
        .serve_wallet("127.0.0.1:0".parse().unwrap(), DevWalletOptions::default())
        .await
        .unwrap();
    let server = Arc::new(Server {
        pow: PowRail::new(
            PowConfig::default(),
            KeyRing::from_secrets(vec![(1, [7; 32])]).unwrap(),
            Arc::new(MemorySpentSet::new()),
        ),
        dev: dev.clone(),
        delivery,
        pow_effort,
        l402_msat,
        advertised_msat,
        issued: Mutex::new(Vec::new()),
        passed: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/mcp", post(handle))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = std::env::temp_dir().join(format!(
        "turnpike-client-test-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    Setup {
        url: format!("http://{addr}/mcp"),
        server,
        dev,
        wallet_url: wallet.url(),
        wallet_macaroon: wallet.macaroon_hex.clone(),
        _wallet: wallet,
        _dir: TempDir(dir.clone()),
        dir,
    }
}

impl Setup {
    fn lnd(&self, macaroon: &str) -> Arc<dyn turnpike_lightning::Wallet> {
        Arc::new(
            LndWallet::new(&LndConfig {
                url: self.wallet_url.clone(),
                macaroon_hex: Some(Secret::from(macaroon)),
                macaroon_path: None,
                http: HttpSettings::default(),
            })
            .unwrap(),
        )
    }

    fn client(&self, f: impl FnOnce(&mut ClientConfig)) -> Client {
        let mut cfg = ClientConfig::new(self.dir.clone());
        cfg.hashrate = Some(5_000_000.0);
        cfg.wallet = Some(self.lnd(&self.wallet_macaroon));
        f(&mut cfg);
        Client::new(cfg).unwrap()
    }

    /// Whether any invoice the server issued was paid.
    async fn any_paid(&self) -> bool {
        let issued = self.server.issued.lock().clone();
        for (_, h) in issued {
            if matches!(
                self.dev.lookup_invoice(&h).await.unwrap(),
                InvoiceState::Settled { .. }
            ) {
                return true;
            }
        }
        false
    }
}

fn call_msg() -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 40, "b": 2}}})
}

fn assert_ok(v: &Value) {
    assert_eq!(v["id"], 7, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "42", "{v}");
}

#[tokio::test]
async fn pow_over_http_402() {
    let s = setup(Delivery::Http, Some(20_000), None, None).await;
    let c = s.client(|_| {});
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    let log = budget::read_log(&s.dir).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].rail.as_str(), log[0].status.as_str()),
        ("pow", "solved")
    );
    assert_eq!(log[0].counted_msat(), 0);
}

#[tokio::test]
async fn pow_in_band_json_and_sse() {
    for d in [Delivery::InBandJson, Delivery::InBandSse] {
        let s = setup(d, Some(20_000), None, None).await;
        let c = s.client(|_| {});
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let r = c
            .post(
                &s.url,
                &Default::default(),
                call_msg().to_string().into(),
                &move |v| seen2.lock().push(v),
            )
            .await
            .unwrap();
        assert_eq!(r.challenges_answered, 1);
        assert_ok(r.message.as_ref().unwrap());
        if d == Delivery::InBandSse {
            // The progress notification before the challenge reached the caller.
            assert_eq!(seen.lock()[0]["method"], "notifications/progress");
        }
    }
}

#[tokio::test]
async fn l402_paid_logged_and_budget_held() {
    let s = setup(Delivery::Http, None, Some(2_000), None).await;
    let c = s.client(|cfg| cfg.policy.max_fee_sat = 0);
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    let log = budget::read_log(&s.dir).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, "paid");
    assert_eq!(log[0].amount_msat, 2_000);
    // A second client on the same state directory with a 3-sat daily budget: the next 2-sat
    // call would make 4 sat, so it is refused before the wallet is asked.
    let c2 = s.client(|cfg| {
        cfg.policy.max_fee_sat = 0;
        cfg.budgets = Budgets {
            per_day_sat: Some(3),
            ..Budgets::default()
        };
    });
    let err = c2.rpc(&s.url, &call_msg()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Budget(ref m) if m.contains("daily budget")),
        "{err}"
    );
    assert_eq!(budget::read_log(&s.dir).unwrap().len(), 1);
    let issued = s.server.issued.lock().clone();
    assert_eq!(issued.len(), 2);
    assert_eq!(
        s.dev.lookup_invoice(&issued[1].1).await.unwrap(),
        InvoiceState::Open,
        "the refused invoice was not paid"
    );
    assert_eq!(s.server.passed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn per_call_limit_and_rail_policy_refuse_before_paying() {
    let s = setup(Delivery::InBandJson, None, Some(20_000), None).await;
    let c = s.client(|_| {}); // max_pay_sat = 10 by default
    let err = c.rpc(&s.url, &call_msg()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Budget(ref m) if m.contains("at most 10 sat")),
        "{err}"
    );
    let c = s.client(|cfg| {
        cfg.policy.max_pay_sat = 100;
        cfg.budgets.per_call_sat = Some(5);
    });
    let err = c.rpc(&s.url, &call_msg()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Budget(ref m) if m.contains("per-call")),
        "{err}"
    );
    assert!(!s.any_paid().await);
    assert!(budget::read_log(&s.dir).unwrap().is_empty());
}

#[tokio::test]
async fn lying_invoice_refused() {
    // The challenge says 1 sat; the invoice asks for 2.
    let s = setup(Delivery::InBandJson, None, Some(2_000), Some(1_000)).await;
    let c = s.client(|_| {});
    let err = c.rpc(&s.url, &call_msg()).await.unwrap_err();
    assert!(matches!(err, ClientError::Lie(_)), "{err}");
    assert!(err.to_string().contains("advertised 1000 msat"), "{err}");
    assert!(!s.any_paid().await);
    assert!(budget::read_log(&s.dir).unwrap().is_empty());
}

#[tokio::test]
async fn absurd_effort_refused_without_solving() {
    let s = setup(Delivery::Http, Some(10_000_000_000_000), None, None).await;
    let c = s.client(|cfg| cfg.policy.pow_max_secs = 5.0);
    let err = c.rpc(&s.url, &call_msg()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Refused(ref m) if m.contains("CPU-time cap")),
        "{err}"
    );
    assert!(budget::read_log(&s.dir).unwrap().is_empty());
}

#[tokio::test]
async fn wallet_error_leaves_no_spend() {
    let s = setup(Delivery::Http, None, Some(2_000), None).await;
    let c = s.client(|cfg| cfg.wallet = Some(s.lnd(&"00".repeat(32))));
    let err = c.rpc(&s.url, &call_msg()).await.unwrap_err();
    match &err {
        ClientError::Wallet(w) => assert!(!w.may_have_paid(), "{w}"),
        other => panic!("{other}"),
    }
    let log = budget::read_log(&s.dir).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, "failed");
    let spent = budget::spent(&log, &s.url, unix_now());
    assert_eq!(spent, budget::Spent::default());
    assert!(!s.any_paid().await);
    // Nothing kept either.
    let creds = turnpike_client::store::Credentials::load(&s.dir).unwrap();
    assert!(creds.l402.is_empty());
}

#[tokio::test]
async fn policy_chooses_between_solving_and_paying() {
    // Both offered, the puzzle is quick: solve, pay nothing.
    let s = setup(Delivery::Http, Some(20_000), Some(2_000), None).await;
    let c = s.client(|_| {});
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    assert!(!s.any_paid().await);
    // The puzzle expected to take longer than solve_under: pay instead.
    let c = s.client(|cfg| cfg.policy.solve_under_secs = 0.000_001);
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    assert!(s.any_paid().await);
    // Preference for proof-of-work even when paying is possible.
    let c = s.client(|cfg| {
        cfg.policy = Policy {
            prefer: Some(Rail::Pow),
            solve_under_secs: 0.0,
            ..Policy::default()
        }
    });
    let before = budget::read_log(&s.dir).unwrap().len();
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    let log = budget::read_log(&s.dir).unwrap();
    assert_eq!(log.len(), before + 1);
    assert_eq!(log.last().unwrap().rail, "pow");
}

#[cfg(unix)]
#[tokio::test]
async fn state_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup(Delivery::Http, None, Some(1_000), None).await;
    let c = s.client(|_| {});
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.dir), 0o700);
    assert_eq!(mode(&s.dir.join("spend.jsonl")), 0o600);
    // A credentials file others can read is refused.
    let creds = s.dir.join("credentials.json");
    std::fs::write(&creds, "{}").unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        turnpike_client::store::Credentials::load(&s.dir),
        Err(ClientError::State(_))
    ));
    // So is a state directory others can enter.
    std::fs::remove_file(&creds).unwrap();
    std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Client::new(ClientConfig::new(s.dir.clone())).unwrap_err();
    assert!(
        matches!(err, ClientError::State(ref m) if m.contains("other users")),
        "{err}"
    );
}

/// Spend-log entries as (rail, status).
fn rails(dir: &std::path::Path) -> Vec<(String, String)> {
    budget::read_log(dir)
        .unwrap()
        .into_iter()
        .map(|e| (e.rail, e.status))
        .collect()
}

fn pair(rail: &str, status: &str) -> (String, String) {
    (rail.to_string(), status.to_string())
}

#[tokio::test]
async fn a_refused_invoice_falls_back_to_the_offered_puzzle() {
    // Both rails offered; the 20-sat invoice is over the rail policy's 10 sat.
    for delivery in [Delivery::Http, Delivery::InBandJson] {
        let s = setup(delivery, Some(20_000), Some(20_000), None).await;
        // L402 first by preference: refused over --max-pay, then solved.
        let c = s.client(|cfg| cfg.policy.prefer = Some(Rail::L402));
        assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
        // The default order with a puzzle slower than solve_under: L402 is tried before the
        // puzzle, refused, and the puzzle solved anyway (up to the CPU-time cap).
        let c = s.client(|cfg| cfg.policy.solve_under_secs = 0.0);
        assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
        assert_eq!(
            rails(&s.dir),
            vec![pair("pow", "solved"), pair("pow", "solved")]
        );
        assert!(!s.any_paid().await);
        assert_eq!(s.server.passed.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn every_refusal_of_l402_falls_back_to_the_puzzle() {
    // Over a budget (a 2-sat invoice, a 1-sat daily budget).
    let s = setup(Delivery::Http, Some(20_000), Some(2_000), None).await;
    let c = s.client(|cfg| {
        cfg.policy.prefer = Some(Rail::L402);
        cfg.budgets.per_day_sat = Some(1);
    });
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    assert_eq!(rails(&s.dir), vec![pair("pow", "solved")]);
    assert!(!s.any_paid().await);

    // A wallet that fails: its failure is logged (nothing counted), then the puzzle is solved.
    let s = setup(Delivery::Http, Some(20_000), Some(2_000), None).await;
    let c = s.client(|cfg| {
        cfg.policy.prefer = Some(Rail::L402);
        cfg.wallet = Some(s.lnd(&"00".repeat(32)));
    });
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    assert_eq!(
        rails(&s.dir),
        vec![pair("l402", "failed"), pair("pow", "solved")]
    );
    assert!(!s.any_paid().await);

    // An invoice above the advertised price.
    let s = setup(Delivery::InBandJson, Some(20_000), Some(2_000), Some(1_000)).await;
    let c = s.client(|cfg| cfg.policy.prefer = Some(Rail::L402));
    assert_ok(&c.rpc(&s.url, &call_msg()).await.unwrap());
    assert_eq!(rails(&s.dir), vec![pair("pow", "solved")]);
    assert!(!s.any_paid().await);
}

#[tokio::test]
async fn with_no_rail_left_every_reason_is_given() {
    // An absurd puzzle and an invoice over --max-pay: nothing is attempted, and the error names
    // both reasons.
    let s = setup(Delivery::Http, Some(10_000_000_000_000), Some(20_000), None).await;
    let c = s.client(|cfg| cfg.policy.pow_max_secs = 5.0);
    let err = c.rpc(&s.url, &call_msg()).await.unwrap_err();
    let ClientError::Refused(m) = &err else {
        panic!("{err}");
    };
    assert!(m.contains("L402: over budget"), "{m}");
    assert!(m.contains("pays at most 10 sat"), "{m}");
    assert!(
        m.contains("proof-of-work:") && m.contains("CPU-time cap"),
        "{m}"
    );
    assert!(budget::read_log(&s.dir).unwrap().is_empty());
    assert!(!s.any_paid().await);
}
