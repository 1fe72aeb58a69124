//! The L402 rail end to end against the dev Lightning backend: challenge, payment, credential
//! parsing, verification verdicts, billing modes, settlement confirmation, failing closed.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use turnpike_core::credential::split_scheme;
use turnpike_core::{
    decide, BoxFuture, CallFacts, Credential, Decision, Identity, Offer, Price, Rail, Verdict,
};
use turnpike_l402::store::{DownStore, L402Store, LedgerKind};
use turnpike_l402::BillingMode;
use turnpike_l402::{
    parse_authorization, parse_macaroon_header, parse_meta, ConfirmSettlement, Durability,
    L402Config, L402Rail, L402Settings, Macaroon, MemoryStore, SqliteStore, StoreConfig,
};
use turnpike_lightning::dev::DevBackend;
use turnpike_lightning::{Invoice, InvoiceState, LightningBackend, LightningError};
use turnpike_store::MemorySpentSet;

const NOW: u64 = 1_800_000_000;

fn call(tool: &str, now: u64) -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some(tool.into()),
        args_hash: [0; 32],
        caller: None,
        peer: None,
        now,
    }
}

fn per_call(msat: u64) -> Offer {
    turnpike_l402::offer(msat, BillingMode::PerCall, 0)
}

/// The dev backend, with call counters and a switch that makes every call fail.
struct Flaky {
    dev: DevBackend,
    custodial: bool,
    down: AtomicBool,
    lookups: AtomicUsize,
}

impl Flaky {
    fn new(custodial: bool) -> Arc<Self> {
        Arc::new(Flaky {
            dev: DevBackend::regtest(),
            custodial,
            down: AtomicBool::new(false),
            lookups: AtomicUsize::new(0),
        })
    }
}

impl LightningBackend for Flaky {
    fn name(&self) -> &'static str {
        "flaky-dev"
    }
    fn is_custodial(&self) -> bool {
        self.custodial
    }
    fn create_invoice<'a>(
        &'a self,
        amount_msat: u64,
        memo: &'a str,
        expiry_secs: u64,
    ) -> BoxFuture<'a, Result<Invoice, LightningError>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(LightningError::Timeout) });
        }
        self.dev.create_invoice(amount_msat, memo, expiry_secs)
    }
    fn lookup_invoice<'a>(
        &'a self,
        payment_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<InvoiceState, LightningError>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err(LightningError::Unreachable("down".into())) });
        }
        self.dev.lookup_invoice(payment_hash)
    }
}

struct Setup {
    rail: L402Rail,
    backend: Arc<Flaky>,
    store: Arc<dyn L402Store>,
}

fn setup_with(custodial: bool, store: Arc<dyn L402Store>, cfg: L402Config) -> Setup {
    let backend = Flaky::new(custodial);
    let rail = L402Rail::new(
        cfg,
        backend.clone(),
        store.clone(),
        Arc::new(MemorySpentSet::new()),
    );
    Setup {
        rail,
        backend,
        store,
    }
}

fn setup() -> Setup {
    setup_with(false, Arc::new(MemoryStore::new()), L402Config::default())
}

/// Gets a challenge, pays its invoice with the dev wallet, and returns the `Authorization`
/// header value an L402 client would send, plus the challenge.
async fn buy(s: &Setup, c: &CallFacts, offer: &Offer) -> (String, turnpike_core::Challenge) {
    let ch = s.rail.challenge(c, offer).await.expect("challenge");
    let mac = ch.details["macaroon"].as_str().unwrap().to_string();
    let invoice = ch.details["invoice"].as_str().unwrap().to_string();
    let preimage = s.backend.dev.pay(&invoice).unwrap();
    (format!("L402 {mac}:{}", hex::encode(preimage)), ch)
}

fn cred(header: &str) -> Credential {
    let (scheme, params) = split_scheme(header);
    parse_authorization(scheme, params).unwrap().unwrap()
}

fn verdict_kind(v: &Verdict) -> &'static str {
    match v {
        Verdict::Pass(_) => "pass",
        Verdict::Stale(_) => "stale",
        Verdict::Invalid(_) => "invalid",
        Verdict::Unavailable(_) => "unavailable",
    }
}

fn reason(v: &Verdict) -> String {
    match v {
        Verdict::Pass(_) => "pass".into(),
        Verdict::Stale(r) | Verdict::Invalid(r) | Verdict::Unavailable(r) => r.reason.clone(),
    }
}

#[tokio::test]
async fn challenge_shape() {
    let s = setup();
    let c = call("echo", NOW);
    let ch = s.rail.challenge(&c, &per_call(21_000)).await.unwrap();
    assert_eq!(ch.rail, turnpike_l402::RAIL);
    let d = &ch.details;
    assert_eq!(d["rail"], "l402");
    assert_eq!(d["scheme"], "L402");
    assert_eq!(d["amount_msat"], 21_000);
    assert_eq!(d["mode"], "per_call");
    assert_eq!(d["expires"], NOW + 86_400);
    let mac = d["macaroon"].as_str().unwrap();
    let inv = d["invoice"].as_str().unwrap();
    assert!(inv.starts_with("lnbcrt210n1"), "{inv}");
    assert_eq!(
        ch.www_authenticate,
        format!("L402 macaroon=\"{mac}\", invoice=\"{inv}\"")
    );
    assert_eq!(d["www_authenticate"], ch.www_authenticate);
    assert!(mac.len() % 4 == 0, "padded standard base64");
    assert!(!mac.contains(['-', '_']));
    let m = Macaroon::from_base64(mac, Default::default()).unwrap();
    assert_eq!(m.identifier().len(), 66);
    let caveats: Vec<String> = m
        .caveats()
        .iter()
        .map(|c| String::from_utf8(c.id.clone()).unwrap())
        .collect();
    assert_eq!(
        caveats,
        vec![
            "turnpike/resource=/mcp".to_string(),
            "turnpike/methods=tools/call".into(),
            "turnpike/tools=echo".into(),
            "turnpike/mode=per_call".into(),
            format!("turnpike/expires={}", NOW + 86_400),
            "turnpike/amount_msat=21000".into(),
        ]
    );
    // Offering the token wrote nothing: no row, no ledger entry.
    let id = turnpike_l402::Identifier::decode(m.identifier()).unwrap();
    assert!(s.store.entries(id.token_id).await.unwrap().is_empty());
    assert_eq!(s.store.token(id.token_id).await.unwrap(), None);
    assert!(s.store.root_key(id.token_id).await.unwrap().is_none());
    assert!(s.store.recent(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn per_call_is_single_use() {
    let s = setup();
    let c = call("echo", NOW);
    let offer = per_call(1000);
    let (header, _) = buy(&s, &c, &offer).await;
    // Offered (and even paid at the node), a token is no payment until it comes back.
    let _offered_only = s.rail.challenge(&c, &offer).await.expect("challenge");
    assert_eq!(s.rail.payments(), (0, 0));
    let v = s.rail.verify(&c, &offer, &cred(&header)).await;
    let Verdict::Pass(grant) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(
        s.rail.payments(),
        (1, 1000),
        "the payment, counted at first use"
    );
    assert_eq!(grant.rail, turnpike_l402::RAIL);
    assert!(matches!(&grant.identity, Some(Identity::L402 { token_id }) if token_id.len() == 64));
    let again = s.rail.verify(&c, &offer, &cred(&header)).await;
    assert_eq!(verdict_kind(&again), "stale");
    assert_eq!(reason(&again), "token already used");
    assert_eq!(s.rail.payments(), (1, 1000), "a replay is no payment");
    // LSAT, lower case, token= forms are one and the same credential.
    let lsat = header.replacen("L402 ", "lsat token=", 1);
    assert_eq!(
        reason(&s.rail.verify(&c, &offer, &cred(&lsat)).await),
        "token already used"
    );
}

/// A per-call token whose call the upstream refused before serving it is released: it passes
/// once more (one of several concurrent retries), then is spent again; settling a served call
/// releases nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_per_call_token_passes_once_more() {
    let s = setup();
    let c = call("echo", NOW);
    let offer = per_call(1000);
    let (header, _) = buy(&s, &c, &offer).await;
    let Verdict::Pass(grant) = s.rail.verify(&c, &offer, &cred(&header)).await else {
        panic!("first use passes")
    };
    // In flight: a replay is refused.
    assert_eq!(
        reason(&s.rail.verify(&c, &offer, &cred(&header)).await),
        "token already used"
    );
    s.rail.settle(&grant, false).await;
    s.rail.release(&grant).await;
    let rail = Arc::new(s.rail);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let rail = rail.clone();
            let (c, offer, cr) = (c.clone(), offer.clone(), cred(&header));
            tokio::spawn(async move { rail.verify(&c, &offer, &cr).await })
        })
        .collect();
    let mut passed = Vec::new();
    for t in tasks {
        if let Verdict::Pass(g) = t.await.unwrap() {
            passed.push(g);
        }
    }
    assert_eq!(passed.len(), 1, "one retry passes");
    assert_eq!(passed[0], grant, "the same grant, for the same token");
    // That call was served: nothing is released, the token stays spent.
    rail.settle(&passed[0], true).await;
    assert_eq!(
        reason(&rail.verify(&c, &offer, &cred(&header)).await),
        "token already used"
    );
}

#[tokio::test]
async fn verdicts_for_bad_credentials() {
    let s = setup();
    let c = call("echo", NOW);
    let offer = per_call(1000);
    let (header, ch) = buy(&s, &c, &offer).await;
    let Some(turnpike_l402::L402Credential { macaroon, preimage }) = cred(&header)
        .payload::<turnpike_l402::L402Credential>()
        .cloned()
    else {
        unreachable!()
    };
    let mac = Macaroon::decode(&macaroon, Default::default()).unwrap();

    // Wrong preimage: 401.
    let mut wrong = preimage.clone();
    wrong[0] ^= 1;
    let v = s
        .rail
        .verify(
            &c,
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: macaroon.clone(),
                preimage: wrong,
            }),
        )
        .await;
    assert_eq!(verdict_kind(&v), "invalid");
    assert_eq!(reason(&v), "preimage does not match the payment hash");

    // Forged: same identifier, signed with another root key.
    let mut forged = Macaroon::new(&[0x42; 32], mac.identifier().to_vec(), "turnpike");
    for cav in mac.caveats() {
        forged.add_first_party_caveat(cav.id.clone());
    }
    let v = s
        .rail
        .verify(
            &c,
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: forged.encode(),
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(reason(&v), "macaroon signature does not verify");

    // A caveat removed (the chain breaks).
    let mut stripped = Macaroon::new(&[0; 32], mac.identifier().to_vec(), "turnpike");
    stripped.add_first_party_caveat("turnpike/mode=per_call");
    let mut bytes = stripped.encode();
    let n = bytes.len();
    bytes[n - 32..].copy_from_slice(mac.signature());
    let v = s
        .rail
        .verify(
            &c,
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: bytes,
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(verdict_kind(&v), "invalid");

    // An unknown caveat added by the holder: the chain holds, the caveat refuses.
    let mut extra = mac.clone();
    extra.add_first_party_caveat("turnpike/admin=true");
    let v = s
        .rail
        .verify(
            &c,
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: extra.encode(),
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(verdict_kind(&v), "invalid");
    assert!(reason(&v).contains("unsupported caveat"), "{}", reason(&v));

    // Another tool: genuine but for another call.
    let v = s
        .rail
        .verify(
            &call("add", NOW),
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: macaroon.clone(),
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(verdict_kind(&v), "stale");
    assert_eq!(reason(&v), "token is not valid for this tool");

    // Expired.
    let v = s
        .rail
        .verify(
            &call("echo", NOW + 86_400),
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: macaroon.clone(),
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(reason(&v), "token expired");

    // A dearer offer than what was paid.
    let v = s
        .rail
        .verify(
            &c,
            &per_call(5000),
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: macaroon.clone(),
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(reason(&v), "token paid less than this call costs");

    // Another billing mode.
    let v = s
        .rail
        .verify(
            &c,
            &turnpike_l402::offer(1000, BillingMode::Balance, 5000),
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: macaroon.clone(),
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(verdict_kind(&v), "stale");

    // A token this gateway never issued (fresh store).
    let other = setup();
    let v = other
        .rail
        .verify(
            &c,
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: macaroon.clone(),
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(reason(&v), "macaroon signature does not verify");

    // Garbage.
    let v = s
        .rail
        .verify(
            &c,
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: vec![2, 0],
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(verdict_kind(&v), "invalid");

    // A holder-narrowed token (an extra tools caveat naming the same tool) still passes, once.
    let mut narrowed = mac.clone();
    narrowed.add_first_party_caveat("turnpike/tools=echo,add");
    let v = s
        .rail
        .verify(
            &c,
            &offer,
            &Credential::from(turnpike_l402::L402Credential {
                macaroon: narrowed.encode(),
                preimage: preimage.clone(),
            }),
        )
        .await;
    assert_eq!(verdict_kind(&v), "pass");
    let _ = ch;
}

#[tokio::test]
async fn macaroon_header_and_meta_forms_verify() {
    let s = setup();
    let c = call("echo", NOW);
    let offer = per_call(1000);
    let (header, ch) = buy(&s, &c, &offer).await;
    let Some(turnpike_l402::L402Credential { preimage, .. }) = cred(&header)
        .payload::<turnpike_l402::L402Credential>()
        .cloned()
    else {
        unreachable!()
    };
    // Aperture's header form: the preimage as a caveat, the macaroon in hex.
    let mut m = Macaroon::from_base64(ch.details["macaroon"].as_str().unwrap(), Default::default())
        .unwrap();
    m.add_first_party_caveat(format!("preimage={}", hex::encode(&preimage)));
    let c1 = parse_macaroon_header(&hex::encode(m.encode())).unwrap();
    assert_eq!(verdict_kind(&s.rail.verify(&c, &offer, &c1).await), "pass");

    let (_, ch2) = buy(&s, &c, &offer).await;
    let inv = ch2.details["invoice"].as_str().unwrap();
    let pre2 = s.backend.dev.pay(inv).unwrap();
    let meta = serde_json::json!({
        "macaroon": ch2.details["macaroon"],
        "preimage": hex::encode(pre2),
    });
    let c2 = parse_meta(&meta).unwrap();
    assert_eq!(verdict_kind(&s.rail.verify(&c, &offer, &c2).await), "pass");
}

async fn balance_mode(store: Arc<dyn L402Store>) {
    let s = setup_with(false, store, L402Config::default());
    let offer = turnpike_l402::offer(1000, BillingMode::Balance, 3000);
    let c = call("echo", NOW);
    let (header, ch) = buy(&s, &c, &offer).await;
    assert_eq!(ch.details["amount_msat"], 3000);
    assert_eq!(ch.details["mode"], "balance");
    let credential = cred(&header);
    let mut grants = Vec::new();
    for tool in ["echo", "add", "echo"] {
        match s.rail.verify(&call(tool, NOW), &offer, &credential).await {
            Verdict::Pass(g) => grants.push(g),
            v => panic!("{v:?}"),
        }
    }
    let v = s.rail.verify(&c, &offer, &credential).await;
    assert_eq!(reason(&v), "balance used up");
    // The bundle was received once, at the first use; the debits are no payments.
    assert_eq!(s.rail.payments(), (1, 3000));
    // The upstream failed for the last call: its debit comes back, once.
    s.rail.settle(&grants[2], false).await;
    s.rail.settle(&grants[2], false).await;
    s.rail.settle(&grants[1], true).await;
    assert_eq!(
        verdict_kind(&s.rail.verify(&c, &offer, &credential).await),
        "pass"
    );
    assert_eq!(
        reason(&s.rail.verify(&c, &offer, &credential).await),
        "balance used up"
    );
    let Verdict::Stale(_) = s.rail.verify(&c, &offer, &credential).await else {
        panic!()
    };
    // A holder-lowered credit caveat caps what that copy may spend.
    let (header2, _) = buy(&s, &c, &offer).await;
    let Some(turnpike_l402::L402Credential { macaroon, preimage }) = cred(&header2)
        .payload::<turnpike_l402::L402Credential>()
        .cloned()
    else {
        unreachable!()
    };
    let mut m = Macaroon::decode(&macaroon, Default::default()).unwrap();
    m.add_first_party_caveat("turnpike/credit_msat=1500");
    let capped = Credential::from(turnpike_l402::L402Credential {
        macaroon: m.encode(),
        preimage,
    });
    assert_eq!(
        verdict_kind(&s.rail.verify(&c, &offer, &capped).await),
        "pass"
    );
    assert_eq!(
        reason(&s.rail.verify(&c, &offer, &capped).await),
        "balance used up"
    );
    // The ledger of the first token.
    let m1 = Macaroon::from_base64(ch.details["macaroon"].as_str().unwrap(), Default::default())
        .unwrap();
    let id = turnpike_l402::Identifier::decode(m1.identifier()).unwrap();
    let kinds: Vec<LedgerKind> = s
        .store
        .entries(id.token_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    use LedgerKind::*;
    assert_eq!(kinds, vec![Payment, Debit, Debit, Debit, Refund, Debit]);
}

#[tokio::test]
async fn balance_mode_in_memory() {
    balance_mode(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn balance_mode_in_sqlite() {
    balance_mode(Arc::new(SqliteStore::open_in_memory().unwrap())).await;
}

#[tokio::test]
async fn time_pass_until_expiry() {
    let s = setup();
    let offer = turnpike_l402::offer(50_000, BillingMode::TimePass, 600);
    let c = call("echo", NOW);
    let (header, ch) = buy(&s, &c, &offer).await;
    assert_eq!(ch.details["expires"], NOW + 600);
    let credential = cred(&header);
    for t in [NOW, NOW + 1, NOW + 599] {
        assert_eq!(
            verdict_kind(&s.rail.verify(&call("echo", t), &offer, &credential).await),
            "pass"
        );
    }
    assert_eq!(
        reason(
            &s.rail
                .verify(&call("echo", NOW + 600), &offer, &credential)
                .await
        ),
        "token expired"
    );
    assert_eq!(
        reason(&s.rail.verify(&call("add", NOW), &offer, &credential).await),
        "token is not valid for this tool"
    );
}

#[tokio::test]
async fn custodial_backends_confirm_once_per_token() {
    let s = setup_with(true, Arc::new(MemoryStore::new()), L402Config::default());
    let c = call("echo", NOW);
    let offer = turnpike_l402::offer(1000, BillingMode::TimePass, 3600);
    let ch = s.rail.challenge(&c, &offer).await.unwrap();
    let mac = ch.details["macaroon"].as_str().unwrap();
    let m = Macaroon::from_base64(mac, Default::default()).unwrap();
    let id = turnpike_l402::Identifier::decode(m.identifier()).unwrap();
    // The preimage, known without the invoice having been paid (what a custodian could do).
    let preimage = s.backend.dev.preimage_of(&id.payment_hash).unwrap();
    let credential = cred(&format!("L402 {mac}:{}", hex::encode(preimage)));
    let v = s.rail.verify(&c, &offer, &credential).await;
    assert_eq!(reason(&v), "invoice is not paid");
    assert_eq!(s.backend.lookups.load(Ordering::SeqCst), 1);
    s.backend
        .dev
        .pay(ch.details["invoice"].as_str().unwrap())
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            verdict_kind(&s.rail.verify(&c, &offer, &credential).await),
            "pass"
        );
    }
    assert_eq!(
        s.backend.lookups.load(Ordering::SeqCst),
        2,
        "settlement is confirmed once, then cached"
    );
    // A non-custodial backend is not asked at all by default.
    let n = setup();
    let (h, _) = buy(&n, &c, &offer).await;
    assert_eq!(
        verdict_kind(&n.rail.verify(&c, &offer, &cred(&h)).await),
        "pass"
    );
    assert_eq!(n.backend.lookups.load(Ordering::SeqCst), 0);
    // ... unless configured to.
    let always = setup_with(
        false,
        Arc::new(MemoryStore::new()),
        L402Config {
            confirm_settlement: ConfirmSettlement::Always,
            ..L402Config::default()
        },
    );
    let (h, _) = buy(&always, &c, &offer).await;
    assert_eq!(
        verdict_kind(&always.rail.verify(&c, &offer, &cred(&h)).await),
        "pass"
    );
    assert_eq!(always.backend.lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fails_closed() {
    // Backend down: no challenge; with a custodial backend, an unconfirmed token is unavailable.
    let s = setup_with(true, Arc::new(MemoryStore::new()), L402Config::default());
    let c = call("echo", NOW);
    let offer = per_call(1000);
    let (header, _) = buy(&s, &c, &offer).await;
    s.backend.down.store(true, Ordering::SeqCst);
    assert!(s.rail.challenge(&c, &offer).await.is_none());
    let v = s.rail.verify(&c, &offer, &cred(&header)).await;
    assert_eq!(verdict_kind(&v), "unavailable");
    s.backend.down.store(false, Ordering::SeqCst);
    assert_eq!(
        verdict_kind(&s.rail.verify(&c, &offer, &cred(&header)).await),
        "pass"
    );

    // Store down: no challenge, and verification is unavailable (after the checks that need no
    // state).
    let good = setup();
    let (header, _) = buy(&good, &c, &offer).await;
    let down = setup_with(false, Arc::new(DownStore), L402Config::default());
    assert!(down.rail.challenge(&c, &offer).await.is_none());
    assert_eq!(
        verdict_kind(&down.rail.verify(&c, &offer, &cred(&header)).await),
        "unavailable"
    );

    // Through the decision engine: nothing offerable is 503, a forged credential is 401.
    let rails: Vec<Arc<dyn Rail>> = vec![Arc::new(down.rail)];
    let price = Price::of(vec![offer.clone()]);
    assert!(matches!(
        decide(&rails, &c, &price, &[]).await,
        Decision::Unavailable { .. }
    ));
}

#[tokio::test]
async fn through_the_decision_engine() {
    let s = setup();
    let c = call("echo", NOW);
    let offer = per_call(1000);
    let (header, _) = buy(&s, &c, &offer).await;
    let store = s.store.clone();
    let backend = s.backend.clone();
    let rails: Vec<Arc<dyn Rail>> = vec![Arc::new(s.rail)];
    let price = Price::of(vec![offer.clone()]);
    match decide(&rails, &c, &price, &[]).await {
        Decision::Challenge { challenges, .. } => {
            assert_eq!(challenges.len(), 1);
            assert!(challenges[0]
                .www_authenticate
                .starts_with("L402 macaroon=\""));
        }
        d => panic!("{d:?}"),
    }
    assert!(matches!(
        decide(&rails, &c, &price, &[cred(&header)]).await,
        Decision::Pass(_)
    ));
    match decide(&rails, &c, &price, &[cred(&header)]).await {
        Decision::Challenge { refusals, .. } => {
            assert_eq!(refusals[0].reason, "token already used")
        }
        d => panic!("{d:?}"),
    }
    let Some(turnpike_l402::L402Credential { macaroon, .. }) = cred(&header)
        .payload::<turnpike_l402::L402Credential>()
        .cloned()
    else {
        unreachable!()
    };
    let forged = Credential::from(turnpike_l402::L402Credential {
        macaroon,
        preimage: vec![0; 32],
    });
    assert!(matches!(
        decide(&rails, &c, &price, &[forged]).await,
        Decision::Invalid { .. }
    ));
    let _ = (store, backend);
}

#[tokio::test]
async fn per_call_single_use_survives_restart() {
    let dir = std::env::temp_dir().join(format!(
        "turnpike-l402-restart-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l402.sqlite");
    let c = call("echo", NOW);
    let offer = per_call(1000);
    let header = {
        let s = setup_with(
            false,
            Arc::new(SqliteStore::open(&path, Durability::Normal).unwrap()),
            L402Config::default(),
        );
        let (header, _) = buy(&s, &c, &offer).await;
        assert_eq!(
            verdict_kind(&s.rail.verify(&c, &offer, &cred(&header)).await),
            "pass"
        );
        header
    };
    // A new process: new rail, new (empty) spent set, same database.
    let s = setup_with(
        false,
        Arc::new(SqliteStore::open(&path, Durability::Normal).unwrap()),
        L402Config::default(),
    );
    assert_eq!(
        reason(&s.rail.verify(&c, &offer, &cred(&header)).await),
        "token already used"
    );
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn settings_from_toml() {
    let s: L402Settings = toml::from_str(
        r#"
invoice_expiry_secs = 300
memo = "my server"
confirm_settlement = "always"
[backend]
kind = "lnd"
url = "https://127.0.0.1:8080"
macaroon_hex = "0201036c6e64"
tls_cert_path = "/var/lib/lnd/tls.cert"
timeout_secs = 5
[store]
kind = "sqlite"
path = "l402.sqlite"
"#,
    )
    .unwrap();
    assert_eq!(s.rail.invoice_expiry_secs, 300);
    assert_eq!(s.rail.token_ttl_secs, 86_400, "defaults fill the rest");
    assert_eq!(s.rail.confirm_settlement, ConfirmSettlement::Always);
    assert!(
        matches!(s.backend, turnpike_lightning::BackendConfig::Lnd(ref l) if l.http.timeout_secs == 5)
    );
    assert!(matches!(s.store, StoreConfig::Sqlite { .. }));

    // Built for real with the dev backend and a SQLite file under the data directory.
    let dev: L402Settings = toml::from_str(
        r#"
[backend]
kind = "dev"
"#,
    )
    .unwrap();
    assert_eq!(dev.store, StoreConfig::default());
    let dir = std::env::temp_dir().join(format!("turnpike-l402-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rail = L402Rail::from_settings(&dev, &dir, Arc::new(MemorySpentSet::new())).unwrap();
    assert_eq!(rail.backend().name(), "dev");
    let ch = rail
        .challenge(&call("echo", NOW), &per_call(1000))
        .await
        .unwrap();
    assert!(ch.www_authenticate.starts_with("L402 macaroon="));
    assert!(dir.join("l402.sqlite").exists());
    drop(rail);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(toml::from_str::<L402Settings>("[backend]\nkind = \"nope\"\n").is_err());
}
