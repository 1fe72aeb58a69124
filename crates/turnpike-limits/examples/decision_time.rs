//! Time per in-memory limit decision, as wall time and as this thread's CPU time.
//!
//! `cargo run --release -p turnpike-limits --example decision_time`
//!
//! On a machine shared with other work, wall time includes the time this thread waited for a
//! core; CPU time (from /proc/thread-self/stat, 10 ms ticks, over seconds of work) does not.
//! The criterion bench (`cargo bench -p turnpike-limits --bench decision`) measures wall time.

// A measurement program run by hand: a failed unwrap or expect ends the run with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use turnpike_limits::{
    Check, Class, ConcurrencyCheck, LimitBackend, LoopBrake, LoopCheck, MemoryBackend, Quota,
    RateCheck,
};

/// This thread's user + system CPU time.
fn cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 14th field overall,
    // stime the 15th, i.e. the 12th and 13th after the ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn measure(label: &str, iters: u64, mut f: impl FnMut(u64)) {
    for i in 0..iters / 10 {
        f(i);
    }
    let (w0, c0) = (Instant::now(), cpu());
    for i in 0..iters {
        f(i);
    }
    let (w, c) = (w0.elapsed(), cpu() - c0);
    println!(
        "{label:<58} wall {:>6.0} ns   cpu {:>6.0} ns",
        w.as_nanos() as f64 / iters as f64,
        c.as_nanos() as f64 / iters as f64
    );
}

fn main() {
    let m = MemoryBackend::new();
    let roomy = Quota::per_second(1_000_000, 1_000_000_000).expect("quota");
    let class = Class::Tool("search");
    measure("check_rate, one hot cell", 20_000_000, |_| {
        black_box(m.check_rate(black_box("oauth:issuer:subject:client"), &class, &roomy));
    });
    let scopes: Vec<String> = (0..1_000_000u32)
        .map(|i| format!("anon:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    measure(
        "check_rate, round robin over 1M identities",
        10_000_000,
        |i| {
            let s = &scopes[(i % 1_000_000) as usize];
            black_box(m.check_rate(s, &class, &roomy));
        },
    );
    let brake = LoopBrake {
        max_repeats: u32::MAX / 2,
        window: Duration::from_secs(1),
        strike_decay: Duration::from_secs(60),
        max_multiplier: 16,
    };
    let rates = [
        RateCheck {
            class,
            quota: roomy,
        },
        RateCheck {
            class: Class::AllTools,
            quota: roomy,
        },
    ];
    let check = Check {
        scope: "oauth:issuer:subject:client",
        rates: &rates,
        loop_brake: Some(LoopCheck {
            tool: "search",
            args_hash: [7; 32],
            brake,
        }),
        daily_cap: Some(u64::MAX),
        concurrency: Some(ConcurrencyCheck {
            max: 1_000,
            lease: Duration::from_secs(60),
        }),
    };
    measure(
        "check: 2 cells, loop brake, daily, in-flight (+release)",
        5_000_000,
        |_| {
            if let Ok(o) = m.check_now(black_box(&check)) {
                if let Some(l) = o.lease {
                    m.release(l);
                }
            }
        },
    );
}
