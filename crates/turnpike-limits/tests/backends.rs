//! One backend test suite, run against the in-memory backend and against a real Redis (a
//! redis-server of the test's own on a free loopback port). "Two clients" are two handles on
//! one memory backend, and two independent Redis backends (two connection managers) on one
//! server.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike_limits::{
    Admission, BudgetsConfig, CallInfo, CallKind, Check, Class, ConcurrencyCheck, Denial,
    FailureMode, InFlight, LimitBackend, LimitError, Limiter, LimitsConfig, LoopBrake, LoopCheck,
    MemoryBackend, Quota, RateCheck, RedisBackend, RedisOptions,
};
use turnpike_testkit::redis::{RedisCluster, RedisServer};

type Pair = (Arc<dyn LimitBackend>, Arc<dyn LimitBackend>);

fn memory_pair() -> Pair {
    let m: Arc<dyn LimitBackend> = Arc::new(MemoryBackend::new());
    (m.clone(), m)
}

fn redis_backend(server: &RedisServer) -> Arc<dyn LimitBackend> {
    Arc::new(
        RedisBackend::new(
            &server.url(),
            RedisOptions {
                timeout: Duration::from_millis(500),
                ..RedisOptions::default()
            },
        )
        .unwrap(),
    )
}

fn redis_pair(server: &RedisServer) -> Pair {
    (redis_backend(server), redis_backend(server))
}

/// A scope no other test (or earlier run) uses.
fn scope(name: &str) -> String {
    format!("anon:test-{name}-{}-{:x}", std::process::id(), rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn slow(burst: u32) -> Quota {
    // Refill so slow that nothing comes back during a test.
    Quota::new(burst, "1/h".parse().unwrap()).unwrap()
}

async fn rate_once(b: &dyn LimitBackend, scope: &str, class: Class<'_>, q: Quota) -> bool {
    let rates = [RateCheck { class, quota: q }];
    let check = Check {
        scope,
        rates: &rates,
        loop_brake: None,
        daily_cap: None,
        concurrency: None,
    };
    b.check(&check).await.unwrap().allowed
}

// ---------------------------------------------------------------- the suite

async fn limit_of_n_is_n_across_two_clients((a, b): Pair) {
    let s = scope("burst");
    let q = slow(50);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let be = if i % 2 == 0 { a.clone() } else { b.clone() };
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            rate_once(&*be, &s, Class::Tool("search"), q).await
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        allowed += usize::from(t.await.unwrap());
    }
    assert_eq!(allowed, 50, "a burst of 50 lets exactly 50 through");
    // Another class and another identity have their own cells.
    assert!(rate_once(&*a, &s, Class::Tool("other"), q).await);
    assert!(rate_once(&*b, &s, Class::Discovery, q).await);
    assert!(rate_once(&*b, &scope("burst2"), Class::Tool("search"), q).await);
}

async fn daily_cap_is_exact_across_two_clients((a, b): Pair) {
    let s = scope("daily");
    let mut tasks = Vec::new();
    for i in 0..100 {
        let be = if i % 2 == 0 { a.clone() } else { b.clone() };
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let check = Check {
                scope: &s,
                rates: &[],
                loop_brake: None,
                daily_cap: Some(30),
                concurrency: None,
            };
            be.check(&check).await.unwrap()
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        let o = t.await.unwrap();
        if o.allowed {
            allowed += 1;
        } else {
            assert_eq!(o.denied_by, Some(Denial::Daily));
            let d = o.daily.unwrap();
            assert_eq!((d.used, d.cap), (30, 30));
            assert_eq!(o.retry_after, d.reset, "retry at the next UTC midnight");
            assert!(o.retry_after <= Duration::from_secs(86_400));
        }
    }
    assert_eq!(allowed, 30);
}

async fn refused_checks_count_nothing((a, _): Pair) {
    let s = scope("atomic");
    let small = slow(2);
    let big = slow(100);
    let rates = [
        RateCheck {
            class: Class::Tool("t"),
            quota: big,
        },
        RateCheck {
            class: Class::AllTools,
            quota: small,
        },
    ];
    let check = Check {
        scope: &s,
        rates: &rates,
        loop_brake: None,
        daily_cap: None,
        concurrency: None,
    };
    for _ in 0..2 {
        assert!(a.check(&check).await.unwrap().allowed);
    }
    for _ in 0..5 {
        let o = a.check(&check).await.unwrap();
        assert!(!o.allowed);
        assert_eq!(o.denied_by, Some(Denial::Rate(1)));
        assert_eq!(o.rates[1].remaining, 0);
        assert!(
            o.retry_after > Duration::from_secs(3000),
            "{:?}",
            o.retry_after
        );
    }
    // The tool cell counted the two allowed calls only.
    let one = Check {
        rates: &rates[..1],
        ..check.clone()
    };
    let o = a.check(&one).await.unwrap();
    assert!(o.allowed);
    assert_eq!(o.rates[0].remaining, 100 - 3);
}

async fn concurrency_cap_and_release((a, b): Pair, shared: bool) {
    let s = scope("conc");
    let check = Check {
        scope: &s,
        rates: &[],
        loop_brake: None,
        daily_cap: None,
        concurrency: Some(ConcurrencyCheck {
            max: 5,
            lease: Duration::from_secs(60),
        }),
    };
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..20 {
        let be = if i % 2 == 0 { &a } else { &b };
        let o = be.check(&check).await.unwrap();
        if o.allowed {
            let lease = o.lease.expect("an allowed capped call holds a lease");
            held.push(InFlight::new(be.clone(), lease));
        } else {
            refused += 1;
            assert_eq!(o.denied_by, Some(Denial::Concurrency));
            assert_eq!(o.concurrency.unwrap().in_flight, 5);
            assert!(o.lease.is_none());
        }
    }
    assert_eq!((held.len(), refused), (5, 15));
    held.truncate(3); // two calls end
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = 0;
    while got < 2 && Instant::now() < deadline {
        let o = a.check(&check).await.unwrap();
        if o.allowed {
            held.push(InFlight::new(a.clone(), o.lease.unwrap()));
            got += 1;
        } else if shared {
            // Releases travel in the background on a shared backend.
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else {
            panic!("released slots are free at once in memory");
        }
    }
    assert_eq!(got, 2, "released slots are taken again");
    assert!(!a.check(&check).await.unwrap().allowed, "and the cap holds");
}

async fn loop_brake_slows_repeats_and_raises_effort((a, b): Pair) {
    let s = scope("loop");
    let brake = LoopBrake {
        max_repeats: 3,
        window: Duration::from_secs(60),
        strike_decay: Duration::from_secs(60),
        max_multiplier: 8,
    };
    let mk = |args: u8| Check {
        scope: &s,
        rates: &[],
        loop_brake: Some(LoopCheck {
            tool: "fetch",
            args_hash: [args; 32],
            brake,
        }),
        daily_cap: None,
        concurrency: None,
    };
    for i in 0..3 {
        let be = if i % 2 == 0 { &a } else { &b };
        let o = be.check(&mk(1)).await.unwrap();
        assert!(o.allowed, "repeat {i}");
        assert_eq!(o.effort_multiplier, 1);
    }
    let o = a.check(&mk(1)).await.unwrap();
    assert!(!o.allowed);
    assert_eq!(o.denied_by, Some(Denial::LoopBrake));
    // One identical call per 20 s after the burst.
    let r = o.retry_after;
    assert!(
        r > Duration::from_secs(19) && r <= Duration::from_secs(20),
        "retry_after {r:?}"
    );
    assert_eq!(o.effort_multiplier, 2, "one strike doubles effort");
    let o = b.check(&mk(1)).await.unwrap();
    assert!(!o.allowed);
    assert_eq!(o.effort_multiplier, 4);
    // Other arguments are another call.
    assert!(a.check(&mk(2)).await.unwrap().allowed);
    assert_eq!(b.effort_multiplier(&s, &brake).await.unwrap(), 4);
    assert_eq!(
        b.effort_multiplier(&scope("calm"), &brake).await.unwrap(),
        1
    );
}

async fn spend_is_atomic_across_two_clients((a, b): Pair) {
    let key = scope("spend");
    let mut tasks = Vec::new();
    for i in 0..60 {
        let be = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            be.spend(&key, 100, 1000).await.unwrap()
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        let o = t.await.unwrap();
        assert!(o.spent <= 1000);
        if o.accepted {
            receipts.push(o.receipt.unwrap());
        }
    }
    assert_eq!(
        receipts.len(),
        10,
        "1000 msat buys exactly ten 100-msat spends"
    );
    let o = a.spend(&key, 1, 1000).await.unwrap();
    assert!(!o.accepted);
    assert_eq!(o.spent, 1000);
    b.refund(&receipts[0]).await.unwrap();
    let o = a.spend(&key, 100, 1000).await.unwrap();
    assert!(o.accepted, "a refund makes room again");
    assert!(!a.spend(&key, 1, 1000).await.unwrap().accepted);
    assert!(
        a.spend(&scope("spend2"), 1000, 1000)
            .await
            .unwrap()
            .accepted
    );
}

async fn limiter_end_to_end((a, _): Pair) {
    let cfg: LimitsConfig = toml_cfg(
        r#"
        [default]
        burst = 3
        rate = "1/h"
        concurrency = 2
        [discovery]
        burst = 2
        rate = "1/h"
        "#,
    );
    let lim = Limiter::new(
        cfg,
        BudgetsConfig {
            calls_per_day: Some(100),
            msat_per_token_per_day: Some(500),
        },
        a,
    );
    let s = scope("lim");
    let h1 = [1u8; 32];
    let call = |kind| CallInfo {
        scope: &s,
        rail: Some(turnpike_core::RailId::new("pow")),
        kind,
        args_hash: Some(&h1),
    };
    let Admission::Allowed(first) = lim.admit(&call(CallKind::Tool("echo"))).await else {
        panic!("first call allowed");
    };
    let h: Vec<_> = first.headers();
    assert_eq!(h[0].0, "RateLimit-Policy");
    assert_eq!(
        h[0].1,
        r#""tool:echo";q=3;w=10800, "daily";q=100;w=86400, "concurrency";q=2;qu="concurrent-requests""#
    );
    assert!(
        h[1].1
            .starts_with(r#""tool:echo";r=2;t=3600, "daily";r=99;t="#),
        "{}",
        h[1].1
    );
    assert!(h[1].1.ends_with(r#", "concurrency";r=1"#), "{}", h[1].1);
    let Admission::Allowed(second) = lim.admit(&call(CallKind::Tool("echo"))).await else {
        panic!("second call allowed");
    };
    // Two in flight: the third waits for one to finish.
    let Admission::Limited(l) = lim.admit(&call(CallKind::Tool("echo"))).await else {
        panic!("in-flight cap");
    };
    assert_eq!(l.policy, "concurrency");
    assert_eq!(l.retry_after_secs(), 1);
    drop(first);
    drop(second);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        lim.admit(&call(CallKind::Tool("echo"))).await,
        Admission::Allowed(_)
    ));
    let Admission::Limited(l) = lim.admit(&call(CallKind::Tool("echo"))).await else {
        panic!("burst of 3 spent");
    };
    assert_eq!(l.policy, "tool:echo");
    assert_eq!(l.retry_after_secs(), 3600);
    let hdr = l.headers();
    assert_eq!(hdr[0], ("Retry-After", "3600".to_string()));
    assert!(
        hdr[2].1.starts_with(r#""tool:echo";r=0;t=3600"#),
        "{}",
        hdr[2].1
    );
    let data = l.error_data();
    assert_eq!(data["retry_after"], 3600);
    assert_eq!(data["reason"], "rate");
    assert_eq!(data["limits"][0]["policy"], "tool:echo");
    // Discovery has its own budget.
    assert!(matches!(
        lim.admit(&call(CallKind::classify("tools/list", None)))
            .await,
        Admission::Allowed(_)
    ));
    // Spend caps per token per day.
    let token = |id: &str| turnpike_core::Identity::L402 {
        token_id: id.into(),
    };
    assert!(lim.spend_msat(&token("ab"), 400).await.unwrap().accepted);
    assert!(!lim.spend_msat(&token("ab"), 101).await.unwrap().accepted);
    assert!(lim.spend_msat(&token("cd"), 500).await.unwrap().accepted);
}

fn toml_cfg(s: &str) -> LimitsConfig {
    toml::from_str(s).unwrap()
}

// ---------------------------------------------------------------- memory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_of_n_is_n() {
    limit_of_n_is_n_across_two_clients(memory_pair()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_daily_cap() {
    daily_cap_is_exact_across_two_clients(memory_pair()).await;
}

#[tokio::test]
async fn memory_refused_checks_count_nothing() {
    refused_checks_count_nothing(memory_pair()).await;
}

#[tokio::test]
async fn memory_concurrency() {
    concurrency_cap_and_release(memory_pair(), false).await;
}

#[tokio::test]
async fn memory_loop_brake() {
    loop_brake_slows_repeats_and_raises_effort(memory_pair()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_spend() {
    spend_is_atomic_across_two_clients(memory_pair()).await;
}

#[tokio::test]
async fn memory_limiter() {
    limiter_end_to_end(memory_pair()).await;
}

/// Challenges are counted per identity on their own budget, shared by the instances of one
/// backend; a limited address leaves another address and its own paid calls untouched.
async fn challenge_budget_across_two_clients((a, b): Pair) {
    let cfg: LimitsConfig = toml_cfg(
        r#"
        [challenges]
        burst = 4
        rate = "1/h"
        [default]
        burst = 2
        rate = "1/h"
        "#,
    );
    let la = Limiter::new(cfg.clone(), BudgetsConfig::default(), a);
    let lb = Limiter::new(cfg, BudgetsConfig::default(), b);
    let (flooder, other) = (scope("ch-flood"), scope("ch-other"));
    let mut allowed = 0;
    let mut limited = 0;
    for i in 0..10 {
        let lim = if i % 2 == 0 { &la } else { &lb };
        match lim.admit_challenge(&flooder).await {
            Admission::Allowed(a) => {
                assert_eq!(a.effort_multiplier, 1);
                allowed += 1;
            }
            Admission::Limited(l) => {
                assert_eq!(l.policy, "challenge");
                assert!(l.retry_after_secs() > 60, "{l:?}");
                assert!(l.headers().iter().any(|(n, _)| *n == "Retry-After"));
                limited += 1;
            }
            Admission::Unavailable(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        (allowed, limited),
        (4, 6),
        "exactly the burst, across both clients"
    );
    assert!(matches!(
        lb.admit_challenge(&other).await,
        Admission::Allowed(_)
    ));
    let h = [7u8; 32];
    let paid = CallInfo {
        scope: &flooder,
        rail: Some(turnpike_core::RailId::new("pow")),
        kind: CallKind::Tool("echo"),
        args_hash: Some(&h),
    };
    assert!(
        matches!(la.admit(&paid).await, Admission::Allowed(_)),
        "the paid retry is on the tool's budget"
    );
}

#[tokio::test]
async fn memory_challenge_budget() {
    challenge_budget_across_two_clients(memory_pair()).await;
}

// ---------------------------------------------------------------- redis

/// Two independent backends (two cluster connections) on a Redis Cluster.
fn cluster_pair(cluster: &RedisCluster) -> Pair {
    let backend = || -> Arc<dyn LimitBackend> {
        Arc::new(
            RedisBackend::new(
                &cluster.url(),
                RedisOptions {
                    timeout: Duration::from_millis(500),
                    ..RedisOptions::default()
                },
            )
            .unwrap(),
        )
    };
    (backend(), backend())
}

/// The whole suite on a real three-master Redis Cluster: every script touches the keys of one
/// identity (one hash tag, one slot), so each runs on the master of that slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_suite() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    limit_of_n_is_n_across_two_clients(cluster_pair(&cluster)).await;
    daily_cap_is_exact_across_two_clients(cluster_pair(&cluster)).await;
    refused_checks_count_nothing(cluster_pair(&cluster)).await;
    concurrency_cap_and_release(cluster_pair(&cluster), true).await;
    loop_brake_slows_repeats_and_raises_effort(cluster_pair(&cluster)).await;
    spend_is_atomic_across_two_clients(cluster_pair(&cluster)).await;
    limiter_end_to_end(cluster_pair(&cluster)).await;
    challenge_budget_across_two_clients(cluster_pair(&cluster)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_suite() {
    let server = RedisServer::start();
    limit_of_n_is_n_across_two_clients(redis_pair(&server)).await;
    daily_cap_is_exact_across_two_clients(redis_pair(&server)).await;
    refused_checks_count_nothing(redis_pair(&server)).await;
    concurrency_cap_and_release(redis_pair(&server), true).await;
    loop_brake_slows_repeats_and_raises_effort(redis_pair(&server)).await;
    spend_is_atomic_across_two_clients(redis_pair(&server)).await;
    limiter_end_to_end(redis_pair(&server)).await;
    challenge_budget_across_two_clients(redis_pair(&server)).await;
}

/// Keys expire by themselves: every key the suite writes carries a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_carry_ttls() {
    let server = RedisServer::start();
    let (a, _) = redis_pair(&server);
    let s = scope("ttl");
    let brake = LoopBrake {
        max_repeats: 1,
        window: Duration::from_secs(10),
        strike_decay: Duration::from_secs(10),
        max_multiplier: 4,
    };
    let rates = [RateCheck {
        class: Class::Tool("t"),
        quota: Quota::per_second(10, 5).unwrap(),
    }];
    let check = Check {
        scope: &s,
        rates: &rates,
        loop_brake: Some(LoopCheck {
            tool: "t",
            args_hash: [0; 32],
            brake,
        }),
        daily_cap: Some(10),
        concurrency: Some(ConcurrencyCheck {
            max: 3,
            lease: Duration::from_secs(30),
        }),
    };
    assert!(a.check(&check).await.unwrap().allowed);
    assert!(
        !a.check(&check).await.unwrap().allowed,
        "loop brake strikes"
    );
    a.spend("k", 1, 10).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("turnpike:*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        keys.len(),
        6,
        "rate, loop, strike, daily, in-flight, spend: {keys:?}"
    );
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(k).query_async(&mut c).await.unwrap();
        assert!(ttl > 0, "{k} has no TTL ({ttl})");
        assert!(
            !k.contains("anon:"),
            "identities are hashed, never stored: {k}"
        );
    }
    let rate_key = keys.iter().find(|k| k.contains(":rl:")).unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(rate_key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        ttl <= 202,
        "a rate cell lives until its bucket is full again: {ttl} ms"
    );
}

async fn wait_for(lim: &Limiter, call: &CallInfo<'_>, want_allowed: bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let ok = matches!(lim.admit(call).await, Admission::Allowed(_));
        if ok == want_allowed {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no recovery within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis killed and restarted mid-test: calls error (closed) or pass (open) while it is down,
/// and both limiters recover by themselves, on the same clients, once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fail_closed_and_open_then_recover() {
    let mut server = RedisServer::start();
    let mk = |mode| {
        let cfg = LimitsConfig {
            failure_mode: mode,
            ..LimitsConfig::default()
        };
        Limiter::new(cfg, BudgetsConfig::default(), redis_backend(&server))
    };
    let closed = mk(FailureMode::Closed);
    let open = mk(FailureMode::Open);
    let s = scope("outage");
    let call = CallInfo {
        scope: &s,
        rail: None,
        kind: CallKind::Tool("t"),
        args_hash: None,
    };
    let Admission::Allowed(a) = closed.admit(&call).await else {
        panic!("up: allowed");
    };
    assert!(!a.degraded && !a.status.is_empty());
    drop(a);
    assert!(matches!(open.admit(&call).await, Admission::Allowed(_)));

    server.kill();
    for _ in 0..3 {
        let t0 = Instant::now();
        match closed.admit(&call).await {
            Admission::Unavailable(LimitError::Unavailable(_)) => {}
            other => panic!("fail-closed while Redis is down: {other:?}"),
        }
        match open.admit(&call).await {
            Admission::Allowed(a) => assert!(a.degraded && a.status.is_empty()),
            other => panic!("fail-open while Redis is down: {other:?}"),
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "failing is quick: {:?}",
            t0.elapsed()
        );
    }

    server.restart();
    let took = wait_for(&closed, &call, true).await;
    eprintln!("fail-closed limiter recovered {took:?} after the restart");
    // The fail-open limiter's own client reconnects too: it is soon answered by Redis again
    // rather than failing open.
    let t0 = Instant::now();
    loop {
        match open.admit(&call).await {
            Admission::Allowed(a) if !a.degraded => break,
            Admission::Allowed(_) => {
                assert!(t0.elapsed() < Duration::from_secs(15), "no recovery");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("fail-open limiter: {other:?}"),
        }
    }
    eprintln!("fail-open limiter recovered {:?} later", t0.elapsed());
}

// ---------------------------------------------------------------- GCRA math, injected time

const T0: u64 = 1_700_000_000 * 1_000_000_000;

fn manual() -> (Arc<turnpike_limits::ManualClock>, MemoryBackend) {
    let clock = Arc::new(turnpike_limits::ManualClock::new(T0));
    let m = MemoryBackend::with_clock(clock.clone());
    (clock, m)
}

#[test]
fn gcra_burst_then_retry_after_is_exact() {
    let (clock, m) = manual();
    let q = Quota::per_second(5, 10).unwrap(); // T = 100 ms
    let c = Class::Tool("t");
    for left in (0..5).rev() {
        let d = m.check_rate("s", &c, &q);
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
        assert_eq!(d.limit, 5);
    }
    let d = m.check_rate("s", &c, &q);
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after, Duration::from_millis(100));
    assert_eq!(d.reset, Duration::from_millis(500));
    clock.advance(Duration::from_millis(100) - Duration::from_nanos(1));
    let d = m.check_rate("s", &c, &q);
    assert!(!d.allowed, "one nanosecond early is still early");
    assert_eq!(d.retry_after, Duration::from_nanos(1));
    clock.advance(Duration::from_nanos(1));
    let d = m.check_rate("s", &c, &q);
    assert!(d.allowed, "exactly at retry_after the call fits");
    assert_eq!(d.remaining, 0);
    // An idle second refills the whole burst, and no more.
    clock.advance(Duration::from_secs(1));
    let allowed = (0..20)
        .filter(|_| m.check_rate("s", &c, &q).allowed)
        .count();
    assert_eq!(allowed, 5);
}

#[test]
fn gcra_steady_rate_is_burst_plus_rate_times_time() {
    let (clock, m) = manual();
    let q = Quota::per_second(5, 10).unwrap();
    let c = Class::Tool("t");
    let mut allowed = 0;
    // A greedy caller, once per millisecond for 10 s: the burst, then one per 100 ms.
    for _ in 0..10_000 {
        allowed += usize::from(m.check_rate("s", &c, &q).allowed);
        clock.advance(Duration::from_millis(1));
    }
    assert_eq!(allowed, 5 + 99);
    // A caller at exactly the sustained rate is never refused.
    let (clock, m) = manual();
    for i in 0..1000 {
        assert!(m.check_rate("p", &c, &q).allowed, "call {i}");
        clock.advance(Duration::from_millis(100));
    }
}

#[test]
fn gcra_check_matches_the_fast_path() {
    let (clock, m) = manual();
    let q = Quota::new(3, "6/min".parse().unwrap()).unwrap(); // T = 10 s
    let rates = [RateCheck {
        class: Class::Tool("t"),
        quota: q,
    }];
    let check = Check {
        scope: "s",
        rates: &rates,
        loop_brake: None,
        daily_cap: None,
        concurrency: None,
    };
    for _ in 0..3 {
        assert!(m.check_now(&check).unwrap().allowed);
    }
    let o = m.check_now(&check).unwrap();
    assert!(!o.allowed);
    assert_eq!(o.retry_after, Duration::from_secs(10));
    assert_eq!(o.rates[0].reset, Duration::from_secs(30));
    assert_eq!(o.rates[0].effective_window_secs(), 10);
    clock.advance(Duration::from_secs(25));
    let o = m.check_now(&check).unwrap();
    assert!(o.allowed);
    assert_eq!(
        o.rates[0].remaining, 1,
        "2.5 intervals refilled 2 calls, one now used"
    );
    assert_eq!(o.rates[0].reset, Duration::from_secs(15));
    assert_eq!(o.rates[0].effective_window_secs(), 15);
}

#[test]
fn idle_cells_expire_and_memory_is_bounded() {
    let (clock, m) = manual();
    let q = Quota::per_second(10, 10).unwrap(); // a full bucket comes back within 1 s
    for i in 0..100_000u32 {
        let s = format!("anon:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        assert!(m.check_rate(&s, &Class::Tool("t"), &q).allowed);
        if i % 10_000 == 9_999 {
            clock.advance(Duration::from_secs(2));
        }
    }
    // Shards sweep by themselves as they grow: far fewer than 100k cells are held.
    assert!(m.len() < 60_000, "held {}", m.len());
    clock.advance(Duration::from_secs(2));
    m.sweep();
    assert_eq!(
        m.len(),
        0,
        "every bucket is full again, so every cell is gone"
    );
    assert!(
        m.table_bytes() < 64 * 64 * 1024,
        "tables shrank: {}",
        m.table_bytes()
    );
}

#[test]
fn daily_budget_renews_at_utc_midnight() {
    let (clock, m) = manual();
    let midnight = (T0 / 1_000_000_000 / 86_400 + 1) * 86_400 * 1_000_000_000;
    clock.set(midnight - 10 * 1_000_000_000);
    let check = Check {
        scope: "s",
        rates: &[],
        loop_brake: None,
        daily_cap: Some(2),
        concurrency: None,
    };
    assert!(m.check_now(&check).unwrap().allowed);
    assert!(m.check_now(&check).unwrap().allowed);
    let o = m.check_now(&check).unwrap();
    assert!(!o.allowed);
    assert_eq!(o.retry_after, Duration::from_secs(10));
    clock.advance(Duration::from_secs(10));
    let o = m.check_now(&check).unwrap();
    assert!(o.allowed);
    assert_eq!(o.daily.unwrap().used, 1);
    assert_eq!(o.daily.unwrap().reset, Duration::from_secs(86_400));
}

/// One round trip per decision: each check is exactly one EVALSHA (plus one SCRIPT LOAD the
/// first time, after the server answered NOSCRIPT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_one_script_call_per_check() {
    let server = RedisServer::start();
    let lim = Limiter::new(
        LimitsConfig::default(),
        BudgetsConfig {
            calls_per_day: Some(1000),
            msat_per_token_per_day: None,
        },
        redis_backend(&server),
    );
    let s = scope("rt");
    for i in 0..12u8 {
        let h = [i; 32];
        let call = CallInfo {
            scope: &s,
            rail: None,
            kind: CallKind::Tool("t"),
            args_hash: Some(&h),
        };
        let Admission::Allowed(a) = lim.admit(&call).await else {
            panic!("allowed");
        };
        std::mem::forget(a.in_flight); // no background release in the count
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    let stat = |name: &str, field: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .and_then(|l| {
                l.split([':', ','])
                    .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        stat("evalsha", "calls") - stat("evalsha", "failed_calls"),
        12,
        "{info}"
    );
    assert_eq!(
        stat("evalsha", "failed_calls"),
        1,
        "the first NOSCRIPT: {info}"
    );
    assert_eq!(stat("script|load", "calls"), 1, "{info}");
}
