//! Balance debits per second and their latency on each L402 store: memory, SQLite (a file,
//! WAL, synchronous = NORMAL) and PostgreSQL (one statement per debit, its ledger row in the
//! same statement).
//!
//! ```text
//! cargo run --release -p turnpike-l402 --example debit_rate [-- CALLS CONCURRENCY [POSTGRES_URL]]
//! ```
//!
//! Without a URL it starts a PostgreSQL of its own on a free loopback port (initdb + pg_ctl,
//! fsync off — so the figure is the statement's cost, not the disk's); with one, it uses a
//! fresh schema there.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_l402::store::{DebitOutcome, L402Store, MemoryStore, TokenRecord};
use turnpike_l402::BillingMode;
use turnpike_l402::{Durability, PostgresOptions, PostgresStore, SqliteStore};
use zeroize::Zeroizing;

async fn run(name: &str, store: Arc<dyn L402Store>, calls: usize, conc: usize) {
    let token = rand::random::<[u8; 32]>();
    store
        .issue(
            TokenRecord {
                token_id: token,
                payment_hash: rand::random(),
                mode: BillingMode::Balance,
                amount_msat: 1 << 40,
                credit_msat: 1 << 40,
                expires_at: u64::MAX >> 2,
                created_at: 1,
                paid_at: None,
            },
            Zeroizing::new(rand::random()),
        )
        .await
        .expect("issue");
    store.confirm_payment(token, 1).await.expect("confirm");
    // Warm up (connections, statements).
    for _ in 0..100 {
        store.debit(token, 1, u64::MAX, 2).await.expect("debit");
    }
    let per = calls / conc;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                let r = s.debit(token, 1, u64::MAX, 3).await.expect("debit");
                assert!(matches!(r, DebitOutcome::Debited { .. }));
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(calls);
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    let (_, spent) = store.balance(token).await.unwrap().unwrap();
    assert_eq!(spent as usize, 100 + per * conc, "every debit counted once");
    println!(
        "{name:<10} {:>9.0} debits/s   p50 {:>8.1} µs   p99 {:>8.1} µs   ({} debits, {conc} at once)",
        lat.len() as f64 / secs,
        q(0.5),
        q(0.99),
        lat.len()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calls: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let conc: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let own;
    let url = match args.get(2) {
        Some(u) => u.clone(),
        None => {
            own = turnpike_testkit::postgres::PgServer::start();
            own.url()
        }
    };
    run("memory", Arc::new(MemoryStore::new()), calls, conc).await;
    let dir = std::env::temp_dir().join(format!("turnpike-debit-rate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = SqliteStore::open(&dir.join("l402.sqlite"), Durability::Normal).unwrap();
    run("sqlite", Arc::new(sqlite), calls, conc).await;
    let pg = PostgresStore::connect(PostgresOptions {
        schema: Some(format!("debit_rate_{}", std::process::id())),
        ..PostgresOptions::new(url)
    })
    .await
    .expect("PostgreSQL");
    run("postgres", Arc::new(pg), calls, conc).await;
    let _ = std::fs::remove_dir_all(&dir);
}
