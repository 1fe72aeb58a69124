//! Tokens minted without state: a 402 writes nothing (SQLite and PostgreSQL, every table
//! counted), the first paid use writes the token, its payment row and its balance once, a
//! token minted by one instance verifies on another sharing the PostgreSQL store, tokens with a
//! stored root key (minted before keys were derived) still verify, and invoices are bounded
//! per caller and in all.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use turnpike_core::credential::split_scheme;
use turnpike_core::{CallFacts, Credential, Offer, Rail, Verdict};
use turnpike_l402::store::{L402Store, LedgerKind, TokenRecord};
use turnpike_l402::BillingMode;
use turnpike_l402::{
    parse_authorization, Durability, Identifier, L402Config, L402Rail, Macaroon, PostgresOptions,
    PostgresStore, SqliteStore,
};
use turnpike_lightning::dev::DevBackend;
use turnpike_lightning::LightningBackend;
use turnpike_store::MemorySpentSet;
use zeroize::Zeroizing;

const NOW: u64 = 1_800_000_000;

fn call_from(tool: &str, now: u64, peer: IpAddr) -> CallFacts {
    CallFacts {
        resource: "/mcp".into(),
        method: "tools/call".into(),
        name: Some(tool.into()),
        args_hash: [0; 32],
        caller: None,
        peer: Some(peer),
        now,
    }
}

fn call(tool: &str, now: u64) -> CallFacts {
    call_from(tool, now, IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn loopback(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + 1 + i))
}

fn per_call(msat: u64) -> Offer {
    turnpike_l402::offer(msat, BillingMode::PerCall, 0)
}

fn balance(msat: u64, bundle: u64) -> Offer {
    turnpike_l402::offer(msat, BillingMode::Balance, bundle)
}

fn rail(backend: Arc<DevBackend>, store: Arc<dyn L402Store>, cfg: L402Config) -> L402Rail {
    L402Rail::new(cfg, backend, store, Arc::new(MemorySpentSet::new()))
}

/// A challenge, paid with the dev wallet: the credential and the macaroon.
async fn buy(
    rail: &L402Rail,
    dev: &DevBackend,
    c: &CallFacts,
    offer: &Offer,
) -> (Credential, Macaroon) {
    let ch = rail.challenge(c, offer).await.expect("challenge");
    let mac = ch.details["macaroon"].as_str().unwrap().to_string();
    let pre = dev.pay(ch.details["invoice"].as_str().unwrap()).unwrap();
    let header = format!("L402 {mac}:{}", hex::encode(pre));
    let (scheme, params) = split_scheme(&header);
    let cred = parse_authorization(scheme, params).unwrap().unwrap();
    (
        cred,
        Macaroon::from_base64(&mac, Default::default()).unwrap(),
    )
}

fn kind(v: &Verdict) -> &'static str {
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

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "turnpike-l402-{tag}-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Rows in every table of a SQLite database, by table.
fn sqlite_counts(path: &std::path::Path) -> Vec<(String, i64)> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let names: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(names.len() >= 6, "{names:?}");
    names
        .into_iter()
        .map(|n| {
            let k: i64 = c
                .query_row(&format!("SELECT count(*) FROM \"{n}\""), [], |r| r.get(0))
                .unwrap();
            (n, k)
        })
        .collect()
}

fn count_of(counts: &[(String, i64)], table: &str) -> i64 {
    counts.iter().find(|(n, _)| n == table).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_402s_write_nothing_in_sqlite_and_the_first_paid_use_writes_once() {
    let dir = temp_dir("flood");
    let path = dir.join("l402.sqlite");
    let store: Arc<dyn L402Store> = Arc::new(SqliteStore::open(&path, Durability::Normal).unwrap());
    let dev = Arc::new(DevBackend::regtest());
    // The invoice bounds are not what this test is about: room for the 2,000 challenges below
    // and the ones bought after them from 127.0.0.1 (with 100 per caller, 127.0.0.1's bucket
    // was empty after the flood unless the flood took long enough for it to refill).
    let cfg = L402Config {
        invoices_per_minute_per_caller: 10_000,
        invoices_per_minute: 100_000,
        ..L402Config::default()
    };
    let r = rail(dev.clone(), store.clone(), cfg);
    let before = sqlite_counts(&path);
    // 2,000 challenges from 20 loopback addresses, per call and balance.
    let mut offered = 0;
    for i in 0..2_000u32 {
        let c = call_from("echo", NOW, loopback(i % 20));
        let offer = if i % 2 == 0 {
            per_call(1000)
        } else {
            balance(1000, 5000)
        };
        if r.challenge(&c, &offer).await.is_some() {
            offered += 1;
        }
    }
    assert_eq!(offered, 2_000);
    assert_eq!(sqlite_counts(&path), before, "a 402 writes nothing");

    // Paid and used: one token row, one payment row, once.
    let c = call("echo", NOW);
    let offer = per_call(1000);
    let (cred, mac) = buy(&r, &dev, &c, &offer).await;
    assert_eq!(sqlite_counts(&path), before);
    assert_eq!(kind(&r.verify(&c, &offer, &cred).await), "pass");
    let after = sqlite_counts(&path);
    assert_eq!(
        count_of(&after, "l402_tokens"),
        count_of(&before, "l402_tokens") + 1
    );
    assert_eq!(
        count_of(&after, "l402_ledger"),
        count_of(&before, "l402_ledger") + 1
    );
    assert_eq!(
        count_of(&after, "l402_balances"),
        count_of(&before, "l402_balances")
    );
    assert_eq!(
        count_of(&after, "l402_root_keys"),
        0,
        "no root key is stored"
    );
    let id = Identifier::decode(mac.identifier()).unwrap();
    let rows = store.entries(id.token_id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kind, LedgerKind::Payment);
    assert_eq!(rows[0].amount_msat, 1000);
    assert_eq!(rows[0].reference, Some(hex::encode(id.payment_hash)));
    let rec = store.token(id.token_id).await.unwrap().unwrap();
    assert_eq!(rec.paid_at, Some(NOW));
    assert_eq!(rec.mode, BillingMode::PerCall);
    assert_eq!(rec.amount_msat, 1000);
    assert_eq!(rec.expires_at, NOW + 86_400);
    // Replay: refused, nothing more written (also by a fresh process with an empty spent set).
    assert_eq!(
        reason(&r.verify(&c, &offer, &cred).await),
        "token already used"
    );
    let fresh = rail(
        dev.clone(),
        Arc::new(SqliteStore::open(&path, Durability::Normal).unwrap()),
        L402Config::default(),
    );
    assert_eq!(
        reason(&fresh.verify(&c, &offer, &cred).await),
        "token already used"
    );
    assert_eq!(sqlite_counts(&path), after);

    // Forgeries: another preimage, an edited caveat, a made-up token: refused, nothing written.
    let (cred2, mac2) = buy(&r, &dev, &c, &offer).await;
    let Some(turnpike_l402::L402Credential { macaroon, .. }) =
        cred2.payload::<turnpike_l402::L402Credential>()
    else {
        unreachable!()
    };
    let wrong_preimage = Credential::from(turnpike_l402::L402Credential {
        macaroon: macaroon.clone(),
        preimage: vec![7; 32],
    });
    assert_eq!(
        kind(&r.verify(&c, &offer, &wrong_preimage).await),
        "invalid"
    );
    let Some(turnpike_l402::L402Credential { preimage, .. }) =
        cred2.payload::<turnpike_l402::L402Credential>()
    else {
        unreachable!()
    };
    let raised = {
        // The same identifier and caveats, but claiming to have paid more: the chain breaks.
        let mut m = Macaroon::new(&[0u8; 32], mac2.identifier().to_vec(), "turnpike");
        for cav in mac2.caveats() {
            let text = String::from_utf8(cav.id.clone()).unwrap();
            m.add_first_party_caveat(text.replace("amount_msat=1000", "amount_msat=99999"));
        }
        m.encode()
    };
    let forged = Credential::from(turnpike_l402::L402Credential {
        macaroon: raised,
        preimage: preimage.clone(),
    });
    assert_eq!(
        reason(&r.verify(&c, &offer, &forged).await),
        "macaroon signature does not verify"
    );
    assert_eq!(sqlite_counts(&path), after);
    assert_eq!(kind(&r.verify(&c, &offer, &cred2).await), "pass");

    // A balance token: its balance is opened on first use, debits and refunds work.
    let bal = balance(1000, 3000);
    let (cred3, mac3) = buy(&r, &dev, &c, &bal).await;
    let id3 = Identifier::decode(mac3.identifier()).unwrap();
    assert_eq!(store.balance(id3.token_id).await.unwrap(), None);
    let Verdict::Pass(grant) = r.verify(&c, &bal, &cred3).await else {
        panic!("balance token refused")
    };
    assert_eq!(
        store.balance(id3.token_id).await.unwrap(),
        Some((3000, 1000))
    );
    r.settle(&grant, false).await;
    assert_eq!(store.balance(id3.token_id).await.unwrap(), Some((3000, 0)));
    for _ in 0..3 {
        assert_eq!(kind(&r.verify(&c, &bal, &cred3).await), "pass");
    }
    assert_eq!(reason(&r.verify(&c, &bal, &cred3).await), "balance used up");
    let kinds: Vec<_> = store
        .entries(id3.token_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    use LedgerKind::*;
    assert_eq!(kinds, vec![Payment, Debit, Refund, Debit, Debit, Debit]);
    drop((r, fresh, store));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn invoices_are_bounded_per_caller_and_in_all() {
    let dev = Arc::new(DevBackend::regtest());
    let store: Arc<dyn L402Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let cfg = L402Config {
        invoices_per_minute_per_caller: 5,
        invoices_per_minute: 12,
        ..L402Config::default()
    };
    let r = rail(dev.clone(), store, cfg);
    let a = call_from("echo", NOW, loopback(0));
    let b = call_from("echo", NOW, loopback(1));
    let offer = per_call(1000);
    for _ in 0..5 {
        assert!(r.challenge(&a, &offer).await.is_some());
    }
    // Over its rate, the caller gets no invoice, and is told how long to wait.
    assert!(r.challenge(&a, &offer).await.is_none());
    let wait = r.invoice_wait(&a).unwrap_err();
    assert!(wait.as_secs() >= 5 && wait.as_secs() <= 12, "{wait:?}");
    // Another address still gets its invoices.
    assert_eq!(r.invoice_wait(&b), Ok(()));
    for _ in 0..5 {
        assert!(r.challenge(&b, &offer).await.is_some());
    }
    // The global bound: 12 a minute in all, whoever asks.
    let c = call_from("echo", NOW, loopback(2));
    assert!(r.challenge(&c, &offer).await.is_some());
    assert!(r.challenge(&c, &offer).await.is_some());
    assert!(r.challenge(&c, &offer).await.is_none());
    assert!(r
        .invoice_wait(&call_from("echo", NOW, loopback(3)))
        .is_err());
    // A token bought before still verifies: the bound is on invoices, not on paying callers.
    let dev2 = Arc::new(DevBackend::regtest());
    let r2 = rail(
        dev2.clone(),
        Arc::new(SqliteStore::open_in_memory().unwrap()),
        L402Config::default(),
    );
    let (cred, _) = buy(&r2, &dev2, &a, &offer).await;
    assert_eq!(kind(&r2.verify(&a, &offer, &cred).await), "pass");
}

/// A token minted with a stored random root key (as every token was before keys were
/// derived) still verifies, is billed once, and its unpaid siblings are purged once expired.
#[tokio::test]
async fn tokens_with_a_stored_root_key_still_verify() {
    let dev = Arc::new(DevBackend::regtest());
    let store: Arc<dyn L402Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let r = rail(dev.clone(), store.clone(), L402Config::default());
    let inv = dev.create_invoice(1000, "old", 600).await.unwrap();
    let pre = dev.pay(&inv.bolt11).unwrap();
    let id = Identifier::random(inv.payment_hash);
    let key = Zeroizing::new(rand::random::<[u8; 32]>());
    // What older versions minted: no amount caveat, the record and key in the store.
    let mut m = Macaroon::new(&key[..], id.encode().to_vec(), "turnpike");
    for cav in [
        "turnpike/resource=/mcp".to_string(),
        "turnpike/methods=tools/call".into(),
        "turnpike/tools=echo".into(),
        "turnpike/mode=per_call".into(),
        format!("turnpike/expires={}", NOW + 100),
    ] {
        m.add_first_party_caveat(cav);
    }
    store
        .issue(
            TokenRecord {
                token_id: id.token_id,
                payment_hash: id.payment_hash,
                mode: BillingMode::PerCall,
                amount_msat: 1000,
                credit_msat: 0,
                expires_at: NOW + 100,
                created_at: NOW - 10,
                paid_at: None,
            },
            key,
        )
        .await
        .unwrap();
    let cred = Credential::from(turnpike_l402::L402Credential {
        macaroon: m.encode(),
        preimage: pre.to_vec(),
    });
    let c = call("echo", NOW);
    assert_eq!(kind(&r.verify(&c, &per_call(1000), &cred).await), "pass");
    assert_eq!(
        reason(&r.verify(&c, &per_call(1000), &cred).await),
        "token already used"
    );
    let kinds: Vec<_> = store
        .entries(id.token_id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec![LedgerKind::Invoice, LedgerKind::Payment]);
    // Without its stored key (and not derived), a token of that shape is refused.
    let other = rail(
        dev.clone(),
        Arc::new(SqliteStore::open_in_memory().unwrap()),
        L402Config::default(),
    );
    assert_eq!(
        kind(&other.verify(&c, &per_call(1000), &cred).await),
        "invalid"
    );
}

/// Revoking a token that was never used refuses it when it comes.
#[tokio::test]
async fn a_token_revoked_before_its_first_use_is_refused() {
    let dev = Arc::new(DevBackend::regtest());
    let store: Arc<dyn L402Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let r = rail(dev.clone(), store.clone(), L402Config::default());
    let c = call("echo", NOW);
    let offer = turnpike_l402::offer(1000, BillingMode::TimePass, 3600);
    let (cred, mac) = buy(&r, &dev, &c, &offer).await;
    let id = Identifier::decode(mac.identifier()).unwrap();
    assert!(store.revoke(id.token_id, NOW - 1).await.unwrap());
    assert_eq!(reason(&r.verify(&c, &offer, &cred).await), "token expired");
    // And one revoked after its first use too.
    let (cred, mac) = buy(&r, &dev, &c, &offer).await;
    assert_eq!(kind(&r.verify(&c, &offer, &cred).await), "pass");
    let id = Identifier::decode(mac.identifier()).unwrap();
    assert!(store.revoke(id.token_id, NOW).await.unwrap());
    assert_eq!(reason(&r.verify(&c, &offer, &cred).await), "token expired");
}

mod postgres {
    use super::*;
    use turnpike_testkit::postgres::PgDb;

    fn opts(db: &PgDb) -> PostgresOptions {
        PostgresOptions {
            schema: Some(db.schema.clone()),
            ..PostgresOptions::new(db.url())
        }
    }

    /// Rows in every table of the test's schema, by table.
    async fn counts(db: &PgDb) -> Vec<(String, i64)> {
        let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let names: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = $1 ORDER BY table_name",
                &[&db.schema],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(names.len() >= 7, "{names:?}");
        let mut out = Vec::new();
        for n in names {
            let k: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM \"{}\".\"{n}\"", db.schema),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            out.push((n, k));
        }
        out
    }

    /// Many 402s through a rail on PostgreSQL add no row to any table; a token minted by one
    /// instance is accepted by another on the same database, and its payment is recorded once
    /// when both see it at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_on_postgres() {
        let db = PgDb::new();
        let (a, b) = tokio::join!(
            PostgresStore::connect(opts(&db)),
            PostgresStore::connect(opts(&db))
        );
        let (a, b): (Arc<dyn L402Store>, Arc<dyn L402Store>) =
            (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
        let dev = Arc::new(DevBackend::regtest());
        let cfg = L402Config {
            invoices_per_minute_per_caller: 100,
            invoices_per_minute: 100_000,
            ..L402Config::default()
        };
        let ra = rail(dev.clone(), a.clone(), cfg.clone());
        let rb = rail(dev.clone(), b.clone(), cfg);
        assert_eq!(
            *a.master_key().await.unwrap(),
            *b.master_key().await.unwrap()
        );
        let before = counts(&db).await;
        for i in 0..1_000u32 {
            let c = call_from("echo", NOW, loopback(i % 20));
            let r = if i % 2 == 0 { &ra } else { &rb };
            assert!(r.challenge(&c, &per_call(1000)).await.is_some());
        }
        assert_eq!(counts(&db).await, before, "a 402 writes nothing");

        // Minted by A, used on B: accepted; used again on A: already used.
        let c = call("echo", NOW);
        let (cred, mac) = buy(&ra, &dev, &c, &per_call(1000)).await;
        assert_eq!(kind(&rb.verify(&c, &per_call(1000), &cred).await), "pass");
        assert_eq!(
            reason(&ra.verify(&c, &per_call(1000), &cred).await),
            "token already used"
        );
        let id = Identifier::decode(mac.identifier()).unwrap();
        assert_eq!(a.entries(id.token_id).await.unwrap().len(), 1);

        // A balance token used on both at once: its payment and balance are recorded once.
        let bal = balance(1000, 10_000);
        let (cred, mac) = buy(&rb, &dev, &c, &bal).await;
        let id = Identifier::decode(mac.identifier()).unwrap();
        let mut tasks = Vec::new();
        let (ra, rb) = (Arc::new(ra), Arc::new(rb));
        for i in 0..16 {
            let r = if i % 2 == 0 { ra.clone() } else { rb.clone() };
            let (c, bal, cred) = (c.clone(), bal.clone(), cred.clone());
            tasks.push(tokio::spawn(async move {
                matches!(r.verify(&c, &bal, &cred).await, Verdict::Pass(_))
            }));
        }
        let mut passed = 0;
        for t in tasks {
            passed += usize::from(t.await.unwrap());
        }
        assert_eq!(passed, 10, "ten calls' worth of balance, spent exactly");
        let rows = a.entries(id.token_id).await.unwrap();
        assert_eq!(
            rows.iter()
                .filter(|e| e.kind == LedgerKind::Payment)
                .count(),
            1
        );
        assert_eq!(
            rows.iter().filter(|e| e.kind == LedgerKind::Debit).count(),
            10
        );
        assert_eq!(
            b.balance(id.token_id).await.unwrap(),
            Some((10_000, 10_000))
        );
        let after = counts(&db).await;
        assert_eq!(
            count_of(&after, "l402_tokens"),
            count_of(&before, "l402_tokens") + 2
        );
        assert_eq!(count_of(&after, "l402_root_keys"), 0);
    }
}
